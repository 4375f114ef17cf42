//! Where the workspace, the built plugins and the `sluice` binary are.

use std::path::PathBuf;

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

/// The path of a built plugin component, by file stem (`json_split`), as a command-line argument.
pub fn plugin_path(name: &str) -> String {
    plugins_dir().join(format!("{name}.wasm")).display().to_string()
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
