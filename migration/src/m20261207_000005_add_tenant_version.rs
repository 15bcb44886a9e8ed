//! The registry entry as the provisioning API serves it: its `version` (the entry's ETag, bumped by
//! every change of the entry: a registration, a new list of administrator groups), when the tenant
//! was last registered (`registered_at`) and when its entry last changed (`updated_at`).
//!
//! A change's `kind` becomes `varchar(32)`: `tenant-registered` (the registration's change) is 17
//! characters. (SQLite does not enforce lengths; only PostgreSQL's column is altered.)
//!
//! Existing tenants start at version 1, registered and updated when they were created. The two
//! instants are nullable in the schema only because SQLite cannot add a NOT NULL column without a
//! constant default; every row has them from here on.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use crate::tables::{Change, Tenant, big_integer, instant, long_word, word};

/// Sets the type of `change.kind` (PostgreSQL only: SQLite does not enforce a length).
async fn kind_column(manager: &SchemaManager<'_>, mut column: ColumnDef) -> Result<(), DbErr> {
    if manager.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    manager
        .alter_table(
            Table::alter()
                .table(Change::Table)
                .modify_column(column.not_null().take())
                .to_owned(),
        )
        .await
}

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one at a time.
        for column in [
            big_integer(Tenant::Version).not_null().default(1).take(),
            instant(Tenant::RegisteredAt).null().take(),
            instant(Tenant::UpdatedAt).null().take(),
        ] {
            manager
                .alter_table(Table::alter().table(Tenant::Table).add_column(column).to_owned())
                .await?;
        }
        manager
            .get_connection()
            .execute_unprepared("UPDATE tenant SET registered_at = created_at, updated_at = created_at")
            .await?;
        kind_column(manager, long_word(Change::Kind)).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The older schema knows no registration change (an older binary would read it as
        // corrupt): the feed forgets them. Readers skip the positions they leave; the tenants
        // stay listed.
        manager
            .get_connection()
            .execute_unprepared("DELETE FROM change WHERE kind = 'tenant-registered'")
            .await?;
        kind_column(manager, word(Change::Kind)).await?;
        for column in [Tenant::UpdatedAt, Tenant::RegisteredAt, Tenant::Version] {
            manager
                .alter_table(Table::alter().table(Tenant::Table).drop_column(column).to_owned())
                .await?;
        }
        Ok(())
    }
}
