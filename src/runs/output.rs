//! `POST /api/runs/{runId}/output?token=…`: the job's own call, the analogue of ADF Custom
//! activity's `outputs.json`. The per-run token (in the output URL the container receives as a
//! secure value) is the only credential; the body, a JSON object of at most [`MAX_BYTES`], is
//! stored with the run and returned as `output`. The call also says the job is finishing, so the
//! run's group is watched closely for a while (first after 0.1 s, then less often, at least once a
//! second) instead of at the next sweep.

use std::time::Duration;

use serde_json::{Value, json};

use crate::error::{ApiError, parse_json};
use crate::runs;
use crate::secret::Secret;
use crate::state::AppState;

pub const MAX_BYTES: usize = 2 * 1024 * 1024;
/// How long the group is read after the job said it is finishing, and how often at most.
const WATCH_FOR: Duration = Duration::from_secs(60);
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// The first pause: jobs usually exit right after posting their output.
const FIRST_PAUSE: Duration = Duration::from_millis(100);

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

/// Reads the run's group at once, then after pauses doubling from [`FIRST_PAUSE`] to
/// [`WATCH_EVERY`], until the run settles or [`WATCH_FOR`] passes.
async fn watch(state: AppState, run_id: String) {
    let deadline = tokio::time::Instant::now() + WATCH_FOR;
    let mut checks = 0;
    while tokio::time::Instant::now() < deadline {
        match runs::reconcile::check_run(&state, &run_id).await {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => tracing::warn!(run = %run_id, error = %e, "cannot check a finishing run"),
        }
        tokio::time::sleep(watch_pause(checks)).await;
        checks += 1;
    }
}

/// The pause after the `checks`-th read: 0.1, 0.2, 0.4, 0.8 s, then every second.
fn watch_pause(checks: u32) -> Duration {
    (FIRST_PAUSE * 2u32.saturating_pow(checks)).min(WATCH_EVERY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finishing_run_is_read_soon_then_every_second() {
        let pauses: Vec<u128> = (0..7).map(|n| watch_pause(n).as_millis()).collect();
        assert_eq!(pauses, [100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(watch_pause(u32::MAX), WATCH_EVERY);
    }
}
