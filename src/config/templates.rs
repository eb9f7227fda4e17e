//! `[templates.<name>]`: what a run may be. A caller with a function key can run only what a
//! template allows: its image (or, when allowed, one from an allowlisted registry) and resources,
//! its command with named parameters substituted (each checked against its kind), its fixed
//! environment, environment keys the caller may set, secure values from Key Vault, a registry
//! credential, identity, subnet, restart policy, time limits and cleanup policy. A template may
//! instead name a fixed container group provisioned by infrastructure-as-code.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use crate::azure::cloud::Cloud;
use crate::secrets::reference::SecretSetting;

#[derive(Debug, Clone)]
pub struct JobTemplate {
    pub name: String,
    pub resource_group: String,
    pub location: String,
    pub image: String,
    pub cpu: f64,
    pub memory_gb: f64,
    /// Exec form; `{name}` is replaced by the parameter's value.
    pub command: Vec<String>,
    pub parameters: BTreeMap<String, ParameterRule>,
    pub env: BTreeMap<String, String>,
    pub allowed_env: Vec<String>,
    pub secure_env: BTreeMap<String, SecretSetting>,
    pub registry: Option<Registry>,
    /// From creation to the end of the run; past it the group is stopped (TimedOut).
    pub timeout: Duration,
    /// How long a group may stay provisioning or pulling its image before the run fails.
    pub start_timeout: Duration,
    /// `Never` or `OnFailure`.
    pub restart_policy: String,
    /// A user-assigned managed identity (resource id) for the container.
    pub identity: Option<String>,
    /// A subnet (resource id) to deploy into.
    pub subnet: Option<String>,
    /// How long a failed run's group is kept for inspection before it is deleted.
    pub keep_failed: Duration,
    /// Registry prefixes (`myregistry.azurecr.io/jobs/`) a request's `image` may come from; empty
    /// means the template's image only.
    pub allowed_images: Vec<String>,
    /// A fixed container group (made by infrastructure-as-code) that runs are started in, one at
    /// a time, instead of a group per run.
    pub container_group: Option<String>,
}

impl JobTemplate {
    /// Whether a request may run `image` instead of the template's own.
    pub fn allows_image(&self, image: &str) -> bool {
        let valid = !image.is_empty()
            && image.len() <= 255
            && image
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:@".contains(c));
        valid
            && self
                .allowed_images
                .iter()
                .any(|prefix| image.starts_with(prefix.as_str()))
    }
}

#[derive(Debug, Clone)]
pub struct Registry {
    pub server: String,
    pub auth: RegistryAuth,
}

#[derive(Debug, Clone)]
pub enum RegistryAuth {
    /// A username and a password from Key Vault.
    Password {
        username: String,
        password: SecretSetting,
    },
    /// A user-assigned managed identity (resource id) with pull rights on the registry.
    Identity(String),
}

/// What values a parameter takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParameterKind {
    /// Decimal digits.
    Digits,
    /// Letters, digits, `-`, `_`, `.`, `/`, `:`, `=`: names, paths, dates, URLs without queries.
    Word,
    /// Printable text without quotes, backslashes or shell metacharacters.
    Text,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParameterRule {
    #[serde(default = "default_kind")]
    pub kind: ParameterKind,
    #[serde(default = "default_max_length")]
    pub max_length: usize,
    /// Used when the request omits the parameter; without one the parameter is required.
    pub default: Option<String>,
}

fn default_kind() -> ParameterKind {
    ParameterKind::Word
}

fn default_max_length() -> usize {
    256
}

