//! Pool operations: a resize that is being watched until the pool is ready (or has failed), kept
//! in the state store so it survives restarts. One operation per pool. It is advanced by the
//! background worker and by the timers (whichever runs first; writes are conditional), and ends
//! by queueing its callbacks in the outbox.

use serde::{Deserialize, Serialize};
use serde_json::json;
use time::{Duration, OffsetDateTime};

use crate::azure::batch::{Observed, Pool};
use crate::callbacks::target::CallbackUrl;
use crate::callbacks::webhook_body;
use crate::pools::ManagedPool;
use crate::pools::report::PoolReport;
use crate::state::AppState;
use crate::store::{Condition, StoreError, Versioned};

const PREFIX: &str = "pool-operations/";
/// Slack after `resizeTimeout` for nodes to finish starting before the operation fails.
const START_SLACK: Duration = Duration::minutes(15);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    /// An earlier resize is being stopped; ours is sent once the pool is steady.
    Stopping,
    /// Ours was sent (or was already under way); waiting for ready.
    Resizing,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolOperation {
    pub id: String,
    pub pool: String,
    pub target_dedicated_nodes: u32,
    pub target_low_priority_nodes: u32,
    pub resize_timeout: String,
    pub node_deallocation_option: String,
    pub phase: Phase,
    /// Batch's clock when the operation began; resize errors older than this are stale.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// Batch's clock by which the pool must be ready.
    #[serde(with = "time::serde::rfc3339")]
    pub deadline: OffsetDateTime,
    pub callbacks: Vec<CallbackUrl>,
}

/// How an operation stands after looking at the pool.
#[derive(Debug)]
pub enum Verdict {
    Pending,
    Ready,
    Failed { code: String, message: String },
}

pub fn key(pool: &str) -> String {
    format!("{PREFIX}{}.json", pool.to_ascii_lowercase())
}

impl PoolOperation {
    pub fn new(
        pool: &str,
        targets: (u32, u32),
        resize_timeout: (&str, Duration),
        deallocation: &str,
        phase: Phase,
        now: OffsetDateTime,
    ) -> PoolOperation {
        PoolOperation {
            id: uuid::Uuid::new_v4().simple().to_string(),
            pool: pool.to_owned(),
            target_dedicated_nodes: targets.0,
            target_low_priority_nodes: targets.1,
            resize_timeout: resize_timeout.0.to_owned(),
            node_deallocation_option: deallocation.to_owned(),
            phase,
            started_at: now,
            deadline: now + resize_timeout.1 + START_SLACK,
            callbacks: Vec::new(),
        }
    }

    pub fn same_target(&self, other: &PoolOperation) -> bool {
        (self.target_dedicated_nodes, self.target_low_priority_nodes)
            == (
                other.target_dedicated_nodes,
                other.target_low_priority_nodes,
            )
    }

    /// Judges a `Resizing` operation against the pool as Batch reports it.
    pub fn judge(&self, pool: &Observed<Pool>, report: &PoolReport) -> Verdict {
        let p = &pool.value;
        if (p.target_dedicated_nodes, p.target_low_priority_nodes)
            != (self.target_dedicated_nodes, self.target_low_priority_nodes)
        {
            return Verdict::Failed {
                code: "ResizeSuperseded".into(),
                message: format!(
                    "the pool's target changed to {} dedicated and {} low-priority nodes before it was ready",
                    p.target_dedicated_nodes, p.target_low_priority_nodes
                ),
            };
        }
        if report.ready {
            return Verdict::Ready;
        }
        if p.is_steady() {
            let reached = p.current_dedicated_nodes == p.target_dedicated_nodes
                && p.current_low_priority_nodes == p.target_low_priority_nodes;
            let fresh = p
                .allocation_state_transition_time
                .is_none_or(|t| t >= self.started_at);
            if !reached && fresh {
                let (code, message) = match p.resize_errors.first() {
                    Some(e) => (e.code.clone(), e.message.clone()),
                    None => (
                        "TargetNotReached".into(),
                        "the pool settled below its target".into(),
                    ),
                };
                return Verdict::Failed { code, message };
            }
            if let Some(problem) = &report.problem {
                let code = if report.node_counts.contains_key("startTaskFailed") {
                    "StartTaskFailed"
                } else {
                    "NodesUnusable"
                };
                return Verdict::Failed {
                    code: code.into(),
                    message: problem.clone(),
                };
            }
        }
        if pool.at > self.deadline {
            return Verdict::Failed {
                code: "ResizeTimedOut".into(),
                message: format!("the pool was not ready by {}", self.deadline),
            };
        }
        Verdict::Pending
    }
}

