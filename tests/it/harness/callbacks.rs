//! `CallbackReceiver`: plays ADF's side of a WebHook callback. It accepts POSTs on any path,
//! records each (path, content type, JSON body), and answers from a script of statuses (then 200),
//! so tests can make the first deliveries fail.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub content_type: String,
    pub body: Value,
    /// The status this delivery was answered with.
    pub answered: u16,
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    script: VecDeque<u16>,
}

#[derive(Clone)]
pub struct CallbackReceiver {
    address: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

async fn record(
    State(inner): State<Arc<Mutex<Inner>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut inner = inner.lock().unwrap();
    let answered = inner.script.pop_front().unwrap_or(200);
    inner.received.push(Received {
        path: uri.path().to_owned(),
        content_type: headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        answered,
    });
    StatusCode::from_u16(answered).unwrap()
}

impl CallbackReceiver {
    pub async fn start() -> CallbackReceiver {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new().fallback(record).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        CallbackReceiver { address, inner }
    }

    /// The URL ADF would pass as `callBackUri`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.address.port())
    }

    /// The next deliveries are answered with these statuses, in order.
    pub fn answer_next_with(&self, statuses: &[u16]) {
        self.inner.lock().unwrap().script.extend(statuses);
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    /// The deliveries to `path` answered 2xx.
    pub fn acknowledged(&self, path: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path == path && (200..300).contains(&r.answered))
            .collect()
    }

    /// Waits (bounded, polling) for an acknowledged delivery to `path`.
    pub async fn wait_for(&self, path: &str, within: Duration) -> Option<Received> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(first) = self.acknowledged(path).into_iter().next() {
                return Some(first);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Settings that let callbacks reach a receiver on loopback.
pub fn loopback_callback_settings() -> Vec<(String, String)> {
    vec![
        ("COMPUTEBRIDGE_CALLBACK_HOSTS".into(), "127.0.0.1".into()),
        ("COMPUTEBRIDGE_CALLBACK_ALLOW_HTTP".into(), "true".into()),
    ]
}
