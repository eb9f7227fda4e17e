//! Managed Batch pools: the configured pools and their Batch clients, reports, resizes that
//! wait for readiness, autoscale, and the `ScaleDown` timer.
//!
//! - [`report`]: `PoolReport`, what callers see of a pool.
//! - [`resize`]: the resize request and its decision table.
//! - [`operations`]: resizes being watched until the pool is ready (durable; they end in a
//!   callback), swept by the background worker and the timers.
//! - [`scale_down`]: the `ScaleDown` timer's decisions.

pub mod operations;
pub mod report;
pub mod resize;
pub mod scale_down;

use std::collections::HashMap;
use std::sync::Arc;

use crate::azure::Azure;
use crate::azure::batch::{BatchClient, Observed, Pool};
use crate::azure::error::AzureError;
use crate::config::PoolSettings;
use crate::error::ApiError;
use report::PoolReport;

/// The configured pools, each with its Batch client and a lock that serializes this process's
/// changes to it.
#[derive(Clone)]
pub struct Pools {
    pools: Arc<HashMap<String, ManagedPool>>,
}

pub struct ManagedPool {
    pub settings: PoolSettings,
    pub batch: BatchClient,
    pub changes: tokio::sync::Mutex<()>,
}

impl Pools {
    pub fn new(azure: &Azure, settings: &[PoolSettings]) -> Pools {
        let pools = settings
            .iter()
            .map(|s| {
                let managed = ManagedPool {
                    settings: s.clone(),
                    batch: BatchClient::new(azure, &s.account_url),
                    changes: tokio::sync::Mutex::new(()),
                };
                (s.name.to_ascii_lowercase(), managed)
            })
            .collect();
        Pools {
            pools: Arc::new(pools),
        }
    }

    /// The pool callers call `name`, or 404 `PoolNotManaged`.
    pub fn get(&self, name: &str) -> Result<&ManagedPool, ApiError> {
        self.pools.get(&name.to_ascii_lowercase()).ok_or_else(|| {
            ApiError::not_found(
                "PoolNotManaged",
                format!("'{name}' is not a pool this service manages; GET /api/pools lists them"),
            )
        })
    }

    pub fn all(&self) -> impl Iterator<Item = &ManagedPool> {
        let mut pools: Vec<&ManagedPool> = self.pools.values().collect();
        pools.sort_by(|a, b| a.settings.name.cmp(&b.settings.name));
        pools.into_iter()
    }

    pub fn is_empty(&self) -> bool {
        self.pools.is_empty()
    }
}

impl ManagedPool {
    /// The pool as Batch reports it now.
    pub async fn report(&self) -> Result<PoolReport, AzureError> {
        let pool = self.batch.get_pool(&self.settings.pool_id).await?;
        self.report_of(&pool).await
    }

    /// The report for a pool answer already in hand (only the nodes are read).
    pub async fn report_of(&self, pool: &Observed<Pool>) -> Result<PoolReport, AzureError> {
        let nodes = self.batch.list_nodes(&self.settings.pool_id).await?;
        Ok(PoolReport::new(&self.settings, pool, &nodes))
    }
}
