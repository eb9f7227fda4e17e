//! ARM on `management.azure.com`: resource groups and ACI container groups
//! (`Microsoft.ContainerInstance/containerGroups`): create or update (201/200 with
//! `Azure-AsyncOperation`, provisioning Pending → Succeeded), get with `instanceView`, list by
//! resource group or subscription (without `instanceView`), update tags, start, stop, restart,
//! delete, container logs with `tail`, and the async-operation status endpoint. Operations on a
//! group that is still transitioning get 409 `ContainerGroupTransitioning`.

pub mod arm;
pub mod groups;
pub mod runtime;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

use crate::http::{self, Incoming, azure_time};
use crate::state::Shared;
use arm::{Bucket, Throttle};
use groups::{Container, ContainerState, EnvVar, Group};
use runtime::RegisteredImage;

pub use arm::error as arm_error;

const JSON: &str = "application/json; charset=utf-8";
const PROVIDER: &str = "Microsoft.ContainerInstance";
/// api-versions of Microsoft.ContainerInstance the emulator accepts.
const ACI_VERSIONS: [&str; 14] = [
    "2017-08-01-preview",
    "2017-10-01-preview",
    "2017-12-01-preview",
    "2018-02-01-preview",
    "2018-04-01",
    "2018-06-01",
    "2018-10-01",
    "2019-12-01",
    "2020-11-01",
    "2021-03-01",
    "2021-09-01",
    "2022-09-01",
    "2023-05-01",
    "2025-09-01",
];
/// Retry interval of a pull that failed.
const PULL_RETRY: Duration = Duration::seconds(30);

#[derive(Debug, Default)]
pub struct Aci {
    /// By lower-cased resource id.
    groups: BTreeMap<String, Group>,
    operations: HashMap<String, Operation>,
    /// Lower-cased `subscription/resourceGroup` → (name as created, location).
    resource_groups: BTreeMap<String, (String, String)>,
    pub images: Vec<RegisteredImage>,
    /// Standard-core quota per location (lower-cased); unlimited when absent.
    quotas: HashMap<String, f64>,
    throttle: Throttle,
}

#[derive(Debug, Clone)]
struct Operation {
    group_id: String,
    location: String,
    status: &'static str,
    start: OffsetDateTime,
}

/// A resource group, or an ACI core quota, as seeded through the control surface.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedResourceGroup {
    pub subscription: String,
    pub name: String,
    #[serde(default = "default_location")]
    pub location: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedQuota {
    pub location: String,
    pub standard_cores: f64,
}

fn default_location() -> String {
    "westeurope".into()
}

impl Aci {
    pub fn seed_resource_group(&mut self, seed: &SeedResourceGroup) {
        self.resource_groups.insert(
            rg_key(&seed.subscription, &seed.name),
            (seed.name.clone(), seed.location.clone()),
        );
    }

    pub fn seed_quota(&mut self, seed: &SeedQuota) {
        self.quotas
            .insert(seed.location.to_ascii_lowercase(), seed.standard_cores);
    }

    pub fn container_mut(
        &mut self,
        group_id: &str,
        deployment: u64,
        name: &str,
    ) -> Option<&mut Container> {
        self.group_for_deployment(group_id, deployment)?
            .containers
            .iter_mut()
            .find(|c| c.name == name)
    }

    pub fn group_for_deployment(&mut self, group_id: &str, deployment: u64) -> Option<&mut Group> {
        self.groups
            .get_mut(&group_id.to_ascii_lowercase())
            .filter(|g| g.deployment == deployment)
    }
}

fn rg_key(subscription: &str, name: &str) -> String {
    format!(
        "{}/{}",
        subscription.to_ascii_lowercase(),
        name.to_ascii_lowercase()
    )
}

pub fn handle(state: &Shared, request: &Incoming) -> Response {
    if let Some(unauthorized) = arm::authenticate(request) {
        return unauthorized;
    }
    let segments = request.segments();
    let subscription = match segments.as_slice() {
        ["subscriptions", subscription, ..] => subscription.to_string(),
        _ => String::new(),
    };
    let bucket = Bucket::of(&request.method);
    let taken = if state.options.arm_throttling {
        state
            .aci
            .lock()
            .unwrap()
            .throttle
            .take(&subscription, bucket)
    } else {
        Ok(bucket.size())
    };
    let remaining = match taken {
        Ok(remaining) => remaining,
        Err(retry_after) => return arm::throttled(bucket, retry_after),
    };
    let mut response = route(state, request, &segments);
    arm::decorate(&mut response, request, "westeurope", bucket, remaining);
    response
}

