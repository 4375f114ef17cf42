//! Following the `array_path` setting through a JSON document.

use sluice_plugin::Error;
use sluice_plugin::serde_json::Value;

/// The array at the dot-separated `path` in `body`, or the body itself when there is no path.
pub(crate) fn find_array<'a>(body: &'a Value, path: Option<&str>) -> Result<&'a [Value], Error> {
    let Some(path) = path.filter(|path| !path.is_empty()) else {
        return match body {
            Value::Array(elements) => Ok(elements),
            other => Err(Error::rejected(format!(
                "response body is {}, not an array; set `array_path` to the dot-separated path \
                 of the array inside it",
                kind(other)
            ))),
        };
    };
    let mut current = body;
    let mut walked = String::new();
    for segment in path.split('.') {
        let next = match current {
            Value::Object(fields) => fields.get(segment),
            Value::Array(elements) => segment.parse::<usize>().ok().and_then(|i| elements.get(i)),
            _ => None,
        };
        current = next.ok_or_else(|| {
            let at = if walked.is_empty() { "the body" } else { &walked };
            Error::rejected(format!(
                "`array_path` \"{path}\" does not lead to an array: {at} ({}) has no \
                 \"{segment}\"; set `array_path` to the dot-separated path of the array",
                kind(current)
            ))
        })?;
        if !walked.is_empty() {
            walked.push('.');
        }
        walked.push_str(segment);
    }
    match current {
        Value::Array(elements) => Ok(elements),
        other => Err(Error::rejected(format!(
            "`array_path` \"{path}\" does not lead to an array but to {}; set `array_path` to \
             the dot-separated path of the array",
            kind(other)
        ))),
    }
}

/// The JSON type of `value` with an article, for error messages.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
