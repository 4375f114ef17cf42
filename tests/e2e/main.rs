//! Sluice's one integration-test binary. Each module covers one area against real components
//! built from `plugins/`, the real `sluice` binary, and real peers on loopback (moto, a fault
//! proxy, a source API).

mod api;
mod authz;
mod aws;
mod bad_output;
mod cache;
mod cli;
mod cluster;
mod console;
mod crash_loop;
mod daemon;
mod dataplane;
mod disk;
mod dynamo_store;
mod examples;
mod faults;
mod fixtures;
mod hostile_sources;
mod leaks;
mod noisy;
mod openapi;
mod plugin_new;
mod plugins_api;
mod projects_api;
mod python;
mod schemathesis;
mod shared_store;
mod store_compat;
mod store_export;
mod tenant_stack;
