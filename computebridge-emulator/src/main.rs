//! `computebridge-emulator --addr 127.0.0.1:PORT`: runs the emulator on its own.

use std::net::SocketAddr;
use std::process::ExitCode;

use computebridge_emulator::{Options, start};

const USAGE: &str = "usage: computebridge-emulator [--addr 127.0.0.1:PORT] [--identity-header VALUE] [--clock-speed FACTOR]";

#[tokio::main]
async fn main() -> ExitCode {
    let mut address: SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut options = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        let parsed = match arg.as_str() {
            "--addr" => value("--addr").and_then(|v| {
                v.parse()
                    .map(|a| address = a)
                    .map_err(|_| format!("--addr: '{v}' is not an address like 127.0.0.1:8900"))
            }),
            "--identity-header" => value("--identity-header").map(|v| options.identity_header = v),
            "--clock-speed" => value("--clock-speed").and_then(|v| {
                v.parse()
                    .ok()
                    .filter(|s: &f64| *s > 0.0)
                    .map(|s| options.clock_speed = s)
                    .ok_or(format!("--clock-speed: '{v}' is not a positive number"))
            }),
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => Err(format!("unknown argument '{other}'")),
        };
        if let Err(message) = parsed {
            eprintln!("computebridge-emulator: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    let running = match start(address, options).await {
        Ok(running) => running,
        Err(e) => {
            eprintln!("computebridge-emulator: cannot listen on {address}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("listening on {}", running.url());
    let _ = tokio::signal::ctrl_c().await;
    running.stop().await;
    ExitCode::SUCCESS
}
