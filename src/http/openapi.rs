//! `GET /api/openapi.json`: the OpenAPI 3.1 description of every REST endpoint, generated from
//! the handlers' `#[utoipa::path]` annotations as the routers register them (so a route cannot
//! exist without its description). The bodies it describes are the types the handlers answer.

use std::sync::OnceLock;

use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ErrorBody, ErrorCode, ErrorDetail};
use crate::state::AppState;

/// The document's frame: title, version and the two ways to authenticate.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "CraftCode Realtime",
        description = "Accounts, sessions, direct messages, notifications and presence. Real-time events are served over Socket.IO at /api/socket and /api/socket-namespaces."
    ),
    modifiers(&Security),
    components(schemas(ErrorBody, ErrorDetail, ErrorCode))
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
