//! Whom this node's sockets watch (SPEC §5 "Presence"), and who gets what of a presence batch.
//!
//! A socket in scope `all` watches everyone. A socket in scope `watched` watches its user's
//! conversation partners — read once per user when the user's first such socket arrives, shared
//! by all of them, and grown while they are here by anyone who starts a conversation with the
//! user — and its own `watchPresence` list. Two indexes go the other way (watched user → the
//! users here who have them as partner, → the sockets here that list them), so a batch costs
//! work in proportion to the sockets that watch its users, never to everyone here.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use socketioxide::socket::Sid;
use uuid::Uuid;

use super::presence::{OnlineUser, PresenceChange};
use crate::cluster::Cluster;

/// How many partner announcements the cluster's stream keeps (a node reads it every round).
const PARTNERS_STREAM_MAX: usize = 10_000;
/// The most announcements a node reads in one round.
const PARTNERS_READ_MAX: usize = 1_000;

/// What a socket watches, decided when it authenticates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    All,
    Watched,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Watched => "watched",
        }
    }
}

#[derive(Default)]
pub struct Watching {
    state: Mutex<State>,
    /// How far this node has read the cluster's announcements.
    followed: Mutex<Followed>,
}

/// Where this node is in the cluster's partner stream and its asks to resend welcome lists.
#[derive(Default)]
struct Followed {
    /// The last stream entry read.
    partners: Option<String>,
    /// The resend counter as last seen.
    resends: Option<i64>,
}

#[derive(Default)]
struct State {
    /// This node's sockets that get presence.
    sockets: HashMap<Sid, Watcher>,
    /// The users with a socket in scope `watched` here.
    users: HashMap<Uuid, WatchingUser>,
    /// Watched user → the users here whose partner they are.
    partner_of: HashMap<Uuid, Vec<Uuid>>,
    /// Watched user → the sockets here that list them in `watchPresence`.
    listed_by: HashMap<Uuid, Vec<Sid>>,
    /// The users with a socket in scope `all` here, and those sockets.
    watch_all: HashMap<Uuid, Vec<Sid>>,
    /// Partners added since the last batch (watcher, partner), whose state the watcher's
    /// sockets have not been told.
    untold: Vec<(Uuid, Uuid)>,
    /// Users a socket was told of outside a batch while their state was unsettled (see
    /// `presence::View`): the socket hears of them again with the next batch.
    recheck: Vec<(Sid, Uuid)>,
}

struct Watcher {
    user: Uuid,
    scope: Scope,
    /// Its last `watchPresence` list.
    list: Box<[Uuid]>,
}

struct WatchingUser {
    partners: HashSet<Uuid>,
    /// Its sockets in scope `watched`.
    sockets: Vec<Sid>,
}

/// Who gets what of one batch.
#[derive(Debug, Default)]
pub struct Deliveries {
    /// The whole batch goes to every socket in scope `all` except those of these users, who
    /// are in it themselves: they are in `sockets`, told without themselves.
    pub all_except: Vec<Uuid>,
    /// What each other socket is told.
    pub sockets: Vec<(Sid, PresenceChange)>,
}

fn remove_from<K: std::hash::Hash + Eq, V: PartialEq>(map: &mut HashMap<K, Vec<V>>, key: K, v: &V) {
    if let Entry::Occupied(mut entry) = map.entry(key) {
        entry.get_mut().retain(|x| x != v);
        if entry.get().is_empty() {
            entry.remove();
        }
    }
}

impl State {
    fn add_partner(&mut self, user: Uuid, partner: Uuid) -> bool {
        let Some(watching) = self.users.get_mut(&user) else {
            return false;
        };
        if partner == user || !watching.partners.insert(partner) {
            return false;
        }
        self.partner_of.entry(partner).or_default().push(user);
        true
    }

    fn unlist(&mut self, sid: Sid, list: &[Uuid]) {
        for id in list {
            remove_from(&mut self.listed_by, *id, &sid);
        }
    }

    /// Whether a socket watches `user` (never its own user).
    fn watches(&self, watcher: &Watcher, user: Uuid) -> bool {
        watcher.user != user
            && (watcher.scope == Scope::All
                || watcher.list.contains(&user)
                || self.partner_watch(watcher, user))
    }

