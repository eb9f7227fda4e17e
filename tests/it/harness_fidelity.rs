//! Checks the harness against a handler whose behaviour is known (an in-process echo server behind
//! `tests/fixtures/echo-app`), so that product tests can trust it to play the host faithfully.

use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use crate::harness::host::Keys;
use crate::harness::{FunctionsHost, Key, TimerFire};

type Seen = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

async fn echo(method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let header_map: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), json!(v.to_str().unwrap_or(""))))
        .collect();
    if uri.path().ends_with("/redirect") {
        return (StatusCode::FOUND, [("location", "/elsewhere")]).into_response();
    }
    let status = headers
        .get("x-echo-status")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(200);
    let body = json!({
        "method": method.as_str(),
        "path": uri.path(),
        "query": uri.query(),
        "headers": header_map,
        "body": String::from_utf8_lossy(&body),
    });
    (
        StatusCode::from_u16(status).unwrap(),
        [("x-echo-reply", "yes")],
        axum::Json(body),
    )
        .into_response()
}

async fn start_echo_handler() -> (u16, Seen) {
    let seen: Seen = Arc::default();
    let recorded = seen.clone();
    let router = Router::new()
        .route(
            "/Tick",
            post(move |headers: HeaderMap, body: Bytes| async move {
                recorded
                    .lock()
                    .unwrap()
                    .push((headers, serde_json::from_slice(&body).unwrap()));
                axum::Json(json!({"Outputs": {}, "Logs": ["tick ran"], "ReturnValue": {"n": 1}}))
            }),
        )
        .route("/Plain", post(|| async { "ok" }))
        .fallback(echo);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (port, seen)
}

async fn echo_host() -> (FunctionsHost, Seen) {
    let (port, seen) = start_echo_handler().await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/echo-app");
    let host = FunctionsHost::attach(&root, port, &[("TICK_SCHEDULE", "0 */5 * * * *")]);
    (host, seen)
}

#[tokio::test]
async fn forwards_method_path_query_headers_and_body() {
    let (host, _) = echo_host().await;
    let key = Key::Header(Keys::default().host_default);
    let response = host
        .call(
            Method::POST,
            "/api/echo/42/more?b=2&k=x&k=y&code=q",
            key,
            &[
                ("content-type", "application/json"),
                ("x-custom", "kept"),
                ("x-echo-status", "201"),
            ],
            Some(b"{\"a\":1}".to_vec()),
        )
        .await;
    assert!(response.reached_handler);
    assert_eq!(response.status, 201, "the handler's status passes through");
    assert_eq!(
        response.header("x-echo-reply"),
        Some("yes"),
        "response headers pass through"
    );
    let echoed = response.json();
    assert_eq!(echoed["method"], "POST");
    assert_eq!(
        echoed["path"], "/api/echo/42/more",
        "the routePrefix stays in the path"
    );
    assert_eq!(
        echoed["query"], "b=2&k=x%2Cy&code=q",
        "query rebuilt, code kept"
    );
    assert_eq!(echoed["body"], "{\"a\":1}");
    let headers = &echoed["headers"];
    assert_eq!(headers["x-custom"], "kept");
    assert_eq!(headers["host"], "localhost:7071");
    assert_eq!(headers["x-functions-key"], Keys::default().host_default);
    assert_eq!(headers["x-azure-functions-hostversion"], "4.1037.0.0");
    assert_eq!(headers["user-agent"], "Azure-Functions-Host/4.1037.0.0");
    let invocation = headers["x-azure-functions-invocationid"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(invocation).is_ok(), "{invocation}");
}

#[tokio::test]
async fn drops_empty_bodies_and_does_not_follow_redirects() {
    let (host, _) = echo_host().await;
    let key = || Key::Query(Keys::default().master);
    let response = host
        .call(Method::POST, "/api/echo/1", key(), &[], Some(Vec::new()))
        .await;
    assert_eq!(response.json()["body"], "");
    let response = host
        .call(Method::GET, "/api/echo/1/redirect", key(), &[], None)
        .await;
    assert_eq!(response.status, 302);
    assert_eq!(response.header("location"), Some("/elsewhere"));
}

