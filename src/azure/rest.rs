//! `RestClient`: JSON over `azure_core`'s pipeline for the services without an official crate
//! (Batch, ARM). The pipeline adds the bearer token for one scope and retries 408/429/5xx with
//! backoff, honouring `Retry-After`; this client turns any other answer into an [`AzureError`].

use std::sync::Arc;

use azure_core::http::policies::Policy;
use azure_core::http::policies::auth::BearerTokenAuthorizationPolicy;
use azure_core::http::{Context, Method, Pipeline, PipelineSendOptions, Request, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;
use time::OffsetDateTime;

use crate::azure::Azure;
use crate::azure::error::AzureError;

#[derive(Clone)]
pub struct RestClient {
    pipeline: Arc<Pipeline>,
    /// What the errors say was called (`Batch`, `ARM`).
    service: &'static str,
}

/// A successful answer.
pub struct RestResponse {
    pub status: u16,
    /// The service's own clock (`Date`), to measure ages against Azure's time, not ours.
    pub date: Option<OffsetDateTime>,
    pub body: Vec<u8>,
}

impl RestResponse {
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, AzureError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            AzureError::new(
                Some(self.status),
                "UnexpectedResponse",
                format!("the answer could not be read: {e}"),
            )
        })
    }
}

impl RestClient {
    pub fn new(azure: &Azure, scope: &str, service: &'static str) -> RestClient {
        let auth: Arc<dyn Policy> = Arc::new(BearerTokenAuthorizationPolicy::new(
            azure.credential.clone(),
            [scope],
        ));
        let pipeline = Pipeline::new(
            Some("computebridge"),
            Some(env!("CARGO_PKG_VERSION")),
            azure.client_options(),
            Vec::new(),
            vec![auth],
            None,
        );
        RestClient {
            pipeline: Arc::new(pipeline),
            service,
        }
    }

    /// Sends `body` (JSON, or nothing) and returns the answer if it is a 2xx.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        content_type: &str,
    ) -> Result<RestResponse, AzureError> {
        let url = Url::parse(url).map_err(|e| {
            AzureError::new(None, "AzureClientError", format!("bad URL {url}: {e}"))
        })?;
        let mut request = Request::new(url, method);
        request.insert_header("accept", "application/json");
        match body {
            Some(body) => {
                request.insert_header("content-type", content_type.to_owned());
                request.set_body(serde_json::to_vec(body).unwrap_or_default());
            }
            None => request.insert_header("content-length", "0"),
        }
        let options = PipelineSendOptions {
            skip_checks: true,
            ..Default::default()
        };
        let response = self
            .pipeline
            .send(&Context::new(), &mut request, Some(options))
            .await
            .map_err(|e| AzureError::from_sdk(self.service, &e))?;
        let status = u16::from(response.status());
        let date = response
            .headers()
            .get_optional_str(&"date".into())
            .and_then(parse_http_date);
        let body = response.into_body().to_vec();
        if (200..300).contains(&status) {
            Ok(RestResponse { status, date, body })
        } else {
            Err(AzureError::from_response(status, &body))
        }
    }
}

/// `Sat, 21 Nov 2026 05:00:00 GMT`.
pub fn parse_http_date(text: &str) -> Option<OffsetDateTime> {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::PrimitiveDateTime::parse(text, &format)
        .ok()
        .map(|at| at.assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_date_header() {
        let at = parse_http_date("Sat, 21 Nov 2026 05:00:07 GMT").unwrap();
        assert_eq!(at, time::macros::datetime!(2026-11-21 05:00:07 UTC));
        assert_eq!(parse_http_date("yesterday"), None);
    }
}
