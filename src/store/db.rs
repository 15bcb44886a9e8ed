//! Opening the database: the pool and its options, migrations, the ping and the schema check.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::sea_query::{Expr, Func, Query};
use sea_orm::sqlx::sqlite::SqliteJournalMode;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr};

use super::batch::{BatchOptions, ReadBatcher};
use super::failure::{classify, is_outage, is_pool_timeout, within};
use super::outage::Outage;
use super::{Store, StoreError};
use crate::config;

/// Options of the database pool.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// Maximum connections in the pool.
    pub max_connections: u32,
    /// How long a caller waits for a connection: an idle one from the pool, or a new one opened
    /// (connecting included).
    pub connect_timeout: Duration,
    /// PostgreSQL `statement_timeout`, in milliseconds (0: none). A statement that runs longer
    /// is cancelled and the request answers 503 `database-unavailable`. A pool that migrates
    /// (`Store::migrate`) is given the migration timeout here: it then bounds the whole migration. The same figure plus [`STATEMENT_GRACE`] bounds each statement and
    /// each commit on our side, where the server cannot help: a host gone silent, or a commit
    /// waiting for a synchronous standby (PostgreSQL lifts `statement_timeout` during COMMIT).
    pub statement_timeout_ms: u64,
    /// Most distinct tenants one batched read query fetches.
    pub read_batch_size: usize,
    /// Most batched read queries running at once; at most the pool size less one, so a
    /// connection always stays free for switches.
    pub read_batches_in_flight: usize,
}

/// A pooled connection idle this long is pinged before it is handed out.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(5);

/// What our own bound on a statement adds to the server's `statement_timeout`: a live server's
/// timeout (which keeps the connection usable) answers first.
pub const STATEMENT_GRACE: Duration = Duration::from_millis(500);

impl DbOptions {
    /// The bound on each statement and commit on our side (`None` without a statement timeout).
    pub fn statement_limit(&self) -> Option<Duration> {
        (self.statement_timeout_ms > 0)
            .then(|| Duration::from_millis(self.statement_timeout_ms) + STATEMENT_GRACE)
    }
}

/// The configuration's defaults (`crate::config`), for stores opened without a configuration.
impl Default for DbOptions {
    fn default() -> Self {
        Self {
            max_connections: config::DEFAULT_DB_MAX_CONNECTIONS,
            connect_timeout: config::DEFAULT_DB_CONNECT_TIMEOUT,
            statement_timeout_ms: config::DEFAULT_DB_STATEMENT_TIMEOUT_MS,
            read_batch_size: config::DEFAULT_DB_READ_BATCH_SIZE,
            read_batches_in_flight: config::DEFAULT_DB_READ_BATCHES_IN_FLIGHT,
        }
    }
}

