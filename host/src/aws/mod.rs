//! AWS access through the official SDK: the only module that imports it.
//!
//! Credentials, region and endpoint come from the SDK's standard chain and variables
//! (`AWS_REGION`, `AWS_ENDPOINT_URL`, profiles, instance roles, …), so pointing Sluice at a local
//! emulator needs no Sluice-specific setting.
//!
//! `aws` knows nothing of HTTP routes or storage.

mod principal;

pub use principal::{platform_principal, principal_from_caller_arn};
