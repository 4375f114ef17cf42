//! Write Sluice transform plugins in Rust.
//!
//! A Sluice plugin is a WebAssembly component that implements the `transformer` world of the
//! `sluice:plugin` WIT package (`wit/sluice.wit` in the Sluice repository). On every run of a
//! project the host calls [`Plugin::prepare`] to shape the outgoing HTTP request, fetches it, and
//! calls [`Plugin::transform`] on the response; the returned [`Record`]s go to the project's
//! Kinesis stream, and the returned state comes back in [`Poll::state`] on the next run.
//!
//! This crate generates the bindings for that world, re-exports its types with helper methods,
//! and provides the [`Plugin`] trait and the [`export!`] macro that turns an implementation into
//! the component's exports.
//!
//! # Example
//!
//! A complete plugin that turns a JSON array into one record per element, keyed by its `id`:
//!
//! ```
//! use sluice_plugin::{Error, Output, Plugin, Poll, Record, Response, log};
//!
//! struct Orders;
//!
//! impl Plugin for Orders {
//!     fn transform(_poll: &Poll, response: Response) -> Result<Output, Error> {
//!         let orders: Vec<serde_json::Value> = response.json()?;
//!         log::info(&format!("{} orders", orders.len()));
//!         let records = orders
//!             .iter()
//!             .map(|order| Record::json(order, order["id"].to_string()))
//!             .collect::<Result<Vec<_>, _>>()?;
//!         Ok(Output::new(records))
//!     }
//! }
//!
//! sluice_plugin::export!(Orders);
//! ```
//!
//! Build it as a `cdylib` crate for the `wasm32-wasip2` target:
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! sluice-plugin = { path = "../plugin-sdk" }
//! serde_json = "1"
//! ```
//!
//! `cargo build --release --target wasm32-wasip2` then writes the component to
//! `target/wasm32-wasip2/release/<crate_name>.wasm`, ready to upload.
//!
//! # Errors and panics
//!
//! Return [`Error::rejected`] for input that will never work (the run fails and the state stays
//! where it was) and [`Error::retry`] for a transient problem (the run is retried on the
//! project's schedule). A panic traps the component: the host reports it as a plugin failure with
//! the panic message, which [`export!`] prints to stderr on one line (`panicked at
//! <file>:<line>:<column>: <message>`) so that the host can pick it up. Prefer returning an error.
//!
//! # Testing natively
//!
//! The crate also builds for the host's own target, so a plugin's logic can be unit tested with a
//! plain `cargo test`: call `<MyPlugin as Plugin>::transform(&poll, response)` directly. Outside
//! WebAssembly the [`log`] functions print to stderr instead of calling the host.

#![warn(missing_docs)]

mod json;
pub mod log;
#[doc(hidden)]
pub mod panic;
mod query;
mod request;
mod types;

/// The bindings that `wit-bindgen` generates for the `transformer` world.
///
/// Only [`export!`] should use this module; plugins use the re-exports at the crate root.
#[doc(hidden)]
// The generated code is not ours to restyle, and its ABI shims take one argument per flattened
// WIT value.
#[allow(clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "transformer",
        additional_derives: [PartialEq, Eq],
        pub_export_macro: true,
        export_macro_name: "export_transformer",
        default_bindings_module: "sluice_plugin::bindings",
    });
}

pub use bindings::sluice::plugin::types::{Error, Output, Poll, Record, Request, Response};
/// The `serde_json` crate this SDK uses, re-exported so plugins need not depend on it.
pub use serde_json;

/// A transform plugin: implement this on a unit struct and export it with [`export!`].
///
/// The host may run any call on a fresh instance, so keep anything that must outlive a call in
/// the state returned through [`Output::with_state`], not in statics.
pub trait Plugin {
    /// Adjusts the request before the host sends it, once per page, the first included.
    ///
    /// The default returns the request unchanged. A typical override adds a query parameter from
    /// the cursor in [`Poll::state`] with [`Request::with_query`].
    fn prepare(_poll: &Poll, request: Request) -> Result<Request, Error> {
        Ok(request)
    }

    /// Turns one response into records, and optionally a new state and a next page.
    fn transform(poll: &Poll, response: Response) -> Result<Output, Error>;
}

/// Makes the component export the `transformer` world, implemented by a [`Plugin`] type.
///
/// Invoke it once per plugin crate, at the top level: `sluice_plugin::export!(MyPlugin);`.
#[macro_export]
macro_rules! export {
    ($plugin:ty) => {
        const _: () = {
            // The generated export macro takes a plain identifier, so an adapter struct stands in
            // for `$plugin`, which may be a path.
            struct __SluiceGuest;

            impl $crate::bindings::Guest for __SluiceGuest {
                fn prepare(
                    poll: $crate::Poll,
                    request: $crate::Request,
                ) -> ::core::result::Result<$crate::Request, $crate::Error> {
                    $crate::panic::install_hook();
                    <$plugin as $crate::Plugin>::prepare(&poll, request)
                }

                fn transform(
                    poll: $crate::Poll,
                    response: $crate::Response,
                ) -> ::core::result::Result<$crate::Output, $crate::Error> {
                    $crate::panic::install_hook();
                    <$plugin as $crate::Plugin>::transform(&poll, response)
                }
            }

            $crate::bindings::export_transformer! { __SluiceGuest with_types_in $crate::bindings }
        };
    };
}