impl Store {
    /// Opens a pool on `url` (`sqlite:` or `postgres:`).
    pub async fn connect(url: &str, opts: &DbOptions) -> Result<Store, StoreError> {
        let sqlite = url.starts_with("sqlite:");
        // SQLite has one writer at a time: more than a few connections only cost memory.
        let max = if sqlite {
            opts.max_connections.min(4)
        } else {
            opts.max_connections
        };
        let statement_timeout = opts.statement_timeout_ms.to_string();
        let limit = opts.statement_limit();
        let outage = Arc::new(Outage::default());
        let gate = outage.clone();
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .max_connections(max)
            .min_connections(1)
            // The pool's acquire timeout bounds the whole wait for a connection, opening a new one
            // included: the connect timeout (sqlx has no other; sea-orm's `connect_timeout` sets
            // this same one).
            .acquire_timeout(opts.connect_timeout)
            // Pinging every connection taken from the pool doubles the round trips of a read; a
            // connection busy in the last seconds is alive, and one that died anyway fails its
            // statement (503) and leaves the pool.
            .test_before_acquire_if_idle_for(PING_IF_IDLE_FOR)
            .sqlx_logging(false)
            // WAL lets readers go on while a switch writes; the busy timeout makes concurrent
            // writers wait for each other instead of failing; a 1 MiB page cache per connection
            // keeps memory small (the hot query reads two index pages).
            .map_sqlx_sqlite_opts(|o| {
                o.journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true)
                    .create_if_missing(true)
                    .pragma("cache_size", "-1024")
            })
            .map_sqlx_postgres_opts(move |o| o.options([("statement_timeout", statement_timeout.as_str())]))
            // A statement abandoned at our bound leaves its connection waiting for an answer that
            // may never come: sqlx pings every released connection before reusing it, without a
            // bound, so a ping of ours with one comes first and a connection that does not
            // answer is thrown away (no pool slot held by a dead host).
            .map_sqlx_postgres_pool_opts(move |o| {
                let gate = gate.clone();
                // Replaces the idle ping configured above (for SQLite), bounded, and first drops a
                // connection last given back before the database was last found unreachable: it
                // may lead to a host gone silent, where even a bounded ping costs the bound.
                o.before_acquire(move |conn, meta| {
                    let gate = gate.clone();
                    Box::pin(async move {
                        use sea_orm::sqlx::Connection;
                        if gate.predates_last_outage(meta.idle_for) {
                            return Ok(false);
                        }
                        if meta.idle_for >= PING_IF_IDLE_FOR {
                            let ping = conn.ping();
                            match limit {
                                None => ping.await?,
                                Some(limit) => tokio::time::timeout(limit, ping)
                                    .await
                                    .unwrap_or_else(|_| Err(no_ping_answer(limit)))?,
                            }
                        }
                        Ok(true)
                    })
                })
                .after_release(move |conn, _| {
                    Box::pin(async move {
                        use sea_orm::sqlx::Connection;
                        let ping = conn.ping();
                        match limit {
                            None => ping.await.map(|()| true),
                            Some(limit) => tokio::time::timeout(limit, ping)
                                .await
                                .unwrap_or_else(|_| Err(no_ping_answer(limit)))
                                .map(|()| true),
                        }
                    })
                })
            });
        let db = Database::connect(options).await.map_err(classify)?;
        let reads = BatchOptions {
            max_batch: opts.read_batch_size,
            max_in_flight: opts.read_batches_in_flight.min(max.saturating_sub(1) as usize),
            limit,
        };
        Ok(Store::with_reads(db, reads, outage))
    }

    /// Connections in the pool, and how many of them are idle.
    pub fn pool_size(&self) -> (u32, u32) {
        match self.db.get_database_backend() {
            sea_orm::DbBackend::Postgres => {
                let pool = self.db.get_postgres_connection_pool();
                (pool.size(), u32::try_from(pool.num_idle()).unwrap_or(u32::MAX))
            }
            sea_orm::DbBackend::Sqlite => {
                let pool = self.db.get_sqlite_connection_pool();
                (pool.size(), u32::try_from(pool.num_idle()).unwrap_or(u32::MAX))
            }
            _ => (0, 0),
        }
    }

    fn with_reads(db: DatabaseConnection, reads: BatchOptions, outage: Arc<Outage>) -> Store {
        Store {
            limit: reads.limit,
            reads: ReadBatcher::new(db.clone(), reads),
            db,
            notifier: Default::default(),
            outage,
        }
    }

    /// Tells `listener` of every change this store (and its clones) commits on SQLite, in place of
    /// any listener before; on PostgreSQL changes are told by `NOTIFY` on
    /// [`CHANNEL`](super::CHANNEL), to every replica.
    pub fn notify_commits_to(&self, listener: Arc<dyn super::CommitListener>) {
        self.notifier.set(listener);
    }

    /// Runs one database wait of a request: refused at once while the database is unreachable
    /// (but for one probe per back-off, see `outage.rs`), ended at the statement bound, and its
    /// outcome recorded.
    pub(crate) async fn wait<T>(&self, fut: impl Future<Output = Result<T, DbErr>>) -> Result<T, StoreError> {
        self.outage.admit()?;
        let result = within(self.limit, fut).await.map_err(classify);
        self.record(&result);
        result
    }

    fn record<T>(&self, result: &Result<T, StoreError>) {
        let unreachable = result.as_ref().is_err_and(|e| {
            // A wait for a connection of a pool whose connections are all in use says the pool is
            // busy, not that the database is gone.
            is_outage(e) && !(is_pool_timeout(e) && self.pool_saturated())
        });
        self.outage.record(result, unreachable);
    }

    fn pool_saturated(&self) -> bool {
        let (size, idle) = self.pool_size();
        let max = match self.db.get_database_backend() {
            sea_orm::DbBackend::Postgres => self
                .db
                .get_postgres_connection_pool()
                .options()
                .get_max_connections(),
            sea_orm::DbBackend::Sqlite => self
                .db
                .get_sqlite_connection_pool()
                .options()
                .get_max_connections(),
            _ => 0,
        };
        idle == 0 && size >= max
    }

    /// Like [`Store::wait`] for a wait already answering [`StoreError`] (the batched reads).
    pub(crate) async fn wait_store<T>(
        &self,
        fut: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.outage.admit()?;
        let result = fut.await;
        self.record(&result);
        result
    }

    /// Commits `txn` within the statement bound. A commit that failed for want of an answer may
    /// have been made: [`StoreError::OutcomeUnknown`], never a plain "unavailable".
    pub(crate) async fn commit(&self, txn: sea_orm::DatabaseTransaction) -> Result<(), StoreError> {
        let result = within(self.limit, txn.commit()).await.map_err(classify);
        self.record(&result);
        result.map_err(|e| match e {
            StoreError::Unavailable(cause) => StoreError::OutcomeUnknown(cause),
            other => other,
        })
    }

    /// Whether this replica finds the database unreachable now, and the waits that failed or were
    /// refused for it since the store opened.
    pub fn outage_stats(&self) -> (bool, u64) {
        self.outage.stats()
    }

    /// Batched read queries run, and tenant-view reads they answered, since the store opened.
    pub fn read_stats(&self) -> (u64, u64) {
        self.reads.stats()
    }

    /// The underlying connection.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Applies pending migrations, within the store's bound in all (the lock's wait included). On
    /// PostgreSQL an advisory lock is held meanwhile, so replicas starting at once migrate one
    /// after the other (the later ones find nothing to do).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self.limit {
            None => self.migrate_unbounded().await,
            Some(limit) => tokio::time::timeout(limit, self.migrate_unbounded())
                .await
                .unwrap_or_else(|_| Err(StoreError::Unavailable(super::failure::timed_out(limit)))),
        }
    }

    async fn migrate_unbounded(&self) -> Result<(), StoreError> {
        use migration::MigratorTrait;
        use sea_orm::TransactionTrait;
        if self.db.get_database_backend() != sea_orm::DbBackend::Postgres {
            // SQLite runs migrations outside transactions and has no advisory locks: a process
            // that loses the race to another one (its CREATE finds the table made) tries again
            // once the winner has recorded the migration, and then finds nothing to do.
            let mut attempt = 0;
            loop {
                attempt += 1;
                match migration::Migrator::up(&self.db, None).await {
                    Ok(()) => return Ok(()),
                    Err(_) if attempt < 10 => tokio::time::sleep(Duration::from_millis(100)).await,
                    Err(e) => return Err(classify(e)),
                }
            }
        }
        // A transaction-level lock, released by commit or by the connection dying.
        let lock = self.db.begin().await.map_err(classify)?;
        let take = Query::select()
            .expr(Func::cust("pg_advisory_xact_lock").arg(MIGRATION_LOCK))
            .to_owned();
        lock.execute_raw(sea_orm::DbBackend::Postgres.build(&take))
            .await
            .map_err(classify)?;
        let result = migration::Migrator::up(&self.db, None).await.map_err(classify);
        lock.commit().await.map_err(classify)?;
        result
    }

    /// Closes the pool.
    pub async fn close(self) {
        let _ = self.db.close().await;
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let ping = Query::select().expr(Expr::val(1)).to_owned();
        let ping = self.db.get_database_backend().build(&ping);
        self.wait(self.db.execute_raw(ping)).await.map(drop)
    }

    /// How many of the binary's migrations the database lacks (their names), found without
    /// changing anything (not even creating the migrations table).
    pub async fn pending_migrations(&self) -> Result<Vec<String>, StoreError> {
        use migration::MigratorTrait;
        let pending = self
            .wait(migration::Migrator::get_pending_migrations_read_only(&self.db))
            .await?;
        Ok(pending.iter().map(|m| m.name().to_owned()).collect())
    }
}

/// A ping of a pooled connection that got no answer within `limit`: the connection is closed.
fn no_ping_answer(limit: Duration) -> sea_orm::sqlx::Error {
    sea_orm::sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer to a ping within {} ms", limit.as_millis()),
    ))
}

/// The advisory lock key of migrations ("cc-conn" in ASCII).
pub const MIGRATION_LOCK: i64 = 0x63_632d_636f_6e6e;
