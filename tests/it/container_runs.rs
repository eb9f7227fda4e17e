//! Container runs through the Functions host harness and the emulator: a run that succeeds and
//! one that fails, each calling back and cleaning up; a repeated run id; bad input refused before
//! Azure is touched; an ACI quota error surfaced with Azure's code and message.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::host::TempDir;
use crate::harness::{
    Azure, Azurite, CallbackReceiver, FunctionsHost, Key, key_vault_reference,
    loopback_callback_settings,
};

const SUBSCRIPTION: &str = "00000000-0000-0000-0000-0000000000aa";

struct Setup {
    azure: Azure,
    _azurite: Azurite,
    receiver: CallbackReceiver,
    host: FunctionsHost,
    _dir: TempDir,
}

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
    let config = format!(
        r#"
[templates.hello]
resource_group = "jobs"
location = "westeurope"
image = "alpine"
cpu = 1.0
command = ["sh", "-c", "echo {{greeting}} $MODE; test -n \"$SECRET_GREETING\" && echo secret-present; exit {{code}}"]
allowed_env = ["MODE"]
env = {{ FIXED = "yes" }}
secure_env = {{ SECRET_GREETING = "{reference}" }}
[templates.hello.parameters]
greeting = {{ kind = "text", max_length = 40, default = "hello" }}
code = {{ kind = "digits", max_length = 3, default = "0" }}
"#,
        reference = key_vault_reference("ops", "greeting")
    );
    let path = dir.0.join("computebridge.toml");
    std::fs::write(&path, config).unwrap();
    let azurite = Azurite::start().await;
    let mut builder = FunctionsHost::builder()
        .setting("COMPUTEBRIDGE_CONFIG", path.to_str().unwrap())
        .setting("AZURE_SUBSCRIPTION_ID", SUBSCRIPTION);
    for (k, v) in azure
        .settings()
        .into_iter()
        .chain(azurite.settings())
        .chain(loopback_callback_settings())
    {
        builder = builder.setting(&k, &v);
    }
    Setup {
        host: builder.start().await,
        azure,
        _azurite: azurite,
        receiver: CallbackReceiver::start().await,
        _dir: dir,
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
            "InvalidRequestBody",
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
        (404, Some("RunNotFound"))
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
