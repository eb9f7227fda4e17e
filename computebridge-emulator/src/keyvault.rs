//! Key Vault secrets (data plane), one store per vault host: set, get (latest or by version),
//! list versions, update attributes (enable, disable), delete; the 401 bearer challenge, audience
//! and expiry checks, 403 for disabled or access-denied secrets, 404 `SecretNotFound`, and a
//! per-vault request budget (4,000 per 10 s) answered with 429.

use std::collections::{BTreeMap, HashMap};

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::http::{self, Incoming};
use crate::state::Shared;
use crate::tokens::{self, TokenError};

const JSON: &str = "application/json; charset=utf-8";
const AUDIENCE: &str = "https://vault.azure.net";
const BUDGET_PER_10S: u32 = 4000;

#[derive(Debug, Default)]
pub struct Vaults {
    vaults: HashMap<String, Vault>,
}

#[derive(Debug, Default)]
struct Vault {
    /// By lower-cased name: Key Vault names are case-insensitive.
    secrets: BTreeMap<String, Secret>,
    window_start: i64,
    window_count: u32,
}

#[derive(Debug)]
struct Secret {
    name: String,
    versions: Vec<Version>,
    /// Reads are refused as by an RBAC denial.
    forbidden: bool,
    /// Backs a Key Vault certificate (`managed`, `kid` in answers).
    managed: bool,
}

#[derive(Debug, Clone)]
struct Version {
    id: String,
    value: String,
    content_type: Option<String>,
    enabled: bool,
    nbf: Option<i64>,
    exp: Option<i64>,
    created: i64,
    updated: i64,
    tags: Map<String, Value>,
}

/// A secret as seeded through the control surface.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedSecret {
    pub vault: String,
    pub name: String,
    pub value: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub forbidden: bool,
    #[serde(default)]
    pub managed: bool,
    /// Unix seconds.
    #[serde(default)]
    pub not_before: Option<i64>,
    #[serde(default)]
    pub expires: Option<i64>,
}

fn yes() -> bool {
    true
}

impl Vaults {
    /// Adds a new version (or changes access) of a seeded secret; returns the version id.
    pub fn seed(&mut self, seed: SeedSecret) -> Result<String, String> {
        if !valid_name(&seed.name) {
            return Err(format!("'{}' is not a valid secret name", seed.name));
        }
        let vault = self
            .vaults
            .entry(seed.vault.to_ascii_lowercase())
            .or_default();
        let secret = vault
            .secrets
            .entry(seed.name.to_ascii_lowercase())
            .or_insert_with(|| Secret {
                name: seed.name.clone(),
                versions: Vec::new(),
                forbidden: false,
                managed: false,
            });
        secret.forbidden = seed.forbidden;
        secret.managed = seed.managed;
        let mut version = new_version(seed.value, seed.content_type, seed.enabled, Map::new());
        version.nbf = seed.not_before;
        version.exp = seed.expires;
        let id = version.id.clone();
        secret.versions.push(version);
        Ok(id)
    }
}

