//! `Outbox`: callbacks to ADF that survive restarts. Each callback is a document in the state
//! store under a deterministic id, plus a pending marker that delivery lists. Delivery claims the
//! document with a conditional write (so two instances never send it at the same time), POSTs it,
//! and once the receiver answers 2xx marks it done and drops the marker. The done document stays,
//! so queuing the same id again (a racing instance, a retried sweep) can never send it twice.
//! 5xx, 429 and network failures are retried with exponential backoff (or the receiver's
//! `Retry-After`) until the retry period ends; any other 4xx is final.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::callbacks::target::CallbackUrl;
use crate::store::{Condition, StateStore, StoreError};

const PREFIX: &str = "callbacks/";
const PENDING_PREFIX: &str = "callbacks-pending/";
/// A marker whose document never appeared (its writer stopped in between) is dropped after this.
const ORPHAN_MARKER: Duration = Duration::from_secs(60);
/// How long a claimed delivery is left to its claimant before another instance may retry it.
const CLAIM: Duration = Duration::from_secs(45);
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingCallback {
    pub id: String,
    pub url: CallbackUrl,
    pub body: Value,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub give_up_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub next_attempt_at: OffsetDateTime,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// How it ended (`delivered`, `refused`, `abandoned`); `None` while pending.
    #[serde(default)]
    pub done: Option<String>,
}

/// The pending marker: when it was written.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Marker {
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
}

/// What one delivery attempt did; timers report these.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub id: String,
    pub outcome: &'static str,
    pub detail: String,
}

#[derive(Clone)]
pub struct Outbox {
    store: StateStore,
    http: reqwest::Client,
    retry_for: Duration,
}

enum Sent {
    Acknowledged,
    Retry {
        error: String,
        after: Option<Duration>,
    },
    Refused(String),
}

impl Outbox {
    pub fn new(store: StateStore, http: reqwest::Client, retry_for: Duration) -> Outbox {
        Outbox {
            store,
            http,
            retry_for,
        }
    }

