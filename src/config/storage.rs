//! Where durable state lives: a folder (`COMPUTEBRIDGE_STATE_DIR` or `[state] dir`), else the
//! Function app's own storage account as the host names it (`AzureWebJobsStorage` as a connection
//! string, or the identity-based `AzureWebJobsStorage__blobServiceUri` /
//! `AzureWebJobsStorage__accountName`), else a folder under the system temp directory.

use std::path::PathBuf;

use super::{ConfigError, env};
use crate::azure::cloud::Cloud;
use crate::secret::Secret;

/// The well-known development storage account (Azurite's default).
const DEV_ACCOUNT: &str = "devstoreaccount1";
const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const DEFAULT_CONTAINER: &str = "computebridge-state";

#[derive(Debug, Clone)]
pub enum StateLocation {
    Folder(PathBuf),
    Blob(BlobState),
}

/// A blob container and how to authorize against it.
#[derive(Debug, Clone)]
pub struct BlobState {
    /// The blob service endpoint, without a trailing slash.
    pub endpoint: String,
    pub container: String,
    pub auth: BlobAuth,
}

#[derive(Debug, Clone)]
pub enum BlobAuth {
    /// Requests carry an account SAS signed with the key (connection strings with `AccountKey`).
    AccountKey { account: String, key: Secret },
    /// A SAS token given in the connection string.
    Sas(Secret),
    /// Entra ID tokens from the service's credential (identity-based connections).
    Identity,
}

type Var<'a> = &'a dyn Fn(&str) -> Option<String>;

pub(super) fn load_state(
    var: Var,
    file_dir: Option<PathBuf>,
    cloud: Cloud,
) -> Result<StateLocation, ConfigError> {
    if let Some(dir) = var(env::STATE_DIR).map(PathBuf::from).or(file_dir) {
        return Ok(StateLocation::Folder(dir));
    }
    let container = var(env::STATE_CONTAINER).unwrap_or_else(|| DEFAULT_CONTAINER.into());
    let valid_container = (3..=63).contains(&container.len())
        && container
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !container.starts_with('-')
        && !container.ends_with('-')
        && !container.contains("--");
    if !valid_container {
        return Err(ConfigError::new(
            env::STATE_CONTAINER,
            "must be a blob container name: 3-63 lower-case letters, digits and single dashes",
        ));
    }
    let blob = |endpoint: String, auth| {
        Ok(StateLocation::Blob(BlobState {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            container: container.clone(),
            auth,
        }))
    };
    if let Some(uri) = var(env::STORAGE_BLOB_URI) {
        if !uri.starts_with("https://") {
            return Err(ConfigError::new(
                env::STORAGE_BLOB_URI,
                "must be an https URL (tokens are sent only over https)",
            ));
        }
        return blob(uri, BlobAuth::Identity);
    }
    if let Some(account) = var(env::STORAGE_ACCOUNT_NAME) {
        return blob(
            format!("https://{account}.blob.{}", cloud.storage_suffix()),
            BlobAuth::Identity,
        );
    }
    match var(env::STORAGE) {
        Some(connection) => {
            let (endpoint, auth) = parse_connection_string(&connection, cloud)
                .map_err(|e| ConfigError::new(env::STORAGE, e))?;
            blob(endpoint, auth)
        }
        None => Ok(StateLocation::Folder(
            std::env::temp_dir().join("computebridge-state"),
        )),
    }
}

