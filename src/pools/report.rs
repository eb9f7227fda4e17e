//! `PoolReport`: what callers see of a managed pool, computed from Batch's own pool and node
//! answers: allocation, node counts by state, autoscale, resize errors, idleness (measured on
//! Batch's clock) and readiness (steady, at target, and every node usable, not just allocated).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

use crate::azure::batch::{Node, Observed, Pool, ResizeError};
use crate::config::PoolSettings;

/// Node states in which a node can take a task.
const USABLE: [&str; 2] = ["idle", "running"];
/// Node states that will not become usable without intervention.
const BROKEN: [&str; 2] = ["startTaskFailed", "unusable"];

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolReport {
    pub name: String,
    pub pool_id: String,
    pub account_url: String,
    pub allocation_state: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub allocation_state_transition_time: Option<OffsetDateTime>,
    pub current_dedicated_nodes: u32,
    pub current_low_priority_nodes: u32,
    pub target_dedicated_nodes: u32,
    pub target_low_priority_nodes: u32,
    pub node_counts: BTreeMap<String, u32>,
    pub nodes_running_tasks: u32,
    pub auto_scale: AutoScaleReport,
    pub resize_errors: Vec<ResizeError>,
    /// Seconds every node has been idle (Batch's clock); `None` while any node is busy or
    /// there are no nodes.
    pub idle_seconds: Option<i64>,
    pub ready: bool,
    /// Why the pool cannot become ready without intervention, if so.
    pub problem: Option<String>,
    pub limits: Limits,
    #[serde(with = "time::serde::rfc3339")]
    pub observed_at: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AutoScaleReport {
    pub enabled: bool,
    pub formula: Option<String>,
    pub evaluation_interval: Option<String>,
    pub last_run: Option<Value>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    pub max_dedicated_nodes: u32,
    pub max_low_priority_nodes: u32,
}

impl PoolReport {
    pub fn new(settings: &PoolSettings, pool: &Observed<Pool>, nodes: &[Node]) -> PoolReport {
        let at = pool.at;
        let pool = &pool.value;
        let mut node_counts = BTreeMap::new();
        for node in nodes {
            *node_counts.entry(node.state.clone()).or_insert(0) += 1;
        }
        let busy = nodes
            .iter()
            .filter(|n| n.running_tasks_count > 0 || n.state == "running")
            .count() as u32;
        let all_idle = !nodes.is_empty() && nodes.iter().all(|n| n.state == "idle");
        let idle_seconds = all_idle
            .then(|| nodes.iter().filter_map(|n| n.state_transition_time).max())
            .flatten()
            .map(|since| (at - since).whole_seconds().max(0));
        let broken = nodes
            .iter()
            .filter(|n| BROKEN.contains(&n.state.as_str()))
            .count();
        let usable = nodes
            .iter()
            .filter(|n| USABLE.contains(&n.state.as_str()))
            .count() as u32;
        let target = pool.target_dedicated_nodes + pool.target_low_priority_nodes;
        let at_target = pool.current_dedicated_nodes == pool.target_dedicated_nodes
            && pool.current_low_priority_nodes == pool.target_low_priority_nodes;
        let problem = (broken > 0).then(|| {
            let states: Vec<String> = BROKEN
                .iter()
                .filter_map(|s| node_counts.get(*s).map(|n| format!("{n} {s}")))
                .collect();
            format!("nodes that cannot run tasks: {}", states.join(", "))
        });
        PoolReport {
            name: settings.name.clone(),
            pool_id: pool.id.clone(),
            account_url: settings.account_url.clone(),
            allocation_state: pool.allocation_state.clone(),
            allocation_state_transition_time: pool.allocation_state_transition_time,
            current_dedicated_nodes: pool.current_dedicated_nodes,
            current_low_priority_nodes: pool.current_low_priority_nodes,
            target_dedicated_nodes: pool.target_dedicated_nodes,
            target_low_priority_nodes: pool.target_low_priority_nodes,
            node_counts,
            nodes_running_tasks: busy,
            auto_scale: AutoScaleReport {
                enabled: pool.enable_auto_scale,
                formula: pool.auto_scale_formula.clone(),
                evaluation_interval: pool.auto_scale_evaluation_interval.clone(),
                last_run: pool.auto_scale_run.clone(),
            },
            resize_errors: pool.resize_errors.clone(),
            idle_seconds,
            ready: pool.is_steady() && at_target && broken == 0 && usable >= target,
            problem,
            limits: Limits {
                max_dedicated_nodes: settings.max_dedicated_nodes,
                max_low_priority_nodes: settings.max_low_priority_nodes,
            },
            observed_at: at,
        }
    }
}
