//! The emulator's REST contracts, driven end to end over HTTP.

mod support;

mod aci;
mod batch;
mod binary;
mod conformance;
mod control;
mod identity;
mod keyvault;
