//! Persistence: the tenant registry and the connection with its history, over sea-orm.
//!
//! `db.rs` opens, migrates and checks the database; `tenant.rs` is the registry; `connection.rs`
//! the connection and its history; `batch.rs` the batched reads of the hot path; `change.rs` the
//! change feed; `readiness.rs` the database half of `/readyz`; `failure.rs` how
//! database errors are sorted, and our bound on each wait; `notify.rs` how a commit is told
//! to the rest of the replica (the store knows nothing of who listens).
//!
//! Functions here return [`StoreError`], never HTTP types; `error.rs` maps them once.

mod batch;
mod change;
mod connection;
mod db;
mod failure;
mod notify;
mod outage;
mod readiness;
mod sql;
mod tenant;

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DbErr};

pub use change::{ChangeKind, ChangeRecord, ListedTenant};
pub use db::{DbOptions, MIGRATION_LOCK};
pub(crate) use failure::{classify, is_outage};
pub use notify::{CHANNEL, CommitListener, parse_payload, payload};
pub(crate) use outage::jittered;
pub use readiness::{DbReadiness, READINESS_TTL};
pub use tenant::{EntryCondition, RegistryEntry, TenantWrite, TenantWriteOutcome};

use crate::domain::{Actor, OrgId, Preconditions, Revision, TenantId, UserId};

/// What can go wrong in the store. `Clone`: one failed batch query answers every read in it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The tenant is not registered.
    #[error("tenant is not registered")]
    UnknownTenant,
    /// The tenant has no active connection.
    #[error("tenant has no active connection")]
    NoConnection,
    /// `If-Match` or `If-None-Match` did not hold; the current ETag (revision) is carried.
    #[error("revision precondition failed")]
    PreconditionFailed(Revision),
    /// Another switch of the same tenant won a race this one could not wait out.
    #[error("a concurrent switch of the same tenant won")]
    ConcurrentSwitch,
    /// The tenant is already registered (`tenant add` of an existing id).
    #[error("tenant is already registered")]
    TenantExists,
    /// A registered tenant's home org is never changed in place (remove it first).
    #[error("the tenant is registered with another home org")]
    TenantOrgConflict,
    /// A registry write's condition (`If-Match`, `If-None-Match: *`) does not hold; carries the
    /// entry's current version (`None`: not registered).
    #[error("registry entry precondition failed")]
    EntryPreconditionFailed(Option<Revision>),
    /// The database could not be reached or did not answer in time.
    #[error("database unavailable")]
    Unavailable(#[source] DbErr),
    /// The database stopped answering (or the connection died) while a change was being
    /// committed: it may or may not have been made.
    #[error("the outcome of the commit is unknown")]
    OutcomeUnknown(#[source] DbErr),
    /// Any other database error.
    #[error("database error")]
    Database(#[source] DbErr),
}

/// A registered tenant: its home IMS org and the groups of that org whose members administer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRecord {
    /// The tenant id.
    pub tenant_id: TenantId,
    /// The tenant's own IMS org.
    pub home_org: OrgId,
    /// IMS group idents (in the home org) whose members are administrators of this tenant.
    pub admin_groups: Vec<String>,
    /// Bumped by every change of the feed (switch, disconnect, removal, registration of a removed
    /// tenant); the ETag of the active connection is this revision.
    pub revision: Revision,
}

/// One connection row: the active one or a past one from the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionRecord {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The Creative Cloud org connected.
    pub org_id: OrgId,
    /// The org's name as IMS gave it at the time of the switch.
    pub org_name: String,
    /// The administrator who connected it.
    pub connected_by: UserId,
    /// When it was connected.
    pub connected_at: DateTime<Utc>,
    /// The tenant revision this connection was created at (its ETag while active).
    pub revision: Revision,
    /// Whether this is the tenant's active connection.
    pub active: bool,
    /// Who replaced or removed it (None while active): an administrator, or the operator who
    /// removed the tenant.
    pub ended_by: Option<Actor>,
    /// When it was replaced or removed (None while active).
    pub ended_at: Option<DateTime<Utc>>,
    /// Why it ended (None while active).
    pub end_reason: Option<EndReason>,
}

/// Why a connection stopped being active; stored and sent as `replaced`, `disconnected` or
/// `tenant-removed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum EndReason {
    /// Another org was connected in its place.
    Replaced,
    /// An administrator disconnected the tenant.
    Disconnected,
    /// An operator removed the tenant from the registry (`tenant remove`); it may have been
    /// registered again later.
    TenantRemoved,
}

impl EndReason {
    /// The stored and sent spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Replaced => "replaced",
            Self::Disconnected => "disconnected",
            Self::TenantRemoved => "tenant-removed",
        }
    }
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A tenant together with its active connection, read in one query (the hot path).
#[derive(Debug, Clone)]
pub struct TenantView {
    /// The tenant.
    pub tenant: TenantRecord,
    /// Its active connection, if any.
    pub active: Option<ConnectionRecord>,
}

/// A switch request, already authorized and checked against IMS.
#[derive(Debug, Clone)]
pub struct SwitchRequest {
    /// The tenant to switch.
    pub tenant_id: TenantId,
    /// The org to connect.
    pub org_id: OrgId,
    /// The org's name from IMS.
    pub org_name: String,
    /// The administrator switching.
    pub by: UserId,
    /// When.
    pub at: DateTime<Utc>,
    /// `If-Match` and `If-None-Match`, as the caller sent them.
    pub preconditions: Preconditions,
}

/// What a switch did.
#[derive(Debug, Clone)]
pub enum SwitchOutcome {
    /// The tenant had no connection; this one is new (201).
    Created(ConnectionRecord),
    /// The previous connection was replaced (200).
    Replaced(ConnectionRecord),
    /// The org was already the active one; nothing changed (200).
    Unchanged(ConnectionRecord),
}

/// The store: a handle to the database, cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    db: DatabaseConnection,
    /// Told of each change committed on SQLite (PostgreSQL's are told by `NOTIFY`).
    notifier: notify::Notifier,
    reads: batch::ReadBatcher,
    /// The bound on each statement and commit, on our side (`None`: unbounded, operator commands).
    limit: Option<std::time::Duration>,
    outage: std::sync::Arc<outage::Outage>,
}
