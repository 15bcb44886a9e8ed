//! The connection: the hot-path read, the switch and disconnect transactions, and the history.

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Func, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};
use tracing::Instrument as _;

use super::change::{self, ChangeKind, NewChange};
use super::failure::{corrupt, within};
use super::sql::is_active;
use super::{
    ConnectionRecord, EndReason, Store, StoreError, SwitchOutcome, SwitchRequest, TenantView, classify,
};
use crate::domain::{Actor, Condition, Preconditions, Revision, TenantId, UserId};
use crate::entity::{connection, tenant};

/// How often a switch that lost a race in the database is tried again before answering 409.
const SWITCH_ATTEMPTS: u32 = 5;

fn parse_end_reason(stored: &str) -> Result<EndReason, StoreError> {
    match stored {
        "replaced" => Ok(EndReason::Replaced),
        "disconnected" => Ok(EndReason::Disconnected),
        "tenant-removed" => Ok(EndReason::TenantRemoved),
        _ => Err(corrupt("end reason")),
    }
}

fn from_model(m: connection::Model) -> Result<ConnectionRecord, StoreError> {
    Ok(ConnectionRecord {
        tenant_id: m.tenant_id,
        org_id: m.org_id,
        org_name: m.org_name,
        connected_by: m.connected_by,
        connected_at: m.connected_at,
        revision: m.revision,
        active: m.active,
        ended_by: m
            .ended_by
            .map(|u| Actor::parse(&u).map_err(|_| corrupt("ended by")))
            .transpose()?,
        ended_at: m.ended_at,
        end_reason: m.end_reason.as_deref().map(parse_end_reason).transpose()?,
    })
}

/// What a locked transaction found: the bumped revision and the active connection before it.
struct Locked {
    txn: DatabaseTransaction,
    revision: Revision,
    active: Option<ConnectionRecord>,
}

impl Locked {
    /// The ETag a read answered before this transaction: the active connection's revision, or
    /// the tenant's (the one just bumped, less one).
    fn etag(&self) -> Revision {
        current_etag(self.active.as_ref(), Revision::new(self.revision.get() - 1))
    }

    /// Rolls back, failing with the current ETag, unless `preconditions` hold.
    async fn check(self, store: &Store, preconditions: &Preconditions) -> Result<Self, StoreError> {
        let etag = self.etag();
        if preconditions.hold(etag, self.active.is_some()) {
            return Ok(self);
        }
        store.wait(self.txn.rollback()).await?;
        Err(StoreError::PreconditionFailed(etag))
    }
}

impl Store {
    /// The tenant and its active connection; `None` if the tenant is unknown. Answered by a
    /// batched query that starts after this call (linearizable; see `batch.rs`).
    pub async fn tenant_view(&self, id: &TenantId) -> Result<Option<TenantView>, StoreError> {
        self.wait_store(self.reads.read(id)).await
    }

    /// Begins a transaction whose first statement bumps the tenant's revision (and, on PostgreSQL,
    /// queues the change notification, sent if it commits): on PostgreSQL that locks the tenant
    /// row, so concurrent switches of one tenant (from any replica) serialize on it; on SQLite a
    /// write first takes the write lock at once (a read first could fail to upgrade).
    /// A removed tenant is unknown; a switch that waited on the lock of a `remove` re-checks the
    /// row once that committed (PostgreSQL re-evaluates the WHERE), so it finds the tenant gone.
    async fn lock_tenant(&self, tenant_id: &TenantId) -> Result<Locked, StoreError> {
        let backend = self.db.get_database_backend();
        let txn = self.wait(self.db.begin()).await?;
        let mut bump = Query::update();
        bump.table(tenant::Entity)
            .value(
                tenant::Column::Revision,
                Expr::col(tenant::Column::Revision).add(1),
            )
            .and_where(tenant::Column::TenantId.eq(tenant_id.as_str()))
            .and_where(tenant::Column::RemovedAt.is_null());
        let mut returning = vec![Expr::col(tenant::Column::Revision)];
        if backend == DbBackend::Postgres {
            // The change notification rides on the lock (no round trip of its own while the
            // tenant is locked); PostgreSQL delivers it only if the transaction commits.
            let payload = super::payload(tenant_id, std::time::SystemTime::now());
            returning.push(Func::cust("pg_notify").arg(super::CHANNEL).arg(payload).into());
        }
        bump.returning(Query::returning().exprs(returning));
        let bumped = self.wait(txn.query_one_raw(backend.build(&bump))).await?;
        let Some(bumped) = bumped else {
            self.wait(txn.rollback()).await?;
            return Err(StoreError::UnknownTenant);
        };
        let revision: Revision = bumped.try_get("", "revision").map_err(StoreError::Database)?;
        let active = self
            .wait(
                connection::Entity::find()
                    .filter(connection::Column::TenantId.eq(tenant_id.as_str()))
                    .filter(Expr::cust(is_active(backend, "")))
                    .one(&txn),
            )
            .await?
            .map(from_model)
            .transpose()?;
        Ok(Locked {
            txn,
            revision,
            active,
        })
    }

