//! The real `cc-connection serve` binary as a child process, configured like production (environment
//! only) against a development IMS of the test. It binds port 0 itself and its startup log line
//! says which port it got: no port is picked before the child binds it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cc_connection::dev_ims::DevIms;

use crate::common::db::{self, Backend, TestDb};
use crate::helpers::{wait_for, wait_ready};

/// One `serve` process, ready, on a fresh SQLite database holding the demo tenant, with a
/// development IMS of its own: what the SIGTERM tests stop.
pub struct LoneReplica {
    /// Its IMS.
    pub ims: DevIms,
    /// The process.
    pub replica: ServeProcess,
    /// A client for it.
    pub client: reqwest::Client,
    /// Its database.
    pub url: String,
    /// The database's folder (removed when dropped: keep it as long as the process).
    pub dir: tempfile::TempDir,
}

/// Starts a [`LoneReplica`] on `<name>.db`.
pub async fn lone_replica(name: &str) -> LoneReplica {
    let ims = DevIms::start("127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/{name}.db?mode=rwc", dir.path().display());
    let replica = ServeProcess::spawn(&ims, &url);
    let client = reqwest::Client::new();
    replica.wait_ready(&client).await;
    crate::helpers::add_demo_tenant_at(&url).await;
    LoneReplica {
        ims,
        replica,
        client,
        url,
        dir,
    }
}

/// A running `serve` process; killed when dropped.
pub struct ServeProcess {
    /// The child (its stderr, the JSON log, is read by `log_reader`).
    pub child: Child,
    /// `http://127.0.0.1:<port>`, once `wait_ready` read the port from the log.
    base: OnceLock<String>,
    /// Every log line so far.
    log: Arc<Mutex<String>>,
    /// The port of the startup line, once it was written.
    port: Arc<OnceLock<u16>>,
    /// Drains stderr until the child closes it, so a full pipe never blocks the child.
    log_reader: Option<JoinHandle<()>>,
}

/// `cc-connection serve` with the production settings pointed at `ims` and `database_url`, on
/// port 0 of loopback.
pub fn serve_command(ims: &DevIms, database_url: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cc-connection"));
    cc_connection_testkit::serve_command(&mut cmd, ims, database_url, "127.0.0.1:0")
        // The replicas' load switches as one administrator far past a person's pace.
        .env("CCC_IMS_RATE_PER_MINUTE", "0")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// One `serve` per URL in `database_urls`, all started at once (their migrations race), returned
/// when every one is ready.
pub async fn serve_replicas<'a>(
    ims: &DevIms,
    database_urls: impl IntoIterator<Item = &'a str>,
    client: &reqwest::Client,
) -> Vec<ServeProcess> {
    let replicas: Vec<ServeProcess> = database_urls
        .into_iter()
        .map(|url| ServeProcess::spawn(ims, url))
        .collect();
    for replica in &replicas {
        replica.wait_ready(client).await;
    }
    replicas
}

/// A development IMS and a fresh PostgreSQL database, for a test that needs PostgreSQL.
pub async fn ims_and_postgres() -> (DevIms, TestDb) {
    db::require_postgres();
    let ims = DevIms::start("127.0.0.1:0").await.unwrap();
    (ims, db::fresh(Backend::Postgres).await)
}

/// `n` `serve` processes on one fresh PostgreSQL database, all started at once (their migrations
/// race), with their development IMS and a client; returned when every one is ready.
pub async fn replicas_on_postgres(n: usize) -> (DevIms, TestDb, reqwest::Client, Vec<ServeProcess>) {
    let (ims, db) = ims_and_postgres().await;
    let client = reqwest::Client::new();
    let replicas = serve_replicas(&ims, vec![db.url.as_str(); n], &client).await;
    (ims, db, client, replicas)
}

/// The port in `serve`'s startup line (`"message":"cc-connection serving"`), if `line` is it.
fn serving_port(line: &str) -> Option<u16> {
    let line: serde_json::Value = serde_json::from_str(line).ok()?;
    if line["message"] != "cc-connection serving" {
        return None;
    }
    u16::try_from(line["port"].as_u64()?).ok()
}

impl ServeProcess {
    /// Starts `serve` (it migrates the database itself) and returns at once: several can start
    /// together.
    pub fn spawn(ims: &DevIms, database_url: &str) -> ServeProcess {
        Self::start(&mut serve_command(ims, database_url))
    }

    /// Starts `cmd`, a `serve_command` the test adjusted.
    pub fn start(cmd: &mut Command) -> ServeProcess {
        let mut child = cmd.spawn().expect("cc-connection serve starts");
        let stderr = child.stderr.take().expect("serve_command pipes stderr");
        let (log, port) = (Arc::new(Mutex::new(String::new())), Arc::new(OnceLock::new()));
        let log_reader = std::thread::spawn({
            let (log, port) = (log.clone(), port.clone());
            move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(p) = serving_port(&line) {
                        let _ = port.set(p);
                    }
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
        ServeProcess {
            child,
            base: OnceLock::new(),
            log,
            port,
            log_reader: Some(log_reader),
        }
    }

    /// Waits for the port `serve` bound, then until `/readyz` answers 200.
    pub async fn wait_ready(&self, client: &reqwest::Client) {
        wait_for("serve to log the port it bound", Duration::from_secs(10), || {
            let bound = self.port.get().is_some();
            async move { bound }
        })
        .await;
        let base = self
            .base
            .get_or_init(|| format!("http://127.0.0.1:{}", self.port.get().unwrap()));
        wait_ready(client, base).await;
    }

    /// `http://127.0.0.1:<port>`; only after `wait_ready`.
    pub fn base(&self) -> &str {
        self.base.get().expect("wait_ready first")
    }

    /// Sends SIGTERM, as Kubernetes does when it stops a pod.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits for the process to exit by itself, at the latest `within` after `since`; fails the test
    /// with `why` otherwise. Returns how it exited.
    pub async fn exit_within(&mut self, since: Instant, within: Duration, why: &str) -> ExitStatus {
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(since.elapsed() < within, "{why}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// [`ServeProcess::exit_within`], and asserts the process exited 0 (it was asked to stop).
    pub async fn exits_cleanly_within(mut self, since: Instant, within: Duration, why: &str) {
        let status = self.exit_within(since, within, why).await;
        assert!(status.success(), "serve exits 0 after SIGTERM: {status}");
    }

    /// Kills the process and returns its whole log.
    pub fn kill_and_log(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.log_reader.take() {
            let _ = reader.join();
        }
        self.log.lock().unwrap().clone()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
