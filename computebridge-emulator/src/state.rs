//! The emulator's shared state: options, clock, and one store per emulated service.

use std::sync::{Arc, Mutex};

use time::{Duration, OffsetDateTime};

use crate::aci::Aci;
use crate::batch::Batch;
use crate::clock::Clock;
use crate::faults::Fault;
use crate::identity::Identities;
use crate::keyvault::Vaults;
use crate::requests::RequestLog;

pub type Shared = Arc<Emulator>;

/// How the emulator behaves; every field has a default suited to manual exploration.
#[derive(Debug, Clone)]
pub struct Options {
    /// The value `X-IDENTITY-HEADER` must carry at `/msi/token`.
    pub identity_header: String,
    pub tenant_id: String,
    /// Client id of the system-assigned managed identity.
    pub system_client_id: String,
    pub token_lifetime_seconds: i64,
    /// Simulated seconds per real second.
    pub clock_speed: f64,
    /// Simulated time at start; the real time when unset.
    pub start_time: Option<OffsetDateTime>,
    /// ARM's per-subscription request limits (on by default). Benchmarks turn them off to
    /// measure a caller's own overhead rather than ARM's budget.
    pub arm_throttling: bool,
    pub timings: Timings,
}

/// Simulated durations of the emulated state machines.
#[derive(Debug, Clone)]
pub struct Timings {
    /// ACI: from PUT or start until the group is provisioned and its containers start.
    pub aci_provisioning: Duration,
    /// ACI: pause between container restarts (restart policy Always / OnFailure).
    pub aci_restart_backoff: Duration,
    /// Batch: from resize until a new node is allocated (appears as `starting`).
    pub batch_node_allocation: Duration,
    /// Batch: from `starting` until the node is `idle` (start task included).
    pub batch_node_start: Duration,
    /// Batch: `stopping` until `steady` after stop resize, and a removed node's departure.
    pub batch_settle: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            identity_header: "local-dev".into(),
            tenant_id: "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
            system_client_id: "6d807b1c-2a6f-41a0-b428-d0e3a08382a0".into(),
            token_lifetime_seconds: 3600,
            clock_speed: 1.0,
            start_time: None,
            arm_throttling: true,
            timings: Timings::default(),
        }
    }
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            aci_provisioning: Duration::seconds(3),
            aci_restart_backoff: Duration::seconds(2),
            batch_node_allocation: Duration::seconds(30),
            batch_node_start: Duration::seconds(20),
            batch_settle: Duration::seconds(5),
        }
    }
}

pub struct Emulator {
    pub options: Options,
    pub clock: Clock,
    pub identities: Mutex<Identities>,
    pub log: Mutex<RequestLog>,
    pub faults: Mutex<Vec<Fault>>,
    pub vaults: Mutex<Vaults>,
    pub batch: Mutex<Batch>,
    pub aci: Mutex<Aci>,
}

impl Emulator {
    pub fn new(options: Options) -> Shared {
        let start = options.start_time.unwrap_or_else(OffsetDateTime::now_utc);
        Arc::new(Emulator {
            clock: Clock::new(start, options.clock_speed),
            identities: Mutex::default(),
            log: Mutex::default(),
            faults: Mutex::default(),
            vaults: Mutex::default(),
            batch: Mutex::default(),
            aci: Mutex::default(),
            options,
        })
    }
}
