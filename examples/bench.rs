//! The benchmark: the real service in release mode on SQLite and PostgreSQL, loaded over loopback
//! by `wrk`, beside a baseline measured in the same run. Prints one table; figures are ratios
//! against the baseline because absolute numbers drift on shared machines.
//!
//! Run it with `bench/run.sh` (builds in release, installs wrk if missing). Environment:
//! `BENCH_SECONDS` (10), `BENCH_CONNECTIONS` (64), `BENCH_BACKENDS` (`sqlite,postgres`),
//! `BENCH_DATABASE_URL` (`postgres://postgres@127.0.0.1:5432/test`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cc_connection::dev_ims::{DevIms, TokenSpec, world};
use cc_connection::entity::{connection, tenant};
use cc_connection::store::{DbOptions, Store};
use sea_orm::{ConnectionTrait, Database, EntityTrait, Set};

const TENANTS: usize = 10_000;
const THREADS: usize = 2;

struct Row {
    name: String,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    rss_mib: Option<f64>,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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

fn parse_duration_ms(s: &str) -> f64 {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let v: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => v / 1000.0,
        "ms" => v,
        "s" => v * 1000.0,
        "m" => v * 60_000.0,
        _ => f64::NAN,
    }
}

/// Runs wrk and parses requests/s, p50, p99 and non-2xx/3xx responses.
fn wrk(
    name: &str,
    base: &str,
    path: &str,
    script: &str,
    env: &[(&str, String)],
    seconds: u64,
    connections: usize,
) -> Row {
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t",
        &THREADS.to_string(),
        "-c",
        &connections.to_string(),
        "-d",
        &format!("{seconds}s"),
        "--latency",
    ])
    .args(["-s", &format!("bench/{script}")])
    .arg(format!("{base}{path}"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("wrk runs (bench/run.sh installs it)");
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

fn peak_rss_mib(child: &Child) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

struct Service {
    child: Child,
    base: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn seed(url: &str) {
    let store = Store::connect(
        url,
        &DbOptions {
            max_connections: 2,
            ..DbOptions::default()
        },
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    let now = chrono::Utc::now();
    for chunk in (0..TENANTS).collect::<Vec<_>>().chunks(500) {
        let tenants = chunk.iter().map(|i| tenant::ActiveModel {
            tenant_id: Set(format!("t{i:05}")),
            home_org: Set(world::ACME_HOME_ORG.to_owned()),
            admin_groups: Set(format!("[\"{}\"]", world::ACME_ADMIN_GROUP)),
            revision: Set(1),
            created_at: Set(now),
            removed_at: Set(None),
        });
        tenant::Entity::insert_many(tenants)
            .exec(store.connection())
            .await
            .unwrap();
        let connections = chunk.iter().map(|i| connection::ActiveModel {
            tenant_id: Set(format!("t{i:05}")),
            org_id: Set(world::ACME_CREATIVE_ORG.to_owned()),
            org_name: Set("Acme Creative".to_owned()),
            connected_by: Set(world::ALICE_FEDERATED.to_owned()),
            connected_at: Set(now),
            revision: Set(1),
            active: Set(true),
            ..Default::default()
        });
        connection::Entity::insert_many(connections)
            .exec(store.connection())
            .await
            .unwrap();
    }
}

async fn start_service(db_url: &str, ims: &DevIms) -> (Service, Duration) {
    let port = free_port();
    let started = Instant::now();
    let child = Command::new("target/release/cc-connection")
        .arg("serve")
        .env("DATABASE_URL", db_url)
        .env("CCC_LISTEN", format!("127.0.0.1:{port}"))
        .env("CCC_IMS_URL", ims.url())
        .env("CCC_IMS_CERT_URL", ims.cert_base_url())
        .env("CCC_IMS_REGION", world::REGION)
        .env(
            "CCC_CLIENT_IDS",
            format!("{},{}", world::UI_CLIENT, world::INTEGRATION_CLIENT),
        )
        .env("CCC_INTEGRATION_CLIENT_IDS", world::INTEGRATION_CLIENT)
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
    let pg_url = env_or("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test");

    let ims = DevIms::start("127.0.0.1:0").await.unwrap();
    let integration = ims.mint(&TokenSpec::service(
        world::INTEGRATION_CLIENT,
        &[world::READ_SCOPE],
    ));
    let mut user_scopes = world::USER_SCOPES.to_vec();
    user_scopes.push(world::ADMIN_SCOPE);
    let admin = ims.mint(&TokenSpec::user(
        world::ALICE_FEDERATED,
        world::UI_CLIENT,
        &user_scopes,
    ));

    // The baseline, in this same run.
    let port = free_port();
    let baseline_child = Command::new("target/release/examples/bench_baseline")
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
    let mut base_row = wrk(
        "baseline: bare actix + RS256, fixed body",
        &baseline.base,
        "/",
        "get_one.lua",
        &token_env,
        seconds,
        connections,
    );
    base_row.rss_mib = peak_rss_mib(&baseline.child);
    drop(baseline);

    let mut rows = vec![base_row];
    let mut notes = Vec::new();
    for backend in backends.split(',').map(str::trim).filter(|b| !b.is_empty()) {
        let (db_url, cleanup) = match backend {
            "sqlite" => {
                let dir = tempfile::tempdir().unwrap();
                (
                    format!("sqlite://{}/bench.db?mode=rwc", dir.path().display()),
                    Cleanup::Dir(dir),
                )
            }
            "postgres" => {
                let name = format!("ccc_bench_{}", uuid::Uuid::new_v4().simple());
                let admin_db = Database::connect(&pg_url).await.unwrap();
                admin_db
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .unwrap();
                let (server, _) = pg_url.rsplit_once('/').unwrap();
                (format!("{server}/{name}"), Cleanup::Pg(admin_db, name))
            }
            other => panic!("unknown backend {other}"),
        };
        seed(&db_url).await;
        let (service, ready_in) = start_service(&db_url, &ims).await;
        notes.push(format!("{backend}: start to ready {} ms", ready_in.as_millis()));

        let many = vec![
            ("BENCH_TOKEN", admin.clone()),
            ("BENCH_TENANTS", TENANTS.to_string()),
            ("BENCH_THREADS", THREADS.to_string()),
            ("BENCH_ORG_A", world::ACME_CREATIVE_ORG.to_owned()),
            ("BENCH_ORG_B", world::ACME_DESIGN_ORG.to_owned()),
        ];
        let put = wrk(
            &format!("{backend}: PUT switch, {TENANTS} tenants"),
            &service.base,
            "/",
            "put_many.lua",
            &many,
            seconds,
            connections,
        );
        let one = wrk(
            &format!("{backend}: GET connection, 1 tenant"),
            &service.base,
            "/",
            "get_one.lua",
            &token_env,
            seconds,
            connections,
        );
        let get_many_env = vec![
            ("BENCH_TOKEN", integration.clone()),
            ("BENCH_TENANTS", TENANTS.to_string()),
        ];
        let spread = wrk(
            &format!("{backend}: GET connection, {TENANTS} tenants"),
            &service.base,
            "/",
            "get_many.lua",
            &get_many_env,
            seconds,
            connections,
        );

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
        let cold_env = vec![
            ("BENCH_TOKENS_FILE", tokens_file.path().display().to_string()),
            ("BENCH_THREADS", THREADS.to_string()),
        ];
        let cold = wrk(
            &format!("{backend}: GET /users/me/orgs, IMS +50 ms, cold"),
            &service.base,
            "/",
            "tokens.lua",
            &cold_env,
            cold_seconds,
            connections,
        );
        let warm_token = ims.mint(&TokenSpec::user(
            world::ALICE_FEDERATED,
            world::UI_CLIENT,
            world::USER_SCOPES,
        ));
        std::fs::write(tokens_file.path(), vec![warm_token; 64].join("\n")).unwrap();
        let warm = wrk(
            &format!("{backend}: GET /users/me/orgs, IMS +50 ms, warm"),
            &service.base,
            "/",
            "tokens.lua",
            &cold_env,
            seconds,
            connections,
        );
        ims.faults().set_delay(Duration::ZERO);

        let rss = peak_rss_mib(&service.child);
        for mut row in [put, one, spread, cold, warm] {
            row.rss_mib = rss;
            rows.push(row);
        }
        drop(service);
        if let Cleanup::Pg(admin_db, name) = cleanup {
            let _ = admin_db
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
    }

    let base_rps = rows[0].rps.max(f64::MIN_POSITIVE);
    println!("\nwrk -t{THREADS} -c{connections} -d{seconds}s over loopback; 2-core machine, wrk included");
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
}

enum Cleanup {
    Dir(#[allow(dead_code)] tempfile::TempDir),
    Pg(sea_orm::DatabaseConnection, String),
}
