//! The one `bindgen!` site: host-side types and glue generated from `wit/`.
//!
//! Exports are called asynchronously so that a plugin can be time-sliced by epoch yields and cut
//! off by a timeout even while it waits in a WASI call. The `host` import stays synchronous: it
//! never blocks, and keeping it plain avoids a fiber switch per log line.

wasmtime::component::bindgen!({
    world: "transformer",
    path: "../wit",
    exports: { default: async },
    additional_derives: [PartialEq, Eq],
});

pub use sluice::plugin::host::Level;
pub use sluice::plugin::types::{Error as GuestError, Record};
