//! Batch pools through the Functions host harness and the emulator (fast clock): the resize
//! decision table, callbacks on ready and on failure, autoscale, the ScaleDown timer, restarts
//! between request and callback, and Azure faults during a resize.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::host::TempDir;
use crate::harness::{
    Azure, CallbackReceiver, FunctionsHost, TimerFire, loopback_callback_settings,
};

const ACCOUNT_HOST: &str = "demo.westeurope.batch.azure.com";

/// One pool entry of the TOML configuration.
fn pool_config(name: &str, pool_id: &str, extra: &str) -> String {
    format!(
        "[pools.{name}]\naccount_url = \"https://{ACCOUNT_HOST}\"\npool_id = \"{pool_id}\"\nmax_dedicated_nodes = 4\nmax_low_priority_nodes = 2\n{extra}\n"
    )
}

struct Setup {
    azure: Azure,
    receiver: CallbackReceiver,
    dir: TempDir,
}

impl Setup {
    async fn new(speed: f64, seed: Value) -> Setup {
        let azure = Azure::start(speed).await;
        azure.seed(seed).await;
        Setup {
            azure,
            receiver: CallbackReceiver::start().await,
            dir: TempDir::new("pools"),
        }
    }

    async fn host(&self, config: &str) -> FunctionsHost {
        let path = self.dir.0.join("computebridge.toml");
        std::fs::write(
            &path,
            format!("[formulas]\nbusy = \"$TargetDedicatedNodes = 2;\"\n{config}"),
        )
        .unwrap();
        let mut builder = FunctionsHost::builder()
            .setting("COMPUTEBRIDGE_CONFIG", path.to_str().unwrap())
            .setting(
                "COMPUTEBRIDGE_STATE_DIR",
                self.dir.0.join("state").to_str().unwrap(),
            );
        for (k, v) in self
            .azure
            .settings()
            .into_iter()
            .chain(loopback_callback_settings())
        {
            builder = builder.setting(&k, &v);
        }
        builder.start().await
    }

    async fn batch_requests(&self, method: &str, path: &str) -> Vec<Value> {
        self.azure
            .requests(&format!("service=batch&method={method}&path={path}"))
            .await
    }
}

fn seed_pools(pools: Value) -> Value {
    json!({"batchAccounts": [{"account": "demo", "dedicatedCoreQuota": 40}], "pools": pools})
}

