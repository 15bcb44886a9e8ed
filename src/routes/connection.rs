//! `/tenants/{tenant_id}/creative-cloud-connection`: read, switch, disconnect, history.

use actix_web::http::header::{self, HeaderValue};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix_web::{HttpRequest, HttpResponse, ResponseError, delete, put, route, web};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::etag::{self, EntityTags};
use super::wait::Wait;
use crate::auth::{AdminCandidate, NOT_AN_ADMIN, TenantAdmin, TenantReader};
use crate::domain::{OrgId, Preconditions, Revision, TenantId};
use crate::error::ApiError;
use crate::ims::Freshness;
use crate::representation::{Connection, HistoryEntry};
use crate::state::AppState;
use crate::store::{ConnectionRecord, StoreError, SwitchOutcome, SwitchRequest, TenantView};
use crate::watch::{Event, WatchGuard};

/// The body of a switch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"org_id": "0123456789ABCDEF01234567@AdobeOrg"}))]
pub struct SwitchBody {
    /// The Creative Cloud org to connect the tenant to.
    pub org_id: OrgId,
}

/// A page of the history, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "tenant_id": "acme-prod",
    "entries": [{
        "org_id": "0123456789ABCDEF01234567@AdobeOrg", "org_name": "Acme Creative",
        "connected_by": "ABCDEF0123456789ABCDEF01@AdobeID", "connected_at": "2026-11-24T03:00:00Z",
        "revision": 7, "active": true, "ended_by": null, "ended_at": null, "end_reason": null
    }],
    "next_cursor": null
}))]
pub struct HistoryPage {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The entries of this page.
    pub entries: Vec<HistoryEntry>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Paging of the history.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Entries per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100, example = 20)]
    pub limit: Option<u64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

fn with_connection(mut res: actix_web::HttpResponseBuilder, rec: &ConnectionRecord) -> HttpResponse {
    res.insert_header((header::ETAG, etag::of(rec.revision)))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        .json(Connection::from(rec))
}

/// A store error of an administrator's request: a tenant removed meanwhile is one the caller may no
/// longer see (403, as before any IMS call), never 404 `unknown-tenant`, which only integrations
/// are told.
fn admin_store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::UnknownTenant => ApiError::Forbidden(NOT_AN_ADMIN),
        other => other.into(),
    }
}

/// The conditions of an administrator's write (`If-Match`, `If-None-Match`), refused at once (412,
/// with the current ETag) when they already fail for the view just read; the store checks them
/// again in the write's transaction. Read only for an admitted administrator: to anyone else the
/// headers change nothing, so they tell nothing about the tenant.
fn checked_preconditions(req: &HttpRequest, admin: &TenantAdmin) -> Result<Preconditions, ApiError> {
    let preconditions = etag::write_preconditions(req.headers())?;
    admin.view.check(&preconditions)?;
    Ok(preconditions)
}

/// Whether `If-None-Match` names the current state (`*`: any current connection).
fn still_current(tags: &EntityTags, view: &TenantView) -> bool {
    match tags {
        EntityTags::Any => view.active.is_some(),
        EntityTags::Tags(_) => tags.names(view.etag()),
    }
}

fn not_modified(view: &TenantView) -> HttpResponse {
    HttpResponse::NotModified()
        .insert_header((header::ETAG, etag::of(view.etag())))
        .finish()
}

/// The answer of a read: 304 when `If-None-Match` names the current state, else 200 or 404
/// `no-connection` (with the tenant's revision as ETag, so the lack of one can be watched too).
fn read_answer(view: &TenantView, if_none_match: Option<&EntityTags>) -> HttpResponse {
    if if_none_match.is_some_and(|tags| still_current(tags, view)) {
        return not_modified(view);
    }
    match &view.active {
        Some(active) => with_connection(HttpResponse::Ok(), active),
        None => {
            let mut res = ApiError::NoConnection.error_response();
            res.headers_mut()
                .insert(header::ETAG, etag::of(view.tenant.revision));
            res.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            res
        }
    }
}

