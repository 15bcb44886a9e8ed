//! The benchmark: the real service in release mode on SQLite and PostgreSQL, loaded over loopback
//! by `wrk`, beside a baseline measured in the same run. Prints one table; figures are ratios
//! against the baseline because absolute numbers drift on shared machines.
//!
//! Run it with `bench/run.sh` (builds in release, installs wrk if missing). Environment:
//! `BENCH_SECONDS` (10), `BENCH_CONNECTIONS` (64), `BENCH_BACKENDS` (`sqlite,postgres`),
//! `BENCH_PIN` (`1`): the service, the baseline and a throwaway PostgreSQL cluster of their own
//! (the machine's `initdb`/`pg_ctl`) on core 0, `wrk -t1` on core 1; `0`: nothing pinned, `wrk -t2`,
//! PostgreSQL at `BENCH_DATABASE_URL` (`postgres://postgres@127.0.0.1:5432/test`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bench_support::{BenchDb, Service, env_or, free_port, memory_mib, parse_duration_ms};

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cc_connection::dev_ims::{DevIms, TokenSpec, world};
use cc_connection_testkit::postgres::{self, Cluster};

const TENANTS: usize = 10_000;
/// The core of the service, the baseline and the database when pinned.
const SERVICE_CORE: &str = "0";

/// Where processes run: pinned (service and database on core 0, load on core 1) or anywhere.
#[derive(Clone, Copy)]
struct Placement {
    pin: bool,
}

impl Placement {
    /// `program` on the service's core when pinned.
    fn service(self, program: &str) -> Command {
        self.on(SERVICE_CORE, program)
    }

    /// `program` on the load generator's core when pinned.
    fn load(self, program: &str) -> Command {
        self.on("1", program)
    }

    fn on(self, core: &str, program: &str) -> Command {
        if self.pin {
            let mut c = Command::new("taskset");
            c.args(["-c", core, program]);
            c
        } else {
            Command::new(program)
        }
    }

    /// wrk threads: one per core left to it.
    fn threads(self) -> usize {
        if self.pin { 1 } else { 2 }
    }
}

struct Row {
    name: String,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    rss_mib: Option<f64>,
}

