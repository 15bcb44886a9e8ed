//! The change feed's rows: written by the switch, disconnect and removal transactions as their last
//! statement, read in position order; and the listing of every tenant with its state.
//!
//! Positions follow commit order: a position is taken from the one-row `change_head` by an `UPDATE`
//! as the last statement before `COMMIT`. On PostgreSQL that row lock is held until the commit is
//! visible (a commit becomes visible before its locks are released), so the next position can only
//! be taken, and committed, after this one is visible, whichever replica writes it. SQLite has one
//! writer at a time. A reader that has seen position N therefore never later meets one <= N.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, QueryResult};

use super::failure::corrupt;
use super::sql::{is_active, stmt};
use super::{Store, StoreError};
use crate::domain::{Actor, OrgId, Revision, TenantId, UserId};

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// The tenant had no connection; now it has one.
    Connected,
    /// The tenant's connection was replaced by one to another org.
    Switched,
    /// An administrator disconnected the tenant.
    Disconnected,
    /// An operator removed the tenant (`tenant remove`).
    TenantRemoved,
}

impl ChangeKind {
    /// The stored and sent spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connected => "connected",
            Self::Switched => "switched",
            Self::Disconnected => "disconnected",
            Self::TenantRemoved => "tenant-removed",
        }
    }

    fn parse(stored: &str) -> Result<Self, StoreError> {
        match stored {
            "connected" => Ok(Self::Connected),
            "switched" => Ok(Self::Switched),
            "disconnected" => Ok(Self::Disconnected),
            "tenant-removed" => Ok(Self::TenantRemoved),
            _ => Err(corrupt("change kind")),
        }
    }
}

/// One change of the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRecord {
    /// Its position: commit order, never reused.
    pub position: i64,
    /// The tenant.
    pub tenant_id: TenantId,
    /// What happened.
    pub kind: ChangeKind,
    /// The org connected from now on (None for a disconnect or a removal).
    pub org_id: Option<OrgId>,
    /// That org's name as IMS gave it.
    pub org_name: Option<String>,
    /// The org connected before (None if there was none).
    pub previous_org_id: Option<OrgId>,
    /// The tenant's revision after the change.
    pub revision: Revision,
    /// When.
    pub at: DateTime<Utc>,
    /// Who: an administrator, or `cli:<login>`.
    pub by: Actor,
}

/// One registered tenant of the listing: its revision and its active connection, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedTenant {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The tenant's revision (bumped by every change of the feed).
    pub revision: Revision,
    /// The connected org, its name, who connected it and when.
    pub active: Option<(OrgId, String, UserId, DateTime<Utc>)>,
}

/// A change about to be written (everything but its position).
pub(super) struct NewChange<'a> {
    pub tenant_id: &'a TenantId,
    pub kind: ChangeKind,
    pub org: Option<(&'a OrgId, &'a str)>,
    pub previous_org_id: Option<&'a OrgId>,
    pub revision: Revision,
    pub at: DateTime<Utc>,
    pub by: &'a str,
}

const CHANGE_COLUMNS: &str =
    r#""position", tenant_id, kind, org_id, org_name, previous_org_id, revision, "at", "by""#;

/// Writes `change` in `txn` at the next position. Must be the transaction's last statement before
/// the commit: the position's row lock is what orders the commits (see the module note).
pub(super) async fn record(
    store: &Store,
    txn: &DatabaseTransaction,
    change: NewChange<'_>,
) -> Result<(), StoreError> {
    let backend = txn.get_database_backend();
    let values = |position: Option<i64>| {
        let mut v: Vec<sea_orm::Value> = position.map(Into::into).into_iter().collect();
        v.extend([
            change.tenant_id.as_str().into(),
            change.kind.as_str().into(),
            change.org.map(|(id, _)| id.as_str().to_owned()).into(),
            change.org.map(|(_, name)| name.to_owned()).into(),
            change.previous_org_id.map(|id| id.as_str().to_owned()).into(),
            change.revision.into(),
            change.at.into(),
            change.by.into(),
        ]);
        v
    };
    match backend {
        DbBackend::Postgres => {
            // One round trip: the position is taken and used in the same statement.
            let sql = format!(
                r#"WITH head AS (UPDATE change_head SET "position" = "position" + 1 WHERE id = 1 RETURNING "position")
                   INSERT INTO change ({CHANGE_COLUMNS}) SELECT head."position", $1, $2, $3, $4, $5, $6, $7, $8 FROM head"#
            );
            store
                .wait(txn.execute_raw(stmt(backend, &sql, values(None))))
                .await?;
        }
        _ => {
            let head = store
                .wait(txn.query_one_raw(stmt(
                    backend,
                    r#"UPDATE change_head SET "position" = "position" + 1 WHERE id = 1 RETURNING "position""#,
                    vec![],
                )))
                .await?
                .ok_or_else(|| corrupt("change head"))?;
            let position: i64 = head.try_get("", "position").map_err(StoreError::Database)?;
            let sql =
                format!("INSERT INTO change ({CHANGE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)");
            store
                .wait(txn.execute_raw(stmt(backend, &sql, values(Some(position)))))
                .await?;
        }
    }
    Ok(())
}

