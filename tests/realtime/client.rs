//! A small Socket.IO v5 test client over one raw WebSocket (Engine.IO v4), so the tests see the
//! server exactly as a client does, and can also do what `socket.io-client` never would: send
//! garbage, oversized or binary frames.
//!
//! The wire format, all in text frames:
//! - Engine.IO: `0{sid,pingInterval,…}` opens the session; the server pings with `2`, the client
//!   answers `3`; `1` closes; `4<socket.io packet>` carries everything else.
//! - Socket.IO (after the `4`): `0{auth}` asks to connect, `0{"sid"}` accepts, `4{"message"}` is
//!   `connect_error`; `1` is a disconnect; `2[<id>]["event",data]` an event (asking for an ack
//!   when it has an id), `3<id>[data]` the ack of event `<id>`. A packet of a namespace other
//!   than `/` names it right after the type: `0/messenger,{auth}`, `2/messenger,1["event",…]`.
//!
//! One client is one socket of one namespace over its own WebSocket (no multiplexing).
//!
//! A reader task answers pings, routes acks to their waiters and queues events; the test reads
//! them with [`SocketClient::next_event`]. Every wait is bounded by [`WAIT`] and fails loudly.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};

/// The longest any single wait (an event, an ack, a disconnect) lasts before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// An event the server sent: its name and first argument (`null` when there was none).
#[derive(Debug)]
struct Event {
    name: String,
    data: Value,
}

type Acks = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;
type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;
type WsSink = futures_util::stream::SplitSink<Ws, Message>;
type WsStream = futures_util::stream::SplitStream<Ws>;

/// How to open a connection: server path and namespace, `auth` token, extra query string, extra
/// HTTP headers.
pub struct Handshake {
    addr: SocketAddr,
    path: String,
    namespace: String,
    token: Option<String>,
    query: String,
    headers: Vec<(&'static str, String)>,
}

impl Handshake {
    /// A connection to the main server (`/api/socket`) with no auth at all.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            path: "/api/socket".to_owned(),
            namespace: "/".to_owned(),
            token: None,
            query: String::new(),
            headers: Vec::new(),
        }
    }

    /// Connects to the server at `path` (e.g. `/api/socket-namespaces`) and its `namespace`
    /// (e.g. `/messenger`) instead.
    pub fn at(mut self, path: &str, namespace: &str) -> Self {
        self.path = path.to_owned();
        self.namespace = namespace.to_owned();
        self
    }

    /// Sends `{"token": …}` as the Socket.IO connect payload (`auth` in `socket.io-client`).
    pub fn token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    /// Appends `&<query>` to the connection URL.
    pub fn query(mut self, query: &str) -> Self {
        self.query = format!("&{query}");
        self
    }

    /// Adds an HTTP header to the WebSocket upgrade request (`Origin`, `Cookie`, …).
    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    /// Opens the WebSocket, asks to join the namespace and closes the connection at once,
    /// without waiting for the answer: a client that leaves while the server checks its token.
    pub async fn connect_and_leave(self) {
        let (mut sink, stream, _) = self.open().await;
        let _ = sink.close().await;
        drop(stream);
    }

    /// Opens the WebSocket and asks to join the namespace. `Err` carries the message of the
    /// server's `connect_error`; a transport failure panics.
    pub async fn connect(self) -> Result<SocketClient, String> {
        let (mut sink, stream, nsp) = self.open().await;

        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        // Ends when every sender is gone (the client and its reader dropped), closing politely.
        tokio::spawn(async move {
            while let Some(frame) = out_rx.recv().await {
                if sink.send(frame).await.is_err() {
                    return;
                }
            }
            let _ = sink.close().await;
        });
        let (events_tx, events) = mpsc::unbounded_channel();
        let (connected_tx, connected_rx) = oneshot::channel();
        let (closed_tx, closed) = watch::channel(false);
        let acks = Acks::default();
        let ack_server_events = Arc::new(AtomicBool::new(false));
        let reader = tokio::spawn(read(
            stream,
            Reader {
                out: out.clone(),
                nsp: nsp.clone(),
                events: events_tx,
                acks: acks.clone(),
                ack_server_events: ack_server_events.clone(),
                connected: Some(connected_tx),
                closed: closed_tx,
            },
        ));
        let mut client = SocketClient {
            sid: String::new(),
            nsp,
            out,
            events,
            received: VecDeque::new(),
            acks,
            next_id: 0,
            ack_server_events,
            closed,
            reader,
        };
        match timeout(WAIT, connected_rx).await {
            Ok(Ok(Ok(sid))) => {
                client.sid = sid;
                Ok(client)
            }
            Ok(Ok(Err(message))) => Err(message),
            Ok(Err(_)) => panic!("the connection closed before the server answered `40`"),
            Err(_) => panic!("no answer to the connect packet within {WAIT:?}"),
        }
    }

    /// The WebSocket after the Engine.IO open packet and the connect packet: its two halves and
    /// the namespace prefix of every packet.
    async fn open(self) -> (WsSink, WsStream, String) {
        let url = format!(
            "ws://{}{}/?EIO=4&transport=websocket{}",
            self.addr, self.path, self.query
        );
        // What follows the packet type in every packet of this namespace.
        let nsp = match self.namespace.as_str() {
            "/" => String::new(),
            other => format!("{other},"),
        };
        let mut request = url.as_str().into_client_request().expect("a valid URL");
        for (name, value) in &self.headers {
            request.headers_mut().insert(
                HeaderName::from_bytes(name.as_bytes()).expect("a valid header name"),
                HeaderValue::from_str(value).expect("a valid header value"),
            );
        }
        let (stream, _) = timeout(WAIT, tokio_tungstenite::connect_async(request))
            .await
            .expect("the WebSocket upgrade timed out")
            .unwrap_or_else(|e| panic!("the WebSocket upgrade to {url} failed: {e}"));
        let (mut sink, mut stream) = stream.split();

        let open = timeout(WAIT, stream.next()).await;
        match open {
            Ok(Some(Ok(Message::Text(text)))) if text.starts_with('0') => {}
            other => panic!("expected the Engine.IO open packet `0{{…}}`, got {other:?}"),
        }
        let connect = match &self.token {
            Some(token) => format!("40{nsp}{}", json!({ "token": token })),
            None => format!("40{nsp}"),
        };
        sink.send(Message::text(connect))
            .await
            .expect("sending the connect packet");
        (sink, stream, nsp)
    }
}

