//! Watching (blocking reads): the per-replica registry of waiting requests and the change feed that
//! wakes them.
//!
//! A watcher subscribes to its tenant's slot *before* it reads, so a change committed after that
//! read always wakes it. Wakes carry no state: a woken watcher re-reads through
//! [`Store::tenant_view`] (the normal, linearizable read), one read per tenant and wake shared by
//! the watchers of that tenant.
//!
//! The feed: on SQLite the store signals in-process after each commit. On PostgreSQL the switch and
//! disconnect transactions `NOTIFY` [`CHANNEL`] (delivered on commit) and each replica holds one
//! `LISTEN` connection outside the request pool. While that connection is down (and until it is
//! first up) every watched tenant is re-checked twice a second; once it is up again, each is
//! re-checked once, so a change made meanwhile is never missed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use sea_orm::sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::watch;

use crate::domain::TenantId;
use crate::store::{Store, StoreError, TenantView};

/// The PostgreSQL notification channel of connection changes; the payload is
/// `<tenant_id> <commit time in Unix microseconds>`.
pub const CHANNEL: &str = "ccc_connection";

/// `application_name` of the `LISTEN` connection (how operators, and the tests, find it in
/// `pg_stat_activity`).
pub const LISTENER_APPLICATION_NAME: &str = "cc-connection-listener";

/// The default cap on watchers per replica (`CCC_MAX_WATCHERS`).
pub const DEFAULT_MAX_WATCHERS: usize = 20_000;

/// How often watched tenants are re-checked while the feed is down.
const RECHECK_WHILE_DOWN: Duration = Duration::from_millis(500);

/// One wake of a tenant's watchers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Wake {
    /// Increases with every wake of this tenant (reads are shared per generation).
    pub generation: u64,
    /// When the change was committed, if this wake is a change (not a re-check).
    pub committed: Option<SystemTime>,
}

/// One read of a tenant made for a wake, awaited by every watcher that wake (or an earlier one)
/// woke: they all wake together when it answers, rather than one after another.
type SharedRead = Shared<BoxFuture<'static, Result<Option<Arc<TenantView>>, StoreError>>>;

struct Slot {
    wake: watch::Sender<Wake>,
    /// The last read started for a wake: the generation it was started at, and the read.
    read: Mutex<Option<(u64, SharedRead)>>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("wake", &*self.wake.borrow())
            .finish()
    }
}

#[derive(Debug)]
struct Entry {
    slot: Arc<Slot>,
    watchers: usize,
}

#[derive(Debug)]
struct Inner {
    slots: Mutex<HashMap<TenantId, Entry>>,
    count: AtomicUsize,
    max: AtomicUsize,
    /// Whether the change feed is delivering (always on SQLite; the `LISTEN` connection on PostgreSQL).
    live: AtomicBool,
    shutdown: watch::Sender<bool>,
    /// Bumped whenever a commit may have happened (a change delivered, a re-check): the change
    /// feed's "something committed" signal (`feed.rs`).
    commits: watch::Sender<u64>,
}

/// Whether the change feed delivers commits to the watchers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// It delivers: SQLite's in-process feed, from the start.
    Live,
    /// Not yet: PostgreSQL's waits for its listener (until then a watch answers as a plain read).
    AwaitingListener,
}

/// The registry of this replica's watchers, by tenant. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Watchers {
    inner: Arc<Inner>,
}

impl Default for Watchers {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_WATCHERS, Feed::Live)
    }
}

impl Watchers {
    /// A registry holding at most `max` watchers, fed by `feed`.
    pub fn new(max: usize, feed: Feed) -> Self {
        Self {
            inner: Arc::new(Inner {
                slots: Mutex::new(HashMap::new()),
                count: AtomicUsize::new(0),
                max: AtomicUsize::new(max),
                live: AtomicBool::new(feed == Feed::Live),
                shutdown: watch::channel(false).0,
                commits: watch::channel(0).0,
            }),
        }
    }

