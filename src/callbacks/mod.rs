//! Callbacks to ADF's WebHook activity: the URL check done before any work ([`target`]) and the
//! durable, retried delivery ([`outbox`]). [`webhook_body`] is the report-status shape
//! `reportStatusOnCallBack` reads.

pub mod outbox;
pub mod target;

use serde_json::{Value, json};

/// `{"Output": output, "StatusCode": "200"}` on success, or with `StatusCode` "500" and
/// `Error {ErrorCode, Message}` so the activity fails with that message.
pub fn webhook_body(output: Value, error: Option<(&str, &str)>) -> Value {
    match error {
        None => json!({"Output": output, "StatusCode": "200"}),
        Some((code, message)) => json!({
            "Output": output,
            "Error": {"ErrorCode": code, "Message": message},
            "StatusCode": "500",
        }),
    }
}
