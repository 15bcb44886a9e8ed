//! The signing keys of IMS: the JWKS by `kid`, with the `x5u` certificate as a fallback.
//!
//! Keys are cached in memory. An unknown `kid` triggers a JWKS refetch at most every
//! [`MIN_REFRESH_INTERVAL`] (so a flood of forged kids cannot hammer IMS); while IMS is unreachable
//! the cached keys keep serving. A successful refetch replaces the set, so a key IMS withdrew stops
//! verifying (one that publishes no usable key at all is ignored: the keys in hand stay). Each key
//! carries a fingerprint, so tokens verified by a key that IMS replaced under the same `kid` are
//! dropped from the verified-token cache. Certificates come only from the configured base URL, by a bare file name: never from
//! a URL a token names. A kid the JWKS listed once and no longer lists is refused, whatever
//! certificate of that name is still served. Downloaded certificates are kept for at most
//! [`CERT_TTL`] and their validity period is checked on every use; one download per name runs at a
//! time, names not found are remembered for [`MISSING_CERT_TTL`], and a token whose certificate
//! could not be downloaded yet because of the rate limit is answered 503 with `Retry-After`, not
//! 401 (so a flood of made-up names cannot lock real certificate keys out).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use sha2::{Digest, Sha256};

use crate::ims::{ImsClient, ImsError};

/// The least time between two JWKS fetches triggered by unknown kids.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(5);
/// The least time between two certificate downloads.
pub const MIN_CERT_INTERVAL: Duration = Duration::from_secs(1);
/// How long a downloaded certificate is used before it is downloaded again (never past its
/// `notAfter`), so a certificate IMS stops serving stops verifying.
pub const CERT_TTL: Duration = Duration::from_secs(3600);
/// How long a certificate name that was not found is not asked for again.
pub const MISSING_CERT_TTL: Duration = Duration::from_secs(300);
/// At most this many not-found names are remembered (names come from unauthenticated tokens).
const MAX_MISSING_CERTS: u64 = 10_000;
/// At most this many kids seen in the JWKS are remembered (IMS publishes a handful).
const MAX_SEEN_KIDS: usize = 4096;
/// How often the JWKS is refetched in the background, so withdrawn keys stop verifying.
pub const BACKGROUND_REFRESH: Duration = Duration::from_secs(600);
/// At most this many certificate keys are kept (names come from tokens, so they are bounded).
const MAX_CERT_KEYS: u64 = 64;

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

/// A downloaded certificate's key and validity period (Unix seconds).
struct Cert {
    published: Published,
    not_before: i64,
    not_after: i64,
}

impl Cert {
    fn valid_now(&self) -> bool {
        let now = chrono::Utc::now().timestamp();
        self.not_before <= now && now <= self.not_after
    }
}

struct CertExpiry;
impl moka::Expiry<String, Arc<Cert>> for CertExpiry {
    fn expire_after_create(&self, _: &String, v: &Arc<Cert>, _: Instant) -> Option<Duration> {
        let left = v.not_after.saturating_sub(chrono::Utc::now().timestamp());
        Some(CERT_TTL.min(Duration::from_secs(u64::try_from(left).unwrap_or(0))))
    }
}

/// Why no certificate key was found.
#[derive(Debug, Clone)]
enum CertMiss {
    /// The base does not have it (or it is unusable): remembered for [`MISSING_CERT_TTL`].
    NotFound,
    /// The download slot was taken: ask again in a second.
    Skipped,
    /// The base could not be reached.
    Unavailable(ImsError),
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
    cert_base: Option<String>,
    jwks: RwLock<HashMap<String, Published>>,
    /// Every kid the JWKS has listed: one no longer listed is withdrawn, certificate or not.
    seen_kids: RwLock<HashSet<String>>,
    /// Downloaded certificates; concurrent lookups of one name share one download.
    certs: moka::future::Cache<String, Arc<Cert>>,
    /// Names the certificate base did not have, not asked for again for a while.
    missing_certs: moka::sync::Cache<String, ()>,
    last_refresh: tokio::sync::Mutex<Option<Instant>>,
    last_cert_fetch: Mutex<Option<Instant>>,
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
    pub fn new(ims: ImsClient, cert_base: Option<String>) -> Self {
        Self {
            ims,
            cert_base,
            jwks: RwLock::default(),
            seen_kids: RwLock::default(),
            certs: moka::future::Cache::builder()
                .max_capacity(MAX_CERT_KEYS)
                .expire_after(CertExpiry)
                .build(),
            missing_certs: moka::sync::Cache::builder()
                .max_capacity(MAX_MISSING_CERTS)
                .time_to_live(MISSING_CERT_TTL)
                .build(),
            last_refresh: tokio::sync::Mutex::new(None),
            last_cert_fetch: Mutex::new(None),
            loaded: AtomicBool::new(false),
        }
    }

