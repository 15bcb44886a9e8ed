//! The database's address going silent under the running service: an in-test TCP endpoint in front
//! of PostgreSQL that stops forwarding on the connections it holds without closing them (no FIN,
//! no RST: what a client sees when the host behind a floating address dies), while new connections
//! reach the database again (the address moved). The sessions behind the silenced connections are
//! ended on the server, as a dead host's would be.
//!
//! The last test is a failover: a primary and a synchronous standby made with the machine's
//! initdb/pg_basebackup, two `serve` processes under switches and reads through the endpoint, the
//! primary killed and the standby promoted twice: once with its connections closed, once with them
//! gone silent. It prints the unavailability per replica, the connections the endpoint accepted
//! and the replicas' log lines (`--nocapture`).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cc_connection::dev_ims::world;
use cc_connection_testkit::postgres::{self, Cluster};
use sea_orm::{ConnectionTrait, TransactionTrait};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

use crate::common::db::{self, Backend};
use crate::helpers::{
    TENANT, TestApp, assert_problem, connection_url, send, spawn_app_with, try_switch_at, wait_for,
};

/// Statement timeout of the apps here; our bound on a statement is this plus half a second.
const STATEMENT_TIMEOUT_MS: u64 = 1_000;
/// How long the change listener may go without its heartbeat.
const LISTENER_TIMEOUT_MS: u64 = 1_500;

/// A TCP endpoint forwarding to `target` that can go silent.
struct Endpoint {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    /// Where new connections go (`None`: the one given at start).
    target: Mutex<Option<SocketAddr>>,
    /// Connections accepted so far.
    accepted: AtomicU64,
    /// Connections accepted under an older generation forward nothing more.
    generation: AtomicU64,
    /// Go silent right after forwarding the next `COMMIT` a client sends.
    silence_on_commit: AtomicBool,
    /// Halves of silenced connections, kept open (never closed: no FIN) while the endpoint lives.
    held: Mutex<Vec<(OwnedReadHalf, OwnedWriteHalf)>>,
}

impl Endpoint {
    async fn start(target: SocketAddr) -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let s = Arc::downgrade(&shared);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Some(shared) = s.upgrade() else { return };
                shared.accepted.fetch_add(1, Ordering::SeqCst);
                let to = shared.target.lock().unwrap().unwrap_or(target);
                let Ok(server) = TcpStream::connect(to).await else {
                    continue;
                };
                let generation = shared.generation.load(Ordering::SeqCst);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, shared.clone(), generation, true));
                tokio::spawn(pump(sr, cw, shared, generation, false));
            }
        });
        Endpoint { addr, shared }
    }

    /// New connections go to `to` (the address moved to a new primary).
    fn retarget(&self, to: SocketAddr) {
        *self.shared.target.lock().unwrap() = Some(to);
    }

    /// Every connection open now stops forwarding, in both directions, and stays open.
    fn silence(&self) {
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
    }
}

