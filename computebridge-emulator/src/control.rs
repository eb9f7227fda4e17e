//! The control surface under `/_emulator/` (a prefix no Azure path uses): seed state, inject
//! faults, read the request log, and set the simulated clock.

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::aci::runtime::RegisteredImage;
use crate::aci::{SeedQuota, SeedResourceGroup};
use crate::batch::SeedAccount;
use crate::batch::pools::SeedPool;
use crate::faults::Fault;
use crate::http::{self, Incoming, azure_time};
use crate::identity::{ServicePrincipal, UserAssignedIdentity};
use crate::keyvault::SeedSecret;
use crate::state::Shared;

const JSON: &str = "application/json";

/// Everything `/_emulator/seed` accepts; each list is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Seed {
    #[serde(default)]
    pub secrets: Vec<SeedSecret>,
    #[serde(default)]
    pub batch_accounts: Vec<SeedAccount>,
    #[serde(default)]
    pub pools: Vec<SeedPool>,
    #[serde(default)]
    pub resource_groups: Vec<SeedResourceGroup>,
    #[serde(default)]
    pub aci_quotas: Vec<SeedQuota>,
    #[serde(default)]
    pub images: Vec<RegisteredImage>,
    #[serde(default)]
    pub identities: Vec<UserAssignedIdentity>,
    #[serde(default)]
    pub service_principals: Vec<ServicePrincipal>,
}

fn fail(status: StatusCode, code: &str, message: &str) -> Response {
    http::json(
        status,
        JSON,
        &json!({"error": {"code": code, "message": message}}),
    )
}

/// Applies a seed; returns the new secret versions by `vault/name`.
pub fn apply_seed(state: &Shared, seed: Seed) -> Result<Value, String> {
    let now = state.clock.now();
    let mut versions = serde_json::Map::new();
    {
        let mut vaults = state.vaults.lock().unwrap();
        for secret in seed.secrets {
            let key = format!("{}/{}", secret.vault, secret.name);
            versions.insert(key, json!(vaults.seed(secret)?));
        }
    }
    {
        let mut batch = state.batch.lock().unwrap();
        for account in &seed.batch_accounts {
            batch.seed_account(account);
        }
        for pool in &seed.pools {
            batch.seed_pool(pool, now)?;
        }
    }
    {
        let mut aci = state.aci.lock().unwrap();
        for rg in &seed.resource_groups {
            aci.seed_resource_group(rg);
        }
        for quota in &seed.aci_quotas {
            aci.seed_quota(quota);
        }
        aci.images.extend(seed.images);
    }
    let mut identities = state.identities.lock().unwrap();
    identities.user_assigned.extend(seed.identities);
    identities
        .service_principals
        .extend(seed.service_principals);
    Ok(json!({"secretVersions": versions}))
}

pub fn handle(state: &Shared, request: &Incoming) -> Response {
    let segments = request.segments();
    match (request.method.clone(), &segments[1..]) {
        (Method::GET, []) => http::json(
            StatusCode::OK,
            JSON,
            &json!({
                "service": "computebridge-emulator",
                "version": env!("CARGO_PKG_VERSION"),
                "now": azure_time(state.clock.now()),
                "speed": state.clock.speed(),
            }),
        ),
        (Method::POST, ["seed"]) => {
            let seed: Seed = match serde_json::from_slice(&request.body) {
                Ok(seed) => seed,
                Err(e) => return fail(StatusCode::BAD_REQUEST, "InvalidSeed", &e.to_string()),
            };
            match apply_seed(state, seed) {
                Ok(result) => http::json(StatusCode::OK, JSON, &result),
                Err(message) => fail(StatusCode::BAD_REQUEST, "InvalidSeed", &message),
            }
        }
        (Method::POST, ["faults"]) => {
            let mut fault: Fault = match serde_json::from_slice(&request.body) {
                Ok(fault) => fault,
                Err(e) => return fail(StatusCode::BAD_REQUEST, "InvalidFault", &e.to_string()),
            };
            if fault.action.status.is_none()
                && !fault.action.drop
                && fault.action.delay_ms.is_none()
            {
                return fail(
                    StatusCode::BAD_REQUEST,
                    "InvalidFault",
                    "a fault needs a status, drop or delayMs action",
                );
            }
            fault.id = http::new_id();
            fault.hits = 0;
            let body = json!({"id": fault.id});
            state.faults.lock().unwrap().push(fault);
            http::json(StatusCode::CREATED, JSON, &body)
        }
        (Method::GET, ["faults"]) => http::json(
            StatusCode::OK,
            JSON,
            &json!({"faults": *state.faults.lock().unwrap()}),
        ),
        (Method::DELETE, ["faults"]) => {
            state.faults.lock().unwrap().clear();
            http::empty(StatusCode::NO_CONTENT)
        }
        (Method::GET, ["requests"]) => {
            let log = state.log.lock().unwrap();
            let matches = |value: &str, filter: Option<&str>| {
                filter.is_none_or(|f| value.to_ascii_lowercase().contains(&f.to_ascii_lowercase()))
            };
            let since = match request.query("since").map(str::parse::<u64>) {
                None => 0,
                Some(Ok(seq)) => seq,
                Some(Err(_)) => {
                    return fail(
                        StatusCode::BAD_REQUEST,
                        "InvalidQuery",
                        "since must be a request sequence number",
                    );
                }
            };
            let entries: Vec<_> = log
                .entries()
                .iter()
                .filter(|e| {
                    e.seq > since
                        && matches(e.service, request.query("service"))
                        && matches(&e.method, request.query("method"))
                        && matches(&e.host, request.query("host"))
                        && matches(&e.path, request.query("path"))
                })
                .collect();
            http::json(
                StatusCode::OK,
                JSON,
                &json!({"count": entries.len(), "last": log.last(), "requests": entries}),
            )
        }
        (Method::DELETE, ["requests"]) => {
            state.log.lock().unwrap().clear();
            http::empty(StatusCode::NO_CONTENT)
        }
        (Method::GET, ["clock"]) => http::json(
            StatusCode::OK,
            JSON,
            &json!({"now": azure_time(state.clock.now()), "speed": state.clock.speed()}),
        ),
        (Method::PUT, ["clock"]) => {
            let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
            let now = match body["now"].as_str() {
                Some(text) => match time::OffsetDateTime::parse(
                    text,
                    &time::format_description::well_known::Rfc3339,
                ) {
                    Ok(at) => Some(at),
                    Err(e) => {
                        return fail(
                            StatusCode::BAD_REQUEST,
                            "InvalidClock",
                            &format!("now: {e}"),
                        );
                    }
                },
                None => None,
            };
            let speed = body["speed"].as_f64();
            if speed.is_some_and(|s| !(s > 0.0 && s <= 100_000.0)) {
                return fail(
                    StatusCode::BAD_REQUEST,
                    "InvalidClock",
                    "speed must be greater than 0 and at most 100000",
                );
            }
            state.clock.set(now, speed);
            http::json(
                StatusCode::OK,
                JSON,
                &json!({"now": azure_time(state.clock.now()), "speed": state.clock.speed()}),
            )
        }
        _ => fail(
            StatusCode::NOT_FOUND,
            "UnknownControlRoute",
            &format!("no control route {} {}", request.method, request.path),
        ),
    }
}
