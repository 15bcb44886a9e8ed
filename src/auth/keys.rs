//! The signing keys of IMS: the JWKS by `kid`, with the `x5u` certificate as a fallback.
//!
//! Keys are cached in memory. An unknown `kid` triggers a JWKS refetch at most every
//! [`MIN_REFRESH_INTERVAL`] (so a flood of forged kids cannot hammer IMS); while IMS is unreachable
//! the cached keys keep serving. A successful refetch replaces the set, so a key IMS withdrew stops
//! verifying (one that publishes no usable key at all is ignored: the keys in hand stay). Each key
//! carries a fingerprint, so tokens verified by a key that IMS replaced under the same `kid` are
//! dropped from the verified-token cache. Certificates come only from the configured base URL, by a bare file name: never from
//! a URL a token names.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
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
/// How often the JWKS is refetched in the background, so withdrawn keys stop verifying.
pub const BACKGROUND_REFRESH: Duration = Duration::from_secs(600);
/// At most this many certificate keys are kept (names come from tokens, so they are bounded).
const MAX_CERT_KEYS: usize = 64;

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
    cert_base: Option<String>,
    jwks: RwLock<HashMap<String, Published>>,
    certs: RwLock<HashMap<String, Published>>,
    last_refresh: tokio::sync::Mutex<Option<Instant>>,
    last_cert_fetch: tokio::sync::Mutex<Option<Instant>>,
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
}

impl KeyStore {
    /// A store that fetches from `ims`, and certificates from `cert_base` when configured.
    pub fn new(ims: ImsClient, cert_base: Option<String>) -> Self {
        Self {
            ims,
            cert_base,
            jwks: RwLock::default(),
            certs: RwLock::default(),
            last_refresh: tokio::sync::Mutex::new(None),
            last_cert_fetch: tokio::sync::Mutex::new(None),
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

    fn cached_cert(&self, name: &str) -> Option<Published> {
        self.certs.read().ok()?.get(name).cloned()
    }

    /// Whether the key that verified a cached token is still published under its name: a withdrawn
    /// or replaced key must stop admitting tokens at once, cached or not.
    pub fn still_valid(&self, source: &KeySource) -> bool {
        let same = |p: Option<&Published>, fp: &Fingerprint| p.is_some_and(|p| p.fingerprint == *fp);
        match source {
            KeySource::Jwks(kid, fp) => self.jwks.read().is_ok_and(|m| same(m.get(&**kid), fp)),
            KeySource::Certificate(name, fp) => self.certs.read().is_ok_and(|m| same(m.get(&**name), fp)),
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
        if let (Some(base), Some(name)) = (self.cert_base.as_deref(), x5u.filter(|n| sane_cert_name(n))) {
            let found = match self.cached_cert(name) {
                Some(key) => Some(key),
                None => match self.fetch_cert_if_due(base, name).await {
                    Ok(found) => found,
                    Err(e) => {
                        ims_error = Some(e);
                        None
                    }
                },
            };
            if let Some(p) = found {
                return Ok((p.key, KeySource::Certificate(Arc::from(name), p.fingerprint)));
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

    async fn fetch_cert_if_due(&self, base: &str, name: &str) -> Result<Option<Published>, ImsError> {
        let mut last = self.last_cert_fetch.lock().await;
        if let Some(key) = self.cached_cert(name) {
            return Ok(Some(key));
        }
        if last.is_some_and(|t| t.elapsed() < MIN_CERT_INTERVAL) {
            return Ok(None);
        }
        *last = Some(Instant::now());
        let bytes = match self.ims.certificate(base, name).await {
            Ok(b) => b,
            Err(ImsError::BadResponse(_) | ImsError::Rejected) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(key) = key_from_certificate(&bytes) else {
            tracing::warn!(certificate = name, "IMS certificate could not be used");
            return Ok(None);
        };
        if let Ok(mut certs) = self.certs.write() {
            if certs.len() >= MAX_CERT_KEYS {
                certs.clear();
            }
            certs.insert(name.to_owned(), key.clone());
        }
        Ok(Some(key))
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

/// The RSA key of a PEM or DER certificate that is currently valid.
fn key_from_certificate(bytes: &[u8]) -> Option<Published> {
    let der = match x509_parser::pem::parse_x509_pem(bytes) {
        Ok((_, pem)) => pem.contents,
        Err(_) => bytes.to_vec(),
    };
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    if !cert.validity().is_valid() {
        return None;
    }
    match cert.public_key().parsed().ok()? {
        x509_parser::public_key::PublicKey::RSA(rsa) => {
            let strip = |b: &[u8]| {
                let start = b.iter().position(|x| *x != 0).unwrap_or(b.len());
                URL_SAFE_NO_PAD.encode(&b[start..])
            };
            let (n, e) = (strip(rsa.modulus), strip(rsa.exponent));
            let key = DecodingKey::from_rsa_components(&n, &e).ok()?;
            Some(Published {
                key: Arc::new(key),
                fingerprint: fingerprint(&n, &e),
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
