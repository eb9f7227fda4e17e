//! ACI container groups over ARM: provisioning, real container processes, restart policies,
//! logs, pull failures, transitions and errors.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{ARM, Emu, Reply, SUB, eventually};

const V: &str = "api-version=2023-05-01";
const RG: &str = "jobs";

fn group_path(name: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ContainerInstance/containerGroups/{name}"
    )
}

fn group_body(image: &str, command: &[&str], restart: &str) -> Value {
    json!({
        "location": "westeurope",
        "tags": {"computebridge": "run"},
        "properties": {
            "osType": "Linux",
            "restartPolicy": restart,
            "containers": [{"name": "job", "properties": {
                "image": image,
                "command": command,
                "environmentVariables": [{"name": "PLAIN", "value": "visible"}, {"name": "SECRET", "secureValue": "hunter2"}],
                "resources": {"requests": {"cpu": 1.0, "memoryInGB": 1.5}},
            }}],
        },
    })
}

struct Arm {
    emu: Emu,
    token: String,
}

impl Arm {
    async fn start(speed: f64) -> Arm {
        Arm::on(Emu::start(speed).await).await
    }

    async fn on(emu: Emu) -> Arm {
        emu.seed(json!({"resourceGroups": [{"subscription": SUB, "name": RG}]}))
            .await;
        let token = emu.token("https://management.azure.com/").await;
        Arm { emu, token }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let separator = if path.contains('?') { '&' } else { '?' };
        self.emu
            .send(
                method,
                ARM,
                &format!("{path}{separator}{V}"),
                Some(&self.token),
                body,
            )
            .await
    }

    async fn get(&self, name: &str) -> Value {
        let reply = self.call(Method::GET, &group_path(name), None).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.body
    }

    async fn until(&self, name: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        eventually(Duration::from_secs(15), what, || async {
            let group = self.get(name).await;
            done(&group).then_some(group)
        })
        .await
    }
}

fn container(group: &Value) -> &Value {
    &group["properties"]["containers"][0]["properties"]["instanceView"]
}

