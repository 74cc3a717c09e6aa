//! One Socket.IO client socket over the websocket transport: connects, authenticates with
//! `auth.token` in the namespace connect packet, then hands the scenario every packet it
//! receives. The scenario answers pings itself (see [`Socket::answer`]) so that receiving stays
//! cancel-safe.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};

use crate::protocol::{self, Kind, Packet};
use crate::ws::{Incoming, WsClient};

/// Where the sockets go.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// The Socket.IO server's path, e.g. `/api/socket`.
    pub path: String,
}

impl Target {
    fn websocket_path(&self) -> String {
        format!(
            "{}/?EIO=4&transport=websocket",
            self.path.trim_end_matches('/')
        )
    }
}

/// Why a socket could not connect, as counted in the reports.
#[derive(Debug)]
pub enum ConnectFailure {
    /// `connect_error` with this message.
    Refused(String),
    /// No answer in time.
    Timeout,
    /// The server closed the connection during the handshake.
    Closed,
    Io(io::Error),
    Protocol(String),
}

impl fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectFailure::Refused(reason) => write!(f, "connect_error:{reason}"),
            ConnectFailure::Timeout => f.write_str("timeout"),
            ConnectFailure::Closed => f.write_str("closed"),
            ConnectFailure::Io(e) => match e.kind() {
                io::ErrorKind::Other => write!(f, "{e}"),
                kind => write!(f, "io:{kind:?}"),
            },
            ConnectFailure::Protocol(what) => write!(f, "protocol:{what}"),
        }
    }
}

impl From<io::Error> for ConnectFailure {
    fn from(e: io::Error) -> Self {
        ConnectFailure::Io(e)
    }
}

/// An authenticated Socket.IO socket on the main namespace.
pub struct Socket {
    ws: WsClient,
    next_ack: u64,
}

/// What arrived on a socket.
pub enum Received {
    /// One Engine.IO packet's text; decode it with [`protocol::decode`].
    Frame(String),
    /// A frame too long to keep (presence lists); its length.
    Skipped(u64),
    /// A websocket-level ping to answer.
    WsPing(Vec<u8>),
    /// The connection ended.
    Closed,
}

impl Socket {
    /// Connects and authenticates with `token`; done when the server answers `40{sid}`.
    pub async fn connect(
        target: &Target,
        token: &str,
        timeout: Duration,
    ) -> Result<Socket, ConnectFailure> {
        match tokio::time::timeout(timeout, Self::handshake(target, token)).await {
            Ok(result) => result,
            Err(_) => Err(ConnectFailure::Timeout),
        }
    }

    async fn handshake(target: &Target, token: &str) -> Result<Socket, ConnectFailure> {
        let ws = WsClient::connect(target.addr, &target.websocket_path()).await?;
        let mut socket = Socket { ws, next_ack: 0 };
        let mut sent_connect = false;
        loop {
            let text = match socket.recv().await? {
                Received::Frame(text) => text,
                Received::Skipped(_) => continue,
                Received::WsPing(payload) => {
                    socket.ws.send_pong(&payload).await?;
                    continue;
                }
                Received::Closed => return Err(ConnectFailure::Closed),
            };
            let packet =
                protocol::decode(&text).map_err(|e| ConnectFailure::Protocol(e.to_string()))?;
            match packet {
                Packet::Open(_) if !sent_connect => {
                    let hello = protocol::connect("/", &json!({ "token": token }));
                    socket.send(&hello).await?;
                    sent_connect = true;
                }
                Packet::Ping(data) => socket.send(&protocol::pong(data)).await?,
                Packet::Socket(p) if p.kind == Kind::Connect && p.namespace == "/" => {
                    return Ok(socket);
                }
                Packet::Socket(p) if p.kind == Kind::ConnectError => {
                    return Err(ConnectFailure::Refused(protocol::connect_error_message(&p)));
                }
                Packet::Close => return Err(ConnectFailure::Closed),
                _ => {}
            }
        }
    }

    /// The next thing the server sent. Cancel-safe.
    pub async fn recv(&mut self) -> io::Result<Received> {
        Ok(match self.ws.recv().await? {
            Incoming::Text(text) => Received::Frame(text),
            Incoming::Skipped(len) => Received::Skipped(len),
            Incoming::Ping(payload) => Received::WsPing(payload),
            Incoming::Closed => Received::Closed,
        })
    }

    /// Sends one encoded packet (see [`protocol`]).
    pub async fn send(&mut self, frame: &str) -> io::Result<()> {
        self.ws.send_text(frame).await
    }

    /// Emits an event that asks for an ack; answers the ack id.
    pub async fn emit_with_ack(&mut self, event: &str, data: &Value) -> io::Result<u64> {
        self.next_ack += 1;
        let id = self.next_ack;
        self.send(&protocol::event("/", Some(id), event, &[data]))
            .await?;
        Ok(id)
    }

    /// Does what every socket must do with what it received: answers Engine.IO and websocket
    /// pings. Answers false when the socket is closed.
    pub async fn answer(&mut self, received: &Received) -> io::Result<bool> {
        match received {
            Received::Frame(text) if text.starts_with('2') => {
                self.send(&protocol::pong(&text[1..])).await?;
            }
            Received::Frame(text) if text == "1" => return Ok(false),
            Received::WsPing(payload) => self.ws.send_pong(payload).await?,
            Received::Closed => return Ok(false),
            _ => {}
        }
        Ok(true)
    }

    /// Bytes received so far, websocket framing included.
    pub fn rx_bytes(&self) -> u64 {
        self.ws.rx_bytes
    }
}
