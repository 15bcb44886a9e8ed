//! The database's availability as this replica sees it, so that an outage is calm: while the
//! database is unreachable, requests answer 503 at once instead of each trying to connect, one
//! request at a time goes through as a probe (after a back-off that doubles, with jitter, up to
//! [`MAX_BACKOFF`]), and the log says one line when the outage starts and one when it ends (with
//! how many requests it failed), not a line per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::StoreError;

/// The first wait before a probe once the database is found unreachable.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest wait between probes.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
struct State {
    /// When the outage began; `None` while the database answers.
    down_since: Option<Instant>,
    /// Requests refused or failed since the outage began.
    failures: u64,
    backoff: Duration,
    next_probe: Option<Instant>,
    /// When the last outage (this one, or one that ended) began.
    last_began: Option<Instant>,
}

/// See the module documentation. One per store (pool).
#[derive(Debug, Default)]
pub(crate) struct Outage {
    state: Mutex<State>,
    /// Database waits failed or refused because the database was unreachable, ever.
    unavailable: AtomicU64,
}

impl Outage {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state consistent: go on after a panic elsewhere.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the database is unreachable now, and the waits it failed or refused so far.
    pub(crate) fn stats(&self) -> (bool, u64) {
        let down = self.lock().down_since.is_some();
        (down, self.unavailable.load(Ordering::Relaxed))
    }

    /// Whether a database wait may start now: always while the database answers; during an
    /// outage only the probe, once per back-off.
    pub(crate) fn admit(&self) -> Result<(), StoreError> {
        let mut state = self.lock();
        if state.down_since.is_none() {
            return Ok(());
        }
        let now = Instant::now();
        if state.next_probe.is_none_or(|at| now >= at) {
            // This request is the probe; the next one waits a longer back-off even if this one
            // never comes back.
            state.backoff = (state.backoff * 2).min(MAX_BACKOFF);
            state.next_probe = Some(now + jittered(state.backoff));
            return Ok(());
        }
        state.failures += 1;
        self.unavailable.fetch_add(1, Ordering::Relaxed);
        Err(StoreError::Unavailable(sea_orm::DbErr::Conn(
            sea_orm::RuntimeErr::Internal(
                "the database is unreachable; waiting before the next attempt".to_owned(),
            ),
        )))
    }

    /// Whether a pooled connection idle for `idle_for` was last given back before the last outage
    /// began (it may lead to a host gone silent).
    pub(crate) fn predates_last_outage(&self, idle_for: Duration) -> bool {
        let last_began = self.lock().last_began;
        last_began.is_some_and(|began| {
            Instant::now()
                .checked_sub(idle_for)
                .is_some_and(|released| released < began)
        })
    }

    /// Records how a database wait ended: `unreachable` says whether its error (if any) means the
    /// database could not be reached.
    pub(crate) fn record<T>(&self, result: &Result<T, StoreError>, unreachable: bool) {
        match result {
            Err(e) if unreachable => self.failed(e),
            _ => self.answered(),
        }
    }

    fn answered(&self) {
        let mut state = self.lock();
        if let Some(since) = state.down_since.take() {
            tracing::warn!(
                failed_requests = state.failures,
                outage_ms = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX),
                "database answering again"
            );
            *state = State {
                last_began: state.last_began,
                ..State::default()
            };
        }
    }

    fn failed(&self, e: &StoreError) {
        let mut state = self.lock();
        state.failures += 1;
        self.unavailable.fetch_add(1, Ordering::Relaxed);
        if state.down_since.is_none() {
            let cause = e.source_text();
            tracing::warn!(
                %cause,
                "database unavailable; answering 503 and probing it with back-off until it answers"
            );
            state.down_since = Some(Instant::now());
            state.last_began = state.down_since;
            state.backoff = FIRST_BACKOFF;
            state.next_probe = Some(Instant::now() + jittered(FIRST_BACKOFF));
        }
    }
}

/// `d` scaled by a random factor in [0.5, 1.5): replicas that lost the database together do not
/// probe it in step.
pub(crate) fn jittered(d: Duration) -> Duration {
    let r = (uuid::Uuid::new_v4().as_u128() % 1000) as f64 / 1000.0;
    d.mul_f64(0.5 + r)
}

impl StoreError {
    /// The underlying database error's text, for logs.
    fn source_text(&self) -> String {
        match self {
            Self::Unavailable(cause) | Self::OutcomeUnknown(cause) | Self::Database(cause) => {
                cause.to_string()
            }
            other => other.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down() -> StoreError {
        StoreError::Unavailable(sea_orm::DbErr::Conn(sea_orm::RuntimeErr::Internal("gone".into())))
    }

    #[test]
    fn an_outage_admits_one_probe_per_backoff_and_ends_on_an_answer() {
        let outage = Outage::default();
        assert!(outage.admit().is_ok(), "up: everything goes");
        outage.record::<()>(&Err(down()), true);
        assert!(outage.admit().is_err(), "down: refused before the first back-off");
        {
            let mut s = outage.lock();
            s.next_probe = Some(Instant::now());
        }
        assert!(outage.admit().is_ok(), "the probe");
        assert!(outage.admit().is_err(), "one probe per back-off");
        outage.record(&Ok(()), false);
        assert!(outage.admit().is_ok(), "up again");
        for _ in 0..100 {
            let j = jittered(Duration::from_millis(1000));
            assert!(j >= Duration::from_millis(500) && j < Duration::from_millis(1500));
        }
    }
}
