//! `AzureError`: a failed Azure call reduced to what a caller needs, Azure's own error code and
//! message (and HTTP status), taken from the SDK error or the response body. It never carries a
//! request or a token.

use std::fmt;

use azure_core::error::ErrorKind;
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureError {
    /// The HTTP status Azure answered with; `None` when no answer came.
    pub status: Option<u16>,
    /// Azure's error code (the most specific one: Key Vault's inner code when present), or one of
    /// ours for failures without an answer: `AzureUnreachable`, `CredentialUnavailable`.
    pub code: String,
    pub message: String,
}

#[derive(Deserialize)]
struct Body {
    error: Option<Detail>,
    code: Option<String>,
    /// A string, or Batch's `{"lang", "value"}`.
    message: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Detail {
    code: Option<String>,
    message: Option<String>,
    innererror: Option<Box<Detail>>,
}

impl AzureError {
    pub fn new(status: Option<u16>, code: impl Into<String>, message: impl Into<String>) -> Self {
        AzureError {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    /// From an HTTP error answer: `{"error":{"code","message"}}` (ARM, Key Vault, Batch JSON) or
    /// a flat `{"code","message"}`; the status text when the body says nothing.
    pub fn from_response(status: u16, body: &[u8]) -> Self {
        let parsed: Option<Body> = serde_json::from_slice(body).ok();
        let (code, message) = match parsed {
            Some(Body {
                error: Some(detail),
                ..
            }) => {
                let mut code = detail.code.clone();
                let mut inner = detail.innererror.as_deref();
                while let Some(next) = inner {
                    code = next.code.clone().or(code);
                    inner = next.innererror.as_deref();
                }
                (code, detail.message)
            }
            Some(Body { code, message, .. }) => (
                code,
                message.and_then(|m| match m {
                    serde_json::Value::String(text) => Some(text),
                    other => other["value"].as_str().map(str::to_owned),
                }),
            ),
            None => (None, None),
        };
        AzureError {
            status: Some(status),
            code: code.unwrap_or_else(|| format!("Http{status}")),
            // Batch appends "\nRequestId:…\nTime:…"; the request id is in the service's logs.
            message: message
                .map(|m| {
                    m.split("\nRequestId:")
                        .next()
                        .unwrap_or_default()
                        .trim()
                        .to_owned()
                })
                .unwrap_or_else(|| {
                    String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned()
                }),
        }
    }

    /// From any SDK error; `context` names what was being done.
    pub fn from_sdk(context: &str, error: &azure_core::Error) -> Self {
        match error.kind() {
            ErrorKind::HttpResponse {
                status,
                error_code,
                raw_response,
            } => {
                let status = u16::from(*status);
                let mut parsed = match raw_response {
                    Some(raw) => AzureError::from_response(status, raw.body().as_ref()),
                    None => {
                        AzureError::new(Some(status), format!("Http{status}"), error.to_string())
                    }
                };
                if parsed.code.starts_with("Http")
                    && let Some(code) = error_code
                {
                    parsed.code = code.clone();
                }
                parsed
            }
            ErrorKind::Connection | ErrorKind::Io => AzureError::new(
                None,
                "AzureUnreachable",
                format!("{context}: {}", chain(error)),
            ),
            ErrorKind::Credential => AzureError::new(
                None,
                "CredentialUnavailable",
                format!("{context}: {}", chain(error)),
            ),
            _ => AzureError::new(
                None,
                "AzureClientError",
                format!("{context}: {}", chain(error)),
            ),
        }
    }

    /// Whether trying again later may succeed: no answer, throttling, or a server error.
    pub fn is_transient(&self) -> bool {
        match self.status {
            None => self.code != "AzureClientError",
            Some(status) => status == 408 || status == 429 || status >= 500,
        }
    }
}

/// The error and its sources on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

impl fmt::Display for AzureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for AzureError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_most_specific_code() {
        let body = br#"{"error":{"code":"Forbidden","message":"Operation get is not allowed on a disabled secret.","innererror":{"code":"SecretDisabled"}}}"#;
        let error = AzureError::from_response(403, body);
        assert_eq!(error.code, "SecretDisabled");
        assert_eq!(
            error.message,
            "Operation get is not allowed on a disabled secret."
        );
        assert!(!error.is_transient());
    }

    #[test]
    fn reads_flat_and_empty_bodies() {
        let flat = AzureError::from_response(409, br#"{"code":"Conflict","message":"busy"}"#);
        assert_eq!(
            (flat.code.as_str(), flat.message.as_str()),
            ("Conflict", "busy")
        );
        let batch = AzureError::from_response(
            409,
            br#"{"odata.metadata":"x","code":"PoolBeingResized","message":{"lang":"en-US","value":"The specified pool is being resized.\nRequestId:abc\nTime:2026"}}"#,
        );
        assert_eq!(batch.code, "PoolBeingResized");
        assert_eq!(batch.message, "The specified pool is being resized.");
        let empty = AzureError::from_response(503, b"");
        assert_eq!(empty.code, "Http503");
        assert!(empty.is_transient());
        assert!(AzureError::from_response(429, b"{}").is_transient());
    }
}
