//! Connections and their history. The product rule "one Creative Cloud org per tenant at a time" is
//! the partial unique index `connection_one_active_per_tenant`, not only code.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use crate::tables::{
    Connection, Tenant, big_integer, create_table, drop_indexes, drop_table, instant, org_id, tenant_id,
    text, user_id, word,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_table(
            manager,
            Table::create()
                .table(Connection::Table)
                .col(
                    big_integer(Connection::Id)
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(tenant_id(Connection::TenantId).not_null())
                .col(org_id(Connection::OrgId).not_null())
                .col(text(Connection::OrgName).not_null())
                .col(user_id(Connection::ConnectedBy).not_null())
                .col(instant(Connection::ConnectedAt).not_null())
                .col(big_integer(Connection::Revision).not_null())
                .col(ColumnDef::new(Connection::Active).boolean().not_null())
                .col(user_id(Connection::EndedBy).null())
                .col(instant(Connection::EndedAt).null())
                .col(word(Connection::EndReason).null())
                .foreign_key(
                    ForeignKey::create()
                        .name("connection_tenant_fk")
                        .from(Connection::Table, Connection::TenantId)
                        .to(Tenant::Table, Tenant::TenantId)
                        .on_delete(ForeignKeyAction::Cascade),
                ),
        )
        .await?;
        // Serves history (newest first) and makes a revision unique within a tenant.
        manager
            .create_index(
                Index::create()
                    .name("connection_tenant_revision")
                    .table(Connection::Table)
                    .col(Connection::TenantId)
                    .col(Connection::Revision)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // sea-query cannot say WHERE on an index; both backends take this SQL as written
        // (SQLite stores booleans as 0/1, and `WHERE active` is true for 1).
        let predicate = match manager.get_database_backend() {
            DbBackend::Sqlite => "active = 1",
            _ => "active",
        };
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "CREATE UNIQUE INDEX connection_one_active_per_tenant ON connection (tenant_id) WHERE {predicate}"
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_indexes(
            manager,
            Connection::Table,
            &["connection_one_active_per_tenant", "connection_tenant_revision"],
        )
        .await?;
        drop_table(manager, Connection::Table).await
    }
}