fn route(state: &Shared, request: &Incoming, segments: &[&str]) -> Response {
    let version = request.query("api-version");
    let Some(version) = version else {
        return arm::error(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        );
    };
    let lower: Vec<String> = segments.iter().map(|s| s.to_ascii_lowercase()).collect();
    let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
    let method = request.method.clone();
    match lower.as_slice() {
        ["providers", "microsoft.containerinstance", "operations"] => http::json(
            StatusCode::OK,
            JSON,
            &json!({"value": [
                {"name": "Microsoft.ContainerInstance/containerGroups/read", "display": {"provider": "Microsoft Container Instance", "resource": "Container Group", "operation": "Get Container Group", "description": "Get all container groups."}, "origin": "User"},
                {"name": "Microsoft.ContainerInstance/containerGroups/write", "display": {"provider": "Microsoft Container Instance", "resource": "Container Group", "operation": "Create or Update Container Group", "description": "Create or Update any container group."}, "origin": "User"},
            ]}),
        ),
        ["subscriptions", _, "resourcegroups", _] => {
            resource_group(state, request, segments[1], segments[3])
        }
        [
            "subscriptions",
            _,
            "providers",
            "microsoft.containerinstance",
            "locations",
            location,
            "operations",
            id,
        ] => operation_status(state, location, id),
        [
            "subscriptions",
            _,
            "providers",
            "microsoft.containerinstance",
            "containergroups",
        ] if method == Method::GET => {
            check_version(version).unwrap_or_else(|| list_groups(state, segments[1], None))
        }
        [
            "subscriptions",
            _,
            "resourcegroups",
            _,
            "providers",
            "microsoft.containerinstance",
            "containergroups",
            rest @ ..,
        ] => {
            if let Some(error) = check_version(version) {
                return error;
            }
            let (subscription, rg) = (segments[1], segments[3]);
            let Some((rg_name, rg_location)) = state
                .aci
                .lock()
                .unwrap()
                .resource_groups
                .get(&rg_key(subscription, rg))
                .cloned()
            else {
                return arm::error(
                    StatusCode::NOT_FOUND,
                    "ResourceGroupNotFound",
                    &format!("Resource group '{rg}' could not be found."),
                );
            };
            match (method, rest) {
                (Method::GET, []) => list_groups(state, subscription, Some(rg)),
                (method, [_, ..]) => {
                    let name = segments[7];
                    let id = format!(
                        "/subscriptions/{subscription}/resourceGroups/{rg_name}/providers/{PROVIDER}/containerGroups/{name}"
                    );
                    let target = GroupTarget {
                        id: &id,
                        subscription,
                        rg: &rg_name,
                        name,
                        rg_location: &rg_location,
                    };
                    group_route(state, request, method, &lower[8..], &target).unwrap_or_else(|| {
                        arm::error(
                            StatusCode::BAD_REQUEST,
                            "InvalidRequest",
                            &format!(
                                "The request {} {} is not supported.",
                                request.method, request.path
                            ),
                        )
                    })
                }
                _ => arm::error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "MethodNotAllowed",
                    "The requested method is not allowed.",
                ),
            }
        }
        _ => arm::error(
            StatusCode::NOT_FOUND,
            "NoRegisteredProviderFound",
            &format!(
                "No registered resource provider found for the request path '{}'.",
                request.path
            ),
        ),
    }
}

/// The container group a request names.
#[derive(Clone, Copy)]
struct GroupTarget<'a> {
    id: &'a str,
    subscription: &'a str,
    rg: &'a str,
    name: &'a str,
    rg_location: &'a str,
}

fn check_version(version: &str) -> Option<Response> {
    (!ACI_VERSIONS.contains(&version)).then(|| {
        arm::error(
            StatusCode::BAD_REQUEST,
            "NoRegisteredProviderFound",
            &format!("No registered resource provider found for location 'westeurope' and API version '{version}' for type 'containerGroups'. The supported api-versions are '{}'.", ACI_VERSIONS.join(", ")),
        )
    })
}