    fn slots(&self) -> MutexGuard<'_, HashMap<TenantId, Entry>> {
        // A panic while holding this lock leaves the map consistent (no multi-step updates).
        self.inner.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the cap on watchers (`CCC_MAX_WATCHERS`).
    pub fn set_max(&self, max: usize) {
        self.inner.max.store(max, Ordering::Relaxed);
    }

    /// Watchers waiting now.
    pub fn count(&self) -> usize {
        self.inner.count.load(Ordering::Relaxed)
    }

    /// Tenants with at least one watcher.
    pub fn tenants(&self) -> usize {
        self.slots().len()
    }

    /// Registers a watcher of `tenant`; `None` when the cap is reached or the server is stopping
    /// (the request then answers at once, as a plain read).
    pub fn watch(&self, tenant: &TenantId) -> Option<WatchGuard> {
        if *self.inner.shutdown.borrow() {
            return None;
        }
        let max = self.inner.max.load(Ordering::Relaxed);
        let taken = self
            .inner
            .count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            });
        if taken.is_err() {
            return None;
        }
        crate::metrics::metrics().watchers.inc();
        let (slot, wake) = {
            let mut slots = self.slots();
            let entry = slots.entry(tenant.clone()).or_insert_with(|| Entry {
                slot: Arc::new(Slot {
                    wake: watch::channel(Wake::default()).0,
                    read: Mutex::new(None),
                }),
                watchers: 0,
            });
            entry.watchers += 1;
            (entry.slot.clone(), entry.slot.wake.subscribe())
        };
        Some(WatchGuard {
            watchers: self.clone(),
            tenant: tenant.clone(),
            slot,
            wake,
            shutdown: self.inner.shutdown.subscribe(),
        })
    }

    /// Wakes `tenant`'s watchers: it changed, committed at `committed`.
    pub fn changed(&self, tenant: &TenantId, committed: Option<SystemTime>) {
        self.inner.commits.send_modify(|n| *n += 1);
        let slot = self.slots().get(tenant).map(|e| e.slot.clone());
        if let Some(slot) = slot {
            slot.wake.send_modify(|w| {
                w.generation += 1;
                w.committed = committed;
            });
        }
    }

    /// Wakes `tenant`'s watchers when the returned guard is dropped (after an in-process commit).
    pub fn wake_on_drop(&self, tenant: &TenantId) -> WakeOnDrop {
        WakeOnDrop {
            watchers: self.clone(),
            tenant: tenant.clone(),
        }
    }

    /// Wakes every watcher to re-check its tenant (the feed was down, or came back).
    pub fn recheck_all(&self) {
        self.inner.commits.send_modify(|n| *n += 1);
        let slots: Vec<Arc<Slot>> = self.slots().values().map(|e| e.slot.clone()).collect();
        for slot in slots {
            slot.wake.send_modify(|w| {
                w.generation += 1;
                w.committed = None;
            });
        }
    }

    /// A notification's payload from [`CHANNEL`]; one that does not parse re-checks everyone.
    pub fn notified(&self, payload: &str) {
        match parse_payload(payload) {
            Some((tenant, committed)) => self.changed(&tenant, committed),
            None => {
                tracing::warn!("unreadable change notification; re-checking every watched tenant");
                self.recheck_all();
            }
        }
    }

    fn set_live(&self, live: bool) {
        self.inner.live.store(live, Ordering::Release);
        crate::metrics::metrics().watch_feed_up.set(i64::from(live));
    }

    /// Whether the change feed delivers now.
    pub fn is_live(&self) -> bool {
        self.inner.live.load(Ordering::Acquire)
    }

    /// The "something committed" signal: changes with every change delivered to this replica and
    /// every re-check (so also while the change channel is down).
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.inner.commits.subscribe()
    }

    /// Turns true when the server is stopping.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    /// The server is stopping: every watcher answers now (304), and new watches answer at once.
    pub fn shut_down(&self) {
        self.inner.shutdown.send_replace(true);
    }

    fn downgrade(&self) -> Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    fn upgrade(weak: &Weak<Inner>) -> Option<Self> {
        weak.upgrade().map(|inner| Self { inner })
    }
}

