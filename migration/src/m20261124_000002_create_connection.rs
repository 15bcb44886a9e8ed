//! Connections and their history. The product rule "one Creative Cloud org per tenant at a time" is
//! the partial unique index `connection_one_active_per_tenant`, not only code.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

// Column names are the variant names in snake case: `Tenant::TenantId` is `tenant_id`.
#[allow(clippy::enum_variant_names)]
#[derive(DeriveIden)]
enum Tenant {
    Table,
    TenantId,
}

#[derive(DeriveIden)]
enum Connection {
    Table,
    Id,
    TenantId,
    OrgId,
    OrgName,
    ConnectedBy,
    ConnectedAt,
    Revision,
    Active,
    EndedBy,
    EndedAt,
    EndReason,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Connection::Table)
                    .col(
                        ColumnDef::new(Connection::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Connection::TenantId).string_len(128).not_null())
                    .col(ColumnDef::new(Connection::OrgId).string_len(64).not_null())
                    .col(ColumnDef::new(Connection::OrgName).text().not_null())
                    .col(ColumnDef::new(Connection::ConnectedBy).string_len(255).not_null())
                    .col(
                        ColumnDef::new(Connection::ConnectedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Connection::Revision).big_integer().not_null())
                    .col(ColumnDef::new(Connection::Active).boolean().not_null())
                    .col(ColumnDef::new(Connection::EndedBy).string_len(255).null())
                    .col(
                        ColumnDef::new(Connection::EndedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(ColumnDef::new(Connection::EndReason).string_len(16).null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("connection_tenant_fk")
                            .from(Connection::Table, Connection::TenantId)
                            .to(Tenant::Table, Tenant::TenantId)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
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
        manager
            .drop_index(
                Index::drop()
                    .name("connection_one_active_per_tenant")
                    .table(Connection::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("connection_tenant_revision")
                    .table(Connection::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(Connection::Table).to_owned())
            .await
    }
}
