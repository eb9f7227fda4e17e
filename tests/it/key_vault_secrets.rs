//! Identity and Key Vault: tokens through managed identity, secrets through the challenge flow,
//! the secret cache (hits, refresh, rotation, grace on an outage), clear errors, and no leaks.
//! Function keys in standalone mode are the secret-valued setting these tests drive, because
//! their effect is visible from outside: a request is accepted or not.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Azure, Standalone, key_vault_reference};

const VAULT: &str = "ops";

/// Starts the service standalone against `azure` with `extra` settings.
async fn service(azure: &Azure, extra: &[(&str, &str)]) -> Standalone {
    let mut settings = azure.settings();
    settings.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let settings: Vec<(&str, &str)> = settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    Standalone::start(&settings).await
}

async fn call_with_key(service: &Standalone, key: &str) -> (StatusCode, Value) {
    let response = service
        .client
        .post(service.url("/Reconcile"))
        .header("x-functions-key", key)
        .body("{}")
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn deep_health(service: &Standalone) -> Value {
    let response = service
        .client
        .get(service.url("/api/health?deep=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

fn secret_reads(log: &[Value], status: u64) -> usize {
    log.iter()
        .filter(|r| {
            r["method"] == "GET"
                && r["status"] == status
                && r["path"].as_str().unwrap_or("").starts_with("/secrets/")
        })
        .count()
}

#[tokio::test]
async fn deep_health_gets_tokens_by_managed_identity_and_reads_secrets_through_the_challenge() {
    let azure = Azure::start(1.0).await;
    azure.secret(VAULT, "api-key", "key-value-one").await;
    let reference = key_vault_reference(VAULT, "api-key");
    let service = service(
        &azure,
        &[
            (
                "COMPUTEBRIDGE_FUNCTION_KEYS",
                &format!("default={reference}"),
            ),
            (
                "AZURE_SUBSCRIPTION_ID",
                "00000000-0000-0000-0000-000000000001",
            ),
        ],
    )
    .await;

    let health = deep_health(&service).await;
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["credential"], "managed-identity");
    let names: Vec<&str> = health["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert_eq!(d["status"], "ok", "{d}");
            d["name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        names,
        [
            "token arm",
            "token keyvault",
            "secret ops.vault.azure.net/api-key (function key 'default')"
        ]
    );

    let tokens = azure.requests("service=msi").await;
    let resources: Vec<&str> = tokens
        .iter()
        .map(|r| r["query"].as_str().unwrap())
        .collect();
    assert!(
        resources
            .iter()
            .any(|q| q.contains("resource=https://management.azure.com")),
        "{resources:?}"
    );
    assert!(
        resources
            .iter()
            .any(|q| q.contains("resource=https://vault.azure.net")),
        "{resources:?}"
    );
    // The challenge flow: the first read goes without a token and gets 401, then the retry with
    // the token gets the secret.
    let reads = azure.requests("service=keyvault").await;
    assert_eq!(reads[0]["status"], 401, "{reads:?}");
    assert_eq!(secret_reads(&reads, 200), 1, "{reads:?}");
}

#[tokio::test]
async fn a_secret_is_cached_refreshed_after_its_ttl_and_rotation_takes_effect() {
    let azure = Azure::start(1.0).await;
    azure.secret(VAULT, "fn-key", "first-key-value").await;
    let reference = key_vault_reference(VAULT, "fn-key");
    let service = service(
        &azure,
        &[
            (
                "COMPUTEBRIDGE_FUNCTION_KEYS",
                &format!("default={reference}"),
            ),
            ("COMPUTEBRIDGE_SECRET_CACHE_TTL_SECONDS", "2"),
        ],
    )
    .await;

    for _ in 0..3 {
        assert_eq!(
            call_with_key(&service, "first-key-value").await.0,
            StatusCode::OK
        );
    }
    assert_eq!(
        call_with_key(&service, "wrong-key-value").await.0,
        StatusCode::UNAUTHORIZED
    );
    let reads = azure.requests("service=keyvault").await;
    assert_eq!(
        secret_reads(&reads, 200),
        1,
        "cache hits send nothing: {reads:?}"
    );

    azure.secret(VAULT, "fn-key", "second-key-value").await;
    // Within the TTL the old value still serves; after it, the new version is read.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if call_with_key(&service, "second-key-value").await.0 == StatusCode::OK {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rotation was never picked up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        call_with_key(&service, "first-key-value").await.0,
        StatusCode::UNAUTHORIZED
    );
    let reads = azure.requests("service=keyvault").await;
    assert!(secret_reads(&reads, 200) >= 2, "{reads:?}");
}

#[tokio::test]
async fn the_last_good_value_serves_through_a_key_vault_outage_until_grace_ends() {
    let azure = Azure::start(1.0).await;
    azure.secret(VAULT, "fn-key", "outage-key-value").await;
    let reference = key_vault_reference(VAULT, "fn-key");
    let service = service(
        &azure,
        &[
            (
                "COMPUTEBRIDGE_FUNCTION_KEYS",
                &format!("default={reference}"),
            ),
            ("COMPUTEBRIDGE_SECRET_CACHE_TTL_SECONDS", "1"),
            ("COMPUTEBRIDGE_SECRET_GRACE_SECONDS", "6"),
        ],
    )
    .await;
    assert_eq!(
        call_with_key(&service, "outage-key-value").await.0,
        StatusCode::OK
    );

    azure
        .fault(json!({"match": {"service": "keyvault"}, "action": {"status": 503, "code": "ServiceUnavailable", "message": "vault down"}, "times": 0}))
        .await;
    // Calls keep succeeding while the service's reads of the vault fail.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut served_during_outage = false;
    let mut refused = None;
    while tokio::time::Instant::now() < deadline {
        let (status, body) = call_with_key(&service, "outage-key-value").await;
        let faulted = azure
            .requests("service=keyvault&path=/secrets/")
            .await
            .iter()
            .any(|r| r["status"] == 503);
        match status {
            StatusCode::OK if faulted => served_during_outage = true,
            StatusCode::OK => {}
            _ => {
                refused = Some((status, body));
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        served_during_outage,
        "the cached key served while Key Vault failed"
    );
    let output = service.output();
    assert!(
        output
            .wait_for(
                "Key Vault is unreachable; serving the last good value",
                Duration::from_secs(5)
            )
            .await
            .is_some(),
        "a warning is logged:\n{}",
        output.text()
    );
    // After TTL + grace the stale value is no longer trusted, and the error names the secret.
    let (status, body) = refused.expect("grace ends");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["code"], "FunctionKeysUnavailable");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("ops.vault.azure.net/fn-key"), "{message}");
    assert!(message.contains("vault down"), "{message}");

    azure.clear_faults().await;
    assert_eq!(
        call_with_key(&service, "outage-key-value").await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn missing_disabled_and_forbidden_secrets_are_clear_errors() {
    let azure = Azure::start(1.0).await;
    azure
        .seed(json!({"secrets": [
            {"vault": VAULT, "name": "disabled-key", "value": "disabled-value-1", "enabled": false},
            {"vault": VAULT, "name": "forbidden-key", "value": "forbidden-value-1", "forbidden": true},
        ]}))
        .await;
    let keys = format!(
        "a={};b={};c={}",
        key_vault_reference(VAULT, "missing-key"),
        key_vault_reference(VAULT, "disabled-key"),
        key_vault_reference(VAULT, "forbidden-key"),
    );
    let service = service(&azure, &[("COMPUTEBRIDGE_FUNCTION_KEYS", &keys)]).await;

    let health = deep_health(&service).await;
    assert_eq!(health["status"], "degraded", "{health}");
    let codes: Vec<(&str, &str)> = health["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["name"].as_str().unwrap().starts_with("secret"))
        .map(|d| (d["name"].as_str().unwrap(), d["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        codes,
        [
            (
                "secret ops.vault.azure.net/missing-key (function key 'a')",
                "SecretNotFound"
            ),
            (
                "secret ops.vault.azure.net/disabled-key (function key 'b')",
                "SecretDisabled"
            ),
            (
                "secret ops.vault.azure.net/forbidden-key (function key 'c')",
                "ForbiddenByRbac"
            ),
        ]
    );

    let (status, body) = call_with_key(&service, "any-key-at-all").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["code"], "FunctionKeysUnavailable");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ops.vault.azure.net/"),
        "{body}"
    );
}

#[tokio::test]
async fn seeded_secret_values_never_appear_in_logs_or_responses() {
    let azure = Azure::start(1.0).await;
    let values = ["leak-canary-7f3a91", "leak-canary-disabled-55c2"];
    azure
        .seed(json!({"secrets": [
            {"vault": VAULT, "name": "fn-key", "value": values[0]},
            {"vault": VAULT, "name": "off-key", "value": values[1], "enabled": false},
        ]}))
        .await;
    let keys = format!(
        "default={};off={}",
        key_vault_reference(VAULT, "fn-key"),
        key_vault_reference(VAULT, "off-key")
    );
    let service = service(
        &azure,
        &[
            ("COMPUTEBRIDGE_FUNCTION_KEYS", &keys),
            ("COMPUTEBRIDGE_SECRET_CACHE_TTL_SECONDS", "1"),
            ("COMPUTEBRIDGE_LOG_FORMAT", "json"),
            ("RUST_LOG", "debug"),
        ],
    )
    .await;

    let mut responses = Vec::new();
    responses.push(deep_health(&service).await.to_string());
    for key in [values[0], "wrong-key-value", values[1]] {
        responses.push(call_with_key(&service, key).await.1.to_string());
    }
    azure
        .fault(json!({"match": {"service": "keyvault"}, "action": {"status": 500}, "times": 0}))
        .await;
    let output = service.output();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while output
        .wait_for("Key Vault is unreachable", Duration::ZERO)
        .await
        .is_none()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no outage warning:\n{}",
            output.text()
        );
        responses.push(call_with_key(&service, values[0]).await.1.to_string());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    responses.push(deep_health(&service).await.to_string());

    let logged = output.text();
    assert!(
        logged.contains("fn-key"),
        "the scenario did log about the secret:\n{logged}"
    );
    for value in values {
        assert!(!logged.contains(value), "{value} was logged:\n{logged}");
        for response in &responses {
            assert!(
                !response.contains(value),
                "{value} was returned: {response}"
            );
        }
    }
}

#[tokio::test]
async fn dev_runs_against_the_embedded_emulator_with_the_documented_key() {
    let service = Standalone::start_command(&["dev", "--port", "0"], &[]).await;
    let output = service.output();
    let banner = output
        .wait_for("function key: dev", Duration::from_secs(10))
        .await;
    assert!(banner.is_some(), "{}", output.text());
    assert!(output.text().contains(&format!(
        "curl -s '{}/api/health?deep=true'",
        service.base_url
    )));

    let health = deep_health(&service).await;
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(call_with_key(&service, "dev").await.0, StatusCode::OK);
    assert_eq!(
        call_with_key(&service, "not-the-key").await.0,
        StatusCode::UNAUTHORIZED
    );
}
