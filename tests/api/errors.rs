//! actix's own errors and bad input, all as problem+json, and nothing written.

use cc_connection::dev_ims::world;
use reqwest::Method;

use crate::common::db::Backend;
use crate::helpers::{TENANT, TestApp, assert_problem, metric, send, spawn_app};

async fn put_raw(app: &TestApp, body: impl Into<reqwest::Body>, content_type: &str) -> reqwest::Response {
    app.request(
        Method::PUT,
        &TestApp::connection_path(TENANT),
        Some(&app.admin_token()),
    )
    .header("Content-Type", content_type)
    .body(body)
    .send()
    .await
    .unwrap()
}

#[tokio::test]
async fn bad_bodies_get_400_413_415_and_nothing_is_written() {
    let app = spawn_app(Backend::Sqlite).await;
    for body in [
        "{",
        "not json",
        "{\"org_id\": 42}",
        "{\"org_id\": \"nope\"}",
        "{\"org_id\": \"0123456789ABCDEF01234567@AdobeOrg\", \"extra\": 1}",
        "{\"org_id\": \"0123456789ABCDEF01234567@AdobeOrg\", \"org_id\": \"0123456789ABCDEF01234567@AdobeOrg\"}",
        "[]",
        "",
        "{\"org_id\": \"0123456789ABCDEF01234567@AdobeOrg\\u0000\"}",
        "{\"org_id\": \"\\u202e0123456789ABCDEF01234567@AdobeOrg\"}",
    ] {
        let body_text = body.to_owned();
        let problem = assert_problem(
            put_raw(&app, body_text, "application/json").await,
            400,
            "invalid-request",
        )
        .await;
        assert!(
            problem["errors"].as_array().is_some_and(|e| !e.is_empty()),
            "{body}: {problem}"
        );
    }
    let deep = format!("{{\"org_id\":{}{}}}", "[".repeat(5_000), "]".repeat(5_000));
    assert_problem(
        put_raw(&app, deep, "application/json").await,
        400,
        "invalid-request",
    )
    .await;
    assert_problem(
        put_raw(
            &app,
            format!("{{\"org_id\":\"{}\"}}", world::ACME_CREATIVE_ORG),
            "text/plain",
        )
        .await,
        415,
        "unsupported-media-type",
    )
    .await;
    let huge = format!(
        "{{\"org_id\":\"{}\",\"pad\":\"{}\"}}",
        world::ACME_CREATIVE_ORG,
        "x".repeat(1 << 20)
    );
    assert_problem(
        put_raw(&app, huge, "application/json").await,
        413,
        "payload-too-large",
    )
    .await;
    app.assert_no_connection().await;
}

