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

/// 200 when the database (and Redis, in a cluster) answer, else 503 naming what failed.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = crate::http::openapi::Status), (status = 503, description = "`failed` names what does not answer", body = crate::http::openapi::Status)))]
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let database = matches!(
        tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await,
        Ok(Ok(_))
    );
    let redis = match &state.cluster {
        Some(cluster) => Some(cluster.ping().await),
        None => None,
    };
    let mut checks = json!({ "database": database });
    let mut failed = Vec::new();
    if !database {
        failed.push("database");
    }
    if let Some(redis) = redis {
        checks["redis"] = json!(redis);
        if !redis {
            failed.push("redis");
        }
    }
    if failed.is_empty() {
        return (
            StatusCode::OK,
            Json(json!({ "status": "ok", "checks": checks })),
        );
    }
    tracing::warn!(
        category = "error",
        ?failed,
        "❌ not ready: a dependency does not answer"
    );
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "status": "unavailable", "failed": failed, "checks": checks })),
    )
}
