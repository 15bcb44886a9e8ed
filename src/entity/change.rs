//! `change`: one row per committed switch, disconnect and tenant removal, at its position
//! (`migration`'s m20261204_000004). `kind` is `connected`, `switched`, `disconnected` or
//! `tenant-removed`; `by` an administrator's user id or `cli:<login>`.

use sea_orm::entity::prelude::*;

/// One change row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "change")]
pub struct Model {
    /// Commit order, never reused.
    #[sea_orm(primary_key, auto_increment = false)]
    pub position: i64,
    /// The tenant.
    pub tenant_id: crate::domain::TenantId,
    /// What happened.
    pub kind: String,
    /// The org connected from now on (none for a disconnect or a removal).
    pub org_id: Option<crate::domain::OrgId>,
    /// Its name as IMS gave it.
    pub org_name: Option<String>,
    /// The org connected before, if any.
    pub previous_org_id: Option<crate::domain::OrgId>,
    /// The tenant's revision after the change.
    pub revision: crate::domain::Revision,
    /// When.
    pub at: DateTimeUtc,
    /// Who.
    pub by: String,
}

/// None: the tenant id is kept after the tenant is removed.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
