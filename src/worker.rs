//! The background worker: reconciles container runs, advances watched pool operations and
//! delivers queued callbacks, every
//! second while the process runs and at once when woken. It is an accelerator, not the authority:
//! the timers run the same sweeps, so work left by a stopped process is finished by the next one.

use std::time::Duration;

use tokio::sync::watch;

use crate::pools::operations;
use crate::runs;
use crate::state::AppState;

const INTERVAL: Duration = Duration::from_secs(1);

pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => {}
            _ = state.worker_wake.notified() => {}
            _ = shutdown.changed() => return,
        }
        sweep(&state).await;
    }
}

/// One pass: runs, pool operations, then callbacks. Returns lines describing what moved.
pub async fn sweep(state: &AppState) -> Vec<String> {
    let mut lines = Vec::new();
    match runs::reconcile::sweep(state).await {
        Ok(moved) => lines.extend(moved),
        Err(e) => lines.push(format!("runs could not be read: {e}")),
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
