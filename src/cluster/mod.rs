//! Cluster mode (`REDIS_URL`): one Redis connection per node, shared by the Socket.IO Redis
//! adapter (through [`driver::RedisDriver`]), cluster-wide presence, the shared rate limits and
//! the node registry. Every key and channel starts with `REDIS_PREFIX`.
//!
//! The connection is a `ConnectionManager`: when Redis goes away, commands fail fast (the node
//! keeps serving its own sockets), and when it comes back the manager reconnects and subscribes
//! to the adapter's channels again, without a restart.

pub mod driver;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::timestamp::Timestamp;

/// How long one Redis command may take before it counts as failed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// This node's link to the cluster. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    driver: driver::RedisDriver,
    /// `REDIS_PREFIX`, the start of every key and channel.
    prefix: String,
    /// This node's unique id (as the self-test reports it).
    node_id: String,
    /// A node whose last heartbeat is older than this no longer counts (from `PRESENCE_TTL`).
    node_timeout: Duration,
}

impl Cluster {
    /// Connects to Redis; fails when it does not answer (a node does not start half-joined).
    pub async fn connect(
        url: &str,
        prefix: &str,
        node_id: &str,
        node_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let client = redis::Client::open(with_resp3(url)).context("REDIS_URL is not valid")?;
        let handlers = driver::Handlers::default();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1))
            .set_push_sender(handlers.push_sender())
            .set_automatic_resubscription();
        let conn = tokio::time::timeout(
            COMMAND_TIMEOUT * 2,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| anyhow::anyhow!("Redis did not answer in time"))?
        .context("cannot connect to Redis")?;
        let cluster = Self {
            inner: Arc::new(Inner {
                driver: driver::RedisDriver::new(conn.clone(), handlers),
                conn,
                prefix: prefix.to_owned(),
                node_id: node_id.to_owned(),
                node_timeout,
            }),
        };
        cluster.heartbeat().await.context("Redis does not answer")?;
        Ok(cluster)
    }

    /// A connection for commands (clones share one multiplexed connection).
    pub fn conn(&self) -> ConnectionManager {
        self.inner.conn.clone()
    }

    pub fn driver(&self) -> driver::RedisDriver {
        self.inner.driver.clone()
    }

    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// How old a node's last heartbeat may be for it to count as live.
    pub fn node_timeout(&self) -> Duration {
        self.inner.node_timeout
    }

    /// A key under the prefix: `key(&["presence", "node-1"])` is `craftcode:presence:node-1`.
    pub fn key(&self, parts: &[&str]) -> String {
        let mut key = self.inner.prefix.clone();
        for part in parts {
            key.push(':');
            key.push_str(part);
        }
        key
    }

    /// Whether Redis answers a PING within the command timeout.
    pub async fn ping(&self) -> bool {
        let mut conn = self.conn();
        matches!(
            tokio::time::timeout(
                COMMAND_TIMEOUT,
                redis::cmd("PING").query_async::<String>(&mut conn)
            )
            .await,
            Ok(Ok(_))
        )
    }

    /// Records that this node is alive now, and forgets nodes long dead.
    pub async fn heartbeat(&self) -> redis::RedisResult<()> {
        let now = Timestamp::now().as_millis();
        let forget_before = now - 10 * self.inner.node_timeout.as_millis() as i64;
        let nodes = self.key(&["nodes"]);
        redis::pipe()
            .zadd(&nodes, self.node_id(), now)
            .ignore()
            .zrembyscore(&nodes, "-inf", forget_before)
            .ignore()
            .query_async::<()>(&mut self.conn())
            .await
    }

    /// The ids of the nodes whose heartbeat is recent enough, this one included.
    pub async fn live_nodes(&self) -> redis::RedisResult<Vec<String>> {
        let since = Timestamp::now().as_millis() - self.inner.node_timeout.as_millis() as i64;
        redis::cmd("ZRANGEBYSCORE")
            .arg(self.key(&["nodes"]))
            .arg(since)
            .arg("+inf")
            .query_async(&mut self.conn())
            .await
    }

    /// Takes this node out of the registry (a clean shutdown).
    pub async fn leave(&self) {
        let _: redis::RedisResult<()> =
            self.conn().zrem(self.key(&["nodes"]), self.node_id()).await;
    }
}

/// The adapter's driver needs RESP3 (pushed pub/sub messages on the command connection).
fn with_resp3(url: &str) -> String {
    if url.contains("protocol=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&protocol=resp3")
    } else {
        format!("{url}?protocol=resp3")
    }
}

#[cfg(test)]
mod tests {
    use super::with_resp3;

    #[test]
    fn resp3_is_asked_for_unless_the_url_chooses() {
        assert_eq!(
            with_resp3("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379?protocol=resp3"
        );
        assert_eq!(
            with_resp3("redis://h/0?timeout=1"),
            "redis://h/0?timeout=1&protocol=resp3"
        );
        assert_eq!(
            with_resp3("redis://h?protocol=resp3"),
            "redis://h?protocol=resp3"
        );
    }
}
