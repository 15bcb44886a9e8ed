//! sea-orm entities, matching the `migration` crate.

pub mod change;
pub mod change_head;
pub mod connection;
pub mod tenant;
pub mod webhook_endpoint;