async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    shared: Arc<Shared>,
    generation: u64,
    to_server: bool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf).await.unwrap_or(0);
        let data = &buf[..n];
        if to_server && shared.silence_on_commit.load(Ordering::SeqCst) && contains(data, b"COMMIT") {
            shared.silence_on_commit.store(false, Ordering::SeqCst);
            shared.generation.fetch_add(1, Ordering::SeqCst);
            // The commit reaches the database; its answer never comes back.
            let _ = to.write_all(data).await;
        } else if shared.generation.load(Ordering::SeqCst) == generation {
            if n == 0 || to.write_all(data).await.is_err() {
                // An end while forwarding is passed on (the write half closes on drop).
                return;
            }
            continue;
        }
        // Silenced: hold both halves open, forward nothing.
        shared.held.lock().unwrap().push((from, to));
        return;
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// An app on a fresh PostgreSQL database reached through a new [`Endpoint`], and a direct
/// connection to that database (outside the endpoint) for the test's own statements.
async fn app_behind_endpoint() -> (TestApp, Endpoint, sea_orm::DatabaseConnection) {
    db::require_postgres();
    let admin_url = std::env::var("TEST_DATABASE_URL").unwrap();
    let target = host_port(&admin_url);
    let target_addr: SocketAddr = tokio::net::lookup_host(&target).await.unwrap().next().unwrap();
    let endpoint = Endpoint::start(target_addr).await;
    let through = endpoint.addr.to_string();
    let app = spawn_app_with(Backend::Postgres, |c| {
        let direct = c.database_url.take().unwrap();
        // Every statement's text on the wire (no prepared-statement cache), so the endpoint can
        // tell a COMMIT; no TLS in front of it.
        c.database_url = Some(format!(
            "{}?sslmode=disable&statement-cache-capacity=0",
            direct.replacen(&target, &through, 1)
        ));
        c.db_statement_timeout_ms = STATEMENT_TIMEOUT_MS;
        c.db_connect_timeout_ms = 1_000;
        c.db_listener_timeout_ms = LISTENER_TIMEOUT_MS;
        // One read query at a time: a slot kept by a read that never ends would stop every read.
        c.db_read_batches_in_flight = 1;
    })
    .await;
    let direct = sea_orm::Database::connect(format!("{}?application_name={DIRECT}", app.db.url))
        .await
        .unwrap();
    (app, endpoint, direct)
}

/// `host:port` of a `postgres://user@host:port/db` URL.
fn host_port(url: &str) -> String {
    let rest = url.split_once("://").unwrap().1;
    let authority = rest.split('/').next().unwrap();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    }
}

/// `application_name` of the test's own sessions, which go around the endpoint.
const DIRECT: &str = "ccc-test-direct";

/// Ends, on the server, every session of the app's database but the test's own: what the death of the
/// host under the silenced connections does to them.
async fn end_sessions_behind(direct: &sea_orm::DatabaseConnection) {
    direct
        .execute_unprepared(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name <> 'ccc-test-direct'",
        )
        .await
        .unwrap();
}

