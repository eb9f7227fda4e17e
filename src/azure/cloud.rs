//! `Cloud`: the Azure cloud the service talks to, and every endpoint and token scope that follows
//! from it (public, China, US Government).

use std::str::FromStr;
use std::sync::Arc;

use azure_core::cloud::CloudConfiguration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cloud {
    #[default]
    Public,
    China,
    UsGovernment,
}

impl Cloud {
    pub const NAMES: &'static str = "public, china, usgovernment";

    /// The Azure Resource Manager endpoint, without a trailing slash.
    pub fn arm_endpoint(self) -> &'static str {
        match self {
            Cloud::Public => "https://management.azure.com",
            Cloud::China => "https://management.chinacloudapi.cn",
            Cloud::UsGovernment => "https://management.usgovcloudapi.net",
        }
    }

    /// The Entra ID authority host.
    pub fn authority_host(self) -> &'static str {
        match self {
            Cloud::Public => "login.microsoftonline.com",
            Cloud::China => "login.chinacloudapi.cn",
            Cloud::UsGovernment => "login.microsoftonline.us",
        }
    }

    /// The DNS suffix of Key Vault vaults (`{vault}.{suffix}`).
    pub fn key_vault_suffix(self) -> &'static str {
        match self {
            Cloud::Public => "vault.azure.net",
            Cloud::China => "vault.azure.cn",
            Cloud::UsGovernment => "vault.usgovcloudapi.net",
        }
    }

    /// The DNS suffix of Batch accounts (`{account}.{region}.{suffix}`).
    pub fn batch_suffix(self) -> &'static str {
        match self {
            Cloud::Public => "batch.azure.com",
            Cloud::China => "batch.chinacloudapi.cn",
            Cloud::UsGovernment => "batch.usgovcloudapi.net",
        }
    }

    /// The DNS suffix of storage accounts (`{account}.blob.{suffix}`).
    pub fn storage_suffix(self) -> &'static str {
        match self {
            Cloud::Public => "core.windows.net",
            Cloud::China => "core.chinacloudapi.cn",
            Cloud::UsGovernment => "core.usgovcloudapi.net",
        }
    }

    pub fn arm_scope(self) -> String {
        format!("{}/.default", self.arm_endpoint())
    }

    /// The resource ends in a slash (`https://batch.core.windows.net/`), hence the double slash
    /// the Batch spec writes in its scope.
    pub fn batch_scope(self) -> &'static str {
        match self {
            Cloud::Public => "https://batch.core.windows.net//.default",
            Cloud::China => "https://batch.chinacloudapi.cn//.default",
            Cloud::UsGovernment => "https://batch.core.usgovcloudapi.net//.default",
        }
    }

    pub fn key_vault_scope(self) -> String {
        format!("https://{}/.default", self.key_vault_suffix())
    }

    /// Whether `host` belongs to a service of this cloud that computebridge calls (ARM, Entra ID,
    /// Key Vault, Batch); the development transport sends exactly these to the emulator.
    pub fn serves_host(self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        host == self.arm_endpoint().trim_start_matches("https://")
            || host == self.authority_host()
            || host.ends_with(&format!(".{}", self.key_vault_suffix()))
            || host.ends_with(&format!(".{}", self.batch_suffix()))
    }

    pub fn configuration(self) -> Arc<CloudConfiguration> {
        Arc::new(match self {
            Cloud::Public => CloudConfiguration::AzurePublic,
            Cloud::China => CloudConfiguration::AzureChina,
            Cloud::UsGovernment => CloudConfiguration::AzureGovernment,
        })
    }
}

impl FromStr for Cloud {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "public" | "azurepublic" | "azurecloud" => Ok(Cloud::Public),
            "china" | "azurechina" | "azurechinacloud" => Ok(Cloud::China),
            "usgovernment" | "azuregovernment" | "azureusgovernment" => Ok(Cloud::UsGovernment),
            other => Err(format!("'{other}' is not one of: {}", Cloud::NAMES)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_follow_the_cloud() {
        assert_eq!(
            Cloud::Public.arm_scope(),
            "https://management.azure.com/.default"
        );
        assert_eq!(
            Cloud::China.key_vault_scope(),
            "https://vault.azure.cn/.default"
        );
        assert!(Cloud::Public.serves_host("ops.vault.azure.net"));
        assert!(Cloud::Public.serves_host("acct.westeurope.batch.azure.com"));
        assert!(Cloud::Public.serves_host("Management.Azure.Com"));
        assert!(!Cloud::Public.serves_host("ops.vault.azure.cn"));
        assert!(!Cloud::Public.serves_host("127.0.0.1"));
        assert!(!Cloud::Public.serves_host("evilvault.azure.net"));
        assert!(Cloud::UsGovernment.serves_host("login.microsoftonline.us"));
        assert_eq!("AzureUSGovernment".parse(), Ok(Cloud::UsGovernment));
        assert!("mars".parse::<Cloud>().unwrap_err().contains("public"));
    }
}
