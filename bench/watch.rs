//! The watch benchmark: the real service (release) with 10,000 idle watchers held while the hot GET
//! is loaded by `wrk` (beside the same run without them, and the RSS), then the delay from commit to
//! answer for 1,000 watchers of one tenant woken by one switch.
//!
//! Run it with `bench/watch.sh`. Environment: `BENCH_SECONDS` (10), `BENCH_CONNECTIONS` (64),
//! `BENCH_BACKENDS` (`sqlite,postgres`), `BENCH_DATABASE_URL`
//! (`postgres://postgres@127.0.0.1:5432/test`), `BENCH_IDLE_WATCHERS` (10000),
//! `BENCH_WOKEN_WATCHERS` (1000), `BENCH_BIN` (`target/release/cc-connection`). Targets:
//! commit-to-answer p99 under 50 ms; RSS under 128 MiB with 10,000 watchers; hot GET throughput
//! within 10% of the run without watchers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use bench_support::{BenchDb, env_or, memory_mib, metric_values, parse_duration_ms};
use cc_connection::dev_ims::{DevIms, world};

const THREADS: usize = 2;

/// wrk on the hot GET of one tenant: requests/s, p50 ms, p99 ms, errors.
fn wrk_get_one(
    base: &str,
    token: &str,
    tenant: &str,
    seconds: u64,
    connections: usize,
) -> (f64, f64, f64, u64) {
    let out = Command::new("wrk")
        .args([
            "-t",
            &THREADS.to_string(),
            "-c",
            &connections.to_string(),
            "-d",
            &format!("{seconds}s"),
            "--latency",
            "-s",
            "bench/get_one.lua",
        ])
        .arg(format!("{base}/"))
        .env("BENCH_TOKEN", token)
        .env("BENCH_TENANT", tenant)
        .output()
        .expect("wrk runs (bench/watch.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|r| r.trim().to_owned()))
    };
    (
        field("Requests/sec:").and_then(|v| v.parse().ok()).unwrap_or(0.0),
        field("50%").map_or(f64::NAN, |v| parse_duration_ms(&v)),
        field("99%").map_or(f64::NAN, |v| parse_duration_ms(&v)),
        field("Non-2xx or 3xx responses:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
            + field("Socket errors:").map_or(0, |_| 1),
    )
}

async fn watchers_held(client: &reqwest::Client, base: &str) -> usize {
    let [held] = metric_values(client, base, ["ccc_watchers "]).await;
    held as usize
}

/// Starts `n` watches (one connection each), tenant of watch `i` given by `tenant(i)`, and waits
/// until the service holds them all. Returns the tasks, each yielding (status, instant answered).
async fn hold_watchers(
    base: &str,
    token: &str,
    n: usize,
    tenant: impl Fn(usize) -> String,
) -> Vec<tokio::task::JoinHandle<(u16, Instant)>> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut tasks = Vec::with_capacity(n);
    // In batches: a burst of thousands of connects overflows the accept backlog.
    for batch in (0..n).collect::<Vec<_>>().chunks(500) {
        for &i in batch {
            let req = client
                .get(format!(
                    "{base}/tenants/{}/creative-cloud-connection?wait=60",
                    tenant(i)
                ))
                .bearer_auth(token)
                .header("If-None-Match", "\"1\"");
            tasks.push(tokio::spawn(async move {
                let res = req.send().await;
                let at = Instant::now();
                (res.map_or(0, |r| r.status().as_u16()), at)
            }));
        }
        let want = tasks.len();
        let probe = reqwest::Client::new();
        for _ in 0..400 {
            if watchers_held(&probe, base).await >= want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    tasks
}

/// The service's own commit-to-answer histogram (`ccc_watch_delay_seconds`): answers counted, and
/// of them within 25 ms and within 50 ms (the handler's answer, before it is written and read).
async fn service_delays(client: &reqwest::Client, base: &str) -> [f64; 3] {
    metric_values(
        client,
        base,
        [
            "ccc_watch_delay_seconds_count ",
            "ccc_watch_delay_seconds_bucket{le=\"0.025\"} ",
            "ccc_watch_delay_seconds_bucket{le=\"0.05\"} ",
        ],
    )
    .await
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

#[tokio::main]
async fn main() {
    let seconds: u64 = env_or("BENCH_SECONDS", "10").parse().unwrap();
    let connections: usize = env_or("BENCH_CONNECTIONS", "64").parse().unwrap();
    let backends = env_or("BENCH_BACKENDS", "sqlite,postgres");
    let pg_url = env_or("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test");
    let idle: usize = env_or("BENCH_IDLE_WATCHERS", "10000").parse().unwrap();
    let woken: usize = env_or("BENCH_WOKEN_WATCHERS", "1000").parse().unwrap();

    let ims = DevIms::start("127.0.0.1:0").await.unwrap();
    let bench_support::Tokens { integration, admin } = bench_support::tokens(&ims);
    let mut lines = Vec::new();
    for backend in backends.split(',').map(str::trim).filter(|b| !b.is_empty()) {
        let db = BenchDb::create(backend, &pg_url).await;
        bench_support::seed(&db.url, idle.max(2)).await;
        let service = bench_support::start_service(&db.url, &ims, "bench/watch.sh", &[]).await;
        let probe = reqwest::Client::new();

        // The hot GET alone, then with `idle` watchers of other tenants held.
        let hot = "t00000";
        let (rps0, p50_0, p99_0, err0) = wrk_get_one(&service.base, &integration, hot, seconds, connections);
        let rss_before = memory_mib(&service.child, "VmRSS:").unwrap_or(f64::NAN);
        let started = Instant::now();
        let held = hold_watchers(&service.base, &integration, idle, |i| {
            format!("t{:05}", 1 + i % (idle - 1))
        })
        .await;
        let holding = watchers_held(&probe, &service.base).await;
        let opened_in = started.elapsed();
        let rss_held = memory_mib(&service.child, "VmRSS:").unwrap_or(f64::NAN);
        let (rps1, p50_1, p99_1, err1) = wrk_get_one(&service.base, &integration, hot, seconds, connections);
        let still = watchers_held(&probe, &service.base).await;
        let rss_peak = memory_mib(&service.child, "VmHWM:").unwrap_or(f64::NAN);
        for task in &held {
            task.abort();
        }
        drop(held);
        for _ in 0..400 {
            if watchers_held(&probe, &service.base).await == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }

        // `woken` watchers of one tenant, one switch; delay from the switch's acknowledgement
        // (the commit is done) to each answer (0 for answers that arrived before it).
        let target = "t00001";
        let woken_tasks = hold_watchers(&service.base, &integration, woken, |_| target.to_owned()).await;
        let delays_before = service_delays(&probe, &service.base).await;
        let put_sent = Instant::now();
        let res = probe
            .put(format!(
                "{}/tenants/{target}/creative-cloud-connection",
                service.base
            ))
            .bearer_auth(&admin)
            .json(&serde_json::json!({ "org_id": world::ACME_DESIGN_ORG }))
            .send()
            .await
            .unwrap();
        let acked = Instant::now();
        assert_eq!(res.status(), 200, "the switch answers 200");
        let mut delays = Vec::with_capacity(woken);
        let mut wrong = 0;
        for task in woken_tasks {
            let (status, at) = task.await.unwrap();
            if status != 200 {
                wrong += 1;
            }
            delays.push(at.saturating_duration_since(acked).as_secs_f64() * 1000.0);
        }
        delays.sort_by(f64::total_cmp);
        let delays_after = service_delays(&probe, &service.base).await;
        let [answered, within_25, within_50] = [0, 1, 2].map(|i| delays_after[i] - delays_before[i]);

        lines.push(format!(
            "| {backend}: hot GET, no watchers | {rps0:.0} | {p50_0:.2} | {p99_0:.2} | {err0} | {rss_before:.1} |"
        ));
        lines.push(format!(
            "| {backend}: hot GET, {holding} idle watchers held ({still} at the end) | {rps1:.0} ({:.0}% of above) | {p50_1:.2} | {p99_1:.2} | {err1} | {rss_held:.1} held, {rss_peak:.1} peak |",
            100.0 * rps1 / rps0.max(f64::MIN_POSITIVE)
        ));
        lines.push(format!(
            "| {backend}: {woken} watchers of one tenant, one switch: commit-to-answer p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms at the client ({wrong} not 200; switch took {:.1} ms; {idle} watchers opened in {:.1} s); in the service {:.1}% within 25 ms, {:.1}% within 50 ms of {answered:.0} | | | | | |",
            percentile(&delays, 0.5),
            percentile(&delays, 0.99),
            delays.last().copied().unwrap_or(f64::NAN),
            acked.duration_since(put_sent).as_secs_f64() * 1000.0,
            opened_in.as_secs_f64(),
            100.0 * within_25 / answered.max(1.0),
            100.0 * within_50 / answered.max(1.0),
        ));
        drop(service);
        db.remove().await;
    }
    println!(
        "\nwrk -t{THREADS} -c{connections} -d{seconds}s over loopback; 2-core machine, wrk and the watchers' client included"
    );
    println!("| run | req/s | p50 ms | p99 ms | errors | RSS MiB |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for l in lines {
        println!("{l}");
    }
}
