//! `GET /api/openapi.json`: the OpenAPI 3.1 description of every REST endpoint, generated from
//! the handlers' `#[utoipa::path]` annotations as the routers register them (so a route cannot
//! exist without its description), plus the shapes of answers built as JSON values.

use std::collections::BTreeMap;

use std::sync::OnceLock;

use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::messaging::Conversation;
use crate::store::{Notification, Session, User};
use crate::users::DirectoryEntry;

/// The document's frame: title, version and the two ways to authenticate.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "CraftCode Realtime",
        description = "Accounts, sessions, direct messages, notifications and presence. Real-time events are served over Socket.IO at /api/socket and /api/socket-namespaces."
    ),
    modifiers(&Security),
    components(schemas(ErrorBody, ErrorDetail))
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("craftcode_token"))),
        );
    }
}

/// The document, as built from the routers (the same for every application in a process).
static DOCUMENT: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();

/// Keeps the document the routers produced, for `GET /api/openapi.json`.
pub fn publish(doc: utoipa::openapi::OpenApi) {
    let _ = DOCUMENT.set(doc);
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(openapi_json))
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json", body = Object)))]
async fn openapi_json() -> Json<Option<&'static utoipa::openapi::OpenApi>> {
    Json(DOCUMENT.get())
}

/// Every error answer.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code, e.g. `validation_failed`.
    pub code: String,
    pub message: String,
    /// Per-field messages, for validation errors.
    pub fields: Option<BTreeMap<String, String>>,
}

#[derive(Serialize, ToSchema)]
pub struct MeResponse {
    pub user: User,
    pub session: Session,
}

#[derive(Serialize, ToSchema)]
pub struct UserResponse {
    pub user: User,
}

#[derive(Serialize, ToSchema)]
pub struct DirectoryResponse {
    pub users: Vec<DirectoryEntry>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionEnded {
    pub ok: bool,
    pub sockets_disconnected: u64,
}

#[derive(Serialize, ToSchema)]
pub struct ConversationsResponse {
    pub conversations: Vec<Conversation>,
}

#[derive(Serialize, ToSchema)]
pub struct OkCount {
    pub ok: bool,
    pub count: u64,
}

#[derive(Serialize, ToSchema)]
pub struct Ok {
    pub ok: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Count {
    pub count: u64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationsResponse {
    pub notifications: Vec<Notification>,
    pub unread_count: u64,
}

/// One self-test check.
#[derive(Serialize, ToSchema)]
pub struct CheckResult {
    pub name: String,
    pub ok: bool,
    pub detail: String,
    pub ms: f64,
}

/// The self-test report (see the contract for every field).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SelfTestReport {
    pub ok: bool,
    pub node: String,
    pub uptime_sec: u64,
    #[schema(value_type = Object)]
    pub server: serde_json::Value,
    #[schema(value_type = Object)]
    pub connections: serde_json::Value,
    #[schema(value_type = Object)]
    pub adapter: serde_json::Value,
    #[schema(value_type = Object)]
    pub database: serde_json::Value,
    pub checks: Vec<CheckResult>,
}

#[derive(Serialize, ToSchema)]
pub struct ActionResult {
    pub ok: bool,
    pub action: String,
    pub recipients: u64,
}

#[derive(Serialize, ToSchema)]
pub struct Status {
    pub status: String,
}
