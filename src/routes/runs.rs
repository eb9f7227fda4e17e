//! The run routes: `POST /api/runs` starts a run; `GET /api/runs/{runId}` reads it (a JSON object
//! with 200 for ADF Until loops, or ADF's asynchronous pattern for runs started with
//! `"mode":"poll"`: 202 with `Location` until the end, then 200 on success or 500 with the same
//! body); `GET …/logs?tail=N`; `POST …/cancel`; and `POST …/output?token=…`, the job's own call.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{self, ApiError, ApiResult};
use crate::runs::start::{self, StartRequest};
use crate::runs::{self, Run, RunStatus, cancel, output};
use crate::state::AppState;

/// How long ADF's Web activity should wait between polls of a poll-mode run.
const POLL_RETRY_AFTER_SECONDS: u32 = 10;
const DEFAULT_LOG_TAIL: u32 = 100;
const MAX_LOG_TAIL: u32 = 10_000;

pub async fn start_run(
    State(state): State<AppState>,
    error::Json(request): error::Json<StartRequest>,
) -> ApiResult<Response> {
    let started = start::start(&state, request).await?;
    let run = &started.run;
    let mut body = json!({
        "runId": run.run_id,
        "status": run.status,
        "containerGroup": run.container_group,
        "statusUrl": status_path(run),
        "logsUrl": format!("{}/logs", status_path(run)),
        "created": started.created,
    });
    if run.poll {
        return Ok(poll_answer(&state, run, body));
    }
    let status = if started.created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    if let Some(error) = &run.error {
        body["error"] = json!(error);
    }
    Ok((status, Json(body)).into_response())
}

pub async fn get_run(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
) -> ApiResult<Response> {
    let run = runs::read(&state.store, &run_id).await?.value;
    if run.poll {
        return Ok(poll_answer(&state, &run, run.view()));
    }
    Ok(Json(run.view()).into_response())
}

#[derive(Debug, Deserialize)]
pub struct LogsQuery {
    tail: Option<String>,
}

/// Live logs while the group exists, else the tail saved when the run ended.
pub async fn get_logs(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
    Query(query): Query<LogsQuery>,
) -> ApiResult<Json<Value>> {
    let tail = match query.tail.as_deref() {
        None => DEFAULT_LOG_TAIL,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LOG_TAIL).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "InvalidTail",
                    format!("tail must be a whole number from 1 to {MAX_LOG_TAIL}"),
                )
            })?,
    };
    let run = runs::read(&state.store, &run_id).await?.value;
    let live = match (&state.aci, run.group_deleted) {
        (Some(aci), false) => Some(
            aci.logs(
                &run.resource_group,
                &run.container_group,
                &run.container,
                tail,
            )
            .await,
        ),
        _ => None,
    };
    // Best effort: when ACI cannot give logs (the container has not started, say), the answer
    // says why and falls back to the tail saved when the run ended.
    let (content, source, unavailable) = match live {
        Some(Ok(content)) => (content, "live", None),
        Some(Err(e)) => (
            run.log_tail.clone().unwrap_or_default(),
            "saved",
            Some(json!({"code": e.code, "message": e.message})),
        ),
        None => (run.log_tail.clone().unwrap_or_default(), "saved", None),
    };
    Ok(Json(json!({
        "runId": run.run_id,
        "status": run.status,
        "source": source,
        "tail": tail,
        "content": content,
        "unavailable": unavailable,
    })))
}

pub async fn cancel_run(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let run = cancel::cancel(&state, &run_id).await?;
    Ok(Json(run.view()))
}

#[derive(Debug, Deserialize)]
pub struct OutputQuery {
    token: Option<String>,
}

pub async fn post_output(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
    Query(query): Query<OutputQuery>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "OutputTooLarge",
                format!("output is limited to {} bytes", output::MAX_BYTES),
            )
        } else {
            ApiError::bad_request("UnreadableBody", rejection.body_text())
        }
    })?;
    output::accept(&state, &run_id, query.token.as_deref(), &body)
        .await
        .map(Json)
}

fn status_path(run: &Run) -> String {
    format!("/api/runs/{}", run.run_id)
}

/// ADF's asynchronous pattern: 202 with `Location` and `Retry-After` while the run goes on, then
/// 200 on success or 500 (same body) on any other end.
fn poll_answer(state: &AppState, run: &Run, body: Value) -> Response {
    let location = format!(
        "{}{}",
        state.config.public_url.as_deref().unwrap_or_default(),
        status_path(run)
    );
    if !run.status.is_final() {
        return (
            StatusCode::ACCEPTED,
            [
                (header::LOCATION, location),
                (header::RETRY_AFTER, POLL_RETRY_AFTER_SECONDS.to_string()),
            ],
            Json(body),
        )
            .into_response();
    }
    let status = if run.status == RunStatus::Succeeded {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    (status, Json(body)).into_response()
}
