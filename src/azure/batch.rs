//! `BatchClient`: the Batch data-plane calls computebridge makes on one account (pools, nodes,
//! resize, autoscale), with serde models of just the fields it reads.

use azure_core::http::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::azure::Azure;
use crate::azure::error::AzureError;
use crate::azure::rest::{RestClient, RestResponse};

const API_VERSION: &str = "2024-07-01.20.0";
const CONTENT_TYPE: &str = "application/json; odata=minimalmetadata";

#[derive(Clone)]
pub struct BatchClient {
    rest: RestClient,
    /// `https://{account}.{region}.batch.azure.com`, no trailing slash.
    account_url: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pool {
    pub id: String,
    #[serde(default)]
    pub state: String,
    pub allocation_state: String,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub allocation_state_transition_time: Option<OffsetDateTime>,
    #[serde(default)]
    pub current_dedicated_nodes: u32,
    #[serde(default)]
    pub current_low_priority_nodes: u32,
    #[serde(default)]
    pub target_dedicated_nodes: u32,
    #[serde(default)]
    pub target_low_priority_nodes: u32,
    #[serde(default)]
    pub enable_auto_scale: bool,
    pub auto_scale_formula: Option<String>,
    pub auto_scale_evaluation_interval: Option<String>,
    pub auto_scale_run: Option<Value>,
    #[serde(default)]
    pub resize_errors: Vec<ResizeError>,
    pub vm_size: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct ResizeError {
    pub code: String,
    #[serde(default)]
    pub message: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    pub id: String,
    pub state: String,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub state_transition_time: Option<OffsetDateTime>,
    #[serde(default)]
    pub running_tasks_count: u32,
    #[serde(default)]
    pub is_dedicated: bool,
}

#[derive(Deserialize)]
struct NodeList {
    value: Vec<Node>,
    #[serde(rename = "odata.nextLink")]
    next_link: Option<String>,
}

/// A GET answer with the service's time.
pub struct Observed<T> {
    pub value: T,
    /// Batch's clock when it answered (from `Date`); our clock if it sent none.
    pub at: OffsetDateTime,
}

impl Pool {
    pub fn is_steady(&self) -> bool {
        self.allocation_state == "steady"
    }
}

fn observed<T>(response: &RestResponse, value: T) -> Observed<T> {
    Observed {
        value,
        at: response.date.unwrap_or_else(OffsetDateTime::now_utc),
    }
}

impl BatchClient {
    pub fn new(azure: &Azure, account_url: &str) -> BatchClient {
        BatchClient {
            rest: RestClient::new(azure, azure.cloud.batch_scope(), "Batch"),
            account_url: account_url.trim_end_matches('/').to_owned(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}?api-version={API_VERSION}", self.account_url)
    }

    async fn post(&self, path: &str, body: Option<Value>) -> Result<RestResponse, AzureError> {
        self.rest
            .send(Method::Post, &self.url(path), body.as_ref(), CONTENT_TYPE)
            .await
    }

    pub async fn get_pool(&self, pool_id: &str) -> Result<Observed<Pool>, AzureError> {
        let response = self
            .rest
            .send(
                Method::Get,
                &self.url(&format!("/pools/{pool_id}")),
                None,
                CONTENT_TYPE,
            )
            .await?;
        let pool = response.json()?;
        Ok(observed(&response, pool))
    }

    /// Every node of the pool, following `odata.nextLink`.
    pub async fn list_nodes(&self, pool_id: &str) -> Result<Vec<Node>, AzureError> {
        let mut nodes = Vec::new();
        let mut next = Some(self.url(&format!("/pools/{pool_id}/nodes")));
        while let Some(url) = next {
            let response = self
                .rest
                .send(Method::Get, &url, None, CONTENT_TYPE)
                .await?;
            let page: NodeList = response.json()?;
            nodes.extend(page.value);
            next = page.next_link;
        }
        Ok(nodes)
    }

    pub async fn resize(
        &self,
        pool_id: &str,
        dedicated: u32,
        low_priority: u32,
        resize_timeout: &str,
        deallocation: &str,
    ) -> Result<(), AzureError> {
        let body = json!({
            "targetDedicatedNodes": dedicated,
            "targetLowPriorityNodes": low_priority,
            "resizeTimeout": resize_timeout,
            "nodeDeallocationOption": deallocation,
        });
        self.post(&format!("/pools/{pool_id}/resize"), Some(body))
            .await
            .map(drop)
    }

    pub async fn stop_resize(&self, pool_id: &str) -> Result<(), AzureError> {
        self.post(&format!("/pools/{pool_id}/stopresize"), None)
            .await
            .map(drop)
    }

    pub async fn enable_autoscale(
        &self,
        pool_id: &str,
        formula: &str,
        interval: Option<&str>,
    ) -> Result<(), AzureError> {
        let mut body = json!({"autoScaleFormula": formula});
        if let Some(interval) = interval {
            body["autoScaleEvaluationInterval"] = json!(interval);
        }
        self.post(&format!("/pools/{pool_id}/enableautoscale"), Some(body))
            .await
            .map(drop)
    }

    pub async fn disable_autoscale(&self, pool_id: &str) -> Result<(), AzureError> {
        self.post(&format!("/pools/{pool_id}/disableautoscale"), None)
            .await
            .map(drop)
    }

    /// Batch's `AutoScaleRun`: `{timestamp, results, error?}`.
    pub async fn evaluate_autoscale(
        &self,
        pool_id: &str,
        formula: &str,
    ) -> Result<Value, AzureError> {
        let body = json!({"autoScaleFormula": formula});
        self.post(&format!("/pools/{pool_id}/evaluateautoscale"), Some(body))
            .await?
            .json()
    }
}
