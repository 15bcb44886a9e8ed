//! The contract: the committed document is what the code generates and what the service serves.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::common::db::Backend;
use crate::helpers::{send_json, spawn_app};

fn committed() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json"))
        .expect("openapi/openapi.json is committed");
    serde_json::from_str(&text).expect("openapi/openapi.json is JSON")
}

#[test]
fn committed_openapi_matches_the_code() {
    let generated: Value = serde_json::from_str(&cc_connection::openapi::document_json()).unwrap();
    assert!(
        generated == committed(),
        "openapi/openapi.json is stale: run `cargo run -q -- openapi > openapi/openapi.json`"
    );
}

#[tokio::test]
async fn the_service_serves_the_committed_document_and_swagger_ui() {
    let app = spawn_app(Backend::Sqlite).await;
    let served = send_json(app.client.get(app.url("/openapi.json"))).await;
    assert_eq!(served, committed());
    let res = app.client.get(app.url("/swagger-ui/")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("swagger"));
}

#[test]
fn every_operation_documents_each_error_slug_with_an_example_and_uses_bearer() {
    let doc = committed();
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    let paths = doc["paths"].as_object().unwrap();
    let expected: BTreeSet<&str> = [
        "/tenants/{tenant_id}/creative-cloud-connection",
        "/tenants/{tenant_id}/creative-cloud-connection/history",
        "/users/{user_id}/orgs",
        "/creative-cloud-connections",
        "/creative-cloud-connections/changes",
        "/tenants",
        "/tenants/{tenant_id}",
        "/creative-cloud-connections/changes/stream",
        "/healthz",
        "/readyz",
        "/metrics",
        "/webhook-endpoints",
        "/webhook-endpoints/{id}",
        "/webhook-endpoints/{id}/rotate-secret",
        "/webhook-endpoints/{id}/replay",
        "/webhook-endpoints/{id}/enable",
    ]
    .into();
    assert_eq!(
        paths.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        expected
    );
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            for (status, response) in responses {
                // The readiness probe's 503 is a probe answer (a Readiness body), not an API error.
                // A HEAD answer has no body: its responses document headers only.
                if method == "head" {
                    assert!(response.get("content").is_none(), "head {path} {status}");
                    continue;
                }
                if (status.starts_with('4') || status.starts_with('5')) && path != "/readyz" {
                    let content = &response["content"]["application/problem+json"];
                    let examples = content["examples"]
                        .as_object()
                        .unwrap_or_else(|| panic!("{method} {path} {status}"));
                    for example in examples.values() {
                        assert_eq!(example["value"]["status"].to_string(), *status, "{method} {path}");
                    }
                }
            }
            if path.starts_with("/tenants") || path.starts_with("/users") || path.starts_with("/creative") {
                assert!(responses.contains_key("401"), "{method} {path} documents 401");
                assert!(op["security"].is_array(), "{method} {path} needs bearer");
            }
        }
    }
}

/// Every documented problem example, by operation and slug, with the status it is filed under and
/// whether that response documents `Retry-After`.
fn documented_problems(doc: &Value) -> BTreeMap<(String, String), (u16, bool, Value)> {
    let mut found = BTreeMap::new();
    for ops in doc["paths"].as_object().unwrap().values() {
        for op in ops.as_object().unwrap().values() {
            let id = op["operationId"].as_str().unwrap().to_owned();
            for (status, response) in op["responses"].as_object().unwrap() {
                let Some(examples) = response["content"]["application/problem+json"]["examples"].as_object()
                else {
                    continue;
                };
                let retry_after = response["headers"].get("Retry-After").is_some();
                for (slug, example) in examples {
                    let entry = (status.parse().unwrap(), retry_after, example["value"].clone());
                    found.insert((id.clone(), slug.clone()), entry);
                }
            }
        }
    }
    found
}

