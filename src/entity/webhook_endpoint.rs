//! `webhook_endpoint`: an integration's endpoint the change feed is pushed to, and its delivery
//! state (`migration`'s m20261207_000005). `status` is `active`, `failing` or `disabled`.

use sea_orm::entity::prelude::*;

/// One endpoint.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_endpoint")]
pub struct Model {
    /// `ep_` and 32 hexadecimal digits.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The integration's `client_id`: the only caller that sees it.
    pub client_id: String,
    /// Where changes are POSTed.
    pub url: String,
    /// The signing secret, encrypted (`webhook::secret`).
    pub secret: String,
    /// The secret before the last rotation, encrypted, signed with too until `previous_secret_until`.
    pub previous_secret: Option<String>,
    /// When the previous secret stops signing.
    pub previous_secret_until: Option<DateTimeUtc>,
    /// `active`, `failing` or `disabled`.
    pub status: String,
    /// The last change delivered (a feed position).
    pub position: i64,
    /// Bumped by every replay, enable and disable.
    pub generation: i64,
    /// Failed attempts in a row.
    pub failures: i32,
    /// When the next attempt is due, while retrying.
    pub next_attempt_at: Option<DateTimeUtc>,
    /// When the last attempt was made.
    pub last_attempt_at: Option<DateTimeUtc>,
    /// The last attempt's HTTP status, if it got one.
    pub last_status_code: Option<i32>,
    /// What failed in the last attempt, if it got no status.
    pub last_error: Option<String>,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
    /// The replica delivering to it.
    pub lease_owner: Option<String>,
    /// Until when that replica holds it.
    pub lease_until: Option<DateTimeUtc>,
    /// When it was created.
    pub created_at: DateTimeUtc,
}

/// None.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
