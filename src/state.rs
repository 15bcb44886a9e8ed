//! The one piece of shared state every handler and extractor reads.

use std::sync::Arc;

use crate::auth::TokenVerifier;
use crate::config::Config;
use crate::feed::Hub;
use crate::ims::ImsClient;
use crate::metrics::Metrics;
use crate::ratelimit::ImsRateLimiter;
use crate::store::{DbReadiness, Store};
use crate::watch::Watchers;

/// Built once at start; cheap to clone (handles and `Arc`s inside).
#[derive(Clone)]
pub struct AppState {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// The database.
    pub store: Store,
    /// This replica's held reads (watches and long polls), woken by the changes committed.
    pub watchers: Watchers,
    /// This replica's broadcast of committed changes (the change feed's Server-Sent Events). An
    /// `Arc`: the state is cloned for every request, the hub's handles need not be.
    pub hub: Arc<Hub>,
    /// IMS, for org lists and profiles.
    pub ims: ImsClient,
    /// Token verification and its key cache.
    pub verifier: Arc<TokenVerifier>,
    /// Per-user limit on the requests that call IMS with the caller's token.
    pub ims_limiter: ImsRateLimiter,
    /// This application's metrics (what `/metrics` serves).
    pub metrics: Arc<Metrics>,
    /// The webhooks: their endpoints and this replica's delivery worker.
    pub webhooks: Arc<crate::webhook::Webhooks>,
    /// `/readyz`'s cached database check.
    pub readiness: Arc<DbReadiness>,
}
