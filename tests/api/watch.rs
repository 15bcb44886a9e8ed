//! Watching: `GET ...?wait=` with `If-None-Match` holds the read until a switch or disconnect (on
//! any replica) changes the state, or answers 304 when the wait runs out.

use std::time::{Duration, Instant};

use cc_connection::dev_ims::{DevIms, world};
use reqwest::Method;
use serde_json::Value;

use crate::common::db::{self, Backend};
use crate::each_backend;
use crate::helpers::{
    TENANT, TestApp, add_demo_tenant_at, admin_token, assert_problem, integration_token, metric, metrics_at,
    send, spawn_app_with, switch_at, try_switch_at, wait_for,
};
use crate::process::{LoneReplica, ServeProcess, lone_replica, replicas_on_postgres};

/// What a watcher got: status, ETag, body (JSON or null), and how long it was held.
#[derive(Debug)]
struct Answer {
    status: u16,
    etag: Option<String>,
    body: Value,
    took: Duration,
}

async fn answer(res: reqwest::Response, started: Instant) -> Answer {
    let took = started.elapsed();
    let status = res.status().as_u16();
    let etag = res.headers().get("etag").map(|v| v.to_str().unwrap().to_owned());
    let text = res.text().await.unwrap();
    Answer {
        status,
        etag,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        took,
    }
}

/// Starts a watch of the demo tenant on `base` with `If-None-Match: "<etag>"`.
fn spawn_watch(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    etag: i64,
    wait: u64,
) -> tokio::task::JoinHandle<Answer> {
    let url = format!("{base}{}?wait={wait}", TestApp::connection_path(TENANT));
    let request = client
        .get(url)
        .bearer_auth(token)
        .header("If-None-Match", format!("\"{etag}\""));
    tokio::spawn(async move {
        let started = Instant::now();
        answer(request.send().await.unwrap(), started).await
    })
}

/// Waits until `app` holds `n` watchers (so a change made next must wake them).
async fn until_watching(app: &TestApp, n: usize) {
    until_watchers(app, &format!("{n} watchers to register"), |count| count >= n).await;
}

/// Waits until `app`'s count of watchers satisfies `holds`.
async fn until_watchers(app: &TestApp, what: &str, holds: impl Fn(usize) -> bool) {
    wait_for(what, Duration::from_secs(5), || {
        let count = app.state.watchers.count();
        std::future::ready(holds(count))
    })
    .await;
}

/// Starts a 30 s watch of the demo tenant on `app` and waits until it is its one watcher.
async fn watch_registered(app: &TestApp, token: &str, etag: i64) -> tokio::task::JoinHandle<Answer> {
    let watcher = spawn_watch(&app.client, &app.address, token, etag, 30);
    until_watching(app, 1).await;
    watcher
}

/// Generous: the wake must come well before a 30 s wait would have run out.
const PROMPT: Duration = Duration::from_secs(10);

async fn connect(app: &TestApp, org: &str) -> i64 {
    let res = app.put_connection(&app.admin_token(), org).await;
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert!(status.is_success(), "switch answered {status}: {body}");
    body["revision"].as_i64().unwrap()
}

#[tokio::test]
async fn a_watch_answers_304_with_the_same_etag_when_the_wait_runs_out() {
    each_backend!(|app| {
        let revision = connect(&app, world::ACME_CREATIVE_ORG).await;
        let got = spawn_watch(&app.client, &app.address, &app.integration_token(), revision, 1)
            .await
            .unwrap();
        assert_eq!(got.status, 304, "{got:?}");
        assert_eq!(got.etag, Some(format!("\"{revision}\"")));
        assert!(
            got.took >= Duration::from_millis(900),
            "held for the wait: {got:?}"
        );
        assert!(got.took < Duration::from_secs(5), "not much longer: {got:?}");
        assert_eq!(app.state.watchers.count(), 0, "the watcher left");
        assert_eq!(app.state.watchers.tenants(), 0, "its tenant slot too");
    });
}

