//! The run sweep, run by the background worker and the `Reconcile` timer: every unsettled run is
//! judged by its container group (exit code 0 → Succeeded, any other exit, a failed or vanished
//! group → Failed with Azure's words, past its deadline → stopped, TimedOut), its log tail is
//! captured (best effort), its callback queued, and its group deleted on success or timeout
//! (failed groups are kept for inspection). Writes are conditional, so instances racing on the
//! same run settle it once.

use time::OffsetDateTime;

use crate::azure::aci::{AciClient, GroupView};
use crate::callbacks::webhook_body;
use crate::runs::{self, CONTAINER, Run, RunError, RunStatus};
use crate::state::AppState;
use crate::store::{Condition, StoreError, Versioned};

const LOG_TAIL_LINES: u32 = 50;

pub async fn sweep(state: &AppState) -> Result<Vec<String>, StoreError> {
    let Some(aci) = &state.aci else {
        return Ok(Vec::new());
    };
    let mut lines = Vec::new();
    for key in state.store.list(runs::PREFIX).await? {
        let Some(current) = state.store.get::<Run>(&key).await? else {
            continue;
        };
        if current.value.settled {
            continue;
        }
        if let Some(line) = advance(state, aci, &key, current).await? {
            lines.push(line);
        }
    }
    Ok(lines)
}

async fn advance(
    state: &AppState,
    aci: &AciClient,
    key: &str,
    current: Versioned<Run>,
) -> Result<Option<String>, StoreError> {
    let mut run = current.value;
    let before = run.status;
    if !run.status.is_final() {
        let group = match aci
            .get_group(&run.resource_group, &run.container_group)
            .await
        {
            Ok(group) => group,
            Err(e) => {
                return Ok(Some(format!(
                    "run {}: cannot read its group ({e}); will retry",
                    run.run_id
                )));
            }
        };
        judge(&mut run, group.as_ref().map(GroupView::from_json));
        if !run.status.is_final() && OffsetDateTime::now_utc() > run.deadline {
            if let Err(e) = aci
                .stop_group(&run.resource_group, &run.container_group)
                .await
            {
                return Ok(Some(format!(
                    "run {}: timed out but cannot stop ({e}); will retry",
                    run.run_id
                )));
            }
            run.status = RunStatus::TimedOut;
            run.finished_at = Some(OffsetDateTime::now_utc());
            run.error = Some(RunError {
                code: "RunTimedOut".into(),
                message: format!("the run did not finish by its deadline {}", run.deadline),
            });
        }
    }
    if !run.status.is_final() {
        if run.status != before {
            save(state, key, &run, current.etag).await?;
            return Ok(Some(format!("run {}: {:?}", run.run_id, run.status)));
        }
        return Ok(None);
    }
    if run.log_tail.is_none() {
        // Best effort: a missing log never changes the outcome.
        run.log_tail = aci
            .logs(
                &run.resource_group,
                &run.container_group,
                CONTAINER,
                LOG_TAIL_LINES,
            )
            .await
            .ok();
    }
    if let Some(url) = &run.call_back_uri {
        let error = run
            .error
            .as_ref()
            .map(|e| (e.code.as_str(), e.message.as_str()));
        state
            .outbox
            .enqueue(
                &format!("run-{}", run.run_id),
                url,
                webhook_body(run.view(), error),
            )
            .await?;
        state.wake_worker();
    }
    if matches!(run.status, RunStatus::Succeeded | RunStatus::TimedOut)
        && let Err(e) = aci
            .delete_group(&run.resource_group, &run.container_group)
            .await
    {
        return Ok(Some(format!(
            "run {}: {:?}, but its group could not be deleted ({e}); will retry",
            run.run_id, run.status
        )));
    }
    run.settled = true;
    save(state, key, &run, current.etag).await?;
    Ok(Some(format!(
        "run {}: {:?}{}",
        run.run_id,
        run.status,
        run.exit_code
            .map(|c| format!(" (exit code {c})"))
            .unwrap_or_default()
    )))
}

/// Updates `run` from its group's state.
fn judge(run: &mut Run, group: Option<GroupView>) {
    let Some(group) = group else {
        run.status = RunStatus::Failed;
        run.finished_at = Some(OffsetDateTime::now_utc());
        run.error = Some(RunError {
            code: "ContainerGroupNotFound".into(),
            message: format!("container group {} no longer exists", run.container_group),
        });
        return;
    };
    if group.started_at.is_some() {
        run.started_at = group.started_at;
    }
    match group.container_state.as_str() {
        "Terminated" => {
            run.exit_code = group.exit_code;
            run.finished_at = group.finished_at.or(Some(OffsetDateTime::now_utc()));
            if group.exit_code == Some(0) {
                run.status = RunStatus::Succeeded;
            } else {
                run.status = RunStatus::Failed;
                run.error = Some(RunError {
                    code: "NonZeroExitCode".into(),
                    message: format!(
                        "the container exited with code {} ({})",
                        group
                            .exit_code
                            .map(|c| c.to_string())
                            .unwrap_or_else(|| "unknown".into()),
                        group.detail_status
                    ),
                });
            }
        }
        "Running" => run.status = RunStatus::Running,
        _ if group.provisioning_state == "Failed" || group.state == "Failed" => {
            run.status = RunStatus::Failed;
            run.finished_at = Some(OffsetDateTime::now_utc());
            run.error = Some(RunError {
                code: "ContainerGroupFailed".into(),
                message: group
                    .last_event
                    .unwrap_or_else(|| "ACI reports the group as Failed".into()),
            });
        }
        _ => {}
    }
}

async fn save(state: &AppState, key: &str, run: &Run, etag: String) -> Result<(), StoreError> {
    match state.store.put(key, run, Condition::Matches(etag)).await {
        Ok(_) | Err(StoreError::Conflict) => Ok(()),
        Err(e) => Err(e),
    }
}
