//! `POST /ScaleDown` and `POST /Reconcile`: timer invocations from the Functions host.
//!
//! The answer is always the invocation shape `{"Outputs":{},"Logs":[…],"ReturnValue":…}` as
//! `application/json`. A run that fails as a whole answers 500 in the same shape, so the host marks
//! the invocation failed while its logs still say why.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, json};

use crate::error;
use crate::invocation::{InvocationRequest, InvocationResponse, TimerInfo, TimerScheduleInfo};
use crate::state::AppState;
use crate::timers::{self, TimerFunction};

pub async fn invoke_scale_down(
    State(state): State<AppState>,
    body: error::Json<InvocationRequest>,
) -> Response {
    invoke(state, TimerFunction::ScaleDown, body.0).await
}

pub async fn invoke_reconcile(
    State(state): State<AppState>,
    body: error::Json<InvocationRequest>,
) -> Response {
    invoke(state, TimerFunction::Reconcile, body.0).await
}

async fn invoke(state: AppState, function: TimerFunction, request: InvocationRequest) -> Response {
    let (timer, mut logs) = match request.timer_info() {
        Some(timer) => (timer, Vec::new()),
        None => (
            TimerInfo {
                schedule: TimerScheduleInfo::default(),
                schedule_status: None,
                is_past_due: false,
            },
            vec![format!(
                "{}: the invocation carried no timer object; running as an unscheduled run",
                function.name()
            )],
        ),
    };
    match timers::run_timer(&state, function, &timer).await {
        Ok(mut run) => {
            logs.append(&mut run.logs);
            answer(StatusCode::OK, logs, run.result)
        }
        Err(cause) => {
            tracing::error!(timer = function.name(), error.cause = %cause, "timer run failed");
            logs.push(format!("{} failed: {cause}", function.name()));
            let result = json!({"function": function.name(), "status": "failed", "error": cause});
            answer(StatusCode::INTERNAL_SERVER_ERROR, logs, result)
        }
    }
}

fn answer(status: StatusCode, logs: Vec<String>, result: serde_json::Value) -> Response {
    let body = InvocationResponse {
        outputs: Map::new(),
        logs,
        return_value: result,
    };
    (status, Json(body)).into_response()
}
