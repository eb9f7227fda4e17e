//! Container runs through the Functions host harness and the emulator: a run that succeeds and
//! one that fails, each calling back and cleaning up; a repeated run id; bad input refused before
//! Azure is touched; an ACI quota error surfaced with Azure's code and message.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::TimerFire;
use crate::harness::host::{HostResponse, TempDir};
use crate::harness::{
    Azure, Azurite, CallbackReceiver, FunctionsHost, Key, key_vault_reference,
    loopback_callback_settings,
};

const SUBSCRIPTION: &str = "00000000-0000-0000-0000-0000000000aa";

struct Setup {
    azure: Azure,
    azurite: Azurite,
    receiver: CallbackReceiver,
    host: FunctionsHost,
    dir: TempDir,
}

/// Templates every test can use: `hello` (greets, may fail by exit code, posts output when it has
/// an output URL), `sleeper` (runs `seconds`), `slow` (2 s timeout), `fixed` (runs in the fixed
/// group `etl-fixed`), `adhoc` (images from one registry path) and `ghost` (an image nobody can
/// pull, 2 s start limit).
const TEMPLATES: &str = r#"
[templates.hello]
resource_group = "jobs"
location = "westeurope"
image = "alpine"
cpu = 1.0
command = ["sh", "-c", '''echo {greeting} $MODE; test -n "$SECRET_GREETING" && echo secret-present; if [ -n "$COMPUTEBRIDGE_OUTPUT_URL" ]; then curl -s -X POST -d '{"rows": 42, "run": "'$COMPUTEBRIDGE_RUN_ID'"}' "$COMPUTEBRIDGE_OUTPUT_URL"; fi; exit {code}''']
allowed_env = ["MODE"]
env = { FIXED = "yes" }
secure_env = { SECRET_GREETING = "REFERENCE" }
[templates.hello.parameters]
greeting = { kind = "text", max_length = 40, default = "hello" }
code = { kind = "digits", max_length = 3, default = "0" }

[templates.sleeper]
resource_group = "jobs"
location = "westeurope"
image = "alpine"
command = ["sh", "-c", "echo sleeping; sleep {seconds}"]
[templates.sleeper.parameters]
seconds = { kind = "digits", max_length = 3, default = "3" }

[templates.slow]
resource_group = "jobs"
location = "westeurope"
image = "alpine"
command = ["sh", "-c", "sleep 60"]
timeout_seconds = 2

[templates.fixed]
resource_group = "jobs"
location = "westeurope"
container_group = "etl-fixed"
command = ["sh", "-c", "echo fixed run {n}; sleep 2"]
[templates.fixed.parameters]
n = { kind = "digits", default = "1" }

[templates.adhoc]
resource_group = "jobs"
location = "westeurope"
image = "alpine"
allowed_images = ["contoso.azurecr.io/jobs/"]
start_timeout_seconds = 60

[templates.ghost]
resource_group = "jobs"
location = "westeurope"
image = "contoso.azurecr.io/jobs/ghost:1.0"
start_timeout_seconds = 2
"#;

async fn setup(extra_seed: Value) -> Setup {
    let azure = Azure::start(10.0).await;
    azure
        .seed(json!({
            "resourceGroups": [{"subscription": SUBSCRIPTION, "name": "jobs"}],
            "secrets": [{"vault": "ops", "name": "greeting", "value": "run-secret-5d1e"}],
        }))
        .await;
    azure.seed(extra_seed).await;
    let dir = TempDir::new("runs");
    std::fs::write(
        dir.0.join("computebridge.toml"),
        TEMPLATES.replace("REFERENCE", &key_vault_reference("ops", "greeting")),
    )
    .unwrap();
    let azurite = Azurite::start().await;
    Setup {
        host: start_host(&azure, &azurite, &dir).await,
        azure,
        azurite,
        receiver: CallbackReceiver::start().await,
        dir,
    }
}

