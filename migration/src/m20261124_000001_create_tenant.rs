//! The tenant registry: each tenant's home IMS org, its administrator groups, and the revision
//! counter every switch and disconnect bumps (it orders history and makes ETags).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

// Column names are the variant names in snake case: `Tenant::TenantId` is `tenant_id`.
#[allow(clippy::enum_variant_names)]
#[derive(DeriveIden)]
enum Tenant {
    Table,
    TenantId,
    HomeOrg,
    AdminGroups,
    Revision,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Tenant::Table)
                    .col(
                        ColumnDef::new(Tenant::TenantId)
                            .string_len(128)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Tenant::HomeOrg).string_len(64).not_null())
                    // A JSON array of IMS group idents.
                    .col(ColumnDef::new(Tenant::AdminGroups).text().not_null())
                    .col(
                        ColumnDef::new(Tenant::Revision)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(Tenant::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Tenant::Table).to_owned())
            .await
    }
}
