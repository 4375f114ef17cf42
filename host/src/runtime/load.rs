//! From uploaded bytes to a [`Plugin`]: compile (or reuse the on-disk cache), check the world and
//! the imports, and pre-link.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use super::bindings::TransformerPre;
use super::error::LoadError;
use super::{Plugin, Runtime};

/// The content id of a plugin: `sha256:` and the hex digest of its bytes.
pub fn plugin_id(wasm: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(wasm)))
}

/// Loads `wasm`, whose content id is `id` (hashing 18 MiB takes a while, so the caller's is used).
pub(crate) fn load(runtime: &Runtime, wasm: &[u8], id: String) -> Result<Plugin, LoadError> {
    let engine = runtime.engine();
    let component = match &runtime.config().cache_dir {
        Some(dir) => compile_cached(engine, wasm, &cache_path(engine, dir, &id))?,
        None => Component::new(engine, wasm).map_err(|e| LoadError::Invalid(format!("{e:#}")))?,
    };
    check_imports(engine, &component)?;
    check_exports(engine, &component)?;
    let pre = runtime.linker().instantiate_pre(&component).map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
    let pre = TransformerPre::new(pre).map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
    Ok(Plugin { id: Arc::from(id), size_bytes: wasm.len() as u64, pre })
}

/// Whether the on-disk cache holds the compiled form of the plugin `id`, so that loading it only
/// reads.
pub(crate) fn is_cached(runtime: &Runtime, id: &str) -> bool {
    let Some(dir) = &runtime.config().cache_dir else { return false };
    cache_path(runtime.engine(), dir, id).exists()
}

/// Cache entries are named by content hash and engine compatibility: a host built with another
/// wasmtime or other settings never reads an artifact it cannot run.
fn cache_path(engine: &Engine, dir: &Path, id: &str) -> PathBuf {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let digest = id.trim_start_matches("sha256:");
    dir.join(format!("{digest}-{:016x}.cwasm", hasher.finish()))
}

fn compile_cached(engine: &Engine, wasm: &[u8], path: &Path) -> Result<Component, LoadError> {
    if path.exists() {
        // SAFETY: only this host writes into its cache directory, from bytes it compiled itself;
        // tenant-supplied precompiled code is never deserialized.
        match unsafe { Component::deserialize_file(engine, path) } {
            Ok(component) => return Ok(component),
            Err(error) => tracing::warn!(path = %path.display(), "recompiling an unreadable cache entry: {error:#}"),
        }
    }
    let compiled = engine.precompile_component(wasm).map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
    // Write to a unique temporary name and rename, so that a crash or a concurrent load never
    // leaves a half-written artifact under the final name.
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, &compiled).map_err(|e| LoadError::Cache(format!("writing {}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(|e| LoadError::Cache(format!("renaming into {}: {e}", path.display())))?;
    // SAFETY: the file was just written by this host from its own compilation.
    unsafe { Component::deserialize_file(engine, path) }.map_err(|e| LoadError::Cache(format!("{e:#}")))
}

/// WASI packages a plugin may import; everything in them is linked with nothing granted.
const WASI_PACKAGES: [&str; 6] = ["cli", "clocks", "filesystem", "io", "random", "sockets"];

fn check_imports(engine: &Engine, component: &Component) -> Result<(), LoadError> {
    let ty = component.component_type();
    let mut forbidden: Vec<String> =
        ty.imports(engine).map(|(name, _)| name.to_string()).filter(|name| !import_allowed(name)).collect();
    if forbidden.is_empty() {
        return Ok(());
    }
    forbidden.sort();
    Err(LoadError::ForbiddenImport(forbidden.join(", ")))
}

fn import_allowed(name: &str) -> bool {
    let Some((path, version)) = name.split_once('@') else { return false };
    let Some((package, _interface)) = path.split_once('/') else { return false };
    match package.split_once(':') {
        Some(("sluice", "plugin")) => version.starts_with("0.1."),
        Some(("wasi", wasi)) => WASI_PACKAGES.contains(&wasi) && version.starts_with("0.2."),
        _ => false,
    }
}

fn check_exports(engine: &Engine, component: &Component) -> Result<(), LoadError> {
    let ty = component.component_type();
    let exports: Vec<(String, bool)> = ty
        .exports(engine)
        .map(|(name, item)| (name.to_string(), matches!(item.ty, ComponentItem::ComponentFunc(_))))
        .collect();
    let missing: Vec<&str> = ["prepare", "transform"]
        .into_iter()
        .filter(|want| !exports.iter().any(|(name, is_func)| name == want && *is_func))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let found = if exports.is_empty() {
        "nothing".to_string()
    } else {
        exports.iter().map(|(name, _)| format!("`{name}`")).collect::<Vec<_>>().join(", ")
    };
    let missing = missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(" and ");
    Err(LoadError::WrongWorld(format!("it does not export {missing} (it exports {found})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_only_the_host_interface_and_wasi_0_2() {
        assert!(import_allowed("sluice:plugin/host@0.1.0"));
        assert!(import_allowed("wasi:cli/stdout@0.2.6"));
        assert!(import_allowed("wasi:sockets/tcp@0.2.9"));
        assert!(!import_allowed("wasi:http/outgoing-handler@0.2.10"));
        assert!(!import_allowed("wasi:cli/stdout@0.3.0"));
        assert!(!import_allowed("fixture:evil/exfil@0.1.0"));
        assert!(!import_allowed("sluice:plugin/host"));
    }

    #[test]
    fn plugin_id_is_the_sha256_of_the_bytes() {
        assert_eq!(plugin_id(b""), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
