//! The tenant registry, and opening the database.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::sqlx::sqlite::SqliteJournalMode;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection,
    EntityTrait, QueryFilter, QueryOrder, Set,
};

use super::batch::{BatchOptions, ReadBatcher};
use super::{Store, StoreError, TenantRecord, classify};
use crate::domain::{OrgId, TenantId};
use crate::entity::tenant;

impl Store {
    /// Opens a pool on `url` (`sqlite:` or `postgres:`).
    pub async fn connect(url: &str, opts: &super::DbOptions) -> Result<Store, StoreError> {
        let sqlite = url.starts_with("sqlite:");
        // SQLite has one writer at a time: more than a few connections only cost memory.
        let max = if sqlite {
            opts.max_connections.min(4)
        } else {
            opts.max_connections
        };
        let statement_timeout = opts.statement_timeout_ms.to_string();
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .max_connections(max)
            .min_connections(1)
            .connect_timeout(Duration::from_secs(opts.connect_timeout_secs))
            .acquire_timeout(Duration::from_secs(opts.connect_timeout_secs))
            // Pinging every connection taken from the pool doubles the round trips of a read; a
            // connection busy in the last seconds is alive, and one that died anyway fails its
            // statement (503) and leaves the pool.
            .test_before_acquire_if_idle_for(Duration::from_secs(5))
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
            .map_sqlx_postgres_opts(move |o| o.options([("statement_timeout", statement_timeout.as_str())]));
        let db = Database::connect(options).await.map_err(classify)?;
        let reads = BatchOptions {
            max_batch: opts.read_batch_size,
            max_in_flight: opts.read_batches_in_flight.min(max.saturating_sub(1) as usize),
        };
        Ok(Store::with_reads(db, reads))
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

    /// Wraps an open connection.
    pub fn from_connection(db: DatabaseConnection) -> Store {
        let defaults = super::DbOptions::default();
        let reads = BatchOptions {
            max_batch: defaults.read_batch_size,
            max_in_flight: defaults.read_batches_in_flight,
        };
        Store::with_reads(db, reads)
    }

    fn with_reads(db: DatabaseConnection, reads: BatchOptions) -> Store {
        // SQLite's feed is in-process and delivers from the start; PostgreSQL's waits for its
        // listener (see `watch::spawn_postgres_feed`).
        let live = db.get_database_backend() != sea_orm::DbBackend::Postgres;
        Store {
            reads: ReadBatcher::new(db.clone(), reads),
            db,
            watchers: crate::watch::Watchers::new(crate::watch::DEFAULT_MAX_WATCHERS, live),
        }
    }

    /// This replica's watchers (blocking reads), woken by the changes this store commits.
    pub fn watchers(&self) -> &crate::watch::Watchers {
        &self.watchers
    }

    /// Batched read queries run, and tenant-view reads they answered, since the store opened.
    pub fn read_stats(&self) -> (u64, u64) {
        self.reads.stats()
    }

    /// The underlying connection.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Applies pending migrations. On PostgreSQL an advisory lock is held meanwhile, so replicas
    /// starting at once migrate one after the other (the later ones find nothing to do).
    pub async fn migrate(&self) -> Result<(), StoreError> {
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
        lock.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
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
        self.db
            .execute_unprepared("SELECT 1")
            .await
            .map(drop)
            .map_err(classify)
    }

    /// Registers a tenant. A removed tenant is registered again, with the given org and groups:
    /// it starts without a connection, and its history and revisions go on.
    pub async fn add_tenant(
        &self,
        tenant_id: &TenantId,
        home_org: &OrgId,
        admin_groups: &[String],
    ) -> Result<TenantRecord, StoreError> {
        let groups = groups_json(admin_groups)?;
        let model = tenant::ActiveModel {
            tenant_id: Set(tenant_id.as_str().to_owned()),
            home_org: Set(home_org.as_str().to_owned()),
            admin_groups: Set(groups.clone()),
            revision: Set(0),
            created_at: Set(Utc::now()),
            removed_at: Set(None),
        };
        match model.insert(&self.db).await {
            Ok(m) => to_record(m),
            Err(e) if matches!(e.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_))) => {
                let readded = tenant::Entity::update_many()
                    .col_expr(tenant::Column::HomeOrg, Expr::value(home_org.as_str()))
                    .col_expr(tenant::Column::AdminGroups, Expr::value(groups))
                    .col_expr(
                        tenant::Column::RemovedAt,
                        Expr::value(Option::<DateTime<Utc>>::None),
                    )
                    .filter(tenant::Column::TenantId.eq(tenant_id.as_str()))
                    .filter(tenant::Column::RemovedAt.is_not_null())
                    .exec(&self.db)
                    .await
                    .map_err(classify)?;
                if readded.rows_affected == 0 {
                    return Err(StoreError::TenantExists);
                }
                self.tenant(tenant_id).await?.ok_or(StoreError::UnknownTenant)
            }
            Err(e) => Err(classify(e)),
        }
    }

    /// Replaces the tenant's administrator groups. Nothing caches them: the next request sees them.
    pub async fn set_admin_groups(
        &self,
        tenant_id: &TenantId,
        admin_groups: &[String],
    ) -> Result<TenantRecord, StoreError> {
        let updated = tenant::Entity::update_many()
            .col_expr(
                tenant::Column::AdminGroups,
                Expr::value(groups_json(admin_groups)?),
            )
            .filter(tenant::Column::TenantId.eq(tenant_id.as_str()))
            .filter(tenant::Column::RemovedAt.is_null())
            .exec(&self.db)
            .await
            .map_err(classify)?;
        if updated.rows_affected == 0 {
            return Err(StoreError::UnknownTenant);
        }
        self.tenant(tenant_id).await?.ok_or(StoreError::UnknownTenant)
    }

    /// Every registered tenant (removed ones left out), by id.
    pub async fn list_tenants(&self) -> Result<Vec<TenantRecord>, StoreError> {
        let rows = tenant::Entity::find()
            .filter(tenant::Column::RemovedAt.is_null())
            .order_by_asc(tenant::Column::TenantId)
            .all(&self.db)
            .await
            .map_err(classify)?;
        rows.into_iter().map(to_record).collect()
    }

    /// One tenant, if registered (and not removed).
    pub async fn tenant(&self, id: &TenantId) -> Result<Option<TenantRecord>, StoreError> {
        let row = tenant::Entity::find_by_id(id.as_str().to_owned())
            .filter(tenant::Column::RemovedAt.is_null())
            .one(&self.db)
            .await
            .map_err(classify)?;
        row.map(to_record).transpose()
    }

    /// How many of the binary's migrations the database lacks (their names), found without
    /// changing anything (not even creating the migrations table).
    pub async fn pending_migrations(&self) -> Result<Vec<String>, StoreError> {
        use migration::MigratorTrait;
        let pending = migration::Migrator::get_pending_migrations_read_only(&self.db)
            .await
            .map_err(classify)?;
        Ok(pending.iter().map(|m| m.name().to_owned()).collect())
    }
}

fn groups_json(admin_groups: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(admin_groups)
        .map_err(|e| StoreError::Database(sea_orm::DbErr::Custom(e.to_string())))
}

/// The advisory lock key of migrations ("cc-conn" in ASCII).
const MIGRATION_LOCK: i64 = 0x63_632d_636f_6e6e;

/// A stored row that does not parse back is corruption, reported as a database error.
pub(super) fn corrupt(what: &str) -> StoreError {
    StoreError::Database(sea_orm::DbErr::Custom(format!("stored {what} is malformed")))
}

pub(super) fn to_record(m: tenant::Model) -> Result<TenantRecord, StoreError> {
    Ok(TenantRecord {
        tenant_id: TenantId::parse(&m.tenant_id).map_err(|_| corrupt("tenant id"))?,
        home_org: OrgId::parse(&m.home_org).map_err(|_| corrupt("home org"))?,
        admin_groups: serde_json::from_str(&m.admin_groups).map_err(|_| corrupt("admin groups"))?,
        revision: m.revision,
    })
}
