//! A serde `Deserializer` over a parsed JSON body that builds a struct only from a JSON object.
//!
//! serde's derived structs also accept an array of their fields in order, and
//! `serde_json::Value` offers them that form, so `{"quotas": [null, null]}` would pass where the
//! OpenAPI document promises an object. Request bodies are read through [`Strict`] instead, so
//! that the API takes exactly the shapes it documents. Everything else behaves as
//! `serde_json::Value` does, with the same error messages.

use serde::de::value::{MapAccessDeserializer, MapDeserializer, SeqDeserializer, StringDeserializer};
use serde::de::{self, IntoDeserializer, Unexpected, Visitor};
use serde_json::{Error, Map, Number, Value};

/// A JSON value to deserialize, with objects as the only form of a struct.
pub struct Strict(pub Value);

impl<'de> IntoDeserializer<'de, Error> for Strict {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

fn number(n: &Number) -> Unexpected<'_> {
    match (n.as_u64(), n.as_i64()) {
        (Some(u), _) => Unexpected::Unsigned(u),
        (None, Some(i)) => Unexpected::Signed(i),
        _ => Unexpected::Float(n.as_f64().unwrap_or(f64::NAN)),
    }
}

/// How a value is named in "invalid type" errors.
fn unexpected(value: &Value) -> Unexpected<'_> {
    match value {
        Value::Null => Unexpected::Unit,
        Value::Bool(b) => Unexpected::Bool(*b),
        Value::Number(n) => number(n),
        Value::String(s) => Unexpected::Str(s),
        Value::Array(_) => Unexpected::Seq,
        Value::Object(_) => Unexpected::Map,
    }
}

type Entries = std::iter::Map<serde_json::map::IntoIter, fn((String, Value)) -> (String, Strict)>;

fn entries<'de>(object: Map<String, Value>) -> MapDeserializer<'de, Entries, Error> {
    let strict: fn((String, Value)) -> (String, Strict) = |(key, value)| (key, Strict(value));
    MapDeserializer::new(object.into_iter().map(strict))
}

impl<'de> de::Deserializer<'de> for Strict {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(b),
            Value::Number(n) => n.deserialize_any(visitor),
            Value::String(s) => visitor.visit_string(s),
            Value::Array(items) => {
                let mut seq = SeqDeserializer::new(items.into_iter().map(Strict));
                let value = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(value)
            }
            Value::Object(object) => {
                let mut map = entries(object);
                let value = visitor.visit_map(&mut map)?;
                map.end()?;
                Ok(value)
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            other => visitor.visit_some(Strict(other)),
        }
    }

    /// The one difference from `serde_json::Value`: an array is not a struct.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Value::Object(_) => self.deserialize_any(visitor),
            other => Err(de::Error::invalid_type(unexpected(&other), &visitor)),
        }
    }

    /// Externally tagged, as serde_json reads enums: `"variant"` or `{"variant": value}`.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Value::String(variant) => visitor.visit_enum(StringDeserializer::<Error>::new(variant)),
            Value::Object(object) if object.len() == 1 => {
                visitor.visit_enum(MapAccessDeserializer::new(entries(object)))
            }
            other => Err(de::Error::invalid_type(unexpected(&other), &"a string or an object with one field")),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit unit_struct seq
        tuple tuple_struct map identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;
    use serde_json::json;

    use super::Strict;

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        a: Option<u16>,
        #[serde(default)]
        b: String,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Kind {
        Plain,
        Text(String),
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        inner: Inner,
        maybe: Option<Inner>,
        kind: Kind,
        #[serde(default)]
        map: BTreeMap<String, String>,
    }

    fn read(value: serde_json::Value) -> Result<Outer, String> {
        Outer::deserialize(Strict(value)).map_err(|e| e.to_string())
    }

    #[test]
    fn objects_read_as_serde_json_reads_them() {
        let value = json!({"inner": {"a": 7}, "maybe": null, "kind": {"text": "t"}, "map": {"k": "v"}});
        assert_eq!(read(value.clone()).unwrap(), serde_json::from_value(value).unwrap());
        let plain = read(json!({"inner": {"a": null, "b": "x"}, "maybe": {"a": 1}, "kind": "plain"})).unwrap();
        assert_eq!(plain.kind, Kind::Plain);
        assert_eq!(plain.maybe, Some(Inner { a: Some(1), b: String::new() }));
    }

    /// The bug schemathesis found: `{"quotas": [null, null]}` was taken for quota overrides.
    #[test]
    fn a_struct_is_never_read_from_an_array() {
        let error = read(json!({"inner": [7, "x"], "maybe": null, "kind": "plain"})).unwrap_err();
        assert!(error.contains("invalid type: sequence, expected struct Inner"), "{error}");
        let error = read(json!({"inner": {}, "maybe": [null], "kind": "plain"})).unwrap_err();
        assert!(error.contains("invalid type: sequence"), "{error}");
        // serde_json alone accepts it, which is why bodies go through `Strict`.
        assert!(serde_json::from_value::<Outer>(json!({"inner": [7, "x"], "maybe": null, "kind": "plain"})).is_ok());
    }

    #[test]
    fn errors_name_the_problem_as_serde_json_does() {
        let error = read(json!({"inner": {"a": 70000}, "maybe": null, "kind": "plain"})).unwrap_err();
        assert!(error.contains("invalid value: integer `70000`, expected u16"), "{error}");
        let error = read(json!({"inner": {"c": 1}, "maybe": null, "kind": "plain"})).unwrap_err();
        assert!(error.contains("unknown field `c`"), "{error}");
        let error = read(json!({"inner": {}, "maybe": null, "kind": {"text": "a", "plain": null}})).unwrap_err();
        assert!(error.contains("invalid type: map"), "{error}");
        let error = read(json!({"inner": {}, "maybe": null, "kind": "other"})).unwrap_err();
        assert!(error.contains("unknown variant `other`"), "{error}");
    }
}
