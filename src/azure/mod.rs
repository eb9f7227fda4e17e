//! Azure access: the cloud, the one credential, and the one set of client options every Azure
//! client is built from (`transport` is the seam to the local emulator).
//!
//! - [`aci`]: the Container Instances client (container groups, logs) over ARM.
//! - [`batch`]: the Batch data-plane client (pools, nodes, resize, autoscale).
//! - [`cloud`]: endpoints and token scopes per sovereign cloud.
//! - [`transport`]: the HTTP client, and the emulator redirect.
//! - [`error`]: Azure's error code and message, out of any SDK error.
//! - [`rest`]: JSON over the pipeline for Batch and ARM, which have no official crate.

pub mod aci;
pub mod batch;
pub mod cloud;
pub mod error;
pub mod rest;
pub mod transport;

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, ExponentialRetryOptions, RetryOptions};
use azure_identity::{
    AzureCliCredential, AzureCliCredentialOptions, ClientSecretCredential,
    ClientSecretCredentialOptions, ManagedIdentityCredential, ManagedIdentityCredentialOptions,
    UserAssignedId, WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};

use crate::config::{AzureSettings, CredentialSettings};
use cloud::Cloud;
use error::AzureError;

/// Retries on 408/429/5xx and connection failures: at most this many, within this total time.
const MAX_RETRIES: u32 = 4;
const MAX_RETRY_TIME: Duration = Duration::from_secs(20);

/// What every Azure client is built from.
#[derive(Clone)]
pub struct Azure {
    pub cloud: Cloud,
    pub credential: Arc<dyn TokenCredential>,
    options: ClientOptions,
    /// Plain HTTP client for non-Azure calls (callbacks); same TLS stack.
    pub http: reqwest::Client,
}

impl Azure {
    /// Builds the credential and client options. Fails only on settings the SDK refuses (a bad
    /// tenant id, say); nothing is requested from Azure here.
    pub fn new(settings: &AzureSettings) -> Result<Azure, AzureError> {
        let http = transport::http_client();
        let options = ClientOptions {
            transport: Some(transport::transport(
                http.clone(),
                settings.cloud,
                settings.emulator,
            )),
            retry: RetryOptions::exponential(ExponentialRetryOptions {
                initial_delay: azure_core::time::Duration::milliseconds(250),
                max_retries: MAX_RETRIES,
                max_total_elapsed: azure_core::time::Duration::seconds(
                    MAX_RETRY_TIME.as_secs() as i64
                ),
                max_delay: azure_core::time::Duration::seconds(8),
            }),
            cloud: Some(settings.cloud.configuration()),
            ..ClientOptions::default()
        };
        let credential = credential(&settings.credential, options.clone())
            .map_err(|e| AzureError::from_sdk("credential", &e))?;
        Ok(Azure {
            cloud: settings.cloud,
            credential,
            options,
            http,
        })
    }

    /// Client options for a new client; every client gets the same transport and retry policy.
    pub fn client_options(&self) -> ClientOptions {
        self.options.clone()
    }

    /// Acquires a token for `scope` (the credential caches it); used by deep health.
    pub async fn check_token(&self, scope: &str) -> Result<(), AzureError> {
        self.credential
            .get_token(&[scope], None)
            .await
            .map(|_| ())
            .map_err(|e| AzureError::from_sdk("token", &e))
    }
}

fn credential(
    settings: &CredentialSettings,
    client_options: ClientOptions,
) -> azure_core::Result<Arc<dyn TokenCredential>> {
    Ok(match settings {
        CredentialSettings::ManagedIdentity { client_id } => {
            ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                client_options,
            }))?
        }
        CredentialSettings::ClientSecret {
            tenant_id,
            client_id,
            secret,
        } => ClientSecretCredential::new(
            tenant_id,
            client_id.clone(),
            secret.expose().to_owned().into(),
            Some(ClientSecretCredentialOptions { client_options }),
        )?,
        CredentialSettings::WorkloadIdentity {
            tenant_id,
            client_id,
            token_file,
        } => {
            let mut options = WorkloadIdentityCredentialOptions {
                client_id: Some(client_id.clone()),
                tenant_id: Some(tenant_id.clone()),
                token_file_path: Some(token_file.clone()),
                ..Default::default()
            };
            options.credential_options.client_options = client_options;
            WorkloadIdentityCredential::new(Some(options))?
        }
        CredentialSettings::AzureCli { tenant_id } => {
            AzureCliCredential::new(Some(AzureCliCredentialOptions {
                tenant_id: tenant_id.clone(),
                ..Default::default()
            }))?
        }
    })
}
