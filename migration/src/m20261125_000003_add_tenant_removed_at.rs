//! A removal mark on the tenant: `tenant remove` sets it instead of deleting the row, so the
//! tenant's history (and its revision counter) survives and goes on when the tenant is added again.
//! A tenant with a mark is unknown to the API.

use sea_orm_migration::prelude::*;

use crate::tables::{Tenant, instant};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Tenant::Table)
                    .add_column(instant(Tenant::RemovedAt).null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The older schema cannot mark a removal: drop removed tenants (and their history) rather
        // than let an older binary serve a tenant an operator removed.
        let db = manager.get_connection();
        db.execute_unprepared(
            "DELETE FROM connection WHERE tenant_id IN (SELECT tenant_id FROM tenant WHERE removed_at IS NOT NULL)",
        )
        .await?;
        db.execute_unprepared("DELETE FROM tenant WHERE removed_at IS NOT NULL")
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Tenant::Table)
                    .drop_column(Tenant::RemovedAt)
                    .to_owned(),
            )
            .await
    }
}
