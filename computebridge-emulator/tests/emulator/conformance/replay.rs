//! Replays a recording against the emulator: seeds what the recording assumes already existed,
//! sends every in-scope request in order (advancing the emulator clock by the recorded `Date`
//! gaps), and checks each answer's status, the headers the real service sent, and the JSON shape.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use super::recordings::Interaction;
use super::shape;
use crate::support::{Emu, Reply};

/// Headers whose presence is checked when the real service sent them.
const CHECKED_HEADERS: [&str; 10] = [
    "x-ms-request-id",
    "x-ms-correlation-request-id",
    "azure-asyncoperation",
    "request-id",
    "etag",
    "last-modified",
    "dataserviceversion",
    "dataserviceid",
    "www-authenticate",
    "x-ms-keyvault-service-version",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Arm,
    Batch,
    KeyVault,
    ManagedIdentity,
}

/// What a recording needs before its first request, beyond what is derived from it.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    pub enable_autoscale: bool,
    pub start_resize: bool,
    pub delete_pool: bool,
    /// The recording was made without an `Authorization` header.
    pub unauthenticated: bool,
}

#[derive(Debug, Default)]
pub struct Report {
    pub replayed: usize,
    pub skipped: Vec<String>,
    pub failures: Vec<String>,
    /// Interactions sent but not compared, with the recording quirk that prevents it.
    pub not_compared: Vec<String>,
}

/// Why an interaction is out of the emulator's scope, if it is.
pub fn out_of_scope(interaction: &Interaction) -> Option<&'static str> {
    let path = interaction.path.to_ascii_lowercase();
    if interaction.origin.contains("169.254.169.254") {
        return Some("IMDS is not emulated: computebridge uses the App Service identity endpoint");
    }
    if path.contains("/providers/microsoft.authorization/") {
        return Some("role assignments (Microsoft.Authorization) are not emulated");
    }
    if path.contains("/providers/microsoft.managedidentity/") {
        return Some("identity resources (Microsoft.ManagedIdentity) are not emulated");
    }
    if path.contains("/providers/microsoft.batch/") {
        return Some(
            "Batch management (ARM) is not emulated: computebridge uses the Batch data plane",
        );
    }
    if path.ends_with("/exec") {
        return Some("container exec (a websocket session) is not emulated");
    }
    if path.ends_with("/lifetimepoolstats") || path.ends_with("/poolusagemetrics") {
        return Some("retired Batch statistics APIs are not emulated");
    }
    None
}

pub fn service_and_host(interaction: &Interaction) -> (Service, String) {
    let host = interaction
        .origin
        .split("://")
        .nth(1)
        .unwrap_or("")
        .to_ascii_lowercase();
    if host.ends_with(".vault.azure.net") {
        (Service::KeyVault, host)
    } else if host.contains(".batch.azure.com") {
        (Service::Batch, host)
    } else if host == "msi-endpoint" {
        (Service::ManagedIdentity, "127.0.0.1".into())
    } else {
        (Service::Arm, "management.azure.com".into())
    }
}

fn segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

