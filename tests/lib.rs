//! Shared support for Sluice's integration tests, by job:
//!
//! - `paths.rs`: where the workspace, the built plugins and the `sluice` binary are.
//! - `inputs.rs`: one shared runtime and small builders for plugin inputs.
//! - `test_api.rs`: [`TestApi`], the API in process over a fresh store.
//! - `daemon.rs`: [`Daemon`], the real `sluice serve` with its log captured and checked.
//! - `http.rs`: the small HTTP/1.1 client the tests talk to a daemon with.
//! - `browser.rs`: [`Browser`], headless Chromium over WebDriver, for the console's tests.
//! - `moto.rs`: [`Moto`], moto's server on a port of its own.
//! - `secret_registry.rs`: every secret a helper issued, and the scan for them.
//! - `stream_tail.rs`: a tenant's stream read back as the tenant would, for tests and the demo.
//! - `source.rs`, `hostile_source.rs`, `fault_proxy.rs`, `tenant_account.rs` and `world.rs`: the
//!   peers of the data plane, and all of them together.
//!
//! The tests themselves live in `e2e/`, compiled into one test binary.

mod browser;
mod daemon;
pub mod fault_proxy;
pub mod hostile_source;
mod http;
mod inputs;
mod moto;
mod paths;
pub mod secret_registry;
pub mod source;
pub mod stream_tail;
pub mod tenant_account;
mod test_api;
pub mod world;

pub use browser::Browser;
pub use daemon::Daemon;
pub use http::{http_call, http_call_raw, http_text};
pub use inputs::{load, poll, response, shared_runtime};
pub use moto::Moto;
pub use paths::{plugin_bytes, plugin_path, plugins_dir, root, sluice_bin};
pub use secret_registry::{assert_no_secrets, canary, leaked_secrets, register_secret, wire_log_lines};
pub use test_api::{RawResponse, TestApi};

/// The operator token the API tests use.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// The platform principal the API tests configure.
pub const PLATFORM_PRINCIPAL: &str = "arn:aws:iam::111111111111:role/sluice-test";
