//! The tenant registry: registering tenants (also again after a removal), replacing their
//! administrator groups, listing and reading them. One implementation of each operation, called by
//! the `tenant` commands and by the provisioning API alike (`TenantWrite`).
//!
//! A registration (a new tenant, or a removed one registered again) writes a `tenant-registered`
//! change in its transaction, as its last statement (`change.rs`): a new tenant at revision 0 (it
//! had none), a removed one at the revision after its removal's, so a follower that applies only
//! higher revisions takes it. Replacing administrator groups is no change of the feed (the feed
//! carries connection state); it bumps the entry's `version`, the `ETag` of the registry entry.
//! No replica caches the registry: every request reads it, so a change is in effect on every
//! replica at once.

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Func, Order, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, Set, TransactionTrait,
};

use super::change::{self, ChangeKind, NewChange};
use super::failure::{corrupt, within};
use super::sql::registered_tenants_with_active_connection;
use super::{ConnectionRecord, Store, StoreError, TenantRecord, classify};
use crate::domain::{Actor, Condition, OrgId, Revision, TenantId, UserId};
use crate::entity::{connection, tenant};

/// How often a registration that lost the race to insert the same new tenant is tried again (it
/// then finds the winner's entry).
const REGISTER_ATTEMPTS: u32 = 5;

/// A registry entry as the provisioning API serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryEntry {
    /// The tenant: id, home org, administrator groups, revision.
    pub tenant: TenantRecord,
    /// The entry's version, its `ETag`: bumped by every registration and every new list of groups.
    pub version: Revision,
    /// When the tenant was (last) registered.
    pub registered_at: DateTime<Utc>,
    /// When the entry last changed.
    pub updated_at: DateTime<Utc>,
}

/// What a registry write requires of the entry before it acts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryCondition {
    /// Nothing: register the tenant, or replace a registered one's groups.
    None,
    /// Only a tenant that is not registered (`If-None-Match: *`, `tenant add`).
    Absent,
    /// Only a registered tenant (`If-Match`: `*`, or its version; `tenant set-admin-groups`).
    Present(Condition),
}

/// A registration, or new administrator groups for a registered tenant.
#[derive(Debug, Clone)]
pub struct TenantWrite<'a> {
    /// The tenant.
    pub tenant_id: &'a TenantId,
    /// Its home org: required to register; `None` keeps a registered tenant's
    /// (`tenant set-admin-groups`). Another org than a registered tenant's is refused
    /// ([`StoreError::TenantOrgConflict`]).
    pub home_org: Option<&'a OrgId>,
    /// The administrator groups (checked at the edge: `AdminGroups`); they replace the list.
    pub admin_groups: &'a [String],
    /// What the entry must be for the write to act.
    pub condition: EntryCondition,
    /// Who writes (in the feed's `tenant-registered` change).
    pub by: &'a Actor,
    /// When.
    pub at: DateTime<Utc>,
}

/// What a registry write did.
#[derive(Debug, Clone)]
pub enum TenantWriteOutcome {
    /// The tenant was not registered (or had been removed): it is now, without a connection (201).
    Registered(RegistryEntry),
    /// Its administrator groups were replaced (200).
    Updated(RegistryEntry),
    /// The entry already said so; nothing changed (200).
    Unchanged(RegistryEntry),
}

impl TenantWriteOutcome {
    /// The entry as it now stands.
    pub fn entry(&self) -> &RegistryEntry {
        match self {
            Self::Registered(e) | Self::Updated(e) | Self::Unchanged(e) => e,
        }
    }
}

/// What the entry is, for a write's condition: not registered (`None`) or at a version.
fn condition_holds(condition: &EntryCondition, current: Option<Revision>) -> bool {
    match condition {
        EntryCondition::None => true,
        EntryCondition::Absent => current.is_none(),
        EntryCondition::Present(p) => p.holds_for(current),
    }
}

