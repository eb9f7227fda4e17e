//! Idle cost: a day of bursty Batch work replayed on the emulator's fast clock against two pools
//! at once. One is sized by the pipeline before each burst (through the service's resize route)
//! and shrunk by the `ScaleDown` timer; the other runs the pending-task autoscale formula with
//! 5-minute sampling. Billed node time is sampled from Batch's node list on the simulated clock:
//! every node in the pool is billed, and a node not running a task is idle.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::datetime;

use crate::economy::NEVER;
use crate::stack::{
    BATCH_ACCOUNT, Emulator, Paths, Service, ServiceSettings, StateStore, batch_timings,
};
use crate::stats::{median, percentile};

/// The replayed day starts on a Monday.
const DAY_START: OffsetDateTime = datetime!(2026-11-23 00:00 UTC);
const MAX_NODES: u32 = 10;
/// How long a node must be idle before `ScaleDown` removes it.
pub const IDLE_MINUTES: u32 = 10;
/// Simulated seconds between node samples.
pub const SAMPLE_EVERY: f64 = 10.0;
/// The formula quoted in the emulator issue (Batch's documented pending-task example).
pub const FORMULA: &str = "maxNumberofVMs = 10; samplingInterval = 5 * TimeInterval_Minute; averageProcessingTimeSeconds = 5; targetProcessingTimeSeconds = 60; pendingTaskSamplePercent = $PendingTasks.GetSamplePercent(samplingInterval); pendingTasksCount = (pendingTaskSamplePercent < 70) ? 0 : avg($PendingTasks.GetSample(samplingInterval)); estimatedProcessingTimeSeconds = pendingTasksCount * averageProcessingTimeSeconds; processorTarget = pendingTasksCount > 0 ? max(estimatedProcessingTimeSeconds / targetProcessingTimeSeconds, 1) : 0; $TargetDedicatedNodes = min(maxNumberofVMs, processorTarget); $NodeDeallocationOption = taskcompletion;";

/// A burst of tasks an ADF pipeline submits.
#[derive(Debug, Clone, PartialEq)]
pub struct Burst {
    /// Simulated seconds after midnight.
    pub at: u64,
    /// Each task's duration in seconds (a simulated `sleep`).
    pub tasks: Vec<u64>,
}

impl Burst {
    /// The nodes the pipeline asks for before submitting: a node per four tasks, at most 10.
    pub fn nodes(&self) -> u32 {
        (self.tasks.len() as u32).div_ceil(4).min(MAX_NODES)
    }
}

/// The day's workload: bursts 70 to 150 minutes apart from 01:00 to 22:30, each of 4 to 40 tasks
/// of 3 to 15 minutes. Fixed seed, so every run replays the same day.
pub fn trace() -> Vec<Burst> {
    let mut state: u64 = 0x5eed_2026;
    let mut next = |low: u64, high: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        low + (state >> 33) % (high - low + 1)
    };
    let mut bursts = Vec::new();
    let mut at = 3600;
    while at < 22 * 3600 + 1800 {
        let count = next(4, 40);
        let tasks = (0..count).map(|_| next(3, 15) * 60 + next(0, 59)).collect();
        bursts.push(Burst { at, tasks });
        at += next(70, 150) * 60;
    }
    bursts
}

/// Node time sampled for one pool.
#[derive(Debug, Default, Clone)]
pub struct PoolCost {
    pub idle_node_seconds: f64,
    pub busy_node_seconds: f64,
    pub peak_nodes: usize,
    /// Minutes from each burst's start to each of its tasks starting.
    pub waits: Vec<f64>,
}

impl PoolCost {
    pub fn idle_node_minutes(&self) -> f64 {
        self.idle_node_seconds / 60.0
    }

    pub fn billed_node_minutes(&self) -> f64 {
        (self.idle_node_seconds + self.busy_node_seconds) / 60.0
    }

    pub fn median_wait(&self) -> f64 {
        median(&self.waits).unwrap_or(f64::NAN)
    }

    pub fn p95_wait(&self) -> f64 {
        percentile(&self.waits, 95.0).unwrap_or(f64::NAN)
    }

    /// Adds one sample of the pool's nodes held for `seconds`.
    fn add(&mut self, nodes: &[Value], seconds: f64) {
        let busy = nodes.iter().filter(|n| n["state"] == "running").count();
        self.busy_node_seconds += busy as f64 * seconds;
        self.idle_node_seconds += (nodes.len() - busy) as f64 * seconds;
        self.peak_nodes = self.peak_nodes.max(nodes.len());
    }
}

pub struct IdleCost {
    pub speed: f64,
    pub bursts: Vec<Burst>,
    pub scale_down: PoolCost,
    pub autoscale: PoolCost,
    /// Simulated hours replayed (the day, then until both pools were empty).
    pub hours: f64,
    pub scale_down_runs: u32,
}

