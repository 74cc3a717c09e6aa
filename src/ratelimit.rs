//! Keyed token buckets: the rate limits of the contract (failed logins per IP and email,
//! messages per user, …). In a cluster the buckets live in Redis, so a limit holds per user
//! across nodes; when Redis does not answer, each node falls back to its own buckets.
//!
//! Written here rather than taken from `governor` because login limits count only *failures*:
//! a request must be able to ask "is this key already out of tokens?" without spending one,
//! which governor's GCRA cannot answer.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::cluster::Cluster;

/// Failed logins allowed per minute: 5 per (IP, email) pair, 50 per IP.
pub struct LoginLimits {
    per_pair: TokenBuckets<(IpAddr, String)>,
    per_ip: TokenBuckets<IpAddr>,
}

impl LoginLimits {
    /// The contract's limits; shared by every node in a cluster.
    pub fn new(cluster: Option<&Cluster>) -> Self {
        Self {
            per_pair: TokenBuckets::new(5, Duration::from_secs(60)).shared(cluster, "login-pair"),
            per_ip: TokenBuckets::new(50, Duration::from_secs(60)).shared(cluster, "login-ip"),
        }
    }

    /// How long until `ip` may try `email` again; `None` when it may now.
    pub async fn wait_time(&self, ip: IpAddr, email: &str) -> Option<Duration> {
        let pair = self.per_pair.wait_time(&(ip, email.to_owned())).await;
        let ip = self.per_ip.wait_time(&ip).await;
        pair.max(ip)
    }

    /// Counts a failed login of `ip` with `email`.
    pub async fn record_failure(&self, ip: IpAddr, email: &str) {
        let _ = self.per_pair.take(&(ip, email.to_owned())).await;
        let _ = self.per_ip.take(&ip).await;
    }
}

/// Buckets above this count are swept of the ones that have refilled.
const SWEEP_ABOVE: usize = 10_000;

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// A bucket's key as it is named in Redis.
pub trait BucketKey: Hash + Eq + Clone {
    fn redis_key(&self) -> String;
}

impl BucketKey for Uuid {
    fn redis_key(&self) -> String {
        self.to_string()
    }
}

impl BucketKey for IpAddr {
    fn redis_key(&self) -> String {
        self.to_string()
    }
}

/// An (IP, email) pair; the email is hashed so no address is kept in Redis and no key is long.
impl BucketKey for (IpAddr, String) {
    fn redis_key(&self) -> String {
        let email = Sha256::digest(self.1.as_bytes());
        let email = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&email[..16]);
        format!("{}/{email}", self.0)
    }
}

/// The buckets' Redis home in a cluster.
struct Shared {
    cluster: Cluster,
    /// `{prefix}:limits:{name}:`, the start of each bucket's key.
    key_prefix: String,
}

/// One token bucket per key: `capacity` tokens, refilled evenly over `period`.
pub struct TokenBuckets<K> {
    capacity: f64,
    per_second: f64,
    buckets: Mutex<HashMap<K, Bucket>>,
    shared: Option<Shared>,
}

impl<K: BucketKey> TokenBuckets<K> {
    pub fn new(capacity: u32, period: Duration) -> Self {
        Self {
            capacity: f64::from(capacity),
            per_second: f64::from(capacity) / period.as_secs_f64(),
            buckets: Mutex::new(HashMap::new()),
            shared: None,
        }
    }

    /// Keeps the buckets in the cluster's Redis under `name` (on a single node: as they are).
    pub fn shared(mut self, cluster: Option<&Cluster>, name: &str) -> Self {
        self.shared = cluster.map(|cluster| Shared {
            key_prefix: format!("{}:", cluster.key(&["limits", name])),
            cluster: cluster.clone(),
        });
        self
    }

    /// How long until `key` has a token again; `None` when it has one now. Spends nothing.
    pub async fn wait_time(&self, key: &K) -> Option<Duration> {
        if let Some(answer) = self.in_redis(key, false).await {
            return answer;
        }
        let now = Instant::now();
        let buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let tokens = buckets
            .get(key)
            .map_or(self.capacity, |b| self.refilled(b, now));
        self.wait_for(tokens)
    }

