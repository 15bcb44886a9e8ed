//! Read batching for the hot path: many concurrent reads of tenant views, one query.
//!
//! Reads stay linearizable: a read is answered only by a query that *started after the read
//! arrived* (it waits in the queue, and the next query takes it). A read never joins a query
//! already in flight, whose snapshot may predate a switch acknowledged before the read was sent.
//! There is no artificial delay: while a query runs, arriving reads queue up, and each query that
//! ends takes everything queued (up to `max_batch` distinct tenants) at once.
//!
//! One query at a time is the rule: measured on one core shared with PostgreSQL, two queries in
//! flight answered fewer reads than one (each query has a fixed cost, and fewer, larger batches
//! pay it less often). A further query, up to `max_in_flight`, starts only once the newest query
//! in flight has run for [`OVERTAKE_AFTER`]: a slow query then stalls the reads queued behind it
//! for that long at most, as long as reads keep arriving (one arriving read starts the query).
//!
//! Queries run in tasks of their own, so a request that goes away (client gone) does not cancel
//! the query other reads wait on: its answer is simply not delivered. The task runs on the runtime
//! of the read that starts it (the request's own worker): handing it to another runtime cost two
//! more thread wake-ups per query, measured as the largest share of the hot path's CPU after the
//! network. A worker that stops (shutdown) while reads of other workers wait on its query hands
//! them to the runtime the store was opened in.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use opentelemetry::trace::SpanContext;
use sea_orm::sqlx::{self, ColumnIndex, Decode, Row, Type};
use sea_orm::{DatabaseConnection, DbBackend, DbErr, RuntimeErr};
use tokio::sync::oneshot;
use tracing::Instrument as _;

use super::failure::{corrupt, timed_out};
use super::{ConnectionRecord, StoreError, TenantRecord, TenantView, classify};
use crate::domain::{OrgId, Revision, TenantId, UserId};

/// The one query of the hot path, for a batch of tenant ids (the only place it is spelled).
/// `$ids` is the backend's "tenant id is one of the batch" predicate, `$active` the partial
/// index's predicate. Columns are read by position in [`view_from_row`].
macro_rules! view_sql {
    ($ids:literal, $active:literal) => {
        concat!(
            "SELECT t.tenant_id, t.home_org, t.admin_groups, t.revision, ",
            "c.org_id, c.org_name, c.connected_by, c.connected_at, c.revision ",
            "FROM tenant t LEFT JOIN connection c ON c.tenant_id = t.tenant_id AND ",
            $active,
            " WHERE ",
            $ids,
            // A removed tenant is unknown to the API.
            " AND t.removed_at IS NULL"
        )
    };
}

/// PostgreSQL: the ids as one `text[]`.
const VIEW_SQL_POSTGRES: &str = view_sql!("t.tenant_id = ANY($1)", "c.active");
/// SQLite: the ids as one JSON array, so one statement text (one prepared statement) serves any
/// batch size.
const VIEW_SQL_SQLITE: &str = view_sql!("t.tenant_id IN (SELECT value FROM json_each(?1))", "c.active = 1");

/// Bounds of the batcher.
#[derive(Debug, Clone, Copy)]
pub struct BatchOptions {
    /// Most distinct tenants one query fetches.
    pub max_batch: usize,
    /// Most read queries running at once (each holds one pooled connection).
    pub max_in_flight: usize,
    /// The bound on one query on our side (see `DbOptions::statement_timeout_ms`): a query past
    /// it answers its reads 503, gives its slot back and throws its connection away.
    pub limit: Option<Duration>,
}

/// How long the newest query in flight runs before an arriving read may start another.
pub const OVERTAKE_AFTER: Duration = Duration::from_millis(5);

/// A read's answer, and (traces on) the span of the query that gave it.
type Answer = (Result<Option<TenantView>, StoreError>, Option<SpanContext>);
type Reply = oneshot::Sender<Answer>;

struct Waiter {
    tenant_id: TenantId,
    reply: Reply,
    /// The read's span (traces on), for the query's span to link to.
    read_span: Option<SpanContext>,
}

