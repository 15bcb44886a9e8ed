//! Webhooks: the endpoints' API, and deliveries to real HTTP receivers on port 0 of this test, on
//! both backends; the lease and its takeover after a `serve` process is killed, on PostgreSQL.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use cc_connection::config::Config;
use cc_connection::dev_ims::world;
use cc_connection::webhook::WebhookKey;
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::db::{Backend, backends};
use crate::helpers::{TestApp, assert_problem, metric, send, spawn_app_with, wait_for};

/// How long a test waits for deliveries it expects (they come within milliseconds).
const DELIVERED_WITHIN: Duration = Duration::from_secs(30);

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub raw: Vec<u8>,
    pub body: Value,
}

impl Delivery {
    /// The feed position of the change it carries.
    pub fn position(&self) -> i64 {
        self.body["data"]["position"].as_str().unwrap().parse().unwrap()
    }
}

type Answer = Box<dyn FnMut(&Delivery) -> (u16, Duration) + Send>;

struct ReceiverState {
    got: Mutex<Vec<Delivery>>,
    /// Answers to give, in order; then 204 at once.
    answers: Mutex<VecDeque<(u16, Duration)>>,
    /// Used instead of `answers` when set.
    answer: Mutex<Option<Answer>>,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
}

/// An HTTP receiver on port 0 of this machine that records what it gets.
pub struct Receiver {
    pub url: String,
    state: Arc<ReceiverState>,
}

