//! Token endpoints and the audience checks every service applies.

use reqwest::Method;
use serde_json::json;

use crate::support::{ARM, BATCH, Emu, SUB, VAULT};

#[tokio::test]
async fn managed_identity_follows_the_app_service_protocol() {
    let emu = Emu::start(1.0).await;
    let url = |query: &str| format!("{}/msi/token?{query}", emu.running.url());
    let reply = emu
        .client
        .get(url(
            "api-version=2019-08-01&resource=https://vault.azure.net",
        ))
        .header("x-identity-header", "local-dev")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let body: serde_json::Value = reply.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["resource"], "https://vault.azure.net");
    let expires: i64 = body["expires_on"].as_str().unwrap().parse().unwrap();
    assert!(expires > 1_700_000_000, "epoch seconds as a string: {body}");

    let cases = [
        (
            "api-version=2019-08-01&resource=https://vault.azure.net",
            Some("wrong"),
            401,
        ),
        (
            "api-version=2019-08-01&resource=https://vault.azure.net",
            None,
            401,
        ),
        ("api-version=2019-08-01", Some("local-dev"), 400),
        ("api-version=2018-02-01&resource=x", Some("local-dev"), 400),
        (
            "api-version=2019-08-01&resource=x&client_id=unknown",
            Some("local-dev"),
            400,
        ),
    ];
    for (query, header, status) in cases {
        let mut request = emu.client.get(url(query));
        if let Some(header) = header {
            request = request.header("x-identity-header", header);
        }
        assert_eq!(
            request.send().await.unwrap().status(),
            status,
            "{query} {header:?}"
        );
    }

    emu.seed(json!({"identities": [{"clientId": "11111111-2222-3333-4444-555555555555"}]}))
        .await;
    let reply = emu.client.get(url("api-version=2019-08-01&resource=https://management.azure.com/&client_id=11111111-2222-3333-4444-555555555555")).header("x-identity-header", "local-dev").send().await.unwrap();
    let body: serde_json::Value = reply.json().await.unwrap();
    assert_eq!(body["client_id"], "11111111-2222-3333-4444-555555555555");

    let legacy = emu
        .client
        .get(url(
            "api-version=2017-09-01&resource=https://management.azure.com/",
        ))
        .header("secret", "local-dev")
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = legacy.json().await.unwrap();
    assert!(
        body["expires_on"].as_str().unwrap().ends_with("+00:00"),
        "legacy date string: {body}"
    );
}

#[tokio::test]
async fn client_credentials_need_the_right_secret_and_scope() {
    let emu = Emu::start(1.0).await;
    emu.seed(json!({"servicePrincipals": [{"clientId": "app-1", "clientSecret": "s3cret"}]}))
        .await;
    let post = |form: &'static str| {
        emu.client
            .post(format!("{}/tenant-1/oauth2/v2.0/token", emu.running.url()))
            .header("host", "login.microsoftonline.com")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
    };
    let ok = post("grant_type=client_credentials&client_id=app-1&client_secret=s3cret&scope=https%3A%2F%2Fmanagement.azure.com%2F.default").await.unwrap();
    assert_eq!(ok.status(), 200);
    let body: serde_json::Value = ok.json().await.unwrap();
    assert!(body["expires_in"].is_number());
    let token = body["access_token"].as_str().unwrap().to_owned();
    let listed = emu.send(Method::GET, ARM, &format!("/subscriptions/{SUB}/providers/Microsoft.ContainerInstance/containerGroups?api-version=2023-05-01"), Some(&token), None).await;
    assert_eq!(
        listed.status, 200,
        "an Entra token works on ARM: {}",
        listed.text
    );

    let cases = [
        (
            "grant_type=client_credentials&client_id=app-1&client_secret=wrong&scope=x%2F.default",
            401,
            "invalid_client",
        ),
        (
            "grant_type=client_credentials&client_id=app-1&client_secret=s3cret&scope=https%3A%2F%2Fvault.azure.net",
            400,
            "invalid_scope",
        ),
        (
            "grant_type=client_credentials&client_id=nobody&client_secret=x&scope=x%2F.default",
            400,
            "unauthorized_client",
        ),
        (
            "grant_type=password&client_id=app-1",
            400,
            "unsupported_grant_type",
        ),
    ];
    for (form, status, error) in cases {
        let reply = post(form).await.unwrap();
        assert_eq!(reply.status(), status, "{form}");
        assert_eq!(
            reply.json::<serde_json::Value>().await.unwrap()["error"],
            error,
            "{form}"
        );
    }
}

#[tokio::test]
async fn every_service_checks_the_token_audience() {
    let emu = Emu::start(1.0).await;
    emu.seed(json!({"batchAccounts": [{"account": "acct"}]}))
        .await;
    let arm_token = emu.token("https://management.azure.com/").await;
    let vault_token = emu.token("https://vault.azure.net").await;

    let kv = emu
        .send(
            Method::GET,
            VAULT,
            "/secrets/x?api-version=7.5",
            Some(&arm_token),
            None,
        )
        .await;
    assert_eq!(kv.status, 401);
    assert!(
        kv.body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("AKV10022: Invalid audience"),
        "{}",
        kv.text
    );
    assert!(
        kv.header("www-authenticate")
            .unwrap()
            .contains("resource=\"https://vault.azure.net\"")
    );

    let arm = emu.send(Method::GET, ARM, &format!("/subscriptions/{SUB}/providers/Microsoft.ContainerInstance/containerGroups?api-version=2023-05-01"), Some(&vault_token), None).await;
    assert_eq!(
        (arm.status, arm.body["error"]["code"].as_str()),
        (401, Some("InvalidAuthenticationTokenAudience"))
    );
    let arm = emu.send(Method::GET, ARM, &format!("/subscriptions/{SUB}/providers/Microsoft.ContainerInstance/containerGroups?api-version=2023-05-01"), None, None).await;
    assert_eq!(
        (arm.status, arm.body["error"]["code"].as_str()),
        (401, Some("AuthenticationFailed"))
    );

    let batch = emu
        .send(
            Method::GET,
            BATCH,
            "/pools?api-version=2025-06-01",
            None,
            None,
        )
        .await;
    assert_eq!(
        (batch.status, batch.body["code"].as_str()),
        (400, Some("MissingRequiredHeader"))
    );
    assert_eq!(
        batch.body["values"][0],
        json!({"key": "HeaderName", "value": "Authorization"})
    );
    let batch = emu
        .send(
            Method::GET,
            BATCH,
            "/pools?api-version=2025-06-01",
            Some(&arm_token),
            None,
        )
        .await;
    assert_eq!(
        (batch.status, batch.body["code"].as_str()),
        (403, Some("AuthenticationFailed"))
    );
}
