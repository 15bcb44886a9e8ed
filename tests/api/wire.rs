//! HTTP/1.1 as clients really send it: pipelined, in pieces, with large heads, with bodies after a
//! pause, idle between requests: what any change to how connections are read and written (the
//! framework's or ours) must keep doing, checked on the wire rather than trusted.

use std::time::Duration;

use cc_connection::dev_ims::world;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::db::Backend;
use crate::helpers::{TENANT, TestApp, spawn_app};

/// One response read off a kept-alive connection: status, head, body (by `Content-Length`; every
/// answer of this service has one).
struct Answer {
    status: u16,
    head: String,
    body: String,
}

/// Reads responses off `stream` one at a time, keeping bytes that belong to the next one.
struct Responses {
    stream: TcpStream,
    pending: Vec<u8>,
}

impl Responses {
    async fn connect(app: &TestApp) -> Self {
        let stream = TcpStream::connect(host(app)).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Self {
            stream,
            pending: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        assert!(n > 0, "the connection closed before a whole answer");
        self.pending.extend_from_slice(&chunk[..n]);
    }

    /// The next answer, asserted to have `status` (its head shown otherwise).
    async fn expect(&mut self, status: u16) -> Answer {
        let answer = self.next().await;
        assert_eq!(answer.status, status, "{}", answer.head);
        answer
    }

    async fn next(&mut self) -> Answer {
        let end = loop {
            if let Some(at) = self.pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            self.fill().await;
        };
        let head = String::from_utf8(self.pending[..end].to_vec()).unwrap();
        let length: usize = header(&head, "content-length").map_or(0, |v| v.parse().unwrap());
        while self.pending.len() < end + length {
            self.fill().await;
        }
        let body = String::from_utf8(self.pending[end..end + length].to_vec()).unwrap();
        self.pending.drain(..end + length);
        let status = head[9..12].parse().unwrap();
        Answer { status, head, body }
    }
}

/// An app on SQLite with the demo tenant connected, the integration's token, and a connection to
/// the app.
async fn connected_app() -> (TestApp, String, Responses) {
    let app = spawn_app(Backend::Sqlite).await;
    app.connected_by_admin().await;
    let token = app.integration_token();
    let conn = Responses::connect(&app).await;
    (app, token, conn)
}

fn host(app: &TestApp) -> &str {
    app.address.trim_start_matches("http://")
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// `GET` of the demo tenant's connection with `token`, plus `extra` header lines.
fn get_connection(app: &TestApp, token: &str, extra: &str) -> String {
    format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n{extra}\r\n",
        TestApp::connection_path(TENANT),
        host(app)
    )
}

#[tokio::test]
async fn pipelined_requests_in_one_write_are_answered_in_order() {
    let (app, token, mut conn) = connected_app().await;
    let mut burst = get_connection(&app, &token, "");
    burst.push_str(&get_connection(&app, &token, "If-None-Match: \"1\"\r\n"));
    burst.push_str(&format!(
        "GET /no/such/route HTTP/1.1\r\nHost: {}\r\n\r\n",
        host(&app)
    ));
    burst.push_str(&get_connection(&app, &token, ""));
    conn.send(burst.as_bytes()).await;

    let first = conn.expect(200).await;
    assert!(first.body.contains(world::ACME_CREATIVE_ORG), "{}", first.body);
    conn.expect(304).await;
    let third = conn.expect(404).await;
    assert!(third.body.contains("not-found"), "{}", third.body);
    let fourth = conn.expect(200).await;
    assert_eq!(fourth.body, first.body);
}

#[tokio::test]
async fn a_request_arriving_a_few_bytes_at_a_time_is_answered() {
    let (app, token, mut conn) = connected_app().await;
    let request = get_connection(&app, &token, "");
    for piece in request.as_bytes().chunks(97) {
        conn.send(piece).await;
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let answer = conn.expect(200).await;
    assert!(answer.body.contains(world::ACME_CREATIVE_ORG), "{}", answer.body);
}

#[tokio::test]
async fn a_request_head_larger_than_a_first_read_is_answered() {
    let (app, token, mut conn) = connected_app().await;
    // 20 KiB of headers: more than the first read and than a connection's first buffer.
    let padding: String = (0..20)
        .map(|i| format!("X-Padding-{i}: {}\r\n", "p".repeat(1000)))
        .collect();
    conn.send(get_connection(&app, &token, &padding).as_bytes()).await;
    let answer = conn.expect(200).await;
    // The same connection goes on serving a small request after the large one.
    conn.send(get_connection(&app, &token, "").as_bytes()).await;
    let again = conn.expect(200).await;
    assert_eq!(again.body, answer.body);
}

#[tokio::test]
async fn a_switch_whose_body_comes_after_a_pause_and_in_pieces_is_read_whole() {
    let app = spawn_app(Backend::Sqlite).await;
    let body = format!("{{\"org_id\": \"{}\"}}", world::ACME_CREATIVE_ORG);
    let mut conn = Responses::connect(&app).await;
    let head = format!(
        "PUT {} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        TestApp::connection_path(TENANT),
        host(&app),
        app.admin_token(),
        body.len()
    );
    conn.send(head.as_bytes()).await;
    let (a, b) = body.as_bytes().split_at(9);
    tokio::time::sleep(Duration::from_millis(150)).await;
    conn.send(a).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    conn.send(b).await;
    let answer = conn.next().await;
    assert_eq!(answer.status, 201, "{}\n{}", answer.head, answer.body);
    assert!(answer.body.contains(world::ACME_CREATIVE_ORG), "{}", answer.body);
    assert_eq!(app.get_connection(&app.integration_token()).await.status(), 200);
}

#[tokio::test]
async fn a_kept_alive_connection_answers_again_after_idling_and_after_a_held_watch() {
    let (app, token, mut conn) = connected_app().await;
    conn.send(get_connection(&app, &token, "").as_bytes()).await;
    let first = conn.expect(200).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A watch held for its whole second, then a plain read on the same connection.
    let watch = format!(
        "GET {}?wait=1 HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nIf-None-Match: \"1\"\r\n\r\n",
        TestApp::connection_path(TENANT),
        host(&app)
    );
    conn.send(watch.as_bytes()).await;
    conn.expect(304).await;
    conn.send(get_connection(&app, &token, "").as_bytes()).await;
    let last = conn.expect(200).await;
    assert_eq!(last.body, first.body);
}
