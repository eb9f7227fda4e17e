//! Account shared access signatures for Blob storage, signed with the account key (the format of
//! service version 2020-12-06 and later), and the redaction that keeps a signature out of logs.

use azure_core::http::Url;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::secret::Secret;

const VERSION: &str = "2022-11-02";

/// A SAS query string for the blob service: read, write, delete, list, add and create on the
/// service, containers and objects, until `expiry`. `allow_http` is for the local emulator only.
pub fn account_sas(
    account: &str,
    key: &Secret,
    expiry: OffsetDateTime,
    allow_http: bool,
) -> Result<String, String> {
    let expiry = expiry
        .replace_nanosecond(0)
        .map_err(|e| e.to_string())?
        .format(&Rfc3339)
        .map_err(|e| e.to_string())?;
    let (permissions, services, resource_types) = ("rwdlac", "b", "sco");
    let protocol = if allow_http { "https,http" } else { "https" };
    let to_sign = [
        account,
        permissions,
        services,
        resource_types,
        "",
        &expiry,
        "",
        protocol,
        VERSION,
        "",
        "",
    ]
    .join("\n");
    let signature = azure_core::hmac::hmac_sha256(
        &to_sign,
        &azure_core::credentials::Secret::new(key.expose().to_owned()),
    )
    .map_err(|_| "the storage account key is not valid base64".to_owned())?;
    let mut url = Url::parse("http://sas.invalid/").map_err(|e| e.to_string())?;
    url.query_pairs_mut()
        .append_pair("sv", VERSION)
        .append_pair("ss", services)
        .append_pair("srt", resource_types)
        .append_pair("sp", permissions)
        .append_pair("se", &expiry)
        .append_pair("spr", protocol)
        .append_pair("sig", &signature);
    Ok(url.query().unwrap_or_default().to_owned())
}

/// `text` with every `sig=` value replaced, for messages that may quote a request URL.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("sig=") {
        out.push_str(&rest[..at + 4]);
        out.push_str("REDACTED");
        rest = &rest[at + 4..];
        let end = rest
            .find(|c: char| c == '&' || c == ')' || c.is_whitespace())
            .unwrap_or(rest.len());
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_an_account_sas_and_keeps_the_signature_out_of_messages() {
        let expiry = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let token = account_sas("acct", &Secret::new("a2V5"), expiry, false).unwrap();
        assert!(
            token.starts_with(
                "sv=2022-11-02&ss=b&srt=sco&sp=rwdlac&se=2027-01-15T08%3A00%3A00Z&spr=https&sig="
            ),
            "{token}"
        );
        // HMAC-SHA256 over the documented string-to-sign, with the key "key".
        let expected = azure_core::hmac::hmac_sha256(
            "acct\nrwdlac\nb\nsco\n\n2027-01-15T08:00:00Z\n\nhttps\n2022-11-02\n\n",
            &azure_core::credentials::Secret::new("a2V5"),
        )
        .unwrap();
        let sig = token.rsplit_once("sig=").unwrap().1;
        let url = Url::parse(&format!("http://h/?sig={sig}")).unwrap();
        assert_eq!(url.query_pairs().next().unwrap().1, expected);
        assert!(account_sas("acct", &Secret::new("not base64!"), expiry, false).is_err());
        assert_eq!(
            redact("error sending request for url (http://h/c/b?sv=1&sig=abc%2F&sp=r) now"),
            "error sending request for url (http://h/c/b?sv=1&sig=REDACTED&sp=r) now"
        );
    }
}
