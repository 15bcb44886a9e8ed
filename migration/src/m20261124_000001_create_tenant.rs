//! The tenant registry: each tenant's home IMS org, its administrator groups, and the revision
//! counter every switch and disconnect bumps (it orders history and makes ETags).

use sea_orm_migration::prelude::*;

use crate::tables::{Tenant, big_integer, create_table, drop_table, instant, org_id, tenant_id, text};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_table(
            manager,
            Table::create()
                .table(Tenant::Table)
                .col(tenant_id(Tenant::TenantId).not_null().primary_key())
                .col(org_id(Tenant::HomeOrg).not_null())
                // A JSON array of IMS group idents.
                .col(text(Tenant::AdminGroups).not_null())
                .col(big_integer(Tenant::Revision).not_null().default(0))
                .col(instant(Tenant::CreatedAt).not_null()),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_table(manager, Tenant::Table).await
    }
}
