//! Who is online: connection counts per user and per session, across the cluster, and the
//! batched `presenceChanged` diff (what changed since clients were last told).
//!
//! Each node counts its own sockets here, exactly. In cluster mode ([`Presence::sync`], once per
//! `PRESENCE_INTERVAL`) it also publishes its counts to Redis (`{prefix}:presence:{node}`, one
//! field per user), reads the other live nodes' counts back into memory, and, on the one node
//! that holds the presence lease, computes the `presenceChanged` batch for the whole cluster. So
//! every read here stays synchronous and cheap, other nodes' sockets are seen at most one interval
//! late, and a node that dies stops counting as soon as its heartbeat is too old (see
//! [`Cluster::live_nodes`]).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::cluster::Cluster;

/// An online user as `getOnlineUsers` and `presenceChanged` show them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OnlineUser {
    pub user_id: Uuid,
    pub name: String,
}

/// What changed since the last batch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PresenceChange {
    pub online: Vec<OnlineUser>,
    pub offline: Vec<Uuid>,
}

/// One user's sockets on one node, by session (as stored in Redis, too).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct UserConnections {
    name: String,
    sessions: HashMap<Uuid, usize>,
}

impl UserConnections {
    fn sockets(&self) -> usize {
        self.sessions.values().sum()
    }
}

/// Another node's users, as last read from Redis.
struct NodeView {
    version: i64,
    users: HashMap<Uuid, UserConnections>,
}

#[derive(Default)]
struct State {
    /// This node's sockets.
    local: HashMap<Uuid, UserConnections>,
    /// Sockets per user admitted under the per-user limit and not yet counted by `connect`
    /// (see [`Presence::reserve`]).
    reserved: HashMap<Uuid, usize>,
    /// The other live nodes' sockets (cluster mode).
    remote: HashMap<String, NodeView>,
    /// The online set clients were last told about.
    announced: HashMap<Uuid, String>,
    /// Something connected or disconnected since the last batch.
    dirty: bool,
    /// Users whose local counts changed since they were last written to Redis.
    unpublished: HashSet<Uuid>,
    /// Redis lost what this node wrote (or never had it): write every user again.
    republish: bool,
    /// This node's version in `{prefix}:presence:versions` after its last write.
    published: Option<i64>,
    /// When the other nodes' counts were last read successfully.
    refreshed: Option<Instant>,
    /// This node holds the presence lease and computes the batches.
    leader: bool,
}

pub struct Presence {
    state: Mutex<State>,
}

impl Default for Presence {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                republish: true,
                ..State::default()
            }),
        }
    }
}

impl State {
    /// This user's connections on every node.
    fn views(&self, user_id: Uuid) -> impl Iterator<Item = &UserConnections> {
        self.local.get(&user_id).into_iter().chain(
            self.remote
                .values()
                .filter_map(move |n| n.users.get(&user_id)),
        )
    }

    /// Everyone online anywhere, with a name.
    fn online(&self) -> HashMap<Uuid, &str> {
        let mut online = HashMap::new();
        for users in std::iter::once(&self.local).chain(self.remote.values().map(|n| &n.users)) {
            for (id, user) in users {
                online.entry(*id).or_insert(user.name.as_str());
            }
        }
        online
    }
}

impl Presence {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one more socket of this user's session on this node.
    pub fn connect(&self, user_id: Uuid, session_id: Uuid, name: &str) {
        let mut state = self.lock();
        let user = state.local.entry(user_id).or_default();
        name.clone_into(&mut user.name);
        *user.sessions.entry(session_id).or_default() += 1;
        state.unpublished.insert(user_id);
        state.dirty = true;
    }

    /// Holds a place for one more socket of this user, unless their sockets on every node and
    /// the places already held here come to `limit`. The check and the hold are one step, so
    /// handshakes of one user at the same moment cannot all pass it. The caller gives the place
    /// back with [`Presence::release`] once the socket is counted by `connect`, or is gone.
    pub fn reserve(&self, user_id: Uuid, limit: usize) -> bool {
        let mut state = self.lock();
        let open: usize = state.views(user_id).map(UserConnections::sockets).sum();
        let held = state.reserved.get(&user_id).copied().unwrap_or(0);
        if open + held >= limit {
            return false;
        }
        *state.reserved.entry(user_id).or_default() += 1;
        true
    }

