//! A throwaway PostgreSQL cluster: the machine's server binaries (`initdb`, `pg_ctl`,
//! `pg_basebackup` under `/usr/lib/postgresql/*/bin`) running a cluster of its own in a temporary
//! folder, on a port of its own, with trust authentication for `postgres`. The fault and failover
//! tests stop, kill and promote one; the benchmark runs its PostgreSQL rows on one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The first `/usr/lib/postgresql/*/bin` that holds every one of `tools`, if the machine has one.
pub fn server_bin(tools: &[&str]) -> Option<PathBuf> {
    std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .find(|bin| tools.iter().all(|tool| bin.join(tool).exists()))
}

/// [`server_bin`], where `None` lets a test pass without running outside CI: under CI
/// (`CI=true`) a machine without the binaries fails the test instead.
pub fn server_bin_or_skip(tools: &[&str]) -> Option<PathBuf> {
    let bin = server_bin(tools);
    assert!(
        bin.is_some() || std::env::var("CI").as_deref() != Ok("true"),
        "CI needs PostgreSQL's {}",
        tools.join(", ")
    );
    bin
}

/// One PostgreSQL server of the machine's binaries, its data and log in a temporary folder; killed
/// (`pg_ctl stop -m immediate`) when dropped.
pub struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    options: String,
    core: Option<String>,
}

impl Cluster {
    /// The place of a new cluster: a temporary folder named `prefix…` (owned by `postgres`, which
    /// the server runs as under root) and a port free now. Nothing is created or started yet: see
    /// [`Cluster::primary`] and [`Cluster::standby_of`].
    pub fn new(bin: &Path, prefix: &str) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .expect("a temporary folder for the cluster");
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port for the cluster")
            .port();
        Cluster {
            bin: bin.to_owned(),
            dir,
            port,
            options: String::new(),
            core: None,
        }
    }

    /// Server settings added to those [`Cluster::start`] gives (`-c name=value …`).
    pub fn with_options(mut self, options: &str) -> Cluster {
        self.options = options.to_owned();
        self
    }

    /// Every tool of the cluster, and so the server, runs on CPU `core` (`taskset -c`).
    pub fn pinned(mut self, core: &str) -> Cluster {
        self.core = Some(core.to_owned());
        self
    }

    /// A new cluster (`initdb`), started.
    pub fn primary(self) -> Cluster {
        self.run("initdb", &["-A", "trust", "-U", "postgres", "-D", &self.data()]);
        self.start();
        self
    }

    /// A streaming standby of `primary` (`pg_basebackup -R`), started.
    pub fn standby_of(self, primary: &Cluster) -> Cluster {
        let port = primary.port.to_string();
        self.run(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-D",
                &self.data(),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
            ],
        );
        self.start();
        self
    }

    /// Starts the server on its port of loopback (and its socket in its folder) and waits until
    /// it accepts connections.
    pub fn start(&self) {
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        if !self.options.is_empty() {
            options = format!("{options} {}", self.options);
        }
        let log = self.dir.path().join("log").display().to_string();
        self.run(
            "pg_ctl",
            &["start", "-w", "-D", &self.data(), "-o", &options, "-l", &log],
        );
    }

    /// Stops the server the polite way (`-m fast`: sessions are ended, then a clean shutdown).
    pub fn stop(&self) {
        self.run("pg_ctl", &["stop", "-w", "-m", "fast", "-D", &self.data()]);
    }

    /// The server dies (`-m immediate`: its connections end on its side, no clean shutdown).
    pub fn kill(&self) {
        self.run("pg_ctl", &["stop", "-w", "-m", "immediate", "-D", &self.data()]);
    }

    /// A former primary, stopped, made a standby of `source` (the primary promoted in its place):
    /// `pg_rewind` winds its data back to where the two timelines parted and writes the standby
    /// settings (`-R`); then it is started. Needs `wal_log_hints=on` (or checksums) on it.
    pub fn rewind_to_standby_of(&self, source: &Cluster) {
        // A primary that died is recovered first with its own settings, then shut down cleanly:
        // pg_rewind's own recovery would run without them (and forget wal_log_hints).
        self.start();
        self.stop();
        // The promoted source records its new timeline in its control file at a checkpoint: until
        // then pg_rewind would see one timeline and rewind nothing.
        let port = source.port.to_string();
        source.run(
            "psql",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-c",
                "CHECKPOINT",
            ],
        );
        let conninfo = format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            source.port
        );
        self.run(
            "pg_rewind",
            &["-D", &self.data(), "--source-server", &conninfo, "-R"],
        );
        self.start();
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// A standby becomes a primary.
    pub fn promote(&self) {
        self.run("pg_ctl", &["promote", "-w", "-D", &self.data()]);
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The URL of its `postgres` database as `postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The data folder.
    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// `tool` of the server binaries, as `postgres` when this runs as root (PostgreSQL refuses to
    /// run as root; CI runs as root), on the cluster's core when pinned.
    fn tool(&self, tool: &str) -> Command {
        let mut argv: Vec<String> = Vec::new();
        if let Some(core) = &self.core {
            argv.extend(["taskset".into(), "-c".into(), core.clone()]);
        }
        if running_as_root() {
            argv.extend(["runuser", "-u", "postgres", "--"].map(String::from));
        }
        argv.push(self.bin.join(tool).display().to_string());
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        cmd
    }

    /// Runs `tool` with `args`; panics with its stderr unless it succeeds.
    fn run(&self, tool: &str, args: &[&str]) {
        let out = self
            .tool(tool)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{tool} runs: {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .tool("pg_ctl")
            .args(["stop", "-w", "-m", "immediate", "-D", &self.data()])
            .output();
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"))
}