fn new_version(
    value: String,
    content_type: Option<String>,
    enabled: bool,
    tags: Map<String, Value>,
) -> Version {
    let now = tokens::unix_now();
    Version {
        id: uuid::Uuid::new_v4().simple().to_string(),
        value,
        content_type,
        enabled,
        nbf: None,
        exp: None,
        created: now,
        updated: now,
        tags,
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 127
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

pub fn error(status: StatusCode, code: &str, message: &str, inner: Option<&str>) -> Response {
    let mut body = json!({"error": {"code": code, "message": message}});
    if let Some(inner) = inner {
        body["error"]["innererror"] = json!({"code": inner});
    }
    let mut response = http::json(status, JSON, &body);
    http::set_header(&mut response, "x-ms-error-code", code);
    decorate(&mut response);
    if status == StatusCode::UNAUTHORIZED {
        http::set_header(
            &mut response,
            "www-authenticate",
            "Bearer authorization=\"https://login.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47\", resource=\"https://vault.azure.net\"",
        );
    }
    response
}

fn decorate(response: &mut Response) {
    http::set_header(response, "x-ms-request-id", &http::new_id());
    http::set_header(response, "x-ms-keyvault-region", "local");
    http::set_header(
        response,
        "x-ms-keyvault-service-version",
        "1.9.0.0-emulator",
    );
    http::set_header(
        response,
        "x-ms-keyvault-network-info",
        "conn_type=Ipv4;addr=127.0.0.1;act_addr_fam=InterNetwork;",
    );
    http::set_header(response, "cache-control", "no-cache");
}

fn ok(body: &Value) -> Response {
    let mut response = http::json(StatusCode::OK, JSON, body);
    decorate(&mut response);
    response
}

fn supported_api_version(version: &str) -> bool {
    let classic = version.strip_prefix("7.").is_some_and(|rest| {
        rest.split('-')
            .next()
            .is_some_and(|minor| minor.parse::<u8>().is_ok_and(|m| m <= 6))
    });
    let dated = ["2016-10-01", "2025-06-01", "2025-07-01", "2026-04-01"].contains(&version);
    classic || dated
}

pub fn handle(state: &Shared, vault_name: &str, request: &Incoming) -> Response {
    let claims = tokens::validate(request.bearer(), AUDIENCE);
    if let Err(problem) = claims {
        let message = match problem {
            TokenError::Missing => "AKV10000: Request is missing a Bearer or PoP token.".to_owned(),
            TokenError::Malformed => {
                "AKV10022: Invalid token: the token could not be read.".to_owned()
            }
            TokenError::WrongAudience { found } => {
                format!(
                    "AKV10022: Invalid audience. Expected https://vault.azure.net, found: {found}."
                )
            }
            TokenError::Expired => "AKV10032: Invalid issuer or the token has expired.".to_owned(),
        };
        return error(StatusCode::UNAUTHORIZED, "Unauthorized", &message, None);
    }
    let Some(api_version) = request.query("api-version") else {
        return error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "The request URI must contain an 'api-version' query parameter.",
            None,
        );
    };
    if !supported_api_version(api_version) {
        return error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            &format!(
                "The specified version ({api_version}) is not recognized. Consider using the latest supported version (7.5)."
            ),
            None,
        );
    }
    let mut vaults = state.vaults.lock().unwrap();
    let vault = vaults.vaults.entry(vault_name.to_owned()).or_default();
    let now = tokens::unix_now();
    if now - vault.window_start >= 10 {
        vault.window_start = now;
        vault.window_count = 0;
    }
    if vault.window_count >= BUDGET_PER_10S {
        let mut response = error(
            StatusCode::TOO_MANY_REQUESTS,
            "Throttled",
            "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached",
            None,
        );
        http::set_header(&mut response, "retry-after", "10");
        return response;
    }
    vault.window_count += 1;
    let base = format!("https://{}", request.host);
    let segments = request.segments();
    match (request.method.clone(), segments.as_slice()) {
        (Method::GET, ["secrets"]) => list_secrets(vault, &base, request),
        (Method::PUT, ["secrets", name]) => set_secret(vault, &base, name, request),
        (Method::GET, ["secrets", name, "versions"]) => list_versions(vault, &base, name, request),
        (Method::GET, ["secrets", name]) => get_secret(vault, &base, name, None),
        (Method::GET, ["secrets", name, version]) => get_secret(vault, &base, name, Some(version)),
        (Method::PATCH, ["secrets", name, version]) => {
            update_secret(vault, &base, name, Some(version), request)
        }
        (Method::PATCH, ["secrets", name]) => update_secret(vault, &base, name, None, request),
        (Method::DELETE, ["secrets", name]) => delete_secret(vault, &base, name),
        _ => error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            &format!(
                "The request {} {} is not supported by this vault.",
                request.method, request.path
            ),
            None,
        ),
    }
}

fn not_found(name: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "SecretNotFound",
        &format!(
            "A secret with (name/id) {name} was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
        ),
        None,
    )
}

fn attributes(version: &Version) -> Value {
    let mut attributes = json!({
        "enabled": version.enabled,
        "created": version.created,
        "updated": version.updated,
        "recoveryLevel": "CustomizedRecoverable+Purgeable",
        "recoverableDays": 7,
    });
    if let Some(nbf) = version.nbf {
        attributes["nbf"] = json!(nbf);
    }
    if let Some(exp) = version.exp {
        attributes["exp"] = json!(exp);
    }
    attributes
}

fn bundle(base: &str, secret: &Secret, version: &Version, with_value: bool) -> Value {
    let mut body = json!({
        "id": format!("{base}/secrets/{}/{}", secret.name, version.id),
        "attributes": attributes(version),
        "tags": version.tags,
    });
    if with_value {
        body["value"] = json!(version.value);
    }
    if let Some(content_type) = &version.content_type {
        body["contentType"] = json!(content_type);
    }
    if secret.managed {
        body["managed"] = json!(true);
        body["kid"] = json!(format!("{base}/keys/{}/{}", secret.name, version.id));
    }
    body
}

fn get_secret(vault: &Vault, base: &str, name: &str, version: Option<&str>) -> Response {
    let Some(secret) = vault.secrets.get(&name.to_ascii_lowercase()) else {
        return not_found(name);
    };
    if secret.forbidden {
        return error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!(
                "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\nAction: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'\r\nResource: '/secrets/{name}'"
            ),
            Some("ForbiddenByRbac"),
        );
    }
    let found = match version.filter(|v| !v.is_empty()) {
        Some(id) => secret
            .versions
            .iter()
            .find(|v| v.id.eq_ignore_ascii_case(id)),
        None => secret.versions.last(),
    };
    let Some(found) = found else {
        return not_found(name);
    };
    if !found.enabled {
        return error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "Operation get is not allowed on a disabled secret.",
            Some("SecretDisabled"),
        );
    }
    let now = tokens::unix_now();
    if found.nbf.is_some_and(|nbf| nbf > now) || found.exp.is_some_and(|exp| exp <= now) {
        return error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "Operation get is not allowed on a secret that is not yet valid or has expired.",
            Some("SecretExpired"),
        );
    }
    ok(&bundle(base, secret, found, true))
}