#[derive(Default)]
struct Queue {
    pending: VecDeque<Waiter>,
    in_flight: usize,
    /// When the newest query in flight started.
    newest_started: Option<Instant>,
}

impl Queue {
    /// Takes a new query slot and the batch it answers.
    fn start(&mut self, max_batch: usize) -> Vec<Waiter> {
        self.in_flight += 1;
        self.next_batch(max_batch)
    }

    /// The batch of the next query of a slot (it starts now).
    fn next_batch(&mut self, max_batch: usize) -> Vec<Waiter> {
        self.newest_started = Some(Instant::now());
        take_batch(&mut self.pending, max_batch)
    }

    /// Whether an arriving read starts a query now (else a running query takes it when it ends).
    fn may_start(&self, max_in_flight: usize) -> bool {
        self.in_flight == 0
            || (self.in_flight < max_in_flight
                && self.newest_started.is_some_and(|t| t.elapsed() >= OVERTAKE_AFTER))
    }
}

struct Inner {
    db: DatabaseConnection,
    opts: BatchOptions,
    queue: Mutex<Queue>,
    /// The runtime the store was opened in (it lives as long as the process): where queries run
    /// when a read comes from outside any runtime's worker, and where the reads of a query whose
    /// worker stopped are taken up.
    runtime: Option<tokio::runtime::Handle>,
    queries: AtomicU64,
    reads: AtomicU64,
}

/// Answers tenant-view reads in batches (see the module documentation).
#[derive(Clone)]
pub(super) struct ReadBatcher {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ReadBatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadBatcher")
            .field("opts", &self.inner.opts)
            .finish()
    }
}

impl ReadBatcher {
    pub(super) fn new(db: DatabaseConnection, opts: BatchOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                opts: BatchOptions {
                    max_batch: opts.max_batch.max(1),
                    max_in_flight: opts.max_in_flight.max(1),
                    limit: opts.limit,
                },
                queue: Mutex::new(Queue::default()),
                runtime: tokio::runtime::Handle::try_current().ok(),
                queries: AtomicU64::new(0),
                reads: AtomicU64::new(0),
            }),
        }
    }

    /// Queries run and reads answered so far.
    pub(super) fn stats(&self) -> (u64, u64) {
        (
            self.inner.queries.load(Ordering::Relaxed),
            self.inner.reads.load(Ordering::Relaxed),
        )
    }

    /// The tenant's view, from a query that starts after this call.
    pub(super) async fn read(&self, tenant_id: &TenantId) -> Result<Option<TenantView>, StoreError> {
        let (reply, answer) = oneshot::channel();
        let batch = {
            let mut queue = self.inner.lock();
            queue.pending.push_back(Waiter {
                tenant_id: tenant_id.clone(),
                reply,
                read_span: crate::telemetry::current_span_context(),
            });
            if queue.may_start(self.inner.opts.max_in_flight) {
                Some(queue.start(self.inner.opts.max_batch))
            } else {
                // A running query takes it when it ends.
                None
            }
        };
        if let Some(batch) = batch {
            let task = run(self.inner.clone(), batch);
            match tokio::runtime::Handle::try_current() {
                Ok(here) => drop(here.spawn(task)),
                Err(_) => self.inner.spawn_elsewhere(task),
            }
        }
        match answer.await {
            Ok((result, query_span)) => {
                if let Some(query) = query_span {
                    crate::telemetry::link_to_query(query);
                }
                result
            }
            Err(_) => Err(StoreError::Unavailable(DbErr::Custom(
                "the read query was abandoned".into(),
            ))),
        }
    }
}