#[tokio::test]
async fn resize_follows_the_decision_table_and_calls_back_when_ready() {
    let setup = Setup::new(50.0, seed_pools(json!([{"account": "demo", "id": "etl-pool", "targetDedicatedNodes": 1, "coresPerNode": 2}]))).await;
    let host = setup.host(&pool_config("etl", "etl-pool", "")).await;

    let (status, list) = host.api(Method::GET, "/api/pools", None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["pools"][0]["name"], "etl");
    assert_eq!(list["pools"][0]["nodeCounts"]["idle"], 1);
    assert_eq!(list["pools"][0]["ready"], true);
    let (status, health) = host.api(Method::GET, "/api/health?deep=true", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        health["dependencies"][0],
        json!({"name": "token batch", "status": "ok"}),
        "{health}"
    );
    let tokens = setup.azure.requests("service=msi").await;
    assert!(
        tokens.iter().any(|t| t["query"]
            .as_str()
            .unwrap()
            .contains("resource=https://batch.core.windows.net/")),
        "{tokens:?}"
    );

    // Bad requests are refused before Batch is touched.
    let cases = [
        (
            "/api/pools/nope/resize",
            json!({"targetDedicatedNodes": 1}),
            404,
            "PoolNotManaged",
        ),
        (
            "/api/pools/etl/resize",
            json!({"targetDedicatedNodes": 5}),
            400,
            "TargetAboveLimit",
        ),
        (
            "/api/pools/etl/resize",
            json!({"targetDedicatedNodes": 1, "targetLowPriorityNodes": 3}),
            400,
            "TargetAboveLimit",
        ),
        (
            "/api/pools/etl/resize",
            json!({"targetDedicatedNodes": 1, "resizeTimeout": "PT2M"}),
            400,
            "InvalidResizeTimeout",
        ),
        (
            "/api/pools/etl/resize",
            json!({"targetDedicatedNodes": 1, "nodeDeallocationOption": "later"}),
            400,
            "InvalidNodeDeallocationOption",
        ),
        (
            "/api/pools/etl/resize",
            json!({"targetDedicatedNodes": 2, "callBackUri": "https://evil.example.com/cb"}),
            400,
            "CallbackNotAllowed",
        ),
        (
            "/api/pools/etl/resize",
            json!({"targetLowPriorityNodes": 1}),
            400,
            "InvalidRequestBody",
        ),
    ];
    for (path, body, expected_status, code) in cases {
        let (status, answer) = host.api(Method::POST, path, Some(body.clone())).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (expected_status, Some(code)),
            "{body}: {answer}"
        );
    }
    assert!(
        setup.batch_requests("POST", "").await.is_empty(),
        "nothing was sent to Batch"
    );

    // Already there and steady: 200, nothing sent; the callback still comes (the pool is ready).
    let (status, answer) = host
        .api(
            Method::POST,
            "/api/pools/etl/resize",
            Some(json!({"targetDedicatedNodes": 1, "callBackUri": setup.receiver.url("/cb/same")})),
        )
        .await;
    assert_eq!(
        (status, answer["action"].as_str()),
        (200, Some("none")),
        "{answer}"
    );
    let callback = setup
        .receiver
        .wait_for("/cb/same", Duration::from_secs(10))
        .await
        .expect("callback");
    assert_eq!(callback.body["StatusCode"], "200");
    assert_eq!(callback.content_type, "application/json");

    // Grow: 202, one resize sent; asking again for the same target while it resizes sends nothing.
    // The receiver fails the first two deliveries; the callback is retried and acknowledged once.
    setup.receiver.answer_next_with(&[500, 503]);
    let url = setup.receiver.url("/cb/grow");
    let (status, answer) = host
        .api(
            Method::POST,
            "/api/pools/etl/resize",
            Some(json!({"targetDedicatedNodes": 3, "callBackUri": url})),
        )
        .await;
    assert_eq!(
        (status, answer["action"].as_str(), answer["status"].as_str()),
        (202, Some("resize"), Some("Resizing")),
        "{answer}"
    );
    let (status, again) = host
        .api(
            Method::POST,
            "/api/pools/etl/resize",
            Some(json!({"targetDedicatedNodes": 3})),
        )
        .await;
    assert_eq!(
        (status, again["action"].as_str()),
        (202, Some("none")),
        "{again}"
    );
    assert_eq!(setup.batch_requests("POST", "/resize").await.len(), 1);

    let callback = setup
        .receiver
        .wait_for("/cb/grow", Duration::from_secs(20))
        .await
        .expect("ready callback");
    let state = &callback.body["Output"]["state"];
    assert_eq!(callback.body["StatusCode"], "200", "{}", callback.body);
    assert_eq!(
        (
            state["currentDedicatedNodes"].as_u64(),
            state["ready"].as_bool()
        ),
        (Some(3), Some(true))
    );
    assert_eq!(
        state["nodeCounts"]["idle"], 3,
        "ready means usable nodes, not just allocated ones"
    );

    // Resizing elsewhere: the running resize is stopped first, then ours is sent.
    let (status, _) = host
        .api(
            Method::POST,
            "/api/pools/etl/resize",
            Some(json!({"targetDedicatedNodes": 4})),
        )
        .await;
    assert_eq!(status, 202);
    let (status, answer) = host
        .api(
            Method::POST,
            "/api/pools/etl/resize",
            Some(json!({"targetDedicatedNodes": 0, "callBackUri": setup.receiver.url("/cb/zero")})),
        )
        .await;
    assert_eq!(
        (status, answer["action"].as_str()),
        (202, Some("stopThenResize")),
        "{answer}"
    );
    assert_eq!(setup.batch_requests("POST", "/stopresize").await.len(), 1);
    let callback = setup
        .receiver
        .wait_for("/cb/zero", Duration::from_secs(20))
        .await
        .expect("callback after stop");
    assert_eq!(callback.body["StatusCode"], "200", "{}", callback.body);
    assert_eq!(callback.body["Output"]["state"]["currentDedicatedNodes"], 0);
    // Stale resize errors (ResizeStopped) do not block a new resize.
    let (status, answer) = host
        .api(
            Method::POST,
            "/api/pools/etl/resize",
            Some(json!({"targetDedicatedNodes": 1})),
        )
        .await;
    assert_eq!(
        (status, answer["action"].as_str()),
        (202, Some("resize")),
        "{answer}"
    );
}