/// One connected (or refused, or closed) Socket.IO client.
pub struct SocketClient {
    /// The Socket.IO socket id the server gave.
    pub sid: String,
    /// The namespace and its comma (`/messenger,`) that its packets carry; empty for `/`.
    nsp: String,
    /// Frames to send; written in order by the writer task.
    out: mpsc::UnboundedSender<Message>,
    events: mpsc::UnboundedReceiver<Event>,
    /// Events already read from `events` but not yet asked for.
    received: VecDeque<Event>,
    acks: Acks,
    next_id: u64,
    /// Whether the reader answers `42<id>[…]` from the server with `43<id>[{}]`.
    ack_server_events: Arc<AtomicBool>,
    /// Becomes true on a `41`, an Engine.IO close, or the end of the WebSocket.
    closed: watch::Receiver<bool>,
    reader: JoinHandle<()>,
}

impl SocketClient {
    /// Emits `event` with `data` and no ack.
    pub fn emit(&self, event: &str, data: Value) {
        self.send_raw(&format!("42{}{}", self.nsp, json!([event, data])));
    }

    /// Emits `event` asking for an ack, and answers the receiver of that ack; it fails (is
    /// dropped) if the connection ends first.
    pub fn emit_expecting_ack(&mut self, event: &str, data: Value) -> oneshot::Receiver<Value> {
        self.next_id += 1;
        let (tx, rx) = oneshot::channel();
        if self.is_connected() {
            lock(&self.acks).insert(self.next_id, tx);
        }
        self.send_raw(&format!(
            "42{}{}{}",
            self.nsp,
            self.next_id,
            json!([event, data])
        ));
        rx
    }

