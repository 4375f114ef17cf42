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

/// An upload compiles on threads at the plugin threads' lowest priority, so that a large
/// component compiling takes only the CPU the runs leave idle: the compile threads the daemon
/// started for it are all at nice 19, and so are the plugin threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_compile_on_threads_at_the_lowest_priority() {
    let world = sluice_tests::world::World::start();
    let tenant = world.tenant("acme", "111111111111").await;
    world.upload(&tenant, "json-split");
    let threads = world.daemon().threads();
    let compile: Vec<&(String, i32)> = threads.iter().filter(|(name, _)| name.starts_with("sluice-compile")).collect();
    assert!(!compile.is_empty(), "no compile threads among {threads:?}");
    assert!(compile.iter().all(|(_, nice)| *nice == 19), "compile threads above nice 19: {compile:?}");
    let plugin: Vec<&(String, i32)> = threads.iter().filter(|(name, _)| name.starts_with("sluice-plugin")).collect();
    assert!(!plugin.is_empty() && plugin.iter().all(|(_, nice)| *nice == 19), "{plugin:?}");
    // The threads that serve the API and schedule runs keep the normal priority.
    assert!(threads.iter().any(|(name, nice)| !name.starts_with("sluice-") && *nice == 0), "{threads:?}");
}
