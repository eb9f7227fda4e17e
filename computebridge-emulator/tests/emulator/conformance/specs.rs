//! The official spec examples in `shared/specs/`, replayed against the emulator: each example's
//! parameters become a request on the operation's path, and the answer must have one of the
//! example's statuses and its JSON shape.

use reqwest::Method;
use serde_json::{Value, json};

use super::replay::{Replayer, pool_seed_from, put_body};
use super::shape;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prepare {
    Nothing,
    Pool,
    ResizingPool,
    AutoscalePool,
    Job,
    Group,
    StoppedGroup,
    Secret,
}

/// Example file → operation and what must exist first.
const EXAMPLES: [(&str, &str, &str, Prepare); 25] = [
    (
        "batch-data-plane/2021-06-01.14.0/examples/AccountListPoolNodeCounts.json",
        "GET",
        "/nodecounts",
        Prepare::Pool,
    ),
    (
        "batch-data-plane/2021-06-01.14.0/examples/JobGetTaskCounts.json",
        "GET",
        "/jobs/{jobId}/taskcounts",
        Prepare::Job,
    ),
    (
        "batch-data-plane/2021-06-01.14.0/examples/PoolDisableAutoScale.json",
        "POST",
        "/pools/{poolId}/disableautoscale",
        Prepare::AutoscalePool,
    ),
    (
        "batch-data-plane/2021-06-01.14.0/examples/PoolEnableAutoscale.json",
        "POST",
        "/pools/{poolId}/enableautoscale",
        Prepare::Pool,
    ),
    (
        "batch-data-plane/2021-06-01.14.0/examples/PoolEvaluateAutoscale.json",
        "POST",
        "/pools/{poolId}/evaluateautoscale",
        Prepare::AutoscalePool,
    ),
    (
        "batch-data-plane/2021-06-01.14.0/examples/PoolGet_Basic.json",
        "GET",
        "/pools/{poolId}",
        Prepare::Pool,
    ),
    (
        "batch-data-plane/2021-06-01.14.0/examples/PoolResize.json",
        "POST",
        "/pools/{poolId}/resize",
        Prepare::Pool,
    ),
    (
        "batch-data-plane/2021-06-01.14.0/examples/PoolStopResize.json",
        "POST",
        "/pools/{poolId}/stopresize",
        Prepare::ResizingPool,
    ),
    (
        "batch-data-plane/2025-06-01/examples/Pools_EvaluatePoolAutoscale.json",
        "POST",
        "/pools/{poolId}/evaluateautoscale",
        Prepare::AutoscalePool,
    ),
    (
        "batch-data-plane/2026-08-01/examples/Jobs_GetJobTaskCounts.json",
        "GET",
        "/jobs/{jobId}/taskcounts",
        Prepare::Job,
    ),
    (
        "batch-data-plane/2026-08-01/examples/Pools_ListPoolNodeCounts.json",
        "GET",
        "/nodecounts",
        Prepare::Pool,
    ),
    (
        "batch-data-plane/2026-08-01/examples/Pools_ResizePool.json",
        "POST",
        "/pools/{poolId}/resize",
        Prepare::Pool,
    ),
    (
        "containerinstance/2021-03-01/examples/ContainerGroupsCreateOrUpdate.json",
        "PUT",
        GROUP,
        Prepare::Nothing,
    ),
    (
        "containerinstance/2021-03-01/examples/ContainerGroupsDelete.json",
        "DELETE",
        GROUP,
        Prepare::Group,
    ),
    (
        "containerinstance/2021-03-01/examples/ContainerGroupsGet_Failed.json",
        "GET",
        GROUP,
        Prepare::Group,
    ),
    (
        "containerinstance/2021-03-01/examples/ContainerGroupsGet_Succeeded.json",
        "GET",
        GROUP,
        Prepare::Group,
    ),
    (
        "containerinstance/2021-03-01/examples/ContainerGroupsListByResourceGroup.json",
        "GET",
        "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ContainerInstance/containerGroups",
        Prepare::Group,
    ),
    (
        "containerinstance/2021-03-01/examples/ContainerGroupsRestart.json",
        "POST",
        "GROUP/restart",
        Prepare::Group,
    ),
    (
        "containerinstance/2021-03-01/examples/ContainerGroupsStart.json",
        "POST",
        "GROUP/start",
        Prepare::StoppedGroup,
    ),
    (
        "containerinstance/2021-03-01/examples/ContainerGroupsStop.json",
        "POST",
        "GROUP/stop",
        Prepare::Group,
    ),
    (
        "keyvault/7.5/examples/GetSecret-example.json",
        "GET",
        "/secrets/{secret-name}/{secret-version}",
        Prepare::Secret,
    ),
    (
        "containerinstance/2021-03-01/examples/ContainerListLogs.json",
        "GET",
        "GROUP/containers/{containerName}/logs",
        Prepare::Group,
    ),
    (
        "containerinstance/2025-09-01/examples/ContainerGroupsGet_Failed.json",
        "GET",
        GROUP,
        Prepare::Group,
    ),
    (
        "containerinstance/2025-09-01/examples/ContainerGroupsStart.json",
        "POST",
        "GROUP/start",
        Prepare::StoppedGroup,
    ),
    (
        "containerinstance/2025-09-01/examples/ContainerListLogs.json",
        "GET",
        "GROUP/containers/{containerName}/logs",
        Prepare::Group,
    ),
];

