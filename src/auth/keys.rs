//! The signing keys of IMS: the JWKS by `kid`, with the `x5u` certificate as a fallback.
//!
//! Keys are cached in memory. An unknown `kid` triggers a JWKS refetch at most every
//! [`MIN_REFRESH_INTERVAL`] (so a flood of forged kids cannot hammer IMS); while IMS is unreachable
//! the cached keys keep serving. A successful refetch replaces the set, so a key IMS withdrew stops
//! verifying (one that publishes no usable key at all is ignored: the keys in hand stay). Each key
//! carries a fingerprint, so tokens verified by a key that IMS replaced under the same `kid` are
//! dropped from the verified-token cache. Certificates come only from the configured base URL, by a bare file name: never from
//! a URL a token names. A kid the JWKS listed once and no longer lists is refused, whatever
//! certificate of that name is still served.
//!
//! Certificates: only a name of the configured IMS's form is looked up (`<kid>.cer` of the token's
//! own `kid`, starting with the configured prefix, e.g. `ims_na1-key-`). One download starts per
//! [`MIN_CERT_INTERVAL`], of the name first in line among those requests wait on: a certificate in
//! use about to lapse; then a name the base served before (a genuine one, downloaded again); then
//! the name asked for in the most distinct seconds lately (a genuine token's clients come back
//! second after second, where a made-up name is worth one download to a flood, as the base's "not
//! found" is remembered, so its requests crowd into a moment however many there are); then the name
//! asked for most. A name whose download failed goes last for [`CERT_FAILURE_KEPT`]. So a flood of
//! made-up names, new or each reused many times, delays a genuine certificate by a few seconds. A request waits up to
//! [`CERT_WAIT`] for its certificate, then is answered 503 with `Retry-After` (not 401: the key
//! may well exist). A downloaded certificate is used for at most [`CERT_TTL`] (never past its
//! `notAfter`); one in use is downloaded again in its last [`CERT_REFRESH_AHEAD`], ahead of all
//! other names, while the one in hand keeps serving. Names not found are remembered for
//! [`MISSING_CERT_TTL`].
//!
//! Clocks: the intervals above are on tokio's clock ([`tokio::time::Instant`]), a certificate's
//! validity period on the wall clock the store is given (the system's in service): the tests pause
//! and advance the one and set the other, so none of this is tested by waiting.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

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
/// How long a request waits for its certificate's download before it is told to retry (503).
pub const CERT_WAIT: Duration = Duration::from_secs(1);
/// How long before a certificate in use lapses ([`CERT_TTL`]) it is downloaded again.
pub const CERT_REFRESH_AHEAD: Duration = Duration::from_secs(300);
/// How long the requests for a name are counted (the download order's first criterion).
const CERT_ASKS_TTL: Duration = Duration::from_secs(60);
/// At most this many names' asks are counted (names come from unauthenticated tokens).
const MAX_ASKED_NAMES: u64 = 100_000;
/// At most this many names are waited on at once; a request for another is told to retry.
const MAX_WANTED_CERTS: usize = 10_000;
/// How long a failed download's error is kept for the requests that waited on it (and the name
/// goes last in line).
const CERT_FAILURE_KEPT: Duration = Duration::from_secs(10);
/// How long a name the base served is first in line for a download again (its certificate lapsed
/// or was evicted), and at most how many such names are kept.
const SERVED_CERT_TTL: Duration = Duration::from_secs(24 * 3600);
const MAX_SERVED_CERTS: u64 = 1_024;
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

/// The wall clock a certificate's validity period is read against: [`SystemTime::now`] in
/// service, one the test sets in tests.
type WallClock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// `t` in whole Unix seconds (rounded down), and whether a fraction of a second is left over.
fn unix_time(t: SystemTime) -> (i64, bool) {
    let t = chrono::DateTime::<chrono::Utc>::from(t);
    (t.timestamp(), t.timestamp_subsec_nanos() > 0)
}

/// A downloaded certificate's key and validity period (Unix seconds).
struct Cert {
    published: Published,
    not_before: i64,
    not_after: i64,
}

impl Cert {
    /// Within its validity period at `now` (to the second).
    fn valid_at(&self, now: SystemTime) -> bool {
        let (now, _) = unix_time(now);
        self.not_before <= now && now <= self.not_after
    }
}

