//! Integration tests: the real application over HTTP, on SQLite and (with TEST_DATABASE_URL) on
//! PostgreSQL, against the development IMS over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;

mod admin_rights;
mod bounds;
mod cli;
mod concurrency;
mod connection;
mod errors;
mod failover;
mod faults;
mod feed;
mod head;
mod helpers;
mod ims_guard;
mod linearizable;
mod logs;
mod openapi;
mod oracles;
mod orgs;
mod probes;
mod process;
mod provisioning;
mod replicas;
mod tokens;
mod traces;
mod watch;
mod webhooks;
mod wire;

/// Runs a test body once per configured backend.
#[macro_export]
macro_rules! each_backend {
    (|$app:ident| $body:block) => {
        for backend in $crate::common::db::backends() {
            let $app = $crate::helpers::spawn_app(backend).await;
            $body
        }
    };
}
