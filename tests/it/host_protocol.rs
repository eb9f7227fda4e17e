//! The service under the Functions host: readiness, routes, health, timers and the 4xx cases.

use reqwest::Method;
use serde_json::json;

use crate::harness::{FunctionsHost, Key, TimerFire};

#[tokio::test]
async fn every_declared_route_has_a_handler_route() {
    let host = FunctionsHost::builder().start().await;
    assert_eq!(host.unhandled_routes().await, Vec::<String>::new());
}

#[tokio::test]
async fn health_is_anonymous_and_reports_version_mode_and_uptime() {
    let host = FunctionsHost::builder().start().await;
    let response = host.get("/api/health?code=ignored&x=1").await;
    assert!(response.reached_handler);
    assert_eq!(response.status, 200);
    assert!(
        response
            .header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let body = response.json();
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["mode"], "functions");
    assert!(body["uptimeSeconds"].is_u64());
    assert_eq!(body["timers"]["Reconcile"]["schedule"], "0 * * * * *");
}

#[tokio::test]
async fn both_timers_answer_the_invocation_shape() {
    let host = FunctionsHost::builder().start().await;
    for (name, fragment) in [
        ("ScaleDown", "nothing to do"),
        ("Reconcile", "nothing to do"),
    ] {
        let invocation = host.fire_timer(name, TimerFire::default()).await.unwrap();
        assert!(invocation.succeeded, "{name}: {invocation:?}");
        assert_eq!(invocation.status, 200);
        assert!(
            invocation.logs.iter().any(|l| l.contains(fragment)),
            "{name}: {:?}",
            invocation.logs
        );
        assert_eq!(invocation.return_value["function"], name);
    }
    let past_due = host
        .fire_timer("ScaleDown", TimerFire { past_due: true })
        .await
        .unwrap();
    assert!(
        past_due.logs.iter().any(|l| l.contains("past due")),
        "{:?}",
        past_due.logs
    );

    let health = host.get("/api/health").await.json();
    assert_eq!(health["timers"]["ScaleDown"]["runs"], 2);
    assert_eq!(health["timers"]["ScaleDown"]["lastOutcome"], "succeeded");
    assert_eq!(health["timers"]["Reconcile"]["runs"], 1);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json_errors() {
    let host = FunctionsHost::builder().start().await;
    assert_eq!(
        host.get("/api/nothing-here").await.status,
        404,
        "the host's own 404"
    );

    let client = crate::harness::client();
    let cases = [
        (Method::GET, "/api/nothing-here", 404, "RouteNotFound"),
        (Method::DELETE, "/api/health", 405, "MethodNotAllowed"),
        (Method::GET, "/Reconcile", 405, "MethodNotAllowed"),
    ];
    for (method, path, status, code) in cases {
        let response = client
            .request(method.clone(), host.handler_url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{method} {path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{method} {path}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(path));
    }
}

#[tokio::test]
async fn malformed_and_oversized_bodies_are_refused() {
    let host = FunctionsHost::builder()
        .setting("COMPUTEBRIDGE_MAX_BODY_BYTES", "4096")
        .start()
        .await;
    let client = crate::harness::client();
    let post = |body: Vec<u8>| {
        client
            .post(host.handler_url("/Reconcile"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let response = post(b"{\"Data\": ".to_vec()).await.unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "MalformedJson");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 1"),
        "{body}"
    );

    let response = post(b"{\"Data\": []}".to_vec()).await.unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "InvalidRequestBody");

    let big =
        serde_json::to_vec(&json!({"Data": {}, "Metadata": {"pad": "x".repeat(5000)}})).unwrap();
    let response = post(big).await.unwrap();
    assert_eq!(response.status(), 413);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "RequestBodyTooLarge");
}

#[tokio::test]
async fn logs_go_to_stdout_and_never_carry_the_function_key() {
    let host = FunctionsHost::builder().start().await;
    let key = Key::Query("secret-query-key-123".into());
    host.call(Method::GET, "/api/health", key, &[], None).await;
    let output = host.handler_output();
    let line = output
        .wait_for("request handled", std::time::Duration::from_secs(5))
        .await;
    assert!(line.is_some(), "{}", output.text());
    assert!(!output.text().contains("secret-query-key-123"));
    let errors: Vec<_> = output
        .all()
        .into_iter()
        .filter(|(stream, _)| *stream == crate::harness::process::Stream::Stderr)
        .collect();
    assert!(
        errors.is_empty(),
        "stderr becomes error-level host logs: {errors:?}"
    );
}
