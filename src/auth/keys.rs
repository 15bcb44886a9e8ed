//! The signing keys of IMS: the JWKS by `kid`, with the `x5u` certificate as a fallback.
//!
//! Keys are cached in memory. An unknown `kid` triggers a JWKS refetch at most every
//! [`MIN_REFRESH_INTERVAL`] (so a flood of forged kids cannot hammer IMS); while IMS is unreachable
//! the cached keys keep serving. A successful refetch replaces the set, so a key IMS withdrew stops
//! verifying (one that publishes no usable key at all is ignored: the keys in hand stay). Each key
//! carries a fingerprint, so tokens verified by a key that IMS replaced under the same `kid` are
//! dropped from the verified-token cache. Certificates come only from the configured base URL, by a
//! bare file name: never from a URL a token names. A kid the JWKS listed once and no longer lists is
//! refused, whatever certificate of that name is still served. How certificates are downloaded, and
//! in which order under a flood of made-up names: [`certs`].
//!
//! Clocks: the refetch interval is on tokio's clock ([`tokio::time::Instant`]): the tests pause and
//! advance it, so none of this is tested by waiting.

mod certs;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::DecodingKey;
use sha2::{Digest, Sha256};

use crate::ims::{ImsClient, ImsError};
use certs::{CertCache, CertMiss};

/// The least time between two JWKS fetches triggered by unknown kids.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// At most this many kids seen in the JWKS are remembered (IMS publishes a handful).
const MAX_SEEN_KIDS: usize = 4096;
/// How often the JWKS is refetched in the background, so withdrawn keys stop verifying.
pub const BACKGROUND_REFRESH: Duration = Duration::from_secs(600);

/// A key that verifies RS256 signatures.
pub type VerifyingKey = Arc<DecodingKey>;

/// A SHA-256 of a key's modulus and exponent: tells a republished `kid` from the key it had.
pub type Fingerprint = [u8; 32];

/// Where a key came from, so a cached verification can be dropped when IMS withdraws the key or
/// publishes another key under its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The JWKS, by `kid`, and the key it had.
    Jwks(Arc<str>, Fingerprint),
    /// A certificate, by file name, and its key.
    Certificate(Arc<str>, Fingerprint),
}

/// A key with its fingerprint.
#[derive(Clone)]
struct Published {
    key: VerifyingKey,
    fingerprint: Fingerprint,
}

fn fingerprint(n: &str, e: &str) -> Fingerprint {
    let mut h = Sha256::new();
    h.update(n.as_bytes());
    h.update(b".");
    h.update(e.as_bytes());
    h.finalize().into()
}

/// The key cache.
pub struct KeyStore {
    ims: ImsClient,
    jwks: RwLock<HashMap<String, Published>>,
    /// Every kid the JWKS has listed: one no longer listed is withdrawn, certificate or not.
    seen_kids: RwLock<HashSet<String>>,
    /// The certificates, when a certificate base is configured.
    certs: Option<Arc<CertCache>>,
    last_refresh: tokio::sync::Mutex<Option<tokio::time::Instant>>,
    loaded: AtomicBool,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("loaded", &self.is_loaded())
            .finish_non_exhaustive()
    }
}

/// Why no key could be found for a token.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The token names a key IMS does not publish (or a name that cannot be one).
    #[error("unknown signing key")]
    Unknown,
    /// The key is unknown and IMS could not be asked.
    #[error("IMS keys unavailable")]
    Unavailable(#[source] ImsError),
    /// The key may be a certificate not downloaded yet: its download was put off by the rate limit.
    #[error("certificate download deferred")]
    Deferred,
}