/// A service instance on the shared emulator and Azurite (tests start several, or restart one).
async fn start_host(azure: &Azure, azurite: &Azurite, dir: &TempDir) -> FunctionsHost {
    let mut builder = FunctionsHost::builder()
        .setting(
            "COMPUTEBRIDGE_CONFIG",
            dir.0.join("computebridge.toml").to_str().unwrap(),
        )
        .setting("AZURE_SUBSCRIPTION_ID", SUBSCRIPTION)
        .public_url_is_handler();
    for (k, v) in azure
        .settings()
        .into_iter()
        .chain(azurite.settings())
        .chain(loopback_callback_settings())
    {
        builder = builder.setting(&k, &v);
    }
    builder.start().await
}

/// Polls `check` every 100 ms until it holds; fails naming `what` after `within`.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Setup {
    async fn start_run(&self, body: Value) -> Value {
        let (status, answer) = self.host.api(Method::POST, "/api/runs", Some(body)).await;
        assert_eq!(status, 202, "{answer}");
        answer
    }

    /// A keyed GET whose status and headers matter (the asynchronous pattern).
    async fn get(&self, path: &str) -> HostResponse {
        self.host
            .call(
                Method::GET,
                path,
                Key::Header(self.host.keys.master.clone()),
                &[],
                None,
            )
            .await
    }

    async fn group_requests(&self, method: &str, group: &str) -> usize {
        self.azure
            .requests(&format!("service=arm&method={method}&path={group}"))
            .await
            .len()
    }
}

#[tokio::test]
async fn runs_succeed_or_fail_by_exit_code_and_call_back_once() {
    let s = setup(json!({})).await;
    let ok = json!({"template": "hello", "runId": "pipeline-1-step", "parameters": {"greeting": "hi there"}, "env": {"MODE": "fast"}, "callBackUri": s.receiver.url("/cb/ok")});
    let (status, answer) = s
        .host
        .api(Method::POST, "/api/runs", Some(ok.clone()))
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["runId"], "pipeline-1-step");
    let group = answer["containerGroup"].as_str().unwrap().to_owned();
    assert!(group.starts_with("cb-pipeline-1-step-"), "{group}");

    // ADF retries the same request: the existing run comes back and no second group is created.
    let (status, again) = s.host.api(Method::POST, "/api/runs", Some(ok)).await;
    assert_eq!(
        (status, again["created"].as_bool()),
        (200, Some(false)),
        "{again}"
    );
    let puts = s.azure.requests("service=arm&method=PUT").await;
    assert_eq!(puts.len(), 1, "{puts:?}");

    let callback = s
        .receiver
        .wait_for("/cb/ok", Duration::from_secs(20))
        .await
        .expect("success callback");
    assert_eq!(callback.body["StatusCode"], "200", "{}", callback.body);
    let output = &callback.body["Output"];
    assert_eq!(
        (output["status"].as_str(), output["exitCode"].as_i64()),
        (Some("Succeeded"), Some(0)),
        "{output}"
    );
    assert_eq!(
        output["output"],
        json!({"rows": 42, "run": "pipeline-1-step"}),
        "the job's posted output comes back with the run"
    );
    let log = output["logTail"].as_str().unwrap();
    assert!(
        log.contains("hi there fast") && log.contains("secret-present"),
        "{log}"
    );
    assert!(
        !callback.body.to_string().contains("run-secret-5d1e"),
        "the secure value never leaves Azure"
    );
    let deletes = s
        .azure
        .requests(&format!("service=arm&method=DELETE&path={group}"))
        .await;
    assert_eq!(
        deletes.len(),
        1,
        "a succeeded group is deleted: {deletes:?}"
    );

    let (status, run) = s
        .host
        .api(Method::GET, "/api/runs/pipeline-1-step", None)
        .await;
    assert_eq!(
        (status, run["status"].as_str()),
        (200, Some("Succeeded")),
        "{run}"
    );
    assert!(run["durationSeconds"].is_i64(), "{run}");

    let failing = json!({"template": "hello", "runId": "pipeline-2", "parameters": {"code": "3"}, "callBackUri": s.receiver.url("/cb/fail")});
    let (status, _) = s.host.api(Method::POST, "/api/runs", Some(failing)).await;
    assert_eq!(status, 202);
    let callback = s
        .receiver
        .wait_for("/cb/fail", Duration::from_secs(20))
        .await
        .expect("failure callback");
    assert_eq!(callback.body["StatusCode"], "500", "{}", callback.body);
    assert_eq!(callback.body["Output"]["exitCode"], 3);
    assert_eq!(callback.body["Error"]["ErrorCode"], "NonZeroExitCode");
    assert!(
        callback.body["Error"]["Message"]
            .as_str()
            .unwrap()
            .contains("code 3")
    );
    // Each run called back exactly once.
    assert_eq!(s.receiver.received().len(), 2);
}