#[tokio::test]
async fn invalid_tenant_ids_get_400() {
    let app = spawn_app(Backend::Sqlite).await;
    let token = app.integration_token();
    for tenant in ["-starts-with-dash", "a%20b", "%C3%A9", &"a".repeat(129)] {
        let res = app
            .call(Method::GET, &TestApp::connection_path(tenant), Some(&token))
            .await;
        assert_problem(res, 400, "invalid-request").await;
    }
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405_with_allow() {
    let app = spawn_app(Backend::Sqlite).await;
    let res = app.call(Method::GET, "/nope", None).await;
    assert_problem(res, 404, "not-found").await;
    let res = app
        .call(Method::POST, &TestApp::connection_path(TENANT), None)
        .await;
    assert_eq!(res.headers()["allow"], "GET, HEAD, PUT, DELETE");
    assert_problem(res, 405, "method-not-allowed").await;
    let res = app.call(Method::DELETE, "/healthz", None).await;
    assert_problem(res, 405, "method-not-allowed").await;
}

#[tokio::test]
async fn a_sane_request_id_is_kept_and_an_insane_one_replaced() {
    let app = spawn_app(Backend::Sqlite).await;
    let res = send(
        app.client
            .get(app.url("/healthz"))
            .header("x-request-id", "trace-123"),
    )
    .await;
    assert_eq!(res.headers()["x-request-id"], "trace-123");
    let res = send(
        app.client
            .get(app.url("/nope"))
            .header("x-request-id", "bad id <script>"),
    )
    .await;
    let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(id, "bad id <script>");
    let body = assert_problem(res, 404, "not-found").await;
    assert_eq!(body["instance"], id);
}

#[tokio::test]
async fn probes_answer_without_a_token() {
    let app = spawn_app(Backend::Sqlite).await;
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ready");
}

/// A counter's value; 0 before anything counted it.
fn sample(text: &str, series: &str) -> f64 {
    metric(text, series).unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_move_with_requests_switches_and_token_cache() {
    let app = spawn_app(Backend::Sqlite).await;
    let before = app.metrics().await;
    app.put_expecting(&app.admin_token(), world::ACME_CREATIVE_ORG, 201)
        .await;
    let token = app.integration_token();
    app.get_connection(&token).await;
    app.get_connection(&token).await;
    let res = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let after = res.text().await.unwrap();
    let get = r#"ccc_http_requests_total{method="GET",route="/tenants/{tenant_id}/creative-cloud-connection",status="200"}"#;
    assert!(sample(&after, get) >= sample(&before, get) + 2.0, "{after}");
    let created = r#"ccc_switches_total{outcome="created"}"#;
    assert!(sample(&after, created) >= sample(&before, created) + 1.0);
    let hits = r#"ccc_token_cache_lookups_total{result="hit"}"#;
    assert!(sample(&after, hits) >= sample(&before, hits) + 1.0);
    assert!(
        after.contains("ccc_ims_call_duration_seconds_count{endpoint=\"/ims/profile/v1\",outcome=\"ok\"}")
    );
    assert!(after.contains("ccc_db_pool_connections{state=\"idle\"}"));
    assert!(sample(&after, r#"ccc_key_cache_lookups_total{result="hit"}"#) >= 1.0);
    // Both reads went through the batcher (queries count too, though reads may share one).
    assert!(sample(&after, "ccc_db_reads_total") >= sample(&before, "ccc_db_reads_total") + 2.0);
    assert!(
        sample(&after, "ccc_db_read_queries_total") >= sample(&before, "ccc_db_read_queries_total") + 1.0
    );
}

#[tokio::test]
async fn refused_requests_leave_the_database_as_it_was() {
    for backend in crate::common::db::backends() {
        let app = spawn_app(backend).await;
        let admin = app.connected_by_admin().await;
        let tenant = cc_connection::domain::TenantId::parse(TENANT).unwrap();
        let snapshot = || async {
            let view = app.state.store.tenant_view(&tenant).await.unwrap().unwrap();
            let history = app.state.store.history(&tenant, 100, None).await.unwrap();
            (view.tenant, view.active, history)
        };
        let before = snapshot().await;
        let path = TestApp::connection_path(TENANT);
        let design = serde_json::json!({"org_id": world::ACME_DESIGN_ORG});
        let attempts = vec![
            app.request(Method::PUT, &path, None).json(&design),
            app.request(Method::PUT, &path, Some("not-a-token")).json(&design),
            app.request(Method::PUT, &path, Some(&app.user_token(world::BOB_MEMBER, true)))
                .json(&design),
            app.request(
                Method::PUT,
                &path,
                Some(&app.user_token(world::MALLORY_OTHER_ADMIN, true)),
            )
            .json(&design),
            app.request(
                Method::PUT,
                &path,
                Some(&app.user_token(world::ALICE_PERSONAL, true)),
            )
            .json(&design),
            app.request(Method::PUT, &path, Some(&app.integration_token()))
                .json(&design),
            app.request(Method::PUT, &path, Some(&admin))
                .json(&serde_json::json!({"org_id": world::OTHER_ORG})),
            app.request(Method::PUT, &path, Some(&admin))
                .header("If-Match", "\"0\"")
                .json(&design),
            app.request(Method::PUT, &path, Some(&admin))
                .header("Content-Type", "application/json")
                .body("{\"org_id\":"),
            app.request(Method::PUT, &path, Some(&admin))
                .header("Content-Type", "text/plain")
                .body("x"),
            app.request(Method::PUT, &path, Some(&admin))
                .json(&serde_json::json!({"org_id": world::ACME_DESIGN_ORG, "active": false})),
            app.request(
                Method::DELETE,
                &path,
                Some(&app.user_token(world::BOB_MEMBER, true)),
            ),
            app.request(Method::DELETE, &path, Some(&admin))
                .header("If-Match", "\"9\""),
            app.request(Method::POST, &path, Some(&admin)).json(&design),
            app.request(
                Method::PUT,
                "/tenants/acme-prod%2F..%2Fother/creative-cloud-connection",
                Some(&admin),
            )
            .json(&design),
        ];
        for attempt in attempts {
            let res = attempt.send().await.unwrap();
            let status = res.status().as_u16();
            assert!(
                (400..500).contains(&status),
                "{backend:?}: refused with a 4xx, got {status}"
            );
        }
        assert_eq!(snapshot().await, before, "{backend:?}: nothing changed");
    }
}

#[tokio::test]
async fn made_up_methods_do_not_grow_the_metrics() {
    let app = spawn_app(Backend::Sqlite).await;
    // The 405s are counted under one label value, whatever the method; no other test sends a
    // made-up method to /healthz, so the series grows by exactly these.
    let other = r#"ccc_http_requests_total{method="other",route="/healthz",status="405"}"#;
    let before = app.metrics().await;
    for i in 0..200 {
        let method = Method::from_bytes(format!("ZQX{i:03}").as_bytes()).unwrap();
        let res = app.request(method, "/healthz", None).send().await.unwrap();
        assert_problem(res, 405, "method-not-allowed").await;
    }
    let after = app.metrics().await;
    assert!(!after.contains("ZQX"), "a made-up method became a label value");
    assert_eq!(sample(&after, other), sample(&before, other) + 200.0, "{after}");
    // Whatever else ran in this process: the method label holds a fixed set of values.
    let methods: std::collections::BTreeSet<&str> = after
        .split("method=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    let allowed = ["DELETE", "GET", "HEAD", "PUT", "other"];
    assert!(methods.iter().all(|m| allowed.contains(m)), "{methods:?}");
}

/// 16 KiB of gzip that inflates to about 16 MiB of zeros.
fn gzip_bomb() -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..16 {
        encoder.write_all(&zeros).unwrap();
    }
    encoder.finish().unwrap()
}

#[tokio::test]
async fn compressed_bodies_are_refused_with_415_before_anything_else() {
    for backend in crate::common::db::backends() {
        let app = spawn_app(backend).await;
        let bomb = gzip_bomb();
        assert!(bomb.len() < 32 * 1024, "{} bytes", bomb.len());
        let path = TestApp::connection_path(TENANT);
        let ims_before = app.ims.faults().requests("/ims/organizations/v6");
        for (token, encoding) in [
            (Some(app.admin_token()), "gzip"),
            (None, "gzip"),
            (Some(app.admin_token()), "identity, deflate"),
            (Some(app.admin_token()), "br"),
        ] {
            let res = send(
                app.request(Method::PUT, &path, token.as_deref())
                    .header("Content-Type", "application/json")
                    .header("Content-Encoding", encoding)
                    .body(bomb.clone()),
            )
            .await;
            assert_eq!(res.headers()["accept-encoding"], "identity");
            assert_problem(res, 415, "unsupported-media-type").await;
        }
        // A small honest switch, compressed, is refused just the same.
        let small = {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            let body = serde_json::json!({"org_id": world::ACME_CREATIVE_ORG}).to_string();
            e.write_all(body.as_bytes()).unwrap();
            e.finish().unwrap()
        };
        let res = send(
            app.request(Method::PUT, &path, Some(&app.admin_token()))
                .header("Content-Type", "application/json")
                .header("Content-Encoding", "gzip")
                .body(small),
        )
        .await;
        assert_problem(res, 415, "unsupported-media-type").await;
        assert_eq!(
            app.ims.faults().requests("/ims/organizations/v6"),
            ims_before,
            "{backend:?}: refused before IMS was asked"
        );
        app.assert_no_connection().await;
        // `identity` is no coding at all: accepted.
        let res = send(
            app.request(Method::PUT, &path, Some(&app.admin_token()))
                .header("Content-Encoding", "identity")
                .json(&serde_json::json!({"org_id": world::ACME_CREATIVE_ORG})),
        )
        .await;
        assert_eq!(res.status(), 201, "{backend:?}");
    }
}

/// Item 10 of the third hardening round: a body that drips in is answered 408 once the configured
/// time has passed, and spends nothing of the caller's IMS budget and asks IMS nothing meanwhile.
#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_408_and_spends_nothing_on_ims() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = crate::helpers::spawn_app_with(Backend::Sqlite, |c| {
        c.request_body_timeout_ms = 300;
        // One IMS-bound request: a slot held by the dripping body would refuse the switch below.
        c.ims_rate_per_minute = 1;
        c.ims_rate_burst = 1;
    })
    .await;
    let admin = app.admin_token();
    let ims_calls = |app: &TestApp| app.ims.faults().requests_under("/ims/");
    let before = ims_calls(&app);
    let mut stream = tokio::net::TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap();
    let head = format!(
        "PUT {} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {admin}\r\n\
         Content-Type: application/json\r\nContent-Length: 60\r\n\r\n{{\"org_id\":",
        TestApp::connection_path(TENANT)
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // The rest of the body never comes: the answer must, bounded here so a hang fails the test.
    let mut answer = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    if String::from_utf8_lossy(&answer).contains("\"instance\"") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer within 10 s to a body that stalled");
    let answer = String::from_utf8_lossy(&answer).to_string();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains("/problems/request-timeout"), "{answer}");
    assert_eq!(ims_calls(&app), before, "IMS was not asked");
    // The budget's one slot is still there.
    app.put_expecting(&admin, world::ACME_CREATIVE_ORG, 201).await;
}
