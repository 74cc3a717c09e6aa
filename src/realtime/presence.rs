//! Who is online on this node: connection counts per user and per session, and the batched
//! `presenceChanged` diff (what changed since clients were last told).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use serde::Serialize;
use uuid::Uuid;

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

struct UserConnections {
    name: String,
    sockets: usize,
    sessions: HashMap<Uuid, usize>,
}

#[derive(Default)]
struct State {
    users: HashMap<Uuid, UserConnections>,
    /// The online set clients were last told about.
    announced: HashSet<Uuid>,
    /// Something connected or disconnected since the last batch.
    dirty: bool,
}

#[derive(Default)]
pub struct Presence {
    state: Mutex<State>,
}

impl Presence {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one more socket of this user's session.
    pub fn connect(&self, user_id: Uuid, session_id: Uuid, name: &str) {
        let mut state = self.lock();
        let user = state
            .users
            .entry(user_id)
            .or_insert_with(|| UserConnections {
                name: name.to_owned(),
                sockets: 0,
                sessions: HashMap::new(),
            });
        user.name = name.to_owned();
        user.sockets += 1;
        *user.sessions.entry(session_id).or_default() += 1;
        state.dirty = true;
    }

    /// Counts one socket less.
    pub fn disconnect(&self, user_id: Uuid, session_id: Uuid) {
        let mut state = self.lock();
        let Some(user) = state.users.get_mut(&user_id) else {
            return;
        };
        user.sockets = user.sockets.saturating_sub(1);
        if let Some(count) = user.sessions.get_mut(&session_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                user.sessions.remove(&session_id);
            }
        }
        if user.sockets == 0 {
            state.users.remove(&user_id);
        }
        state.dirty = true;
    }

    pub fn is_online(&self, user_id: Uuid) -> bool {
        self.lock().users.contains_key(&user_id)
    }

    /// Sockets this user has open on this node.
    pub fn user_connections(&self, user_id: Uuid) -> usize {
        self.lock().users.get(&user_id).map_or(0, |u| u.sockets)
    }

    /// Sockets this session has open on this node.
    pub fn session_connections(&self, user_id: Uuid, session_id: Uuid) -> usize {
        self.lock()
            .users
            .get(&user_id)
            .and_then(|u| u.sessions.get(&session_id).copied())
            .unwrap_or(0)
    }

    /// Everyone online, by name.
    pub fn online_users(&self) -> Vec<OnlineUser> {
        let state = self.lock();
        let mut users: Vec<OnlineUser> = state
            .users
            .iter()
            .map(|(id, u)| OnlineUser {
                user_id: *id,
                name: u.name.clone(),
            })
            .collect();
        users.sort_by(|a, b| a.name.cmp(&b.name).then(a.user_id.cmp(&b.user_id)));
        users
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
        let online: Vec<OnlineUser> = state
            .users
            .iter()
            .filter(|(id, _)| !state.announced.contains(id))
            .map(|(id, u)| OnlineUser {
                user_id: *id,
                name: u.name.clone(),
            })
            .collect();
        let offline: Vec<Uuid> = state
            .announced
            .iter()
            .filter(|id| !state.users.contains_key(id))
            .copied()
            .collect();
        state.announced = state.users.keys().copied().collect();
        (!online.is_empty() || !offline.is_empty()).then_some(PresenceChange { online, offline })
    }
}

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
}