/// The simulated clock as set on the emulator, read locally.
#[derive(Clone, Copy)]
struct SimClock {
    real: Instant,
    speed: f64,
}

impl SimClock {
    /// Simulated seconds since midnight of the replayed day.
    fn now(&self) -> f64 {
        self.real.elapsed().as_secs_f64() * self.speed
    }

    async fn sleep_until(&self, at: f64) {
        let wait = (at - self.now()) / self.speed;
        if wait > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
    }
}

const POOLS: &str = r#"
[pools.scaledown]
account_url = "https://bench.westeurope.batch.azure.com"
pool_id = "scaledown-pool"
max_dedicated_nodes = 10
[pools.scaledown.scale_down]
idle_minutes = IDLE
min_nodes = 0

[pools.autoscale]
account_url = "https://bench.westeurope.batch.azure.com"
pool_id = "autoscale-pool"
max_dedicated_nodes = 10

[formulas]
pending-tasks = "FORMULA"
"#;

pub async fn run(paths: &Paths, speed: f64) -> Result<IdleCost, String> {
    let emulator = Arc::new(Emulator::start(1.0, false, batch_timings()).await?);
    emulator
        .seed(json!({"pools": [
            {"account": BATCH_ACCOUNT, "id": "scaledown-pool", "targetDedicatedNodes": 0},
            {"account": BATCH_ACCOUNT, "id": "autoscale-pool", "targetDedicatedNodes": 0},
        ]}))
        .await?;
    let pools = POOLS
        .replace("IDLE", &IDLE_MINUTES.to_string())
        .replace("FORMULA", FORMULA);
    let settings = ServiceSettings::new(paths, &emulator, &StateStore::Folder, &pools)?
        .with("RECONCILE_SCHEDULE", NEVER)
        .with("SCALE_DOWN_SCHEDULE", NEVER);
    let service = Arc::new(Service::standalone(paths, settings).await?);
    for job in ["scaledown", "autoscale"] {
        emulator
            .batch(
                reqwest::Method::POST,
                "/jobs",
                Some(json!({"id": format!("{job}-job"), "poolInfo": {"poolId": format!("{job}-pool")}})),
            )
            .await?;
    }
    emulator.set_clock(&rfc3339(DAY_START), speed).await?;
    let clock = SimClock {
        real: Instant::now(),
        speed,
    };
    let (status, answer) = service
        .call(
            reqwest::Method::POST,
            "/api/pools/autoscale/autoscale",
            Some(json!({"formulaName": "pending-tasks", "evaluationInterval": "PT5M"})),
        )
        .await?;
    if status != 200 {
        return Err(format!("enabling autoscale answered {status}: {answer}"));
    }

    let bursts = trace();
    let done = Arc::new(AtomicBool::new(false));
    let timer = tokio::spawn(fire_scale_down(service.clone(), clock, done.clone()));
    let mut submissions = Vec::new();
    for (index, burst) in bursts.iter().cloned().enumerate() {
        submissions.push(tokio::spawn(submit(
            emulator.clone(),
            service.clone(),
            clock,
            index,
            burst,
        )));
    }

    let mut scale_down = PoolCost::default();
    let mut autoscale = PoolCost::default();
    let mut last = clock.now();
    let end_of_day = 24.0 * 3600.0;
    let give_up = end_of_day + 3.0 * 3600.0;
    loop {
        clock.sleep_until(last + SAMPLE_EVERY).await;
        let sd = nodes(&emulator, "scaledown-pool").await?;
        let auto = nodes(&emulator, "autoscale-pool").await?;
        let now = clock.now();
        scale_down.add(&sd, now - last);
        autoscale.add(&auto, now - last);
        last = now;
        let finished = submissions.iter().all(|s| s.is_finished());
        if (finished && now >= end_of_day && sd.is_empty() && auto.is_empty()) || now >= give_up {
            break;
        }
    }
    done.store(true, Ordering::Relaxed);
    let scale_down_runs = timer.await.map_err(|e| e.to_string())??;
    for submission in submissions {
        submission.await.map_err(|e| e.to_string())??;
    }
    scale_down.waits = waits(&emulator, "scaledown-job", &bursts).await?;
    autoscale.waits = waits(&emulator, "autoscale-job", &bursts).await?;
    Ok(IdleCost {
        speed,
        bursts,
        scale_down,
        autoscale,
        hours: last / 3600.0,
        scale_down_runs,
    })
}

/// Plays the Functions host: `ScaleDown` at every simulated 5-minute boundary.
async fn fire_scale_down(
    service: Arc<Service>,
    clock: SimClock,
    done: Arc<AtomicBool>,
) -> Result<u32, String> {
    let mut runs = 0;
    let mut at = 300.0;
    while !done.load(Ordering::Relaxed) {
        clock.sleep_until(at).await;
        service.fire_timer("ScaleDown").await?;
        runs += 1;
        at += 300.0;
    }
    Ok(runs)
}

