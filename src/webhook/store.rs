//! The endpoints' rows: what the API and the CLI read and change, and the delivery worker's lease
//! and outcomes. Every change a worker writes is conditioned on its lease and on the row's
//! `generation` (bumped by replay, enable and disable), so an outcome of a delivery made before a
//! replay or after the lease was lost is never written.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Func, Query};
use sea_orm::{
    ActiveValue, ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};

use crate::entity::webhook_endpoint::{self as row, Column as C, Entity as E};
use crate::store::{Store, StoreError};

pub use crate::entity::webhook_endpoint::Model as EndpointRecord;

/// `active`: delivering, or waiting for a change.
pub const ACTIVE: &str = "active";
/// `failing`: the last attempt failed; retrying on the schedule.
pub const FAILING: &str = "failing";
/// `disabled`: nothing is delivered until it is enabled.
pub const DISABLED: &str = "disabled";

/// A new endpoint.
#[derive(Debug)]
pub struct NewEndpoint<'a> {
    /// Its id.
    pub id: &'a str,
    /// The integration that owns it.
    pub client_id: &'a str,
    /// Where to send.
    pub url: &'a str,
    /// The secret, encrypted.
    pub sealed_secret: String,
    /// Deliver the changes after this position.
    pub position: i64,
    /// When.
    pub at: DateTime<Utc>,
}

/// What an attempt came to, as recorded.
#[derive(Debug, Clone)]
pub enum Recorded {
    /// 2xx: the change at this position is delivered.
    Delivered {
        /// The change delivered.
        position: i64,
        /// The status answered.
        status_code: u16,
    },
    /// A failure to retry at `next_attempt_at`.
    Retry {
        /// The status, if one came.
        status_code: Option<u16>,
        /// What failed, if no status came.
        error: Option<String>,
        /// When to try again.
        next_attempt_at: DateTime<Utc>,
    },
    /// 410 or the last retry: disabled.
    Disabled {
        /// The status, if one came.
        status_code: Option<u16>,
        /// What failed, if no status came.
        error: Option<String>,
        /// Why it is disabled.
        reason: String,
    },
}

/// The lease is free, expired, or `owner`'s.
fn claimable(owner: &str, now: DateTime<Utc>) -> Condition {
    Condition::any()
        .add(C::LeaseOwner.is_null())
        .add(C::LeaseUntil.lt(now))
        .add(C::LeaseOwner.eq(owner))
}

/// The advisory lock key of one integration's endpoints (its creation, on PostgreSQL).
fn client_lock(client_id: &str) -> i64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("cc-connection webhook {client_id}"));
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// The endpoints' table, over the store.
#[derive(Debug, Clone)]
pub struct Endpoints {
    store: Store,
}

impl Endpoints {
    /// The endpoints of `store`'s database.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Creates `new` unless its integration already has `cap` endpoints (`None`). Concurrent
    /// creations of one integration are serialized (PostgreSQL: an advisory lock; SQLite: the
    /// insert takes the write lock first), so the cap holds.
    pub async fn create(
        &self,
        new: NewEndpoint<'_>,
        cap: usize,
    ) -> Result<Option<EndpointRecord>, StoreError> {
        let db = self.store.connection();
        let txn = self.store.wait(db.begin()).await?;
        if db.get_database_backend() == DbBackend::Postgres {
            let lock = Query::select()
                .expr(Func::cust("pg_advisory_xact_lock").arg(client_lock(new.client_id)))
                .to_owned();
            self.store
                .wait(txn.execute_raw(DbBackend::Postgres.build(&lock)))
                .await?;
        }
        let model = row::ActiveModel {
            id: ActiveValue::Set(new.id.to_owned()),
            client_id: ActiveValue::Set(new.client_id.to_owned()),
            url: ActiveValue::Set(new.url.to_owned()),
            secret: ActiveValue::Set(new.sealed_secret),
            previous_secret: ActiveValue::Set(None),
            previous_secret_until: ActiveValue::Set(None),
            status: ActiveValue::Set(ACTIVE.to_owned()),
            position: ActiveValue::Set(new.position),
            generation: ActiveValue::Set(0),
            failures: ActiveValue::Set(0),
            next_attempt_at: ActiveValue::Set(None),
            last_attempt_at: ActiveValue::Set(None),
            last_status_code: ActiveValue::Set(None),
            last_error: ActiveValue::Set(None),
            disabled_reason: ActiveValue::Set(None),
            lease_owner: ActiveValue::Set(None),
            lease_until: ActiveValue::Set(None),
            created_at: ActiveValue::Set(new.at),
        };
        self.store.wait(E::insert(model).exec(&txn)).await?;
        let count = self
            .store
            .wait(E::find().filter(C::ClientId.eq(new.client_id)).count(&txn))
            .await?;
        if count > cap as u64 {
            self.store.wait(txn.rollback()).await?;
            return Ok(None);
        }
        self.store.commit(txn).await?;
        self.get(new.id).await
    }

