//! A circuit breaker for the IMS calls made with a caller's token (organizations, profile).
//!
//! Closed: calls go through; `failures_to_open` consecutive failures (timeout, unreachable, 5xx)
//! open it. Open: calls are refused at once, for `cool_down`, instead of each waiting out the IMS
//! timeout. Then half-open: one trial call goes through while the others wait for its outcome (so
//! a request that needs two calls is not refused for the second); its success closes the circuit,
//! its failure opens it for another cool-down and refuses the waiting calls. An answer from IMS that
//! is not a failure of IMS (a rejected token, a 429, an unexpected body) counts as a success: IMS
//! is there and answers quickly.
//!
//! Time is tokio's ([`tokio::time::Instant`]): the same as the system's monotonic clock in service,
//! and a paused, advanced clock in the tests, so the cool-down is tested without waiting it out.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::metrics::Metrics;

/// The breaker. One per IMS client.
#[derive(Debug)]
pub struct Breaker {
    failures_to_open: u32,
    cool_down: Duration,
    state: Mutex<State>,
    /// Wakes the calls waiting on a trial once it settled.
    settled: Notify,
    metrics: Arc<Metrics>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

impl State {
    fn label(self) -> &'static str {
        match self {
            Self::Closed { .. } => "closed",
            Self::Open { .. } => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// Leave to make one call; report its outcome with [`Permit::succeeded`] or [`Permit::failed`].
/// A permit dropped without an outcome (the request was cancelled) frees the trial slot.
#[must_use]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    trial: bool,
    reported: bool,
}

impl Breaker {
    /// Opens after `failures_to_open` consecutive failures (at least 1), for `cool_down`; its
    /// state and transitions are counted in `metrics`.
    pub fn new(failures_to_open: u32, cool_down: Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            failures_to_open: failures_to_open.max(1),
            cool_down,
            state: Mutex::new(State::Closed { failures: 0 }),
            settled: Notify::new(),
            metrics,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is one small value, always whole: a panic elsewhere cannot leave it torn.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Leave for one call, or how long until the open circuit lets calls through again. While a
    /// trial runs this waits for its outcome (the trial is bounded by the IMS timeout).
    pub async fn admit(&self) -> Result<Permit<'_>, Duration> {
        loop {
            // Registered before the state is read, so a trial settling in between is not missed.
            let settled = self.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            let trial = {
                let mut state = self.state();
                match *state {
                    State::Closed { .. } => Some(false),
                    State::Open { until } => {
                        let now = Instant::now();
                        if now < until {
                            self.metrics.ims_breaker_rejected.inc();
                            return Err(until - now);
                        }
                        transition(&self.metrics, &mut state, State::HalfOpen);
                        Some(true)
                    }
                    // A trial runs: wait for its outcome, then look again.
                    State::HalfOpen => None,
                }
            };
            match trial {
                Some(trial) => {
                    return Ok(Permit {
                        breaker: self,
                        trial,
                        reported: false,
                    });
                }
                None => settled.await,
            }
        }
    }

    /// Whether the circuit is closed (for tests and tools).
    pub fn is_closed(&self) -> bool {
        matches!(*self.state(), State::Closed { .. })
    }
}

impl Permit<'_> {
    /// IMS answered: the circuit closes.
    pub fn succeeded(mut self) {
        self.reported = true;
        let mut state = self.breaker.state();
        if *state != (State::Closed { failures: 0 }) {
            transition(&self.breaker.metrics, &mut state, State::Closed { failures: 0 });
        }
        drop(state);
        if self.trial {
            self.breaker.settled.notify_waiters();
        }
    }