#[tokio::test]
async fn bad_runs_are_refused_before_azure_is_touched() {
    let s = setup(json!({})).await;
    let cases = [
        (json!({"template": "nope"}), "UnknownTemplate"),
        (
            json!({"template": "hello", "parameters": {"other": "x"}}),
            "ParameterNotAllowed",
        ),
        (
            json!({"template": "hello", "parameters": {"code": "1; rm -rf /"}}),
            "InvalidParameter",
        ),
        (
            json!({"template": "hello", "parameters": {"greeting": "$(id)"}}),
            "InvalidParameter",
        ),
        (
            json!({"template": "hello", "env": {"PATH": "/tmp"}}),
            "EnvNotAllowed",
        ),
        (
            json!({"template": "hello", "callBackUri": "https://evil.example.com/cb"}),
            "CallbackNotAllowed",
        ),
        (
            json!({"template": "hello", "runId": "has space"}),
            "InvalidRunId",
        ),
        (
            json!({"template": "hello", "runId": "x".repeat(101)}),
            "InvalidRunId",
        ),
        (
            json!({"template": "hello", "image": "evil"}),
            "ImageNotAllowed",
        ),
        (
            json!({"template": "adhoc", "image": "contoso.azurecr.io/other/x:1"}),
            "ImageNotAllowed",
        ),
        (
            json!({"template": "adhoc", "image": "docker.io/contoso.azurecr.io/jobs/x"}),
            "ImageNotAllowed",
        ),
        (
            json!({"template": "hello", "mode": "sometimes"}),
            "InvalidMode",
        ),
    ];
    for (body, code) in cases {
        let (status, answer) = s
            .host
            .api(Method::POST, "/api/runs", Some(body.clone()))
            .await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (400, Some(code)),
            "{body}: {answer}"
        );
    }
    let response = s
        .host
        .call(
            Method::POST,
            "/api/runs",
            Key::Header(s.host.keys.master.clone()),
            &[],
            Some(vec![b' '; 2 * 1024 * 1024]),
        )
        .await;
    assert_eq!(response.status, 413);
    assert!(
        s.azure.requests("service=arm").await.is_empty(),
        "nothing reached ARM"
    );
    let (status, answer) = s.host.api(Method::GET, "/api/runs/unknown-run", None).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (404, Some("RunNotFound")),
        "{answer}"
    );
}

#[tokio::test]
async fn an_aci_quota_error_is_surfaced_with_azures_words() {
    let s = setup(json!({"aciQuotas": [{"location": "westeurope", "standardCores": 0.5}]})).await;
    let (status, answer) = s
        .host
        .api(
            Method::POST,
            "/api/runs",
            Some(json!({"template": "hello", "runId": "quota-1"})),
        )
        .await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"]["code"], "ContainerGroupQuotaReached");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("StandardCores"),
        "{answer}"
    );
    let (_, run) = s.host.api(Method::GET, "/api/runs/quota-1", None).await;
    assert_eq!(run["status"], "Failed", "{run}");
    assert_eq!(run["error"]["code"], "ContainerGroupQuotaReached");
}