/// One burst: the autoscale pool just gets the tasks; the other pool is first sized by the
/// pipeline through the service and the tasks follow once it is ready.
async fn submit(
    emulator: Arc<Emulator>,
    service: Arc<Service>,
    clock: SimClock,
    index: usize,
    burst: Burst,
) -> Result<(), String> {
    clock.sleep_until(burst.at as f64).await;
    add_tasks(&emulator, "autoscale-job", index, &burst).await?;
    let (status, answer) = service
        .call(
            reqwest::Method::POST,
            "/api/pools/scaledown/resize",
            Some(json!({"targetDedicatedNodes": burst.nodes()})),
        )
        .await?;
    if !(200..300).contains(&status) {
        return Err(format!(
            "resize for burst {index} answered {status}: {answer}"
        ));
    }
    let limit = burst.at as f64 + 3600.0;
    loop {
        let (_, report) = service
            .call(reqwest::Method::GET, "/api/pools/scaledown", None)
            .await?;
        if report["ready"] == true {
            break;
        }
        if clock.now() > limit {
            return Err(format!(
                "burst {index}: the pool was not ready within an hour: {report}"
            ));
        }
        clock.sleep_until(clock.now() + 15.0).await;
    }
    add_tasks(&emulator, "scaledown-job", index, &burst).await
}

async fn add_tasks(
    emulator: &Emulator,
    job: &str,
    index: usize,
    burst: &Burst,
) -> Result<(), String> {
    for (n, seconds) in burst.tasks.iter().enumerate() {
        emulator
            .batch(
                reqwest::Method::POST,
                &format!("/jobs/{job}/tasks"),
                Some(json!({"id": format!("b{index}-t{n}"), "commandLine": format!("sleep {seconds}")})),
            )
            .await?;
    }
    Ok(())
}

async fn nodes(emulator: &Emulator, pool: &str) -> Result<Vec<Value>, String> {
    let list = emulator
        .batch(reqwest::Method::GET, &format!("/pools/{pool}/nodes"), None)
        .await?;
    Ok(list["value"].as_array().cloned().unwrap_or_default())
}

/// Minutes from each task's burst to its start.
async fn waits(emulator: &Emulator, job: &str, bursts: &[Burst]) -> Result<Vec<f64>, String> {
    let list = emulator
        .batch(reqwest::Method::GET, &format!("/jobs/{job}/tasks"), None)
        .await?;
    let mut waits = Vec::new();
    for task in list["value"].as_array().cloned().unwrap_or_default() {
        let burst = task["id"]
            .as_str()
            .and_then(|id| {
                id.strip_prefix('b')?
                    .split_once('-')?
                    .0
                    .parse::<usize>()
                    .ok()
            })
            .and_then(|i| bursts.get(i))
            .ok_or_else(|| format!("a task the bench did not add: {task}"))?;
        let started = task["executionInfo"]["startTime"]
            .as_str()
            .and_then(|t| {
                OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
            })
            .ok_or_else(|| format!("task {} never started", task["id"]))?;
        let since_midnight = (started - DAY_START).as_seconds_f64();
        waits.push((since_midnight - burst.at as f64) / 60.0);
    }
    Ok(waits)
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_is_a_fixed_day_of_bursts() {
        let day = trace();
        assert_eq!(day, trace(), "the same day every run");
        assert!(day.len() >= 8, "{} bursts", day.len());
        assert_eq!(day[0].at, 3600);
        for pair in day.windows(2) {
            let gap = pair[1].at - pair[0].at;
            assert!((70 * 60..=150 * 60).contains(&gap));
        }
        for burst in &day {
            assert!((4..=40).contains(&burst.tasks.len()));
            assert!(burst.tasks.iter().all(|s| (180..=959).contains(s)));
            assert!(burst.at < 22 * 3600 + 1800);
        }
        let sizes = Burst {
            at: 0,
            tasks: vec![60; 9],
        };
        assert_eq!(sizes.nodes(), 3);
        assert_eq!(
            Burst {
                at: 0,
                tasks: vec![60; 40]
            }
            .nodes(),
            10
        );
    }

    #[test]
    fn a_sample_bills_every_node_and_counts_the_idle_ones() {
        let mut cost = PoolCost::default();
        let nodes = [
            json!({"state": "running"}),
            json!({"state": "idle"}),
            json!({"state": "starting"}),
        ];
        cost.add(&nodes, 60.0);
        cost.add(&nodes[..1], 30.0);
        assert_eq!(cost.idle_node_minutes(), 2.0);
        assert_eq!(cost.billed_node_minutes(), 3.5);
        assert_eq!(cost.peak_nodes, 3);
    }
}
