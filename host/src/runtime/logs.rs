//! The run log a plugin call leaves behind: `host.log` lines plus captured stdout and stderr,
//! all bounded so that a plugin cannot make the host hold more than a few hundred KiB per call.

use serde::Serialize;

use super::bindings::Level;
use super::limits::{LOG_LINE_BYTES, Limits};

/// Where a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogSource {
    /// A call to the `host.log` import.
    Log,
    /// A line the plugin printed to stdout.
    Stdout,
    /// A line the plugin printed to stderr (a Rust panic message lands here).
    Stderr,
}

impl LogSource {
    /// The source's name as shown to people.
    pub fn as_str(self) -> &'static str {
        match self {
            LogSource::Log => "log",
            LogSource::Stdout => "stdout",
            LogSource::Stderr => "stderr",
        }
    }
}

/// The severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    /// The level's name as shown to people.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

impl From<Level> for LogLevel {
    fn from(level: Level) -> Self {
        match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        }
    }
}

/// One line of a plugin's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// Where the line came from.
    pub source: LogSource,
    /// How severe it is.
    pub level: LogLevel,
    /// The text, cut at 4 KiB.
    pub message: String,
}

/// Everything one call logged, within its limits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Logs {
    /// The lines kept, in order (stdout and stderr lines follow the `host.log` lines).
    pub lines: Vec<LogLine>,
    /// `host.log` lines dropped because the call's line or byte budget was spent.
    pub dropped_lines: u64,
    /// Bytes of stdout and stderr discarded past their cap.
    pub dropped_stdio_bytes: u64,
}

impl Logs {
    /// What best explains a trap from stderr: a Rust panic's message when there is one (std's
    /// default hook puts it on the line after `panicked at <place>:`), otherwise the last line
    /// that is not a backtrace hint.
    pub fn stderr_summary(&self) -> Option<String> {
        let stderr: Vec<&str> = self
            .lines
            .iter()
            .filter(|l| l.source == LogSource::Stderr && !l.message.trim().is_empty())
            .map(|l| l.message.as_str())
            .collect();
        if let Some(at) = stderr.iter().rposition(|l| l.contains("panicked at")) {
            let line = stderr[at];
            return Some(match stderr.get(at + 1) {
                Some(message) if line.trim_end().ends_with(':') => format!("{line} {message}"),
                _ => line.to_string(),
            });
        }
        stderr.iter().rev().find(|l| !l.starts_with("note: run with `RUST_BACKTRACE")).map(|l| l.to_string())
    }
}

/// Collects `host.log` lines within a call's budget.
#[derive(Debug)]
pub(crate) struct LogBuffer {
    logs: Logs,
    bytes: u64,
    max_lines: u32,
    max_bytes: u64,
}

impl LogBuffer {
    pub(crate) fn new(limits: &Limits) -> Self {
        Self { logs: Logs::default(), bytes: 0, max_lines: limits.log_lines, max_bytes: limits.log_bytes }
    }

    pub(crate) fn push(&mut self, source: LogSource, level: LogLevel, mut message: String) {
        truncate_at_char_boundary(&mut message, LOG_LINE_BYTES);
        let bytes = message.len() as u64;
        if self.logs.lines.len() as u64 >= u64::from(self.max_lines) || self.bytes + bytes > self.max_bytes {
            self.logs.dropped_lines += 1;
            return;
        }
        self.bytes += bytes;
        self.logs.lines.push(LogLine { source, level, message });
    }

    /// Appends captured stdio text line by line. Stdio has its own byte cap, so these lines do not
    /// count against the `host.log` budget.
    pub(crate) fn push_stdio(&mut self, source: LogSource, text: &str, discarded: u64) {
        let level = if source == LogSource::Stderr { LogLevel::Warn } else { LogLevel::Info };
        for line in text.lines() {
            let mut message = line.to_string();
            truncate_at_char_boundary(&mut message, LOG_LINE_BYTES);
            self.logs.lines.push(LogLine { source, level, message });
        }
        self.logs.dropped_stdio_bytes += discarded;
    }

    pub(crate) fn finish(self) -> Logs {
        self.logs
    }
}

fn truncate_at_char_boundary(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_lines_past_the_budget_and_cuts_long_ones() {
        let limits = Limits { log_lines: 2, ..Limits::default() };
        let mut buffer = LogBuffer::new(&limits);
        buffer.push(LogSource::Log, LogLevel::Info, "é".repeat(LOG_LINE_BYTES));
        buffer.push(LogSource::Log, LogLevel::Info, "two".into());
        buffer.push(LogSource::Log, LogLevel::Info, "three".into());
        let logs = buffer.finish();
        assert_eq!(logs.lines.len(), 2);
        assert_eq!(logs.lines[0].message.len(), LOG_LINE_BYTES);
        assert_eq!(logs.dropped_lines, 1);
    }

    #[test]
    fn stderr_summary_finds_the_panic_message_of_the_default_hook() {
        let mut buffer = LogBuffer::new(&Limits::default());
        let stderr = "\nthread '<unnamed>' panicked at src/lib.rs:3:5:\nboom\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        buffer.push_stdio(LogSource::Stderr, stderr, 0);
        let summary = buffer.finish().stderr_summary();
        assert_eq!(summary.as_deref(), Some("thread '<unnamed>' panicked at src/lib.rs:3:5: boom"));
    }
}
