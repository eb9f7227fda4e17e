//! The run sweep, run by the background worker, the `Reconcile` timer and the job's own output
//! call: every active run is judged by its container group (exit code 0 → Succeeded; any other
//! exit, a failed or vanished group, or a start stuck past its limit → Failed with Azure's words;
//! past its deadline → stopped, TimedOut), its log tail is captured (best effort), its callback
//! queued, and the cleanup policy applied (delete on success, timeout or cancel; keep failed
//! groups for the template's retention, then delete). Writes are conditional and callbacks are
//! queued under the run's id, so instances racing on the same run settle it once.
//!
//! One ARM read per active run per check, and checks space out as a run ages (see
//! [`check_interval`]); when ARM throttles, the sweep stops and resumes at the next pass.

use std::time::{Duration, Instant};

use serde_json::Value;
use time::OffsetDateTime;

use crate::azure::aci::{AciClient, GroupView};
use crate::azure::error::AzureError;
use crate::callbacks::webhook_body;
use crate::runs::{self, Run, RunError, RunStatus};
use crate::state::AppState;
use crate::store::{Condition, StoreError, Versioned};

const LOG_TAIL_LINES: u32 = 50;
/// How long a start may take from its first write to its group's creation (ARM calls and their
/// retries): until then a `Queued` run without a group, or a marker without its run, is a start in
/// progress; past it, the start was interrupted (the run fails, the marker goes).
const START_GRACE: Duration = Duration::from_secs(300);
/// Kept failed groups of runs whose template is gone from the configuration.
const DEFAULT_KEEP_FAILED: Duration = Duration::from_secs(24 * 3600);

/// Which active runs a sweep reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every one (the timers: they are the authority).
    All,
    /// Those whose next check is due (the worker).
    Due,
}

/// How long to wait before reading a run's group again: 5 s while it is young, growing with its
/// age to at most a minute, so a long run costs a few reads a minute, not one a second.
pub fn check_interval(age: Duration) -> Duration {
    (age / 10).clamp(Duration::from_secs(5), Duration::from_secs(60))
}

/// What became of one run in a sweep.
enum Step {
    Quiet,
    Moved(String),
    /// ARM answered 429 even after retries: stop reading until the next pass.
    Throttled(String),
}

pub async fn sweep(state: &AppState, scope: Scope) -> Result<Vec<String>, StoreError> {
    let Some(aci) = &state.aci else {
        return Ok(Vec::new());
    };
    let mut lines = Vec::new();
    for marker in state.store.list(runs::ACTIVE_PREFIX).await? {
        let run_id = marker
            .trim_start_matches(runs::ACTIVE_PREFIX)
            .trim_end_matches(".json");
        if scope == Scope::Due && !state.run_check_due(run_id) {
            continue;
        }
        match check(state, aci, run_id).await? {
            Step::Quiet => {}
            Step::Moved(line) => lines.push(line),
            Step::Throttled(line) => {
                lines.push(line);
                break;
            }
        }
    }
    Ok(lines)
}

/// Checks one run now (the job's output call uses this to notice completion at once); `true`
/// once the run is settled or gone, when watching it further is pointless.
pub async fn check_run(state: &AppState, run_id: &str) -> Result<bool, StoreError> {
    let Some(aci) = &state.aci else {
        return Ok(true);
    };
    check(state, aci, run_id).await?;
    Ok(state
        .store
        .get::<Run>(&runs::key(run_id))
        .await?
        .is_none_or(|run| run.value.settled))
}

async fn check(state: &AppState, aci: &AciClient, run_id: &str) -> Result<Step, StoreError> {
    let Some(current) = state.store.get::<Run>(&runs::key(run_id)).await? else {
        // A marker without its run: a start between its two writes, or one that stopped there.
        let marker = state.store.get::<Value>(&runs::active_key(run_id)).await?;
        if marker.is_some_and(|m| {
            !runs::marker_abandoned(&m.value, OffsetDateTime::now_utc(), START_GRACE)
        }) {
            return Ok(Step::Quiet);
        }
        runs::deactivate(&state.store, run_id).await?;
        return Ok(Step::Quiet);
    };
    let age = (OffsetDateTime::now_utc() - current.value.created_at).unsigned_abs();
    state.schedule_run_check(run_id, Instant::now() + check_interval(age));
    if current.value.settled {
        return retire(state, aci, current).await;
    }
    advance(state, aci, current).await
}

