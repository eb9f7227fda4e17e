//! The one HTTP transport every Azure client and the credential use: reqwest with rustls (ring).
//!
//! This is the only seam between production code and the local emulator. When an emulator
//! address is configured (the `dev` command and the tests), requests to the hosts of the
//! configured cloud that computebridge calls (ARM, Entra ID, Key Vault, Batch) are sent there over
//! plain HTTP with their original `Host` header, so every client keeps its production URLs and
//! checks (Key Vault's challenge resource included). All other hosts go out unchanged.

use std::net::SocketAddr;
use std::sync::{Arc, Once};
use std::time::Duration;

use azure_core::http::{AsyncRawResponse, HttpClient, Request, Transport};

use crate::azure::cloud::Cloud;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct AzureTransport {
    client: reqwest::Client,
    cloud: Cloud,
    emulator: Option<SocketAddr>,
}

/// The reqwest client for everything the service sends (Azure and callbacks alike).
pub fn http_client() -> reqwest::Client {
    static CRYPTO: Once = Once::new();
    CRYPTO.call_once(|| {
        // Fails only if a provider is already installed, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("the HTTP client configuration is static and valid")
}

/// The transport for `cloud`, sending that cloud's hosts to `emulator` when one is given.
pub fn transport(client: reqwest::Client, cloud: Cloud, emulator: Option<SocketAddr>) -> Transport {
    Transport::new(Arc::new(AzureTransport {
        client,
        cloud,
        emulator,
    }))
}

#[async_trait::async_trait]
impl HttpClient for AzureTransport {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        let Some(emulator) = self.emulator else {
            return self.client.execute_request(request).await;
        };
        let host = request.url().host_str().unwrap_or_default().to_owned();
        if !self.cloud.serves_host(&host) {
            return self.client.execute_request(request).await;
        }
        let mut redirected = request.clone();
        let url = redirected.url_mut();
        // Both setters accept any http(s) URL with a host, which `host` proves this one is.
        let _ = url.set_scheme("http");
        let _ = url.set_ip_host(emulator.ip());
        let _ = url.set_port(Some(emulator.port()));
        redirected.insert_header("host", host);
        self.client.execute_request(&redirected).await
    }
}
