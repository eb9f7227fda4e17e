//! `POST /api/pools/{pool}/resize`: the request, its validation (all before Batch is touched),
//! and the decision table:
//!
//! | pool now | answer |
//! |---|---|
//! | autoscale on | 409 `AutoScaleEnabled`, unless `disableAutoScale` (then autoscale is disabled first) |
//! | steady at the target | 200, nothing sent (202 while its nodes are still starting) |
//! | resizing towards the target | 202, nothing sent |
//! | resizing elsewhere | stop that resize, wait (briefly) for steady, resize; 202 |
//! | steady elsewhere | resize; 202 |
//!
//! With `callBackUri` the operation is watched until the pool is ready (see `operations`).

use std::time::Duration as StdDuration;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::Duration;

use crate::callbacks::target::CallbackUrl;
use crate::error::ApiError;
use crate::pools::ManagedPool;
use crate::pools::operations::{self, Phase, PoolOperation};
use crate::pools::report::PoolReport;
use crate::state::AppState;

const DEALLOCATION_OPTIONS: [&str; 4] = ["requeue", "terminate", "taskcompletion", "retaineddata"];
/// How long a request waits for a stopped resize to settle before answering 202 anyway.
const STOP_WAIT: StdDuration = StdDuration::from_secs(4);

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResizeRequest {
    target_dedicated_nodes: Option<u32>,
    #[serde(default)]
    target_low_priority_nodes: u32,
    resize_timeout: Option<String>,
    node_deallocation_option: Option<String>,
    call_back_uri: Option<String>,
    #[serde(default)]
    disable_auto_scale: bool,
}

