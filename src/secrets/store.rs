//! `SecretStore`: resolves Key Vault references at run time, with a cache.
//!
//! A value is read on first use and kept for the TTL; a use in the last quarter of the TTL
//! refreshes it in the background, so callers rarely wait on Key Vault. When Key Vault cannot be
//! reached (no answer, 429, 5xx) the last good value keeps serving for the grace period, with a
//! warning, and Key Vault is tried again at most every [`OUTAGE_RETRY`]. A missing, disabled or
//! forbidden secret is an error naming the vault and secret, never the value.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use azure_core::http::{ExponentialRetryOptions, RetryOptions};
use azure_security_keyvault_secrets::models::SecretClientGetSecretOptions;
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};

use crate::azure::Azure;
use crate::azure::error::AzureError;
use crate::config::SecretCacheSettings;
use crate::secret::Secret;
use crate::secrets::reference::{SecretRef, SecretSetting};

/// During an outage, how often a stale value's owner tries Key Vault again.
const OUTAGE_RETRY: Duration = Duration::from_secs(15);

/// A secret that could not be resolved: which one, and Azure's answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("Key Vault secret {reference}: {error}")]
pub struct SecretError {
    pub reference: Box<SecretRef>,
    pub error: AzureError,
}

#[derive(Clone)]
pub struct SecretStore(Arc<Inner>);

struct Inner {
    azure: Azure,
    settings: SecretCacheSettings,
    clients: Mutex<HashMap<String, Arc<SecretClient>>>,
    entries: Mutex<HashMap<SecretRef, Entry>>,
    /// One fetch at a time per secret: concurrent first uses wait for the same answer.
    fetches: Mutex<HashMap<SecretRef, Arc<tokio::sync::Mutex<()>>>>,
}

#[derive(Clone)]
struct Entry {
    value: Secret,
    fetched: Instant,
    /// Set while Key Vault is unreachable: no new attempt before this instant.
    quiet_until: Option<Instant>,
    refreshing: bool,
}

enum Cached {
    Fresh(Secret),
    Stale(Entry),
    Missing,
}

impl SecretStore {
    pub fn new(azure: Azure, settings: SecretCacheSettings) -> Self {
        SecretStore(Arc::new(Inner {
            azure,
            settings,
            clients: Mutex::default(),
            entries: Mutex::default(),
            fetches: Mutex::default(),
        }))
    }

    /// The setting's value: itself, or the referenced secret.
    pub async fn resolve(&self, setting: &SecretSetting) -> Result<Secret, SecretError> {
        match setting {
            SecretSetting::Value(secret) => Ok(secret.clone()),
            SecretSetting::KeyVault(reference) => self.get(reference).await,
        }
    }

    /// The referenced secret, from the cache when it is fresh enough.
    pub async fn get(&self, reference: &SecretRef) -> Result<Secret, SecretError> {
        if let Cached::Fresh(value) = self.cached(reference) {
            return Ok(value);
        }
        let gate = {
            let mut fetches = self.0.fetches.lock().expect("fetch gates poisoned");
            fetches.entry(reference.clone()).or_default().clone()
        };
        let _turn = gate.lock().await;
        let stale = match self.cached(reference) {
            Cached::Fresh(value) => return Ok(value),
            Cached::Stale(entry) => Some(entry),
            Cached::Missing => None,
        };
        match self.fetch(reference).await {
            Ok(value) => {
                self.store(reference, value.clone());
                Ok(value)
            }
            Err(error) => self.serve_stale(reference, stale, error),
        }
    }

    /// Reads the referenced secret from Key Vault now, bypassing the cache (deep health).
    pub async fn check(&self, reference: &SecretRef) -> Result<(), SecretError> {
        self.fetch(reference)
            .await
            .map(|value| self.store(reference, value))
    }

    fn cached(&self, reference: &SecretRef) -> Cached {
        let ttl = self.0.settings.ttl;
        let mut entries = self.0.entries.lock().expect("secret cache poisoned");
        let Some(entry) = entries.get_mut(reference) else {
            return Cached::Missing;
        };
        let age = entry.fetched.elapsed();
        let quiet = entry.quiet_until.is_some_and(|t| Instant::now() < t)
            && age < ttl + self.0.settings.grace;
        if age >= ttl && !quiet {
            return Cached::Stale(entry.clone());
        }
        if age >= ttl - ttl / 4 && entry.quiet_until.is_none() && !entry.refreshing {
            entry.refreshing = true;
            let store = self.clone();
            let reference = reference.clone();
            tokio::spawn(async move { store.refresh(reference).await });
        }
        Cached::Fresh(entry.value.clone())
    }

