//! `GET /api/socket-test` (the self-test: real checks of the socket servers, presence, the
//! database, and a loopback socket that goes through the same door as clients) and
//! `POST /api/socket-test` (the admin's test actions). Admin only.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::loopback::LoopbackSocket;
use crate::auth::AdminUser;
use crate::domain;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::http::json::Json as JsonBody;
use crate::realtime::{AUTH_NS, MESSENGER_NS, NAMESPACES_PATH, NOTIFICATIONS_NS, SOCKET_PATH};
use crate::state::AppState;
use crate::store::NewSession;
use crate::timestamp::Timestamp;

pub const ACTIONS: [&str; 3] = ["sendToUser", "broadcast", "emitOnlineUsers"];

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(self_test, action))
}

/// One check's outcome.
#[derive(Serialize, ToSchema)]
struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
    /// How long it took.
    ms: f64,
}

/// The self-test report (the contract lists every field).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct SelfTestReport {
    /// Every check passed.
    ok: bool,
    node: String,
    uptime_sec: u64,
    server: ServerInfo,
    connections: ConnectionCounts,
    adapter: AdapterInfo,
    database: DatabaseInfo,
    checks: Vec<Check>,
}

/// Where the socket servers are.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ServerInfo {
    path: &'static str,
    namespaces_path: &'static str,
    namespaces: Vec<&'static str>,
}

/// This node's sockets, and the users online on every node.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ConnectionCounts {
    sockets: usize,
    users: usize,
    by_namespace: BTreeMap<String, usize>,
}

/// The adapter this node runs, and the live nodes of its cluster.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct AdapterInfo {
    /// `local` or `redis`.
    kind: &'static str,
    nodes: usize,
    node_ids: Vec<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct DatabaseInfo {
    /// `sqlite` or `postgres`.
    kind: &'static str,
    ok: bool,
    latency_ms: f64,
}

async fn timed<F: Future<Output = Result<String, String>>>(name: &'static str, check: F) -> Check {
    let started = Instant::now();
    let (ok, detail) = match check.await {
        Ok(detail) => (true, detail),
        Err(detail) => (false, detail),
    };
    Check {
        name,
        ok,
        detail,
        ms: (started.elapsed().as_secs_f64() * 1000.0 * 100.0).round() / 100.0,
    }
}