impl KeyStore {
    /// A store that fetches from `ims`, and certificates from `cert_base` when configured.
    /// Where key lookups and refreshes are counted (those of its IMS client).
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        self.ims.metrics()
    }

    pub fn new(ims: ImsClient, cert_base: Option<String>) -> Self {
        let certs = cert_base.map(|base| Arc::new(CertCache::new(ims.clone(), base)));
        Self {
            ims,
            jwks: RwLock::default(),
            seen_kids: RwLock::default(),
            certs,
            last_refresh: tokio::sync::Mutex::new(None),
            loaded: AtomicBool::new(false),
        }
    }

    /// The same store looking up only certificate names that start with `prefix` (the configured
    /// IMS's form, e.g. `ims_na1-key-`); `None` checks no prefix.
    pub fn with_cert_name_prefix(mut self, prefix: Option<String>) -> Self {
        if let Some(certs) = self.certs.as_mut().and_then(Arc::get_mut) {
            certs.name_prefix = prefix;
        }
        self
    }

    /// Whether a JWKS has been loaded at least once (readiness).
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Relaxed)
    }

    /// Fetches the JWKS now and replaces the cached set; on failure the cached set stays.
    pub async fn refresh(&self) -> Result<usize, ImsError> {
        let mut last = self.last_refresh.lock().await;
        *last = Some(tokio::time::Instant::now());
        self.fetch_jwks().await
    }

    async fn fetch_jwks(&self) -> Result<usize, ImsError> {
        let keys = self.ims.keys().await?;
        let mut set = HashMap::new();
        for jwk in keys {
            let usable = jwk.kty == "RSA"
                && jwk.key_use.as_deref().is_none_or(|u| u == "sig")
                && jwk.alg.as_deref().is_none_or(|a| a == "RS256")
                && sane_name(&jwk.kid);
            if !usable {
                continue;
            }
            if let Ok(key) = DecodingKey::from_rsa_components(&jwk.n, &jwk.e) {
                let fingerprint = fingerprint(&jwk.n, &jwk.e);
                set.insert(
                    jwk.kid,
                    Published {
                        key: Arc::new(key),
                        fingerprint,
                    },
                );
            }
        }
        let n = set.len();
        let refreshes = &self.ims.metrics().jwks_refreshes;
        let Ok(mut jwks) = self.jwks.write() else {
            return Ok(0);
        };
        if n == 0 && !jwks.is_empty() {
            // IMS never publishes an empty set on purpose: keep serving with the keys in hand
            // rather than refusing every token until the next refresh.
            refreshes.with_label_values(&["no_usable_key"]).inc();
            tracing::warn!(
                kept = jwks.len(),
                "IMS published no usable signing key; keeping the keys in hand"
            );
            return Ok(jwks.len());
        }
        if let Ok(mut seen) = self.seen_kids.write() {
            for kid in set.keys() {
                if seen.len() < MAX_SEEN_KIDS {
                    seen.insert(kid.clone());
                }
            }
        }
        *jwks = set;
        drop(jwks);
        self.loaded.store(true, Ordering::Relaxed);
        if n == 0 {
            refreshes.with_label_values(&["no_usable_key"]).inc();
            tracing::warn!("IMS published no usable signing key");
        } else {
            refreshes.with_label_values(&["loaded"]).inc();
            tracing::info!(keys = n, "IMS signing keys loaded");
        }
        Ok(n)
    }

    fn cached(&self, kid: &str) -> Option<Published> {
        self.jwks.read().ok()?.get(kid).cloned()
    }

    /// Whether `kid` was listed in the JWKS once and is not any more.
    fn withdrawn(&self, kid: &str) -> bool {
        self.seen_kids.read().is_ok_and(|s| s.contains(kid))
            && self.jwks.read().is_ok_and(|m| !m.contains_key(kid))
    }

    /// Whether the token's header names a key IMS withdrew from the JWKS, by `kid` or by the
    /// certificate of that name: such a key is refused even if its certificate is still served.
    fn names_withdrawn_key(&self, kid: Option<&str>, x5u: Option<&str>) -> bool {
        kid.is_some_and(|k| self.withdrawn(k))
            || x5u
                .and_then(|n| n.strip_suffix(".cer"))
                .is_some_and(|k| self.withdrawn(k))
    }

    /// Whether the key that verified a cached token is still published under its name: a withdrawn
    /// or replaced key, or a certificate past its validity, must stop admitting tokens at once.
    pub async fn still_valid(&self, source: &KeySource) -> bool {
        match source {
            KeySource::Jwks(kid, fp) => self
                .jwks
                .read()
                .is_ok_and(|m| m.get(&**kid).is_some_and(|p| p.fingerprint == *fp)),
            KeySource::Certificate(name, fp) => {
                !self.names_withdrawn_key(None, Some(name))
                    && self
                        .certs
                        .as_ref()
                        .and_then(|c| c.in_use(name))
                        .is_some_and(|c| c.published.fingerprint == *fp)
            }
        }
    }

    /// The key for a token's header: the JWKS key named by `kid`, else the certificate named by
    /// `x5u` from the configured base URL.
    pub async fn key_for(
        &self,
        kid: Option<&str>,
        x5u: Option<&str>,
    ) -> Result<(VerifyingKey, KeySource), KeyError> {
        let kid = kid.filter(|k| sane_name(k));
        let lookups = &self.ims.metrics().key_cache;
        if let Some(kid) = kid
            && let Some(p) = self.cached(kid)
        {
            lookups.with_label_values(&["hit"]).inc();
            return Ok((p.key, KeySource::Jwks(Arc::from(kid), p.fingerprint)));
        }
        lookups.with_label_values(&["miss"]).inc();
        let mut ims_error = None;
        if let Some(kid) = kid {
            if let Err(e) = self.refresh_if_due().await {
                ims_error = Some(e);
            }
            if let Some(p) = self.cached(kid) {
                return Ok((p.key, KeySource::Jwks(Arc::from(kid), p.fingerprint)));
            }
        }
        if self.names_withdrawn_key(kid, x5u) {
            return Err(KeyError::Unknown);
        }
        let certs = self.certs.as_ref();
        if let (Some(certs), Some(name)) = (certs, x5u.filter(|n| certs.is_some_and(|c| c.of_form(n, kid)))) {
            match certs.certificate(name).await {
                Ok(c) => {
                    let source = KeySource::Certificate(Arc::from(name), c.published.fingerprint);
                    return Ok((c.published.key.clone(), source));
                }
                Err(CertMiss::NotFound) => {}
                // Not a 401: the key may well exist; the caller is told when to try again.
                Err(CertMiss::Skipped) => return Err(KeyError::Deferred),
                // The certificate base is down: the key may well exist, so the token is not
                // refused (a 401 would make clients throw good tokens away); they retry instead.
                Err(CertMiss::Unavailable(e)) => return Err(KeyError::Unavailable(e)),
            }
        }
        Err(match ims_error {
            // Only when nothing is cached can IMS being down explain the miss.
            Some(e) if !self.is_loaded() => KeyError::Unavailable(e),
            _ => KeyError::Unknown,
        })
    }

    async fn refresh_if_due(&self) -> Result<(), ImsError> {
        let mut last = self.last_refresh.lock().await;
        if last.is_some_and(|t| t.elapsed() < MIN_REFRESH_INTERVAL) {
            return Ok(());
        }
        *last = Some(tokio::time::Instant::now());
        self.fetch_jwks().await.map(drop)
    }
}

