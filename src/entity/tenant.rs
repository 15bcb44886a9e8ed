//! `tenant`: the registry of AEM Assets tenants.

use sea_orm::entity::prelude::*;

/// One registered tenant.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tenant")]
pub struct Model {
    /// The tenant id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: crate::domain::TenantId,
    /// The home IMS org id.
    pub home_org: crate::domain::OrgId,
    /// JSON array of administrator group idents.
    pub admin_groups: String,
    /// Bumped by every change of the feed (a switch, a disconnect, a removal, a registration
    /// of a removed tenant).
    pub revision: crate::domain::Revision,
    /// When the tenant was registered.
    pub created_at: DateTimeUtc,
    /// When an operator removed the tenant (`tenant remove`); a removed tenant is unknown to the
    /// API, and `tenant add` registers it again.
    pub removed_at: Option<DateTimeUtc>,
    /// The registry entry's version (its ETag): bumped by every registration and every new list of
    /// administrator groups; it goes on across a removal.
    pub version: crate::domain::Revision,
    /// When the tenant was last registered (a removed tenant registered again: then).
    pub registered_at: DateTimeUtc,
    /// When the registry entry last changed.
    pub updated_at: DateTimeUtc,
}

/// Relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The tenant's connections.
    #[sea_orm(has_many = "super::connection::Entity")]
    Connection,
}

impl Related<super::connection::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Connection.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
