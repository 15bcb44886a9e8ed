//! The IMS client: keys, organizations and profile over reqwest, in the formats of `docs/ims.md`.
//!
//! `client.rs` makes the calls, `wire.rs` holds IMS's formats and what they are parsed into,
//! `cache.rs` the per-token cache of user calls. Calls made with a caller's token are cached per
//! token (keyed by a SHA-256 of it, never the token itself) for at most [`USER_CACHE_TTL`] and
//! never past the token's expiry; concurrent identical lookups are coalesced into one IMS call.
//! Switches bypass the cache ([`Freshness::Fresh`]): they act on what IMS says now. Those user
//! calls go through a circuit breaker ([`breaker`]): while IMS keeps failing they answer 503 at
//! once instead of each waiting out the timeout.

pub mod breaker;
mod cache;
mod client;
mod wire;

use std::sync::Arc;

use sha2::{Digest, Sha256};

pub use cache::{Freshness, REFUSED_TOKEN_TTL, USER_CACHE_TTL};
pub use client::ImsClient;
pub use wire::{ImsOrg, ImsProfile, Jwk, ProductContext, clean_text, is_unsafe_char, profile_matches};

/// What an IMS call can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ImsError {
    /// IMS could not be reached, timed out, answered 5xx or 429: retry later.
    #[error("IMS unavailable: {cause}")]
    Unavailable {
        /// Seconds to wait (from IMS's `Retry-After` where it sent one).
        retry_after_secs: u64,
        /// What happened.
        cause: Unavailability,
    },
    /// IMS refused the caller's token (401/403).
    #[error("IMS rejected the token")]
    Rejected,
    /// IMS answered something that is not what `docs/ims.md` describes.
    #[error("unusable IMS response: {0}")]
    BadResponse(String),
}

/// Why IMS is unavailable: decides whether a call is retried and whether it counts against IMS
/// in the circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unavailability {
    /// No answer within the call's timeout.
    #[error("timeout")]
    Timeout,
    /// No connection.
    #[error("unreachable")]
    Unreachable,
    /// A 5xx answer.
    #[error("{0} from IMS")]
    ServerError(u16),
    /// IMS's own 429: an answer, quickly given, whose `Retry-After` is passed on.
    #[error("429 from IMS")]
    RateLimited,
    /// The answer's body broke off.
    #[error("body read failed")]
    BodyReadFailed,
    /// Not asked: the circuit breaker is open.
    #[error("circuit open after repeated IMS failures")]
    CircuitOpen,
}

/// A caller's bearer token, passed through to IMS. Its `Debug` never shows it.
#[derive(Clone)]
pub struct BearerToken(Arc<str>);

impl BearerToken {
    /// Wraps a token already verified by the service.
    pub fn new(raw: &str) -> Self {
        Self(Arc::from(raw))
    }
    /// The key of this token's cached answers: a digest, so the cache never holds the token.
    fn cache_key(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }
    /// The raw token, for an `Authorization` header and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}
