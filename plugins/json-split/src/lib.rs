//! Example Sluice plugin: splits a JSON array in the response into one record per element.
//!
//! Each element becomes one record holding the element as compact JSON.
//!
//! # Settings
//!
//! - `array_path` (optional): where the array is in the body, as object keys joined by dots,
//!   such as `data.items` for `{"data": {"items": [...]}}`. A segment made of digits indexes an
//!   array (`results.0.rows`). Without it the body itself must be the array.
//! - `partition_key_field` (optional): the name of a top-level field of every element whose value
//!   (a string, or a number written out) becomes the record's partition key, such as `id`.
//!   Without it every record is keyed by the project id.
//!
//! # Errors
//!
//! Everything is `rejected`, since the same body would fail again: a body that is not JSON
//! (with serde_json's line and column), an `array_path` that does not lead to an array, and an
//! element without a usable `partition_key_field`, named by its index.

use sluice_plugin::serde_json::Value;
use sluice_plugin::{Error, Output, Plugin, Poll, Record, Response};

mod path;

struct JsonSplit;

impl Plugin for JsonSplit {
    fn transform(poll: &Poll, response: Response) -> Result<Output, Error> {
        let body: Value = response.json()?;
        let elements = path::find_array(&body, poll.setting("array_path"))?;
        let key_field = poll.setting("partition_key_field");
        let records = elements
            .iter()
            .enumerate()
            .map(|(index, element)| {
                let key = match key_field {
                    Some(field) => partition_key(element, index, field)?,
                    None => poll.project_id.clone(),
                };
                Record::json(element, key)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Output::new(records))
    }
}

/// The partition key of the element at `index`: its `field`, which must be a non-empty string or
/// a number, at most 256 characters long as Kinesis requires.
fn partition_key(element: &Value, index: usize, field: &str) -> Result<String, Error> {
    let key = match element.get(field) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Number(number)) => number.to_string(),
        Some(other) => {
            return Err(Error::rejected(format!(
                "element {index}: `{field}` is {}, not a string or number; \
                 set `partition_key_field` to a field holding an id",
                path::kind(other)
            )));
        }
        None => {
            return Err(Error::rejected(format!(
                "element {index} has no `{field}` field; \
                 set `partition_key_field` to a field that every element has"
            )));
        }
    };
    match key.chars().count() {
        1..=256 => Ok(key),
        length => Err(Error::rejected(format!(
            "element {index}: `{field}` has {length} characters, but partition keys must \
             have 1 to 256; set `partition_key_field` to another field"
        ))),
    }
}

sluice_plugin::export!(JsonSplit);

#[cfg(test)]
mod tests;