#[tokio::test]
async fn poll_mode_logs_and_cancel() {
    let s = setup(json!({})).await;
    let body = json!({"template": "sleeper", "runId": "poll-1", "mode": "poll", "parameters": {"seconds": "60"}, "callBackUri": s.receiver.url("/cb/cancel")});
    let response = s
        .host
        .call(
            Method::POST,
            "/api/runs",
            Key::Header(s.host.keys.master.clone()),
            &[],
            Some(body.to_string().into_bytes()),
        )
        .await;
    assert_eq!(response.status, 202);
    let location = response.header("location").unwrap().to_owned();
    assert!(location.ends_with("/api/runs/poll-1"), "{location}");
    assert_eq!(response.header("retry-after"), Some("10"));

    // Running: the status answers 202 with Location; logs are read live.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, logs) = s
            .host
            .api(Method::GET, "/api/runs/poll-1/logs?tail=5", None)
            .await;
        assert_eq!(status, 200, "{logs}");
        if logs["content"]
            .as_str()
            .unwrap_or_default()
            .contains("sleeping")
        {
            assert_eq!(logs["source"], "live");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{logs}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let running = s.get("/api/runs/poll-1").await;
    assert_eq!(running.status, 202);
    assert!(running.header("location").is_some());
    let (status, bad) = s
        .host
        .api(Method::GET, "/api/runs/poll-1/logs?tail=0", None)
        .await;
    assert_eq!(
        (status, bad["error"]["code"].as_str()),
        (400, Some("InvalidTail"))
    );

    let (status, cancelled) = s
        .host
        .api(Method::POST, "/api/runs/poll-1/cancel", None)
        .await;
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (200, Some("Cancelled")),
        "{cancelled}"
    );
    let callback = s
        .receiver
        .wait_for("/cb/cancel", Duration::from_secs(20))
        .await
        .expect("cancel callback");
    assert_eq!(callback.body["StatusCode"], "500");
    assert_eq!(callback.body["Error"]["ErrorCode"], "RunCancelled");
    // The asynchronous pattern ends with 500 and the same body for anything but success.
    let ended = s.get("/api/runs/poll-1").await;
    assert_eq!(ended.status, 500);
    assert_eq!(ended.json()["status"], "Cancelled");
    let group = cancelled["containerGroup"].as_str().unwrap();
    assert_eq!(s.group_requests("POST", &format!("{group}/stop")).await, 1);
    eventually(
        Duration::from_secs(10),
        "cancelled group deleted",
        || async { s.group_requests("DELETE", group).await > 0 },
    )
    .await;
    let (status, again) = s
        .host
        .api(Method::POST, "/api/runs/poll-1/cancel", None)
        .await;
    assert_eq!(
        (status, again["error"]["code"].as_str()),
        (409, Some("RunFinished"))
    );
    assert_eq!(s.receiver.received().len(), 1);
}

#[tokio::test]
async fn timeouts_and_images_that_never_pull_end_the_run() {
    let s = setup(json!({})).await;
    let slow = s
        .start_run(json!({"template": "slow", "runId": "slow-1", "callBackUri": s.receiver.url("/cb/slow")}))
        .await;
    s.start_run(json!({"template": "ghost", "runId": "ghost-1", "callBackUri": s.receiver.url("/cb/ghost")}))
        .await;

    let timed_out = s
        .receiver
        .wait_for("/cb/slow", Duration::from_secs(30))
        .await
        .expect("timeout callback");
    assert_eq!(timed_out.body["Error"]["ErrorCode"], "RunTimedOut");
    assert_eq!(timed_out.body["Output"]["status"], "TimedOut");
    let group = slow["containerGroup"].as_str().unwrap();
    assert_eq!(s.group_requests("POST", &format!("{group}/stop")).await, 1);
    assert_eq!(
        s.group_requests("DELETE", group).await,
        1,
        "a timed-out group is deleted"
    );

    let ghost = s
        .receiver
        .wait_for("/cb/ghost", Duration::from_secs(30))
        .await
        .expect("stuck start callback");
    assert_eq!(ghost.body["Error"]["ErrorCode"], "ImagePullFailed");
    let message = ghost.body["Error"]["Message"].as_str().unwrap();
    assert!(
        message.contains("Failed to pull image")
            && message.contains("contoso.azurecr.io/jobs/ghost:1.0"),
        "Azure's own event text: {message}"
    );
}

