//! `computebridge-bench`: measures computebridge on this machine, side by side with what it
//! replaces, and writes the report (`bench/README.md`). `scripts/bench` installs the tools,
//! builds the release binaries and runs it; the report says what each figure means and how it
//! was measured.

mod callback_latency;
mod cold_start;
mod economy;
mod idle_cost;
mod load;
mod machine;
mod process;
mod receiver;
mod report;
mod stack;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use stack::{Azurite, Emulator, Paths};

const USAGE: &str = "usage: computebridge-bench [--quick] [--out FILE]
  --quick     shorter runs (no 10-minute run, fewer samples) for trying changes; not for the report
  --out FILE  where to write the report (default: bench/README.md)";

/// How much of each measurement to do.
#[derive(Debug, Clone)]
pub struct Plan {
    pub quick: bool,
    pub cold_starts: usize,
    pub load_seconds: u32,
    pub run_seconds: Vec<u64>,
    pub sweep_sizes: Vec<usize>,
    pub latency_runs: usize,
    pub trace_speed: f64,
}

impl Plan {
    fn full() -> Plan {
        Plan {
            quick: false,
            cold_starts: 21,
            load_seconds: 5,
            run_seconds: vec![10, 60, 600],
            sweep_sizes: vec![1, 100, 1000],
            latency_runs: 20,
            trace_speed: 480.0,
        }
    }

    fn quick() -> Plan {
        Plan {
            quick: true,
            cold_starts: 5,
            load_seconds: 2,
            run_seconds: vec![10, 60],
            sweep_sizes: vec![1, 100],
            latency_runs: 8,
            trace_speed: 1500.0,
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut plan = Plan::full();
    let mut out = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => plan = Plan::quick(),
            "--out" => match args.next() {
                Some(path) => out = Some(PathBuf::from(path)),
                None => return usage("--out needs a file"),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => return usage(&format!("unknown argument '{other}'")),
        }
    }
    match run(plan, out).await {
        Ok(path) => {
            println!("[bench] report written to {}", path.display());
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("computebridge-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

fn usage(message: &str) -> ExitCode {
    eprintln!("computebridge-bench: {message}\n{USAGE}");
    ExitCode::from(2)
}

async fn run(plan: Plan, out: Option<PathBuf>) -> Result<PathBuf, String> {
    let began = Instant::now();
    let paths = Paths::discover()?;
    let out = out.unwrap_or_else(|| paths.root.join("bench/README.md"));
    let machine = machine::Machine::describe();
    let step = |what: &str| println!("[bench] {:>5.0} s  {what}", began.elapsed().as_secs_f64());

    // The long runs go on in the background, on their own emulator and instance, meanwhile.
    step("control-plane economy: runs of each duration, in the background");
    let per_run = tokio::spawn({
        let (paths, seconds) = (paths.clone(), plan.run_seconds.clone());
        async move { economy::per_run(&paths, &seconds).await }
    });
    let azurite = Azurite::start(&paths).await?;

    step("cold start and memory");
    let emulator = Emulator::start(1.0, true, Default::default()).await?;
    let cold = cold_start::run(&paths, &emulator, plan.cold_starts).await?;
    drop(emulator);

    step("request overhead (wrk)");
    let load = load::run(&paths, &azurite, plan.load_seconds).await?;

    let mut sweeps = Vec::new();
    for &active in &plan.sweep_sizes {
        step(&format!("Reconcile sweep over {active} active runs"));
        sweeps.push(economy::sweep(&paths, active).await?);
    }

    step("completion-to-callback latency");
    let latency = callback_latency::run(&paths, &azurite, plan.latency_runs).await?;

    step("idle cost: a day of Batch bursts on a fast clock");
    let idle = idle_cost::run(&paths, plan.trace_speed).await?;

    step("waiting for the longest container run");
    let per_run = per_run.await.map_err(|e| e.to_string())??;

    let report = report::Report {
        plan: &plan,
        machine: &machine,
        cold: &cold,
        load: &load,
        per_run: &per_run,
        sweeps: &sweeps,
        latency: &latency,
        idle: &idle,
        took: began.elapsed(),
    }
    .render();
    std::fs::write(&out, report).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    let _ = std::fs::remove_dir_all(&paths.scratch);
    step("done");
    Ok(out)
}