#[tokio::test]
async fn a_switch_wakes_the_watcher_at_once_with_the_new_state() {
    each_backend!(|app| {
        let first = connect(&app, world::ACME_CREATIVE_ORG).await;
        let watchers: Vec<_> = (0..3)
            .map(|_| spawn_watch(&app.client, &app.address, &app.integration_token(), first, 30))
            .collect();
        until_watching(&app, 3).await;
        let second = connect(&app, world::ACME_DESIGN_ORG).await;
        for watcher in watchers {
            let got = watcher.await.unwrap();
            assert_eq!(got.status, 200, "{got:?}");
            assert!(got.took < PROMPT, "woken by the switch, not the wait: {got:?}");
            assert_eq!(got.body["org_id"], world::ACME_DESIGN_ORG);
            assert_eq!(got.body["revision"], second);
            assert_eq!(got.etag, Some(format!("\"{second}\"")));
        }
    });
}

#[tokio::test]
async fn a_disconnect_wakes_the_watcher_with_404_no_connection_and_an_etag_to_watch_on() {
    each_backend!(|app| {
        let revision = connect(&app, world::ACME_CREATIVE_ORG).await;
        let watcher = watch_registered(&app, &app.integration_token(), revision).await;
        let res = app.delete_connection(&app.admin_token()).await;
        assert_eq!(res.status(), 204);
        let got = watcher.await.unwrap();
        assert_eq!(got.status, 404, "{got:?}");
        assert!(got.took < PROMPT, "woken by the disconnect: {got:?}");
        assert_eq!(got.body["type"], "/problems/no-connection");
        assert_eq!(
            got.etag,
            Some(format!("\"{}\"", revision + 1)),
            "the tenant's revision, bumped by the disconnect"
        );
    });
}

#[tokio::test]
async fn the_first_connection_wakes_a_watcher_of_a_tenant_without_one() {
    each_backend!(|app| {
        let token = app.integration_token();
        let res = app.get_connection(&token).await;
        let etag = res.headers().get("etag").map(|v| v.to_str().unwrap().to_owned());
        assert_problem(res, 404, "no-connection").await;
        assert_eq!(
            etag.as_deref(),
            Some("\"0\""),
            "a 404 carries the tenant's revision"
        );
        let revision: i64 = etag.unwrap().trim_matches('"').parse().unwrap();

        // Without waiting, the same ETag answers 304 like any current one.
        let res = send(
            app.request(Method::GET, &TestApp::connection_path(TENANT), Some(&token))
                .header("If-None-Match", "\"0\""),
        )
        .await;
        assert_eq!(res.status(), 304);

        let watcher = watch_registered(&app, &token, revision).await;
        let created = connect(&app, world::ACME_CREATIVE_ORG).await;
        let got = watcher.await.unwrap();
        assert_eq!(got.status, 200, "{got:?}");
        assert!(got.took < PROMPT, "woken by the first connection: {got:?}");
        assert_eq!(got.body["org_id"], world::ACME_CREATIVE_ORG);
        assert_eq!(got.body["revision"], created);
    });
}

#[tokio::test]
async fn a_stale_etag_or_no_if_none_match_answers_at_once() {
    each_backend!(|app| {
        let first = connect(&app, world::ACME_CREATIVE_ORG).await;
        let second = connect(&app, world::ACME_DESIGN_ORG).await;
        let got = spawn_watch(&app.client, &app.address, &app.integration_token(), first, 30)
            .await
            .unwrap();
        assert_eq!(got.status, 200, "{got:?}");
        assert_eq!(got.body["revision"], second);
        assert!(got.took < PROMPT, "{got:?}");

        let started = Instant::now();
        let res = app
            .request(
                Method::GET,
                &format!("{}?wait=30", TestApp::connection_path(TENANT)),
                Some(&app.integration_token()),
            )
            .send()
            .await
            .unwrap();
        let got = answer(res, started).await;
        assert_eq!(got.status, 200, "{got:?}");
        assert_eq!(got.body["revision"], second);
        assert!(got.took < PROMPT, "{got:?}");
    });
}

