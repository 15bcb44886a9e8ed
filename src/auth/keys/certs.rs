//! The certificates of IMS's configured base, for tokens whose key the JWKS does not list.
//!
//! Only a name of the configured IMS's form is looked up (`<kid>.cer` of the token's
//! own `kid`, starting with the configured prefix, e.g. `ims_na1-key-`). One download starts per
//! [`MIN_CERT_INTERVAL`], of the name first in line among those requests wait on: a certificate in
//! use about to lapse; then a name the base served before (a genuine one, downloaded again); then
//! the name asked for in the most distinct seconds lately (a genuine token's clients come back
//! second after second, where a made-up name is worth one download to a flood, as the base's "not
//! found" is remembered, so its requests crowd into a moment however many there are); then the name
//! asked for most. A name whose download failed goes last for [`CERT_FAILURE_KEPT`]. So a flood of
//! made-up names, new or each reused many times, delays a genuine certificate by a few seconds. A
//! request waits up to [`CERT_WAIT`] for its certificate, then is answered 503 with `Retry-After` (not 401: the key
//! may well exist). A downloaded certificate is used for at most [`CERT_TTL`] (never past its
//! `notAfter`); one in use is downloaded again in its last [`CERT_REFRESH_AHEAD`], ahead of all
//! other names, while the one in hand keeps serving. Names not found are remembered for
//! [`MISSING_CERT_TTL`].
//!
//! Clocks: the intervals above are on tokio's clock ([`tokio::time::Instant`]), a certificate's
//! validity period on the wall clock the store is given (the system's in service): the tests pause
//! and advance the one and set the other, so none of this is tested by waiting.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;

use super::{Published, fingerprint, sane_name};
use crate::ims::{ImsClient, ImsError};

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

/// At most this many certificate keys are kept (names come from tokens, so they are bounded).
const MAX_CERT_KEYS: u64 = 64;

/// The wall clock a certificate's validity period is read against: [`SystemTime::now`] in
/// service, one the test sets in tests.
type WallClock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// `t` in whole Unix seconds (rounded down), and whether a fraction of a second is left over.
fn unix_time(t: SystemTime) -> (i64, bool) {
    let t = chrono::DateTime::<chrono::Utc>::from(t);
    (t.timestamp(), t.timestamp_subsec_nanos() > 0)
}

/// A downloaded certificate's key and validity period (Unix seconds).
pub(super) struct Cert {
    pub(super) published: Published,
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
pub(super) enum CertMiss {
    /// The base does not have it (or it is unusable): remembered for [`MISSING_CERT_TTL`].
    NotFound,
    /// Not downloaded within [`CERT_WAIT`] (other names went first): ask again in a second.
    Skipped,
    /// The base could not be reached.
    Unavailable(ImsError),
}

/// The certificates of the configured base: downloaded one at a time, the most wanted first.
pub(super) struct CertCache {
    ims: ImsClient,
    base: String,
    /// The start every certificate name of the configured IMS has (`None`: not checked).
    pub(super) name_prefix: Option<String>,
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

impl CertCache {
    /// Downloads from `base` through `ims`, nothing held or asked for yet.
    pub(super) fn new(ims: ImsClient, base: String) -> Self {
        Self {
            ims,
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
        }
    }

    /// Whether `name` is a certificate name of the configured IMS's form: a bare `<kid>.cer` of the
    /// token's own `kid`, starting with the configured prefix. Anything else is never downloaded.
    pub(super) fn of_form(&self, name: &str, kid: Option<&str>) -> bool {
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
    pub(super) fn in_use(self: &Arc<Self>, name: &str) -> Option<Arc<Cert>> {
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
    pub(super) async fn certificate(self: &Arc<Self>, name: &str) -> Result<Arc<Cert>, CertMiss> {
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

impl super::KeyStore {
    /// The same store reading certificates' validity periods against `clock`.
    #[cfg(test)]
    fn with_wall_clock(mut self, clock: WallClock) -> Self {
        if let Some(certs) = self.certs.as_mut().and_then(Arc::get_mut) {
            certs.wall_clock = clock;
        }
        self
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
