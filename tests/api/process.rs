//! The real `cc-connection serve` binary as a child process, configured like production (environment
//! only) against a development IMS of the test.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cc_connection::dev_ims::{DevIms, world};

/// A free TCP port on loopback (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `serve` process; killed when dropped.
pub struct ServeProcess {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The child (stderr is piped: the JSON log).
    pub child: Child,
}

/// `cc-connection serve` with the production settings pointed at `ims` and `database_url`.
pub fn serve_command(ims: &DevIms, database_url: &str, port: u16) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cc-connection"));
    cmd.arg("serve")
        .env("DATABASE_URL", database_url)
        .env("CCC_LISTEN", format!("127.0.0.1:{port}"))
        .env("CCC_IMS_URL", ims.url())
        .env("CCC_IMS_CERT_URL", ims.cert_base_url())
        .env("CCC_IMS_REGION", world::REGION)
        .env(
            "CCC_CLIENT_IDS",
            format!("{},{}", world::UI_CLIENT, world::INTEGRATION_CLIENT),
        )
        .env("CCC_INTEGRATION_CLIENT_IDS", world::INTEGRATION_CLIENT)
        // The replicas' load switches as one administrator far past a person's pace.
        .env("CCC_IMS_RATE_PER_MINUTE", "0")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

impl ServeProcess {
    /// Starts `serve` on a free port (it migrates the database itself).
    pub fn spawn(ims: &DevIms, database_url: &str) -> ServeProcess {
        let port = free_port();
        let child = serve_command(ims, database_url, port)
            // Only the exit status matters here: do not let a full pipe block the child.
            .stderr(Stdio::null())
            .spawn()
            .expect("cc-connection serve starts");
        ServeProcess {
            base: format!("http://127.0.0.1:{port}"),
            child,
        }
    }

    /// Waits until `/readyz` answers 200 (at most 10 s).
    pub async fn wait_ready(&self, client: &reqwest::Client) {
        for _ in 0..400 {
            if client
                .get(format!("{}/readyz", self.base))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{} did not become ready", self.base);
    }

    /// Sends SIGTERM, as Kubernetes does when it stops a pod.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