#[tokio::test]
async fn wait_outside_1_to_50_or_not_a_whole_number_is_400_invalid_request() {
    each_backend!(|app| {
        connect(&app, world::ACME_CREATIVE_ORG).await;
        for bad in [
            "0",
            "51",
            "60",
            "61",
            "-1",
            "1.5",
            "abc",
            "",
            "99999999999999999999",
        ] {
            for with_etag in [false, true] {
                let mut req = app.request(
                    Method::GET,
                    &format!("{}?wait={bad}", TestApp::connection_path(TENANT)),
                    Some(&app.integration_token()),
                );
                if with_etag {
                    req = req.header("If-None-Match", "\"1\"");
                }
                let body = assert_problem(req.send().await.unwrap(), 400, "invalid-request").await;
                assert!(
                    body["detail"].as_str().unwrap().contains("wait"),
                    "wait={bad}: {body}"
                );
            }
        }
        // Other query parameters are ignored, as by a plain read.
        let res = app
            .request(
                Method::GET,
                &format!("{}?wait=1&other=x", TestApp::connection_path(TENANT)),
                Some(&app.integration_token()),
            )
            .header("If-None-Match", "\"1\"")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 304);
    });
}

#[tokio::test]
async fn watching_takes_the_rights_of_a_read() {
    each_backend!(|app| {
        let revision = connect(&app, world::ACME_CREATIVE_ORG).await;
        let path = format!("{}?wait=30", TestApp::connection_path(TENANT));
        let etag = format!("\"{revision}\"");
        let res = send(
            app.request(Method::GET, &path, None)
                .header("If-None-Match", &etag),
        )
        .await;
        assert_problem(res, 401, "invalid-token").await;
        // A bad wait does not tell an anonymous caller more than a 401.
        let res = app.call(Method::GET, &path.replace("30", "0"), None).await;
        assert_problem(res, 401, "invalid-token").await;
        let outsider = app.user_token(world::MALLORY_OTHER_ADMIN, false);
        let res = app.get_connection_if_none_match(&outsider, &etag).await;
        assert_problem(res, 403, "forbidden").await;

        // A member of the home org may watch, and is woken like an integration.
        let member = app.user_token(world::BOB_MEMBER, false);
        let watcher = watch_registered(&app, &member, revision).await;
        connect(&app, world::ACME_DESIGN_ORG).await;
        let got = watcher.await.unwrap();
        assert_eq!(got.status, 200, "{got:?}");
        assert_eq!(got.body["org_id"], world::ACME_DESIGN_ORG);
    });
}

#[tokio::test]
async fn beyond_ccc_max_watchers_a_watch_answers_at_once_and_a_gone_client_leaves() {
    for backend in db::backends() {
        let app = spawn_app_with(backend, |c| c.max_watchers = 1).await;
        let revision = connect(&app, world::ACME_CREATIVE_ORG).await;
        let token = app.integration_token();
        let first = watch_registered(&app, &token, revision).await;
        let second = spawn_watch(&app.client, &app.address, &token, revision, 30)
            .await
            .unwrap();
        assert_eq!(second.status, 304, "over the cap: a plain read, {second:?}");
        assert!(second.took < PROMPT, "{second:?}");

        // The client of the first one goes away: its place is free again.
        first.abort();
        until_watchers(&app, "a gone client to leave", |count| count == 0).await;
        assert_eq!(app.state.watchers.count(), 0, "a gone client leaves");
        assert_eq!(app.state.watchers.tenants(), 0);
    }
}

