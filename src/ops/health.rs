//! `GET /healthz` (the process serves) and `GET /readyz` (its dependencies answer).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;

/// A dependency that takes longer than this to answer counts as down.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(super::metrics::metrics))
}

/// 200 while the process serves.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = crate::http::openapi::Status)))]
async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// 200 when the database answers, else 503 naming what failed.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = crate::http::openapi::Status), (status = 503, description = "`failed` names what does not answer", body = crate::http::openapi::Status)))]
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let database = matches!(
        tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await,
        Ok(Ok(_))
    );
    if !database {
        tracing::warn!(
            category = "error",
            "❌ not ready: the database does not answer"
        );
    }
    let checks = json!({ "database": database });
    if database {
        (
            StatusCode::OK,
            Json(json!({ "status": "ok", "checks": checks })),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "failed": ["database"], "checks": checks })),
        )
    }
}
