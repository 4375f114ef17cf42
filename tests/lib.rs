//! Shared support for Sluice's integration tests: where the built plugins and the `sluice`
//! binary are, and small builders for plugin inputs.
//!
//! The tests themselves live in `e2e/`, compiled into one test binary.

use std::path::PathBuf;
use std::sync::OnceLock;

use sluice::runtime::{Plugin, Poll, Response, Runtime, RuntimeConfig};

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ lives in the workspace root").to_path_buf()
}

/// The directory holding the plugin components: `SLUICE_PLUGINS_DIR`, set by `cargo xtask test`,
/// or the plugins workspace's release output.
pub fn plugins_dir() -> PathBuf {
    std::env::var_os("SLUICE_PLUGINS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("plugins/target/wasm32-wasip2/release"))
}

/// The bytes of a built plugin, by crate name (`json-split` or `json_split`).
pub fn plugin_bytes(name: &str) -> Vec<u8> {
    let path = plugins_dir().join(format!("{}.wasm", name.replace('-', "_")));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!("cannot read plugin {}: {e}; build the plugins first with `cargo xtask plugins`", path.display())
    })
}

/// The `sluice` binary built for this test run: `SLUICE_BIN`, or `target/<profile>/sluice` next
/// to this test executable.
pub fn sluice_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("SLUICE_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test executable has a path");
    // target/debug/deps/e2e-<hash> → target/debug/sluice
    let path =
        exe.parent().and_then(|deps| deps.parent()).expect("tests run from target/<profile>/deps").join("sluice");
    assert!(path.is_file(), "{} is missing; build it with `cargo build -p sluice-host`", path.display());
    path
}

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
