//! The custom-handler invocation protocol: what the Functions host POSTs to `/{FunctionName}` for a
//! non-HTTP trigger, and the `{"Outputs","Logs","ReturnValue"}` answer it expects.
//!
//! Shapes follow the host's own types (`HttpScriptInvocationContext`, `HttpScriptInvocationResult`,
//! the timer extension's `TimerInfo`). Parsing is lenient where the host varies (the binding name,
//! a `null` `ScheduleStatus`, key case); the answer is always PascalCase, as the samples send it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The host's request body for a non-HTTP invocation.
#[derive(Debug, Default, Deserialize)]
pub struct InvocationRequest {
    #[serde(rename = "Data", alias = "data", default)]
    pub data: Map<String, Value>,
    #[serde(rename = "Metadata", alias = "metadata", default)]
    pub metadata: Map<String, Value>,
}

impl InvocationRequest {
    /// The timer object, under whatever binding name `function.json` gave it.
    pub fn timer_info(&self) -> Option<TimerInfo> {
        self.data
            .values()
            .find_map(|value| serde_json::from_value::<TimerInfo>(value.clone()).ok())
    }

    /// The invocation's `sys.UtcNow`, when the host sent it.
    pub fn utc_now(&self) -> Option<&str> {
        self.metadata.get("sys")?.get("UtcNow")?.as_str()
    }
}

/// The timer trigger's value (`TimerInfo` in the WebJobs timer extension).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimerInfo {
    #[serde(rename = "Schedule", default)]
    pub schedule: TimerScheduleInfo,
    /// `null` when the host does not monitor the schedule (sub-minute schedules, `useMonitor: false`).
    #[serde(rename = "ScheduleStatus", default)]
    pub schedule_status: Option<ScheduleStatus>,
    #[serde(rename = "IsPastDue")]
    pub is_past_due: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimerScheduleInfo {
    #[serde(rename = "AdjustForDST", default)]
    pub adjust_for_dst: bool,
}

impl Default for TimerScheduleInfo {
    fn default() -> Self {
        TimerScheduleInfo {
            adjust_for_dst: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleStatus {
    #[serde(rename = "Last")]
    pub last: String,
    #[serde(rename = "Next")]
    pub next: String,
    #[serde(rename = "LastUpdated")]
    pub last_updated: String,
}

/// The answer to an invocation (`HttpScriptInvocationResult` in the host).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InvocationResponse {
    #[serde(rename = "Outputs")]
    pub outputs: Map<String, Value>,
    /// Each line is written to the invocation's log (Application Insights in Azure).
    #[serde(rename = "Logs")]
    pub logs: Vec<String>,
    #[serde(rename = "ReturnValue")]
    pub return_value: Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_timer_the_host_sends() {
        let body = r#"{"Data":{"myTimer":{"Schedule":{"AdjustForDST":true},
            "ScheduleStatus":{"Last":"2024-05-01T10:15:00.0126990+00:00","Next":"2024-05-01T10:20:00+00:00",
            "LastUpdated":"2024-05-01T10:15:00.0126990+00:00"},"IsPastDue":true}},
            "Metadata":{"sys":{"MethodName":"ScaleDown","UtcNow":"2024-05-01T10:20:00.0211234Z","RandGuid":"2b7d"}}}"#;
        let request: InvocationRequest = serde_json::from_str(body).unwrap();
        let timer = request.timer_info().unwrap();
        assert!(timer.is_past_due);
        assert_eq!(
            timer.schedule_status.unwrap().next,
            "2024-05-01T10:20:00+00:00"
        );
        assert_eq!(request.utc_now(), Some("2024-05-01T10:20:00.0211234Z"));
    }

    #[test]
    fn a_null_schedule_status_is_accepted() {
        let body = r#"{"Data":{"t":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":null,"IsPastDue":false}},"Metadata":{}}"#;
        let request: InvocationRequest = serde_json::from_str(body).unwrap();
        assert_eq!(request.timer_info().unwrap().schedule_status, None);
    }
}
