//! The conformance suite: every recording in `shared/recordings/` replayed against the emulator,
//! and every spec example in `shared/specs/` answered (`specs`).
//! Operations the emulator does not serve are listed as skipped with the reason; everything else
//! must answer with the recorded status, the recorded headers and the recorded JSON shape.

mod nock;
mod recordings;
mod replay;
mod shape;
mod specs;

use std::path::PathBuf;

use serde_json::{Value, json};

use recordings::Interaction;
use replay::{Replayer, Setup};

/// `shared/` beside the repository (CI clones the repository next to it).
fn shared() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    assert!(
        path.join("recordings").is_dir(),
        "shared/ must sit beside the repository: {}",
        path.display()
    );
    path
}

/// Each recording and what it needs before its first request.
const RECORDINGS: [(&str, Setup); 20] = [
    ("aci/testContainerInstance.json", Setup::NONE),
    (
        "aci/testContainerInstanceWithPublicIpAddressWithUserAssignedMsi.json",
        Setup::NONE,
    ),
    (
        "aci/ContainerInstanceWithPublicIpAddressWithSystemAssignedMSI.json",
        Setup::NONE,
    ),
    (
        "aci/test_mgmt_containerinstance.test_container_instance.yaml",
        Setup::NONE,
    ),
    (
        "batch/Batch_Service_operations_should_count_tasks_sucessfully.nock.js",
        Setup::NONE,
    ),
    (
        "batch/Batch_Service_operations_should_disable_autoscale_successfully.nock.js",
        Setup {
            enable_autoscale: true,
            ..Setup::NONE
        },
    ),
    (
        "batch/Batch_Service_operations_should_enable_autoscale_successfully.nock.js",
        Setup::NONE,
    ),
    (
        "batch/Batch_Service_operations_should_evaluate_pool_autoscale_successfully.nock.js",
        Setup {
            enable_autoscale: true,
            ..Setup::NONE
        },
    ),
    (
        "batch/Batch_Service_operations_should_fail_to_delete_a_non-existant_pool.nock.js",
        Setup {
            delete_pool: true,
            ..Setup::NONE
        },
    ),
    (
        "batch/Batch_Service_operations_should_fail_to_evaluate_invalid_autoscale_formula.nock.js",
        Setup {
            enable_autoscale: true,
            ..Setup::NONE
        },
    ),
    (
        "batch/Batch_Service_operations_should_get_a_pool_reference_successfully.nock.js",
        Setup::NONE,
    ),
    (
        "batch/Batch_Service_operations_should_get_pool_node_counts_successfully.nock.js",
        Setup::NONE,
    ),
    (
        "batch/Batch_Service_operations_should_start_pool_resizing_successfully.nock.js",
        Setup::NONE,
    ),
    (
        "batch/Batch_Service_operations_should_stop_pool_resizing_successfully.nock.js",
        Setup {
            start_resize: true,
            ..Setup::NONE
        },
    ),
    ("batch/test_batch.test_batch_scale_pools.yaml", Setup::NONE),
    (
        "batch/python-190af94/test_batch.test_batch_scale_pools.yaml",
        Setup {
            unauthenticated: true,
            ..Setup::NONE
        },
    ),
    (
        "identity/test_app_service.test_system_assigned.yaml",
        Setup::NONE,
    ),
    (
        "identity/test_imds_credential.test_user_assigned.yaml",
        Setup::NONE,
    ),
    ("keyvault/GetNonExistentSecretNoThrow.json", Setup::NONE),
    ("keyvault/keyVault-secret-tests.nock.js", Setup::NONE),
];

impl Setup {
    const NONE: Setup = Setup {
        enable_autoscale: false,
        start_resize: false,
        delete_pool: false,
        unauthenticated: false,
    };
}

/// Interactions whose recorded answer cannot be reproduced in recorded order.
const QUIRKS: [(&str, usize, &str); 1] = [(
    "aci/ContainerInstanceWithPublicIpAddressWithSystemAssignedMSI.json",
    9,
    "the .NET recorder wrote this GET before the PATCH (#12) it follows: its Date is later than #10 and #11 and equal to #12's, and it already shows the PATCH's tag",
)];

/// Bodies for requests whose recording filtered them out (nock records `*`).
fn synthesize(interaction: &Interaction) -> Option<Value> {
    let path = interaction.path.as_str();
    if path.ends_with("/resize") {
        Some(json!({"targetDedicatedNodes": 3, "targetLowPriorityNodes": 0}))
    } else if path.ends_with("/enableautoscale") {
        Some(
            json!({"autoScaleFormula": "$TargetDedicatedNodes=2", "autoScaleEvaluationInterval": "PT5M"}),
        )
    } else if path.ends_with("/evaluateautoscale") {
        let failing = interaction
            .response_body
            .as_ref()
            .is_some_and(|b| !b["error"].is_null());
        Some(
            json!({"autoScaleFormula": if failing { "something_useless" } else { "$TargetDedicatedNodes=2" }}),
        )
    } else {
        None
    }
}

