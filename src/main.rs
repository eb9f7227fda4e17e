//! The `computebridge` binary: parse the command line, load configuration, start the service.

use std::process::ExitCode;

use computebridge::cli::{self, Command};
use computebridge::config::{self, Config};
use computebridge::dev;
use computebridge::startup::{self, Application};
use computebridge::state::Mode;
use computebridge::telemetry;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let functions_port_set = std::env::var_os(config::env::FUNCTIONS_PORT).is_some();
    let command = match cli::parse(&args, functions_port_set) {
        Ok(command) => command,
        Err(message) => {
            eprintln!("computebridge: {message}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    let mode = match command {
        Command::Help => {
            println!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Command::Version => {
            println!("computebridge {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Command::Functions => Mode::Functions,
        Command::Serve { .. } | Command::Dev { .. } => Mode::Standalone,
    };
    let mut config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("computebridge: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let Command::Serve { port: Some(port) } | Command::Dev { port: Some(port) } = command {
        config.port = port;
    }
    telemetry::init(config.log_format);
    let emulator = match command {
        Command::Dev { .. } => match dev::start_emulator(&mut config).await {
            Ok(emulator) => Some(emulator),
            Err(message) => {
                eprintln!("computebridge: {message}");
                return ExitCode::FAILURE;
            }
        },
        _ => None,
    };
    if mode == Mode::Standalone && config.function_keys.is_empty() {
        eprintln!(
            "computebridge: invalid configuration: {}: standalone mode checks function keys itself and needs at least one (name=value)",
            config::env::FUNCTION_KEYS
        );
        return ExitCode::FAILURE;
    }
    let application = match Application::build(config, mode).await {
        Ok(application) => application,
        Err(error) => {
            tracing::error!(error.cause = %error, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    match application.local_addr() {
        Ok(address) => {
            tracing::info!(mode = ?mode, "listening on http://{address}");
            if let Some(emulator) = &emulator {
                println!("{}", dev::banner(address, emulator));
            }
        }
        Err(error) => tracing::warn!(error.cause = %error, "listening address unknown"),
    }
    match application
        .run_until_stopped(startup::shutdown_signal())
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error.cause = %error, "server stopped with an error");
            ExitCode::FAILURE
        }
    }
}
