//! HEAD on every GET route answers like GET, headers only (RFC 9110 9.3.2).

use cc_connection::dev_ims::world;
use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::db::Backend;
use crate::helpers::{TENANT, TestApp, send, spawn_app};

/// Sends `HEAD path` over a bare connection and returns the response head and whatever followed
/// it on the wire (reqwest never reads a HEAD body, so it could not tell).
async fn raw_head(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> (String, Vec<u8>) {
    let addr = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!("HEAD {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).await.unwrap();
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head")
        + 4;
    (
        String::from_utf8_lossy(&bytes[..end]).into_owned(),
        bytes[end..].to_vec(),
    )
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn head_of_the_connection_is_get_without_a_body() {
    let app = spawn_app(Backend::Sqlite).await;
    app.put_expecting(&app.admin_token(), world::ACME_CREATIVE_ORG, 201)
        .await;
    let token = app.integration_token();
    let get = app.get_connection(&token).await;
    let get_length = get.headers()["content-length"].to_str().unwrap().to_owned();
    let path = TestApp::connection_path(TENANT);
    let res = app.call(Method::HEAD, &path, Some(&token)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["etag"], "\"1\"");
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(res.headers()["content-length"], get_length.as_str());
    let auth = format!("Bearer {token}");
    let (head, body) = raw_head(&app, &path, &[("Authorization", &auth)]).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(header(&head, "etag"), Some("\"1\""));
    assert!(
        body.is_empty(),
        "HEAD sent a body: {}",
        String::from_utf8_lossy(&body)
    );
    // The current ETag: 304, as for GET.
    let res = send(
        app.request(Method::HEAD, &path, Some(&token))
            .header("If-None-Match", "\"1\""),
    )
    .await;
    assert_eq!(res.status(), 304);
    assert_eq!(res.headers()["etag"], "\"1\"");
}

#[tokio::test]
async fn head_without_a_token_is_401_with_the_problem_headers_and_no_body() {
    let app = spawn_app(Backend::Sqlite).await;
    let path = TestApp::connection_path(TENANT);
    let res = app.call(Method::HEAD, &path, None).await;
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert_eq!(
        res.headers()["www-authenticate"],
        r#"Bearer error="invalid_token""#
    );
    assert!(res.headers().contains_key("x-request-id"));
    let (head, body) = raw_head(&app, &path, &[]).await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert!(body.is_empty(), "HEAD sent a body");
}

#[tokio::test]
async fn every_get_route_answers_head_like_get() {
    let app = spawn_app(Backend::Sqlite).await;
    let admin = app.admin_token();
    let history = format!("{}/history", TestApp::connection_path(TENANT));
    let routes: [(&str, Option<&str>); 7] = [
        ("/healthz", None),
        ("/readyz", None),
        ("/metrics", None),
        ("/openapi.json", None),
        ("/swagger-ui/", None),
        ("/users/me/orgs", Some(&admin)),
        (&history, Some(&admin)),
    ];
    for (path, token) in routes {
        let get = app.call(Method::GET, path, token).await;
        let res = app.call(Method::HEAD, path, token).await;
        assert_eq!(res.status(), get.status(), "HEAD {path}");
        assert_eq!(
            res.headers().get("content-type"),
            get.headers().get("content-type"),
            "HEAD {path}"
        );
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        let (head, body) = raw_head(&app, path, &headers).await;
        assert!(head.starts_with("HTTP/1.1 200"), "HEAD {path}: {head}");
        assert!(body.is_empty(), "HEAD {path} sent a body");
    }
    // Methods the route does not have are still 405, and Allow names HEAD.
    let res = app.call(Method::DELETE, "/healthz", None).await;
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["allow"], "GET, HEAD");
}

/// HTTP defines HEAD for every GET: the document says so once, and lists no HEAD twins (each became
/// a second method of every generated client).
#[test]
fn the_document_lists_no_head_twins_and_says_every_get_answers_head() {
    let doc: serde_json::Value = serde_json::from_str(&cc_connection::openapi::document_json()).unwrap();
    assert!(
        doc["info"]["description"]
            .as_str()
            .unwrap()
            .contains("Every GET operation also answers HEAD"),
        "the description says it"
    );
    let mut ids = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        assert!(item.get("head").is_none(), "{path} lists a HEAD operation");
        for op in item.as_object().unwrap().values() {
            if let Some(id) = op["operationId"].as_str() {
                assert!(ids.insert(id.to_owned()), "operationId {id} is unique");
            }
        }
    }
}
