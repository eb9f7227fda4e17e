//! The one typed configuration, loaded once at start.
//!
//! Sources, later ones winning: built-in defaults, the TOML file named by `COMPUTEBRIDGE_CONFIG`,
//! then environment variables (Azure Functions app settings arrive as environment variables). This
//! is the only module that reads the environment; everything else receives a [`Config`]. Every
//! value is parsed here into its final type, and an invalid one stops start-up with an error that
//! names the setting. Secret values are held as [`crate::secret::Secret`] and never printed; secret-valued
//! settings may be Key Vault references ([`SecretSetting`]), resolved at run time.

mod azure;
mod pools;
mod storage;
mod templates;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::schedule::Schedule;
use crate::secrets::reference::{SecretRef, SecretSetting};

pub use azure::{
    AzureSettings, CredentialSettings, DEFAULT_SECRET_GRACE, DEFAULT_SECRET_TTL,
    SecretCacheSettings,
};
pub use pools::{
    CallbackSettings, DEFAULT_CALLBACK_HOSTS, KeepWarm, PoolSettings, ScaleDownPolicy,
};
pub use storage::{BlobAuth, BlobState, StateLocation};
pub use templates::{
    JobTemplate, ParameterKind, ParameterRule, Registry, RegistryAuth, parse_templates,
};

/// Default schedule of the `ScaleDown` timer: every five minutes.
pub const DEFAULT_SCALE_DOWN_SCHEDULE: &str = "0 */5 * * * *";
/// Default schedule of the `Reconcile` timer: every minute.
pub const DEFAULT_RECONCILE_SCHEDULE: &str = "0 * * * * *";
/// Default request body limit: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Default standalone port, the one `func start` uses too.
pub const DEFAULT_PORT: u16 = 7071;

/// Names of the environment variables (app settings) the service reads.
pub mod env {
    pub const CONFIG_FILE: &str = "COMPUTEBRIDGE_CONFIG";
    pub const FUNCTIONS_PORT: &str = "FUNCTIONS_CUSTOMHANDLER_PORT";
    pub const PORT: &str = "COMPUTEBRIDGE_PORT";
    pub const BIND: &str = "COMPUTEBRIDGE_BIND";
    pub const MAX_BODY_BYTES: &str = "COMPUTEBRIDGE_MAX_BODY_BYTES";
    pub const LOG_FORMAT: &str = "COMPUTEBRIDGE_LOG_FORMAT";
    pub const FUNCTION_KEYS: &str = "COMPUTEBRIDGE_FUNCTION_KEYS";
    pub const SCALE_DOWN_SCHEDULE: &str = "SCALE_DOWN_SCHEDULE";
    pub const RECONCILE_SCHEDULE: &str = "RECONCILE_SCHEDULE";
    pub const CLOUD: &str = "COMPUTEBRIDGE_CLOUD";
    pub const CREDENTIAL: &str = "COMPUTEBRIDGE_CREDENTIAL";
    pub const AZURE_EMULATOR: &str = "COMPUTEBRIDGE_AZURE_EMULATOR";
    pub const SECRET_CACHE_TTL: &str = "COMPUTEBRIDGE_SECRET_CACHE_TTL_SECONDS";
    pub const SECRET_GRACE: &str = "COMPUTEBRIDGE_SECRET_GRACE_SECONDS";
    pub const AZURE_CLIENT_ID: &str = "AZURE_CLIENT_ID";
    pub const AZURE_TENANT_ID: &str = "AZURE_TENANT_ID";
    pub const AZURE_CLIENT_SECRET: &str = "AZURE_CLIENT_SECRET";
    pub const AZURE_FEDERATED_TOKEN_FILE: &str = "AZURE_FEDERATED_TOKEN_FILE";
    pub const AZURE_SUBSCRIPTION_ID: &str = "AZURE_SUBSCRIPTION_ID";
    pub const IDENTITY_ENDPOINT: &str = "IDENTITY_ENDPOINT";
    pub const IDENTITY_HEADER: &str = "IDENTITY_HEADER";
    pub const STATE_DIR: &str = "COMPUTEBRIDGE_STATE_DIR";
    pub const CALLBACK_HOSTS: &str = "COMPUTEBRIDGE_CALLBACK_HOSTS";
    pub const CALLBACK_ALLOW_HTTP: &str = "COMPUTEBRIDGE_CALLBACK_ALLOW_HTTP";
    pub const PUBLIC_URL: &str = "COMPUTEBRIDGE_PUBLIC_URL";
    pub const STATE_CONTAINER: &str = "COMPUTEBRIDGE_STATE_CONTAINER";
    /// The Function app's storage account, as the Functions host names it.
    pub const STORAGE: &str = "AzureWebJobsStorage";
    pub const STORAGE_BLOB_URI: &str = "AzureWebJobsStorage__blobServiceUri";
    pub const STORAGE_ACCOUNT_NAME: &str = "AzureWebJobsStorage__accountName";
}