    async fn refresh(&self, reference: SecretRef) {
        match self.fetch(&reference).await {
            Ok(value) => self.store(&reference, value),
            Err(error) => {
                let stale = self
                    .0
                    .entries
                    .lock()
                    .expect("secret cache poisoned")
                    .get(&reference)
                    .cloned();
                // Whatever the outcome, the entry is no longer being refreshed.
                let _ = self.serve_stale(&reference, stale, error);
            }
        }
    }

    fn store(&self, reference: &SecretRef, value: Secret) {
        self.0
            .entries
            .lock()
            .expect("secret cache poisoned")
            .insert(
                reference.clone(),
                Entry {
                    value,
                    fetched: Instant::now(),
                    quiet_until: None,
                    refreshing: false,
                },
            );
    }

    /// After a failed fetch: the stale value while Key Vault is unreachable and grace lasts.
    fn serve_stale(
        &self,
        reference: &SecretRef,
        stale: Option<Entry>,
        error: SecretError,
    ) -> Result<Secret, SecretError> {
        let limit = self.0.settings.ttl + self.0.settings.grace;
        let mut entries = self.0.entries.lock().expect("secret cache poisoned");
        if let Some(cached) = entries.get_mut(reference) {
            cached.refreshing = false;
        }
        match stale {
            Some(entry) if error.error.is_transient() && entry.fetched.elapsed() < limit => {
                let left = limit - entry.fetched.elapsed();
                tracing::warn!(
                    secret = %reference,
                    error.code = %error.error.code,
                    error.message = %error.error.message,
                    grace_left_seconds = left.as_secs(),
                    "Key Vault is unreachable; serving the last good value of the secret"
                );
                if let Some(cached) = entries.get_mut(reference) {
                    cached.quiet_until = Some(Instant::now() + OUTAGE_RETRY.min(left));
                }
                Ok(entry.value)
            }
            _ => Err(error),
        }
    }

    async fn fetch(&self, reference: &SecretRef) -> Result<Secret, SecretError> {
        let fail = |error: AzureError| SecretError {
            reference: Box::new(reference.clone()),
            error,
        };
        let client = self.client(&reference.vault_url).map_err(fail)?;
        let options = SecretClientGetSecretOptions {
            secret_version: reference.version.clone(),
            ..Default::default()
        };
        let response = client
            .get_secret(&reference.name, Some(options))
            .await
            .map_err(|e| fail(AzureError::from_sdk("Key Vault", &e)))?;
        let secret = response
            .into_model()
            .map_err(|e| fail(AzureError::from_sdk("Key Vault", &e)))?;
        let value = secret.value.ok_or_else(|| {
            fail(AzureError::new(
                None,
                "SecretHasNoValue",
                "Key Vault returned the secret without a value",
            ))
        })?;
        Ok(Secret::new(value))
    }

    fn client(&self, vault_url: &str) -> Result<Arc<SecretClient>, AzureError> {
        let mut clients = self.0.clients.lock().expect("secret clients poisoned");
        if let Some(client) = clients.get(vault_url) {
            return Ok(client.clone());
        }
        // The cache rides out outages, so reads give up sooner than other Azure calls.
        let mut client_options = self.0.azure.client_options();
        client_options.retry = RetryOptions::exponential(ExponentialRetryOptions {
            initial_delay: azure_core::time::Duration::milliseconds(200),
            max_retries: 2,
            max_total_elapsed: azure_core::time::Duration::seconds(5),
            max_delay: azure_core::time::Duration::seconds(2),
        });
        let options = SecretClientOptions {
            client_options,
            ..Default::default()
        };
        let client = SecretClient::new(vault_url, self.0.azure.credential.clone(), Some(options))
            .map(Arc::new)
            .map_err(|e| AzureError::from_sdk("Key Vault client", &e))?;
        clients.insert(vault_url.to_owned(), client.clone());
        Ok(client)
    }
}
