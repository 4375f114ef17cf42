//! Compiled plugins are cached on disk by content hash and engine compatibility, so that a
//! restarted host loads them without compiling again.

use std::time::Instant;

use sluice::runtime::{Limits, Runtime, RuntimeConfig};
use sluice_tests::{plugin_bytes, poll, response};

fn runtime_with_cache(dir: &std::path::Path) -> Runtime {
    Runtime::new(RuntimeConfig { cache_dir: Some(dir.to_path_buf()), ..RuntimeConfig::default() }).unwrap()
}

fn cached_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

#[tokio::test]
async fn a_restarted_runtime_reuses_the_compiled_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = plugin_bytes("json-split");

    let first = runtime_with_cache(dir.path());
    let started = Instant::now();
    let plugin = first.load(&wasm).unwrap();
    let compile = started.elapsed();
    let files = cached_files(dir.path());
    assert_eq!(files.len(), 1, "one artifact per plugin: {files:?}");
    let name = files[0].file_name().unwrap().to_str().unwrap().to_string();
    assert!(name.starts_with(plugin.id().trim_start_matches("sha256:")) && name.ends_with(".cwasm"), "{name}");
    let written = std::fs::metadata(&files[0]).unwrap().modified().unwrap();
    drop(first);

    // A new runtime (a restart) loads the artifact instead of compiling: the file is untouched
    // and loading takes a fraction of the compile.
    let second = runtime_with_cache(dir.path());
    let started = Instant::now();
    let plugin = second.load(&wasm).unwrap();
    let reload = started.elapsed();
    assert_eq!(cached_files(dir.path()), files);
    assert_eq!(std::fs::metadata(&files[0]).unwrap().modified().unwrap(), written);
    assert!(reload * 3 < compile, "reload took {reload:?}, compile {compile:?}");
    let output = second.transform(&plugin, &Limits::default(), &poll(&[]), &response("[1, 2]")).await.result.unwrap();
    assert_eq!(output.records.len(), 2);
}

#[tokio::test]
async fn a_damaged_cache_entry_is_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = plugin_bytes("passthrough");
    runtime_with_cache(dir.path()).load(&wasm).unwrap();
    let files = cached_files(dir.path());
    std::fs::write(&files[0], b"not a compiled artifact").unwrap();

    let runtime = runtime_with_cache(dir.path());
    let plugin = runtime.load(&wasm).unwrap();
    let output = runtime.transform(&plugin, &Limits::default(), &poll(&[]), &response("hi")).await.result.unwrap();
    assert_eq!(output.records[0].data, b"hi");
    assert!(std::fs::metadata(&files[0]).unwrap().len() > 1000, "the entry was rewritten");
}
