//! The JSON bodies of the contract that more than the HTTP handlers write: the CLI prints the same
//! connection and history entries as the API, and the change feed's Server-Sent Events carry the
//! same change as its pages. Each is an OpenAPI schema, built from a store record.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::{Actor, OrgId, Revision, TenantId, UserId};
use crate::store::{ChangeKind, ChangeRecord, ConnectionRecord, EndReason};

/// The example of a connected tenant, in the document: a [`Connection`], and a listed tenant
/// (`routes/feed.rs`) that has one.
pub(crate) fn connection_example() -> serde_json::Value {
    serde_json::json!({
        "tenant_id": "acme-prod", "org_id": "0123456789ABCDEF01234567@AdobeOrg", "org_name": "Acme Creative",
        "connected_by": "ABCDEF0123456789ABCDEF01@AdobeID", "connected_at": "2026-11-24T03:00:00Z", "revision": 7
    })
}

/// The tenant's active Creative Cloud connection.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = connection_example)]
pub struct Connection {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The connected Creative Cloud org.
    pub org_id: OrgId,
    /// The org's name, as IMS gave it when it was connected.
    pub org_name: String,
    /// The administrator who connected it.
    pub connected_by: UserId,
    /// When it was connected.
    pub connected_at: DateTime<Utc>,
    /// The revision; the `ETag` is this number, quoted.
    #[schema(value_type = i64)]
    pub revision: Revision,
}

impl From<&ConnectionRecord> for Connection {
    fn from(r: &ConnectionRecord) -> Self {
        Self {
            tenant_id: r.tenant_id.clone(),
            org_id: r.org_id.clone(),
            org_name: r.org_name.clone(),
            connected_by: r.connected_by.clone(),
            connected_at: r.connected_at,
            revision: r.revision,
        }
    }
}

/// One entry of the history.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HistoryEntry {
    /// The org that was connected.
    pub org_id: OrgId,
    /// Its name at the time.
    pub org_name: String,
    /// Who connected it.
    pub connected_by: UserId,
    /// When.
    pub connected_at: DateTime<Utc>,
    /// The revision it was connected at.
    #[schema(value_type = i64)]
    pub revision: Revision,
    /// Whether it is the active connection.
    pub active: bool,
    /// Who replaced or removed it: an administrator's IMS user id, or `cli:<login>` for the
    /// operator who removed the tenant.
    #[schema(value_type = Option<String>, required = true, example = "ABCDEF0123456789ABCDEF01@AdobeID")]
    pub ended_by: Option<Actor>,
    /// When it was replaced or removed.
    #[schema(required = true)]
    pub ended_at: Option<DateTime<Utc>>,
    /// Why it ended: `replaced`, `disconnected`, or `tenant-removed` (an operator removed the
    /// tenant, which was registered again later).
    #[schema(required = true, example = "replaced")]
    pub end_reason: Option<EndReason>,
}

impl From<&ConnectionRecord> for HistoryEntry {
    fn from(r: &ConnectionRecord) -> Self {
        Self {
            org_id: r.org_id.clone(),
            org_name: r.org_name.clone(),
            connected_by: r.connected_by.clone(),
            connected_at: r.connected_at,
            revision: r.revision,
            active: r.active,
            ended_by: r.ended_by.clone(),
            ended_at: r.ended_at,
            end_reason: r.end_reason,
        }
    }
}

/// What a change of the feed did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
#[schema(as = ChangeKind, example = "switched")]
pub enum Kind {
    /// The tenant was registered (also one removed before); it has no connection yet.
    TenantRegistered,
    /// The tenant had no connection; now it has one.
    Connected,
    /// The tenant's connection was replaced by one to another org.
    Switched,
    /// An administrator disconnected the tenant.
    Disconnected,
    /// The tenant was removed.
    TenantRemoved,
}

impl From<ChangeKind> for Kind {
    fn from(kind: ChangeKind) -> Self {
        match kind {
            ChangeKind::TenantRegistered => Self::TenantRegistered,
            ChangeKind::Connected => Self::Connected,
            ChangeKind::Switched => Self::Switched,
            ChangeKind::Disconnected => Self::Disconnected,
            ChangeKind::TenantRemoved => Self::TenantRemoved,
        }
    }
}

/// One change of the feed. Every field is always present (`null` where it does not apply).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "position": "43", "tenant_id": "acme-prod", "kind": "switched",
    "org_id": "0123456789ABCDEF01234567@AdobeOrg", "org_name": "Acme Creative",
    "previous_org_id": "FEDCBA9876543210FEDCBA98@AdobeOrg", "revision": 8,
    "at": "2026-11-25T10:00:00Z", "by": "ABCDEF0123456789ABCDEF01@AdobeID"
}))]
pub struct Change {
    /// Its position in the feed (opaque; commit order).
    pub position: String,
    /// The tenant.
    pub tenant_id: TenantId,
    /// What happened.
    pub kind: Kind,
    /// The org connected from now on; `null` for all but `connected` and `switched`.
    #[schema(required = true)]
    pub org_id: Option<OrgId>,
    /// That org's name; `null` when `org_id` is.
    #[schema(required = true)]
    pub org_name: Option<String>,
    /// The org connected before; `null` if there was none.
    #[schema(required = true)]
    pub previous_org_id: Option<OrgId>,
    /// The tenant's revision after the change.
    #[schema(value_type = i64)]
    pub revision: Revision,
    /// When.
    pub at: DateTime<Utc>,
    /// Who: an administrator's IMS user id, or `cli:<login>` for an operator.
    #[schema(example = "ABCDEF0123456789ABCDEF01@AdobeID")]
    pub by: String,
}

impl From<&ChangeRecord> for Change {
    fn from(c: &ChangeRecord) -> Self {
        Self {
            position: c.position.to_string(),
            tenant_id: c.tenant_id.clone(),
            kind: Kind::from(c.kind),
            org_id: c.org_id.clone(),
            org_name: c.org_name.clone(),
            previous_org_id: c.previous_org_id.clone(),
            revision: c.revision,
            at: c.at,
            by: c.by.as_str().to_owned(),
        }
    }
}
