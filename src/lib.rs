//! cc-connection: the system of record for the connection of an AEM Assets tenant to a Creative
//! Cloud organization (an Adobe IMS org).
//!
//! `startup` builds the application from a `Config`; `routes` hold the handlers, `auth` the token
//! checks and typed extractors, `ims` the IMS client, `store` the persistence. `dev_ims` is
//! the development IMS used by `start-dev` and the tests: its own crate (`dev-ims/`), behind the
//! default `dev-ims` feature.

pub mod auth;
pub mod cli;
pub mod config;
#[cfg(feature = "dev-ims")]
pub use cc_connection_dev_ims as dev_ims;
pub mod domain;
pub mod entity;
pub mod error;
pub mod feed;
pub mod ims;
pub mod logfilter;
pub mod metrics;
pub mod openapi;
pub mod ratelimit;
pub mod representation;
pub mod routes;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod watch;
pub mod webhook;