/// Runs the self-test (admins only).
#[utoipa::path(get, path = "/api/socket-test", tag = "operations", security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = SelfTestReport), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
async fn self_test(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
) -> Json<SelfTestReport> {
    let realtime = &state.realtime;
    let by_namespace = realtime.sockets_by_namespace();
    let sockets: usize = by_namespace.iter().map(|(_, n)| n).sum();
    let users = realtime.presence().online_count();
    let local_users = realtime.presence().local_users();

    let mut checks = vec![
        timed("socketServer", async {
            if realtime.is_ready() && by_namespace.len() == 4 {
                Ok(format!("{SOCKET_PATH} and {NAMESPACES_PATH} (/auth, /messenger, /notifications) serving"))
            } else {
                Err("the socket servers are not mounted".to_owned())
            }
        })
        .await,
        timed("connectionTracking", async {
            let counted = realtime.connections();
            if counted == sockets && local_users <= sockets {
                Ok(format!("{sockets} sockets on this node, {users} online users in all"))
            } else {
                Err(format!("{counted} sockets counted but {sockets} open; {local_users} users online here"))
            }
        })
        .await,
    ];
    let database = timed("database", async {
        state
            .store
            .ping()
            .await
            .map(|d| {
                format!(
                    "{} answered in {:.2} ms",
                    state.store.kind().as_str(),
                    d.as_secs_f64() * 1000.0
                )
            })
            .map_err(|_| "the database does not answer".to_owned())
    })
    .await;
    let database_info = DatabaseInfo {
        kind: state.store.kind().as_str(),
        ok: database.ok,
        latency_ms: database.ms,
    };
    checks.push(database);
    let mut nodes = vec![state.node_id.clone()];
    let adapter = timed("adapter", async {
        let Some(cluster) = &state.cluster else {
            return Ok("local adapter: this node is the whole cluster".to_owned());
        };
        if !cluster.ping().await {
            return Err(
                "redis adapter: Redis does not answer; only this node's sockets are served"
                    .to_owned(),
            );
        }
        nodes = cluster
            .live_nodes()
            .await
            .map_err(|_| "redis adapter: the node registry cannot be read".to_owned())?;
        if nodes.contains(&state.node_id) {
            Ok(format!("redis adapter: {} live nodes", nodes.len()))
        } else {
            Err("redis adapter: this node's heartbeat is missing from the registry".to_owned())
        }
    })
    .await;
    checks.push(adapter);
    checks.push(
        timed("push", async {
            let depth = state
                .store
                .push_outbox_depth()
                .await
                .map_err(|_| "the push outbox cannot be read".to_owned())?;
            let key = if state.config.vapid_private_key.is_some() {
                "from VAPID_PRIVATE_KEY"
            } else {
                "generated and kept in the database"
            };
            let last = state.push.last_error().unwrap_or_else(|| "none".to_owned());
            Ok(format!(
                "VAPID key {key}; {depth} pushes waiting; last error: {last}"
            ))
        })
        .await,
    );
    checks.extend(loopback_checks(&state, &admin.user).await);

    let ok = checks.iter().all(|c| c.ok);
    if !ok {
        tracing::warn!(category = "test", "🧪 self-test found a problem");
    }
    Json(SelfTestReport {
        ok,
        node: state.node_id.clone(),
        uptime_sec: state.started_at.elapsed().as_secs(),
        server: ServerInfo {
            path: SOCKET_PATH,
            namespaces_path: NAMESPACES_PATH,
            namespaces: vec!["/", AUTH_NS, MESSENGER_NS, NOTIFICATIONS_NS],
        },
        connections: ConnectionCounts {
            sockets,
            users,
            by_namespace: by_namespace.into_iter().collect(),
        },
        adapter: AdapterInfo {
            kind: realtime.adapter_kind(),
            nodes: nodes.len(),
            node_ids: nodes,
        },
        database: database_info,
        checks,
    })
}

/// The checks that need a real socket: a throw-away session of the admin connects to this
/// server, then an emit with ack, a room broadcast, and a REST call that reaches it.
async fn loopback_checks(state: &AppState, admin: &crate::store::User) -> Vec<Check> {
    let names = ["messageSending", "broadcast", "apiIntegration"];
    let fail_all = |why: String| {
        names
            .iter()
            .map(|name| Check {
                name,
                ok: false,
                detail: why.clone(),
                ms: 0.0,
            })
            .collect::<Vec<_>>()
    };
    let (_, refresh_hash) = crate::auth::refresh::generate();
    let session = match state
        .store
        .create_session(&NewSession {
            user_id: admin.id,
            user_agent: Some("craftcode self-test"),
            ip: None,
            expires_at: Timestamp::now().plus(std::time::Duration::from_secs(60)),
            refresh_hash: &refresh_hash,
        })
        .await
    {
        Ok(session) => session,
        Err(_) => return fail_all("could not open a session for the loopback socket".to_owned()),
    };
    let token = state.tokens.issue(admin, session.id).token;
    let mut socket = match LoopbackSocket::connect(state.listen_addr, &token).await {
        Ok(socket) => socket,
        Err(e) => {
            let _ = state.store.revoke_session(session.id, "self_test").await;
            return fail_all(format!("the loopback socket could not connect: {e}"));
        }
    };

    let sending = timed("messageSending", async {
        let ack = socket
            .emit_with_ack("ping", json!({"ts": 1}))
            .await
            .map_err(|e| format!("no ack: {e}"))?;
        if ack["ok"] == json!(true) {
            Ok("emit with ack answered".to_owned())
        } else {
            Err(format!("unexpected ack {ack}"))
        }
    })
    .await;

    let probe = Uuid::now_v7().to_string();
    let broadcast = timed("broadcast", async {
        state
            .realtime
            .emit_to_session(session.id, "selfTest", &json!({ "probe": probe }))
            .await;
        let got = socket
            .next_event("selfTest")
            .await
            .map_err(|e| format!("not received: {e}"))?;
        if got["probe"] == json!(probe) {
            Ok("a room broadcast reached the loopback socket".to_owned())
        } else {
            Err("a different payload arrived".to_owned())
        }
    })
    .await;

    let api = timed("apiIntegration", async {
        let body = json!({"action": "sendToUser", "targetUserId": admin.id, "message": probe});
        post_to_self(state, &token, &body.to_string()).await?;
        let got = socket
            .next_event("testMessage")
            .await
            .map_err(|e| format!("not received: {e}"))?;
        if got["message"] == json!(probe) {
            Ok("POST /api/socket-test reached the socket".to_owned())
        } else {
            Err("a different payload arrived".to_owned())
        }
    })
    .await;

    socket.close().await;
    let _ = state.store.revoke_session(session.id, "self_test").await;
    vec![sending, broadcast, api]
}