/// A downloaded certificate and when it was downloaded.
struct Held {
    cert: Arc<Cert>,
    fetched: tokio::time::Instant,
}

impl Held {
    /// Usable at `now` (wall clock): within its validity period and downloaded less than
    /// [`CERT_TTL`] ago.
    fn usable(&self, now: SystemTime) -> bool {
        self.cert.valid_at(now) && self.fetched.elapsed() < CERT_TTL
    }
}

/// Why no certificate key was found.
#[derive(Debug, Clone)]
enum CertMiss {
    /// The base does not have it (or it is unusable): remembered for [`MISSING_CERT_TTL`].
    NotFound,
    /// Not downloaded within [`CERT_WAIT`] (other names went first): ask again in a second.
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
    jwks: RwLock<HashMap<String, Published>>,
    /// Every kid the JWKS has listed: one no longer listed is withdrawn, certificate or not.
    seen_kids: RwLock<HashSet<String>>,
    /// The certificates, when a certificate base is configured.
    certs: Option<Arc<CertCache>>,
    last_refresh: tokio::sync::Mutex<Option<tokio::time::Instant>>,
    loaded: AtomicBool,
}

/// The certificates of the configured base: downloaded one at a time, the most wanted first.
struct CertCache {
    ims: ImsClient,
    base: String,
    /// The start every certificate name of the configured IMS has (`None`: not checked).
    name_prefix: Option<String>,
    /// Downloaded certificates (at most [`MAX_CERT_KEYS`]: names come from tokens).
    held: RwLock<HashMap<String, Held>>,
    /// What certificates' validity periods are read against.
    wall_clock: WallClock,
    /// Names the certificate base did not have, and when: not asked for again for
    /// [`MISSING_CERT_TTL`] (the cache forgets them then too, keeping memory bounded).
    missing: moka::sync::Cache<String, tokio::time::Instant>,
    /// Requests per name lately: a genuine certificate is asked for again and again.
    asks: moka::sync::Cache<String, Arc<Asks>>,
    /// Names the base served a usable certificate for (a genuine name, if ever it is needed again).
    served: moka::sync::Cache<String, ()>,
    /// Where the seconds of [`Asks`] count from.
    epoch: tokio::time::Instant,
    downloads: Mutex<Downloads>,
    /// Wakes the waiting requests when a download settled.
    settled: tokio::sync::Notify,
}

/// What is being downloaded and what is waited for.
#[derive(Default)]
struct Downloads {
    /// Names requests wait on (or to refresh), by name.
    wanted: HashMap<String, Wanted>,
    /// The name being downloaded.
    in_flight: Option<String>,
    /// When the last download started.
    last_start: Option<tokio::time::Instant>,
    /// Recent failed downloads (the base unreachable) and when they failed.
    failures: HashMap<String, (ImsError, tokio::time::Instant)>,
}

/// How a name has been asked for lately.
#[derive(Debug)]
struct Asks {
    /// In how many distinct seconds.
    seconds: AtomicU32,
    /// The last of them (seconds since the cache's epoch; `u64::MAX`: none yet).
    last_second: AtomicU64,
    /// How many times.
    count: AtomicU32,
}

impl Asks {
    fn new() -> Self {
        Self {
            seconds: AtomicU32::new(0),
            last_second: AtomicU64::new(u64::MAX),
            count: AtomicU32::new(0),
        }
    }

    /// Counts one request, in second `second`.
    fn note(&self, second: u64) {
        if self.last_second.swap(second, Ordering::Relaxed) != second {
            self.seconds.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Clone, Copy)]
struct Wanted {
    waiters: u32,
    since: tokio::time::Instant,
    /// A certificate in use close to lapsing: downloaded before any other name.
    refresh: bool,
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
        let certs = cert_base.map(|base| {
            Arc::new(CertCache {
                ims: ims.clone(),
                base,
                name_prefix: None,
                held: RwLock::default(),
                wall_clock: Arc::new(SystemTime::now),
                missing: moka::sync::Cache::builder()
                    .max_capacity(MAX_MISSING_CERTS)
                    .time_to_live(MISSING_CERT_TTL)
                    .build(),
                asks: moka::sync::Cache::builder()
                    .max_capacity(MAX_ASKED_NAMES)
                    .time_to_live(CERT_ASKS_TTL)
                    .build(),
                served: moka::sync::Cache::builder()
                    .max_capacity(MAX_SERVED_CERTS)
                    .time_to_live(SERVED_CERT_TTL)
                    .build(),
                epoch: tokio::time::Instant::now(),
                downloads: Mutex::default(),
                settled: tokio::sync::Notify::new(),
            })
        });
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

