//! Sluice: a multi-tenant host daemon that polls external HTTP APIs on a schedule, hands each
//! response to a tenant-supplied WebAssembly component, and delivers the records to the tenant's
//! Kinesis stream.
//!
//! Modules, each the only importer of its outside crate:
//!
//! - [`runtime`]: the sandboxed component runtime (wasmtime): load, check and call plugins under
//!   per-call limits.
//! - [`store`]: persistence (sled): tenants and their key hashes, durable before a response.
//! - [`api`]: the HTTP API (axum): `fn app(state) -> Router`, one error type, auth.
//! - [`config`]: `sluice serve` settings from TOML and `SLUICE_*` variables.
//! - [`server`]: runs the daemon until a shutdown future resolves.
//! - [`cli`]: the `sluice` command line: `serve` and `plugin test`.
//!
//! `ARCHITECTURE.md` at the repository root is the map of how these fit together.

pub mod api;
pub mod cli;
pub mod config;
pub mod runtime;
pub mod server;
pub mod store;
