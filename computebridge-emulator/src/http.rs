//! The emulator's view of a request, independent of the service it is for, and response helpers.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde_json::Value;

/// A request after routing: the original Azure host, the path split into segments, the query as
/// pairs (names compared without case), the whole body.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub method: Method,
    /// The host the client meant (`myvault.vault.azure.net`), lower-cased, without port.
    pub host: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Incoming {
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn segments(&self) -> Vec<&str> {
        self.path.split('/').filter(|s| !s.is_empty()).collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The token of an `Authorization: Bearer …` header; `Some("")` when the header is present but
    /// not a bearer token.
    pub fn bearer(&self) -> Option<&str> {
        let value = self.header("authorization")?;
        Some(
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
                .unwrap_or("")
                .trim(),
        )
    }

    pub fn json(&self) -> Result<Value, String> {
        if self.body.is_empty() {
            return Err("the request body is empty".into());
        }
        serde_json::from_slice(&self.body).map_err(|e| e.to_string())
    }
}

pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Percent-decoding (`+` as space), lossy on invalid UTF-8.
pub fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(v) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A JSON response with the given content type.
pub fn json(status: StatusCode, content_type: &'static str, body: &Value) -> Response {
    let mut response = Response::new(Body::from(serde_json::to_vec(body).unwrap_or_default()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A response with no body.
pub fn empty(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

pub fn set_header(response: &mut Response, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}

/// RFC 3339 with seven fractional digits and `Z`, as Azure writes times.
pub fn azure_time(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:07}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.nanosecond() / 100
    )
}

/// RFC 1123, for `Date` and `Last-Modified`.
pub fn http_date(at: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    at.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_default()
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times_as_azure_does() {
        let at = time::macros::datetime!(2020-03-21 02:12:14.123456789 UTC);
        assert_eq!(azure_time(at), "2020-03-21T02:12:14.1234567Z");
        assert_eq!(http_date(at), "Sat, 21 Mar 2020 02:12:14 GMT");
    }

    #[test]
    fn decodes_queries() {
        let q = parse_query("resource=https%3A%2F%2Fvault.azure.net&x=a+b&flag");
        assert_eq!(q[0].1, "https://vault.azure.net");
        assert_eq!(q[1].1, "a b");
        assert_eq!(q[2], ("flag".to_string(), String::new()));
    }
}
