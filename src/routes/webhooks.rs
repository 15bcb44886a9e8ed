//! `/webhook-endpoints`: an integration's endpoints the change feed is pushed to. Integrations
//! only; each sees and manages its own (another's is 404 `not-found`).

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, delete, post, route, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Integration;
use crate::error::ApiError;
use crate::state::AppState;
use crate::webhook::address::Refused;
use crate::webhook::secret::new_secret;
use crate::webhook::store::NewEndpoint;
use crate::webhook::{EndpointRecord, PREVIOUS_SECRET_SIGNS_FOR, SecretBox, Webhooks};

/// The most endpoints of one page.
const MAX_LIMIT: u64 = 100;

/// A new endpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "https://hooks.example.com/cc", "after": "42"}))]
pub struct CreateEndpoint {
    /// Where changes are POSTed: `https`, to a public address.
    pub url: String,
    /// Deliver the changes after this feed position; omitted: the feed's head (the next change
    /// is the first delivered).
    pub after: Option<String>,
}

/// Where delivery goes on from.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"after": "40"}))]
pub struct ReplayBody {
    /// Deliver the changes after this feed position, again, in order.
    pub after: String,
}

/// A created endpoint, with its secret: shown here and on rotation only.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "id": "ep_5f0c6e8a3b7e4d5e9a530f7f0d2c1a11", "url": "https://hooks.example.com/cc",
    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwzuD3HzV5wq0=", "status": "active", "position": "42",
    "created_at": "2026-12-07T10:00:00Z"
}))]
pub struct CreatedEndpoint {
    /// The endpoint's id.
    pub id: String,
    /// Where changes are POSTed.
    pub url: String,
    /// The signing secret (`whsec_` and 32 random bytes, base64): verify deliveries with it.
    pub secret: String,
    /// `active`.
    pub status: String,
    /// Delivery starts with the change after this position.
    pub position: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// The last delivery attempt.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LastAttempt {
    /// When it was made.
    pub at: DateTime<Utc>,
    /// The receiver's status, if it answered.
    pub status_code: Option<u16>,
    /// What failed, if it did not answer (or redirected).
    pub error: Option<String>,
}

/// An endpoint and its delivery state.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "id": "ep_5f0c6e8a3b7e4d5e9a530f7f0d2c1a11", "url": "https://hooks.example.com/cc",
    "status": "failing", "position": "42", "pending": 3,
    "last_attempt": {"at": "2026-12-07T10:05:00Z", "status_code": 503, "error": null},
    "next_attempt_at": "2026-12-07T10:10:00Z", "failures": 2, "disabled_reason": null,
    "created_at": "2026-12-07T10:00:00Z"
}))]
pub struct Endpoint {
    /// The endpoint's id.
    pub id: String,
    /// Where changes are POSTed.
    pub url: String,
    /// `active`, `failing` (retrying) or `disabled` (nothing delivered until enabled).
    #[schema(example = "active")]
    pub status: String,
    /// The last change delivered (a feed position).
    pub position: String,
    /// Changes committed after `position`, not yet delivered.
    pub pending: i64,
    /// The last attempt, if any.
    pub last_attempt: Option<LastAttempt>,
    /// When the next attempt is due, while retrying.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Failed attempts in a row.
    pub failures: i32,
    /// Why it is disabled.
    pub disabled_reason: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

impl Endpoint {
    /// The view of `e`, the feed's head being `head`.
    pub fn of(e: &EndpointRecord, head: i64) -> Self {
        Self {
            id: e.id.clone(),
            url: e.url.clone(),
            status: e.status.clone(),
            position: e.position.to_string(),
            pending: (head - e.position).max(0),
            last_attempt: e.last_attempt_at.map(|at| LastAttempt {
                at,
                status_code: e.last_status_code.and_then(|c| u16::try_from(c).ok()),
                error: e.last_error.clone(),
            }),
            next_attempt_at: e.next_attempt_at,
            failures: e.failures,
            disabled_reason: e.disabled_reason.clone(),
            created_at: e.created_at,
        }
    }
}

/// A page of endpoints, by id.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EndpointsPage {
    /// The caller's endpoints of this page.
    pub endpoints: Vec<Endpoint>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A new secret.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "id": "ep_5f0c6e8a3b7e4d5e9a530f7f0d2c1a11",
    "secret": "whsec_Xy0n4wH3p9G7mR2uB8kQ1sT6vZ5cL0aE4dF7gJ2hK9o=",
    "previous_secret_expires_at": "2026-12-08T10:00:00Z"
}))]
pub struct RotatedSecret {
    /// The endpoint's id.
    pub id: String,
    /// The new signing secret: shown here only.
    pub secret: String,
    /// Until then each delivery is signed with the previous secret too.
    pub previous_secret_expires_at: DateTime<Utc>,
}

/// Paging of the endpoints.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Endpoints per page, 1 to 100 (default 100).
    #[param(minimum = 1, maximum = 100, example = 10)]
    pub limit: Option<u64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The webhooks, if on (`CCC_WEBHOOK_KEY`), and their secrets' encryption.
