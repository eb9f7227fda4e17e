//! The command line: which mode to run in.
//!
//! - no command, with `FUNCTIONS_CUSTOMHANDLER_PORT` set: Functions custom-handler mode;
//! - `serve [--port N]`: standalone, with its own scheduler and key checks;
//! - `dev [--port N]`: standalone against the embedded local Azure emulator, seeded with demos.

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Functions,
    Serve { port: Option<u16> },
    Dev { port: Option<u16> },
    Help,
    Version,
}

pub const USAGE: &str = "\
computebridge: runs Azure Data Factory work on Azure Container Instances and Batch

usage:
  computebridge                  run as an Azure Functions custom handler
                                 (needs FUNCTIONS_CUSTOMHANDLER_PORT, set by the Functions host)
  computebridge serve [--port N] run standalone: own timer scheduler and function-key checks
  computebridge dev [--port N]   run standalone against the embedded local Azure emulator
                                 (no Azure account needed; function key: dev)
  computebridge --version | --help

configuration: environment variables and the TOML file named by COMPUTEBRIDGE_CONFIG (see README.md)";

/// Parses arguments (without the program name). `functions_port_set` says whether the Functions
/// host's port variable is present, which is what makes the bare command valid.
pub fn parse(args: &[String], functions_port_set: bool) -> Result<Command, String> {
    let mut args = args.iter().map(String::as_str);
    let command = match args.next() {
        None if functions_port_set => return Ok(Command::Functions),
        None => {
            return Err(
                "no command given and FUNCTIONS_CUSTOMHANDLER_PORT is not set; to run without the Functions host use 'computebridge serve'"
                    .into(),
            );
        }
        Some("-h" | "--help" | "help") => return Ok(Command::Help),
        Some("-V" | "--version") => return Ok(Command::Version),
        Some("serve") => "serve",
        Some("dev") => "dev",
        Some(other) => return Err(format!("unknown command '{other}'")),
    };
    let mut port = None;
    while let Some(arg) = args.next() {
        match arg {
            "--port" | "-p" => {
                let value = args.next().ok_or("--port needs a value")?;
                let parsed = value
                    .parse::<u16>()
                    .map_err(|_| format!("--port: '{value}' is not a TCP port"))?;
                port = Some(parsed);
            }
            other => return Err(format!("{command}: unknown argument '{other}'")),
        }
    }
    Ok(match command {
        "dev" => Command::Dev { port },
        _ => Command::Serve { port },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn chooses_the_mode() {
        assert_eq!(parse(&args(&[]), true), Ok(Command::Functions));
        assert!(
            parse(&args(&[]), false)
                .unwrap_err()
                .contains("computebridge serve")
        );
        assert_eq!(
            parse(&args(&["serve"]), true),
            Ok(Command::Serve { port: None })
        );
        assert_eq!(
            parse(&args(&["serve", "--port", "0"]), false),
            Ok(Command::Serve { port: Some(0) })
        );
        assert!(parse(&args(&["serve", "--port"]), false).is_err());
        assert!(
            parse(&args(&["serve", "--port", "x"]), false)
                .unwrap_err()
                .contains("'x'")
        );
        assert!(parse(&args(&["serve", "--verbose"]), false).is_err());
        assert!(
            parse(&args(&["launch"]), false)
                .unwrap_err()
                .contains("launch")
        );
        assert_eq!(parse(&args(&["--version"]), false), Ok(Command::Version));
        assert_eq!(
            parse(&args(&["dev", "-p", "8080"]), false),
            Ok(Command::Dev { port: Some(8080) })
        );
    }
}