/// A request that passed validation.
struct Resize {
    dedicated: u32,
    low_priority: u32,
    timeout_text: String,
    timeout: Duration,
    deallocation: String,
    callback: Option<CallbackUrl>,
    disable_auto_scale: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResizeAnswer {
    pub pool: String,
    /// `none`, `resize`, `stopThenResize`, `disableAutoScaleThenResize`.
    pub action: &'static str,
    /// `Ready`, `Resizing`, `Stopping`, `Starting`.
    pub status: &'static str,
    pub operation_id: Option<String>,
    pub callback: bool,
    pub state: PoolReport,
}

fn validate(
    request: ResizeRequest,
    managed: &ManagedPool,
    state: &AppState,
) -> Result<Resize, ApiError> {
    let limits = &managed.settings;
    let dedicated = request.target_dedicated_nodes.ok_or_else(|| {
        ApiError::bad_request("InvalidRequestBody", "targetDedicatedNodes is required")
    })?;
    if dedicated > limits.max_dedicated_nodes
        || request.target_low_priority_nodes > limits.max_low_priority_nodes
    {
        return Err(ApiError::bad_request(
            "TargetAboveLimit",
            format!(
                "pool '{}' may have at most {} dedicated and {} low-priority nodes; asked for {} and {}",
                limits.name,
                limits.max_dedicated_nodes,
                limits.max_low_priority_nodes,
                dedicated,
                request.target_low_priority_nodes
            ),
        ));
    }
    let timeout_text = request.resize_timeout.unwrap_or_else(|| "PT15M".into());
    let timeout = parse_iso_duration(&timeout_text)
        .filter(|d| *d >= Duration::minutes(5))
        .ok_or_else(|| {
            ApiError::bad_request(
                "InvalidResizeTimeout",
                format!(
                    "resizeTimeout '{timeout_text}' is not an ISO 8601 duration of at least PT5M"
                ),
            )
        })?;
    let deallocation = request
        .node_deallocation_option
        .unwrap_or_else(|| "taskcompletion".into())
        .to_ascii_lowercase();
    if !DEALLOCATION_OPTIONS.contains(&deallocation.as_str()) {
        return Err(ApiError::bad_request(
            "InvalidNodeDeallocationOption",
            format!(
                "nodeDeallocationOption must be one of {}",
                DEALLOCATION_OPTIONS.join(", ")
            ),
        ));
    }
    let callback = request
        .call_back_uri
        .map(|url| CallbackUrl::parse(&url, &state.config.callbacks))
        .transpose()
        .map_err(|e| ApiError::bad_request("CallbackNotAllowed", e))?;
    Ok(Resize {
        dedicated,
        low_priority: request.target_low_priority_nodes,
        timeout_text,
        timeout,
        deallocation,
        callback,
        disable_auto_scale: request.disable_auto_scale,
    })
}

/// Handles a resize request for `managed`; answers the status and body.
pub async fn resize(
    state: &AppState,
    managed: &ManagedPool,
    request: ResizeRequest,
) -> Result<(StatusCode, ResizeAnswer), ApiError> {
    let resize = validate(request, managed, state)?;
    let batch = |e| ApiError::azure("Batch", e);
    let store = |e: crate::store::StoreError| ApiError::internal(e);
    let pool_id = &managed.settings.pool_id;
    let name = &managed.settings.name;
    let _changes = managed.changes.lock().await;

    let mut observed = managed.batch.get_pool(pool_id).await.map_err(batch)?;
    let mut action = "resize";
    if observed.value.enable_auto_scale {
        if !resize.disable_auto_scale {
            return Err(ApiError::conflict(
                "AutoScaleEnabled",
                format!(
                    "pool '{name}' scales automatically; send \"disableAutoScale\": true to resize it to a fixed size, or DELETE /api/pools/{name}/autoscale first"
                ),
            ));
        }
        managed
            .batch
            .disable_autoscale(pool_id)
            .await
            .map_err(batch)?;
        observed = managed.batch.get_pool(pool_id).await.map_err(batch)?;
        action = "disableAutoScaleThenResize";
    }
    let pool = &observed.value;
    let targets = (resize.dedicated, resize.low_priority);
    let same_target = (pool.target_dedicated_nodes, pool.target_low_priority_nodes) == targets;
    let mut operation = PoolOperation::new(
        name,
        targets,
        (&resize.timeout_text, resize.timeout),
        &resize.deallocation,
        Phase::Resizing,
        observed.at,
    );
    operation.callbacks.extend(resize.callback.clone());

    let (action, status) = if same_target {
        // Nothing to send: at the target, or already on its way there.
        let report = managed.report_of(&observed).await.map_err(batch)?;
        if report.ready {
            if resize.callback.is_some() {
                let registered = operations::register(state, operation)
                    .await
                    .map_err(store)?;
                operation = registered;
            }
            let http = if pool.is_steady() {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            return Ok((
                http,
                answer(name, "none", "Ready", &operation, &resize, report),
            ));
        }
        (
            "none",
            if pool.is_steady() {
                "Starting"
            } else {
                "Resizing"
            },
        )
    } else if !pool.is_steady() {
        managed.batch.stop_resize(pool_id).await.map_err(batch)?;
        operation.phase = Phase::Stopping;
        ("stopThenResize", "Stopping")
    } else {
        managed
            .batch
            .resize(
                pool_id,
                targets.0,
                targets.1,
                &resize.timeout_text,
                &resize.deallocation,
            )
            .await
            .map_err(batch)?;
        (action, "Resizing")
    };
    let watched = operation.phase == Phase::Stopping || resize.callback.is_some();
    if watched {
        operation = operations::register(state, operation)
            .await
            .map_err(store)?;
    }
    let mut status = status;
    if operation.phase == Phase::Stopping {
        // Give a quick stop the chance to finish inside this request.
        let deadline = tokio::time::Instant::now() + STOP_WAIT;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(StdDuration::from_millis(250)).await;
            let now = managed.batch.get_pool(pool_id).await.map_err(batch)?;
            if now.value.is_steady() {
                operations::advance_pool(state, managed)
                    .await
                    .map_err(store)?;
                status = "Resizing";
                break;
            }
        }
    }
    state.wake_worker();
    let report = managed.report().await.map_err(batch)?;
    Ok((
        StatusCode::ACCEPTED,
        answer(name, action, status, &operation, &resize, report),
    ))
}

fn answer(
    name: &str,
    action: &'static str,
    status: &'static str,
    operation: &PoolOperation,
    resize: &Resize,
    report: PoolReport,
) -> ResizeAnswer {
    ResizeAnswer {
        pool: name.to_owned(),
        action,
        status,
        operation_id: (resize.callback.is_some() || operation.phase == Phase::Stopping)
            .then(|| operation.id.clone()),
        callback: resize.callback.is_some(),
        state: report,
    }
}

/// `PT15M`, `PT1H30M`, `P1D`, `PT90S`: days, hours, minutes, seconds.
pub fn parse_iso_duration(text: &str) -> Option<Duration> {
    let rest = text.trim().strip_prefix('P')?;
    let (date, time) = rest.split_once('T').unwrap_or((rest, ""));
    let mut total = Duration::ZERO;
    let mut number = String::new();
    for (part, units) in [
        (date, [('D', 86_400i64)].as_slice()),
        (time, [('H', 3600), ('M', 60), ('S', 1)].as_slice()),
    ] {
        for c in part.chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let (_, seconds) = units.iter().find(|(u, _)| *u == c)?;
            total += Duration::seconds(number.parse::<i64>().ok()? * seconds);
            number.clear();
        }
        if !number.is_empty() {
            return None;
        }
    }
    (total > Duration::ZERO).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_iso_durations() {
        assert_eq!(parse_iso_duration("PT15M"), Some(Duration::minutes(15)));
        assert_eq!(parse_iso_duration("PT1H30M"), Some(Duration::minutes(90)));
        assert_eq!(
            parse_iso_duration("P1DT1S"),
            Some(Duration::seconds(86_401))
        );
        for bad in ["15M", "PT", "PT5X", "PT5", "P", "PT-5M"] {
            assert_eq!(parse_iso_duration(bad), None, "{bad}");
        }
    }
}