#[tokio::test]
async fn a_callback_refused_with_500_is_retried_until_acknowledged_once() {
    let s = setup(json!({})).await;
    s.receiver.answer_next_with(&[500, 500, 503]);
    s.start_run(json!({"template": "sleeper", "runId": "retry-1", "parameters": {"seconds": "1"}, "callBackUri": s.receiver.url("/cb/retry")}))
        .await;
    eventually(Duration::from_secs(40), "callback acknowledged", || async {
        !s.receiver.acknowledged("/cb/retry").is_empty()
    })
    .await;
    assert_eq!(
        s.receiver.received().len(),
        4,
        "three refusals, then one acknowledged"
    );
    // Later sweeps (the timer's too) never send an acknowledged callback again.
    let fired = s
        .host
        .fire_timer("Reconcile", TimerFire::default())
        .await
        .unwrap();
    assert!(fired.succeeded, "{:?}", fired.logs);
    assert_eq!(s.receiver.acknowledged("/cb/retry").len(), 1);
}

#[tokio::test]
async fn a_run_survives_the_service_being_killed_and_restarted() {
    let mut s = setup(json!({})).await;
    s.start_run(json!({"template": "sleeper", "runId": "restart-1", "parameters": {"seconds": "2"}, "callBackUri": s.receiver.url("/cb/restart")}))
        .await;
    // Killed straight after answering: nothing but the Blob state and the group remain.
    s.host.kill().await;
    assert!(s.receiver.received().is_empty(), "the job runs for 2 s");
    s.host = start_host(&s.azure, &s.azurite, &s.dir).await;
    let callback = s
        .receiver
        .wait_for("/cb/restart", Duration::from_secs(30))
        .await
        .expect("callback from the restarted service");
    assert_eq!(callback.body["StatusCode"], "200", "{}", callback.body);
    // A full sweep after delivery finds nothing left to send.
    let fired = s
        .host
        .fire_timer("Reconcile", TimerFire::default())
        .await
        .unwrap();
    assert!(fired.succeeded, "{:?}", fired.logs);
    assert_eq!(s.receiver.received().len(), 1);
}

#[tokio::test]
async fn arm_throttling_during_reconcile_delays_but_never_loses_a_run() {
    let s = setup(json!({})).await;
    // Every read of a container group is throttled for a while (ARM's 429 with Retry-After).
    s.azure
        .fault(json!({"match": {"service": "arm", "method": "GET", "path": "/containerGroups/cb-storm"}, "action": {"status": 429, "retryAfter": 1, "code": "TooManyRequests", "message": "Too many requests."}, "times": 12}))
        .await;
    for i in 1..=3 {
        s.start_run(json!({"template": "sleeper", "runId": format!("storm-{i}"), "parameters": {"seconds": "1"}, "callBackUri": s.receiver.url(&format!("/cb/storm-{i}"))}))
            .await;
    }
    for i in 1..=3 {
        let callback = s
            .receiver
            .wait_for(&format!("/cb/storm-{i}"), Duration::from_secs(60))
            .await
            .expect("callback after the storm");
        assert_eq!(callback.body["StatusCode"], "200", "{}", callback.body);
    }
    let throttled: Vec<Value> = s
        .azure
        .requests("service=arm&method=GET&path=/containerGroups/cb-storm")
        .await
        .into_iter()
        .filter(|r| r["status"] == 429)
        .collect();
    assert_eq!(throttled.len(), 12, "the storm was met");
    assert_eq!(s.receiver.received().len(), 3);
}

