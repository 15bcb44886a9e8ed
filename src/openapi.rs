//! The OpenAPI document: paths and schemas collected from the routed handlers (utoipa-actix-web),
//! plus the bearer scheme and every error response with an example, from one table.

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

use crate::error::{PROBLEM_JSON, PROBLEM_TYPES, Problem};
use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "cc-connection",
        description = "The connection of an AEM Assets tenant to a Creative Cloud organization (an Adobe IMS org).\n\nAuthenticate with an Adobe IMS access token: `Authorization: Bearer <token>`. Every error is `application/problem+json` (RFC 9457) with a stable `type`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    servers((url = "/", description = "This service")),
    components(schemas(Problem)),
    modifiers(&BearerScheme),
    tags(
        (name = "connection", description = "The tenant's Creative Cloud connection"),
        (name = "orgs", description = "The org picker"),
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

/// Adds each operation's error responses (from `routes::OPERATION_ERRORS`) with one example per slug.
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
                let Some((_, errors)) = routes::OPERATION_ERRORS.iter().find(|(name, _)| *name == id) else {
                    continue;
                };
                for (status, slugs) in *errors {
                    let mut content = ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem")));
                    for slug in *slugs {
                        content = content.examples_from_iter([(
                            (*slug).to_owned(),
                            ExampleBuilder::new()
                                .summary(crate::error::title_of(slug))
                                .value(Some(example_problem(slug, *status)))
                                .build(),
                        )]);
                    }
                    let description = slugs
                        .iter()
                        .map(|s| format!("`{s}`"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let mut response = ResponseBuilder::new()
                        .description(format!("Problem: {description}"))
                        .content(PROBLEM_JSON, content.build());
                    if matches!(status, 429 | 503) {
                        response = response.header("Retry-After", retry_after_header());
                    }
                    // A tenant without a connection can be watched: its 404 carries an ETag.
                    if id == "get_connection" && *status == 404 {
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

fn example_problem(slug: &str, status: u16) -> serde_json::Value {
    let title = PROBLEM_TYPES
        .iter()
        .find(|(s, _, _)| *s == slug)
        .map_or("Error", |(_, t, _)| t);
    let detail = match slug {
        "invalid-request" => "invalid JSON body: unknown field `orgId`, expected `org_id` at line 1 column 8",
        "invalid-token" => "token has expired",
        "insufficient-scope" => "the token lacks the scope aem_assets.cc_connection.admin",
        "forbidden" => "the caller is not an administrator of this tenant",
        "unknown-tenant" => "tenant is not registered",
        "no-connection" => "tenant has no active Creative Cloud connection",
        "concurrent-switch" => "a concurrent switch of this tenant won; read the connection and retry",
        "precondition-failed" => "the connection changed since the ETag given in If-Match",
        "payload-too-large" => "the request body is larger than 16384 bytes",
        "unsupported-media-type" => "the request body must be application/json",
        "org-not-accessible" => "the caller has no access to org 0123456789ABCDEF01234567@AdobeOrg",
        "no-creative-cloud-entitlement" => {
            "the caller has no active Creative Cloud entitlement in org 0123456789ABCDEF01234567@AdobeOrg"
        }
        "rate-limited" => "too many requests that need IMS from this user; retry later",
        "ims-error" => "IMS answered with an unexpected response",
        "ims-unavailable" => "IMS is unavailable",
        "database-unavailable" => "the database is unavailable",
        _ => "an unexpected error occurred; it has been logged",
    };
    let mut v = serde_json::json!({
        "type": format!("/problems/{slug}"),
        "title": title,
        "status": status,
        "detail": detail,
        "instance": "5f0c6e8a-3b7e-4d5e-9a53-0f7f0d2c1a11",
    });
    if slug == "invalid-request" {
        v["errors"] = serde_json::json!([detail]);
    }
    v
}

/// The base document (info, components, modifiers) before paths are collected.
pub fn base() -> OpenApiDoc {
    ApiDoc::openapi()
}

/// HEAD operations (the GET routes answer HEAD too) get an operation id of their own (ids are
/// unique in a document) and their responses lose their bodies: a HEAD answer is headers only.
struct HeadOperations;
impl Modify for HeadOperations {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        for item in openapi.paths.paths.values_mut() {
            let Some(op) = item.head.as_mut() else {
                continue;
            };
            if let Some(id) = op.operation_id.as_mut() {
                *id = format!("head_{id}");
            }
            op.description = Some("The same answer as GET (status and headers), without a body.".to_owned());
            for response in op.responses.responses.values_mut() {
                if let RefOr::T(response) = response {
                    response.content.clear();
                }
            }
        }
    }
}

/// Applies the modifiers that need the collected paths.
pub fn finish(mut doc: OpenApiDoc) -> OpenApiDoc {
    ProblemResponses.modify(&mut doc);
    HeadOperations.modify(&mut doc);
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