#[tokio::test]
async fn one_caller_or_one_tenant_cannot_take_every_watcher_slot() {
    for backend in db::backends() {
        let app = spawn_app_with(backend, |c| {
            c.max_watchers = 100;
            c.max_watchers_per_caller = 2;
            c.max_watchers_per_tenant = 3;
        })
        .await;
        let revision = connect(&app, world::ACME_CREATIVE_ORG).await;
        let greedy = app.integration_token();
        let held = [
            spawn_watch(&app.client, &app.address, &greedy, revision, 30),
            spawn_watch(&app.client, &app.address, &greedy, revision, 30),
        ];
        until_watching(&app, 2).await;
        let over = spawn_watch(&app.client, &app.address, &greedy, revision, 30)
            .await
            .unwrap();
        assert_eq!(over.status, 304, "over the caller's cap: a plain read, {over:?}");
        assert!(over.took < PROMPT, "{over:?}");

        // Another caller is still held, up to the tenant's cap.
        let alice = spawn_watch(&app.client, &app.address, &app.admin_token(), revision, 30);
        until_watching(&app, 3).await;
        let bob = app.user_token(world::BOB_MEMBER, false);
        let over = spawn_watch(&app.client, &app.address, &bob, revision, 30)
            .await
            .unwrap();
        assert_eq!(over.status, 304, "over the tenant's cap: a plain read, {over:?}");
        assert!(over.took < PROMPT, "{over:?}");

        connect(&app, world::ACME_DESIGN_ORG).await;
        for watcher in held.into_iter().chain([alice]) {
            let got = watcher.await.unwrap();
            assert_eq!(got.status, 200, "a held watch is woken by the switch: {got:?}");
            assert!(got.took < PROMPT, "{got:?}");
        }
    }
}

#[tokio::test]
async fn metrics_show_watchers_and_the_delay_from_commit_to_answer() {
    each_backend!(|app| {
        let revision = connect(&app, world::ACME_CREATIVE_ORG).await;
        // A watcher registers, then reads the tenant; a switch committed before that read answers
        // it at once, without a wake and so without a delay to observe. Its reads are those of a
        // plain GET.
        let reads = || app.state.store.read_stats().1;
        let before_get = reads();
        assert_eq!(app.get_connection(&app.integration_token()).await.status(), 200);
        let reads_of_a_get = reads() - before_get;
        let before_watch = reads();
        let watcher = watch_registered(&app, &app.integration_token(), revision).await;
        wait_for(
            "the watcher to read once registered",
            Duration::from_secs(5),
            || std::future::ready(reads() >= before_watch + reads_of_a_get),
        )
        .await;
        // The delay is known only for a wake that carries its commit time, i.e. through the change
        // feed: on PostgreSQL wait for this app's listener (a re-check wake has no commit time); SQLite
        // has no change feed: there the switch wakes this process's watchers itself.
        if app.backend == Backend::Postgres {
            wait_for("the change feed to be live", Duration::from_secs(5), || {
                std::future::ready(app.state.watchers.is_live())
            })
            .await;
        }
        let metrics = app.metrics().await;
        let watching = metric(&metrics, "ccc_watchers").unwrap();
        assert!(watching >= 1.0, "{metrics}");
        assert_eq!(metric(&metrics, "ccc_watch_delay_seconds_count"), Some(0.0));
        connect(&app, world::ACME_DESIGN_ORG).await;
        assert_eq!(watcher.await.unwrap().status, 200);
        let metrics = app.metrics().await;
        let answered = metric(&metrics, "ccc_watch_delay_seconds_count").unwrap();
        // The application's own count: this watcher alone.
        assert_eq!(answered, 1.0, "{metrics}");
    });
}

async fn metric_of(client: &reqwest::Client, base: &str, name: &str) -> Option<f64> {
    metric(&metrics_at(client, base).await?, name)
}

async fn switch_on(client: &reqwest::Client, base: &str, ims: &DevIms, org: &str) -> i64 {
    let body = switch_at(client, base, &admin_token(ims), org).await;
    body["revision"].as_i64().unwrap()
}

