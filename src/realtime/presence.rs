//! Who is online: connection counts per user and per session, across the cluster, the ordered
//! index of everyone online (for `getOnlineUsers` pages), and the batched change since this
//! node's sockets were last told (which `watch` then filters per socket).
//!
//! Each node counts its own sockets here, exactly. In cluster mode ([`Presence::sync`], once per
//! `PRESENCE_INTERVAL`) it also publishes its counts to Redis (`{prefix}:presence:{node}`, one
//! field per user) and reads the other live nodes' counts back into memory. So every read here
//! stays synchronous and cheap, other nodes' sockets are seen at most one interval late, and a
//! node that dies stops counting as soon as its heartbeat is too old (see
//! [`Cluster::live_nodes`]). Every node computes its own batch from what it has told its own
//! sockets: a node keeps no state of another node's sockets, and a socket's welcome list and the
//! batches after it come from the same view.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::sync::Mutex;
use std::time::Instant;

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

impl PresenceChange {
    pub fn is_empty(&self) -> bool {
        self.online.is_empty() && self.offline.is_empty()
    }
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

/// Someone online somewhere.
struct Online {
    name: String,
    /// On how many nodes (this one included) the user has a socket.
    nodes: u32,
}

#[derive(Default)]
struct State {
    /// This node's sockets.
    local: HashMap<Uuid, UserConnections>,
    /// The other live nodes' sockets (cluster mode).
    remote: HashMap<String, NodeView>,
    /// Everyone online on any node, ordered by id (pages of `getOnlineUsers`).
    everyone: BTreeMap<Uuid, Online>,
    /// Who this node's sockets were last told is online, by name (what the next batch is a
    /// difference against).
    announced: HashMap<Uuid, String>,
    /// Users whose online state may differ from `announced`.
    changed: HashSet<Uuid>,
    /// Users whose local counts changed since they were last written to Redis.
    unpublished: HashSet<Uuid>,
    /// Redis lost what this node wrote (or never had it): write every user again.
    republish: bool,
    /// This node's version in `{prefix}:presence:versions` after its last write.
    published: Option<i64>,
    /// When the other nodes' counts were last read successfully.
    refreshed: Option<Instant>,
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

    /// The user now has sockets on one more node.
    fn appear(&mut self, user_id: Uuid, name: &str) {
        let online = self.everyone.entry(user_id).or_insert_with(|| Online {
            name: String::new(),
            nodes: 0,
        });
        if online.name != name {
            name.clone_into(&mut online.name);
        }
        online.nodes += 1;
        if online.nodes == 1 {
            self.changed.insert(user_id);
        }
    }

    /// The user has no socket left on one node.
    fn vanish(&mut self, user_id: Uuid) {
        if let Some(online) = self.everyone.get_mut(&user_id) {
            online.nodes = online.nodes.saturating_sub(1);
            if online.nodes == 0 {
                self.everyone.remove(&user_id);
                self.changed.insert(user_id);
            }
        }
    }

