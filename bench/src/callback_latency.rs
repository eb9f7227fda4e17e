//! Completion-to-callback latency: from a container's exit (the time it prints as its last log
//! line) to ADF's callback arriving, for jobs that only exit (found by the worker's scheduled
//! check) and jobs that post their output just before exiting (which has the run watched).

use std::time::Duration;

use serde_json::json;

use crate::economy::exit_time;
use crate::receiver::Receiver;
use crate::stack::{Azurite, Emulator, Paths, Service, ServiceSettings, StateStore};

pub struct Latencies {
    /// Seconds, one per run, for jobs that exit without posting output.
    pub plain: Vec<f64>,
    /// Seconds, one per run, for jobs that post their output, then exit.
    pub with_output: Vec<f64>,
}

/// `runs` jobs of each kind, all at once, exiting 2 to 6 s after they start (spread over the
/// check schedule), on a Functions-mode instance with Blob state.
pub async fn run(paths: &Paths, azurite: &Azurite, runs: usize) -> Result<Latencies, String> {
    let emulator = Emulator::start(1.0, true, Default::default()).await?;
    let receiver = Receiver::start().await?;
    let settings = ServiceSettings::new(paths, &emulator, &StateStore::Blob(azurite), "")?;
    let service = Service::functions(paths, settings).await?;
    let mut started = Vec::new();
    for n in 0..runs {
        for template in ["sleeper", "reporter"] {
            let run_id = format!("latency-{template}-{n}");
            service
                .start_run(json!({
                    "template": template,
                    "runId": run_id,
                    "parameters": {"seconds": (2 + n % 4).to_string(), "tenths": ((n * 3) % 10).to_string()},
                    "callBackUri": receiver.url(&format!("/{run_id}")),
                }))
                .await?;
            started.push((template, run_id));
        }
    }
    let mut latencies = Latencies {
        plain: Vec::new(),
        with_output: Vec::new(),
    };
    for (template, run_id) in started {
        let callback = receiver
            .wait_for(&format!("/{run_id}"), Duration::from_secs(120))
            .await?;
        if callback.body["StatusCode"] != "200" {
            return Err(format!("{run_id} did not succeed: {}", callback.body));
        }
        let exited = exit_time(&callback.body)
            .ok_or_else(|| format!("{run_id}: no exit time in {}", callback.body))?;
        let latency = callback
            .received
            .duration_since(exited)
            .map_err(|_| format!("{run_id}: the callback came before the exit"))?
            .as_secs_f64();
        match template {
            "sleeper" => latencies.plain.push(latency),
            _ => latencies.with_output.push(latency),
        }
    }
    Ok(latencies)
}
