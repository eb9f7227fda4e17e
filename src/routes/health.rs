//! `GET /` (the host's readiness probe) and `GET /api/health` (anonymous, always an object).
//!
//! Plain health is cheap and touches nothing outside the process. `?deep=true` also acquires a
//! token for each Azure resource the configuration uses and reads each configured Key Vault
//! reference (fresh, not from the cache), reporting per dependency `ok` or Azure's error code and
//! message, never a value. Every check has a time limit, so deep health never hangs.

use std::time::Duration;

use axum::Json;
use axum::extract::{RawQuery, State};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::azure::error::AzureError;
use crate::error::ApiError;
use crate::state::AppState;

/// Longest a single dependency check may take.
const CHECK_TIME_LIMIT: Duration = Duration::from_secs(25);

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DependencyReport {
    name: String,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

pub async fn readiness() -> Json<Value> {
    Json(json!({"service": "computebridge", "status": "ready"}))
}

pub async fn get_health(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let deep = match query_value(query.as_deref().unwrap_or(""), "deep") {
        None | Some("false" | "0") => false,
        Some("true" | "1" | "") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                "InvalidQueryParameter",
                format!("deep must be true or false, not '{other}'"),
            ));
        }
    };
    let mut body = json!({
        "service": "computebridge",
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "mode": state.mode,
        "uptimeSeconds": state.started.elapsed().as_secs(),
        "timers": state.timer_statuses(),
    });
    if deep {
        let dependencies = check_dependencies(&state).await;
        if dependencies.iter().any(|d| d.status != "ok") {
            body["status"] = json!("degraded");
        }
        body["credential"] = json!(state.config.azure.credential.kind());
        body["dependencies"] = json!(dependencies);
    }
    Ok(Json(body))
}

fn query_value<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })
}

async fn check_dependencies(state: &AppState) -> Vec<DependencyReport> {
    let mut checks = JoinSet::new();
    let mut order = Vec::new();
    for (name, scope) in token_scopes(state) {
        let azure = state.azure.clone();
        order.push(name.clone());
        checks.spawn(async move {
            (
                name,
                within_limit(async move { azure.check_token(&scope).await }).await,
            )
        });
    }
    for (setting, reference) in state.config.secret_references() {
        let secrets = state.secrets.clone();
        let name = format!("secret {reference} ({setting})");
        order.push(name.clone());
        checks.spawn(async move {
            let outcome =
                within_limit(async move { secrets.check(&reference).await.map_err(|e| e.error) })
                    .await;
            (name, outcome)
        });
    }
    let mut reports = Vec::new();
    while let Some(joined) = checks.join_next().await {
        let Ok((name, outcome)) = joined else {
            continue;
        };
        reports.push(match outcome {
            Ok(()) => DependencyReport {
                name,
                status: "ok",
                code: None,
                message: None,
            },
            Err(error) => DependencyReport {
                name,
                status: "error",
                code: Some(error.code),
                message: Some(error.message),
            },
        });
    }
    reports.sort_by_key(|r| order.iter().position(|n| *n == r.name));
    reports
}

/// The token audiences the configuration needs: ARM with a subscription, Batch with pools, Key
/// Vault with any reference.
fn token_scopes(state: &AppState) -> Vec<(String, String)> {
    let cloud = state.azure.cloud;
    let mut scopes = Vec::new();
    if state.config.azure.subscription_id.is_some() {
        scopes.push(("token arm".to_owned(), cloud.arm_scope()));
    }
    if !state.config.pools.is_empty() {
        scopes.push(("token batch".to_owned(), cloud.batch_scope().to_owned()));
    }
    if !state.config.secret_references().is_empty() {
        scopes.push(("token keyvault".to_owned(), cloud.key_vault_scope()));
    }
    scopes
}

async fn within_limit(
    check: impl Future<Output = Result<(), AzureError>>,
) -> Result<(), AzureError> {
    tokio::time::timeout(CHECK_TIME_LIMIT, check)
        .await
        .unwrap_or_else(|_| {
            Err(AzureError::new(
                None,
                "DependencyTimeout",
                format!("no answer within {} s", CHECK_TIME_LIMIT.as_secs()),
            ))
        })
}