#[tokio::test]
async fn routes_and_methods_must_match() {
    let (host, _) = echo_host().await;
    let key = || Key::Header(Keys::default().master);
    for (method, path) in [
        (Method::GET, "/api/echo/notanint"),
        (Method::DELETE, "/api/echo/1"),
        (Method::GET, "/echo/1"),
        (Method::GET, "/api/nothing"),
        (Method::POST, "/api/open"),
    ] {
        let response = host.call(method.clone(), path, key(), &[], None).await;
        assert_eq!(
            (response.status, response.reached_handler),
            (404, false),
            "{method} {path}"
        );
    }
    assert_eq!(
        host.get("/API/Open").await.status,
        200,
        "routes are case-insensitive"
    );
}

#[tokio::test]
async fn enforces_auth_levels_with_header_before_query() {
    let (host, _) = echo_host().await;
    let keys = Keys::default();
    let cases = [
        ("/api/open", Key::None, 200),
        ("/api/echo/1", Key::None, 401),
        ("/api/echo/1", Key::Header("wrong".into()), 401),
        ("/api/echo/1", Key::Header(keys.host_default.clone()), 200),
        ("/api/echo/1", Key::Query(keys.host_default.clone()), 200),
        ("/api/echo/1", Key::Header(keys.master.clone()), 200),
        (
            "/api/echo/1",
            Key::HeaderAndQuery {
                header: "wrong".into(),
                query: keys.host_default.clone(),
            },
            401,
        ),
        (
            "/api/admin-only",
            Key::Header(keys.host_default.clone()),
            401,
        ),
        ("/api/admin-only", Key::Header(keys.master.clone()), 200),
    ];
    for (path, key, expected) in cases {
        let response = host.call(Method::GET, path, key.clone(), &[], None).await;
        assert_eq!(response.status, expected, "{path} with {key:?}");
        assert_eq!(
            response.reached_handler,
            expected != 401,
            "{path} with {key:?}"
        );
        if expected == 401 {
            assert!(response.body.is_empty(), "the host's 401 has an empty body");
        }
    }
}

#[tokio::test]
async fn fires_timers_with_the_hosts_payload_and_checks_the_answer() {
    let (host, seen) = echo_host().await;
    let invocation = host
        .fire_timer("Tick", TimerFire { past_due: true })
        .await
        .unwrap();
    assert!(invocation.succeeded);
    assert_eq!(invocation.logs, ["tick ran"]);
    assert_eq!(invocation.return_value, json!({"n": 1}));

    let (headers, body) = seen.lock().unwrap().pop().unwrap();
    assert_eq!(headers["content-type"], "application/json; charset=utf-8");
    assert_eq!(headers["transfer-encoding"], "chunked");
    assert!(headers.get("content-length").is_none());
    assert_eq!(headers["user-agent"], "Azure-Functions-Host/4.1037.0.0");
    let timer = &body["Data"]["tickTimer"];
    assert_eq!(timer["Schedule"], json!({"AdjustForDST": true}));
    assert_eq!(timer["IsPastDue"], true);
    for field in ["Last", "Next", "LastUpdated"] {
        assert!(
            timer["ScheduleStatus"][field].is_string(),
            "{field} in {timer}"
        );
    }
    assert_eq!(body["Metadata"]["sys"]["MethodName"], "Tick");
    assert!(body["Metadata"]["sys"]["UtcNow"].is_string());
    assert!(body["Metadata"]["sys"]["RandGuid"].is_string());

    let error = host
        .fire_timer("Plain", TimerFire::default())
        .await
        .unwrap_err();
    assert!(error.0.contains("media type 'text/plain"), "{}", error.0);
}

#[tokio::test]
async fn sub_minute_schedules_are_unmonitored() {
    let (port, seen) = start_echo_handler().await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/echo-app");
    let host = FunctionsHost::attach(&root, port, &[("TICK_SCHEDULE", "*/10 * * * * *")]);
    host.fire_timer("Tick", TimerFire::default()).await.unwrap();
    let (_, body) = seen.lock().unwrap().pop().unwrap();
    assert_eq!(body["Data"]["tickTimer"]["ScheduleStatus"], Value::Null);

    let host = FunctionsHost::attach(&root, port, &[("TICK_SCHEDULE", "0 */5 * * *")]);
    host.fire_timer("Tick", TimerFire::default())
        .await
        .expect_err("five-field schedules are refused");
}
