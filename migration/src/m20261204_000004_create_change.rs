//! The change feed: one row per committed switch, disconnect and tenant removal, at a position
//! that follows commit order, and the one-row counter the positions are taken from.
//!
//! A position is taken by `UPDATE change_head SET position = position + 1` as the last statement of
//! the writing transaction: the row lock is held until the commit is visible, so a later position
//! is always committed later (docs/design.md, "Change feed"). History from before this migration is
//! not copied into the feed: the feed starts empty at position 0, and the listing carries every
//! tenant's state as it stands (the per-tenant history keeps the past).

use sea_orm_migration::prelude::*;

use crate::tables::{
    Change, ChangeHead, big_integer, create_table, drop_table, instant, org_id, tenant_id, text, user_id,
    word,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_table(
            manager,
            Table::create()
                .table(Change::Table)
                .col(big_integer(Change::Position).not_null().primary_key())
                .col(tenant_id(Change::TenantId).not_null())
                .col(word(Change::Kind).not_null())
                .col(org_id(Change::OrgId).null())
                .col(text(Change::OrgName).null())
                .col(org_id(Change::PreviousOrgId).null())
                .col(big_integer(Change::Revision).not_null())
                .col(instant(Change::At).not_null())
                .col(user_id(Change::By).not_null()),
        )
        .await?;
        // One row (id 1): the last position handed out.
        create_table(
            manager,
            Table::create()
                .table(ChangeHead::Table)
                .col(ColumnDef::new(ChangeHead::Id).integer().not_null().primary_key())
                .col(big_integer(ChangeHead::Position).not_null()),
        )
        .await?;
        manager
            .get_connection()
            .execute_unprepared("INSERT INTO change_head (id, position) VALUES (1, 0)")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_table(manager, ChangeHead::Table).await?;
        drop_table(manager, Change::Table).await
    }
}
