//! Batch pools and their compute nodes: the allocation state machine (steady → resizing →
//! steady, stopping), node lifecycles (starting → waitingForStartTask → idle ⇄ running →
//! leavingPool), resize timeouts and core quotas turned into `resizeErrors`, and autoscale
//! evaluation on its interval. Everything advances on the simulated clock in [`Pool::advance`].

use serde::Deserialize;
use serde_json::{Map, Value, json};
use time::{Duration, OffsetDateTime};

use super::formula::{self, Inputs, Outputs};
use crate::http::azure_time;
use crate::state::Timings;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocation {
    Steady,
    Resizing,
    Stopping,
}

impl Allocation {
    pub fn as_str(self) -> &'static str {
        match self {
            Allocation::Steady => "steady",
            Allocation::Resizing => "resizing",
            Allocation::Stopping => "stopping",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    Starting,
    WaitingForStartTask,
    Idle,
    Running,
    LeavingPool,
    StartTaskFailed,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Starting => "starting",
            NodeState::WaitingForStartTask => "waitingForStartTask",
            NodeState::Idle => "idle",
            NodeState::Running => "running",
            NodeState::LeavingPool => "leavingPool",
            NodeState::StartTaskFailed => "startTaskFailed",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Node {
    pub id: String,
    pub dedicated: bool,
    pub state: NodeState,
    pub state_transition_time: OffsetDateTime,
    pub allocation_time: OffsetDateTime,
    /// When a starting node finishes its start task.
    pub ready_at: OffsetDateTime,
    /// Leaves the pool once its running task completes (taskcompletion / retaineddata).
    pub leave_when_done: bool,
    /// When a leaving node is gone.
    pub gone_at: Option<OffsetDateTime>,
    pub total_tasks_run: u32,
}

impl Node {
    fn set_state(&mut self, state: NodeState, now: OffsetDateTime) {
        if self.state != state {
            self.state = state;
            self.state_transition_time = now;
        }
    }
}

/// A pool as seeded through the control surface; Batch creates pools through ARM, which the
/// emulator does not serve.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedPool {
    pub account: String,
    pub id: String,
    #[serde(default = "default_vm_size")]
    pub vm_size: String,
    pub cores_per_node: Option<u32>,
    #[serde(default)]
    pub target_dedicated_nodes: u32,
    #[serde(default)]
    pub target_low_priority_nodes: u32,
    /// Nodes start already idle, as if the pool had been running for a while.
    #[serde(default)]
    pub start_task: Option<Value>,
    /// Nodes fail their start task (`startTaskFailed`).
    #[serde(default)]
    pub start_task_fails: bool,
    /// The region can allocate no more than this many nodes for the pool; a larger resize
    /// times out with `AllocationTimedout`.
    #[serde(default)]
    pub allocatable_nodes: Option<u32>,
    #[serde(default)]
    pub auto_scale_formula: Option<String>,
    #[serde(default)]
    pub metadata: Option<Value>,
    /// Pool properties the emulator does not model (`displayName`, `userAccounts`,
    /// `cloudServiceConfiguration`, …), answered as given.
    #[serde(default)]
    pub properties: Map<String, Value>,
}

fn default_vm_size() -> String {
    "standard_d2s_v3".into()
}

#[derive(Debug)]
pub struct Pool {
    pub id: String,
    pub vm_size: String,
    pub cores_per_node: u32,
    pub deleting_since: Option<OffsetDateTime>,
    pub creation_time: OffsetDateTime,
    pub etag: String,
    pub last_modified: OffsetDateTime,
    pub allocation: Allocation,
    pub allocation_transition: OffsetDateTime,
    pub target_dedicated: u32,
    pub target_low_priority: u32,
    pub resize_timeout: Duration,
    pub resize_started: OffsetDateTime,
    pub deallocation: String,
    pub resize_errors: Vec<Value>,
    pub stopping_until: Option<OffsetDateTime>,
    pub auto_scale: Option<AutoScale>,
    pub last_enable_auto_scale: Option<OffsetDateTime>,
    pub nodes: Vec<Node>,
    /// Allocations in flight: (dedicated, when the node appears).
    pub pending: Vec<(bool, OffsetDateTime)>,
    /// Set when the current resize was cut short by the core quota: (code, kind).
    pub quota_shortfall: Option<(&'static str, &'static str)>,
    pub start_task: Option<Value>,
    pub start_task_fails: bool,
    pub allocatable_nodes: Option<u32>,
    pub metadata: Option<Value>,
    pub properties: Map<String, Value>,
    pub samples: Vec<(OffsetDateTime, u32, u32)>,
    next_node: u64,
}

#[derive(Debug, Clone)]
pub struct AutoScale {
    pub formula: String,
    pub interval: Duration,
    pub next_evaluation: OffsetDateTime,
    pub last_run: Option<Value>,
}

/// Pool changes made by a tick that jobs must react to: nodes removed while running a task.
#[derive(Debug, Default)]
pub struct Evictions {
    /// (node id, requeue?) for nodes removed under `requeue` or `terminate`.
    pub interrupted: Vec<(String, bool)>,
}

pub fn etag(now: OffsetDateTime) -> String {
    format!(
        "0x8D{:013X}",
        (now.unix_timestamp_nanos() / 100) as u64 & 0x1F_FFFF_FFFF_FFFF
    )
}

/// Cores per node from a VM size name: the first number in it (`Standard_D4s_v3` → 4).
pub fn cores_of(vm_size: &str) -> u32 {
    let digits: String = vm_size
        .split('_')
        .nth(1)
        .unwrap_or(vm_size)
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok().filter(|c| *c > 0).unwrap_or(1)
}

impl Pool {
    pub fn from_seed(seed: &SeedPool, now: OffsetDateTime) -> Pool {
        let mut pool = Pool {
            id: seed.id.clone(),
            vm_size: seed.vm_size.clone(),
            cores_per_node: seed
                .cores_per_node
                .unwrap_or_else(|| cores_of(&seed.vm_size)),
            deleting_since: None,
            creation_time: now,
            etag: etag(now),
            last_modified: now,
            allocation: Allocation::Steady,
            allocation_transition: now,
            target_dedicated: seed.target_dedicated_nodes,
            target_low_priority: seed.target_low_priority_nodes,
            resize_timeout: Duration::minutes(15),
            resize_started: now,
            deallocation: "requeue".into(),
            resize_errors: Vec::new(),
            stopping_until: None,
            auto_scale: None,
            last_enable_auto_scale: None,
            nodes: Vec::new(),
            pending: Vec::new(),
            quota_shortfall: None,
            start_task: seed.start_task.clone(),
            start_task_fails: seed.start_task_fails,
            allocatable_nodes: seed.allocatable_nodes,
            metadata: seed.metadata.clone(),
            properties: seed.properties.clone(),
            samples: Vec::new(),
            next_node: 0,
        };
        for dedicated in [true, false] {
            let count = if dedicated {
                seed.target_dedicated_nodes
            } else {
                seed.target_low_priority_nodes
            };
            for _ in 0..count {
                let state = if seed.start_task_fails {
                    NodeState::StartTaskFailed
                } else {
                    NodeState::Idle
                };
                pool.add_node(dedicated, state, now, now);
            }
        }
        pool
    }