#[tokio::test]
async fn a_run_provisions_executes_and_keeps_its_logs() {
    let arm = Arm::start(20.0).await;
    let created = arm
        .call(
            Method::PUT,
            &group_path("run-ok"),
            Some(group_body(
                "alpine:3.20",
                &[
                    "/bin/sh",
                    "-c",
                    "echo start; echo \"plain=$PLAIN secret=$SECRET\"; echo done",
                ],
                "Never",
            )),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["properties"]["provisioningState"], "Pending");
    assert_eq!(
        created.body["properties"]["instanceView"]["state"],
        "Pending"
    );
    let operation = created.header("azure-asyncoperation").unwrap().to_owned();
    assert!(
        operation
            .contains("/providers/Microsoft.ContainerInstance/locations/westeurope/operations/")
            && operation.ends_with("api-version=2018-06-01"),
        "{operation}"
    );
    for header in [
        "x-ms-request-id",
        "x-ms-correlation-request-id",
        "x-ms-ratelimit-remaining-subscription-writes",
    ] {
        assert!(created.header(header).is_some(), "{header}");
    }
    let env = &created.body["properties"]["containers"][0]["properties"]["environmentVariables"];
    assert_eq!(
        env,
        &json!([{"name": "PLAIN", "value": "visible"}, {"name": "SECRET"}]),
        "secure values are never echoed"
    );

    let op_path = operation
        .split("management.azure.com")
        .nth(1)
        .unwrap()
        .to_owned();
    let succeeded = eventually(
        Duration::from_secs(10),
        "the operation to succeed",
        || async {
            let op = arm
                .emu
                .send(Method::GET, ARM, &op_path, Some(&arm.token), None)
                .await;
            (op.body["status"] == "Succeeded").then_some(op.body)
        },
    )
    .await;
    assert!(
        succeeded["id"]
            .as_str()
            .unwrap()
            .ends_with("/containerGroups/run-ok")
    );

    let group = arm
        .until("run-ok", "the run to finish", |g| {
            g["properties"]["instanceView"]["state"] == "Succeeded"
        })
        .await;
    let state = &container(&group)["currentState"];
    assert_eq!(
        (
            state["state"].as_str(),
            state["exitCode"].as_i64(),
            state["detailStatus"].as_str()
        ),
        (Some("Terminated"), Some(0), Some("Completed"))
    );
    assert!(state["finishTime"].is_string() && state["startTime"].is_string());
    let events: Vec<&str> = container(&group)["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["Pulling", "Pulled", "Created", "Started"]);
    assert_eq!(group["properties"]["provisioningState"], "Succeeded");

    let logs = arm
        .call(
            Method::GET,
            &format!("{}/containers/job/logs", group_path("run-ok")),
            None,
        )
        .await;
    assert_eq!(
        logs.body["content"], "start\nplain=visible secret=hunter2\ndone\n",
        "the process got its secure value"
    );
    let tail = arm
        .call(
            Method::GET,
            &format!(
                "{}/containers/job/logs?tail=1&timestamps=true",
                group_path("run-ok")
            ),
            None,
        )
        .await;
    let line = tail.body["content"].as_str().unwrap();
    assert!(
        line.ends_with("Z done\n") && line.matches('\n').count() == 1,
        "{line}"
    );
    let missing = arm
        .call(
            Method::GET,
            &format!("{}/containers/nope/logs", group_path("run-ok")),
            None,
        )
        .await;
    assert_eq!(missing.status, 404);

    let listed = arm.call(Method::GET, &format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ContainerInstance/containerGroups"), None).await;
    let item = &listed.body["value"][0];
    assert_eq!(item["name"], "run-ok");
    assert!(
        item["properties"].get("instanceView").is_none(),
        "lists carry no instance view"
    );
    assert!(
        item["properties"]["containers"][0]["properties"]
            .get("instanceView")
            .is_none()
    );

    let deleted = arm.call(Method::DELETE, &group_path("run-ok"), None).await;
    assert_eq!(deleted.status, 200);
    let gone = arm.call(Method::GET, &group_path("run-ok"), None).await;
    assert_eq!(
        (gone.status, gone.body["error"]["code"].as_str()),
        (404, Some("ResourceNotFound"))
    );
    assert_eq!(
        arm.call(Method::DELETE, &group_path("run-ok"), None)
            .await
            .status,
        204
    );
}

#[tokio::test]
async fn exit_codes_and_restart_policies() {
    let arm = Arm::start(20.0).await;
    arm.call(
        Method::PUT,
        &group_path("fails"),
        Some(group_body(
            "python:3.12-slim",
            &["python", "-c", "import sys; print('boom'); sys.exit(3)"],
            "Never",
        )),
    )
    .await;
    arm.call(
        Method::PUT,
        &group_path("retries"),
        Some(group_body(
            "busybox",
            &["/bin/sh", "-c", "exit 1"],
            "OnFailure",
        )),
    )
    .await;
    arm.call(
        Method::PUT,
        &group_path("forever"),
        Some(group_body("ubuntu:24.04", &["true"], "Always")),
    )
    .await;

    let failed = arm
        .until("fails", "a failed group", |g| {
            g["properties"]["instanceView"]["state"] == "Failed"
        })
        .await;
    let state = &container(&failed)["currentState"];
    assert_eq!(
        (state["exitCode"].as_i64(), state["detailStatus"].as_str()),
        (Some(3), Some("Error"))
    );
    let logs = arm
        .call(
            Method::GET,
            &format!("{}/containers/job/logs", group_path("fails")),
            None,
        )
        .await;
    assert_eq!(logs.body["content"], "boom\n");

    for name in ["retries", "forever"] {
        let group = arm
            .until(name, "a restart", |g| {
                container(g)["restartCount"].as_u64() >= Some(2)
            })
            .await;
        assert_eq!(
            group["properties"]["instanceView"]["state"], "Running",
            "{name} keeps running"
        );
        assert_eq!(container(&group)["previousState"]["state"], "Terminated");
    }
}

#[tokio::test]
async fn images_that_cannot_be_pulled_stay_waiting() {
    let arm = Arm::start(20.0).await;
    arm.emu.seed(json!({"images": [{"name": "myreg.azurecr.io/etl", "entrypoint": ["/bin/sh", "-c", "echo private image"], "username": "puller", "password": "p@ss"}]})).await;
    arm.call(
        Method::PUT,
        &group_path("unknown"),
        Some(group_body("contoso/never-heard-of-it:1.0", &[], "Never")),
    )
    .await;
    let waiting = arm
        .until("unknown", "a pull failure", |g| {
            container(g)["events"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["name"] == "Failed"))
        })
        .await;
    assert_eq!(container(&waiting)["currentState"]["state"], "Waiting");
    assert_eq!(waiting["properties"]["instanceView"]["state"], "Pending");
    let failed = container(&waiting)["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "Failed")
        .unwrap()
        .clone();
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .starts_with("Failed to pull image \"contoso/never-heard-of-it:1.0\""),
        "{failed}"
    );
    let logs = arm
        .call(
            Method::GET,
            &format!("{}/containers/job/logs", group_path("unknown")),
            None,
        )
        .await;
    assert_eq!(
        (logs.status, logs.body["error"]["code"].as_str()),
        (400, Some("ContainerLogNotAvailable"))
    );

    arm.call(
        Method::PUT,
        &group_path("no-creds"),
        Some(group_body("myreg.azurecr.io/etl:v1", &[], "Never")),
    )
    .await;
    let denied = arm
        .until("no-creds", "an unauthorized pull", |g| {
            container(g)["events"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["name"] == "Failed"))
        })
        .await;
    assert!(denied.to_string().contains("401 Unauthorized"));

    let mut with_creds = group_body("myreg.azurecr.io/etl:v1", &[], "Never");
    with_creds["properties"]["imageRegistryCredentials"] =
        json!([{"server": "myreg.azurecr.io", "username": "puller", "password": "p@ss"}]);
    let created = arm
        .call(Method::PUT, &group_path("with-creds"), Some(with_creds))
        .await;
    assert!(
        !created.text.contains("p@ss"),
        "registry passwords are never echoed"
    );
    arm.until("with-creds", "the private image to run", |g| {
        g["properties"]["instanceView"]["state"] == "Succeeded"
    })
    .await;
    let logs = arm
        .call(
            Method::GET,
            &format!("{}/containers/job/logs", group_path("with-creds")),
            None,
        )
        .await;
    assert_eq!(
        logs.body["content"], "private image\n",
        "the registered entrypoint ran"
    );
}

