//! Lines for the run's log, shown in run history and by `sluice plugin test`.
//!
//! The host truncates lines at 4 KiB and keeps at most 1,000 lines and 64 KiB per call, counting
//! and dropping the rest, so log what helps diagnose a run rather than every record.
//!
//! Outside WebAssembly (in a plugin's native unit tests) there is no host, so lines go to stderr.

/// The severity of a log line.
pub use crate::bindings::sluice::plugin::host::Level;

/// Appends `message` to the run's log at `level`.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::sluice::plugin::host::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("{}: {message}", name(level));
}

/// The level's WIT name, for the native fallback.
#[cfg(not(target_arch = "wasm32"))]
fn name(level: Level) -> &'static str {
    match level {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

/// Logs at [`Level::Trace`].
pub fn trace(message: &str) {
    log(Level::Trace, message);
}

/// Logs at [`Level::Debug`].
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Logs at [`Level::Info`].
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Logs at [`Level::Warn`].
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Logs at [`Level::Error`].
pub fn error(message: &str) {
    log(Level::Error, message);
}
