//! SQL the query builder cannot spell for us (the predicate of the partial unique index), and the
//! select of the registered tenants with their active connections, which the feed's listing and
//! the registry both read.

use sea_orm::DbBackend;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, JoinType, Query, SelectStatement};

use crate::entity::{connection, tenant};

/// The predicate of the partial unique index, spelled as the index spells it so the planner uses it
/// (a bound `active = $1` would not let PostgreSQL's generic plan prove the index applies).
pub(super) fn is_active(backend: DbBackend, alias: &str) -> String {
    match backend {
        DbBackend::Sqlite => format!("{alias}active = 1"),
        _ => format!("{alias}active"),
    }
}

/// The registered (not removed) tenants as `t`, each joined to its active connection as `c` (the
/// connection's org, name, who and when: `NULL`s without one). The caller adds the tenant's
/// columns it reads, its filters, order and limit.
pub(super) fn registered_tenants_with_active_connection(backend: DbBackend) -> (SelectStatement, Alias) {
    let (t, c) = (Alias::new("t"), Alias::new("c"));
    let mut query = Query::select();
    query
        .columns(
            [
                connection::Column::OrgId,
                connection::Column::OrgName,
                connection::Column::ConnectedBy,
                connection::Column::ConnectedAt,
            ]
            .map(|column| (c.clone(), column)),
        )
        .from_as(tenant::Entity, t.clone())
        .join_as(
            JoinType::LeftJoin,
            connection::Entity,
            c.clone(),
            Expr::col((c, connection::Column::TenantId))
                .equals((t.clone(), tenant::Column::TenantId))
                .and(Expr::cust(is_active(backend, "c."))),
        )
        .and_where(Expr::col((t.clone(), tenant::Column::RemovedAt)).is_null());
    (query, t)
}
