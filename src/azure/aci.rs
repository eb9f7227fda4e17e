//! `AciClient`: the Azure Container Instances calls computebridge makes through ARM (create,
//! read, list, stop and delete container groups, read a container's logs), and `GroupView`, the parts
//! of a group's answer a run is judged by.

use azure_core::http::Method;
use serde_json::Value;
use time::OffsetDateTime;

use crate::azure::Azure;
use crate::azure::error::AzureError;
use crate::azure::rest::RestClient;

const API_VERSION: &str = "2023-05-01";
const JSON: &str = "application/json";

#[derive(Clone)]
pub struct AciClient {
    rest: RestClient,
    arm_endpoint: &'static str,
    subscription: String,
}

/// What a run needs to know of its container group.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupView {
    pub provisioning_state: String,
    /// `Pending`, `Running`, `Succeeded`, `Failed`, `Stopped` (empty before it has one).
    pub state: String,
    /// The first container's current state: `Waiting`, `Running`, `Terminated`.
    pub container_state: String,
    pub exit_code: Option<i64>,
    pub detail_status: String,
    pub started_at: Option<OffsetDateTime>,
    pub finished_at: Option<OffsetDateTime>,
    /// The newest event message (group and container events), e.g. a failed image pull.
    pub last_event: Option<String>,
}

impl GroupView {
    pub fn from_json(group: &Value) -> GroupView {
        let properties = &group["properties"];
        let container = &properties["containers"][0]["properties"]["instanceView"];
        let current = &container["currentState"];
        let time = |value: &Value| {
            value.as_str().and_then(|t| {
                OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
            })
        };
        let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
        let mut events: Vec<&Value> = properties["instanceView"]["events"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(container["events"].as_array().into_iter().flatten())
            .collect();
        events.sort_by_key(|e| e["lastTimestamp"].as_str().unwrap_or_default().to_owned());
        GroupView {
            provisioning_state: text(&properties["provisioningState"]),
            state: text(&properties["instanceView"]["state"]),
            container_state: text(&current["state"]),
            exit_code: current["exitCode"].as_i64(),
            detail_status: text(&current["detailStatus"]),
            started_at: time(&current["startTime"]),
            finished_at: time(&current["finishTime"]),
            last_event: events
                .last()
                .and_then(|e| e["message"].as_str())
                .map(str::to_owned),
        }
    }
}

impl AciClient {
    pub fn new(azure: &Azure, subscription: &str) -> AciClient {
        AciClient {
            rest: RestClient::new(azure, &azure.cloud.arm_scope(), "ARM"),
            arm_endpoint: azure.cloud.arm_endpoint(),
            subscription: subscription.to_owned(),
        }
    }

    fn url(&self, resource_group: &str, name: &str, suffix: &str) -> String {
        format!(
            "{}/subscriptions/{}/resourceGroups/{resource_group}/providers/Microsoft.ContainerInstance/containerGroups/{name}{suffix}?api-version={API_VERSION}",
            self.arm_endpoint, self.subscription
        )
    }

    /// `PUT`: creates the group (or updates it); ACI starts it as part of provisioning.
    pub async fn create_group(
        &self,
        resource_group: &str,
        name: &str,
        body: &Value,
    ) -> Result<(), AzureError> {
        self.rest
            .send(
                Method::Put,
                &self.url(resource_group, name, ""),
                Some(body),
                JSON,
            )
            .await
            .map(drop)
    }

    /// The group, or `None` if it does not exist.
    pub async fn get_group(
        &self,
        resource_group: &str,
        name: &str,
    ) -> Result<Option<Value>, AzureError> {
        match self
            .rest
            .send(Method::Get, &self.url(resource_group, name, ""), None, JSON)
            .await
        {
            Ok(response) => response.json().map(Some),
            Err(e) if e.status == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The groups in a resource group (without instance views: ARM's list leaves them out).
    pub async fn list_groups(&self, resource_group: &str) -> Result<Vec<Value>, AzureError> {
        let mut url = format!(
            "{}/subscriptions/{}/resourceGroups/{resource_group}/providers/Microsoft.ContainerInstance/containerGroups?api-version={API_VERSION}",
            self.arm_endpoint, self.subscription
        );
        let mut groups = Vec::new();
        loop {
            let page: Value = self
                .rest
                .send(Method::Get, &url, None, JSON)
                .await?
                .json()?;
            groups.extend(page["value"].as_array().into_iter().flatten().cloned());
            match page["nextLink"].as_str() {
                Some(next) if !next.is_empty() => url = next.to_owned(),
                _ => return Ok(groups),
            }
        }
    }

    /// Stops the group; one already gone is not an error.
    pub async fn stop_group(&self, resource_group: &str, name: &str) -> Result<(), AzureError> {
        self.act_on_group(Method::Post, &self.url(resource_group, name, "/stop"))
            .await
    }

    /// Deletes the group; one already gone is not an error.
    pub async fn delete_group(&self, resource_group: &str, name: &str) -> Result<(), AzureError> {
        self.act_on_group(Method::Delete, &self.url(resource_group, name, ""))
            .await
    }

    /// A bodiless call for which a missing group means the work is already done.
    async fn act_on_group(&self, method: Method, url: &str) -> Result<(), AzureError> {
        match self.rest.send(method, url, None, JSON).await {
            Ok(_) => Ok(()),
            Err(e) if e.status == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The last `tail` lines of a container's output.
    pub async fn logs(
        &self,
        resource_group: &str,
        name: &str,
        container: &str,
        tail: u32,
    ) -> Result<String, AzureError> {
        let url = format!(
            "{}&tail={tail}",
            self.url(
                resource_group,
                name,
                &format!("/containers/{container}/logs")
            )
        );
        let response = self.rest.send(Method::Get, &url, None, JSON).await?;
        let body: Value = response.json()?;
        Ok(body["content"].as_str().unwrap_or_default().to_owned())
    }
}
