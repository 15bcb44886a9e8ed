//! `spawn_app`: the real application on port 0, against the development IMS on port 0 and a fresh
//! database, reached over HTTP with reqwest.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cc_connection::config::{Config, ImsEndpoint};
use cc_connection::dev_ims::{DevIms, TokenSpec, world};
use cc_connection::domain::{OrgId, TenantId};
use cc_connection::startup::{Application, open_store};
use cc_connection::state::AppState;
use cc_connection::store::{DbOptions, Store};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;

use crate::common::db::{self, Backend, TestDb};

pub const TENANT: &str = "acme-prod";

/// A running application and everything a test needs to talk to it.
pub struct TestApp {
    pub address: String,
    /// The ops listener's base URL, when the test set `ops_listen`.
    pub ops_address: Option<String>,
    pub ims: Arc<DevIms>,
    pub client: reqwest::Client,
    pub backend: Backend,
    pub config: Config,
    pub db: Arc<TestDb>,
    pub state: AppState,
}

/// Test configuration: the development defaults pointed at this test's IMS and database.
pub fn test_config(ims: &DevIms, db_url: &str) -> Config {
    let mut config = cc_connection::cli::dev_defaults();
    config.database_url = Some(db_url.to_owned());
    config.listen = ([127, 0, 0, 1], 0).into();
    config.ims_url = ImsEndpoint::Url(ims.url().parse().unwrap());
    config.ims_cert_url = Some(ims.cert_base_url().parse().unwrap());
    config.ims_timeout_ms = 1_000;
    // The load tests switch as one administrator far past a person's pace; the limiter's own tests
    // (ims_guard.rs) set the limits they test.
    config.ims_rate_per_minute = 1_000_000;
    config.ims_rate_burst = 100_000;
    config
}

/// Starts the app with the demo tenant registered.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Starts the app after `tweak` adjusted its configuration.
pub async fn spawn_app_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
    init_test_log();
    let ims = Arc::new(
        DevIms::start("127.0.0.1:0")
            .await
            .expect("development IMS starts"),
    );
    let db = Arc::new(db::fresh(backend).await);
    let mut config = test_config(&ims, &db.url);
    tweak(&mut config);
    let store = open_store(&config).await.expect("store opens");
    add_demo_tenant(&store).await;
    let app = Application::build_with_store(config.clone(), store)
        .await
        .expect("app builds");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    TestApp::run(app, ims, client, backend, config, db).await
}

/// Another replica on the same database and IMS (for the concurrency tests).
pub async fn spawn_replica(of: &TestApp) -> TestApp {
    let config = of.config.clone();
    let app = Application::build(config.clone()).await.expect("replica builds");
    let (ims, client, db) = (of.ims.clone(), of.client.clone(), of.db.clone());
    TestApp::run(app, ims, client, of.backend, config, db).await
}

/// Registers the demo tenant `TENANT`: home org Acme, administered by the Acme admin group.
pub async fn add_demo_tenant(store: &Store) {
    store
        .add_tenant(
            &TenantId::parse(TENANT).unwrap(),
            &OrgId::parse(world::ACME_HOME_ORG).unwrap(),
            &[world::ACME_ADMIN_GROUP.to_owned()],
        )
        .await
        .expect("demo tenant added");
}

/// Registers the demo tenant in the database at `url` (migrated by a `serve` already).
pub async fn add_demo_tenant_at(url: &str) {
    let store = Store::connect(url, &DbOptions::default()).await.unwrap();
    add_demo_tenant(&store).await;
    store.close().await;
}