/// `switch_on` while the database refuses new connections: the writer works with the
/// connections its pool holds, and one may still be on its way back to the pool (sqlx pings a
/// connection as it returns it) when the switch needs it, so a 503 `database-unavailable` is
/// retried a few times at a short interval, as a client would after `Retry-After`.
async fn switch_refusing_no_connection(client: &reqwest::Client, base: &str, ims: &DevIms, org: &str) -> i64 {
    for _ in 0..5 {
        let (status, body) = try_switch_at(client, base, &admin_token(ims), org).await;
        match status {
            200 | 201 => return body["revision"].as_i64().unwrap(),
            503 if body["type"] == "/problems/database-unavailable" => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("switch answered {other}: {body}"),
        }
    }
    panic!("the switch answered 503 five times: the writer's pool has no connection left")
}

/// Waits until `base`'s metric `name` is `value`.
async fn until_metric(client: &reqwest::Client, base: &str, name: &str, value: f64) {
    wait_for(
        &format!("{base}: {name} to become {value}"),
        Duration::from_secs(15),
        || async { metric_of(client, base, name).await == Some(value) },
    )
    .await;
}

/// Waits until `base`'s change feed is up (`ccc_watch_feed_up 1`).
async fn until_feed_up(client: &reqwest::Client, base: &str) {
    until_metric(client, base, "ccc_watch_feed_up", 1.0).await;
}

/// Lets new connections into `database`, or refuses them (open ones stay).
async fn allow_connections(database: &str, allow: bool) {
    use sea_orm::{ConnectionTrait, Database};
    let admin = Database::connect(std::env::var("TEST_DATABASE_URL").unwrap())
        .await
        .unwrap();
    admin
        .execute_unprepared(&format!("ALTER DATABASE {database} ALLOW_CONNECTIONS {allow}"))
        .await
        .unwrap();
    admin.close().await.ok();
}

/// Waits until `base` holds `n` watchers (from its metrics).
async fn until_watching_on(client: &reqwest::Client, base: &str, n: usize) {
    wait_for(
        &format!("{base}: {n} watchers to register"),
        Duration::from_secs(10),
        || async { metric_of(client, base, "ccc_watchers").await >= Some(n as f64) },
    )
    .await;
}

/// Waits until every one of `replicas` holds `n` watchers.
async fn until_each_watching(client: &reqwest::Client, replicas: &[ServeProcess], n: usize) {
    for replica in replicas {
        until_watching_on(client, replica.base(), n).await;
    }
}

/// Asserts a watcher was answered 200 with `org` connected.
fn assert_woken_with(got: &Answer, org: &str) {
    assert_eq!(
        (got.status, &got.body["org_id"]),
        (200, &Value::from(org)),
        "{got:?}"
    );
}

/// The `LISTEN` connections of the cc-connection processes on `database`, killed; returns how many.
async fn kill_listeners(database: &str) -> u64 {
    use sea_orm::{ConnectionTrait, Database, Statement};
    let admin_url = std::env::var("TEST_DATABASE_URL").unwrap();
    let admin = Database::connect(&admin_url).await.unwrap();
    let killed = admin
        .query_all_raw(Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity \
             WHERE datname = $1 AND application_name = $2 AND query ILIKE 'LISTEN%'",
            [
                database.into(),
                cc_connection::watch::LISTENER_APPLICATION_NAME.into(),
            ],
        ))
        .await
        .unwrap();
    admin.close().await.ok();
    killed.len() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: set TEST_DATABASE_URL"]
