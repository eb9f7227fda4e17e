//! `computebridge dev`: the service on a laptop with no Azure account.
//!
//! Starts the emulator in this process with a fast clock, seeds it with demo resources (a Batch
//! pool managed as `demo`, demo secrets, a job template `hello`), and points
//! the configuration at it: the transport sends Azure hosts to the emulator, the credential is a
//! seeded service principal, and the development function key `dev` is itself read from the
//! emulated Key Vault, so the whole secret path runs as it does in Azure.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use computebridge_emulator::{Options, Running, control::Seed};
use serde_json::json;

use crate::config::{
    Config, CredentialSettings, FunctionKey, JobTemplate, PoolSettings, ScaleDownPolicy,
    StateLocation, env,
};
use crate::secret::Secret;
use crate::secrets::reference::SecretSetting;

/// The documented development function key.
pub const FUNCTION_KEY: &str = "dev";
/// Simulated seconds per real second: a Batch node allocates and starts in a few seconds.
pub const CLOCK_SPEED: f64 = 20.0;
pub const VAULT: &str = "computebridge-dev";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT_ID: &str = "computebridge-dev";
const SUBSCRIPTION: &str = "00000000-0000-0000-0000-00000000dev0";

/// Starts and seeds the emulator and rewrites `config` to use it.
pub async fn start_emulator(config: &mut Config) -> Result<Running, String> {
    let options = Options {
        clock_speed: CLOCK_SPEED,
        tenant_id: TENANT.into(),
        ..Options::default()
    };
    let emulator =
        computebridge_emulator::start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), options)
            .await
            .map_err(|e| format!("cannot start the local Azure emulator: {e}"))?;
    let client_secret = format!("dev-{}", uuid::Uuid::new_v4().simple());
    let seed: Seed = serde_json::from_value(json!({
        "servicePrincipals": [{"clientId": CLIENT_ID, "clientSecret": client_secret}],
        "batchAccounts": [{"account": "demo", "dedicatedCoreQuota": 16}],
        "resourceGroups": [{"subscription": SUBSCRIPTION, "name": "computebridge-dev"}],
        "pools": [{"account": "demo", "id": "demo-pool", "targetDedicatedNodes": 0}],
        "secrets": [
            {"vault": VAULT, "name": "function-key", "value": FUNCTION_KEY},
            {"vault": VAULT, "name": "hello-greeting", "value": "hello from Key Vault"},
        ],
    }))
    .map_err(|e| format!("the development seed is invalid: {e}"))?;
    emulator.seed(seed)?;

    config.bind = Ipv4Addr::LOCALHOST.into();
    config.azure.emulator = Some(emulator.address());
    config.azure.credential = CredentialSettings::ClientSecret {
        tenant_id: TENANT.into(),
        client_id: CLIENT_ID.into(),
        secret: Secret::new(client_secret),
    };
    let key = SecretSetting::parse(
        &format!("@Microsoft.KeyVault(VaultName={VAULT};SecretName=function-key)"),
        config.azure.cloud,
    )?;
    config.function_keys = vec![FunctionKey {
        name: "default".into(),
        value: key,
    }];
    config.pools = vec![PoolSettings {
        name: "demo".into(),
        account_url: "https://demo.westeurope.batch.azure.com".into(),
        pool_id: "demo-pool".into(),
        max_dedicated_nodes: 4,
        max_low_priority_nodes: 0,
        scale_down: Some(ScaleDownPolicy {
            idle: Duration::from_secs(600),
            min_nodes: 0,
            keep_warm: Vec::new(),
        }),
    }];
    config.azure.subscription_id = Some(SUBSCRIPTION.into());
    config.templates = hello_template(config.azure.cloud)?;
    // Jobs post their output straight to this process.
    config
        .public_url
        .get_or_insert_with(|| format!("http://127.0.0.1:{}", config.port));
    // A fresh folder per run, unless one was named: dev never writes to a real storage account.
    if std::env::var_os(env::STATE_DIR).is_none() {
        config.state = StateLocation::Folder(
            std::env::temp_dir().join(format!("computebridge-dev-{}", std::process::id())),
        );
    }
    Ok(emulator)
}

/// `hello`: greets with a parameter and a secure value from Key Vault, on a base image the
/// emulator runs as a local process.
fn hello_template(cloud: crate::azure::cloud::Cloud) -> Result<Vec<JobTemplate>, String> {
    let text = format!(
        r#"
[hello]
resource_group = "computebridge-dev"
location = "westeurope"
image = "alpine"
command = ["sh", "-c", '''echo "hello, {{name}}"; test -n "$GREETING" && echo secure value received; sleep 2; if command -v curl >/dev/null; then curl -s -X POST -d '{{"greeting": "hello, {{name}}"}}' "$COMPUTEBRIDGE_OUTPUT_URL"; fi''']
secure_env = {{ GREETING = "@Microsoft.KeyVault(VaultName={VAULT};SecretName=hello-greeting)" }}
timeout_minutes = 10
[hello.parameters]
name = {{ kind = "word", max_length = 40, default = "world" }}
"#
    );
    crate::config::parse_templates(&text, cloud).map_err(|e| e.to_string())
}

/// What `dev` prints once it listens: where it is and commands that work as printed.
pub fn banner(address: SocketAddr, emulator: &Running) -> String {
    let base = format!("http://{address}");
    format!(
        "\ncomputebridge dev is running on {base} against the local Azure emulator at {emu}\n\
         function key: {FUNCTION_KEY} (read from the emulated Key Vault '{VAULT}')\n\n\
         try:\n\
         \x20 curl -s '{base}/api/health?deep=true'\n\
         \x20 curl -s -H 'x-functions-key: {FUNCTION_KEY}' {base}/api/pools/demo\n\
         \x20 curl -s -X POST -H 'x-functions-key: {FUNCTION_KEY}' {base}/api/pools/demo/resize -d '{{\"targetDedicatedNodes\": 2}}'\n\
         \x20 curl -s -X POST -H 'x-functions-key: {FUNCTION_KEY}' {base}/api/runs -d '{{\"template\": \"hello\", \"runId\": \"demo-1\"}}'\n\
         \x20 curl -s -H 'x-functions-key: {FUNCTION_KEY}' {base}/api/runs/demo-1\n",
        emu = emulator.url()
    )
}
