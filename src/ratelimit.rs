//! A token bucket per caller in front of the routes that call IMS with the caller's token (switch,
//! disconnect, org listing), so one user cannot spend the service's share of IMS.
//!
//! The bucket itself is `governor`'s GCRA (one atomic word per caller); the buckets live in a
//! bounded moka cache that drops a bucket once it has been idle long enough to be full again, so
//! forgetting it changes no answer and memory stays bounded however many callers come and go.
//!
//! The buckets read `governor`'s clock: the system's monotonic clock in service
//! ([`ImsRateLimiter::new`]), a fake one the tests advance ([`ImsRateLimiter::with_clock`]).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use moka::sync::Cache;

/// How many callers' buckets are kept at most (a bucket is a few dozen bytes). Past it the least
/// recently used are dropped: such a caller starts again with a full bucket.
const MAX_BUCKETS: u64 = 100_000;

/// One caller's bucket, on the clock `C`.
type Bucket<C> = RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// Per-caller limits on IMS-bound requests, on the clock `C`. Cheap to clone.
#[derive(Clone)]
pub struct ImsRateLimiter<C: Clock = DefaultClock> {
    inner: Option<Arc<Inner<C>>>,
}

struct Inner<C: Clock> {
    quota: Quota,
    buckets: Cache<String, Arc<Bucket<C>>>,
    clock: C,
}

impl<C: Clock> std::fmt::Debug for ImsRateLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImsRateLimiter")
            .field("enabled", &self.inner.is_some())
            .finish_non_exhaustive()
    }
}

impl ImsRateLimiter {
    /// `per_minute` requests a minute on average per caller, up to `burst` at once; `per_minute`
    /// 0 turns the limit off.
    pub fn new(per_minute: u32, burst: u32) -> Self {
        Self::with_clock(per_minute, burst, DefaultClock::default())
    }
}

impl<C> ImsRateLimiter<C>
where
    C: Clock + Clone + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    /// Like [`ImsRateLimiter::new`], with the buckets reading `clock`.
    pub fn with_clock(per_minute: u32, burst: u32, clock: C) -> Self {
        let Some(rate) = NonZeroU32::new(per_minute) else {
            return Self { inner: None };
        };
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_minute(rate).allow_burst(burst);
        // Idle this long, a bucket is full again: dropping it then is the same as keeping it.
        let refill = quota.replenish_interval() * burst.get();
        let buckets = Cache::builder()
            .max_capacity(MAX_BUCKETS)
            .time_to_idle(refill.max(Duration::from_secs(1)))
            .build();
        Self {
            inner: Some(Arc::new(Inner {
                quota,
                buckets,
                clock,
            })),
        }
    }

    /// Takes one request from `caller`'s bucket, or says how long until one is available.
    pub fn check(&self, caller: &str) -> Result<(), Duration> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        let bucket = inner.buckets.get_with_by_ref(caller, || {
            Arc::new(RateLimiter::direct_with_clock(inner.quota, inner.clock.clone()))
        });
        bucket
            .check()
            .map_err(|not_until| not_until.wait_time_from(inner.clock.now()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use governor::clock::FakeRelativeClock;

    use super::*;
    use crate::error::RetryAfter;

    /// A limiter on a clock the test advances.
    fn on_fake_clock(per_minute: u32, burst: u32) -> (ImsRateLimiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (
            ImsRateLimiter::with_clock(per_minute, burst, clock.clone()),
            clock,
        )
    }

    /// `caller` makes `n` requests, each let through.
    fn all_let_through(limiter: &ImsRateLimiter<FakeRelativeClock>, caller: &str, n: usize) {
        for _ in 0..n {
            assert!(limiter.check(caller).is_ok(), "{caller} is let through");
        }
    }

    /// `caller` is refused, told to wait `wait` (Retry-After: `retry_after` seconds).
    fn refused(limiter: &ImsRateLimiter<FakeRelativeClock>, caller: &str, wait: Duration, retry_after: u64) {
        let told = limiter.check(caller).unwrap_err();
        assert_eq!(told, wait, "{caller} waits");
        assert_eq!(RetryAfter::after(told).as_secs(), retry_after);
    }

    #[test]
    fn a_caller_gets_the_burst_then_waits_others_are_not_affected() {
        let (limiter, _) = on_fake_clock(60, 3);
        all_let_through(&limiter, "alice", 3);
        // One a second comes back: the next in exactly a second (Retry-After: 1).
        refused(&limiter, "alice", Duration::from_secs(1), 1);
        assert!(limiter.check("bob").is_ok());
    }

    #[test]
    fn the_wait_counts_down_a_refusal_spends_nothing_and_the_bucket_refills() {
        let (limiter, clock) = on_fake_clock(60, 3);
        all_let_through(&limiter, "alice", 3);
        clock.advance(Duration::from_millis(400));
        // Refused checks take nothing: the wait stays the same.
        for _ in 0..5 {
            refused(&limiter, "alice", Duration::from_millis(600), 1);
        }
        // After Retry-After the caller may go on: one request, then a second's wait again.
        clock.advance(Duration::from_millis(600));
        assert!(limiter.check("alice").is_ok());
        assert_eq!(limiter.check("alice").unwrap_err(), Duration::from_secs(1));
        // Idle for the burst's worth of refills: the whole burst again, no more.
        clock.advance(Duration::from_secs(3));
        all_let_through(&limiter, "alice", 3);
        assert!(limiter.check("alice").is_err());
    }

    #[test]
    fn a_slow_rate_tells_the_caller_to_come_back_in_a_minute() {
        // One a minute, three at once: the fourth request waits the minute out.
        let (limiter, clock) = on_fake_clock(1, 3);
        all_let_through(&limiter, "bob", 3);
        refused(&limiter, "bob", Duration::from_secs(60), 60);
        clock.advance(Duration::from_secs(59));
        assert_eq!(RetryAfter::after(limiter.check("bob").unwrap_err()).as_secs(), 1);
        clock.advance(Duration::from_secs(1));
        assert!(limiter.check("bob").is_ok());
    }

    #[test]
    fn zero_rate_turns_the_limit_off() {
        let limiter = ImsRateLimiter::new(0, 0);
        for _ in 0..1_000 {
            assert!(limiter.check("alice").is_ok());
        }
    }

    #[test]
    fn retry_after_rounds_up() {
        let secs = |wait| RetryAfter::after(wait).as_secs();
        assert_eq!(secs(Duration::from_millis(1)), 1);
        assert_eq!(secs(Duration::from_millis(1_001)), 2);
        assert_eq!(secs(Duration::from_secs(3)), 3);
        assert_eq!(secs(Duration::ZERO), 1);
    }
}
