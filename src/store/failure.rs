//! How database errors are sorted into what a caller can act on, and our own bound on each wait.

use std::time::Duration;

use sea_orm::DbErr;

use super::StoreError;

/// `fut`, ended after `limit` (when given) as a connection failure: 503 `database-unavailable`.
pub(crate) async fn within<T>(
    limit: Option<Duration>,
    fut: impl Future<Output = Result<T, DbErr>>,
) -> Result<T, DbErr> {
    match limit {
        None => fut.await,
        Some(limit) => tokio::time::timeout(limit, fut)
            .await
            .unwrap_or_else(|_| Err(timed_out(limit))),
    }
}

/// The error of a database wait ended at our bound `limit`.
pub(crate) fn timed_out(limit: Duration) -> DbErr {
    DbErr::Conn(sea_orm::RuntimeErr::Internal(format!(
        "no answer from the database within {} ms",
        limit.as_millis()
    )))
}

/// Whether `e` says the database is unreachable: no answer (a connection lost, or no answer within
/// our bound). An error the server answered with is not one, even when it makes the request
/// unavailable for now: its `statement_timeout`, or a new connection refused (too many, not
/// accepting connections, starting up). Then the pooled connections still lead to a live server
/// and are kept, rather than dropped as connections to a host that may have gone silent.
pub(crate) fn is_outage(e: &StoreError) -> bool {
    use sea_orm::RuntimeErr;
    let (StoreError::Unavailable(cause) | StoreError::OutcomeUnknown(cause)) = e else {
        return false;
    };
    match cause {
        DbErr::Exec(RuntimeErr::SqlxError(x))
        | DbErr::Query(RuntimeErr::SqlxError(x))
        | DbErr::Conn(RuntimeErr::SqlxError(x)) => !matches!(x.as_ref(), sea_orm::sqlx::Error::Database(_)),
        _ => true,
    }
}

/// Whether `e` is a wait for a pooled connection that ran out.
pub(super) fn is_pool_timeout(e: &StoreError) -> bool {
    use sea_orm::RuntimeErr;
    match e {
        StoreError::Unavailable(DbErr::ConnectionAcquire(_)) => true,
        StoreError::Unavailable(
            DbErr::Exec(RuntimeErr::SqlxError(x))
            | DbErr::Query(RuntimeErr::SqlxError(x))
            | DbErr::Conn(RuntimeErr::SqlxError(x)),
        ) => {
            matches!(x.as_ref(), sea_orm::sqlx::Error::PoolTimedOut)
        }
        _ => false,
    }
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

/// A stored row that does not parse back is corruption, reported as a database error.
pub(crate) fn corrupt(what: &str) -> StoreError {
    StoreError::Database(sea_orm::DbErr::Custom(format!("stored {what} is malformed")))
}
