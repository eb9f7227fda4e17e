//! Integration tests: one binary, every test through the real executable.

mod harness;

mod batch_pools;
mod container_runs;
mod harness_fidelity;
mod host_protocol;
mod key_vault_secrets;
mod standalone_mode;
mod startup;