    /// Whether socket `sid` (of `watcher`) watches `user` through its user's partners.
    fn partner_watch(&self, watcher: &Watcher, user: Uuid) -> bool {
        self.users
            .get(&watcher.user)
            .is_some_and(|u| u.partners.contains(&user))
    }
}

impl Watching {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `user` has a socket in scope `watched` here (their partners are known).
    pub fn knows_partners_of(&self, user: Uuid) -> bool {
        self.lock().users.contains_key(&user)
    }

    /// Starts watching for socket `sid` of `user`. `partners` are the user's partners as read
    /// for it (unused when another socket of the user here read them first).
    pub fn add(&self, sid: Sid, user: Uuid, scope: Scope, partners: Vec<Uuid>) {
        let mut state = self.lock();
        let watcher = Watcher {
            user,
            scope,
            list: Box::new([]),
        };
        if state.sockets.insert(sid, watcher).is_some() {
            return;
        }
        match scope {
            Scope::All => state.watch_all.entry(user).or_default().push(sid),
            Scope::Watched => {
                if let Some(watching) = state.users.get_mut(&user) {
                    watching.sockets.push(sid);
                    return;
                }
                state.users.insert(
                    user,
                    WatchingUser {
                        partners: HashSet::with_capacity(partners.len()),
                        sockets: vec![sid],
                    },
                );
                for partner in partners {
                    state.add_partner(user, partner);
                }
            }
        }
    }

    /// Socket `sid` is gone.
    pub fn remove(&self, sid: Sid) {
        let mut state = self.lock();
        let Some(watcher) = state.sockets.remove(&sid) else {
            return;
        };
        state.unlist(sid, &watcher.list);
        let user = watcher.user;
        match watcher.scope {
            Scope::All => remove_from(&mut state.watch_all, user, &sid),
            Scope::Watched => {
                let Some(watching) = state.users.get_mut(&user) else {
                    return;
                };
                watching.sockets.retain(|s| *s != sid);
                if watching.sockets.is_empty() {
                    let gone = state.users.remove(&user).map(|u| u.partners);
                    for partner in gone.into_iter().flatten() {
                        remove_from(&mut state.partner_of, partner, &user);
                    }
                    state.untold.retain(|(watcher, _)| *watcher != user);
                }
            }
        }
    }

    /// Replaces socket `sid`'s `watchPresence` list (the caller left out its own user).
    pub fn set_list(&self, sid: Sid, list: Vec<Uuid>) {
        let mut state = self.lock();
        let Some(watcher) = state.sockets.get_mut(&sid) else {
            return;
        };
        let old = std::mem::replace(&mut watcher.list, list.into_boxed_slice());
        let new = watcher.list.clone();
        state.unlist(sid, &old);
        for id in new.iter() {
            state.listed_by.entry(*id).or_default().push(sid);
        }
    }

    /// Everyone in `a` now has a conversation with everyone in `b`: each becomes the other's
    /// partner for the users here who watch their partners. Their sockets hear the new
    /// partners' state with the next batch.
    pub fn partners_met(&self, a: &[Uuid], b: &[Uuid]) {
        let mut state = self.lock();
        for (x, y) in a.iter().flat_map(|x| b.iter().map(move |y| (*x, *y))) {
            for (user, partner) in [(x, y), (y, x)] {
                if state.add_partner(user, partner) {
                    state.untold.push((user, partner));
                }
            }
        }
    }

    /// Whom socket `sid` watches beyond everyone: its user's partners and its list (for the
    /// welcome); `None` for a socket in scope `all` or not here.
    pub fn watched_by(&self, sid: Sid) -> Option<Vec<Uuid>> {
        let state = self.lock();
        let watcher = state.sockets.get(&sid)?;
        if watcher.scope == Scope::All {
            return None;
        }
        let partners = state.users.get(&watcher.user).map(|u| &u.partners);
        let mut watched: Vec<Uuid> = partners.into_iter().flatten().copied().collect();
        watched.extend(
            watcher
                .list
                .iter()
                .filter(|id| partners.is_none_or(|p| !p.contains(id))),
        );
        Some(watched)
    }