    /// One endpoint.
    pub async fn get(&self, id: &str) -> Result<Option<EndpointRecord>, StoreError> {
        self.store
            .wait(E::find_by_id(id.to_owned()).one(self.store.connection()))
            .await
    }

    /// At most `limit` endpoints after id `after`, by id: of `client_id`, or all.
    pub async fn list(
        &self,
        client_id: Option<&str>,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<EndpointRecord>, StoreError> {
        let mut query = E::find().order_by_asc(C::Id).limit(limit);
        if let Some(client) = client_id {
            query = query.filter(C::ClientId.eq(client));
        }
        if let Some(after) = after {
            query = query.filter(C::Id.gt(after));
        }
        self.store.wait(query.all(self.store.connection())).await
    }

    /// Deletes endpoint `id`; whether it was there.
    pub async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let done = self
            .store
            .wait(E::delete_by_id(id.to_owned()).exec(self.store.connection()))
            .await?;
        Ok(done.rows_affected == 1)
    }

    /// Replaces the secret with `sealed`, the current one signing too until `until`.
    pub async fn rotate_secret(
        &self,
        id: &str,
        sealed: String,
        until: DateTime<Utc>,
    ) -> Result<Option<EndpointRecord>, StoreError> {
        let update = E::update_many()
            .col_expr(C::PreviousSecret, Expr::col(C::Secret))
            .col_expr(C::PreviousSecretUntil, Expr::val(until))
            .col_expr(C::Secret, Expr::val(sealed))
            .filter(C::Id.eq(id));
        self.changed(id, update).await
    }

    /// Delivery goes on after `position`, from the next attempt.
    pub async fn replay(&self, id: &str, position: i64) -> Result<Option<EndpointRecord>, StoreError> {
        let update = E::update_many()
            .col_expr(C::Position, Expr::val(position))
            .col_expr(C::Failures, Expr::val(0))
            .col_expr(C::NextAttemptAt, Expr::val(Option::<DateTime<Utc>>::None))
            .col_expr(
                C::Status,
                Expr::cust(format!(
                    "CASE WHEN status = '{DISABLED}' THEN '{DISABLED}' ELSE '{ACTIVE}' END"
                )),
            )
            .col_expr(C::Generation, Expr::col(C::Generation).add(1))
            .filter(C::Id.eq(id));
        self.changed(id, update).await
    }

    /// A disabled (or failing) endpoint resumes after its position, at once.
    pub async fn enable(&self, id: &str) -> Result<Option<EndpointRecord>, StoreError> {
        let update = E::update_many()
            .col_expr(C::Status, Expr::val(ACTIVE))
            .col_expr(C::Failures, Expr::val(0))
            .col_expr(C::NextAttemptAt, Expr::val(Option::<DateTime<Utc>>::None))
            .col_expr(C::DisabledReason, Expr::val(Option::<String>::None))
            .col_expr(C::Generation, Expr::col(C::Generation).add(1))
            .filter(C::Id.eq(id));
        self.changed(id, update).await
    }

