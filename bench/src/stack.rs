//! The systems under test, started fresh for each measurement: the local Azure emulator (in this
//! process), Azurite, and the release `computebridge` binary in Functions or standalone mode,
//! configured as a deployment would be (managed identity, Key Vault references, templates).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use computebridge_emulator::{Options, Running, Timings};
use serde_json::{Value, json};

use crate::process::{Child, free_port};

pub const SUBSCRIPTION: &str = "00000000-0000-0000-0000-0000000be4c4";
pub const RESOURCE_GROUP: &str = "jobs";
/// The function key of standalone instances (Functions mode leaves keys to the host).
pub const FUNCTION_KEY: &str = "bench-function-key";
pub const BATCH_ACCOUNT: &str = "bench";
pub const BATCH_HOST: &str = "bench.westeurope.batch.azure.com";
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Job templates the measurements run. `sleeper` and `reporter` print the moment they exit as
/// their last log line (`exited-at SECONDS.NANOS`); `reporter` posts its output first; `pending`
/// names an image nobody can pull, so its runs stay active without a process behind them.
const TEMPLATES: &str = r#"
[templates.sleeper]
resource_group = "jobs"
location = "westeurope"
image = "alpine"
command = ["sh", "-c", "sleep {seconds}.{tenths}; echo exited-at $(date +%s.%N)"]
secure_env = { TOKEN = "@Microsoft.KeyVault(VaultName=bench;SecretName=token)" }
timeout_minutes = 30
[templates.sleeper.parameters]
seconds = { kind = "digits", max_length = 4 }
tenths = { kind = "digits", max_length = 1, default = "0" }

[templates.reporter]
resource_group = "jobs"
location = "westeurope"
image = "alpine"
command = ["sh", "-c", '''sleep {seconds}.{tenths}; curl -s -X POST -d '{"rows": 1}' "$COMPUTEBRIDGE_OUTPUT_URL" >/dev/null; echo exited-at $(date +%s.%N)''']
secure_env = { TOKEN = "@Microsoft.KeyVault(VaultName=bench;SecretName=token)" }
timeout_minutes = 30
[templates.reporter.parameters]
seconds = { kind = "digits", max_length = 4 }
tenths = { kind = "digits", max_length = 1, default = "0" }

[templates.pending]
resource_group = "jobs"
location = "westeurope"
image = "contoso.azurecr.io/bench/never-pulled:1.0"
secure_env = { TOKEN = "@Microsoft.KeyVault(VaultName=bench;SecretName=token)" }
start_timeout_seconds = 7200
timeout_minutes = 180
"#;

/// Where the tools live: the release binaries, the Python venv, Azurite.
#[derive(Debug, Clone)]
pub struct Paths {
    pub root: PathBuf,
    pub service: PathBuf,
    pub python: PathBuf,
    pub azurite: PathBuf,
    /// Scratch folders (configuration, state); removed at the end.
    pub scratch: PathBuf,
}

