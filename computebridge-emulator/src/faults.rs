//! Fault injection: rules that make matching requests fail (a status such as 429 with
//! `Retry-After`, 500, 503), wait, or lose their connection, a given number of times.

use serde::{Deserialize, Serialize};

use crate::http::Incoming;

/// One rule, as posted to `/_emulator/faults`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    #[serde(default)]
    pub id: String,
    #[serde(default, rename = "match")]
    pub matcher: FaultMatch,
    pub action: FaultAction,
    /// How many matching requests it affects; `0` means every one until removed.
    #[serde(default = "one")]
    pub times: u32,
    #[serde(default)]
    pub hits: u32,
}

fn one() -> u32 {
    1
}

/// Which requests a rule matches; every given field must match (substrings, no case).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultMatch {
    pub method: Option<String>,
    pub host: Option<String>,
    pub path: Option<String>,
    /// `arm`, `batch`, `keyvault`, `msi` or `entra`.
    pub service: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultAction {
    /// Answer with this status and the service's own error body.
    pub status: Option<u16>,
    pub retry_after: Option<u64>,
    pub code: Option<String>,
    pub message: Option<String>,
    /// Wait this long (real milliseconds) first.
    pub delay_ms: Option<u64>,
    /// Close the connection without answering.
    #[serde(default)]
    pub drop: bool,
}

impl FaultMatch {
    fn matches(&self, service: &str, request: &Incoming) -> bool {
        let contains = |pattern: &Option<String>, value: &str| {
            pattern
                .as_ref()
                .is_none_or(|p| value.to_ascii_lowercase().contains(&p.to_ascii_lowercase()))
        };
        self.method
            .as_ref()
            .is_none_or(|m| m.eq_ignore_ascii_case(request.method.as_str()))
            && contains(&self.host, &request.host)
            && contains(&self.path, &request.path)
            && self
                .service
                .as_ref()
                .is_none_or(|s| s.eq_ignore_ascii_case(service))
    }
}

/// Finds the first live rule matching the request, counts the hit and returns its action.
pub fn take(rules: &mut Vec<Fault>, service: &str, request: &Incoming) -> Option<FaultAction> {
    let index = rules
        .iter()
        .position(|rule| rule.matcher.matches(service, request))?;
    let rule = &mut rules[index];
    rule.hits += 1;
    let action = rule.action.clone();
    if rule.times != 0 && rule.hits >= rule.times {
        rules.remove(index);
    }
    Some(action)
}
