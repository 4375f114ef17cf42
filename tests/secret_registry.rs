//! The secrets registry behind the suite's leak check: every API key and secret value a test
//! hands out or stores is registered here, and everything a daemon says (its log, `/metrics`,
//! every API response the helpers read) is checked against all of them.

use std::sync::{Mutex, OnceLock};

/// Values shorter than this are not registered as secrets: "k-1" or "old" occur in ordinary
/// text, and a check that fails on them would say nothing about a leak.
const MIN_SECRET_LEN: usize = 8;

/// Every secret value this test process has handed out or stored: API keys the API issued to
/// tenants, and keys tests put into tenants' secrets or require at the source. Any daemon's output
/// is checked against all of them: the values are random or distinctive, so one test's secret in
/// another test's daemon is a leak all the same.
fn secret_registry() -> &'static Mutex<std::collections::BTreeSet<String>> {
    static SECRETS: OnceLock<Mutex<std::collections::BTreeSet<String>>> = OnceLock::new();
    SECRETS.get_or_init(Mutex::default)
}

/// Registers a secret value; a JSON object's string fields are registered too, since a project
/// may use one field of a secret as its key.
pub fn register_secret(value: &str) {
    let value = value.trim();
    if let Ok(serde_json::Value::Object(fields)) = serde_json::from_str::<serde_json::Value>(value) {
        fields.values().filter_map(|v| v.as_str()).for_each(register_secret);
    }
    if value.len() >= MIN_SECRET_LEN {
        secret_registry().lock().unwrap_or_else(|e| e.into_inner()).insert(value.to_string());
    }
}

/// A distinctive secret value (`sk-LEAKCANARY-<label>-<random>`), registered.
pub fn canary(label: &str) -> String {
    let value = format!("sk-LEAKCANARY-{label}-{}", sluice::store::random_hex(8));
    register_secret(&value);
    value
}

/// The registered secrets that occur in `text`, as they are or URL-encoded (as in a query).
pub fn leaked_secrets(text: &str) -> Vec<String> {
    let secrets = secret_registry().lock().unwrap_or_else(|e| e.into_inner()).clone();
    let encoded = |secret: &str| -> String {
        let byte = |b: u8| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => (b as char).to_string(),
            b' ' => "+".to_string(),
            other => format!("%{other:02X}"),
        };
        secret.bytes().map(byte).collect()
    };
    secrets.into_iter().filter(|secret| text.contains(secret.as_str()) || text.contains(&encoded(secret))).collect()
}

/// Panics when a registered secret occurs in `text`; `channel` names where the text came from.
pub fn assert_no_secrets(channel: &str, text: &str) {
    report_leaks(channel, leaked_secrets(text), text);
}

/// Panics naming the leaked secrets and quoting the lines of `text` that hold them.
fn report_leaks(channel: &str, leaked: Vec<String>, text: &str) {
    if leaked.is_empty() {
        return;
    }
    let lines: Vec<&str> = text.lines().filter(|line| !leaked_secrets(line).is_empty()).take(20).collect();
    panic!("secret values leaked into {channel}: {leaked:?}\n--- in ---\n{}", lines.join("\n"));
}

/// Registers the API key a response issues (tenant creation, key rotation) and checks the rest
/// of the response for secrets: an error message or a listing must never repeat one. A secret
/// the request carried in its path or body may come back (a 404 names the id it was given); one
/// it carried as its bearer token may not.
pub(crate) fn observe_response(path: &str, request_body: &[u8], channel: &str, body: &str) {
    let issued = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|json| json.get("api_key").and_then(|key| key.as_str()).map(str::to_string));
    let rest = match issued {
        Some(key) => {
            register_secret(&key);
            body.replace(&key, "")
        }
        None => body.to_string(),
    };
    let mut leaked = leaked_secrets(&rest);
    if !leaked.is_empty() {
        // Only now, as uploads can be large: what the request itself carried does not count.
        let echoed = leaked_secrets(&format!("{path} {}", String::from_utf8_lossy(request_body)));
        leaked.retain(|secret| !echoed.contains(secret));
    }
    report_leaks(channel, leaked, &rest);
}

/// The lines of a daemon's log at `level` (`"TRACE"`, `"DEBUG"`, ...) from the crates that print
/// whole requests, which the daemon holds at debug (`sluice::cli::WIRE_LOGGERS`). The log is
/// tracing's plain format: time, level, any spans, then `target: message`.
pub fn wire_log_lines<'a>(log: &'a str, level: &str) -> Vec<&'a str> {
    let from_wire_crate = |line: &str| {
        sluice::cli::WIRE_LOGGERS
            .iter()
            .any(|target| line.contains(&format!(" {target}::")) || line.contains(&format!(" {target}: ")))
    };
    log.lines().filter(|line| line.split_whitespace().nth(1) == Some(level) && from_wire_crate(line)).collect()
}