async fn replay(file: &str) {
    let setup = RECORDINGS
        .iter()
        .find(|(f, _)| *f == file)
        .map(|(_, s)| *s)
        .unwrap();
    let interactions = recordings::load(&shared().join("recordings").join(file));
    assert!(!interactions.is_empty(), "{file} has no interactions");
    let replayer = Replayer::start().await;
    let quirks: Vec<(usize, &str)> = QUIRKS
        .iter()
        .filter(|(f, _, _)| *f == file)
        .map(|(_, i, r)| (*i, *r))
        .collect();
    let report = replayer
        .replay(&interactions, setup, &quirks, synthesize)
        .await;
    for skipped in &report.skipped {
        println!("{file}: skipped {skipped}");
    }
    for quirk in &report.not_compared {
        println!("{file}: not compared {quirk}");
    }
    assert!(
        report.failures.is_empty(),
        "{file}: {} of {} replayed interactions differ:\n{}",
        report.failures.len(),
        report.replayed,
        report.failures.join("\n")
    );
    let in_scope = interactions
        .iter()
        .filter(|i| replay::out_of_scope(i).is_none())
        .count();
    assert_eq!(
        report.replayed + report.not_compared.len(),
        in_scope,
        "{file}"
    );
}

/// Files under `shared/{folder}` (paths relative to it) for which `keep` holds.
fn files_under(folder: &str, keep: impl Fn(&std::path::Path) -> bool) -> Vec<String> {
    let root = shared().join(folder);
    let mut files = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if keep(&path) {
                files.push(
                    path.strip_prefix(&root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    files
}

#[test]
fn every_recording_is_replayed() {
    let mut files = files_under("recordings", |path| !path.ends_with("README.md"));
    files.sort();
    let mut listed: Vec<String> = RECORDINGS.iter().map(|(f, _)| f.to_string()).collect();
    listed.sort();
    assert_eq!(files, listed, "a recording without a conformance test");
}

macro_rules! recording_tests {
    ($($name:ident => $file:literal,)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                replay($file).await;
            }
        )*
    };
}

recording_tests! {
    aci_java_2018 => "aci/testContainerInstance.json",
    aci_java_user_assigned_msi => "aci/testContainerInstanceWithPublicIpAddressWithUserAssignedMsi.json",
    aci_dotnet_system_assigned_msi => "aci/ContainerInstanceWithPublicIpAddressWithSystemAssignedMSI.json",
    aci_python => "aci/test_mgmt_containerinstance.test_container_instance.yaml",
    batch_count_tasks => "batch/Batch_Service_operations_should_count_tasks_sucessfully.nock.js",
    batch_disable_autoscale => "batch/Batch_Service_operations_should_disable_autoscale_successfully.nock.js",
    batch_enable_autoscale => "batch/Batch_Service_operations_should_enable_autoscale_successfully.nock.js",
    batch_evaluate_autoscale => "batch/Batch_Service_operations_should_evaluate_pool_autoscale_successfully.nock.js",
    batch_delete_pool_being_deleted => "batch/Batch_Service_operations_should_fail_to_delete_a_non-existant_pool.nock.js",
    batch_evaluate_invalid_formula => "batch/Batch_Service_operations_should_fail_to_evaluate_invalid_autoscale_formula.nock.js",
    batch_get_pool => "batch/Batch_Service_operations_should_get_a_pool_reference_successfully.nock.js",
    batch_node_counts => "batch/Batch_Service_operations_should_get_pool_node_counts_successfully.nock.js",
    batch_resize => "batch/Batch_Service_operations_should_start_pool_resizing_successfully.nock.js",
    batch_stop_resize => "batch/Batch_Service_operations_should_stop_pool_resizing_successfully.nock.js",
    batch_python_scale_pools => "batch/test_batch.test_batch_scale_pools.yaml",
    batch_python_missing_authorization => "batch/python-190af94/test_batch.test_batch_scale_pools.yaml",
    identity_app_service => "identity/test_app_service.test_system_assigned.yaml",
    identity_imds => "identity/test_imds_credential.test_user_assigned.yaml",
    keyvault_dotnet_challenge => "keyvault/GetNonExistentSecretNoThrow.json",
    keyvault_node_secrets => "keyvault/keyVault-secret-tests.nock.js",
}
