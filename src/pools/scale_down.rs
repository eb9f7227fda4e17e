//! The `ScaleDown` timer: for each pool with a scale-down policy, shrink it when every node has
//! been idle long enough, to the policy's floor (raised by any keep-warm window in force), with
//! `taskcompletion` so no running task is interrupted. A pool that scales automatically, is
//! resizing, has a requested resize in progress or has a busy node is left alone. Idleness comes
//! from Batch's node states and transition times, measured on Batch's clock, so the timer keeps
//! no state of its own.

use serde::Serialize;

use crate::config::ScaleDownPolicy;
use crate::pools::ManagedPool;
use crate::pools::operations;
use crate::pools::report::PoolReport;
use crate::state::AppState;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub pool: String,
    /// `scaledDown`, `skipped` or `error`.
    pub decision: &'static str,
    pub reason: String,
    pub from: Option<[u32; 2]>,
    pub to: Option<[u32; 2]>,
}

impl Decision {
    fn new(pool: &str, decision: &'static str, reason: impl Into<String>) -> Decision {
        Decision {
            pool: pool.to_owned(),
            decision,
            reason: reason.into(),
            from: None,
            to: None,
        }
    }

    pub fn log_line(&self) -> String {
        let change = match (self.from, self.to) {
            (Some(f), Some(t)) => format!(" ({}+{} -> {}+{} nodes)", f[0], f[1], t[0], t[1]),
            _ => String::new(),
        };
        format!(
            "ScaleDown: pool {}: {}{change}: {}",
            self.pool, self.decision, self.reason
        )
    }
}

/// Decides (and acts) for every pool with a policy.
pub async fn run(state: &AppState) -> Vec<Decision> {
    let mut decisions = Vec::new();
    for managed in state.pools.all() {
        let Some(policy) = &managed.settings.scale_down else {
            continue;
        };
        let _changes = managed.changes.lock().await;
        decisions.push(decide(state, managed, policy).await);
    }
    decisions
}

async fn decide(state: &AppState, managed: &ManagedPool, policy: &ScaleDownPolicy) -> Decision {
    let name = &managed.settings.name;
    let error = |e: &dyn std::fmt::Display| Decision::new(name, "error", e.to_string());
    match operations::pending(state, name).await {
        Ok(Some(op)) => {
            return Decision::new(
                name,
                "skipped",
                format!("a requested resize (operation {}) is in progress", op.id),
            );
        }
        Ok(None) => {}
        Err(e) => return error(&e),
    }
    let report = match managed.report().await {
        Ok(report) => report,
        Err(e) => return error(&e),
    };
    let (floor, warm) = floor(policy, &report);
    let from = [
        report.current_dedicated_nodes,
        report.current_low_priority_nodes,
    ];
    let skip = |reason: String| {
        let mut d = Decision::new(name, "skipped", reason);
        d.from = Some(from);
        d
    };
    if report.auto_scale.enabled {
        return skip("autoscale is enabled; the formula decides its size".into());
    }
    if report.allocation_state != "steady" {
        return skip(format!("the pool is {}", report.allocation_state));
    }
    if report.nodes_running_tasks > 0 {
        return skip(format!(
            "{} node(s) are running tasks",
            report.nodes_running_tasks
        ));
    }
    let to_dedicated = floor.min(from[0]);
    let to_low = (floor - to_dedicated).min(from[1]);
    if [to_dedicated, to_low] == from {
        let why = if warm {
            " (a keep-warm window is in force)"
        } else {
            ""
        };
        return skip(format!(
            "already at or below its floor of {floor} node(s){why}"
        ));
    }
    if report.nodes_running_tasks > 0 {
        return skip(format!(
            "{} node(s) are running tasks",
            report.nodes_running_tasks
        ));
    }
    let Some(idle) = report.idle_seconds else {
        return skip("not every node is idle".into());
    };
    let needed = policy.idle.as_secs() as i64;
    if idle < needed {
        return skip(format!("idle for {} s of the {} s required", idle, needed));
    }
    let sent = managed
        .batch
        .resize(
            &managed.settings.pool_id,
            to_dedicated,
            to_low,
            "PT15M",
            "taskcompletion",
        )
        .await;
    match sent {
        Ok(()) => {
            let mut d = Decision::new(
                name,
                "scaledDown",
                format!("every node idle for {} s", idle),
            );
            d.from = Some(from);
            d.to = Some([to_dedicated, to_low]);
            d
        }
        Err(e) => {
            let mut d = error(&e);
            d.from = Some(from);
            d
        }
    }
}

/// The policy's floor, raised by keep-warm windows in force at Batch's current time; and
/// whether a window raised it.
fn floor(policy: &ScaleDownPolicy, report: &PoolReport) -> (u32, bool) {
    let warm = policy
        .keep_warm
        .iter()
        .filter(|w| w.contains(report.observed_at))
        .map(|w| w.min_nodes)
        .max()
        .unwrap_or(0);
    (policy.min_nodes.max(warm), warm > policy.min_nodes)
}
