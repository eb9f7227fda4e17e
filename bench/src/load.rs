//! Request overhead: `wrk` on loopback against the service (Functions mode, on the emulator with
//! ARM's request limits off so the service's own cost is measured), for a status read and for new
//! and repeated run starts, at 1, 16 and 128 connections, with each state store. Every row gets a
//! fresh emulator, service and state so earlier rows' runs do not load later ones.

use std::time::Duration;

use serde_json::{Value, json};

use crate::stack::{Azurite, Emulator, FUNCTION_KEY, Paths, Service, ServiceSettings, StateStore};

pub const CONNECTIONS: [u32; 3] = [1, 16, 128];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    GetRun,
    StartRun,
    RepeatStart,
}

impl Endpoint {
    pub const ALL: [Endpoint; 3] = [Endpoint::GetRun, Endpoint::StartRun, Endpoint::RepeatStart];

    pub fn label(self) -> &'static str {
        match self {
            Endpoint::GetRun => "`GET /api/runs/{id}`",
            Endpoint::StartRun => "`POST /api/runs` (new run)",
            Endpoint::RepeatStart => "`POST /api/runs` (repeated `runId`)",
        }
    }

    /// The script's arguments: mode, two values, the function key.
    fn wrk_args(self, run_id: &str) -> Vec<String> {
        let (mode, first, second) = match self {
            Endpoint::GetRun => ("get", format!("/api/runs/{run_id}"), "-".to_owned()),
            Endpoint::StartRun => ("post-new", "pending".to_owned(), "-".to_owned()),
            Endpoint::RepeatStart => ("post-repeat", "pending".to_owned(), run_id.to_owned()),
        };
        vec![mode.to_owned(), first, second, FUNCTION_KEY.to_owned()]
    }
}

/// What `wrk` reported for one row (latencies in milliseconds).
#[derive(Debug, Clone, PartialEq)]
pub struct WrkResult {
    pub requests: u64,
    pub seconds: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    /// Answers outside 2xx/3xx.
    pub non_2xx: u64,
    /// Connect, read, write errors and timeouts.
    pub socket_errors: u64,
}

impl WrkResult {
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
}

pub struct LoadRow {
    pub store: &'static str,
    pub endpoint: Endpoint,
    pub connections: u32,
    pub result: WrkResult,
}

pub async fn run(paths: &Paths, azurite: &Azurite, seconds: u32) -> Result<Vec<LoadRow>, String> {
    let mut rows = Vec::new();
    for store in [StateStore::Blob(azurite), StateStore::Folder] {
        for endpoint in Endpoint::ALL {
            for connections in CONNECTIONS {
                let result = row(paths, &store, endpoint, connections, seconds).await?;
                rows.push(LoadRow {
                    store: store.label(),
                    endpoint,
                    connections,
                    result,
                });
            }
        }
    }
    Ok(rows)
}

async fn row(
    paths: &Paths,
    store: &StateStore<'_>,
    endpoint: Endpoint,
    connections: u32,
    seconds: u32,
) -> Result<WrkResult, String> {
    let emulator = Emulator::start(1.0, false, Default::default()).await?;
    let settings = ServiceSettings::new(paths, &emulator, store, "")?;
    let service = Service::functions(paths, settings).await?;
    let seeded: Value = service
        .start_run(json!({"template": "pending", "runId": "load-seed"}))
        .await?;
    let run_id = seeded["runId"].as_str().unwrap_or("load-seed").to_owned();
    let args = endpoint.wrk_args(&run_id);
    // Warm-up (connections, caches, the Key Vault value), not recorded.
    wrk(paths, &service.base, connections, 1, &args).await?;
    wrk(paths, &service.base, connections, seconds, &args).await
}

async fn wrk(
    paths: &Paths,
    base: &str,
    connections: u32,
    seconds: u32,
    args: &[String],
) -> Result<WrkResult, String> {
    let output = tokio::time::timeout(
        Duration::from_secs(u64::from(seconds) + 60),
        tokio::process::Command::new("wrk")
            .arg(format!("-t{}", connections.min(2)))
            .arg(format!("-c{connections}"))
            .arg(format!("-d{seconds}s"))
            .args(["--timeout", "10s", "-s"])
            .arg(paths.root.join("bench/wrk.lua"))
            .arg(base)
            .arg("--")
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| "wrk did not finish".to_owned())?
    .map_err(|e| format!("cannot run wrk: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    parse(&stdout).ok_or_else(|| {
        format!(
            "wrk printed no result ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// The JSON line `bench/wrk.lua` prints in `done()`.
fn parse(stdout: &str) -> Option<WrkResult> {
    let line = stdout.lines().find(|l| l.starts_with("{\"requests\""))?;
    let v: Value = serde_json::from_str(line).ok()?;
    let n = |k: &str| v[k].as_f64();
    let ms = |k: &str| n(k).map(|us| us / 1000.0);
    Some(WrkResult {
        requests: v["requests"].as_u64()?,
        seconds: n("duration_us")? / 1_000_000.0,
        p50: ms("p50")?,
        p90: ms("p90")?,
        p99: ms("p99")?,
        p999: ms("p999")?,
        max: ms("max")?,
        non_2xx: v["status"].as_u64()?,
        socket_errors: ["connect", "read", "write", "timeout"]
            .iter()
            .filter_map(|k| v[*k].as_u64())
            .sum(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_line_the_wrk_script_prints() {
        let stdout = "Running 5s test @ http://127.0.0.1:1\n  2 threads and 16 connections\n\
            {\"requests\":5000,\"duration_us\":5000000,\"connect\":0,\"read\":1,\"write\":0,\"status\":3,\"timeout\":2,\
            \"p50\":1500,\"p90\":2500,\"p99\":4000,\"p999\":9000,\"max\":12000,\"mean\":1700.5}\n";
        let result = parse(stdout).unwrap();
        assert_eq!(result.requests, 5000);
        assert_eq!(result.per_second(), 1000.0);
        assert_eq!((result.p50, result.p99, result.max), (1.5, 4.0, 12.0));
        assert_eq!((result.non_2xx, result.socket_errors), (3, 3));
        assert_eq!(parse("Running 5s test\n"), None);
    }

    #[test]
    fn each_endpoint_gives_the_script_its_mode() {
        assert_eq!(
            Endpoint::GetRun.wrk_args("r1"),
            ["get", "/api/runs/r1", "-", FUNCTION_KEY]
        );
        assert_eq!(
            Endpoint::RepeatStart.wrk_args("r1"),
            ["post-repeat", "pending", "r1", FUNCTION_KEY]
        );
        assert_eq!(Endpoint::StartRun.wrk_args("r1")[0], "post-new");
    }
}
