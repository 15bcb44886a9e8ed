//! The tenant registry: registering tenants, setting their administrator groups, listing and
//! reading them.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};

use super::failure::{corrupt, within};
use super::{Store, StoreError, TenantRecord, classify};
use crate::domain::{OrgId, Revision, TenantId};
use crate::entity::tenant;

impl Store {
    /// Registers a tenant. A removed tenant is registered again, with the given org and groups:
    /// it starts without a connection, and its history and revisions go on.
    pub async fn add_tenant(
        &self,
        tenant_id: &TenantId,
        home_org: &OrgId,
        admin_groups: &[String],
    ) -> Result<TenantRecord, StoreError> {
        let groups = groups_json(admin_groups)?;
        let model = tenant::ActiveModel {
            tenant_id: Set(tenant_id.clone()),
            home_org: Set(home_org.clone()),
            admin_groups: Set(groups.clone()),
            revision: Set(Revision::INITIAL),
            created_at: Set(Utc::now()),
            removed_at: Set(None),
        };
        match within(self.limit, model.insert(&self.db)).await {
            Ok(m) => to_record(m),
            Err(e) if matches!(e.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_))) => {
                let readded = self
                    .wait(
                        tenant::Entity::update_many()
                            .col_expr(tenant::Column::HomeOrg, Expr::value(home_org.as_str()))
                            .col_expr(tenant::Column::AdminGroups, Expr::value(groups))
                            .col_expr(
                                tenant::Column::RemovedAt,
                                Expr::value(Option::<DateTime<Utc>>::None),
                            )
                            .filter(tenant::Column::TenantId.eq(tenant_id.as_str()))
                            .filter(tenant::Column::RemovedAt.is_not_null())
                            .exec(&self.db),
                    )
                    .await?;
                if readded.rows_affected == 0 {
                    return Err(StoreError::TenantExists);
                }
                self.tenant(tenant_id).await?.ok_or(StoreError::UnknownTenant)
            }
            Err(e) => Err(classify(e)),
        }
    }

    /// Replaces the tenant's administrator groups. Nothing caches them: the next request sees them.
    pub async fn set_admin_groups(
        &self,
        tenant_id: &TenantId,
        admin_groups: &[String],
    ) -> Result<TenantRecord, StoreError> {
        let updated = self
            .wait(
                tenant::Entity::update_many()
                    .col_expr(
                        tenant::Column::AdminGroups,
                        Expr::value(groups_json(admin_groups)?),
                    )
                    .filter(tenant::Column::TenantId.eq(tenant_id.as_str()))
                    .filter(tenant::Column::RemovedAt.is_null())
                    .exec(&self.db),
            )
            .await?;
        if updated.rows_affected == 0 {
            return Err(StoreError::UnknownTenant);
        }
        self.tenant(tenant_id).await?.ok_or(StoreError::UnknownTenant)
    }

    /// Every registered tenant (removed ones left out), by id.
    pub async fn list_tenants(&self) -> Result<Vec<TenantRecord>, StoreError> {
        let rows = self
            .wait(
                tenant::Entity::find()
                    .filter(tenant::Column::RemovedAt.is_null())
                    .order_by_asc(tenant::Column::TenantId)
                    .all(&self.db),
            )
            .await?;
        rows.into_iter().map(to_record).collect()
    }

    /// One tenant, if registered (and not removed).
    pub async fn tenant(&self, id: &TenantId) -> Result<Option<TenantRecord>, StoreError> {
        let row = self
            .wait(
                tenant::Entity::find_by_id(id.clone())
                    .filter(tenant::Column::RemovedAt.is_null())
                    .one(&self.db),
            )
            .await?;
        row.map(to_record).transpose()
    }
}

fn groups_json(admin_groups: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(admin_groups)
        .map_err(|e| StoreError::Database(sea_orm::DbErr::Custom(e.to_string())))
}

pub(super) fn to_record(m: tenant::Model) -> Result<TenantRecord, StoreError> {
    Ok(TenantRecord {
        tenant_id: m.tenant_id,
        home_org: m.home_org,
        admin_groups: serde_json::from_str(&m.admin_groups).map_err(|_| corrupt("admin groups"))?,
        revision: m.revision,
    })
}