/// Each problem raised as the service raises it and rendered as it is sent, against the committed
/// document's example of its slug on each operation: status, type, title, detail, and
/// `Retry-After`. An operation's own example (a query's error where it has no body, the feed's own
/// refusals) is checked where the operation documents it, the general one everywhere else.
#[tokio::test]
async fn every_documented_problem_is_what_the_error_renders() {
    use actix_web::ResponseError;
    use cc_connection::error::{ApiError, RetryAfter};

    let org = "0123456789ABCDEF01234567@AdobeOrg";
    let general = [
        ApiError::invalid("invalid JSON body: unknown field `orgId`, expected `org_id` at line 1 column 8"),
        ApiError::InvalidToken("token has expired"),
        ApiError::InsufficientScope("aem_assets.cc_connection.admin".to_owned()),
        ApiError::Forbidden("the caller is not an administrator of this tenant"),
        ApiError::UnknownTenant,
        ApiError::NoConnection,
        ApiError::RequestTimeout,
        ApiError::ConcurrentSwitch,
        ApiError::PreconditionFailed(cc_connection::domain::Revision::new(7)),
        ApiError::TenantOrgConflict,
        ApiError::PayloadTooLarge(cc_connection::routes::MAX_BODY_BYTES),
        ApiError::UnsupportedMediaType,
        ApiError::OrgNotAccessible(org.to_owned()),
        ApiError::NoCreativeCloudEntitlement(org.to_owned()),
        ApiError::RateLimited(RetryAfter::secs(3)),
        ApiError::Internal("a cause that is never sent".into()),
        ApiError::ImsBadGateway,
        ApiError::ImsUnavailable(RetryAfter::secs(7)),
        ApiError::DatabaseUnavailable,
        ApiError::NotFound,
        ApiError::TooManyEndpoints(10),
        ApiError::WebhooksUnavailable,
    ];
    let feed = ["list_connections", "get_changes", "get_change_stream"];
    let feed_refusals = || {
        [
            ApiError::InsufficientScope("aem_assets.cc_connection.read".to_owned()),
            ApiError::Forbidden("only an integration's service token may read every tenant"),
            ApiError::TooManyHeld(RetryAfter::secs(5)),
        ]
    };
    let position = "after is not a position this service handed out";
    let mut own: Vec<(&str, ApiError)> = vec![
        (
            "get_connection",
            ApiError::invalid("wait must be a whole number of seconds from 1 to 50"),
        ),
        (
            "get_history",
            ApiError::invalid("limit must be between 1 and 100"),
        ),
        (
            "delete_connection",
            ApiError::invalid("If-Match must hold one entity tag or *"),
        ),
        (
            "list_connections",
            ApiError::invalid("limit must be between 1 and 1000"),
        ),
        ("get_changes", ApiError::invalid(position)),
        ("get_change_stream", ApiError::invalid(position)),
        ("get_changes", ApiError::UnknownPosition("after")),
        ("get_change_stream", ApiError::UnknownPosition("after")),
        ("create_endpoint", ApiError::UnknownPosition("after")),
        ("replay", ApiError::UnknownPosition("after")),
        (
            "get_user_orgs",
            ApiError::invalid(cc_connection::domain::UserId::parse("").unwrap_err().to_string()),
        ),
    ];
    for op in feed {
        let refusals = feed_refusals().into_iter();
        // The listing is never held: no cap refuses it.
        let refusals =
            refusals.filter(|e| op != "list_connections" || !matches!(e, ApiError::TooManyHeld(_)));
        own.extend(refusals.map(|e| (op, e)));
    }
    let rendered = async |error: &ApiError| {
        let res = error.error_response();
        let status = res.status().as_u16();
        let retry_after = res.headers().contains_key("retry-after");
        let body = actix_web::body::to_bytes(res.into_body()).await.unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        let slug = body["type"]
            .as_str()
            .unwrap()
            .strip_prefix("/problems/")
            .unwrap()
            .to_owned();
        (slug, status, retry_after, body)
    };
    let check =
        |what: &str, (status, retry_after, body): (u16, bool, &Value), documented: &(u16, bool, Value)| {
            let (filed_under, documents_retry_after, example) = documented;
            assert_eq!(status, *filed_under, "{what}: status");
            assert_eq!(body["status"], status, "{what}: status in the body");
            assert_eq!(retry_after, *documents_retry_after, "{what}: Retry-After");
            for field in ["type", "title", "status", "detail", "errors"] {
                assert_eq!(body[field], example[field], "{what}: {field}");
            }
        };
    let mut documented = documented_problems(&committed());
    for (op, error) in &own {
        let (slug, status, retry_after, body) = rendered(error).await;
        let entry = documented
            .remove(&((*op).to_owned(), slug.clone()))
            .unwrap_or_else(|| panic!("{op} {slug}: not documented"));
        check(&format!("{op} {slug}"), (status, retry_after, &body), &entry);
    }
    for error in &general {
        let (slug, status, retry_after, body) = rendered(error).await;
        let here: Vec<_> = documented.keys().filter(|(_, s)| *s == slug).cloned().collect();
        assert!(!here.is_empty(), "{slug}: no example in the document");
        for key in here {
            let entry = documented.remove(&key).unwrap();
            check(&format!("{} {slug}", key.0), (status, retry_after, &body), &entry);
        }
    }
    assert!(
        documented.is_empty(),
        "examples no error renders: {:?}",
        documented.keys()
    );
}

#[test]
fn every_operation_given_errors_is_an_operation_of_the_document() {
    let doc = committed();
    let ids: BTreeSet<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|ops| ops.as_object().unwrap().values())
        .filter_map(|op| op["operationId"].as_str())
        .collect();
    for (name, _) in cc_connection::routes::OPERATION_ERRORS {
        assert!(
            ids.contains(name),
            "OPERATION_ERRORS names {name}, which is no operation"
        );
    }
}