    /// Switches the tenant to `req.org_id` in one transaction (see [`SwitchOutcome`]). A lost race
    /// in the database is retried; the partial unique index is the last line of defence.
    pub async fn switch(&self, req: &SwitchRequest) -> Result<SwitchOutcome, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            // One span per transaction (traces on): a lost race shows as a second one.
            let span = crate::telemetry::switch_span("switch");
            match self.try_switch(req).instrument(span).await {
                Err(StoreError::ConcurrentSwitch) if attempt < SWITCH_ATTEMPTS => {
                    tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
                }
                other => return other,
            }
        }
    }

    async fn try_switch(&self, req: &SwitchRequest) -> Result<SwitchOutcome, StoreError> {
        let Locked {
            txn,
            revision,
            active,
        } = self
            .lock_tenant(&req.tenant_id)
            .await?
            .check(self, &req.preconditions)
            .await?;
        if let Some(current) = active.as_ref().filter(|a| a.org_id == req.org_id) {
            // Nothing changes, not even the revision.
            self.wait(txn.rollback()).await?;
            return Ok(SwitchOutcome::Unchanged(current.clone()));
        }
        // PostgreSQL keeps microseconds: answer with what a later read returns.
        let at = req.at.trunc_subsecs(6);
        if active.is_some() {
            end_active(
                self,
                &txn,
                &req.tenant_id,
                req.by.as_str(),
                at,
                EndReason::Replaced,
            )
            .await?;
        }
        let new = ConnectionRecord {
            tenant_id: req.tenant_id.clone(),
            org_id: req.org_id.clone(),
            org_name: req.org_name.clone(),
            connected_by: req.by.clone(),
            connected_at: at,
            revision,
            active: true,
            ended_by: None,
            ended_at: None,
            end_reason: None,
        };
        let row = connection::ActiveModel {
            tenant_id: Set(new.tenant_id.clone()),
            org_id: Set(new.org_id.clone()),
            org_name: Set(new.org_name.clone()),
            connected_by: Set(new.connected_by.clone()),
            connected_at: Set(new.connected_at),
            revision: Set(new.revision),
            active: Set(true),
            ..Default::default()
        };
        within(
            self.limit,
            connection::Entity::insert(row).exec_without_returning(&txn),
        )
        .await
        .map_err(|e| match e.sql_err() {
            // The partial unique index refused a second active row: another writer won.
            Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => StoreError::ConcurrentSwitch,
            _ => classify(e),
        })?;
        change::record(
            self,
            &txn,
            NewChange {
                tenant_id: &req.tenant_id,
                kind: if active.is_some() {
                    ChangeKind::Switched
                } else {
                    ChangeKind::Connected
                },
                org: Some((&new.org_id, &new.org_name)),
                previous_org_id: active.as_ref().map(|a| &a.org_id),
                revision,
                at,
                by: req.by.as_str(),
            },
        )
        .await?;
        self.commit_locked(txn, &req.tenant_id).await?;
        Ok(if active.is_some() {
            SwitchOutcome::Replaced(new)
        } else {
            SwitchOutcome::Created(new)
        })
    }

    /// Ends the tenant's active connection; returns it as it now stands in the history.
    pub async fn disconnect(
        &self,
        tenant_id: &TenantId,
        by: &UserId,
        at: DateTime<Utc>,
        preconditions: &Preconditions,
    ) -> Result<ConnectionRecord, StoreError> {
        let at = at.trunc_subsecs(6);
        let Locked {
            txn,
            revision,
            active,
        } = self
            .lock_tenant(tenant_id)
            .await?
            .check(self, preconditions)
            .await?;
        let Some(current) = active else {
            self.wait(txn.rollback()).await?;
            return Err(StoreError::NoConnection);
        };
        end_active(self, &txn, tenant_id, by.as_str(), at, EndReason::Disconnected).await?;
        change::record(
            self,
            &txn,
            NewChange {
                tenant_id,
                kind: ChangeKind::Disconnected,
                org: None,
                previous_org_id: Some(&current.org_id),
                revision,
                at,
                by: by.as_str(),
            },
        )
        .await?;
        self.commit_locked(txn, tenant_id).await?;
        Ok(ConnectionRecord {
            active: false,
            ended_by: Some(Actor::User(by.clone())),
            ended_at: Some(at),
            end_reason: Some(EndReason::Disconnected),
            ..current
        })
    }

    /// Removes the tenant from the registry: ends its active connection (`tenant-removed`, by `by`,
    /// kept in the history) and marks the tenant removed, in one transaction under the row lock a
    /// switch takes. A concurrent switch either commits first (and its connection is ended here) or
    /// finds the tenant unknown afterwards: one active row or none, never two. Returns the ended
    /// connection, if there was one.
    pub async fn remove_tenant(
        &self,
        tenant_id: &TenantId,
        by: &Actor,
        at: DateTime<Utc>,
    ) -> Result<Option<ConnectionRecord>, StoreError> {
        self.remove_tenant_if(tenant_id, by, at, None).await
    }

    /// [`Store::remove_tenant`] when the registry entry's version satisfies `if_match` (checked
    /// under the row lock; [`StoreError::EntryPreconditionFailed`] with the current version
    /// otherwise). The `tenant remove` command and `DELETE /tenants/{id}` both come here.
    pub async fn remove_tenant_if(
        &self,
        tenant_id: &TenantId,
        by: &Actor,
        at: DateTime<Utc>,
        if_match: Option<&Condition>,
    ) -> Result<Option<ConnectionRecord>, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_remove_tenant(tenant_id, by, at, if_match).await {
                Err(StoreError::ConcurrentSwitch) if attempt < SWITCH_ATTEMPTS => {
                    tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
                }
                other => return other,
            }
        }
    }

    async fn try_remove_tenant(
        &self,
        tenant_id: &TenantId,
        by: &Actor,
        at: DateTime<Utc>,
        if_match: Option<&Condition>,
    ) -> Result<Option<ConnectionRecord>, StoreError> {
        let at = at.trunc_subsecs(6);
        let Locked {
            txn,
            revision,
            active,
        } = self.lock_tenant(tenant_id).await?;
        if let Some(precondition) = if_match {
            // The row is locked: the version read here is the one the removal acts on.
            let version = self
                .wait(tenant::Entity::find_by_id(tenant_id.clone()).one(&txn))
                .await?
                .map(|m| m.version);
            if !precondition.holds_for(version) {
                self.wait(txn.rollback()).await?;
                return Err(StoreError::EntryPreconditionFailed(version));
            }
        }
        if active.is_some() {
            end_active(self, &txn, tenant_id, by.as_str(), at, EndReason::TenantRemoved).await?;
        }
        self.wait(
            tenant::Entity::update_many()
                .col_expr(tenant::Column::RemovedAt, Expr::val(at))
                .filter(tenant::Column::TenantId.eq(tenant_id.as_str()))
                .exec(&txn),
        )
        .await?;
        change::record(
            self,
            &txn,
            NewChange {
                tenant_id,
                kind: ChangeKind::TenantRemoved,
                org: None,
                previous_org_id: active.as_ref().map(|a| &a.org_id),
                revision,
                at,
                by: by.as_str(),
            },
        )
        .await?;
        // Removing a tenant ends its connection like a disconnect: the tenant lock carried the
        // NOTIFY (PostgreSQL); on SQLite the commit tells this process's listener.
        self.commit_locked(txn, tenant_id).await?;
        Ok(active.map(|current| ConnectionRecord {
            active: false,
            ended_by: Some(by.clone()),
            ended_at: Some(at),
            end_reason: Some(EndReason::TenantRemoved),
            ..current
        }))
    }

    /// Commits a transaction that wrote a change of `tenant` (begun by [`Store::lock_tenant`], or a
    /// registration; on PostgreSQL its `NOTIFY` is queued), then tells this process's commit
    /// listener on SQLite.
    pub(super) async fn commit_locked(
        &self,
        txn: DatabaseTransaction,
        tenant: &TenantId,
    ) -> Result<(), StoreError> {
        if txn.get_database_backend() == DbBackend::Postgres {
            return self.commit(txn).await;
        }
        let _notify = self.notifier.on_drop(tenant);
        self.commit(txn).await
    }

    /// The tenant's connections, newest first, older than `before_revision` when given.
    pub async fn history(
        &self,
        tenant_id: &TenantId,
        limit: u64,
        before_revision: Option<Revision>,
    ) -> Result<Vec<ConnectionRecord>, StoreError> {
        if self.tenant(tenant_id).await?.is_none() {
            return Err(StoreError::UnknownTenant);
        }
        let mut query =
            connection::Entity::find().filter(connection::Column::TenantId.eq(tenant_id.as_str()));
        if let Some(before) = before_revision {
            query = query.filter(connection::Column::Revision.lt(before));
        }
        let rows = self
            .wait(
                query
                    .order_by_desc(connection::Column::Revision)
                    .limit(limit)
                    .all(&self.db),
            )
            .await?;
        rows.into_iter().map(from_model).collect()
    }
}

