//! The change feed benchmark: the real service (release) with 1,000 Server-Sent Events subscribers
//! on one replica while tenants are switched at 20/s (delivery delay, every subscriber got every
//! change in order, RSS above the same replica idle), then the catch-up read of 100,000 changes in
//! pages of 1,000.
//!
//! Run it with `bench/feed.sh`. Environment: `BENCH_BACKENDS` (`sqlite,postgres`),
//! `BENCH_DATABASE_URL` (`postgres://postgres@127.0.0.1:5432/test`), `BENCH_SUBSCRIBERS` (1000),
//! `BENCH_SWITCH_RATE` (20 per second), `BENCH_SECONDS` (10), `BENCH_CATCHUP` (100000),
//! `BENCH_BIN` (`target/release/cc-connection`). Targets (issue 22): delivery p99 <= 50 ms, RSS
//! <= 64 MiB above idle, catch-up >= 100,000 changes/s.
#![allow(clippy::unwrap_used, clippy::expect_used)]

// wrk's durations are not read here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench_support::{BenchDb, env_or, get_json, memory_mib, metric_values};
use cc_connection::dev_ims::{DevIms, world};
use sea_orm::{ConnectionTrait, Database, Statement};

const TENANTS: usize = 1_000;

async fn head(client: &reqwest::Client, base: &str, token: &str) -> i64 {
    let page = get_json(
        client,
        &format!("{base}/creative-cloud-connections?limit=1"),
        token,
    )
    .await;
    page["position"].as_str().unwrap().parse().unwrap()
}

/// One subscriber's deliveries: (position, tenant, revision, when read).
type Deliveries = Vec<(i64, String, i64, Instant)>;

