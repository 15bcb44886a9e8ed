//! The OpenAPI document: paths and schemas collected from the routed handlers (utoipa-actix-web),
//! plus the bearer scheme and every error response with an example, from one table.

use std::collections::BTreeMap;

use actix_web::App;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::example::ExampleBuilder;
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as OpenApiDoc, Ref, RefOr};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::AppExt;

use crate::error::{ApiError, PROBLEM_JSON, Problem, ProblemKind, RetryAfter};
use crate::routes;
use crate::routes::connection::SwitchBody;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "cc-connection",
        description = "The connection of an AEM Assets tenant to a Creative Cloud organization (an Adobe IMS org).\n\nAuthenticate with an Adobe IMS access token: `Authorization: Bearer <token>`. Every error is `application/problem+json` (RFC 9457) with a stable `type`.\n\nEvery GET operation also answers HEAD (RFC 9110): the same status and headers, without a body.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    servers((url = "/", description = "This service")),
    components(schemas(Problem)),
    modifiers(&BearerScheme),
    tags(
        (name = "connection", description = "The tenant's Creative Cloud connection"),
        (name = "orgs", description = "The org picker"),
        (name = "feed", description = "Every tenant's connection and the change feed (integrations)"),
        (name = "provisioning", description = "The tenant registry, as the AEM Assets provisioning system drives it"),
        (name = "webhooks", description = "The change feed pushed to an integration's endpoints, signed as Standard Webhooks 1.0 says (integrations)"),
        (name = "operations", description = "Probes"),
    ),
)]
struct ApiDoc;

struct BearerScheme;
impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("An Adobe IMS access token"))
                    .build(),
            ),
        );
    }
}

/// Adds each operation's error responses (from `routes::OPERATION_ERRORS`), by the status of each
/// problem type, with one example per slug.
struct ProblemResponses;
impl Modify for ProblemResponses {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        for item in openapi.paths.paths.values_mut() {
            let ops = [
                &mut item.get,
                &mut item.head,
                &mut item.put,
                &mut item.delete,
                &mut item.post,
                &mut item.patch,
            ];
            for op in ops.into_iter().flatten() {
                let Some(id) = op.operation_id.as_deref() else {
                    continue;
                };
                // The probes answer no problems; a name there that is no operation fails a test.
                let Some((_, groups)) = routes::OPERATION_ERRORS.iter().find(|(name, _)| *name == id) else {
                    continue;
                };
                let mut by_status: BTreeMap<u16, Vec<ProblemKind>> = BTreeMap::new();
                for kind in groups.iter().flat_map(|kinds| kinds.iter()) {
                    by_status.entry(kind.status().as_u16()).or_default().push(*kind);
                }
                for (status, kinds) in by_status {
                    let mut content = ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem")));
                    for kind in &kinds {
                        content = content.examples_from_iter([(
                            kind.slug().to_owned(),
                            ExampleBuilder::new()
                                .summary(kind.title())
                                .value(Some(example_problem(*kind, id)))
                                .build(),
                        )]);
                    }
                    let description = kinds
                        .iter()
                        .map(|kind| format!("`{}`", kind.slug()))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let mut response = ResponseBuilder::new()
                        .description(format!("Problem: {description}"))
                        .content(PROBLEM_JSON, content.build());
                    if kinds.iter().any(|kind| kind.def().retry_after) {
                        response = response.header("Retry-After", retry_after_header());
                    }
                    // A tenant without a connection can be watched: its 404 carries an ETag.
                    if id == "get_connection" && kinds.contains(&ProblemKind::NoConnection) {
                        response = response.header(
                            "ETag",
                            HeaderBuilder::new()
                                .schema(Some(Object::with_type(Type::String)))
                                .description(Some(
                                    "With `no-connection`: the tenant's revision, quoted (for If-None-Match)",
                                ))
                                .build(),
                        );
                    }
                    // A 412 carries the current ETag (a registry write's: the entry's version).
                    if kinds.contains(&ProblemKind::PreconditionFailed) {
                        let what = if matches!(id, "put_tenant" | "delete_tenant") {
                            "With `precondition-failed`: the entry's current version, quoted (none when the tenant is not registered)"
                        } else {
                            "With `precondition-failed`: the current ETag, quoted"
                        };
                        response = response.header(
                            "ETag",
                            HeaderBuilder::new()
                                .schema(Some(Object::with_type(Type::String)))
                                .description(Some(what))
                                .build(),
                        );
                    }
                    let response = response.build();
                    op.responses
                        .responses
                        .insert(status.to_string(), RefOr::T(response));
                }
            }
        }
    }
}

