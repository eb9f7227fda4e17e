//! Container groups: the two independent axes ACI reports (provisioning state, and the runtime
//! state of the group and each container), restart policies, events, logs, and the JSON shapes
//! of GET (with `instanceView`) and list (without). Secure environment values and registry
//! passwords are kept for the containers but never written back.

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use tokio::sync::oneshot;

use crate::http::azure_time;

#[derive(Debug, Clone)]
pub struct EnvVar {
    pub name: String,
    pub value: Option<String>,
    pub secure_value: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ContainerState {
    Waiting {
        detail: String,
    },
    Running {
        start: OffsetDateTime,
    },
    Terminated {
        exit_code: i32,
        start: OffsetDateTime,
        finish: OffsetDateTime,
        detail: String,
    },
}

#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    pub message: String,
    pub kind: &'static str,
    pub count: u32,
    pub first: OffsetDateTime,
    pub last: OffsetDateTime,
}

impl Event {
    fn to_json(&self) -> Value {
        json!({
            "count": self.count,
            "firstTimestamp": azure_time(self.first),
            "lastTimestamp": azure_time(self.last),
            "name": self.name,
            "message": self.message,
            "type": self.kind,
        })
    }
}

#[derive(Debug)]
pub struct Container {
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub env: Vec<EnvVar>,
    /// The container's `properties` as submitted, minus secure values and instance view.
    pub spec: Value,
    pub state: Option<ContainerState>,
    pub previous_state: Option<ContainerState>,
    pub restart_count: u32,
    pub events: Vec<Event>,
    /// Output lines with the simulated time they were written.
    pub logs: Vec<(OffsetDateTime, String)>,
    pub log_bytes: usize,
    pub kill: Option<oneshot::Sender<()>>,
    pub next_restart: Option<OffsetDateTime>,
    /// When the next pull attempt of an image that cannot be pulled happens.
    pub next_pull: Option<OffsetDateTime>,
    pub cpu: f64,
}

/// Logs kept per container, as ACI caps them.
pub const MAX_LOG_BYTES: usize = 4 * 1024 * 1024;

impl Container {
    pub fn event(&mut self, name: &str, message: String, kind: &'static str, now: OffsetDateTime) {
        if let Some(existing) = self
            .events
            .iter_mut()
            .find(|e| e.name == name && e.message == message)
        {
            existing.count += 1;
            existing.last = now;
            return;
        }
        self.events.push(Event {
            name: name.to_owned(),
            message,
            kind,
            count: 1,
            first: now,
            last: now,
        });
    }

    pub fn push_log(&mut self, at: OffsetDateTime, line: String) {
        self.log_bytes += line.len() + 1;
        self.logs.push((at, line));
        while self.log_bytes > MAX_LOG_BYTES && !self.logs.is_empty() {
            let (_, dropped) = self.logs.remove(0);
            self.log_bytes -= dropped.len() + 1;
        }
    }

    pub fn stop_process(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
    }

    fn state_json(state: &ContainerState) -> Value {
        match state {
            ContainerState::Waiting { detail } => {
                json!({"state": "Waiting", "detailStatus": detail})
            }
            ContainerState::Running { start } => {
                json!({"state": "Running", "startTime": azure_time(*start), "detailStatus": ""})
            }
            ContainerState::Terminated {
                exit_code,
                start,
                finish,
                detail,
            } => json!({
                "state": "Terminated",
                "startTime": azure_time(*start),
                "exitCode": exit_code,
                "finishTime": azure_time(*finish),
                "detailStatus": detail,
            }),
        }
    }

    fn to_json(&self, with_instance_view: bool) -> Value {
        let mut properties = self.spec.as_object().cloned().unwrap_or_default();
        properties.insert(
            "environmentVariables".into(),
            json!(
                self.env
                    .iter()
                    .map(|v| match &v.value {
                        Some(value) => json!({"name": v.name, "value": value}),
                        None => json!({"name": v.name}),
                    })
                    .collect::<Vec<_>>()
            ),
        );
        if with_instance_view {
            let mut view = Map::new();
            view.insert("restartCount".into(), json!(self.restart_count));
            if let Some(state) = &self.state {
                view.insert("currentState".into(), Container::state_json(state));
            }
            if let Some(previous) = &self.previous_state {
                view.insert("previousState".into(), Container::state_json(previous));
            }
            view.insert(
                "events".into(),
                json!(self.events.iter().map(Event::to_json).collect::<Vec<_>>()),
            );
            properties.insert("instanceView".into(), Value::Object(view));
        }
        json!({"name": self.name, "properties": properties})
    }
}