fn resource_group(state: &Shared, request: &Incoming, subscription: &str, name: &str) -> Response {
    let mut aci = state.aci.lock().unwrap();
    let key = rg_key(subscription, name);
    let body = |name: &str, location: &str, tags: &Value| {
        json!({
            "id": format!("/subscriptions/{subscription}/resourceGroups/{name}"),
            "name": name,
            "type": "Microsoft.Resources/resourceGroups",
            "location": location,
            "tags": tags,
            "properties": {"provisioningState": "Succeeded"},
        })
    };
    match request.method {
        Method::PUT => {
            let submitted = request.json().unwrap_or(Value::Null);
            let location = submitted["location"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(default_location);
            let tags = submitted.get("tags").cloned().unwrap_or(json!({}));
            let existed = aci
                .resource_groups
                .insert(key, (name.to_owned(), location.clone()))
                .is_some();
            http::json(
                if existed {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                },
                JSON,
                &body(name, &location, &tags),
            )
        }
        Method::GET => match aci.resource_groups.get(&key) {
            Some((name, location)) => {
                http::json(StatusCode::OK, JSON, &body(name, location, &json!({})))
            }
            None => arm::error(
                StatusCode::NOT_FOUND,
                "ResourceGroupNotFound",
                &format!("Resource group '{name}' could not be found."),
            ),
        },
        Method::DELETE => {
            if aci.resource_groups.remove(&key).is_none() {
                return arm::error(
                    StatusCode::NOT_FOUND,
                    "ResourceGroupNotFound",
                    &format!("Resource group '{name}' could not be found."),
                );
            }
            let prefix = format!(
                "/subscriptions/{}/resourcegroups/{}/",
                subscription.to_ascii_lowercase(),
                name.to_ascii_lowercase()
            );
            let doomed: Vec<String> = aci
                .groups
                .keys()
                .filter(|k| k.starts_with(&prefix))
                .cloned()
                .collect();
            for key in doomed {
                if let Some(mut group) = aci.groups.remove(&key) {
                    group
                        .containers
                        .iter_mut()
                        .for_each(Container::stop_process);
                }
            }
            http::empty(StatusCode::ACCEPTED)
        }
        _ => arm::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "The requested method is not allowed.",
        ),
    }
}

fn operation_status(state: &Shared, location: &str, id: &str) -> Response {
    let aci = state.aci.lock().unwrap();
    match aci.operations.get(id) {
        Some(operation) if operation.location.eq_ignore_ascii_case(location) => http::json(
            StatusCode::OK,
            JSON,
            &json!({"id": operation.group_id, "status": operation.status, "startTime": azure_time(operation.start), "properties": {"events": []}}),
        ),
        _ => arm::error(
            StatusCode::NOT_FOUND,
            "OperationNotFound",
            &format!("The operation '{id}' could not be found."),
        ),
    }
}

fn list_groups(state: &Shared, subscription: &str, rg: Option<&str>) -> Response {
    let aci = state.aci.lock().unwrap();
    let prefix = match rg {
        Some(rg) => format!(
            "/subscriptions/{}/resourcegroups/{}/",
            subscription.to_ascii_lowercase(),
            rg.to_ascii_lowercase()
        ),
        None => format!("/subscriptions/{}/", subscription.to_ascii_lowercase()),
    };
    let items: Vec<Value> = aci
        .groups
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(_, g)| g.to_json(false))
        .collect();
    http::json(StatusCode::OK, JSON, &json!({"value": items}))
}

