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
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use sea_orm::sea_query::{Func, Query};
use sea_orm::sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend};
use tokio::sync::watch;

use crate::config;
use crate::domain::TenantId;
use crate::metrics::Metrics;
use crate::store::{CHANNEL, CommitListener, Store, StoreError, TenantView, parse_payload};

/// `application_name` of the `LISTEN` connection (how operators, and the tests, find it in
/// `pg_stat_activity`).
pub const LISTENER_APPLICATION_NAME: &str = "cc-connection-listener";

/// The caps on watchers of a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatcherCaps {
    /// In all.
    pub replica: usize,
    /// Of one caller (a user, or a service token's client).
    pub caller: usize,
    /// Of one tenant.
    pub tenant: usize,
}

impl Default for WatcherCaps {
    fn default() -> Self {
        Self {
            replica: config::DEFAULT_MAX_WATCHERS,
            caller: config::DEFAULT_MAX_WATCHERS_PER_CALLER,
            tenant: config::DEFAULT_MAX_WATCHERS_PER_TENANT,
        }
    }
}

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
    /// Watchers by caller (changed under the `slots` lock).
    callers: Mutex<HashMap<String, usize>>,
    count: AtomicUsize,
    caps: WatcherCaps,
    metrics: Arc<Metrics>,
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
    /// Not yet: PostgreSQL's waits for its listener; until it is up (and whenever it is down or
    /// silent) every watched tenant is re-checked twice a second, so watches are still held.
    AwaitingListener,
}

/// The registry of this replica's watchers, by tenant. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Watchers {
    inner: Arc<Inner>,
}