const GROUP: &str = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ContainerInstance/containerGroups/{containerGroupName}";

/// Examples of surfaces the emulator does not serve.
const NOT_EMULATED: &str = "batch-management/";

fn fill(template: &str, parameters: &Value) -> String {
    let mut path = template.replace("GROUP", GROUP);
    for (name, value) in parameters.as_object().unwrap() {
        if let Some(text) = value.as_str() {
            path = path.replace(&format!("{{{name}}}"), text);
        }
    }
    path
}

/// A container group the example's own answers describe, for examples that act on one.
fn example_group(example: &Value, parameters: &Value) -> Value {
    let from_answer = example["responses"]
        .as_object()
        .unwrap()
        .values()
        .find_map(|r| {
            let body = &r["body"];
            if body["properties"]["containers"].is_array() {
                Some(body.clone())
            } else {
                body["value"].get(0).cloned()
            }
        });
    let container = parameters["containerName"].as_str().unwrap_or("demo1");
    from_answer.unwrap_or_else(|| json!({
        "location": "westus",
        "properties": {"osType": "Linux", "containers": [{"name": container, "properties": {"image": "nginx", "resources": {"requests": {"cpu": 1, "memoryInGB": 1.5}}}}]},
    }))
}

async fn run(file: &str, method: &str, template: &str, prepare: Prepare) -> Vec<String> {
    let path = super::shared().join("specs").join(file);
    let example: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let parameters = &example["parameters"];
    let api_version = parameters["api-version"].as_str().unwrap();
    let replayer = Replayer::start().await;
    let emu = &replayer.emu;
    let batch_host = "account.region.batch.azure.com";
    let (host, token) = if file.starts_with("batch-data-plane") {
        emu.seed(json!({"batchAccounts": [{"account": "account"}]}))
            .await;
        (batch_host, "batch")
    } else if file.starts_with("keyvault") {
        ("myvault.vault.azure.net", "vault")
    } else {
        let rg = json!({"subscription": parameters["subscriptionId"], "name": parameters["resourceGroupName"]});
        emu.seed(json!({"resourceGroups": [rg]})).await;
        ("management.azure.com", "arm")
    };
    let token = replayer.tokens[token].clone();
    let mut fill_parameters = parameters.clone();
    let pool = parameters["poolId"].as_str().unwrap_or("pool");
    let batch = |path: String, body: Value| {
        let token = token.clone();
        async move {
            let reply = emu
                .send(
                    Method::POST,
                    batch_host,
                    &format!("{path}?api-version=2025-06-01"),
                    Some(&token),
                    Some(body),
                )
                .await;
            assert!(reply.status < 300, "{path}: {}", reply.text);
        }
    };
    match prepare {
        Prepare::Nothing => {}
        Prepare::Pool | Prepare::ResizingPool | Prepare::AutoscalePool | Prepare::Job => {
            let answer = &example["responses"]["200"]["body"];
            let seed = if answer["id"] == pool {
                pool_seed_from(answer, "account", pool)
            } else {
                json!({"account": "account", "id": pool, "targetDedicatedNodes": 1})
            };
            emu.seed(json!({"pools": [seed]})).await;
            match prepare {
                Prepare::ResizingPool => {
                    batch(
                        format!("/pools/{pool}/resize"),
                        json!({"targetDedicatedNodes": 3}),
                    )
                    .await
                }
                Prepare::AutoscalePool => {
                    batch(
                        format!("/pools/{pool}/enableautoscale"),
                        json!({"autoScaleFormula": "$TargetDedicatedNodes=1"}),
                    )
                    .await
                }
                Prepare::Job => {
                    batch(
                        "/jobs".into(),
                        json!({"id": parameters["jobId"], "poolInfo": {"poolId": pool}}),
                    )
                    .await
                }
                _ => {}
            }
        }
        Prepare::Group | Prepare::StoppedGroup => {
            let group = example_group(&example, parameters);
            let images: Vec<Value> = group["properties"]["containers"].as_array().unwrap().iter().map(|c| json!({"name": c["properties"]["image"], "entrypoint": ["/bin/sh", "-c", "echo log content; sleep 3600"]})).collect();
            emu.seed(json!({"images": images})).await;
            if fill_parameters["containerGroupName"].is_null() {
                fill_parameters["containerGroupName"] = group["name"].clone();
            }
            let group_path = fill(GROUP, &fill_parameters);
            let reply = emu
                .send(
                    Method::PUT,
                    host,
                    &format!("{group_path}?api-version=2021-03-01"),
                    Some(&token),
                    Some(put_body(&group)),
                )
                .await;
            assert!(reply.status < 300, "{}", reply.text);
            emu.speed(50.0).await;
            crate::support::eventually(
                std::time::Duration::from_secs(10),
                "a running group",
                || async {
                    let got = emu
                        .send(
                            Method::GET,
                            host,
                            &format!("{group_path}?api-version=2021-03-01"),
                            Some(&token),
                            None,
                        )
                        .await;
                    (got.body["properties"]["instanceView"]["state"] == "Running").then_some(())
                },
            )
            .await;
            if prepare == Prepare::StoppedGroup {
                emu.send(
                    Method::POST,
                    host,
                    &format!("{group_path}/stop?api-version=2021-03-01"),
                    Some(&token),
                    None,
                )
                .await;
            }
        }
        Prepare::Secret => {
            let seeded = emu.seed(json!({"secrets": [{"vault": "myvault", "name": parameters["secret-name"], "value": "mysecretvalue"}]})).await;
            let version = seeded["secretVersions"]
                .as_object()
                .unwrap()
                .values()
                .next()
                .unwrap()
                .clone();
            fill_parameters["secret-version"] = version;
        }
    }
    let mut query = format!("api-version={api_version}");
    if let Some(tail) = parameters["tail"].as_u64() {
        query.push_str(&format!("&tail={tail}"));
    }
    let body = parameters
        .as_object()
        .unwrap()
        .values()
        .find(|v| v.is_object())
        .cloned();
    let reply = emu
        .send(
            Method::from_bytes(method.as_bytes()).unwrap(),
            host,
            &format!("{}?{query}", fill(template, &fill_parameters)),
            Some(&token),
            body,
        )
        .await;
    let responses = example["responses"].as_object().unwrap();
    let mut problems = Vec::new();
    match responses.get(&reply.status.to_string()) {
        None => problems.push(format!(
            "status {} not among the example's {:?}: {}",
            reply.status,
            responses.keys().collect::<Vec<_>>(),
            reply.text
        )),
        Some(expected) => {
            if expected["body"].is_object() {
                shape::compare(&expected["body"], &reply.body, "$", &mut problems);
            }
        }
    }
    problems
}

#[tokio::test]
async fn every_spec_example_is_answered_in_shape() {
    let mut failures = Vec::new();
    for (file, method, template, prepare) in EXAMPLES.iter() {
        let problems = run(file, method, template, *prepare).await;
        if !problems.is_empty() {
            failures.push(format!("{file}: {}", problems.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_spec_example_is_listed() {
    let files = super::files_under("specs", |path| {
        path.parent().is_some_and(|p| p.ends_with("examples"))
    });
    let listed: Vec<&str> = EXAMPLES.iter().map(|(f, _, _, _)| *f).collect();
    let unlisted: Vec<&String> = files
        .iter()
        .filter(|f| !f.starts_with(NOT_EMULATED) && !listed.contains(&f.as_str()))
        .collect();
    assert!(
        unlisted.is_empty(),
        "spec examples without a conformance check: {unlisted:?}"
    );
}
