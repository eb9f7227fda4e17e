//! `Azure`: the local emulator, in the test process, for tests that need Azure behind the service.
//! It hands out the settings that point a service at it (managed identity included) and drives
//! the emulator's control surface: seed, faults, request log.

use std::net::{Ipv4Addr, SocketAddr};

use computebridge_emulator::{Options, Running};
use serde_json::{Value, json};

pub struct Azure {
    running: Running,
    client: reqwest::Client,
}

impl Azure {
    /// Starts an emulator whose simulated clock runs `speed` times faster than real time.
    pub async fn start(speed: f64) -> Azure {
        let options = Options {
            clock_speed: speed,
            ..Options::default()
        };
        let running =
            computebridge_emulator::start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), options)
                .await
                .expect("start the emulator");
        Azure {
            running,
            client: super::client(),
        }
    }

    pub fn url(&self) -> String {
        self.running.url()
    }

    /// Settings that send the service's Azure calls here and authenticate with the emulator's
    /// App Service managed-identity endpoint.
    pub fn settings(&self) -> Vec<(String, String)> {
        vec![
            ("COMPUTEBRIDGE_AZURE_EMULATOR".into(), self.url()),
            (
                "IDENTITY_ENDPOINT".into(),
                format!("{}/msi/token", self.url()),
            ),
            ("IDENTITY_HEADER".into(), "local-dev".into()),
        ]
    }

    async fn control(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .client
            .request(method, format!("{}/_emulator/{path}", self.url()));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("emulator control call");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "emulator {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// `POST /_emulator/seed`; returns the answer (new secret versions by `vault/name`).
    pub async fn seed(&self, seed: Value) -> Value {
        self.control(reqwest::Method::POST, "seed", Some(seed))
            .await
    }

    /// Adds a secret (or a new version of it) to a vault.
    pub async fn secret(&self, vault: &str, name: &str, value: &str) {
        self.seed(json!({"secrets": [{"vault": vault, "name": name, "value": value}]}))
            .await;
    }

    pub async fn fault(&self, fault: Value) {
        self.control(reqwest::Method::POST, "faults", Some(fault))
            .await;
    }

    pub async fn clear_faults(&self) {
        self.control(reqwest::Method::DELETE, "faults", None).await;
    }

    /// The request log, filtered as `/_emulator/requests` filters (e.g. `service=keyvault`).
    pub async fn requests(&self, query: &str) -> Vec<Value> {
        let log = self
            .control(reqwest::Method::GET, &format!("requests?{query}"), None)
            .await;
        log["requests"].as_array().cloned().unwrap_or_default()
    }
}

impl Azure {
    /// Sets the simulated clock (`now` RFC 3339) and/or its speed.
    pub async fn set_clock(&self, now: Option<&str>, speed: Option<f64>) {
        self.control(
            reqwest::Method::PUT,
            "clock",
            Some(json!({"now": now, "speed": speed})),
        )
        .await;
    }

    /// Calls the Batch account at `host` directly, as a Batch client with a managed-identity
    /// token would (for test setup such as adding tasks).
    pub async fn batch(
        &self,
        method: reqwest::Method,
        host: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let separator = if path.contains('?') { '&' } else { '?' };
        let path = format!("{path}{separator}api-version=2024-07-01.20.0");
        self.call_as_identity(method, "https://batch.core.windows.net/", host, &path, body)
            .await
    }

    /// Calls ARM directly (ACI's api-version), as a deployment tool would: test setup such as a
    /// group made outside the service.
    pub async fn arm(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let path = format!("{path}?api-version=2023-05-01");
        self.call_as_identity(
            method,
            "https://management.azure.com/",
            "management.azure.com",
            &path,
            body,
        )
        .await
    }

    async fn call_as_identity(
        &self,
        method: reqwest::Method,
        resource: &str,
        host: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let token: Value = self
            .client
            .get(format!(
                "{}/msi/token?api-version=2019-08-01&resource={resource}",
                self.url()
            ))
            .header("X-IDENTITY-HEADER", "local-dev")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.url()))
            .header("host", host)
            .bearer_auth(token["access_token"].as_str().unwrap());
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json; odata=minimalmetadata")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// `@Microsoft.KeyVault(...)` for `vault`/`name`.
pub fn key_vault_reference(vault: &str, name: &str) -> String {
    format!("@Microsoft.KeyVault(VaultName={vault};SecretName={name})")
}