impl ParameterRule {
    /// Checks `value`; the error says why without quoting more than the parameter's name.
    pub fn check(&self, value: &str) -> Result<(), String> {
        if value.is_empty() || value.chars().count() > self.max_length {
            return Err(format!("must be 1 to {} characters", self.max_length));
        }
        let valid = match self.kind {
            ParameterKind::Digits => value.chars().all(|c| c.is_ascii_digit()),
            ParameterKind::Word => value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:=".contains(c)),
            ParameterKind::Text => value
                .chars()
                .all(|c| !c.is_control() && !"\"'`\\$;&|<>(){}*?!#~".contains(c)),
        };
        if valid {
            Ok(())
        } else {
            Err(format!("is not a valid {:?} value", self.kind).to_lowercase())
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTemplate {
    resource_group: String,
    location: String,
    #[serde(default)]
    image: String,
    #[serde(default = "default_cpu")]
    cpu: f64,
    #[serde(default = "default_memory")]
    memory_gb: f64,
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    parameters: BTreeMap<String, ParameterRule>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    allowed_env: Vec<String>,
    #[serde(default)]
    secure_env: BTreeMap<String, String>,
    registry: Option<FileRegistry>,
    timeout_minutes: Option<u64>,
    timeout_seconds: Option<u64>,
    #[serde(default = "default_start_timeout")]
    start_timeout_seconds: u64,
    #[serde(default = "default_restart_policy")]
    restart_policy: String,
    identity: Option<String>,
    subnet: Option<String>,
    #[serde(default = "default_keep_failed")]
    keep_failed_hours: u64,
    #[serde(default)]
    allowed_images: Vec<String>,
    container_group: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRegistry {
    server: String,
    username: Option<String>,
    password: Option<String>,
    identity: Option<String>,
}

fn default_cpu() -> f64 {
    1.0
}

fn default_memory() -> f64 {
    1.5
}

fn default_start_timeout() -> u64 {
    600
}

fn default_restart_policy() -> String {
    "Never".into()
}

fn default_keep_failed() -> u64 {
    24
}

/// Templates from TOML text holding `[name]` tables (what `dev` builds its demo from).
pub fn parse_templates(text: &str, cloud: Cloud) -> Result<Vec<JobTemplate>, ConfigError> {
    let file: BTreeMap<String, FileTemplate> =
        toml::from_str(text).map_err(|e| ConfigError::new("templates", e.to_string()))?;
    load_templates(file, cloud)
}

pub(super) fn load_templates(
    file: BTreeMap<String, FileTemplate>,
    cloud: Cloud,
) -> Result<Vec<JobTemplate>, ConfigError> {
    file.into_iter()
        .map(|(name, t)| {
            let key = format!("templates.{name}");
            let fail =
                |field: &str, message: String| ConfigError::new(format!("{key}.{field}"), message);
            if !(0.1..=16.0).contains(&t.cpu) || !(0.1..=64.0).contains(&t.memory_gb) {
                return Err(fail(
                    "cpu",
                    "cpu must be 0.1-16 and memory_gb 0.1-64".into(),
                ));
            }
            for part in &t.command {
                for placeholder in placeholders(part) {
                    if !t.parameters.contains_key(placeholder) {
                        return Err(fail(
                            "command",
                            format!("uses {{{placeholder}}}, which is not a declared parameter"),
                        ));
                    }
                }
            }
            for (parameter, rule) in &t.parameters {
                if let Some(default) = &rule.default {
                    rule.check(default)
                        .map_err(|e| fail(&format!("parameters.{parameter}.default"), e))?;
                }
            }
            let secure_env = t
                .secure_env
                .into_iter()
                .map(|(k, v)| {
                    SecretSetting::parse(&v, cloud)
                        .map(|s| (k.clone(), s))
                        .map_err(|e| fail(&format!("secure_env.{k}"), e))
                })
                .collect::<Result<_, _>>()?;
            let registry = t
                .registry
                .map(|r| {
                    let auth = match (r.username, r.password, r.identity) {
                        (Some(username), Some(password), None) => RegistryAuth::Password {
                            username,
                            password: SecretSetting::parse(&password, cloud)
                                .map_err(|e| fail("registry.password", e))?,
                        },
                        (None, None, Some(identity)) => RegistryAuth::Identity(identity),
                        _ => {
                            return Err(fail(
                                "registry",
                                "give username and password, or identity".into(),
                            ));
                        }
                    };
                    Ok(Registry {
                        server: r.server,
                        auth,
                    })
                })
                .transpose()?;
            let timeout = match (t.timeout_minutes, t.timeout_seconds) {
                (Some(_), Some(_)) => {
                    return Err(fail(
                        "timeout_seconds",
                        "give timeout_minutes or timeout_seconds, not both".into(),
                    ));
                }
                (Some(minutes), None) => minutes * 60,
                (None, Some(seconds)) => seconds,
                (None, None) => 3600,
            };
            if timeout == 0 || t.start_timeout_seconds == 0 {
                return Err(fail("timeout_minutes", "time limits must be greater than zero".into()));
            }
            if !["Never", "OnFailure"].contains(&t.restart_policy.as_str()) {
                return Err(fail(
                    "restart_policy",
                    format!("'{}' is not Never or OnFailure (a run must end)", t.restart_policy),
                ));
            }
            match (&t.container_group, t.image.is_empty()) {
                (None, true) => return Err(fail("image", "is required".into())),
                (Some(_), false) => {
                    return Err(fail(
                        "image",
                        "comes from the fixed container_group; leave it out".into(),
                    ));
                }
                _ => {}
            }
            if t.container_group.is_some() && !t.allowed_images.is_empty() {
                return Err(fail(
                    "allowed_images",
                    "a fixed container group runs its own image".into(),
                ));
            }
            if let Some(prefix) = t.allowed_images.iter().find(|p| !p.contains('/')) {
                return Err(fail(
                    "allowed_images",
                    format!("'{prefix}' must name a registry and path, like 'myregistry.azurecr.io/jobs/'"),
                ));
            }
            Ok(JobTemplate {
                name,
                resource_group: t.resource_group,
                location: t.location,
                image: t.image,
                cpu: t.cpu,
                memory_gb: t.memory_gb,
                command: t.command,
                parameters: t.parameters,
                env: t.env,
                allowed_env: t.allowed_env,
                secure_env,
                registry,
                timeout: Duration::from_secs(timeout),
                start_timeout: Duration::from_secs(t.start_timeout_seconds),
                restart_policy: t.restart_policy,
                identity: t.identity,
                subnet: t.subnet,
                keep_failed: Duration::from_secs(t.keep_failed_hours * 3600),
                allowed_images: t.allowed_images,
                container_group: t.container_group,
            })
        })
        .collect()
}

/// The `{name}` placeholders in `text` (names of letters, digits and `_`; other braces, such as
/// JSON in a shell command, are left alone).
pub fn placeholders(text: &str) -> Vec<&str> {
    text.split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
        .filter(|name| {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked_by_kind() {
        let rule = |kind| ParameterRule {
            kind,
            max_length: 10,
            default: None,
        };
        assert!(rule(ParameterKind::Digits).check("042").is_ok());
        assert!(rule(ParameterKind::Digits).check("4a").is_err());
        assert!(rule(ParameterKind::Word).check("2026-11-21").is_ok());
        assert!(rule(ParameterKind::Word).check("a b").is_err());
        assert!(rule(ParameterKind::Text).check("hello you").is_ok());
        for bad in ["a;rm", "$(x)", "`x`", "a'b", "", "01234567890"] {
            assert!(rule(ParameterKind::Text).check(bad).is_err(), "{bad}");
        }
        assert_eq!(placeholders("echo {a} and {b}"), ["a", "b"]);
        assert_eq!(placeholders(r#"curl -d '{"rows": 1}' {url_1}"#), ["url_1"]);
    }
}
