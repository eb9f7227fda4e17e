//! `POST /api/runs/{runId}/output?token=…`: the job's own call, the analogue of ADF Custom
//! activity's `outputs.json`. The per-run token (in the output URL the container receives as a
//! secure value) is the only credential; the body, a JSON object of at most [`MAX_BYTES`], is
//! stored with the run and returned as `output`. The call also says the job is finishing, so the
//! run's group is watched every second for a while instead of at the next sweep.

use std::time::Duration;

use serde_json::{Value, json};

use crate::error::{ApiError, parse_json};
use crate::runs;
use crate::secret::Secret;
use crate::state::AppState;

pub const MAX_BYTES: usize = 2 * 1024 * 1024;
/// How long, and how often, the group is read after the job said it is finishing.
const WATCH_FOR: Duration = Duration::from_secs(60);
const WATCH_EVERY: Duration = Duration::from_secs(1);

pub async fn accept(
    state: &AppState,
    run_id: &str,
    token: Option<&str>,
    body: &[u8],
) -> Result<Value, ApiError> {
    let run = runs::read(&state.store, run_id).await?.value;
    let expected = run.output_token.as_deref().map(Secret::new);
    let valid = match (expected, token) {
        (Some(expected), Some(token)) => expected.matches(token.as_bytes()),
        _ => false,
    };
    if !valid {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "InvalidOutputToken",
            "the output URL's token does not belong to this run",
        ));
    }
    if body.len() > MAX_BYTES {
        return Err(ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "OutputTooLarge",
            format!("output is limited to {MAX_BYTES} bytes"),
        ));
    }
    let output: Value = parse_json(body)?;
    if !output.is_object() {
        return Err(ApiError::bad_request(
            "OutputNotAnObject",
            "output must be a JSON object",
        ));
    }
    let mut first = false;
    let run = runs::update(&state.store, run_id, |run| {
        if run.settled {
            return Err(ApiError::conflict(
                "RunFinished",
                format!(
                    "run '{}' already reported {:?}; output arrived too late",
                    run.run_id, run.status
                ),
            ));
        }
        first = run.output.is_none();
        run.output = Some(output.clone());
        Ok(true)
    })
    .await?;
    // One watch per run: a job that posts again only replaces its output.
    if first {
        tokio::spawn(watch(state.clone(), run.run_id.clone()));
    }
    Ok(json!({"runId": run.run_id, "status": run.status, "outputBytes": body.len()}))
}

/// Reads the run's group every second until the run settles or [`WATCH_FOR`] passes.
async fn watch(state: AppState, run_id: String) {
    let deadline = tokio::time::Instant::now() + WATCH_FOR;
    while tokio::time::Instant::now() < deadline {
        match runs::reconcile::check_run(&state, &run_id).await {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => tracing::warn!(run = %run_id, error = %e, "cannot check a finishing run"),
        }
        tokio::time::sleep(WATCH_EVERY).await;
    }
}
