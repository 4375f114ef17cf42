//! Sluice: a multi-tenant host daemon that polls external HTTP APIs on a schedule, hands each
//! response to a tenant-supplied WebAssembly component, and delivers the records to the tenant's
//! Kinesis stream.
//!
//! Modules, each the only importer of its outside crate:
//!
//! - [`runtime`]: the sandboxed component runtime (wasmtime): load, check and call plugins under
//!   per-call limits.
//! - [`cli`]: the `sluice` command line, including `sluice plugin test`.
//!
//! `ARCHITECTURE.md` at the repository root is the map of how these fit together.

pub mod cli;
pub mod runtime;