    /// Emits `event` and waits for its ack.
    pub async fn emit_with_ack(&mut self, event: &str, data: Value) -> Value {
        let ack = self.emit_expecting_ack(event, data);
        match timeout(WAIT, ack).await {
            Ok(Ok(value)) => value,
            Ok(Err(_)) => panic!("the connection ended before the ack of `{event}`"),
            Err(_) => panic!("no ack of `{event}` within {WAIT:?}"),
        }
    }

    /// Sends one text frame as it is (a whole Engine.IO packet).
    pub fn send_raw(&self, text: &str) {
        let _ = self.out.send(Message::text(text.to_owned()));
    }

    /// Sends one binary frame.
    pub fn send_binary(&self, bytes: Vec<u8>) {
        let _ = self.out.send(Message::binary(bytes));
    }

    /// From now on, acknowledge every server event that asks for it (as a client that handles
    /// `newMessage` with a callback does), with `{}`.
    pub fn ack_server_events(&self) {
        self.ack_server_events.store(true, Ordering::Relaxed);
    }

    /// The next `name` event, waiting up to [`WAIT`]; other events stay queued.
    pub async fn next_event(&mut self, name: &str) -> Value {
        self.next_event_where(name, |_| true).await
    }

    /// The next `name` event whose data satisfies `wanted`; earlier `name` events that do not
    /// stay queued, other events too.
    pub async fn next_event_where(&mut self, name: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        self.next_event_within(name, wanted, WAIT).await
    }

    /// As [`Self::next_event_where`], waiting up to `wait` (for what the server does on a timer
    /// longer than [`WAIT`]).
    pub async fn next_event_within(
        &mut self,
        name: &str,
        wanted: impl Fn(&Value) -> bool,
        wait: Duration,
    ) -> Value {
        let deadline = Instant::now() + wait;
        loop {
            let found = self
                .received
                .iter()
                .position(|e| e.name == name && wanted(&e.data));
            if let Some(at) = found {
                return self.received.remove(at).expect("a found index").data;
            }
            match timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) => self.received.push_back(event),
                Ok(None) => panic!(
                    "the connection ended while waiting for `{name}`; received: {:?}",
                    self.received
                ),
                Err(_) => panic!(
                    "no matching `{name}` event within {wait:?}; received: {:?}",
                    self.received
                ),
            }
        }
    }

    /// The oldest event not yet taken, whatever its name: `(name, data)`.
    pub async fn next_any(&mut self) -> (String, Value) {
        if self.received.is_empty() {
            match timeout(WAIT, self.events.recv()).await {
                Ok(Some(event)) => self.received.push_back(event),
                Ok(None) => panic!("the connection ended while waiting for an event"),
                Err(_) => panic!("no event at all within {WAIT:?}"),
            }
        }
        let event = self.received.pop_front().expect("an event");
        (event.name, event.data)
    }

    /// Takes every `name` event received so far, after an [ordering barrier](Self::barrier).
    pub async fn take_events(&mut self, name: &str) -> Vec<Value> {
        self.barrier().await;
        let (matching, others) = std::mem::take(&mut self.received)
            .into_iter()
            .partition::<VecDeque<_>, _>(|e| e.name == name);
        self.received = others;
        matching.into_iter().map(|e| e.data).collect()
    }

    /// Fails if a `name` event has arrived, or arrives before the barrier: anything the server
    /// emitted to this socket before it handled the barrier comes first on the same connection.
    pub async fn expect_no_event(&mut self, name: &str) {
        let events = self.take_events(name).await;
        assert!(
            events.is_empty(),
            "expected no `{name}` event, got {events:?}"
        );
    }

    /// An ordering barrier: a `ping` round-trip on this connection. When its ack is back, every
    /// event the server emitted to this socket before handling the ping has been received. Needs
    /// an authenticated socket; its own `pong` is dropped.
    pub async fn barrier(&mut self) {
        let marker = format!("barrier-{}", self.next_id + 1);
        let ack = self
            .emit_with_ack("ping", json!({ "ts": marker.clone() }))
            .await;
        assert_eq!(ack["ok"], true, "the barrier ping was refused: {ack}");
        while let Ok(event) = self.events.try_recv() {
            self.received.push_back(event);
        }
        self.received
            .retain(|e| !(e.name == "pong" && e.data["ts"] == marker.as_str()));
    }

    /// Waits until the server has disconnected this socket (`41`, or the connection closed).
    pub async fn wait_disconnect(&mut self) {
        let closed = timeout(WAIT, self.closed.wait_for(|closed| *closed)).await;
        assert!(
            matches!(closed, Ok(Ok(_))),
            "still connected after {WAIT:?}; received: {:?}",
            self.received
        );
    }

    pub fn is_connected(&self) -> bool {
        !*self.closed.borrow()
    }

    /// Leaves as a client does: a Socket.IO disconnect, then the WebSocket close; waits until
    /// the server has closed its side.
    pub async fn disconnect(mut self) {
        self.send_raw(&format!("41{}", self.nsp));
        let _ = self.out.send(Message::Close(None));
        self.wait_disconnect().await;
    }
}