/// What a failed ARM call means for the sweep: stop at a 429 (ARM is throttling), otherwise
/// report `what` failed and retry at the next check.
fn failed_call(run: &Run, error: &AzureError, what: &str) -> Step {
    if error.status == Some(429) {
        Step::Throttled(format!(
            "run {}: ARM is throttling ({}); the sweep resumes at the next pass",
            run.run_id, error.message
        ))
    } else {
        Step::Moved(format!("run {}: {what} ({error}); will retry", run.run_id))
    }
}

async fn advance(
    state: &AppState,
    aci: &AciClient,
    current: Versioned<Run>,
) -> Result<Step, StoreError> {
    let mut run = current.value;
    let before = run.status;
    if !run.status.is_final() {
        let group = match aci
            .get_group(&run.resource_group, &run.container_group)
            .await
        {
            Ok(group) => group,
            Err(e) => {
                return Ok(failed_call(&run, &e, "cannot read its group"));
            }
        };
        let view = group.as_ref().map(GroupView::from_json);
        let age = (OffsetDateTime::now_utc() - run.created_at).unsigned_abs();
        if view.is_none() && run.status == RunStatus::Queued && age < START_GRACE {
            // Its start is still creating the group: judging now would fail a run that is fine.
            return Ok(Step::Quiet);
        }
        judge(&mut run, view.as_ref());
        let now = OffsetDateTime::now_utc();
        let stuck = !run.status.is_final()
            && run.started_at.is_none()
            && run.start_deadline.is_some_and(|at| now > at);
        if stuck || (!run.status.is_final() && now > run.deadline) {
            if let Err(e) = aci
                .stop_group(&run.resource_group, &run.container_group)
                .await
            {
                return Ok(failed_call(
                    &run,
                    &e,
                    "past its limit but cannot be stopped",
                ));
            }
            run.finished_at = Some(now);
            if stuck {
                fail_stuck_start(&mut run, view.as_ref());
            } else {
                run.status = RunStatus::TimedOut;
                run.error = Some(RunError {
                    code: "RunTimedOut".into(),
                    message: format!("the run did not finish by its deadline {}", run.deadline),
                });
            }
        }
    }
    if !run.status.is_final() {
        if run.status != before {
            save(state, &run, current.etag).await?;
            return Ok(Step::Moved(format!("run {}: {:?}", run.run_id, run.status)));
        }
        return Ok(Step::Quiet);
    }
    settle(state, aci, run, current.etag).await
}