    /// The same store reading certificates' validity periods against `clock`.
    #[cfg(test)]
    fn with_wall_clock(mut self, clock: WallClock) -> Self {
        if let Some(certs) = self.certs.as_mut().and_then(Arc::get_mut) {
            certs.wall_clock = clock;
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

impl CertCache {
    /// Whether `name` is a certificate name of the configured IMS's form: a bare `<kid>.cer` of the
    /// token's own `kid`, starting with the configured prefix. Anything else is never downloaded.
    fn of_form(&self, name: &str, kid: Option<&str>) -> bool {
        sane_cert_name(name)
            && kid.is_some_and(|k| name.strip_suffix(".cer") == Some(k))
            && self.name_prefix.as_deref().is_none_or(|p| name.starts_with(p))
    }

    /// The wall clock's time now.
    fn wall_now(&self) -> SystemTime {
        (self.wall_clock)()
    }

    /// Whether `name` was found missing less than [`MISSING_CERT_TTL`] ago.
    fn is_missing(&self, name: &str) -> bool {
        self.missing
            .get(name)
            .is_some_and(|since| since.elapsed() < MISSING_CERT_TTL)
    }

    /// The certificate `name` if it is held and usable.
    fn usable(&self, name: &str) -> Option<Arc<Cert>> {
        let now = self.wall_now();
        let held = self.held.read().ok()?;
        held.get(name).filter(|h| h.usable(now)).map(|h| h.cert.clone())
    }

    /// The certificate `name` if it is held and usable, put first in line for a download when it
    /// is about to lapse (tokens verified by it are checked here on every use, cached or not).
    fn in_use(self: &Arc<Self>, name: &str) -> Option<Arc<Cert>> {
        let now = self.wall_now();
        let (cert, due) = {
            let held = self.held.read().ok()?;
            let h = held.get(name).filter(|h| h.usable(now))?;
            let due = h.fetched.elapsed() >= CERT_TTL.saturating_sub(CERT_REFRESH_AHEAD);
            (h.cert.clone(), due)
        };
        if due {
            self.refresh_soon(name);
        }
        Some(cert)
    }

    /// The certificate `name`: the one held while usable (downloaded again ahead of its lapse),
    /// else downloaded, waiting at most [`CERT_WAIT`].
    async fn certificate(self: &Arc<Self>, name: &str) -> Result<Arc<Cert>, CertMiss> {
        if let Some(cert) = self.in_use(name) {
            return Ok(cert);
        }
        if self.is_missing(name) {
            return Err(CertMiss::NotFound);
        }
        self.wait_for(name).await
    }

    /// Puts a certificate in use that is about to lapse first in line (the one held serves
    /// meanwhile), and starts its download if the slot is free.
    fn refresh_soon(self: &Arc<Self>, name: &str) {
        {
            let mut d = self.downloads();
            if d.in_flight.as_deref() == Some(name) {
                return;
            }
            d.wanted
                .entry(name.to_owned())
                .or_insert(Wanted {
                    waiters: 0,
                    since: tokio::time::Instant::now(),
                    refresh: true,
                })
                .refresh = true;
        }
        self.start_next();
    }

    fn downloads(&self) -> std::sync::MutexGuard<'_, Downloads> {
        // Plain bookkeeping, always whole: a panic elsewhere cannot leave it torn.
        self.downloads.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits (at most [`CERT_WAIT`]) until `name` is downloaded, found missing or failed.
    async fn wait_for(self: &Arc<Self>, name: &str) -> Result<Arc<Cert>, CertMiss> {
        let since = tokio::time::Instant::now();
        self.asks
            .get_with_by_ref(name, || Arc::new(Asks::new()))
            .note(since.duration_since(self.epoch).as_secs());
        let _waiting = self.register(name, since)?;
        let deadline = since + CERT_WAIT;
        loop {
            // Registered before the outcome is looked at, so a download settling in between is
            // not missed.
            let settled = self.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            if let Some(outcome) = self.outcome(name, since) {
                return outcome;
            }
            let slot_frees = self.start_next();
            if tokio::time::Instant::now() >= deadline {
                return Err(CertMiss::Skipped);
            }
            let wake = slot_frees.map_or(deadline, |t| t.min(deadline));
            tokio::select! {
                () = &mut settled => {}
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// Counts a request waiting on `name` until the guard is dropped (also when the request is).
    fn register(&self, name: &str, since: tokio::time::Instant) -> Result<Waiting<'_>, CertMiss> {
        let mut d = self.downloads();
        let full = d.wanted.len() >= MAX_WANTED_CERTS;
        match d.wanted.get_mut(name) {
            Some(w) => w.waiters += 1,
            None if full => return Err(CertMiss::Skipped),
            None => {
                d.wanted.insert(
                    name.to_owned(),
                    Wanted {
                        waiters: 1,
                        since,
                        refresh: false,
                    },
                );
            }
        }
        Ok(Waiting {
            cache: self,
            name: name.to_owned(),
        })
    }

    /// What became of `name` for a request waiting since `since`, if anything yet.
    fn outcome(&self, name: &str, since: tokio::time::Instant) -> Option<Result<Arc<Cert>, CertMiss>> {
        if let Some(cert) = self.usable(name) {
            return Some(Ok(cert));
        }
        if self.is_missing(name) {
            return Some(Err(CertMiss::NotFound));
        }
        let d = self.downloads();
        match d.failures.get(name) {
            Some((e, at)) if *at >= since => Some(Err(CertMiss::Unavailable(e.clone()))),
            _ => None,
        }
    }

    /// Starts the next download if the slot is free: the name first in line (see the module's
    /// doc; then the most waited on, then the longest waited on). Returns when the slot frees if it
    /// is taken by time (not by a download running).
    fn start_next(self: &Arc<Self>) -> Option<tokio::time::Instant> {
        let now = tokio::time::Instant::now();
        let next = {
            let mut d = self.downloads();
            if d.in_flight.is_some() {
                return None;
            }
            if let Some(last) = d.last_start
                && now < last + MIN_CERT_INTERVAL
            {
                return Some(last + MIN_CERT_INTERVAL);
            }
            let asks = |name: &str| {
                self.asks.get(name).map_or((0, 0), |a| {
                    (a.seconds.load(Ordering::Relaxed), a.count.load(Ordering::Relaxed))
                })
            };
            let failed_lately = |name: &str| {
                d.failures
                    .get(name)
                    .is_some_and(|(_, at)| now.duration_since(*at) < CERT_FAILURE_KEPT)
            };
            let next = d
                .wanted
                .iter()
                .max_by_key(|(name, w)| {
                    let (seconds, count) = asks(name);
                    (
                        w.refresh,
                        !failed_lately(name),
                        self.served.contains_key(name.as_str()),
                        seconds,
                        count,
                        w.waiters,
                        std::cmp::Reverse(w.since),
                    )
                })
                .map(|(name, _)| name.clone())?;
            d.in_flight = Some(next.clone());
            d.last_start = Some(now);
            next
        };
        let cache = self.clone();
        // A task of its own: a request that gives up (or is dropped) does not cancel it.
        tokio::spawn(async move { cache.download(next).await });
        None
    }

    /// Downloads `name` and publishes the outcome to the requests waiting on it.
    async fn download(self: Arc<Self>, name: String) {
        // Frees the slot however the task ends (its runtime may stop it mid-download).
        let _in_flight = InFlight {
            cache: &self,
            name: &name,
        };
        let outcome = self.fetch(&name).await;
        let now = tokio::time::Instant::now();
        match outcome {
            Ok(cert) => {
                self.served.insert(name.clone(), ());
                let wall_now = self.wall_now();
                if let Ok(mut held) = self.held.write() {
                    held.retain(|_, h| h.usable(wall_now));
                    if held.len() >= MAX_CERT_KEYS as usize
                        && !held.contains_key(&name)
                        && let Some(oldest) =
                            held.iter().min_by_key(|(_, h)| h.fetched).map(|(n, _)| n.clone())
                    {
                        held.remove(&oldest);
                    }
                    held.insert(
                        name.clone(),
                        Held {
                            cert: Arc::new(cert),
                            fetched: now,
                        },
                    );
                }
            }
            Err(CertMiss::NotFound) => {
                // IMS no longer serves it: a certificate in hand of that name stops verifying.
                if let Ok(mut held) = self.held.write() {
                    held.remove(&name);
                }
                self.missing.insert(name.clone(), now);
            }
            Err(CertMiss::Unavailable(e)) => {
                let mut d = self.downloads();
                d.failures
                    .retain(|_, (_, at)| now.duration_since(*at) < CERT_FAILURE_KEPT);
                d.failures.insert(name.clone(), (e, now));
            }
            Err(CertMiss::Skipped) => {}
        }
    }

    async fn fetch(&self, name: &str) -> Result<Cert, CertMiss> {
        let bytes = match self.ims.certificate(&self.base, name).await {
            Ok(b) => b,
            Err(ImsError::BadResponse(_) | ImsError::Rejected) => return Err(CertMiss::NotFound),
            Err(e) => return Err(CertMiss::Unavailable(e)),
        };
        cert_from_bytes(&bytes, self.wall_now()).ok_or_else(|| {
            tracing::warn!(certificate = name, "IMS certificate could not be used");
            CertMiss::NotFound
        })
    }
}

/// The download of a name running; dropping it frees the slot and wakes the waiting requests.
struct InFlight<'a> {
    cache: &'a CertCache,
    name: &'a str,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        {
            let mut d = self.cache.downloads();
            d.in_flight = None;
            d.wanted.remove(self.name);
        }
        self.cache.settled.notify_waiters();
    }
}

/// A request waiting on a certificate name; dropping it stops counting the request.
struct Waiting<'a> {
    cache: &'a CertCache,
    name: String,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut d = self.cache.downloads();
        if let Some(w) = d.wanted.get_mut(&self.name) {
            w.waiters = w.waiters.saturating_sub(1);
            if w.waiters == 0 && !w.refresh {
                d.wanted.remove(&self.name);
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

/// Whether `now` is within `[not_before, not_after]` (Unix seconds) to the nanosecond, as
/// x509-parser's `Validity::is_valid` reads it: a second past `not_after` has begun, it is not.
fn valid_to_the_nanosecond(not_before: i64, not_after: i64, now: SystemTime) -> bool {
    let (secs, fraction) = unix_time(now);
    not_before <= secs && (secs < not_after || (secs == not_after && !fraction))
}

/// The RSA key and validity of a PEM or DER certificate that is valid at `now`.
fn cert_from_bytes(bytes: &[u8], now: SystemTime) -> Option<Cert> {
    let der = match x509_parser::pem::parse_x509_pem(bytes) {
        Ok((_, pem)) => pem.contents,
        Err(_) => bytes.to_vec(),
    };
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let validity = cert.validity();
    let (not_before, not_after) = (validity.not_before.timestamp(), validity.not_after.timestamp());
    if !valid_to_the_nanosecond(not_before, not_after, now) {
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
    #![allow(clippy::unwrap_used)]
    use tokio::time::Instant;

    use super::*;

    fn store() -> KeyStore {
        // Nothing listens there: a download started by a test fails at once.
        let ims = ImsClient::new("http://127.0.0.1:1", Duration::from_secs(1)).unwrap();
        KeyStore::new(ims, Some("http://127.0.0.1:1/keys/".to_owned()))
            .with_cert_name_prefix(Some("ims_na1-key-".to_owned()))
    }

    fn cache() -> Arc<CertCache> {
        store().certs.unwrap()
    }

    fn a_cert() -> Arc<Cert> {
        let now = chrono::Utc::now().timestamp();
        cert_valid(now - 86_400, now + 86_400 * 365)
    }

    fn cert_valid(not_before: i64, not_after: i64) -> Arc<Cert> {
        Arc::new(Cert {
            published: Published {
                key: Arc::new(DecodingKey::from_secret(b"test")),
                fingerprint: [0; 32],
            },
            not_before,
            not_after,
        })
    }

    /// A wall clock the test sets, starting on a whole second.
    #[derive(Clone)]
    struct TestWall(Arc<Mutex<SystemTime>>);

    impl TestWall {
        const START: i64 = 1_800_000_000;

        fn new() -> Self {
            Self(Arc::new(Mutex::new(
                SystemTime::UNIX_EPOCH + Duration::from_secs(Self::START as u64),
            )))
        }

        fn clock(&self) -> WallClock {
            let now = self.0.clone();
            Arc::new(move || *now.lock().unwrap())
        }

        fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += by;
        }
    }

    /// Asks as `name` had them: in `seconds` distinct seconds, `count` in all.
    fn asked(cache: &CertCache, name: &str, seconds: u32, count: u32) {
        let asks = Asks::new();
        asks.seconds.store(seconds, Ordering::Relaxed);
        asks.count.store(count, Ordering::Relaxed);
        cache.asks.insert(name.to_owned(), Arc::new(asks));
    }

    /// The name the free slot goes to, the slot then freed again.
    fn next_download(cache: &Arc<CertCache>) -> Option<String> {
        assert_eq!(cache.start_next(), None);
        let mut d = cache.downloads();
        let next = d.in_flight.take();
        d.last_start = None;
        next
    }

    #[tokio::test(start_paused = true)]
    async fn the_name_asked_for_most_persistently_is_downloaded_first_and_a_refresh_before_all() {
        let cache = cache();
        let t0 = tokio::time::Instant::now();
        // Made-up names: asked once each; or each reused by a flood many times within a moment.
        let mut guards = Vec::new();
        for i in 0..10 {
            let name = format!("ims_na1-key-flood-{i}.cer");
            asked(&cache, &name, 1, if i % 2 == 0 { 1 } else { 100 + i });
            guards.push(cache.register(&name, t0).unwrap());
        }
        // The genuine name, asked for again in each of three seconds (a client retrying).
        let genuine = "ims_na1-key-at-1.cer";
        asked(&cache, genuine, 3, 3);
        guards.push(cache.register(genuine, t0 + Duration::from_millis(5)).unwrap());
        assert_eq!(cache.start_next(), None);
        assert_eq!(cache.downloads().in_flight.as_deref(), Some(genuine));
        // The slot is taken for a second, whatever the download's outcome.
        cache.downloads().in_flight = None;
        assert_eq!(cache.start_next(), Some(t0 + MIN_CERT_INTERVAL));
        cache.downloads().last_start = None;
        // Among made-up names of one moment, the most asked for.
        cache.downloads().wanted.remove(genuine);
        assert_eq!(next_download(&cache).as_deref(), Some("ims_na1-key-flood-9.cer"));

        // A name the base served before goes first, however persistent the others.
        let served = "ims_na1-key-at-3.cer";
        cache.served.insert(served.to_owned(), ());
        guards.push(cache.register(served, t0).unwrap());
        asked(&cache, "ims_na1-key-flood-8.cer", 50, 5_000);
        assert_eq!(next_download(&cache).as_deref(), Some(served));
        // A name whose download failed just now goes last.
        cache.downloads().wanted.remove(served);
        cache.downloads().failures.insert(
            "ims_na1-key-flood-8.cer".to_owned(),
            (ImsError::Rejected, tokio::time::Instant::now()),
        );
        assert_eq!(next_download(&cache).as_deref(), Some("ims_na1-key-flood-9.cer"));

        // A certificate in use, downloaded nearly an hour ago: still served, and first in line.
        let in_use = "ims_na1-key-at-2.cer";
        cache.held.write().unwrap().insert(
            in_use.to_owned(),
            Held {
                cert: a_cert(),
                fetched: t0,
            },
        );
        tokio::time::advance(CERT_TTL - CERT_REFRESH_AHEAD + Duration::from_secs(1)).await;
        assert!(
            cache.certificate(in_use).await.is_ok(),
            "the one in hand serves meanwhile"
        );
        assert_eq!(cache.downloads().in_flight.as_deref(), Some(in_use));
        // Past its time it is not used any more.
        cache.downloads().in_flight = None;
        tokio::time::advance(CERT_REFRESH_AHEAD).await;
        assert!(cache.usable(in_use).is_none());
        drop(guards);
    }

    #[test]
    fn asks_count_distinct_seconds() {
        let asks = Asks::new();
        for second in [0, 0, 0, 1, 1, 5] {
            asks.note(second);
        }
        assert_eq!(asks.seconds.load(Ordering::Relaxed), 3);
        assert_eq!(asks.count.load(Ordering::Relaxed), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn a_certificate_past_its_not_after_stops_verifying_cached_or_not() {
        let wall = TestWall::new();
        let store = store().with_wall_clock(wall.clock());
        let certs = store.certs.clone().unwrap();
        let name = "ims_na1-key-at-1.cer";
        // Downloaded just now, valid for two more seconds.
        let not_after = TestWall::START + 2;
        certs.held.write().unwrap().insert(
            name.to_owned(),
            Held {
                cert: cert_valid(not_after - 3_600, not_after),
                fetched: Instant::now(),
            },
        );
        // A cached token's key is looked at on every use; an uncached one's is looked up.
        let cached = KeySource::Certificate(Arc::from(name), [0; 32]);
        assert!(store.still_valid(&cached).await);
        assert!(certs.in_use(name).is_some());
        // Its last second still counts (x509 times are whole seconds).
        wall.advance(Duration::from_millis(2_999));
        assert!(store.still_valid(&cached).await);
        assert!(certs.in_use(name).is_some());
        wall.advance(Duration::from_millis(1));
        assert!(!store.still_valid(&cached).await, "a cached token is refused");
        assert!(
            certs.in_use(name).is_none(),
            "so is a new one: the certificate is not used"
        );
        assert!(certs.usable(name).is_none());
        // Not for want of tokio's clock moving: only the wall clock did.
        assert!(certs.held.read().unwrap()[name].fetched.elapsed() < CERT_TTL);
    }

    #[test]
    fn a_certificate_downloaded_past_its_not_after_is_not_used() {
        let second = |s: i64| SystemTime::UNIX_EPOCH + Duration::from_secs(s as u64);
        let (not_before, not_after) = (TestWall::START - 3_600, TestWall::START);
        let valid = |now| valid_to_the_nanosecond(not_before, not_after, now);
        assert!(!valid(second(not_before) - Duration::from_nanos(1)));
        assert!(valid(second(not_before)));
        assert!(valid(second(not_after)));
        assert!(!valid(second(not_after) + Duration::from_nanos(1)));
        assert!(!valid(second(not_after + 1)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_certificate_name_not_found_is_remembered_for_missing_cert_ttl() {
        let cache = cache();
        let name = "ims_na1-key-gone.cer";
        // What a download that found nothing does.
        cache.missing.insert(name.to_owned(), Instant::now());
        let asked_again = |cache: &CertCache| {
            let d = cache.downloads();
            d.in_flight.is_some() || !d.wanted.is_empty()
        };
        assert!(matches!(cache.certificate(name).await, Err(CertMiss::NotFound)));
        assert!(!asked_again(&cache), "answered from memory, nothing downloaded");
        tokio::time::advance(MISSING_CERT_TTL - Duration::from_millis(1)).await;
        assert!(matches!(cache.certificate(name).await, Err(CertMiss::NotFound)));
        assert!(!asked_again(&cache));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!cache.is_missing(name));
        // Forgotten: the name is downloaded again (from nowhere here: the answer is not a 404).
        let looked_up = cache.certificate(name).await;
        assert!(!matches!(looked_up, Err(CertMiss::NotFound)));
        let d = cache.downloads();
        assert!(d.in_flight.as_deref() == Some(name) || d.failures.contains_key(name));
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
    fn certificate_names_must_be_the_kid_of_the_configured_form() {
        let cache = cache();
        assert!(cache.of_form("ims_na1-key-at-1.cer", Some("ims_na1-key-at-1")));
        assert!(!cache.of_form("ims_na1-key-at-1.cer", Some("ims_na1-key-at-2")));
        assert!(!cache.of_form("ims_na1-key-at-1.cer", None));
        assert!(!cache.of_form("other-key-at-1.cer", Some("other-key-at-1")));
    }

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
