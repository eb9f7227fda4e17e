//! The background worker: every second (and at once when woken) it delivers queued callbacks,
//! advances watched pool operations and checks the container runs that are due (each run's
//! checks space out as it ages: `runs::reconcile::check_interval`). It is an accelerator, not the
//! authority: the timers run the same sweeps over everything, so work left by a stopped process
//! is finished by the next one.

use std::time::Duration;

use tokio::sync::watch;

use crate::pools::operations;
use crate::runs;
use crate::runs::reconcile::Scope;
use crate::state::AppState;

const INTERVAL: Duration = Duration::from_secs(1);

pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => {}
            _ = state.worker_wake.notified() => {}
            _ = shutdown.changed() => return,
        }
        pass(&state, Scope::Due).await;
    }
}

/// One full pass, as the timers run it: every active run, pool operations, then callbacks.
/// Returns lines describing what moved.
pub async fn sweep(state: &AppState) -> Vec<String> {
    pass(state, Scope::All).await
}

async fn pass(state: &AppState, scope: Scope) -> Vec<String> {
    let mut lines = Vec::new();
    match runs::reconcile::sweep(state, scope).await {
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
