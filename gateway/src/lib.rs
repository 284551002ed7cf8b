//! commerce-gateway: the HTTP edge.
//!
//! For now it serves the health endpoints a process supervisor needs; the service routes,
//! JWT, RBAC, rate limits, CORS, correlation ids and OpenAPI arrive with the service platform.
//! It knows nothing about the broker: readiness is a check the composition root hands in.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::Arc;

/// Something the node must have working before it is ready for traffic.
pub type ReadinessCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

#[derive(Clone)]
struct GatewayState {
    ready: ReadinessCheck,
}

pub fn router(ready: ReadinessCheck) -> Router {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready_handler))
        .with_state(GatewayState { ready })
}

async fn live() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "live"}))
}

async fn ready_handler(State(state): State<GatewayState>) -> impl IntoResponse {
    match (state.ready)() {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "ready"})),
        ),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "not_ready", "reason": reason})),
        ),
    }
}
