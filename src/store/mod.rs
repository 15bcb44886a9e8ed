//! Persistence: the tenant registry and the connection with its history, over sea-orm.
//!
//! Functions here return [`StoreError`], never HTTP types; `error.rs` maps them once.

mod batch;
mod connection;
mod tenant;

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DbErr};

use crate::domain::{Actor, OrgId, Precondition, TenantId, UserId};

/// What can go wrong in the store. `Clone`: one failed batch query answers every read in it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The tenant is not registered.
    #[error("tenant is not registered")]
    UnknownTenant,
    /// The tenant has no active connection.
    #[error("tenant has no active connection")]
    NoConnection,
    /// `If-Match` named a revision that is no longer current.
    #[error("revision precondition failed")]
    PreconditionFailed,
    /// Another switch of the same tenant won a race this one could not wait out.
    #[error("a concurrent switch of the same tenant won")]
    ConcurrentSwitch,
    /// The tenant is already registered (`tenant add` of an existing id).
    #[error("tenant is already registered")]
    TenantExists,
    /// The database could not be reached or did not answer in time.
    #[error("database unavailable")]
    Unavailable(#[source] DbErr),
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
    /// Bumped by every switch and disconnect; the ETag of the active connection is this revision.
    pub revision: i64,
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
    pub revision: i64,
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

/// Why a connection stopped being active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Another org was connected in its place.
    Replaced,
    /// An administrator disconnected the tenant.
    Disconnected,
    /// An operator removed the tenant from the registry (`tenant remove`).
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
    /// `If-Match`, if the caller sent one.
    pub if_match: Option<Precondition>,
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

/// Options of the database pool.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// Maximum connections in the pool.
    pub max_connections: u32,
    /// Time to wait for a connection, in seconds.
    pub connect_timeout_secs: u64,
    /// PostgreSQL `statement_timeout`, in milliseconds (0: none). A statement that runs longer is
    /// cancelled and the request answers 503 `database-unavailable`.
    pub statement_timeout_ms: u64,
    /// Most distinct tenants one batched read query fetches.
    pub read_batch_size: usize,
    /// Most batched read queries running at once; at most the pool size less one, so a
    /// connection always stays free for switches.
    pub read_batches_in_flight: usize,
}

impl Default for DbOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            connect_timeout_secs: 3,
            statement_timeout_ms: 5_000,
            read_batch_size: 256,
            read_batches_in_flight: 2,
        }
    }
}

/// The store: a handle to the database, cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    db: DatabaseConnection,
    watchers: crate::watch::Watchers,
    reads: batch::ReadBatcher,
}

/// Sorts a database error into what the caller can act on: the database being unreachable or
/// overloaded (retry later), a lost race (retry the switch), or anything else.
pub(crate) fn classify(e: DbErr) -> StoreError {
    use sea_orm::RuntimeErr;
    use sea_orm::sqlx::Error as Sqlx;
    let sqlx_error = match &e {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => {
            return StoreError::Unavailable(e);
        }
        DbErr::Exec(RuntimeErr::SqlxError(x)) | DbErr::Query(RuntimeErr::SqlxError(x)) => x.clone(),
        _ => return StoreError::Database(e),
    };
    match sqlx_error.as_ref() {
        Sqlx::Io(_)
        | Sqlx::PoolTimedOut
        | Sqlx::PoolClosed
        | Sqlx::WorkerCrashed
        | Sqlx::Tls(_)
        | Sqlx::Protocol(_) => StoreError::Unavailable(e),
        Sqlx::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            match code.as_str() {
                // PostgreSQL: serialization failure, deadlock. SQLite: busy, locked (and extended).
                "40001" | "40P01" | "5" | "6" | "261" | "262" | "517" => StoreError::ConcurrentSwitch,
                // PostgreSQL: shutdown, crash, cannot connect now, too many connections, statement
                // timeout, and the connection exception class.
                "57P01" | "57P02" | "57P03" | "53300" | "57014" => StoreError::Unavailable(e),
                c if c.starts_with("08") => StoreError::Unavailable(e),
                _ => StoreError::Database(e),
            }
        }
        _ => StoreError::Database(e),
    }
}