async fn receive(req: HttpRequest, body: web::Bytes, state: web::Data<Arc<ReceiverState>>) -> HttpResponse {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let delivery = Delivery {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        raw: body.to_vec(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.most_in_flight.fetch_max(now, Ordering::SeqCst);
    let (status, delay) = {
        let mut answer = state.answer.lock().unwrap();
        match answer.as_mut() {
            Some(f) => f(&delivery),
            None => state
                .answers
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or((204, Duration::ZERO)),
        }
    };
    state.got.lock().unwrap().push(delivery);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).body("a receiver's answer")
}

impl Receiver {
    /// A receiver answering 204 at once unless told otherwise.
    pub async fn start() -> Receiver {
        let state = Arc::new(ReceiverState {
            got: Mutex::new(Vec::new()),
            answers: Mutex::new(VecDeque::new()),
            answer: Mutex::new(None),
            in_flight: AtomicUsize::new(0),
            most_in_flight: AtomicUsize::new(0),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let data = web::Data::new(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(receive))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Receiver {
            url: format!("http://127.0.0.1:{port}/hooks"),
            state,
        }
    }

    /// The next answers, in order (then 204 at once).
    pub fn answer_next(&self, answers: &[(u16, Duration)]) {
        self.state.answers.lock().unwrap().extend(answers.iter().copied());
    }

    /// Every answer from now on.
    pub fn answer_with(&self, f: impl FnMut(&Delivery) -> (u16, Duration) + Send + 'static) {
        *self.state.answer.lock().unwrap() = Some(Box::new(f));
    }

    pub fn got(&self) -> Vec<Delivery> {
        self.state.got.lock().unwrap().clone()
    }

    pub fn most_in_flight(&self) -> usize {
        self.state.most_in_flight.load(Ordering::SeqCst)
    }

    /// Waits until it got `n` requests; returns them.
    pub async fn wait_for(&self, n: usize) -> Vec<Delivery> {
        wait_for(&format!("{n} deliveries"), DELIVERED_WITHIN, || {
            let got = self.state.got.lock().unwrap().len();
            async move { got >= n }
        })
        .await;
        self.got()
    }
}

/// Webhooks on, receivers on this machine allowed, and a lease, timeout and retry schedule short
/// enough for a test.
pub fn webhooks_on(c: &mut Config) {
    c.webhook_key = Some(WebhookKey::generate());
    c.webhook_allow_insecure = true;
    c.webhook_allow_private = true;
    c.webhook_lease_ms = 3_000;
    c.webhook_timeout_ms = 1_000;
    c.webhook_retry_schedule_ms = vec![50, 50, 50];
}

fn other_integration(app: &TestApp) -> String {
    app.service_token(world::LIBRARIES_CLIENT, &[world::READ_SCOPE])
}

/// `POST /webhook-endpoints` with `body` as the integration.
async fn create(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    send(
        app.request(Method::POST, "/webhook-endpoints", Some(token))
            .json(&body),
    )
    .await
}

/// Creates an endpoint for `url` (asserted 201): its id and secret.
async fn created(app: &TestApp, url: &str) -> (String, String) {
    let res = create(app, &app.integration_token(), json!({ "url": url })).await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    (
        body["id"].as_str().unwrap().to_owned(),
        body["secret"].as_str().unwrap().to_owned(),
    )
}

async fn call(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> reqwest::Response {
    let mut req = app.request(method, path, Some(&app.integration_token()));
    if let Some(body) = body {
        req = req.json(&body);
    }
    send(req).await
}

async fn show(app: &TestApp, id: &str) -> Value {
    let res = call(app, Method::GET, &format!("/webhook-endpoints/{id}"), None).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// Switches the demo tenant `n` times (alternating orgs); the feed positions of the changes.
async fn switches(app: &TestApp, n: usize) -> Vec<i64> {
    let admin = app.admin_token();
    let mut positions = Vec::new();
    for _ in 0..n {
        let current = app
            .get_connection(&app.integration_token())
            .await
            .json::<Value>()
            .await
            .unwrap();
        let org = if current["org_id"] == world::ACME_CREATIVE_ORG {
            world::ACME_DESIGN_ORG
        } else {
            world::ACME_CREATIVE_ORG
        };
        let res = app.put_connection(&admin, org).await;
        assert!(res.status().is_success(), "switch: {}", res.status());
        positions.push(head(app).await);
    }
    positions
}

/// The feed's head, as the listing says it.
async fn head(app: &TestApp) -> i64 {
    let res = call(app, Method::GET, "/creative-cloud-connections?limit=1", None).await;
    let body: Value = res.json().await.unwrap();
    body["position"].as_str().unwrap().parse().unwrap()
}

/// Checks a delivery's signature entries against `secret`: one of them is its Standard Webhooks
/// signature (HMAC-SHA256 of `id.timestamp.body` under the bytes after `whsec_`).
fn signed_with(d: &Delivery, secret: &str) -> bool {
    let key = B64.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.", d.id, d.timestamp).as_bytes());
    mac.update(&d.raw);
    let expected = format!("v1,{}", B64.encode(mac.finalize().into_bytes()));
    d.signature.split(' ').any(|s| s == expected)
}

async fn for_each_backend(mut test: impl AsyncFnMut(TestApp)) {
    for backend in backends() {
        test(spawn_app_with(backend, webhooks_on).await).await;
    }
}

#[tokio::test]
async fn an_integration_creates_lists_shows_and_deletes_its_own_endpoints_only() {
    for_each_backend(async |app| {
        let receiver = Receiver::start().await;
        switches(&app, 1).await;
        let res = create(&app, &app.integration_token(), json!({ "url": receiver.url })).await;
        assert_eq!(res.status(), 201);
        let location = res.headers()["location"].to_str().unwrap().to_owned();
        let created: Value = res.json().await.unwrap();
        let id = created["id"].as_str().unwrap();
        assert_eq!(location, format!("/webhook-endpoints/{id}"));
        assert!(created["secret"].as_str().unwrap().starts_with("whsec_"));
        assert_eq!(created["status"], "active");
        assert_eq!(
            created["position"],
            head(&app).await.to_string(),
            "from the head by default"
        );

        let shown = show(&app, id).await;
        assert_eq!(shown["url"], receiver.url);
        assert_eq!(shown["pending"], 0);
        assert!(shown.get("secret").is_none(), "the secret is shown once: {shown}");
        let listed: Value = call(&app, Method::GET, "/webhook-endpoints", None)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(listed["endpoints"].as_array().unwrap().len(), 1);
        assert!(listed["endpoints"][0].get("secret").is_none());

        // Another integration neither sees nor touches it.
        let other = other_integration(&app);
        let path = format!("/webhook-endpoints/{id}");
        for (method, path, body) in [
            (Method::GET, path.clone(), None),
            (Method::DELETE, path.clone(), None),
            (Method::POST, format!("{path}/rotate-secret"), None),
            (Method::POST, format!("{path}/enable"), None),
            (
                Method::POST,
                format!("{path}/replay"),
                Some(json!({"after": "0"})),
            ),
        ] {
            let mut req = app.request(method, &path, Some(&other));
            if let Some(body) = body {
                req = req.json(&body);
            }
            assert_problem(send(req).await, 404, "not-found").await;
        }
        let theirs: Value = send(app.request(Method::GET, "/webhook-endpoints", Some(&other)))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(theirs["endpoints"], json!([]));
        // A user is not an integration.
        let user = app.admin_token();
        assert_problem(
            send(app.request(Method::GET, "/webhook-endpoints", Some(&user))).await,
            403,
            "forbidden",
        )
        .await;

        let res = call(&app, Method::DELETE, &path, None).await;
        assert_eq!(res.status(), 204);
        assert_problem(call(&app, Method::GET, &path, None).await, 404, "not-found").await;
    })
    .await;
}

#[tokio::test]
async fn webhook_operations_answer_503_webhooks_unavailable_without_a_key() {
    for backend in backends() {
        let app = spawn_app_with(backend, |c| {
            webhooks_on(c);
            c.webhook_key = None;
        })
        .await;
        let res = create(
            &app,
            &app.integration_token(),
            json!({ "url": "https://hooks.example.com/cc" }),
        )
        .await;
        assert_problem(res, 503, "webhooks-unavailable").await;
        let res = call(&app, Method::GET, "/webhook-endpoints", None).await;
        assert_problem(res, 503, "webhooks-unavailable").await;
    }
}

#[tokio::test]
async fn an_integration_at_its_cap_of_endpoints_gets_409_too_many_endpoints() {
    for backend in backends() {
        let app = spawn_app_with(backend, |c| {
            webhooks_on(c);
            c.webhook_max_endpoints = 2;
        })
        .await;
        let receiver = Receiver::start().await;
        created(&app, &receiver.url).await;
        created(&app, &receiver.url).await;
        let res = create(&app, &app.integration_token(), json!({ "url": receiver.url })).await;
        assert_problem(res, 409, "too-many-endpoints").await;
        // The cap is per integration.
        let res = create(&app, &other_integration(&app), json!({ "url": receiver.url })).await;
        assert_eq!(res.status(), 201);
    }
}

#[tokio::test]
async fn private_metadata_and_insecure_urls_are_refused_unless_allowed() {
    for backend in backends() {
        let app = spawn_app_with(backend, |c| {
            webhooks_on(c);
            c.webhook_allow_insecure = false;
            c.webhook_allow_private = false;
        })
        .await;
        for url in [
            "http://hooks.example.com/cc",
            "http://127.0.0.1:9/cc",
            "https://127.0.0.1/cc",
            "https://10.0.0.7/cc",
            "https://192.168.1.1/cc",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/cc",
            "https://[fd00:ec2::254]/cc",
            "https://[::ffff:10.0.0.1]/cc",
            "https://localhost/cc",
            "ftp://hooks.example.com/cc",
            "not a url",
        ] {
            let res = create(&app, &app.integration_token(), json!({ "url": url })).await;
            assert_problem(res, 400, "invalid-request").await;
        }
        // Insecure allowed: http on loopback only, and loopback still needs the private switch.
        let app = spawn_app_with(backend, |c| {
            webhooks_on(c);
            c.webhook_allow_private = false;
        })
        .await;
        let res = create(
            &app,
            &app.integration_token(),
            json!({ "url": "http://127.0.0.1:9/cc" }),
        )
        .await;
        assert_problem(res, 400, "invalid-request").await;
        let app = spawn_app_with(backend, webhooks_on).await;
        let res = create(
            &app,
            &app.integration_token(),
            json!({ "url": "http://10.0.0.7/cc" }),
        )
        .await;
        assert_problem(res, 400, "invalid-request").await;
        let res = create(
            &app,
            &app.integration_token(),
            json!({ "url": "http://127.0.0.1:9/cc" }),
        )
        .await;
        assert_eq!(res.status(), 201);
    }
}

#[tokio::test]
async fn every_change_is_delivered_in_order_signed_as_standard_webhooks_say() {
    for_each_backend(async |app| {
        let receiver = Receiver::start().await;
        let (id, secret) = created(&app, &receiver.url).await;
        let positions = switches(&app, 4).await;
        let got = receiver.wait_for(4).await;
        assert_eq!(got.iter().map(Delivery::position).collect::<Vec<_>>(), positions);
        for d in &got {
            assert!(signed_with(d, &secret), "signature of {}", d.id);
            assert_eq!(d.id, format!("msg_{}", d.position()));
            assert!(d.timestamp.parse::<i64>().is_ok());
            assert_eq!(d.body["timestamp"], d.body["data"]["at"]);
            let kind = d.body["data"]["kind"].as_str().unwrap();
            assert_eq!(d.body["type"], format!("creative-cloud-connection.{kind}"));
            assert_eq!(d.body["data"]["tenant_id"], "acme-prod");
        }
        assert_eq!(got[0].body["type"], "creative-cloud-connection.connected");
        assert_eq!(got[1].body["type"], "creative-cloud-connection.switched");
        // The change as the feed gives it.
        let feed: Value = call(
            &app,
            Method::GET,
            &format!("/creative-cloud-connections/changes?after={}", positions[0] - 1),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(got[0].body["data"], feed["changes"][0]);
        // The receiver answered before the position was written.
        wait_for("the last delivery to be recorded", DELIVERED_WITHIN, || async {
            let want = positions[3].to_string();
            show(&app, &id).await["position"].as_str() == Some(want.as_str())
        })
        .await;
        let shown = show(&app, &id).await;
        assert_eq!(shown["pending"], 0);
        assert_eq!(shown["last_attempt"]["status_code"], 204);
        let metrics = app.metrics().await;
        assert!(metric(&metrics, "ccc_webhook_deliveries_total{outcome=\"delivered\"}").unwrap() >= 4.0);
    })
    .await;
}

#[tokio::test]
async fn one_delivery_is_in_flight_and_a_failed_one_is_retried_before_the_next() {
    for_each_backend(async |app| {
        let receiver = Receiver::start().await;
        created(&app, &receiver.url).await;
        // The first attempt fails, then every answer is slow.
        receiver.answer_next(&[(500, Duration::ZERO), (200, Duration::from_millis(100))]);
        let positions = switches(&app, 3).await;
        let got = receiver.wait_for(4).await;
        let seen: Vec<i64> = got.iter().map(Delivery::position).collect();
        assert_eq!(seen, [positions[0], positions[0], positions[1], positions[2]]);
        assert_eq!(got[0].id, got[1].id, "the same webhook-id on a retry");
        assert_eq!(receiver.most_in_flight(), 1, "one delivery in flight");
    })
    .await;
}

#[tokio::test]
async fn a_410_disables_the_endpoint_and_enable_resumes_with_nothing_lost() {
    for_each_backend(async |app| {
        let receiver = Receiver::start().await;
        let (id, _) = created(&app, &receiver.url).await;
        receiver.answer_next(&[(410, Duration::ZERO)]);
        let positions = switches(&app, 1).await;
        receiver.wait_for(1).await;
        let path = format!("/webhook-endpoints/{id}");
        wait_for("the endpoint to be disabled", DELIVERED_WITHIN, || async {
            show(&app, &id).await["status"] == "disabled"
        })
        .await;
        let shown = show(&app, &id).await;
        assert!(shown["disabled_reason"].as_str().unwrap().contains("410"));
        assert_eq!(shown["last_attempt"]["status_code"], 410);
        let more = switches(&app, 2).await;
        assert_eq!(show(&app, &id).await["pending"], 3);
        let res = call(&app, Method::POST, &format!("{path}/enable"), None).await;
        assert_eq!(res.status(), 200);
        let got = receiver.wait_for(4).await;
        let seen: Vec<i64> = got.iter().map(Delivery::position).collect();
        assert_eq!(seen, [positions[0], positions[0], more[0], more[1]]);
    })
    .await;
}

#[tokio::test]
async fn the_last_retry_disables_the_endpoint() {
    for_each_backend(async |app| {
        let receiver = Receiver::start().await;
        let (id, _) = created(&app, &receiver.url).await;
        receiver.answer_with(|_| (503, Duration::ZERO));
        switches(&app, 1).await;
        // The first attempt and the schedule's three retries.
        receiver.wait_for(4).await;
        wait_for("the endpoint to be disabled", DELIVERED_WITHIN, || async {
            show(&app, &id).await["status"] == "disabled"
        })
        .await;
        let shown = show(&app, &id).await;
        assert_eq!(shown["failures"], 4);
        assert_eq!(receiver.got().len(), 4, "nothing after it was disabled");
    })
    .await;
}

#[tokio::test]
async fn replay_delivers_the_changes_after_a_position_again_in_order() {
    for_each_backend(async |app| {
        let receiver = Receiver::start().await;
        let (id, _) = created(&app, &receiver.url).await;
        let positions = switches(&app, 3).await;
        let first = receiver.wait_for(3).await;
        let res = call(
            &app,
            Method::POST,
            &format!("/webhook-endpoints/{id}/replay"),
            Some(json!({ "after": positions[0].to_string() })),
        )
        .await;
        assert_eq!(res.status(), 202);
        let got = receiver.wait_for(5).await;
        let seen: Vec<i64> = got.iter().map(Delivery::position).collect();
        assert_eq!(
            seen,
            [
                positions[0],
                positions[1],
                positions[2],
                positions[1],
                positions[2]
            ]
        );
        assert_eq!(got[3].id, first[1].id, "a replayed change keeps its webhook-id");
        // A position beyond the head was never handed out: list again, as the feed says.
        let res = call(
            &app,
            Method::POST,
            &format!("/webhook-endpoints/{id}/replay"),
            Some(json!({ "after": (positions[2] + 1).to_string() })),
        )
        .await;
        assert_problem(res, 410, "unknown-position").await;
    })
    .await;
}

#[tokio::test]
async fn after_a_rotation_deliveries_carry_both_signatures() {
    for_each_backend(async |app| {
        let receiver = Receiver::start().await;
        let (id, old) = created(&app, &receiver.url).await;
        let res = call(
            &app,
            Method::POST,
            &format!("/webhook-endpoints/{id}/rotate-secret"),
            None,
        )
        .await;
        assert_eq!(res.status(), 200);
        let rotated: Value = res.json().await.unwrap();
        let new = rotated["secret"].as_str().unwrap();
        assert_ne!(new, old);
        switches(&app, 1).await;
        let got = receiver.wait_for(1).await;
        assert_eq!(got[0].signature.split(' ').count(), 2);
        assert!(signed_with(&got[0], new));
        assert!(signed_with(&got[0], &old));
    })
    .await;
}

#[tokio::test]
async fn a_slow_endpoint_does_not_delay_another() {
    for_each_backend(async |app| {
        let slow = Receiver::start().await;
        // Never answers within the timeout.
        slow.answer_with(|_| (200, Duration::from_secs(30)));
        let fast = Receiver::start().await;
        created(&app, &slow.url).await;
        created(&app, &fast.url).await;
        let positions = switches(&app, 5).await;
        let got = fast.wait_for(5).await;
        assert_eq!(got.iter().map(Delivery::position).collect::<Vec<_>>(), positions);
        assert!(slow.got().len() <= 2, "the slow one is still on its first change");
    })
    .await;
}

/// Every text of every row of every table, as the database holds it.
async fn every_stored_text(app: &TestApp) -> String {
    use sea_orm::{ConnectionTrait, Statement};
    let db = app.state.store.connection();
    match app.backend {
        Backend::Postgres => {
            let tables = db
                .query_all_raw(Statement::from_string(
                    db.get_database_backend(),
                    "SELECT table_name::text AS t FROM information_schema.tables WHERE table_schema = 'public'",
                ))
                .await
                .unwrap();
            let mut all = String::new();
            for table in tables {
                let name: String = table.try_get("", "t").unwrap();
                let rows = db
                    .query_all_raw(Statement::from_string(
                        db.get_database_backend(),
                        format!("SELECT row_to_json(x)::text AS j FROM \"{name}\" x"),
                    ))
                    .await
                    .unwrap();
                for row in rows {
                    all.push_str(&row.try_get::<String>("", "j").unwrap());
                }
            }
            all
        }
        Backend::Sqlite => {
            // The file and its write-ahead log, byte for byte.
            let path = app
                .db
                .url
                .trim_start_matches("sqlite://")
                .split('?')
                .next()
                .unwrap()
                .to_owned();
            let mut bytes = std::fs::read(&path).unwrap();
            bytes.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
            String::from_utf8_lossy(&bytes).into_owned()
        }
    }
}

#[tokio::test]
async fn no_secret_is_stored_in_the_clear() {
    for_each_backend(async |app| {
        let receiver = Receiver::start().await;
        let (id, secret) = created(&app, &receiver.url).await;
        let res = call(
            &app,
            Method::POST,
            &format!("/webhook-endpoints/{id}/rotate-secret"),
            None,
        )
        .await;
        let rotated: Value = res.json().await.unwrap();
        let stored = every_stored_text(&app).await;
        assert!(stored.contains(&id), "the dump holds the endpoint's row");
        for secret in [secret.as_str(), rotated["secret"].as_str().unwrap()] {
            let encoded = secret.strip_prefix("whsec_").unwrap();
            assert!(!stored.contains(encoded), "a secret is stored in the clear");
        }
    })
    .await;
}

/// PostgreSQL: two `serve` processes; the one delivering is killed (SIGKILL) in the middle of the
/// deliveries; the other takes the endpoint over once its lease runs out, and the receiver gets
/// every change, in order, none skipped (the one in flight may come twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: set TEST_DATABASE_URL"]
async fn a_killed_delivering_replica_is_replaced_within_the_lease_without_skips() {
    use crate::process::{ServeProcess, ims_and_postgres, serve_command};
    let (ims, db) = ims_and_postgres().await;
    let key = WebhookKey::generate().to_base64();
    let start = |url: &str| {
        let mut cmd = serve_command(&ims, url);
        cmd.env("CCC_WEBHOOK_KEY", &key)
            .env("CCC_WEBHOOK_ALLOW_INSECURE", "true")
            .env("CCC_WEBHOOK_ALLOW_PRIVATE", "true")
            .env("CCC_WEBHOOK_LEASE_MS", "3000")
            .env("CCC_WEBHOOK_TIMEOUT_MS", "1000");
        ServeProcess::start(&mut cmd)
    };
    let client = reqwest::Client::new();
    let first = start(&db.url);
    first.wait_ready(&client).await;
    crate::helpers::add_demo_tenant_at(&db.url).await;
    let receiver = Receiver::start().await;
    receiver.answer_with(|_| (204, Duration::from_millis(50)));
    let integration = crate::helpers::integration_token(&ims);
    let res = client
        .post(format!("{}/webhook-endpoints", first.base()))
        .bearer_auth(&integration)
        .json(&json!({ "url": receiver.url }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    // Delivery starts after the feed's head (the demo tenant's registration).
    let created: serde_json::Value = res.json().await.unwrap();
    let start_at: i64 = created["position"].as_str().unwrap().parse().unwrap();
    let admin = crate::helpers::admin_token(&ims);
    let orgs = [world::ACME_CREATIVE_ORG, world::ACME_DESIGN_ORG];
    crate::helpers::switch_at(&client, first.base(), &admin, orgs[0]).await;
    receiver.wait_for(1).await;
    // The first replica holds the endpoint; the second starts beside it.
    let second = start(&db.url);
    second.wait_ready(&client).await;
    for i in 1..10 {
        crate::helpers::switch_at(&client, second.base(), &admin, orgs[i % 2]).await;
    }
    receiver.wait_for(3).await;
    let killed_at = std::time::Instant::now();
    drop(first);
    for i in 10..20 {
        crate::helpers::switch_at(&client, second.base(), &admin, orgs[i % 2]).await;
    }
    let got = receiver.wait_for(20).await;
    wait_for("all 20 changes", DELIVERED_WITHIN, || {
        let n = receiver
            .got()
            .iter()
            .map(Delivery::position)
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        async move { n == 20 }
    })
    .await;
    let got = receiver
        .got()
        .into_iter()
        .chain(got.into_iter().take(0))
        .collect::<Vec<_>>();
    let mut last = start_at;
    for d in &got {
        let p = d.position();
        assert!(
            p <= last + 1,
            "position {p} came after {last}: skipped or out of order"
        );
        assert!(
            p >= last || got.iter().filter(|x| x.position() == p).count() > 1,
            "{p} after {last}"
        );
        last = last.max(p);
    }
    assert_eq!(last, start_at + 20);
    assert!(
        killed_at.elapsed() < Duration::from_secs(25),
        "taken over within the lease and a sweep"
    );
}

#[tokio::test]
async fn operators_list_show_disable_enable_and_replay_endpoints_from_the_command_line() {
    use crate::cli::{fails, json, ok};
    for_each_backend(async |app| {
        let url = app.db.url.clone();
        let receiver = Receiver::start().await;
        let (id, _) = created(&app, &receiver.url).await;
        let listed = json(&url, &["webhook", "list", "--json"]);
        assert_eq!(listed[0]["id"], id.as_str());
        assert_eq!(listed[0]["client_id"], world::INTEGRATION_CLIENT);
        assert!(listed[0].get("secret").is_none());
        let shown = ok(&url, &["webhook", "show", &id]);
        assert!(
            shown.contains(&receiver.url) && shown.contains("active"),
            "{shown}"
        );

        ok(&url, &["webhook", "disable", &id]);
        assert_eq!(show(&app, &id).await["status"], "disabled");
        let positions = switches(&app, 2).await;
        ok(&url, &["webhook", "enable", &id]);
        let got = receiver.wait_for(2).await;
        assert_eq!(got.iter().map(Delivery::position).collect::<Vec<_>>(), positions);
        let after = positions[0].to_string();
        ok(&url, &["webhook", "replay", &id, "--after", &after]);
        let got = receiver.wait_for(3).await;
        assert_eq!(got[2].position(), positions[1]);

        let missing = "ep_00000000000000000000000000000000";
        assert!(fails(&url, &["webhook", "show", missing]).contains("does not exist"));
        assert!(fails(&url, &["webhook", "enable", missing]).contains("does not exist"));

        // The key rotation path: every secret re-encrypted under the new key, which then alone
        // opens them.
        let old = app.config.webhook_key.as_ref().unwrap().to_base64();
        let new = WebhookKey::generate().to_base64();
        let reencrypt = |key: &str, previous: &str| {
            std::process::Command::new(env!("CARGO_BIN_EXE_cc-connection"))
                .args(["webhook", "reencrypt"])
                .env_clear()
                .env("DATABASE_URL", &url)
                .env("CCC_WEBHOOK_KEY", key)
                .env("CCC_WEBHOOK_PREVIOUS_KEYS", previous)
                .output()
                .unwrap()
        };
        let out = reencrypt(&new, "");
        assert!(!out.status.success(), "the new key alone cannot open them yet");
        let out = reencrypt(&new, &old);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("1 endpoint(s) re-encrypted"));
        let out = reencrypt(&new, "");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(
            String::from_utf8_lossy(&out.stdout)
                .starts_with("0 endpoint(s) re-encrypted under the current key, 1 already were")
        );
    })
    .await;
}

#[tokio::test]
async fn the_webhook_endpoints_migration_goes_down_and_up_again() {
    use migration::MigratorTrait;
    use sea_orm::ConnectionTrait;
    for backend in backends() {
        let db = crate::common::db::fresh(backend).await;
        let store =
            cc_connection::store::Store::connect(&db.url, &cc_connection::store::DbOptions::default())
                .await
                .unwrap();
        let conn = store.connection().clone();
        migration::Migrator::up(&conn, None).await.unwrap();
        assert!(
            conn.execute_unprepared("SELECT 1 FROM webhook_endpoint")
                .await
                .is_ok()
        );
        migration::Migrator::down(&conn, Some(1)).await.unwrap();
        assert!(
            conn.execute_unprepared("SELECT 1 FROM webhook_endpoint")
                .await
                .is_err(),
            "{backend:?}: down drops the table"
        );
        assert!(
            conn.execute_unprepared("SELECT 1 FROM change").await.is_ok(),
            "the feed stays"
        );
        migration::Migrator::up(&conn, None).await.unwrap();
        assert!(
            conn.execute_unprepared("SELECT 1 FROM webhook_endpoint")
                .await
                .is_ok()
        );
    }
}