impl Paths {
    pub fn discover() -> Result<Paths, String> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .ok_or("the bench crate has no parent folder")?
            .to_path_buf();
        let exe = std::env::current_exe().map_err(|e| format!("cannot locate the bench: {e}"))?;
        let service = exe.with_file_name("computebridge");
        let paths = Paths {
            python: root.join("target/bench-venv/bin/python"),
            azurite: root.join("tools/azurite/node_modules/.bin/azurite-blob"),
            scratch: std::env::temp_dir()
                .join(format!("computebridge-bench-{}", std::process::id())),
            service,
            root,
        };
        for (path, how) in [
            (&paths.service, "cargo build --release -p computebridge"),
            (&paths.python, "scripts/bench installs it"),
            (&paths.azurite, "npm ci --prefix tools/azurite"),
        ] {
            if !path.exists() {
                return Err(format!("{} is missing ({how})", path.display()));
            }
        }
        Ok(paths)
    }

    /// A new empty scratch folder.
    pub fn folder(&self, name: &str) -> Result<PathBuf, String> {
        let dir = self.scratch.join(format!("{name}-{}", unique_suffix()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(dir)
    }

    /// Writes the bench's configuration file (templates plus `extra` TOML) into a new folder.
    pub fn config(&self, extra: &str) -> Result<PathBuf, String> {
        let path = self.folder("config")?.join("computebridge.toml");
        std::fs::write(&path, format!("{TEMPLATES}\n{extra}"))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    }
}

/// Unique enough for scratch names and Blob containers within one bench run.
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The emulator, in this process, seeded with what every measurement uses.
pub struct Emulator {
    running: Running,
    client: reqwest::Client,
    /// A managed-identity token for Batch, fetched once (it outlives any bench run).
    batch_token: tokio::sync::OnceCell<String>,
}

impl Emulator {
    pub async fn start(
        speed: f64,
        arm_throttling: bool,
        timings: Timings,
    ) -> Result<Emulator, String> {
        let options = Options {
            clock_speed: speed,
            arm_throttling,
            timings,
            ..Options::default()
        };
        let running = computebridge_emulator::start(([127, 0, 0, 1], 0).into(), options)
            .await
            .map_err(|e| format!("cannot start the emulator: {e}"))?;
        let emulator = Emulator {
            running,
            client: client(),
            batch_token: tokio::sync::OnceCell::new(),
        };
        emulator
            .seed(json!({
                "resourceGroups": [{"subscription": SUBSCRIPTION, "name": RESOURCE_GROUP}],
                "secrets": [{"vault": "bench", "name": "token", "value": "bench-secret-value"}],
                "batchAccounts": [{"account": BATCH_ACCOUNT, "dedicatedCoreQuota": 1000}],
            }))
            .await?;
        Ok(emulator)
    }

    pub fn url(&self) -> String {
        self.running.url()
    }

    async fn control(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let mut request = self
            .client
            .request(method, format!("{}/_emulator/{path}", self.url()));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("emulator {path}: {e}"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(format!("emulator {path}: {status} {text}"));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn seed(&self, seed: Value) -> Result<(), String> {
        self.control(reqwest::Method::POST, "seed", Some(seed))
            .await
            .map(drop)
    }

    /// The request log after sequence number `since`, filtered (`service=arm&method=GET`), and
    /// the latest sequence number.
    pub async fn requests(&self, since: u64, filter: &str) -> Result<(u64, Vec<Value>), String> {
        let log = self
            .control(
                reqwest::Method::GET,
                &format!("requests?since={since}&{filter}"),
                None,
            )
            .await?;
        let entries = log["requests"].as_array().cloned().unwrap_or_default();
        Ok((log["last"].as_u64().unwrap_or(0), entries))
    }

    /// The sequence number of the latest logged request.
    pub async fn last_request(&self) -> Result<u64, String> {
        self.requests(u64::MAX, "").await.map(|(last, _)| last)
    }

    /// Sets the simulated clock to `now` (RFC 3339) running at `speed`.
    pub async fn set_clock(&self, now: &str, speed: f64) -> Result<(), String> {
        self.control(
            reqwest::Method::PUT,
            "clock",
            Some(json!({"now": now, "speed": speed})),
        )
        .await
        .map(drop)
    }

    /// Calls the bench Batch account as a Batch client with a managed-identity token would
    /// (what an ADF Custom activity does to add tasks).
    pub async fn batch(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let token = self
            .batch_token
            .get_or_try_init(|| async {
                let answer: Value = self
                    .client
                    .get(format!(
                        "{}/msi/token?api-version=2019-08-01&resource=https://batch.core.windows.net/",
                        self.url()
                    ))
                    .header("X-IDENTITY-HEADER", "local-dev")
                    .send()
                    .await
                    .and_then(|r| r.error_for_status())
                    .map_err(|e| format!("token: {e}"))?
                    .json()
                    .await
                    .map_err(|e| format!("token: {e}"))?;
                answer["access_token"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("token: no access_token in {answer}"))
            })
            .await?;
        let separator = if path.contains('?') { '&' } else { '?' };
        let mut request = self
            .client
            .request(
                method,
                format!("{}{path}{separator}api-version=2024-07-01.20.0", self.url()),
            )
            .header("host", BATCH_HOST)
            .bearer_auth(token);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json; odata=minimalmetadata")
                .body(body.to_string());
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("Batch {path}: {e}"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(format!("Batch {path}: {status} {text}"));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The app settings that point a service at this emulator with a managed identity.
    fn settings(&self) -> Vec<(String, String)> {
        vec![
            ("COMPUTEBRIDGE_AZURE_EMULATOR".into(), self.url()),
            (
                "IDENTITY_ENDPOINT".into(),
                format!("{}/msi/token", self.url()),
            ),
            ("IDENTITY_HEADER".into(), "local-dev".into()),
            ("AZURE_SUBSCRIPTION_ID".into(), SUBSCRIPTION.into()),
        ]
    }
}

/// Azurite on a free loopback port, in memory, without telemetry.
pub struct Azurite {
    endpoint: String,
    _child: Child,
}

impl Azurite {
    pub async fn start(paths: &Paths) -> Result<Azurite, String> {
        let mut command = Command::new(&paths.azurite);
        command.args([
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            "0",
            "--inMemoryPersistence",
            "--extentMemoryLimit",
            "256",
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--loose",
            "--silent",
        ]);
        let child = Child::spawn(command)?;
        let line = child
            .wait_for_line("listens on http://", Duration::from_secs(30))
            .await?;
        let base = line
            .rsplit_once("listens on ")
            .map(|(_, url)| url.trim().trim_end_matches('/').to_owned())
            .ok_or("Azurite printed no address")?;
        Ok(Azurite {
            endpoint: format!("{base}/{AZURITE_ACCOUNT}"),
            _child: child,
        })
    }
}

/// Where an instance keeps its durable state.
pub enum StateStore<'a> {
    /// A local folder (standalone without Azure storage).
    Folder,
    /// A fresh Blob container in Azurite, as the Function app's storage account.
    Blob(&'a Azurite),
}

impl StateStore<'_> {
    pub fn label(&self) -> &'static str {
        match self {
            StateStore::Folder => "local folder",
            StateStore::Blob(_) => "Blob (Azurite)",
        }
    }

    fn settings(&self, paths: &Paths) -> Result<Vec<(String, String)>, String> {
        Ok(match self {
            StateStore::Folder => vec![(
                "COMPUTEBRIDGE_STATE_DIR".into(),
                paths.folder("state")?.display().to_string(),
            )],
            StateStore::Blob(azurite) => vec![
                (
                    "AzureWebJobsStorage".into(),
                    format!(
                        "DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};BlobEndpoint={}",
                        azurite.endpoint
                    ),
                ),
                (
                    "COMPUTEBRIDGE_STATE_CONTAINER".into(),
                    format!("bench-{}", unique_suffix()),
                ),
            ],
        })
    }
}

/// A configured service: every setting a deployment on this emulator has.
#[derive(Clone)]
pub struct ServiceSettings(pub Vec<(String, String)>);

impl ServiceSettings {
    /// `extra_toml` adds pools or formulas to the templates.
    pub fn new(
        paths: &Paths,
        emulator: &Emulator,
        state: &StateStore,
        extra_toml: &str,
    ) -> Result<ServiceSettings, String> {
        let mut settings = emulator.settings();
        settings.extend(state.settings(paths)?);
        settings.push((
            "COMPUTEBRIDGE_CONFIG".into(),
            paths.config(extra_toml)?.display().to_string(),
        ));
        settings.push(("COMPUTEBRIDGE_CALLBACK_HOSTS".into(), "127.0.0.1".into()));
        settings.push(("COMPUTEBRIDGE_CALLBACK_ALLOW_HTTP".into(), "true".into()));
        Ok(ServiceSettings(settings))
    }

    pub fn with(mut self, name: &str, value: &str) -> ServiceSettings {
        self.0.push((name.into(), value.into()));
        self
    }
}

/// A running `computebridge` process.
pub struct Service {
    child: Child,
    pub base: String,
    client: reqwest::Client,
}

impl Service {
    /// The binary as the Functions host starts it: `FUNCTIONS_CUSTOMHANDLER_PORT` and the app
    /// settings, nothing else from this environment; ready once `GET /` answers.
    pub async fn functions(paths: &Paths, settings: ServiceSettings) -> Result<Service, String> {
        let port = free_port()?;
        let base = format!("http://127.0.0.1:{port}");
        let child = Child::spawn(functions_command(paths, settings, port))?;
        let client = client();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.get(format!("{base}/")).send().await
                && r.status().is_success()
            {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "the service did not answer GET /:\n{}",
                    child.tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(Service {
            child,
            base,
            client,
        })
    }

    /// `computebridge serve`: its own timers (schedules from `settings`) and key checks.
    pub async fn standalone(paths: &Paths, settings: ServiceSettings) -> Result<Service, String> {
        let port = free_port()?;
        let base = format!("http://127.0.0.1:{port}");
        let mut command = service_command(
            paths,
            &settings
                .with("COMPUTEBRIDGE_BIND", "127.0.0.1")
                .with(
                    "COMPUTEBRIDGE_FUNCTION_KEYS",
                    &format!("bench={FUNCTION_KEY}"),
                )
                .with("COMPUTEBRIDGE_PUBLIC_URL", &base),
        );
        command.args(["serve", "--port", &port.to_string()]);
        let child = Child::spawn(command)?;
        child
            .wait_for_line("listening on http://", Duration::from_secs(30))
            .await?;
        Ok(Service {
            child,
            base,
            client: client(),
        })
    }

    /// Calls a route with the function key (ignored in Functions mode, where the host checks it).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("x-functions-key", FUNCTION_KEY);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| format!("{path}: {e}"))?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// Fires timer `function` as the Functions host does (its invocation payload); fails unless
    /// the run succeeded.
    pub async fn fire_timer(&self, function: &str) -> Result<(), String> {
        let timer =
            json!({"Schedule": {"AdjustForDST": true}, "ScheduleStatus": null, "IsPastDue": false});
        let (status, answer) = self
            .call(
                reqwest::Method::POST,
                &format!("/{function}"),
                Some(json!({"Data": {"timer": timer}, "Metadata": {}})),
            )
            .await?;
        if status != 200 {
            return Err(format!("{function} answered {status}: {answer}"));
        }
        Ok(())
    }

    /// Starts a container run; fails unless the service accepted it.
    pub async fn start_run(&self, body: Value) -> Result<Value, String> {
        let (status, answer) = self
            .call(reqwest::Method::POST, "/api/runs", Some(body))
            .await?;
        if status != 202 {
            return Err(format!(
                "POST /api/runs answered {status}: {answer}\n{}",
                self.child.tail()
            ));
        }
        Ok(answer)
    }
}

/// The service as the Functions host starts it on `port` (its public URL is that address).
pub fn functions_command(paths: &Paths, settings: ServiceSettings, port: u16) -> Command {
    service_command(
        paths,
        &settings
            .with("FUNCTIONS_CUSTOMHANDLER_PORT", &port.to_string())
            .with(
                "COMPUTEBRIDGE_PUBLIC_URL",
                &format!("http://127.0.0.1:{port}"),
            ),
    )
}

/// The service binary with a clean environment: `PATH` and the given settings only.
fn service_command(paths: &Paths, settings: &ServiceSettings) -> Command {
    let mut command = Command::new(&paths.service);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(settings.0.iter().map(|(k, v)| (k, v)));
    command
}

/// One HTTP client setup for the bench (plain HTTP on loopback).
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("an HTTP client")
}

/// Realistic Batch timings for the idle-cost replay; the emulator's own defaults elsewhere.
pub fn batch_timings() -> Timings {
    Timings {
        batch_node_allocation: time::Duration::seconds(120),
        batch_node_start: time::Duration::seconds(60),
        ..Timings::default()
    }
}
