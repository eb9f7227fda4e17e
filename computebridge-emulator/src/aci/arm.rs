//! The ARM envelope shared by every `management.azure.com` answer: bearer-token checks with ARM's
//! error codes, the correlation and rate-limit headers, the per-subscription token buckets
//! (reads 250 refilling 25/s, writes and deletes 200 refilling 10/s) answered with 429 and
//! `Retry-After`, and the `{"error":{code,message}}` body.

use std::collections::HashMap;
use std::time::Instant;

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::json;

use crate::http::{self, Incoming};
use crate::tokens::{self, TokenError};

const JSON: &str = "application/json; charset=utf-8";
const AUDIENCES: [&str; 2] = [
    "https://management.azure.com/",
    "https://management.core.windows.net/",
];

pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let mut response = http::json(
        status,
        JSON,
        &json!({"error": {"code": code, "message": message}}),
    );
    http::set_header(&mut response, "x-ms-failure-cause", "service");
    response
}

/// Checks the bearer token as ARM does; `Some` is the 401 to answer.
pub fn authenticate(request: &Incoming) -> Option<Response> {
    let token = request.bearer();
    let mut last = TokenError::Missing;
    for audience in AUDIENCES {
        match tokens::validate(token, audience) {
            Ok(_) => return None,
            Err(problem) => last = problem,
        }
    }
    let (code, message) = match last {
        TokenError::Missing if request.header("authorization").is_none() => (
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.".to_owned(),
        ),
        TokenError::Missing | TokenError::Malformed => (
            "InvalidAuthenticationToken",
            "The access token is invalid.".to_owned(),
        ),
        TokenError::WrongAudience { found } => (
            "InvalidAuthenticationTokenAudience",
            format!(
                "The access token has been obtained for wrong audience or resource '{found}'. It should exactly match with one of the allowed audiences 'https://management.core.windows.net/','https://management.core.windows.net','https://management.azure.com/','https://management.azure.com'."
            ),
        ),
        TokenError::Expired => (
            "ExpiredAuthenticationToken",
            "The access token expiry UTC time is earlier than current UTC time.".to_owned(),
        ),
    };
    let mut response = error(StatusCode::UNAUTHORIZED, code, &message);
    http::set_header(
        &mut response,
        "www-authenticate",
        &format!(
            "Bearer authorization_uri=\"https://login.windows.net/\", error=\"invalid_token\", error_description=\"{message}\""
        ),
    );
    Some(response)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    Reads,
    Writes,
    Deletes,
}

impl Bucket {
    pub fn of(method: &Method) -> Bucket {
        match *method {
            Method::GET | Method::HEAD => Bucket::Reads,
            Method::DELETE => Bucket::Deletes,
            _ => Bucket::Writes,
        }
    }

    /// A full bucket's tokens: the remaining count answered when throttling is off.
    pub fn size(self) -> u32 {
        self.size_and_refill().0 as u32
    }

    fn size_and_refill(self) -> (f64, f64) {
        match self {
            Bucket::Reads => (250.0, 25.0),
            Bucket::Writes | Bucket::Deletes => (200.0, 10.0),
        }
    }

    fn name(self) -> (&'static str, &'static str) {
        match self {
            Bucket::Reads => ("reads", "Read"),
            Bucket::Writes => ("writes", "Write"),
            Bucket::Deletes => ("deletes", "Delete"),
        }
    }
}

/// ARM's per-subscription token buckets, on real time.
#[derive(Debug, Default)]
pub struct Throttle {
    buckets: HashMap<(String, Bucket), (f64, Instant)>,
}

impl Throttle {
    /// Takes a token; `Err(retry_after_seconds)` when the bucket is empty. `Ok(remaining)`.
    pub fn take(&mut self, subscription: &str, bucket: Bucket) -> Result<u32, u64> {
        let (size, refill) = bucket.size_and_refill();
        let entry = self
            .buckets
            .entry((subscription.to_ascii_lowercase(), bucket))
            .or_insert((size, Instant::now()));
        let elapsed = entry.1.elapsed().as_secs_f64();
        entry.0 = (entry.0 + elapsed * refill).min(size);
        entry.1 = Instant::now();
        if entry.0 < 1.0 {
            return Err(((1.0 - entry.0) / refill).ceil().max(1.0) as u64);
        }
        entry.0 -= 1.0;
        Ok(entry.0 as u32)
    }
}

pub fn throttled(bucket: Bucket, retry_after: u64) -> Response {
    let mut response = error(
        StatusCode::TOO_MANY_REQUESTS,
        "TooManyRequests",
        &format!(
            "The request is being throttled as the limit has been reached for operation type - '{}'. For more information, see - https://aka.ms/srpthrottlinglimits",
            bucket.name().1
        ),
    );
    http::set_header(&mut response, "retry-after", &retry_after.to_string());
    response
}

/// Adds the correlation and rate-limit headers every ARM answer carries.
pub fn decorate(
    response: &mut Response,
    request: &Incoming,
    location: &str,
    bucket: Bucket,
    remaining: u32,
) {
    let correlation = request
        .header("x-ms-correlation-request-id")
        .map(str::to_owned)
        .unwrap_or_else(http::new_id);
    let request_id = http::new_id();
    http::set_header(
        response,
        "x-ms-request-id",
        &format!("{location}:{request_id}"),
    );
    http::set_header(response, "x-ms-correlation-request-id", &correlation);
    http::set_header(
        response,
        "x-ms-routing-request-id",
        &format!(
            "LOCAL:{}:{correlation}",
            time::OffsetDateTime::now_utc().unix_timestamp()
        ),
    );
    http::set_header(response, remaining_header(bucket), &remaining.to_string());
    http::set_header(response, "cache-control", "no-cache");
    if request
        .header("x-ms-return-client-request-id")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        && let Some(id) = request.header("x-ms-client-request-id")
    {
        http::set_header(response, "x-ms-client-request-id", id);
    }
}

fn remaining_header(bucket: Bucket) -> &'static str {
    match bucket {
        Bucket::Reads => "x-ms-ratelimit-remaining-subscription-reads",
        Bucket::Writes => "x-ms-ratelimit-remaining-subscription-writes",
        Bucket::Deletes => "x-ms-ratelimit-remaining-subscription-deletes",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_empty_and_ask_to_wait() {
        let mut throttle = Throttle::default();
        for _ in 0..200 {
            assert!(throttle.take("sub", Bucket::Writes).is_ok());
        }
        assert_eq!(throttle.take("sub", Bucket::Writes), Err(1));
        assert!(
            throttle.take("other", Bucket::Writes).is_ok(),
            "buckets are per subscription"
        );
        assert!(
            throttle.take("sub", Bucket::Reads).is_ok(),
            "and per operation type"
        );
    }
}
