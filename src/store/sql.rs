//! SQL the query builder cannot spell for us: the predicate of the partial unique index.

use sea_orm::DbBackend;

/// The predicate of the partial unique index, spelled as the index spells it so the planner uses it
/// (a bound `active = $1` would not let PostgreSQL's generic plan prove the index applies).
pub(super) fn is_active(backend: DbBackend, alias: &str) -> String {
    match backend {
        DbBackend::Sqlite => format!("{alias}active = 1"),
        _ => format!("{alias}active"),
    }
}
