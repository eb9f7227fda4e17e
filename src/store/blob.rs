//! The Blob storage backend: one block blob per document in the Function app's storage account,
//! with Blob's own ETags and `If-Match` / `If-None-Match: *` for conditional writes, so every
//! instance of a scaled-out app shares the state safely.
//!
//! Authorization follows the connection settings: Entra ID tokens from the service's credential,
//! a SAS from the connection string, or an account SAS signed here with the account key (the
//! official crate has no shared-key credential) and re-signed before it expires.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, Etag, RequestContent, StatusCode, Url};
use azure_storage_blob::models::{
    BlobClientDeleteOptions, BlobContainerClientListBlobsOptions, BlockBlobClientUploadOptions,
};
use azure_storage_blob::{BlobContainerClient, BlobContainerClientOptions};
use futures::TryStreamExt;
use time::OffsetDateTime;

use super::sas;
use super::{Backend, Condition, StoreError};
use crate::azure::error::AzureError;
use crate::config::{BlobAuth, BlobState};

/// How long a signed account SAS is valid, and how long before expiry it is re-signed.
const SAS_LIFETIME: Duration = Duration::from_secs(24 * 3600);
const SAS_RENEW_BEFORE: Duration = Duration::from_secs(3600);

pub struct BlobStore {
    settings: BlobState,
    options: ClientOptions,
    credential: Arc<dyn TokenCredential>,
    /// The client and, for a signed SAS, when it expires.
    client: Mutex<Option<(Arc<BlobContainerClient>, Option<OffsetDateTime>)>>,
}

impl BlobStore {
    pub fn new(
        settings: BlobState,
        options: ClientOptions,
        credential: Arc<dyn TokenCredential>,
    ) -> BlobStore {
        BlobStore {
            settings,
            options,
            credential,
            client: Mutex::new(None),
        }
    }

    /// The container client, re-signing the account SAS when it is about to expire.
    fn container(&self) -> Result<Arc<BlobContainerClient>, StoreError> {
        let mut cached = self.client.lock().unwrap_or_else(|e| e.into_inner());
        let now = OffsetDateTime::now_utc();
        if let Some((client, expiry)) = cached.as_ref()
            && expiry.is_none_or(|at| at - SAS_RENEW_BEFORE > now)
        {
            return Ok(client.clone());
        }
        let base = format!("{}/{}", self.settings.endpoint, self.settings.container);
        let (url, credential, expiry) = match &self.settings.auth {
            BlobAuth::Identity => (base, Some(self.credential.clone()), None),
            BlobAuth::Sas(token) => (format!("{base}?{}", token.expose()), None, None),
            BlobAuth::AccountKey { account, key } => {
                let expiry = now + SAS_LIFETIME;
                let token = sas::account_sas(account, key, expiry, base.starts_with("http://"))
                    .map_err(StoreError::Unavailable)?;
                (format!("{base}?{token}"), None, Some(expiry))
            }
        };
        let url = Url::parse(&url).map_err(|_| {
            StoreError::Unavailable(format!("'{}' is not a blob endpoint", self.describe()))
        })?;
        let options = BlobContainerClientOptions {
            client_options: self.options.clone(),
            ..Default::default()
        };
        let client = BlobContainerClient::new(url, credential, Some(options))
            .map(Arc::new)
            .map_err(|e| self.unavailable("cannot build the blob client", &e))?;
        *cached = Some((client.clone(), expiry));
        Ok(client)
    }

    /// An error as Azure worded it, without the SAS signature a transport error may quote.
    fn unavailable(&self, context: &str, error: &azure_core::Error) -> StoreError {
        let error = AzureError::from_sdk(context, error);
        StoreError::Unavailable(format!(
            "{}: {} {}",
            self.describe(),
            error.code,
            sas::redact(&error.message)
        ))
    }

    async fn create_container(&self) -> Result<(), StoreError> {
        match self.container()?.create(None).await {
            Ok(_) => Ok(()),
            Err(e) if e.http_status() == Some(StatusCode::Conflict) => Ok(()),
            Err(e) => Err(self.unavailable("cannot create the state container", &e)),
        }
    }

    async fn upload(
        &self,
        key: &str,
        bytes: &[u8],
        condition: &Condition,
    ) -> Result<String, azure_core::Error> {
        let mut options = BlockBlobClientUploadOptions {
            blob_content_type: Some("application/json".into()),
            ..Default::default()
        };
        match condition {
            Condition::New => options.if_none_match = Some(Etag::from("*")),
            Condition::Matches(etag) => options.if_match = Some(Etag::from(etag.as_str())),
        }
        let client = self.container().map_err(|e| {
            azure_core::Error::with_message(azure_core::error::ErrorKind::Other, e.to_string())
        })?;
        let result = client
            .blob_client(key)
            .block_blob_client()
            .upload(RequestContent::from(bytes.to_vec()), Some(options))
            .await?;
        Ok(result.etag.map(|e| e.to_string()).unwrap_or_default())
    }
}

fn is_conflict(error: &azure_core::Error) -> bool {
    matches!(
        error.http_status(),
        Some(StatusCode::Conflict | StatusCode::PreconditionFailed)
    )
}

fn is_missing_container(error: &azure_core::Error) -> bool {
    AzureError::from_sdk("", error).code == "ContainerNotFound"
}

#[async_trait::async_trait]
impl Backend for BlobStore {
    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, String)>, StoreError> {
        let blob = self.container()?.blob_client(key);
        match blob.download(None).await {
            Ok(result) => {
                let etag = result
                    .properties
                    .etag
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                let bytes = result
                    .body
                    .collect()
                    .await
                    .map_err(|e| self.unavailable("cannot read a state document", &e))?;
                Ok(Some((bytes.to_vec(), etag)))
            }
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => Ok(None),
            Err(e) => Err(self.unavailable("cannot read a state document", &e)),
        }
    }

    async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        condition: Condition,
    ) -> Result<String, StoreError> {
        let result = match self.upload(key, &bytes, &condition).await {
            Err(e) if is_missing_container(&e) => {
                self.create_container().await?;
                self.upload(key, &bytes, &condition).await
            }
            other => other,
        };
        match result {
            Ok(etag) => Ok(etag),
            Err(e) if is_conflict(&e) => Err(StoreError::Conflict),
            Err(e) => Err(self.unavailable("cannot write a state document", &e)),
        }
    }

    async fn delete(&self, key: &str, etag: &str) -> Result<(), StoreError> {
        let options = BlobClientDeleteOptions {
            if_match: Some(Etag::from(etag)),
            ..Default::default()
        };
        match self
            .container()?
            .blob_client(key)
            .delete(Some(options))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => Ok(()),
            Err(e) if is_conflict(&e) => Err(StoreError::Conflict),
            Err(e) => Err(self.unavailable("cannot delete a state document", &e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let options = BlobContainerClientListBlobsOptions {
            prefix: Some(prefix.to_owned()),
            ..Default::default()
        };
        let mut pager = self
            .container()?
            .list_blobs(Some(options))
            .map_err(|e| self.unavailable("cannot list state documents", &e))?;
        let mut keys = Vec::new();
        loop {
            match pager.try_next().await {
                Ok(Some(item)) => keys.extend(item.name),
                Ok(None) => return Ok(keys),
                Err(e) if is_missing_container(&e) => return Ok(Vec::new()),
                Err(e) => return Err(self.unavailable("cannot list state documents", &e)),
            }
        }
    }

    fn describe(&self) -> String {
        format!(
            "blob container {}/{}",
            self.settings.endpoint, self.settings.container
        )
    }
}