#[tokio::test]
async fn failed_resizes_call_back_with_the_batch_error() {
    let seed = json!({
        "batchAccounts": [{"account": "demo", "dedicatedCoreQuota": 5}],
        "pools": [
            {"account": "demo", "id": "small", "coresPerNode": 2},
            {"account": "demo", "id": "scarce", "coresPerNode": 1, "allocatableNodes": 1},
        ],
    });
    let setup = Setup::new(100.0, seed).await;
    let config = format!(
        "{}{}",
        pool_config("small", "small", ""),
        pool_config("scarce", "scarce", "")
    );
    let host = setup.host(&config).await;

    let (status, _) = host.api(Method::POST, "/api/pools/scarce/resize", Some(json!({"targetDedicatedNodes": 2, "resizeTimeout": "PT5M", "callBackUri": setup.receiver.url("/cb/timeout")}))).await;
    assert_eq!(status, 202);
    let timeout = setup
        .receiver
        .wait_for("/cb/timeout", Duration::from_secs(30))
        .await
        .expect("timeout callback");
    assert_eq!(timeout.body["StatusCode"], "500", "{}", timeout.body);
    assert_eq!(
        timeout.body["Error"]["ErrorCode"], "AllocationTimedout",
        "{}",
        timeout.body
    );

    // The scarce pool holds one of the five cores: three 2-core nodes exceed the four left.
    let (status, _) = host
        .api(
            Method::POST,
            "/api/pools/small/resize",
            Some(
                json!({"targetDedicatedNodes": 3, "callBackUri": setup.receiver.url("/cb/quota")}),
            ),
        )
        .await;
    assert_eq!(status, 202);
    let quota = setup
        .receiver
        .wait_for("/cb/quota", Duration::from_secs(20))
        .await
        .expect("quota callback");
    assert_eq!(quota.body["StatusCode"], "500", "{}", quota.body);
    assert_eq!(
        quota.body["Error"]["ErrorCode"], "AccountCoreQuotaReached",
        "{}",
        quota.body
    );
}

#[tokio::test]
async fn autoscale_can_be_enabled_evaluated_and_disabled() {
    let setup = Setup::new(
        50.0,
        seed_pools(json!([{"account": "demo", "id": "auto", "targetDedicatedNodes": 1}])),
    )
    .await;
    let host = setup.host(&pool_config("auto", "auto", "")).await;

    let (status, answer) = host
        .api(
            Method::POST,
            "/api/pools/auto/autoscale",
            Some(json!({"formulaName": "busy", "evaluationInterval": "PT5M"})),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["autoScale"]["enabled"], true);
    assert_eq!(answer["autoScale"]["formula"], "$TargetDedicatedNodes = 2;");

    let (status, answer) = host
        .api(
            Method::POST,
            "/api/pools/auto/resize",
            Some(json!({"targetDedicatedNodes": 1})),
        )
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("AutoScaleEnabled")),
        "{answer}"
    );

    let (status, answer) = host
        .api(
            Method::POST,
            "/api/pools/auto/autoscale/evaluate",
            Some(json!({"formula": "$TargetDedicatedNodes = 3;"})),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["results"]["$TargetDedicatedNodes"], "3");
    let (status, answer) = host
        .api(
            Method::POST,
            "/api/pools/auto/autoscale/evaluate",
            Some(json!({"formula": "$TargetDedicatedNodes = $Nope;"})),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"]["code"], "AutoScalingFormulaEvaluationError");
    let (status, answer) = host
        .api(
            Method::POST,
            "/api/pools/auto/autoscale",
            Some(json!({"formulaName": "unknown"})),
        )
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("UnknownFormula"))
    );

    let (status, answer) = host
        .api(Method::DELETE, "/api/pools/auto/autoscale", None)
        .await;
    assert_eq!(
        (status, answer["autoScale"]["enabled"].as_bool()),
        (200, Some(false)),
        "{answer}"
    );
    let (status, answer) = host
        .api(
            Method::POST,
            "/api/pools/auto/autoscale/evaluate",
            Some(json!({"formula": "$TargetDedicatedNodes = 3;"})),
        )
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("OperationInvalidForCurrentState")),
        "Batch's own error: {answer}"
    );

    host.api(
        Method::POST,
        "/api/pools/auto/autoscale",
        Some(json!({"formulaName": "busy"})),
    )
    .await;
    let (status, answer) = host
        .api(
            Method::POST,
            "/api/pools/auto/resize",
            Some(json!({"targetDedicatedNodes": 0, "disableAutoScale": true})),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["action"], "disableAutoScaleThenResize");
    assert_eq!(answer["state"]["autoScale"]["enabled"], false);
}

