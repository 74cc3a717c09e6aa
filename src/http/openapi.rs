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

/// The answers every JSON-body route can give before its handler runs (`super::json`): 400
/// `invalid_json` or `invalid_body`, 413 `payload_too_large` past 64 KiB, 415
/// `unsupported_media_type` for a body that is not `application/json`; and 400 for every route
/// with query or path parameters, whose bad values are refused with `validation_failed`. Added
/// here, once, rather than on each annotation, so that no JSON route can miss them.
struct BodyErrors;

/// The operations (by id: the handler's name) whose JSON body may be left empty.
const OPTIONAL_BODIES: [&str; 2] = ["refresh", "logout"];

impl Modify for BodyErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                item.get.as_mut(),
                item.put.as_mut(),
                item.post.as_mut(),
                item.delete.as_mut(),
                item.patch.as_mut(),
                item.head.as_mut(),
                item.options.as_mut(),
            ];
            for operation in operations.into_iter().flatten() {
                let json_body = operation
                    .request_body
                    .as_ref()
                    .is_some_and(|body| body.content.contains_key("application/json"));
                let has_params = operation
                    .parameters
                    .as_ref()
                    .is_some_and(|params| !params.is_empty());
                // The refresh and logout bodies may be empty (the cookie carries the token).
                let optional =
                    OPTIONAL_BODIES.contains(&operation.operation_id.as_deref().unwrap_or(""));
                if let Some(body) = operation.request_body.as_mut().filter(|_| optional) {
                    body.required = Some(utoipa::openapi::Required::False);
                }
                let responses = &mut operation.responses.responses;
                let mut add = |status: &str, description: &str| {
                    responses
                        .entry(status.to_owned())
                        .or_insert_with(|| error(description).into());
                };
                if json_body {
                    add("400", "invalid_json, invalid_body or validation_failed");
                    add("413", "payload_too_large: the body is over 64 KiB");
                    add(
                        "415",
                        "unsupported_media_type: the body is not application/json",
                    );
                }
                if has_params {
                    add("400", "validation_failed: a parameter is not valid");
                }
            }
        }
    }
}

/// The document, as built from the routers (the same for every application in a process).
static DOCUMENT: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();

/// Keeps the document the routers produced, for `GET /api/openapi.json` (with the answers of
/// [`BodyErrors`], which need the routes, so run here and not as a frame modifier).
pub fn publish(mut doc: utoipa::openapi::OpenApi) {
    BodyErrors.modify(&mut doc);
    notification_audience(&mut doc);
    test_action_target(&mut doc);
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

/// `POST /api/notifications` takes `userId` or `all: true`, never both nor neither: a rule across
/// two fields, which a Rust type does not say, so it is added to the body's schema here.
fn notification_audience(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, OneOfBuilder, Type};
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    let Some(body) = components.schemas.get_mut("NotificationSendBody") else {
        return;
    };
    let flag = |value: bool| {
        ObjectBuilder::new()
            .schema_type(Type::Boolean)
            .enum_values(Some([value]))
    };
    let one_user = ObjectBuilder::new()
        .property("userId", ObjectBuilder::new().schema_type(Type::String))
        .required("userId")
        .property("all", flag(false));
    let everyone = ObjectBuilder::new()
        .property("all", flag(true))
        .required("all")
        .property("userId", ObjectBuilder::new().schema_type(Type::Null));
    let rule = OneOfBuilder::new().item(one_user).item(everyone);
    let schema = AllOfBuilder::new().item(body.clone()).item(rule).build();
    *body = RefOr::T(schema.into());
}

/// `POST /api/socket-test`: `sendToUser` needs `targetUserId` (400 `target_required`).
fn test_action_target(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, OneOfBuilder, Type};
    let Some(body) = doc
        .components
        .as_mut()
        .and_then(|components| components.schemas.get_mut("ActionBody"))
    else {
        return;
    };
    let actions = |names: &[&str]| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(names.to_vec()))
    };
    let to_user = ObjectBuilder::new()
        .property("action", actions(&["sendToUser"]))
        .property(
            "targetUserId",
            ObjectBuilder::new().schema_type(Type::String),
        )
        .required("targetUserId");
    let others =
        ObjectBuilder::new().property("action", actions(&["broadcast", "emitOnlineUsers"]));
    let rule = OneOfBuilder::new().item(to_user).item(others);
    let schema = AllOfBuilder::new().item(body.clone()).item(rule).build();
    *body = RefOr::T(schema.into());
}
