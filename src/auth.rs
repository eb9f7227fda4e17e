//! Function-key checks for standalone mode, as the Functions host does them: the key comes from the
//! `x-functions-key` header, or else the `code` query parameter, and must equal one of the
//! configured keys (compared in constant time). Keys may be Key Vault references, resolved through
//! the secret cache; if none matches and one could not be resolved, the answer is 503
//! `FunctionKeysUnavailable` naming the secret, so a Key Vault problem is not mistaken for a wrong
//! key. Under the Functions host this module is not used: the host checks keys before it forwards
//! a request.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

pub const KEY_HEADER: &str = "x-functions-key";
pub const KEY_QUERY: &str = "code";

pub async fn require_function_key(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let presented = match request.headers().get(KEY_HEADER) {
        Some(value) => Some(value.as_bytes().to_vec()),
        None => query_key(request.uri().query().unwrap_or("")),
    };
    let mut accepted = false;
    let mut unresolved = None;
    if let Some(key) = presented {
        for configured in &state.config.function_keys {
            match state.secrets.resolve(&configured.value).await {
                Ok(value) => accepted |= value.matches(&key),
                Err(error) => unresolved = Some(error),
            }
        }
    }
    if accepted {
        next.run(request).await
    } else if let Some(error) = unresolved {
        tracing::error!(secret = %error.reference, error.code = %error.error.code, error.message = %error.error.message, "a function key could not be read from Key Vault");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "FunctionKeysUnavailable",
            format!("function keys could not be checked: {error}"),
        )
        .into_response()
    } else {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "a valid function key is required in the x-functions-key header or the code query parameter",
        )
        .into_response()
    }
}

/// The first `code` parameter, percent-decoded.
fn query_key(query: &str) -> Option<Vec<u8>> {
    query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (name == KEY_QUERY).then(|| percent_decode(value))
    })
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_code_parameter() {
        let cases = [
            ("code=abc", Some(&b"abc"[..])),
            ("x=1&code=a%2Fb%3D%3D&code=second", Some(b"a/b==")),
            ("codex=1", None),
            ("", None),
            ("code=100%", Some(b"100%")),
        ];
        for (query, expected) in cases {
            assert_eq!(query_key(query).as_deref(), expected, "{query}");
        }
    }
}
