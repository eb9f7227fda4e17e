//! The Batch data plane's state machines over its REST paths, on a fast clock.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{BATCH, Emu, eventually};

const V: &str = "api-version=2025-06-01";
/// 600 simulated seconds per real second: node allocation (30 s) takes 50 ms.
const SPEED: f64 = 600.0;

/// An emulator with account `acct` and `pools`; its clock runs at real speed until a test
/// speeds it up, so states right after a request can be observed.
async fn batch_emu(pools: Value) -> (Emu, String) {
    let emu = Emu::start(1.0).await;
    emu.seed(
        json!({"batchAccounts": [{"account": "acct", "dedicatedCoreQuota": 20}], "pools": pools}),
    )
    .await;
    let token = emu.token("https://batch.core.windows.net/").await;
    (emu, token)
}

async fn pool(emu: &Emu, token: &str, id: &str) -> Value {
    let reply = emu
        .send(
            Method::GET,
            BATCH,
            &format!("/pools/{id}?{V}"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body
}

async fn nodes(emu: &Emu, token: &str, id: &str) -> Value {
    let reply = emu
        .send(
            Method::GET,
            BATCH,
            &format!("/pools/{id}/nodes?{V}"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body
}

async fn steady(emu: &Emu, token: &str, id: &str) -> Value {
    eventually(Duration::from_secs(10), "a steady pool", || async {
        let pool = pool(emu, token, id).await;
        (pool["allocationState"] == "steady").then_some(pool)
    })
    .await
}

async fn post(emu: &Emu, token: &str, path: &str, body: Value) -> crate::support::Reply {
    emu.send(
        Method::POST,
        BATCH,
        &format!("{path}?{V}"),
        Some(token),
        Some(body),
    )
    .await
}

#[tokio::test]
async fn resize_up_allocates_nodes_that_become_idle() {
    let (emu, token) = batch_emu(json!([{"account": "acct", "id": "p1", "startTask": {"commandLine": "echo hi", "waitForSuccess": true}}])).await;
    let resized = post(
        &emu,
        &token,
        "/pools/p1/resize",
        json!({"targetDedicatedNodes": 3, "resizeTimeout": "PT10M"}),
    )
    .await;
    assert_eq!(resized.status, 202, "{}", resized.text);
    assert!(resized.text.is_empty());
    for header in ["etag", "last-modified", "request-id", "dataserviceid"] {
        assert!(resized.header(header).is_some(), "{header}");
    }
    assert_eq!(resized.header("dataserviceversion"), Some("3.0"));
    let during = pool(&emu, &token, "p1").await;
    assert_eq!(during["allocationState"], "resizing");
    assert_eq!(during["targetDedicatedNodes"], 3);
    assert_eq!(during["resizeTimeout"], "PT10M");

    let again = post(
        &emu,
        &token,
        "/pools/p1/resize",
        json!({"targetDedicatedNodes": 5}),
    )
    .await;
    assert_eq!(
        (again.status, again.body["code"].as_str()),
        (409, Some("PoolBeingResized"))
    );
    assert!(
        again.body["message"]["value"]
            .as_str()
            .unwrap()
            .contains("\nRequestId:")
    );
    emu.speed(SPEED).await;

    let done = steady(&emu, &token, "p1").await;
    assert_eq!(done["currentDedicatedNodes"], 3);
    assert!(done.get("resizeErrors").is_none());
    let idle = eventually(Duration::from_secs(10), "idle nodes", || async {
        let nodes = nodes(&emu, &token, "p1").await;
        let states: Vec<String> = nodes["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["state"].as_str().unwrap().to_owned())
            .collect();
        states.iter().all(|s| s == "idle").then_some(states)
    })
    .await;
    assert_eq!(idle.len(), 3);
    let counts = emu
        .send(
            Method::GET,
            BATCH,
            &format!("/nodecounts?{V}"),
            Some(&token),
            None,
        )
        .await
        .body;
    assert_eq!(counts["value"][0]["poolId"], "p1");
    assert_eq!(counts["value"][0]["dedicated"]["idle"], 3);
    assert_eq!(counts["value"][0]["dedicated"]["total"], 3);

    let short = post(
        &emu,
        &token,
        "/pools/p1/resize",
        json!({"targetDedicatedNodes": 1, "resizeTimeout": "PT4M"}),
    )
    .await;
    assert_eq!(
        (short.status, short.body["code"].as_str()),
        (400, Some("InvalidPropertyValue"))
    );
}

#[tokio::test]
async fn stop_resize_settles_with_resize_stopped() {
    let (emu, token) = batch_emu(json!([{"account": "acct", "id": "p1"}])).await;
    emu.set_clock("2026-01-05T10:00:00Z", 1.0).await;
    assert_eq!(
        post(
            &emu,
            &token,
            "/pools/p1/resize",
            json!({"targetDedicatedNodes": 2})
        )
        .await
        .status,
        202
    );
    assert_eq!(
        post(&emu, &token, "/pools/p1/stopresize", Value::Null)
            .await
            .status,
        202
    );
    assert_eq!(
        pool(&emu, &token, "p1").await["allocationState"],
        "stopping"
    );
    emu.set_clock("2026-01-05T10:00:00Z", SPEED).await;
    let settled = steady(&emu, &token, "p1").await;
    assert_eq!(settled["resizeErrors"][0]["code"], "ResizeStopped");
    assert_eq!(settled["currentDedicatedNodes"], 0);
    assert_eq!(settled["targetDedicatedNodes"], 2);
    let next = post(
        &emu,
        &token,
        "/pools/p1/resize",
        json!({"targetDedicatedNodes": 1}),
    )
    .await;
    assert_eq!(
        next.status, 202,
        "stale resize errors never block a new resize"
    );
    assert!(pool(&emu, &token, "p1").await.get("resizeErrors").is_none());
}

#[tokio::test]
async fn quota_and_timeout_become_resize_errors() {
    let (emu, token) = batch_emu(json!([
        {"account": "acct", "id": "big", "vmSize": "standard_d4s_v3"},
        {"account": "acct", "id": "stuck", "allocatableNodes": 1}
    ]))
    .await;
    emu.speed(SPEED).await;
    let body = json!({"targetDedicatedNodes": 3, "resizeTimeout": "PT5M"});
    assert_eq!(
        post(&emu, &token, "/pools/stuck/resize", body).await.status,
        202
    );
    let stuck = steady(&emu, &token, "stuck").await;
    assert_eq!(stuck["resizeErrors"][0]["code"], "AllocationTimedout");
    assert_eq!(stuck["currentDedicatedNodes"], 1);

    let body = json!({"targetDedicatedNodes": 8});
    assert_eq!(
        post(&emu, &token, "/pools/big/resize", body).await.status,
        202
    );
    let big = steady(&emu, &token, "big").await;
    assert_eq!(big["resizeErrors"][0]["code"], "AccountCoreQuotaReached");
    assert_eq!(
        big["currentDedicatedNodes"], 4,
        "(20 - 2 used by 'stuck') cores / 4 per node"
    );
}

#[tokio::test]
async fn autoscale_enable_evaluate_disable() {
    let (emu, token) = batch_emu(json!([{"account": "acct", "id": "p1"}])).await;
    emu.set_clock("2026-01-05T06:30:00Z", 1.0).await;
    let formula = "$Now=time(); $WorkHours=$Now.hour>=6 && $Now.hour<7; $IsWeekday=$Now.weekday>=1 && $Now.weekday<=5;\n$IsWorkingWeekdayHour=$WorkHours && $IsWeekday; $TargetDedicatedNodes=$IsWorkingWeekdayHour?1:0;\n$NodeDeallocationOption=taskcompletion;";
    let bad = post(
        &emu,
        &token,
        "/pools/p1/enableautoscale",
        json!({"autoScaleFormula": "$TargetDedicatedNodes = (1"}),
    )
    .await;
    assert_eq!(
        (bad.status, bad.body["code"].as_str()),
        (400, Some("AutoScalingFormulaSyntaxError"))
    );
    let enabled = post(
        &emu,
        &token,
        "/pools/p1/enableautoscale",
        json!({"autoScaleFormula": formula, "autoScaleEvaluationInterval": "PT5M"}),
    )
    .await;
    assert_eq!(enabled.status, 200, "{}", enabled.text);
    let p = pool(&emu, &token, "p1").await;
    assert_eq!(p["enableAutoScale"], true);
    assert_eq!(p["autoScaleEvaluationInterval"], "PT5M");
    assert!(
        p.get("autoScaleRun").is_none(),
        "the first evaluation comes shortly after"
    );

    let resize = post(
        &emu,
        &token,
        "/pools/p1/resize",
        json!({"targetDedicatedNodes": 4}),
    )
    .await;
    assert_eq!(resize.status, 409, "no manual resize under autoscale");
    let twice = post(
        &emu,
        &token,
        "/pools/p1/enableautoscale",
        json!({"autoScaleFormula": formula}),
    )
    .await;
    assert_eq!(
        (twice.status, twice.body["code"].as_str()),
        (503, Some("TooManyEnableAutoScaleRequests"))
    );

    let evaluated = post(
        &emu,
        &token,
        "/pools/p1/evaluateautoscale",
        json!({"autoScaleFormula": "$TargetDedicatedNodes=3"}),
    )
    .await;
    assert_eq!(evaluated.status, 200);
    assert_eq!(
        evaluated.body["results"],
        "$TargetDedicatedNodes=3;$TargetLowPriorityNodes=0;$NodeDeallocationOption=requeue"
    );
    let failed = post(
        &emu,
        &token,
        "/pools/p1/evaluateautoscale",
        json!({"autoScaleFormula": "something_useless"}),
    )
    .await;
    assert_eq!(failed.status, 200, "evaluation errors come back as 200");
    assert_eq!(
        failed.body["error"]["code"],
        "AutoScalingFormulaEvaluationError"
    );
    assert_eq!(
        failed.body["error"]["values"][0],
        json!({"name": "Message", "value": "Line 1, Col 1: Undefined symbol: something_useless"})
    );
    emu.speed(SPEED).await;

    let first = eventually(Duration::from_secs(10), "the first evaluation", || async {
        let p = pool(&emu, &token, "p1").await;
        (p["targetDedicatedNodes"] == 1).then_some(p)
    })
    .await;
    assert_eq!(
        first["autoScaleRun"]["results"],
        "$TargetDedicatedNodes=1;$TargetLowPriorityNodes=0;$NodeDeallocationOption=taskcompletion"
    );

    // The formula runs again at its interval: after 07:00 it scales the pool to zero.
    let scaled_in = eventually(Duration::from_secs(10), "the 07:00 evaluation", || async {
        let p = pool(&emu, &token, "p1").await;
        (p["targetDedicatedNodes"] == 0).then_some(p)
    })
    .await;
    assert!(scaled_in["autoScaleRun"]["timestamp"].as_str().unwrap() >= "2026-01-05T07:00");

    assert_eq!(
        post(&emu, &token, "/pools/p1/disableautoscale", Value::Null)
            .await
            .status,
        200
    );
    let p = pool(&emu, &token, "p1").await;
    assert_eq!(p["enableAutoScale"], false);
    let off = post(
        &emu,
        &token,
        "/pools/p1/evaluateautoscale",
        json!({"autoScaleFormula": "$TargetDedicatedNodes=1"}),
    )
    .await;
    assert_eq!(off.status, 409, "evaluation needs autoscale enabled");
}

#[tokio::test]
async fn tasks_run_on_idle_nodes_and_report_exit_codes() {
    let (emu, token) =
        batch_emu(json!([{"account": "acct", "id": "p1", "targetDedicatedNodes": 1}])).await;
    emu.speed(SPEED).await;
    let job = post(
        &emu,
        &token,
        "/jobs",
        json!({"id": "j1", "poolInfo": {"poolId": "p1"}}),
    )
    .await;
    assert_eq!(job.status, 201, "{}", job.text);
    assert_eq!(
        post(
            &emu,
            &token,
            "/jobs",
            json!({"id": "j1", "poolInfo": {"poolId": "p1"}})
        )
        .await
        .body["code"],
        "JobExists"
    );
    let added = post(&emu, &token, "/jobs/j1/tasks", json!({"id": "t1", "commandLine": "/bin/sh -c 'sleep 1; test \"$AZ_BATCH_TASK_ID\" = t1 && exit 3'"})).await;
    assert_eq!(added.status, 201, "{}", added.text);
    let running = eventually(Duration::from_secs(10), "a running node", || async {
        let nodes = nodes(&emu, &token, "p1").await;
        (nodes["value"][0]["state"] == "running").then_some(nodes)
    })
    .await;
    assert_eq!(running["value"][0]["runningTasksCount"], 1);
    let task = eventually(Duration::from_secs(10), "a completed task", || async {
        let task = emu
            .send(
                Method::GET,
                BATCH,
                &format!("/jobs/j1/tasks/t1?{V}"),
                Some(&token),
                None,
            )
            .await
            .body;
        (task["state"] == "completed").then_some(task)
    })
    .await;
    assert_eq!(task["executionInfo"]["exitCode"], 3);
    assert_eq!(task["executionInfo"]["result"], "failure");
    assert_eq!(task["nodeInfo"]["poolId"], "p1");

    let counts = emu
        .send(
            Method::GET,
            BATCH,
            &format!("/jobs/j1/taskcounts?{V}"),
            Some(&token),
            None,
        )
        .await
        .body;
    assert_eq!(
        counts["taskCounts"],
        json!({"active": 0, "running": 0, "completed": 1, "succeeded": 0, "failed": 1})
    );
    let old = emu
        .send(
            Method::GET,
            BATCH,
            "/jobs/j1/taskcounts?api-version=2020-03-01.11.0",
            Some(&token),
            None,
        )
        .await
        .body;
    assert_eq!(old["failed"], 1, "old api-versions get the flat shape");
    let missing = emu
        .send(
            Method::GET,
            BATCH,
            &format!("/jobs/nope/taskcounts?{V}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        (missing.status, missing.body["code"].as_str()),
        (404, Some("JobNotFound"))
    );
}

#[tokio::test]
async fn scaling_down_with_taskcompletion_waits_for_running_tasks() {
    let (emu, token) =
        batch_emu(json!([{"account": "acct", "id": "p1", "targetDedicatedNodes": 2}])).await;
    emu.speed(SPEED).await;
    post(
        &emu,
        &token,
        "/jobs",
        json!({"id": "j1", "poolInfo": {"poolId": "p1"}}),
    )
    .await;
    // A simulated ten-minute task: `sleep N` runs on the emulator clock.
    post(
        &emu,
        &token,
        "/jobs/j1/tasks",
        json!({"id": "long", "commandLine": "sleep 600"}),
    )
    .await;
    eventually(Duration::from_secs(10), "the task to start", || async {
        let task = emu
            .send(
                Method::GET,
                BATCH,
                &format!("/jobs/j1/tasks/long?{V}"),
                Some(&token),
                None,
            )
            .await
            .body;
        (task["state"] == "running").then_some(())
    })
    .await;
    assert_eq!(
        post(
            &emu,
            &token,
            "/pools/p1/resize",
            json!({"targetDedicatedNodes": 0, "nodeDeallocationOption": "taskcompletion"})
        )
        .await
        .status,
        202
    );
    let waiting = eventually(
        Duration::from_secs(10),
        "the idle node to leave",
        || async {
            let p = pool(&emu, &token, "p1").await;
            (p["currentDedicatedNodes"] == 1).then_some(p)
        },
    )
    .await;
    assert_eq!(
        waiting["allocationState"], "resizing",
        "the running node stays until its task ends"
    );
    let done = steady(&emu, &token, "p1").await;
    assert_eq!(done["currentDedicatedNodes"], 0);
    let task = emu
        .send(
            Method::GET,
            BATCH,
            &format!("/jobs/j1/tasks/long?{V}"),
            Some(&token),
            None,
        )
        .await
        .body;
    assert_eq!(
        task["executionInfo"]["exitCode"], 0,
        "the task ran to completion"
    );
}

#[tokio::test]
async fn pending_tasks_drive_the_sampling_formula() {
    let (emu, token) = batch_emu(json!([{"account": "acct", "id": "p1"}])).await;
    post(
        &emu,
        &token,
        "/jobs",
        json!({"id": "j1", "poolInfo": {"poolId": "p1"}}),
    )
    .await;
    for i in 0..24 {
        post(
            &emu,
            &token,
            "/jobs/j1/tasks",
            json!({"id": format!("t{i}"), "commandLine": "sleep 60"}),
        )
        .await;
    }
    let formula = "maxNumberofVMs = 10; samplingInterval = 5 * TimeInterval_Minute; averageProcessingTimeSeconds = 5;\ntargetProcessingTimeSeconds = 60; pendingTaskSamplePercent = $PendingTasks.GetSamplePercent(samplingInterval);\npendingTasksCount = (pendingTaskSamplePercent < 70) ? 0 : avg($PendingTasks.GetSample(samplingInterval));\nestimatedProcessingTimeSeconds = pendingTasksCount * averageProcessingTimeSeconds;\nprocessorTarget = pendingTasksCount > 0 ? max(estimatedProcessingTimeSeconds / targetProcessingTimeSeconds, 1) : 0;\n$TargetDedicatedNodes = min(maxNumberofVMs, processorTarget); $NodeDeallocationOption = taskcompletion;";
    assert_eq!(
        post(
            &emu,
            &token,
            "/pools/p1/enableautoscale",
            json!({"autoScaleFormula": formula, "autoScaleEvaluationInterval": "PT5M"})
        )
        .await
        .status,
        200
    );
    assert_eq!(
        pool(&emu, &token, "p1").await["targetDedicatedNodes"],
        0,
        "too few samples at first"
    );
    emu.speed(SPEED).await;
    let grown = eventually(
        Duration::from_secs(15),
        "the pool to grow from samples",
        || async {
            let p = pool(&emu, &token, "p1").await;
            (p["targetDedicatedNodes"].as_u64() > Some(0)).then_some(p)
        },
    )
    .await;
    assert_eq!(
        grown["targetDedicatedNodes"], 2,
        "24 pending tasks * 5 s / 60 s"
    );
}

#[tokio::test]
async fn missing_pools_and_deleted_pools_answer_batch_errors() {
    let (emu, token) = batch_emu(json!([{"account": "acct", "id": "p1"}])).await;
    let missing = emu
        .send(
            Method::GET,
            BATCH,
            &format!("/pools/nope?{V}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        (missing.status, missing.body["code"].as_str()),
        (404, Some("PoolNotFound"))
    );
    assert_eq!(
        missing.header("content-type"),
        Some("application/json;odata=minimalmetadata")
    );
    let no_version = emu
        .send(Method::GET, BATCH, "/pools/p1", Some(&token), None)
        .await;
    assert_eq!(
        (no_version.status, no_version.body["code"].as_str()),
        (400, Some("MissingRequiredQueryParameter"))
    );
    let deleted = emu
        .send(
            Method::DELETE,
            BATCH,
            &format!("/pools/p1?{V}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(deleted.status, 202);
    let conflict = post(
        &emu,
        &token,
        "/pools/p1/resize",
        json!({"targetDedicatedNodes": 1}),
    )
    .await;
    assert_eq!(
        (conflict.status, conflict.body["code"].as_str()),
        (409, Some("PoolBeingDeleted"))
    );
    emu.speed(SPEED).await;
    eventually(Duration::from_secs(10), "the pool to be gone", || async {
        let reply = emu
            .send(
                Method::GET,
                BATCH,
                &format!("/pools/p1?{V}"),
                Some(&token),
                None,
            )
            .await;
        (reply.status == 404).then_some(())
    })
    .await;
    let other = emu
        .send(
            Method::GET,
            "other.westeurope.batch.azure.com",
            &format!("/pools?{V}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        (other.status, other.body["code"].as_str()),
        (404, Some("AccountNotFound"))
    );
}
