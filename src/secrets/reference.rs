//! Secret-valued settings: a literal value, or a Key Vault reference resolved at run time.
//!
//! A reference uses the syntax App Service and Functions app settings use, so one value works in
//! both places: `@Microsoft.KeyVault(SecretUri=https://{vault}.vault.azure.net/secrets/{name}[/{version}])`
//! or `@Microsoft.KeyVault(VaultName={vault};SecretName={name}[;SecretVersion={version}])`.

use std::fmt;

use crate::azure::cloud::Cloud;
use crate::secret::Secret;

/// One secret in one vault, optionally pinned to a version. Shows as `vault/name[/version]`;
/// it holds no value, so it may be logged and reported.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretRef {
    /// `https://{vault}.{suffix}`, no trailing slash.
    pub vault_url: String,
    pub name: String,
    pub version: Option<String>,
}

/// A setting whose value is secret.
#[derive(Debug, Clone)]
pub enum SecretSetting {
    Value(Secret),
    KeyVault(SecretRef),
}

impl SecretRef {
    /// The vault's host name, e.g. `ops.vault.azure.net`.
    pub fn vault_host(&self) -> &str {
        self.vault_url.trim_start_matches("https://")
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.vault_host(), self.name)?;
        if let Some(version) = &self.version {
            write!(f, "/{version}")?;
        }
        Ok(())
    }
}

impl SecretSetting {
    /// Parses a setting's text. Errors never quote the text, which may be a secret itself.
    pub fn parse(text: &str, cloud: Cloud) -> Result<SecretSetting, String> {
        let text = text.trim();
        let Some(inner) = text
            .strip_prefix("@Microsoft.KeyVault(")
            .and_then(|rest| rest.strip_suffix(')'))
        else {
            if text.starts_with("@Microsoft.KeyVault") {
                return Err("a Key Vault reference must be @Microsoft.KeyVault(...)".into());
            }
            return Ok(SecretSetting::Value(Secret::new(text)));
        };
        let mut uri = None;
        let (mut vault, mut name, mut version) = (None, None, None);
        for part in inner.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("Key Vault reference part '{part}' is not Key=Value"))?;
            let value = Some(value.trim().to_owned());
            match key.trim().to_ascii_lowercase().as_str() {
                "secreturi" => uri = value,
                "vaultname" => vault = value,
                "secretname" => name = value,
                "secretversion" => version = value,
                other => return Err(format!("Key Vault reference has an unknown part '{other}'")),
            }
        }
        let reference = match (uri, vault, name) {
            (Some(uri), None, None) => parse_secret_uri(&uri)?,
            (None, Some(vault), Some(name)) => {
                check_vault_name(&vault)?;
                SecretRef {
                    vault_url: format!("https://{vault}.{}", cloud.key_vault_suffix()),
                    name,
                    version: version.filter(|v| !v.is_empty()),
                }
            }
            _ => {
                return Err(
                    "a Key Vault reference needs either SecretUri, or VaultName and SecretName"
                        .into(),
                );
            }
        };
        check_secret_name(&reference.name)?;
        Ok(SecretSetting::KeyVault(reference))
    }

    pub fn reference(&self) -> Option<&SecretRef> {
        match self {
            SecretSetting::KeyVault(reference) => Some(reference),
            SecretSetting::Value(_) => None,
        }
    }
}

fn parse_secret_uri(uri: &str) -> Result<SecretRef, String> {
    let rest = uri
        .strip_prefix("https://")
        .ok_or_else(|| format!("SecretUri '{uri}' must start with https://"))?;
    let mut parts = rest.trim_end_matches('/').split('/');
    let host = parts.next().unwrap_or_default().to_ascii_lowercase();
    let (Some("secrets"), Some(name)) = (parts.next(), parts.next()) else {
        return Err(format!(
            "SecretUri '{uri}' is not https://{{vault}}/secrets/{{name}}[/{{version}}]"
        ));
    };
    let version = parts.next().map(str::to_owned);
    if host.is_empty() || parts.next().is_some() {
        return Err(format!("SecretUri '{uri}' has extra path segments"));
    }
    Ok(SecretRef {
        vault_url: format!("https://{host}"),
        name: name.to_owned(),
        version,
    })
}

/// Vault names: 3-24 characters, letters, digits and dashes.
fn check_vault_name(name: &str) -> Result<(), String> {
    check_name(name, 3..=24, "Key Vault name")
}

/// Secret names: 1-127 characters, letters, digits and dashes.
fn check_secret_name(name: &str) -> Result<(), String> {
    check_name(name, 1..=127, "Key Vault secret name")
}

fn check_name(
    name: &str,
    length: std::ops::RangeInclusive<usize>,
    what: &str,
) -> Result<(), String> {
    let valid =
        length.contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(format!("'{name}' is not a {what}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(text: &str) -> SecretRef {
        match SecretSetting::parse(text, Cloud::Public).unwrap() {
            SecretSetting::KeyVault(reference) => reference,
            SecretSetting::Value(_) => panic!("{text} parsed as a value"),
        }
    }

    #[test]
    fn parses_both_reference_forms() {
        let by_uri = reference(
            "@Microsoft.KeyVault(SecretUri=https://Ops.vault.azure.net/secrets/acr-password/)",
        );
        assert_eq!(by_uri.vault_url, "https://ops.vault.azure.net");
        assert_eq!(by_uri.name, "acr-password");
        assert_eq!(by_uri.version, None);
        let pinned = reference(
            "@Microsoft.KeyVault(VaultName=ops; SecretName=acr-password; SecretVersion=abc123)",
        );
        assert_eq!(pinned.vault_url, "https://ops.vault.azure.net");
        assert_eq!(pinned.version.as_deref(), Some("abc123"));
        assert_eq!(
            pinned.to_string(),
            "ops.vault.azure.net/acr-password/abc123"
        );
        let china = SecretSetting::parse(
            "@Microsoft.KeyVault(VaultName=ops;SecretName=x)",
            Cloud::China,
        )
        .unwrap();
        assert_eq!(
            china.reference().unwrap().vault_url,
            "https://ops.vault.azure.cn"
        );
    }

    #[test]
    fn plain_text_is_a_value_and_bad_references_are_refused() {
        assert!(matches!(
            SecretSetting::parse("s3cr3t-value", Cloud::Public),
            Ok(SecretSetting::Value(_))
        ));
        for bad in [
            "@Microsoft.KeyVault(SecretUri=http://ops.vault.azure.net/secrets/x)",
            "@Microsoft.KeyVault(SecretUri=https://ops.vault.azure.net/keys/x)",
            "@Microsoft.KeyVault(VaultName=ops)",
            "@Microsoft.KeyVault(VaultName=o;SecretName=x)",
            "@Microsoft.KeyVault(VaultName=ops;SecretName=bad_name)",
            "@Microsoft.KeyVault(Vault=ops)",
            "@Microsoft.KeyVault",
        ] {
            assert!(SecretSetting::parse(bad, Cloud::Public).is_err(), "{bad}");
        }
    }
}
