//! `ApiError`: every failure a caller can see, and the one JSON shape it takes.
//!
//! Every error answers `{"error":{"code":"…","message":"…"}}` with a stable `code` a pipeline can
//! branch on. Client errors (4xx) say what was wrong with the request; server errors (5xx) carry
//! no internals, and their cause is logged here, once. This module also owns [`Json`], the body
//! extractor that turns malformed or oversized bodies into the same shape.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::azure::error::AzureError;

/// An error answered to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable, PascalCase, documented in README; never changes for the same condition.
    pub code: String,
    pub message: String,
    /// Seconds the caller should wait before retrying, sent as `Retry-After`.
    pub retry_after: Option<u64>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn conflict(code: &str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }

    /// A failure inside the service. `cause` is logged, never answered.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error.cause = %cause, "request failed inside the service");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "the service failed to handle the request; see its logs",
        )
    }

    /// A failed Azure call, with Azure's code and message: 409 stays a conflict the caller can act
    /// on; throttling and outages (after our own retries) are 503 with `Retry-After`; anything
    /// else Azure refused (403 on our identity, 404 on a configured resource) is 502.
    pub fn azure(service: &str, error: AzureError) -> Self {
        let status = match error.status {
            Some(409) => StatusCode::CONFLICT,
            _ if error.is_transient() => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_GATEWAY,
        };
        let answered = error
            .status
            .map(|s| format!("{service} answered {s}"))
            .unwrap_or_else(|| format!("{service} did not answer"));
        let mut api = ApiError::new(status, error.code, format!("{answered}: {}", error.message));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            api.retry_after = Some(30);
        }
        api
    }

    /// No route matches the path: the same 404 for every unknown path.
    pub fn route_not_found(path: &str) -> Self {
        ApiError::not_found("RouteNotFound", format!("no route matches '{path}'"))
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// A JSON request body. Unlike `axum::Json` it does not insist on a `Content-Type` (ADF's
/// activities do not always send one) and it answers every failure as an [`ApiError`]:
/// 413 `RequestBodyTooLarge` over the configured limit, 400 `MalformedJson` for text that is not
/// JSON, 400 `InvalidRequestBody` for JSON of the wrong shape.
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "RequestBodyTooLarge",
                    "the request body is larger than the configured limit (server.max_body_bytes)",
                )
            } else {
                ApiError::bad_request("UnreadableBody", rejection.body_text())
            }
        })?;
        parse_json(&bytes).map(Json)
    }
}

/// Parses a request body, with the same errors as [`Json`].
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "MalformedJson",
            "the request body is empty; a JSON object is required",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        let code = if e.is_syntax() || e.is_eof() {
            "MalformedJson"
        } else {
            "InvalidRequestBody"
        };
        ApiError::bad_request(code, format!("the request body is not valid: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        size: u32,
    }

    #[test]
    fn a_valid_body_parses_without_a_content_type() {
        assert_eq!(parse_json::<Body>(b" {\"size\": 3} ").unwrap().size, 3);
    }

    #[test]
    fn body_errors_are_classified() {
        let cases: [(&[u8], &str, &str); 5] = [
            (b"", "MalformedJson", "empty"),
            (b"{\"size\":", "MalformedJson", "EOF"),
            (b"{size: 1}", "MalformedJson", "key must be a string"),
            (
                b"{\"size\":\"big\"}",
                "InvalidRequestBody",
                "invalid type: string \"big\"",
            ),
            (
                b"{\"size\":1,\"x\":2}",
                "InvalidRequestBody",
                "unknown field `x`",
            ),
        ];
        for (body, code, fragment) in cases {
            let error = parse_json::<Body>(body).unwrap_err();
            assert_eq!(error.status, StatusCode::BAD_REQUEST);
            assert_eq!(error.code, code, "{}", String::from_utf8_lossy(body));
            assert!(error.message.contains(fragment), "{}", error.message);
        }
    }
}
