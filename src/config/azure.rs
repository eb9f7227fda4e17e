//! The `[azure]` and `[secrets]` settings: which cloud, which credential, where the emulator is,
//! and how long resolved secrets are cached.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, env};
use crate::azure::cloud::Cloud;
use crate::secret::Secret;

/// Default time a secret read from Key Vault is used before it is read again.
pub const DEFAULT_SECRET_TTL: Duration = Duration::from_secs(300);
/// Default time a cached secret keeps serving while Key Vault cannot be reached.
pub const DEFAULT_SECRET_GRACE: Duration = Duration::from_secs(900);

#[derive(Debug, Clone)]
pub struct AzureSettings {
    pub cloud: Cloud,
    pub credential: CredentialSettings,
    pub subscription_id: Option<String>,
    /// Send the cloud's hosts to this local emulator (the `dev` command and tests).
    pub emulator: Option<SocketAddr>,
}

/// Which credential authenticates every Azure call.
#[derive(Debug, Clone)]
pub enum CredentialSettings {
    /// System-assigned, or user-assigned by client id; the default.
    ManagedIdentity { client_id: Option<String> },
    ClientSecret {
        tenant_id: String,
        client_id: String,
        secret: Secret,
    },
    /// Federated token file (AKS, Container Apps with workload identity).
    WorkloadIdentity {
        tenant_id: String,
        client_id: String,
        token_file: PathBuf,
    },
    /// The signed-in Azure CLI user, for a laptop.
    AzureCli { tenant_id: Option<String> },
}