    /// Stops delivery to endpoint `id` (an operator's doing).
    pub async fn disable(&self, id: &str, reason: &str) -> Result<Option<EndpointRecord>, StoreError> {
        let update = E::update_many()
            .col_expr(C::Status, Expr::val(DISABLED))
            .col_expr(C::DisabledReason, Expr::val(reason))
            .col_expr(C::NextAttemptAt, Expr::val(Option::<DateTime<Utc>>::None))
            .col_expr(C::Generation, Expr::col(C::Generation).add(1))
            .filter(C::Id.eq(id));
        self.changed(id, update).await
    }

    /// Rewrites endpoint `id`'s sealed secrets (`webhook reencrypt`), unless they changed meanwhile.
    pub async fn reseal(
        &self,
        id: &str,
        was: (&str, Option<&str>),
        now: (String, Option<String>),
    ) -> Result<bool, StoreError> {
        let mut update = E::update_many()
            .col_expr(C::Secret, Expr::val(now.0))
            .col_expr(C::PreviousSecret, Expr::val(now.1))
            .filter(C::Id.eq(id))
            .filter(C::Secret.eq(was.0));
        update = match was.1 {
            Some(previous) => update.filter(C::PreviousSecret.eq(previous)),
            None => update.filter(C::PreviousSecret.is_null()),
        };
        let done = self.store.wait(update.exec(self.store.connection())).await?;
        Ok(done.rows_affected == 1)
    }

    async fn changed(
        &self,
        id: &str,
        update: sea_orm::UpdateMany<E>,
    ) -> Result<Option<EndpointRecord>, StoreError> {
        let done = self.store.wait(update.exec(self.store.connection())).await?;
        if done.rows_affected == 0 {
            return Ok(None);
        }
        self.get(id).await
    }

    // The delivery worker's side.