    /// Spends one token of `key`, or says how long to wait for one.
    pub async fn take(&self, key: &K) -> Result<(), Duration> {
        if let Some(answer) = self.in_redis(key, true).await {
            return answer.map_or(Ok(()), Err);
        }
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

    /// The bucket in Redis: `Some(wait)` when Redis answered (`wait` as for [`Self::wait_time`]),
    /// `None` on a single node or when Redis failed (then this node's bucket decides).
    async fn in_redis(&self, key: &K, spend: bool) -> Option<Option<Duration>> {
        let shared = self.shared.as_ref()?;
        let answer: redis::RedisResult<i64> = redis::Script::new(BUCKET_SCRIPT)
            .key(format!("{}{}", shared.key_prefix, key.redis_key()))
            .arg(self.capacity)
            .arg(self.per_second / 1000.0)
            .arg(u8::from(spend))
            .invoke_async(&mut shared.cluster.conn())
            .await;
        match answer {
            Ok(wait_ms) if wait_ms < 0 => Some(None),
            Ok(wait_ms) => Some(Some(Duration::from_millis(wait_ms as u64))),
            Err(e) => {
                tracing::warn!(category = "warn", error = %e, "⚠️ rate limit: Redis does not answer; this node's bucket decides");
                None
            }
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

/// The same bucket as [`TokenBuckets`], in Redis, on Redis's clock (nodes' clocks may differ).
/// ARGV: capacity, tokens per millisecond, 1 to spend. Answers -1 (a token is there) or the
/// milliseconds until there is one.
const BUCKET_SCRIPT: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(bucket[1]) or capacity
local updated = tonumber(bucket[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - updated) * rate)
local allowed = tokens >= 1
if ARGV[3] == '1' then
  if allowed then tokens = tokens - 1 end
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', now)
  redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate) + 1000)
end
if allowed then return -1 end
return math.ceil((1 - tokens) / rate)
";

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

    #[tokio::test]
    async fn a_key_runs_out_after_its_capacity_and_others_are_unaffected() {
        let buckets = TokenBuckets::new(3, Duration::from_secs(60));
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        for _ in 0..3 {
            assert!(buckets.take(&a).await.is_ok());
        }
        let wait = buckets.take(&a).await.unwrap_err();
        assert!(wait > Duration::from_secs(15) && wait <= Duration::from_secs(20));
        assert!(buckets.wait_time(&a).await.is_some());
        assert!(buckets.wait_time(&b).await.is_none());
        assert!(buckets.take(&b).await.is_ok());
    }

    #[test]
    fn a_socket_over_its_budget_is_refused_then_called_abusive_after_the_grace() {
        let mut budget = EventBudget::per_second(2);
        assert_eq!(budget.spend(Duration::from_secs(10)), Spend::Allowed);
        assert_eq!(budget.spend(Duration::from_secs(10)), Spend::Allowed);
        assert_eq!(budget.spend(Duration::from_secs(10)), Spend::Refused);
        assert_eq!(budget.spend(Duration::ZERO), Spend::Abusive);
    }

    #[tokio::test]
    async fn asking_spends_nothing() {
        let buckets = TokenBuckets::new(1, Duration::from_secs(60));
        let key = IpAddr::from([127, 0, 0, 1]);
        for _ in 0..10 {
            assert!(buckets.wait_time(&key).await.is_none());
        }
        assert!(buckets.take(&key).await.is_ok());
        assert!(buckets.take(&key).await.is_err());
    }

    #[test]
    fn an_email_is_not_kept_in_the_clear_in_a_bucket_key() {
        let key = (IpAddr::from([10, 0, 0, 1]), "ada@example.com".to_owned()).redis_key();
        assert!(key.starts_with("10.0.0.1/"));
        assert!(!key.contains("ada"));
    }
}