/// A real HTTP request to this server, as a REST client would make it.
async fn post_to_self(state: &AppState, token: &str, body: &str) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!(
        "POST /api/socket-test HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        state.listen_addr,
        body.len()
    );
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(state.listen_addr).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        std::io::Result::Ok(response)
    };
    let response = tokio::time::timeout(std::time::Duration::from_secs(3), exchange)
        .await
        .map_err(|_| "the REST call timed out".to_owned())?
        .map_err(|e| format!("the REST call failed: {e}"))?;
    if response.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err("the REST call was refused".to_owned())
    }
}

/// `action` is `sendToUser` (with `targetUserId`), `broadcast` or `emitOnlineUsers`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ActionBody {
    #[schema(value_type = TestAction, required = true)]
    action: Option<String>,
    /// Required for `sendToUser`.
    #[schema(value_type = Option<uuid::Uuid>)]
    target_user_id: Option<String>,
    message: Option<String>,
}

/// The test actions (documentation only: the handler reads text, to answer a bad one with
/// `invalid_action` naming the valid ones).
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
enum TestAction {
    SendToUser,
    Broadcast,
    EmitOnlineUsers,
}

/// What a test action did.
#[derive(Serialize, ToSchema)]
struct ActionResult {
    ok: bool,
    action: String,
    /// This node's sockets that were sent the event.
    recipients: usize,
}

/// Emits `testMessage` to a user or everyone, or each socket's `getOnlineUsers` again (admins only).
#[utoipa::path(post, path = "/api/socket-test", tag = "operations", request_body = ActionBody, security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = ActionResult),
        (status = 400, description = "invalid_action or target_required", body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody), (status = 404, description = "user_not_found", body = crate::error::ErrorBody)))]
async fn action(
    State(state): State<AppState>,
    _admin: AdminUser,
    JsonBody(body): JsonBody<ActionBody>,
) -> ApiResult<Json<ActionResult>> {
    let action = body.action.unwrap_or_default();
    let message = body
        .message
        .filter(|m| !m.trim().is_empty())
        .unwrap_or_else(|| "Test message from the server".to_owned());
    if message.chars().count() > 1000 {
        return Err(ApiError::invalid_field(
            "message",
            "must be at most 1000 characters",
        ));
    }
    let payload = json!({"message": message, "action": action, "sentAt": Timestamp::now()});
    let realtime = &state.realtime;
    let recipients = match action.as_str() {
        "sendToUser" => {
            let target = body
                .target_user_id
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        ErrorCode::TargetRequired,
                        "sendToUser needs targetUserId",
                    )
                })?;
            let target = domain::user_id(&target)?;
            state
                .store
                .find_user(target)
                .await?
                .ok_or_else(ApiError::user_not_found)?;
            let count = realtime.user_receivers(target, "testMessage");
            realtime.emit_to_user(target, "testMessage", &payload).await;
            count
        }
        "broadcast" => {
            let count = realtime.everyone_receivers("testMessage");
            realtime.emit_to_everyone("testMessage", &payload).await;
            count
        }
        // Each socket gets its own welcome list (what it watches), on every node.
        "emitOnlineUsers" => realtime.resend_online_users().await,
        _ => {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidAction,
                format!("action must be one of: {}", ACTIONS.join(", ")),
            ));
        }
    };
    tracing::info!(category = "test", action, recipients, "🧪 test action");
    Ok(Json(ActionResult {
        ok: true,
        action,
        recipients,
    }))
}