fn set_secret(vault: &mut Vault, base: &str, name: &str, request: &Incoming) -> Response {
    if !valid_name(name) {
        return error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "The request URI contains an invalid name: secret names may contain only 0-9, a-z, A-Z and -.",
            None,
        );
    }
    let body = match request.json() {
        Ok(body) => body,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "BadParameter",
                &format!("The request body is not valid JSON: {e}"),
                None,
            );
        }
    };
    let Some(value) = body["value"].as_str() else {
        return error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "Property 'value' is required.",
            None,
        );
    };
    let enabled = body["attributes"]["enabled"].as_bool().unwrap_or(true);
    let tags = body["tags"].as_object().cloned().unwrap_or_default();
    let mut version = new_version(
        value.to_owned(),
        body["contentType"].as_str().map(str::to_owned),
        enabled,
        tags,
    );
    version.nbf = body["attributes"]["nbf"].as_i64();
    version.exp = body["attributes"]["exp"].as_i64();
    let secret = vault
        .secrets
        .entry(name.to_ascii_lowercase())
        .or_insert_with(|| Secret {
            name: name.to_owned(),
            versions: Vec::new(),
            forbidden: false,
            managed: false,
        });
    secret.versions.push(version.clone());
    ok(&bundle(base, secret, &version, true))
}

fn update_secret(
    vault: &mut Vault,
    base: &str,
    name: &str,
    version_id: Option<&str>,
    request: &Incoming,
) -> Response {
    let Some(secret) = vault.secrets.get_mut(&name.to_ascii_lowercase()) else {
        return not_found(name);
    };
    let version = match version_id {
        Some(id) => secret
            .versions
            .iter_mut()
            .find(|v| v.id.eq_ignore_ascii_case(id)),
        None => secret.versions.last_mut(),
    };
    let Some(version) = version else {
        return not_found(name);
    };
    let body = request.json().unwrap_or(Value::Null);
    if let Some(enabled) = body["attributes"]["enabled"].as_bool() {
        version.enabled = enabled;
    }
    if let Some(exp) = body["attributes"]["exp"].as_i64() {
        version.exp = Some(exp);
    }
    if let Some(nbf) = body["attributes"]["nbf"].as_i64() {
        version.nbf = Some(nbf);
    }
    if let Some(content_type) = body["contentType"].as_str() {
        version.content_type = Some(content_type.to_owned());
    }
    if let Some(tags) = body["tags"].as_object() {
        version.tags = tags.clone();
    }
    version.updated = tokens::unix_now();
    let version = version.clone();
    ok(&bundle(base, secret, &version, false))
}

fn list_versions(vault: &Vault, base: &str, name: &str, request: &Incoming) -> Response {
    let Some(secret) = vault.secrets.get(&name.to_ascii_lowercase()) else {
        return not_found(name);
    };
    let items: Vec<Value> = secret
        .versions
        .iter()
        .map(|v| bundle(base, secret, v, false))
        .collect();
    page(
        items,
        &format!("{base}/secrets/{}/versions", secret.name),
        request,
    )
}

/// One page of a listing: `maxresults` items (default 25) from the `$skiptoken` offset, with a
/// `nextLink` while more remain.
fn page(items: Vec<Value>, url: &str, request: &Incoming) -> Response {
    let size = request
        .query("maxresults")
        .and_then(|m| m.parse::<usize>().ok())
        .filter(|m| (1..=25).contains(m))
        .unwrap_or(25);
    let start = request
        .query("$skiptoken")
        .and_then(|t| t.strip_prefix("emu-"))
        .and_then(|t| t.parse::<usize>().ok())
        .unwrap_or(0);
    let end = (start + size).min(items.len());
    let next = (end < items.len()).then(|| {
        let version = request.query("api-version").unwrap_or("7.5");
        format!("{url}?api-version={version}&$skiptoken=emu-{end}&maxresults={size}")
    });
    let items: Vec<Value> = items.into_iter().skip(start).take(size).collect();
    ok(&json!({"value": items, "nextLink": next}))
}

fn list_secrets(vault: &Vault, base: &str, request: &Incoming) -> Response {
    let items: Vec<Value> = vault
        .secrets
        .values()
        .filter_map(|secret| {
            let latest = secret.versions.last()?;
            let mut item = bundle(base, secret, latest, false);
            item["id"] = json!(format!("{base}/secrets/{}", secret.name));
            Some(item)
        })
        .collect();
    page(items, &format!("{base}/secrets"), request)
}

fn delete_secret(vault: &mut Vault, base: &str, name: &str) -> Response {
    let Some(secret) = vault.secrets.remove(&name.to_ascii_lowercase()) else {
        return not_found(name);
    };
    let Some(latest) = secret.versions.last() else {
        return not_found(name);
    };
    let now = tokens::unix_now();
    let mut body = bundle(base, &secret, latest, false);
    body["recoveryId"] = json!(format!("{base}/deletedsecrets/{}", secret.name));
    body["deletedDate"] = json!(now);
    body["scheduledPurgeDate"] = json!(now + 7 * 86400);
    ok(&body)
}