/// Polls `condition` until it holds; fails the test, naming `what`, once `within` has passed.
pub async fn wait_for<F, Fut>(what: &str, within: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !condition().await {
        assert!(Instant::now() < deadline, "waited {within:?} for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `base/readyz` answers 200. Up to 10 s: the first keys load after the development
/// IMS made its RSA keys, which takes seconds on a loaded machine.
pub async fn wait_ready(client: &reqwest::Client, base: &str) {
    let url = format!("{base}/readyz");
    wait_for(
        &format!("{base} to become ready"),
        Duration::from_secs(10),
        || async { client.get(&url).send().await.is_ok_and(|r| r.status() == 200) },
    )
    .await;
}

fn init_test_log() {
    if std::env::var("TEST_LOG").is_ok() {
        cc_connection::telemetry::init(
            cc_connection::config::LogFormat::Pretty,
            cc_connection::config::TraceIncoming::Continue,
        );
    }
}

impl TestApp {
    /// Runs `app` (built from `config` on `db`) in the background; returned once it is ready.
    async fn run(
        app: Application,
        ims: Arc<DevIms>,
        client: reqwest::Client,
        backend: Backend,
        config: Config,
        db: Arc<TestDb>,
    ) -> TestApp {
        let test_app = TestApp {
            address: format!("http://127.0.0.1:{}", app.port()),
            ops_address: app.ops_port().map(|p| format!("http://127.0.0.1:{p}")),
            ims,
            client,
            backend,
            config,
            db,
            state: app.state().clone(),
        };
        tokio::spawn(app.run_until_stopped());
        wait_ready(&test_app.client, &test_app.address).await;
        test_app
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub fn connection_path(tenant: &str) -> String {
        format!("/tenants/{tenant}/creative-cloud-connection")
    }

    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req
    }

    /// A user token of the UI client with the user scopes (plus the admin scope when `admin`).
    pub fn user_token(&self, user: &str, admin: bool) -> String {
        let mut scopes: Vec<&str> = world::USER_SCOPES.to_vec();
        if admin {
            scopes.push(world::ADMIN_SCOPE);
        }
        self.ims.mint(&TokenSpec::user(user, world::UI_CLIENT, &scopes))
    }

    /// A person's own token of the Express integration client, with the read scope: not a service
    /// token, so it carries no integration rights.
    pub fn integration_user_token(&self, user: &str) -> String {
        self.ims.mint(&TokenSpec::user(
            user,
            world::INTEGRATION_CLIENT,
            &["AdobeID", "openid", "read_organizations", world::READ_SCOPE],
        ))
    }

    pub fn admin_token(&self) -> String {
        admin_token(&self.ims)
    }

    /// A service token of `client` with `scopes`.
    pub fn service_token(&self, client: &str, scopes: &[&str]) -> String {
        self.ims.mint(&TokenSpec::service(client, scopes))
    }

    pub fn integration_token(&self) -> String {
        integration_token(&self.ims)
    }

    /// Sends `method` to `path`, with `token` as the bearer when given.
    pub async fn call(&self, method: Method, path: &str, token: Option<&str>) -> Response {
        self.request(method, path, token).send().await.unwrap()
    }

    /// `GET /users/me/orgs`.
    pub async fn list_orgs(&self, token: &str) -> Response {
        self.list_orgs_of("me", token).await
    }

    /// `GET /users/<user>/orgs`.
    pub async fn list_orgs_of(&self, user: &str, token: &str) -> Response {
        let path = format!("/users/{user}/orgs");
        self.call(Method::GET, &path, Some(token)).await
    }

    /// `method` on the demo tenant's connection, with `token` as the bearer.
    pub fn connection_request(&self, method: Method, token: &str) -> RequestBuilder {
        self.request(method, &Self::connection_path(TENANT), Some(token))
    }

    /// `GET` the demo tenant's connection with `If-None-Match: <tag>`.
    pub async fn get_connection_if_none_match(&self, token: &str, tag: &str) -> Response {
        let req = self.connection_request(Method::GET, token);
        send(req.header("If-None-Match", tag)).await
    }

    /// The demo tenant's connection as the integration reads it (asserted 200).
    pub async fn connection_json(&self) -> Value {
        let res = self.get_connection(&self.integration_token()).await;
        assert_eq!(res.status(), 200, "the connection reads");
        res.json().await.unwrap()
    }

    /// Asserts the integration reads no connection of the demo tenant (404 `no-connection`).
    pub async fn assert_no_connection(&self) {
        let res = self.get_connection(&self.integration_token()).await;
        assert_problem(res, 404, "no-connection").await;
    }

    pub async fn get_connection(&self, token: &str) -> Response {
        send(self.connection_request(Method::GET, token)).await
    }

    pub async fn put_connection(&self, token: &str, org_id: &str) -> Response {
        let body = serde_json::json!({ "org_id": org_id });
        send(self.connection_request(Method::PUT, token).json(&body)).await
    }

    /// Switches to `org` and asserts the answer is `status`; returns it for its headers and body.
    pub async fn put_expecting(&self, token: &str, org: &str, status: u16) -> Response {
        let res = self.put_connection(token, org).await;
        assert_eq!(res.status().as_u16(), status, "switch to {org}");
        res
    }

    /// The demo administrator's token, once it has connected the tenant to Acme Creative (201).
    pub async fn connected_by_admin(&self) -> String {
        let admin = self.admin_token();
        self.put_expecting(&admin, world::ACME_CREATIVE_ORG, 201).await;
        admin
    }

    /// Switches to `org` and asserts the answer is the problem `slug` with `status`; returns its body.
    pub async fn put_refused(&self, token: &str, org: &str, status: u16, slug: &str) -> Value {
        assert_problem(self.put_connection(token, org).await, status, slug).await
    }

    /// Switches to `org` with `If-Match: <tag>`.
    pub async fn switch(&self, token: &str, org: &str, if_match: &str) -> Response {
        let body = serde_json::json!({ "org_id": org });
        let req = self.connection_request(Method::PUT, token);
        send(req.header("If-Match", if_match).json(&body)).await
    }

    /// Disconnects with `If-Match: <tag>`.
    pub async fn disconnect(&self, token: &str, if_match: &str) -> Response {
        let req = self.connection_request(Method::DELETE, token);
        send(req.header("If-Match", if_match)).await
    }

    pub async fn delete_connection(&self, token: &str) -> Response {
        send(self.connection_request(Method::DELETE, token)).await
    }

    pub async fn history(&self, token: &str, query: &str) -> Response {
        let path = format!("{}/history{query}", Self::connection_path(TENANT));
        send(self.request(Method::GET, &path, Some(token))).await
    }

    /// The history's entries, newest first, read with the admin token.
    pub async fn history_entries(&self) -> Vec<Value> {
        self.history_json().await["entries"].as_array().unwrap().clone()
    }

    /// This app's `/metrics` text.
    pub async fn metrics(&self) -> String {
        metrics_at(&self.client, &self.address)
            .await
            .expect("/metrics answers")
    }

    /// The history as JSON, read with the admin token.
    pub async fn history_json(&self) -> Value {
        let res = self.history(&self.admin_token(), "?limit=100").await;
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }
}

/// The URL of the demo tenant's connection on the app at `base`.
pub fn connection_url(base: &str) -> String {
    format!("{base}{}", TestApp::connection_path(TENANT))
}

/// Switches the demo tenant on the app at `base` to `org`; asserts it did (200 or 201) and returns
/// the connection it answered.
pub async fn switch_at(client: &reqwest::Client, base: &str, token: &str, org: &str) -> Value {
    let (status, body) = try_switch_at(client, base, token, org).await;
    assert!(matches!(status, 200 | 201), "switch answered {status}: {body}");
    body
}

/// Asks the app at `base` to switch the demo tenant to `org`: the status and the body.
pub async fn try_switch_at(client: &reqwest::Client, base: &str, token: &str, org: &str) -> (u16, Value) {
    let res = client
        .put(connection_url(base))
        .bearer_auth(token)
        .json(&serde_json::json!({ "org_id": org }))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

/// Sends `req`; its answer, whatever the status.
pub async fn send(req: RequestBuilder) -> Response {
    req.send().await.unwrap()
}

/// Sends `req` and reads its answer as JSON.
pub async fn send_json(req: RequestBuilder) -> Value {
    req.send().await.unwrap().json().await.unwrap()
}

/// `base/metrics`, the Prometheus text (`None` if it could not be read).
pub async fn metrics_at(client: &reqwest::Client, base: &str) -> Option<String> {
    client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()
}

/// The value of one series (a name, with its labels as exposed) in a Prometheus text. Metrics are
/// process-wide and the tests share the process: compare values before and after what a test did.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A fresh token of the demo tenant's administrator (federated Alice, UI client, admin scope).
pub fn admin_token(ims: &DevIms) -> String {
    let mut scopes: Vec<&str> = world::USER_SCOPES.to_vec();
    scopes.push(world::ADMIN_SCOPE);
    ims.mint(&TokenSpec::user(
        world::ALICE_FEDERATED,
        world::UI_CLIENT,
        &scopes,
    ))
}

/// A fresh token of the integration client with the read scope.
pub fn integration_token(ims: &DevIms) -> String {
    ims.mint(&TokenSpec::service(
        world::INTEGRATION_CLIENT,
        &[world::READ_SCOPE],
    ))
}

/// Asserts a problem+json response with the given status and slug; returns the body.
pub async fn assert_problem(res: Response, status: u16, slug: &str) -> Value {
    assert_eq!(res.status().as_u16(), status, "status (expected {slug})");
    let content_type = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        content_type.as_deref(),
        Some("application/problem+json"),
        "content type of {slug}"
    );
    let request_id = res
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["type"], format!("/problems/{slug}"), "{body}");
    assert_eq!(body["status"], status);
    assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(body["detail"].as_str().is_some());
    assert_eq!(
        body["instance"].as_str(),
        request_id.as_deref(),
        "instance is the request id"
    );
    body
}

/// The whole history of the demo tenant, newest first, following `next_cursor`.
pub async fn full_history(client: &reqwest::Client, base: &str, token: &str) -> Vec<Value> {
    let mut entries = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}{}/history?limit=100", TestApp::connection_path(TENANT));
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let res = client.get(url).bearer_auth(token).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let page: Value = res.json().await.unwrap();
        entries.extend(page["entries"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return entries,
        }
    }
}

/// Checks a whole history against the switches acknowledged while it was written: one entry per
/// revision, newest first, exactly one active, and each acknowledged `(revision, org)` present.
pub fn assert_history_holds(history: &[Value], acknowledged: &[(i64, String)]) {
    let by_revision: std::collections::BTreeMap<i64, &Value> = history
        .iter()
        .map(|e| (e["revision"].as_i64().unwrap(), e))
        .collect();
    assert_eq!(by_revision.len(), history.len(), "one entry per revision");
    assert!(
        history
            .windows(2)
            .all(|w| w[0]["revision"].as_i64() > w[1]["revision"].as_i64()),
        "the history is in revision order"
    );
    assert_eq!(
        history.iter().filter(|e| e["active"] == true).count(),
        1,
        "exactly one active connection"
    );
    for (revision, org) in acknowledged {
        let entry = by_revision
            .get(revision)
            .unwrap_or_else(|| panic!("acknowledged revision {revision} is in the history"));
        assert_eq!(entry["org_id"], org.as_str(), "revision {revision}");
    }
}