/// Opens an SSE stream after `after` and records every change until `expected` arrived or the
/// stream ends.
fn subscribe(
    client: reqwest::Client,
    url: String,
    token: String,
    expected: Arc<std::sync::atomic::AtomicUsize>,
) -> tokio::task::JoinHandle<Deliveries> {
    tokio::spawn(async move {
        let mut res = client
            .get(url)
            .bearer_auth(token)
            .header("Accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut buffer = String::new();
        loop {
            let want = expected.load(std::sync::atomic::Ordering::Acquire);
            if want > 0 && got.len() >= want {
                return got;
            }
            let Ok(Ok(Some(chunk))) = tokio::time::timeout(Duration::from_secs(30), res.chunk()).await else {
                return got;
            };
            let at = Instant::now();
            buffer.push_str(std::str::from_utf8(&chunk).unwrap());
            while let Some(end) = buffer.find("\n\n") {
                let event: String = buffer.drain(..end + 2).collect();
                if !event.contains("event: change") {
                    continue;
                }
                let data = event.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
                let change: serde_json::Value = serde_json::from_str(data).unwrap();
                got.push((
                    change["position"].as_str().unwrap().parse().unwrap(),
                    change["tenant_id"].as_str().unwrap().to_owned(),
                    change["revision"].as_i64().unwrap(),
                    at,
                ));
            }
        }
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Adds `n` changes after the head directly in the database (the catch-up row reads them).
async fn insert_changes(url: &str, n: i64) {
    let db = Database::connect(url).await.unwrap();
    let backend = db.get_database_backend();
    let sql = |s: &str| match backend {
        sea_orm::DbBackend::Sqlite => s.replace('$', "?"),
        _ => s.to_owned(),
    };
    let series = match backend {
        sea_orm::DbBackend::Sqlite => {
            "WITH RECURSIVE g(n) AS (SELECT (SELECT \"position\" FROM change_head) + 1 \
             UNION ALL SELECT n + 1 FROM g WHERE n < (SELECT \"position\" FROM change_head) + $1) "
        }
        _ => {
            "WITH g(n) AS (SELECT generate_series((SELECT \"position\" FROM change_head) + 1, (SELECT \"position\" FROM change_head) + $1)) "
        }
    };
    let insert = format!(
        "{series}INSERT INTO change (\"position\", tenant_id, kind, org_id, org_name, previous_org_id, revision, \"at\", \"by\") \
         SELECT n, 't00000', 'switched', $2, 'Acme Design', $3, n + 1000000, $4, $5 FROM g"
    );
    let values: Vec<sea_orm::Value> = vec![
        n.into(),
        world::ACME_DESIGN_ORG.into(),
        world::ACME_CREATIVE_ORG.into(),
        chrono::Utc::now().into(),
        world::ALICE_FEDERATED.into(),
    ];
    db.execute_raw(Statement::from_sql_and_values(backend, sql(&insert), values))
        .await
        .unwrap();
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        sql("UPDATE change_head SET \"position\" = \"position\" + $1"),
        vec![n.into()],
    ))
    .await
    .unwrap();
    db.close().await.unwrap();
}

#[tokio::main]
async fn main() {
    let backends = env_or("BENCH_BACKENDS", "sqlite,postgres");
    let pg_url = env_or("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test");
    let subscribers: usize = env_or("BENCH_SUBSCRIBERS", "1000").parse().unwrap();
    let rate: u64 = env_or("BENCH_SWITCH_RATE", "20").parse().unwrap();
    let seconds: u64 = env_or("BENCH_SECONDS", "10").parse().unwrap();
    let catchup: i64 = env_or("BENCH_CATCHUP", "100000").parse().unwrap();

    let ims = DevIms::start("127.0.0.1:0").await.unwrap();
    let bench_support::Tokens { integration, admin } = bench_support::tokens(&ims);
    let client = reqwest::Client::new();
    let mut lines = Vec::new();
    for backend in backends.split(',').map(str::trim).filter(|b| !b.is_empty()) {
        let db = BenchDb::create(backend, &pg_url).await;
        bench_support::seed(&db.url, TENANTS).await;
        // The switches are one administrator's, far past a person's pace: no per-user IMS budget.
        let no_budget = [("CCC_IMS_RATE_PER_MINUTE", "0")];
        let service = bench_support::start_service(&db.url, &ims, "bench/feed.sh", &no_budget).await;
        let base = service.base.clone();
        // Idle: ready, nothing subscribed yet.
        let idle_rss = memory_mib(&service.child, "VmRSS:").unwrap();

        // The subscribers, one connection each.
        let start = head(&client, &base, &integration).await;
        let expected = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let streams = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let url = format!("{base}/creative-cloud-connections/changes?after={start}");
        let mut tasks = Vec::with_capacity(subscribers);
        for batch in (0..subscribers).collect::<Vec<_>>().chunks(250) {
            for _ in batch {
                tasks.push(subscribe(
                    streams.clone(),
                    url.clone(),
                    integration.clone(),
                    expected.clone(),
                ));
            }
            let want = tasks.len() as f64;
            for _ in 0..400 {
                if metric_values(&client, &base, ["ccc_feed_subscribers "]).await[0] >= want {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        let held_rss = memory_mib(&service.child, "VmRSS:").unwrap();

        // Switches at a steady rate, each tenant to the other org of the two.
        let total = (rate * seconds) as usize;
        let mut sent: HashMap<(String, i64), (Instant, Instant)> = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
        let started = Instant::now();
        let mut switch_ms = Vec::new();
        for k in 0..total {
            tick.tick().await;
            let tenant = format!("t{:05}", k % TENANTS);
            let org = if (k / TENANTS).is_multiple_of(2) {
                world::ACME_DESIGN_ORG
            } else {
                world::ACME_CREATIVE_ORG
            };
            let t0 = Instant::now();
            let res = client
                .put(format!("{base}/tenants/{tenant}/creative-cloud-connection"))
                .bearer_auth(&admin)
                .json(&serde_json::json!({ "org_id": org }))
                .send()
                .await
                .unwrap();
            let acked = Instant::now();
            assert!(res.status().is_success(), "switch: {}", res.status());
            let body: serde_json::Value = res.json().await.unwrap();
            switch_ms.push(acked.duration_since(t0).as_secs_f64() * 1000.0);
            sent.insert((tenant, body["revision"].as_i64().unwrap()), (t0, acked));
        }
        let switching = started.elapsed();
        expected.store(total, std::sync::atomic::Ordering::Release);
        let peak_rss = memory_mib(&service.child, "VmRSS:").unwrap();
        let mut from_sent = Vec::new();
        let mut from_ack = Vec::new();
        let mut complete = 0;
        for task in tasks {
            let got = task.await.unwrap();
            let in_order = got.len() == total
                && got
                    .iter()
                    .enumerate()
                    .all(|(i, (p, ..))| *p == start + 1 + i as i64);
            if in_order {
                complete += 1;
            }
            for (_, tenant, revision, at) in &got {
                if let Some((t0, acked)) = sent.get(&(tenant.clone(), *revision)) {
                    from_sent.push(at.duration_since(*t0).as_secs_f64() * 1000.0);
                    from_ack.push(at.saturating_duration_since(*acked).as_secs_f64() * 1000.0);
                }
            }
        }
        for v in [&mut from_sent, &mut from_ack, &mut switch_ms] {
            v.sort_by(f64::total_cmp);
        }
        lines.push(format!(
            "{backend}: {subscribers} subscribers, {total} switches in {:.1} s: {complete}/{subscribers} got every change in order; \
             delivery after the switch was sent p50 {:.1} ms p99 {:.1} ms (the switch itself p50 {:.1} p99 {:.1} ms); \
             after it was acknowledged p50 {:.1} ms p99 {:.1} ms; RSS idle {idle_rss:.1} MiB, with subscribers {held_rss:.1} MiB \
             (+{:.1}), after the switches {peak_rss:.1} MiB (+{:.1})",
            switching.as_secs_f64(),
            percentile(&from_sent, 0.5),
            percentile(&from_sent, 0.99),
            percentile(&switch_ms, 0.5),
            percentile(&switch_ms, 0.99),
            percentile(&from_ack, 0.5),
            percentile(&from_ack, 0.99),
            held_rss - idle_rss,
            peak_rss - idle_rss,
        ));

        // Catch-up: `catchup` changes read from the start in pages of 1,000.
        let from = head(&client, &base, &integration).await;
        insert_changes(&db.url, catchup).await;
        let t0 = Instant::now();
        let mut after = from;
        let mut read = 0;
        loop {
            let url = format!("{base}/creative-cloud-connections/changes?after={after}&limit=1000");
            let page = get_json(&client, &url, &integration).await;
            let n = page["changes"].as_array().unwrap().len();
            if n == 0 {
                break;
            }
            read += n;
            after = page["position"].as_str().unwrap().parse().unwrap();
        }
        let took = t0.elapsed().as_secs_f64();
        lines.push(format!(
            "{backend}: catch-up of {read} changes in pages of 1,000: {took:.2} s, {:.0} changes/s",
            read as f64 / took
        ));
        drop(service);
        db.remove().await;
    }
    for line in lines {
        println!("{line}");
    }
}
