//! `/api/sessions`: a user's devices, and ending one of them.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::path::SessionPath;
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult, ErrorBody, ErrorCode};
use crate::state::AppState;
use crate::timestamp::Timestamp;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(end))
}

/// One device of the caller.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct SessionView {
    id: Uuid,
    current: bool,
    user_agent: Option<String>,
    ip: Option<String>,
    created_at: Timestamp,
    last_seen_at: Timestamp,
    expires_at: Timestamp,
    online: bool,
    connections: usize,
}

#[derive(Serialize, ToSchema)]
struct SessionsResponse {
    sessions: Vec<SessionView>,
}

/// The caller's devices.
#[utoipa::path(get, path = "/api/sessions", tag = "sessions", security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = SessionsResponse), (status = 401, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    caller: AuthUser,
) -> ApiResult<Json<SessionsResponse>> {
    let presence = state.realtime.presence();
    let sessions = state
        .store
        .live_sessions(caller.user.id)
        .await?
        .into_iter()
        .map(|s| {
            let connections = presence.session_connections(caller.user.id, s.id);
            SessionView {
                id: s.id,
                current: s.id == caller.session.id,
                user_agent: s.user_agent,
                ip: s.ip,
                created_at: s.created_at,
                last_seen_at: s.last_seen_at,
                expires_at: s.expires_at,
                online: connections > 0,
                connections,
            }
        })
        .collect();
    Ok(Json(SessionsResponse { sessions }))
}

/// A session ended, and how many of its sockets were disconnected.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct SessionEnded {
    ok: bool,
    sockets_disconnected: usize,
}

/// Ends one session: the caller's own, or anyone's for an admin. Others' answer 404.
#[utoipa::path(delete, path = "/api/sessions/{id}", tag = "sessions", params(("id" = Uuid, Path)), security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = SessionEnded), (status = 401, body = ErrorBody),
        (status = 404, description = "session_not_found", body = ErrorBody)))]
async fn end(
    State(state): State<AppState>,
    caller: AuthUser,
    SessionPath(id): SessionPath,
) -> ApiResult<Json<SessionEnded>> {
    let not_found = || ApiError::not_found(ErrorCode::SessionNotFound, "no such session");
    let session = state
        .store
        .find_session(id)
        .await?
        .filter(|s| s.revoked_at.is_none())
        .filter(|s| s.user_id == caller.user.id || caller.user.is_admin)
        .ok_or_else(not_found)?;
    state.store.revoke_session(session.id, "revoked").await?;
    let sockets = state
        .realtime
        .end_session(session.id, "session_revoked")
        .await;
    Ok(Json(SessionEnded {
        ok: true,
        sockets_disconnected: sockets,
    }))
}