/// Read the tenant's active Creative Cloud connection.
///
/// The hot path of the Express and CC Libraries integrations. Sends `ETag`; `If-None-Match` with the
/// current one answers 304. A 404 `no-connection` carries the tenant's revision as `ETag`.
///
/// Watching: with `wait` (1 to 50 seconds) and `If-None-Match`, the request is held while the state
/// still has that ETag, and answered as soon as a switch or disconnect (on any replica) changes it
/// (200, or 404 `no-connection`), else with 304 when `wait` runs out. A stale ETag, or `wait` without
/// `If-None-Match`, answers at once.
#[utoipa::path(
    tag = "connection",
    params(
        ("tenant_id" = TenantId, Path, description = "The AEM Assets tenant"),
        Wait,
        ("If-None-Match" = Option<String>, Header, description = "An ETag from an earlier read (also of a 404); 304 if still current, or with `wait`: held until it is not"),
    ),
    responses(
        (status = 200, description = "The active connection", body = Connection,
         headers(("ETag" = String, description = "The revision, quoted"))),
        (status = 304, description = "Not modified: the state still has the ETag in If-None-Match (with `wait`: for all of it)",
         headers(("ETag" = String, description = "The current ETag, quoted"))),
    ),
    security(("bearer" = [])),
)]
#[route(
    "/tenants/{tenant_id}/creative-cloud-connection",
    method = "GET",
    method = "HEAD"
)]
pub async fn get_connection(
    reader: TenantReader,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let wait = Wait::parse(req.query_string())?;
    let if_none_match = etag::if_none_match(req.headers())?;
    let TenantReader {
        view,
        integration,
        watch: guard,
        ..
    } = reader;
    match (wait, if_none_match, guard) {
        (Some(wait), Some(tags), Some(guard)) if still_current(&tags, &view) => {
            crate::telemetry::note_held(&req);
            watch(&state, view, tags, guard, wait).await.map_err(|e| match e {
                ApiError::UnknownTenant => TenantReader::unknown_tenant(integration),
                other => other,
            })
        }
        (_, tags, _) => Ok(read_answer(&view, tags.as_ref())),
    }
}

