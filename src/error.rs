//! One error type for the HTTP layer, mapped once to `application/problem+json` (RFC 9457).
//!
//! Every response that is not a success goes through [`ApiError`]: the handlers' own errors, the
//! store's and IMS's (via `From`), and actix's (bad JSON, bad path or query, unknown route, wrong
//! method, oversized body) through the error handlers installed in `startup`.

use std::time::Duration;

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
    /// 410: a well-formed feed position (or `Last-Event-ID`) this feed never handed out: from
    /// another database, or beyond the head. The client lists again.
    #[error(
        "{0} is not a position of this feed (from another database, or beyond its head): list the connections again and follow from the listing's position"
    )]
    UnknownPosition(&'static str),
    /// 404: the tenant has no active connection.
    #[error("tenant has no active Creative Cloud connection")]
    NoConnection,
    /// 404: no such route.
    #[error("no such resource")]
    NotFound,
    /// 405: the route exists, the method does not; `Allow` lists the methods.
    #[error("method not allowed")]
    MethodNotAllowed(String),
    /// 408: the request body did not arrive within `CCC_REQUEST_BODY_TIMEOUT_MS`.
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    /// 409: a concurrent switch of the same tenant won.
    #[error("a concurrent switch of this tenant won; read the connection and retry")]
    ConcurrentSwitch,
    /// 412: `If-Match` or `If-None-Match` did not hold; the current ETag is sent with it.
    #[error(
        "the connection is not in the state If-Match or If-None-Match requires; its current ETag is sent"
    )]
    PreconditionFailed(crate::domain::Revision),
    /// 412 (`precondition-failed`): a registry write's `If-Match` or `If-None-Match: *` does not
    /// hold for the tenant's registry entry; its current version is sent as `ETag` when it is
    /// registered.
    #[error(
        "the registry entry is not as If-Match or If-None-Match requires (it changed since that \
         ETag, or it is registered, or it is not)"
    )]
    EntryPreconditionFailed(Option<crate::domain::Revision>),
    /// 409: a registered tenant's home org is not changed in place.
    #[error("the tenant is registered with another home org; remove it first to register it with this one")]
    TenantOrgConflict,
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
    RateLimited(RetryAfter),
    /// 429 (`rate-limited`): a change feed stream or long poll beyond the caps on held requests
    /// (`CCC_MAX_WATCHERS`, `CCC_MAX_WATCHERS_PER_CALLER`); retry after the given seconds.
    #[error(
        "too many held requests (streams, long polls and watches) on this replica or from this caller; retry later, or read without `wait`"
    )]
    TooManyHeld(RetryAfter),
    /// 502: IMS answered with something unusable.
    #[error("IMS answered with an unexpected response")]
    ImsBadGateway,
    /// 503: IMS is down or slow; retry after the given seconds.
    #[error("IMS is unavailable")]
    ImsUnavailable(RetryAfter),
    /// 503: the database is down, slow or out of connections.
    #[error("the database is unavailable")]
    DatabaseUnavailable,
    /// 503 (`database-unavailable`): the database stopped answering while a change was being
    /// committed, so it may or may not have been made.
    #[error(
        "the database stopped answering while this change was being committed: it may or may not \
         have been made; read the connection to see, or repeat the same request (the same org \
         again changes nothing, and If-Match guards against acting on a stale view)"
    )]
    OutcomeUnknown,
    /// 409: the integration's webhook endpoints are at their cap.
    #[error("this integration already has {0} webhook endpoints, the most it may have; delete one first")]
    TooManyEndpoints(usize),
    /// 503: webhooks are off (no `CCC_WEBHOOK_KEY`).
    #[error("webhooks are not available on this service (it has no key to keep their secrets with)")]
    WebhooksUnavailable,
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

    /// The problem type this error is answered as.
    pub fn kind(&self) -> ProblemKind {
        match self {
            Self::InvalidRequest { .. } => ProblemKind::InvalidRequest,
            Self::InvalidToken(_) => ProblemKind::InvalidToken,
            Self::InsufficientScope(_) => ProblemKind::InsufficientScope,
            Self::Forbidden(_) => ProblemKind::Forbidden,
            Self::UnknownTenant => ProblemKind::UnknownTenant,
            Self::NoConnection => ProblemKind::NoConnection,
            Self::UnknownPosition(_) => ProblemKind::UnknownPosition,
            Self::NotFound => ProblemKind::NotFound,
            Self::MethodNotAllowed(_) => ProblemKind::MethodNotAllowed,
            Self::RequestTimeout => ProblemKind::RequestTimeout,
            Self::ConcurrentSwitch => ProblemKind::ConcurrentSwitch,
            Self::PreconditionFailed(_) | Self::EntryPreconditionFailed(_) => ProblemKind::PreconditionFailed,
            Self::TenantOrgConflict => ProblemKind::TenantOrgConflict,
            Self::PayloadTooLarge(_) => ProblemKind::PayloadTooLarge,
            Self::UnsupportedMediaType | Self::UnsupportedContentEncoding => {
                ProblemKind::UnsupportedMediaType
            }
            Self::OrgNotAccessible(_) => ProblemKind::OrgNotAccessible,
            Self::NoCreativeCloudEntitlement(_) => ProblemKind::NoCreativeCloudEntitlement,
            Self::RateLimited(_) | Self::TooManyHeld(_) => ProblemKind::RateLimited,
            Self::ImsBadGateway => ProblemKind::ImsError,
            Self::ImsUnavailable(_) => ProblemKind::ImsUnavailable,
            Self::DatabaseUnavailable | Self::OutcomeUnknown => ProblemKind::DatabaseUnavailable,
            Self::TooManyEndpoints(_) => ProblemKind::TooManyEndpoints,
            Self::WebhooksUnavailable => ProblemKind::WebhooksUnavailable,
            Self::Internal(_) => ProblemKind::Internal,
        }
    }

    /// The stable slug of the problem type.
    pub fn slug(&self) -> &'static str {
        self.kind().slug()
    }

    /// How long the caller should wait before retrying, for the problems that say so.
    pub fn retry_after(&self) -> Option<RetryAfter> {
        match self {
            Self::ImsUnavailable(wait) | Self::RateLimited(wait) | Self::TooManyHeld(wait) => Some(*wait),
            Self::DatabaseUnavailable | Self::OutcomeUnknown => Some(RetryAfter::DATABASE),
            Self::WebhooksUnavailable => Some(RetryAfter::WEBHOOKS_OFF),
            _ => None,
        }
    }

    /// The body sent for this error (the request id as `instance`); the cause of a 500 is never in it.
    pub fn problem(&self) -> Problem {
        let kind = self.kind();
        let (detail, errors) = match self {
            Self::InvalidRequest { detail, errors } => (detail.clone(), errors.clone()),
            Self::Internal(_) => (
                "an unexpected error occurred; it has been logged".to_owned(),
                vec![],
            ),
            other => (other.to_string(), vec![]),
        };
        Problem {
            problem_type: format!("/problems/{}", kind.slug()),
            title: kind.title(),
            status: kind.status().as_u16(),
            detail,
            instance: telemetry::current_request_id(),
            errors,
        }
    }
}