fn group_route(
    state: &Shared,
    request: &Incoming,
    method: Method,
    rest: &[&str],
    target: &GroupTarget,
) -> Option<Response> {
    let GroupTarget {
        id,
        subscription,
        rg,
        name,
        rg_location,
    } = *target;
    let now = state.clock.now();
    let key = id.to_ascii_lowercase();
    let mut aci = state.aci.lock().unwrap();
    let transitioning = || {
        arm::error(
            StatusCode::CONFLICT,
            "ContainerGroupTransitioning",
            &format!("The container group '{name}' is still transitioning, please retry later."),
        )
    };
    let not_found = || {
        arm::error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            &format!(
                "The Resource '{PROVIDER}/containerGroups/{name}' under resource group '{rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
            ),
        )
    };
    Some(match (method, rest) {
        (Method::PUT, []) => {
            let body = match request.json() {
                Ok(body) => body,
                Err(e) => {
                    return Some(arm::error(
                        StatusCode::BAD_REQUEST,
                        "InvalidRequestContent",
                        &format!(
                            "The request content was invalid and could not be deserialized: '{e}'."
                        ),
                    ));
                }
            };
            if let Err(message) = validate_name(name) {
                return Some(arm::error(
                    StatusCode::BAD_REQUEST,
                    "InvalidContainerGroupName",
                    &message,
                ));
            }
            let existing = aci.groups.get(&key);
            if existing.is_some_and(|g| g.transitioning(now)) {
                return Some(transitioning());
            }
            let created = existing.is_none();
            let group = match build_group(&body, id, name, rg_location) {
                Ok(group) => group,
                Err((code, message)) => {
                    return Some(arm::error(StatusCode::BAD_REQUEST, code, &message));
                }
            };
            if let Some(limit) = aci
                .quotas
                .get(&group.location.to_ascii_lowercase())
                .copied()
            {
                let used: f64 = aci
                    .groups
                    .values()
                    .filter(|g| {
                        g.location.eq_ignore_ascii_case(&group.location)
                            && g.active()
                            && g.id.to_ascii_lowercase() != key
                    })
                    .map(Group::cpu)
                    .sum();
                if used + group.cpu() > limit {
                    return Some(arm::error(
                        StatusCode::CONFLICT,
                        "ContainerGroupQuotaReached",
                        &format!(
                            "Resource type 'Microsoft.ContainerInstance/containerGroups' container group quota 'StandardCores' exceeded in region '{}'. Limit: '{limit}', Usage: '{used}', Requested: '{}'.",
                            group.location,
                            group.cpu()
                        ),
                    ));
                }
            }
            if let Some(mut old) = aci.groups.remove(&key) {
                old.containers.iter_mut().for_each(Container::stop_process);
            }
            let mut group = group;
            let operation = deploy(
                &mut aci,
                &mut group,
                now,
                state.options.timings.aci_provisioning,
                "Pending",
            );
            let body = group.to_json(true);
            aci.groups.insert(key, group);
            let mut response = http::json(
                if created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                },
                JSON,
                &body,
            );
            async_operation_header(
                &mut response,
                request,
                subscription,
                body["location"].as_str().unwrap_or("westeurope"),
                &operation,
            );
            http::set_header(
                &mut response,
                "x-ms-ratelimit-remaining-subscription-resource-requests-pt1h",
                "299",
            );
            http::set_header(
                &mut response,
                "x-ms-ratelimit-remaining-subscription-resource-requests-pt5m",
                "99",
            );
            response
        }
        (Method::GET, []) => match aci.groups.get(&key) {
            Some(group) => http::json(StatusCode::OK, JSON, &group.to_json(true)),
            None => not_found(),
        },
        (Method::PATCH, []) => {
            let Some(group) = aci.groups.get_mut(&key) else {
                return Some(not_found());
            };
            if let Ok(body) = request.json()
                && !body["tags"].is_null()
            {
                group.tags = Some(body["tags"].clone());
            }
            http::json(StatusCode::OK, JSON, &group.to_json(true))
        }
        (Method::DELETE, []) => match aci.groups.remove(&key) {
            Some(mut group) => {
                group
                    .containers
                    .iter_mut()
                    .for_each(Container::stop_process);
                group.provisioning_state = "Deleting".into();
                http::json(StatusCode::OK, JSON, &group.to_json(true))
            }
            None => http::empty(StatusCode::NO_CONTENT),
        },
        (Method::POST, ["start"]) => {
            let Some(mut group) = aci.groups.remove(&key) else {
                return Some(not_found());
            };
            if group.transitioning(now) || group.active() {
                aci.groups.insert(key, group);
                return Some(transitioning());
            }
            // A start is a new deployment: fresh containers, fresh logs.
            group.containers.iter_mut().for_each(|c| {
                c.restart_count = 0;
                c.previous_state = None;
                c.logs.clear();
                c.log_bytes = 0;
            });
            redeploy(
                &mut aci,
                key,
                group,
                state,
                now,
                StatusCode::ACCEPTED,
                request,
                subscription,
            )
        }
        (Method::POST, ["stop"]) => {
            let Some(group) = aci.groups.get_mut(&key) else {
                return Some(not_found());
            };
            // Stop is synchronous and ends any deployment in flight.
            if group.active() {
                group.provisioned_at = None;
                group.deployment += 1;
                for container in &mut group.containers {
                    container.stop_process();
                    container.next_restart = None;
                    container.next_pull = None;
                    if let Some(ContainerState::Running { start }) = container.state {
                        container.state = Some(ContainerState::Terminated {
                            exit_code: 137,
                            start,
                            finish: now,
                            detail: "Killed".into(),
                        });
                    }
                    container.event(
                        "Killing",
                        format!("Killing container {}", container.name),
                        "Normal",
                        now,
                    );
                }
                group.state = "Stopped".into();
                group.provisioning_state = "Succeeded".into();
            }
            http::empty(StatusCode::NO_CONTENT)
        }
        (Method::POST, ["restart"]) => {
            let Some(group) = aci.groups.remove(&key) else {
                return Some(not_found());
            };
            if group.state == "Stopped" {
                aci.groups.insert(key, group);
                return Some(arm::error(
                    StatusCode::CONFLICT,
                    "ContainerGroupStopped",
                    &format!("Container Group '{name}' in resource group '{rg}' is stopped"),
                ));
            }
            if group.transitioning(now) {
                aci.groups.insert(key, group);
                return Some(transitioning());
            }
            redeploy(
                &mut aci,
                key,
                group,
                state,
                now,
                StatusCode::NO_CONTENT,
                request,
                subscription,
            )
        }
        (Method::GET, ["containers", container, "logs"]) => {
            let Some(group) = aci.groups.get(&key) else {
                return Some(not_found());
            };
            let Some(container) = group
                .containers
                .iter()
                .find(|c| c.name.eq_ignore_ascii_case(container))
            else {
                return Some(arm::error(
                    StatusCode::NOT_FOUND,
                    "ContainerNotFound",
                    &format!(
                        "The container '{container}' could not be found in container group '{name}'."
                    ),
                ));
            };
            if container.state.is_none()
                || matches!(container.state, Some(ContainerState::Waiting { .. }))
                    && container.logs.is_empty()
            {
                return Some(arm::error(
                    StatusCode::BAD_REQUEST,
                    "ContainerLogNotAvailable",
                    &format!(
                        "The logs of container '{}' in container group '{name}' are not available: the container has not started.",
                        container.name
                    ),
                ));
            }
            let tail = request.query("tail").and_then(|t| t.parse::<usize>().ok());
            let timestamps = request
                .query("timestamps")
                .is_some_and(|t| t.eq_ignore_ascii_case("true"));
            let skip = tail.map_or(0, |n| container.logs.len().saturating_sub(n));
            let content: String = container.logs[skip..]
                .iter()
                .map(|(at, line)| {
                    if timestamps {
                        format!("{} {line}\n", azure_time(*at))
                    } else {
                        format!("{line}\n")
                    }
                })
                .collect();
            http::json(StatusCode::OK, JSON, &json!({"content": content}))
        }
        _ => return None,
    })
}

