//! `POST /api/runs` and `GET /api/runs/{runId}`: start a container run, and read its status (a
//! JSON object with 200, for ADF Until loops).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::error::{self, ApiError, ApiResult};
use crate::runs::start::{self, StartRequest};
use crate::runs::{self, Run};
use crate::state::AppState;

pub async fn start_run(
    State(state): State<AppState>,
    error::Json(request): error::Json<StartRequest>,
) -> ApiResult<Response> {
    let started = start::start(&state, request).await?;
    let status = if started.created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    let run = &started.run;
    let body = json!({
        "runId": run.run_id,
        "status": run.status,
        "containerGroup": run.container_group,
        "statusUrl": format!("/api/runs/{}", run.run_id),
        "created": started.created,
    });
    Ok((status, Json(body)).into_response())
}

pub async fn get_run(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
) -> ApiResult<Json<Value>> {
    runs::check_run_id(&run_id).map_err(|e| ApiError::bad_request("InvalidRunId", e))?;
    let run = state
        .store
        .get::<Run>(&runs::key(&run_id))
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("RunNotFound", format!("no run with id '{run_id}'")))?;
    Ok(Json(run.value.view()))
}