fn retry_after_header() -> Header {
    HeaderBuilder::new()
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1))
                .build(),
        ))
        .description(Some("Seconds to wait before retrying"))
        .build()
}

/// The org of the examples.
const EXAMPLE_ORG: &str = "0123456789ABCDEF01234567@AdobeOrg";

/// The error each problem type's example is rendered from: one the service raises, with sample
/// values where the message has some.
pub fn example_error(kind: ProblemKind) -> ApiError {
    match kind {
        // A switch body with a misspelt field, as the JSON body handler answers it.
        ProblemKind::InvalidRequest => serde_json::from_str::<SwitchBody>(r#"{"orgId":""}"#)
            .err()
            .map_or_else(
                || ApiError::invalid("invalid JSON body"),
                |e| routes::invalid_json(&e),
            ),
        ProblemKind::InvalidToken => ApiError::InvalidToken(crate::auth::token::EXPIRED),
        // The default `CCC_ADMIN_SCOPE`.
        ProblemKind::InsufficientScope => {
            ApiError::InsufficientScope("aem_assets.cc_connection.admin".to_owned())
        }
        ProblemKind::Forbidden => ApiError::Forbidden(crate::auth::NOT_AN_ADMIN),
        ProblemKind::UnknownTenant => ApiError::UnknownTenant,
        ProblemKind::NoConnection => ApiError::NoConnection,
        ProblemKind::NotFound => ApiError::NotFound,
        ProblemKind::UnknownPosition => ApiError::UnknownPosition("after"),
        ProblemKind::MethodNotAllowed => ApiError::MethodNotAllowed("GET, HEAD".to_owned()),
        ProblemKind::RequestTimeout => ApiError::RequestTimeout,
        ProblemKind::ConcurrentSwitch => ApiError::ConcurrentSwitch,
        ProblemKind::PreconditionFailed => ApiError::PreconditionFailed(crate::domain::Revision::new(7)),
        ProblemKind::TenantOrgConflict => ApiError::TenantOrgConflict,
        ProblemKind::PayloadTooLarge => ApiError::PayloadTooLarge(routes::MAX_BODY_BYTES),
        ProblemKind::UnsupportedMediaType => ApiError::UnsupportedMediaType,
        ProblemKind::OrgNotAccessible => ApiError::OrgNotAccessible(EXAMPLE_ORG.to_owned()),
        ProblemKind::NoCreativeCloudEntitlement => {
            ApiError::NoCreativeCloudEntitlement(EXAMPLE_ORG.to_owned())
        }
        ProblemKind::RateLimited => ApiError::RateLimited(RetryAfter::secs(1)),
        ProblemKind::Internal => ApiError::Internal("example".into()),
        ProblemKind::ImsError => ApiError::ImsBadGateway,
        ProblemKind::ImsUnavailable => ApiError::ImsUnavailable(RetryAfter::KEYS_UNAVAILABLE),
        ProblemKind::DatabaseUnavailable => ApiError::DatabaseUnavailable,
        ProblemKind::TooManyEndpoints => {
            ApiError::TooManyEndpoints(crate::config::DEFAULT_WEBHOOK_MAX_ENDPOINTS)
        }
        ProblemKind::WebhooksUnavailable => ApiError::WebhooksUnavailable,
    }
}

/// The error a problem type's example is rendered from on operation `operation`: one that
/// operation raises where it differs from [`example_error`]'s (a query's error where there is no
/// body, the feed's own refusals).
pub fn example_error_of(kind: ProblemKind, operation: &str) -> ApiError {
    let feed = matches!(
        operation,
        "list_connections" | "get_changes" | "get_change_stream"
    );
    match (kind, operation) {
        (ProblemKind::InvalidRequest, "list_connections") => {
            ApiError::invalid("limit must be between 1 and 1000")
        }
        (ProblemKind::InvalidRequest, "get_changes" | "get_change_stream") => {
            ApiError::invalid("after is not a position this service handed out")
        }
        (ProblemKind::InvalidRequest, "get_connection") => {
            ApiError::invalid("wait must be a whole number of seconds from 1 to 50")
        }
        (ProblemKind::InvalidRequest, "get_history") => ApiError::invalid("limit must be between 1 and 100"),
        (ProblemKind::InvalidRequest, "delete_connection") => {
            ApiError::invalid("If-Match must hold one entity tag or *")
        }
        (ProblemKind::InvalidRequest, "get_user_orgs") => crate::domain::UserId::parse("").err().map_or_else(
            || ApiError::invalid("invalid user id"),
            |e| ApiError::invalid(e.to_string()),
        ),
        (ProblemKind::InsufficientScope, _) if feed => {
            ApiError::InsufficientScope("aem_assets.cc_connection.read".to_owned())
        }
        (ProblemKind::Forbidden, _) if feed => ApiError::Forbidden(crate::auth::NOT_AN_INTEGRATION),
        (ProblemKind::RateLimited, _) if feed => ApiError::TooManyHeld(RetryAfter::HELD_REQUESTS),
        _ => example_error(kind),
    }
}

/// The example body of a problem type on `operation`: its example error's body, as sent.
fn example_problem(kind: ProblemKind, operation: &str) -> serde_json::Value {
    let mut problem = example_error_of(kind, operation).problem();
    problem.instance = "5f0c6e8a-3b7e-4d5e-9a53-0f7f0d2c1a11".to_owned();
    serde_json::to_value(problem).unwrap_or_default()
}

/// The base document (info, components, modifiers) before paths are collected.
pub fn base() -> OpenApiDoc {
    ApiDoc::openapi()
}

/// The HEAD twins of the GET operations leave the document: HTTP defines HEAD for every GET (the
/// document's description says each GET answers it), and listed, each became a second method of
/// every generated client.
struct NoHeadOperations;
impl Modify for NoHeadOperations {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        for item in openapi.paths.paths.values_mut() {
            if item.get.is_some() {
                item.head = None;
            }
        }
    }
}

/// Applies the modifiers that need the collected paths.
pub fn finish(mut doc: OpenApiDoc) -> OpenApiDoc {
    NoHeadOperations.modify(&mut doc);
    ProblemResponses.modify(&mut doc);
    doc
}

/// The document exactly as the running service serves it at `/openapi.json`.
pub fn document() -> OpenApiDoc {
    let (_, doc) = App::new()
        .into_utoipa_app()
        .openapi(base())
        .configure(routes::configure)
        .split_for_parts();
    finish(doc)
}

/// The document as pretty JSON (what `cc-connection openapi` prints and `openapi/` holds).
pub fn document_json() -> String {
    document()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_problem_type_has_its_own_slug_and_an_example_of_its_kind() {
        let slugs: std::collections::BTreeSet<&str> = ProblemKind::ALL.iter().map(|k| k.slug()).collect();
        assert_eq!(slugs.len(), ProblemKind::ALL.len());
        for kind in ProblemKind::ALL {
            assert_eq!(ProblemKind::from_slug(kind.slug()), Some(kind));
            let example = example_error(kind);
            assert_eq!(example.kind(), kind);
            assert_eq!(
                example.retry_after().is_some(),
                kind.def().retry_after,
                "{kind:?}"
            );
        }
    }
}
