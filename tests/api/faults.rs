//! Real faults under the running service: a throwaway PostgreSQL cluster (the machine's
//! initdb/pg_ctl, its own port) stopped and started, and the development IMS stopped and started
//! again on its port, also in the middle of a load of switches and reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cc_connection::dev_ims::{DevIms, world};
use cc_connection_testkit::postgres::{self, Cluster};
use reqwest::Method;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::common::db::{self, Backend, backends};
use crate::helpers::{
    TENANT, TestApp, admin_token, assert_history_holds, assert_problem, full_history, integration_token,
    spawn_app_with,
};

/// A throwaway cluster of the machine's server binaries, started; `None` (the test passes without
/// running) only outside CI where the machine lacks them: under CI that fails.
fn cluster_or_skip() -> Option<Cluster> {
    let bin = postgres::server_bin_or_skip(&["initdb", "pg_ctl"])?;
    Some(Cluster::new(&bin, "ccc-pg-").primary())
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set TEST_DATABASE_URL"]
async fn a_database_outage_is_503_database_unavailable_and_heals_without_restart() {
    db::require_postgres();
    let Some(cluster) = cluster_or_skip() else {
        return;
    };
    let url = cluster.url();
    // The app runs on the throwaway cluster (the fresh database made beside it goes unused).
    let app = spawn_app_with(Backend::Postgres, |c| {
        c.database_url = Some(url);
        c.db_connect_timeout_ms = 1_000;
    })
    .await;
    let admin = app.connected_by_admin().await;
    let reader = app.integration_token();
    assert_eq!(app.get_connection(&reader).await.status(), 200);

    cluster.stop();
    let res = app.get_connection(&reader).await;
    assert!(res.headers().contains_key("retry-after"));
    assert_problem(res, 503, "database-unavailable").await;
    let res = app.put_connection(&admin, world::ACME_DESIGN_ORG).await;
    assert_problem(res, 503, "database-unavailable").await;
    readyz_turns(&app, 503).await;

    cluster.start();
    let healed = Instant::now();
    loop {
        let res = app.get_connection(&reader).await;
        if res.status() == 200 {
            let body: serde_json::Value = res.json().await.unwrap();
            assert_eq!(
                body["org_id"],
                world::ACME_CREATIVE_ORG,
                "the refused switch changed nothing"
            );
            break;
        }
        assert!(
            healed.elapsed() < Duration::from_secs(15),
            "service did not recover by itself"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    readyz_turns(&app, 200).await;
}

/// Waits until `/readyz` answers `status`: it reuses the database's answer for a second, so a
/// change shows within about that (at most 3 s here).
async fn readyz_turns(app: &TestApp, status: u16) {
    let since = Instant::now();
    loop {
        let res = app.call(Method::GET, "/readyz", None).await;
        if res.status().as_u16() == status {
            return;
        }
        assert!(
            since.elapsed() < Duration::from_secs(3),
            "/readyz still answers {} instead of {status}",
            res.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One answer to a request made under load.
#[derive(Debug)]
struct Answer {
    sent: Instant,
    at: Instant,
    status: u16,
    retry_after: bool,
    body: Value,
}

impl Answer {
    async fn of(sent: Instant, res: reqwest::Response) -> Answer {
        Answer {
            sent,
            at: Instant::now(),
            status: res.status().as_u16(),
            retry_after: res.headers().contains_key("retry-after"),
            body: res.json().await.unwrap_or(Value::Null),
        }
    }

    fn acknowledged(&self) -> bool {
        matches!(self.status, 200 | 201)
    }

    /// A 503 of this problem type, with `Retry-After`.
    fn is_unavailable(&self, slug: &str) -> bool {
        self.status == 503 && self.retry_after && self.body["type"] == format!("/problems/{slug}")
    }
}

/// The tasks of a load: each returns its answers.
type Load = Vec<JoinHandle<Vec<Answer>>>;

/// `writers` callers switching the demo tenant back and forth, and `readers` reading it, until
/// `stop`. Every request carries a token minted for it, so nothing it needs is in a cache but the
/// signing keys. Returns the switches' answers and the reads' answers.
fn start_load(app: &TestApp, writers: usize, readers: usize, stop: &Arc<AtomicBool>) -> (Load, Load) {
    let url = app.url(&TestApp::connection_path(TENANT));
    let orgs = [world::ACME_CREATIVE_ORG, world::ACME_DESIGN_ORG];
    let spawn = |w: usize, write: bool| {
        let (client, url, ims, stop) = (app.client.clone(), url.clone(), app.ims.clone(), stop.clone());
        tokio::spawn(async move {
            let mut answers = Vec::new();
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                let req = if write {
                    let org = orgs[i % 2];
                    client
                        .put(&url)
                        .bearer_auth(admin_token(&ims))
                        .json(&serde_json::json!({ "org_id": org }))
                } else {
                    client.get(&url).bearer_auth(integration_token(&ims))
                };
                let sent = Instant::now();
                let answer = Answer::of(sent, req.send().await.unwrap()).await;
                if write && answer.acknowledged() {
                    assert_eq!(answer.body["org_id"], orgs[i % 2]);
                }
                answers.push(answer);
                i += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            answers
        })
    };
    (
        (0..writers).map(|w| spawn(w, true)).collect(),
        (0..readers).map(|r| spawn(r, false)).collect(),
    )
}

async fn collect(tasks: Load) -> Vec<Answer> {
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all
}

/// Asserts the demo tenant's whole history holds every switch of `switches` that was acknowledged
/// ([`assert_history_holds`]); returns those switches' `(revision, org)` and the history.
async fn assert_no_acknowledged_switch_lost(
    app: &TestApp,
    switches: &[Answer],
) -> (Vec<(i64, String)>, Vec<Value>) {
    let acked = acknowledged(switches);
    let history = full_history(&app.client, &app.address, &app.admin_token()).await;
    assert_history_holds(&history, &acked);
    (acked, history)
}

/// Stops the load and returns the answers of its writers (switches) and of its readers.
async fn end_load(stop: &AtomicBool, writers: Load, readers: Load) -> (Vec<Answer>, Vec<Answer>) {
    stop.store(true, Ordering::Relaxed);
    (collect(writers).await, collect(readers).await)
}

/// Asserts every switch of a load was acknowledged or refused with 503 `slug` and Retry-After
/// (`context` starts each failure message).
fn assert_acknowledged_or_unavailable(switches: &[Answer], slug: &str, context: &str) {
    for a in switches {
        assert!(
            a.acknowledged() || a.is_unavailable(slug),
            "{context}a switch succeeds or is 503 {slug} with Retry-After: {a:?}"
        );
    }
}

/// Waits (at most 20 s) until the service is ready again after a fault ended at `since`, then lets
/// the load run on a little.
async fn until_ready_again(app: &TestApp, since: Instant) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let res = app.call(Method::GET, "/readyz", None).await;
        if res.status() == 200 {
            // Ready again: give the writers a few rounds to land switches.
            tokio::time::sleep(Duration::from_millis(500)).await;
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not ready again {:?} after the fault ended",
            since.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn acknowledged(switches: &[Answer]) -> Vec<(i64, String)> {
    switches
        .iter()
        .filter(|a| a.acknowledged())
        .map(|a| {
            (
                a.body["revision"].as_i64().unwrap(),
                a.body["org_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: set TEST_DATABASE_URL"]
async fn postgres_stopped_mid_load_loses_no_acknowledged_switch_and_heals() {
    db::require_postgres();
    let Some(cluster) = cluster_or_skip() else {
        return;
    };
    let cluster = Arc::new(cluster);
    let url = cluster.url();
    // The app runs on the throwaway cluster (the fresh database made beside it goes unused).
    let app = spawn_app_with(Backend::Postgres, |c| {
        c.database_url = Some(url);
        c.db_connect_timeout_ms = 1_000;
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let (writers, readers) = start_load(&app, 4, 2, &stop);

    tokio::time::sleep(Duration::from_millis(800)).await;
    let down = Instant::now();
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.stop()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.start()).await.unwrap();
    let up = Instant::now();
    until_ready_again(&app, up).await;
    let (switches, reads) = end_load(&stop, writers, readers).await;

    assert_acknowledged_or_unavailable(&switches, "database-unavailable", "");
    for a in &reads {
        assert!(
            a.acknowledged() || a.status == 404 || a.is_unavailable("database-unavailable"),
            "a read succeeds or is 503 database-unavailable with Retry-After: {a:?}"
        );
    }
    let refused = switches.iter().filter(|a| a.status == 503).count();
    assert!(refused > 0, "switches during the outage were refused");
    assert!(
        reads
            .iter()
            .any(|a| a.status == 503 && a.sent > down && a.at < up),
        "reads during the outage answered 503"
    );
    assert!(switches.iter().any(|a| a.acknowledged() && a.at < down));
    assert!(
        switches.iter().any(|a| a.acknowledged() && a.at > up),
        "switches succeed again without a restart"
    );
    assert_no_acknowledged_switch_lost(&app, &switches).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ims_stopped_mid_load_refuses_switches_keeps_reads_and_heals() {
    for backend in backends() {
        // The circuit opens during the outage; a short cool-down lets it close within the second
        // the load runs on after IMS is back.
        let app = spawn_app_with(backend, |c| c.ims_breaker_cooldown_ms = 200).await;
        let ims_addr = app.ims.url().trim_start_matches("http://").to_owned();
        let stop = Arc::new(AtomicBool::new(false));
        let (writers, readers) = start_load(&app, 3, 3, &stop);

        tokio::time::sleep(Duration::from_millis(600)).await;
        app.ims.shutdown().await;
        let down = Instant::now();
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        // The same IMS comes back on the same address (same keys, same world).
        let mut restarted = None;
        for _ in 0..50 {
            match DevIms::start(&ims_addr).await {
                Ok(ims) => {
                    restarted = Some(ims);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let _restarted = restarted.expect("the IMS restarts on its port");
        let up = Instant::now();
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        let (switches, reads) = end_load(&stop, writers, readers).await;

        let context = format!("{backend:?}: ");
        assert_acknowledged_or_unavailable(&switches, "ims-unavailable", &context);
        for a in &reads {
            assert!(
                a.acknowledged() || a.status == 404,
                "{backend:?}: reads with integration tokens keep working on cached keys: {a:?}"
            );
        }
        assert!(
            reads.iter().filter(|a| a.sent > down && a.at < up).count() > 10,
            "{backend:?}: reads were made during the outage"
        );
        let outage: Vec<&Answer> = switches.iter().filter(|a| a.sent > down && a.at < up).collect();
        assert!(
            !outage.is_empty() && outage.iter().all(|a| a.status == 503),
            "{backend:?}: no switch succeeds while IMS is down"
        );
        assert!(
            switches.iter().any(|a| a.acknowledged() && a.at > up),
            "{backend:?}: switches succeed again once IMS is back"
        );
        let (acked, history) = assert_no_acknowledged_switch_lost(&app, &switches).await;
        assert_eq!(
            history.len(),
            acked
                .iter()
                .map(|(r, _)| r)
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            "{backend:?}: a refused switch wrote nothing"
        );
    }
}

#[tokio::test]
async fn a_full_pool_is_503_database_unavailable_until_a_connection_frees() {
    for backend in backends() {
        let app = spawn_app_with(backend, |c| {
            c.db_max_connections = 1;
            c.db_connect_timeout_ms = 1_000;
        })
        .await;
        let reader = app.integration_token();
        assert_eq!(app.get_connection(&reader).await.status(), 404);
        // Something else holds the pool's only connection.
        let held = sea_orm::TransactionTrait::begin(app.state.store.connection())
            .await
            .unwrap();
        let res = app.get_connection(&reader).await;
        assert!(res.headers().contains_key("retry-after"));
        assert_problem(res, 503, "database-unavailable").await;
        // Not ready while the pool is exhausted, ready again once a connection freed.
        readyz_turns(&app, 503).await;
        drop(held);
        assert_eq!(app.get_connection(&reader).await.status(), 404, "{backend:?}");
        readyz_turns(&app, 200).await;
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set TEST_DATABASE_URL"]
async fn a_statement_over_the_timeout_is_503_database_unavailable_and_changes_nothing() {
    db::require_postgres();
    let app = spawn_app_with(Backend::Postgres, |c| c.db_statement_timeout_ms = 300).await;
    let admin = app.admin_token();
    let reader = app.integration_token();
    app.put_expecting(&admin, world::ACME_CREATIVE_ORG, 201).await;
    // Another session locks the tables: every statement of the service waits, then times out.
    let other = sea_orm::Database::connect(&app.db.url).await.unwrap();
    let lock = sea_orm::TransactionTrait::begin(&other).await.unwrap();
    sea_orm::ConnectionTrait::execute_unprepared(
        &lock,
        "LOCK TABLE tenant, connection IN ACCESS EXCLUSIVE MODE",
    )
    .await
    .unwrap();
    // Without the timeout these would wait as long as the lock is held.
    let bound = Duration::from_secs(3);
    let res = tokio::time::timeout(bound, app.get_connection(&reader))
        .await
        .expect("answered after the statement timeout, not the lock");
    assert!(res.headers().contains_key("retry-after"));
    assert_problem(res, 503, "database-unavailable").await;
    let res = tokio::time::timeout(bound, app.put_connection(&admin, world::ACME_DESIGN_ORG))
        .await
        .expect("answered after the statement timeout, not the lock");
    assert_problem(res, 503, "database-unavailable").await;
    lock.rollback().await.unwrap();

    let body: Value = app.get_connection(&reader).await.json().await.unwrap();
    assert_eq!(
        body["org_id"],
        world::ACME_CREATIVE_ORG,
        "the timed-out switch changed nothing"
    );
    assert_eq!(body["revision"], 1);
}