    /// This node's sockets that get presence, with their scope.
    pub fn sockets(&self) -> Vec<(Sid, Scope)> {
        let state = self.lock();
        state
            .sockets
            .iter()
            .map(|(sid, w)| (*sid, w.scope))
            .collect()
    }

    /// Socket `sid` was told of `users` while their state was unsettled.
    pub fn recheck(&self, sid: Sid, users: Vec<Uuid>) {
        if !users.is_empty() {
            self.lock()
                .recheck
                .extend(users.into_iter().map(|user| (sid, user)));
        }
    }

    /// Whether anything is to be told even without a change (new partners, rechecks).
    pub fn has_untold(&self) -> bool {
        let state = self.lock();
        !state.untold.is_empty() || !state.recheck.is_empty()
    }

    /// Who is told what of `change`, plus the state of new partners (`told` answers a user as
    /// last told, `Some` when online). A user's own sockets are never told about the user.
    pub fn deliveries(
        &self,
        change: &PresenceChange,
        told: impl Fn(Uuid) -> Option<OnlineUser>,
    ) -> Deliveries {
        let mut state = self.lock();
        let untold = std::mem::take(&mut state.untold);
        let recheck = std::mem::take(&mut state.recheck);
        let state = &*state;
        let mut out: HashMap<Sid, PresenceChange> = HashMap::new();
        // Through the users who have them as partner, then through the sockets that list them
        // (unless the socket has them as partner too, or watches everyone).
        let mut tell = |user: Uuid, f: &mut dyn FnMut(&mut PresenceChange)| {
            for watcher in state.partner_of.get(&user).into_iter().flatten() {
                for sid in state
                    .users
                    .get(watcher)
                    .into_iter()
                    .flat_map(|u| &u.sockets)
                {
                    f(out.entry(*sid).or_default());
                }
            }
            for sid in state.listed_by.get(&user).into_iter().flatten() {
                let Some(watcher) = state.sockets.get(sid) else {
                    continue;
                };
                if watcher.scope == Scope::Watched
                    && watcher.user != user
                    && !state.partner_watch(watcher, user)
                {
                    f(out.entry(*sid).or_default());
                }
            }
        };
        for user in &change.online {
            tell(user.user_id, &mut |c| c.online.push(user.clone()));
        }
        for id in &change.offline {
            tell(*id, &mut |c| c.offline.push(*id));
        }
        let changed: HashSet<Uuid> = change
            .online
            .iter()
            .map(|u| u.user_id)
            .chain(change.offline.iter().copied())
            .collect();
        for (watcher, partner) in untold {
            // A partner in this batch is told with it already.
            if changed.contains(&partner) {
                continue;
            }
            let Some(user) = told(partner) else {
                continue;
            };
            for sid in state
                .users
                .get(&watcher)
                .into_iter()
                .flat_map(|u| &u.sockets)
            {
                out.entry(*sid).or_default().online.push(user.clone());
            }
        }
        // Sockets in scope `all` of users in the batch: the batch without themselves.
        let all_except: Vec<Uuid> = changed
            .iter()
            .filter(|id| state.watch_all.contains_key(id))
            .copied()
            .collect();
        for me in &all_except {
            let without = PresenceChange {
                online: change
                    .online
                    .iter()
                    .filter(|u| u.user_id != *me)
                    .cloned()
                    .collect(),
                offline: change
                    .offline
                    .iter()
                    .filter(|id| *id != me)
                    .copied()
                    .collect(),
            };
            for sid in state.watch_all.get(me).into_iter().flatten() {
                out.insert(*sid, without.clone());
            }
        }
        // Users told outside the last batch while unsettled: their state as told now, unless
        // this batch carries it (or it is the socket's own user).
        for (sid, user) in recheck {
            let Some(watcher) = state.sockets.get(&sid) else {
                continue;
            };
            if changed.contains(&user) || !state.watches(watcher, user) {
                continue;
            }
            let told_now = out.entry(sid).or_default();
            match told(user) {
                Some(online) => told_now.online.push(online),
                None => told_now.offline.push(user),
            }
        }
        Deliveries {
            all_except,
            sockets: out.into_iter().filter(|(_, c)| !c.is_empty()).collect(),
        }
    }
}