impl Inner {
    /// Runs `task` on the runtime the store was opened in; without one, its reads are answered
    /// 503 (dropping their reply senders).
    fn spawn_elsewhere(&self, task: impl Future<Output = ()> + Send + 'static) {
        if let Some(rt) = &self.runtime {
            drop(rt.spawn(task));
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The queue stays consistent under every panic point (none is expected): go on.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The oldest waiters, up to `max` distinct tenants, with every queued waiter of those tenants.
fn take_batch(pending: &mut VecDeque<Waiter>, max: usize) -> Vec<Waiter> {
    let mut tenants: HashSet<&str> = HashSet::new();
    let mut take = Vec::with_capacity(pending.len());
    for w in pending.iter() {
        let t = w.tenant_id.as_str();
        take.push(tenants.contains(t) || (tenants.len() < max && tenants.insert(t)));
    }
    let mut keep = VecDeque::new();
    let mut batch = Vec::new();
    for (w, taken) in pending.drain(..).zip(take) {
        if taken {
            batch.push(w);
        } else {
            keep.push_back(w);
        }
    }
    *pending = keep;
    batch
}

/// Gives the query slot back however the task ends. Ended abnormally (its worker's runtime shut
/// down) with no other query left to serve the queue, the queued reads are handed to a new query
/// on the store's own runtime rather than left hanging (or, without one, answered 503).
struct Slot {
    inner: Arc<Inner>,
    released: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let orphans = {
            let mut queue = self.inner.lock();
            queue.in_flight -= 1;
            if queue.in_flight == 0 && !queue.pending.is_empty() {
                Some(queue.start(self.inner.opts.max_batch))
            } else {
                None
            }
        };
        if let Some(batch) = orphans {
            self.inner.spawn_elsewhere(run(self.inner.clone(), batch));
        }
    }
}

/// A query task holding its slot from the moment it is made: dropped unpolled (its runtime shut
/// down), the slot is still given back.
fn run(inner: Arc<Inner>, batch: Vec<Waiter>) -> impl Future<Output = ()> + Send + 'static {
    let slot = Slot {
        inner: inner.clone(),
        released: false,
    };
    run_with(inner, slot, batch)
}

async fn run_with(inner: Arc<Inner>, mut slot: Slot, mut batch: Vec<Waiter>) {
    loop {
        answer(&inner, batch).await;
        let mut queue = inner.lock();
        if queue.pending.is_empty() {
            queue.in_flight -= 1;
            slot.released = true;
            return;
        }
        batch = queue.next_batch(inner.opts.max_batch);
    }
}

async fn answer(inner: &Inner, batch: Vec<Waiter>) {
    let mut ids: Vec<&str> = batch.iter().map(|w| w.tenant_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    inner.queries.fetch_add(1, Ordering::Relaxed);
    inner.reads.fetch_add(batch.len() as u64, Ordering::Relaxed);
    // Traces on: a span of its own, linked to every read it answers (it has no one parent).
    let span =
        crate::telemetry::batch_query_span(batch.len(), batch.iter().filter_map(|w| w.read_span.clone()));
    let query_span = crate::telemetry::span_context_of(&span);
    match fetch(inner, &ids).instrument(span).await {
        Ok(views) => {
            for w in batch {
                // A reader gone away (closed receiver) is no concern of the others.
                let _ = w
                    .reply
                    .send((Ok(views.get(w.tenant_id.as_str()).cloned()), query_span.clone()));
            }
        }
        Err(e) => {
            for w in batch {
                let _ = w.reply.send((Err(e.clone()), query_span.clone()));
            }
        }
    }
}

fn sqlx_err(e: sqlx::Error) -> StoreError {
    classify(DbErr::Query(RuntimeErr::SqlxError(Arc::new(e))))
}

/// No connection could be had (the pool's wait ran out, or opening one failed: refused, or the
/// database not accepting connections): the database is unavailable, whatever the server said, as
/// sea-orm reports its own acquire failures (`DbErr::Conn`).
fn acquire_err(e: sqlx::Error) -> StoreError {
    classify(DbErr::Conn(RuntimeErr::SqlxError(Arc::new(e))))
}

/// The rows of `$query` on a connection of `$pool`, within `$limit`. A query past the bound
/// closes its connection rather than give it back: it may still be waiting for an answer that
/// never comes (a host gone silent).
macro_rules! fetch_within {
    ($pool:expr, $query:expr, $limit:expr) => {{
        let mut conn = $pool.acquire().await.map_err(acquire_err)?;
        let rows = match $limit {
            None => $query.fetch_all(&mut *conn).await,
            Some(limit) => match tokio::time::timeout(limit, $query.fetch_all(&mut *conn)).await {
                Ok(rows) => rows,
                Err(_) => {
                    conn.close_on_drop();
                    return Err(classify(timed_out(limit)));
                }
            },
        };
        rows.map_err(sqlx_err)?
    }};
}

/// Runs the batch query; raw sqlx, as this one query is the hot path.
async fn fetch(inner: &Inner, ids: &[&str]) -> Result<HashMap<String, TenantView>, StoreError> {
    match inner.db.get_database_backend() {
        DbBackend::Postgres => {
            let pool = inner.db.get_postgres_connection_pool();
            let query = sqlx::query(VIEW_SQL_POSTGRES).bind(ids);
            views_of(&fetch_within!(pool, query, inner.opts.limit))
        }
        DbBackend::Sqlite => {
            let json =
                serde_json::to_string(ids).map_err(|e| StoreError::Database(DbErr::Custom(e.to_string())))?;
            let pool = inner.db.get_sqlite_connection_pool();
            let query = sqlx::query(VIEW_SQL_SQLITE).bind(json);
            views_of(&fetch_within!(pool, query, inner.opts.limit))
        }
        other => Err(StoreError::Database(DbErr::Custom(format!(
            "unsupported backend {other:?}"
        )))),
    }
}

/// The views in the rows of one batch query (`view_sql!`, columns by position), by tenant id.
fn views_of<R>(rows: &[R]) -> Result<HashMap<String, TenantView>, StoreError>
where
    R: Row,
    usize: ColumnIndex<R>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    DateTime<Utc>: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    let view_from_row = |row: &R| -> Result<(String, TenantView), StoreError> {
        let tenant_id: String = row.try_get(0).map_err(sqlx_err)?;
        let home_org: String = row.try_get(1).map_err(sqlx_err)?;
        let admin_groups: String = row.try_get(2).map_err(sqlx_err)?;
        let revision = Revision::new(row.try_get(3).map_err(sqlx_err)?);
        let org_id: Option<String> = row.try_get(4).map_err(sqlx_err)?;
        let tid = TenantId::parse(&tenant_id).map_err(|_| corrupt("tenant id"))?;
        let active = match org_id {
            None => None,
            Some(org_id) => Some(ConnectionRecord {
                tenant_id: tid.clone(),
                org_id: OrgId::parse(&org_id).map_err(|_| corrupt("org id"))?,
                org_name: row.try_get(5).map_err(sqlx_err)?,
                connected_by: UserId::parse(&row.try_get::<String, _>(6).map_err(sqlx_err)?)
                    .map_err(|_| corrupt("user id"))?,
                connected_at: row.try_get(7).map_err(sqlx_err)?,
                revision: Revision::new(row.try_get(8).map_err(sqlx_err)?),
                active: true,
                ended_by: None,
                ended_at: None,
                end_reason: None,
            }),
        };
        let tenant = TenantRecord {
            tenant_id: tid,
            home_org: OrgId::parse(&home_org).map_err(|_| corrupt("home org"))?,
            admin_groups: serde_json::from_str(&admin_groups).map_err(|_| corrupt("admin groups"))?,
            revision,
        };
        Ok((tenant_id, TenantView { tenant, active }))
    };
    rows.iter().map(view_from_row).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(in_flight: usize, started_ago: Option<Duration>) -> Queue {
        Queue {
            pending: VecDeque::new(),
            in_flight,
            newest_started: started_ago.and_then(|ago| Instant::now().checked_sub(ago)),
        }
    }

    #[test]
    fn one_query_at_a_time_unless_the_newest_has_run_past_the_overtake_time() {
        let late = OVERTAKE_AFTER + Duration::from_millis(1);
        assert!(queue(0, None).may_start(2), "nothing in flight: start");
        assert!(
            !queue(1, Some(Duration::ZERO)).may_start(2),
            "a fresh query takes the read later"
        );
        assert!(queue(1, Some(late)).may_start(2), "a slow query is overtaken");
        assert!(!queue(2, Some(late)).may_start(2), "never past the bound");
        assert!(!queue(1, Some(late)).may_start(1), "a bound of one is one");
    }
}
