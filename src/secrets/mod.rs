//! Secrets from Key Vault at run time: references in configuration ([`reference`]) and the cache
//! that resolves them ([`store`]).

pub mod reference;
pub mod store;