/// The service's configuration, fully parsed.
#[derive(Debug, Clone)]
pub struct Config {
    /// Set when the Functions host started us: the loopback port it will call.
    pub functions_port: Option<u16>,
    /// Address and port for standalone mode.
    pub bind: IpAddr,
    pub port: u16,
    /// Largest request body accepted, in bytes; larger ones get 413.
    pub max_body_bytes: usize,
    pub log_format: LogFormat,
    pub timers: TimerSchedules,
    /// Function keys checked in standalone mode (the Functions host checks its own keys).
    pub function_keys: Vec<FunctionKey>,
    pub azure: AzureSettings,
    pub secret_cache: SecretCacheSettings,
    /// Batch pools callers may touch, by caller-facing name.
    pub pools: Vec<PoolSettings>,
    /// Named autoscale formulas.
    pub formulas: BTreeMap<String, String>,
    pub callbacks: CallbackSettings,
    /// Where durable state (runs, pending callbacks, pool operations) lives.
    pub state: StateLocation,
    /// What container runs may be, by template name.
    pub templates: Vec<JobTemplate>,
    /// The service's public base URL, for the output URL jobs post to.
    pub public_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct TimerSchedules {
    pub scale_down: Schedule,
    pub reconcile: Schedule,
}

/// A named function key, as the Functions host names its keys.
#[derive(Debug, Clone)]
pub struct FunctionKey {
    pub name: String,
    pub value: SecretSetting,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// A setting that could not be used; start-up stops with this message.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {key}: {message}")]
pub struct ConfigError {
    /// The setting's name: an environment variable or a `section.key` path in the TOML file.
    pub key: String,
    pub message: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The TOML file's shape; every field optional so the file can be partial.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    server: FileServer,
    #[serde(default)]
    timers: FileTimers,
    #[serde(default)]
    auth: FileAuth,
    #[serde(default)]
    azure: azure::FileAzure,
    #[serde(default)]
    secrets: azure::FileSecrets,
    #[serde(default)]
    pools: BTreeMap<String, pools::FilePool>,
    #[serde(default)]
    formulas: BTreeMap<String, String>,
    #[serde(default)]
    callbacks: pools::FileCallbacks,
    #[serde(default)]
    state: pools::FileState,
    #[serde(default)]
    templates: BTreeMap<String, templates::FileTemplate>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServer {
    bind: Option<IpAddr>,
    port: Option<u16>,
    max_body_bytes: Option<usize>,
    log_format: Option<LogFormat>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTimers {
    scale_down_schedule: Option<String>,
    reconcile_schedule: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAuth {
    #[serde(default)]
    function_keys: BTreeMap<String, String>,
}

impl Config {
    /// The pool callers call `name`.
    pub fn pool(&self, name: &str) -> Option<&PoolSettings> {
        self.pools
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
    }

    /// Loads from the process environment (and the file it names).
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::load(&|name| std::env::var(name).ok())
    }

    /// Loads from `lookup`, which answers like the environment; tests pass their own.
    pub fn load(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let file = match lookup(env::CONFIG_FILE).filter(|p| !p.is_empty()) {
            Some(path) => read_file(PathBuf::from(path))?,
            None => FileConfig::default(),
        };
        let var = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());

        let functions_port = var(env::FUNCTIONS_PORT)
            .map(|v| parse_port(env::FUNCTIONS_PORT, &v))
            .transpose()?;
        let bind = match var(env::BIND) {
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| ConfigError::new(env::BIND, format!("'{v}' is not an IP address")))?,
            None => file.server.bind.unwrap_or(IpAddr::from([0, 0, 0, 0])),
        };
        let port = match var(env::PORT) {
            Some(v) => parse_port(env::PORT, &v)?,
            None => file.server.port.unwrap_or(DEFAULT_PORT),
        };
        let max_body_bytes = match var(env::MAX_BODY_BYTES) {
            Some(v) => v.trim().parse().map_err(|_| {
                ConfigError::new(env::MAX_BODY_BYTES, format!("'{v}' is not a byte count"))
            })?,
            None => file.server.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
        };
        if max_body_bytes == 0 {
            return Err(ConfigError::new(
                "server.max_body_bytes",
                "must be greater than zero",
            ));
        }
        let log_format = match var(env::LOG_FORMAT).as_deref().map(str::trim) {
            Some("json") => LogFormat::Json,
            Some("text") => LogFormat::Text,
            Some(other) => {
                return Err(ConfigError::new(
                    env::LOG_FORMAT,
                    format!("'{other}' is not one of: text, json"),
                ));
            }
            None => file.server.log_format.unwrap_or(LogFormat::Text),
        };
        let schedule = |name: &str, file_key: &str, from_file: Option<String>, default: &str| {
            let (key, text) = match var(name) {
                Some(v) => (name.to_owned(), v),
                None => match from_file {
                    Some(v) => (format!("timers.{file_key}"), v),
                    None => (name.to_owned(), default.to_owned()),
                },
            };
            text.trim()
                .parse::<Schedule>()
                .map_err(|e| ConfigError::new(key, e.to_string()))
        };
        let timers = TimerSchedules {
            scale_down: schedule(
                env::SCALE_DOWN_SCHEDULE,
                "scale_down_schedule",
                file.timers.scale_down_schedule,
                DEFAULT_SCALE_DOWN_SCHEDULE,
            )?,
            reconcile: schedule(
                env::RECONCILE_SCHEDULE,
                "reconcile_schedule",
                file.timers.reconcile_schedule,
                DEFAULT_RECONCILE_SCHEDULE,
            )?,
        };
        let azure = azure::load_azure(&var, file.azure)?;
        let secret_cache = azure::load_secret_cache(&var, file.secrets)?;
        let pools = pools::load_pools(file.pools, azure.cloud.batch_suffix())?;
        let formulas = pools::load_formulas(file.formulas)?;
        let callbacks = pools::load_callbacks(&var, file.callbacks)?;
        let state = storage::load_state(&var, file.state.dir, azure.cloud)?;
        let templates = templates::load_templates(file.templates, azure.cloud)?;
        if !templates.is_empty() && azure.subscription_id.is_none() {
            return Err(ConfigError::new(
                env::AZURE_SUBSCRIPTION_ID,
                "is required when job templates are configured (container groups live in a subscription)",
            ));
        }
        let public_url = var(env::PUBLIC_URL).map(|u| u.trim_end_matches('/').to_owned());
        let function_keys = match var(env::FUNCTION_KEYS) {
            Some(v) => parse_function_keys(&v, &azure)?,
            None => file
                .auth
                .function_keys
                .into_iter()
                .map(|(name, value)| {
                    check_key(&format!("auth.function_keys.{name}"), name, &value, &azure)
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(Config {
            functions_port,
            bind,
            port,
            max_body_bytes,
            log_format,
            timers,
            function_keys,
            azure,
            secret_cache,
            pools,
            formulas,
            callbacks,
            state,
            templates,
            public_url,
        })
    }

    /// Every Key Vault reference in the configuration, with the setting that holds it.
    pub fn secret_references(&self) -> Vec<(String, SecretRef)> {
        let keys = self
            .function_keys
            .iter()
            .map(|key| (format!("function key '{}'", key.name), &key.value));
        let templates = self.templates.iter().flat_map(|t| {
            let env = t
                .secure_env
                .iter()
                .map(move |(name, value)| (format!("template '{}' env {name}", t.name), value));
            let registry = t.registry.iter().filter_map(move |r| match &r.auth {
                RegistryAuth::Password { password, .. } => {
                    Some((format!("template '{}' registry password", t.name), password))
                }
                RegistryAuth::Identity(_) => None,
            });
            env.chain(registry)
        });
        keys.chain(templates)
            .filter_map(|(setting, value)| Some((setting, value.reference()?.clone())))
            .collect()
    }

    pub fn template(&self, name: &str) -> Option<&JobTemplate> {
        self.templates.iter().find(|t| t.name == name)
    }
}

fn read_file(path: PathBuf) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(&path).map_err(|e| {
        ConfigError::new(
            env::CONFIG_FILE,
            format!("cannot read '{}': {e}", path.display()),
        )
    })?;
    toml::from_str(&text).map_err(|e| {
        ConfigError::new(
            format!("{} ({})", env::CONFIG_FILE, path.display()),
            e.to_string().trim_end().replace('\n', " "),
        )
    })
}

fn parse_port(key: &str, value: &str) -> Result<u16, ConfigError> {
    value
        .trim()
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| ConfigError::new(key, format!("'{value}' is not a TCP port (1-65535)")))
}

/// `name=value` pairs separated by commas or semicolons (outside a Key Vault reference's
/// parentheses).
fn parse_function_keys(text: &str, azure: &AzureSettings) -> Result<Vec<FunctionKey>, ConfigError> {
    split_outside_parentheses(text)
        .into_iter()
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .enumerate()
        .map(|(i, pair)| match pair.split_once('=') {
            Some((name, value)) => check_key(env::FUNCTION_KEYS, name.trim().into(), value, azure),
            None => Err(ConfigError::new(
                env::FUNCTION_KEYS,
                format!("entry {} is not of the form name=value", i + 1),
            )),
        })
        .collect()
}

fn split_outside_parentheses(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' | ';' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn check_key(
    key: &str,
    name: String,
    value: &str,
    azure: &AzureSettings,
) -> Result<FunctionKey, ConfigError> {
    if name.is_empty() {
        return Err(ConfigError::new(key, "a function key has an empty name"));
    }
    let value = SecretSetting::parse(value, azure.cloud)
        .map_err(|e| ConfigError::new(key, format!("function key '{name}': {e}")))?;
    if let SecretSetting::Value(secret) = &value
        && secret.expose().len() < 8
    {
        return Err(ConfigError::new(
            key,
            format!("function key '{name}' is shorter than 8 characters"),
        ));
    }
    Ok(FunctionKey { name, value })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(&|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_apply_with_an_empty_environment() {
        let config = load(&[]).unwrap();
        assert_eq!(config.functions_port, None);
        assert_eq!(config.port, DEFAULT_PORT);
        assert_eq!(config.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(config.log_format, LogFormat::Text);
        assert_eq!(
            config.timers.reconcile.expression(),
            DEFAULT_RECONCILE_SCHEDULE
        );
        assert!(config.function_keys.is_empty());
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = std::env::temp_dir().join(format!("cb-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            "[server]\nport = 9000\nmax_body_bytes = 2048\n[timers]\nreconcile_schedule = \"*/5 * * * * *\"\n[auth.function_keys]\nops = \"from-file-key\"\n",
        )
        .unwrap();
        let config = load(&[
            (env::CONFIG_FILE, path.to_str().unwrap()),
            (env::PORT, "9100"),
        ])
        .unwrap();
        assert_eq!(config.port, 9100);
        assert_eq!(config.max_body_bytes, 2048);
        assert_eq!(config.timers.reconcile.expression(), "*/5 * * * * *");
        assert_eq!(config.function_keys[0].name, "ops");
        assert!(matches!(
            &config.function_keys[0].value,
            SecretSetting::Value(v) if v.matches(b"from-file-key")
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_values_name_the_setting_and_hide_secrets() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[(env::FUNCTIONS_PORT, "http")],
                "FUNCTIONS_CUSTOMHANDLER_PORT: 'http' is not a TCP port",
            ),
            (&[(env::PORT, "70000")], "COMPUTEBRIDGE_PORT"),
            (
                &[(env::MAX_BODY_BYTES, "1MB")],
                "COMPUTEBRIDGE_MAX_BODY_BYTES",
            ),
            (&[(env::MAX_BODY_BYTES, "0")], "server.max_body_bytes"),
            (&[(env::LOG_FORMAT, "xml")], "COMPUTEBRIDGE_LOG_FORMAT"),
            (
                &[(env::RECONCILE_SCHEDULE, "*/5 * * * *")],
                "RECONCILE_SCHEDULE: '*/5 * * * *' is not a valid",
            ),
            (
                &[(env::FUNCTION_KEYS, "default")],
                "COMPUTEBRIDGE_FUNCTION_KEYS: entry 1",
            ),
            (&[(env::FUNCTION_KEYS, "default=short")], "shorter than 8"),
            (
                &[(env::CONFIG_FILE, "/nonexistent/c.toml")],
                "COMPUTEBRIDGE_CONFIG: cannot read",
            ),
        ];
        for (vars, expected) in cases {
            let error = load(vars).unwrap_err().to_string();
            assert!(error.contains(expected), "{vars:?}: {error}");
            assert!(!error.contains("short\""), "{error}");
        }
    }

    #[test]
    fn function_keys_may_be_key_vault_references() {
        let config = load(&[(
            env::FUNCTION_KEYS,
            "default=@Microsoft.KeyVault(VaultName=ops;SecretName=fn-key);local=local-key-1",
        )])
        .unwrap();
        let names: Vec<&str> = config
            .function_keys
            .iter()
            .map(|k| k.name.as_str())
            .collect();
        assert_eq!(names, ["default", "local"]);
        let references = config.secret_references();
        assert_eq!(references.len(), 1);
        assert_eq!(references[0].0, "function key 'default'");
        assert_eq!(references[0].1.to_string(), "ops.vault.azure.net/fn-key");
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let dir = std::env::temp_dir().join(format!("cb-config-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, "[server]\nprot = 9000\n").unwrap();
        let error = load(&[(env::CONFIG_FILE, path.to_str().unwrap())])
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown field `prot`"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