/// A storage connection string: `UseDevelopmentStorage=true`, or `AccountName` with `AccountKey`
/// or `SharedAccessSignature`, and `BlobEndpoint` or `DefaultEndpointsProtocol`/`EndpointSuffix`.
/// Errors never quote the string (it holds a key).
fn parse_connection_string(text: &str, cloud: Cloud) -> Result<(String, BlobAuth), String> {
    let mut parts = std::collections::BTreeMap::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = part
            .split_once('=')
            .ok_or("is not a connection string (expected Name=value pairs separated by ';')")?;
        parts.insert(name.to_ascii_lowercase(), value.to_owned());
    }
    if parts.get("usedevelopmentstorage").map(String::as_str) == Some("true") {
        let host = parts
            .get("developmentstorageproxyuri")
            .map(|u| u.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| "http://127.0.0.1".into());
        return Ok((
            format!("{host}:10000/{DEV_ACCOUNT}"),
            BlobAuth::AccountKey {
                account: DEV_ACCOUNT.into(),
                key: Secret::new(DEV_KEY),
            },
        ));
    }
    let account = parts.get("accountname").cloned();
    let endpoint = match (parts.get("blobendpoint"), &account) {
        (Some(endpoint), _) => endpoint.clone(),
        (None, Some(account)) => format!(
            "{}://{account}.blob.{}",
            parts
                .get("defaultendpointsprotocol")
                .map(String::as_str)
                .unwrap_or("https"),
            parts
                .get("endpointsuffix")
                .map(String::as_str)
                .unwrap_or(cloud.storage_suffix())
        ),
        (None, None) => return Err("names neither AccountName nor BlobEndpoint".into()),
    };
    let auth = match (
        parts.remove("accountkey"),
        parts.remove("sharedaccesssignature"),
    ) {
        (Some(key), _) => BlobAuth::AccountKey {
            account: account.ok_or("has an AccountKey but no AccountName")?,
            key: Secret::new(key),
        },
        (None, Some(sas)) => BlobAuth::Sas(Secret::new(sas.trim_start_matches('?'))),
        (None, None) => {
            return Err("has neither AccountKey nor SharedAccessSignature".into());
        }
    };
    Ok((endpoint, auth))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<StateLocation, ConfigError> {
        let lookup = |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        };
        load_state(&lookup, None, Cloud::Public)
    }

    fn blob(vars: &[(&str, &str)]) -> BlobState {
        match load(vars).unwrap() {
            StateLocation::Blob(blob) => blob,
            other => panic!("expected blob state, got {other:?}"),
        }
    }

    #[test]
    fn the_host_storage_settings_choose_the_state_location() {
        let dev = blob(&[(env::STORAGE, "UseDevelopmentStorage=true")]);
        assert_eq!(dev.endpoint, "http://127.0.0.1:10000/devstoreaccount1");
        assert_eq!(dev.container, "computebridge-state");
        let real = blob(&[
            (
                env::STORAGE,
                "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.windows.net",
            ),
            (env::STATE_CONTAINER, "runs-prod"),
        ]);
        assert_eq!(
            (real.endpoint.as_str(), real.container.as_str()),
            ("https://acct.blob.core.windows.net", "runs-prod")
        );
        assert!(matches!(real.auth, BlobAuth::AccountKey { ref account, .. } if account == "acct"));
        let identity = blob(&[(env::STORAGE_ACCOUNT_NAME, "acct")]);
        assert!(matches!(identity.auth, BlobAuth::Identity));
        assert_eq!(identity.endpoint, "https://acct.blob.core.windows.net");
        // A folder wins over the storage account; nothing at all means a temp folder.
        assert!(matches!(
            load(&[
                (env::STATE_DIR, "/var/state"),
                (env::STORAGE, "UseDevelopmentStorage=true")
            ]),
            Ok(StateLocation::Folder(_))
        ));
        assert!(matches!(load(&[]), Ok(StateLocation::Folder(_))));
    }

    #[test]
    fn bad_storage_settings_are_refused_without_quoting_keys() {
        for (vars, key) in [
            (
                vec![(env::STORAGE, "AccountName=a;AccountKey")],
                env::STORAGE,
            ),
            (
                vec![(env::STORAGE, "AccountKey=c2VjcmV0LWtleQ==")],
                env::STORAGE,
            ),
            (vec![(env::STORAGE, "AccountName=a")], env::STORAGE),
            (
                vec![(env::STORAGE_BLOB_URI, "http://a.blob.core.windows.net")],
                env::STORAGE_BLOB_URI,
            ),
            (
                vec![
                    (env::STORAGE, "UseDevelopmentStorage=true"),
                    (env::STATE_CONTAINER, "Bad_Name"),
                ],
                env::STATE_CONTAINER,
            ),
        ] {
            let error = load(&vars).unwrap_err();
            assert_eq!(error.key, key, "{vars:?}");
            assert!(!error.to_string().contains("c2VjcmV0"), "{error}");
        }
    }
}
