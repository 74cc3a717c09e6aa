//! Building the two socket servers on this node's adapter (the local one, or Redis in a
//! cluster), registering their handlers, and the presence round that runs beside them.

use std::sync::atomic::Ordering;
use std::time::Duration;

use socketioxide::adapter::{Adapter, LocalAdapter};
use socketioxide::handler::ConnectHandler;
use socketioxide::layer::SocketIoLayer;
use socketioxide::{SocketIo, SocketIoBuilder, TransportType};
use socketioxide_core::adapter::DefinedAdapter;
use socketioxide_redis::{RedisAdapterConfig, RedisAdapterCtr};

use super::servers::{RedisAdapter, Servers, SocketServers};
use super::{MAX_PACKET, NAMESPACES_PATH, SOCKET_PATH, TOPIC_NAMESPACES, handshake};
use crate::state::AppState;

/// How long a cluster request (an emit with acks, counting remote sockets) waits for other nodes.
const CLUSTER_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// The layers that put both servers in front of the router.
pub enum Layers {
    Local([SocketIoLayer<LocalAdapter>; 2]),
    Redis([SocketIoLayer<RedisAdapter>; 2]),
}

impl Layers {
    pub fn wrap(self, router: axum::Router) -> axum::Router {
        match self {
            Self::Local([main, namespaces]) => router.layer(main).layer(namespaces),
            Self::Redis([main, namespaces]) => router.layer(main).layer(namespaces),
        }
    }
}

/// Builds both Socket.IO servers (on the Redis adapter when the node is in a cluster),
/// registers their handlers and starts presence. Answers the layers to put in front of the
/// router.
pub async fn mount(state: &AppState) -> anyhow::Result<Layers> {
    let inner = &state.realtime.inner;
    let _ = inner.metrics.set(state.metrics.clone());
    let (layers, servers) = match &state.cluster {
        None => {
            let (main_layer, main) = builder(state, SOCKET_PATH).build_layer();
            let (ns_layer, namespaces) = builder(state, NAMESPACES_PATH).build_layer();
            let pair = SocketServers { main, namespaces };
            // The local adapter starts at once; nothing to wait for.
            drop(register(&pair));
            (Layers::Local([main_layer, ns_layer]), Servers::Local(pair))
        }
        Some(cluster) => {
            let _ = inner.cluster.set(cluster.clone());
            let redis = |channel: &str| {
                let config = RedisAdapterConfig::new()
                    .with_prefix(format!("{}:{channel}", cluster.prefix()))
                    .with_request_timeout(CLUSTER_REQUEST_TIMEOUT);
                RedisAdapterCtr::new_with_driver(cluster.driver(), config)
            };
            let (main_layer, main) = builder(state, SOCKET_PATH)
                .with_adapter::<RedisAdapter>(redis("socket"))
                .build_layer();
            let (ns_layer, namespaces) = builder(state, NAMESPACES_PATH)
                .with_adapter::<RedisAdapter>(redis("socket-namespaces"))
                .build_layer();
            let pair = SocketServers { main, namespaces };
            for init in register(&pair) {
                init.await
                    .map_err(|e| anyhow::anyhow!("joining the cluster's channels: {e}"))?;
            }
            (Layers::Redis([main_layer, ns_layer]), Servers::Redis(pair))
        }
    };
    if inner.servers.set(servers).is_err() {
        anyhow::bail!("the socket servers are mounted once");
    }
    tokio::spawn(run_presence(state.clone()));
    Ok(layers)
}

fn builder(state: &AppState, path: &'static str) -> SocketIoBuilder<LocalAdapter> {
    /// The initial read buffer of each websocket, in bytes.
    const WS_READ_BUFFER: usize = 1024;
    SocketIo::builder()
        .req_path(path)
        .transports([TransportType::Polling, TransportType::Websocket])
        .max_payload(MAX_PACKET as u64)
        .ws_max_message_size(MAX_PACKET)
        .ws_max_frame_size(MAX_PACKET)
        .max_buffer_size(1024)
        // Every socket keeps its read buffer for life; clients' packets are small (a frame
        // larger than this still arrives whole, the buffer grows for it). Measured at 4,000
        // idle sockets: 3 KB less per socket than the default 4 KiB.
        .ws_read_buffer_size(WS_READ_BUFFER)
        .with_state(state.clone())
}

/// Once per `PRESENCE_INTERVAL`: in a cluster, the Redis round; then this node's sockets hear
/// what changed among the users they watch.
async fn run_presence(state: AppState) {
    let mut ticks = tokio::time::interval(state.config.presence_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut redis_ok = true;
    loop {
        ticks.tick().await;
        if state.realtime.inner.stopping.load(Ordering::Relaxed) {
            return;
        }
        state.realtime.presence_round(&mut redis_ok).await;
    }
}

/// Registers the namespaces and their handlers; answers the adapter's start-up of each
/// (which a remote adapter must finish before the node serves).
fn register<A: Adapter + DefinedAdapter>(pair: &SocketServers<A>) -> Vec<A::InitRes> {
    let handler = || handshake::on_connect::<A>.with(handshake::handshake::<A>);
    let mut inits = vec![pair.main.ns("/", handler())];
    for ns in TOPIC_NAMESPACES {
        inits.push(pair.namespaces.ns(ns, handler()));
    }
    inits
}
