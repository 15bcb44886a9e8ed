//! The one piece of shared state every handler and extractor reads.

use std::sync::Arc;

use crate::auth::TokenVerifier;
use crate::config::Config;
use crate::ims::ImsClient;
use crate::ratelimit::ImsRateLimiter;
use crate::store::{DbReadiness, Store};

/// Built once at start; cheap to clone (handles and `Arc`s inside).
#[derive(Clone)]
pub struct AppState {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// The database.
    pub store: Store,
    /// IMS, for org lists and profiles.
    pub ims: ImsClient,
    /// Token verification and its key cache.
    pub verifier: Arc<TokenVerifier>,
    /// Per-user limit on the requests that call IMS with the caller's token.
    pub ims_limiter: ImsRateLimiter,
    /// `/readyz`'s cached database check.
    pub readiness: Arc<DbReadiness>,
}
