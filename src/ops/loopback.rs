//! A minimal Socket.IO v5 client over WebSocket, used by the self-test to talk to this very
//! server through the same door clients use.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any one step may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(3);

pub struct LoopbackSocket {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_ack: u64,
}

impl LoopbackSocket {
    /// Opens a socket on the main server at `addr`, authenticates it with `token`, and waits
    /// until the server has taken it in (`authenticated`).
    pub async fn connect(addr: SocketAddr, token: &str) -> anyhow::Result<Self> {
        let url = format!(
            "ws://{addr}{}/?EIO=4&transport=websocket",
            crate::realtime::SOCKET_PATH
        );
        let (ws, _) = tokio::time::timeout(STEP_TIMEOUT, tokio_tungstenite::connect_async(url))
            .await
            .context("connecting timed out")??;
        let mut socket = Self { ws, next_ack: 0 };
        let open = socket.next_text().await?;
        if !open.starts_with('0') {
            bail!("expected the Engine.IO open packet");
        }
        socket
            .send(format!("40{}", json!({ "token": token })))
            .await?;
        loop {
            let packet = socket.next_text().await?;
            if packet.starts_with("40") {
                // Rooms are joined before `authenticated` is emitted: after it, the socket
                // receives what is sent to its user and session.
                socket.next_event("authenticated").await?;
                return Ok(socket);
            }
            if let Some(error) = packet.strip_prefix("44") {
                bail!("connection refused: {error}");
            }
        }
    }

    async fn send(&mut self, text: String) -> anyhow::Result<()> {
        self.ws.send(Message::text(text)).await?;
        Ok(())
    }

    /// The next Socket.IO packet, answering Engine.IO pings on the way.
    async fn next_text(&mut self) -> anyhow::Result<String> {
        loop {
            let frame = tokio::time::timeout(STEP_TIMEOUT, self.ws.next())
                .await
                .context("no answer in time")?
                .context("the connection closed")??;
            let Message::Text(text) = frame else { continue };
            let text = text.to_string();
            if text == "2" {
                self.send("3".to_owned()).await?;
                continue;
            }
            return Ok(text);
        }
    }

    /// Emits an event and waits for its ack.
    pub async fn emit_with_ack(&mut self, event: &str, data: Value) -> anyhow::Result<Value> {
        let id = self.next_ack;
        self.next_ack += 1;
        self.send(format!("42{id}{}", json!([event, data]))).await?;
        let prefix = format!("43{id}");
        loop {
            let packet = self.next_text().await?;
            if let Some(body) = packet.strip_prefix(&prefix) {
                let mut args: Vec<Value> = serde_json::from_str(body)?;
                return Ok(if args.is_empty() {
                    Value::Null
                } else {
                    args.swap_remove(0)
                });
            }
        }
    }

    /// Waits for the next event of this name and answers its payload.
    pub async fn next_event(&mut self, name: &str) -> anyhow::Result<Value> {
        loop {
            let packet = self.next_text().await?;
            let Some(body) = packet.strip_prefix("42") else {
                continue;
            };
            let body = body.trim_start_matches(|c: char| c.is_ascii_digit());
            let Ok(Value::Array(mut args)) = serde_json::from_str::<Value>(body) else {
                continue;
            };
            if args.first().and_then(Value::as_str) == Some(name) {
                return Ok(if args.len() > 1 {
                    args.swap_remove(1)
                } else {
                    Value::Null
                });
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.send("41".to_owned()).await;
        let _ = self.ws.close(None).await;
    }
}
