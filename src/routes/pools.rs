//! `/api/pools…`: list and inspect managed pools, resize them, and manage autoscale.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use axum::Json;

use crate::error::{self, ApiError, ApiResult};
use crate::pools::resize::{self, ResizeRequest, parse_iso_duration};
use crate::pools::{ManagedPool, operations};
use crate::state::AppState;

pub async fn list_pools(State(state): State<AppState>) -> Json<Value> {
    let mut pools = Vec::new();
    for managed in state.pools.all() {
        pools.push(match managed.report().await {
            Ok(report) => serde_json::to_value(report).unwrap_or_default(),
            Err(e) => json!({
                "name": managed.settings.name,
                "poolId": managed.settings.pool_id,
                "error": {"code": e.code, "message": e.message},
            }),
        });
    }
    Json(json!({"pools": pools}))
}

pub async fn get_pool(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let managed = state.pools.get(&name)?;
    let report = managed
        .report()
        .await
        .map_err(|e| ApiError::azure("Batch", e))?;
    let pending = operations::pending(&state, &managed.settings.name)
        .await
        .map_err(ApiError::internal)?;
    let mut body = serde_json::to_value(report).unwrap_or_default();
    body["pendingOperation"] = json!(pending.map(|op| json!({
        "operationId": op.id,
        "phase": op.phase,
        "targetDedicatedNodes": op.target_dedicated_nodes,
        "targetLowPriorityNodes": op.target_low_priority_nodes,
        "callbacks": op.callbacks.len(),
    })));
    Ok(Json(body))
}

pub async fn resize_pool(
    State(state): State<AppState>,
    Path(name): Path<String>,
    error::Json(request): error::Json<ResizeRequest>,
) -> ApiResult<Response> {
    let managed = state.pools.get(&name)?;
    let (status, answer) = resize::resize(&state, managed, request).await?;
    Ok((status, Json(answer)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AutoScaleRequest {
    formula: Option<String>,
    formula_name: Option<String>,
    evaluation_interval: Option<String>,
}

/// The formula text: given, or named in configuration; exactly one of the two.
fn formula(state: &AppState, request: &AutoScaleRequest) -> ApiResult<String> {
    match (&request.formula, &request.formula_name) {
        (Some(text), None) if !text.trim().is_empty() => Ok(text.clone()),
        (None, Some(name)) => state.config.formulas.get(name).cloned().ok_or_else(|| {
            let known: Vec<&str> = state.config.formulas.keys().map(String::as_str).collect();
            ApiError::bad_request(
                "UnknownFormula",
                format!(
                    "no formula named '{name}' is configured (known: {})",
                    known.join(", ")
                ),
            )
        }),
        _ => Err(ApiError::bad_request(
            "InvalidRequestBody",
            "give exactly one of formula (text) or formulaName (from configuration)",
        )),
    }
}

pub async fn enable_autoscale(
    State(state): State<AppState>,
    Path(name): Path<String>,
    error::Json(request): error::Json<AutoScaleRequest>,
) -> ApiResult<Json<Value>> {
    let managed = state.pools.get(&name)?;
    let formula = formula(&state, &request)?;
    if let Some(interval) = &request.evaluation_interval {
        let valid = parse_iso_duration(interval)
            .is_some_and(|d| d >= time::Duration::minutes(5) && d <= time::Duration::hours(168));
        if !valid {
            return Err(ApiError::bad_request(
                "InvalidEvaluationInterval",
                format!(
                    "evaluationInterval '{interval}' must be an ISO 8601 duration from PT5M to PT168H"
                ),
            ));
        }
    }
    let _changes = managed.changes.lock().await;
    managed
        .batch
        .enable_autoscale(
            &managed.settings.pool_id,
            &formula,
            request.evaluation_interval.as_deref(),
        )
        .await
        .map_err(|e| ApiError::azure("Batch", e))?;
    report(managed).await
}

/// The pool's report as the answer.
async fn report(managed: &ManagedPool) -> ApiResult<Json<Value>> {
    let report = managed
        .report()
        .await
        .map_err(|e| ApiError::azure("Batch", e))?;
    Ok(Json(serde_json::to_value(report).unwrap_or_default()))
}

pub async fn disable_autoscale(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let managed = state.pools.get(&name)?;
    let _changes = managed.changes.lock().await;
    managed
        .batch
        .disable_autoscale(&managed.settings.pool_id)
        .await
        .map_err(|e| ApiError::azure("Batch", e))?;
    report(managed).await
}

/// Batch's dry run: `results` as a map (`$TargetDedicatedNodes` → `3`), or Batch's `error`.
pub async fn evaluate_autoscale(
    State(state): State<AppState>,
    Path(name): Path<String>,
    error::Json(request): error::Json<AutoScaleRequest>,
) -> ApiResult<Response> {
    let managed = state.pools.get(&name)?;
    let formula = formula(&state, &request)?;
    let run = managed
        .batch
        .evaluate_autoscale(&managed.settings.pool_id, &formula)
        .await
        .map_err(|e| ApiError::azure("Batch", e))?;
    let results: serde_json::Map<String, Value> = run["results"]
        .as_str()
        .unwrap_or_default()
        .split(';')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), json!(v.trim())))
        .collect();
    let body = json!({
        "pool": managed.settings.name,
        "timestamp": run["timestamp"],
        "results": results,
        "error": run["error"],
    });
    let status = if run["error"].is_null() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok((status, Json(body)).into_response())
}