impl Store {
    /// Registers a tenant, or replaces a registered one's administrator groups, in one
    /// transaction (see [`TenantWriteOutcome`]). Concurrent registrations of one tenant from any
    /// number of replicas leave one entry: one of them registers it, the others find it registered.
    pub async fn put_tenant(&self, write: &TenantWrite<'_>) -> Result<TenantWriteOutcome, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_put_tenant(write).await? {
                Some(outcome) => return Ok(outcome),
                // Another writer inserted the tenant first; its entry is there to find now.
                None if attempt < REGISTER_ATTEMPTS => {
                    tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
                }
                None => return Err(StoreError::ConcurrentSwitch),
            }
        }
    }

    /// One attempt of [`Store::put_tenant`]; `None` when the insert of a new tenant lost a race.
    async fn try_put_tenant(&self, w: &TenantWrite<'_>) -> Result<Option<TenantWriteOutcome>, StoreError> {
        // PostgreSQL keeps microseconds: answer with what a later read returns.
        let at = w.at.trunc_subsecs(6);
        let groups = groups_json(w.admin_groups)?;
        let txn = self.wait(self.db.begin()).await?;
        // A write first: on PostgreSQL it locks the row (concurrent writes of one tenant, and a
        // switch or removal of it, serialize on it), on SQLite it takes the write lock at once.
        self.wait(
            tenant::Entity::update_many()
                .col_expr(tenant::Column::Version, Expr::col(tenant::Column::Version))
                .filter(tenant::Column::TenantId.eq(w.tenant_id.as_str()))
                .exec(&txn),
        )
        .await?;
        let row = self
            .wait(tenant::Entity::find_by_id(w.tenant_id.clone()).one(&txn))
            .await?;
        let registered = row.as_ref().filter(|m| m.removed_at.is_none());
        if !condition_holds(&w.condition, registered.map(|m| m.version)) {
            self.wait(txn.rollback()).await?;
            return Err(StoreError::EntryPreconditionFailed(registered.map(|m| m.version)));
        }
        if let Some(current) = registered {
            if w.home_org.is_some_and(|org| *org != current.home_org) {
                self.wait(txn.rollback()).await?;
                return Err(StoreError::TenantOrgConflict);
            }
            let entry = to_entry(current.clone())?;
            if same_groups(&entry.tenant.admin_groups, w.admin_groups) {
                self.wait(txn.rollback()).await?;
                return Ok(Some(TenantWriteOutcome::Unchanged(entry)));
            }
            let version = Revision::new(current.version.get() + 1);
            self.wait(
                tenant::Entity::update_many()
                    .col_expr(tenant::Column::AdminGroups, Expr::value(groups))
                    .col_expr(tenant::Column::Version, Expr::value(version))
                    .col_expr(tenant::Column::UpdatedAt, Expr::value(at))
                    .filter(tenant::Column::TenantId.eq(w.tenant_id.as_str()))
                    .exec(&txn),
            )
            .await?;
            self.commit(txn).await?;
            return Ok(Some(TenantWriteOutcome::Updated(RegistryEntry {
                tenant: TenantRecord {
                    admin_groups: w.admin_groups.to_vec(),
                    ..entry.tenant
                },
                version,
                updated_at: at,
                ..entry
            })));
        }
        let Some(home_org) = w.home_org else {
            self.wait(txn.rollback()).await?;
            return Err(StoreError::UnknownTenant);
        };
        // Not registered: a new tenant at revision 0 and version 1, or a removed one registered
        // again with its revision and version going on.
        let (revision, version) = match &row {
            None => (Revision::INITIAL, Revision::new(1)),
            Some(removed) => (
                Revision::new(removed.revision.get() + 1),
                Revision::new(removed.version.get() + 1),
            ),
        };
        match row {
            None => {
                let model = tenant::ActiveModel {
                    tenant_id: Set(w.tenant_id.clone()),
                    home_org: Set(home_org.clone()),
                    admin_groups: Set(groups),
                    revision: Set(revision),
                    created_at: Set(at),
                    removed_at: Set(None),
                    version: Set(version),
                    registered_at: Set(at),
                    updated_at: Set(at),
                };
                match within(self.limit, model.insert(&txn)).await {
                    Ok(_) => {}
                    // Another writer registered it meanwhile (PostgreSQL: it waited for that
                    // commit); this transaction is spent.
                    Err(e) if matches!(e.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_))) => {
                        drop(txn);
                        return Ok(None);
                    }
                    Err(e) => return Err(classify(e)),
                }
            }
            Some(_) => {
                self.wait(
                    tenant::Entity::update_many()
                        .col_expr(tenant::Column::HomeOrg, Expr::value(home_org.as_str()))
                        .col_expr(tenant::Column::AdminGroups, Expr::value(groups))
                        .col_expr(tenant::Column::Revision, Expr::value(revision))
                        .col_expr(tenant::Column::Version, Expr::value(version))
                        .col_expr(tenant::Column::RegisteredAt, Expr::value(at))
                        .col_expr(tenant::Column::UpdatedAt, Expr::value(at))
                        .col_expr(
                            tenant::Column::RemovedAt,
                            Expr::value(Option::<DateTime<Utc>>::None),
                        )
                        .filter(tenant::Column::TenantId.eq(w.tenant_id.as_str()))
                        .exec(&txn),
                )
                .await?;
            }
        }
        self.notify_in(&txn, w.tenant_id).await?;
        change::record(
            self,
            &txn,
            NewChange {
                tenant_id: w.tenant_id,
                kind: ChangeKind::TenantRegistered,
                org: None,
                previous_org_id: None,
                revision,
                at,
                by: w.by.as_str(),
            },
        )
        .await?;
        self.commit_locked(txn, w.tenant_id).await?;
        Ok(Some(TenantWriteOutcome::Registered(RegistryEntry {
            tenant: TenantRecord {
                tenant_id: w.tenant_id.clone(),
                home_org: home_org.clone(),
                admin_groups: w.admin_groups.to_vec(),
                revision,
            },
            version,
            registered_at: at,
            updated_at: at,
        })))
    }

    /// On PostgreSQL, queues the change notification in `txn` (delivered if it commits), as the
    /// switch's tenant lock does: the feed's tail and the watchers of every replica wake.
    async fn notify_in(&self, txn: &DatabaseTransaction, tenant_id: &TenantId) -> Result<(), StoreError> {
        let backend = txn.get_database_backend();
        if backend != DbBackend::Postgres {
            return Ok(());
        }
        let payload = super::payload(tenant_id, std::time::SystemTime::now());
        let notify = Query::select()
            .expr(Func::cust("pg_notify").arg(super::CHANNEL).arg(payload))
            .to_owned();
        self.wait(txn.execute_raw(backend.build(&notify))).await?;
        Ok(())
    }

    /// Registers a tenant that is not registered (a removed one again, with the given org and
    /// groups: it starts without a connection, and its history and revisions go on), as `tenant
    /// add` does for an operator not named; [`StoreError::TenantExists`] if it is registered.
    pub async fn add_tenant(
        &self,
        tenant_id: &TenantId,
        home_org: &OrgId,
        admin_groups: &[String],
    ) -> Result<TenantRecord, StoreError> {
        let write = TenantWrite {
            tenant_id,
            home_org: Some(home_org),
            admin_groups,
            condition: EntryCondition::Absent,
            by: &Actor::operator(""),
            at: Utc::now(),
        };
        match self.put_tenant(&write).await {
            Ok(outcome) => Ok(outcome.entry().tenant.clone()),
            Err(StoreError::EntryPreconditionFailed(_)) => Err(StoreError::TenantExists),
            Err(e) => Err(e),
        }
    }

    /// Replaces a registered tenant's administrator groups ([`StoreError::UnknownTenant`] if it is
    /// not registered). Nothing caches them: the next request on every replica sees them.
    pub async fn set_admin_groups(
        &self,
        tenant_id: &TenantId,
        admin_groups: &[String],
    ) -> Result<TenantRecord, StoreError> {
        let write = TenantWrite {
            tenant_id,
            home_org: None,
            admin_groups,
            condition: EntryCondition::Present(Condition::Any),
            by: &Actor::operator(""),
            at: Utc::now(),
        };
        match self.put_tenant(&write).await {
            Ok(outcome) => Ok(outcome.entry().tenant.clone()),
            Err(StoreError::EntryPreconditionFailed(_)) => Err(StoreError::UnknownTenant),
            Err(e) => Err(e),
        }
    }

    /// Every registered tenant (removed ones left out), by id.
    pub async fn list_tenants(&self) -> Result<Vec<TenantRecord>, StoreError> {
        let rows = self
            .wait(
                tenant::Entity::find()
                    .filter(tenant::Column::RemovedAt.is_null())
                    .order_by_asc(tenant::Column::TenantId)
                    .all(&self.db),
            )
            .await?;
        rows.into_iter().map(to_record).collect()
    }

    /// One tenant, if registered (and not removed).
    pub async fn tenant(&self, id: &TenantId) -> Result<Option<TenantRecord>, StoreError> {
        let row = self
            .wait(
                tenant::Entity::find_by_id(id.clone())
                    .filter(tenant::Column::RemovedAt.is_null())
                    .one(&self.db),
            )
            .await?;
        row.map(to_record).transpose()
    }

    /// The registry entry of `id` with its active connection, read in one statement; `None` if
    /// the tenant is not registered.
    pub async fn registry_entry(
        &self,
        id: &TenantId,
    ) -> Result<Option<(RegistryEntry, Option<ConnectionRecord>)>, StoreError> {
        Ok(self.registry_entries(Some(id), None, 1).await?.pop())
    }

    /// At most `limit` registered tenants after `after` (by id), each with its active connection,
    /// as committed when the statement starts.
    pub async fn registry_page(
        &self,
        after: Option<&TenantId>,
        limit: u64,
    ) -> Result<Vec<(RegistryEntry, Option<ConnectionRecord>)>, StoreError> {
        self.registry_entries(None, after, limit).await
    }

    async fn registry_entries(
        &self,
        only: Option<&TenantId>,
        after: Option<&TenantId>,
        limit: u64,
    ) -> Result<Vec<(RegistryEntry, Option<ConnectionRecord>)>, StoreError> {
        let backend = self.db.get_database_backend();
        let (mut query, t) = registered_tenants_with_active_connection(backend);
        query
            .columns(
                [
                    tenant::Column::TenantId,
                    tenant::Column::HomeOrg,
                    tenant::Column::AdminGroups,
                    tenant::Column::Revision,
                    tenant::Column::Version,
                    tenant::Column::RegisteredAt,
                    tenant::Column::UpdatedAt,
                ]
                .map(|column| (t.clone(), column)),
            )
            .expr_as(
                Expr::col((Alias::new("c"), connection::Column::Revision)),
                Alias::new("connection_revision"),
            );
        if let Some(id) = only {
            query.and_where(Expr::col((t.clone(), tenant::Column::TenantId)).eq(id.as_str()));
        }
        if let Some(after) = after {
            query.and_where(Expr::col((t.clone(), tenant::Column::TenantId)).gt(after.as_str()));
        }
        query
            .order_by((t, tenant::Column::TenantId), Order::Asc)
            .limit(limit);
        let rows = self.wait(self.db.query_all_raw(backend.build(&query))).await?;
        let db = StoreError::Database;
        rows.iter()
            .map(|row| {
                let groups: String = row.try_get("", "admin_groups").map_err(db)?;
                let tenant = TenantRecord {
                    tenant_id: row.try_get("", "tenant_id").map_err(db)?,
                    home_org: row.try_get("", "home_org").map_err(db)?,
                    admin_groups: serde_json::from_str(&groups).map_err(|_| corrupt("admin groups"))?,
                    revision: row.try_get("", "revision").map_err(db)?,
                };
                let org: Option<OrgId> = row.try_get("", "org_id").map_err(db)?;
                let active = match org {
                    None => None,
                    Some(org_id) => Some(ConnectionRecord {
                        tenant_id: tenant.tenant_id.clone(),
                        org_id,
                        org_name: row.try_get("", "org_name").map_err(db)?,
                        connected_by: row.try_get::<UserId>("", "connected_by").map_err(db)?,
                        connected_at: row.try_get("", "connected_at").map_err(db)?,
                        revision: row.try_get("", "connection_revision").map_err(db)?,
                        active: true,
                        ended_by: None,
                        ended_at: None,
                        end_reason: None,
                    }),
                };
                let entry = RegistryEntry {
                    tenant,
                    version: row.try_get("", "version").map_err(db)?,
                    registered_at: row.try_get("", "registered_at").map_err(db)?,
                    updated_at: row.try_get("", "updated_at").map_err(db)?,
                };
                Ok((entry, active))
            })
            .collect()
    }
}

/// Whether two lists name the same groups: a list of groups is a set (its order means nothing).
fn same_groups(a: &[String], b: &[String]) -> bool {
    use std::collections::BTreeSet;
    a.iter().collect::<BTreeSet<&String>>() == b.iter().collect::<BTreeSet<&String>>()
}

fn groups_json(admin_groups: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(admin_groups)
        .map_err(|e| StoreError::Database(sea_orm::DbErr::Custom(e.to_string())))
}

pub(super) fn to_record(m: tenant::Model) -> Result<TenantRecord, StoreError> {
    Ok(TenantRecord {
        tenant_id: m.tenant_id,
        home_org: m.home_org,
        admin_groups: serde_json::from_str(&m.admin_groups).map_err(|_| corrupt("admin groups"))?,
        revision: m.revision,
    })
}

fn to_entry(m: tenant::Model) -> Result<RegistryEntry, StoreError> {
    let (version, registered_at, updated_at) = (m.version, m.registered_at, m.updated_at);
    Ok(RegistryEntry {
        tenant: to_record(m)?,
        version,
        registered_at,
        updated_at,
    })
}