    /// Queues `body` for `url` under `id`. Queuing the same id again, even after delivery, does
    /// nothing, so a caller that retries after a crash cannot cause a second delivery.
    pub async fn enqueue(
        &self,
        id: &str,
        url: &CallbackUrl,
        body: Value,
    ) -> Result<(), StoreError> {
        let now = OffsetDateTime::now_utc();
        let pending = PendingCallback {
            id: id.to_owned(),
            url: url.clone(),
            body,
            created_at: now,
            give_up_at: now + self.retry_for,
            next_attempt_at: now,
            attempts: 0,
            last_error: None,
            done: None,
        };
        // The marker first: a document nobody lists would never be delivered.
        for result in [
            self.store
                .put(&marker_key(id), &Marker { at: now }, Condition::New)
                .await,
            self.store.put(&key(id), &pending, Condition::New).await,
        ] {
            match result {
                Ok(_) | Err(StoreError::Conflict) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Attempts every callback that is due; returns what happened to each attempted one.
    pub async fn deliver_due(&self) -> Result<Vec<Delivery>, StoreError> {
        let mut deliveries = Vec::new();
        for marker in self.store.list(PENDING_PREFIX).await? {
            let id = marker
                .trim_start_matches(PENDING_PREFIX)
                .trim_end_matches(".json")
                .to_owned();
            if let Some(delivery) = self.attempt(&id).await? {
                deliveries.push(delivery);
            }
        }
        Ok(deliveries)
    }

    /// Drops the pending marker of `id`.
    async fn unmark(&self, id: &str) -> Result<(), StoreError> {
        if let Some(marker) = self.store.get::<Marker>(&marker_key(id)).await? {
            match self.store.delete(&marker_key(id), &marker.etag).await {
                Ok(()) | Err(StoreError::Conflict) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn attempt(&self, id: &str) -> Result<Option<Delivery>, StoreError> {
        let now = OffsetDateTime::now_utc();
        let key = &key(id);
        let Some(current) = self.store.get::<PendingCallback>(key).await? else {
            let stale = self
                .store
                .get::<Marker>(&marker_key(id))
                .await?
                .is_some_and(|m| m.value.at + ORPHAN_MARKER < now);
            if stale {
                self.unmark(id).await?;
            }
            return Ok(None);
        };
        let mut pending = current.value;
        if pending.done.is_some() {
            self.unmark(id).await?;
            return Ok(None);
        }
        if pending.next_attempt_at > now {
            return Ok(None);
        }
        pending.attempts += 1;
        pending.next_attempt_at = now + CLAIM;
        let claimed = match self
            .store
            .put(key, &pending, Condition::Matches(current.etag))
            .await
        {
            Ok(etag) => etag,
            Err(StoreError::Conflict) => return Ok(None),
            Err(e) => return Err(e),
        };
        let report = |outcome, detail: String| {
            Some(Delivery {
                id: pending.id.clone(),
                outcome,
                detail,
            })
        };
        let finish = |mut pending: PendingCallback, outcome: &str| {
            pending.done = Some(outcome.to_owned());
            let claimed = claimed.clone();
            async move {
                match self
                    .store
                    .put(key, &pending, Condition::Matches(claimed))
                    .await
                {
                    Ok(_) | Err(StoreError::Conflict) => self.unmark(&pending.id).await,
                    Err(e) => Err(e),
                }
            }
        };
        match self.send(&pending).await {
            Sent::Acknowledged => {
                tracing::info!(callback = %pending.id, url = %pending.url.redacted(), attempts = pending.attempts, "callback delivered");
                finish(pending.clone(), "delivered").await?;
                Ok(report(
                    "delivered",
                    format!("after {} attempt(s)", pending.attempts),
                ))
            }
            Sent::Refused(error) => {
                tracing::error!(callback = %pending.id, url = %pending.url.redacted(), error = %error, "callback refused by its receiver; not retried");
                finish(pending.clone(), "refused").await?;
                Ok(report("refused", error))
            }
            Sent::Retry { error, after } => {
                if now >= pending.give_up_at {
                    tracing::error!(callback = %pending.id, url = %pending.url.redacted(), attempts = pending.attempts, error = %error, "callback undeliverable; retry period over");
                    finish(pending.clone(), "abandoned").await?;
                    return Ok(report("abandoned", error));
                }
                let backoff = Duration::from_secs(1 << pending.attempts.min(6)).min(MAX_BACKOFF);
                let wait = after.unwrap_or(backoff).min(MAX_BACKOFF);
                tracing::warn!(callback = %pending.id, url = %pending.url.redacted(), attempts = pending.attempts, retry_in_seconds = wait.as_secs(), error = %error, "callback not delivered; will retry");
                pending.next_attempt_at = now + wait;
                pending.last_error = Some(error.clone());
                match self
                    .store
                    .put(key, &pending, Condition::Matches(claimed))
                    .await
                {
                    Ok(_) | Err(StoreError::Conflict) => Ok(report("retrying", error)),
                    Err(e) => Err(e),
                }
            }
        }
    }

    async fn send(&self, pending: &PendingCallback) -> Sent {
        let response = self
            .http
            .post(pending.url.as_str())
            .header("content-type", "application/json")
            .timeout(SEND_TIMEOUT)
            .body(pending.body.to_string())
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(e) => {
                return Sent::Retry {
                    error: format!("no answer: {}", without_url(&e)),
                    after: None,
                };
            }
        };
        let status = response.status();
        if status.is_success() {
            return Sent::Acknowledged;
        }
        let after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let error = format!("HTTP {}", status.as_u16());
        if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
            Sent::Retry { error, after }
        } else {
            Sent::Refused(error)
        }
    }
}

fn key(id: &str) -> String {
    format!("{PREFIX}{id}.json")
}

fn marker_key(id: &str) -> String {
    format!("{PENDING_PREFIX}{id}.json")
}

/// reqwest errors print the URL, whose query may carry a signature.
fn without_url(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    kind.to_owned()
}
