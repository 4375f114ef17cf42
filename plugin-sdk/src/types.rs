//! Helper methods on the generated `poll`, `response`, `record`, `output` and `error` types.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Output, Poll, Record, Request, Response, json};

impl Poll {
    /// The value of the project's plugin setting `name`, or `None` when it is not set.
    pub fn setting(&self, name: &str) -> Option<&str> {
        self.settings.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// The stored state parsed as JSON, or `None` before the first successful run.
    ///
    /// A state that does not parse as `T` gives [`Error::Rejected`]: it was written by another
    /// version of the plugin, and the project's state must be reset.
    pub fn state_json<T: DeserializeOwned>(&self) -> Result<Option<T>, Error> {
        self.state
            .as_deref()
            .map(|bytes| {
                json::parse(bytes, "stored state").map_err(|e| {
                    Error::Rejected(format!(
                        "{}; reset the project's state if the plugin's state format changed",
                        e.message()
                    ))
                })
            })
            .transpose()
    }
}

impl Response {
    /// The value of the first header called `name` (compared case-insensitively), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    /// Whether the status is in the 2xx range.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as UTF-8 text, or [`Error::Rejected`] when it is not valid UTF-8.
    pub fn text(&self) -> Result<&str, Error> {
        std::str::from_utf8(&self.body).map_err(|e| Error::Rejected(format!("response body is not valid UTF-8: {e}")))
    }

    /// The body parsed as JSON into `T`.
    ///
    /// Malformed JSON gives `Error::Rejected("response body is not valid JSON: ...")` with
    /// serde_json's line and column; JSON of another shape than `T` gives
    /// `Error::Rejected("response body does not have the expected shape: ...")`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        json::parse(&self.body, "response body")
    }
}

impl Record {
    /// A record with the given payload and partition key, and no explicit hash key.
    pub fn new(data: impl Into<Vec<u8>>, partition_key: impl Into<String>) -> Self {
        Self { data: data.into(), partition_key: partition_key.into(), explicit_hash_key: None }
    }

    /// A record whose payload is `value` serialized as compact JSON.
    pub fn json<T: Serialize + ?Sized>(value: &T, partition_key: impl Into<String>) -> Result<Self, Error> {
        Ok(Self::new(json::to_bytes(value, "record")?, partition_key))
    }

    /// Sets the explicit hash key (a decimal 128-bit integer) that picks the shard directly.
    pub fn with_explicit_hash_key(mut self, key: impl Into<String>) -> Self {
        self.explicit_hash_key = Some(key.into());
        self
    }
}

impl Output {
    /// An output that delivers `records`, keeps the current state and ends the run.
    pub fn new(records: Vec<Record>) -> Self {
        Self { records, state: None, next: None }
    }

    /// Sets the state to commit once every record of the run is delivered.
    pub fn with_state(mut self, state: impl Into<Vec<u8>>) -> Self {
        self.state = Some(state.into());
        self
    }

    /// Sets the state to `value` serialized as JSON; read it back with [`Poll::state_json`].
    pub fn with_json_state<T: Serialize + ?Sized>(mut self, value: &T) -> Result<Self, Error> {
        self.state = Some(json::to_bytes(value, "state")?);
        Ok(self)
    }

    /// Asks the host to fetch `request` as the next page of the same run.
    pub fn with_next(mut self, request: Request) -> Self {
        self.next = Some(request);
        self
    }
}

impl Default for Output {
    /// An output with no records, no new state and no next page.
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl Error {
    /// The input is bad and retrying will not help: the run fails and the state stays put.
    pub fn rejected(message: impl Into<String>) -> Self {
        Self::Rejected(message.into())
    }

    /// A transient problem: the run fails and is retried on the project's schedule.
    pub fn retry(message: impl Into<String>) -> Self {
        Self::Retry(message.into())
    }

    /// The message, whichever the kind of error.
    pub fn message(&self) -> &str {
        match self {
            Self::Rejected(message) | Self::Retry(message) => message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll(state: Option<&str>) -> Poll {
        Poll {
            project_id: "p1".into(),
            tenant_id: "t1".into(),
            scheduled_at_ms: 0,
            state: state.map(|s| s.as_bytes().to_vec()),
            settings: vec![("a".into(), "1".into()), ("b".into(), "2".into())],
        }
    }

    #[test]
    fn setting_finds_by_exact_name() {
        let poll = poll(None);
        assert_eq!(poll.setting("b"), Some("2"));
        assert_eq!(poll.setting("B"), None);
    }

    #[test]
    fn state_json_is_none_without_state_and_rejects_garbage() {
        assert_eq!(poll(None).state_json::<serde_json::Value>(), Ok(None));
        let value = poll(Some(r#"{"cursor":"x"}"#)).state_json::<serde_json::Value>();
        assert_eq!(value, Ok(Some(serde_json::json!({"cursor": "x"}))));
        let err = poll(Some("nope")).state_json::<serde_json::Value>();
        assert!(err.unwrap_err().message().starts_with("stored state is not valid JSON"));
    }

    #[test]
    fn response_helpers() {
        let response = Response {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: b"[1,2]".to_vec(),
        };
        assert_eq!(response.header("Content-Type"), Some("application/json"));
        assert!(response.is_success());
        assert_eq!(response.text(), Ok("[1,2]"));
        assert_eq!(response.json::<Vec<u8>>(), Ok(vec![1, 2]));
    }

    #[test]
    fn record_and_output_builders() {
        let record = Record::json(&serde_json::json!({"a": 1}), "k").unwrap();
        assert_eq!(record.data, br#"{"a":1}"#);
        assert_eq!(record.partition_key, "k");
        let output = Output::new(vec![record])
            .with_json_state(&serde_json::json!({"cursor": "c"}))
            .unwrap()
            .with_next(Request::get("https://api.example.com/x"));
        assert_eq!(output.state.as_deref(), Some(&br#"{"cursor":"c"}"#[..]));
        assert_eq!(output.next.unwrap().method, "GET");
        assert_eq!(Output::default().records, vec![]);
    }

    #[test]
    fn error_constructors() {
        assert_eq!(Error::rejected("bad"), Error::Rejected("bad".into()));
        assert_eq!(Error::retry("later").message(), "later");
    }
}