    /// Endpoints `owner` may deliver to now (or within `soon`): not disabled, not held by another
    /// replica, no retry due later; at most `limit`, those waiting longest first.
    pub async fn claimable(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        soon: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<String>, StoreError> {
        let rows = self
            .store
            .wait(
                E::find()
                    .select_only()
                    .column(C::Id)
                    .filter(C::Status.ne(DISABLED))
                    .filter(
                        Condition::any()
                            .add(C::NextAttemptAt.is_null())
                            .add(C::NextAttemptAt.lte(soon)),
                    )
                    .filter(claimable(owner, now))
                    .order_by_asc(C::Id)
                    .limit(limit)
                    .into_tuple::<String>()
                    .all(self.store.connection()),
            )
            .await?;
        Ok(rows)
    }

    /// Takes (or renews) the lease of `id` for `owner` until `until`, unless another replica
    /// holds it or the endpoint is disabled or gone.
    pub async fn claim(
        &self,
        id: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = self
            .store
            .wait(
                E::update_many()
                    .col_expr(C::LeaseOwner, Expr::val(owner))
                    .col_expr(C::LeaseUntil, Expr::val(until))
                    .filter(C::Id.eq(id))
                    .filter(C::Status.ne(DISABLED))
                    .filter(claimable(owner, now))
                    .exec(self.store.connection()),
            )
            .await?;
        Ok(done.rows_affected == 1)
    }

    /// Gives up `owner`'s lease of `id`.
    pub async fn release(&self, id: &str, owner: &str) -> Result<(), StoreError> {
        self.store
            .wait(
                E::update_many()
                    .col_expr(C::LeaseOwner, Expr::val(Option::<String>::None))
                    .col_expr(C::LeaseUntil, Expr::val(Option::<DateTime<Utc>>::None))
                    .filter(C::Id.eq(id))
                    .filter(C::LeaseOwner.eq(owner))
                    .exec(self.store.connection()),
            )
            .await?;
        Ok(())
    }

    /// Records an attempt's outcome, made at `at` by `owner` at `generation`, renewing the lease
    /// until `until`; `false` (nothing written) if the lease or the generation moved on.
    pub async fn record(
        &self,
        id: &str,
        owner: &str,
        generation: i64,
        at: DateTime<Utc>,
        until: DateTime<Utc>,
        outcome: &Recorded,
    ) -> Result<bool, StoreError> {
        let mut update = E::update_many().col_expr(C::LastAttemptAt, Expr::val(at));
        if !matches!(outcome, Recorded::Disabled { .. }) {
            update = update.col_expr(C::LeaseUntil, Expr::val(until));
        }
        let (status_code, error) = match outcome {
            Recorded::Delivered {
                position,
                status_code,
            } => {
                update = update
                    .col_expr(C::Position, Expr::val(*position))
                    .col_expr(C::Failures, Expr::val(0))
                    .col_expr(C::Status, Expr::val(ACTIVE))
                    .col_expr(C::NextAttemptAt, Expr::val(Option::<DateTime<Utc>>::None));
                (Some(*status_code), None)
            }
            Recorded::Retry {
                status_code,
                error,
                next_attempt_at,
            } => {
                update = update
                    .col_expr(C::Failures, Expr::col(C::Failures).add(1))
                    .col_expr(C::Status, Expr::val(FAILING))
                    .col_expr(C::NextAttemptAt, Expr::val(*next_attempt_at));
                (*status_code, error.clone())
            }
            Recorded::Disabled {
                status_code,
                error,
                reason,
            } => {
                update = update
                    .col_expr(C::Failures, Expr::col(C::Failures).add(1))
                    .col_expr(C::Status, Expr::val(DISABLED))
                    .col_expr(C::DisabledReason, Expr::val(reason.clone()))
                    .col_expr(C::NextAttemptAt, Expr::val(Option::<DateTime<Utc>>::None))
                    .col_expr(C::LeaseOwner, Expr::val(Option::<String>::None))
                    .col_expr(C::LeaseUntil, Expr::val(Option::<DateTime<Utc>>::None));
                (*status_code, error.clone())
            }
        };
        let done = self
            .store
            .wait(
                update
                    .col_expr(C::LastStatusCode, Expr::val(status_code.map(i32::from)))
                    .col_expr(C::LastError, Expr::val(error))
                    .filter(C::Id.eq(id))
                    .filter(C::LeaseOwner.eq(owner))
                    .filter(C::Generation.eq(generation))
                    .exec(self.store.connection()),
            )
            .await?;
        Ok(done.rows_affected == 1)
    }

    /// Endpoints by status.
    pub async fn count_by_status(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.store
            .wait(
                E::find()
                    .select_only()
                    .column(C::Status)
                    .column_as(C::Id.count(), "n")
                    .group_by(C::Status)
                    .into_tuple::<(String, i64)>()
                    .all(self.store.connection()),
            )
            .await
    }

    /// Each endpoint that is not disabled and the commit time of the oldest change it has not
    /// been delivered (`None`: none pending).
    pub async fn oldest_undelivered(&self) -> Result<Vec<(String, Option<DateTime<Utc>>)>, StoreError> {
        use crate::entity::change;
        use sea_orm::sea_query::{Alias, JoinType};
        let db = self.store.connection();
        let backend = db.get_database_backend();
        let (e, c) = (Alias::new("e"), Alias::new("c"));
        let query = Query::select()
            .column((e.clone(), C::Id))
            .column((c.clone(), change::Column::At))
            .from_as(E, e.clone())
            .join_as(
                JoinType::LeftJoin,
                change::Entity,
                c.clone(),
                Expr::col((c.clone(), change::Column::Position))
                    .eq(Expr::col((e.clone(), C::Position)).add(1)),
            )
            .and_where(Expr::col((e, C::Status)).ne(DISABLED))
            .to_owned();
        let rows = self.store.wait(db.query_all_raw(backend.build(&query))).await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("", "id").map_err(StoreError::Database)?;
                let at: Option<DateTime<Utc>> = row.try_get("", "at").map_err(StoreError::Database)?;
                Ok((id, at))
            })
            .collect()
    }
}
