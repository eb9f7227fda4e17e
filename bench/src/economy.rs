//! Control-plane economy: the ARM requests one container run costs from start to callback to
//! cleanup (counted per container group in the emulator's request log, at the default schedules:
//! the worker's checks and `Reconcile` every minute), beside the polling loop of Airflow's ACI
//! operator; and the ARM requests of one `Reconcile` sweep, and per minute, with 1 to 1,000
//! active runs.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::receiver::Receiver;
use crate::stack::{Emulator, Paths, Service, ServiceSettings, StateStore};

/// A schedule that does not fire during a bench run, for instances whose timers the bench fires.
pub const NEVER: &str = "0 0 0 1 1 *";
/// How long after a timer sweep the steady read rate is measured.
pub const STEADY_WINDOW: Duration = Duration::from_secs(30);

/// ARM requests for one run's container group, by kind.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Counts {
    pub creates: u64,
    pub reads: u64,
    pub logs: u64,
    pub deletes: u64,
    pub other: u64,
}

impl Counts {
    pub fn total(&self) -> u64 {
        self.creates + self.reads + self.logs + self.deletes + self.other
    }

    /// Classifies the logged ARM requests that concern `group`.
    fn of_group(entries: &[Value], group: &str) -> Counts {
        let mut counts = Counts::default();
        let suffix = format!("/containerGroups/{group}");
        for entry in entries {
            let path = entry["path"].as_str().unwrap_or_default();
            if !path.contains(&suffix) {
                continue;
            }
            match (
                entry["method"].as_str().unwrap_or_default(),
                path.ends_with(&suffix),
            ) {
                ("PUT", true) => counts.creates += 1,
                ("GET", true) => counts.reads += 1,
                ("DELETE", true) => counts.deletes += 1,
                ("GET", false) if path.ends_with("/logs") => counts.logs += 1,
                _ => counts.other += 1,
            }
        }
        counts
    }
}

pub struct RunEconomy {
    pub seconds: u64,
    pub counts: Counts,
    /// From the start request to the container's exit.
    pub lifetime: Duration,
    /// From the container's exit to the callback.
    pub callback_after_exit: Duration,
}

impl RunEconomy {
    /// Airflow's `AzureContainerInstancesOperator` for the same run: create, one GET a second
    /// until the container has exited, delete (its loop also reads the logs every second while
    /// the container runs; this count leaves those out).
    pub fn airflow(&self) -> u64 {
        2 + self.lifetime.as_secs_f64().ceil() as u64
    }
}

pub struct PerRun {
    pub runs: Vec<RunEconomy>,
    /// `Reconcile`'s orphan check: one list per resource group per run of the timer, shared by
    /// all runs.
    pub lists: u64,
    pub window: Duration,
}

