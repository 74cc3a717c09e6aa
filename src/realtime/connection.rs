//! Each socket's own state, kept in its extensions: who it is, its event budget, its timer, where
//! it is in its life, and the guards that hold its places under the connection limits.

use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;
use tokio::sync::SetOnce;
use tokio::task::AbortHandle;

use super::Realtime;
use super::watch::Scope;
use crate::ratelimit::EventBudget;
use crate::store::User;
use crate::timestamp::Timestamp;

/// Who an authenticated socket belongs to.
#[derive(Clone, Debug)]
pub struct Identity {
    pub user: User,
    pub session_id: uuid::Uuid,
    /// When the socket's current access token expires.
    pub expires_at: Timestamp,
}

/// Per-socket state, kept in the socket's extensions.
#[derive(Default)]
pub struct Connection {
    identity: RwLock<Option<Identity>>,
    /// Events per second this socket may send.
    pub budget: Mutex<EventBudget>,
    /// The pending auth timeout or token refresh; aborted when replaced or at disconnect.
    timer: Mutex<Option<AbortHandle>>,
    /// Whether the socket is counted online, and as which session.
    life: Mutex<Life>,
    /// The socket's place in the node's connection count.
    counted: Mutex<Option<Counted>>,
    /// The socket's place under the per-user limit, for its whole life.
    reservation: Mutex<Option<Reservation>>,
    /// The user's groups as read at authentication, until the socket joins their rooms.
    groups: Mutex<Vec<uuid::Uuid>>,
    /// The presence scope decided at authentication, with the partners read for it, until the
    /// socket starts watching (`None` on a namespace without presence).
    watch: Mutex<Option<(Scope, Vec<uuid::Uuid>)>>,
    /// Set once the socket is connected, or gone (see [`Connection::connected`]).
    connected: SetOnce<()>,
}

/// Where a socket is in its life. socketioxide runs the connect and the disconnect handler in
/// tasks of their own, so a socket whose client left at once can see its disconnect handler
/// run first: it then stays `Closed`, and a late `establish` counts nothing.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub enum Life {
    /// Connected or connecting, not counted online.
    #[default]
    Pending,
    /// In its rooms and counted online by presence under this session (see `establish`).
    Established {
        user_id: uuid::Uuid,
        session_id: uuid::Uuid,
    },
    /// Disconnected: nothing counts it, no timer may start.
    Closed,
}

/// A socket's place in the node's connection count (`MAX_CONNECTIONS`): taken first in the
/// handshake, given back when it is refused, at disconnect, or when the socket is dropped
/// without a disconnect (socketioxide drops a socket whose connection closed while the
/// handshake middleware ran, and calls neither handler).
pub struct Counted(Realtime);

impl Counted {
    /// `None` when the node has `max` sockets already.
    pub fn take(realtime: &Realtime, max: usize) -> Option<Self> {
        realtime.try_connect(max).then(|| Self(realtime.clone()))
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.disconnected();
    }
}

/// A socket's place under `MAX_CONNECTIONS_PER_USER` (see `places`), taken in the handshake
/// (or at `authenticate`) and given back when the socket closes, or is dropped without closing.
pub struct Reservation {
    realtime: Realtime,
    user_id: uuid::Uuid,
}

impl Reservation {
    /// `None` when the user has `limit` sockets already, on every node.
    pub async fn take(realtime: &Realtime, user_id: uuid::Uuid, limit: usize) -> Option<Self> {
        let taken = realtime
            .inner
            .places
            .take(realtime.cluster(), realtime.presence(), user_id, limit)
            .await;
        taken.then(|| Self {
            realtime: realtime.clone(),
            user_id,
        })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let (realtime, user_id) = (&self.realtime, self.user_id);
        realtime.inner.places.give_back(user_id);
        let (Some(cluster), Ok(runtime)) =
            (realtime.cluster(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let (realtime, cluster) = (realtime.clone(), cluster.clone());
        runtime.spawn(async move {
            realtime.inner.places.give_back_in(&cluster, user_id).await;
        });
    }
}

impl Connection {
    pub fn identity(&self) -> Option<Identity> {
        self.identity
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_identity(&self, identity: Identity) {
        *self.identity.write().unwrap_or_else(|e| e.into_inner()) = Some(identity);
    }

    pub fn life(&self) -> MutexGuard<'_, Life> {
        self.life.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps the socket's place in the node's connections until [`Connection::uncount`] or
    /// its drop.
    pub fn count(&self, counted: Counted) {
        put(&self.counted, Some(counted));
    }

    pub fn uncount(&self) {
        put(&self.counted, None);
    }

    /// Keeps the place held under the per-user limit until [`Connection::release`] or its drop.
    pub fn hold(&self, reservation: Reservation) {
        put(&self.reservation, Some(reservation));
    }

    pub fn release(&self) {
        put(&self.reservation, None);
    }

    /// Keeps `handle` as the socket's timer, aborting the one before; aborts `handle` itself
    /// once the socket is closed (a refresh that was running at the disconnect ends there).
    pub fn set_timer(&self, handle: AbortHandle) {
        let mut timer = self.timer.lock().unwrap_or_else(|e| e.into_inner());
        if *self.life() == Life::Closed {
            handle.abort();
        } else if let Some(old) = timer.replace(handle) {
            old.abort();
        }
    }

    /// Waits until socketioxide counts the socket as connected. It answers the connect packet
    /// before it marks the socket connected, and an emit to an unmarked socket fails; an event the
    /// client sends the moment it is answered can be handled in between. Returns at once but in a
    /// socket's first instants; gives up after a second for a socket whose connect failed.
    pub async fn connected(&self) {
        if !self.connected.initialized() {
            let _ = tokio::time::timeout(Duration::from_secs(1), self.connected.wait()).await;
        }
    }

    /// Keeps the groups to join when the socket is established.
    pub fn set_groups(&self, groups: Vec<uuid::Uuid>) {
        *self.groups.lock().unwrap_or_else(|e| e.into_inner()) = groups;
    }

    /// Keeps the presence scope (and partners) until the socket starts watching.
    pub fn set_watch(&self, scope: Scope, partners: Vec<uuid::Uuid>) {
        *self.watch.lock().unwrap_or_else(|e| e.into_inner()) = Some((scope, partners));
    }

    pub fn take_watch(&self) -> Option<(Scope, Vec<uuid::Uuid>)> {
        self.watch.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    pub fn take_groups(&self) -> Vec<uuid::Uuid> {
        std::mem::take(&mut *self.groups.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn mark_connected(&self) {
        let _ = self.connected.set(());
    }

    pub fn cancel_timer(&self) {
        if let Some(old) = self.timer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            old.abort();
        }
    }
}

/// Replaces what a slot holds; the old value (a guard) is dropped, giving its place back.
fn put<T>(slot: &Mutex<Option<T>>, value: Option<T>) {
    *slot.lock().unwrap_or_else(|e| e.into_inner()) = value;
}

/// The connection state of a socket (set by the handshake before anything else runs).
pub fn connection<A: Adapter>(s: &SocketRef<A>) -> Arc<Connection> {
    s.extensions.get::<Arc<Connection>>().unwrap_or_default()
}
