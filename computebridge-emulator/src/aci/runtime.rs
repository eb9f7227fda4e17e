//! Running containers for real: a container's command (or its image's registered entrypoint)
//! runs as a local process with only its environment variables (secure values included) and
//! `PATH`; its stdout and stderr become its logs and its exit code ends it. Images the emulator
//! does not know, or private images without matching registry credentials, fail to pull and stay
//! `Waiting`, as ACI shows an image it cannot pull.

use std::process::Stdio;

use serde::Deserialize;
use serde_json::Value;
use time::{Duration, OffsetDateTime};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use super::groups::{ContainerState, Group};
use crate::state::Shared;

/// Public images whose commands run on the host as they are.
const BASE_IMAGES: [&str; 5] = ["alpine", "busybox", "debian", "ubuntu", "python"];

/// An image registered through the control surface.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisteredImage {
    /// Repository without tag, e.g. `myregistry.azurecr.io/jobs/etl`.
    pub name: String,
    /// What runs when the container gives no command.
    #[serde(default)]
    pub entrypoint: Vec<String>,
    /// A private image: the group needs a registry credential with this username and password,
    /// or one naming a managed identity, for its server.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
}

/// Why an image cannot be pulled, in the words ACI's events use.
pub fn pull_problem(
    images: &[RegisteredImage],
    image: &str,
    credentials: &[Value],
) -> Option<String> {
    let repository = repository_of(image);
    let base = repository
        .trim_start_matches("docker.io/")
        .trim_start_matches("library/");
    if BASE_IMAGES.contains(&base) {
        return None;
    }
    let Some(registered) = images
        .iter()
        .find(|i| repository_of(&i.name).eq_ignore_ascii_case(&repository))
    else {
        return Some(format!(
            "Failed to pull image \"{image}\": rpc error: code = NotFound desc = failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": not found"
        ));
    };
    let Some(username) = &registered.username else {
        return None;
    };
    let server = repository.split('/').next().unwrap_or("");
    let authorized = credentials.iter().any(|c| {
        c["server"]
            .as_str()
            .is_some_and(|s| s.eq_ignore_ascii_case(server))
            && (c["identity"].is_string()
                || (c["username"].as_str() == Some(username)
                    && c["password"].as_str() == registered.password.as_deref()))
    });
    (!authorized).then(|| format!("Failed to pull image \"{image}\": rpc error: code = Unknown desc = failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": failed to authorize: failed to fetch anonymous token: unexpected status: 401 Unauthorized"))
}

/// `registry/repo:tag@digest` → `registry/repo`.
fn repository_of(image: &str) -> String {
    let without_digest = image.split('@').next().unwrap_or(image);
    match without_digest.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo.to_ascii_lowercase(),
        _ => without_digest.to_ascii_lowercase(),
    }
}

fn entrypoint_of(images: &[RegisteredImage], image: &str) -> Vec<String> {
    let repository = repository_of(image);
    images
        .iter()
        .find(|i| repository_of(&i.name).eq_ignore_ascii_case(&repository))
        .map(|i| i.entrypoint.clone())
        .unwrap_or_default()
}

/// Starts (or restarts) container `index` of `group`; the caller holds the ACI lock.
pub fn start_container(
    state: &Shared,
    images: &[RegisteredImage],
    group: &mut Group,
    index: usize,
    now: OffsetDateTime,
) {
    let deployment = group.deployment;
    let group_id = group.id.clone();
    let container = &mut group.containers[index];
    let mut argv = if container.command.is_empty() {
        entrypoint_of(images, &container.image)
    } else {
        container.command.clone()
    };
    if argv.is_empty() {
        // Base images without a command exit at once, as their default shell does without a TTY.
        argv = vec!["true".into()];
    }
    if argv[0] == "python" && which("python").is_none() {
        argv[0] = "python3".into();
    }
    container.event(
        "Started",
        format!("Started container {}", container.name),
        "Normal",
        now,
    );
    container.state = Some(ContainerState::Running { start: now });
    let run = container.restart_count;
    let name = container.name.clone();
    let (kill_tx, kill_rx) = tokio::sync::oneshot::channel();
    container.kill = Some(kill_tx);

    let workdir = std::env::temp_dir().join(format!(
        "computebridge-emulator-aci-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let mut command = tokio::process::Command::new(&argv[0]);
    command.args(&argv[1..]).env_clear().kill_on_drop(true);
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command.env("HOME", &workdir);
    for var in &container.env {
        if let Some(value) = var.value.as_ref().or(var.secure_value.as_ref()) {
            command.env(&var.name, value);
        }
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let state = state.clone();
    tokio::spawn(async move {
        let _ = std::fs::create_dir_all(&workdir);
        command.current_dir(&workdir);
        let exit_code = match command.spawn() {
            Ok(mut child) => {
                let readers: Vec<Box<dyn AsyncRead + Unpin + Send>> = vec![
                    Box::new(child.stdout.take().expect("piped stdout")),
                    Box::new(child.stderr.take().expect("piped stderr")),
                ];
                let mut copies = Vec::new();
                for reader in readers {
                    let state = state.clone();
                    let (group_id, name) = (group_id.clone(), name.clone());
                    copies.push(tokio::spawn(async move {
                        let mut lines = BufReader::new(reader).lines();
                        while let Ok(Some(line)) = lines.next_line().await {
                            let now = state.clock.now();
                            let mut aci = state.aci.lock().unwrap();
                            if let Some(container) = aci.container_mut(&group_id, deployment, &name)
                            {
                                container.push_log(now, line);
                            }
                        }
                    }));
                }
                let code = tokio::select! {
                    status = child.wait() => status.ok().map(|s| s.code().unwrap_or(137)).unwrap_or(1),
                    _ = kill_rx => {
                        let _ = child.kill().await;
                        let _ = std::fs::remove_dir_all(&workdir);
                        return;
                    }
                };
                for copy in copies {
                    let _ = copy.await;
                }
                code
            }
            Err(e) => {
                let now = state.clock.now();
                let mut aci = state.aci.lock().unwrap();
                if let Some(container) = aci.container_mut(&group_id, deployment, &name) {
                    container.event(
                        "Failed",
                        format!(
                            "failed to create containerd task: exec: \"{}\": {e}",
                            argv[0]
                        ),
                        "Warning",
                        now,
                    );
                }
                127
            }
        };
        let _ = std::fs::remove_dir_all(&workdir);
        let now = state.clock.now();
        let backoff = state.options.timings.aci_restart_backoff;
        let mut aci = state.aci.lock().unwrap();
        if let Some(group) = aci.group_for_deployment(&group_id, deployment) {
            container_exited(group, &name, run, exit_code, now, backoff);
        }
    });
}

fn container_exited(
    group: &mut Group,
    name: &str,
    run: u32,
    exit_code: i32,
    now: OffsetDateTime,
    backoff: Duration,
) {
    let policy = group.restart_policy.clone();
    let Some(container) = group
        .containers
        .iter_mut()
        .find(|c| c.name == name && c.restart_count == run)
    else {
        return;
    };
    let start = match container.state {
        Some(ContainerState::Running { start }) => start,
        _ => return,
    };
    container.kill = None;
    container.state = Some(ContainerState::Terminated {
        exit_code,
        start,
        finish: now,
        detail: if exit_code == 0 { "Completed" } else { "Error" }.into(),
    });
    let restart = match policy.as_str() {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    };
    if restart {
        container.next_restart = Some(now + backoff);
        container.event(
            "BackOff",
            format!("Back-off restarting failed container {name}"),
            "Warning",
            now,
        );
    }
    group.settle();
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(program))
            .find(|p| p.is_file())
    })
}
