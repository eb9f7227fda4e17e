//! ADF's side of the WebHook callbacks: accepts POSTs on any path and records each with the
//! moment it arrived (wall clock, to compare with the moment a job says it exited).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Callback {
    pub path: String,
    pub body: Value,
    pub received: SystemTime,
}

type Log = Arc<Mutex<Vec<Callback>>>;

#[derive(Clone)]
pub struct Receiver {
    port: u16,
    log: Log,
}

async fn record(State(log): State<Log>, uri: Uri, body: Bytes) -> StatusCode {
    let received = SystemTime::now();
    log.lock().unwrap().push(Callback {
        path: uri.path().to_owned(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        received,
    });
    StatusCode::OK
}

impl Receiver {
    pub async fn start() -> Result<Receiver, String> {
        let log = Log::default();
        let app = Router::new().fallback(record).with_state(log.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("cannot listen for callbacks: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Receiver { port, log })
    }

    /// The `callBackUri` ADF would pass.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Waits (polling, bounded) for the first callback to `path`.
    pub async fn wait_for(&self, path: &str, limit: Duration) -> Result<Callback, String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(callback) = self.first(path) {
                return Ok(callback);
            }
            if Instant::now() >= deadline {
                return Err(format!("no callback to {path} within {limit:?}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The first callback to `path`, if one came.
    fn first(&self, path: &str) -> Option<Callback> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .find(|c| c.path == path)
            .cloned()
    }
}
