//! The probes and `/metrics`: `/readyz` asks the database at most about once a second however
//! many probes come, and `CCC_OPS_LISTEN` moves `/metrics` (and a copy of the probes) to a
//! listener of its own.

use std::time::{Duration, Instant};

use reqwest::Method;

use crate::common::db::backends;
use crate::helpers::{assert_problem, send, spawn_app, spawn_app_with};

#[tokio::test]
async fn a_flood_of_readiness_probes_asks_the_database_about_once_a_second() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let before = app.state.readiness.checks();
        let started = Instant::now();
        let mut probes = 0;
        while started.elapsed() < Duration::from_millis(1_500) {
            let batch = (0..20).map(|_| app.request(Method::GET, "/readyz", None).send());
            for res in futures_util::future::join_all(batch).await {
                assert_eq!(res.unwrap().status(), 200, "{backend:?}");
                probes += 1;
            }
        }
        let elapsed = started.elapsed();
        let asked = app.state.readiness.checks() - before;
        assert!(probes >= 100, "{backend:?}: {probes} probes");
        // One check per second begun, and one more for a cached answer that was still fresh.
        assert!(
            asked <= elapsed.as_secs() + 2,
            "{backend:?}: the database was asked {asked} times for {probes} probes in {elapsed:?}"
        );
    }
}

#[tokio::test]
async fn with_an_ops_listener_metrics_are_served_there_and_404_on_the_public_port() {
    let app = spawn_app_with(crate::common::db::Backend::Sqlite, |c| {
        c.ops_listen = Some(([127, 0, 0, 1], 0).into());
    })
    .await;
    let ops = app.ops_address.clone().expect("an ops listener");
    let get = |url: String| app.client.get(url).send();

    let res = get(format!("{ops}/metrics")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(res.text().await.unwrap().contains("ccc_http_requests_total"));
    assert_problem(app.call(Method::GET, "/metrics", None).await, 404, "not-found").await;
    assert_problem(app.call(Method::POST, "/metrics", None).await, 404, "not-found").await;

    // The probes answer on both: the kubelet asks the ops port, a load balancer may ask this one.
    for path in ["/healthz", "/readyz"] {
        assert_eq!(
            get(format!("{ops}{path}")).await.unwrap().status(),
            200,
            "{path} on ops"
        );
        assert_eq!(
            get(app.url(path)).await.unwrap().status(),
            200,
            "{path} on the public port"
        );
    }
    // The ops port serves nothing else.
    let res = get(format!("{ops}/tenants/acme-prod/creative-cloud-connection"))
        .await
        .unwrap();
    assert_problem(res, 404, "not-found").await;
    let res = app.client.post(format!("{ops}/metrics")).send().await.unwrap();
    assert_problem(res, 405, "method-not-allowed").await;
    let res = send(app.client.get(format!("{ops}/openapi.json"))).await;
    assert_problem(res, 404, "not-found").await;
}

#[tokio::test]
async fn without_an_ops_listener_metrics_stay_on_the_public_port() {
    let app = spawn_app(crate::common::db::Backend::Sqlite).await;
    assert!(app.ops_address.is_none());
    let res = app.call(Method::GET, "/metrics", None).await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("ccc_http_requests_total"));
}

/// The alert rules (`deploy/prometheus/alerts.yaml`) read the readiness checks and the watcher
/// cap from `/metrics`: a probe's answer and `CCC_MAX_WATCHERS` are there.
#[tokio::test]
async fn metrics_carry_what_the_alert_rules_read() {
    let app = spawn_app(crate::common::db::Backend::Sqlite).await;
    assert_eq!(app.call(Method::GET, "/readyz", None).await.status(), 200);
    let metrics = app
        .call(Method::GET, "/metrics", None)
        .await
        .text()
        .await
        .unwrap();
    for series in [
        "ccc_readiness_check{check=\"database\"}",
        "ccc_readiness_check{check=\"ims_keys\"}",
        "ccc_watchers_max ",
        "ccc_watch_notifications_total ",
    ] {
        assert!(metrics.contains(series), "{series} missing from /metrics");
    }
}
