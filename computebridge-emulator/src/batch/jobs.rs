//! Batch jobs and tasks. A task waits `active` until its job's pool has an idle node, then runs
//! there: its command line really runs (`/bin/sh -c`) with the Batch environment variables, the
//! node is `running` meanwhile, and the exit code completes the task. A command line that is
//! exactly `sleep N` is simulated on the emulator's clock instead, so workloads of hours can be
//! replayed with a fast clock.

use serde_json::{Map, Value, json};
use time::{Duration, OffsetDateTime};
use tokio::sync::oneshot;

use crate::http::azure_time;

#[derive(Debug)]
pub struct Job {
    pub id: String,
    pub pool_id: String,
    pub etag: String,
    pub created: OffsetDateTime,
    pub tasks: Vec<Task>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    Active,
    Running,
    Completed,
}

#[derive(Debug)]
pub struct Task {
    pub id: String,
    pub command_line: String,
    pub environment: Vec<(String, String)>,
    pub state: TaskState,
    pub state_transition_time: OffsetDateTime,
    pub created: OffsetDateTime,
    pub etag: String,
    pub node_id: Option<String>,
    pub start_time: Option<OffsetDateTime>,
    pub end_time: Option<OffsetDateTime>,
    pub exit_code: Option<i32>,
    pub requeue_count: u32,
    /// For a simulated `sleep N`: when it completes.
    pub simulated_end: Option<OffsetDateTime>,
    /// Kills a running process (requeue/terminate on node removal).
    pub kill: Option<oneshot::Sender<()>>,
    /// Run number, so a late exit from a killed run is ignored.
    pub attempt: u32,
}

impl Task {
    pub fn new(
        id: String,
        command_line: String,
        environment: Vec<(String, String)>,
        now: OffsetDateTime,
    ) -> Task {
        Task {
            id,
            command_line,
            environment,
            state: TaskState::Active,
            state_transition_time: now,
            created: now,
            etag: super::pools::etag(now),
            node_id: None,
            start_time: None,
            end_time: None,
            exit_code: None,
            requeue_count: 0,
            simulated_end: None,
            kill: None,
            attempt: 0,
        }
    }

    /// Seconds of a simulated `sleep N` command line.
    pub fn simulated_seconds(&self) -> Option<f64> {
        let rest = self.command_line.trim().strip_prefix("sleep ")?;
        rest.trim().parse::<f64>().ok().filter(|s| *s >= 0.0)
    }

    pub fn start(&mut self, node_id: &str, now: OffsetDateTime) {
        self.state = TaskState::Running;
        self.state_transition_time = now;
        self.node_id = Some(node_id.to_owned());
        self.start_time = Some(now);
        self.attempt += 1;
        self.simulated_end = self
            .simulated_seconds()
            .map(|s| now + Duration::seconds_f64(s));
    }

    pub fn complete(&mut self, exit_code: i32, now: OffsetDateTime) {
        self.state = TaskState::Completed;
        self.state_transition_time = now;
        self.end_time = Some(now);
        self.exit_code = Some(exit_code);
        self.simulated_end = None;
        self.kill = None;
    }

    /// Back to the queue after its node was removed under `requeue`.
    pub fn requeue(&mut self, now: OffsetDateTime) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        self.state = TaskState::Active;
        self.state_transition_time = now;
        self.node_id = None;
        self.start_time = None;
        self.simulated_end = None;
        self.requeue_count += 1;
    }

    pub fn to_json(&self, base: &str, job: &Job) -> Value {
        let mut body = json!({
            "id": self.id,
            "url": format!("{base}/jobs/{}/tasks/{}", job.id, self.id),
            "eTag": self.etag,
            "creationTime": azure_time(self.created),
            "lastModified": azure_time(self.created),
            "state": match self.state { TaskState::Active => "active", TaskState::Running => "running", TaskState::Completed => "completed" },
            "stateTransitionTime": azure_time(self.state_transition_time),
            "commandLine": self.command_line,
            "environmentSettings": self.environment.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(),
            "constraints": {"maxWallClockTime": "P10675199DT2H48M5.4775807S", "retentionTime": "P7D", "maxTaskRetryCount": 0},
            "requiredSlots": 1,
        });
        let mut execution = Map::new();
        execution.insert("retryCount".into(), json!(0));
        execution.insert("requeueCount".into(), json!(self.requeue_count));
        if let Some(start) = self.start_time {
            execution.insert("startTime".into(), json!(azure_time(start)));
        }
        if let Some(end) = self.end_time {
            execution.insert("endTime".into(), json!(azure_time(end)));
        }
        if let Some(code) = self.exit_code {
            execution.insert("exitCode".into(), json!(code));
            execution.insert(
                "result".into(),
                json!(if code == 0 { "success" } else { "failure" }),
            );
        }
        body["executionInfo"] = Value::Object(execution);
        if let Some(node) = &self.node_id {
            body["nodeInfo"] = json!({"nodeId": node, "poolId": job.pool_id});
        }
        body
    }
}

impl Job {
    pub fn to_json(&self, base: &str) -> Value {
        json!({
            "id": self.id,
            "url": format!("{base}/jobs/{}", self.id),
            "eTag": self.etag,
            "creationTime": azure_time(self.created),
            "lastModified": azure_time(self.created),
            "state": "active",
            "stateTransitionTime": azure_time(self.created),
            "priority": 0,
            "poolInfo": {"poolId": self.pool_id},
            "onAllTasksComplete": "noaction",
            "onTaskFailure": "noaction",
        })
    }

    pub fn counts(&self) -> (u32, u32, u32, u32) {
        let active = self
            .tasks
            .iter()
            .filter(|t| t.state == TaskState::Active)
            .count() as u32;
        let running = self
            .tasks
            .iter()
            .filter(|t| t.state == TaskState::Running)
            .count() as u32;
        let succeeded = self.tasks.iter().filter(|t| t.exit_code == Some(0)).count() as u32;
        let failed = self
            .tasks
            .iter()
            .filter(|t| t.state == TaskState::Completed && t.exit_code != Some(0))
            .count() as u32;
        (active, running, succeeded, failed)
    }

    /// `GET /jobs/{id}/taskcounts`: wrapped since 2020-09, flat before.
    pub fn counts_json(&self, api_version: &str) -> Value {
        let (active, running, succeeded, failed) = self.counts();
        let counts = json!({"active": active, "running": running, "completed": succeeded + failed, "succeeded": succeeded, "failed": failed});
        if api_version < "2020-09-01" {
            counts
        } else {
            json!({"taskCounts": counts, "taskSlotCounts": counts})
        }
    }
}