/// A problem type: what a client switches on. Each has one definition, [`ProblemKind::def`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProblemKind {
    /// `invalid-request`
    InvalidRequest,
    /// `invalid-token`
    InvalidToken,
    /// `insufficient-scope`
    InsufficientScope,
    /// `forbidden`
    Forbidden,
    /// `unknown-tenant`
    UnknownTenant,
    /// `no-connection`
    NoConnection,
    /// `not-found`
    NotFound,
    /// `unknown-position`
    UnknownPosition,
    /// `method-not-allowed`
    MethodNotAllowed,
    /// `request-timeout`
    RequestTimeout,
    /// `concurrent-switch`
    ConcurrentSwitch,
    /// `precondition-failed`
    PreconditionFailed,
    /// `tenant-org-conflict`
    TenantOrgConflict,
    /// `payload-too-large`
    PayloadTooLarge,
    /// `unsupported-media-type`
    UnsupportedMediaType,
    /// `org-not-accessible`
    OrgNotAccessible,
    /// `no-creative-cloud-entitlement`
    NoCreativeCloudEntitlement,
    /// `rate-limited`
    RateLimited,
    /// `internal`
    Internal,
    /// `ims-error`
    ImsError,
    /// `ims-unavailable`
    ImsUnavailable,
    /// `database-unavailable`
    DatabaseUnavailable,
    /// `too-many-endpoints`
    TooManyEndpoints,
    /// `webhooks-unavailable`
    WebhooksUnavailable,
}

/// What a problem type is: its slug, status and title, and whether its answers carry `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProblemDef {
    /// The slug of `/problems/<slug>`.
    pub slug: &'static str,
    /// The HTTP status it is answered with.
    pub status: StatusCode,
    /// The `title` of its body.
    pub title: &'static str,
    /// Whether its answers carry `Retry-After`.
    pub retry_after: bool,
}

