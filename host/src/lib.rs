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
//! - [`aws`]: AWS through the official SDK (STS so far): the platform principal.
//! - [`arn`]: parsing and checking the ARNs a project names (secret, stream, role).
//! - [`schedule`]: EventBridge schedule expressions: parse, validate, next firing in a timezone.
//! - [`config`]: `sluice serve` settings from TOML and `SLUICE_*` variables.
//! - [`metrics`]: counters and histograms rendered in Prometheus text format.
//! - [`server`]: runs the daemon until a shutdown future resolves.
//! - [`cli`]: the `sluice` command line: `serve` and `plugin test`.
//!
//! `ARCHITECTURE.md` at the repository root is the map of how these fit together.

pub mod api;
pub mod arn;
pub mod aws;
pub mod cli;
pub mod config;
pub mod metrics;
pub mod runtime;
pub mod schedule;
pub mod server;
pub mod store;
