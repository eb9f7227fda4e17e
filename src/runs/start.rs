//! `POST /api/runs`: validates the request against its template (before Azure is touched),
//! records the run (the run id is the idempotency key: a repeated id returns the existing run and
//! never creates a second group), resolves secure values from Key Vault and creates the group, or
//! starts the template's fixed group when it is free.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::callbacks::target::CallbackUrl;
use crate::config::{JobTemplate, RegistryAuth};
use crate::error::ApiError;
use crate::runs::{self, CONTAINER, OWNER_TAG, RUN_TAG, Run, RunError, RunStatus};
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
    /// `callback` (default) or `poll`.
    mode: Option<String>,
    /// An image instead of the template's, when the template allows its registry.
    image: Option<String>,
}

/// The answer: whether the run is new, and the run.
pub struct Started {
    pub created: bool,
    pub run: Run,
}

/// What was checked and worked out from the request before anything is written.
struct Plan<'a> {
    template: &'a JobTemplate,
    run_id: String,
    image: String,
    command: Vec<String>,
    env: BTreeMap<String, String>,
    callback: Option<CallbackUrl>,
    poll: bool,
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

/// Checks everything in the request; nothing is written and Azure is not called.
fn plan(state: &AppState, request: StartRequest) -> Result<Plan<'_>, ApiError> {
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
    let image = match request.image {
        None => template.image.clone(),
        Some(image) if template.allows_image(&image) => image,
        Some(_) if template.allowed_images.is_empty() => {
            return Err(ApiError::bad_request(
                "ImageNotAllowed",
                format!("template '{}' runs only its own image", template.name),
            ));
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "ImageNotAllowed",
                format!(
                    "template '{}' allows images only from: {}",
                    template.name,
                    template.allowed_images.join(", ")
                ),
            ));
        }
    };
    let poll = match request.mode.as_deref() {
        None | Some("callback") => false,
        Some("poll") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                "InvalidMode",
                format!("mode '{other}' is not 'callback' or 'poll'"),
            ));
        }
    };
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
    Ok(Plan {
        template,
        run_id,
        image,
        command,
        env: request.env,
        callback,
        poll,
    })
}

pub async fn start(state: &AppState, request: StartRequest) -> Result<Started, ApiError> {
    let plan = plan(state, request)?;
    let Some(aci) = &state.aci else {
        return Err(ApiError::internal(
            "templates without a subscription passed configuration",
        ));
    };
    let template = plan.template;
    let run_id = plan.run_id.clone();
    let now = OffsetDateTime::now_utc();
    let mut run = Run {
        run_id: run_id.clone(),
        template: template.name.clone(),
        resource_group: template.resource_group.clone(),
        container_group: template
            .container_group
            .clone()
            .unwrap_or_else(|| runs::group_name(&run_id)),
        status: RunStatus::Queued,
        created_at: now,
        started_at: None,
        finished_at: None,
        deadline: now + template.timeout,
        exit_code: None,
        output: None,
        error: None,
        log_tail: None,
        call_back_uri: plan.callback.clone(),
        settled: false,
        poll: plan.poll,
        image: plan.image.clone(),
        container: CONTAINER.into(),
        output_token: Some(format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        )),
        start_deadline: Some(now + template.start_timeout),
        delete_group_at: None,
        group_deleted: false,
        fixed_group: template.container_group.is_some(),
    };
    // The marker first: a run the sweep cannot find must never exist.
    match state
        .store
        .put(
            &runs::active_key(&run_id),
            &runs::marker(now),
            Condition::New,
        )
        .await
    {
        Ok(_) | Err(StoreError::Conflict) => {}
        Err(e) => return Err(ApiError::internal(e)),
    }
    let etag = match state
        .store
        .put(&runs::key(&run_id), &run, Condition::New)
        .await
    {
        Ok(etag) => etag,
        Err(StoreError::Conflict) => {
            let existing = runs::read(&state.store, &run_id).await?;
            return Ok(Started {
                created: false,
                run: existing.value,
            });
        }
        Err(e) => return Err(ApiError::internal(e)),
    };

    let fixed = if run.fixed_group {
        match claim_fixed_group(state, &run).await {
            Ok(group) => {
                let container = &group["properties"]["containers"][0];
                run.image = container["properties"]["image"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                run.container = container["name"].as_str().unwrap_or(CONTAINER).to_owned();
                Some(group)
            }
            Err(error) => return fail(state, run, &etag, error).await,
        }
    } else {
        None
    };
    let body = match group_body(state, &plan, &run, fixed.as_ref()).await {
        Ok(body) => body,
        Err(error) => return fail(state, run, &etag, error).await,
    };
    match aci
        .create_group(&run.resource_group, &run.container_group, &body)
        .await
    {
        Ok(()) => {
            run.status = RunStatus::Provisioning;
            let run = match state
                .store
                .put(&runs::key(&run_id), &run, Condition::Matches(etag))
                .await
            {
                Ok(_) => run,
                // A sweep already read the new group and moved the run on: it is started.
                Err(StoreError::Conflict) => runs::read(&state.store, &run_id).await?.value,
                Err(e) => return Err(ApiError::internal(e)),
            };
            state.wake_worker();
            Ok(Started { created: true, run })
        }
        Err(azure) => {
            let api = ApiError::azure("ACI", azure);
            fail(state, run, &etag, api).await
        }
    }
}

