//! A panic hook that reports a panic on one line of stderr.
//!
//! The default hook spreads a panic over several lines and ends with a note about
//! `RUST_BACKTRACE`, while the host reports the last stderr line with the trap. One line that
//! carries the location and the message keeps that report useful.

use std::io::Write;
use std::panic::PanicHookInfo;
use std::sync::Once;

/// Installs the hook once per instance; [`export!`](crate::export) calls it on every entry.
#[doc(hidden)]
pub fn install_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| std::panic::set_hook(Box::new(report)));
}

/// Writes `panicked at <file>:<line>:<column>: <message>` to stderr, with any line breaks in the
/// message replaced by spaces so that the whole report stays on one line.
fn report(info: &PanicHookInfo<'_>) {
    let _ = writeln!(std::io::stderr(), "{}", one_line(info));
}

fn one_line(info: &PanicHookInfo<'_>) -> String {
    let message = info.payload_as_str().unwrap_or("a panic with a non-string payload");
    let location = info.location().map(|l| format!(" at {}:{}:{}", l.file(), l.line(), l.column()));
    format!("panicked{}: {}", location.unwrap_or_default(), message.replace(['\r', '\n'], " "))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Runs `f`, which panics, with a hook that records the one-line report instead of printing.
    fn report_of(f: fn()) -> String {
        static SEEN: Mutex<Option<String>> = Mutex::new(None);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(|info| *SEEN.lock().unwrap() = Some(one_line(info))));
        let _ = std::panic::catch_unwind(f);
        std::panic::set_hook(previous);
        SEEN.lock().unwrap().take().expect("the hook ran")
    }

    #[test]
    fn reports_location_and_message_on_one_line() {
        let report = report_of(|| panic!("first line\nsecond {}", "line"));
        assert!(report.starts_with("panicked at "), "{report}");
        assert!(report.contains("src/panic.rs:"), "{report}");
        assert!(report.ends_with(": first line second line"), "{report}");
        let report = report_of(|| std::panic::panic_any(42));
        assert!(report.ends_with(": a panic with a non-string payload"), "{report}");
    }
}