impl Watchers {
    /// A registry holding at most `caps` watchers, fed by `feed`, counted in `metrics`.
    pub fn new(caps: WatcherCaps, feed: Feed, metrics: &Arc<Metrics>) -> Self {
        Self {
            inner: Arc::new(Inner {
                slots: Mutex::new(HashMap::new()),
                callers: Mutex::new(HashMap::new()),
                count: AtomicUsize::new(0),
                caps,
                metrics: metrics.clone(),
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

    fn callers(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        // As `slots`: no multi-step updates.
        self.inner.callers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Watchers waiting now.
    pub fn count(&self) -> usize {
        self.inner.count.load(Ordering::Relaxed)
    }

    /// Tenants with at least one watcher.
    pub fn tenants(&self) -> usize {
        self.slots().len()
    }

    /// Registers a watcher of `tenant` for `caller`; `None` when a cap (the replica's, the
    /// caller's or the tenant's) is reached or the server is stopping (the request then answers
    /// at once, as a plain read).
    pub fn watch(&self, tenant: &TenantId, caller: &str) -> Option<WatchGuard> {
        if *self.inner.shutdown.borrow() {
            return None;
        }
        let mut slots = self.slots();
        let of_tenant = slots.get(tenant).map_or(0, |e| e.watchers);
        if of_tenant >= self.inner.caps.tenant || !self.take_place(caller) {
            return None;
        }
        let (slot, wake) = {
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
        drop(slots);
        Some(WatchGuard {
            watchers: self.clone(),
            tenant: tenant.clone(),
            caller: caller.to_owned(),
            slot,
            wake,
            shutdown: self.inner.shutdown.subscribe(),
        })
    }

    /// Takes a place under the replica's and `caller`'s caps; false when either is reached.
    fn take_place(&self, caller: &str) -> bool {
        let mut callers = self.callers();
        let caps = &self.inner.caps;
        if callers.get(caller).copied().unwrap_or(0) >= caps.caller {
            return false;
        }
        let max = caps.replica;
        let taken = self
            .inner
            .count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            });
        if taken.is_err() {
            return false;
        }
        self.inner.metrics.watchers.inc();
        *callers.entry(caller.to_owned()).or_insert(0) += 1;
        true
    }

    /// Gives back a place taken by [`Self::take_place`].
    fn give_back(&self, caller: &str) {
        {
            let mut callers = self.callers();
            if let Some(n) = callers.get_mut(caller) {
                *n -= 1;
                if *n == 0 {
                    callers.remove(caller);
                }
            }
        }
        self.inner.count.fetch_sub(1, Ordering::AcqRel);
        self.inner.metrics.watchers.dec();
    }

    /// Takes a place for a held request of the change feed (a long poll, a stream) of `caller`:
    /// they count against the same caps as watches (the replica's and the caller's, not a
    /// tenant's). `None` when a cap is reached or the server is stopping; the place is given back
    /// when the guard is dropped.
    pub fn hold(&self, caller: &str) -> Option<HeldPlace> {
        if *self.inner.shutdown.borrow() || !self.take_place(caller) {
            return None;
        }
        Some(HeldPlace {
            watchers: self.clone(),
            caller: caller.to_owned(),
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
        self.inner.metrics.watch_notifications.inc();
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
        self.inner.metrics.watch_feed_up.set(i64::from(live));
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

/// On SQLite the store tells the watchers of its commits in process.
impl CommitListener for Watchers {
    fn committed(&self, tenant: &TenantId, at: SystemTime) {
        self.changed(tenant, Some(at));
    }
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
    caller: String,
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
        self.watchers.give_back(&self.caller);
    }
}

/// A held request of the change feed's place among the watchers; given back when dropped (also
/// when the client goes away).
#[derive(Debug)]
pub struct HeldPlace {
    watchers: Watchers,
    caller: String,
}

impl Drop for HeldPlace {
    fn drop(&mut self) {
        self.watchers.give_back(&self.caller);
    }
}

/// How the change listener's waits are bounded.
#[derive(Debug, Clone, Copy)]
pub struct ListenerBounds {
    /// Connecting, and the `LISTEN` statements.
    pub connect: Duration,
    /// How long the listener may go without hearing its own heartbeat, which is sent every third
    /// of this through the request pool: past it the listener counts as stalled (a host gone
    /// silent sends neither data nor an error), the feed is marked down and the listener replaced.
    pub silence: Duration,
}

/// Starts the PostgreSQL change feed of `watchers`: the `LISTEN` connection on `database_url`
/// (replaced when lost or silent), its heartbeat sent through `db` (the request pool), and the
/// re-checks while it is down. All end when the registry is dropped. The listener is a connection
/// of its own, through sqlx: sea-orm has no `LISTEN`.
pub fn spawn_postgres_feed(
    watchers: &Watchers,
    db: &DatabaseConnection,
    database_url: &str,
    bounds: ListenerBounds,
) -> Result<(), StoreError> {
    use std::str::FromStr;
    let options = PgConnectOptions::from_str(database_url)
        .map_err(|e| StoreError::Database(sea_orm::DbErr::Custom(format!("listener: {e}"))))?
        .application_name(LISTENER_APPLICATION_NAME);
    // This replica's own heartbeat channel: no other replica hears (or pays for) it.
    let heartbeat = format!(
        "{CHANNEL}_heartbeat_{:016x}",
        uuid::Uuid::new_v4().as_u128() as u64
    );
    watchers.set_live(false);
    tokio::spawn(recheck_while_down(watchers.downgrade()));
    tokio::spawn(send_heartbeats(
        watchers.downgrade(),
        db.clone(),
        heartbeat.clone(),
        bounds,
    ));
    tokio::spawn(listen(watchers.downgrade(), options, heartbeat, bounds));
    Ok(())
}

/// Ticks every `every`; a tick that came late is not made up for (the loops below only re-check).
fn ticking(every: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

async fn recheck_while_down(registry: Weak<Inner>) {
    let mut tick = ticking(RECHECK_WHILE_DOWN);
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

/// `NOTIFY`s the listener's heartbeat channel every third of the silence bound, through the
/// request pool: heard, it proves the listener's connection delivers what is committed where
/// switches commit (after a failover too).
async fn send_heartbeats(
    registry: Weak<Inner>,
    db: DatabaseConnection,
    channel: String,
    bounds: ListenerBounds,
) {
    let every = bounds.silence / 3;
    let notify = DbBackend::Postgres
        .build(Query::select().expr(Func::cust("pg_notify").arg(channel.as_str()).arg("")));
    let mut tick = ticking(every);
    loop {
        tick.tick().await;
        if Watchers::upgrade(&registry).is_none() {
            return;
        }
        // A failure is the listener's to notice (it hears nothing); the request path reports the
        // database's state.
        let _ = tokio::time::timeout(every, db.execute_raw(notify.clone())).await;
    }
}

async fn connect_listener(
    options: &PgConnectOptions,
    heartbeat: &str,
    bounds: ListenerBounds,
) -> Result<PgListener, sea_orm::sqlx::Error> {
    // A pool of one, private to the listener: never a connection of the request pool.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .acquire_timeout(bounds.connect)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_lazy_with(options.clone());
    let listen = async {
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.ignore_pool_close_event(true);
        // A lost connection is reported to us; we reconnect (and re-check) ourselves.
        listener.eager_reconnect(false);
        listener.listen_all([CHANNEL, heartbeat]).await?;
        Ok(listener)
    };
    tokio::time::timeout(bounds.connect, listen)
        .await
        .unwrap_or(Err(sea_orm::sqlx::Error::PoolTimedOut))
}

/// How often the SQLite feed asks whether another process committed.
const SQLITE_POLL: Duration = Duration::from_secs(1);

/// Starts the SQLite feed of other processes' commits (a `tenant` command beside a running
/// `start-dev`): a connection of its own asks `PRAGMA data_version` every [`SQLITE_POLL`], which
/// changes when any other connection committed, and every watched tenant is then re-checked
/// (which tenant changed is not known; this process's own commits already woke theirs). Ends when
/// the registry is dropped.
pub fn spawn_sqlite_feed(watchers: &Watchers, database_url: &str, bound: Duration) -> Result<(), StoreError> {
    use std::str::FromStr;
    let options = SqliteConnectOptions::from_str(database_url)
        .map_err(|e| StoreError::Database(sea_orm::DbErr::Custom(format!("sqlite feed: {e}"))))?;
    tokio::spawn(poll_data_version(watchers.downgrade(), options, bound));
    Ok(())
}

async fn poll_data_version(registry: Weak<Inner>, options: SqliteConnectOptions, bound: Duration) {
    use sea_orm::sqlx::ConnectOptions;
    let mut conn: Option<SqliteConnection> = None;
    let mut last: Option<i64> = None;
    let mut tick = ticking(SQLITE_POLL);
    loop {
        tick.tick().await;
        let Some(watchers) = Watchers::upgrade(&registry) else {
            return;
        };
        if conn.is_none() {
            conn = tokio::time::timeout(bound, options.connect())
                .await
                .ok()
                .and_then(Result::ok);
        }
        let Some(c) = conn.as_mut() else {
            continue;
        };
        let version = sea_orm::sqlx::query_scalar::<_, i64>("PRAGMA data_version").fetch_one(c);
        match tokio::time::timeout(bound, version).await {
            Ok(Ok(version)) => {
                // The first answer is a baseline: re-check once, for a commit made before it.
                if last != Some(version) {
                    watchers.recheck_all();
                }
                last = Some(version);
            }
            _ => {
                conn = None;
                last = None;
            }
        }
    }
}

/// The first wait before reconnecting the listener, doubled (with jitter) up to the last.
const RECONNECT_BACKOFF: (Duration, Duration) = (Duration::from_millis(250), Duration::from_secs(5));

async fn listen(registry: Weak<Inner>, options: PgConnectOptions, heartbeat: String, bounds: ListenerBounds) {
    let mut delay = RECONNECT_BACKOFF.0;
    let mut first = true;
    // Failed attempts since the listener was lost: logged once when it is back, not each.
    let mut failed_attempts: u64 = 0;
    loop {
        if Watchers::upgrade(&registry).is_none() {
            return;
        }
        match connect_listener(&options, &heartbeat, bounds).await {
            Ok(mut listener) => {
                let Some(watchers) = Watchers::upgrade(&registry) else {
                    return;
                };
                if !first {
                    watchers.inner.metrics.watch_feed_reconnects.inc();
                    tracing::warn!(failed_attempts, "change listener back");
                }
                first = false;
                failed_attempts = 0;
                // LISTEN is in place: whatever changed before it is caught by this re-check,
                // whatever changes after by a notification.
                watchers.set_live(true);
                watchers.recheck_all();
                drop(watchers);
                delay = RECONNECT_BACKOFF.0;
                let mut heard = tokio::time::Instant::now();
                let lost = loop {
                    // Dropping `try_recv` (the silence bound passed) also drops the listener.
                    let received = tokio::select! {
                        received = listener.try_recv() => received,
                        () = tokio::time::sleep_until(heard + bounds.silence) => {
                            break format!(
                                "no heartbeat heard for {} ms: the connection is silent",
                                bounds.silence.as_millis()
                            );
                        }
                    };
                    match received {
                        Ok(Some(notification)) => {
                            heard = tokio::time::Instant::now();
                            if notification.channel() == heartbeat {
                                continue;
                            }
                            match Watchers::upgrade(&registry) {
                                Some(watchers) => watchers.notified(notification.payload()),
                                None => return,
                            }
                        }
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
                failed_attempts += 1;
                if failed_attempts == 1 {
                    tracing::warn!(error = %e, "change listener could not connect; retrying with back-off");
                }
            }
        }
        tokio::time::sleep(crate::store::jittered(delay)).await;
        delay = (delay * 2).min(RECONNECT_BACKOFF.1);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