    /// Another node's users are now `users` (or gone, for `None`).
    fn replace_node(&mut self, node: &str, view: Option<NodeView>) {
        let old = match view {
            Some(view) => self.remote.insert(node.to_owned(), view),
            None => self.remote.remove(node),
        };
        let old_users = old.map(|v| v.users).unwrap_or_default();
        let appeared: Vec<(Uuid, String)> = self
            .remote
            .get(node)
            .map(|v| {
                v.users
                    .iter()
                    .filter(|(id, _)| !old_users.contains_key(id))
                    .map(|(id, u)| (*id, u.name.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let now = self.remote.get(node).map(|v| &v.users);
        let vanished: Vec<Uuid> = old_users
            .keys()
            .filter(|id| now.is_none_or(|users| !users.contains_key(id)))
            .copied()
            .collect();
        for (id, name) in appeared {
            self.appear(id, &name);
        }
        for id in vanished {
            self.vanish(id);
        }
    }

    fn user(&self, user_id: Uuid) -> Option<OnlineUser> {
        self.everyone.get(&user_id).map(|o| OnlineUser {
            user_id,
            name: o.name.clone(),
        })
    }
}

/// Some users as they are now, for a socket told outside a batch (its welcome, a
/// `watchPresence` answer). Those `unsettled` changed since the last batch: the batch, a
/// difference against what was told before, would not correct the socket about one who
/// changed back meanwhile, so the socket hears of them again with it.
#[derive(Debug, Default)]
pub struct View {
    pub online: Vec<OnlineUser>,
    pub offline: Vec<Uuid>,
    pub unsettled: Vec<Uuid>,
}

/// One page of everyone online, ordered by id.
#[derive(Debug)]
pub struct OnlinePage {
    pub users: Vec<OnlineUser>,
    pub total: usize,
    /// The last id of this page when more follow.
    pub next: Option<Uuid>,
}

impl Presence {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one more socket of this user's session on this node.
    pub fn connect(&self, user_id: Uuid, session_id: Uuid, name: &str) {
        let mut state = self.lock();
        let first_here = !state.local.contains_key(&user_id);
        let user = state.local.entry(user_id).or_default();
        name.clone_into(&mut user.name);
        *user.sessions.entry(session_id).or_default() += 1;
        state.unpublished.insert(user_id);
        if first_here {
            state.appear(user_id, name);
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
            state.vanish(user_id);
        }
        state.unpublished.insert(user_id);
    }

    /// Whether the user has a socket on any node.
    pub fn is_online(&self, user_id: Uuid) -> bool {
        self.lock().everyone.contains_key(&user_id)
    }

    /// The user as this node's sockets were last told: `Some` when told online.
    pub fn told(&self, user_id: Uuid) -> Option<OnlineUser> {
        let state = self.lock();
        state.announced.get(&user_id).map(|name| OnlineUser {
            user_id,
            name: name.clone(),
        })
    }

    /// `users` as they are now: those online (in that order), those not, and those whose state
    /// may differ from what this node's sockets were last told (see [`View`]).
    pub fn view(&self, users: impl IntoIterator<Item = Uuid>) -> View {
        let state = self.lock();
        let mut view = View::default();
        for id in users {
            match state.user(id) {
                Some(user) => view.online.push(user),
                None => view.offline.push(id),
            }
            if state.changed.contains(&id) {
                view.unsettled.push(id);
            }
        }
        view
    }

    /// Everyone online now, ordered by id, and everyone whose state may differ from what this
    /// node's sockets were last told.
    pub fn view_everyone(&self) -> View {
        let state = self.lock();
        View {
            online: state
                .everyone
                .iter()
                .map(|(id, o)| OnlineUser {
                    user_id: *id,
                    name: o.name.clone(),
                })
                .collect(),
            offline: Vec::new(),
            unsettled: state.changed.iter().copied().collect(),
        }
    }

    /// How many users are online, on every node.
    pub fn online_count(&self) -> usize {
        self.lock().everyone.len()
    }

    /// How many users would be online with `user_id` (the scope rule of SPEC §5 counts the
    /// user who is authenticating).
    pub fn online_count_with(&self, user_id: Uuid) -> usize {
        let state = self.lock();
        state.everyone.len() + usize::from(!state.everyone.contains_key(&user_id))
    }

    /// Sockets this user has open, on every node.
    pub fn user_connections(&self, user_id: Uuid) -> usize {
        self.lock()
            .views(user_id)
            .map(UserConnections::sockets)
            .sum()
    }

    /// Sockets this user has open on the other nodes.
    pub fn remote_connections(&self, user_id: Uuid) -> usize {
        self.lock()
            .remote
            .values()
            .filter_map(|n| n.users.get(&user_id))
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

    /// Up to `limit` users online after `after` (by id), no more than `max_bytes` of JSON.
    pub fn page(&self, after: Option<Uuid>, limit: usize, max_bytes: usize) -> OnlinePage {
        let state = self.lock();
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut users = Vec::new();
        let mut bytes = 0;
        let mut more = false;
        for (id, online) in state.everyone.range((from, Bound::Unbounded)) {
            let user = OnlineUser {
                user_id: *id,
                name: online.name.clone(),
            };
            let size = entry_bytes(&user);
            if users.len() == limit || (bytes + size > max_bytes && !users.is_empty()) {
                more = true;
                break;
            }
            bytes += size;
            users.push(user);
        }
        OnlinePage {
            next: more.then(|| users.last().map(|u| u.user_id)).flatten(),
            total: state.everyone.len(),
            users,
        }
    }

    /// The difference between who is online now and who this node's sockets were last told
    /// about, if any; what it returns counts as told. A user who left and came back within one
    /// batch is no change at all.
    pub fn take_change(&self) -> Option<PresenceChange> {
        let mut state = self.lock();
        if state.changed.is_empty() {
            return None;
        }
        let changed: Vec<Uuid> = state.changed.drain().collect();
        let mut change = PresenceChange::default();
        for id in changed {
            let now = state.user(id);
            let was = state.announced.contains_key(&id);
            match now {
                Some(user) if !was => {
                    state.announced.insert(id, user.name.clone());
                    change.online.push(user);
                }
                None if was => {
                    state.announced.remove(&id);
                    change.offline.push(id);
                }
                _ => {}
            }
        }
        (!change.is_empty()).then_some(change)
    }

    /// One round of cluster presence: publish this node's changed counts and read the other live
    /// nodes' counts. Redis failures are logged once per outage by the caller; what was not
    /// written is written again once Redis answers.
    pub async fn sync(&self, cluster: &Cluster) -> redis::RedisResult<()> {
        let published = self.publish(cluster).await;
        let refreshed = match published {
            Ok(()) => self.refresh(cluster).await,
            Err(e) => Err(e),
        };
        if let Err(e) = refreshed {
            let mut state = self.lock();
            state.republish = true;
            // Without Redis, other nodes' counts age; past the node timeout they are dropped.
            if state
                .refreshed
                .is_none_or(|at| at.elapsed() > cluster.node_timeout())
            {
                let nodes: Vec<String> = state.remote.keys().cloned().collect();
                for node in nodes {
                    state.replace_node(&node, None);
                }
            }
            return Err(e);
        }
        Ok(())
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
        let gone: Vec<String> = state
            .remote
            .keys()
            .filter(|node| !others.contains(node))
            .cloned()
            .collect();
        for node in gone {
            state.replace_node(&node, None);
        }
        for (node, view) in fresh {
            state.replace_node(&node, Some(view));
        }
        state.refreshed = Some(Instant::now());
        Ok(())
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

/// The bytes of one `{userId, name}` entry in JSON, as serde_json writes it.
pub fn entry_bytes(user: &OnlineUser) -> usize {
    let name: usize = user
        .name
        .chars()
        .map(|c| match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        })
        .sum();
    r#"{"userId":"","name":""},"#.len() + 36 + name
}

/// The bytes of one offline id in JSON (`"…",`).
pub const OFFLINE_ENTRY_BYTES: usize = 39;

#[cfg(test)]
mod tests {
    use super::*;

    fn remote_view(users: &[(Uuid, Uuid, usize)]) -> NodeView {
        NodeView {
            version: 1,
            users: users
                .iter()
                .map(|(user, session, n)| {
                    let connections = UserConnections {
                        name: "Remote".into(),
                        sessions: HashMap::from([(*session, *n)]),
                    };
                    (*user, connections)
                })
                .collect(),
        }
    }

    #[test]
    fn a_user_with_several_tabs_is_one_online_user() {
        let presence = Presence::default();
        let (user, session) = (Uuid::now_v7(), Uuid::now_v7());
        presence.connect(user, session, "Ada");
        presence.connect(user, session, "Ada");
        assert_eq!(presence.view_everyone().online.len(), 1);
        assert_eq!(presence.online_count(), 1);
        assert_eq!(presence.user_connections(user), 2);
        assert_eq!(presence.session_connections(user, session), 2);
        presence.disconnect(user, session);
        assert!(presence.is_online(user));
        presence.disconnect(user, session);
        assert!(!presence.is_online(user));
        assert_eq!(presence.online_count(), 0);
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
        presence
            .lock()
            .replace_node("node-b", Some(remote_view(&[(ada, session, 2)])));
        assert_eq!(presence.user_connections(ada), 3);
        assert_eq!(presence.remote_connections(ada), 2);
        assert_eq!(presence.session_connections(ada, session), 3);
        assert_eq!(
            presence.view_everyone().online.len(),
            1,
            "one user on two nodes"
        );

        presence.disconnect(ada, session);
        assert!(presence.is_online(ada), "still on node b");
        assert_eq!(presence.local_connections(ada), 0);
        presence.lock().replace_node("node-b", None);
        assert!(!presence.is_online(ada));
        assert_eq!(
            presence.take_change(),
            None,
            "online and offline in one batch"
        );
    }

    #[test]
    fn a_user_on_another_node_appears_and_leaves_in_this_nodes_batches() {
        let presence = Presence::default();
        let (bob, session) = (Uuid::now_v7(), Uuid::now_v7());
        presence
            .lock()
            .replace_node("node-b", Some(remote_view(&[(bob, session, 1)])));
        assert_eq!(presence.take_change().unwrap().online[0].user_id, bob);
        presence
            .lock()
            .replace_node("node-b", Some(remote_view(&[])));
        assert_eq!(presence.take_change().unwrap().offline, vec![bob]);
    }

    #[test]
    fn pages_visit_everyone_once_in_id_order() {
        let presence = Presence::default();
        let session = Uuid::now_v7();
        let mut ids: Vec<Uuid> = (0..7).map(|_| Uuid::now_v7()).collect();
        for id in &ids {
            presence.connect(*id, session, "Someone");
        }
        ids.sort();
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = presence.page(cursor, 3, usize::MAX);
            assert_eq!(page.total, 7);
            assert!(page.users.len() <= 3);
            seen.extend(page.users.iter().map(|u| u.user_id));
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, ids);
    }

    #[test]
    fn a_page_stops_before_its_byte_budget() {
        let presence = Presence::default();
        let session = Uuid::now_v7();
        for _ in 0..10 {
            presence.connect(Uuid::now_v7(), session, &"n".repeat(100));
        }
        let one = entry_bytes(&presence.view_everyone().online[0]);
        let page = presence.page(None, 100, one * 4);
        assert_eq!(page.users.len(), 4);
        assert_eq!(page.next, Some(page.users[3].user_id));
    }

    #[test]
    fn entry_bytes_match_serde_json() {
        for name in ["Ada", "Zoë \"the\" \\ best\n", "\u{1}\u{1f}", "日本語"] {
            let user = OnlineUser {
                user_id: Uuid::now_v7(),
                name: name.into(),
            };
            let json = serde_json::to_string(&user).unwrap();
            assert_eq!(entry_bytes(&user), json.len() + 1, "{json}");
        }
    }
}