    /// IMS failed (timeout, unreachable, 5xx).
    pub fn failed(mut self) {
        self.reported = true;
        let breaker = self.breaker;
        let mut state = breaker.state();
        let open = State::Open {
            until: Instant::now() + breaker.cool_down,
        };
        match *state {
            _ if self.trial => transition(&breaker.metrics, &mut state, open),
            State::Closed { failures } if failures + 1 >= breaker.failures_to_open => {
                tracing::warn!(
                    failures = failures + 1,
                    cool_down_ms = breaker.cool_down.as_millis() as u64,
                    "IMS keeps failing: circuit open, user calls answer 503 at once"
                );
                transition(&breaker.metrics, &mut state, open);
            }
            State::Closed { failures } => {
                *state = State::Closed {
                    failures: failures + 1,
                }
            }
            // A call admitted before the circuit opened: the trial decides, not this one.
            State::Open { .. } | State::HalfOpen => {}
        }
        drop(state);
        if self.trial {
            breaker.settled.notify_waiters();
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.trial && !self.reported {
            let mut state = self.breaker.state();
            if *state == State::HalfOpen {
                // The trial was cancelled: the next call may try instead.
                transition(
                    &self.breaker.metrics,
                    &mut state,
                    State::Open {
                        until: Instant::now(),
                    },
                );
            }
            drop(state);
            self.breaker.settled.notify_waiters();
        }
    }
}

fn transition(m: &Metrics, state: &mut State, to: State) {
    m.ims_breaker_state.with_label_values(&[state.label()]).set(0);
    m.ims_breaker_state.with_label_values(&[to.label()]).set(1);
    if state.label() != to.label() {
        m.ims_breaker_transitions.with_label_values(&[to.label()]).inc();
        if matches!(to, State::Closed { .. }) {
            tracing::info!("IMS answers again: circuit closed");
        }
    }
    *state = to;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use tokio::time::advance;

    use super::*;
    use crate::error::RetryAfter;

    /// The time an open circuit tells a call to wait, or `None` if it let the call through (its
    /// permit dropped unreported).
    async fn refused_for(b: &Breaker) -> Option<Duration> {
        b.admit().await.err()
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_and_a_success_resets_the_count() {
        let b = Breaker::new(3, Duration::from_secs(60), Arc::default());
        b.admit().await.unwrap().failed();
        b.admit().await.unwrap().failed();
        b.admit().await.unwrap().succeeded();
        b.admit().await.unwrap().failed();
        b.admit().await.unwrap().failed();
        assert!(b.is_closed());
        b.admit().await.unwrap().failed();
        assert!(!b.is_closed());
        assert_eq!(refused_for(&b).await, Some(Duration::from_secs(60)));
    }

    #[tokio::test(start_paused = true)]
    async fn open_refuses_with_the_time_left_then_one_trial_after_the_cool_down_closes_it() {
        let cool_down = Duration::from_secs(3);
        let b = Breaker::new(2, cool_down, Arc::default());
        b.admit().await.unwrap().failed();
        b.admit().await.unwrap().failed();
        // Open: every call is refused at once with the time left, which counts down (the 503's
        // Retry-After, in whole seconds rounded up).
        let opened = Instant::now();
        for (elapsed_ms, left_ms, retry_after) in [
            (0, 3_000, 3),
            (1, 2_999, 3),
            (999, 2_001, 3),
            (1_000, 2_000, 2),
            (2_500, 500, 1),
            (2_999, 1, 1),
        ] {
            tokio::time::sleep_until(opened + Duration::from_millis(elapsed_ms)).await;
            let wait = refused_for(&b).await.unwrap();
            assert_eq!(wait, Duration::from_millis(left_ms), "after {elapsed_ms} ms");
            assert_eq!(RetryAfter::after(wait).as_secs(), retry_after);
        }
        tokio::time::sleep_until(opened + cool_down).await;
        // The cool-down is over: the next call is the trial; its success closes the circuit.
        let trial = b.admit().await.unwrap();
        assert!(!b.is_closed(), "half-open while the trial runs");
        trial.succeeded();
        assert!(b.is_closed());
        // Closed again with the failure count reset: one failure does not open it.
        b.admit().await.unwrap().failed();
        assert!(b.is_closed());
        assert!(b.admit().await.is_ok());
    }

    /// A breaker that opens at the first failure, for `cool_down`, opened now.
    async fn opened_for(cool_down: Duration) -> Breaker {
        let b = Breaker::new(1, cool_down, Arc::default());
        b.admit().await.unwrap().failed();
        b
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_cool_down_one_trial_goes_through_and_the_others_wait_for_it() {
        let cool_down = Duration::from_secs(5);
        let b = opened_for(cool_down).await;
        assert!(b.admit().await.is_err());
        advance(cool_down).await;
        let trial = b.admit().await.unwrap();
        let waiting = b.admit();
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(Duration::from_secs(1), waiting.as_mut())
                .await
                .is_err(),
            "only one trial at a time: the others wait"
        );
        trial.failed();
        assert_eq!(
            waiting.await.err(),
            Some(cool_down),
            "a failed trial refuses the waiting calls, for a whole cool-down from its failure"
        );
        advance(cool_down - Duration::from_millis(1)).await;
        assert_eq!(refused_for(&b).await, Some(Duration::from_millis(1)));
        advance(Duration::from_millis(1)).await;
        let trial = b.admit().await.unwrap();
        let waiting = tokio::join!(b.admit(), async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            trial.succeeded();
        })
        .0;
        assert!(
            waiting.is_ok(),
            "a successful trial lets the waiting calls through"
        );
        assert!(b.is_closed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_admitted_before_the_circuit_opened_does_not_extend_it() {
        let cool_down = Duration::from_secs(5);
        let b = Breaker::new(1, cool_down, Arc::default());
        let late = b.admit().await.unwrap();
        b.admit().await.unwrap().failed();
        advance(Duration::from_secs(4)).await;
        // It fails four seconds later: the circuit still opens again at the first failure's end.
        late.failed();
        assert_eq!(refused_for(&b).await, Some(Duration::from_secs(1)));
        advance(Duration::from_secs(1)).await;
        assert!(b.admit().await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_trial_lets_the_next_call_try() {
        let cool_down = Duration::from_secs(5);
        let b = opened_for(cool_down).await;
        advance(cool_down).await;
        drop(b.admit().await.unwrap());
        assert!(!b.is_closed());
        let trial = b.admit().await.unwrap();
        trial.succeeded();
        assert!(b.is_closed());
    }
}