impl TenantView {
    /// The ETag a read of this view answers: the active connection's revision, or without one
    /// the tenant's (bumped by every switch and disconnect).
    pub fn etag(&self) -> Revision {
        current_etag(self.active.as_ref(), self.tenant.revision)
    }

    /// Fails with the current ETag unless `preconditions` hold for this view (the switch and
    /// disconnect check them again in their transaction; this answers one already failed without
    /// further work).
    pub fn check(&self, preconditions: &Preconditions) -> Result<(), StoreError> {
        let etag = self.etag();
        if preconditions.hold(etag, self.active.is_some()) {
            Ok(())
        } else {
            Err(StoreError::PreconditionFailed(etag))
        }
    }
}

fn current_etag(active: Option<&ConnectionRecord>, tenant_revision: Revision) -> Revision {
    active.map_or(tenant_revision, |a| a.revision)
}

/// Ends the tenant's active connection in `txn` (it was replaced, disconnected or removed).
async fn end_active(
    store: &Store,
    txn: &DatabaseTransaction,
    tenant_id: &TenantId,
    by: &str,
    at: DateTime<Utc>,
    reason: EndReason,
) -> Result<(), StoreError> {
    store
        .wait(
            connection::Entity::update_many()
                .col_expr(connection::Column::Active, Expr::val(false))
                .col_expr(connection::Column::EndedBy, Expr::val(by))
                .col_expr(connection::Column::EndedAt, Expr::val(at))
                .col_expr(connection::Column::EndReason, Expr::val(reason.as_str()))
                .filter(connection::Column::TenantId.eq(tenant_id.as_str()))
                .filter(Expr::cust(is_active(txn.get_database_backend(), "")))
                .exec(txn),
        )
        .await?;
    Ok(())
}
