//! `[templates.<name>]`: what a run may be. A caller with a function key can run only what a
//! template allows: its image and resources, its command with named parameters substituted (each
//! checked against its kind), its fixed environment, environment keys the caller may set, secure
//! values from Key Vault, a registry credential, and a timeout.

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
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Registry {
    pub server: String,
    pub username: String,
    pub password: SecretSetting,
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
    #[serde(default = "default_timeout")]
    timeout_minutes: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRegistry {
    server: String,
    username: String,
    password: String,
}

fn default_cpu() -> f64 {
    1.0
}

fn default_memory() -> f64 {
    1.5
}

fn default_timeout() -> u64 {
    60
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
                    SecretSetting::parse(&r.password, cloud)
                        .map(|password| Registry {
                            server: r.server,
                            username: r.username,
                            password,
                        })
                        .map_err(|e| fail("registry.password", e))
                })
                .transpose()?;
            if t.timeout_minutes == 0 {
                return Err(fail("timeout_minutes", "must be greater than zero".into()));
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
                timeout: Duration::from_secs(t.timeout_minutes * 60),
            })
        })
        .collect()
}

/// The `{name}` placeholders in `text`.
pub fn placeholders(text: &str) -> Vec<&str> {
    text.split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
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
    }
}