/// Records the run as failed with `error` (nothing runs for it) and answers `error`.
async fn fail(
    state: &AppState,
    mut run: Run,
    etag: &str,
    error: ApiError,
) -> Result<Started, ApiError> {
    run.status = RunStatus::Failed;
    run.finished_at = Some(OffsetDateTime::now_utc());
    run.group_deleted = !run.fixed_group;
    run.error = Some(RunError {
        code: error.code.clone(),
        message: error.message.clone(),
    });
    if run.fixed_group {
        release_fixed_group(state, &run).await;
    }
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

/// The lock document of a fixed group: which run holds it.
pub fn group_lock_key(resource_group: &str, group: &str) -> String {
    format!("group-locks/{resource_group}/{group}")
}

/// Takes the fixed group for `run` and returns it as ARM describes it, or 409
/// `ContainerGroupBusy` when another live run holds it or it is running something this service
/// did not start.
async fn claim_fixed_group(state: &AppState, run: &Run) -> Result<Value, ApiError> {
    let busy = |holder: &str| {
        ApiError::conflict(
            "ContainerGroupBusy",
            format!(
                "container group '{}' is running {holder}; try again when it ends",
                run.container_group
            ),
        )
    };
    let key = group_lock_key(&run.resource_group, &run.container_group);
    let lock = json!({"runId": run.run_id});
    loop {
        match state.store.put(&key, &lock, Condition::New).await {
            Ok(_) => break,
            Err(StoreError::Conflict) => {}
            Err(e) => return Err(ApiError::internal(e)),
        }
        let Some(current) = state
            .store
            .get::<Value>(&key)
            .await
            .map_err(ApiError::internal)?
        else {
            continue;
        };
        let holder = current.value["runId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let holder_live = match state.store.get::<Run>(&runs::key(&holder)).await {
            Ok(Some(other)) => !other.value.settled,
            Ok(None) => false,
            Err(e) => return Err(ApiError::internal(e)),
        };
        if holder_live {
            return Err(busy(&format!("run '{holder}'")));
        }
        match state
            .store
            .put(&key, &lock, Condition::Matches(current.etag))
            .await
        {
            Ok(_) => break,
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(ApiError::internal(e)),
        }
    }
    let aci = state
        .aci
        .as_ref()
        .ok_or_else(|| ApiError::internal("no ACI client"))?;
    let group = aci
        .get_group(&run.resource_group, &run.container_group)
        .await
        .map_err(|e| ApiError::azure("ACI", e))?;
    let Some(group) = group else {
        release_fixed_group(state, run).await;
        return Err(ApiError::conflict(
            "ContainerGroupNotFound",
            format!(
                "the template's container group '{}' does not exist in resource group '{}'",
                run.container_group, run.resource_group
            ),
        ));
    };
    if crate::azure::aci::GroupView::from_json(&group).container_state == "Running" {
        release_fixed_group(state, run).await;
        return Err(busy("a job this service did not start"));
    }
    Ok(group)
}

/// Lets the next run have the fixed group `run` held.
pub async fn release_fixed_group(state: &AppState, run: &Run) {
    let key = group_lock_key(&run.resource_group, &run.container_group);
    if let Ok(Some(lock)) = state.store.get::<Value>(&key).await
        && lock.value["runId"] == run.run_id.as_str()
        && let Err(e) = state.store.delete(&key, &lock.etag).await
    {
        tracing::warn!(run = %run.run_id, error = %e, "could not release the fixed group");
    }
}

/// The URL the job posts its output to, when the service knows its public address.
fn output_url(state: &AppState, run: &Run) -> Option<String> {
    let base = state.config.public_url.as_deref()?;
    let token = run.output_token.as_deref()?;
    Some(format!(
        "{base}/api/runs/{}/output?token={token}",
        run.run_id
    ))
}

/// The group to PUT. For a fixed group, its image, resources and location are kept and the run's
/// command and environment replace the previous run's.
async fn group_body(
    state: &AppState,
    plan: &Plan<'_>,
    run: &Run,
    fixed: Option<&Value>,
) -> Result<Value, ApiError> {
    let template = plan.template;
    let mut variables: Vec<Value> = template
        .env
        .iter()
        .chain(plan.env.iter())
        .map(|(name, value)| json!({"name": name, "value": value}))
        .collect();
    variables.push(json!({"name": "COMPUTEBRIDGE_RUN_ID", "value": run.run_id}));
    if let Some(url) = output_url(state, run) {
        variables.push(json!({"name": "COMPUTEBRIDGE_OUTPUT_URL", "secureValue": url}));
    }
    for (name, setting) in &template.secure_env {
        let secret = state
            .secrets
            .resolve(setting)
            .await
            .map_err(|e| secret_error(&e))?;
        variables.push(json!({"name": name, "secureValue": secret.expose()}));
    }
    let existing = fixed.map(|group| &group["properties"]["containers"][0]["properties"]);
    let mut container = json!({
        "image": run.image,
        "environmentVariables": variables,
        "resources": existing
            .map(|c| c["resources"].clone())
            .unwrap_or_else(|| json!({"requests": {"cpu": template.cpu, "memoryInGB": template.memory_gb}})),
    });
    if !plan.command.is_empty() {
        container["command"] = json!(plan.command);
    }
    let mut properties = json!({
        "containers": [{"name": run.container, "properties": container}],
        "osType": "Linux",
        "restartPolicy": template.restart_policy,
    });
    if let Some(registry) = &template.registry {
        properties["imageRegistryCredentials"] = match &registry.auth {
            RegistryAuth::Password { username, password } => {
                let password = state
                    .secrets
                    .resolve(password)
                    .await
                    .map_err(|e| secret_error(&e))?;
                json!([{"server": registry.server, "username": username, "password": password.expose()}])
            }
            RegistryAuth::Identity(identity) => {
                json!([{"server": registry.server, "identity": identity}])
            }
        };
    }
    if let Some(subnet) = &template.subnet {
        properties["subnetIds"] = json!([{"id": subnet}]);
    }
    let identities = template
        .identity
        .iter()
        .chain(match &template.registry {
            Some(crate::config::Registry {
                auth: RegistryAuth::Identity(identity),
                ..
            }) => Some(identity),
            _ => None,
        })
        .map(|id| (id.clone(), json!({})))
        .collect::<serde_json::Map<String, Value>>();
    let location = fixed
        .and_then(|group| group["location"].as_str())
        .unwrap_or(&template.location);
    let mut body = json!({
        "location": location,
        "tags": {
            RUN_TAG: run.run_id,
            OWNER_TAG: state.owner_tag(),
            "computebridge-template": template.name,
        },
        "properties": properties,
    });
    if !identities.is_empty() {
        body["identity"] = json!({"type": "UserAssigned", "userAssignedIdentities": identities});
    }
    Ok(body)
}

fn secret_error(error: &crate::secrets::store::SecretError) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "SecretUnavailable",
        error.to_string(),
    )
}
