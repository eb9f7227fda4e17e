//! Start-up: the binary refuses bad configuration with a message naming the setting.

use std::time::Duration;

use crate::harness::process::{Process, clean_command};

async fn run_to_exit(args: &[&str], settings: &[(&str, &str)]) -> (i32, String) {
    let mut command = clean_command(env!("CARGO_BIN_EXE_computebridge").as_ref());
    command.args(args).envs(settings.iter().copied());
    let mut process = Process::spawn(command).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), process.wait())
        .await
        .expect("the binary exits on bad configuration instead of hanging")
        .unwrap();
    (status.code().unwrap_or(-1), process.lines.text())
}

#[tokio::test]
async fn configuration_errors_stop_start_up_and_name_the_setting() {
    type Settings = &'static [(&'static str, &'static str)];
    let cases: &[(&[&str], Settings, &str)] = &[
        (
            &[],
            &[("FUNCTIONS_CUSTOMHANDLER_PORT", "not-a-port")],
            "FUNCTIONS_CUSTOMHANDLER_PORT",
        ),
        (
            &[],
            &[
                ("FUNCTIONS_CUSTOMHANDLER_PORT", "7000"),
                ("RECONCILE_SCHEDULE", "every minute"),
            ],
            "RECONCILE_SCHEDULE",
        ),
        (&["serve"], &[], "COMPUTEBRIDGE_FUNCTION_KEYS"),
        (
            &["serve"],
            &[("COMPUTEBRIDGE_FUNCTION_KEYS", "default=tiny")],
            "shorter than 8",
        ),
        (
            &["serve"],
            &[("COMPUTEBRIDGE_CONFIG", "/does/not/exist.toml")],
            "COMPUTEBRIDGE_CONFIG",
        ),
        (&[], &[], "FUNCTIONS_CUSTOMHANDLER_PORT is not set"),
        (&["serve", "--port", "http"], &[], "--port"),
        (
            &[],
            &[
                ("FUNCTIONS_CUSTOMHANDLER_PORT", "7000"),
                ("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi/token"),
            ],
            "IDENTITY_HEADER: is not set but IDENTITY_ENDPOINT is",
        ),
        (
            &[],
            &[
                ("FUNCTIONS_CUSTOMHANDLER_PORT", "7000"),
                ("IDENTITY_HEADER", "abc"),
            ],
            "IDENTITY_ENDPOINT: is not set but IDENTITY_HEADER is",
        ),
        (
            &[],
            &[
                ("FUNCTIONS_CUSTOMHANDLER_PORT", "7000"),
                ("COMPUTEBRIDGE_CREDENTIAL", "client-secret"),
                ("AZURE_TENANT_ID", "72f988bf-86f1-41af-91ab-2d7cd011db47"),
            ],
            "AZURE_CLIENT_ID: is required by the client-secret credential",
        ),
        (
            &[],
            &[
                ("FUNCTIONS_CUSTOMHANDLER_PORT", "7000"),
                ("COMPUTEBRIDGE_CLOUD", "mars"),
            ],
            "COMPUTEBRIDGE_CLOUD: 'mars' is not one of",
        ),
        (
            &["serve"],
            &[(
                "COMPUTEBRIDGE_FUNCTION_KEYS",
                "default=@Microsoft.KeyVault(VaultName=ops)",
            )],
            "needs either SecretUri, or VaultName and SecretName",
        ),
    ];
    for (args, settings, expected) in cases {
        let (code, output) = run_to_exit(args, settings).await;
        assert_ne!(code, 0, "{args:?} {settings:?}");
        assert!(output.contains(expected), "{args:?} {settings:?}: {output}");
        assert!(!output.contains("tiny\""), "{output}");
    }
}

#[tokio::test]
async fn version_and_help_exit_cleanly() {
    let (code, output) = run_to_exit(&["--version"], &[]).await;
    assert_eq!(code, 0);
    assert_eq!(
        output.trim(),
        format!("computebridge {}", env!("CARGO_PKG_VERSION"))
    );
    let (code, output) = run_to_exit(&["--help"], &[]).await;
    assert_eq!(code, 0);
    assert!(output.contains("computebridge serve"));
}
