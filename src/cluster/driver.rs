//! The pub/sub driver under the socketioxide Redis adapter, on a `ConnectionManager`.
//!
//! socketioxide-redis ships a driver on a plain multiplexed connection, which stays broken after
//! Redis restarts. This one implements the same `Driver` trait on the node's reconnecting
//! connection: published packets fail fast while Redis is away, and once it is back the manager
//! resubscribes to every channel, so the node rejoins the cluster by itself.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, PushInfo, PushKind, Value};
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use tokio::sync::mpsc;

/// Where each subscribed channel's messages go.
#[derive(Clone, Default)]
pub struct Handlers(Arc<RwLock<HashMap<String, mpsc::Sender<ChanItem>>>>);

impl Handlers {
    /// The callback the connection calls with every pushed message.
    pub fn push_sender(
        &self,
    ) -> impl Fn(PushInfo) -> Result<(), std::convert::Infallible> + 'static {
        let handlers = self.clone();
        move |push| {
            handlers.deliver(push);
            Ok(())
        }
    }

    fn deliver(&self, push: PushInfo) {
        if !matches!(push.kind, PushKind::Message) {
            return;
        }
        let mut data = push.data.into_iter();
        let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) =
            (data.next(), data.next())
        else {
            return;
        };
        let Ok(channel) = String::from_utf8(channel) else {
            return;
        };
        let handlers = self.0.read().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = handlers.get(&channel)
            && tx.try_send((channel, payload)).is_err()
        {
            tracing::warn!(
                category = "warn",
                "⚠️ cluster messages arrive faster than they are handled; one was dropped"
            );
        }
    }
}

/// The adapter's driver: publish, subscribe and count servers on the node's connection.
#[derive(Clone)]
pub struct RedisDriver {
    conn: ConnectionManager,
    handlers: Handlers,
}

impl RedisDriver {
    pub fn new(conn: ConnectionManager, handlers: Handlers) -> Self {
        Self { conn, handlers }
    }
}

impl Driver for RedisDriver {
    type Error = redis::RedisError;

    async fn publish(&self, chan: String, val: Vec<u8>) -> Result<(), Self::Error> {
        self.conn.clone().publish::<_, _, ()>(chan, val).await
    }

    async fn subscribe(
        &self,
        chan: String,
        size: usize,
    ) -> Result<MessageStream<ChanItem>, Self::Error> {
        let (tx, rx) = mpsc::channel(size);
        self.handlers
            .0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(chan.clone(), tx);
        self.conn.clone().subscribe(chan).await?;
        Ok(MessageStream::new(rx))
    }

    async fn unsubscribe(&self, chan: String) -> Result<(), Self::Error> {
        self.handlers
            .0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&chan);
        self.conn.clone().unsubscribe(chan).await
    }

    async fn num_serv(&self, chan: &str) -> Result<u16, Self::Error> {
        let (_, count): (String, u16) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(chan)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pushed_message_reaches_its_channel_and_nothing_else_does() {
        let handlers = Handlers::default();
        let (tx, mut rx) = mpsc::channel(4);
        handlers
            .0
            .write()
            .unwrap()
            .insert("p-request#/#".into(), tx);
        let push = handlers.push_sender();
        let message = |kind, channel: &str| PushInfo {
            kind,
            data: vec![
                Value::BulkString(channel.as_bytes().to_vec()),
                Value::BulkString(b"packet".to_vec()),
            ],
        };
        push(message(PushKind::Message, "p-request#/#")).unwrap();
        push(message(PushKind::Message, "another")).unwrap();
        push(message(PushKind::Subscribe, "p-request#/#")).unwrap();
        assert_eq!(
            rx.try_recv().unwrap(),
            ("p-request#/#".to_owned(), b"packet".to_vec())
        );
        assert!(rx.try_recv().is_err(), "only the one message is delivered");
    }
}