async fn watchers_on_two_replicas_are_woken_by_a_switch_on_a_third_even_with_their_listeners_down() {
    let (ims, db, client, replicas) = replicas_on_postgres(3).await;
    add_demo_tenant_at(&db.url).await;
    let (watched, writer) = (&replicas[..2], &replicas[2]);
    for replica in watched {
        until_feed_up(&client, replica.base()).await;
    }
    let token = integration_token(&ims);

    // 1. Notifications: a switch on the third replica wakes watchers on the other two.
    let mut revision = switch_on(&client, writer.base(), &ims, world::ACME_CREATIVE_ORG).await;
    let orgs = [world::ACME_DESIGN_ORG, world::ACME_CREATIVE_ORG];
    let mut round = 0;
    let mut watch_round = |revision: i64| {
        round += 1;
        watched
            .iter()
            .flat_map(|r| (0..2).map(|_| spawn_watch(&client, r.base(), &token, revision, 30)))
            .collect::<Vec<_>>()
    };
    let watchers = watch_round(revision);
    until_each_watching(&client, watched, 2).await;
    let org = orgs[0];
    revision = switch_on(&client, writer.base(), &ims, org).await;
    for watcher in watchers {
        let got = watcher.await.unwrap();
        assert_woken_with(&got, org);
        assert_eq!(got.body["revision"], revision);
        assert!(
            got.took < Duration::from_secs(2),
            "woken within about a second: {got:?}"
        );
    }

    // 2. The listeners' connections are killed and cannot come back (the database refuses new
    // connections; the pools keep theirs): a switch made meanwhile still reaches every watcher,
    // by the re-checks while the listener is down.
    let watchers = watch_round(revision);
    until_each_watching(&client, watched, 2).await;
    let database = db.url.rsplit('/').next().unwrap().to_owned();
    allow_connections(&database, false).await;
    let killed = kill_listeners(&database).await;
    assert_eq!(killed, 3, "one LISTEN connection per replica");
    for replica in watched {
        until_metric(&client, replica.base(), "ccc_watch_feed_up", 0.0).await;
    }
    let org = orgs[1];
    revision = switch_refusing_no_connection(&client, writer.base(), &ims, org).await;
    for watcher in watchers {
        let got = watcher.await.unwrap();
        assert_woken_with(&got, org);
        assert!(
            got.took < Duration::from_secs(3),
            "reached within about a second: {got:?}"
        );
    }
    for replica in watched {
        let up = metric_of(&client, replica.base(), "ccc_watch_feed_up").await;
        assert_eq!(up, Some(0.0), "{}: the listener was still down", replica.base());
    }
    allow_connections(&database, true).await;

    // 3. The listeners come back, and notifications wake watchers promptly again.
    for replica in watched {
        until_feed_up(&client, replica.base()).await;
        let reconnects = metric_of(&client, replica.base(), "ccc_watch_feed_reconnects_total").await;
        assert!(reconnects >= Some(1.0), "{}: {reconnects:?}", replica.base());
    }
    let watchers = watch_round(revision);
    until_each_watching(&client, watched, 2).await;
    revision = switch_on(&client, writer.base(), &ims, orgs[0]).await;
    for watcher in watchers {
        let got = watcher.await.unwrap();
        assert_eq!(got.body["revision"], revision, "{got:?}");
        assert!(got.took < Duration::from_secs(2), "{got:?}");
    }
    assert_eq!(round, 3);
}

#[tokio::test]
async fn sigterm_answers_every_watcher_304_at_once_and_the_drain_is_not_held_up() {
    let LoneReplica {
        ims,
        replica,
        client,
        dir: _dir,
        ..
    } = lone_replica("watch").await;
    let revision = switch_on(&client, replica.base(), &ims, world::ACME_CREATIVE_ORG).await;
    let token = integration_token(&ims);
    let watchers: Vec<_> = (0..5)
        .map(|_| spawn_watch(&client, replica.base(), &token, revision, 50))
        .collect();
    until_watching_on(&client, replica.base(), 5).await;

    let terminated = Instant::now();
    replica.terminate();
    for watcher in watchers {
        let got = watcher.await.unwrap();
        assert_eq!(got.status, 304, "{got:?}");
        assert_eq!(got.etag, Some(format!("\"{revision}\"")));
    }
    assert!(
        terminated.elapsed() < Duration::from_secs(3),
        "watchers answered at once: {:?}",
        terminated.elapsed()
    );
    replica
        .exits_cleanly_within(
            terminated,
            Duration::from_secs(5),
            "serve exits promptly: watchers do not hold up the drain",
        )
        .await;
}
