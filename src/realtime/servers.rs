//! The two socket servers over one adapter: the local one on a single node, the Redis one in a
//! cluster. [`SocketServers`] is written once, generic over the adapter; [`Servers`] holds the
//! one this node runs, and the `on_servers!` macro (in `realtime`) runs a body on it.
//!
//! With the Redis adapter an emit reaches the room on every node. When Redis does not answer,
//! the emit is repeated on this node alone, so local sockets keep being served through an outage.

use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Serialize;
use serde_json::Value;
use socketioxide::adapter::{Adapter, Emitter, LocalAdapter};
use socketioxide::extract::SocketRef;
use socketioxide::operators::BroadcastOperators;
use socketioxide::socket::Sid;
use socketioxide::{AckError, BroadcastError, SocketIo};

use super::{NAMESPACES_PATH, namespaces_of};
use crate::cluster::driver::RedisDriver;

/// The Redis adapter on the node's reconnecting connection.
pub type RedisAdapter = socketioxide_redis::CustomRedisAdapter<Emitter, RedisDriver>;

/// The socket servers of this node, on the adapter it runs.
pub enum Servers {
    Local(SocketServers<LocalAdapter>),
    Redis(SocketServers<RedisAdapter>),
}

/// The main server and the namespace server.
pub struct SocketServers<A: Adapter> {
    pub main: SocketIo<A>,
    pub namespaces: SocketIo<A>,
}

/// How an emit went.
pub struct Emitted {
    /// Some socket or namespace could not be reached.
    pub failed: bool,
    /// Redis did not take it: only this node's sockets got it.
    pub cluster_failed: bool,
}

impl Emitted {
    pub fn ok(&self) -> bool {
        !self.failed && !self.cluster_failed
    }
}

impl<A: Adapter> SocketServers<A> {
    /// Where an event goes: the main server's `/` and the namespaces of the namespace server
    /// that carry it.
    pub fn operators(&self, event: &str) -> Vec<BroadcastOperators<A>> {
        let topics = namespaces_of(event)
            .iter()
            .filter_map(|ns| self.namespaces.of(ns));
        self.main.of("/").into_iter().chain(topics).collect()
    }

    /// Every namespace of both servers.
    fn all_operators(&self) -> Vec<BroadcastOperators<A>> {
        self.operators("force_logout")
    }

    /// How many sockets each namespace has on this node (`/` is the main server).
    pub fn sockets_by_namespace(&self) -> Vec<(String, usize)> {
        self.all_operators()
            .into_iter()
            .map(|operator| {
                let ns = match operator.ns_path() {
                    "/" => "/".to_owned(),
                    other => format!("{NAMESPACES_PATH}{other}"),
                };
                (ns, operator.local().sockets().len())
            })
            .collect()
    }

    /// How many of this node's sockets in a room would get `event`.
    pub fn receivers(&self, room: &str, event: &str) -> usize {
        self.operators(event)
            .into_iter()
            .map(|operator| operator.local().to(room.to_owned()).sockets().len())
            .sum()
    }

