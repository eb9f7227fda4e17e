//! The `[pools.<name>]`, `[formulas]`, `[callbacks]` and `[state]` settings: which Batch pools
//! callers may touch and within which limits, each pool's scale-down policy, named autoscale
//! formulas, where callbacks may go, and where durable state lives.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use time::{Time, Weekday};

use super::{ConfigError, env};

/// ADF's WebHook callback host (`https://{region}.frontend.clouddatahub.net/...`).
pub const DEFAULT_CALLBACK_HOSTS: &[&str] = &["*.clouddatahub.net"];
/// How long an undelivered callback keeps being retried.
pub const DEFAULT_CALLBACK_RETRY: Duration = Duration::from_secs(3600);

/// A Batch pool callers may resize, by its caller-facing name.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub name: String,
    pub account_url: String,
    pub pool_id: String,
    pub max_dedicated_nodes: u32,
    pub max_low_priority_nodes: u32,
    pub scale_down: Option<ScaleDownPolicy>,
}

/// When the `ScaleDown` timer shrinks the pool.
#[derive(Debug, Clone)]
pub struct ScaleDownPolicy {
    /// All nodes idle at least this long.
    pub idle: Duration,
    /// Dedicated nodes to keep; low-priority nodes go to zero.
    pub min_nodes: u32,
    pub keep_warm: Vec<KeepWarm>,
}

/// A UTC window in which the pool keeps at least `min_nodes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepWarm {
    pub days: Vec<Weekday>,
    pub from: Time,
    pub to: Time,
    pub min_nodes: u32,
}