#[tokio::test]
async fn orphaned_groups_of_this_deployment_are_deleted_and_others_left_alone() {
    let s = setup(json!({})).await;
    let run = s
        .start_run(
            json!({"template": "sleeper", "runId": "owned-1", "parameters": {"seconds": "30"}}),
        )
        .await;
    let path = |name: &str| {
        format!(
            "/subscriptions/{SUBSCRIPTION}/resourceGroups/jobs/providers/Microsoft.ContainerInstance/containerGroups/{name}"
        )
    };
    let (_, owned) = s
        .azure
        .arm(
            Method::GET,
            &path(run["containerGroup"].as_str().unwrap()),
            None,
        )
        .await;
    let owner = owned["tags"]["computebridge-owner"]
        .as_str()
        .unwrap()
        .to_owned();
    let group = |run_id: &str, owner: &str| {
        json!({"location": "westeurope", "tags": {"computebridge-run": run_id, "computebridge-owner": owner},
               "properties": {"osType": "Linux", "restartPolicy": "Never", "containers": [{"name": "job",
               "properties": {"image": "alpine", "command": ["sleep", "60"], "resources": {"requests": {"cpu": 0.5, "memoryInGB": 0.5}}}}]}})
    };
    for (name, body) in [
        ("cb-crashed-start", group("crashed-start", &owner)),
        ("other-deployment", group("theirs", "0123456789abcdef")),
    ] {
        let (status, answer) = s.azure.arm(Method::PUT, &path(name), Some(body)).await;
        assert!(status == 200 || status == 201, "{answer}");
    }
    let fired = s
        .host
        .fire_timer("Reconcile", TimerFire::default())
        .await
        .unwrap();
    assert!(
        fired
            .logs
            .iter()
            .any(|l| l.contains("orphaned group cb-crashed-start")),
        "{:?}",
        fired.logs
    );
    assert_eq!(s.group_requests("DELETE", "cb-crashed-start").await, 1);
    assert_eq!(s.group_requests("DELETE", "other-deployment").await, 0);
    let owned_group = run["containerGroup"].as_str().unwrap();
    assert_eq!(
        s.group_requests("DELETE", owned_group).await,
        0,
        "a live run keeps its group"
    );
}