/// Waits (bounded) until Batch reports the pool steady.
async fn settled(azure: &Azure, pool: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let path = format!("/pools/{pool}");
    while azure.batch(Method::GET, ACCOUNT_HOST, &path, None).await.1["allocationState"] != "steady"
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "pool {pool} never settled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn scale_down_shrinks_idle_pools_and_explains_every_skip() {
    let pools = json!([
        {"account": "demo", "id": "idle", "targetDedicatedNodes": 2},
        {"account": "demo", "id": "busy", "targetDedicatedNodes": 1},
        {"account": "demo", "id": "warm", "targetDedicatedNodes": 2},
        {"account": "demo", "id": "auto", "targetDedicatedNodes": 1, "autoScaleFormula": "$TargetDedicatedNodes = 1;"},
        {"account": "demo", "id": "moving", "targetDedicatedNodes": 1},
    ]);
    let setup = Setup::new(1.0, seed_pools(pools)).await;
    // 2026-11-23 is a Monday; the keep-warm window below is 06:00-07:00 UTC on weekdays.
    setup
        .azure
        .set_clock(Some("2026-11-23T05:00:00Z"), None)
        .await;
    let policy = "[pools.{}.scale_down]\nidle_minutes = 30\nkeep_warm = [{ days = \"mon-fri\", from = \"06:00\", to = \"07:00\", min_nodes = 1 }]\n";
    let config: String = ["idle", "busy", "warm", "auto", "moving"]
        .iter()
        .map(|p| pool_config(p, p, &policy.replace("{}", p)))
        .collect();
    let host = setup.host(&config).await;
    let batch = |method, path: &'static str, body| {
        setup.azure.batch(method, ACCOUNT_HOST, path, Some(body))
    };
    let (status, job) = batch(
        Method::POST,
        "/jobs",
        json!({"id": "j1", "poolInfo": {"poolId": "busy"}}),
    )
    .await;
    assert_eq!(status, 201, "{job}");
    let (status, _) = batch(
        Method::POST,
        "/jobs/j1/tasks",
        json!({"id": "t1", "commandLine": "sleep 100000"}),
    )
    .await;
    assert_eq!(status, 201);

    // Seventy minutes later, inside the window: every node that is not busy has been idle that long.
    setup
        .azure
        .set_clock(Some("2026-11-23T06:10:00Z"), None)
        .await;
    let (status, _) = batch(
        Method::POST,
        "/pools/moving/resize",
        json!({"targetDedicatedNodes": 3}),
    )
    .await;
    assert_eq!(status, 202);
    let fire = || host.fire_timer("ScaleDown", TimerFire { past_due: false });
    let run = fire().await.unwrap();
    assert!(run.succeeded, "{:?}", run.logs);
    let decision = |value: &Value, pool: &str| {
        let found = value["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["pool"] == pool)
            .cloned();
        let found = found.unwrap_or_else(|| panic!("no decision for {pool}: {value}"));
        (
            found["decision"].as_str().unwrap().to_owned(),
            found["reason"].as_str().unwrap().to_owned(),
            found["to"].clone(),
        )
    };
    let result = &run.return_value;
    assert_eq!(decision(result, "idle").0, "scaledDown", "{result}");
    assert_eq!(
        decision(result, "warm").2,
        json!([1, 0]),
        "the keep-warm floor is 1: {result}"
    );
    let busy = decision(result, "busy");
    assert_eq!(busy.0, "skipped");
    assert!(busy.1.contains("running tasks"), "{result}");
    assert!(decision(result, "auto").1.contains("autoscale"), "{result}");
    assert!(
        decision(result, "moving").1.contains("resizing"),
        "{result}"
    );
    assert!(
        run.logs.iter().any(|l| l.contains("pool busy: skipped")),
        "{:?}",
        run.logs
    );

    // While the window lasts the warm pool stays at its floor; after it, it goes to zero.
    settled(&setup.azure, "warm").await;
    let warm = decision(&fire().await.unwrap().return_value, "warm");
    assert!(warm.1.contains("keep-warm window"), "{warm:?}");
    setup
        .azure
        .set_clock(Some("2026-11-23T08:00:00Z"), None)
        .await;
    settled(&setup.azure, "warm").await;
    let warm = decision(&fire().await.unwrap().return_value, "warm");
    assert_eq!(
        (warm.0.as_str(), &warm.2),
        ("scaledDown", &json!([0, 0])),
        "{warm:?}"
    );
    let resizes = setup.batch_requests("POST", "/resize").await;
    assert!(
        resizes
            .iter()
            .all(|r| !r["path"].as_str().unwrap().contains("/busy/")),
        "a pool running a task is never resized"
    );
}

