//! `/tenants`: the tenant registry as the AEM Assets provisioning system drives it (register,
//! replace administrator groups, read, list, remove). The same store operations as the `tenant`
//! commands; only a provisioning service token may call them (`Provisioner`).

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, delete, put, route, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::etag::{self, EntityTags};
use crate::auth::Provisioner;
use crate::domain::{AdminGroups, Condition, OrgId, TenantId};
use crate::error::ApiError;
use crate::representation::Connection;
use crate::state::AppState;
use crate::store::{
    ConnectionRecord, EntryCondition, RegistryEntry, StoreError, TenantWrite, TenantWriteOutcome,
};

/// The most tenants of one page of `GET /tenants`.
pub const MAX_LIMIT: u64 = 1_000;
/// The tenants of a page when `limit` is not given.
pub const DEFAULT_LIMIT: u64 = 100;

/// A registration: the tenant's home IMS org and the groups of that org whose members administer
/// it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"ims_org": "0123456789ABCDEF01234567@AdobeOrg", "admin_groups": ["700001"]}))]
pub struct TenantRegistration {
    /// The tenant's home IMS org; a registered tenant's is never changed in place (409).
    pub ims_org: OrgId,
    /// IMS group idents of the home org whose members administer the tenant (1 to 100, each 1 to
    /// 128 printable ASCII characters without spaces); they replace the registered list.
    #[schema(value_type = Vec<String>, min_items = 1, max_items = 100, example = json!(["700001"]))]
    pub admin_groups: AdminGroups,
}

/// A registered tenant: its registry entry and its active connection.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = tenant_example)]
pub struct Tenant {
    /// The tenant.
    pub tenant_id: TenantId,
    /// Its home IMS org.
    pub ims_org: OrgId,
    /// IMS group idents of the home org whose members administer it.
    pub admin_groups: Vec<String>,
    /// When it was registered (again, after a removal: then).
    pub registered_at: DateTime<Utc>,
    /// When its registry entry last changed.
    pub updated_at: DateTime<Utc>,
    /// Its active connection as `GET .../creative-cloud-connection` answers it; `null` when it has
    /// none. Always present.
    #[schema(nullable = true, required = true)]
    pub connection: Option<Connection>,
}

fn tenant_example() -> serde_json::Value {
    serde_json::json!({
        "tenant_id": "acme-prod", "ims_org": "A0A0A0A0A0A0A0A0A0A0A0A0@AdobeOrg", "admin_groups": ["700001"],
        "registered_at": "2026-12-07T09:00:00Z", "updated_at": "2026-12-07T09:00:00Z",
        "connection": crate::representation::connection_example()
    })
}

impl Tenant {
    fn of(entry: &RegistryEntry, active: Option<&ConnectionRecord>) -> Self {
        Self {
            tenant_id: entry.tenant.tenant_id.clone(),
            ims_org: entry.tenant.home_org.clone(),
            admin_groups: entry.tenant.admin_groups.clone(),
            registered_at: entry.registered_at,
            updated_at: entry.updated_at,
            connection: active.map(Connection::from),
        }
    }
}

/// A page of the registry.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"tenants": [tenant_example()], "next_cursor": null}))]
pub struct TenantsPage {
    /// The tenants of this page, by tenant id.
    pub tenants: Vec<Tenant>,
    /// Pass as `cursor` to get the next page; `null` on the last page. Always present.
    #[schema(nullable = true, required = true)]
    pub next_cursor: Option<String>,
}

/// Paging of the registry.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TenantsQuery {
    /// Tenants per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000, example = 100)]
    pub limit: Option<u64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The path's tenant id (the extractor checked it already).
fn path_tenant(req: &HttpRequest) -> Result<TenantId, ApiError> {
    TenantId::parse(req.match_info().get("tenant_id").unwrap_or_default())
        .map_err(|e| ApiError::invalid(e.to_string()))
}

/// An answer carrying the entry: its version as `ETag`.
fn with_entry(
    mut res: actix_web::HttpResponseBuilder,
    entry: &RegistryEntry,
    active: Option<&ConnectionRecord>,
) -> HttpResponse {
    res.insert_header((header::ETAG, etag::of(entry.version)))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        .json(Tenant::of(entry, active))
}

