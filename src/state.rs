//! `AppState`: what every handler and timer shares, cloned cheaply behind an `Arc`.
//!
//! It holds the configuration, the run mode, the start instant, the Azure context with the secret
//! cache, the managed pools, the state store with the callback outbox, and the book of timer runs
//! that health reports.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use time::OffsetDateTime;

use crate::azure::Azure;
use crate::azure::aci::AciClient;
use crate::azure::error::AzureError;
use crate::callbacks::outbox::Outbox;
use crate::config::{Config, StateLocation};
use crate::pools::Pools;
use crate::secrets::store::SecretStore;
use crate::store::StateStore;
use crate::store::blob::BlobStore;
use crate::store::local::LocalStore;
use crate::timers::TimerFunction;

/// How the process was started; handlers behave the same in every mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Started by the Functions host, which routes requests, checks keys and fires timers.
    Functions,
    /// On its own: checks function keys and fires timers itself.
    Standalone,
}

#[derive(Clone)]
pub struct AppState(Arc<App>);

pub struct App {
    pub config: Config,
    pub mode: Mode,
    pub started: Instant,
    pub azure: Azure,
    pub secrets: SecretStore,
    pub pools: Pools,
    /// Container Instances, when a subscription is configured.
    pub aci: Option<AciClient>,
    pub store: StateStore,
    pub outbox: Outbox,
    /// Wakes the background worker (a callback was queued, an operation started).
    pub worker_wake: tokio::sync::Notify,
    timer_book: Mutex<BTreeMap<&'static str, TimerStatus>>,
    /// When each active run's group is next read by the worker (in memory: a restart reads all).
    run_checks: Mutex<HashMap<String, Instant>>,
}

/// What health reports about one timer function.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TimerStatus {
    pub schedule: String,
    pub runs: u64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_run: Option<OffsetDateTime>,
    pub last_outcome: Option<String>,
    /// Known only in standalone mode, where this process runs the schedule.
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_run: Option<OffsetDateTime>,
}

impl AppState {
    /// Fails only when the SDK refuses the credential settings.
    pub fn new(config: Config, mode: Mode) -> Result<Self, AzureError> {
        let azure = Azure::new(&config.azure)?;
        let store = StateStore::new(match &config.state {
            StateLocation::Folder(dir) => Arc::new(LocalStore::new(dir)),
            StateLocation::Blob(blob) => Arc::new(BlobStore::new(
                blob.clone(),
                azure.client_options(),
                azure.credential.clone(),
            )),
        });
        let secrets = SecretStore::new(azure.clone(), config.secret_cache);
        let pools = Pools::new(&azure, &config.pools);
        let aci = config
            .azure
            .subscription_id
            .as_deref()
            .map(|subscription| AciClient::new(&azure, subscription));
        let outbox = Outbox::new(
            store.clone(),
            azure.http.clone(),
            config.callbacks.retry_for,
        );
        let timer_book = TimerFunction::ALL
            .iter()
            .map(|function| {
                let status = TimerStatus {
                    schedule: function.schedule(&config).to_string(),
                    ..TimerStatus::default()
                };
                (function.name(), status)
            })
            .collect();
        Ok(AppState(Arc::new(App {
            config,
            mode,
            started: Instant::now(),
            azure,
            secrets,
            pools,
            aci,
            store,
            outbox,
            worker_wake: tokio::sync::Notify::new(),
            timer_book: Mutex::new(timer_book),
            run_checks: Mutex::new(HashMap::new()),
        })))
    }

    /// The tag value marking groups this deployment created: a hash of where its state lives, so
    /// two deployments sharing a resource group never take each other's groups for orphans.
    pub fn owner_tag(&self) -> String {
        format!(
            "{:016x}",
            crate::fingerprint::fnv1a(self.store.describe().as_bytes())
        )
    }

    pub fn run_check_due(&self, run_id: &str) -> bool {
        let checks = self.run_checks.lock().unwrap_or_else(|e| e.into_inner());
        checks.get(run_id).is_none_or(|at| Instant::now() >= *at)
    }

    pub fn schedule_run_check(&self, run_id: &str, at: Instant) {
        let mut checks = self.run_checks.lock().unwrap_or_else(|e| e.into_inner());
        checks.insert(run_id.to_owned(), at);
    }

    /// The run is settled (or cancelled): check it at the next pass, then not at all.
    pub fn forget_run_check(&self, run_id: &str) {
        let mut checks = self.run_checks.lock().unwrap_or_else(|e| e.into_inner());
        checks.remove(run_id);
    }

    pub fn wake_worker(&self) {
        self.worker_wake.notify_one();
    }

    /// Whether this process must check function keys itself.
    pub fn checks_function_keys(&self) -> bool {
        self.mode == Mode::Standalone
    }

    pub fn record_timer_run(&self, function: TimerFunction, at: OffsetDateTime, outcome: &str) {
        let mut book = self.timer_book.lock().expect("timer book lock poisoned");
        let status = book.entry(function.name()).or_default();
        status.runs += 1;
        status.last_run = Some(at);
        status.last_outcome = Some(outcome.to_owned());
    }

    pub fn record_next_timer_run(&self, function: TimerFunction, at: Option<OffsetDateTime>) {
        let mut book = self.timer_book.lock().expect("timer book lock poisoned");
        book.entry(function.name()).or_default().next_run = at;
    }

    pub fn timer_statuses(&self) -> BTreeMap<&'static str, TimerStatus> {
        self.timer_book
            .lock()
            .expect("timer book lock poisoned")
            .clone()
    }
}

impl std::ops::Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}
