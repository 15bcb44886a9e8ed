//! The routes: what is routed here is what the OpenAPI document says (utoipa-actix-web).

pub mod connection;
pub mod etag;
pub mod health;
pub mod orgs;

use actix_web::body::MessageBody;
use actix_web::dev::{ResourceDef, ServiceRequest, ServiceResponse};
use actix_web::error::{JsonPayloadError, QueryPayloadError};
use actix_web::http::Method;
use actix_web::http::header::CONTENT_ENCODING;
use actix_web::middleware::Next;
use actix_web::{HttpRequest, web};
use utoipa_actix_web::service_config::ServiceConfig;

use crate::error::{ApiError, ProblemKind, ProblemKind as P};

/// The largest request body accepted (a switch body is under 100 bytes).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Registers every documented route.
pub fn configure(cfg: &mut ServiceConfig<'_>) {
    configure_public(cfg);
    cfg.service(health::metrics);
}

/// Every route but `/metrics`: the public listener's when `CCC_OPS_LISTEN` serves the metrics.
pub fn configure_public(cfg: &mut ServiceConfig<'_>) {
    cfg.service(connection::get_connection)
        .service(connection::put_connection)
        .service(connection::delete_connection)
        .service(connection::get_history)
        .service(orgs::get_user_orgs)
        .service(health::healthz)
        .service(health::readyz);
}

/// The routes of a listener (in its app data): its fallback answers 404 for routes it does not
/// serve, and 405 only for those it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The one listener (no `CCC_OPS_LISTEN`): every route.
    All,
    /// The public listener beside an ops listener: every route but `/metrics`.
    Public,
    /// `CCC_OPS_LISTEN`: `/metrics` and the probes.
    Ops,
}

/// The routes of the ops listener.
pub const OPS_ROUTES: &[&str] = &["/healthz", "/readyz", "/metrics"];

impl Listener {
    fn serves(self, pattern: &str) -> bool {
        match self {
            Self::All => true,
            Self::Public => pattern != "/metrics",
            Self::Ops => OPS_ROUTES.contains(&pattern),
        }
    }
}

/// Each route's path and the methods it answers, for `405` with `Allow` (actix alone answers 404).
const ROUTES: &[(&str, &str)] = &[
    (
        "/tenants/{tenant_id}/creative-cloud-connection",
        "GET, HEAD, PUT, DELETE",
    ),
    (
        "/tenants/{tenant_id}/creative-cloud-connection/history",
        "GET, HEAD",
    ),
    ("/users/{user_id}/orgs", "GET, HEAD"),
    ("/healthz", "GET, HEAD"),
    ("/readyz", "GET, HEAD"),
    ("/metrics", "GET, HEAD"),
    ("/openapi.json", "GET, HEAD"),
];

/// The problem types each operation can answer with (415 everywhere: a request with a
/// `Content-Encoding` is refused whatever its route). The OpenAPI document's error responses and
/// their examples are generated from this list, grouped by each type's status (see `openapi.rs`).
pub const OPERATION_ERRORS: &[(&str, &[ProblemKind])] = &[
    (
        "get_connection",
        &[
            P::InvalidRequest,
            P::InvalidToken,
            P::InsufficientScope,
            P::Forbidden,
            P::UnknownTenant,
            P::NoConnection,
            P::UnsupportedMediaType,
            P::Internal,
            P::ImsError,
            P::ImsUnavailable,
            P::DatabaseUnavailable,
        ],
    ),
    (
        "put_connection",
        &[
            P::InvalidRequest,
            P::InvalidToken,
            P::InsufficientScope,
            P::Forbidden,
            P::UnknownTenant,
            P::ConcurrentSwitch,
            P::PreconditionFailed,
            P::PayloadTooLarge,
            P::UnsupportedMediaType,
            P::OrgNotAccessible,
            P::NoCreativeCloudEntitlement,
            P::RateLimited,
            P::Internal,
            P::ImsError,
            P::ImsUnavailable,
            P::DatabaseUnavailable,
        ],
    ),
    (
        "delete_connection",
        &[
            P::InvalidRequest,
            P::InvalidToken,
            P::InsufficientScope,
            P::Forbidden,
            P::UnknownTenant,
            P::NoConnection,
            P::ConcurrentSwitch,
            P::PreconditionFailed,
            P::UnsupportedMediaType,
            P::RateLimited,
            P::Internal,
            P::ImsError,
            P::ImsUnavailable,
            P::DatabaseUnavailable,
        ],
    ),
    (
        "get_history",
        &[
            P::InvalidRequest,
            P::InvalidToken,
            P::InsufficientScope,
            P::Forbidden,
            P::UnknownTenant,
            P::UnsupportedMediaType,
            P::Internal,
            P::ImsError,
            P::ImsUnavailable,
            P::DatabaseUnavailable,
        ],
    ),
    (
        "get_user_orgs",
        &[
            P::InvalidRequest,
            P::InvalidToken,
            P::Forbidden,
            P::UnsupportedMediaType,
            P::RateLimited,
            P::Internal,
            P::ImsError,
            P::ImsUnavailable,
        ],
    ),
];

/// Unknown route (404 `not-found`) or known route with another method (405 with `Allow`).
pub async fn fallback(req: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    let path = req.path();
    let listener = req.app_data::<Listener>().copied().unwrap_or(Listener::All);
    Err(
        match ROUTES
            .iter()
            .filter(|(pattern, _)| listener.serves(pattern))
            .find(|(pattern, _)| ResourceDef::new(*pattern).is_match(path))
        {
            Some((_, allow)) => ApiError::MethodNotAllowed((*allow).to_owned()),
            None => ApiError::NotFound,
        },
    )
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

/// Middleware: HEAD on the OpenAPI document and the Swagger UI is served as GET, which is all
/// utoipa-swagger-ui routes there (the API's own GET routes answer HEAD themselves). The HTTP layer
/// decided when it parsed the request that a HEAD answer goes out as headers only, so the body the
/// GET handler builds is never sent.
pub async fn head_as_get_for_docs(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if req.method() == Method::HEAD
        && (req.path() == "/openapi.json" || req.path().starts_with("/swagger-ui/"))
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
                JsonPayloadError::Deserialize(e) => ApiError::invalid(format!("invalid JSON body: {e}")),
                other => ApiError::invalid(format!("invalid request body: {other}")),
            }
            .into()
        })
}

/// Query-string errors as 400 problems.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err: QueryPayloadError, _req| {
        ApiError::invalid(format!("invalid query: {err}")).into()
    })
}
