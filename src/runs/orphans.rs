//! Orphaned container groups: groups in the templates' resource groups that carry this
//! deployment's owner tag but whose run is gone or already cleaned up (a start that crashed after
//! ARM accepted the group, a record deleted by hand). The `Reconcile` timer deletes them, so
//! nothing is left running and billing.

use std::collections::BTreeSet;

use crate::runs::{self, OWNER_TAG, RUN_TAG, Run};
use crate::state::AppState;
use crate::store::StoreError;

pub async fn delete_orphans(state: &AppState) -> Result<Vec<String>, StoreError> {
    let Some(aci) = &state.aci else {
        return Ok(Vec::new());
    };
    let owner = state.owner_tag();
    let resource_groups: BTreeSet<&str> = state
        .config
        .templates
        .iter()
        .filter(|t| t.container_group.is_none())
        .map(|t| t.resource_group.as_str())
        .collect();
    let mut lines = Vec::new();
    for resource_group in resource_groups {
        let groups = match aci.list_groups(resource_group).await {
            Ok(groups) => groups,
            Err(e) => {
                lines.push(format!(
                    "orphans in {resource_group}: cannot list container groups ({e})"
                ));
                continue;
            }
        };
        for group in groups {
            let tags = &group["tags"];
            let (Some(name), Some(run_id)) = (group["name"].as_str(), tags[RUN_TAG].as_str())
            else {
                continue;
            };
            if tags[OWNER_TAG].as_str() != Some(owner.as_str()) {
                continue;
            }
            let owned = state
                .store
                .get::<Run>(&runs::key(run_id))
                .await?
                .is_some_and(|run| !run.value.group_deleted);
            if owned {
                continue;
            }
            match aci.delete_group(resource_group, name).await {
                Ok(()) => lines.push(format!(
                    "orphaned group {name} (run {run_id}) deleted from {resource_group}"
                )),
                Err(e) => lines.push(format!("orphaned group {name}: cannot delete ({e})")),
            }
        }
    }
    Ok(lines)
}
