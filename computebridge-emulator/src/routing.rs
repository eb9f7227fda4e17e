//! Which emulated service a request is for, decided by the host the client meant (the product's
//! transport rewrites Azure hosts to the emulator and keeps the original `Host`). Requests to the
//! emulator's own address reach the control surface, `/msi/token`, and ARM paths.

/// The emulated service a request is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Control,
    ManagedIdentity,
    Entra { tenant: String },
    KeyVault { vault: String },
    Arm,
    Batch { account: String },
    Unknown,
}

impl Target {
    /// The name used in the request log and in fault rules.
    pub fn service(&self) -> &'static str {
        match self {
            Target::Control => "control",
            Target::ManagedIdentity => "msi",
            Target::Entra { .. } => "entra",
            Target::KeyVault { .. } => "keyvault",
            Target::Arm => "arm",
            Target::Batch { .. } => "batch",
            Target::Unknown => "unknown",
        }
    }
}

const VAULT_SUFFIXES: [&str; 3] = [
    ".vault.azure.net",
    ".vault.azure.cn",
    ".vault.usgovcloudapi.net",
];
const BATCH_SUFFIXES: [&str; 3] = [
    ".batch.azure.com",
    ".batch.chinacloudapi.cn",
    ".batch.usgovcloudapi.net",
];
const ARM_HOSTS: [&str; 3] = [
    "management.azure.com",
    "management.chinacloudapi.cn",
    "management.usgovcloudapi.net",
];
const LOGIN_HOSTS: [&str; 4] = [
    "login.microsoftonline.com",
    "login.chinacloudapi.cn",
    "login.microsoftonline.us",
    "login.windows.net",
];

pub const CONTROL_PREFIX: &str = "/_emulator";

pub fn classify(host: &str, path: &str) -> Target {
    if path == CONTROL_PREFIX || path.starts_with("/_emulator/") {
        return Target::Control;
    }
    if path == "/msi/token" || path == "/msi/token/" {
        return Target::ManagedIdentity;
    }
    if let Some(vault) = VAULT_SUFFIXES.iter().find_map(|s| host.strip_suffix(s)) {
        return Target::KeyVault {
            vault: vault.to_owned(),
        };
    }
    if let Some(rest) = BATCH_SUFFIXES.iter().find_map(|s| host.strip_suffix(s)) {
        let account = rest.split('.').next().unwrap_or(rest);
        return Target::Batch {
            account: account.to_owned(),
        };
    }
    if LOGIN_HOSTS.contains(&host) {
        let mut segments = path.split('/').filter(|s| !s.is_empty());
        if let (Some(tenant), Some("oauth2"), Some("v2.0"), Some("token")) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) {
            return Target::Entra {
                tenant: tenant.to_owned(),
            };
        }
        return Target::Unknown;
    }
    if ARM_HOSTS.contains(&host) || path.starts_with("/subscriptions/") {
        return Target::Arm;
    }
    Target::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_choose_the_service() {
        let cases = [
            (
                "myvault.vault.azure.net",
                "/secrets/x",
                Target::KeyVault {
                    vault: "myvault".into(),
                },
            ),
            (
                "acct.westeurope.batch.azure.com",
                "/pools",
                Target::Batch {
                    account: "acct".into(),
                },
            ),
            ("management.azure.com", "/subscriptions/s/x", Target::Arm),
            ("127.0.0.1", "/subscriptions/s/x", Target::Arm),
            ("127.0.0.1", "/msi/token", Target::ManagedIdentity),
            ("anything", "/_emulator/seed", Target::Control),
            (
                "login.microsoftonline.com",
                "/tid/oauth2/v2.0/token",
                Target::Entra {
                    tenant: "tid".into(),
                },
            ),
            ("example.com", "/", Target::Unknown),
        ];
        for (host, path, expected) in cases {
            assert_eq!(classify(host, path), expected, "{host}{path}");
        }
    }
}
