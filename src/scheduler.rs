//! The standalone timer scheduler: fires `ScaleDown` and `Reconcile` on their NCRONTAB schedules
//! (UTC) when no Functions host does it for us. Runs of one timer never overlap; a run that starts
//! more than a second after its slot is marked past due, as the host marks it.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::invocation::{ScheduleStatus, TimerInfo, TimerScheduleInfo};
use crate::state::AppState;
use crate::timers::{self, TimerFunction};

/// Starts one task per timer; each stops when `shutdown` turns true, never in the middle of a run.
pub fn spawn(state: AppState, shutdown: watch::Receiver<bool>) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    for function in TimerFunction::ALL {
        tasks.spawn(run_schedule(state.clone(), function, shutdown.clone()));
    }
    tasks
}

async fn run_schedule(
    state: AppState,
    function: TimerFunction,
    mut shutdown: watch::Receiver<bool>,
) {
    let schedule = function.schedule(&state.config).clone();
    let mut last: Option<OffsetDateTime> = None;
    loop {
        let now = OffsetDateTime::now_utc();
        let Some(next) = schedule.next_after(now) else {
            tracing::warn!(
                timer = function.name(),
                "schedule never fires again; timer stopped"
            );
            return;
        };
        state.record_next_timer_run(function, Some(next));
        let wait = (next - now).try_into().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        let fired = OffsetDateTime::now_utc();
        let timer = TimerInfo {
            schedule: TimerScheduleInfo::default(),
            schedule_status: Some(ScheduleStatus {
                last: rfc3339(last.unwrap_or(next)),
                next: rfc3339(schedule.next_after(next).unwrap_or(next)),
                last_updated: rfc3339(fired),
            }),
            is_past_due: (fired - next).whole_seconds() > 1,
        };
        match timers::run_timer(&state, function, &timer).await {
            Ok(run) => {
                for line in &run.logs {
                    tracing::info!(timer = function.name(), "{line}");
                }
            }
            Err(cause) => {
                tracing::error!(timer = function.name(), error.cause = %cause, "timer run failed")
            }
        }
        last = Some(next);
    }
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}