/// The run has its outcome: capture logs, queue the callback, apply the cleanup policy.
async fn settle(
    state: &AppState,
    aci: &AciClient,
    mut run: Run,
    etag: String,
) -> Result<Step, StoreError> {
    if run.log_tail.is_none() && !run.group_deleted {
        // Best effort: a missing log never changes the outcome.
        run.log_tail = aci
            .logs(
                &run.resource_group,
                &run.container_group,
                &run.container,
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
    let outcome = format!(
        "run {}: {:?}{}",
        run.run_id,
        run.status,
        run.exit_code
            .map(|c| format!(" (exit code {c})"))
            .unwrap_or_default()
    );
    if run.fixed_group {
        crate::runs::start::release_fixed_group(state, &run).await;
    } else if !run.group_deleted {
        let keep = if run.status == RunStatus::Failed {
            state
                .config
                .template(&run.template)
                .map_or(DEFAULT_KEEP_FAILED, |t| t.keep_failed)
        } else {
            Duration::ZERO
        };
        if keep.is_zero() {
            if let Err(e) = aci
                .delete_group(&run.resource_group, &run.container_group)
                .await
            {
                let what = format!("{:?}, but its group could not be deleted", run.status);
                return Ok(failed_call(&run, &e, &what));
            }
            run.group_deleted = true;
        } else {
            run.delete_group_at = run.finished_at.map(|at| at + keep);
        }
    }
    run.settled = true;
    let done = run.fixed_group || run.group_deleted;
    if save(state, &run, etag).await? && done {
        runs::deactivate(&state.store, &run.run_id).await?;
        state.forget_run_check(&run.run_id);
    }
    Ok(Step::Moved(outcome))
}

/// A settled run whose failed group is kept: delete it once its retention ends.
async fn retire(
    state: &AppState,
    aci: &AciClient,
    current: Versioned<Run>,
) -> Result<Step, StoreError> {
    let mut run = current.value;
    let due = run
        .delete_group_at
        .is_none_or(|at| OffsetDateTime::now_utc() >= at);
    if !run.fixed_group && !run.group_deleted {
        if !due {
            return Ok(Step::Quiet);
        }
        if let Err(e) = aci
            .delete_group(&run.resource_group, &run.container_group)
            .await
        {
            return Ok(failed_call(&run, &e, "its kept group could not be deleted"));
        }
        run.group_deleted = true;
        if !save(state, &run, current.etag).await? {
            return Ok(Step::Quiet);
        }
    }
    runs::deactivate(&state.store, &run.run_id).await?;
    state.forget_run_check(&run.run_id);
    Ok(Step::Moved(format!(
        "run {}: kept group {} deleted",
        run.run_id, run.container_group
    )))
}

/// Fails a run whose group never started, in Azure's words when it has some.
fn fail_stuck_start(run: &mut Run, group: Option<&GroupView>) {
    let event = group.and_then(|g| g.last_event.clone());
    let pulling = event
        .as_deref()
        .is_some_and(|e| e.to_ascii_lowercase().contains("pull"));
    run.status = RunStatus::Failed;
    run.error = Some(RunError {
        code: if pulling {
            "ImagePullFailed"
        } else {
            "ContainerStartTimedOut"
        }
        .into(),
        message: event.unwrap_or_else(|| {
            format!(
                "the container group was still {} at its start limit",
                group.map_or("missing", |g| g.provisioning_state.as_str())
            )
        }),
    });
}

/// Updates `run` from its group's state.
fn judge(run: &mut Run, group: Option<&GroupView>) {
    let Some(group) = group else {
        run.error = Some(if run.status == RunStatus::Queued {
            RunError {
                code: "StartInterrupted".into(),
                message: format!(
                    "the run's start stopped before container group {} was created",
                    run.container_group
                ),
            }
        } else {
            RunError {
                code: "ContainerGroupNotFound".into(),
                message: format!("container group {} no longer exists", run.container_group),
            }
        });
        run.status = RunStatus::Failed;
        run.finished_at = Some(OffsetDateTime::now_utc());
        run.group_deleted = true;
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
        _ if group.provisioning_state == "Failed"
            || group.state == "Failed"
            || group.state == "Unhealthy" =>
        {
            run.status = RunStatus::Failed;
            run.finished_at = Some(OffsetDateTime::now_utc());
            run.error = Some(RunError {
                code: "ContainerGroupFailed".into(),
                message: group
                    .last_event
                    .clone()
                    .unwrap_or_else(|| format!("ACI reports the group as {}", group.state)),
            });
        }
        _ => {}
    }
}

/// Writes the run if nobody else changed it since it was read; `false` when someone did (they
/// hold the newer truth, and the next pass starts from it).
async fn save(state: &AppState, run: &Run, etag: String) -> Result<bool, StoreError> {
    match state
        .store
        .put(&runs::key(&run.run_id), run, Condition::Matches(etag))
        .await
    {
        Ok(_) => Ok(true),
        Err(StoreError::Conflict) => Ok(false),
        Err(e) => Err(e),
    }
}