impl Drop for SocketClient {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the reader task holds.
struct Reader {
    out: mpsc::UnboundedSender<Message>,
    /// The namespace prefix of this client's packets (see [`SocketClient`]).
    nsp: String,
    events: mpsc::UnboundedSender<Event>,
    acks: Acks,
    ack_server_events: Arc<AtomicBool>,
    connected: Option<oneshot::Sender<Result<String, String>>>,
    closed: watch::Sender<bool>,
}

async fn read<S>(mut stream: S, mut reader: Reader)
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    while let Some(Ok(frame)) = stream.next().await {
        match frame {
            Message::Text(text) if !reader.packet(text.as_str()) => break,
            Message::Close(_) => break,
            _ => {}
        }
    }
    let _ = reader.closed.send(true);
    // Dropping the waiters makes pending acks fail at once instead of timing out.
    lock(&reader.acks).clear();
}

impl Reader {
    /// Handles one Engine.IO packet; false when the session is over.
    fn packet(&mut self, text: &str) -> bool {
        match text.split_at_checked(1) {
            Some(("2", _)) => {
                let _ = self.out.send(Message::text("3"));
            }
            Some(("1", _)) => return false,
            Some(("4", socket_io)) => return self.socket_io(socket_io),
            _ => {}
        }
        true
    }

    fn socket_io(&mut self, packet: &str) -> bool {
        let Some((kind, rest)) = packet.split_at_checked(1) else {
            return true;
        };
        // A packet of another namespace than this client's is not ours.
        let rest = if self.nsp.is_empty() {
            if rest.starts_with('/') {
                return true;
            }
            rest
        } else {
            match rest.strip_prefix(self.nsp.as_str()) {
                Some(rest) => rest,
                None => return true,
            }
        };
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (id, json) = rest.split_at(digits);
        let id: Option<u64> = id.parse().ok();
        let value: Value = serde_json::from_str(json).unwrap_or(Value::Null);
        match kind {
            "0" => {
                let sid = value["sid"].as_str().unwrap_or_default().to_owned();
                if let Some(connected) = self.connected.take() {
                    let _ = connected.send(Ok(sid));
                }
            }
            "4" => {
                let message = value["message"].as_str().unwrap_or_default().to_owned();
                if let Some(connected) = self.connected.take() {
                    let _ = connected.send(Err(message));
                }
            }
            "1" => return false,
            "2" => {
                let mut args = value.as_array().cloned().unwrap_or_default().into_iter();
                let name = args.next().and_then(|n| n.as_str().map(str::to_owned));
                let data = args.next().unwrap_or(Value::Null);
                if let (Some(id), true) = (id, self.ack_server_events.load(Ordering::Relaxed)) {
                    let _ = self
                        .out
                        .send(Message::text(format!("43{}{id}[{{}}]", self.nsp)));
                }
                if let Some(name) = name {
                    let _ = self.events.send(Event { name, data });
                }
            }
            "3" => {
                let waiter = id.and_then(|id| lock(&self.acks).remove(&id));
                if let Some(waiter) = waiter {
                    let data = value.get(0).cloned().unwrap_or(Value::Null);
                    let _ = waiter.send(data);
                }
            }
            _ => {}
        }
        true
    }
}