/// Stores `operation` for its pool. An operation for the same target absorbs its callbacks;
/// one for another target is superseded (its callers are told) and replaced.
pub async fn register(
    state: &AppState,
    mut operation: PoolOperation,
) -> Result<PoolOperation, StoreError> {
    let key = key(&operation.pool);
    loop {
        let existing = state.store.get::<PoolOperation>(&key).await?;
        let condition = match &existing {
            None => Condition::New,
            Some(current) => Condition::Matches(current.etag.clone()),
        };
        let mut replaced = None;
        let mut merged = operation.clone();
        if let Some(current) = &existing {
            if current.value.same_target(&operation) {
                merged = current.value.clone();
                for url in &operation.callbacks {
                    if !merged.callbacks.contains(url) {
                        merged.callbacks.push(url.clone());
                    }
                }
                if operation.phase == Phase::Stopping {
                    merged.phase = Phase::Stopping;
                }
            } else {
                replaced = Some(current.value.clone());
            }
        }
        match state.store.put(&key, &merged, condition).await {
            Ok(_) => {
                if let Some(old) = replaced {
                    let message = format!(
                        "superseded by a resize to {} dedicated and {} low-priority nodes",
                        operation.target_dedicated_nodes, operation.target_low_priority_nodes
                    );
                    notify(state, &old, None, Some(("ResizeSuperseded", &message))).await?;
                }
                return Ok(merged);
            }
            Err(StoreError::Conflict) => {
                operation = merged;
                continue;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Queues the operation's callbacks.
async fn notify(
    state: &AppState,
    operation: &PoolOperation,
    report: Option<&PoolReport>,
    error: Option<(&str, &str)>,
) -> Result<(), StoreError> {
    let mut output = json!({"pool": operation.pool, "operationId": operation.id});
    if let Some(report) = report {
        output["state"] = serde_json::to_value(report).unwrap_or_default();
    }
    let body = webhook_body(output, error);
    for (i, url) in operation.callbacks.iter().enumerate() {
        let id = format!(
            "pool-{}-{}-{i}",
            operation.pool.to_ascii_lowercase(),
            operation.id
        );
        state.outbox.enqueue(&id, url, body.clone()).await?;
    }
    if !operation.callbacks.is_empty() {
        state.wake_worker();
    }
    Ok(())
}

/// Advances every stored operation once; returns a line per operation that moved or ended.
pub async fn sweep(state: &AppState) -> Result<Vec<String>, StoreError> {
    let mut lines = Vec::new();
    for key in state.store.list(PREFIX).await? {
        let Some(current) = state.store.get::<PoolOperation>(&key).await? else {
            continue;
        };
        let Ok(managed) = state.pools.get(&current.value.pool) else {
            tracing::warn!(pool = %current.value.pool, "dropping an operation for a pool no longer configured");
            state.store.delete(&key, &current.etag).await?;
            continue;
        };
        let _changes = managed.changes.lock().await;
        if let Some(line) = advance(state, managed, &key, current).await? {
            lines.push(line);
        }
    }
    Ok(lines)
}

/// Advances `managed`'s operation, if it has one; the caller holds the pool's lock.
pub async fn advance_pool(
    state: &AppState,
    managed: &ManagedPool,
) -> Result<Option<String>, StoreError> {
    let key = key(&managed.settings.name);
    match state.store.get::<PoolOperation>(&key).await? {
        Some(current) => advance(state, managed, &key, current).await,
        None => Ok(None),
    }
}

async fn advance(
    state: &AppState,
    managed: &ManagedPool,
    key: &str,
    current: Versioned<PoolOperation>,
) -> Result<Option<String>, StoreError> {
    let mut operation = current.value;
    let name = operation.pool.clone();
    let pool_id = &managed.settings.pool_id;
    let observed = match managed.batch.get_pool(pool_id).await {
        Ok(pool) => pool,
        Err(e) => {
            return Ok(Some(format!(
                "pool {name}: cannot read the pool ({e}); will retry"
            )));
        }
    };
    if operation.phase == Phase::Stopping {
        if !observed.value.is_steady() {
            return Ok(None);
        }
        let sent = managed
            .batch
            .resize(
                pool_id,
                operation.target_dedicated_nodes,
                operation.target_low_priority_nodes,
                &operation.resize_timeout,
                &operation.node_deallocation_option,
            )
            .await;
        return match sent {
            Ok(()) => {
                operation.phase = Phase::Resizing;
                operation.started_at = observed.at;
                match state
                    .store
                    .put(key, &operation, Condition::Matches(current.etag))
                    .await
                {
                    Ok(_) | Err(StoreError::Conflict) => {}
                    Err(e) => return Err(e),
                }
                Ok(Some(format!(
                    "pool {name}: earlier resize stopped; resize to {}+{} sent",
                    operation.target_dedicated_nodes, operation.target_low_priority_nodes
                )))
            }
            Err(e) if e.is_transient() => Ok(Some(format!(
                "pool {name}: resize failed ({e}); will retry"
            ))),
            Err(e) => {
                finish(
                    state,
                    key,
                    &current.etag,
                    &operation,
                    None,
                    Some((&e.code, &e.message)),
                )
                .await?;
                Ok(Some(format!("pool {name}: resize refused by Batch: {e}")))
            }
        };
    }
    let report = match managed.report_of(&observed).await {
        Ok(report) => report,
        Err(e) => {
            return Ok(Some(format!(
                "pool {name}: cannot list nodes ({e}); will retry"
            )));
        }
    };
    match operation.judge(&observed, &report) {
        Verdict::Pending => Ok(None),
        Verdict::Ready => {
            finish(state, key, &current.etag, &operation, Some(&report), None).await?;
            Ok(Some(format!(
                "pool {name}: ready at {}+{} nodes",
                report.current_dedicated_nodes, report.current_low_priority_nodes
            )))
        }
        Verdict::Failed { code, message } => {
            finish(
                state,
                key,
                &current.etag,
                &operation,
                Some(&report),
                Some((&code, &message)),
            )
            .await?;
            Ok(Some(format!(
                "pool {name}: resize failed: {code}: {message}"
            )))
        }
    }
}

/// Ends the operation: its callbacks are queued before it is deleted, so a crash in between
/// queues them again under the same ids (which the outbox ignores).
async fn finish(
    state: &AppState,
    key: &str,
    etag: &str,
    operation: &PoolOperation,
    report: Option<&PoolReport>,
    error: Option<(&str, &str)>,
) -> Result<(), StoreError> {
    notify(state, operation, report, error).await?;
    match state.store.delete(key, etag).await {
        Ok(()) | Err(StoreError::Conflict) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The pending operation of `pool`, if any.
pub async fn pending(state: &AppState, pool: &str) -> Result<Option<PoolOperation>, StoreError> {
    Ok(state
        .store
        .get::<PoolOperation>(&key(pool))
        .await?
        .map(|v| v.value))
}
