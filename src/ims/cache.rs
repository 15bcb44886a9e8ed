//! The cache of user calls: one answer per token (keyed by its digest), each kept at most
//! [`USER_CACHE_TTL`] and never past the token's expiry; concurrent lookups of one token share
//! one IMS call.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;

use super::{BearerToken, ImsError};

/// How long an org list or profile fetched with a user's token is reused.
pub const USER_CACHE_TTL: Duration = Duration::from_secs(60);
/// How many tokens' answers are cached at most (each entry is small).
const USER_CACHE_CAPACITY: u64 = 10_000;
/// How long IMS's refusal of a token (401/403) is remembered: meanwhile every call made with that
/// token is refused from memory, so a signed-out user's token costs IMS one call, not one per read.
pub const REFUSED_TOKEN_TTL: Duration = Duration::from_secs(30);

/// The tokens IMS refused lately, by digest (never the token itself). Cheap to clone.
#[derive(Clone)]
pub(super) struct RefusedTokens {
    entries: moka::sync::Cache<[u8; 32], ()>,
}

impl RefusedTokens {
    pub(super) fn new() -> Self {
        Self {
            entries: moka::sync::Cache::builder()
                .max_capacity(USER_CACHE_CAPACITY)
                .time_to_live(REFUSED_TOKEN_TTL)
                .build(),
        }
    }

    /// Whether IMS refused `token` within the last [`REFUSED_TOKEN_TTL`].
    pub(super) fn contains(&self, token: &BearerToken) -> bool {
        self.entries.contains_key(&token.cache_key())
    }

    /// Remembers that IMS refused `token`.
    pub(super) fn insert(&self, token: &BearerToken) {
        self.entries.insert(token.cache_key(), ());
    }
}

/// Whether a user call may be answered from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// A cached answer will do (reads: the org listing, who may read or administer a tenant).
    Cached,
    /// Ask IMS now, and cache its answer (a switch or disconnect acts on what IMS says now).
    Fresh,
}

/// Cached value with its own expiry (bounded by the token's life).
struct Timed<T> {
    value: Arc<T>,
    ttl: Duration,
}

// Not derived: cloning shares the Arc whatever T is.
impl<T> Clone for Timed<T> {
    fn clone(&self) -> Self {
        Self {
            value: self.value.clone(),
            ttl: self.ttl,
        }
    }
}

struct PerEntryTtl;
impl<T> moka::Expiry<[u8; 32], Timed<T>> for PerEntryTtl {
    fn expire_after_create(&self, _: &[u8; 32], v: &Timed<T>, _: Instant) -> Option<Duration> {
        Some(v.ttl)
    }
}

/// One kind of user call's answers, per token. Cheap to clone (the entries are shared).
pub(super) struct UserCache<T> {
    entries: Cache<[u8; 32], Timed<T>>,
}

// Not derived: cloning shares the entries whatever T is.
impl<T> Clone for UserCache<T> {
    fn clone(&self) -> Self {
        Self {
            entries: self.entries.clone(),
        }
    }
}

impl<T: Send + Sync + 'static> UserCache<T> {
    pub(super) fn new() -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(USER_CACHE_CAPACITY)
                .expire_after(PerEntryTtl)
                .build(),
        }
    }

    /// Whether an answer for `token` is cached (a lookup allowing the cache would not ask IMS).
    pub(super) fn contains(&self, token: &BearerToken) -> bool {
        self.entries.contains_key(&token.cache_key())
    }

    /// `token`'s answer: the cached one if `freshness` allows and there is one, else `fetch`'s
    /// (cached for what is left of the token's life, `remaining`, at most [`USER_CACHE_TTL`]).
    pub(super) async fn get(
        &self,
        token: &BearerToken,
        remaining: Duration,
        freshness: Freshness,
        fetch: impl Future<Output = Result<T, ImsError>>,
    ) -> Result<Arc<T>, ImsError> {
        let key = token.cache_key();
        let ttl = USER_CACHE_TTL.min(remaining);
        let fetch = async move {
            fetch.await.map(|value| Timed {
                value: Arc::new(value),
                ttl,
            })
        };
        match freshness {
            Freshness::Fresh => {
                let timed = fetch.await?;
                let value = timed.value.clone();
                self.entries.insert(key, timed).await;
                Ok(value)
            }
            Freshness::Cached => self
                .entries
                .try_get_with(key, fetch)
                .await
                .map(|t| t.value)
                .map_err(|e| (*e).clone()),
        }
    }
}
