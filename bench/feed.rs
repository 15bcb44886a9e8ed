//! The change feed benchmark: the real service (release) with 1,000 Server-Sent Events subscribers
//! on one replica while tenants are switched at 20/s (delivery delay, every subscriber got every
//! change in order, RSS above the same replica idle), then the catch-up read of 100,000 changes in
//! pages of 1,000.
//!
//! `BENCH_MODE=held` measures held requests instead (issue 28, item 3): `BENCH_HELD` (1000) long
//! polls (`wait=50`), then as many streams, on one replica: RSS idle and held, the database's
//! transactions (PostgreSQL: `pg_stat_database.xact_commit` of the bench database; both backends:
//! the service's `ccc_feed_reads_total`) over `BENCH_IDLE_SECONDS` (8) idle and over one switch,
//! and RSS after the streams closed and as many opened again. The idle window starts
//! `BENCH_SETTLE_SECONDS` (11) after the requests are held. `BENCH_STREAM_PATH` is the stream's
//! path (`/creative-cloud-connections/changes/stream`; the `Accept` header is sent too, so an older
//! build that streams `/changes` can be measured the same way).
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

/// The bench database's committed transactions (PostgreSQL), less the ones this reading made.
async fn xact_commit(db: &sea_orm::DatabaseConnection) -> Option<i64> {
    if db.get_database_backend() != sea_orm::DbBackend::Postgres {
        return None;
    }
    let row = db
        .query_one_raw(Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
        ))
        .await
        .ok()??;
    row.try_get::<i64>("", "xact_commit").ok()
}

