//! The change feed: one row per committed switch, disconnect and tenant removal, at a position
//! that follows commit order, and the one-row counter the positions are taken from.
//!
//! A position is taken by `UPDATE change_head SET position = position + 1` as the last statement of
//! the writing transaction: the row lock is held until the commit is visible, so a later position
//! is always committed later (docs/design.md, "Change feed"). History from before this migration is
//! not copied into the feed: the feed starts empty at position 0, and the listing carries every
//! tenant's state as it stands (the per-tenant history keeps the past).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Change {
    Table,
    Position,
    TenantId,
    Kind,
    OrgId,
    OrgName,
    PreviousOrgId,
    Revision,
    At,
    By,
}

#[derive(DeriveIden)]
enum ChangeHead {
    Table,
    Id,
    Position,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Change::Table)
                    .col(
                        ColumnDef::new(Change::Position)
                            .big_integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Change::TenantId).string_len(128).not_null())
                    .col(ColumnDef::new(Change::Kind).string_len(16).not_null())
                    .col(ColumnDef::new(Change::OrgId).string_len(64).null())
                    .col(ColumnDef::new(Change::OrgName).text().null())
                    .col(ColumnDef::new(Change::PreviousOrgId).string_len(64).null())
                    .col(ColumnDef::new(Change::Revision).big_integer().not_null())
                    .col(ColumnDef::new(Change::At).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Change::By).string_len(255).not_null())
                    .to_owned(),
            )
            .await?;
        // One row (id 1): the last position handed out.
        manager
            .create_table(
                Table::create()
                    .table(ChangeHead::Table)
                    .col(ColumnDef::new(ChangeHead::Id).integer().not_null().primary_key())
                    .col(ColumnDef::new(ChangeHead::Position).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared("INSERT INTO change_head (id, position) VALUES (1, 0)")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ChangeHead::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Change::Table).to_owned())
            .await
    }
}
