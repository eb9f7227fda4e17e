//! The background worker: delivers queued callbacks and advances watched pool operations every
//! second (and at once when woken), and reconciles container runs every [`RUN_INTERVAL`], which
//! bounds the ARM reads an active run costs. It is an accelerator, not the authority: the timers
//! run the same sweeps, so work left by a stopped process is finished by the next one.

use std::time::Duration;

use tokio::sync::watch;

use crate::pools::operations;
use crate::runs;
use crate::state::AppState;

const INTERVAL: Duration = Duration::from_secs(1);
/// How often the worker reads each active run's container group (one ARM GET per run).
const RUN_INTERVAL: Duration = Duration::from_secs(5);

pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut last_runs = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => {}
            _ = state.worker_wake.notified() => {}
            _ = shutdown.changed() => return,
        }
        let with_runs = last_runs.elapsed() >= RUN_INTERVAL;
        if with_runs {
            last_runs = tokio::time::Instant::now();
        }
        pass(&state, with_runs).await;
    }
}

/// One full pass, as the timers run it: runs, pool operations, then callbacks. Returns lines
/// describing what moved.
pub async fn sweep(state: &AppState) -> Vec<String> {
    pass(state, true).await
}

async fn pass(state: &AppState, with_runs: bool) -> Vec<String> {
    let mut lines = Vec::new();
    if with_runs {
        match runs::reconcile::sweep(state).await {
            Ok(moved) => lines.extend(moved),
            Err(e) => lines.push(format!("runs could not be read: {e}")),
        }
    }
    match operations::sweep(state).await {
        Ok(moved) => lines.extend(moved),
        Err(e) => lines.push(format!("pool operations could not be read: {e}")),
    }
    match state.outbox.deliver_due().await {
        Ok(deliveries) => lines.extend(
            deliveries
                .into_iter()
                .map(|d| format!("callback {}: {} ({})", d.id, d.outcome, d.detail)),
        ),
        Err(e) => lines.push(format!("callbacks could not be read: {e}")),
    }
    for line in &lines {
        tracing::info!("{line}");
    }
    lines
}
