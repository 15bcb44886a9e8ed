//! Webhook endpoints: an integration's URL the change feed is pushed to. Each row is a cursor over
//! the feed (`position`: the last change delivered), never a queue of its own; its delivery state
//! (failures in a row, the next attempt, the last one); its signing secrets, encrypted; and the
//! lease that lets one replica at a time deliver to it (`lease_owner` until `lease_until`).

use sea_orm_migration::prelude::*;

use crate::tables::{big_integer, create_table, drop_indexes, drop_table, instant, text, word};

#[derive(DeriveIden)]
enum WebhookEndpoint {
    Table,
    Id,
    ClientId,
    Url,
    Secret,
    PreviousSecret,
    PreviousSecretUntil,
    Status,
    Position,
    Generation,
    Failures,
    NextAttemptAt,
    LastAttemptAt,
    LastStatusCode,
    LastError,
    DisabledReason,
    LeaseOwner,
    LeaseUntil,
    CreatedAt,
}

const BY_CLIENT: &str = "webhook_endpoint_client_id";

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use WebhookEndpoint as W;
        create_table(
            manager,
            Table::create()
                .table(W::Table)
                // `ep_` and 32 hexadecimal digits.
                .col(ColumnDef::new(W::Id).string_len(64).not_null().primary_key())
                .col(ColumnDef::new(W::ClientId).string_len(255).not_null())
                .col(text(W::Url).not_null())
                // AES-256-GCM under the service's key: never the secret itself.
                .col(text(W::Secret).not_null())
                .col(text(W::PreviousSecret).null())
                .col(instant(W::PreviousSecretUntil).null())
                .col(word(W::Status).not_null())
                .col(big_integer(W::Position).not_null())
                // Bumped by every change an operator or the integration makes (replay, enable,
                // disable): a delivery's outcome is written only if it is still the same.
                .col(big_integer(W::Generation).not_null())
                .col(ColumnDef::new(W::Failures).integer().not_null())
                .col(instant(W::NextAttemptAt).null())
                .col(instant(W::LastAttemptAt).null())
                .col(ColumnDef::new(W::LastStatusCode).integer().null())
                .col(text(W::LastError).null())
                .col(text(W::DisabledReason).null())
                .col(ColumnDef::new(W::LeaseOwner).string_len(64).null())
                .col(instant(W::LeaseUntil).null())
                .col(instant(W::CreatedAt).not_null()),
        )
        .await?;
        manager
            .create_index(
                Index::create()
                    .name(BY_CLIENT)
                    .table(W::Table)
                    .col(W::ClientId)
                    .col(W::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_indexes(manager, WebhookEndpoint::Table, &[BY_CLIENT]).await?;
        drop_table(manager, WebhookEndpoint::Table).await
    }
}