#[tokio::test]
async fn a_restart_between_request_and_ready_still_calls_back_once() {
    let setup = Setup::new(
        5.0,
        seed_pools(json!([{"account": "demo", "id": "etl-pool", "targetDedicatedNodes": 0}])),
    )
    .await;
    let config = pool_config("etl", "etl-pool", "");
    let first = setup.host(&config).await;
    let (status, answer) = first.api(Method::POST,
        "/api/pools/etl/resize",
        Some(json!({"targetDedicatedNodes": 1, "callBackUri": setup.receiver.url("/cb/restart")})),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    drop(first);
    assert!(
        setup.receiver.received().is_empty(),
        "the pool needs ~10 s to be ready"
    );

    let second = setup.host(&config).await;
    let callback = setup
        .receiver
        .wait_for("/cb/restart", Duration::from_secs(30))
        .await
        .expect("callback after restart");
    assert_eq!(callback.body["StatusCode"], "200");
    // Once delivered, nothing is left to deliver: no operation and no pending callback.
    let state = setup.dir.0.join("state");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while ["pool-operations", "callbacks-pending"]
        .iter()
        .any(|d| std::fs::read_dir(state.join(d)).is_ok_and(|mut e| e.next().is_some()))
    {
        assert!(tokio::time::Instant::now() < deadline, "state left behind");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(setup.receiver.received().len(), 1);
    drop(second);
}

#[tokio::test]
async fn throttling_is_retried_and_a_permanent_refusal_is_surfaced() {
    let setup = Setup::new(
        50.0,
        seed_pools(json!([{"account": "demo", "id": "etl-pool", "targetDedicatedNodes": 0}])),
    )
    .await;
    let host = setup.host(&pool_config("etl", "etl-pool", "")).await;
    setup
        .azure
        .fault(json!({"match": {"service": "batch", "method": "POST", "path": "/resize"}, "action": {"status": 429, "retryAfter": 1, "code": "TooManyRequests"}, "times": 1}))
        .await;
    setup
        .azure
        .fault(json!({"match": {"service": "batch", "method": "POST", "path": "/resize"}, "action": {"status": 503, "code": "ServerBusy"}, "times": 1}))
        .await;
    let (status, answer) = host
        .api(
            Method::POST,
            "/api/pools/etl/resize",
            Some(json!({"targetDedicatedNodes": 1})),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    let statuses: Vec<u64> = setup
        .batch_requests("POST", "/resize")
        .await
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [429, 503, 202]);

    setup
        .azure
        .fault(json!({"match": {"service": "batch", "method": "GET", "path": "/pools/etl-pool"}, "action": {"status": 403, "code": "InsufficientAccountPermissions", "message": "The caller is not authorized to read this pool."}, "times": 0}))
        .await;
    let (status, answer) = host.api(Method::GET, "/api/pools/etl", None).await;
    assert_eq!(status, 502, "{answer}");
    assert_eq!(answer["error"]["code"], "InsufficientAccountPermissions");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not authorized to read this pool"),
        "{answer}"
    );
}
