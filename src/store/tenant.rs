//! The tenant registry, and opening the database.

use std::time::Duration;

use chrono::Utc;
use sea_orm::sqlx::sqlite::SqliteJournalMode;
use sea_orm::{
    ActiveModelTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection, EntityTrait,
    QueryOrder, Set,
};

use super::{Store, StoreError, TenantRecord, classify};
use crate::domain::{OrgId, TenantId};
use crate::entity::tenant;

impl Store {
    /// Opens a pool on `url` (`sqlite:` or `postgres:`).
    pub async fn connect(url: &str, opts: &super::DbOptions) -> Result<Store, StoreError> {
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .max_connections(opts.max_connections)
            .min_connections(1)
            .connect_timeout(Duration::from_secs(opts.connect_timeout_secs))
            .acquire_timeout(Duration::from_secs(opts.connect_timeout_secs))
            .sqlx_logging(false)
            // WAL lets readers go on while a switch writes; the busy timeout makes concurrent
            // writers wait for each other instead of failing.
            .map_sqlx_sqlite_opts(|o| {
                o.journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true)
                    .create_if_missing(true)
            });
        let db = Database::connect(options).await.map_err(classify)?;
        Ok(Store { db })
    }

    /// Wraps an open connection.
    pub fn from_connection(db: DatabaseConnection) -> Store {
        Store { db }
    }

    /// The underlying connection.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        use migration::MigratorTrait;
        migration::Migrator::up(&self.db, None)
            .await
            .map_err(classify)
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.db
            .execute_unprepared("SELECT 1")
            .await
            .map(drop)
            .map_err(classify)
    }

    /// Registers a tenant.
    pub async fn add_tenant(
        &self,
        tenant_id: &TenantId,
        home_org: &OrgId,
        admin_groups: &[String],
    ) -> Result<TenantRecord, StoreError> {
        let groups = serde_json::to_string(admin_groups)
            .map_err(|e| StoreError::Database(sea_orm::DbErr::Custom(e.to_string())))?;
        let model = tenant::ActiveModel {
            tenant_id: Set(tenant_id.as_str().to_owned()),
            home_org: Set(home_org.as_str().to_owned()),
            admin_groups: Set(groups),
            revision: Set(0),
            created_at: Set(Utc::now()),
        };
        match model.insert(&self.db).await {
            Ok(m) => to_record(m),
            Err(e)
                if matches!(
                    e.sql_err(),
                    Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
                ) =>
            {
                Err(StoreError::TenantExists)
            }
            Err(e) => Err(classify(e)),
        }
    }

    /// Every registered tenant, by id.
    pub async fn list_tenants(&self) -> Result<Vec<TenantRecord>, StoreError> {
        let rows = tenant::Entity::find()
            .order_by_asc(tenant::Column::TenantId)
            .all(&self.db)
            .await
            .map_err(classify)?;
        rows.into_iter().map(to_record).collect()
    }

    /// One tenant, if registered.
    pub async fn tenant(&self, id: &TenantId) -> Result<Option<TenantRecord>, StoreError> {
        let row = tenant::Entity::find_by_id(id.as_str().to_owned())
            .one(&self.db)
            .await
            .map_err(classify)?;
        row.map(to_record).transpose()
    }
}

/// A stored row that does not parse back is corruption, reported as a database error.
pub(super) fn corrupt(what: &str) -> StoreError {
    StoreError::Database(sea_orm::DbErr::Custom(format!(
        "stored {what} is malformed"
    )))
}

pub(super) fn to_record(m: tenant::Model) -> Result<TenantRecord, StoreError> {
    Ok(TenantRecord {
        tenant_id: TenantId::parse(&m.tenant_id).map_err(|_| corrupt("tenant id"))?,
        home_org: OrgId::parse(&m.home_org).map_err(|_| corrupt("home org"))?,
        admin_groups: serde_json::from_str(&m.admin_groups).map_err(|_| corrupt("admin groups"))?,
        revision: m.revision,
    })
}
