//! The routes: what is routed here is what the OpenAPI document says (utoipa-actix-web).

pub mod connection;
pub mod etag;
pub mod feed;
pub mod health;
pub mod metrics;
pub mod orgs;
pub mod tenants;
pub mod wait;
pub mod webhooks;

use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ResourceDef, ServiceRequest, ServiceResponse};
use actix_web::error::{JsonPayloadError, QueryPayloadError};
use actix_web::http::Method;
use actix_web::http::header::CONTENT_ENCODING;
use actix_web::middleware::Next;
use actix_web::{HttpRequest, web};
use utoipa::openapi::OpenApi;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::error::{ApiError, ProblemKind, ProblemKind as P};

/// The largest request body accepted (a switch body is under 100 bytes).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Where the OpenAPI document is served (outside the document itself).
pub const OPENAPI_PATH: &str = "/openapi.json";

/// Registers every documented route.
pub fn configure(cfg: &mut ServiceConfig<'_>) {
    configure_public(cfg);
    cfg.service(metrics::metrics);
}

/// Every route but `/metrics`: the public listener's when `CCC_OPS_LISTEN` serves the metrics.
pub fn configure_public(cfg: &mut ServiceConfig<'_>) {
    cfg.service(connection::get_connection)
        .service(connection::put_connection)
        .service(connection::delete_connection)
        .service(connection::get_history)
        .service(feed::list_connections)
        .service(feed::get_changes)
        .service(feed::get_change_stream)
        .service(orgs::get_user_orgs)
        .service(tenants::list_tenants)
        .service(tenants::get_tenant)
        .service(tenants::put_tenant)
        .service(tenants::delete_tenant)
        .service(webhooks::create_endpoint)
        .service(webhooks::list_endpoints)
        .service(webhooks::get_endpoint)
        .service(webhooks::delete_endpoint)
        .service(webhooks::rotate_secret)
        .service(webhooks::replay)
        .service(webhooks::enable)
        .service(health::healthz)
        .service(health::readyz);
}

/// The routes of the `CCC_OPS_LISTEN` listener: the probes and `/metrics`.
pub fn configure_ops(cfg: &mut ServiceConfig<'_>) {
    cfg.service(health::healthz)
        .service(health::readyz)
        .service(metrics::metrics);
}

/// A listener's routed paths and the methods each answers, read from the OpenAPI document its
/// routes produced (in its app data): its fallback answers 405 with `Allow` for these paths and
/// 404 for any other. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Arc<[(ResourceDef, String)]>,
}

impl RouteTable {
    /// The paths of `doc` with the methods of their operations.
    pub fn from_document(doc: &OpenApi) -> Self {
        let routes = doc
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let operations = [
                    ("GET", &item.get),
                    ("HEAD", &item.head),
                    ("POST", &item.post),
                    ("PUT", &item.put),
                    ("PATCH", &item.patch),
                    ("DELETE", &item.delete),
                    ("OPTIONS", &item.options),
                    ("TRACE", &item.trace),
                ];
                // Every GET answers HEAD, whether or not the document lists it.
                let allow = operations
                    .iter()
                    .filter(|(method, op)| op.is_some() || (*method == "HEAD" && item.get.is_some()))
                    .map(|(method, _)| *method)
                    .collect::<Vec<_>>()
                    .join(", ");
                (ResourceDef::new(path.as_str()), allow)
            })
            .collect();
        Self { routes }
    }

    /// With a route served outside the document (the document itself).
    pub fn with(self, path: &str, allow: &str) -> Self {
        let mut routes = self.routes.to_vec();
        routes.push((ResourceDef::new(path), allow.to_owned()));
        Self {
            routes: routes.into(),
        }
    }

    /// The `Allow` of the route matching `path`, if one does.
    fn allow(&self, path: &str) -> Option<&str> {
        self.routes
            .iter()
            .find(|(route, _)| route.is_match(path))
            .map(|(_, allow)| allow.as_str())
    }
}

/// What any request can be answered with: a bad path, header or body, a bad token, a compressed
/// body (415 whatever the route), a bug.
const ANY_REQUEST: &[ProblemKind] = &[
    P::InvalidRequest,
    P::InvalidToken,
    P::UnsupportedMediaType,
    P::Internal,
];
/// What a request naming a tenant can also be answered with: the caller's rights (a tenant the
/// caller may not see is `forbidden`, registered or not; only integrations, on reads, are told it is
/// unknown).
const TENANT_ROUTE: &[ProblemKind] = &[P::InsufficientScope, P::Forbidden];
/// What a request of the change feed can also be answered with: anyone but an integration.
const INTEGRATIONS: &[ProblemKind] = &[P::InsufficientScope, P::Forbidden];
/// What a request of the tenant registry can also be answered with: anyone but the provisioning
/// system.
const PROVISIONING: &[ProblemKind] = &[P::InsufficientScope, P::Forbidden];
/// What a registry write can also be answered with: a stale `If-Match` (or `If-None-Match: *` on a
/// registered tenant), and a race it could not wait out.
const REGISTRY_WRITE: &[ProblemKind] = &[P::PreconditionFailed, P::ConcurrentSwitch];
/// What a long poll or a stream of the change feed can also be answered with: a position it never
/// handed out, and the caps on held requests.
const HELD_FEED: &[ProblemKind] = &[P::UnknownPosition, P::RateLimited];
/// What a request that may ask IMS can also be answered with.
const ASKS_IMS: &[ProblemKind] = &[P::ImsError, P::ImsUnavailable];
/// What a write (a switch or a disconnect) can also be answered with.
const WRITE: &[ProblemKind] = &[P::ConcurrentSwitch, P::PreconditionFailed, P::RateLimited];