fn webhooks(state: &AppState) -> Result<(&Webhooks, &SecretBox), ApiError> {
    let webhooks = &*state.webhooks;
    let secrets = webhooks.secrets().ok_or(ApiError::WebhooksUnavailable)?;
    Ok((webhooks, secrets))
}

/// An endpoint id as handed out: `ep_` and 32 lowercase hexadecimal digits.
fn check_id(id: &str) -> Result<(), ApiError> {
    let ok = id
        .strip_prefix("ep_")
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "the endpoint id is not one this service hands out",
        ))
    }
}

/// A feed position as sent, at most the head `head`: malformed is 400, beyond the head (never
/// handed out: from another database, or made up) 410 `unknown-position`, as the feed answers.
fn position(what: &'static str, raw: &str, head: i64) -> Result<i64, ApiError> {
    let bad = || ApiError::invalid(format!("{what} is not a position this service handed out"));
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let position: i64 = raw.parse().map_err(|_| bad())?;
    if position > head {
        return Err(ApiError::UnknownPosition(what));
    }
    Ok(position)
}

/// The caller's endpoint `id` (another integration's is not found).
async fn owned(webhooks: &Webhooks, integration: &Integration, id: &str) -> Result<EndpointRecord, ApiError> {
    check_id(id)?;
    match webhooks.endpoints.get(id).await? {
        Some(e) if e.client_id == integration.caller.token.client_id => Ok(e),
        _ => Err(ApiError::NotFound),
    }
}

async fn view(state: &AppState, e: &EndpointRecord) -> Result<Endpoint, ApiError> {
    Ok(Endpoint::of(e, state.store.change_head().await?))
}

fn no_store(mut res: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    res.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
    res
}

/// Creates an endpoint: every change after `after` (default: the feed's head) is POSTed to it,
/// in feed order, signed as Standard Webhooks 1.0 says.
///
/// Integration service tokens only. The answer carries the signing secret, shown here and on
/// rotation only. The URL must be `https` and resolve to a public address (400 otherwise); an
/// integration may have `CCC_WEBHOOK_MAX_ENDPOINTS` (10) endpoints (409 `too-many-endpoints`).
#[utoipa::path(
    tag = "webhooks",
    request_body(content = CreateEndpoint, content_type = "application/json"),
    responses((status = 201, description = "Created; the secret is shown this once", body = CreatedEndpoint,
        headers(("Location" = String, description = "The endpoint's URL")))),
    security(("bearer" = [])),
)]
#[post("/webhook-endpoints")]
pub async fn create_endpoint(
    integration: Integration,
    state: web::Data<AppState>,
    body: web::Json<CreateEndpoint>,
) -> Result<HttpResponse, ApiError> {
    let (webhooks, secrets) = webhooks(&state)?;
    let body = body.into_inner();
    let url = url::Url::parse(&body.url).map_err(|_| ApiError::invalid("url is not a URL"))?;
    if body.url.len() > 2_048 {
        return Err(ApiError::invalid("url is longer than 2048 characters"));
    }
    webhooks
        .settings
        .policy
        .check_url_resolving(&url)
        .await
        .map_err(|e: Refused| ApiError::invalid(format!("url: {e}")))?;
    let head = state.store.change_head().await?;
    let position = match body.after.as_deref() {
        Some(after) => position("after", after, head)?,
        None => head,
    };
    let id = format!("ep_{}", uuid::Uuid::new_v4().simple());
    let secret = new_secret();
    let client = &integration.caller.token.client_id;
    let created = webhooks
        .endpoints
        .create(
            NewEndpoint {
                id: &id,
                client_id: client,
                url: url.as_str(),
                sealed_secret: secrets.seal(&id, &secret),
                position,
                at: Utc::now(),
            },
            webhooks.settings.max_endpoints,
        )
        .await?
        .ok_or(ApiError::TooManyEndpoints(webhooks.settings.max_endpoints))?;
    webhooks.changed(&id);
    tracing::info!(endpoint = %id, client_id = %client, "webhook endpoint created");
    Ok(no_store(HttpResponse::Created())
        .insert_header((header::LOCATION, format!("/webhook-endpoints/{id}")))
        .json(CreatedEndpoint {
            id: created.id,
            url: created.url,
            secret,
            status: created.status,
            position: created.position.to_string(),
            created_at: created.created_at,
        }))
}

