//! What `serve` writes to its log: one JSON line per request with the request's facts, and never a
//! token or an email.

use cc_connection::dev_ims::{DevIms, world};

use crate::helpers::{admin_token, integration_token};
use crate::process::{ServeProcess, serve_command};

/// `serve` on a fresh SQLite file and a development IMS of its own, logging at `level` (the log is
/// read back with [`ServeProcess::kill_and_log`]).
async fn serve_logging(level: &str) -> (DevIms, tempfile::TempDir, ServeProcess, reqwest::Client) {
    let ims = DevIms::start("127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = serve_command(
        &ims,
        &format!("sqlite://{}/log.db?mode=rwc", dir.path().display()),
    );
    let serve = ServeProcess::start(cmd.env("RUST_LOG", level));
    let client = reqwest::Client::new();
    serve.wait_ready(&client).await;
    (ims, dir, serve, client)
}

#[tokio::test]
async fn serve_logs_one_json_line_per_request_without_tokens_or_emails() {
    let (ims, _dir, serve, client) = serve_logging("debug").await;
    let base = serve.base().to_owned();
    let token = integration_token(&ims);
    let admin = admin_token(&ims);
    let path = "/tenants/acme-prod/creative-cloud-connection";
    client
        .get(format!("{base}{path}"))
        .bearer_auth(&token)
        .header("x-request-id", "log-test-1")
        .send()
        .await
        .unwrap();
    client
        .get(format!("{base}/users/me/orgs"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    client
        .get(format!("{base}{path}"))
        .bearer_auth("forged.token.value")
        .send()
        .await
        .unwrap();
    let log = serve.kill_and_log();

    let lines: Vec<serde_json::Value> = log.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(
        !lines.is_empty() && lines.len() == log.lines().count(),
        "every line is JSON:\n{log}"
    );
    let line = lines
        .iter()
        .find(|l| l["request_id"] == "log-test-1" && l["message"] == "request")
        .unwrap_or_else(|| panic!("request line:\n{log}"));
    assert_eq!(line["method"], "GET");
    assert_eq!(line["route"], "/tenants/{tenant_id}/creative-cloud-connection");
    assert_eq!(
        line["status"], 404,
        "acme-prod is not registered in this database"
    );
    assert_eq!(line["tenant_id"], "acme-prod");
    assert_eq!(line["client_id"], world::INTEGRATION_CLIENT);
    assert!(line["latency_ms"].is_string() || line["latency_ms"].is_number());
    for secret in [
        token.as_str(),
        admin.as_str(),
        "forged.token.value",
        "alice@acme.example",
        "@acme.example",
    ] {
        assert!(!log.contains(secret), "the log holds {secret}");
    }
    // Tokens' signatures never appear even in part.
    let sig = token.rsplit('.').next().unwrap();
    assert!(!log.contains(&sig[..20]));
}

/// Item 11 of the third hardening round: a request that does not parse is counted, not written to
/// the error log (anyone could flood it).
#[tokio::test]
async fn malformed_requests_are_counted_not_logged_as_errors() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_ims, _dir, serve, client) = serve_logging("info").await;
    let base = serve.base().to_owned();
    let series = r#"ccc_http_dropped_connections_total{kind="malformed"}"#;
    for _ in 0..5 {
        let mut stream = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
            .await
            .unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\x01: \x00\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 400"));
    }
    crate::helpers::wait_for(
        "the malformed requests counted",
        std::time::Duration::from_secs(5),
        || async {
            crate::helpers::metrics_at(&client, &base)
                .await
                .and_then(|m| crate::helpers::metric(&m, series))
                .is_some_and(|n| n >= 5.0)
        },
    )
    .await;
    let log = serve.kill_and_log();
    assert!(
        !log.lines().any(|l| l.contains("\"level\":\"ERROR\"")),
        "nothing at ERROR:\n{log}"
    );
}

/// Item 1 of the third hardening round, in the log: tokens naming made-up certificates, answered 503
/// while the download slot is taken, write nothing at ERROR (anyone can send thousands).
#[tokio::test]
async fn deferred_certificate_downloads_are_not_logged_as_errors() {
    let (ims, _dir, serve, client) = serve_logging("info").await;
    let url = format!("{}/tenants/acme-prod/creative-cloud-connection", serve.base());
    let now = chrono::Utc::now().timestamp_millis().to_string();
    let claims = serde_json::json!({
        "type": "access_token", "client_id": world::INTEGRATION_CLIENT, "as": world::REGION,
        "scope": world::READ_SCOPE, "created_at": now, "expires_in": "86400000",
    });
    let requests: Vec<_> = (0..8)
        .map(|i| {
            let name = format!("{}made-up-{i}", cc_connection::dev_ims::CERT_NAME_PREFIX);
            let header = serde_json::json!({"alg": "RS256", "kid": name, "x5u": format!("{name}.cer")});
            let req = client.get(&url).bearer_auth(ims.sign_raw(&header, &claims));
            tokio::spawn(async move { req.send().await.unwrap().status().as_u16() })
        })
        .collect();
    let mut statuses = Vec::new();
    for r in requests {
        statuses.push(r.await.unwrap());
    }
    assert!(statuses.contains(&503), "{statuses:?}");
    let log = serve.kill_and_log();
    assert!(
        !log.lines().any(|l| l.contains("\"level\":\"ERROR\"")),
        "nothing at ERROR:\n{log}"
    );
}