/// A store error of a registry operation as answered: a failed precondition is 412 with the
/// entry's current `ETag` (none when the tenant is not registered).
fn answer_error(e: StoreError) -> Result<HttpResponse, ApiError> {
    match e {
        // With the entry's current version as `ETag` (`ApiError`'s response adds it).
        StoreError::EntryPreconditionFailed(current) => Err(ApiError::EntryPreconditionFailed(current)),
        other => Err(other.into()),
    }
}

/// `If-Match` as a registry condition. A tag that can never be one of ours (weak, not a number)
/// names no version, and still gets its 412 from the store, with the current `ETag`.
fn if_match(req: &HttpRequest) -> Result<Option<Condition>, ApiError> {
    Ok(etag::write_preconditions(req.headers())?.if_match)
}

/// The condition of a `PUT`: `If-Match` (a registered entry, at that version) or
/// `If-None-Match: *` (a tenant not registered).
fn put_condition(req: &HttpRequest) -> Result<EntryCondition, ApiError> {
    let if_match = if_match(req)?;
    let if_none_match = etag::if_none_match(req.headers())?;
    match (if_match, if_none_match) {
        (Some(_), Some(_)) => Err(ApiError::invalid("send If-Match or If-None-Match: *, not both")),
        (Some(p), None) => Ok(EntryCondition::Present(p)),
        (None, Some(EntityTags::Any)) => Ok(EntryCondition::Absent),
        (None, Some(EntityTags::Tags(_))) => Err(ApiError::invalid(
            "If-None-Match on PUT must be * (register only a tenant that is not registered)",
        )),
        (None, None) => Ok(EntryCondition::None),
    }
}

/// Register a tenant, or replace its administrator groups.
///
/// The provisioning system's service token only. 201 when the tenant was not registered (also one
/// removed before: it starts without a connection, and `tenant-registered` is in the change feed),
/// 200 when it was: its administrator groups are replaced, in effect at once on every replica; the
/// same body again changes nothing. A registered tenant's `ims_org` is never changed in place
/// (409 `tenant-org-conflict`: remove it first). `If-Match` (the `ETag` of an earlier answer, or
/// `*`) acts only on a registered entry at that version, `If-None-Match: *` only on a tenant not
/// registered; else 412 with the current `ETag`.
#[utoipa::path(
    tag = "provisioning",
    params(
        ("tenant_id" = TenantId, Path, description = "The AEM Assets tenant"),
        ("If-Match" = Option<String>, Header, description = "The entry's ETag (or `*`): act only on that registered entry; 412 otherwise"),
        ("If-None-Match" = Option<String>, Header, description = "`*`: register only a tenant that is not registered; 412 otherwise"),
    ),
    request_body(content = TenantRegistration, content_type = "application/json"),
    responses(
        (status = 200, description = "Registered already: its administrator groups replaced, or nothing to change", body = Tenant,
         headers(("ETag" = String, description = "The entry's version, quoted"))),
        (status = 201, description = "Registered (the tenant was not, or had been removed)", body = Tenant,
         headers(("ETag" = String, description = "The entry's version, quoted"),
                 ("Location" = String, description = "The tenant's URL"))),
    ),
    security(("bearer" = [])),
)]
#[put("/tenants/{tenant_id}")]
pub async fn put_tenant(
    provisioner: Provisioner,
    body: web::Json<TenantRegistration>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let tenant_id = path_tenant(&req)?;
    let condition = put_condition(&req)?;
    let body = body.into_inner();
    let write = TenantWrite {
        tenant_id: &tenant_id,
        home_org: Some(&body.ims_org),
        admin_groups: body.admin_groups.as_slice(),
        condition,
        by: &provisioner.actor,
        at: Utc::now(),
    };
    let outcome = match state.store.put_tenant(&write).await {
        Ok(outcome) => outcome,
        Err(e) => return answer_error(e),
    };
    let entry = outcome.entry();
    Ok(match &outcome {
        TenantWriteOutcome::Registered(_) => {
            tracing::info!(by = %provisioner.actor, version = entry.version.get(), "tenant registered");
            let mut res = HttpResponse::Created();
            res.insert_header((header::LOCATION, req.path().to_owned()));
            with_entry(res, entry, None)
        }
        TenantWriteOutcome::Updated(_) | TenantWriteOutcome::Unchanged(_) => {
            if matches!(outcome, TenantWriteOutcome::Updated(_)) {
                tracing::info!(by = %provisioner.actor, version = entry.version.get(), "tenant administrator groups replaced");
            }
            // The answer shows the connection as it stands (a registered tenant may have one).
            let active = state
                .store
                .registry_entry(&tenant_id)
                .await?
                .and_then(|(_, active)| active);
            with_entry(HttpResponse::Ok(), entry, active.as_ref())
        }
    })
}

