//! No oracles: a caller who may not act on a tenant learns nothing about it, not whether it is
//! registered, connected, or at which revision, whatever headers they send and whatever is left
//! of their IMS budget (fourth hardening round, items 1 and 2).

use cc_connection::dev_ims::world;
use reqwest::{Method, Response};
use serde_json::Value;

use crate::common::db::Backend;
use crate::each_backend;
use crate::helpers::{TestApp, send, spawn_app, spawn_app_with};

/// A tenant id nobody registered.
const UNKNOWN: &str = "no-such-tenant";

/// What a refused caller sees of an answer: its status, problem type and detail.
async fn seen(res: Response) -> (u16, String, String) {
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    (
        status,
        body["type"].as_str().unwrap_or_default().to_owned(),
        body["detail"].as_str().unwrap_or_default().to_owned(),
    )
}

/// `method` on `tenant`'s connection with `token` and one extra header (a switch carries a body).
async fn write(app: &TestApp, method: Method, tenant: &str, token: &str, header: (&str, &str)) -> Response {
    let mut req = app
        .request(method.clone(), &TestApp::connection_path(tenant), Some(token))
        .header(header.0, header.1);
    if method == Method::PUT {
        req = req.json(&serde_json::json!({ "org_id": world::OTHER_ORG }));
    }
    send(req).await
}

#[tokio::test]
async fn conditional_writes_by_an_admin_of_another_org_are_403_whether_the_tenant_exists_or_not() {
    for backend in crate::common::db::backends() {
        let app = spawn_app(backend).await;
        app.connected_by_admin().await;
        // An administrator of another org, with the admin scope.
        let mallory = app.user_token(world::MALLORY_OTHER_ADMIN, true);
        let headers = [
            ("If-Match", "\"abc\""),
            ("If-Match", "*"),
            ("If-Match", "\"0\""),
            ("If-Match", "\"1\""),
            ("If-Match", "\"2\""),
            ("If-Match", "W/\"1\""),
            ("If-Match", "unquoted"),
            ("If-None-Match", "*"),
            ("If-None-Match", "\"1\""),
        ];
        for method in [Method::PUT, Method::DELETE] {
            for header in headers {
                let registered = seen(write(&app, method.clone(), "acme-prod", &mallory, header).await).await;
                let unknown = seen(write(&app, method.clone(), UNKNOWN, &mallory, header).await).await;
                assert_eq!(
                    registered.1, "/problems/forbidden",
                    "{backend:?} {method} {header:?}: {registered:?}"
                );
                assert_eq!(registered, unknown, "{backend:?} {method} {header:?}");
            }
        }
        // Nothing changed.
        let current = app.connection_json().await;
        assert_eq!(current["org_id"], world::ACME_CREATIVE_ORG);
        assert_eq!(current["revision"], 1);
    }
}

#[tokio::test]
async fn a_spent_ims_budget_answers_alike_for_registered_and_unknown_tenants() {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        (c.ims_rate_per_minute, c.ims_rate_burst) = (1, 1)
    })
    .await;
    // Mallory spends her one request on an org listing.
    let mallory = app.user_token(world::MALLORY_OTHER_ADMIN, true);
    assert_eq!(app.list_orgs(&mallory).await.status(), 200);
    // A fresh token has no cached org list: every read or write of a tenant now needs IMS.
    let fresh = || app.user_token(world::MALLORY_OTHER_ADMIN, true);
    for tenant in ["acme-prod", UNKNOWN] {
        let path = TestApp::connection_path(tenant);
        let reads = [
            send(app.request(Method::GET, &path, Some(&fresh()))).await,
            send(app.request(Method::GET, &format!("{path}/history"), Some(&fresh()))).await,
            write(&app, Method::PUT, tenant, &fresh(), ("If-Match", "\"abc\"")).await,
            write(&app, Method::DELETE, tenant, &fresh(), ("If-Match", "*")).await,
        ];
        for res in reads {
            assert!(res.headers().contains_key("retry-after"), "{tenant}");
            let (status, problem, _) = seen(res).await;
            assert_eq!(
                (status, problem.as_str()),
                (429, "/problems/rate-limited"),
                "{tenant}"
            );
        }
    }
}

#[tokio::test]
async fn a_member_of_another_org_reads_403_alike_for_registered_and_unknown_tenants() {
    each_backend!(|app| {
        app.connected_by_admin().await;
        let mallory = app.user_token(world::MALLORY_OTHER_ADMIN, false);
        for suffix in ["", "/history"] {
            let at = |tenant: &str| format!("{}{suffix}", TestApp::connection_path(tenant));
            let registered = seen(app.call(Method::GET, &at("acme-prod"), Some(&mallory)).await).await;
            let unknown = seen(app.call(Method::GET, &at(UNKNOWN), Some(&mallory)).await).await;
            assert_eq!(registered.0, 403, "{suffix}");
            assert_eq!(registered, unknown, "{suffix}");
        }
    });
}
