//! Sluice's one integration-test binary. Each module covers one area against real components
//! built from `plugins/` (and, in later areas, the real binary and real peers on loopback).

mod api;
mod authz;
mod cache;
mod cli;
mod daemon;
mod examples;
mod fixtures;
mod openapi;
mod plugins_api;
mod projects_api;