/// Read a registered tenant: its registry entry and its connection.
///
/// The provisioning system's service token only. Sends the entry's `ETag`; `If-None-Match` with
/// it answers 304.
#[utoipa::path(
    tag = "provisioning",
    params(
        ("tenant_id" = TenantId, Path, description = "The AEM Assets tenant"),
        ("If-None-Match" = Option<String>, Header, description = "An ETag from an earlier answer: 304 if still current"),
    ),
    responses(
        (status = 200, description = "The tenant", body = Tenant,
         headers(("ETag" = String, description = "The entry's version, quoted"))),
        (status = 304, description = "Not modified: the entry still has the ETag in If-None-Match",
         headers(("ETag" = String, description = "The entry's version, quoted"))),
    ),
    security(("bearer" = [])),
)]
#[route("/tenants/{tenant_id}", method = "GET", method = "HEAD")]
pub async fn get_tenant(
    _provisioner: Provisioner,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let tenant_id = path_tenant(&req)?;
    let if_none_match = etag::if_none_match(req.headers())?;
    let (entry, active) = state
        .store
        .registry_entry(&tenant_id)
        .await?
        .ok_or(ApiError::UnknownTenant)?;
    if if_none_match.is_some_and(|tags| tags == EntityTags::Any || tags.names(entry.version)) {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, etag::of(entry.version)))
            .finish());
    }
    Ok(with_entry(HttpResponse::Ok(), &entry, active.as_ref()))
}

/// List the registered tenants.
///
/// The provisioning system's service token only. Paged by tenant id (`next_cursor`).
#[utoipa::path(
    tag = "provisioning",
    params(TenantsQuery),
    responses((status = 200, description = "A page of the registry", body = TenantsPage)),
    security(("bearer" = [])),
)]
#[route("/tenants", method = "GET", method = "HEAD")]
pub async fn list_tenants(
    _provisioner: Provisioner,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let query = web::Query::<TenantsQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::invalid(format!("invalid query: {e}")))?
        .into_inner();
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid("limit must be between 1 and 1000"));
    }
    let after = query
        .cursor
        .as_deref()
        .map(|c| TenantId::parse(c).map_err(|_| ApiError::invalid("cursor is not one this service issued")))
        .transpose()?;
    // One more than asked tells whether another page follows.
    let mut rows = state.store.registry_page(after.as_ref(), limit + 1).await?;
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|(e, _)| e.tenant.tenant_id.to_string()))
        .flatten();
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(TenantsPage {
            tenants: rows.iter().map(|(e, a)| Tenant::of(e, a.as_ref())).collect(),
            next_cursor,
        }))
}

/// Remove a tenant.
///
/// The provisioning system's service token only; as `tenant remove`: an active connection is ended
/// (`end_reason` `tenant-removed`, `ended_by` `provisioning:<client_id>`, kept in the history),
/// `tenant-removed` is in the change feed, and the tenant's API answers 404 `unknown-tenant` from
/// then on. `If-Match` removes only the entry at that version (412 with the current `ETag`).
#[utoipa::path(
    tag = "provisioning",
    params(
        ("tenant_id" = TenantId, Path, description = "The AEM Assets tenant"),
        ("If-Match" = Option<String>, Header, description = "The entry's ETag (or `*`): remove only that entry; 412 otherwise"),
    ),
    responses((status = 204, description = "Removed")),
    security(("bearer" = [])),
)]
#[delete("/tenants/{tenant_id}")]
pub async fn delete_tenant(
    provisioner: Provisioner,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let tenant_id = path_tenant(&req)?;
    let if_match = if_match(&req)?;
    match state
        .store
        .remove_tenant_if(&tenant_id, &provisioner.actor, Utc::now(), if_match.as_ref())
        .await
    {
        Ok(ended) => {
            tracing::info!(
                by = %provisioner.actor,
                ended_org_id = ended.as_ref().map(|c| c.org_id.to_string()),
                "tenant removed"
            );
            Ok(HttpResponse::NoContent().finish())
        }
        // A condition on an entry that does not exist does not hold (RFC 9110 13.1.1).
        Err(StoreError::UnknownTenant) if if_match.is_some() => {
            answer_error(StoreError::EntryPreconditionFailed(None))
        }
        Err(e) => answer_error(e),
    }
}
