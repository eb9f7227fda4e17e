//! An in-process emulator and a client that addresses it as the product's transport does: to the
//! emulator's socket, with the Azure host in `Host`.

use std::time::Duration;

use computebridge_emulator::{Options, Running};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

pub const SUB: &str = "00000000-0000-0000-0000-000000000001";
pub const ARM: &str = "management.azure.com";
pub const VAULT: &str = "myvault.vault.azure.net";
pub const BATCH: &str = "acct.westeurope.batch.azure.com";

pub struct Emu {
    pub running: Running,
    pub client: reqwest::Client,
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Emu {
    /// An emulator whose clock runs `speed` times faster than real time.
    pub async fn start(speed: f64) -> Emu {
        Emu::start_with(Options {
            clock_speed: speed,
            ..Options::default()
        })
        .await
    }

    pub async fn start_with(options: Options) -> Emu {
        let running = computebridge_emulator::start(([127, 0, 0, 1], 0).into(), options)
            .await
            .unwrap();
        Emu {
            running,
            client: client_builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
        }
    }

    pub async fn send(
        &self,
        method: Method,
        host: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.running.url()))
            .header("host", host);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn control(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.send(
            method,
            "127.0.0.1",
            &format!("/_emulator{path}"),
            None,
            body,
        )
        .await
    }

    pub async fn seed(&self, seed: Value) -> Value {
        let reply = self.control(Method::POST, "/seed", Some(seed)).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.body
    }

    pub async fn fault(&self, fault: Value) {
        let reply = self.control(Method::POST, "/faults", Some(fault)).await;
        assert_eq!(reply.status, 201, "{}", reply.text);
    }

    /// A managed-identity token for `resource`.
    pub async fn token(&self, resource: &str) -> String {
        let reply = self
            .client
            .get(format!(
                "{}/msi/token?api-version=2019-08-01&resource={resource}",
                self.running.url()
            ))
            .header("x-identity-header", "local-dev")
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200);
        reply.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Changes the clock's speed from now on.
    pub async fn speed(&self, speed: f64) {
        let reply = self
            .control(Method::PUT, "/clock", Some(json!({"speed": speed})))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }

    pub async fn set_clock(&self, now: &str, speed: f64) {
        let reply = self
            .control(
                Method::PUT,
                "/clock",
                Some(json!({"now": now, "speed": speed})),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
}

/// Polls `probe` until it returns `Some`, failing after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A reqwest client builder. In the workspace build reqwest carries rustls without a built-in
/// crypto provider (the service installs ring), so tests install ring before building.
pub fn client_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}
