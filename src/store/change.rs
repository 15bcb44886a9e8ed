//! The change feed's rows: written by the switch, disconnect, removal and registration transactions as their last
//! statement, read in position order; and the listing of every tenant with its state.
//!
//! Positions follow commit order: a position is taken from the one-row `change_head` by an `UPDATE`
//! as the last statement before `COMMIT`. On PostgreSQL that row lock is held until the commit is
//! visible (a commit becomes visible before its locks are released), so the next position can only
//! be taken, and committed, after this one is visible, whichever replica writes it. SQLite has one
//! writer at a time. A reader that has seen position N therefore never later meets one <= N.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, CommonTableExpression, Expr, ExprTrait, Order, Query, WithClause};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use super::failure::corrupt;
use super::sql::registered_tenants_with_active_connection;
use super::{Store, StoreError};
use crate::domain::{Actor, OrgId, Revision, TenantId, UserId};
use crate::entity::{change, change_head, tenant};

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// The tenant was registered (`tenant add`, `PUT /tenants/{id}`), also after a removal: it has
    /// no connection yet.
    TenantRegistered,
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
            Self::TenantRegistered => "tenant-registered",
            Self::Connected => "connected",
            Self::Switched => "switched",
            Self::Disconnected => "disconnected",
            Self::TenantRemoved => "tenant-removed",
        }
    }

    fn parse(stored: &str) -> Result<Self, StoreError> {
        match stored {
            "tenant-registered" => Ok(Self::TenantRegistered),
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
    /// Who: an administrator, `cli:<login>`, or `provisioning:<client_id>`.
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

/// Writes `change` in `txn` at the next position. Must be the transaction's last statement before
/// the commit: the position's row lock is what orders the commits (see the module note).
pub(super) async fn record(
    store: &Store,
    txn: &DatabaseTransaction,
    change: NewChange<'_>,
) -> Result<(), StoreError> {
    let backend = txn.get_database_backend();
    let take_position = Query::update()
        .table(change_head::Entity)
        .value(
            change_head::Column::Position,
            Expr::col(change_head::Column::Position).add(1),
        )
        .and_where(change_head::Column::Id.eq(HEAD_ID))
        .returning_col(change_head::Column::Position)
        .to_owned();
    let columns = [
        change::Column::Position,
        change::Column::TenantId,
        change::Column::Kind,
        change::Column::OrgId,
        change::Column::OrgName,
        change::Column::PreviousOrgId,
        change::Column::Revision,
        change::Column::At,
        change::Column::By,
    ];
    let values: [Expr; 8] = [
        Expr::val(change.tenant_id.as_str()),
        Expr::val(change.kind.as_str()),
        Expr::val(change.org.map(|(id, _)| id.as_str().to_owned())),
        Expr::val(change.org.map(|(_, name)| name.to_owned())),
        Expr::val(change.previous_org_id.map(|id| id.as_str().to_owned())),
        Expr::val(change.revision),
        Expr::val(change.at),
        Expr::val(change.by),
    ];
    let built = |e: sea_orm::sea_query::error::Error| StoreError::Database(DbErr::Custom(e.to_string()));
    let mut insert = Query::insert();
    insert.into_table(change::Entity).columns(columns);
    let insert = match backend {
        DbBackend::Postgres => {
            // One round trip: the position is taken and used in the same statement.
            let head = Alias::new("head");
            let mut taken = Query::select();
            taken
                .column((head.clone(), change_head::Column::Position))
                .exprs(values)
                .from(head.clone());
            insert.select_from(taken).map_err(built)?;
            let take = CommonTableExpression::new()
                .query(take_position)
                .table_name(head)
                .to_owned();
            backend.build(&insert.with(WithClause::new().cte(take).to_owned()))
        }
        _ => {
            let head = store
                .wait(txn.query_one_raw(backend.build(&take_position)))
                .await?
                .ok_or_else(|| corrupt("change head"))?;
            let position: i64 = head.try_get("", "position").map_err(StoreError::Database)?;
            insert
                .values(std::iter::once(Expr::val(position)).chain(values))
                .map_err(built)?;
            backend.build(&insert)
        }
    };
    store.wait(txn.execute_raw(insert)).await?;
    Ok(())
}

/// The key of `change_head`'s one row.
const HEAD_ID: i32 = 1;

fn from_model(m: change::Model) -> Result<ChangeRecord, StoreError> {
    Ok(ChangeRecord {
        position: m.position,
        tenant_id: m.tenant_id,
        kind: ChangeKind::parse(&m.kind)?,
        org_id: m.org_id,
        org_name: m.org_name,
        previous_org_id: m.previous_org_id,
        revision: m.revision,
        at: m.at,
        by: Actor::parse(&m.by).map_err(|_| corrupt("change author"))?,
    })
}

impl Store {
    /// The last position handed out (0 before the first change).
    pub async fn change_head(&self) -> Result<i64, StoreError> {
        let head = self
            .wait(change_head::Entity::find_by_id(HEAD_ID).one(&self.db))
            .await?
            .ok_or_else(|| corrupt("change head"))?;
        Ok(head.position)
    }

    /// At most `limit` changes after position `after`, oldest first. Read from the database as
    /// committed when the query starts (a read started after a change was acknowledged has it).
    pub async fn changes_after(&self, after: i64, limit: u64) -> Result<Vec<ChangeRecord>, StoreError> {
        let rows = self
            .wait(
                change::Entity::find()
                    .filter(change::Column::Position.gt(after))
                    .order_by_asc(change::Column::Position)
                    .limit(limit)
                    .all(&self.db),
            )
            .await?;
        rows.into_iter().map(from_model).collect()
    }

    /// At most `limit` registered tenants after `after` (by id), with their revision and active
    /// connection, each row as committed when the query starts.
    pub async fn list_connections(
        &self,
        after: Option<&TenantId>,
        limit: u64,
    ) -> Result<Vec<ListedTenant>, StoreError> {
        let backend = self.db.get_database_backend();
        let (mut query, t) = registered_tenants_with_active_connection(backend);
        query
            .column((t.clone(), tenant::Column::TenantId))
            .column((t.clone(), tenant::Column::Revision))
            .and_where(
                Expr::col((t.clone(), tenant::Column::TenantId)).gt(after.map_or("", TenantId::as_str)),
            )
            .order_by((t, tenant::Column::TenantId), Order::Asc)
            .limit(limit);
        let rows = self.wait(self.db.query_all_raw(backend.build(&query))).await?;
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
