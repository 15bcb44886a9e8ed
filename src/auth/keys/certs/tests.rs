//! The download order and the certificates' lifetimes, on a paused clock and a wall clock the
//! tests set.

use tokio::time::Instant;

use super::super::{KeySource, KeyStore};
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

#[test]
fn certificate_names_must_be_the_kid_of_the_configured_form() {
    let cache = cache();
    assert!(cache.of_form("ims_na1-key-at-1.cer", Some("ims_na1-key-at-1")));
    assert!(!cache.of_form("ims_na1-key-at-1.cer", Some("ims_na1-key-at-2")));
    assert!(!cache.of_form("ims_na1-key-at-1.cer", None));
    assert!(!cache.of_form("other-key-at-1.cer", Some("other-key-at-1")));
}

#[test]
fn certificate_names_are_bare_cer_file_names() {
    assert!(sane_cert_name("ims_na1-key-at-1.cer"));
    assert!(!sane_cert_name("https://evil.example/key.cer"));
    assert!(!sane_cert_name("..cer"));
    assert!(!sane_cert_name("a/b.cer"));
    assert!(!sane_cert_name("key.pem"));
}
