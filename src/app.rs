//! The application: the store, the shared state and the router, bound to a listener and run until
//! a shutdown signal. Tests build it on port 0 and drive the real thing.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;

use uuid::Uuid;

use crate::auth::token::TokenKeys;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::ratelimit::{LoginLimits, TokenBuckets};
use crate::realtime::Realtime;
use crate::realtime::mount::{self, Layers};
use crate::state::AppState;
use crate::store::Store;

/// A built server, bound and ready to run.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    sockets: Layers,
}

/// How long in-flight requests get to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

impl Application {
    /// Connects and migrates the database, then binds `HOST:PORT`.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let store = Store::connect(config.database_url.expose())
            .await
            .context("DATABASE_URL: cannot open the database")?;
        store.migrate().await.context("migrating the database")?;
        let push = crate::push::Push::load(&config, &store)
            .await
            .context("loading the VAPID key")?;
        let storage = crate::storage::Storage::open(&config.storage)?;
        let listener = TcpListener::bind((config.host, config.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
        let tokens = TokenKeys::new(config.jwt_secret.expose().as_bytes(), config.jwt_ttl);
        let node_id = format!("node-{}", Uuid::now_v7().simple());
        let cluster = match &config.redis_url {
            None => None,
            Some(url) => Some(
                Cluster::connect(
                    url.expose(),
                    &config.redis_prefix,
                    &node_id,
                    config.node_timeout(),
                )
                .await
                .context("REDIS_URL: cannot join the cluster")?,
            ),
        };
        let state = AppState {
            config: Arc::new(config),
            store,
            login_limits: Arc::new(LoginLimits::new(cluster.as_ref())),
            message_limits: Arc::new(
                TokenBuckets::new(20, Duration::from_secs(1)).shared(cluster.as_ref(), "messages"),
            ),
            call_limits: Arc::new(
                TokenBuckets::new(10, Duration::from_secs(60)).shared(cluster.as_ref(), "calls"),
            ),
            calls: Arc::default(),
            cluster,
            tokens: Arc::new(tokens),
            realtime: Realtime::default(),
            metrics: Arc::new(Metrics::default()),
            push: Arc::new(push),
            storage,
            node_id,
            listen_addr: loopback_addr(listener.local_addr()?),
            started_at: Instant::now(),
        };
        let sockets = mount::mount(&state).await?;
        Ok(Self {
            listener,
            state,
            sockets,
        })
    }

    /// The address actually bound (the real port when PORT was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish and closes the
    /// database.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            state,
            sockets,
        } = self;
        let store = state.store.clone();
        crate::push::start(&state);
        crate::calls::start_sweeper(&state);
        crate::attachments::start_sweeper(&state);
        let realtime = state.realtime.clone();
        let leaving = state.clone();
        let cors = crate::http::cors(&state.config);
        let routes = sockets.wrap(crate::http::router(state));
        // CORS answers every OPTIONS as a preflight; a plain OPTIONS (tus asks what the server
        // supports with one) goes to the routes.
        let router = routes
            .clone()
            .layer(cors)
            .layer(axum::middleware::from_fn_with_state(routes, plain_options));
        // Before routing, so the overridden method picks the route.
        let router = axum::Router::new().fallback_service(
            tower::ServiceBuilder::new()
                .map_request(tus_method_override)
                .service(router),
        );
        tracing::info!(category = "ok", addr = %listener.local_addr()?, "✅ serving");
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        // Small socket frames must leave at once, not wait for Nagle's algorithm (it added tens
        // of milliseconds to every message's delivery).
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::warn!(category = "warn", error = %e, "⚠️ could not set TCP_NODELAY");
            }
        });
        let server = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!(
                category = "socket",
                "🔌 shutting down: telling every socket"
            );
            realtime.shutdown().await;
            if let Some(cluster) = &leaving.cluster {
                leaving.realtime.leave_cluster(cluster).await;
            }
            let _ = stopping_tx.send(());
        });
        let drained = async {
            server.await?;
            anyhow::Ok(())
        };
        tokio::pin!(drained);
        tokio::select! {
            result = &mut drained => result?,
            () = async { let _ = stopping_rx.await; tokio::time::sleep(DRAIN_TIMEOUT).await } => {
                tracing::warn!(category = "warn", "⚠️ requests still running after {DRAIN_TIMEOUT:?}; closing anyway");
            }
        }
        store.close().await;
        Ok(())
    }
}

/// Sends an OPTIONS request that is not a CORS preflight (no `Access-Control-Request-Method`)
/// to `routes` without the CORS layer.
async fn plain_options(
    axum::extract::State(routes): axum::extract::State<axum::Router>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let preflight = request
        .headers()
        .contains_key(axum::http::header::ACCESS_CONTROL_REQUEST_METHOD);
    if request.method() == axum::http::Method::OPTIONS && !preflight {
        return tower::ServiceExt::oneshot(routes, request)
            .await
            .unwrap_or_else(|never| match never {});
    }
    next.run(request).await
}

/// tus core: a `POST` to an upload with `X-HTTP-Method-Override: PATCH` (or `DELETE`, `HEAD`)
/// is handled as that method, for clients whose environment cannot send it. Only under
/// `/api/uploads/`; elsewhere the header means nothing.
fn tus_method_override(mut request: axum::extract::Request) -> axum::extract::Request {
    const OVERRIDE: &str = "x-http-method-override";
    if request.method() != axum::http::Method::POST
        || !request.uri().path().starts_with("/api/uploads/")
    {
        return request;
    }
    let method = match request.headers().get(OVERRIDE).map(|v| v.as_bytes()) {
        Some(b"PATCH") => axum::http::Method::PATCH,
        Some(b"DELETE") => axum::http::Method::DELETE,
        Some(b"HEAD") => axum::http::Method::HEAD,
        _ => return request,
    };
    request.headers_mut().remove(OVERRIDE);
    *request.method_mut() = method;
    request
}

/// An address this node can reach itself on: the bound one, with an unspecified IP (`0.0.0.0`)
/// replaced by loopback.
fn loopback_addr(bound: SocketAddr) -> SocketAddr {
    let mut addr = bound;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    addr
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
