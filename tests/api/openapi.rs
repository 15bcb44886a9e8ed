//! The contract: the committed document is what the code generates and what the service serves.

use std::collections::BTreeSet;

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
        "/healthz",
        "/readyz",
        "/metrics",
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
            if path.starts_with("/tenants") || path.starts_with("/users") {
                assert!(responses.contains_key("401"), "{method} {path} documents 401");
                assert!(op["security"].is_array(), "{method} {path} needs bearer");
            }
        }
    }
}
