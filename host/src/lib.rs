//! Sluice: a multi-tenant host daemon that polls external HTTP APIs on a schedule, hands each
//! response to a tenant-supplied WebAssembly component, and delivers the records to the tenant's
//! Kinesis stream.
//!
//! Modules, each the only importer of its outside crate:
//!
//! - [`runtime`]: the sandboxed component runtime (wasmtime): load, check and call plugins under
//!   per-call limits.
//! - [`store`]: persistence (sled, or DynamoDB and S3 for several hosts): tenants, plugins, projects,
//!   runs, the outbox and state.
//! - [`api`]: the HTTP API (axum): `fn app(state) -> Router`, one error type, auth.
//! - [`aws`]: AWS through the official SDK: AssumeRole, Secrets Manager and Kinesis PutRecords.
//! - [`source`]: fetching tenant sources (reqwest) behind the egress guard and body caps.
//! - [`scheduler`]: one timer queue firing every project on its schedule, with jitter and caps.
//! - [`run`]: the pipeline that joins them: fetch, transform, outbox, deliver, commit.
//! - [`cluster`]: hosts of a shared store sharing its projects by leases, with fencing.
//! - [`arn`]: parsing and checking the ARNs a project names (secret, stream, role).
//! - [`calendar`]: EventBridge schedule expressions and time zones: parse, validate, next firing.
//! - [`config`]: `sluice serve` settings from TOML and `SLUICE_*` variables.
//! - [`metrics`]: counters and histograms rendered in Prometheus text format.
//! - [`records`]: what a run may hand to the outbox: Kinesis' rules per record, state and run limits.
//! - [`server`]: runs the daemon until a shutdown future resolves.
//! - [`cli`]: the `sluice` command line: `serve`, `plugin test`, `store export` and `store import`.
//!
//! `ARCHITECTURE.md` at the repository root is the map of how these fit together.

pub mod api;
pub mod arn;
pub mod aws;
pub mod calendar;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod metrics;
pub mod records;
pub mod run;
pub mod runtime;
pub mod scheduler;
pub mod server;
pub mod source;
pub mod store;