/// What a webhook operation can also be answered with: anyone but an integration, another's
/// endpoint, webhooks off.
const WEBHOOKS: &[ProblemKind] = &[
    P::InsufficientScope,
    P::Forbidden,
    P::NotFound,
    P::WebhooksUnavailable,
    P::DatabaseUnavailable,
];
/// What a webhook operation with a body can also be answered with (its `after`: a position the feed
/// never handed out).
const WEBHOOK_BODY: &[ProblemKind] = &[P::RequestTimeout, P::PayloadTooLarge, P::UnknownPosition];

/// The problem types each operation can answer with, as groups. The OpenAPI document's error
/// responses and their examples are generated from this list, grouped by each type's status (see
/// `openapi.rs`).
pub const OPERATION_ERRORS: &[(&str, &[&[ProblemKind]])] = &[
    (
        "get_connection",
        &[
            ANY_REQUEST,
            TENANT_ROUTE,
            &[P::UnknownTenant, P::NoConnection, P::RateLimited],
            ASKS_IMS,
            &[P::DatabaseUnavailable],
        ],
    ),
    (
        "put_connection",
        &[
            ANY_REQUEST,
            TENANT_ROUTE,
            WRITE,
            &[
                P::RequestTimeout,
                P::PayloadTooLarge,
                P::OrgNotAccessible,
                P::NoCreativeCloudEntitlement,
            ],
            ASKS_IMS,
            &[P::DatabaseUnavailable],
        ],
    ),
    (
        "delete_connection",
        &[
            ANY_REQUEST,
            TENANT_ROUTE,
            &[P::NoConnection],
            WRITE,
            ASKS_IMS,
            &[P::DatabaseUnavailable],
        ],
    ),
    (
        "get_history",
        &[
            ANY_REQUEST,
            TENANT_ROUTE,
            &[P::RateLimited],
            ASKS_IMS,
            &[P::DatabaseUnavailable],
        ],
    ),
    (
        "list_connections",
        &[ANY_REQUEST, INTEGRATIONS, &[P::DatabaseUnavailable]],
    ),
    (
        "get_changes",
        &[ANY_REQUEST, INTEGRATIONS, HELD_FEED, &[P::DatabaseUnavailable]],
    ),
    (
        "get_change_stream",
        &[ANY_REQUEST, INTEGRATIONS, HELD_FEED, &[P::DatabaseUnavailable]],
    ),
    (
        "create_endpoint",
        &[ANY_REQUEST, WEBHOOKS, WEBHOOK_BODY, &[P::TooManyEndpoints]],
    ),
    ("list_endpoints", &[ANY_REQUEST, WEBHOOKS]),
    ("get_endpoint", &[ANY_REQUEST, WEBHOOKS]),
    ("delete_endpoint", &[ANY_REQUEST, WEBHOOKS]),
    ("rotate_secret", &[ANY_REQUEST, WEBHOOKS]),
    ("replay", &[ANY_REQUEST, WEBHOOKS, WEBHOOK_BODY]),
    ("enable", &[ANY_REQUEST, WEBHOOKS]),
    (
        "get_user_orgs",
        &[ANY_REQUEST, &[P::Forbidden, P::RateLimited], ASKS_IMS],
    ),
    (
        "list_tenants",
        &[ANY_REQUEST, PROVISIONING, &[P::DatabaseUnavailable]],
    ),
    (
        "get_tenant",
        &[
            ANY_REQUEST,
            PROVISIONING,
            &[P::UnknownTenant, P::DatabaseUnavailable],
        ],
    ),
    (
        "put_tenant",
        &[
            ANY_REQUEST,
            PROVISIONING,
            REGISTRY_WRITE,
            &[
                P::TenantOrgConflict,
                P::RequestTimeout,
                P::PayloadTooLarge,
                P::DatabaseUnavailable,
            ],
        ],
    ),
    (
        "delete_tenant",
        &[
            ANY_REQUEST,
            PROVISIONING,
            REGISTRY_WRITE,
            &[P::UnknownTenant, P::DatabaseUnavailable],
        ],
    ),
];

/// Unknown route (404 `not-found`) or known route with another method (405 with `Allow`).
pub async fn fallback(req: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    let allow = req
        .app_data::<RouteTable>()
        .and_then(|routes| routes.allow(req.path()));
    Err(match allow {
        Some(allow) => ApiError::MethodNotAllowed(allow.to_owned()),
        None => ApiError::NotFound,
    })
}

