//! Access tokens: JWT-shaped (header.payload.signature, base64url), unsigned, carrying the
//! audience, the client and an expiry. Services check the audience and expiry the way Azure does;
//! nothing checks a signature, which is why these tokens are only good against the emulator.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub aud: String,
    pub appid: String,
    pub tid: String,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    Missing,
    Malformed,
    WrongAudience { found: String },
    Expired,
}

/// The audience a resource or a v2 scope names: `https://vault.azure.net/.default` and
/// `https://vault.azure.net/` both become `https://vault.azure.net`.
pub fn audience_of(resource_or_scope: &str) -> String {
    let trimmed = resource_or_scope.trim();
    let trimmed = trimmed.strip_suffix("/.default").unwrap_or(trimmed);
    trimmed.trim_end_matches('/').to_ascii_lowercase()
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub fn issue(
    resource: &str,
    client_id: &str,
    tenant: &str,
    lifetime_seconds: i64,
) -> (String, Claims) {
    let now = unix_now();
    let claims = Claims {
        aud: audience_of(resource),
        appid: client_id.to_owned(),
        tid: tenant.to_owned(),
        iat: now,
        exp: now + lifetime_seconds,
    };
    let header =
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT","kid":"computebridge-emulator"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
    let signature = URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes());
    (format!("{header}.{payload}.{signature}"), claims)
}

/// Checks a bearer token against the audience a service expects.
pub fn validate(token: Option<&str>, expected_audience: &str) -> Result<Claims, TokenError> {
    let token = token.filter(|t| !t.is_empty()).ok_or(TokenError::Missing)?;
    let payload = token.split('.').nth(1).ok_or(TokenError::Malformed)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenError::Malformed)?;
    let claims: Claims = serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)?;
    if claims.aud != audience_of(expected_audience) {
        return Err(TokenError::WrongAudience { found: claims.aud });
    }
    if claims.exp <= unix_now() {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_their_audience() {
        let (token, _) = issue("https://vault.azure.net/.default", "client", "tenant", 60);
        assert!(validate(Some(&token), "https://vault.azure.net").is_ok());
        assert_eq!(
            validate(Some(&token), "https://management.azure.com/"),
            Err(TokenError::WrongAudience {
                found: "https://vault.azure.net".into()
            })
        );
        let (expired, _) = issue("https://vault.azure.net", "c", "t", -1);
        assert_eq!(
            validate(Some(&expired), "https://vault.azure.net"),
            Err(TokenError::Expired)
        );
        assert_eq!(validate(None, "x"), Err(TokenError::Missing));
        assert_eq!(validate(Some("abc"), "x"), Err(TokenError::Malformed));
    }
}
