//! Real database faults: a throwaway PostgreSQL cluster (the machine's initdb/pg_ctl, its own port)
//! stopped and started under the running service.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use cc_connection::dev_ims::world;
use reqwest::Method;

use crate::common::db::Backend;
use crate::helpers::{assert_problem, spawn_app_with};

struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

fn as_postgres(bin: &std::path::Path, tool: &str) -> Command {
    // PostgreSQL refuses to run as root; CI runs as root.
    let running_as_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    if running_as_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    }
}

impl Cluster {
    /// A new cluster, or `None` where the machine has no PostgreSQL server binaries (then, under
    /// CI, the test fails instead of skipping).
    fn start() -> Option<Cluster> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .find(|p| p.join("initdb").exists())?;
        let dir = tempfile::Builder::new().prefix("ccc-pg-").tempdir().ok()?;
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let data = dir.path().join("data");
        let ok = as_postgres(&bin, "initdb")
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&data)
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(ok, "initdb failed");
        let cluster = Cluster { bin, dir, port };
        cluster.pg_ctl("start");
        Some(cluster)
    }

    fn pg_ctl(&self, action: &str) {
        let data = self.dir.path().join("data");
        let mut cmd = as_postgres(&self.bin, "pg_ctl");
        cmd.args([action, "-w", "-m", "fast", "-D"]).arg(&data);
        if action != "stop" {
            cmd.args([
                "-o",
                &format!(
                    "-p {} -k {} -c listen_addresses=127.0.0.1",
                    self.port,
                    self.dir.path().display()
                ),
            ])
            .arg("-l")
            .arg(self.dir.path().join("log"));
        }
        let out = cmd.output().expect("pg_ctl runs");
        assert!(
            out.status.success(),
            "pg_ctl {action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = as_postgres(&self.bin, "pg_ctl")
            .args(["stop", "-w", "-m", "immediate", "-D"])
            .arg(&data)
            .output();
    }
}

#[tokio::test]
async fn a_database_outage_is_503_database_unavailable_and_heals_without_restart() {
    let Some(cluster) = Cluster::start() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI needs PostgreSQL's initdb and pg_ctl"
        );
        return;
    };
    let url = cluster.url();
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.database_url = Some(url);
        c.db_connect_timeout_ms = 1_000;
    })
    .await;
    let admin = app.admin_token();
    assert_eq!(
        app.put_connection(&admin, world::ACME_CREATIVE_ORG)
            .await
            .status(),
        201
    );
    let reader = app.integration_token();
    assert_eq!(app.get_connection(&reader).await.status(), 200);

    cluster.pg_ctl("stop");
    let res = app.get_connection(&reader).await;
    assert!(res.headers().contains_key("retry-after"));
    assert_problem(res, 503, "database-unavailable").await;
    let res = app.put_connection(&admin, world::ACME_DESIGN_ORG).await;
    assert_problem(res, 503, "database-unavailable").await;
    let ready = app.request(Method::GET, "/readyz", None).send().await.unwrap();
    assert_eq!(ready.status(), 503);

    cluster.pg_ctl("start");
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
    assert_eq!(
        app.request(Method::GET, "/readyz", None)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
