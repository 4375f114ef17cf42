//! {{name}}: a Sluice transform plugin.
//!
//! It turns a response whose body is a JSON array into one record per element, keyed by the
//! element's `id` (or the field named by the `partition_key_field` setting). Change
//! `transform` to shape your own records; see the README for the build-test-upload loop.

use sluice_plugin::serde_json::Value;
use sluice_plugin::{Error, Output, Plugin, Poll, Record, Response, log};

struct Transform;

impl Plugin for Transform {
    fn transform(poll: &Poll, response: Response) -> Result<Output, Error> {
        let elements: Vec<Value> = response.json()?;
        let field = poll.setting("partition_key_field").unwrap_or("id");
        let records = elements
            .iter()
            .enumerate()
            .map(|(index, element)| {
                let key = match element.get(field) {
                    Some(Value::String(text)) if !text.is_empty() => text.clone(),
                    Some(Value::Number(number)) => number.to_string(),
                    _ => return Err(Error::rejected(format!("element {index} has no usable `{field}`"))),
                };
                Record::json(element, key)
            })
            .collect::<Result<Vec<_>, _>>()?;
        log::info(&format!("{} records", records.len()));
        Ok(Output::new(records))
    }
}

sluice_plugin::export!(Transform);

#[cfg(test)]
mod tests {
    use super::*;

    fn poll() -> Poll {
        Poll {
            project_id: "local-project".into(),
            tenant_id: "local-tenant".into(),
            scheduled_at_ms: 0,
            state: None,
            settings: vec![],
        }
    }

    #[test]
    fn one_record_per_element_of_the_sample_keyed_by_id() {
        let body = include_bytes!("../sample-response.json").to_vec();
        let output = Transform::transform(&poll(), Response { status: 200, headers: vec![], body }).unwrap();
        let keys: Vec<_> = output.records.iter().map(|r| r.partition_key.as_str()).collect();
        assert_eq!(keys, ["berlin-1", "berlin-2"]);
        assert_eq!(output.state, None);
    }

    #[test]
    fn an_element_without_an_id_is_rejected() {
        let body = br#"[{"name": "no id"}]"#.to_vec();
        let error = Transform::transform(&poll(), Response { status: 200, headers: vec![], body }).unwrap_err();
        assert_eq!(error.message(), "element 0 has no usable `id`");
    }
}