impl Watching {
    fn followed(&self) -> std::sync::MutexGuard<'_, Followed> {
        self.followed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks every node to send its sockets their welcome lists again; this node, which does so
    /// itself, does not take the ask for a new one.
    pub async fn ask_resend(&self, cluster: &Cluster) {
        let counter: redis::RedisResult<i64> = redis::cmd("INCR")
            .arg(cluster.key(&["presence", "resends"]))
            .query_async(&mut cluster.conn())
            .await;
        if let Ok(counter) = counter {
            let mut followed = self.followed();
            if followed.resends == Some(counter - 1) {
                followed.resends = Some(counter);
            }
        }
    }

    /// The round's part: new partners announced by any node since the last round, and whether
    /// a node asked for the welcome lists again (answers true then).
    pub async fn follow(&self, cluster: &Cluster) -> redis::RedisResult<bool> {
        let stream = cluster.key(&["presence", "partners"]);
        let last = self.followed().partners.clone();
        let entries: Vec<(String, Vec<String>)> = match &last {
            Some(last) => {
                redis::cmd("XRANGE")
                    .arg(&stream)
                    .arg(format!("({last}"))
                    .arg("+")
                    .arg("COUNT")
                    .arg(PARTNERS_READ_MAX)
                    .query_async(&mut cluster.conn())
                    .await?
            }
            // A node starts reading from the stream's end.
            None => {
                let newest: Vec<(String, Vec<String>)> = redis::cmd("XREVRANGE")
                    .arg(&stream)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1)
                    .query_async(&mut cluster.conn())
                    .await?;
                let start = newest
                    .first()
                    .map_or_else(|| "0-0".to_owned(), |e| e.0.clone());
                self.followed().partners = Some(start);
                Vec::new()
            }
        };
        if let Some((id, _)) = entries.last() {
            self.followed().partners = Some(id.clone());
        }
        for (_, fields) in entries {
            if let [_, a, _, b] = fields.as_slice() {
                self.partners_met(&ids(a), &ids(b));
            }
        }
        let resends: Option<i64> = redis::cmd("GET")
            .arg(cluster.key(&["presence", "resends"]))
            .query_async(&mut cluster.conn())
            .await?;
        let mut followed = self.followed();
        let asked = followed.resends.is_some() && resends != followed.resends;
        followed.resends = Some(resends.unwrap_or(0));
        Ok(asked)
    }
}