/// The caller's endpoints, by id, with their delivery state.
#[utoipa::path(
    tag = "webhooks",
    params(ListQuery),
    responses((status = 200, description = "A page of the caller's endpoints", body = EndpointsPage)),
    security(("bearer" = [])),
)]
#[route("/webhook-endpoints", method = "GET", method = "HEAD")]
pub async fn list_endpoints(
    integration: Integration,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (webhooks, _) = webhooks(&state)?;
    let q = web::Query::<ListQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::invalid(format!("invalid query: {e}")))?;
    let limit = q.limit.unwrap_or(MAX_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid("limit must be between 1 and 100"));
    }
    if let Some(cursor) = q.cursor.as_deref() {
        check_id(cursor).map_err(|_| ApiError::invalid("cursor is not one this service issued"))?;
    }
    let head = state.store.change_head().await?;
    let client = &integration.caller.token.client_id;
    let mut rows = webhooks
        .endpoints
        .list(Some(client), q.cursor.as_deref(), limit + 1)
        .await?;
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = more.then(|| rows.last().map(|e| e.id.clone())).flatten();
    Ok(no_store(HttpResponse::Ok()).json(EndpointsPage {
        endpoints: rows.iter().map(|e| Endpoint::of(e, head)).collect(),
        next_cursor,
    }))
}

/// One of the caller's endpoints, with its delivery state.
#[utoipa::path(
    tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint's id")),
    responses((status = 200, description = "The endpoint", body = Endpoint)),
    security(("bearer" = [])),
)]
#[route("/webhook-endpoints/{id}", method = "GET", method = "HEAD")]
pub async fn get_endpoint(
    integration: Integration,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (webhooks, _) = webhooks(&state)?;
    let endpoint = owned(webhooks, &integration, &id).await?;
    Ok(no_store(HttpResponse::Ok()).json(view(&state, &endpoint).await?))
}

/// Deletes one of the caller's endpoints: nothing more is delivered to it.
#[utoipa::path(
    tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint's id")),
    responses((status = 204, description = "Deleted")),
    security(("bearer" = [])),
)]
#[delete("/webhook-endpoints/{id}")]
pub async fn delete_endpoint(
    integration: Integration,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (webhooks, _) = webhooks(&state)?;
    owned(webhooks, &integration, &id).await?;
    if !webhooks.endpoints.delete(&id).await? {
        return Err(ApiError::NotFound);
    }
    webhooks.changed(&id);
    tracing::info!(endpoint = %id.as_str(), "webhook endpoint deleted");
    Ok(HttpResponse::NoContent().finish())
}

/// Gives the endpoint a new signing secret. For 24 hours each delivery carries the signatures of
/// both (space-separated in `webhook-signature`), so the receiver can switch at its pace.
#[utoipa::path(
    tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint's id")),
    responses((status = 200, description = "The new secret, shown this once", body = RotatedSecret)),
    security(("bearer" = [])),
)]
#[post("/webhook-endpoints/{id}/rotate-secret")]
pub async fn rotate_secret(
    integration: Integration,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (webhooks, secrets) = webhooks(&state)?;
    owned(webhooks, &integration, &id).await?;
    let secret = new_secret();
    let until = Utc::now()
        + chrono::Duration::from_std(PREVIOUS_SECRET_SIGNS_FOR).unwrap_or(chrono::Duration::days(1));
    webhooks
        .endpoints
        .rotate_secret(&id, secrets.seal(&id, &secret), until)
        .await?
        .ok_or(ApiError::NotFound)?;
    webhooks.changed(&id);
    tracing::info!(endpoint = %id.as_str(), "webhook secret rotated");
    Ok(no_store(HttpResponse::Ok()).json(RotatedSecret {
        id: id.into_inner(),
        secret,
        previous_secret_expires_at: until,
    }))
}

/// Delivery goes on after `after`: the changes from there come again, in order (a disabled
/// endpoint stays disabled until it is enabled).
#[utoipa::path(
    tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint's id")),
    request_body(content = ReplayBody, content_type = "application/json"),
    responses((status = 202, description = "Delivery goes on from there", body = Endpoint)),
    security(("bearer" = [])),
)]
#[post("/webhook-endpoints/{id}/replay")]
pub async fn replay(
    integration: Integration,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<ReplayBody>,
) -> Result<HttpResponse, ApiError> {
    let (webhooks, _) = webhooks(&state)?;
    owned(webhooks, &integration, &id).await?;
    let head = state.store.change_head().await?;
    let after = position("after", &body.after, head)?;
    let endpoint = webhooks
        .endpoints
        .replay(&id, after)
        .await?
        .ok_or(ApiError::NotFound)?;
    webhooks.changed(&id);
    Ok(no_store(HttpResponse::Accepted()).json(Endpoint::of(&endpoint, head)))
}

/// A disabled (or failing) endpoint resumes at once with the change after its `position`:
/// nothing was skipped while it was disabled.
#[utoipa::path(
    tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint's id")),
    responses((status = 200, description = "Enabled", body = Endpoint)),
    security(("bearer" = [])),
)]
#[post("/webhook-endpoints/{id}/enable")]
pub async fn enable(
    integration: Integration,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (webhooks, _) = webhooks(&state)?;
    owned(webhooks, &integration, &id).await?;
    let endpoint = webhooks.endpoints.enable(&id).await?.ok_or(ApiError::NotFound)?;
    webhooks.changed(&id);
    Ok(no_store(HttpResponse::Ok()).json(view(&state, &endpoint).await?))
}
