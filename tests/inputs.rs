//! One runtime shared by the tests, and small builders for plugin inputs.

use std::sync::OnceLock;

use sluice::runtime::{Plugin, Poll, Response, Runtime, RuntimeConfig};

use crate::plugin_bytes;

/// One runtime shared by the tests in this binary, the way the daemon shares one engine between
/// all tenants.
pub fn shared_runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::new(RuntimeConfig::default()).expect("the runtime starts"))
}

/// Loads a built plugin into a runtime, panicking with the load error.
pub fn load(runtime: &Runtime, name: &str) -> Plugin {
    runtime.load(&plugin_bytes(name)).unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

/// A poll for project `p-1` of tenant `t-1` with the given settings and no state.
pub fn poll(settings: &[(&str, &str)]) -> Poll {
    let mut settings: Vec<(String, String)> = settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    settings.sort();
    Poll {
        project_id: "p-1".into(),
        tenant_id: "t-1".into(),
        scheduled_at_ms: 1_700_000_000_000,
        state: None,
        settings,
    }
}

/// A 200 response with a JSON content type and the given body.
pub fn response(body: impl Into<Vec<u8>>) -> Response {
    Response { status: 200, headers: vec![("content-type".into(), "application/json".into())], body: body.into() }
}