/// Runs of `durations` seconds, side by side on one standalone instance at default schedules.
pub async fn per_run(paths: &Paths, durations: &[u64]) -> Result<PerRun, String> {
    let emulator = Emulator::start(1.0, true, Default::default()).await?;
    let receiver = Receiver::start().await?;
    let settings = ServiceSettings::new(paths, &emulator, &StateStore::Folder, "")?;
    let service = Service::standalone(paths, settings).await?;
    let began = Instant::now();
    let mut started = Vec::new();
    for &seconds in durations {
        let run_id = format!("economy-{seconds}s");
        let sent = SystemTime::now();
        let answer = service
            .start_run(json!({
                "template": "sleeper",
                "runId": run_id,
                "parameters": {"seconds": seconds.to_string()},
                "callBackUri": receiver.url(&format!("/{run_id}")),
            }))
            .await?;
        let group = answer["containerGroup"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        started.push((seconds, run_id, group, sent));
    }
    let mut runs = Vec::new();
    for (seconds, run_id, group, sent) in started {
        let limit = Duration::from_secs(seconds + 240);
        let callback = receiver.wait_for(&format!("/{run_id}"), limit).await?;
        let exited = exit_time(&callback.body)
            .ok_or_else(|| format!("{run_id}: no exit time in the log tail: {}", callback.body))?;
        // Cleanup follows the callback; wait until the group's DELETE is in the log.
        let deleted = format!("service=arm&method=DELETE&path={group}");
        let mut cleaned = false;
        for _ in 0..300 {
            if !emulator.requests(0, &deleted).await?.1.is_empty() {
                cleaned = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if !cleaned {
            return Err(format!("{run_id}: its group {group} was not deleted"));
        }
        let (_, entries) = emulator
            .requests(0, &format!("service=arm&path={group}"))
            .await?;
        runs.push(RunEconomy {
            seconds,
            counts: Counts::of_group(&entries, &group),
            lifetime: exited.duration_since(sent).unwrap_or_default(),
            callback_after_exit: callback.received.duration_since(exited).unwrap_or_default(),
        });
    }
    let (_, all) = emulator.requests(0, "service=arm&method=GET").await?;
    let lists = all
        .iter()
        .filter(|e| {
            e["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("/containerGroups"))
        })
        .count() as u64;
    Ok(PerRun {
        runs,
        lists,
        window: began.elapsed(),
    })
}

/// The job's last log line, `exited-at SECONDS.NANOS`, as a time.
pub fn exit_time(callback: &Value) -> Option<SystemTime> {
    let tail = callback["Output"]["logTail"].as_str()?;
    let line = tail
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("exited-at "))?;
    let seconds: f64 = line.trim().parse().ok()?;
    Some(UNIX_EPOCH + Duration::from_secs_f64(seconds))
}

pub struct Sweep {
    pub active: usize,
    /// ARM requests while `Reconcile` ran: group reads, distinct groups read, lists, others.
    pub reads: u64,
    pub distinct: usize,
    pub lists: u64,
    pub other: u64,
    pub took: Duration,
    /// Group reads per minute over the following [`STEADY_WINDOW`] (the worker's due checks).
    pub steady_reads_per_minute: f64,
}

/// `Reconcile` over `active` runs that stay active (their image is never pulled), on an
/// instance whose own timers do not fire, with ARM's request limits off.
pub async fn sweep(paths: &Paths, active: usize) -> Result<Sweep, String> {
    let emulator = Emulator::start(1.0, false, Default::default()).await?;
    let settings = ServiceSettings::new(paths, &emulator, &StateStore::Folder, "")?
        .with("RECONCILE_SCHEDULE", NEVER)
        .with("SCALE_DOWN_SCHEDULE", NEVER);
    let service = std::sync::Arc::new(Service::standalone(paths, settings).await?);
    let mut tasks = Vec::new();
    for worker in 0..16 {
        let service = service.clone();
        tasks.push(tokio::spawn(async move {
            for n in (worker..active).step_by(16) {
                service
                    .start_run(json!({"template": "pending", "runId": format!("sweep-{n}")}))
                    .await?;
            }
            Ok::<(), String>(())
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    let before = emulator.last_request().await?;
    let started = Instant::now();
    service.fire_timer("Reconcile").await?;
    let took = started.elapsed();
    let (after, entries) = emulator.requests(before, "service=arm").await?;
    let mut sweep = Sweep {
        active,
        reads: 0,
        distinct: 0,
        lists: 0,
        other: 0,
        took,
        steady_reads_per_minute: 0.0,
    };
    let mut groups = std::collections::HashSet::new();
    for entry in &entries {
        let path = entry["path"].as_str().unwrap_or_default();
        match (
            entry["method"].as_str().unwrap_or_default(),
            path.rsplit_once("/containerGroups"),
        ) {
            ("GET", Some((_, ""))) => sweep.lists += 1,
            ("GET", Some((_, name))) if !name[1..].contains('/') => {
                sweep.reads += 1;
                groups.insert(name.to_owned());
            }
            _ => sweep.other += 1,
        }
    }
    sweep.distinct = groups.len();
    tokio::time::sleep(STEADY_WINDOW).await;
    let (_, steady) = emulator.requests(after, "service=arm&method=GET").await?;
    sweep.steady_reads_per_minute = steady
        .iter()
        .filter(|e| {
            e["path"]
                .as_str()
                .is_some_and(|p| !p.ends_with("/containerGroups"))
        })
        .count() as f64
        * 60.0
        / STEADY_WINDOW.as_secs_f64();
    Ok(sweep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_the_groups_own_requests_by_kind() {
        let base = "/subscriptions/s/resourceGroups/jobs/providers/Microsoft.ContainerInstance/containerGroups";
        let entry = |method: &str, path: String| json!({"method": method, "path": path});
        let entries = vec![
            entry("PUT", format!("{base}/cb-a")),
            entry("GET", format!("{base}/cb-a")),
            entry("GET", format!("{base}/cb-a")),
            entry("GET", format!("{base}/cb-a/containers/job/logs")),
            entry("POST", format!("{base}/cb-a/stop")),
            entry("DELETE", format!("{base}/cb-a")),
            entry("GET", format!("{base}/cb-b")),
            entry("GET", base.to_owned()),
        ];
        let counts = Counts::of_group(&entries, "cb-a");
        assert_eq!(
            counts,
            Counts {
                creates: 1,
                reads: 2,
                logs: 1,
                deletes: 1,
                other: 1
            }
        );
        assert_eq!(counts.total(), 6);
    }

    #[test]
    fn reads_the_exit_time_from_the_log_tail() {
        let callback = json!({"Output": {"logTail": "working\nexited-at 1700000000.250000000\n"}});
        let exited = exit_time(&callback).unwrap();
        assert_eq!(
            exited.duration_since(UNIX_EPOCH).unwrap(),
            Duration::from_millis(1_700_000_000_250)
        );
        assert_eq!(
            exit_time(&json!({"Output": {"logTail": "no marker"}})),
            None
        );
        let run = RunEconomy {
            seconds: 10,
            counts: Counts::default(),
            lifetime: Duration::from_millis(13_200),
            callback_after_exit: Duration::ZERO,
        };
        assert_eq!(run.airflow(), 16, "create, 14 reads, delete");
    }
}