    /// Gives back a place [`Presence::reserve`] held.
    pub fn release(&self, user_id: Uuid) {
        let mut state = self.lock();
        if let Some(held) = state.reserved.get_mut(&user_id) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                state.reserved.remove(&user_id);
            }
        }
    }

    /// Counts one socket less.
    pub fn disconnect(&self, user_id: Uuid, session_id: Uuid) {
        let mut state = self.lock();
        let Some(user) = state.local.get_mut(&user_id) else {
            return;
        };
        if let Some(count) = user.sessions.get_mut(&session_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                user.sessions.remove(&session_id);
            }
        }
        if user.sessions.is_empty() {
            state.local.remove(&user_id);
        }
        state.unpublished.insert(user_id);
        state.dirty = true;
    }

    /// Whether the user has a socket on any node.
    pub fn is_online(&self, user_id: Uuid) -> bool {
        self.lock().views(user_id).next().is_some()
    }

    /// Sockets this user has open, on every node.
    pub fn user_connections(&self, user_id: Uuid) -> usize {
        self.lock()
            .views(user_id)
            .map(UserConnections::sockets)
            .sum()
    }

    /// Sockets this session has open, on every node.
    pub fn session_connections(&self, user_id: Uuid, session_id: Uuid) -> usize {
        self.lock()
            .views(user_id)
            .filter_map(|u| u.sessions.get(&session_id))
            .sum()
    }

    /// Sockets this user has open on this node.
    pub fn local_connections(&self, user_id: Uuid) -> usize {
        self.lock()
            .local
            .get(&user_id)
            .map_or(0, UserConnections::sockets)
    }

    /// How many users have a socket on this node.
    pub fn local_users(&self) -> usize {
        self.lock().local.len()
    }

    /// Everyone online, by name.
    pub fn online_users(&self) -> Vec<OnlineUser> {
        let state = self.lock();
        let mut users: Vec<OnlineUser> = state
            .online()
            .into_iter()
            .map(|(user_id, name)| OnlineUser {
                user_id,
                name: name.to_owned(),
            })
            .collect();
        users.sort_by(|a, b| a.name.cmp(&b.name).then(a.user_id.cmp(&b.user_id)));
        users
    }

    /// Whether this node computes the batches (always, on a single node).
    pub fn is_leader(&self) -> bool {
        self.lock().leader
    }

    /// The difference between who is online now and who clients were last told about, if any;
    /// what it returns counts as told. A user who left and came back within one batch is no
    /// change at all.
    pub fn take_change(&self) -> Option<PresenceChange> {
        let mut state = self.lock();
        if !state.dirty {
            return None;
        }
        state.dirty = false;
        let now = state.online();
        let online: Vec<OnlineUser> = now
            .iter()
            .filter(|(id, _)| !state.announced.contains_key(id))
            .map(|(id, name)| OnlineUser {
                user_id: *id,
                name: (*name).to_owned(),
            })
            .collect();
        let offline: Vec<Uuid> = state
            .announced
            .keys()
            .filter(|id| !now.contains_key(id))
            .copied()
            .collect();
        let announced = now.into_iter().map(|(id, n)| (id, n.to_owned())).collect();
        state.announced = announced;
        (!online.is_empty() || !offline.is_empty()).then_some(PresenceChange { online, offline })
    }

    /// Makes this node the one that computes batches (a single node is always).
    pub fn lead(&self) {
        self.lock().leader = true;
    }

    /// One round of cluster presence: publish this node's changed counts, read the other live
    /// nodes' counts, and hold (or try to take) the presence lease. Answers the batch to send
    /// when this node holds the lease and something changed. Redis failures are logged once per
    /// outage by the caller; what was not written is written again once Redis answers.
    pub async fn sync(
        &self,
        cluster: &Cluster,
        lease: Duration,
    ) -> redis::RedisResult<Option<PresenceChange>> {
        let published = self.publish(cluster).await;
        let refreshed = match published {
            Ok(()) => self.refresh(cluster).await,
            Err(e) => Err(e),
        };
        if let Err(e) = refreshed {
            let mut state = self.lock();
            state.republish = true;
            state.leader = false;
            // Without Redis, other nodes' counts age; past the node timeout they are dropped.
            if state
                .refreshed
                .is_none_or(|at| at.elapsed() > cluster.node_timeout())
                && !state.remote.is_empty()
            {
                state.remote.clear();
                state.dirty = true;
            }
            return Err(e);
        }
        if !self.hold_lease(cluster, lease).await? {
            return Ok(None);
        }
        let Some(change) = self.take_change() else {
            return Ok(None);
        };
        let key = cluster.key(&["presence", "announced"]);
        let mut pipe = redis::pipe();
        for user in &change.online {
            pipe.hset(&key, user.user_id.to_string(), &user.name)
                .ignore();
        }
        for id in &change.offline {
            pipe.hdel(&key, id.to_string()).ignore();
        }
        pipe.query_async::<()>(&mut cluster.conn()).await?;
        Ok(Some(change))
    }

    /// Writes the users whose counts changed (all of them after an outage) to this node's hash.
    async fn publish(&self, cluster: &Cluster) -> redis::RedisResult<()> {
        let key = cluster.key(&["presence", cluster.node_id()]);
        let versions = cluster.key(&["presence", "versions"]);
        let (republish, writes) = {
            let mut state = self.lock();
            let republish = std::mem::take(&mut state.republish);
            let users: Vec<Uuid> = if republish {
                state.unpublished.clear();
                state.local.keys().copied().collect()
            } else {
                state.unpublished.drain().collect()
            };
            let writes: Vec<(Uuid, Option<String>)> = users
                .into_iter()
                .map(|id| {
                    let json = state
                        .local
                        .get(&id)
                        .and_then(|u| serde_json::to_string(u).ok());
                    (id, json)
                })
                .collect();
            (republish, writes)
        };
        let mut pipe = redis::pipe();
        pipe.atomic();
        if republish {
            pipe.del(&key).ignore();
        }
        for (id, json) in &writes {
            match json {
                Some(json) => pipe.hset(&key, id.to_string(), json).ignore(),
                None => pipe.hdel(&key, id.to_string()).ignore(),
            };
        }
        let wrote = republish || !writes.is_empty();
        if wrote {
            pipe.hincr(&versions, cluster.node_id(), 1).ignore();
        }
        pipe.pexpire(&key, (cluster.node_timeout() * 4).as_millis() as i64)
            .ignore();
        // The version as Redis has it now: if it is not the one this node last wrote, Redis lost
        // this node's counts (it restarted between two rounds) and they are written again.
        pipe.hget(&versions, cluster.node_id());
        let written = pipe
            .query_async::<(Option<i64>,)>(&mut cluster.conn())
            .await;
        {
            let mut state = self.lock();
            match &written {
                Ok((version,)) if wrote => state.published = *version,
                Ok((version,)) => state.republish |= *version != state.published,
                Err(_) => state.republish = true,
            }
        }
        written?;
        cluster.heartbeat().await
    }

    /// Reads the other live nodes' counts (only the nodes whose version moved).
    async fn refresh(&self, cluster: &Cluster) -> redis::RedisResult<()> {
        let others: Vec<String> = cluster
            .live_nodes()
            .await?
            .into_iter()
            .filter(|n| n != cluster.node_id())
            .collect();
        let versions: Vec<Option<i64>> = if others.is_empty() {
            Vec::new()
        } else {
            redis::cmd("HMGET")
                .arg(cluster.key(&["presence", "versions"]))
                .arg(&others)
                .query_async(&mut cluster.conn())
                .await?
        };
        let mut changed = Vec::new();
        {
            let state = self.lock();
            for (node, version) in others.iter().zip(&versions) {
                let version = version.unwrap_or(0);
                if state.remote.get(node).is_none_or(|v| v.version != version) {
                    changed.push((node.clone(), version));
                }
            }
        }
        let mut fresh = Vec::new();
        for (node, version) in changed {
            let fields: HashMap<String, String> = redis::cmd("HGETALL")
                .arg(cluster.key(&["presence", &node]))
                .query_async(&mut cluster.conn())
                .await?;
            let users = fields
                .into_iter()
                .filter_map(|(id, json)| {
                    Some((id.parse().ok()?, serde_json::from_str(&json).ok()?))
                })
                .collect();
            fresh.push((node, NodeView { version, users }));
        }
        let mut state = self.lock();
        let before = state.remote.len();
        state.remote.retain(|node, _| others.contains(node));
        let mut dirty = state.remote.len() != before;
        for (node, view) in fresh {
            state.remote.insert(node, view);
            dirty = true;
        }
        state.dirty |= dirty;
        state.refreshed = Some(Instant::now());
        Ok(())
    }

    /// Keeps or takes the presence lease; a new holder first learns what was last announced.
    async fn hold_lease(&self, cluster: &Cluster, lease: Duration) -> redis::RedisResult<bool> {
        let held: bool = redis::Script::new(LEASE_SCRIPT)
            .key(cluster.key(&["presence", "leader"]))
            .arg(cluster.node_id())
            .arg(lease.as_millis() as u64)
            .invoke_async(&mut cluster.conn())
            .await?;
        let was_leader = self.lock().leader;
        if held && !was_leader {
            let announced: HashMap<String, String> = redis::cmd("HGETALL")
                .arg(cluster.key(&["presence", "announced"]))
                .query_async(&mut cluster.conn())
                .await?;
            let mut state = self.lock();
            state.announced = announced
                .into_iter()
                .filter_map(|(id, name)| Some((id.parse().ok()?, name)))
                .collect();
            state.dirty = true;
        }
        self.lock().leader = held;
        Ok(held)
    }

    /// Forgets this node's counts in Redis (a clean shutdown: its users go offline at once).
    pub async fn withdraw(&self, cluster: &Cluster) {
        let _: redis::RedisResult<()> = redis::pipe()
            .del(cluster.key(&["presence", cluster.node_id()]))
            .ignore()
            .hincr(cluster.key(&["presence", "versions"]), cluster.node_id(), 1)
            .ignore()
            .query_async(&mut cluster.conn())
            .await;
    }
}

