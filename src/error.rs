//! One error type for the HTTP layer, mapped once to `application/problem+json` (RFC 9457).
//!
//! Every response that is not a success goes through [`ApiError`]: the handlers' own errors, the
//! store's and IMS's (via `From`), and actix's (bad JSON, bad path or query, unknown route, wrong
//! method, oversized body) through the error handlers installed in `startup`.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::ims::ImsError;
use crate::store::StoreError;
use crate::telemetry;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "/problems/no-connection", "title": "No connection", "status": 404,
    "detail": "tenant acme-prod is not connected to a Creative Cloud org",
    "instance": "5f0c6e8a-3b7e-4d5e-9a53-0f7f0d2c1a11"
}))]
pub struct Problem {
    /// `/problems/<slug>`: stable, what a client switches on.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// A short summary of the problem type.
    pub title: &'static str,
    /// The HTTP status code.
    pub status: u16,
    /// What happened, for a human.
    pub detail: String,
    /// The request id (also sent as `x-request-id`).
    pub instance: String,
    /// The individual problems of an invalid request.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// Every error the API answers with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: malformed JSON, unknown field, bad id, bad header or parameter.
    #[error("{detail}")]
    InvalidRequest {
        /// Summary.
        detail: String,
        /// Each problem found.
        errors: Vec<String>,
    },
    /// 401: no, malformed, expired or forged token, wrong type, unknown client.
    #[error("{0}")]
    InvalidToken(&'static str),
    /// 403: the token's client lacks the scope named.
    #[error("the token lacks the scope {0}")]
    InsufficientScope(String),
    /// 403: authenticated but not allowed (not a member/admin of the tenant, not the user in the path).
    #[error("{0}")]
    Forbidden(&'static str),
    /// 404: the tenant is not registered.
    #[error("tenant is not registered")]
    UnknownTenant,
    /// 404: the tenant has no active connection.
    #[error("tenant has no active Creative Cloud connection")]
    NoConnection,
    /// 404: no such route.
    #[error("no such resource")]
    NotFound,
    /// 405: the route exists, the method does not; `Allow` lists the methods.
    #[error("method not allowed")]
    MethodNotAllowed(&'static str),
    /// 409: a concurrent switch of the same tenant won.
    #[error("a concurrent switch of this tenant won; read the connection and retry")]
    ConcurrentSwitch,
    /// 412: `If-Match` did not match the current revision.
    #[error("the connection changed since the ETag given in If-Match")]
    PreconditionFailed,
    /// 413: the body is larger than allowed.
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// 415: the body is not `application/json`.
    #[error("the request body must be application/json")]
    UnsupportedMediaType,
    /// 415: the body is sent with a `Content-Encoding` other than `identity`.
    #[error("request bodies are accepted without content coding only (Content-Encoding: identity)")]
    UnsupportedContentEncoding,
    /// 422: the caller cannot see the target org in IMS.
    #[error("the caller has no access to org {0}")]
    OrgNotAccessible(String),
    /// 422: the caller holds no active Creative Cloud entitlement in the target org.
    #[error("the caller has no active Creative Cloud entitlement in org {0}")]
    NoCreativeCloudEntitlement(String),
    /// 429: the caller made too many IMS-bound requests; retry after the given seconds.
    #[error("too many requests that need IMS from this user; retry later")]
    RateLimited(u64),
    /// 502: IMS answered with something unusable.
    #[error("IMS answered with an unexpected response")]
    ImsBadGateway,
    /// 503: IMS is down or slow; retry after the given seconds.
    #[error("IMS is unavailable")]
    ImsUnavailable(u64),
    /// 503: the database is down, slow or out of connections.
    #[error("the database is unavailable")]
    DatabaseUnavailable,
    /// 500: a bug or an unexpected failure; the cause is logged, never sent.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    /// A 400 with one listed problem.
    pub fn invalid(detail: impl Into<String>) -> Self {
        let detail = detail.into();
        Self::InvalidRequest {
            errors: vec![detail.clone()],
            detail,
        }
    }

    /// The stable slug of the problem type.
    pub fn slug(&self) -> &'static str {
        match self {
            Self::InvalidRequest { .. } => "invalid-request",
            Self::InvalidToken(_) => "invalid-token",
            Self::InsufficientScope(_) => "insufficient-scope",
            Self::Forbidden(_) => "forbidden",
            Self::UnknownTenant => "unknown-tenant",
            Self::NoConnection => "no-connection",
            Self::NotFound => "not-found",
            Self::MethodNotAllowed(_) => "method-not-allowed",
            Self::ConcurrentSwitch => "concurrent-switch",
            Self::PreconditionFailed => "precondition-failed",
            Self::PayloadTooLarge(_) => "payload-too-large",
            Self::UnsupportedMediaType | Self::UnsupportedContentEncoding => "unsupported-media-type",
            Self::OrgNotAccessible(_) => "org-not-accessible",
            Self::NoCreativeCloudEntitlement(_) => "no-creative-cloud-entitlement",
            Self::RateLimited(_) => "rate-limited",
            Self::ImsBadGateway => "ims-error",
            Self::ImsUnavailable(_) => "ims-unavailable",
            Self::DatabaseUnavailable => "database-unavailable",
            Self::Internal(_) => "internal",
        }
    }

    fn title(&self) -> &'static str {
        title_of(self.slug())
    }
}

/// Every problem slug with its title and status: the one list the OpenAPI examples are made from.
pub const PROBLEM_TYPES: &[(&str, &str, u16)] = &[
    ("invalid-request", "Invalid request", 400),
    ("invalid-token", "Invalid token", 401),
    ("insufficient-scope", "Insufficient scope", 403),
    ("forbidden", "Forbidden", 403),
    ("unknown-tenant", "Unknown tenant", 404),
    ("no-connection", "No connection", 404),
    ("not-found", "Not found", 404),
    ("method-not-allowed", "Method not allowed", 405),
    ("concurrent-switch", "Concurrent switch", 409),
    ("precondition-failed", "Precondition failed", 412),
    ("payload-too-large", "Payload too large", 413),
    ("unsupported-media-type", "Unsupported media type", 415),
    ("org-not-accessible", "Org not accessible", 422),
    (
        "no-creative-cloud-entitlement",
        "No Creative Cloud entitlement",
        422,
    ),
    ("rate-limited", "Rate limited", 429),
    ("internal", "Internal error", 500),
    ("ims-error", "IMS error", 502),
    ("ims-unavailable", "IMS unavailable", 503),
    ("database-unavailable", "Database unavailable", 503),
];

/// The title of a slug.
pub fn title_of(slug: &str) -> &'static str {
    PROBLEM_TYPES
        .iter()
        .find(|(s, _, _)| *s == slug)
        .map_or("Error", |(_, t, _)| t)
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            Self::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Self::InsufficientScope(_) | Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::UnknownTenant | Self::NoConnection | Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::ConcurrentSwitch => StatusCode::CONFLICT,
            Self::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType | Self::UnsupportedContentEncoding => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            Self::OrgNotAccessible(_) | Self::NoCreativeCloudEntitlement(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::ImsBadGateway => StatusCode::BAD_GATEWAY,
            Self::ImsUnavailable(_) | Self::DatabaseUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            // The cause chain goes to the log only; the body stays generic.
            tracing::error!(problem = self.slug(), cause = %error_chain(self), "request failed");
        }
        let mut res = HttpResponse::build(status);
        res.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)));
        match self {
            Self::InvalidToken(_) => {
                res.insert_header((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer error="invalid_token""#),
                ));
            }
            Self::InsufficientScope(scope) => {
                // Scope names come from configuration, never from the request.
                let value = format!(r#"Bearer error="insufficient_scope", scope="{scope}""#);
                if let Ok(v) = HeaderValue::from_str(&value) {
                    res.insert_header((header::WWW_AUTHENTICATE, v));
                }
            }
            Self::UnsupportedContentEncoding => {
                // RFC 9110 15.5.16: say which content codings would have been accepted.
                res.insert_header((header::ACCEPT_ENCODING, HeaderValue::from_static("identity")));
            }
            Self::MethodNotAllowed(allow) => {
                res.insert_header((header::ALLOW, HeaderValue::from_static(allow)));
            }
            Self::ImsUnavailable(secs) | Self::RateLimited(secs) => {
                res.insert_header((header::RETRY_AFTER, HeaderValue::from(*secs)));
            }
            Self::DatabaseUnavailable => {
                res.insert_header((header::RETRY_AFTER, HeaderValue::from_static("2")));
            }
            _ => {}
        }
        let (detail, errors) = match self {
            Self::InvalidRequest { detail, errors } => (detail.clone(), errors.clone()),
            Self::Internal(_) => (
                "an unexpected error occurred; it has been logged".to_owned(),
                vec![],
            ),
            other => (other.to_string(), vec![]),
        };
        res.json(Problem {
            problem_type: format!("/problems/{}", self.slug()),
            title: self.title(),
            status: status.as_u16(),
            detail,
            instance: telemetry::current_request_id(),
            errors,
        })
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UnknownTenant => Self::UnknownTenant,
            StoreError::NoConnection => Self::NoConnection,
            StoreError::PreconditionFailed => Self::PreconditionFailed,
            StoreError::ConcurrentSwitch => Self::ConcurrentSwitch,
            StoreError::TenantExists => Self::invalid("tenant is already registered"),
            StoreError::Unavailable(cause) => {
                tracing::warn!(cause = %cause, "database unavailable");
                Self::DatabaseUnavailable
            }
            other @ StoreError::Database(_) => Self::Internal(Box::new(other)),
        }
    }
}

impl From<ImsError> for ApiError {
    fn from(e: ImsError) -> Self {
        match e {
            ImsError::Unavailable { retry_after_secs, .. } => Self::ImsUnavailable(retry_after_secs),
            ImsError::Rejected => Self::InvalidToken("IMS rejected the token"),
            ImsError::BadResponse(reason) => {
                tracing::warn!(reason = %reason, "IMS answered with an unusable response");
                Self::ImsBadGateway
            }
        }
    }
}

/// `error: cause: cause`, for logs.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}