/// A `kid`: 1 to 128 of `A-Z a-z 0-9 . _ -`; anything else is never looked up.
fn sane_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use tokio::time::Instant;

    use super::*;

    fn store() -> KeyStore {
        // Nothing listens there: a download started by a test fails at once.
        let ims = ImsClient::new("http://127.0.0.1:1", Duration::from_secs(1)).unwrap();
        KeyStore::new(ims, Some("http://127.0.0.1:1/keys/".to_owned()))
            .with_cert_name_prefix(Some("ims_na1-key-".to_owned()))
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_kids_fetch_the_jwks_at_most_once_per_min_refresh_interval() {
        let store = store();
        let last = async || *store.last_refresh.lock().await;
        let t0 = Instant::now();
        // The fetch fails (nothing listens): it still counts, and the kid stays unknown.
        assert!(store.key_for(Some("forged-1"), None).await.is_err());
        assert_eq!(last().await, Some(t0));
        tokio::time::sleep_until(t0 + MIN_REFRESH_INTERVAL - Duration::from_millis(1)).await;
        assert!(store.key_for(Some("forged-2"), None).await.is_err());
        assert_eq!(last().await, Some(t0), "no fetch within the interval");
        tokio::time::sleep_until(t0 + MIN_REFRESH_INTERVAL).await;
        assert!(store.key_for(Some("forged-3"), None).await.is_err());
        assert_eq!(
            last().await,
            Some(t0 + MIN_REFRESH_INTERVAL),
            "fetched again after it"
        );
    }

    #[test]
    fn hostile_key_names_are_refused_before_any_lookup() {
        assert!(sane_name("ims_na1-key-at-1"));
        assert!(!sane_name("../../etc/passwd"));
        assert!(!sane_name(&"k".repeat(129)));
        assert!(!sane_name(""));
    }
}