/// Waits until a session of the app waits on a lock on the server.
async fn until_waiting_on_a_lock(direct: &sea_orm::DatabaseConnection, sessions: i64) {
    wait_for(
        "the requests to wait on the lock",
        Duration::from_secs(5),
        || async {
            let row = direct
                .query_one_raw(sea_orm::Statement::from_string(
                    sea_orm::DbBackend::Postgres,
                    "SELECT count(*) AS n FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                ))
                .await
                .unwrap()
                .unwrap();
            row.try_get::<i64>("", "n").unwrap() >= sessions
        },
    )
    .await;
}

/// The demo tenant's ETag, read once the service finds the database (503 until then).
async fn etag_of(app: &TestApp) -> String {
    let since = Instant::now();
    loop {
        let res = app.get_connection(&app.integration_token()).await;
        if res.status() == 200 {
            return res.headers()["etag"].to_str().unwrap().to_owned();
        }
        assert_eq!(res.status(), 503, "a read answers or is 503");
        assert!(
            since.elapsed() < Duration::from_secs(15),
            "the database was not found again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts a watch of the demo tenant from `etag`, answered as (status, body, when).
fn watch(app: &TestApp, etag: &str) -> tokio::task::JoinHandle<(u16, Value, Instant)> {
    let req = app
        .request(
            reqwest::Method::GET,
            &format!("{}?wait=30", TestApp::connection_path(TENANT)),
            Some(&app.integration_token()),
        )
        .header("If-None-Match", etag);
    tokio::spawn(async move {
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null), Instant::now())
    })
}

/// Switches until the switch is acknowledged (503s while the database is back but the service
/// has not yet found out are retried); returns when it was.
async fn switch_until_acknowledged(app: &TestApp, org: &str) -> Instant {
    let admin = app.admin_token();
    let since = Instant::now();
    loop {
        let res = app.put_connection(&admin, org).await;
        match res.status().as_u16() {
            200 | 201 => return Instant::now(),
            503 => assert!(
                since.elapsed() < Duration::from_secs(15),
                "the switch never succeeded"
            ),
            other => panic!("switch answered {other}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: set TEST_DATABASE_URL"]
async fn a_silent_database_address_ends_requests_in_flight_and_the_listener_is_replaced() {
    let (app, endpoint, direct) = app_behind_endpoint().await;
    let admin = app.connected_by_admin().await;
    let reader = app.integration_token();
    let before = etag_of(&app).await;
    let held_watch = watch(&app, &before);

    // A switch and a read in flight: both wait on a lock when the address goes silent (the
    // switch on the tenant's row, in its transaction; the read on the connection table).
    let path = TestApp::connection_path(TENANT);
    let lock = direct.begin().await.unwrap();
    lock.execute_unprepared(&format!(
        "SELECT 1 FROM tenant WHERE tenant_id = '{TENANT}' FOR UPDATE"
    ))
    .await
    .unwrap();
    let switch = app
        .request(reqwest::Method::PUT, &path, Some(&admin))
        .json(&serde_json::json!({ "org_id": world::ACME_DESIGN_ORG }))
        .send();
    let switch = tokio::spawn(async move { switch.await.unwrap() });
    until_waiting_on_a_lock(&direct, 1).await;
    lock.execute_unprepared("LOCK TABLE connection IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let read = app.request(reqwest::Method::GET, &path, Some(&reader)).send();
    let read = tokio::spawn(async move { read.await.unwrap() });
    until_waiting_on_a_lock(&direct, 2).await;

    let silent = Instant::now();
    endpoint.silence();
    end_sessions_behind(&direct).await;
    lock.rollback().await.unwrap();

    let bound = Duration::from_millis(STATEMENT_TIMEOUT_MS + 500);
    for (what, answer) in [("read", read), ("switch", switch)] {
        let res = tokio::time::timeout(bound + Duration::from_secs(5), answer)
            .await
            .unwrap_or_else(|_| panic!("the {what} in flight never answered"))
            .unwrap();
        let took = silent.elapsed();
        assert!(
            took < bound + Duration::from_secs(2),
            "the {what} in flight answered {took:?} after the silence; bound {bound:?}"
        );
        assert!(res.headers().contains_key("retry-after"), "{what}");
        assert_problem(res, 503, "database-unavailable").await;
    }

    // The listener notices its silence within its bound and is replaced through the address.
    let watchers = app.state.watchers.clone();
    wait_for(
        "the silent listener to be noticed",
        Duration::from_millis(LISTENER_TIMEOUT_MS) + Duration::from_secs(2),
        || {
            let w = watchers.clone();
            async move { !w.is_live() }
        },
    )
    .await;
    wait_for("a new listener", Duration::from_secs(10), || {
        let w = watchers.clone();
        async move { w.is_live() }
    })
    .await;
    let listeners: i64 = direct
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!(
                "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() \
                 AND application_name = '{}'",
                cc_connection::watch::LISTENER_APPLICATION_NAME
            ),
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "n")
        .unwrap();
    assert_eq!(listeners, 1, "the new listener is connected");

    // A watch started now is woken by the first switch, through the new listener.
    let after = etag_of(&app).await;
    assert_eq!(after, before, "the switch in flight was not made");
    let new_watch = watch(&app, &after);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let acknowledged = switch_until_acknowledged(&app, world::ACME_DESIGN_ORG).await;
    for (which, w) in [
        ("held over the silence", held_watch),
        ("started after it", new_watch),
    ] {
        let (status, body, at) = w.await.unwrap();
        assert_eq!(status, 200, "the watch {which} answered the switch");
        assert_eq!(body["org_id"], world::ACME_DESIGN_ORG, "{which}");
        assert!(
            at.saturating_duration_since(acknowledged) < Duration::from_secs(2),
            "the watch {which} was woken by the switch, not its deadline"
        );
    }
    // Reads go on: no read-query slot was kept by the read that never got its answer.
    assert_eq!(app.get_connection(&reader).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: set TEST_DATABASE_URL"]
async fn a_commit_whose_answer_never_comes_is_503_outcome_unknown_and_repeating_it_is_safe() {
    let (app, endpoint, direct) = app_behind_endpoint().await;
    let admin = app.connected_by_admin().await;

    endpoint.shared.silence_on_commit.store(true, Ordering::SeqCst);
    let sent = Instant::now();
    let res = tokio::time::timeout(
        Duration::from_secs(10),
        app.put_connection(&admin, world::ACME_DESIGN_ORG),
    )
    .await
    .expect("the switch whose commit went unanswered answered");
    let took = sent.elapsed();
    assert_eq!(res.status(), 503, "took {took:?}: {:?}", res.text().await);
    assert!(
        took < Duration::from_millis(STATEMENT_TIMEOUT_MS + 500) + Duration::from_secs(2),
        "the switch answered after {took:?}"
    );
    assert!(res.headers().contains_key("retry-after"));
    let problem = assert_problem(res, 503, "database-unavailable").await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("may or may not"),
        "the outcome is said to be unknown: {detail}"
    );
    end_sessions_behind(&direct).await;

    // It was made (the commit reached the database); the same switch again changes nothing.
    let admin_token = app.admin_token();
    let since = Instant::now();
    loop {
        let res = app.put_connection(&admin_token, world::ACME_DESIGN_ORG).await;
        if res.status() == 200 {
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["org_id"], world::ACME_DESIGN_ORG);
            assert_eq!(body["revision"], 2, "the repeated switch made no new revision");
            break;
        }
        assert_eq!(res.status(), 503, "until the service finds the database again");
        assert!(
            since.elapsed() < Duration::from_secs(15),
            "the database was not found again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let history = app.history_entries().await;
    assert_eq!(history.len(), 2, "one switch made, not two: {history:?}");
}

/// A server of the failover (on the machine's binaries, in a folder and on a port of its own):
/// standbys can stream from it, and its commits wait for a synchronous standby once required.
fn node(bin: &Path) -> Cluster {
    // wal_log_hints, wal_keep_size: a failed primary can be rewound to follow the one promoted in
    // its place (its WAL back to the last checkpoint before they parted is kept).
    Cluster::new(bin, "ccc-ha-").with_options(
        "-c wal_level=replica -c synchronous_commit=on -c wal_log_hints=on -c wal_keep_size=128MB",
    )
}

/// The URL of `node`'s `postgres` database for the test's own sessions.
fn direct_url(node: &Cluster) -> String {
    format!("{}?application_name={DIRECT}", node.url())
}

/// Makes every commit wait for a synchronous standby, and waits until one is in sync.
async fn require_sync_standby(node: &Cluster) {
    let db = sea_orm::Database::connect(direct_url(node)).await.unwrap();
    db.execute_unprepared("ALTER SYSTEM SET synchronous_standby_names = '*'")
        .await
        .unwrap();
    db.execute_unprepared("SELECT pg_reload_conf()").await.unwrap();
    wait_for("a synchronous standby", Duration::from_secs(20), || async {
        db.query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT count(*) AS n FROM pg_stat_replication WHERE sync_state = 'sync'",
        ))
        .await
        .ok()
        .flatten()
        .is_some_and(|r| r.try_get::<i64>("", "n").unwrap() == 1)
    })
    .await;
    db.close().await.unwrap();
}

/// One answer of the load: when sent and answered, status, revision (of a 2xx), org, and whether
/// an error was a 503 problem with `Retry-After`.
#[derive(Debug, Clone)]
struct Answer {
    replica: usize,
    switch: bool,
    sent: Instant,
    at: Instant,
    status: u16,
    revision: Option<i64>,
    org: Option<String>,
    proper_503: bool,
}

async fn load(
    base: String,
    replica: usize,
    switch: bool,
    token: String,
    stop: Arc<AtomicBool>,
) -> Vec<Answer> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let url = connection_url(&base);
    let orgs = [world::ACME_CREATIVE_ORG, world::ACME_DESIGN_ORG];
    let mut answers = Vec::new();
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let req = if switch {
            client
                .put(&url)
                .json(&serde_json::json!({ "org_id": orgs[n % 2] }))
        } else {
            client.get(&url)
        };
        let sent = Instant::now();
        let res = req
            .bearer_auth(&token)
            .send()
            .await
            .expect("every request is answered");
        let status = res.status().as_u16();
        let retry_after = res.headers().contains_key("retry-after");
        let body: Value = res.json().await.unwrap_or(Value::Null);
        answers.push(Answer {
            replica,
            switch,
            sent,
            at: Instant::now(),
            status,
            revision: body["revision"].as_i64().filter(|_| status < 300),
            org: body["org_id"].as_str().map(str::to_owned),
            proper_503: status == 503 && retry_after && body["type"] == "/problems/database-unavailable",
        });
        tokio::time::sleep(Duration::from_millis(if switch { 40 } else { 15 })).await;
    }
    answers
}

/// When each replica answered a switch again after `since`.
fn recovered_at(answers: &[Answer], replica: usize, since: Instant) -> Option<Instant> {
    answers
        .iter()
        .filter(|a| a.replica == replica && a.switch && a.sent > since && a.revision.is_some())
        .map(|a| a.at)
        .min()
}

/// What every failover test asserts of the answers of its load and the history on the last
/// primary: every answer is a success (a read before the first switch: 404 `no-connection`) or 503
/// `database-unavailable` with `Retry-After` (none went unanswered: the load fails on a request
/// left without an answer for 15 s); the history holds every acknowledged switch; and no read is
/// older than a switch acknowledged before it was sent. Returns the acknowledged switches.
fn assert_nothing_lost(answers: &[Answer], history: &[Value]) -> Vec<(i64, String)> {
    for a in answers {
        assert!(
            a.status < 300 || a.proper_503 || (!a.switch && a.status == 404),
            "an answer is a success or 503 database-unavailable with Retry-After: {a:?}"
        );
    }
    // A switch to the org already active answers with the revision it was made at.
    let mut acked: Vec<(i64, String)> = answers
        .iter()
        .filter(|a| a.switch)
        .filter_map(|a| Some((a.revision?, a.org.clone()?)))
        .filter(|(_, org)| !org.is_empty())
        .collect();
    acked.sort();
    acked.dedup();
    crate::helpers::assert_history_holds(history, &acked);
    for read in answers.iter().filter(|a| !a.switch && a.revision.is_some()) {
        let newest_before = answers
            .iter()
            .filter(|s| s.switch && s.at < read.sent)
            .filter_map(|s| s.revision)
            .max();
        assert!(
            newest_before.is_none_or(|r| read.revision.unwrap() >= r),
            "a read older than a switch acknowledged before it was sent: {read:?}"
        );
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: set TEST_DATABASE_URL"]
async fn failover_to_a_synchronous_standby_loses_no_acknowledged_switch_both_ways() {
    db::require_postgres();
    let Some(bin) = postgres::server_bin_or_skip(&["initdb", "pg_ctl", "pg_basebackup"]) else {
        return;
    };
    let first = node(&bin).primary();
    let second = node(&bin).standby_of(&first);
    require_sync_standby(&first).await;

    let endpoint = Endpoint::start(first.addr()).await;
    let url = format!("postgres://postgres@{}/postgres?sslmode=disable", endpoint.addr);
    let ims = cc_connection::dev_ims::DevIms::start("127.0.0.1:0")
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let spawn = || {
        let mut cmd = crate::process::serve_command(&ims, &url);
        cmd.env("CCC_DB_STATEMENT_TIMEOUT_MS", STATEMENT_TIMEOUT_MS.to_string())
            .env("CCC_DB_CONNECT_TIMEOUT_MS", "1000")
            .env("CCC_DB_LISTENER_TIMEOUT_MS", LISTENER_TIMEOUT_MS.to_string());
        crate::process::ServeProcess::start(&mut cmd)
    };
    let one = spawn();
    one.wait_ready(&client).await;
    crate::helpers::add_demo_tenant_at(&direct_url(&first)).await;
    let two = spawn();
    two.wait_ready(&client).await;
    let replicas = [one, two];
    let admin = crate::helpers::admin_token(&ims);
    let reader = crate::helpers::integration_token(&ims);

    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (i, r) in replicas.iter().enumerate() {
        tasks.push(tokio::spawn(load(
            r.base().to_owned(),
            i,
            true,
            admin.clone(),
            stop.clone(),
        )));
        tasks.push(tokio::spawn(load(
            r.base().to_owned(),
            i,
            false,
            reader.clone(),
            stop.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    // Closed: the primary dies, its connections end; the standby is promoted, the address moves.
    let closed_down = Instant::now();
    let accepted_before = endpoint.shared.accepted.load(Ordering::SeqCst);
    first.kill();
    second.promote();
    endpoint.retarget(second.addr());
    let closed_moved = Instant::now();
    let third = tokio::task::block_in_place(|| node(&bin).standby_of(&second));
    require_sync_standby(&second).await;
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let attempts_closed = endpoint.shared.accepted.load(Ordering::SeqCst) - accepted_before;

    // Silent: every connection to the primary goes silent as it dies; the address moves.
    let silent_down = Instant::now();
    let accepted_before = endpoint.shared.accepted.load(Ordering::SeqCst);
    endpoint.silence();
    second.kill();
    third.promote();
    endpoint.retarget(third.addr());
    let silent_moved = Instant::now();
    let bound = Duration::from_millis(STATEMENT_TIMEOUT_MS + 500);
    tokio::time::sleep(bound + Duration::from_millis(3_000)).await;
    let attempts_silent = endpoint.shared.accepted.load(Ordering::SeqCst) - accepted_before;
    stop.store(true, Ordering::Relaxed);
    let mut answers = Vec::new();
    for t in tasks {
        answers.extend(t.await.unwrap());
    }

    let history = crate::helpers::full_history(&client, replicas[0].base(), &admin).await;
    let acked = assert_nothing_lost(&answers, &history);
    // Unavailability: bounded by the statement bound and a few seconds after the address moved.
    for (way, down, moved) in [
        ("closed", closed_down, closed_moved),
        ("silent", silent_down, silent_moved),
    ] {
        for replica in 0..2 {
            let back = recovered_at(&answers, replica, down)
                .unwrap_or_else(|| panic!("replica {replica} never switched again after the {way} failover"));
            let last_ok = answers
                .iter()
                .filter(|a| a.replica == replica && a.switch && a.revision.is_some() && a.at <= down)
                .map(|a| a.at)
                .max()
                .unwrap();
            eprintln!(
                "{way} failover, replica {replica}: no acknowledged switch for {:?}, back {:?} after the address moved",
                back - last_ok,
                back.saturating_duration_since(moved)
            );
            assert!(
                back.saturating_duration_since(moved) < bound + Duration::from_secs(4),
                "{way}: replica {replica} back {:?} after the address moved",
                back.saturating_duration_since(moved)
            );
        }
    }
    let refused = answers.iter().filter(|a| a.status == 503).count();
    eprintln!(
        "answers: {} ({} switches acknowledged, {refused} refused 503); connections accepted at the endpoint: {attempts_closed} in the closed failover's 2 s after the move, {attempts_silent} in the silent one's {:?}",
        answers.len(),
        acked.len(),
        bound + Duration::from_millis(3_000)
    );

    // Watchers on both replicas are woken by the first switch after recovery; both are ready.
    for r in &replicas {
        crate::helpers::wait_ready(&client, r.base()).await;
    }
    let res = send(
        client
            .get(connection_url(replicas[0].base()))
            .bearer_auth(&reader),
    )
    .await;
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    let org = res.json::<Value>().await.unwrap()["org_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let watches: Vec<_> = replicas
        .iter()
        .map(|r| {
            let req = client
                .get(format!("{}?wait=30", connection_url(r.base())))
                .bearer_auth(&reader)
                .header("If-None-Match", &etag)
                .send();
            tokio::spawn(async move {
                let res = req.await.unwrap();
                (res.status().as_u16(), Instant::now())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let other = if org == world::ACME_CREATIVE_ORG {
        world::ACME_DESIGN_ORG
    } else {
        world::ACME_CREATIVE_ORG
    };
    let (status, _) = try_switch_at(&client, replicas[1].base(), &admin, other).await;
    assert_eq!(status, 200);
    let acknowledged = Instant::now();
    for w in watches {
        let (status, at) = w.await.unwrap();
        assert_eq!(
            status, 200,
            "a watcher is woken by the first switch after recovery"
        );
        assert!(at.saturating_duration_since(acknowledged) < Duration::from_secs(2));
    }
    let [one, two] = replicas;
    for (i, r) in [one, two].into_iter().enumerate() {
        let log = r.kill_and_log();
        let lines = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
        eprintln!(
            "replica {i}: {} log lines in all; 'database unavailable' {}, 'database answering again' {}, 'change listener lost' {}, 'change listener back' {}, ERROR {}",
            log.lines().count(),
            lines("database unavailable;"),
            lines("database answering again"),
            lines("change listener lost"),
            lines("change listener back"),
            lines("\"ERROR\"")
        );
    }
}

/// A `serve` process on `url` with the bounds of this file, against `ims`.
fn failover_replica(ims: &cc_connection::dev_ims::DevIms, url: &str) -> crate::process::ServeProcess {
    let mut cmd = crate::process::serve_command(ims, url);
    cmd.env("CCC_DB_STATEMENT_TIMEOUT_MS", STATEMENT_TIMEOUT_MS.to_string())
        .env("CCC_DB_CONNECT_TIMEOUT_MS", "1000")
        .env("CCC_DB_LISTENER_TIMEOUT_MS", LISTENER_TIMEOUT_MS.to_string());
    crate::process::ServeProcess::start(&mut cmd)
}

/// Item 9 of the fourth hardening round: the synchronous standby stalls while a switch commits. The
/// commit waits for it, so the switch ends at our bound (503, the outcome unknown); meanwhile reads
/// answer the state before it; once the standby is back the switch is there, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: set TEST_DATABASE_URL"]
async fn a_switch_committing_while_the_synchronous_standby_stalls_ends_at_our_bound_and_lands_once() {
    db::require_postgres();
    let Some(bin) = postgres::server_bin_or_skip(&["initdb", "pg_ctl", "pg_basebackup"]) else {
        return;
    };
    let primary = node(&bin).primary();
    let standby = node(&bin).standby_of(&primary);
    require_sync_standby(&primary).await;
    let ims = cc_connection::dev_ims::DevIms::start("127.0.0.1:0")
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let replica = failover_replica(&ims, &primary.url());
    replica.wait_ready(&client).await;
    crate::helpers::add_demo_tenant_at(&direct_url(&primary)).await;
    let admin = crate::helpers::admin_token(&ims);
    let reader = crate::helpers::integration_token(&ims);
    let (status, _) = try_switch_at(&client, replica.base(), &admin, world::ACME_CREATIVE_ORG).await;
    assert_eq!(status, 201);

    // The standby stops answering: every commit on the primary now waits for it.
    standby.stop();
    let sent = Instant::now();
    let (status, body) = tokio::time::timeout(
        Duration::from_secs(15),
        try_switch_at(&client, replica.base(), &admin, world::ACME_DESIGN_ORG),
    )
    .await
    .expect("the switch answered while the standby stalled");
    let took = sent.elapsed();
    eprintln!("switch while the standby stalled: {status} after {took:?}");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["type"], "/problems/database-unavailable", "{body}");
    let bound = Duration::from_millis(STATEMENT_TIMEOUT_MS + 500);
    assert!(took < bound + Duration::from_secs(2), "answered after {took:?}");
    // Not acknowledged by the standby, so not there for anyone yet: reads answer the state before
    // (once the service, which took the unanswered commit for an outage, probed the database).
    let since = Instant::now();
    loop {
        let res = send(client.get(connection_url(replica.base())).bearer_auth(&reader)).await;
        if res.status() == 200 {
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["org_id"], world::ACME_CREATIVE_ORG);
            break;
        }
        assert_eq!(res.status(), 503);
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "reads did not come back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The standby is back: the commit it held lands, and the same switch again changes nothing.
    standby.start();
    let since = Instant::now();
    let body = loop {
        let (status, body) = try_switch_at(&client, replica.base(), &admin, world::ACME_DESIGN_ORG).await;
        if status == 200 {
            break body;
        }
        assert!(
            status == 503 || status == 409,
            "until the commit is released: {status} {body}"
        );
        assert!(
            since.elapsed() < Duration::from_secs(20),
            "the switch never landed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(body["org_id"], world::ACME_DESIGN_ORG);
    assert_eq!(body["revision"], 2, "one switch made, not two: {body}");
    let history = crate::helpers::full_history(&client, replica.base(), &admin).await;
    assert_eq!(history.len(), 2, "{history:?}");
    drop(replica);
}

/// Item 9: the primary fails, its synchronous standby takes over, the old primary is rewound to
/// follow it and, once in sync, takes over again: no acknowledged switch is lost either way, no read
/// is older than a switch acknowledged before it, and each move costs seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: set TEST_DATABASE_URL"]
async fn failing_back_to_the_old_primary_loses_no_acknowledged_switch() {
    db::require_postgres();
    let Some(bin) = postgres::server_bin_or_skip(&["initdb", "pg_ctl", "pg_basebackup", "pg_rewind"]) else {
        return;
    };
    let old = node(&bin).primary();
    let new = node(&bin).standby_of(&old);
    require_sync_standby(&old).await;
    let endpoint = Endpoint::start(old.addr()).await;
    let url = format!("postgres://postgres@{}/postgres?sslmode=disable", endpoint.addr);
    let ims = cc_connection::dev_ims::DevIms::start("127.0.0.1:0")
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let replica = failover_replica(&ims, &url);
    replica.wait_ready(&client).await;
    crate::helpers::add_demo_tenant_at(&direct_url(&old)).await;
    let admin = crate::helpers::admin_token(&ims);
    let reader = crate::helpers::integration_token(&ims);
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = [true, false].map(|switch| {
        let token = if switch { admin.clone() } else { reader.clone() };
        tokio::spawn(load(replica.base().to_owned(), 0, switch, token, stop.clone()))
    });
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    // Over: the old primary dies, the standby is promoted, the address moves.
    let over = Instant::now();
    old.kill();
    new.promote();
    endpoint.retarget(new.addr());
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    // The old primary, rewound, follows the new one; once it is in sync, back: the new primary
    // stops, the old one is promoted again, the address moves back.
    tokio::task::block_in_place(|| old.rewind_to_standby_of(&new));
    require_sync_standby(&new).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let back = Instant::now();
    new.kill();
    old.promote();
    // Alone until a standby is rebuilt for it (the new primary's setting came with the rewind).
    let db = sea_orm::Database::connect(direct_url(&old)).await.unwrap();
    db.execute_unprepared("ALTER SYSTEM RESET synchronous_standby_names")
        .await
        .unwrap();
    db.execute_unprepared("SELECT pg_reload_conf()").await.unwrap();
    db.close().await.unwrap();
    endpoint.retarget(old.addr());
    let moved_back = Instant::now();
    tokio::time::sleep(Duration::from_millis(STATEMENT_TIMEOUT_MS + 500 + 3_000)).await;
    stop.store(true, Ordering::Relaxed);
    let mut answers = Vec::new();
    for t in tasks {
        answers.extend(t.await.unwrap());
    }

    assert!(
        answers
            .iter()
            .any(|a| a.switch && a.revision.is_some() && a.sent > back),
        "switches were acknowledged after the move back"
    );
    let history = crate::helpers::full_history(&client, replica.base(), &admin).await;
    let acked = assert_nothing_lost(&answers, &history);
    let again = recovered_at(&answers, 0, back).expect("switches acknowledged after the move back");
    eprintln!(
        "fail-back: {} switches acknowledged; back {:?} after the address moved back (over at {:?})",
        acked.len(),
        again.saturating_duration_since(moved_back),
        back.saturating_duration_since(over)
    );
    assert!(
        again.saturating_duration_since(moved_back)
            < Duration::from_millis(STATEMENT_TIMEOUT_MS + 500) + Duration::from_secs(4)
    );
    drop(replica);
}
