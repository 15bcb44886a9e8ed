//! What the migrations share: the names of the tables and their columns, the column type of each
//! kind of value (a tenant id is the same `varchar(128)` in every table that holds one), and the
//! statements that create and drop tables and indexes.
//!
//! A migration's schema must never change once released: change a builder here only in a way that
//! leaves every column built with it as it was, and give a new kind of column a builder of its own.

use sea_orm_migration::prelude::*;

// Column names are the variant names in snake case: `Tenant::TenantId` is `tenant_id`.
#[allow(clippy::enum_variant_names)]
#[derive(DeriveIden)]
pub(crate) enum Tenant {
    Table,
    TenantId,
    HomeOrg,
    AdminGroups,
    Revision,
    CreatedAt,
    RemovedAt,
    Version,
    RegisteredAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
pub(crate) enum Connection {
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

#[derive(DeriveIden)]
pub(crate) enum Change {
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
pub(crate) enum ChangeHead {
    Table,
    Id,
    Position,
}

/// A tenant id: `varchar(128)`.
pub(crate) fn tenant_id(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column).string_len(128).take()
}

/// An IMS organization id: `varchar(64)`.
pub(crate) fn org_id(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column).string_len(64).take()
}

/// An IMS user id (who connected, ended or changed): `varchar(255)`.
pub(crate) fn user_id(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column).string_len(255).take()
}

/// A word of a fixed set (a change's kind, a connection's end reason): `varchar(16)`.
pub(crate) fn word(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column).string_len(16).take()
}

/// A word of a fixed set that outgrew [`word`] (a change's kind since `tenant-registered`):
/// `varchar(32)`.
pub(crate) fn long_word(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column).string_len(32).take()
}

/// Free text (an org's name, a JSON array): `text`.
pub(crate) fn text(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column).text().take()
}

/// A 64-bit count (a revision, a feed position, a row id).
pub(crate) fn big_integer(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column).big_integer().take()
}

/// A point in time, with its time zone.
pub(crate) fn instant(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column).timestamp_with_time_zone().take()
}

/// Creates the table `table` describes.
pub(crate) async fn create_table(
    manager: &SchemaManager<'_>,
    table: &mut TableCreateStatement,
) -> Result<(), DbErr> {
    manager.create_table(table.take()).await
}

/// Drops the indexes `names` of `table`, in that order.
pub(crate) async fn drop_indexes(
    manager: &SchemaManager<'_>,
    table: impl IntoIden,
    names: &[&str],
) -> Result<(), DbErr> {
    let table = table.into_iden();
    for name in names {
        manager
            .drop_index(Index::drop().name(*name).table(table.clone()).to_owned())
            .await?;
    }
    Ok(())
}

/// Drops `table`.
pub(crate) async fn drop_table(manager: &SchemaManager<'_>, table: impl IntoIden) -> Result<(), DbErr> {
    manager.drop_table(Table::drop().table(table).take()).await
}