/// Keeps the lease when this node holds it, takes it when nobody does; answers 1 when held.
const LEASE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_with_several_tabs_is_one_online_user() {
        let presence = Presence::default();
        let (user, session) = (Uuid::now_v7(), Uuid::now_v7());
        presence.connect(user, session, "Ada");
        presence.connect(user, session, "Ada");
        assert_eq!(presence.online_users().len(), 1);
        assert_eq!(presence.user_connections(user), 2);
        assert_eq!(presence.session_connections(user, session), 2);
        presence.disconnect(user, session);
        assert!(presence.is_online(user));
        presence.disconnect(user, session);
        assert!(!presence.is_online(user));
    }

    #[test]
    fn places_held_under_the_limit_count_until_given_back() {
        let presence = Presence::default();
        let (ada, bob, session) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        presence.connect(ada, session, "Ada");
        assert!(presence.reserve(ada, 3));
        assert!(presence.reserve(ada, 3));
        assert!(!presence.reserve(ada, 3), "one socket and two held places");
        assert!(presence.reserve(bob, 3), "the limit is per user");
        // A held place becomes a counted socket: still three.
        presence.connect(ada, session, "Ada");
        presence.release(ada);
        assert!(!presence.reserve(ada, 3));
        // A place given back without a socket (the client left) frees it.
        presence.release(ada);
        assert!(presence.reserve(ada, 3));
        assert!(!presence.is_online(bob), "a held place is not online");
    }

    #[test]
    fn changes_are_batched_as_a_diff_against_what_was_announced() {
        let presence = Presence::default();
        let (ada, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let session = Uuid::now_v7();
        assert_eq!(presence.take_change(), None);

        presence.connect(ada, session, "Ada");
        let change = presence.take_change().unwrap();
        assert_eq!(
            change.online,
            vec![OnlineUser {
                user_id: ada,
                name: "Ada".into()
            }]
        );
        assert!(change.offline.is_empty());
        assert_eq!(presence.take_change(), None, "nothing new since");

        // Bob flickers in and out within one batch: nobody needs to hear about it.
        presence.connect(bob, session, "Bob");
        presence.disconnect(bob, session);
        assert_eq!(presence.take_change(), None);

        presence.disconnect(ada, session);
        assert_eq!(presence.take_change().unwrap().offline, vec![ada]);
    }

    #[test]
    fn another_nodes_sockets_count_and_stop_counting_when_it_is_gone() {
        let presence = Presence::default();
        let (ada, session) = (Uuid::now_v7(), Uuid::now_v7());
        presence.connect(ada, session, "Ada");
        let remote = UserConnections {
            name: "Ada".into(),
            sessions: HashMap::from([(session, 2)]),
        };
        presence.lock().remote.insert(
            "node-b".into(),
            NodeView {
                version: 1,
                users: HashMap::from([(ada, remote)]),
            },
        );
        assert_eq!(presence.user_connections(ada), 3);
        assert_eq!(presence.session_connections(ada, session), 3);
        assert_eq!(presence.online_users().len(), 1, "one user on two nodes");

        presence.disconnect(ada, session);
        assert!(presence.is_online(ada), "still on node b");
        assert_eq!(presence.local_connections(ada), 0);
        presence.lock().remote.clear();
        assert!(!presence.is_online(ada));
    }
}
