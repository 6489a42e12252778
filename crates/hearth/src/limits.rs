//! Rate limits: token buckets keyed by user, account or address.
//!
//! Each limiter is one mutex around a map of buckets, touched once per
//! limited request and never held across an await. Buckets that have
//! refilled completely are forgotten in a sweep, so the map holds only the
//! keys that were active lately.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often idle buckets are swept away.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// A limit: `burst` events at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Events allowed back to back.
    pub burst: f64,
    /// Events regained per second.
    pub per_second: f64,
}

impl Rate {
    /// `count` events per `period`, all of which may come at once.
    pub fn per(count: u32, period: Duration) -> Self {
        Self {
            burst: f64::from(count),
            per_second: f64::from(count) / period.as_secs_f64(),
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

struct Buckets<K> {
    by_key: HashMap<K, Bucket>,
    swept: Instant,
}

/// Token buckets by key; a `None` rate never limits.
pub struct RateLimiter<K> {
    rate: Option<Rate>,
    buckets: Mutex<Buckets<K>>,
}

impl<K: Eq + Hash + Clone> RateLimiter<K> {
    /// A limiter with `rate`, or one that allows everything.
    pub fn new(rate: Option<Rate>) -> Self {
        Self {
            rate,
            buckets: Mutex::new(Buckets {
                by_key: HashMap::new(),
                swept: Instant::now(),
            }),
        }
    }

    /// Takes one token for `key`; `Err(wait)` says how long until one is free.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    /// Gives back a token taken by [`check`](Self::check), e.g. when the
    /// attempt it paid for turned out not to count (a sign-in that succeeded).
    pub fn refund(&self, key: &K) {
        let Some(rate) = self.rate else {
            return;
        };
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(bucket) = buckets.by_key.get_mut(key) {
            bucket.tokens = (bucket.tokens + 1.0).min(rate.burst);
        }
    }

    fn check_at(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let Some(rate) = self.rate else {
            return Ok(());
        };
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if now.duration_since(buckets.swept) > SWEEP_EVERY {
            buckets.by_key.retain(|_, bucket| {
                let refilled = bucket.tokens
                    + now.duration_since(bucket.updated).as_secs_f64() * rate.per_second;
                refilled < rate.burst
            });
            buckets.swept = now;
        }
        let bucket = buckets.by_key.entry(key.clone()).or_insert(Bucket {
            tokens: rate.burst,
            updated: now,
        });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate.per_second).min(rate.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / rate.per_second,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_refills_over_time() {
        let limiter = RateLimiter::new(Some(Rate::per(2, Duration::from_secs(10))));
        let start = Instant::now();
        assert!(limiter.check_at(&"a", start).is_ok());
        assert!(limiter.check_at(&"a", start).is_ok());
        let wait = limiter.check_at(&"a", start).unwrap_err();
        assert!(
            wait > Duration::from_secs(4) && wait <= Duration::from_secs(5),
            "{wait:?}"
        );
        assert!(
            limiter.check_at(&"b", start).is_ok(),
            "keys are independent"
        );
        assert!(
            limiter
                .check_at(&"a", start + Duration::from_secs(5))
                .is_ok()
        );
    }

    #[test]
    fn a_refund_gives_a_token_back() {
        let limiter = RateLimiter::new(Some(Rate::per(1, Duration::from_secs(60))));
        let start = Instant::now();
        assert!(limiter.check_at(&"a", start).is_ok());
        limiter.refund(&"a");
        assert!(limiter.check_at(&"a", start).is_ok());
        assert!(limiter.check_at(&"a", start).is_err());
    }

    #[test]
    fn no_rate_means_no_limit() {
        let limiter = RateLimiter::new(None);
        for _ in 0..10_000 {
            assert!(limiter.check(&1).is_ok());
        }
    }
}