/// Resource groups and container groups the recording uses before (or without) creating them.
fn seed_arm(interactions: &[Interaction]) -> Value {
    let mut resource_groups = BTreeMap::new();
    let mut created = BTreeSet::new();
    let mut images = BTreeMap::new();
    let mut preexisting: BTreeMap<String, Value> = BTreeMap::new();
    for interaction in interactions
        .iter()
        .filter(|i| service_and_host(i).0 == Service::Arm && out_of_scope(i).is_none())
    {
        let parts = segments(&interaction.path);
        let lower: Vec<String> = parts.iter().map(|s| s.to_ascii_lowercase()).collect();
        if lower.len() == 4
            && lower[0] == "subscriptions"
            && lower[2] == "resourcegroups"
            && interaction.method == "PUT"
        {
            created.insert(format!("{}/{}", lower[1], lower[3]));
        }
        if lower.len() >= 8
            && lower[2] == "resourcegroups"
            && lower[5] == "microsoft.containerinstance"
        {
            let key = format!("{}/{}", lower[1], lower[3]);
            if !created.contains(&key) {
                resource_groups
                    .entry(key)
                    .or_insert((parts[1].to_owned(), parts[3].to_owned()));
            }
            if lower.len() == 8 && interaction.method == "PUT" {
                created.insert(interaction.path.to_ascii_lowercase());
            }
            if lower.len() == 8
                && interaction.method == "GET"
                && interaction.status == 200
                && !created.contains(&interaction.path.to_ascii_lowercase())
                && let Some(body) = &interaction.response_body
            {
                preexisting
                    .entry(interaction.path.clone())
                    .or_insert(body.clone());
            }
        }
        for body in [
            interaction.response_body.clone(),
            interaction
                .request_body
                .as_deref()
                .and_then(|b| serde_json::from_str(b).ok()),
        ]
        .into_iter()
        .flatten()
        {
            let containers = body["properties"]["containers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let items = body["value"].as_array().cloned().unwrap_or_default();
            for container in containers.iter().chain(
                items
                    .iter()
                    .flat_map(|g| {
                        g["properties"]["containers"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default()
                    })
                    .collect::<Vec<_>>()
                    .iter(),
            ) {
                if let Some(image) = container["properties"]["image"].as_str() {
                    let running = container["properties"]["instanceView"]["currentState"]["state"]
                        == "Running";
                    let entry = images
                        .entry(image.split(':').next().unwrap_or(image).to_owned())
                        .or_insert(false);
                    *entry |= running;
                }
            }
        }
    }
    let resource_groups: Vec<Value> = resource_groups
        .values()
        .map(|(sub, rg)| json!({"subscription": sub, "name": rg, "location": "eastus2"}))
        .collect();
    let images: Vec<Value> = images
        .into_iter()
        .map(|(name, running)| json!({"name": name, "entrypoint": if running { json!(["sleep", "3600"]) } else { json!(["true"]) }}))
        .collect();
    json!({"seed": {"resourceGroups": resource_groups, "images": images}, "groups": preexisting})
}

/// Pool properties the emulator models; every other recorded property is seeded as given.
const MODELED_POOL_PROPERTIES: [&str; 25] = [
    "odata.metadata",
    "id",
    "url",
    "eTag",
    "lastModified",
    "creationTime",
    "state",
    "stateTransitionTime",
    "allocationState",
    "allocationStateTransitionTime",
    "vmSize",
    "resizeTimeout",
    "resizeErrors",
    "currentDedicatedNodes",
    "targetDedicatedNodes",
    "currentLowPriorityNodes",
    "targetLowPriorityNodes",
    "enableAutoScale",
    "autoScaleFormula",
    "autoScaleEvaluationInterval",
    "autoScaleRun",
    "enableInterNodeCommunication",
    "startTask",
    "metadata",
    "taskSchedulingPolicy",
];

/// A pool as its first recorded GET shows it (or a plain one with three nodes).
fn pool_seed(interactions: &[Interaction], account: &str, pool: &str) -> Value {
    let recorded = interactions.iter().find_map(|i| {
        (i.method == "GET" && i.status == 200 && i.path == format!("/pools/{pool}"))
            .then(|| i.response_body.clone())
            .flatten()
    });
    match recorded {
        Some(recorded) => pool_seed_from(&recorded, account, pool),
        None => json!({"account": account, "id": pool, "targetDedicatedNodes": 3}),
    }
}

/// A pool seed that reproduces a recorded pool: its size, and every property the emulator
/// does not model, as given.
pub fn pool_seed_from(recorded: &Value, account: &str, pool: &str) -> Value {
    let properties: serde_json::Map<String, Value> = recorded
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| !MODELED_POOL_PROPERTIES.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut seed = json!({
        "account": account,
        "id": pool,
        "vmSize": recorded["vmSize"].as_str().unwrap_or("standard_d2s_v3"),
        "targetDedicatedNodes": recorded["currentDedicatedNodes"].as_u64().unwrap_or(0),
        "targetLowPriorityNodes": recorded["currentLowPriorityNodes"].as_u64().unwrap_or(0),
        "properties": properties,
    });
    for key in ["startTask", "metadata"] {
        if !recorded[key].is_null() {
            seed[key] = recorded[key].clone();
        }
    }
    seed
}

/// Secrets a recorded listing shows that the recording never created.
fn preexisting_secrets(interactions: &[Interaction]) -> Vec<Value> {
    let created: BTreeSet<String> = interactions
        .iter()
        .filter(|i| i.method == "PUT" && i.path.starts_with("/secrets/"))
        .map(|i| {
            i.path
                .trim_start_matches("/secrets/")
                .trim_end_matches('/')
                .to_ascii_lowercase()
        })
        .collect();
    let mut seeds = BTreeMap::new();
    for interaction in interactions.iter().filter(|i| {
        service_and_host(i).0 == Service::KeyVault && i.method == "GET" && i.path == "/secrets"
    }) {
        let vault = service_and_host(interaction)
            .1
            .split('.')
            .next()
            .unwrap()
            .to_owned();
        for item in interaction
            .response_body
            .as_ref()
            .and_then(|b| b["value"].as_array())
            .into_iter()
            .flatten()
        {
            let name = item["id"]
                .as_str()
                .unwrap_or("")
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_owned();
            if name.is_empty() || created.contains(&name.to_ascii_lowercase()) {
                continue;
            }
            seeds.entry(name.clone()).or_insert_with(|| {
                json!({
                    "vault": vault,
                    "name": name,
                    "value": "seeded",
                    "contentType": item["contentType"],
                    "managed": item["managed"].as_bool().unwrap_or(false),
                    "notBefore": item["attributes"]["nbf"],
                    "expires": item["attributes"]["exp"],
                })
            });
        }
    }
    seeds.into_values().collect()
}

/// A PUT body that recreates a group from its recorded GET answer.
pub fn put_body(group: &Value) -> Value {
    let mut properties = group["properties"].clone();
    if let Some(object) = properties.as_object_mut() {
        for key in ["provisioningState", "instanceView"] {
            object.remove(key);
        }
        if let Some(ip) = object.get_mut("ipAddress").and_then(Value::as_object_mut) {
            ip.remove("ip");
            ip.remove("fqdn");
        }
        if let Some(containers) = object.get_mut("containers").and_then(Value::as_array_mut) {
            for container in containers {
                if let Some(props) = container["properties"].as_object_mut() {
                    props.remove("instanceView");
                }
            }
        }
    }
    let mut body = json!({"location": group["location"], "properties": properties});
    if !group["tags"].is_null() {
        body["tags"] = group["tags"].clone();
    }
    if let Some(identity) = group["identity"].as_object() {
        let mut identity = identity.clone();
        identity.remove("principalId");
        identity.remove("tenantId");
        if let Some(assigned) = identity
            .get_mut("userAssignedIdentities")
            .and_then(Value::as_object_mut)
        {
            assigned.values_mut().for_each(|v| *v = json!({}));
        }
        body["identity"] = Value::Object(identity);
    }
    body
}

/// A request body for a PUT whose body the recorder dropped, rebuilt from the recorded answer.
fn put_from_response(interaction: &Interaction, service: Service) -> Option<Value> {
    let recorded = interaction.response_body.as_ref()?;
    let attributes = || {
        let mut attributes = serde_json::Map::new();
        for key in ["enabled", "exp", "nbf"] {
            if !recorded["attributes"][key].is_null() {
                attributes.insert(key.into(), recorded["attributes"][key].clone());
            }
        }
        Value::Object(attributes)
    };
    let group = interaction
        .path
        .to_ascii_lowercase()
        .contains("/containergroups/");
    match (service, interaction.method.as_str()) {
        (Service::KeyVault, "PUT") => Some(
            json!({"value": recorded["value"], "contentType": recorded["contentType"], "tags": recorded["tags"], "attributes": attributes()}),
        ),
        (Service::KeyVault, "PATCH") => Some(
            json!({"contentType": recorded["contentType"], "tags": recorded["tags"], "attributes": attributes()}),
        ),
        (Service::Arm, "PUT") if group => Some(put_body(recorded)),
        (Service::Arm, "PATCH") if group => Some(json!({"tags": recorded["tags"]})),
        (Service::Arm, "PUT") => {
            Some(json!({"location": recorded["location"], "tags": recorded["tags"]}))
        }
        _ => None,
    }
}

pub struct Replayer {
    pub emu: Emu,
    pub tokens: BTreeMap<&'static str, String>,
    /// Server-generated values (operation ids, secret versions) recorded → emulator's own.
    ids: std::sync::Mutex<Vec<(String, String)>>,
}

impl Replayer {
    pub async fn start() -> Replayer {
        let emu = Emu::start(1.0).await;
        let mut tokens = BTreeMap::new();
        for (name, resource) in [
            ("arm", "https://management.azure.com/"),
            ("batch", "https://batch.core.windows.net/"),
            ("vault", "https://vault.azure.net"),
        ] {
            tokens.insert(name, emu.token(resource).await);
        }
        Replayer {
            emu,
            tokens,
            ids: std::sync::Mutex::default(),
        }
    }

    fn substitute(&self, text: &str) -> String {
        self.ids
            .lock()
            .unwrap()
            .iter()
            .fold(text.to_owned(), |text, (recorded, ours)| {
                text.replace(recorded.as_str(), ours)
            })
    }

    /// Learns the server-generated ids of an answer, so later requests can use the emulator's.
    fn learn(&self, interaction: &Interaction, reply: &Reply) {
        let last_segment = |url: &str| {
            url.split('?')
                .next()
                .unwrap_or("")
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_owned()
        };
        let mut pairs = Vec::new();
        if let (Some(recorded), Some(ours)) = (
            interaction.response_headers.get("azure-asyncoperation"),
            reply.header("azure-asyncoperation"),
        ) {
            pairs.push((last_segment(recorded), last_segment(ours)));
        }
        let token = |link: &str| {
            link.split("$skiptoken=")
                .nth(1)
                .map(|t| t.split('&').next().unwrap_or("").to_owned())
        };
        if let (Some(recorded), Some(ours)) = (
            interaction
                .response_body
                .as_ref()
                .and_then(|b| b["nextLink"].as_str())
                .and_then(token),
            reply.body["nextLink"].as_str().and_then(token),
        ) {
            pairs.push((recorded, ours));
        }
        if let (Some(recorded), Some(ours)) = (
            interaction
                .response_body
                .as_ref()
                .and_then(|b| b["id"].as_str()),
            reply.body["id"].as_str(),
        ) && recorded.contains("/secrets/")
        {
            pairs.push((last_segment(recorded), last_segment(ours)));
        }
        let mut ids = self.ids.lock().unwrap();
        for (recorded, ours) in pairs {
            if recorded.len() >= 8 && recorded != ours {
                ids.push((recorded, ours));
            }
        }
    }

    async fn batch_post(&self, host: &str, path: &str, body: Value) {
        let reply = self
            .emu
            .send(
                Method::POST,
                host,
                path,
                Some(&self.tokens["batch"]),
                Some(body),
            )
            .await;
        assert!(reply.status < 300, "setup {path}: {}", reply.text);
    }

    /// Seeds and prepares the emulator for `interactions`.
    async fn prepare(&self, interactions: &[Interaction], setup: Setup) {
        let arm = seed_arm(interactions);
        self.emu.seed(arm["seed"].clone()).await;
        for (path, group) in arm["groups"].as_object().unwrap() {
            let reply = self
                .emu
                .send(
                    Method::PUT,
                    "management.azure.com",
                    &format!("{path}?api-version=2021-03-01"),
                    Some(&self.tokens["arm"]),
                    Some(put_body(group)),
                )
                .await;
            assert!(reply.status < 300, "seeding {path}: {}", reply.text);
        }
        self.emu
            .seed(json!({"secrets": preexisting_secrets(interactions)}))
            .await;
        let mut pools = BTreeSet::new();
        for interaction in interactions
            .iter()
            .filter(|i| service_and_host(i).0 == Service::Batch)
        {
            let (_, host) = service_and_host(interaction);
            let account = host.split('.').next().unwrap().to_owned();
            let parts = segments(&interaction.path);
            let pool = match parts.as_slice() {
                ["pools", pool, ..] => Some(pool.to_string()),
                ["jobs", job, ..] => {
                    pools.insert((host.clone(), account.clone(), "jobpool".to_owned()));
                    self.emu
                        .seed(json!({"pools": [{"account": account, "id": "jobpool"}]}))
                        .await;
                    self.batch_post(
                        &host,
                        "/jobs?api-version=2025-06-01",
                        json!({"id": job, "poolInfo": {"poolId": "jobpool"}}),
                    )
                    .await;
                    None
                }
                _ => None,
            };
            self.emu
                .seed(json!({"batchAccounts": [{"account": account}]}))
                .await;
            if let Some(pool) = pool
                && pools.insert((host.clone(), account.clone(), pool.clone()))
            {
                self.emu
                    .seed(json!({"pools": [pool_seed(interactions, &account, &pool)]}))
                    .await;
            }
        }
        for (host, _, pool) in &pools {
            if setup.enable_autoscale {
                self.batch_post(host, &format!("/pools/{pool}/enableautoscale?api-version=2025-06-01"), json!({"autoScaleFormula": "$TargetDedicatedNodes=3", "autoScaleEvaluationInterval": "PT5M"})).await;
                self.emu.set_clock("2020-01-01T00:01:00Z", 1.0).await;
            }
            if setup.start_resize {
                self.batch_post(
                    host,
                    &format!("/pools/{pool}/resize?api-version=2025-06-01"),
                    json!({"targetDedicatedNodes": 5}),
                )
                .await;
            }
            if setup.delete_pool {
                let reply = self
                    .emu
                    .send(
                        Method::DELETE,
                        host,
                        &format!("/pools/{pool}?api-version=2025-06-01"),
                        Some(&self.tokens["batch"]),
                        None,
                    )
                    .await;
                assert_eq!(reply.status, 202);
            }
        }
    }

    async fn send(
        &self,
        interaction: &Interaction,
        setup: Setup,
        synthesized: Option<Value>,
    ) -> Reply {
        let (service, host) = service_and_host(interaction);
        let token = match service {
            _ if setup.unauthenticated || interaction.auth_recorded == Some(false) => None,
            Service::Arm => Some(self.tokens["arm"].as_str()),
            Service::Batch => Some(self.tokens["batch"].as_str()),
            Service::KeyVault => Some(self.tokens["vault"].as_str()),
            Service::ManagedIdentity => None,
        };
        let recorded_body = interaction
            .request_body
            .as_deref()
            .and_then(|b| serde_json::from_str::<Value>(b).ok());
        let body = recorded_body
            .or(synthesized)
            .or_else(|| put_from_response(interaction, service));
        let body =
            body.map(|b| serde_json::from_str(&self.substitute(&b.to_string())).unwrap_or(b));
        let method = Method::from_bytes(interaction.method.as_bytes()).unwrap();
        if service == Service::ManagedIdentity {
            // The recording edited api-version to 2019-08-01 but sent the 2017-09-01 `secret`
            // header and got the 2017-09-01 answer; replay it as the protocol it used.
            let query = interaction
                .query
                .replace("api-version=2019-08-01", "api-version=2017-09-01");
            let response = self
                .emu
                .client
                .get(format!("{}/msi/token?{query}", self.emu.running.url()))
                .header("secret", "local-dev")
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let text = response.text().await.unwrap();
            return Reply {
                status,
                headers,
                body: serde_json::from_str(&text).unwrap_or(Value::Null),
                text,
            };
        }
        let path = if interaction.query.is_empty() {
            interaction.path.clone()
        } else {
            format!("{}?{}", interaction.path, interaction.query)
        };
        self.emu
            .send(method, &host, &self.substitute(&path), token, body)
            .await
    }

    fn check(interaction: &Interaction, reply: &Reply) -> Vec<String> {
        let mut problems = Vec::new();
        if reply.status != interaction.status {
            problems.push(format!(
                "status {} (recorded {}): {}",
                reply.status,
                interaction.status,
                reply.text.chars().take(300).collect::<String>()
            ));
            return problems;
        }
        for header in CHECKED_HEADERS {
            if interaction.response_headers.contains_key(header) && reply.header(header).is_none() {
                problems.push(format!("missing header {header}"));
            }
        }
        let media = |v: &str| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        };
        if let (Some(recorded), Some(body)) = (
            interaction.response_headers.get("content-type"),
            &interaction.response_body,
        ) && body.is_object()
            && reply.header("content-type").map(media) != Some(media(recorded))
        {
            problems.push(format!(
                "content-type {:?}, recorded {recorded}",
                reply.header("content-type")
            ));
        }
        if let Some(body) = interaction.response_body.as_ref().filter(|b| b.is_object()) {
            shape::compare(body, &reply.body, "$", &mut problems);
        }
        problems
    }

    /// Replays every in-scope interaction in order.
    /// `quirks` lists interactions (by index) whose recorded answer cannot be reproduced in
    /// recorded order, with the reason; they are sent but not compared.
    pub async fn replay(
        &self,
        interactions: &[Interaction],
        setup: Setup,
        quirks: &[(usize, &str)],
        synthesize: impl Fn(&Interaction) -> Option<Value>,
    ) -> Report {
        self.prepare(interactions, setup).await;
        let mut report = Report::default();
        let mut last_date: Option<time::OffsetDateTime> = None;
        for (index, interaction) in interactions.iter().enumerate() {
            let label = format!("#{index} {} {}", interaction.method, interaction.path);
            if let Some(reason) = out_of_scope(interaction) {
                report.skipped.push(format!("{label}: {reason}"));
                continue;
            }
            let date = interaction.response_headers.get("date").and_then(|d| {
                time::OffsetDateTime::parse(d, &time::format_description::well_known::Rfc2822).ok()
            });
            if let (Some(previous), Some(date)) = (last_date, date) {
                let gap = date - previous;
                if gap > time::Duration::ZERO {
                    let clock = self.emu.control(Method::GET, "/clock", None).await;
                    let now = time::OffsetDateTime::parse(
                        clock.body["now"].as_str().unwrap(),
                        &time::format_description::well_known::Rfc3339,
                    )
                    .unwrap();
                    let later = (now + gap)
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap();
                    self.emu.set_clock(&later, 1.0).await;
                }
            }
            last_date = date.or(last_date);
            let mut reply = self.send(interaction, setup, synthesize(interaction)).await;
            self.learn(interaction, &reply);
            if let Some((_, reason)) = quirks.iter().find(|(i, _)| *i == index) {
                report.not_compared.push(format!("{label}: {reason}"));
                continue;
            }
            let mut problems = Self::check(interaction, &reply);
            // Containers run in real time; a GET may come before a process has caught up.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
            while !problems.is_empty()
                && interaction.method == "GET"
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
                reply = self.send(interaction, setup, None).await;
                problems = Self::check(interaction, &reply);
            }
            report.replayed += 1;
            if !problems.is_empty() {
                report
                    .failures
                    .push(format!("{label}: {}", problems.join("; ")));
            }
        }
        report
    }
}