#[derive(Debug)]
pub struct Group {
    pub id: String,
    pub name: String,
    pub location: String,
    pub tags: Option<Value>,
    pub identity: Option<Value>,
    /// Group `properties` as submitted, minus containers, passwords and instance view.
    pub spec: Map<String, Value>,
    pub containers: Vec<Container>,
    pub restart_policy: String,
    /// Registry credentials as submitted (server, username, password or identity).
    pub registry_credentials: Vec<Value>,
    pub provisioning_state: String,
    /// `Pending`, `Running`, `Succeeded`, `Failed` or `Stopped`.
    pub state: String,
    pub events: Vec<Event>,
    /// Bumped on every new deployment, so exits of older processes are ignored.
    pub deployment: u64,
    /// When the in-flight deployment finishes provisioning and its containers start.
    pub provisioned_at: Option<OffsetDateTime>,
    pub operation: Option<String>,
}

impl Group {
    pub fn cpu(&self) -> f64 {
        self.containers.iter().map(|c| c.cpu).sum()
    }

    /// Whether an operation is in flight (ACI answers 409 `ContainerGroupTransitioning`).
    pub fn transitioning(&self, now: OffsetDateTime) -> bool {
        self.provisioned_at.is_some_and(|at| now < at)
    }

    /// Whether the group holds compute (for quota and cleanup accounting).
    pub fn active(&self) -> bool {
        matches!(self.state.as_str(), "Pending" | "Running")
    }

    /// Recomputes the group state from its containers once they have all settled.
    pub fn settle(&mut self) {
        if self.state == "Stopped" || self.provisioned_at.is_some() {
            return;
        }
        let all_done = self.containers.iter().all(|c| {
            matches!(c.state, Some(ContainerState::Terminated { .. })) && c.next_restart.is_none()
        });
        if all_done && !self.containers.is_empty() {
            let all_zero = self.containers.iter().all(|c| {
                matches!(
                    c.state,
                    Some(ContainerState::Terminated { exit_code: 0, .. })
                )
            });
            self.state = if all_zero { "Succeeded" } else { "Failed" }.into();
        } else if self
            .containers
            .iter()
            .any(|c| matches!(c.state, Some(ContainerState::Running { .. })))
        {
            self.state = "Running".into();
        }
    }

    pub fn to_json(&self, with_instance_view: bool) -> Value {
        let mut properties = self.spec.clone();
        properties.insert("provisioningState".into(), json!(self.provisioning_state));
        properties.insert(
            "containers".into(),
            json!(
                self.containers
                    .iter()
                    .map(|c| c.to_json(with_instance_view))
                    .collect::<Vec<_>>()
            ),
        );
        properties.insert("restartPolicy".into(), json!(self.restart_policy));
        let shown: Vec<Value> = self
            .registry_credentials
            .iter()
            .map(|c| {
                let mut shown = c.as_object().cloned().unwrap_or_default();
                shown.remove("password");
                Value::Object(shown)
            })
            .collect();
        properties.insert("imageRegistryCredentials".into(), json!(shown));
        if with_instance_view {
            properties.insert("instanceView".into(), json!({"events": self.events.iter().map(Event::to_json).collect::<Vec<_>>(), "state": self.state}));
        }
        let mut body = json!({
            "id": self.id,
            "name": self.name,
            "type": "Microsoft.ContainerInstance/containerGroups",
            "location": self.location,
            "properties": properties,
        });
        if let Some(tags) = &self.tags {
            body["tags"] = tags.clone();
        }
        if let Some(identity) = &self.identity {
            body["identity"] = identity.clone();
        }
        body
    }
}