impl CredentialSettings {
    pub fn kind(&self) -> &'static str {
        match self {
            CredentialSettings::ManagedIdentity { .. } => "managed-identity",
            CredentialSettings::ClientSecret { .. } => "client-secret",
            CredentialSettings::WorkloadIdentity { .. } => "workload-identity",
            CredentialSettings::AzureCli { .. } => "azure-cli",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct SecretCacheSettings {
    pub ttl: Duration,
    pub grace: Duration,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAzure {
    cloud: Option<String>,
    credential: Option<String>,
    client_id: Option<String>,
    tenant_id: Option<String>,
    subscription_id: Option<String>,
    emulator: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileSecrets {
    cache_ttl_seconds: Option<u64>,
    grace_seconds: Option<u64>,
}

type Var<'a> = &'a dyn Fn(&str) -> Option<String>;

pub(super) fn load_azure(var: Var, file: FileAzure) -> Result<AzureSettings, ConfigError> {
    let (cloud_key, cloud_text) = pick(var, env::CLOUD, "azure.cloud", file.cloud);
    let cloud = match cloud_text {
        Some(text) => text.parse().map_err(|e| ConfigError::new(cloud_key, e))?,
        None => Cloud::Public,
    };
    let client_id = var(env::AZURE_CLIENT_ID).or(file.client_id);
    let tenant_id = var(env::AZURE_TENANT_ID).or(file.tenant_id);
    let (credential_key, credential_text) =
        pick(var, env::CREDENTIAL, "azure.credential", file.credential);
    let require = |name: &str, value: Option<String>, kind: &str| {
        value.ok_or_else(|| ConfigError::new(name, format!("is required by the {kind} credential")))
    };
    let credential = match credential_text.as_deref().map(str::trim) {
        None | Some("managed-identity") => {
            check_managed_identity_environment(var)?;
            CredentialSettings::ManagedIdentity { client_id }
        }
        Some("client-secret") => CredentialSettings::ClientSecret {
            tenant_id: require(env::AZURE_TENANT_ID, tenant_id, "client-secret")?,
            client_id: require(env::AZURE_CLIENT_ID, client_id, "client-secret")?,
            secret: Secret::new(require(
                env::AZURE_CLIENT_SECRET,
                var(env::AZURE_CLIENT_SECRET),
                "client-secret",
            )?),
        },
        Some("workload-identity") => CredentialSettings::WorkloadIdentity {
            tenant_id: require(env::AZURE_TENANT_ID, tenant_id, "workload-identity")?,
            client_id: require(env::AZURE_CLIENT_ID, client_id, "workload-identity")?,
            token_file: require(
                env::AZURE_FEDERATED_TOKEN_FILE,
                var(env::AZURE_FEDERATED_TOKEN_FILE),
                "workload-identity",
            )?
            .into(),
        },
        Some("azure-cli") => CredentialSettings::AzureCli { tenant_id },
        Some(other) => {
            return Err(ConfigError::new(
                credential_key,
                format!(
                    "'{other}' is not one of: managed-identity, client-secret, workload-identity, azure-cli"
                ),
            ));
        }
    };
    let (emulator_key, emulator_text) =
        pick(var, env::AZURE_EMULATOR, "azure.emulator", file.emulator);
    let emulator = emulator_text
        .map(|text| parse_emulator(&text).map_err(|e| ConfigError::new(emulator_key, e)))
        .transpose()?;
    Ok(AzureSettings {
        cloud,
        credential,
        subscription_id: var(env::AZURE_SUBSCRIPTION_ID).or(file.subscription_id),
        emulator,
    })
}

pub(super) fn load_secret_cache(
    var: Var,
    file: FileSecrets,
) -> Result<SecretCacheSettings, ConfigError> {
    let seconds = |name: &str, file_key: &str, from_file: Option<u64>, default: Duration| {
        match var(name) {
            Some(text) => text
                .trim()
                .parse::<u64>()
                .map(Duration::from_secs)
                .map_err(|_| {
                    ConfigError::new(name, format!("'{text}' is not a number of seconds"))
                }),
            None => Ok(from_file.map(Duration::from_secs).unwrap_or(default)),
        }
        .and_then(|d| {
            if d.is_zero() {
                Err(ConfigError::new(file_key, "must be greater than zero"))
            } else {
                Ok(d)
            }
        })
    };
    Ok(SecretCacheSettings {
        ttl: seconds(
            env::SECRET_CACHE_TTL,
            "secrets.cache_ttl_seconds",
            file.cache_ttl_seconds,
            DEFAULT_SECRET_TTL,
        )?,
        grace: seconds(
            env::SECRET_GRACE,
            "secrets.grace_seconds",
            file.grace_seconds,
            DEFAULT_SECRET_GRACE,
        )?,
    })
}

/// The environment variable if set, else the file's value under `file_key`.
fn pick(
    var: Var,
    name: &str,
    file_key: &str,
    from_file: Option<String>,
) -> (String, Option<String>) {
    match var(name) {
        Some(value) => (name.to_owned(), Some(value)),
        None => (file_key.to_owned(), from_file),
    }
}

/// The App Service / Functions managed-identity protocol needs both variables. With only the
/// endpoint, the SDK would fall back to IMDS and retry for over a minute before failing, so a
/// half-configured identity is refused at start instead.
fn check_managed_identity_environment(var: Var) -> Result<(), ConfigError> {
    match (var(env::IDENTITY_ENDPOINT), var(env::IDENTITY_HEADER)) {
        (Some(_), None) => Err(ConfigError::new(
            env::IDENTITY_HEADER,
            format!(
                "is not set but {} is; the managed-identity endpoint needs both (the Functions host sets both when the app has an identity)",
                env::IDENTITY_ENDPOINT
            ),
        )),
        (None, Some(_)) => Err(ConfigError::new(
            env::IDENTITY_ENDPOINT,
            format!(
                "is not set but {} is; the managed-identity endpoint needs both",
                env::IDENTITY_HEADER
            ),
        )),
        (Some(endpoint), Some(_)) if !endpoint.starts_with("http") => Err(ConfigError::new(
            env::IDENTITY_ENDPOINT,
            format!("'{endpoint}' is not an http(s) URL"),
        )),
        _ => Ok(()),
    }
}

/// `http://127.0.0.1:PORT` (or a bare `IP:PORT`).
fn parse_emulator(text: &str) -> Result<SocketAddr, String> {
    let address = text
        .trim()
        .trim_start_matches("http://")
        .trim_end_matches('/');
    address
        .parse()
        .map_err(|_| format!("'{text}' is not http://IP:PORT"))
}