#[tokio::test]
async fn start_stop_restart_and_transitions() {
    let arm = Arm::start(1.0).await;
    let path = group_path("cycle");
    arm.call(
        Method::PUT,
        &path,
        Some(group_body(
            "alpine",
            &["/bin/sh", "-c", "sleep 30"],
            "Never",
        )),
    )
    .await;
    let busy = arm
        .call(
            Method::PUT,
            &path,
            Some(group_body("alpine", &["true"], "Never")),
        )
        .await;
    assert_eq!(
        (busy.status, busy.body["error"]["code"].as_str()),
        (409, Some("ContainerGroupTransitioning"))
    );
    arm.emu.speed(20.0).await;
    arm.until("cycle", "a running group", |g| {
        g["properties"]["instanceView"]["state"] == "Running"
    })
    .await;
    let start = arm.call(Method::POST, &format!("{path}/start"), None).await;
    assert_eq!(
        (start.status, start.body["error"]["code"].as_str()),
        (409, Some("ContainerGroupTransitioning")),
        "start while running"
    );

    assert_eq!(
        arm.call(Method::POST, &format!("{path}/stop"), None)
            .await
            .status,
        204
    );
    let stopped = arm.get("cycle").await;
    assert_eq!(stopped["properties"]["instanceView"]["state"], "Stopped");
    let restart = arm
        .call(Method::POST, &format!("{path}/restart"), None)
        .await;
    assert_eq!(restart.status, 409, "restart of a stopped group");
    assert!(
        restart.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is stopped")
    );

    let started = arm.call(Method::POST, &format!("{path}/start"), None).await;
    assert_eq!(started.status, 202);
    assert!(started.header("azure-asyncoperation").is_some());
    let running = arm
        .until("cycle", "a running group again", |g| {
            g["properties"]["instanceView"]["state"] == "Running"
        })
        .await;
    assert_eq!(container(&running)["restartCount"], 0);
    let restarted = arm
        .call(Method::POST, &format!("{path}/restart"), None)
        .await;
    assert_eq!(restarted.status, 204);
    assert!(restarted.header("azure-asyncoperation").is_some());

    let tagged = arm
        .call(Method::PATCH, &path, Some(json!({"tags": {"owner": "me"}})))
        .await;
    assert_eq!(tagged.body["tags"], json!({"owner": "me"}));
    assert_eq!(arm.call(Method::DELETE, &path, None).await.status, 200);
}