    fn add_node(
        &mut self,
        dedicated: bool,
        state: NodeState,
        now: OffsetDateTime,
        ready_at: OffsetDateTime,
    ) {
        self.next_node += 1;
        let suffix = if dedicated { "d" } else { "p" };
        self.nodes.push(Node {
            id: format!(
                "tvmps_{:016x}{:016x}_{suffix}",
                // Unique across the account, as tasks refer to nodes by id alone here.
                self.id
                    .bytes()
                    .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b))
                        .wrapping_mul(0x100_0000_01b3)),
                self.next_node * 0x9E37_79B9
            ),
            dedicated,
            state,
            state_transition_time: now,
            allocation_time: now,
            ready_at,
            leave_when_done: false,
            gone_at: None,
            total_tasks_run: 0,
        });
    }

    pub fn touch(&mut self, now: OffsetDateTime) {
        self.etag = etag(now);
        self.last_modified = now;
    }

    pub fn current(&self, dedicated: bool) -> u32 {
        self.nodes
            .iter()
            .filter(|n| n.dedicated == dedicated && n.gone_at.is_none())
            .count() as u32
    }

    fn set_allocation(&mut self, allocation: Allocation, now: OffsetDateTime) {
        if self.allocation != allocation {
            self.allocation = allocation;
            self.allocation_transition = now;
        }
    }

    /// Starts a resize towards the targets (the caller has checked the pool is steady).
    /// `quota_cores` are the cores of each kind the account still has for this pool.
    pub fn begin_resize(
        &mut self,
        targets: (u32, u32),
        timeout: Duration,
        deallocation: &str,
        quota_cores: (u32, u32),
        now: OffsetDateTime,
        timings: &Timings,
    ) -> Evictions {
        self.target_dedicated = targets.0;
        self.target_low_priority = targets.1;
        self.resize_timeout = timeout;
        self.deallocation = deallocation.to_owned();
        self.resize_errors.clear();
        self.quota_shortfall = None;
        self.resize_started = now;
        self.touch(now);
        self.set_allocation(Allocation::Resizing, now);
        let mut evictions = Evictions::default();
        for (dedicated, target, cores) in [
            (true, targets.0, quota_cores.0),
            (false, targets.1, quota_cores.1),
        ] {
            let current = self.current(dedicated);
            if target > current {
                let affordable = (cores / self.cores_per_node.max(1)).saturating_sub(current);
                let wanted = target - current;
                let granted = wanted.min(affordable);
                if granted < wanted {
                    self.quota_shortfall = Some(if dedicated {
                        ("AccountCoreQuotaReached", "dedicated")
                    } else {
                        ("AccountLowPriorityCoreQuotaReached", "low priority")
                    });
                }
                let capacity = self
                    .allocatable_nodes
                    .map(|cap| cap.saturating_sub(self.current(true) + self.current(false)));
                let granted = capacity.map_or(granted, |cap| granted.min(cap));
                for _ in 0..granted {
                    self.pending
                        .push((dedicated, now + timings.batch_node_allocation));
                }
            } else if target < current {
                self.remove_nodes(dedicated, current - target, now, timings, &mut evictions);
            }
        }
        evictions
    }

    fn remove_nodes(
        &mut self,
        dedicated: bool,
        mut count: u32,
        now: OffsetDateTime,
        timings: &Timings,
        evictions: &mut Evictions,
    ) {
        let graceful = matches!(
            self.deallocation.as_str(),
            "taskcompletion" | "retaineddata"
        );
        // Nodes that are not working go first; running nodes last.
        let order = [
            NodeState::StartTaskFailed,
            NodeState::Starting,
            NodeState::WaitingForStartTask,
            NodeState::Idle,
            NodeState::Running,
        ];
        for state in order {
            for node in self.nodes.iter_mut().filter(|n| {
                n.dedicated == dedicated
                    && n.state == state
                    && n.gone_at.is_none()
                    && !n.leave_when_done
            }) {
                if count == 0 {
                    return;
                }
                count -= 1;
                if state == NodeState::Running && graceful {
                    node.leave_when_done = true;
                } else {
                    if state == NodeState::Running {
                        evictions
                            .interrupted
                            .push((node.id.clone(), self.deallocation != "terminate"));
                    }
                    node.set_state(NodeState::LeavingPool, now);
                    node.gone_at = Some(now + timings.batch_settle);
                }
            }
        }
    }

    pub fn stop_resize(&mut self, now: OffsetDateTime, timings: &Timings) {
        if self.allocation == Allocation::Resizing {
            self.pending.clear();
            self.touch(now);
            self.set_allocation(Allocation::Stopping, now);
            self.stopping_until = Some(now + timings.batch_settle);
        }
    }

    /// A task finished on `node_id`; the node goes idle or leaves.
    pub fn release_node(&mut self, node_id: &str, now: OffsetDateTime, timings: &Timings) {
        if let Some(node) = self.nodes.iter_mut().find(|n| n.id == node_id) {
            node.total_tasks_run += 1;
            if node.leave_when_done {
                node.set_state(NodeState::LeavingPool, now);
                node.gone_at = Some(now + timings.batch_settle);
            } else if node.state == NodeState::Running {
                node.set_state(NodeState::Idle, now);
            }
        }
    }

    pub fn inputs(&self, now: OffsetDateTime) -> Inputs {
        Inputs {
            now,
            current_dedicated: self.current(true),
            current_low_priority: self.current(false),
            target_dedicated: self.target_dedicated,
            target_low_priority: self.target_low_priority,
            samples: self.samples.clone(),
        }
    }

    /// `AutoScaleRun` JSON for an evaluation.
    pub fn run_json(
        &self,
        now: OffsetDateTime,
        result: &Result<Outputs, formula::FormulaError>,
    ) -> Value {
        match result {
            Ok(outputs) => json!({"timestamp": azure_time(now), "results": outputs.results()}),
            Err(error) => json!({
                "timestamp": azure_time(now),
                "results": format!("$TargetDedicatedNodes={};$TargetLowPriorityNodes={};$NodeDeallocationOption={}", self.target_dedicated, self.target_low_priority, self.deallocation),
                "error": {
                    "code": "AutoScalingFormulaEvaluationError",
                    "message": "The specified auto-scaling formula has evaluation error",
                    "values": [{"name": "Message", "value": error.to_string()}],
                },
            }),
        }
    }

    /// Advances nodes, allocations, stop-resize and resize completion to `now`.
    pub fn advance(&mut self, now: OffsetDateTime, timings: &Timings) {
        let mut arrived = Vec::new();
        self.pending.retain(|(dedicated, at)| {
            if *at <= now {
                arrived.push((*dedicated, *at));
                false
            } else {
                true
            }
        });
        for (dedicated, at) in arrived {
            self.add_node(
                dedicated,
                NodeState::Starting,
                at,
                at + timings.batch_node_start,
            );
        }
        let start_task = self.start_task.is_some();
        let fails = self.start_task_fails;
        for node in &mut self.nodes {
            match node.state {
                NodeState::Starting | NodeState::WaitingForStartTask if now >= node.ready_at => {
                    node.set_state(
                        if fails {
                            NodeState::StartTaskFailed
                        } else {
                            NodeState::Idle
                        },
                        node.ready_at,
                    );
                }
                NodeState::Starting
                    if start_task && now >= node.ready_at - (timings.batch_node_start / 2) =>
                {
                    node.set_state(NodeState::WaitingForStartTask, now);
                }
                _ => {}
            }
        }
        self.nodes
            .retain(|n| n.gone_at.is_none_or(|gone| gone > now));

        if self.allocation == Allocation::Stopping
            && self.stopping_until.is_some_and(|until| now >= until)
        {
            self.stopping_until = None;
            let kind = if self.current(true) < self.target_dedicated {
                "dedicated"
            } else {
                "low priority"
            };
            self.resize_errors = vec![json!({
                "code": "ResizeStopped",
                "message": format!("Desired number of {kind} nodes could not be allocated due to a stop resize operation"),
            })];
            self.set_allocation(Allocation::Steady, now);
        }
        if self.allocation == Allocation::Resizing {
            let leaving = self
                .nodes
                .iter()
                .any(|n| n.leave_when_done || n.gone_at.is_some());
            if self.pending.is_empty() && !leaving {
                if let Some((code, kind)) = self.quota_shortfall.take() {
                    self.resize_errors = vec![json!({
                        "code": code,
                        "message": format!("The specified account has reached its {kind} core quota"),
                        "values": [{"name": "Reason", "value": format!("The {kind} core quota of the account is insufficient for the requested nodes")}],
                    })];
                    self.set_allocation(Allocation::Steady, now);
                } else if self.current(true) == self.target_dedicated
                    && self.current(false) == self.target_low_priority
                {
                    self.set_allocation(Allocation::Steady, now);
                }
            }
            if self.allocation == Allocation::Resizing
                && now >= self.resize_started + self.resize_timeout
            {
                self.pending.clear();
                self.resize_errors = vec![json!({
                    "code": "AllocationTimedout",
                    "message": "Desired number of dedicated nodes could not be allocated as the resize timeout was reached",
                })];
                self.set_allocation(Allocation::Steady, now);
            }
        }
    }

    /// The pool as `GET /pools/{id}` answers it.
    pub fn to_json(&self, base: &str) -> Value {
        let mut body = self.properties.clone();
        let mut put = |k: &str, v: Value| {
            body.insert(k.to_owned(), v);
        };
        put("id", json!(self.id));
        put("url", json!(format!("{base}/pools/{}", self.id)));
        put("eTag", json!(self.etag));
        put("lastModified", json!(azure_time(self.last_modified)));
        put("creationTime", json!(azure_time(self.creation_time)));
        put(
            "state",
            json!(if self.deleting_since.is_some() {
                "deleting"
            } else {
                "active"
            }),
        );
        put(
            "stateTransitionTime",
            json!(azure_time(
                self.deleting_since.unwrap_or(self.creation_time)
            )),
        );
        put("allocationState", json!(self.allocation.as_str()));
        put(
            "allocationStateTransitionTime",
            json!(azure_time(self.allocation_transition)),
        );
        put("vmSize", json!(self.vm_size));
        put("resizeTimeout", json!(iso_duration(self.resize_timeout)));
        if self.allocation == Allocation::Steady && !self.resize_errors.is_empty() {
            put("resizeErrors", json!(self.resize_errors));
        }
        put("currentDedicatedNodes", json!(self.current(true)));
        put("targetDedicatedNodes", json!(self.target_dedicated));
        put("currentLowPriorityNodes", json!(self.current(false)));
        put("targetLowPriorityNodes", json!(self.target_low_priority));
        put("enableAutoScale", json!(self.auto_scale.is_some()));
        if let Some(auto) = &self.auto_scale {
            put("autoScaleFormula", json!(auto.formula));
            put(
                "autoScaleEvaluationInterval",
                json!(iso_duration(auto.interval)),
            );
            if let Some(run) = &auto.last_run {
                put("autoScaleRun", run.clone());
            }
        }
        put("enableInterNodeCommunication", json!(false));
        if let Some(start_task) = &self.start_task {
            put("startTask", start_task.clone());
        }
        if let Some(metadata) = &self.metadata {
            put("metadata", metadata.clone());
        }
        put("maxTasksPerNode", json!(1));
        put("taskSlotsPerNode", json!(1));
        put("taskSchedulingPolicy", json!({"nodeFillType": "Spread"}));
        put(
            "virtualMachineConfiguration",
            json!({
                "imageReference": {"publisher": "canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"},
                "nodeAgentSKUId": "batch.node.ubuntu 24.04",
            }),
        );
        Value::Object(body)
    }

    pub fn node_json(&self, base: &str, node: &Node, running_tasks: u32) -> Value {
        json!({
            "id": node.id,
            "url": format!("{base}/pools/{}/nodes/{}", self.id, node.id),
            "state": node.state.as_str(),
            "schedulingState": "enabled",
            "stateTransitionTime": azure_time(node.state_transition_time),
            "allocationTime": azure_time(node.allocation_time),
            "ipAddress": "10.0.0.4",
            "affinityId": format!("TVM:{}", node.id),
            "vmSize": self.vm_size,
            "totalTasksRun": node.total_tasks_run,
            "runningTasksCount": running_tasks,
            "runningTaskSlotsCount": running_tasks,
            "totalTasksSucceeded": node.total_tasks_run,
            "isDedicated": node.dedicated,
        })
    }

    /// Node counts by state, as `GET /nodecounts` answers them.
    pub fn counts_json(&self) -> Value {
        let count = |dedicated: bool| {
            let mut counts = Map::new();
            for state in [
                "creating",
                "idle",
                "offline",
                "preempted",
                "rebooting",
                "reimaging",
                "running",
                "starting",
                "startTaskFailed",
                "leavingPool",
                "unknown",
                "unusable",
                "waitingForStartTask",
                "deallocated",
                "deallocating",
                "upgradingOS",
            ] {
                counts.insert(state.into(), json!(0));
            }
            let mut total = 0;
            for node in self.nodes.iter().filter(|n| n.dedicated == dedicated) {
                let entry = counts.entry(node.state.as_str()).or_insert(json!(0));
                *entry = json!(entry.as_u64().unwrap_or(0) + 1);
                total += 1;
            }
            counts.insert("total".into(), json!(total));
            Value::Object(counts)
        };
        json!({"poolId": self.id, "dedicated": count(true), "lowPriority": count(false)})
    }
}