fn validate_name(name: &str) -> Result<(), String> {
    let ok = (1..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "The container group name '{name}' is invalid. A container group name must contain no more than 63 characters and must match the regex '[a-z0-9]([-a-z0-9]*[a-z0-9])?' (e.g. 'my-name')."
        ))
    }
}

fn build_group(
    body: &Value,
    id: &str,
    name: &str,
    rg_location: &str,
) -> Result<Group, (&'static str, String)> {
    let properties = body["properties"].as_object().ok_or((
        "InvalidRequestContent",
        "The request content must have 'properties'.".to_owned(),
    ))?;
    let os_type = properties
        .get("osType")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !["Linux", "Windows"].contains(&os_type) {
        return Err((
            "InvalidOsType",
            format!(
                "The 'osType' property is required and must be 'Linux' or 'Windows'; got '{os_type}'."
            ),
        ));
    }
    let specs = properties
        .get("containers")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
        .ok_or((
            "InvalidContainerGroup",
            "A container group needs at least one container.".to_owned(),
        ))?;
    let mut containers = Vec::new();
    let mut names = BTreeSet::new();
    for spec in specs {
        let container_name = spec["name"].as_str().unwrap_or("").to_owned();
        if container_name.is_empty() || !names.insert(container_name.clone()) {
            return Err((
                "InvalidContainerName",
                format!("Container name '{container_name}' is empty or not unique."),
            ));
        }
        let mut props = spec["properties"].as_object().cloned().unwrap_or_default();
        let image = props
            .get("image")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if image.is_empty() {
            return Err((
                "InvalidImage",
                format!("The image of container '{container_name}' is required."),
            ));
        }
        let cpu = props
            .get("resources")
            .and_then(|r| r["requests"]["cpu"].as_f64());
        let memory = props
            .get("resources")
            .and_then(|r| r["requests"]["memoryInGB"].as_f64());
        let (Some(cpu), Some(_)) = (cpu, memory) else {
            return Err((
                "InvalidResourceRequests",
                format!("The container '{container_name}' must request 'cpu' and 'memoryInGB'."),
            ));
        };
        let command = props
            .get("command")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let env = props
            .get("environmentVariables")
            .and_then(Value::as_array)
            .map(|vars| {
                vars.iter()
                    .filter_map(|v| {
                        Some(EnvVar {
                            name: v["name"].as_str()?.to_owned(),
                            value: v["value"].as_str().map(str::to_owned),
                            secure_value: v["secureValue"].as_str().map(str::to_owned),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        props.remove("instanceView");
        props.remove("environmentVariables");
        props.entry("ports").or_insert(json!([]));
        containers.push(Container {
            name: container_name,
            image,
            command,
            env,
            spec: Value::Object(props),
            state: None,
            previous_state: None,
            restart_count: 0,
            events: Vec::new(),
            logs: Vec::new(),
            log_bytes: 0,
            kill: None,
            next_restart: None,
            next_pull: None,
            cpu,
        });
    }
    let mut spec = properties.clone();
    for key in [
        "containers",
        "instanceView",
        "provisioningState",
        "imageRegistryCredentials",
        "restartPolicy",
    ] {
        spec.remove(key);
    }
    if let Some(ip) = spec.get_mut("ipAddress").and_then(Value::as_object_mut) {
        ip.insert("ip".into(), json!("20.61.0.4"));
        if let Some(label) = ip
            .get("dnsNameLabel")
            .and_then(Value::as_str)
            .map(str::to_owned)
        {
            let location = body["location"].as_str().unwrap_or(rg_location).to_owned();
            ip.insert(
                "fqdn".into(),
                json!(format!("{label}.{location}.azurecontainer.io")),
            );
        }
    }
    spec.entry("sku").or_insert(json!("Standard"));
    spec.entry("initContainers").or_insert(json!([]));
    let identity = body.get("identity").filter(|v| v.is_object()).map(|identity| {
        let mut identity = identity.clone();
        let kind = identity["type"].as_str().unwrap_or("").to_owned();
        if kind != "None" {
            identity["tenantId"] = json!("72f988bf-86f1-41af-91ab-2d7cd011db47");
        }
        if kind.contains("SystemAssigned") {
            identity["principalId"] = json!(uuid::Uuid::new_v4().to_string());
        }
        if let Some(assigned) = identity["userAssignedIdentities"].as_object_mut() {
            for value in assigned.values_mut() {
                *value = json!({"principalId": uuid::Uuid::new_v4().to_string(), "clientId": uuid::Uuid::new_v4().to_string()});
            }
        }
        identity
    });
    Ok(Group {
        id: id.to_owned(),
        name: name.to_owned(),
        location: body["location"].as_str().unwrap_or(rg_location).to_owned(),
        tags: body.get("tags").filter(|t| t.is_object()).cloned(),
        identity,
        spec,
        containers,
        restart_policy: properties
            .get("restartPolicy")
            .and_then(Value::as_str)
            .unwrap_or("Always")
            .to_owned(),
        registry_credentials: properties
            .get("imageRegistryCredentials")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        provisioning_state: "Pending".into(),
        state: "Pending".into(),
        events: Vec::new(),
        deployment: 0,
        provisioned_at: None,
        operation: None,
    })
}

/// Start and restart: a new deployment of a stopped or running group, answered with `status` and
/// the operation to poll.
#[allow(clippy::too_many_arguments)]
fn redeploy(
    aci: &mut Aci,
    key: String,
    mut group: Group,
    state: &Shared,
    now: OffsetDateTime,
    status: StatusCode,
    request: &Incoming,
    subscription: &str,
) -> Response {
    let operation = deploy(
        aci,
        &mut group,
        now,
        state.options.timings.aci_provisioning,
        "Updating",
    );
    let location = group.location.clone();
    aci.groups.insert(key, group);
    let mut response = http::empty(status);
    async_operation_header(&mut response, request, subscription, &location, &operation);
    response
}

/// Starts a new deployment of `group`, stopping whatever its containers ran: provisioning until
/// `now + delay`; returns the operation id.
fn deploy(
    aci: &mut Aci,
    group: &mut Group,
    now: OffsetDateTime,
    delay: Duration,
    status: &'static str,
) -> String {
    group.deployment += 1;
    group.provisioning_state = if status == "Updating" {
        "Updating".into()
    } else {
        "Pending".into()
    };
    group.state = "Pending".into();
    group.provisioned_at = Some(now + delay);
    for container in &mut group.containers {
        container.stop_process();
        container.state = Some(ContainerState::Waiting {
            detail: String::new(),
        });
        container.next_pull = None;
        container.next_restart = None;
    }
    let operation = uuid::Uuid::new_v4().to_string();
    aci.operations.insert(
        operation.clone(),
        Operation {
            group_id: group.id.clone(),
            location: group.location.clone(),
            status,
            start: now,
        },
    );
    group.operation = Some(operation.clone());
    operation
}

fn async_operation_header(
    response: &mut Response,
    request: &Incoming,
    subscription: &str,
    location: &str,
    operation: &str,
) {
    let url = format!(
        "https://{}/subscriptions/{subscription}/providers/{PROVIDER}/locations/{location}/operations/{operation}?api-version=2018-06-01",
        request.host
    );
    http::set_header(response, "azure-asyncoperation", &url);
}

/// Advances provisioning, pulls, restarts and operation statuses to the clock's time.
pub fn tick(state: &Shared) {
    let now = state.clock.now();
    let mut guard = state.aci.lock().unwrap();
    let aci = &mut *guard;
    let images = aci.images.clone();
    for group in aci.groups.values_mut() {
        if group.provisioned_at.is_some_and(|at| at <= now) {
            group.provisioned_at = None;
            let mut all_pulled = true;
            for index in 0..group.containers.len() {
                let container = &mut group.containers[index];
                let image = container.image.clone();
                container.event(
                    "Pulling",
                    format!("pulling image \"{image}\""),
                    "Normal",
                    now,
                );
                match runtime::pull_problem(&images, &image, &group.registry_credentials) {
                    None => {
                        container.event(
                            "Pulled",
                            format!("Successfully pulled image \"{image}\""),
                            "Normal",
                            now,
                        );
                        container.event(
                            "Created",
                            format!("Created container {}", container.name),
                            "Normal",
                            now,
                        );
                        runtime::start_container(state, &images, group, index, now);
                    }
                    Some(problem) => {
                        all_pulled = false;
                        container.event("Failed", problem, "Warning", now);
                        container.event(
                            "BackOff",
                            format!("Back-off pulling image \"{image}\""),
                            "Normal",
                            now,
                        );
                        container.state = Some(ContainerState::Waiting {
                            detail: String::new(),
                        });
                        container.next_pull = Some(now + PULL_RETRY);
                    }
                }
            }
            if all_pulled {
                group.provisioning_state = "Succeeded".into();
                group.state = "Running".into();
                if let Some(operation) = group
                    .operation
                    .as_ref()
                    .and_then(|id| aci.operations.get_mut(id))
                {
                    operation.status = "Succeeded";
                }
            }
            group.settle();
        }
        for index in 0..group.containers.len() {
            let container = &mut group.containers[index];
            if container.next_pull.is_some_and(|at| at <= now) {
                let image = container.image.clone();
                container.next_pull = Some(now + PULL_RETRY);
                if let Some(problem) =
                    runtime::pull_problem(&images, &image, &group.registry_credentials)
                {
                    container.event(
                        "Pulling",
                        format!("pulling image \"{image}\""),
                        "Normal",
                        now,
                    );
                    container.event("Failed", problem, "Warning", now);
                }
            }
            let container = &mut group.containers[index];
            if container.next_restart.is_some_and(|at| at <= now) {
                container.next_restart = None;
                container.previous_state = container.state.take();
                container.restart_count += 1;
                runtime::start_container(state, &images, group, index, now);
                group.state = "Running".into();
            }
        }
    }
}
