//! JSON conversions shared by the helper methods, with error messages that name what was bad.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::error::Category;

use crate::Error;

/// Parses `bytes` as JSON into `T`, describing the input as `what` in the error.
///
/// Syntax errors and type mismatches get different wording, so the message says whether the
/// input is not JSON at all or is JSON of an unexpected shape.
pub(crate) fn parse<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        Category::Data => Error::Rejected(format!("{what} does not have the expected shape: {e}")),
        Category::Io | Category::Syntax | Category::Eof => Error::Rejected(format!("{what} is not valid JSON: {e}")),
    })
}

/// Serializes `value` as compact JSON, describing it as `what` in the error.
pub(crate) fn to_bytes<T: Serialize + ?Sized>(value: &T, what: &str) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(|e| Error::Rejected(format!("{what} cannot be serialized as JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_say_not_valid_json_with_position() {
        let err = parse::<serde_json::Value>(b"{\"a\": ", "response body").unwrap_err();
        assert_eq!(err.message(), "response body is not valid JSON: EOF while parsing a value at line 1 column 6");
    }

    #[test]
    fn shape_errors_say_unexpected_shape() {
        let err = parse::<Vec<u32>>(b"{}", "response body").unwrap_err();
        assert!(err.message().starts_with("response body does not have the expected shape: invalid type"), "{err:?}");
    }

    #[test]
    fn non_string_map_keys_fail_to_serialize() {
        let map = std::collections::HashMap::from([((1, 2), 3)]);
        let err = to_bytes(&map, "state").unwrap_err();
        assert!(err.message().starts_with("state cannot be serialized as JSON"));
    }
}
