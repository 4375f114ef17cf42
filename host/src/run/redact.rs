//! Keeping the source's API key out of what a run says.
//!
//! The key never goes into a message on purpose, but a run's messages also quote what others
//! said: a source that repeats the request in an error body or a next-page link hands the key to
//! the plugin, whose rejection may quote it (serde's "invalid type: string \"...\"" does). So
//! before a failure reaches the run history, the project's status or a log, every form of the
//! keys the run used is replaced.

use super::failure::Failure;

/// Keys shorter than this are left alone: replacing "abc" would mangle ordinary words, and a key
/// that short is no secret to begin with.
const MIN_REDACTED_LEN: usize = 8;

/// What replaces a key.
const REDACTED: &str = "[redacted]";

impl Failure {
    /// The failure with every form of `keys` in its message replaced.
    pub(super) fn redacted(mut self, keys: &[String]) -> Self {
        self.message = redact(&self.message, keys);
        self
    }
}

/// `message` with each key replaced as it is, URL-encoded (as a query carries it), and escaped
/// the ways Rust's `Debug` and JSON quote strings.
pub(super) fn redact(message: &str, keys: &[String]) -> String {
    let mut forms: Vec<String> = Vec::new();
    for key in keys.iter().filter(|key| key.len() >= MIN_REDACTED_LEN) {
        let encoded: String = url::form_urlencoded::byte_serialize(key.as_bytes()).collect();
        let json = serde_json::to_string(key).unwrap_or_default();
        let json = json.trim_matches('"').to_string();
        forms.extend([key.clone(), encoded, key.escape_debug().to_string(), json]);
    }
    // Longer forms first, so that a form containing another is replaced whole.
    forms.sort_by_key(|form| std::cmp::Reverse(form.len()));
    forms.dedup();
    forms.iter().fold(message.to_string(), |message, form| message.replace(form.as_str(), REDACTED))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_of_a_key_is_replaced() {
        let keys = vec!["s3cret key/\"x\"".to_string()];
        let message = "sent s3cret key/\"x\", s3cret+key%2F%22x%22 and \"s3cret key/\\\"x\\\"\"";
        assert_eq!(redact(message, &keys), "sent [redacted], [redacted] and \"[redacted]\"");
    }

    #[test]
    fn short_keys_and_messages_without_keys_are_left_alone() {
        let message = "the source answered 401 to the old key";
        assert_eq!(redact(message, &["old".to_string()]), message);
        assert_eq!(redact(message, &["0123456789".to_string()]), message);
        assert_eq!(redact(message, &[]), message);
    }
}