/// The service's reads of the feed's rows (every reader).
async fn feed_reads(client: &reqwest::Client, base: &str) -> f64 {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("ccc_feed_reads_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// What one window cost: transactions (PostgreSQL) and feed reads.
async fn costs(db: &sea_orm::DatabaseConnection, client: &reqwest::Client, base: &str) -> (Option<i64>, f64) {
    // Backends flush their statistics when idle, at most once a second: let them.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    (xact_commit(db).await, feed_reads(client, base).await)
}

fn delta(before: (Option<i64>, f64), after: (Option<i64>, f64)) -> String {
    let xact = match (before.0, after.0) {
        // The reading itself is one transaction.
        (Some(b), Some(a)) => format!("{} transactions, ", a - b - 1),
        _ => String::new(),
    };
    format!("{xact}{} feed reads", after.1 - before.1)
}

/// Opens `n` held requests with `open`, waits until the service holds them all (`gauge` reaches
/// `want`), and returns their tasks.
async fn hold_many<F, Fut>(
    n: usize,
    client: &reqwest::Client,
    base: &str,
    gauge: &str,
    want: f64,
    open: F,
) -> Vec<tokio::task::JoinHandle<Option<String>>>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<String>> + Send + 'static,
{
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        tasks.push(tokio::spawn(open()));
    }
    // At most 5 s: a build that does not count them (main's long polls) is given that long.
    for _ in 0..200 {
        if metric_values(client, base, [gauge]).await[0] >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tasks
}

async fn held_mode(pg_url: &str, backends: &str) {
    let n: usize = env_or("BENCH_HELD", "1000").parse().unwrap();
    let idle: u64 = env_or("BENCH_IDLE_SECONDS", "8").parse().unwrap();
    // PostgreSQL backends that go idle report their statistics up to 10 s later: the opening
    // requests' transactions are counted before the idle window starts.
    let settle = Duration::from_secs(env_or("BENCH_SETTLE_SECONDS", "11").parse().unwrap());
    let stream_path = env_or("BENCH_STREAM_PATH", "/creative-cloud-connections/changes/stream");
    let ims = DevIms::start("127.0.0.1:0").await.unwrap();
    let bench_support::Tokens { integration, admin } = bench_support::tokens(&ims);
    let client = reqwest::Client::new();
    let mut lines = Vec::new();
    for backend in backends.split(',').map(str::trim).filter(|b| !b.is_empty()) {
        let db = BenchDb::create(backend, pg_url).await;
        bench_support::seed(&db.url, 10).await;
        let caps = (n * 3).to_string();
        let env = [
            ("CCC_IMS_RATE_PER_MINUTE", "0"),
            ("CCC_MAX_WATCHERS", caps.as_str()),
            ("CCC_MAX_WATCHERS_PER_CALLER", caps.as_str()),
        ];
        let service = bench_support::start_service(&db.url, &ims, "bench/feed.sh", &env).await;
        let base = service.base.clone();
        let conn = Database::connect(&db.url).await.unwrap();
        let rss = || memory_mib(&service.child, "VmRSS:").unwrap();
        let idle_rss = rss();
        let mut k = 0;
        let mut switch = async || {
            k += 1;
            let org = if k % 2 == 1 {
                world::ACME_DESIGN_ORG
            } else {
                world::ACME_CREATIVE_ORG
            };
            let res = client
                .put(format!("{base}/tenants/t00000/creative-cloud-connection"))
                .bearer_auth(&admin)
                .json(&serde_json::json!({ "org_id": org }))
                .send()
                .await
                .unwrap();
            assert!(res.status().is_success(), "switch: {}", res.status());
        };

        // Long polls.
        let after = head(&client, &base, &integration).await;
        let polls = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let url = format!("{base}/creative-cloud-connections/changes?after={after}&wait=50");
        let open = || {
            let (polls, url, token) = (polls.clone(), url.clone(), integration.clone());
            async move {
                let res = polls.get(url).bearer_auth(token).send().await.ok()?;
                Some(format!(
                    "{} {}",
                    res.status().as_u16(),
                    res.text().await.ok()?.len()
                ))
            }
        };
        let tasks = hold_many(n, &client, &base, "ccc_watchers ", n as f64, open).await;
        let held_rss = rss();
        tokio::time::sleep(settle).await;
        let start = costs(&conn.clone(), &client, &base).await;
        tokio::time::sleep(Duration::from_secs(idle)).await;
        let idle_end = costs(&conn, &client, &base).await;
        switch().await;
        let mut answered = 0;
        for task in tasks {
            if task.await.unwrap().is_some_and(|s| s.starts_with("200")) {
                answered += 1;
            }
        }
        let switched = costs(&conn, &client, &base).await;
        lines.push(format!(
            "{backend}: {n} long polls: RSS idle {idle_rss:.1} MiB, held {held_rss:.1} MiB (+{:.1}); {idle} s idle: {}; one switch: {} ({answered}/{n} answered 200)",
            held_rss - idle_rss,
            delta(start, idle_end),
            delta(idle_end, switched),
        ));

        // Streams, twice: what the first ones held is given back.
        for round in ["first", "again"] {
            let before_rss = rss();
            let after = head(&client, &base, &integration).await;
            let streams = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap();
            let url = format!("{base}{stream_path}?after={after}");
            let got_change = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let open = || {
                let (streams, url, token, got) = (
                    streams.clone(),
                    url.clone(),
                    integration.clone(),
                    got_change.clone(),
                );
                async move {
                    let mut res = streams
                        .get(url)
                        .bearer_auth(token)
                        .header("Accept", "text/event-stream")
                        .send()
                        .await
                        .ok()?;
                    let mut seen = String::new();
                    while let Ok(Ok(Some(chunk))) =
                        tokio::time::timeout(Duration::from_secs(60), res.chunk()).await
                    {
                        seen.push_str(&String::from_utf8_lossy(&chunk));
                        if seen.contains("event: change") {
                            got.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                            return Some(seen);
                        }
                    }
                    None
                }
            };
            let tasks = hold_many(n, &client, &base, "ccc_feed_subscribers ", n as f64, open).await;
            let held_rss = rss();
            tokio::time::sleep(settle).await;
            let start = costs(&conn, &client, &base).await;
            tokio::time::sleep(Duration::from_secs(idle)).await;
            let idle_end = costs(&conn, &client, &base).await;
            switch().await;
            for _ in 0..2_400 {
                if got_change.load(std::sync::atomic::Ordering::Acquire) >= n {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            let switched = costs(&conn, &client, &base).await;
            for task in &tasks {
                task.abort();
            }
            drop(streams);
            for _ in 0..1_200 {
                if metric_values(&client, &base, ["ccc_feed_subscribers "]).await[0] == 0.0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            let closed_rss = rss();
            lines.push(format!(
                "{backend}: {n} streams ({round}): RSS before {before_rss:.1} MiB, held {held_rss:.1} MiB (+{:.1}), after they closed {closed_rss:.1} MiB; {idle} s idle: {}; one switch: {} ({}/{n} got it)",
                held_rss - before_rss,
                delta(start, idle_end),
                delta(idle_end, switched),
                got_change.load(std::sync::atomic::Ordering::Acquire),
            ));
        }
        conn.close().await.unwrap();
        drop(service);
        db.remove().await;
    }
    for line in lines {
        println!("{line}");
    }
}

#[tokio::main]
async fn main() {
    if env_or("BENCH_MODE", "delivery") == "held" {
        held_mode(
            &env_or("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test"),
            &env_or("BENCH_BACKENDS", "sqlite,postgres"),
        )
        .await;
        return;
    }
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
        let url = format!(
            "{base}{}?after={start}",
            env_or("BENCH_STREAM_PATH", "/creative-cloud-connections/changes/stream")
        );
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
