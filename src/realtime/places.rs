//! Places under `MAX_CONNECTIONS_PER_USER`: each socket of a user holds one from its handshake
//! until it closes.
//!
//! On a single node they are counted here, exactly. In a cluster they are counted in Redis, one
//! hash per node (`{prefix}:places:{node}`, user → places held), and [`TAKE_SCRIPT`] adds up the
//! user's places on every live node and takes one in a single step: handshakes of one user on
//! several nodes at the same moment cannot pass the limit together, however late the presence
//! rounds are. A dead node's places stop counting with its heartbeat (within `PRESENCE_TTL`), and
//! its hash expires. When Redis does not answer, the check falls back to this node's places plus
//! the other nodes' sockets as presence last saw them, and the node writes its places again once
//! Redis is back.

use std::collections::HashMap;
use std::sync::Mutex;

use uuid::Uuid;

use super::presence::Presence;
use crate::cluster::Cluster;
use crate::timestamp::Timestamp;

#[derive(Default)]
pub struct Places {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Places held by this node's sockets, by user (what this node's Redis hash should say).
    held: HashMap<Uuid, usize>,
    /// Redis may not have this node's places as they are: write them all at the next round.
    lost: bool,
}

impl Places {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a place for one more socket of `user_id`, unless the user holds `limit` already
    /// (on every node, in a cluster).
    pub async fn take(
        &self,
        cluster: Option<&Cluster>,
        presence: &Presence,
        user_id: Uuid,
        limit: usize,
    ) -> bool {
        let Some(cluster) = cluster else {
            return self.take_here(user_id, limit, 0);
        };
        let since = Timestamp::now().as_millis() - cluster.node_timeout().as_millis() as i64;
        let taken: redis::RedisResult<bool> = redis::Script::new(TAKE_SCRIPT)
            .key(cluster.key(&["nodes"]))
            .arg(cluster.key(&["places", ""]))
            .arg(cluster.node_id())
            .arg(user_id.to_string())
            .arg(limit)
            .arg(since)
            .arg(expiry(cluster))
            .invoke_async(&mut cluster.conn())
            .await;
        match taken {
            Ok(true) => {
                *self.lock().held.entry(user_id).or_default() += 1;
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::debug!(category = "error", error = %e, "places: Redis failed; counting on this node");
                self.lock().lost = true;
                self.take_here(user_id, limit, presence.remote_connections(user_id))
            }
        }
    }

    /// Takes a place when this node's places and `elsewhere` leave room under `limit`.
    fn take_here(&self, user_id: Uuid, limit: usize, elsewhere: usize) -> bool {
        let mut state = self.lock();
        let held = state.held.entry(user_id).or_default();
        if *held + elsewhere >= limit {
            if *held == 0 {
                state.held.remove(&user_id);
            }
            return false;
        }
        *held += 1;
        true
    }

    /// Gives back a place taken by [`Places::take`] on this node; in a cluster, the caller then
    /// tells Redis with [`Places::give_back_in`].
    pub fn give_back(&self, user_id: Uuid) {
        let mut state = self.lock();
        if let Some(held) = state.held.get_mut(&user_id) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                state.held.remove(&user_id);
            }
        }
    }

    /// Gives back a place in Redis (when that fails, the next round writes them all again).
    pub async fn give_back_in(&self, cluster: &Cluster, user_id: Uuid) {
        let given: redis::RedisResult<i64> = redis::Script::new(GIVE_BACK_SCRIPT)
            .key(cluster.key(&["places", cluster.node_id()]))
            .arg(user_id.to_string())
            .invoke_async(&mut cluster.conn())
            .await;
        if given.is_err() {
            self.lock().lost = true;
        }
    }

    /// The round's part: keeps this node's places from expiring, and writes them all again when
    /// Redis may have lost them.
    pub async fn sync(&self, cluster: &Cluster) -> redis::RedisResult<()> {
        let key = cluster.key(&["places", cluster.node_id()]);
        let rewrite = {
            let mut state = self.lock();
            std::mem::take(&mut state.lost).then(|| state.held.clone())
        };
        let mut pipe = redis::pipe();
        pipe.atomic();
        if let Some(held) = &rewrite {
            pipe.del(&key).ignore();
            for (user, places) in held {
                pipe.hset(&key, user.to_string(), *places).ignore();
            }
        }
        pipe.pexpire(&key, expiry(cluster)).ignore();
        let written = pipe.query_async::<()>(&mut cluster.conn()).await;
        if written.is_err() {
            self.lock().lost = true;
        }
        written
    }

    /// A clean shutdown: this node's places are gone with its sockets.
    pub async fn withdraw(&self, cluster: &Cluster) {
        let _: redis::RedisResult<()> = redis::cmd("DEL")
            .arg(cluster.key(&["places", cluster.node_id()]))
            .query_async(&mut cluster.conn())
            .await;
    }
}

/// How long a node's places outlive its last round.
fn expiry(cluster: &Cluster) -> i64 {
    (cluster.node_timeout() * 4).as_millis() as i64
}

/// KEYS[1]: the node registry. ARGV: the places keys' prefix, this node, the user, the limit,
/// the oldest live heartbeat (ms), the hash's expiry (ms). Answers 1 when a place was taken.
const TAKE_SCRIPT: &str = r"
local mine = ARGV[1] .. ARGV[2]
local open = tonumber(redis.call('HGET', mine, ARGV[3]) or '0')
for _, node in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[5], '+inf')) do
  if node ~= ARGV[2] then
    open = open + tonumber(redis.call('HGET', ARGV[1] .. node, ARGV[3]) or '0')
  end
end
if open >= tonumber(ARGV[4]) then
  return 0
end
redis.call('HINCRBY', mine, ARGV[3], 1)
redis.call('PEXPIRE', mine, ARGV[6])
return 1
";

/// KEYS[1]: this node's places. ARGV[1]: the user.
const GIVE_BACK_SCRIPT: &str = r"
local left = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if left <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return left
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_on_one_node_count_until_given_back() {
        let places = Places::default();
        let (ada, bob) = (Uuid::now_v7(), Uuid::now_v7());
        assert!(places.take_here(ada, 2, 0));
        assert!(places.take_here(ada, 2, 0));
        assert!(!places.take_here(ada, 2, 0), "two places held");
        assert!(places.take_here(bob, 2, 0), "the limit is per user");
        places.give_back(ada);
        assert!(places.take_here(ada, 2, 0));
        assert!(!places.take_here(ada, 3, 1), "sockets elsewhere count too");
    }
}
