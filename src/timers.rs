//! The timer functions, `ScaleDown` and `Reconcile`: what each does when it fires, whoever fires it
//! (the Functions host through `routes::timer_triggers`, or `scheduler` in standalone mode).
//!
//! A run returns the lines for the invocation's `Logs` and a structured result. A run that cannot
//! do its job at all returns an error; a run that skips or fails single items still succeeds and
//! reports each decision in its result.

use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::config::Config;
use crate::invocation::TimerInfo;
use crate::pools;
use crate::runs;
use crate::schedule::Schedule;
use crate::state::AppState;
use crate::worker;

/// One of the timer-triggered functions declared in `function-definitions/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimerFunction {
    ScaleDown,
    Reconcile,
}

/// What a timer run reports.
#[derive(Debug, Clone, PartialEq)]
pub struct TimerRun {
    pub logs: Vec<String>,
    pub result: Value,
}

impl TimerFunction {
    pub const ALL: [TimerFunction; 2] = [TimerFunction::ScaleDown, TimerFunction::Reconcile];

    /// The function (and `function-definitions/` folder) name.
    pub fn name(self) -> &'static str {
        match self {
            TimerFunction::ScaleDown => "ScaleDown",
            TimerFunction::Reconcile => "Reconcile",
        }
    }

    pub fn schedule(self, config: &Config) -> &Schedule {
        match self {
            TimerFunction::ScaleDown => &config.timers.scale_down,
            TimerFunction::Reconcile => &config.timers.reconcile,
        }
    }
}

/// Scale-down decisions for every pool with a policy, then the shared sweep.
async fn scale_down(state: &AppState) -> TimerRun {
    let decisions = pools::scale_down::run(state).await;
    let mut logs: Vec<String> = decisions.iter().map(|d| d.log_line()).collect();
    if decisions.is_empty() {
        logs.push("ScaleDown: no pool has a scale-down policy; nothing to do".to_owned());
    }
    let swept = worker::sweep(state).await;
    logs.extend(swept.iter().map(|line| format!("ScaleDown: {line}")));
    TimerRun {
        logs,
        result: json!({"function": "ScaleDown", "decisions": decisions, "swept": swept}),
    }
}

/// The shared sweep over every active run, watched pool operations and pending callbacks, then
/// orphaned container groups.
async fn reconcile(state: &AppState) -> TimerRun {
    let mut swept = worker::sweep(state).await;
    match runs::orphans::delete_orphans(state).await {
        Ok(lines) => swept.extend(lines),
        Err(e) => swept.push(format!("orphans could not be checked: {e}")),
    }
    let mut logs: Vec<String> = swept
        .iter()
        .map(|line| format!("Reconcile: {line}"))
        .collect();
    if logs.is_empty() {
        logs.push(
            "Reconcile: no run, pool operation or callback is pending; nothing to do".to_owned(),
        );
    }
    TimerRun {
        logs,
        result: json!({"function": "Reconcile", "swept": swept}),
    }
}

/// Runs `function` once and records the run for health.
pub async fn run_timer(
    state: &AppState,
    function: TimerFunction,
    timer: &TimerInfo,
) -> Result<TimerRun, String> {
    let started = OffsetDateTime::now_utc();
    let mut logs = Vec::new();
    if timer.is_past_due {
        logs.push(format!(
            "{}: this run is past due (a scheduled run was missed)",
            function.name()
        ));
    }
    let outcome = match function {
        TimerFunction::ScaleDown => Ok(scale_down(state).await),
        TimerFunction::Reconcile => Ok(reconcile(state).await),
    };
    let label = if outcome.is_ok() {
        "succeeded"
    } else {
        "failed"
    };
    state.record_timer_run(function, started, label);
    outcome.map(|mut run| {
        logs.append(&mut run.logs);
        run.logs = logs;
        run
    })
}