#[tokio::test]
async fn bad_requests_quota_and_throttling() {
    let arm = Arm::start(20.0).await;
    arm.emu
        .seed(json!({"aciQuotas": [{"location": "westeurope", "standardCores": 1.5}]}))
        .await;
    let cases = [
        (
            format!(
                "/subscriptions/{SUB}/resourceGroups/nope/providers/Microsoft.ContainerInstance/containerGroups/x"
            ),
            group_body("alpine", &[], "Never"),
            404,
            "ResourceGroupNotFound",
        ),
        (
            group_path("Bad_Name"),
            group_body("alpine", &[], "Never"),
            400,
            "InvalidContainerGroupName",
        ),
        (
            group_path("no-os"),
            json!({"location": "westeurope", "properties": {"containers": []}}),
            400,
            "InvalidOsType",
        ),
    ];
    for (path, body, status, code) in cases {
        let reply = arm.call(Method::PUT, &path, Some(body)).await;
        assert_eq!(
            (reply.status, reply.body["error"]["code"].as_str()),
            (status, Some(code)),
            "{path}"
        );
    }
    assert_eq!(
        arm.call(
            Method::PUT,
            &group_path("first"),
            Some(group_body(
                "alpine",
                &["/bin/sh", "-c", "sleep 30"],
                "Never"
            ))
        )
        .await
        .status,
        201
    );
    let over = arm
        .call(
            Method::PUT,
            &group_path("second"),
            Some(group_body("alpine", &["true"], "Never")),
        )
        .await;
    assert_eq!(
        (over.status, over.body["error"]["code"].as_str()),
        (409, Some("ContainerGroupQuotaReached"))
    );
    assert!(
        over.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'StandardCores' exceeded in region 'westeurope'")
    );

    let no_version = arm
        .emu
        .send(
            Method::GET,
            ARM,
            &group_path("first"),
            Some(&arm.token),
            None,
        )
        .await;
    assert_eq!(
        (no_version.status, no_version.body["error"]["code"].as_str()),
        (400, Some("MissingApiVersionParameter"))
    );
    let bad_version = arm
        .emu
        .send(
            Method::GET,
            ARM,
            &format!("{}?api-version=1999-01-01", group_path("first")),
            Some(&arm.token),
            None,
        )
        .await;
    assert_eq!(
        (
            bad_version.status,
            bad_version.body["error"]["code"].as_str()
        ),
        (400, Some("NoRegisteredProviderFound"))
    );

    let mut throttled = None;
    for _ in 0..260 {
        let reply = arm
            .call(
                Method::PATCH,
                &group_path("first"),
                Some(json!({"tags": {"n": "1"}})),
            )
            .await;
        if reply.status == 429 {
            throttled = Some(reply);
            break;
        }
    }
    let throttled = throttled.expect("the write bucket (200) runs out");
    assert_eq!(throttled.body["error"]["code"], "TooManyRequests");
    assert!(
        throttled
            .header("retry-after")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
}

#[tokio::test]
async fn throttling_can_be_turned_off_for_benchmarks() {
    let arm = Arm::on(
        Emu::start_with(computebridge_emulator::Options {
            arm_throttling: false,
            ..Default::default()
        })
        .await,
    )
    .await;
    let created = arm
        .call(
            Method::PUT,
            &group_path("many"),
            Some(group_body("alpine", &["sleep", "30"], "Never")),
        )
        .await;
    assert_eq!(created.status, 201);
    for _ in 0..260 {
        let reply = arm
            .call(
                Method::PATCH,
                &group_path("many"),
                Some(json!({"tags": {"n": "1"}})),
            )
            .await;
        assert_eq!(reply.status, 200, "no write bucket: {:?}", reply.body);
        assert_eq!(
            reply.header("x-ms-ratelimit-remaining-subscription-writes"),
            Some("200")
        );
    }
    arm.call(Method::DELETE, &group_path("many"), None).await;
}
