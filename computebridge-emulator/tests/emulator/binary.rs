//! The `computebridge-emulator` binary on its own: it announces its address and serves there.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test]
async fn prints_its_address_and_serves_there() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_computebridge-emulator"))
        .args([
            "--addr",
            "127.0.0.1:0",
            "--identity-header",
            "custom-header",
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let url = line
        .strip_prefix("listening on ")
        .expect("the announcement line");
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    let info: serde_json::Value = reqwest::get(format!("{url}/_emulator"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["service"], "computebridge-emulator");
    let token = crate::support::client_builder()
        .build()
        .unwrap()
        .get(format!(
            "{url}/msi/token?api-version=2019-08-01&resource=https://vault.azure.net"
        ))
        .header("x-identity-header", "custom-header")
        .send()
        .await
        .unwrap();
    assert_eq!(
        token.status(),
        200,
        "--identity-header sets the accepted value"
    );
}

#[tokio::test]
async fn refuses_bad_arguments() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_computebridge-emulator"))
        .args(["--addr", "nowhere"])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--addr: 'nowhere' is not an address")
    );
}
