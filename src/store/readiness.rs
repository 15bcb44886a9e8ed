//! The database half of `/readyz`, beside the store it asks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::Store;

/// How long `/readyz` reuses the database's answer.
pub const READINESS_TTL: Duration = Duration::from_secs(1);

/// The database half of `/readyz`, asked at most once per [`READINESS_TTL`] however many probes
/// come: a flood of probes cannot take connections from the API. Concurrent probes wait for the
/// one check in flight.
#[derive(Debug, Default)]
pub struct DbReadiness {
    last: tokio::sync::Mutex<Option<(Instant, bool)>>,
    checks: AtomicU64,
}

impl DbReadiness {
    /// Whether the database answered, as of at most [`READINESS_TTL`] ago.
    pub async fn check(&self, store: &Store) -> bool {
        let mut last = self.last.lock().await;
        if let Some((at, ok)) = *last
            && at.elapsed() < READINESS_TTL
        {
            return ok;
        }
        self.checks.fetch_add(1, Ordering::Relaxed);
        let ok = store.ping().await.is_ok();
        *last = Some((Instant::now(), ok));
        ok
    }

    /// How many times the database was actually asked.
    pub fn checks(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }
}
