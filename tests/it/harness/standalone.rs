//! `Standalone`: the binary run as `computebridge serve`, on a port it picks, with the settings a
//! test gives and nothing from the developer's environment.

use std::time::Duration;

use super::process::{Lines, Process, clean_command};

pub struct Standalone {
    pub base_url: String,
    pub client: reqwest::Client,
    process: Process,
}

impl Standalone {
    pub async fn start(settings: &[(&str, &str)]) -> Standalone {
        Standalone::start_command(&["serve", "--port", "0"], settings).await
    }

    /// Runs `computebridge {args}` (which must pick port 0) with `settings`.
    pub async fn start_command(args: &[&str], settings: &[(&str, &str)]) -> Standalone {
        let mut command = clean_command(env!("CARGO_BIN_EXE_computebridge").as_ref());
        command
            .args(args)
            .env("COMPUTEBRIDGE_BIND", "127.0.0.1")
            .envs(settings.iter().copied());
        let mut process = Process::spawn(command).expect("spawn computebridge");
        let line = process
            .lines
            .wait_for("listening on http://", Duration::from_secs(30))
            .await;
        let Some(line) = line else {
            let status = process.exited();
            panic!(
                "standalone service did not start ({status:?}):\n{}",
                process.lines.text()
            );
        };
        let address = line
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| c.is_whitespace() || c == '"').next())
            .expect("address in the listening line")
            .to_owned();
        Standalone {
            base_url: address,
            client: super::client(),
            process,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub fn output(&self) -> Lines {
        self.process.lines.clone()
    }
}