/// ISO 8601 durations as Batch writes them (`PT15M`, `PT1H30M`, `P1D`).
pub fn iso_duration(duration: Duration) -> String {
    let mut seconds = duration.whole_seconds();
    let days = seconds / 86400;
    seconds %= 86400;
    let (hours, minutes, secs) = (seconds / 3600, (seconds % 3600) / 60, seconds % 60);
    let mut out = String::from("P");
    if days > 0 {
        out.push_str(&format!("{days}D"));
    }
    if hours > 0 || minutes > 0 || secs > 0 || days == 0 {
        out.push('T');
        if hours > 0 {
            out.push_str(&format!("{hours}H"));
        }
        if minutes > 0 {
            out.push_str(&format!("{minutes}M"));
        }
        if secs > 0 || (hours == 0 && minutes == 0) {
            out.push_str(&format!("{secs}S"));
        }
    }
    out
}

/// Parses `PnDTnHnMnS` (fractions allowed on seconds).
pub fn parse_iso_duration(text: &str) -> Option<Duration> {
    let rest = text.strip_prefix('P').or_else(|| text.strip_prefix('p'))?;
    let (date, time) = match rest.split_once(['T', 't']) {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let mut total = 0.0;
    let mut parse_part = |part: &str, units: &[(char, f64)]| -> Option<()> {
        let mut number = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                number.push(c);
            } else {
                let factor = units.iter().find(|(u, _)| u.eq_ignore_ascii_case(&c))?.1;
                total += number.parse::<f64>().ok()? * factor;
                number.clear();
            }
        }
        number.is_empty().then_some(())
    };
    parse_part(date, &[('W', 604800.0), ('D', 86400.0)])?;
    if let Some(time) = time {
        if time.is_empty() {
            return None;
        }
        parse_part(time, &[('H', 3600.0), ('M', 60.0), ('S', 1.0)])?;
    }
    if rest.is_empty() {
        return None;
    }
    Some(Duration::seconds_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip() {
        for (text, seconds) in [
            ("PT15M", 900),
            ("PT5M", 300),
            ("PT1H30M", 5400),
            ("P1D", 86400),
            ("PT90S", 90),
            ("P1DT2H", 93600),
        ] {
            assert_eq!(
                parse_iso_duration(text),
                Some(Duration::seconds(seconds)),
                "{text}"
            );
        }
        assert_eq!(iso_duration(Duration::minutes(15)), "PT15M");
        assert_eq!(iso_duration(Duration::seconds(5400)), "PT1H30M");
        for bad in ["15M", "PT", "P", "PTxM", "PT5Q"] {
            assert_eq!(parse_iso_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn cores_come_from_the_size_name() {
        assert_eq!(cores_of("standard_d2s_v3"), 2);
        assert_eq!(cores_of("Standard_D16ds_v5"), 16);
        assert_eq!(cores_of("STANDARD_A1_v2"), 1);
        assert_eq!(cores_of("small"), 1);
    }
}
