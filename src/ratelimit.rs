//! A token bucket per caller in front of the routes that call IMS with the caller's token (switch,
//! disconnect, org listing), so one user cannot spend the service's share of IMS.
//!
//! The bucket itself is `governor`'s GCRA (one atomic word per caller); the buckets live in a
//! bounded moka cache that drops a bucket once it has been idle long enough to be full again, so
//! forgetting it changes no answer and memory stays bounded however many callers come and go.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};
use moka::sync::Cache;

/// How many callers' buckets are kept at most (a bucket is a few dozen bytes). Past it the least
/// recently used are dropped: such a caller starts again with a full bucket.
const MAX_BUCKETS: u64 = 100_000;

/// Per-caller limits on IMS-bound requests. Cheap to clone.
#[derive(Clone)]
pub struct ImsRateLimiter {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    quota: Quota,
    buckets: Cache<String, Arc<DefaultDirectRateLimiter>>,
    clock: DefaultClock,
}

impl std::fmt::Debug for ImsRateLimiter {
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
                clock: DefaultClock::default(),
            })),
        }
    }

    /// Takes one request from `caller`'s bucket, or says how long until one is available.
    pub fn check(&self, caller: &str) -> Result<(), Duration> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        let bucket = inner
            .buckets
            .get_with_by_ref(caller, || Arc::new(governor::RateLimiter::direct(inner.quota)));
        bucket
            .check()
            .map_err(|not_until| not_until.wait_time_from(inner.clock.now()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::error::RetryAfter;

    #[test]
    fn a_caller_gets_the_burst_then_waits_others_are_not_affected() {
        let limiter = ImsRateLimiter::new(60, 3);
        for _ in 0..3 {
            assert!(limiter.check("alice").is_ok());
        }
        let wait = limiter.check("alice").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert_eq!(RetryAfter::after(wait).as_secs(), 1);
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