/// Holds a read while the tenant's state still has one of `tags`, for at most `wait`. `view` was
/// read after `guard` was registered, so every change committed since wakes it.
async fn watch(
    state: &AppState,
    view: TenantView,
    tags: EntityTags,
    mut guard: WatchGuard,
    wait: Duration,
) -> Result<HttpResponse, ApiError> {
    let deadline = tokio::time::Instant::now() + wait;
    let tenant_id = view.tenant.tenant_id.clone();
    let mut current = Some(Arc::new(view));
    let mut committed = None;
    loop {
        let Some(view) = current.as_deref() else {
            return Err(ApiError::UnknownTenant);
        };
        if !still_current(&tags, view) {
            if let Some(at) = committed {
                let delay = SystemTime::now().duration_since(at).unwrap_or_default();
                state.metrics.watch_delay.observe(delay.as_secs_f64());
            }
            return Ok(read_answer(view, None));
        }
        match guard.next(deadline).await {
            Event::TimedOut | Event::ShuttingDown => {
                // Never 304 on a read older than the deadline: a change the feed missed (a
                // listener that stalled unnoticed for a while) shows here at the latest.
                let last = state.store.tenant_view(&tenant_id).await?;
                return match last.as_ref() {
                    None => Err(ApiError::UnknownTenant),
                    Some(view) if still_current(&tags, view) => Ok(not_modified(view)),
                    Some(view) => Ok(read_answer(view, None)),
                };
            }
            Event::Woken(wake) => {
                committed = wake.committed;
                match guard.read(&state.store, &wake).await {
                    Ok(view) => current = view,
                    // The database is unreachable: nothing is known to have changed, so the watch
                    // goes on (the re-check when it is back, or the read at the deadline, tells).
                    Err(StoreError::Unavailable(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
}

/// Switch the tenant to a Creative Cloud org.
///
/// Administrators only. The caller must see the org in IMS and hold an active Creative Cloud
/// entitlement there under their own user id, as IMS says now. 201 when the tenant had no
/// connection, 200 otherwise (the same org again changes nothing). Honours `If-Match` (the
/// current ETag, a 404's included, or `*`) and `If-None-Match: *` (a first connection only), read
/// once the caller is known to be an administrator; a 412 carries the current ETag.
#[utoipa::path(
    tag = "connection",
    params(
        ("tenant_id" = TenantId, Path, description = "The AEM Assets tenant"),
        ("If-Match" = Option<String>, Header, description = "The ETag last read (a 404 `no-connection`'s included) or `*` (a connection must exist); 412 with the current ETag if it does not hold"),
        ("If-None-Match" = Option<String>, Header, description = "`*`: connect only a tenant without a connection (a first connection); 412 with the current ETag otherwise"),
    ),
    request_body(content = SwitchBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Switched (or already connected to that org)", body = Connection,
         headers(("ETag" = String, description = "The new revision, quoted"))),
        (status = 201, description = "Connected (the tenant had no connection)", body = Connection,
         headers(("ETag" = String, description = "The new revision, quoted"),
                 ("Location" = String, description = "The connection's URL"))),
    ),
    security(("bearer" = [])),
)]
#[put("/tenants/{tenant_id}/creative-cloud-connection")]
pub async fn put_connection(
    candidate: AdminCandidate,
    body: web::Json<SwitchBody>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let target = body.into_inner().org_id;
    let token = candidate.caller.token.clone();
    // As IMS says now: both lookups bypass the cache, and run at once. The fresh org list is the
    // one both the administrator check and the target org are judged by.
    let (orgs, profile) = state
        .ims
        .orgs_and_profile(&token.bearer, token.remaining(), Freshness::Fresh)
        .await;
    let orgs = orgs?;
    let admin = candidate.admit(&state, &orgs).await?;
    let preconditions = checked_preconditions(&req, &admin)?;
    let org = orgs
        .iter()
        .find(|o| o.org_id == target)
        .ok_or_else(|| ApiError::OrgNotAccessible(target.to_string()))?;
    let profile = profile?;
    if !crate::ims::profile_matches(&profile, &admin.user_id) {
        return Err(ApiError::InvalidToken(
            "IMS profile does not belong to the token's user",
        ));
    }
    if !profile.entitled_in(&target, &state.config.cc_service_codes) {
        return Err(ApiError::NoCreativeCloudEntitlement(target.to_string()));
    }
    let outcome = state
        .store
        .switch(&SwitchRequest {
            tenant_id: admin.view.tenant.tenant_id.clone(),
            org_id: target,
            org_name: org.name.clone(),
            by: admin.user_id.clone(),
            at: Utc::now(),
            preconditions,
        })
        .await
        .map_err(admin_store_error)?;
    let outcome_label = match &outcome {
        SwitchOutcome::Created(_) => "created",
        SwitchOutcome::Replaced(_) => "replaced",
        SwitchOutcome::Unchanged(_) => "unchanged",
    };
    state.metrics.switches.with_label_values(&[outcome_label]).inc();
    Ok(match &outcome {
        SwitchOutcome::Created(rec) => {
            tracing::info!(org_id = %rec.org_id, revision = rec.revision.get(), "tenant connected");
            let mut res = HttpResponse::Created();
            res.insert_header((header::LOCATION, req.path().to_owned()));
            with_connection(res, rec)
        }
        SwitchOutcome::Replaced(rec) => {
            tracing::info!(org_id = %rec.org_id, revision = rec.revision.get(), "tenant switched");
            with_connection(HttpResponse::Ok(), rec)
        }
        SwitchOutcome::Unchanged(rec) => with_connection(HttpResponse::Ok(), rec),
    })
}

/// Disconnect the tenant from its Creative Cloud org.
///
/// Administrators only. The connection is kept in the history. Honours `If-Match`.
#[utoipa::path(
    tag = "connection",
    params(
        ("tenant_id" = TenantId, Path, description = "The AEM Assets tenant"),
        ("If-Match" = Option<String>, Header, description = "The ETag last read or `*`; 412 with the current ETag if it does not hold"),
    ),
    responses((status = 204, description = "Disconnected")),
    security(("bearer" = [])),
)]
#[delete("/tenants/{tenant_id}/creative-cloud-connection")]
pub async fn delete_connection(
    candidate: AdminCandidate,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    // Disconnecting breaks every integration of the tenant: judged like a switch, by the org list
    // as IMS gives it now, not a cached one.
    let token = &candidate.caller.token;
    let orgs = state
        .ims
        .organizations(&token.bearer, token.remaining(), Freshness::Fresh)
        .await?;
    let admin = candidate.admit(&state, &orgs).await?;
    let preconditions = checked_preconditions(&req, &admin)?;
    let ended = state
        .store
        .disconnect(
            &admin.view.tenant.tenant_id,
            &admin.user_id,
            Utc::now(),
            &preconditions,
        )
        .await
        .map_err(admin_store_error)?;
    tracing::info!(org_id = %ended.org_id, revision = ended.revision.get(), "tenant disconnected");
    state.metrics.switches.with_label_values(&["disconnected"]).inc();
    Ok(HttpResponse::NoContent().finish())
}

/// The tenant's connection history, newest first.
///
/// Administrators only. Each entry: the org, who connected it and when, who replaced or removed it
/// and when.
#[utoipa::path(
    tag = "connection",
    params(("tenant_id" = TenantId, Path, description = "The AEM Assets tenant"), HistoryQuery),
    responses((status = 200, description = "A page of the history", body = HistoryPage)),
    security(("bearer" = [])),
)]
#[route(
    "/tenants/{tenant_id}/creative-cloud-connection/history",
    method = "GET",
    method = "HEAD"
)]
pub async fn get_history(
    admin: TenantAdmin,
    query: web::Query<HistoryQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid("limit must be between 1 and 100"));
    }
    let before = match query.cursor.as_deref() {
        None => None,
        Some(c) => Some(
            c.parse::<Revision>()
                .ok()
                .filter(|r| *r > Revision::INITIAL)
                .ok_or_else(|| ApiError::invalid("cursor is not one this service issued"))?,
        ),
    };
    // One more than asked tells whether another page follows.
    let mut rows = state
        .store
        .history(&admin.view.tenant.tenant_id, limit + 1, before)
        .await
        .map_err(admin_store_error)?;
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|r| r.revision.to_string()))
        .flatten();
    let entries = rows.iter().map(HistoryEntry::from).collect();
    Ok(HttpResponse::Ok().json(HistoryPage {
        tenant_id: admin.view.tenant.tenant_id.clone(),
        entries,
        next_cursor,
    }))
}
