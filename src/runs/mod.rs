//! Container runs on ACI: the durable `Run` record with its active-run marker, the container-group
//! name derived from the run id, and the conflict-safe update every writer uses. Starting a run is
//! [`start`]; the job's output call is [`output`]; cancelling is [`cancel`]; the sweep that judges
//! runs by their groups, calls back and cleans up is [`reconcile`]; deleting groups nobody owns is
//! [`orphans`].

pub mod cancel;
pub mod orphans;
pub mod output;
pub mod reconcile;
pub mod start;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::callbacks::target::CallbackUrl;
use crate::error::ApiError;
use crate::store::{Condition, StateStore, StoreError};

pub const PREFIX: &str = "runs/";
/// One empty document per run that is not yet settled (or whose failed group is kept): the sweep
/// lists these, so its reads grow with active runs, not with history.
pub const ACTIVE_PREFIX: &str = "runs-active/";
/// Tags on every group the service creates: the run, and which deployment (state location) owns
/// it, so orphan clean-up never touches another deployment's groups.
pub const RUN_TAG: &str = "computebridge-run";
pub const OWNER_TAG: &str = "computebridge-owner";
/// The one container of a run's group.
pub const CONTAINER: &str = "job";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunStatus {
    Queued,
    Provisioning,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
}

impl RunStatus {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::TimedOut | RunStatus::Cancelled
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunError {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    pub run_id: String,
    pub template: String,
    pub resource_group: String,
    pub container_group: String,
    pub status: RunStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub deadline: OffsetDateTime,
    pub exit_code: Option<i64>,
    pub output: Option<Value>,
    pub error: Option<RunError>,
    pub log_tail: Option<String>,
    pub call_back_uri: Option<CallbackUrl>,
    /// The outcome was queued for the callback and the cleanup policy applied.
    pub settled: bool,
    /// Started with `"mode":"poll"`: answers follow ADF's asynchronous pattern (202 + Location).
    #[serde(default)]
    pub poll: bool,
    #[serde(default)]
    pub image: String,
    /// The group's container that runs the job (a fixed group names its own).
    #[serde(default = "default_container")]
    pub container: String,
    /// The token the job's output URL carries; never shown.
    #[serde(default)]
    pub output_token: Option<String>,
    /// Provisioning and image pull must be over by then.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub start_deadline: Option<OffsetDateTime>,
    /// When a kept (failed) group is deleted.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub delete_group_at: Option<OffsetDateTime>,
    #[serde(default)]
    pub group_deleted: bool,
    /// The group is a template's fixed group: stopped, never deleted.
    #[serde(default)]
    pub fixed_group: bool,
}

impl Run {
    /// What callers see (`GET /api/runs/{id}`, the callback's `Output`).
    pub fn view(&self) -> Value {
        let duration = match (self.started_at, self.finished_at) {
            (Some(start), Some(end)) => Some((end - start).whole_seconds()),
            _ => None,
        };
        serde_json::json!({
            "runId": self.run_id,
            "template": self.template,
            "image": self.image,
            "status": self.status,
            "containerGroup": self.container_group,
            "exitCode": self.exit_code,
            "startedAt": self.started_at.map(rfc3339),
            "finishedAt": self.finished_at.map(rfc3339),
            "durationSeconds": duration,
            "output": self.output,
            "error": self.error,
            "logTail": self.log_tail,
        })
    }
}

fn default_container() -> String {
    CONTAINER.into()
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub fn key(run_id: &str) -> String {
    format!("{PREFIX}{run_id}.json")
}

pub fn active_key(run_id: &str) -> String {
    format!("{ACTIVE_PREFIX}{run_id}.json")
}

/// The active marker a start writes before its run: with the time, so a sweep can tell a start
/// still between its two writes from one that stopped there.
pub fn marker(now: OffsetDateTime) -> Value {
    serde_json::json!({"created": now.unix_timestamp()})
}

/// Whether a marker found without its run was left by a start that stopped: older than `grace`
/// (or written before markers carried a time), not one still writing its run.
pub fn marker_abandoned(marker: &Value, now: OffsetDateTime, grace: std::time::Duration) -> bool {
    marker["created"]
        .as_i64()
        .is_none_or(|created| now.unix_timestamp() - created >= grace.as_secs() as i64)
}

/// The run, or 404 `RunNotFound`.
pub async fn read(
    store: &StateStore,
    run_id: &str,
) -> Result<crate::store::Versioned<Run>, ApiError> {
    check_run_id(run_id).map_err(|e| ApiError::bad_request("InvalidRunId", e))?;
    store
        .get::<Run>(&key(run_id))
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("RunNotFound", format!("no run with id '{run_id}'")))
}

/// Applies `change` to the current run and writes it conditionally, re-reading and re-applying
/// when another writer got there first. `change` returns `Ok(false)` to leave the run as it is.
pub async fn update(
    store: &StateStore,
    run_id: &str,
    mut change: impl FnMut(&mut Run) -> Result<bool, ApiError>,
) -> Result<Run, ApiError> {
    for _ in 0..5 {
        let current = read(store, run_id).await?;
        let mut run = current.value;
        if !change(&mut run)? {
            return Ok(run);
        }
        match store
            .put(&key(run_id), &run, Condition::Matches(current.etag))
            .await
        {
            Ok(_) => return Ok(run),
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(ApiError::internal(e)),
        }
    }
    Err(ApiError::conflict(
        "RunBusy",
        format!("run '{run_id}' is being updated concurrently; retry"),
    ))
}

/// Removes the active-run marker (the run needs no more sweeps).
pub async fn deactivate(store: &StateStore, run_id: &str) -> Result<(), StoreError> {
    let key = active_key(run_id);
    if let Some(marker) = store.get::<Value>(&key).await? {
        match store.delete(&key, &marker.etag).await {
            Ok(()) | Err(StoreError::Conflict) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Run ids: 1-100 characters, letters, digits, `-`, `_`, `.` (ADF's `@{pipeline().RunId}`
/// plus an activity name fits).
pub fn check_run_id(run_id: &str) -> Result<(), String> {
    let valid = (1..=100).contains(&run_id.len())
        && run_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !run_id.starts_with('.');
    if valid {
        Ok(())
    } else {
        Err("runId must be 1-100 letters, digits, '-', '_' or '.' (not starting with '.')".into())
    }
}

/// The container-group name for a run: `cb-` and the run id made a valid ACI name (lower case,
/// letters, digits, single dashes), cut to fit, then a hash of the exact run id, so different ids
/// never share a group and the same id always finds its own.
pub fn group_name(run_id: &str) -> String {
    let mut readable = String::new();
    for c in run_id.to_ascii_lowercase().chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '-' };
        if !(c == '-' && (readable.is_empty() || readable.ends_with('-'))) {
            readable.push(c);
        }
    }
    readable.truncate(40);
    let readable = readable.trim_end_matches('-');
    let hash = crate::fingerprint::fnv1a(run_id.as_bytes());
    if readable.is_empty() {
        format!("cb-{hash:016x}")
    } else {
        format!("cb-{readable}-{:010x}", hash >> 24)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_marker_without_its_run_is_a_start_in_progress() {
        let grace = std::time::Duration::from_secs(300);
        let now = OffsetDateTime::now_utc();
        let written = marker(now - time::Duration::seconds(10));
        assert!(!marker_abandoned(&written, now, grace));
        assert!(marker_abandoned(
            &written,
            now + time::Duration::seconds(300),
            grace
        ));
        assert!(
            marker_abandoned(&serde_json::json!({}), now, grace),
            "markers from before they carried a time"
        );
    }

    #[test]
    fn group_names_are_valid_and_distinct() {
        let ids = [
            "8c1f7e1a-2b3c-4d5e-8f90-123456789abc-CopyStep",
            "8c1f7e1a-2b3c-4d5e-8f90-123456789abc-copystep",
            "a__b..c",
            "x".repeat(100).as_str().to_owned().leak(),
        ];
        let names: Vec<String> = ids.iter().map(|id| group_name(id)).collect();
        for name in &names {
            assert!(name.len() <= 63, "{name}");
            assert!(!name.contains("--") && !name.ends_with('-'), "{name}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{name}"
            );
        }
        assert_ne!(
            names[0], names[1],
            "ids differing in case get different groups"
        );
        assert_eq!(group_name(ids[0]), names[0]);
        assert!(check_run_id("run 1").is_err());
        assert!(check_run_id(&"x".repeat(101)).is_err());
        assert!(check_run_id(ids[0]).is_ok());
    }
}
