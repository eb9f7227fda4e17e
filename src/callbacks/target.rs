//! `CallbackUrl`: an ADF `callBackUri` checked before any work is done. It must be an absolute
//! `https://` URL (plain `http://` only when configured for local testing) without user info,
//! whose host matches the allowlist (`host` exactly, or `*.suffix` for any subdomain).

use std::fmt;

use crate::config::CallbackSettings;

#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct CallbackUrl(String);

impl CallbackUrl {
    pub fn parse(text: &str, settings: &CallbackSettings) -> Result<CallbackUrl, String> {
        let text = text.trim();
        let rest = if let Some(rest) = text.strip_prefix("https://") {
            rest
        } else if let Some(rest) = text.strip_prefix("http://").filter(|_| settings.allow_http) {
            rest
        } else {
            return Err("callBackUri must be an https:// URL".into());
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.contains('@') {
            return Err("callBackUri must not carry user information".into());
        }
        let host = match authority.rsplit_once(':') {
            Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
            _ => authority,
        }
        .to_ascii_lowercase();
        if host.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("callBackUri is not a valid URL".into());
        }
        if !settings
            .allowed_hosts
            .iter()
            .any(|pattern| host_matches(pattern, &host))
        {
            return Err(format!(
                "callBackUri host '{host}' is not on the callback allowlist ({})",
                settings.allowed_hosts.join(", ")
            ));
        }
        Ok(CallbackUrl(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Scheme, host and path only: callback URLs carry signatures in their query.
    pub fn redacted(&self) -> String {
        self.0
            .split(['?', '#'])
            .next()
            .unwrap_or_default()
            .to_owned()
    }
}

fn host_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim().to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => host.len() > suffix.len() + 1 && host.ends_with(&format!(".{suffix}")),
        None => pattern == host,
    }
}

impl fmt::Debug for CallbackUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CallbackUrl({})", self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings(allow_http: bool) -> CallbackSettings {
        CallbackSettings {
            allowed_hosts: vec!["*.clouddatahub.net".into(), "127.0.0.1".into()],
            allow_http,
            retry_for: Duration::from_secs(60),
        }
    }

    #[test]
    fn only_allowlisted_hosts_pass() {
        let ok = CallbackUrl::parse(
            "https://westeurope.frontend.clouddatahub.net/workflow/callback/abc?sig=secret",
            &settings(false),
        )
        .unwrap();
        assert_eq!(
            ok.redacted(),
            "https://westeurope.frontend.clouddatahub.net/workflow/callback/abc"
        );
        assert!(!format!("{ok:?}").contains("secret"));
        assert!(CallbackUrl::parse("http://127.0.0.1:9000/cb", &settings(true)).is_ok());
        for bad in [
            "http://127.0.0.1:9000/cb",
            "https://clouddatahub.net/x",
            "https://evil.com/x.clouddatahub.net",
            "https://evilclouddatahub.net/x",
            "https://user@a.clouddatahub.net/x",
            "https://a.clouddatahub.net.evil.com/x",
            "ftp://a.clouddatahub.net/x",
            "not a url",
        ] {
            assert!(CallbackUrl::parse(bad, &settings(false)).is_err(), "{bad}");
        }
    }
}
