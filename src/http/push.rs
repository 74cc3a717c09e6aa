//! `/api/push/*` (SPEC §13): the server's VAPID key, and the caller's push subscriptions.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::json::Json as JsonBody;
use crate::auth::AuthUser;
use crate::error::{ApiResult, ErrorBody};
use crate::push::{self, Listed};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(config))
        .routes(routes!(subscribe, unsubscribe, list))
}

/// The application server key a browser subscribes with.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct PushConfig {
    /// The VAPID public key: an uncompressed P-256 point, base64url.
    vapid_public_key: String,
}

/// The server's VAPID public key (`applicationServerKey` of `pushManager.subscribe`).
#[utoipa::path(get, path = "/api/push/config", tag = "push", security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = PushConfig), (status = 401, body = ErrorBody)))]
async fn config(State(state): State<AppState>, _caller: AuthUser) -> Json<PushConfig> {
    Json(PushConfig {
        vapid_public_key: state.push.vapid.public_key.clone(),
    })
}

/// A browser `PushSubscription`'s JSON (`expirationTime` and anything else is ignored).
#[derive(Deserialize, ToSchema)]
struct SubscribeBody {
    /// The push service's absolute URL.
    #[schema(format = "uri")]
    endpoint: String,
    keys: Keys,
}

#[derive(Deserialize, ToSchema)]
struct Keys {
    /// The browser's P-256 public key: 65 bytes, base64url.
    #[schema(pattern = r"^[A-Za-z0-9_-]{87}=?$")]
    p256dh: String,
    /// The 16-byte auth secret, base64url.
    #[schema(pattern = r"^[A-Za-z0-9_-]{22}(==)?$")]
    auth: String,
}

#[derive(Serialize, ToSchema)]
struct Subscribed {
    subscription: Listed,
}

/// Stores a push subscription for the caller's session (ending the session deletes it). The
/// same endpoint is stored once.
#[utoipa::path(post, path = "/api/push/subscriptions", tag = "push", request_body = SubscribeBody, security(("bearer" = []), ("cookie" = [])),
    responses((status = 201, body = Subscribed), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, description = "too_many_subscriptions", body = ErrorBody)))]
async fn subscribe(
    State(state): State<AppState>,
    caller: AuthUser,
    JsonBody(body): JsonBody<SubscribeBody>,
) -> ApiResult<(StatusCode, Json<Subscribed>)> {
    let subscription = push::subscribe(
        &state,
        caller.session.id,
        caller.user.id,
        &body.endpoint,
        &body.keys.p256dh,
        &body.keys.auth,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(Subscribed { subscription })))
}

#[derive(Deserialize, ToSchema)]
struct UnsubscribeBody {
    #[schema(format = "uri")]
    endpoint: String,
}

/// Deletes one of the caller's push subscriptions.
#[utoipa::path(delete, path = "/api/push/subscriptions", tag = "push", request_body = UnsubscribeBody, security(("bearer" = []), ("cookie" = [])),
    responses((status = 204, description = "deleted"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody)))]
async fn unsubscribe(
    State(state): State<AppState>,
    caller: AuthUser,
    JsonBody(body): JsonBody<UnsubscribeBody>,
) -> ApiResult<StatusCode> {
    push::unsubscribe(&state, caller.user.id, &body.endpoint).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
struct SubscriptionList {
    subscriptions: Vec<Listed>,
}

/// The caller's push subscriptions, oldest first.
#[utoipa::path(get, path = "/api/push/subscriptions", tag = "push", security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = SubscriptionList), (status = 401, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    caller: AuthUser,
) -> ApiResult<Json<SubscriptionList>> {
    let subscriptions = push::list(&state, caller.user.id).await?;
    Ok(Json(SubscriptionList { subscriptions }))
}