async fn wait_ready(url: &str, within: Duration) -> Duration {
    let started = Instant::now();
    let client = reqwest::Client::new();
    while started.elapsed() < within {
        if client
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{url} not ready within {within:?}");
}

/// How wrk loads the service: where it runs, for how long and over how many connections.
#[derive(Clone, Copy)]
struct Wrk {
    place: Placement,
    seconds: u64,
    connections: usize,
}

impl Wrk {
    /// The row `name`: runs `bench/<script>` against `base` with `env` added, and parses
    /// requests/s, p50, p99 and non-2xx/3xx responses.
    fn row(self, name: &str, base: &str, script: &str, env: &[(&str, String)]) -> Row {
        let Wrk {
            place,
            seconds,
            connections,
        } = self;
        let mut cmd = place.load("wrk");
        cmd.args([
            "-t",
            &place.threads().to_string(),
            "-c",
            &connections.to_string(),
            "-d",
            &format!("{seconds}s"),
            "--latency",
        ])
        .args(["-s", &format!("bench/{script}")])
        .arg(format!("{base}/"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.env("BENCH_THREADS", place.threads().to_string());
        let out = cmd.output().expect("wrk runs (bench/run.sh installs it)");
        // Pinned, a missing wrk is taskset's failure to start it: a row of zeros would read as a
        // figure.
        assert!(
            out.status.success(),
            "wrk failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |prefix: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(prefix).map(|r| r.trim().to_owned()))
        };
        Row {
            name: name.to_owned(),
            rps: field("Requests/sec:").and_then(|v| v.parse().ok()).unwrap_or(0.0),
            p50_ms: field("50%").map_or(f64::NAN, |v| parse_duration_ms(&v)),
            p99_ms: field("99%").map_or(f64::NAN, |v| parse_duration_ms(&v)),
            errors: field("Non-2xx or 3xx responses:")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
                + field("Socket errors:").map_or(0, |_| 1),
            rss_mib: None,
        }
    }

    /// [`Wrk::row`] of a read load; `note` goes to `notes` with how the service batched the
    /// reads meanwhile.
    async fn reads_row(
        self,
        name: &str,
        base: &str,
        script: &str,
        env: &[(&str, String)],
        note: &str,
        notes: &mut Vec<String>,
    ) -> Row {
        let batches = ReadBatches::scrape(base).await;
        let row = self.row(name, base, script, env);
        notes.push(batches.note(base, note).await);
        row
    }
}

/// The service's batched-read counters (`ccc_db_read_queries_total`, `ccc_db_reads_total`).
struct ReadBatches {
    queries: f64,
    reads: f64,
}

impl ReadBatches {
    async fn scrape(base: &str) -> Self {
        let text = reqwest::get(format!("{base}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        Self {
            queries: value("ccc_db_read_queries_total "),
            reads: value("ccc_db_reads_total "),
        }
    }

    /// A line saying how many reads each query answered since `self`.
    async fn note(self, base: &str, row: &str) -> String {
        let now = Self::scrape(base).await;
        let (queries, reads) = (now.queries - self.queries, now.reads - self.reads);
        format!(
            "{row}: {reads:.0} reads in {queries:.0} queries, {:.1} reads a query",
            reads / queries.max(1.0)
        )
    }
}

async fn start_service(place: Placement, db_url: &str, ims: &DevIms) -> (Service, Duration) {
    let port = free_port();
    let started = Instant::now();
    let mut cmd = place.service("target/release/cc-connection");
    let child = cc_connection_testkit::serve_command(&mut cmd, ims, db_url, &format!("127.0.0.1:{port}"))
        .env("CCC_DB_MAX_CONNECTIONS", env_or("BENCH_DB_POOL", "10"))
        // One administrator token drives the whole load: measure the service, not the per-user limit.
        .env("CCC_IMS_RATE_PER_MINUTE", "0")
        .env("RUST_LOG", env_or("BENCH_RUST_LOG", "info"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("target/release/cc-connection (bench/run.sh builds it)");
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&format!("{base}/readyz"), Duration::from_secs(20)).await;
    (Service { child, base }, started.elapsed())
}

#[tokio::main]
async fn main() {
    let seconds: u64 = env_or("BENCH_SECONDS", "10").parse().unwrap();
    let connections: usize = env_or("BENCH_CONNECTIONS", "64").parse().unwrap();
    let backends = env_or("BENCH_BACKENDS", "sqlite,postgres");
    let place = Placement {
        pin: env_or("BENCH_PIN", "1") != "0",
    };
    let wrk = Wrk {
        place,
        seconds,
        connections,
    };
    let mut cluster = None;
    let pg_url = if place.pin && backends.contains("postgres") {
        // A throwaway cluster of the machine's server binaries, on the service's core.
        let bin = postgres::server_bin(&["initdb", "pg_ctl"])
            .expect("pinned mode needs PostgreSQL's server binaries (or BENCH_PIN=0)");
        let cluster = cluster.insert(
            Cluster::new(&bin, "ccc-bench-pg-")
                .with_options("-c max_connections=100")
                .pinned(SERVICE_CORE)
                .primary(),
        );
        cluster.url()
    } else {
        env_or("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
    };

    let ims = DevIms::start("127.0.0.1:0").await.unwrap();
    let bench_support::Tokens { integration, admin } = bench_support::tokens(&ims);

    // The baseline, in this same run.
    let port = free_port();
    let baseline_child = place
        .service("target/release/examples/bench_baseline")
        .args([format!("127.0.0.1:{port}"), format!("{}/ims/keys", ims.url())])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("target/release/examples/bench_baseline (bench/run.sh builds it)");
    let baseline = Service {
        child: baseline_child,
        base: format!("http://127.0.0.1:{port}"),
    };
    wait_ready(&format!("{}/readyz", baseline.base), Duration::from_secs(20)).await;
    let token_env = vec![
        ("BENCH_TOKEN", integration.clone()),
        ("BENCH_TENANT", "t00000".to_owned()),
    ];
    let mut base_row = wrk.row(
        "baseline: bare actix + RS256, fixed body",
        &baseline.base,
        "get_one.lua",
        &token_env,
    );
    base_row.rss_mib = memory_mib(&baseline.child, "VmHWM:");
    drop(baseline);

    let mut rows = vec![base_row];
    let mut notes = Vec::new();
    for backend in backends.split(',').map(str::trim).filter(|b| !b.is_empty()) {
        let db = BenchDb::create(backend, &pg_url).await;
        bench_support::seed(&db.url, TENANTS).await;
        let (service, ready_in) = start_service(place, &db.url, &ims).await;
        notes.push(format!("{backend}: start to ready {} ms", ready_in.as_millis()));

        let many = vec![
            ("BENCH_TOKEN", admin.clone()),
            ("BENCH_TENANTS", TENANTS.to_string()),
            ("BENCH_ORG_A", world::ACME_CREATIVE_ORG.to_owned()),
            ("BENCH_ORG_B", world::ACME_DESIGN_ORG.to_owned()),
        ];
        let put = wrk.row(
            &format!("{backend}: PUT switch, {TENANTS} tenants"),
            &service.base,
            "put_many.lua",
            &many,
        );
        // BENCH_PERF=<dir>: profile the service during the hot GET (perf, from Debian's linux-perf).
        let perf = std::env::var("BENCH_PERF").ok().map(|dir| {
            std::fs::create_dir_all(&dir).unwrap();
            Command::new("perf")
                .args(["record", "-F", "999", "-g", "-o"])
                .arg(format!("{dir}/{backend}-get.data"))
                .args(["-p", &service.child.id().to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("perf runs")
        });
        let one = wrk
            .reads_row(
                &format!("{backend}: GET connection, 1 tenant"),
                &service.base,
                "get_one.lua",
                &token_env,
                &format!("{backend}: GET, 1 tenant"),
                &mut notes,
            )
            .await;
        if let Some(perf) = perf {
            let _ = Command::new("kill")
                .args(["-INT", &perf.id().to_string()])
                .status();
            let _ = perf.wait_with_output();
        }
        // The 304 path: If-None-Match with the tenant's current ETag.
        let etag = reqwest::Client::new()
            .get(format!(
                "{}/tenants/t00000/creative-cloud-connection",
                service.base
            ))
            .bearer_auth(&integration)
            .send()
            .await
            .unwrap()
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .expect("the GET answers an ETag")
            .to_owned();
        let mut not_modified_env = token_env.clone();
        not_modified_env.push(("BENCH_ETAG", etag));
        let not_modified = wrk.row(
            &format!("{backend}: GET connection, 1 tenant, 304 (If-None-Match)"),
            &service.base,
            "get_304.lua",
            &not_modified_env,
        );
        let get_many_env = vec![
            ("BENCH_TOKEN", integration.clone()),
            ("BENCH_TENANTS", TENANTS.to_string()),
        ];
        let spread = wrk
            .reads_row(
                &format!("{backend}: GET connection, {TENANTS} tenants"),
                &service.base,
                "get_many.lua",
                &get_many_env,
                &format!("{backend}: GET, {TENANTS} tenants"),
                &mut notes,
            )
            .await;

        // Org listing with IMS answering after 50 ms: cold (every token new) and warm (one token).
        ims.faults().set_delay(Duration::from_millis(50));
        let cold_seconds = 3.min(seconds);
        let tokens_file = tempfile::NamedTempFile::new().unwrap();
        let cold_tokens: Vec<String> = (0..(connections * 100 * cold_seconds as usize / 2).max(1000))
            .map(|_| {
                ims.mint(&TokenSpec::user(
                    world::ALICE_FEDERATED,
                    world::UI_CLIENT,
                    world::USER_SCOPES,
                ))
            })
            .collect();
        std::fs::write(tokens_file.path(), cold_tokens.join("\n")).unwrap();
        let cold_env = vec![("BENCH_TOKENS_FILE", tokens_file.path().display().to_string())];
        let cold = Wrk {
            seconds: cold_seconds,
            ..wrk
        }
        .row(
            &format!("{backend}: GET /users/me/orgs, IMS +50 ms, cold"),
            &service.base,
            "tokens.lua",
            &cold_env,
        );
        let warm_token = ims.mint(&TokenSpec::user(
            world::ALICE_FEDERATED,
            world::UI_CLIENT,
            world::USER_SCOPES,
        ));
        std::fs::write(tokens_file.path(), vec![warm_token; 64].join("\n")).unwrap();
        let warm = wrk.row(
            &format!("{backend}: GET /users/me/orgs, IMS +50 ms, warm"),
            &service.base,
            "tokens.lua",
            &cold_env,
        );
        ims.faults().set_delay(Duration::ZERO);

        let rss = memory_mib(&service.child, "VmHWM:");
        for mut row in [put, one, not_modified, spread, cold, warm] {
            row.rss_mib = rss;
            rows.push(row);
        }
        drop(service);
        db.remove().await;
    }

    let base_rps = rows[0].rps.max(f64::MIN_POSITIVE);
    if place.pin {
        println!(
            "\ntaskset -c 1 wrk -t1 -c{connections} -d{seconds}s over loopback; service, baseline and PostgreSQL on core 0 (taskset -c 0)"
        );
    } else {
        println!(
            "\nwrk -t2 -c{connections} -d{seconds}s over loopback, nothing pinned; 2-core machine, wrk included"
        );
    }
    println!("| run | req/s | x baseline | p50 ms | p99 ms | errors | peak RSS MiB |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in &rows {
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} |",
            r.name,
            r.rps,
            r.rps / base_rps,
            r.p50_ms,
            r.p99_ms,
            r.errors,
            r.rss_mib.map_or("-".to_owned(), |m| format!("{m:.1}"))
        );
    }
    for n in notes {
        println!("{n}");
    }
    drop(cluster);
}
