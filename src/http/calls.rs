//! `/api/calls/*` (SPEC §14): the ICE servers a device's `RTCPeerConnection` is made with.

use axum::Json;
use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::AuthUser;
use crate::calls::{self, IceServers};
use crate::error::ErrorBody;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(ice_servers))
}

/// The STUN servers, and the TURN servers with time-limited credentials for the caller.
#[utoipa::path(get, path = "/api/calls/ice-servers", tag = "calls", security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = IceServers), (status = 401, body = ErrorBody)))]
async fn ice_servers(State(state): State<AppState>, caller: AuthUser) -> Json<IceServers> {
    Json(calls::ice_servers(&state, caller.user.id))
}