/// Tells every node that the users of `a` and of `b` have a conversation now (lost for the
/// other nodes when Redis does not answer: their sockets learn the partners at their next
/// connection).
pub async fn publish_partners(cluster: &Cluster, a: &[Uuid], b: &[Uuid]) {
    let join = |ids: &[Uuid]| {
        ids.iter()
            .map(Uuid::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let added: redis::RedisResult<String> = redis::cmd("XADD")
        .arg(cluster.key(&["presence", "partners"]))
        .arg("MAXLEN")
        .arg("~")
        .arg(PARTNERS_STREAM_MAX)
        .arg("*")
        .arg("a")
        .arg(join(a))
        .arg("b")
        .arg(join(b))
        .query_async(&mut cluster.conn())
        .await;
    if let Err(e) = added {
        tracing::debug!(category = "error", error = %e, "presence: new partners not announced to the cluster");
    }
}

fn ids(csv: &str) -> Vec<Uuid> {
    csv.split(',').filter_map(|id| id.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid() -> Sid {
        Sid::new()
    }

    fn online(id: Uuid) -> OnlineUser {
        OnlineUser {
            user_id: id,
            name: "Someone".into(),
        }
    }

    fn came_online(ids: &[Uuid]) -> PresenceChange {
        PresenceChange {
            online: ids.iter().map(|id| online(*id)).collect(),
            offline: Vec::new(),
        }
    }

    fn told(d: &Deliveries, sid: Sid) -> Option<&PresenceChange> {
        d.sockets.iter().find(|(s, _)| *s == sid).map(|(_, c)| c)
    }

    #[test]
    fn a_socket_hears_of_its_partners_and_its_list_only() {
        let watching = Watching::default();
        let (ada, bob, carol, dan) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        let (tab, other_tab) = (sid(), sid());
        watching.add(tab, ada, Scope::Watched, vec![bob]);
        watching.add(other_tab, ada, Scope::Watched, vec![]);
        watching.set_list(tab, vec![carol]);

        let d = watching.deliveries(&came_online(&[bob, carol, dan]), |_| None);
        let first = told(&d, tab).unwrap();
        let ids: HashSet<Uuid> = first.online.iter().map(|u| u.user_id).collect();
        assert_eq!(ids, HashSet::from([bob, carol]));
        let second = told(&d, other_tab).unwrap();
        assert_eq!(
            second.online,
            vec![online(bob)],
            "partners are shared, lists are not"
        );

        // The next list replaces the last.
        watching.set_list(tab, vec![dan]);
        let d = watching.deliveries(&came_online(&[carol, dan]), |_| None);
        assert_eq!(told(&d, tab).unwrap().online, vec![online(dan)]);
        assert!(told(&d, other_tab).is_none());
    }

    #[test]
    fn a_partner_listed_too_is_told_once_and_nobody_hears_of_themselves() {
        let watching = Watching::default();
        let (ada, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let (tab, all_tab) = (sid(), sid());
        watching.add(tab, ada, Scope::Watched, vec![bob]);
        watching.set_list(tab, vec![bob]);
        watching.add(all_tab, bob, Scope::All, vec![]);
        let d = watching.deliveries(&came_online(&[ada, bob]), |_| None);
        assert_eq!(told(&d, tab).unwrap().online, vec![online(bob)]);
        assert_eq!(d.all_except, vec![bob]);
        assert_eq!(told(&d, all_tab).unwrap().online, vec![online(ada)]);
    }

    #[test]
    fn a_new_partner_is_told_with_the_next_batch_and_forgotten_with_the_last_socket() {
        let watching = Watching::default();
        let (ada, bob, carol) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let tab = sid();
        watching.add(tab, ada, Scope::Watched, vec![]);
        watching.partners_met(&[bob], &[ada]);
        assert!(watching.has_untold());
        let d = watching.deliveries(&PresenceChange::default(), |id| Some(online(id)));
        assert_eq!(told(&d, tab).unwrap().online, vec![online(bob)]);
        let d = watching.deliveries(&came_online(&[bob, carol]), |_| None);
        assert_eq!(told(&d, tab).unwrap().online, vec![online(bob)]);

        watching.remove(tab);
        let d = watching.deliveries(&came_online(&[bob]), |_| None);
        assert!(d.sockets.is_empty());
        assert!(
            watching.lock().partner_of.is_empty(),
            "no index left behind"
        );
    }

    #[test]
    fn a_socket_told_of_an_unsettled_user_hears_of_them_again_with_the_next_batch() {
        let watching = Watching::default();
        let (ada, bob, carol) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let tab = sid();
        watching.add(tab, ada, Scope::Watched, vec![bob, carol]);
        // Ada's welcome said Bob online and Carol offline while both were changing; Bob went
        // back (no flip in the batch), Carol's flip is in it.
        watching.recheck(tab, vec![bob, carol, ada]);
        assert!(watching.has_untold());
        let d = watching.deliveries(&came_online(&[carol]), |_| None);
        let to_ada = told(&d, tab).unwrap();
        assert_eq!(to_ada.online, vec![online(carol)], "the flip, once");
        assert_eq!(to_ada.offline, vec![bob], "as told now; never herself");
        assert!(!watching.has_untold());

        // A user dropped from the list meanwhile is no longer told of.
        let dan = Uuid::now_v7();
        watching.set_list(tab, vec![dan]);
        watching.recheck(tab, vec![dan]);
        watching.set_list(tab, Vec::new());
        let d = watching.deliveries(&PresenceChange::default(), |_| None);
        assert!(told(&d, tab).is_none(), "{d:?}");
    }
}