/// See [`Watchers::wake_on_drop`].
#[derive(Debug)]
pub struct WakeOnDrop {
    watchers: Watchers,
    tenant: TenantId,
}

impl Drop for WakeOnDrop {
    fn drop(&mut self) {
        self.watchers.changed(&self.tenant, Some(SystemTime::now()));
    }
}

/// The payload sent with a change of `tenant` committed (about) `at`.
pub fn payload(tenant: &TenantId, at: SystemTime) -> String {
    let micros = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_micros();
    format!("{tenant} {micros}")
}

fn parse_payload(payload: &str) -> Option<(TenantId, Option<SystemTime>)> {
    let (tenant, micros) = payload.split_once(' ').unwrap_or((payload, ""));
    let tenant = TenantId::parse(tenant).ok()?;
    let committed = micros
        .parse::<u64>()
        .ok()
        .map(|m| UNIX_EPOCH + Duration::from_micros(m));
    Some((tenant, committed))
}

/// What ended one wait of a watcher.
#[derive(Debug)]
pub enum Event {
    /// The tenant changed, or must be re-checked.
    Woken(Wake),
    /// The wait is over.
    TimedOut,
    /// The server is stopping.
    ShuttingDown,
}

/// One waiting request; leaves the registry when dropped (also when the client goes away).
#[derive(Debug)]
pub struct WatchGuard {
    watchers: Watchers,
    tenant: TenantId,
    slot: Arc<Slot>,
    wake: watch::Receiver<Wake>,
    shutdown: watch::Receiver<bool>,
}

impl WatchGuard {
    /// Waits for the next wake of the tenant, the deadline, or the server stopping.
    pub async fn next(&mut self, deadline: tokio::time::Instant) -> Event {
        tokio::select! {
            biased;
            _ = self.shutdown.wait_for(|stopping| *stopping) => Event::ShuttingDown,
            changed = self.wake.changed() => match changed {
                Ok(()) => Event::Woken(*self.wake.borrow_and_update()),
                // The slot lives as long as this guard: unreachable, but waiting out is safe.
                Err(_) => {
                    tokio::time::sleep_until(deadline).await;
                    Event::TimedOut
                }
            },
            () = tokio::time::sleep_until(deadline) => Event::TimedOut,
        }
    }

    /// The tenant as it stands after `wake`: one read through the normal read path, started after
    /// the wake, shared by every watcher of the tenant woken by it (or a later one).
    pub async fn read(&self, store: &Store, wake: &Wake) -> Result<Option<Arc<TenantView>>, StoreError> {
        let read = {
            let mut last = self.slot.read.lock().unwrap_or_else(|p| p.into_inner());
            match last.as_ref() {
                Some((generation, read)) if *generation >= wake.generation => read.clone(),
                _ => {
                    // Every wake up to this generation happened before this read starts (it
                    // starts when first awaited, just below).
                    let generation = self.slot.wake.borrow().generation;
                    let (store, tenant) = (store.clone(), self.tenant.clone());
                    let read = async move { Ok(store.tenant_view(&tenant).await?.map(Arc::new)) }
                        .boxed()
                        .shared();
                    *last = Some((generation, read.clone()));
                    read
                }
            }
        };
        read.await
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        {
            let mut slots = self.watchers.slots();
            if let Some(entry) = slots.get_mut(&self.tenant) {
                entry.watchers -= 1;
                if entry.watchers == 0 {
                    slots.remove(&self.tenant);
                }
            }
        }
        self.watchers.inner.count.fetch_sub(1, Ordering::AcqRel);
        crate::metrics::metrics().watchers.dec();
    }
}