    /// Whether any node has a socket in the room that gets `event`; `None` when the cluster
    /// could not be asked.
    pub async fn remote_receivers(&self, room: &str, event: &str) -> Option<bool> {
        for operator in self.operators(event) {
            match operator.to(room.to_owned()).fetch_sockets().await {
                Ok(sockets) if !sockets.is_empty() => return Some(true),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        Some(false)
    }

    /// This node's sockets in a room, on both servers.
    pub fn local_sockets_in(&self, room: &str) -> Vec<SocketRef<A>> {
        self.all_operators()
            .into_iter()
            .flat_map(|operator| operator.local().to(room.to_owned()).sockets())
            .collect()
    }

    /// Emits to a room on every node (this node alone when Redis does not answer), but not to
    /// the sockets also in `except`.
    pub async fn emit_to_room<T: Serialize + ?Sized>(
        &self,
        room: &str,
        except: Option<&str>,
        event: &str,
        data: &T,
    ) -> Emitted {
        let mut outcome = Emitted {
            failed: false,
            cluster_failed: false,
        };
        for operator in self.operators(event) {
            let mut to = operator.to(room.to_owned());
            if let Some(except) = except {
                to = to.except(except.to_owned());
            }
            match to.clone().emit(event, data).await {
                Ok(()) => {}
                Err(BroadcastError::Adapter(e)) => {
                    tracing::debug!(category = "error", event, error = %e, "emit: Redis failed; emitting on this node");
                    outcome.cluster_failed = true;
                    if let Err(e) = to.local().emit(event, data).await {
                        tracing::warn!(category = "error", event, error = %e, "❌ emit failed");
                        outcome.failed = true;
                    }
                }
                Err(e) => {
                    tracing::warn!(category = "error", event, error = %e, "❌ emit failed");
                    outcome.failed = true;
                }
            }
        }
        outcome
    }

    /// Emits to a room asking for acks; `on_ack` runs when the first socket of a namespace
    /// answers (any answer counts, even one with no arguments, which does not decode).
    pub async fn emit_with_acks<F, Fut>(
        &self,
        room: &str,
        event: &str,
        data: &Value,
        timeout: Duration,
        on_ack: F,
    ) -> Emitted
    where
        F: Fn() -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let mut outcome = Emitted {
            failed: false,
            cluster_failed: false,
        };
        for operator in self.operators(event) {
            let to = operator.to(room.to_owned()).timeout(timeout);
            let acks = match to.clone().emit_with_ack::<_, Value>(event, data).await {
                Ok(acks) => Ok(acks),
                Err(e) => {
                    tracing::debug!(category = "error", event, error = %e, "emit with acks: Redis failed; emitting on this node");
                    outcome.cluster_failed = true;
                    to.local().emit_with_ack::<_, Value>(event, data).await
                }
            };
            match acks {
                Ok(acks) => {
                    let on_ack = on_ack.clone();
                    tokio::spawn(async move {
                        let mut acks = std::pin::pin!(acks);
                        while let Some((_, ack)) = acks.next().await {
                            if matches!(ack, Ok(_) | Err(AckError::Decode(_))) {
                                on_ack().await;
                                break;
                            }
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(category = "error", event, error = %e, "❌ emit failed");
                    outcome.failed = true;
                }
            }
        }
        outcome
    }

    /// Sends `force_logout` to a room's sockets on every node and disconnects them; answers how
    /// many there were.
    pub async fn log_out_room(&self, room: &str, notice: &Value) -> usize {
        let mut sockets = 0;
        for operator in self.all_operators() {
            let to = operator.to(room.to_owned());
            sockets += match to.clone().fetch_sockets().await {
                Ok(found) => found.len(),
                Err(_) => to.clone().local().sockets().len(),
            };
            if to.clone().emit("force_logout", notice).await.is_err() {
                let _ = to.clone().local().emit("force_logout", notice).await;
            }
            if to.clone().disconnect().await.is_err() {
                let _ = to.local().disconnect().await;
            }
        }
        sockets
    }

    /// Puts every socket in room `of`, on every node, in `room` too (in the namespaces that carry
    /// `event`); false when Redis did not take it (this node's sockets joined all the same).
    pub async fn join_room(&self, of: &str, room: &str, event: &str) -> bool {
        let mut ok = true;
        for operator in self.operators(event) {
            let to = operator.to(of.to_owned());
            if to.clone().join(room.to_owned()).await.is_err() {
                ok = false;
                let _ = to.local().join(room.to_owned()).await;
            }
        }
        ok
    }

    /// Puts the socket `sid` of this node (of whichever server and namespace carries `event`)
    /// in `room`; false when no such socket is here.
    pub fn join_local_socket(&self, sid: &str, room: &str, event: &str) -> bool {
        let Ok(sid) = sid.parse::<socketioxide::socket::Sid>() else {
            return false;
        };
        let mut found = false;
        for operator in self.operators(event) {
            if let Some(socket) = operator.get_socket(sid) {
                socket.join(room.to_owned());
                found = true;
            }
        }
        found
    }

    /// Takes every socket in room `of`, on every node, out of `room`.
    pub async fn leave_room(&self, of: &str, room: &str) -> bool {
        let mut ok = true;
        for operator in self.all_operators() {
            let to = operator.to(of.to_owned());
            if to.clone().leave(room.to_owned()).await.is_err() {
                ok = false;
                let _ = to.local().leave(room.to_owned()).await;
            }
        }
        ok
    }

    /// Emits to one socket of this node, on whichever server and namespace carries `event`.
    pub fn emit_to_local_socket<T: Serialize + ?Sized>(&self, sid: Sid, event: &str, data: &T) {
        for operator in self.operators(event) {
            if let Some(socket) = operator.get_socket(sid) {
                let _ = socket.emit(event, data);
            }
        }
    }

    /// Emits to a room of this node only, but not to the sockets also in one of `except`.
    pub async fn emit_local_room<T: Serialize + ?Sized>(
        &self,
        room: &str,
        except: &[String],
        event: &str,
        data: &T,
    ) {
        for operator in self.operators(event) {
            let to = operator.local().to(room.to_owned()).except(except.to_vec());
            if let Err(e) = to.emit(event, data).await {
                tracing::warn!(category = "error", event, error = %e, "❌ emit failed");
            }
        }
    }

    /// Emits to every socket of this node only.
    pub async fn emit_local(&self, event: &str, data: &Value) {
        for operator in self.all_operators() {
            let _ = operator.local().emit(event, data).await;
        }
    }

    pub async fn close(&self) {
        self.main.close().await;
        self.namespaces.close().await;
    }
}
