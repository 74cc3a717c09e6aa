//! Keyed token buckets: the rate limits of the contract (failed logins per IP and email, …).
//!
//! Written here rather than taken from `governor` because login limits count only *failures*:
//! a request must be able to ask "is this key already out of tokens?" without spending one,
//! which governor's GCRA cannot answer.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets above this count are swept of the ones that have refilled.
const SWEEP_ABOVE: usize = 10_000;

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// One token bucket per key: `capacity` tokens, refilled evenly over `period`.
pub struct TokenBuckets<K> {
    capacity: f64,
    per_second: f64,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Hash + Eq + Clone> TokenBuckets<K> {
    pub fn new(capacity: u32, period: Duration) -> Self {
        Self {
            capacity: f64::from(capacity),
            per_second: f64::from(capacity) / period.as_secs_f64(),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// How long until `key` has a token again; `None` when it has one now. Spends nothing.
    pub fn wait_time(&self, key: &K) -> Option<Duration> {
        let now = Instant::now();
        let buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let tokens = buckets
            .get(key)
            .map_or(self.capacity, |b| self.refilled(b, now));
        self.wait_for(tokens)
    }

    /// Spends one token of `key`, or says how long to wait for one.
    pub fn take(&self, key: &K) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > SWEEP_ABOVE {
            buckets.retain(|_, b| self.refilled(b, now) < self.capacity);
        }
        let bucket = buckets.entry(key.clone()).or_insert(Bucket {
            tokens: self.capacity,
            updated: now,
        });
        bucket.tokens = self.refilled(bucket, now);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(self.wait_for(bucket.tokens).unwrap_or_default())
        }
    }

    fn refilled(&self, bucket: &Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        (bucket.tokens + elapsed * self.per_second).min(self.capacity)
    }

    fn wait_for(&self, tokens: f64) -> Option<Duration> {
        (tokens < 1.0).then(|| Duration::from_secs_f64((1.0 - tokens) / self.per_second))
    }
}

/// One socket's event allowance: a token bucket plus how long it has been over the limit, so a
/// socket that keeps flooding can be disconnected.
pub struct EventBudget {
    bucket: Bucket,
    capacity: f64,
    per_second: f64,
    over_since: Option<Instant>,
}

/// What an event costs its socket.
#[derive(Debug, PartialEq, Eq)]
pub enum Spend {
    Allowed,
    /// Over the limit: refuse this event.
    Refused,
    /// Over the limit for longer than the grace period: disconnect the socket.
    Abusive,
}

impl EventBudget {
    pub fn per_second(events: u32) -> Self {
        Self {
            bucket: Bucket {
                tokens: f64::from(events),
                updated: Instant::now(),
            },
            capacity: f64::from(events),
            per_second: f64::from(events),
            over_since: None,
        }
    }

    /// Spends one event; `grace` is how long a socket may stay over the limit.
    pub fn spend(&mut self, grace: Duration) -> Spend {
        let now = Instant::now();
        let elapsed = now
            .saturating_duration_since(self.bucket.updated)
            .as_secs_f64();
        self.bucket.tokens = (self.bucket.tokens + elapsed * self.per_second).min(self.capacity);
        self.bucket.updated = now;
        if self.bucket.tokens >= 1.0 {
            self.bucket.tokens -= 1.0;
            self.over_since = None;
            return Spend::Allowed;
        }
        let since = *self.over_since.get_or_insert(now);
        if now.duration_since(since) >= grace {
            Spend::Abusive
        } else {
            Spend::Refused
        }
    }
}

impl Default for EventBudget {
    /// The contract's 50 events per second per socket.
    fn default() -> Self {
        Self::per_second(50)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_runs_out_after_its_capacity_and_others_are_unaffected() {
        let buckets = TokenBuckets::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(buckets.take(&"a").is_ok());
        }
        let wait = buckets.take(&"a").unwrap_err();
        assert!(wait > Duration::from_secs(15) && wait <= Duration::from_secs(20));
        assert!(buckets.wait_time(&"a").is_some());
        assert!(buckets.wait_time(&"b").is_none());
        assert!(buckets.take(&"b").is_ok());
    }

    #[test]
    fn a_socket_over_its_budget_is_refused_then_called_abusive_after_the_grace() {
        let mut budget = EventBudget::per_second(2);
        assert_eq!(budget.spend(Duration::from_secs(10)), Spend::Allowed);
        assert_eq!(budget.spend(Duration::from_secs(10)), Spend::Allowed);
        assert_eq!(budget.spend(Duration::from_secs(10)), Spend::Refused);
        assert_eq!(budget.spend(Duration::ZERO), Spend::Abusive);
    }

    #[test]
    fn asking_spends_nothing() {
        let buckets = TokenBuckets::new(1, Duration::from_secs(60));
        for _ in 0..10 {
            assert!(buckets.wait_time(&1).is_none());
        }
        assert!(buckets.take(&1).is_ok());
        assert!(buckets.take(&1).is_err());
    }
}
