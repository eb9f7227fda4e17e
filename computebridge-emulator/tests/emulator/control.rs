//! The control surface: faults of every kind, the request log, the clock.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::support::{Emu, VAULT, eventually};

#[tokio::test]
async fn faults_fail_delay_or_drop_matching_requests_a_number_of_times() {
    let emu = Emu::start(1.0).await;
    emu.seed(json!({"secrets": [{"vault": "myvault", "name": "s", "value": "v"}]}))
        .await;
    let token = emu.token("https://vault.azure.net").await;
    let get = || {
        emu.send(
            Method::GET,
            VAULT,
            "/secrets/s?api-version=7.5",
            Some(&token),
            None,
        )
    };

    emu.fault(json!({"match": {"service": "keyvault", "path": "/secrets/s"}, "action": {"status": 429, "retryAfter": 3}, "times": 2})).await;
    for _ in 0..2 {
        let throttled = get().await;
        assert_eq!(throttled.status, 429);
        assert_eq!(throttled.header("retry-after"), Some("3"));
        assert_eq!(throttled.body["error"]["code"], "Throttled");
    }
    assert_eq!(get().await.status, 200, "the fault is spent after two hits");

    for (status, code) in [(500, "InternalServerError"), (503, "ServiceUnavailable")] {
        emu.fault(json!({"match": {"host": "myvault"}, "action": {"status": status}}))
            .await;
        let failed = get().await;
        assert_eq!(
            (failed.status, failed.body["error"]["code"].as_str()),
            (status, Some(code))
        );
    }

    emu.fault(json!({"match": {"method": "GET"}, "action": {"delayMs": 300}}))
        .await;
    let started = Instant::now();
    assert_eq!(get().await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));

    emu.fault(json!({"action": {"drop": true}, "times": 0}))
        .await;
    for _ in 0..2 {
        let dropped = emu
            .client
            .get(format!("{}/secrets/s?api-version=7.5", emu.running.url()))
            .header("host", VAULT)
            .bearer_auth(&token)
            .send()
            .await;
        assert!(
            dropped.is_err(),
            "the connection is closed without an answer"
        );
    }
    assert_eq!(
        emu.control(Method::DELETE, "/faults", None).await.status,
        204
    );
    assert_eq!(get().await.status, 200);

    let log = emu
        .control(Method::GET, "/requests?service=keyvault&method=GET", None)
        .await;
    let entries = log.body["requests"].as_array().unwrap();
    let last = log.body["last"].as_u64().unwrap();
    assert_eq!(entries.last().unwrap()["seq"], last);
    get().await;
    let since = emu
        .control(Method::GET, &format!("/requests?since={last}"), None)
        .await;
    assert_eq!(since.body["count"], 1, "only the request after `last`");
    assert_eq!(since.body["requests"][0]["seq"], last + 1);
    assert_eq!(
        emu.control(Method::GET, "/requests?since=soon", None)
            .await
            .status,
        400
    );
    assert_eq!(
        entries
            .iter()
            .filter(|e| e["fault"] == true && e["status"] == 429)
            .count(),
        2
    );
    assert!(
        entries
            .iter()
            .all(|e| e["host"] == VAULT && e["path"] == "/secrets/s")
    );
    assert_eq!(
        emu.control(Method::DELETE, "/requests", None).await.status,
        204
    );
    assert_eq!(
        emu.control(Method::GET, "/requests", None).await.body["count"],
        0
    );

    let bad = emu
        .control(Method::POST, "/faults", Some(json!({"action": {}})))
        .await;
    assert_eq!(bad.status, 400);
    let bad = emu
        .control(
            Method::POST,
            "/seed",
            Some(json!({"pools": [{"id": "no-account"}]})),
        )
        .await;
    assert_eq!(
        (bad.status, bad.body["error"]["code"].as_str()),
        (400, Some("InvalidSeed"))
    );
}

#[tokio::test]
async fn the_clock_can_be_set_and_sped_up() {
    let emu = Emu::start(1.0).await;
    emu.set_clock("2026-01-05T06:30:00Z", 3600.0).await;
    let clock = eventually(
        Duration::from_secs(5),
        "an hour-per-second clock to pass 06:31",
        || async {
            let clock = emu.control(Method::GET, "/clock", None).await;
            (clock.body["now"].as_str().unwrap() >= "2026-01-05T06:31").then_some(clock)
        },
    )
    .await;
    assert!(
        clock.body["now"]
            .as_str()
            .unwrap()
            .starts_with("2026-01-05T"),
        "set, then advanced from there"
    );
    assert_eq!(clock.body["speed"], 3600.0);
    let bad = emu
        .control(Method::PUT, "/clock", Some(json!({"speed": 0})))
        .await;
    assert_eq!(bad.status, 400);
}
