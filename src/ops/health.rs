//! `GET /healthz` (the process serves) and `GET /readyz` (its dependencies answer).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// A dependency that takes longer than this to answer counts as down.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(super::metrics::metrics))
}

/// The process serves.
#[derive(Serialize, ToSchema)]
struct Health {
    /// `ok`.
    status: &'static str,
}

/// 200 while the process serves.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Whether the node's dependencies answer.
#[derive(Serialize, ToSchema)]
struct Readiness {
    /// `ok`, or `unavailable` when a dependency does not answer.
    status: &'static str,
    /// What does not answer (`database`, `redis`, `storage`); absent when everything does.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failed: Vec<&'static str>,
    checks: Checks,
}

/// Each dependency, and whether it answered.
#[derive(Serialize, ToSchema)]
struct Checks {
    database: bool,
    /// In a cluster only.
    #[serde(skip_serializing_if = "Option::is_none")]
    redis: Option<bool>,
    /// Where attachments live (`STORAGE_URL`).
    storage: bool,
}

/// 200 when the database, the attachment storage (and Redis, in a cluster) answer, else 503
/// naming what failed.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Readiness), (status = 503, description = "`failed` names what does not answer", body = Readiness)))]
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let database = matches!(
        tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await,
        Ok(Ok(_))
    );
    let redis = match &state.cluster {
        Some(cluster) => Some(cluster.ping().await),
        None => None,
    };
    let storage = matches!(
        tokio::time::timeout(READY_TIMEOUT, state.storage.ping()).await,
        Ok(true)
    );
    let mut failed = Vec::new();
    if !database {
        failed.push("database");
    }
    if redis == Some(false) {
        failed.push("redis");
    }
    if !storage {
        failed.push("storage");
    }
    let checks = Checks {
        database,
        redis,
        storage,
    };
    if failed.is_empty() {
        let ready = Readiness {
            status: "ok",
            failed,
            checks,
        };
        return (StatusCode::OK, Json(ready));
    }
    tracing::warn!(
        category = "error",
        ?failed,
        "❌ not ready: a dependency does not answer"
    );
    let unready = Readiness {
        status: "unavailable",
        failed,
        checks,
    };
    (StatusCode::SERVICE_UNAVAILABLE, Json(unready))
}
