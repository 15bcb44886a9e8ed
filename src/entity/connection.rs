//! `connection`: every connection a tenant has had; at most one `active` per tenant (a partial
//! unique index).

use sea_orm::entity::prelude::*;

/// One connection row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "connection")]
pub struct Model {
    /// Surrogate key.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The tenant.
    pub tenant_id: crate::domain::TenantId,
    /// The Creative Cloud org.
    pub org_id: crate::domain::OrgId,
    /// Its name at the time of the switch.
    pub org_name: String,
    /// The administrator who connected it.
    pub connected_by: crate::domain::UserId,
    /// When.
    pub connected_at: DateTimeUtc,
    /// The tenant revision it was created at.
    pub revision: crate::domain::Revision,
    /// Whether this is the tenant's active connection.
    pub active: bool,
    /// Who replaced or removed it.
    pub ended_by: Option<String>,
    /// When.
    pub ended_at: Option<DateTimeUtc>,
    /// `replaced`, `disconnected` or `tenant-removed` (`store::EndReason`).
    pub end_reason: Option<String>,
}

/// Relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The tenant.
    #[sea_orm(
        belongs_to = "super::tenant::Entity",
        from = "Column::TenantId",
        to = "super::tenant::Column::TenantId",
        on_delete = "Cascade"
    )]
    Tenant,
}

impl Related<super::tenant::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Tenant.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