/// Middleware: a request whose `Content-Encoding` is anything but `identity` is answered 415 before
/// any extractor runs. The body would otherwise be inflated while the caller's rights are still
/// being checked (a few KiB of gzip can stand for megabytes), and no client of this API compresses
/// a body of under 100 bytes.
pub async fn identity_encoding_only(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::EitherBody<impl MessageBody>>, actix_web::Error> {
    let encoded = req.headers().get_all(CONTENT_ENCODING).any(|value| {
        value.to_str().map_or(true, |text| {
            text.split(',')
                .map(str::trim)
                .any(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case("identity"))
        })
    });
    if encoded {
        let res = actix_web::ResponseError::error_response(&ApiError::UnsupportedContentEncoding);
        return Ok(req.into_response(res).map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}

/// Middleware: a request's body is read whole, within `CCC_REQUEST_BODY_TIMEOUT_MS`, before any
/// extractor runs: a body that drips in is answered 408 `request-timeout` and holds nothing meanwhile
/// (no budget slot, no IMS call, no database connection), and one larger than [`MAX_BODY_BYTES`] is
/// 413 without being read further. Requests without a body pass straight through.
pub async fn read_body_in_time(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::EitherBody<impl MessageBody>>, actix_web::Error> {
    use actix_web::http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
    use futures_util::StreamExt;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let has_body = declared.is_some_and(|n| n > 0) || req.headers().contains_key(TRANSFER_ENCODING);
    if !has_body {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let refuse = |req: ServiceRequest, e: ApiError| {
        let res = actix_web::ResponseError::error_response(&e);
        Ok(req.into_response(res).map_into_right_body())
    };
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return refuse(req, ApiError::PayloadTooLarge(MAX_BODY_BYTES));
    }
    let timeout = req
        .app_data::<web::Data<crate::state::AppState>>()
        .map_or(crate::config::DEFAULT_REQUEST_BODY_TIMEOUT, |s| {
            s.config.request_body_timeout()
        });
    let mut payload = actix_web::HttpMessage::take_payload(&mut req);
    let read = async {
        let mut body = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::invalid(format!("the request body could not be read: {e}")))?;
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(body)) => {
            req.set_payload(actix_web::dev::Payload::from(body));
            Ok(next.call(req).await?.map_into_left_body())
        }
        Ok(Err(e)) => refuse(req, e),
        Err(_) => {
            tracing::info!(
                timeout_ms = timeout.as_millis() as u64,
                "request body did not arrive in time"
            );
            refuse(req, ApiError::RequestTimeout)
        }
    }
}

/// Middleware: HEAD on the OpenAPI document and the Swagger UI is served as GET, which is all
/// utoipa-swagger-ui routes there (the API's own GET routes answer HEAD themselves). The HTTP layer
/// decided when it parsed the request that a HEAD answer goes out as headers only, so the body the
/// GET handler builds is never sent.
pub async fn head_as_get_for_docs(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if req.method() == Method::HEAD && (req.path() == OPENAPI_PATH || req.path().starts_with("/swagger-ui/"))
    {
        req.head_mut().method = Method::GET;
    }
    next.call(req).await
}

/// actix's JSON errors as problems: 413 oversized, 415 wrong type, 400 for the rest (with the
/// parser's message, which names the field and position but never echoes the body).
pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(MAX_BODY_BYTES)
        .content_type_required(true)
        .content_type(|mime| mime.type_() == "application" && mime.subtype() == "json")
        .error_handler(|err, _req| {
            match err {
                JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
                    ApiError::PayloadTooLarge(MAX_BODY_BYTES)
                }
                JsonPayloadError::ContentType => ApiError::UnsupportedMediaType,
                JsonPayloadError::Deserialize(e) => invalid_json(&e),
                other => ApiError::invalid(format!("invalid request body: {other}")),
            }
            .into()
        })
}

/// A body that is JSON of the wrong shape: serde's message names the field and position, never the
/// value.
pub fn invalid_json(e: &serde_json::Error) -> ApiError {
    ApiError::invalid(format!("invalid JSON body: {e}"))
}

/// Query-string errors as 400 problems.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err: QueryPayloadError, _req| {
        ApiError::invalid(format!("invalid query: {err}")).into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_table_lists_each_documented_path_with_its_methods() {
        let table = RouteTable::from_document(&crate::openapi::document()).with(OPENAPI_PATH, "GET, HEAD");
        assert_eq!(
            table.allow("/tenants/acme-prod/creative-cloud-connection"),
            Some("GET, HEAD, PUT, DELETE")
        );
        assert_eq!(
            table.allow("/tenants/acme-prod/creative-cloud-connection/history"),
            Some("GET, HEAD")
        );
        assert_eq!(table.allow("/metrics"), Some("GET, HEAD"));
        assert_eq!(table.allow(OPENAPI_PATH), Some("GET, HEAD"));
        assert_eq!(table.allow("/tenants/acme-prod"), Some("GET, HEAD, PUT, DELETE"));
        assert_eq!(table.allow("/tenants"), Some("GET, HEAD"));
        assert_eq!(table.allow("/tenants/acme-prod/other"), None);
        assert_eq!(RouteTable::default().allow("/metrics"), None);
    }
}