fn change_of(row: &QueryResult) -> Result<ChangeRecord, StoreError> {
    let get_str = |col: &str| row.try_get::<String>("", col).map_err(StoreError::Database);
    let get_opt = |col: &str| {
        row.try_get::<Option<String>>("", col)
            .map_err(StoreError::Database)
    };
    let org = |col: &str| {
        row.try_get::<Option<OrgId>>("", col)
            .map_err(StoreError::Database)
    };
    Ok(ChangeRecord {
        position: row.try_get("", "position").map_err(StoreError::Database)?,
        tenant_id: row.try_get("", "tenant_id").map_err(StoreError::Database)?,
        kind: ChangeKind::parse(&get_str("kind")?)?,
        org_id: org("org_id")?,
        org_name: get_opt("org_name")?,
        previous_org_id: org("previous_org_id")?,
        revision: row.try_get("", "revision").map_err(StoreError::Database)?,
        at: row.try_get("", "at").map_err(StoreError::Database)?,
        by: Actor::parse(&get_str("by")?).map_err(|_| corrupt("change author"))?,
    })
}

impl Store {
    /// The last position handed out (0 before the first change).
    pub async fn change_head(&self) -> Result<i64, StoreError> {
        let backend = self.db.get_database_backend();
        let row = self
            .wait(self.db.query_one_raw(stmt(
                backend,
                r#"SELECT "position" FROM change_head WHERE id = 1"#,
                vec![],
            )))
            .await?
            .ok_or_else(|| corrupt("change head"))?;
        row.try_get("", "position").map_err(StoreError::Database)
    }

    /// At most `limit` changes after position `after`, oldest first. Read from the database as
    /// committed when the query starts (a read started after a change was acknowledged has it).
    pub async fn changes_after(&self, after: i64, limit: u64) -> Result<Vec<ChangeRecord>, StoreError> {
        let backend = self.db.get_database_backend();
        let sql = format!(
            r#"SELECT {CHANGE_COLUMNS} FROM change WHERE "position" > $1 ORDER BY "position" LIMIT $2"#
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .wait(
                self.db
                    .query_all_raw(stmt(backend, &sql, vec![after.into(), limit.into()])),
            )
            .await?;
        rows.iter().map(change_of).collect()
    }

    /// At most `limit` registered tenants after `after` (by id), with their revision and active
    /// connection, each row as committed when the query starts.
    pub async fn list_connections(
        &self,
        after: Option<&TenantId>,
        limit: u64,
    ) -> Result<Vec<ListedTenant>, StoreError> {
        let backend = self.db.get_database_backend();
        let sql = format!(
            "SELECT t.tenant_id, t.revision, c.org_id, c.org_name, c.connected_by, c.connected_at \
             FROM tenant t LEFT JOIN connection c ON c.tenant_id = t.tenant_id AND {} \
             WHERE t.removed_at IS NULL AND t.tenant_id > $1 ORDER BY t.tenant_id LIMIT $2",
            is_active(backend, "c.")
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let after = after.map_or("", TenantId::as_str);
        let rows = self
            .wait(
                self.db
                    .query_all_raw(stmt(backend, &sql, vec![after.into(), limit.into()])),
            )
            .await?;
        rows.iter()
            .map(|row| {
                let org: Option<OrgId> = row.try_get("", "org_id").map_err(StoreError::Database)?;
                let active = match org {
                    None => None,
                    Some(org) => {
                        let name: String = row.try_get("", "org_name").map_err(StoreError::Database)?;
                        let by: UserId = row.try_get("", "connected_by").map_err(StoreError::Database)?;
                        let at: DateTime<Utc> =
                            row.try_get("", "connected_at").map_err(StoreError::Database)?;
                        Some((org, name, by, at))
                    }
                };
                Ok(ListedTenant {
                    tenant_id: row.try_get("", "tenant_id").map_err(StoreError::Database)?,
                    revision: row.try_get("", "revision").map_err(StoreError::Database)?,
                    active,
                })
            })
            .collect()
    }
}
