//! Raw SQL shared by the store's modules: one statement written once for both backends, and the
//! predicate of the partial unique index.

use sea_orm::{DbBackend, Statement, Value};

/// A statement with `$n` placeholders, made right for the backend: SQLite numbers them `?n`. Only a
/// `$` followed by digits is a placeholder; any other `$` is left as written.
pub(super) fn stmt(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    let sql = match backend {
        DbBackend::Sqlite => sqlite_placeholders(sql),
        _ => sql.to_owned(),
    };
    Statement::from_sql_and_values(backend, sql, values)
}

fn sqlite_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

/// The predicate of the partial unique index, spelled as the index spells it so the planner uses it.
pub(super) fn is_active(backend: DbBackend, alias: &str) -> String {
    match backend {
        DbBackend::Sqlite => format!("{alias}active = 1"),
        _ => format!("{alias}active"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_numbered_placeholders_become_sqlite_ones() {
        assert_eq!(
            sqlite_placeholders("SELECT $1, '$x', $12 WHERE a = $2"),
            "SELECT ?1, '$x', ?12 WHERE a = ?2"
        );
    }
}