const fn def(slug: &'static str, status: StatusCode, title: &'static str) -> ProblemDef {
    ProblemDef {
        slug,
        status,
        title,
        retry_after: false,
    }
}

const fn retried(slug: &'static str, status: StatusCode, title: &'static str) -> ProblemDef {
    ProblemDef {
        retry_after: true,
        ..def(slug, status, title)
    }
}

impl ProblemKind {
    /// Every problem type.
    pub const ALL: [Self; 24] = [
        Self::InvalidRequest,
        Self::InvalidToken,
        Self::InsufficientScope,
        Self::Forbidden,
        Self::UnknownTenant,
        Self::NoConnection,
        Self::NotFound,
        Self::UnknownPosition,
        Self::MethodNotAllowed,
        Self::RequestTimeout,
        Self::ConcurrentSwitch,
        Self::PreconditionFailed,
        Self::TenantOrgConflict,
        Self::PayloadTooLarge,
        Self::UnsupportedMediaType,
        Self::OrgNotAccessible,
        Self::NoCreativeCloudEntitlement,
        Self::RateLimited,
        Self::Internal,
        Self::ImsError,
        Self::ImsUnavailable,
        Self::DatabaseUnavailable,
        Self::TooManyEndpoints,
        Self::WebhooksUnavailable,
    ];

    /// The catalogue: the one place a problem type's slug, status and title are written.
    pub const fn def(self) -> ProblemDef {
        use StatusCode as S;
        match self {
            Self::InvalidRequest => def("invalid-request", S::BAD_REQUEST, "Invalid request"),
            Self::InvalidToken => def("invalid-token", S::UNAUTHORIZED, "Invalid token"),
            Self::InsufficientScope => def("insufficient-scope", S::FORBIDDEN, "Insufficient scope"),
            Self::Forbidden => def("forbidden", S::FORBIDDEN, "Forbidden"),
            Self::UnknownTenant => def("unknown-tenant", S::NOT_FOUND, "Unknown tenant"),
            Self::NoConnection => def("no-connection", S::NOT_FOUND, "No connection"),
            Self::NotFound => def("not-found", S::NOT_FOUND, "Not found"),
            Self::UnknownPosition => def("unknown-position", S::GONE, "Unknown position"),
            Self::MethodNotAllowed => def("method-not-allowed", S::METHOD_NOT_ALLOWED, "Method not allowed"),
            Self::RequestTimeout => def("request-timeout", S::REQUEST_TIMEOUT, "Request timeout"),
            Self::ConcurrentSwitch => def("concurrent-switch", S::CONFLICT, "Concurrent switch"),
            Self::PreconditionFailed => def(
                "precondition-failed",
                S::PRECONDITION_FAILED,
                "Precondition failed",
            ),
            Self::TenantOrgConflict => def("tenant-org-conflict", S::CONFLICT, "Tenant org conflict"),
            Self::PayloadTooLarge => def("payload-too-large", S::PAYLOAD_TOO_LARGE, "Payload too large"),
            Self::UnsupportedMediaType => def(
                "unsupported-media-type",
                S::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported media type",
            ),
            Self::OrgNotAccessible => def(
                "org-not-accessible",
                S::UNPROCESSABLE_ENTITY,
                "Org not accessible",
            ),
            Self::NoCreativeCloudEntitlement => def(
                "no-creative-cloud-entitlement",
                S::UNPROCESSABLE_ENTITY,
                "No Creative Cloud entitlement",
            ),
            Self::RateLimited => retried("rate-limited", S::TOO_MANY_REQUESTS, "Rate limited"),
            Self::Internal => def("internal", S::INTERNAL_SERVER_ERROR, "Internal error"),
            Self::ImsError => def("ims-error", S::BAD_GATEWAY, "IMS error"),
            Self::ImsUnavailable => retried("ims-unavailable", S::SERVICE_UNAVAILABLE, "IMS unavailable"),
            Self::DatabaseUnavailable => retried(
                "database-unavailable",
                S::SERVICE_UNAVAILABLE,
                "Database unavailable",
            ),
            Self::TooManyEndpoints => def("too-many-endpoints", S::CONFLICT, "Too many endpoints"),
            // A 503 says when to ask again (RFC 9110); here, once an operator may have set a key.
            Self::WebhooksUnavailable => retried(
                "webhooks-unavailable",
                S::SERVICE_UNAVAILABLE,
                "Webhooks unavailable",
            ),
        }
    }

