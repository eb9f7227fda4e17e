//! `computebridge serve`: its own function-key checks and its own timer scheduler.

use std::time::Duration;

use serde_json::Value;

use crate::harness::Standalone;

const KEY: &str = "standalone-key-0123";

#[tokio::test]
async fn checks_function_keys_itself() {
    let service = Standalone::start(&[(
        "COMPUTEBRIDGE_FUNCTION_KEYS",
        &format!("default={KEY},ops=other-key-4567"),
    )])
    .await;
    let health = service
        .client
        .get(service.url("/api/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "health stays anonymous");
    assert_eq!(health.json::<Value>().await.unwrap()["mode"], "standalone");

    let reconcile = |key_header: Option<&str>, query: &str| {
        let mut request = service
            .client
            .post(service.url(&format!("/Reconcile{query}")))
            .body("{}");
        if let Some(key) = key_header {
            request = request.header("x-functions-key", key);
        }
        request.send()
    };
    let cases = [
        (None, "", 401),
        (Some("wrong-key-000000"), "", 401),
        (Some(KEY), "", 200),
        (Some("other-key-4567"), "", 200),
        (None, &format!("?code={KEY}") as &str, 200),
        (
            Some("wrong-key-000000"),
            &format!("?code={KEY}") as &str,
            401,
        ),
    ];
    for (header, query, expected) in cases {
        let response = reconcile(header, query).await.unwrap();
        assert_eq!(
            response.status(),
            expected,
            "header {header:?} query {query:?}"
        );
        if expected == 401 {
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "Unauthorized");
        }
    }
    let unknown = service
        .client
        .get(service.url("/api/nowhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        unknown.status(),
        404,
        "unknown routes are 404 before any key check"
    );
    assert!(
        !service.output().text().contains(KEY),
        "keys never reach the logs"
    );
}

#[tokio::test]
async fn fires_timers_on_a_seconds_schedule() {
    let service = Standalone::start(&[
        ("COMPUTEBRIDGE_FUNCTION_KEYS", &format!("default={KEY}")),
        ("RECONCILE_SCHEDULE", "* * * * * *"),
        ("SCALE_DOWN_SCHEDULE", "0 0 0 1 1 *"),
    ])
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let health = loop {
        let health: Value = service
            .client
            .get(service.url("/api/health"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if health["timers"]["Reconcile"]["runs"].as_u64() >= Some(2) {
            break health;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Reconcile never ran twice: {health}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let reconcile = &health["timers"]["Reconcile"];
    assert_eq!(reconcile["lastOutcome"], "succeeded");
    assert!(reconcile["nextRun"].is_string());
    assert_eq!(
        health["timers"]["ScaleDown"]["runs"], 0,
        "a yearly timer has not fired"
    );
    assert!(
        health["timers"]["ScaleDown"]["nextRun"]
            .as_str()
            .unwrap()
            .contains("-01-01T00:00:00")
    );
    let logged = service
        .output()
        .wait_for(
            "Reconcile: no run, pool operation or callback is pending",
            Duration::from_secs(5),
        )
        .await;
    assert!(logged.is_some(), "{}", service.output().text());
}
