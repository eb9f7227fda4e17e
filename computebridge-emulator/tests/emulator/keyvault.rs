//! Key Vault secrets over the real data-plane paths.

use reqwest::Method;
use serde_json::json;

use crate::support::{Emu, VAULT};

#[tokio::test]
async fn challenge_then_versions_then_errors() {
    let emu = Emu::start(1.0).await;
    let challenge = emu
        .send(
            Method::GET,
            VAULT,
            "/secrets/ShouldNotExist/?api-version=7.5",
            None,
            None,
        )
        .await;
    assert_eq!(challenge.status, 401);
    assert_eq!(
        challenge.body,
        json!({"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}})
    );
    assert_eq!(
        challenge.header("www-authenticate"),
        Some(
            "Bearer authorization=\"https://login.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47\", resource=\"https://vault.azure.net\""
        )
    );

    let token = emu.token("https://vault.azure.net").await;
    let t = Some(token.as_str());
    let missing = emu
        .send(
            Method::GET,
            VAULT,
            "/secrets/ShouldNotExist/?api-version=7.5",
            t,
            None,
        )
        .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body["error"]["code"], "SecretNotFound");
    assert!(
        missing.body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("A secret with (name/id) ShouldNotExist was not found")
    );

    let first = emu
        .send(
            Method::PUT,
            VAULT,
            "/secrets/registry-password?api-version=7.5",
            t,
            Some(json!({"value": "one", "contentType": "text/plain"})),
        )
        .await;
    assert_eq!(first.status, 200, "{}", first.text);
    let first_id = first.body["id"].as_str().unwrap().to_owned();
    assert!(first_id.starts_with("https://myvault.vault.azure.net/secrets/registry-password/"));
    assert!(
        first.body["attributes"]["created"].is_i64(),
        "unix seconds: {}",
        first.text
    );
    emu.send(
        Method::PUT,
        VAULT,
        "/secrets/registry-password?api-version=7.5",
        t,
        Some(json!({"value": "two"})),
    )
    .await;

    let latest = emu
        .send(
            Method::GET,
            VAULT,
            "/secrets/registry-password?api-version=7.5",
            t,
            None,
        )
        .await;
    assert_eq!(latest.body["value"], "two");
    let version = first_id.rsplit('/').next().unwrap();
    let old = emu
        .send(
            Method::GET,
            VAULT,
            &format!("/secrets/REGISTRY-PASSWORD/{version}?api-version=7.5"),
            t,
            None,
        )
        .await;
    assert_eq!(
        old.body["value"], "one",
        "names are case-insensitive, versions addressable"
    );
    let versions = emu
        .send(
            Method::GET,
            VAULT,
            "/secrets/registry-password/versions?api-version=7.5",
            t,
            None,
        )
        .await;
    assert_eq!(versions.body["value"].as_array().unwrap().len(), 2);
    assert!(
        versions.body["value"][0].get("value").is_none(),
        "listings never carry values"
    );

    let latest_id = latest.body["id"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let disabled = emu
        .send(
            Method::PATCH,
            VAULT,
            &format!("/secrets/registry-password/{latest_id}?api-version=7.5"),
            t,
            Some(json!({"attributes": {"enabled": false}})),
        )
        .await;
    assert_eq!(disabled.status, 200);
    assert!(disabled.body.get("value").is_none());
    let refused = emu
        .send(
            Method::GET,
            VAULT,
            "/secrets/registry-password?api-version=7.5",
            t,
            None,
        )
        .await;
    assert_eq!(refused.status, 403);
    assert_eq!(
        refused.body["error"]["innererror"]["code"],
        "SecretDisabled"
    );
    assert_eq!(refused.header("x-ms-error-code"), Some("Forbidden"));

    emu.seed(json!({"secrets": [{"vault": "myvault", "name": "locked", "value": "x", "forbidden": true}]})).await;
    let denied = emu
        .send(
            Method::GET,
            VAULT,
            "/secrets/locked?api-version=7.5",
            t,
            None,
        )
        .await;
    assert_eq!(
        (
            denied.status,
            denied.body["error"]["innererror"]["code"].as_str()
        ),
        (403, Some("ForbiddenByRbac"))
    );

    let other_vault = emu
        .send(
            Method::GET,
            "othervault.vault.azure.net",
            "/secrets/registry-password?api-version=7.5",
            t,
            None,
        )
        .await;
    assert_eq!(other_vault.status, 404, "vaults are separate");
    let bad_name = emu
        .send(
            Method::PUT,
            VAULT,
            "/secrets/bad_name?api-version=7.5",
            t,
            Some(json!({"value": "x"})),
        )
        .await;
    assert_eq!(bad_name.status, 400);
    let no_version = emu
        .send(Method::GET, VAULT, "/secrets/locked", t, None)
        .await;
    assert_eq!(
        (no_version.status, no_version.body["error"]["code"].as_str()),
        (400, Some("BadParameter"))
    );
    let bad_version = emu
        .send(
            Method::GET,
            VAULT,
            "/secrets/locked?api-version=9.9",
            t,
            None,
        )
        .await;
    assert_eq!(bad_version.status, 400);
}
