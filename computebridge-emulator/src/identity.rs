//! Token endpoints: the App Service / Functions managed-identity endpoint (`/msi/token`, protocol
//! 2019-08-01 with `X-IDENTITY-HEADER`, and the legacy 2017-09-01 `secret` form) and the Entra ID
//! client-credentials endpoint (`POST /{tenant}/oauth2/v2.0/token`).

use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use crate::http::{self, Incoming};
use crate::state::Shared;
use crate::tokens;

/// Identities the emulator knows besides the system-assigned one.
#[derive(Debug, Default)]
pub struct Identities {
    pub user_assigned: Vec<UserAssignedIdentity>,
    pub service_principals: Vec<ServicePrincipal>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserAssignedIdentity {
    pub client_id: String,
    #[serde(default)]
    pub principal_id: Option<String>,
    #[serde(default)]
    pub resource_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePrincipal {
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Accepts any client assertion (workload identity federation) for this client.
    #[serde(default)]
    pub federated: bool,
}

const JSON: &str = "application/json; charset=utf-8";

/// `GET /msi/token`: App Service managed identity.
pub fn managed_identity(state: &Shared, request: &Incoming) -> Response {
    let api_version = request.query("api-version").unwrap_or("");
    let legacy = api_version == "2017-09-01";
    let presented = if legacy {
        request.header("secret")
    } else {
        request.header("x-identity-header")
    };
    if api_version != "2019-08-01" && !legacy {
        return msi_error(
            StatusCode::BAD_REQUEST,
            &format!("The api-version '{api_version}' is not supported; use 2019-08-01."),
        );
    }
    if presented != Some(state.options.identity_header.as_str()) {
        return msi_error(
            StatusCode::UNAUTHORIZED,
            "The request did not carry the expected X-IDENTITY-HEADER value.",
        );
    }
    let Some(resource) = request.query("resource").filter(|r| !r.is_empty()) else {
        return msi_error(
            StatusCode::BAD_REQUEST,
            "The 'resource' query parameter is required.",
        );
    };
    let selector = if legacy {
        request.query("clientid").map(|v| ("client_id", v))
    } else {
        ["client_id", "principal_id", "object_id", "mi_res_id"]
            .into_iter()
            .find_map(|name| request.query(name).map(|v| (name, v)))
    };
    let client_id = match selector {
        None => state.options.system_client_id.clone(),
        Some((kind, value)) => {
            let identities = state.identities.lock().unwrap();
            let found = identities.user_assigned.iter().find(|i| match kind {
                "client_id" => i.client_id.eq_ignore_ascii_case(value),
                "mi_res_id" => i
                    .resource_id
                    .as_deref()
                    .is_some_and(|r| r.eq_ignore_ascii_case(value)),
                _ => i
                    .principal_id
                    .as_deref()
                    .is_some_and(|p| p.eq_ignore_ascii_case(value)),
            });
            match found {
                Some(identity) => identity.client_id.clone(),
                None => {
                    return msi_error(
                        StatusCode::BAD_REQUEST,
                        "No User Assigned or Delegated Managed Identity found for specified ClientId/ResourceId/PrincipalId.",
                    );
                }
            }
        }
    };
    let (token, claims) = tokens::issue(
        resource,
        &client_id,
        &state.options.tenant_id,
        state.options.token_lifetime_seconds,
    );
    let expires_on = if legacy {
        let at = time::OffsetDateTime::from_unix_timestamp(claims.exp)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let format = time::macros::format_description!(
            "[month]/[day]/[year] [hour]:[minute]:[second] +00:00"
        );
        at.format(&format).unwrap_or_default()
    } else {
        claims.exp.to_string()
    };
    http::json(
        StatusCode::OK,
        JSON,
        &json!({
            "access_token": token,
            "expires_on": expires_on,
            "resource": resource,
            "token_type": "Bearer",
            "client_id": client_id,
        }),
    )
}

fn msi_error(status: StatusCode, message: &str) -> Response {
    http::json(
        status,
        JSON,
        &json!({"statusCode": status.as_u16(), "message": message, "correlationId": http::new_id()}),
    )
}

/// `POST /{tenant}/oauth2/v2.0/token`: the client-credentials grant.
pub fn entra_token(state: &Shared, request: &Incoming, tenant: &str) -> Response {
    let form = http::parse_query(&String::from_utf8_lossy(&request.body));
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    if field("grant_type") != Some("client_credentials") {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "AADSTS70003: The app requested an unsupported grant type.",
        );
    }
    let Some(client_id) = field("client_id") else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "AADSTS900144: The request body must contain the following parameter: 'client_id'.",
        );
    };
    let Some(scope) = field("scope").filter(|s| s.ends_with("/.default")) else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            70011,
            "AADSTS70011: The provided value for the input parameter 'scope' is not valid. The scope must end in /.default.",
        );
    };
    let identities = state.identities.lock().unwrap();
    let Some(principal) = identities
        .service_principals
        .iter()
        .find(|p| p.client_id == client_id)
    else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "AADSTS700016: Application with identifier '{client_id}' was not found in the directory '{tenant}'."
            ),
        );
    };
    let authenticated = match (field("client_secret"), field("client_assertion")) {
        (Some(secret), _) => principal.client_secret.as_deref() == Some(secret),
        (None, Some(_)) => {
            principal.federated
                && field("client_assertion_type")
                    == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        }
        (None, None) => false,
    };
    if !authenticated {
        return aad_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
        );
    }
    let (token, _) = tokens::issue(
        scope,
        client_id,
        tenant,
        state.options.token_lifetime_seconds,
    );
    http::json(
        StatusCode::OK,
        JSON,
        &json!({
            "token_type": "Bearer",
            "expires_in": state.options.token_lifetime_seconds,
            "ext_expires_in": state.options.token_lifetime_seconds,
            "access_token": token,
        }),
    )
}

fn aad_error(status: StatusCode, error: &str, code: u32, description: &str) -> Response {
    http::json(
        status,
        JSON,
        &json!({
            "error": error,
            "error_description": description,
            "error_codes": [code],
            "timestamp": http::azure_time(time::OffsetDateTime::now_utc()),
            "trace_id": http::new_id(),
            "correlation_id": http::new_id(),
        }),
    )
}