#[tokio::test]
async fn two_instances_reconciling_the_same_runs_call_back_once_each() {
    let s = setup(json!({})).await;
    let second = start_host(&s.azure, &s.azurite, &s.dir).await;
    for i in 1..=4 {
        let host = if i % 2 == 0 { &s.host } else { &second };
        let (status, answer) = host
            .api(Method::POST, "/api/runs", Some(json!({"template": "sleeper", "runId": format!("pair-{i}"), "parameters": {"seconds": "1"}, "callBackUri": s.receiver.url(&format!("/cb/pair-{i}"))})))
            .await;
        assert_eq!(status, 202, "{answer}");
    }
    // Both instances' workers and timers sweep the same runs at once.
    for _ in 0..5 {
        let (a, b) = tokio::join!(
            s.host.fire_timer("Reconcile", TimerFire::default()),
            second.fire_timer("Reconcile", TimerFire::default())
        );
        assert!(a.unwrap().succeeded && b.unwrap().succeeded);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for i in 1..=4 {
        s.receiver
            .wait_for(&format!("/cb/pair-{i}"), Duration::from_secs(30))
            .await
            .expect("callback");
    }
    // One more full sweep on each instance after delivery: nothing is sent again.
    let (a, b) = tokio::join!(
        s.host.fire_timer("Reconcile", TimerFire::default()),
        second.fire_timer("Reconcile", TimerFire::default())
    );
    assert!(a.unwrap().succeeded && b.unwrap().succeeded);
    let mut paths: Vec<String> = s.receiver.received().into_iter().map(|r| r.path).collect();
    paths.sort();
    assert_eq!(
        paths,
        ["/cb/pair-1", "/cb/pair-2", "/cb/pair-3", "/cb/pair-4"]
    );
}

#[tokio::test]
async fn a_fixed_group_runs_one_job_at_a_time_and_is_kept() {
    let s = setup(json!({})).await;
    let path = format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/jobs/providers/Microsoft.ContainerInstance/containerGroups/etl-fixed"
    );
    let (status, answer) = s
        .azure
        .arm(Method::PUT, &path, Some(json!({"location": "westeurope", "properties": {"osType": "Linux", "restartPolicy": "Never",
            "containers": [{"name": "etl", "properties": {"image": "alpine", "command": ["true"], "resources": {"requests": {"cpu": 1.0, "memoryInGB": 1.0}}}}]}})))
        .await;
    assert!(status == 200 || status == 201, "{answer}");
    // Infrastructure made it and its first container ran to the end before any job is started.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, group) = s.azure.arm(Method::GET, &path, None).await;
        let container = &group["properties"]["containers"][0]["properties"]["instanceView"];
        if container["currentState"]["state"] == "Terminated" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{group}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    s.start_run(json!({"template": "fixed", "runId": "fixed-1", "parameters": {"n": "1"}, "callBackUri": s.receiver.url("/cb/fixed-1")}))
        .await;
    let (status, busy) = s
        .host
        .api(
            Method::POST,
            "/api/runs",
            Some(json!({"template": "fixed", "runId": "fixed-2"})),
        )
        .await;
    assert_eq!(
        (status, busy["error"]["code"].as_str()),
        (409, Some("ContainerGroupBusy")),
        "{busy}"
    );
    let callback = s
        .receiver
        .wait_for("/cb/fixed-1", Duration::from_secs(30))
        .await
        .expect("fixed run callback");
    assert_eq!(callback.body["StatusCode"], "200", "{}", callback.body);
    assert!(
        callback.body["Output"]["logTail"]
            .as_str()
            .unwrap()
            .contains("fixed run 1")
    );
    assert_eq!(
        s.group_requests("DELETE", "etl-fixed").await,
        0,
        "a fixed group is never deleted"
    );

    // Free again: the next run updates the same group with its own command.
    s.start_run(json!({"template": "fixed", "runId": "fixed-3", "parameters": {"n": "3"}, "callBackUri": s.receiver.url("/cb/fixed-3")}))
        .await;
    let callback = s
        .receiver
        .wait_for("/cb/fixed-3", Duration::from_secs(30))
        .await
        .expect("second fixed run callback");
    assert!(
        callback.body["Output"]["logTail"]
            .as_str()
            .unwrap()
            .contains("fixed run 3")
    );

    // An ad-hoc image from the allowed registry path is what the group runs.
    let adhoc = s
        .start_run(json!({"template": "adhoc", "runId": "adhoc-1", "image": "contoso.azurecr.io/jobs/etl:2.1"}))
        .await;
    let group_path = format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/jobs/providers/Microsoft.ContainerInstance/containerGroups/{}",
        adhoc["containerGroup"].as_str().unwrap()
    );
    let (_, group) = s.azure.arm(Method::GET, &group_path, None).await;
    assert_eq!(
        group["properties"]["containers"][0]["properties"]["image"],
        "contoso.azurecr.io/jobs/etl:2.1"
    );
}

#[tokio::test]
async fn a_sweep_during_a_start_leaves_the_run_to_its_start() {
    let s = setup(json!({})).await;
    // ARM takes 3 s to create the group; the timer's sweep reads the run meanwhile.
    s.azure
        .fault(json!({"match": {"service": "arm", "method": "PUT"}, "action": {"delayMs": 3000}, "times": 1}))
        .await;
    let body =
        json!({"template": "hello", "runId": "raced", "callBackUri": s.receiver.url("/cb/raced")});
    let ((status, answer), fired) =
        tokio::join!(s.host.api(Method::POST, "/api/runs", Some(body)), async {
            eventually(
                Duration::from_secs(3),
                "the run recorded, its group not yet created",
                || async {
                    let (status, run) = s.host.api(Method::GET, "/api/runs/raced", None).await;
                    status == 200 && run["status"] == "Queued"
                },
            )
            .await;
            s.host
                .fire_timer("Reconcile", TimerFire::default())
                .await
                .unwrap()
        });
    assert!(fired.succeeded, "{:?}", fired.logs);
    assert_eq!(
        (status, answer["created"].as_bool()),
        (202, Some(true)),
        "the start finishes as if no sweep had run: {answer}"
    );
    let callback = s
        .receiver
        .wait_for("/cb/raced", Duration::from_secs(20))
        .await
        .expect("the run's callback");
    assert_eq!(
        callback.body["Output"]["status"], "Succeeded",
        "{}",
        callback.body
    );
}