    /// The slug: `type` is `/problems/<slug>`.
    pub const fn slug(self) -> &'static str {
        self.def().slug
    }

    /// The HTTP status.
    pub const fn status(self) -> StatusCode {
        self.def().status
    }

    /// The title.
    pub const fn title(self) -> &'static str {
        self.def().title
    }

    /// The problem type of a slug.
    pub fn from_slug(slug: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.slug() == slug)
    }
}

/// A `Retry-After`, in whole seconds, at least 1. The fixed waits this service answers with are
/// named here; the others are computed from a wait by [`RetryAfter::after`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RetryAfter(u64);

impl RetryAfter {
    /// The database is down, slow or out of connections.
    pub const DATABASE: Self = Self(2);
    /// IMS could not be reached for a token's signing key.
    pub const KEYS_UNAVAILABLE: Self = Self(5);
    /// Webhooks are off until an operator configures `CCC_WEBHOOK_KEY`.
    pub const WEBHOOKS_OFF: Self = Self(300);
    /// A signing key's download is held back by its own rate limit, briefly.
    pub const KEYS_DEFERRED: Self = Self(1);
    /// The caps on held requests are reached: places come free as streams close and long polls
    /// and watches answer (within `wait`, at most 50 s; most much sooner).
    pub const HELD_REQUESTS: Self = Self(5);

    /// `secs` seconds (0 counts as 1: `Retry-After: 0` would invite a retry storm).
    pub const fn secs(secs: u64) -> Self {
        Self(if secs == 0 { 1 } else { secs })
    }

    /// A wait rounded up to whole seconds.
    pub fn after(wait: Duration) -> Self {
        Self::secs(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
    }

    /// The seconds, as the header says them.
    pub const fn as_secs(self) -> u64 {
        self.0
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.kind().status()
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if matches!(self, Self::DatabaseUnavailable | Self::OutcomeUnknown) {
            // A database outage is logged where it starts and ends (`store/outage.rs`), not once
            // per request it fails; an unknown outcome where it is found (`From<StoreError>`).
        } else if status == StatusCode::SERVICE_UNAVAILABLE {
            // IMS unavailable (or a certificate download deferred): anyone can cause these by the
            // thousand (made-up certificate names), and the breaker and the key loader warn once
            // about the cause; the request line says 503.
            tracing::info!(problem = self.slug(), cause = %error_chain(self), "request refused for now");
        } else if status.is_server_error() {
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
            Self::PreconditionFailed(current) | Self::EntryPreconditionFailed(Some(current)) => {
                // RFC 9110 13.1: the current ETag, so the client can read it or retry at once.
                res.insert_header((header::ETAG, crate::routes::etag::of(*current)));
            }
            Self::MethodNotAllowed(allow) => {
                // The route table's own method names: always a valid header value.
                if let Ok(v) = HeaderValue::from_str(allow) {
                    res.insert_header((header::ALLOW, v));
                }
            }
            _ => {}
        }
        if let Some(wait) = self.retry_after() {
            res.insert_header((header::RETRY_AFTER, HeaderValue::from(wait.as_secs())));
        }
        res.json(self.problem())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UnknownTenant => Self::UnknownTenant,
            StoreError::NoConnection => Self::NoConnection,
            StoreError::PreconditionFailed(current) => Self::PreconditionFailed(current),
            StoreError::ConcurrentSwitch => Self::ConcurrentSwitch,
            StoreError::TenantExists => Self::invalid("tenant is already registered"),
            StoreError::TenantOrgConflict => Self::TenantOrgConflict,
            StoreError::EntryPreconditionFailed(version) => Self::EntryPreconditionFailed(version),
            e @ StoreError::Unavailable(_) => {
                if !crate::store::is_outage(&e) {
                    tracing::warn!(cause = %error_chain(&e), "the database answered but could not serve the request");
                }
                Self::DatabaseUnavailable
            }
            StoreError::OutcomeUnknown(cause) => {
                tracing::warn!(cause = %cause, "commit outcome unknown: the database stopped answering");
                Self::OutcomeUnknown
            }
            other @ StoreError::Database(_) => Self::Internal(Box::new(other)),
        }
    }
}

impl From<ImsError> for ApiError {
    fn from(e: ImsError) -> Self {
        match e {
            ImsError::Unavailable { retry_after_secs, .. } => {
                Self::ImsUnavailable(RetryAfter::secs(retry_after_secs))
            }
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
