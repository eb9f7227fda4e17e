//! `GET /` (the host's readiness probe) and `GET /api/health` (anonymous, cheap, always an object).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::state::AppState;

pub async fn readiness() -> Json<Value> {
    Json(json!({"service": "computebridge", "status": "ready"}))
}

pub async fn get_health(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "service": "computebridge",
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "mode": state.mode,
        "uptimeSeconds": state.started.elapsed().as_secs(),
        "timers": state.timer_statuses(),
    }))
}
