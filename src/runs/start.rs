//! `POST /api/runs`: validates the request against its template (before Azure is touched),
//! records the run (the run id is the idempotency key: a repeated id returns the existing run and
//! never creates a second group), resolves secure values from Key Vault and creates the group.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::callbacks::target::CallbackUrl;
use crate::config::JobTemplate;
use crate::error::ApiError;
use crate::runs::{self, CONTAINER, Run, RunError, RunStatus};
use crate::state::AppState;
use crate::store::{Condition, StoreError};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartRequest {
    template: String,
    #[serde(default)]
    parameters: BTreeMap<String, String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    run_id: Option<String>,
    call_back_uri: Option<String>,
}

/// The answer: whether the run is new, and the run.
pub struct Started {
    pub created: bool,
    pub run: Run,
}

/// The command with parameters substituted, after checking every parameter.
fn command(
    template: &JobTemplate,
    parameters: &BTreeMap<String, String>,
) -> Result<Vec<String>, ApiError> {
    if let Some(unknown) = parameters
        .keys()
        .find(|k| !template.parameters.contains_key(*k))
    {
        return Err(ApiError::bad_request(
            "ParameterNotAllowed",
            format!("template '{}' has no parameter '{unknown}'", template.name),
        ));
    }
    let mut values = BTreeMap::new();
    for (name, rule) in &template.parameters {
        let value = parameters
            .get(name)
            .or(rule.default.as_ref())
            .ok_or_else(|| {
                ApiError::bad_request(
                    "ParameterMissing",
                    format!("parameter '{name}' is required"),
                )
            })?;
        rule.check(value).map_err(|e| {
            ApiError::bad_request("InvalidParameter", format!("parameter '{name}' {e}"))
        })?;
        values.insert(name.as_str(), value.as_str());
    }
    Ok(template
        .command
        .iter()
        .map(|part| {
            values.iter().fold(part.clone(), |text, (name, value)| {
                text.replace(&format!("{{{name}}}"), value)
            })
        })
        .collect())
}

pub async fn start(state: &AppState, request: StartRequest) -> Result<Started, ApiError> {
    let template = state.config.template(&request.template).ok_or_else(|| {
        let known: Vec<&str> = state
            .config
            .templates
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        ApiError::bad_request(
            "UnknownTemplate",
            format!(
                "no template named '{}' (known: {})",
                request.template,
                known.join(", ")
            ),
        )
    })?;
    let command = command(template, &request.parameters)?;
    if let Some(key) = request
        .env
        .keys()
        .find(|k| !template.allowed_env.contains(k))
    {
        return Err(ApiError::bad_request(
            "EnvNotAllowed",
            format!(
                "template '{}' does not allow the environment variable '{key}'",
                template.name
            ),
        ));
    }
    let callback = request
        .call_back_uri
        .as_deref()
        .map(|url| CallbackUrl::parse(url, &state.config.callbacks))
        .transpose()
        .map_err(|e| ApiError::bad_request("CallbackNotAllowed", e))?;
    let run_id = request
        .run_id
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    runs::check_run_id(&run_id).map_err(|e| ApiError::bad_request("InvalidRunId", e))?;
    let Some(aci) = &state.aci else {
        return Err(ApiError::internal(
            "templates without a subscription passed configuration",
        ));
    };

    let now = OffsetDateTime::now_utc();
    let mut run = Run {
        run_id: run_id.clone(),
        template: template.name.clone(),
        resource_group: template.resource_group.clone(),
        container_group: runs::group_name(&run_id),
        status: RunStatus::Queued,
        created_at: now,
        started_at: None,
        finished_at: None,
        deadline: now + template.timeout,
        exit_code: None,
        output: None,
        error: None,
        log_tail: None,
        call_back_uri: callback,
        settled: false,
    };
    let etag = match state
        .store
        .put(&runs::key(&run_id), &run, Condition::New)
        .await
    {
        Ok(etag) => etag,
        Err(StoreError::Conflict) => {
            let existing = state
                .store
                .get::<Run>(&runs::key(&run_id))
                .await
                .map_err(ApiError::internal)?;
            let run = existing
                .map(|v| v.value)
                .ok_or_else(|| ApiError::internal("run vanished"))?;
            return Ok(Started {
                created: false,
                run,
            });
        }
        Err(e) => return Err(ApiError::internal(e)),
    };

    let body = match group_body(state, template, &run_id, command, &request.env).await {
        Ok(body) => body,
        Err(error) => return fail(state, run, &etag, error).await,
    };
    match aci
        .create_group(&run.resource_group, &run.container_group, &body)
        .await
    {
        Ok(()) => {
            run.status = RunStatus::Provisioning;
            state
                .store
                .put(&runs::key(&run_id), &run, Condition::Matches(etag))
                .await
                .map_err(ApiError::internal)?;
            state.wake_worker();
            Ok(Started { created: true, run })
        }
        Err(azure) => {
            let api = ApiError::azure("ACI", azure);
            fail(state, run, &etag, api).await
        }
    }
}

/// Records the run as failed with `error` (no group was created) and answers `error`.
async fn fail(
    state: &AppState,
    mut run: Run,
    etag: &str,
    error: ApiError,
) -> Result<Started, ApiError> {
    run.status = RunStatus::Failed;
    run.finished_at = Some(OffsetDateTime::now_utc());
    run.error = Some(RunError {
        code: error.code.clone(),
        message: error.message.clone(),
    });
    if let Err(e) = state
        .store
        .put(
            &runs::key(&run.run_id),
            &run,
            Condition::Matches(etag.to_owned()),
        )
        .await
    {
        tracing::error!(run = %run.run_id, error = %e, "could not record a failed start");
    }
    state.wake_worker();
    Err(error)
}

async fn group_body(
    state: &AppState,
    template: &JobTemplate,
    run_id: &str,
    command: Vec<String>,
    env: &BTreeMap<String, String>,
) -> Result<Value, ApiError> {
    let mut variables: Vec<Value> = template
        .env
        .iter()
        .chain(env.iter())
        .map(|(name, value)| json!({"name": name, "value": value}))
        .collect();
    variables.push(json!({"name": "COMPUTEBRIDGE_RUN_ID", "value": run_id}));
    for (name, setting) in &template.secure_env {
        let secret = state
            .secrets
            .resolve(setting)
            .await
            .map_err(|e| secret_error(&e))?;
        variables.push(json!({"name": name, "secureValue": secret.expose()}));
    }
    let mut properties = json!({
        "containers": [{
            "name": CONTAINER,
            "properties": {
                "image": template.image,
                "environmentVariables": variables,
                "resources": {"requests": {"cpu": template.cpu, "memoryInGB": template.memory_gb}},
            },
        }],
        "osType": "Linux",
        "restartPolicy": "Never",
    });
    if !command.is_empty() {
        properties["containers"][0]["properties"]["command"] = json!(command);
    }
    if let Some(registry) = &template.registry {
        let password = state
            .secrets
            .resolve(&registry.password)
            .await
            .map_err(|e| secret_error(&e))?;
        properties["imageRegistryCredentials"] = json!([{
            "server": registry.server,
            "username": registry.username,
            "password": password.expose(),
        }]);
    }
    Ok(json!({
        "location": template.location,
        "tags": {"computebridge-run": run_id, "computebridge-template": template.name},
        "properties": properties,
    }))
}

fn secret_error(error: &crate::secrets::store::SecretError) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "SecretUnavailable",
        error.to_string(),
    )
}
