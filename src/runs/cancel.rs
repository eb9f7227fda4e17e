//! `POST /api/runs/{runId}/cancel`: stops the run's group and records the run as Cancelled; the
//! sweep then captures its logs, sends the callback and deletes the group.

use time::OffsetDateTime;

use crate::error::ApiError;
use crate::runs::{self, Run, RunError, RunStatus};
use crate::state::AppState;

pub async fn cancel(state: &AppState, run_id: &str) -> Result<Run, ApiError> {
    let run = runs::read(&state.store, run_id).await?.value;
    if run.status.is_final() {
        return Err(finished(&run));
    }
    let aci = state
        .aci
        .as_ref()
        .ok_or_else(|| ApiError::internal("a run exists without an ACI client"))?;
    aci.stop_group(&run.resource_group, &run.container_group)
        .await
        .map_err(|e| ApiError::azure("ACI", e))?;
    let run = runs::update(&state.store, run_id, |run| {
        if run.status.is_final() {
            return Err(finished(run));
        }
        run.status = RunStatus::Cancelled;
        run.finished_at = Some(OffsetDateTime::now_utc());
        run.error = Some(RunError {
            code: "RunCancelled".into(),
            message: "the run was cancelled by request".into(),
        });
        Ok(true)
    })
    .await?;
    state.forget_run_check(run_id);
    state.wake_worker();
    Ok(run)
}

fn finished(run: &Run) -> ApiError {
    ApiError::conflict(
        "RunFinished",
        format!("run '{}' already ended: {:?}", run.run_id, run.status),
    )
}
