//! `StateStore`: durable JSON documents (runs, pending callbacks, pool operations) with
//! conditional writes, so several instances and timers racing each other never lose an update.
//!
//! Every write names the version it replaces (an ETag) or insists the document is new; a stale
//! writer gets [`StoreError::Conflict`] and must re-read. Backends: [`local`] (a folder, for
//! standalone and `dev`) and [`blob`] (the Function app's storage account).

pub mod blob;
pub mod local;
mod sas;

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// The document changed (or exists, or is gone) since it was read.
    #[error("the document changed concurrently")]
    Conflict,
    #[error("state storage failed: {0}")]
    Unavailable(String),
}

/// What a write requires of the current document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// It must not exist.
    New,
    /// It must still be this version.
    Matches(String),
}

/// A document and the version it was read at.
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    pub value: T,
    pub etag: String,
}

#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, String)>, StoreError>;
    /// Writes if `condition` holds; returns the new ETag.
    async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        condition: Condition,
    ) -> Result<String, StoreError>;
    /// Deletes if the document is still at `etag`; a missing document is not an error.
    async fn delete(&self, key: &str, etag: &str) -> Result<(), StoreError>;
    /// Keys under `prefix` (which ends in `/`).
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    /// Where the state lives, for logs and health.
    fn describe(&self) -> String;
}

#[derive(Clone)]
pub struct StateStore(Arc<dyn Backend>);

impl StateStore {
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        StateStore(backend)
    }

    pub fn describe(&self) -> String {
        self.0.describe()
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<Versioned<T>>, StoreError> {
        match self.0.get(key).await? {
            None => Ok(None),
            Some((bytes, etag)) => {
                let value = serde_json::from_slice(&bytes).map_err(|e| {
                    StoreError::Unavailable(format!("document {key} is not readable: {e}"))
                })?;
                Ok(Some(Versioned { value, etag }))
            }
        }
    }

    pub async fn put<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        condition: Condition,
    ) -> Result<String, StoreError> {
        let bytes =
            serde_json::to_vec(value).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        self.0.put(key, bytes, condition).await
    }

    pub async fn delete(&self, key: &str, etag: &str) -> Result<(), StoreError> {
        self.0.delete(key, etag).await
    }

    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.0.list(prefix).await
    }
}