#[derive(Debug, Clone)]
pub struct CallbackSettings {
    /// Host patterns: `host.example.com` or `*.example.com`.
    pub allowed_hosts: Vec<String>,
    /// Permit `http://` callback URLs (local testing only).
    pub allow_http: bool,
    pub retry_for: Duration,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FilePool {
    account_url: String,
    pool_id: String,
    #[serde(default)]
    max_dedicated_nodes: u32,
    #[serde(default)]
    max_low_priority_nodes: u32,
    scale_down: Option<FileScaleDown>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileScaleDown {
    idle_minutes: u64,
    #[serde(default)]
    min_nodes: u32,
    #[serde(default)]
    keep_warm: Vec<FileKeepWarm>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKeepWarm {
    /// `mon-fri`, `sat,sun`, `daily`.
    days: String,
    from: String,
    to: String,
    min_nodes: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileCallbacks {
    allowed_hosts: Option<Vec<String>>,
    allow_http: Option<bool>,
    retry_minutes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileState {
    pub(super) dir: Option<PathBuf>,
}

type Var<'a> = &'a dyn Fn(&str) -> Option<String>;

pub(super) fn load_pools(
    file: BTreeMap<String, FilePool>,
    batch_suffix: &str,
) -> Result<Vec<PoolSettings>, ConfigError> {
    file.into_iter()
        .map(|(name, pool)| {
            let key = format!("pools.{name}");
            check_name(&key, &name)?;
            let url = pool.account_url.trim_end_matches('/').to_ascii_lowercase();
            let host = url.strip_prefix("https://").unwrap_or_default();
            if !host.ends_with(&format!(".{batch_suffix}")) || host.contains('/') {
                return Err(ConfigError::new(
                    format!("{key}.account_url"),
                    format!(
                        "'{}' is not https://{{account}}.{{region}}.{batch_suffix}",
                        pool.account_url
                    ),
                ));
            }
            if pool.pool_id.is_empty() {
                return Err(ConfigError::new(
                    format!("{key}.pool_id"),
                    "must not be empty",
                ));
            }
            let scale_down = pool
                .scale_down
                .map(|policy| scale_down_policy(&format!("{key}.scale_down"), policy))
                .transpose()?;
            Ok(PoolSettings {
                name,
                account_url: url,
                pool_id: pool.pool_id,
                max_dedicated_nodes: pool.max_dedicated_nodes,
                max_low_priority_nodes: pool.max_low_priority_nodes,
                scale_down,
            })
        })
        .collect()
}

fn check_name(key: &str, name: &str) -> Result<(), ConfigError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(ConfigError::new(
            key,
            "names are 1-64 letters, digits, '-' or '_'",
        ))
    }
}

fn scale_down_policy(key: &str, policy: FileScaleDown) -> Result<ScaleDownPolicy, ConfigError> {
    let keep_warm = policy
        .keep_warm
        .into_iter()
        .enumerate()
        .map(|(i, window)| {
            let key = format!("{key}.keep_warm[{i}]");
            let from = parse_time(&window.from).map_err(|e| ConfigError::new(&key, e))?;
            let to = parse_time(&window.to).map_err(|e| ConfigError::new(&key, e))?;
            if to <= from {
                return Err(ConfigError::new(
                    &key,
                    "'to' must be after 'from' (UTC, same day)",
                ));
            }
            Ok(KeepWarm {
                days: parse_days(&window.days).map_err(|e| ConfigError::new(&key, e))?,
                from,
                to,
                min_nodes: window.min_nodes,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(ScaleDownPolicy {
        idle: Duration::from_secs(policy.idle_minutes * 60),
        min_nodes: policy.min_nodes,
        keep_warm,
    })
}

impl KeepWarm {
    /// Whether `at` (UTC) falls in the window.
    pub fn contains(&self, at: time::OffsetDateTime) -> bool {
        let at = at.to_offset(time::UtcOffset::UTC);
        self.days.contains(&at.weekday()) && self.from <= at.time() && at.time() < self.to
    }
}

fn parse_time(text: &str) -> Result<Time, String> {
    let (h, m) = text
        .trim()
        .split_once(':')
        .ok_or_else(|| format!("'{text}' is not HH:MM"))?;
    let parsed = (h.parse::<u8>(), m.parse::<u8>());
    match parsed {
        (Ok(h), Ok(m)) => Time::from_hms(h, m, 0).map_err(|_| format!("'{text}' is not HH:MM")),
        _ => Err(format!("'{text}' is not HH:MM")),
    }
}

const WEEK: [(&str, Weekday); 7] = [
    ("mon", Weekday::Monday),
    ("tue", Weekday::Tuesday),
    ("wed", Weekday::Wednesday),
    ("thu", Weekday::Thursday),
    ("fri", Weekday::Friday),
    ("sat", Weekday::Saturday),
    ("sun", Weekday::Sunday),
];

/// `daily`, `mon-fri`, `sat,sun`, `mon,wed-fri`.
fn parse_days(text: &str) -> Result<Vec<Weekday>, String> {
    let index = |name: &str| {
        WEEK.iter()
            .position(|(n, _)| *n == name.trim().to_ascii_lowercase().get(..3).unwrap_or(""))
            .ok_or_else(|| format!("'{name}' is not a day (mon..sun)"))
    };
    if text.trim().eq_ignore_ascii_case("daily") {
        return Ok(WEEK.iter().map(|(_, d)| *d).collect());
    }
    let mut days = Vec::new();
    for part in text.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (index(a)?, index(b)?);
                if b < a {
                    return Err(format!("'{part}' runs backwards"));
                }
                days.extend(WEEK[a..=b].iter().map(|(_, d)| *d));
            }
            None => days.push(WEEK[index(part)?].1),
        }
    }
    Ok(days)
}

pub(super) fn load_formulas(
    file: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    for (name, formula) in &file {
        check_name(&format!("formulas.{name}"), name)?;
        if formula.trim().is_empty() {
            return Err(ConfigError::new(format!("formulas.{name}"), "is empty"));
        }
    }
    Ok(file)
}

pub(super) fn load_callbacks(
    var: Var,
    file: FileCallbacks,
) -> Result<CallbackSettings, ConfigError> {
    let allowed_hosts = match var(env::CALLBACK_HOSTS) {
        Some(text) => text
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect(),
        None => file.allowed_hosts.unwrap_or_else(|| {
            DEFAULT_CALLBACK_HOSTS
                .iter()
                .map(|h| h.to_string())
                .collect()
        }),
    };
    let allow_http = match var(env::CALLBACK_ALLOW_HTTP).as_deref().map(str::trim) {
        Some("true" | "1") => true,
        Some("false" | "0") => false,
        Some(other) => {
            return Err(ConfigError::new(
                env::CALLBACK_ALLOW_HTTP,
                format!("'{other}' is not true or false"),
            ));
        }
        None => file.allow_http.unwrap_or(false),
    };
    Ok(CallbackSettings {
        allowed_hosts,
        allow_http,
        retry_for: file
            .retry_minutes
            .map(|m| Duration::from_secs(m * 60))
            .unwrap_or(DEFAULT_CALLBACK_RETRY),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_days_and_windows() {
        assert_eq!(parse_days("mon-fri").unwrap().len(), 5);
        assert_eq!(
            parse_days("sat,sun").unwrap(),
            [Weekday::Saturday, Weekday::Sunday]
        );
        assert_eq!(parse_days("daily").unwrap().len(), 7);
        assert!(parse_days("fri-mon").is_err());
        assert!(parse_days("someday").is_err());
        let window = KeepWarm {
            days: parse_days("mon-fri").unwrap(),
            from: parse_time("06:00").unwrap(),
            to: parse_time("07:00").unwrap(),
            min_nodes: 1,
        };
        // 2026-11-23 is a Monday.
        assert!(window.contains(time::macros::datetime!(2026-11-23 06:30 UTC)));
        assert!(!window.contains(time::macros::datetime!(2026-11-23 07:00 UTC)));
        assert!(!window.contains(time::macros::datetime!(2026-11-22 06:30 UTC)));
        assert!(parse_time("25:00").is_err());
    }
}
