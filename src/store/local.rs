//! The folder backend: one file per document, written to a temporary file and renamed into place.
//! The ETag is a hash of the content. Conditional writes are atomic within this process (one lock
//! for all writes); several processes must not share one folder, which is why Functions
//! deployments use Blob storage instead.

use std::path::{Path, PathBuf};

use tokio::sync::Mutex;

use super::{Backend, Condition, StoreError};

pub struct LocalStore {
    root: PathBuf,
    writes: Mutex<()>,
}

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalStore {
            root: root.into(),
            writes: Mutex::new(()),
        }
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        let safe = key
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != ".." && !part.contains('\\'));
        if safe {
            Ok(self.root.join(key))
        } else {
            Err(StoreError::Unavailable(format!(
                "'{key}' is not a document key"
            )))
        }
    }
}

/// FNV-1a over the content: a version tag, not a security measure.
fn etag(bytes: &[u8]) -> String {
    let hash = crate::fingerprint::fnv1a(bytes);
    format!("\"{hash:016x}-{}\"", bytes.len())
}

fn unavailable(path: &Path, error: std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("{}: {error}", path.display()))
}

async fn read(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match tokio::fs::read(path).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(unavailable(path, e)),
    }
}

#[async_trait::async_trait]
impl Backend for LocalStore {
    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, String)>, StoreError> {
        let path = self.path(key)?;
        Ok(read(&path).await?.map(|bytes| {
            let tag = etag(&bytes);
            (bytes, tag)
        }))
    }

    async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        condition: Condition,
    ) -> Result<String, StoreError> {
        let path = self.path(key)?;
        let _write = self.writes.lock().await;
        let current = read(&path).await?;
        let allowed = match (&condition, &current) {
            (Condition::New, None) => true,
            (Condition::Matches(expected), Some(bytes)) => *expected == etag(bytes),
            _ => false,
        };
        if !allowed {
            return Err(StoreError::Conflict);
        }
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| unavailable(parent, e))?;
        }
        let temporary = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
        tokio::fs::write(&temporary, &bytes)
            .await
            .map_err(|e| unavailable(&temporary, e))?;
        tokio::fs::rename(&temporary, &path)
            .await
            .map_err(|e| unavailable(&path, e))?;
        Ok(etag(&bytes))
    }

    async fn delete(&self, key: &str, expected: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let _write = self.writes.lock().await;
        match read(&path).await? {
            None => Ok(()),
            Some(bytes) if etag(&bytes) == expected => match tokio::fs::remove_file(&path).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(unavailable(&path, e)),
                _ => Ok(()),
            },
            Some(_) => Err(StoreError::Conflict),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let dir = self.path(prefix.trim_end_matches('/'))?;
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(unavailable(&dir, e)),
        };
        let mut keys = Vec::new();
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| unavailable(&dir, e))?
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".json") {
                keys.push(format!("{prefix}{name}"));
            }
        }
        keys.sort();
        Ok(keys)
    }

    fn describe(&self) -> String {
        format!("folder {}", self.root.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StateStore;
    use std::sync::Arc;

    #[tokio::test]
    async fn writes_are_conditional() {
        let root = std::env::temp_dir().join(format!("cb-store-{}", uuid::Uuid::new_v4().simple()));
        let store = StateStore::new(Arc::new(LocalStore::new(&root)));
        let first = store.put("runs/a.json", &1, Condition::New).await.unwrap();
        assert_eq!(
            store.put("runs/a.json", &1, Condition::New).await,
            Err(StoreError::Conflict)
        );
        let second = store
            .put("runs/a.json", &2, Condition::Matches(first.clone()))
            .await
            .unwrap();
        assert_eq!(
            store
                .put("runs/a.json", &3, Condition::Matches(first.clone()))
                .await,
            Err(StoreError::Conflict),
            "a writer holding an old version loses"
        );
        let read = store.get::<u32>("runs/a.json").await.unwrap().unwrap();
        assert_eq!((read.value, read.etag.clone()), (2, second.clone()));
        assert_eq!(store.list("runs/").await.unwrap(), ["runs/a.json"]);
        assert_eq!(
            store.delete("runs/a.json", &first).await,
            Err(StoreError::Conflict)
        );
        store.delete("runs/a.json", &second).await.unwrap();
        assert!(store.get::<u32>("runs/a.json").await.unwrap().is_none());
        assert!(store.get::<u32>("../etc/passwd").await.is_err());
        std::fs::remove_dir_all(root).unwrap();
    }
}
