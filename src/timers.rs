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
use crate::schedule::Schedule;
use crate::state::AppState;

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
        TimerFunction::ScaleDown => Ok(TimerRun {
            logs: vec![
                "ScaleDown: no pool has a scale-down policy; nothing to do (pool management is not built yet)"
                    .to_owned(),
            ],
            result: json!({"function": "ScaleDown", "decisions": []}),
        }),
        TimerFunction::Reconcile => Ok(TimerRun {
            logs: vec![
                "Reconcile: no runs to reconcile; nothing to do (container runs are not built yet)"
                    .to_owned(),
            ],
            result: json!({"function": "Reconcile", "runs": []}),
        }),
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
