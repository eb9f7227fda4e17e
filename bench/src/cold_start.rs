//! Cold start and memory: the release binary spawned as the Functions host spawns it, timed to
//! its first answered `GET /`, and its resident memory idle and after 10,000 requests; the same
//! for a minimal FastAPI app under uvicorn, side by side.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::{Child, Memory, free_port};
use crate::stack::{Emulator, Paths, ServiceSettings, StateStore, functions_command};
use crate::stats::{median, percentile};

const REQUESTS: usize = 10_000;
const CONNECTIONS: usize = 16;
/// How often the probe retries while nothing answers.
const PROBE_EVERY: Duration = Duration::from_micros(250);

pub struct Contender {
    pub name: &'static str,
    /// Spawn to first `200` on `GET /`, in milliseconds, one per start.
    pub starts_ms: Vec<f64>,
    pub idle: Memory,
    pub after_requests: Memory,
}

pub struct ColdStart {
    pub runs: usize,
    pub service: Contender,
    pub fastapi: Contender,
    pub binary_bytes: u64,
    pub fastapi_versions: String,
}

/// What starts one contender on a given port.
type Launcher<'a> = dyn Fn(u16) -> Command + Sync + 'a;

pub async fn run(paths: &Paths, emulator: &Emulator, runs: usize) -> Result<ColdStart, String> {
    // Configured as deployed: emulator, identity, Key Vault references, templates, state.
    let settings = ServiceSettings::new(paths, emulator, &StateStore::Folder, "")?;
    let service = |port| functions_command(paths, settings.clone(), port);
    let fastapi = |port: u16| {
        let mut command = Command::new(&paths.python);
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .current_dir(paths.root.join("bench"))
            .args([
                "-m",
                "uvicorn",
                "fastapi_app:app",
                "--host",
                "127.0.0.1",
                "--log-level",
                "warning",
                "--port",
            ])
            .arg(port.to_string());
        command
    };
    let service = measure("computebridge", &service, runs, "/api/health").await?;
    let fastapi = measure("FastAPI + uvicorn", &fastapi, runs, "/api/health").await?;
    let binary_bytes = std::fs::metadata(&paths.service)
        .map(|m| m.len())
        .map_err(|e| e.to_string())?;
    let versions = std::process::Command::new(&paths.python)
        .args(["-c", "import sys, fastapi, uvicorn; print(f'Python {sys.version.split()[0]}, FastAPI {fastapi.__version__}, uvicorn {uvicorn.__version__}')"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    Ok(ColdStart {
        runs,
        service,
        fastapi,
        binary_bytes,
        fastapi_versions: versions,
    })
}

async fn measure(
    name: &'static str,
    launch: &Launcher<'_>,
    runs: usize,
    route: &str,
) -> Result<Contender, String> {
    let mut starts_ms = Vec::with_capacity(runs);
    for _ in 0..runs {
        let (elapsed, _child) = tokio::task::block_in_place(|| start_and_probe(launch))?;
        starts_ms.push(elapsed.as_secs_f64() * 1000.0);
    }
    let (_, child, port) = tokio::task::block_in_place(|| start_and_probe_keep(launch))?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = child.memory()?;
    hammer(port, route).await?;
    let after_requests = child.memory()?;
    Ok(Contender {
        name,
        starts_ms,
        idle,
        after_requests,
    })
}

fn start_and_probe(launch: &Launcher<'_>) -> Result<(Duration, Child), String> {
    start_and_probe_keep(launch).map(|(elapsed, child, _)| (elapsed, child))
}

/// Spawns on a free port and probes `GET /` (a fresh connection each try, as the host does)
/// until it answers 200; the time is from just before the spawn.
fn start_and_probe_keep(launch: &Launcher<'_>) -> Result<(Duration, Child, u16), String> {
    let port = free_port()?;
    let command = launch(port);
    let started = Instant::now();
    let child = Child::spawn(command)?;
    let deadline = started + Duration::from_secs(30);
    loop {
        if answers_200(port) {
            return Ok((started.elapsed(), child, port));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "nothing answered GET / on port {port}:\n{}",
                child.tail()
            ));
        }
        std::thread::sleep(PROBE_EVERY);
    }
}

fn answers_200(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream
        .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

/// 10,000 GETs of `route` over 16 keep-alive connections; every answer must be 200.
async fn hammer(port: u16, route: &str) -> Result<(), String> {
    let client = crate::stack::client();
    let url = format!("http://127.0.0.1:{port}{route}");
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..REQUESTS / CONNECTIONS {
                let response = client.get(&url).send().await.map_err(|e| e.to_string())?;
                if response.status() != 200 {
                    return Err(format!("{url} answered {}", response.status()));
                }
                response.bytes().await.map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

impl Contender {
    pub fn median_ms(&self) -> f64 {
        median(&self.starts_ms).unwrap_or(f64::NAN)
    }

    pub fn p90_ms(&self) -> f64 {
        percentile(&self.starts_ms, 90.0).unwrap_or(f64::NAN)
    }
}
