//! What the benchmark drivers share (the library of the benchmarks' crate): the database of a run
//! and its seed, the running service and its memory, and small helpers
//! (environment knobs, a free port, wrk's durations).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cc_connection::dev_ims::{DevIms, TokenSpec, world};
use cc_connection::domain::{OrgId, Revision, TenantId, UserId};
use cc_connection::entity::{connection, tenant};
use cc_connection::store::{DbOptions, Store};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, EntityTrait, Set};

/// Registers `tenants` tenants `t00000`.. in the database at `url` (migrated first), each connected
/// to the development IMS's "Acme Creative" at revision 1: the state the read rows measure.
pub async fn seed(url: &str, tenants: usize) {
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
    for chunk in (0..tenants).collect::<Vec<_>>().chunks(500) {
        let rows = chunk.iter().map(|i| tenant::ActiveModel {
            tenant_id: Set(TenantId::parse(&format!("t{i:05}")).unwrap()),
            home_org: Set(OrgId::parse(world::ACME_HOME_ORG).unwrap()),
            admin_groups: Set(format!("[\"{}\"]", world::ACME_ADMIN_GROUP)),
            revision: Set(Revision::new(1)),
            created_at: Set(now),
            removed_at: Set(None),
            version: Set(Revision::new(1)),
            registered_at: Set(now),
            updated_at: Set(now),
        });
        tenant::Entity::insert_many(rows)
            .exec(store.connection())
            .await
            .unwrap();
        let rows = chunk.iter().map(|i| connection::ActiveModel {
            tenant_id: Set(TenantId::parse(&format!("t{i:05}")).unwrap()),
            org_id: Set(OrgId::parse(world::ACME_CREATIVE_ORG).unwrap()),
            org_name: Set("Acme Creative".to_owned()),
            connected_by: Set(UserId::parse(world::ALICE_FEDERATED).unwrap()),
            connected_at: Set(now),
            revision: Set(Revision::new(1)),
            active: Set(true),
            ..Default::default()
        });
        connection::Entity::insert_many(rows)
            .exec(store.connection())
            .await
            .unwrap();
    }
    store.close().await;
}

/// The environment variable `name`, or `default`.
pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// A port free now, for a child `serve` (it logs the port it bound, but its log is not read here).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A duration as wrk prints it (`812.00us`, `1.20ms`, `2.00s`, `1.00m`), in milliseconds.
pub fn parse_duration_ms(s: &str) -> f64 {
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

/// The two tokens the load uses: the integration's service token (read scope) and the demo
/// administrator's user token (admin scope), minted by `ims`.
pub struct Tokens {
    /// The integration's service token.
    pub integration: String,
    /// Alice's administrator token.
    pub admin: String,
}

/// Mints the [`Tokens`].
pub fn tokens(ims: &DevIms) -> Tokens {
    let mut admin_scopes = world::USER_SCOPES.to_vec();
    admin_scopes.push(world::ADMIN_SCOPE);
    Tokens {
        integration: ims.mint(&TokenSpec::service(
            world::INTEGRATION_CLIENT,
            &[world::READ_SCOPE],
        )),
        admin: ims.mint(&TokenSpec::user(
            world::ALICE_FEDERATED,
            world::UI_CLIENT,
            &admin_scopes,
        )),
    }
}

/// A process under measurement, killed when dropped.
pub struct Service {
    pub child: Child,
    pub base: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A memory figure of `child` from `/proc/<pid>/status` in MiB: `field` is `VmRSS:` (now) or
/// `VmHWM:` (peak).
pub fn memory_mib(child: &Child, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// The database of one backend's rows: a file in a temporary folder (`sqlite`), or a database of
/// its own on the server of `pg_url` (`postgres`), dropped by [`BenchDb::remove`].
pub struct BenchDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    postgres: Option<(DatabaseConnection, String)>,
}

impl BenchDb {
    pub async fn create(backend: &str, pg_url: &str) -> Self {
        match backend {
            "sqlite" => {
                let dir = tempfile::tempdir().unwrap();
                Self {
                    url: format!("sqlite://{}/bench.db?mode=rwc", dir.path().display()),
                    _dir: Some(dir),
                    postgres: None,
                }
            }
            "postgres" => {
                let name = format!("ccc_bench_{}", uuid::Uuid::new_v4().simple());
                let admin_db = Database::connect(pg_url).await.unwrap();
                admin_db
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .unwrap();
                let (server, _) = pg_url.rsplit_once('/').unwrap();
                Self {
                    url: format!("{server}/{name}"),
                    _dir: None,
                    postgres: Some((admin_db, name)),
                }
            }
            other => panic!("unknown backend {other}"),
        }
    }

    /// Drops the PostgreSQL database (the SQLite folder goes with `self`).
    pub async fn remove(self) {
        if let Some((admin_db, name)) = &self.postgres {
            let _ = admin_db
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
    }
}

/// Starts `serve` (the binary at `BENCH_BIN`, else the release build `script` makes) on `db_url`
/// with `env` added, logging warnings only, and waits until it is ready.
pub async fn start_service(db_url: &str, ims: &DevIms, script: &str, env: &[(&str, &str)]) -> Service {
    let port = free_port();
    let bin = env_or("BENCH_BIN", "target/release/cc-connection");
    let mut cmd = Command::new(&bin);
    let child = cc_connection_testkit::serve_command(&mut cmd, ims, db_url, &format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{bin} ({script} builds it): {e}"));
    let service = Service {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    for _ in 0..800 {
        if client
            .get(format!("{}/readyz", service.base))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return service;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{} not ready", service.base);
}

/// The values of the samples named in `prefixes` (name and labels, then a space) on `/metrics`,
/// 0 for one not there.
pub async fn metric_values<const N: usize>(
    client: &reqwest::Client,
    base: &str,
    prefixes: [&str; N],
) -> [f64; N] {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    prefixes.map(|prefix| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    })
}

/// `GET url` with `token`, its JSON body.
pub async fn get_json(client: &reqwest::Client, url: &str, token: &str) -> serde_json::Value {
    client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
