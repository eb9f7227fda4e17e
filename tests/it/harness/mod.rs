//! The test harness: plays the Functions host (`host`) or runs the binary standalone
//! (`standalone`) around the real, built `computebridge` executable; `azure` runs the emulator
//! behind it, and `azurite` the Blob storage that durable state lives in.

pub mod azure;
pub mod azurite;
pub mod callbacks;
pub mod function_app;
pub mod host;
pub mod process;
pub mod standalone;

pub use azure::{Azure, key_vault_reference};
pub use azurite::Azurite;
pub use callbacks::{CallbackReceiver, loopback_callback_settings};
pub use host::{FunctionsHost, Key, TimerFire};
pub use standalone::Standalone;

/// A reqwest client builder for tests. The service's reqwest uses rustls without a built-in crypto
/// provider (it installs ring itself), so test clients install it too before building.
pub fn client_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

pub fn client() -> reqwest::Client {
    client_builder().build().expect("test HTTP client")
}