/// Starts the PostgreSQL change feed of `watchers`: the `LISTEN` connection on `database_url`
/// (reconnected when lost) and the re-checks while it is down. Both end when the registry is
/// dropped.
pub fn spawn_postgres_feed(watchers: &Watchers, database_url: &str) -> Result<(), StoreError> {
    use std::str::FromStr;
    let options = PgConnectOptions::from_str(database_url)
        .map_err(|e| StoreError::Database(sea_orm::DbErr::Custom(format!("listener: {e}"))))?
        .application_name(LISTENER_APPLICATION_NAME);
    watchers.set_live(false);
    tokio::spawn(recheck_while_down(watchers.downgrade()));
    tokio::spawn(listen(watchers.downgrade(), options));
    Ok(())
}

async fn recheck_while_down(registry: Weak<Inner>) {
    let mut tick = tokio::time::interval(RECHECK_WHILE_DOWN);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(watchers) = Watchers::upgrade(&registry) else {
            return;
        };
        if !watchers.is_live() {
            watchers.recheck_all();
        }
    }
}

async fn connect_listener(options: &PgConnectOptions) -> Result<PgListener, sea_orm::sqlx::Error> {
    // A pool of one, private to the listener: never a connection of the request pool.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(5))
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_lazy_with(options.clone());
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.ignore_pool_close_event(true);
    // A lost connection is reported to us; we reconnect (and re-check) ourselves.
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

async fn listen(registry: Weak<Inner>, options: PgConnectOptions) {
    let mut delay = Duration::from_millis(250);
    let mut first = true;
    loop {
        if Watchers::upgrade(&registry).is_none() {
            return;
        }
        match connect_listener(&options).await {
            Ok(mut listener) => {
                let Some(watchers) = Watchers::upgrade(&registry) else {
                    return;
                };
                if !first {
                    crate::metrics::metrics().watch_feed_reconnects.inc();
                    tracing::info!("change listener reconnected");
                }
                first = false;
                // LISTEN is in place: whatever changed before it is caught by this re-check,
                // whatever changes after by a notification.
                watchers.set_live(true);
                watchers.recheck_all();
                drop(watchers);
                delay = Duration::from_millis(250);
                let lost = loop {
                    match listener.try_recv().await {
                        Ok(Some(notification)) => match Watchers::upgrade(&registry) {
                            Some(watchers) => watchers.notified(notification.payload()),
                            None => return,
                        },
                        Ok(None) => break "connection lost".to_owned(),
                        Err(e) => break e.to_string(),
                    }
                };
                if let Some(watchers) = Watchers::upgrade(&registry) {
                    watchers.set_live(false);
                }
                tracing::warn!(error = %lost, "change listener lost; re-checking watched tenants until it is back");
            }
            Err(e) => {
                tracing::warn!(error = %e, "change listener could not connect; retrying");
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn payloads_round_trip_and_garbage_is_refused() {
        let tenant = TenantId::parse("acme-prod").unwrap();
        let at = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        let (t, c) = parse_payload(&payload(&tenant, at)).unwrap();
        assert_eq!(t, tenant);
        assert_eq!(c, Some(at));
        assert_eq!(parse_payload("acme-prod").unwrap().1, None);
        assert!(parse_payload("not/a-tenant 1").is_none());
        assert!(parse_payload("").is_none());
    }

    #[tokio::test]
    async fn the_cap_refuses_and_the_last_watcher_cleans_its_tenant() {
        let watchers = Watchers::new(2, Feed::Live);
        let t = TenantId::parse("t1").unwrap();
        let a = watchers.watch(&t).unwrap();
        let b = watchers.watch(&t).unwrap();
        assert!(watchers.watch(&t).is_none(), "over the cap");
        assert_eq!((watchers.count(), watchers.tenants()), (2, 1));
        drop(a);
        assert_eq!((watchers.count(), watchers.tenants()), (1, 1));
        drop(b);
        assert_eq!((watchers.count(), watchers.tenants()), (0, 0));
        watchers.shut_down();
        assert!(watchers.watch(&t).is_none(), "stopping");
    }
}