    /// Whether a JWKS has been loaded at least once (readiness).
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Relaxed)
    }

    /// Fetches the JWKS now and replaces the cached set; on failure the cached set stays.
    pub async fn refresh(&self) -> Result<usize, ImsError> {
        let mut last = self.last_refresh.lock().await;
        *last = Some(Instant::now());
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
        let refreshes = &crate::metrics::metrics().jwks_refreshes;
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
                        .get(&**name)
                        .await
                        .is_some_and(|c| c.published.fingerprint == *fp && c.valid_now())
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
        let lookups = &crate::metrics::metrics().key_cache;
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
        if let (Some(base), Some(name)) = (self.cert_base.as_deref(), x5u.filter(|n| sane_cert_name(n))) {
            match self.certificate(base, name).await {
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
        *last = Some(Instant::now());
        self.fetch_jwks().await.map(drop)
    }

    /// The certificate `name`: from the cache while it is valid, else downloaded (one download
    /// per name at a time, names not found remembered for a while).
    async fn certificate(&self, base: &str, name: &str) -> Result<Arc<Cert>, CertMiss> {
        if let Some(cert) = self.certs.get(name).await {
            if cert.valid_now() {
                return Ok(cert);
            }
            self.certs.invalidate(name).await;
        }
        if self.missing_certs.contains_key(name) {
            return Err(CertMiss::NotFound);
        }
        match self
            .certs
            .try_get_with(name.to_owned(), self.download_cert(base, name))
            .await
        {
            Ok(cert) if cert.valid_now() => Ok(cert),
            Ok(_) => Err(CertMiss::NotFound),
            Err(miss) => {
                if matches!(*miss, CertMiss::NotFound) {
                    self.missing_certs.insert(name.to_owned(), ());
                }
                Err((*miss).clone())
            }
        }
    }

    async fn download_cert(&self, base: &str, name: &str) -> Result<Arc<Cert>, CertMiss> {
        {
            // The slot is held only to take it, never across the download.
            let mut last = self
                .last_cert_fetch
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|t| t.elapsed() < MIN_CERT_INTERVAL) {
                return Err(CertMiss::Skipped);
            }
            *last = Some(Instant::now());
        }
        let bytes = match self.ims.certificate(base, name).await {
            Ok(b) => b,
            Err(ImsError::BadResponse(_) | ImsError::Rejected) => return Err(CertMiss::NotFound),
            Err(e) => return Err(CertMiss::Unavailable(e)),
        };
        match cert_from_bytes(&bytes) {
            Some(cert) => Ok(Arc::new(cert)),
            None => {
                tracing::warn!(certificate = name, "IMS certificate could not be used");
                Err(CertMiss::NotFound)
            }
        }
    }
}

/// A `kid`: 1 to 128 of `A-Z a-z 0-9 . _ -`; anything else is never looked up.
fn sane_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// An `x5u` IMS-style: a bare `<name>.cer` file name, no path, no scheme, no `..`.
fn sane_cert_name(s: &str) -> bool {
    sane_name(s) && s.ends_with(".cer") && !s.contains("..") && !s.starts_with('.')
}

/// The RSA key and validity of a PEM or DER certificate that is currently valid.
fn cert_from_bytes(bytes: &[u8]) -> Option<Cert> {
    let der = match x509_parser::pem::parse_x509_pem(bytes) {
        Ok((_, pem)) => pem.contents,
        Err(_) => bytes.to_vec(),
    };
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let validity = cert.validity();
    if !validity.is_valid() {
        return None;
    }
    let (not_before, not_after) = (validity.not_before.timestamp(), validity.not_after.timestamp());
    match cert.public_key().parsed().ok()? {
        x509_parser::public_key::PublicKey::RSA(rsa) => {
            let strip = |b: &[u8]| {
                let start = b.iter().position(|x| *x != 0).unwrap_or(b.len());
                URL_SAFE_NO_PAD.encode(&b[start..])
            };
            let (n, e) = (strip(rsa.modulus), strip(rsa.exponent));
            let key = DecodingKey::from_rsa_components(&n, &e).ok()?;
            Some(Cert {
                published: Published {
                    key: Arc::new(key),
                    fingerprint: fingerprint(&n, &e),
                },
                not_before,
                not_after,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_key_names_are_refused_before_any_lookup() {
        assert!(sane_name("ims_na1-key-at-1"));
        assert!(!sane_name("../../etc/passwd"));
        assert!(!sane_name(&"k".repeat(129)));
        assert!(!sane_name(""));
        assert!(sane_cert_name("ims_na1-key-at-1.cer"));
        assert!(!sane_cert_name("https://evil.example/key.cer"));
        assert!(!sane_cert_name("..cer"));
        assert!(!sane_cert_name("a/b.cer"));
        assert!(!sane_cert_name("key.pem"));
    }
}
