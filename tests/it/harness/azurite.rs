//! Azurite, the Blob storage emulator, as a child process on a free loopback port with in-memory
//! storage and no telemetry; stopped when dropped. Installed by `npm ci --prefix tools/azurite`
//! (README's test command does it; `.ci/run` runs that command).

use std::path::PathBuf;
use std::time::Duration;

use tokio::process::Command;

use super::process::Process;

const ACCOUNT: &str = "devstoreaccount1";
const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

pub struct Azurite {
    pub endpoint: String,
    _process: Process,
}

fn executable() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/azurite/node_modules/.bin/azurite-blob")
}

impl Azurite {
    pub async fn start() -> Azurite {
        let program = executable();
        assert!(
            program.exists(),
            "Azurite is not installed: run `npm ci --prefix tools/azurite` (README's test command does)"
        );
        let mut command = Command::new(program);
        command.args([
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            "0",
            "--inMemoryPersistence",
            "--extentMemoryLimit",
            "64",
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--loose",
            "--silent",
        ]);
        let process = Process::spawn(command).expect("start Azurite");
        let line = process
            .lines
            .wait_for("listens on http://", Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("Azurite did not start:\n{}", process.lines.text()));
        let base = line
            .rsplit_once("listens on ")
            .map(|(_, url)| url.trim().trim_end_matches('/').to_owned())
            .unwrap();
        Azurite {
            endpoint: format!("{base}/{ACCOUNT}"),
            _process: process,
        }
    }

    /// The Function app's storage setting pointing at this Azurite, as a connection string with
    /// the well-known development account key.
    pub fn settings(&self) -> Vec<(String, String)> {
        vec![(
            "AzureWebJobsStorage".into(),
            format!(
                "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};BlobEndpoint={}",
                self.endpoint
            ),
        )]
    }
}
