//! JSON documents read as `serde_json::Value`, but with a name given twice
//! in one object refused: serde_json keeps the last, other tools the first
//! (RFC 8259 §4 leaves it open), so a schema that says `properties` twice
//! would be checked by one reading and documented by another. The YAML
//! reader refuses duplicate keys already; this makes the two agree.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Parses `text` as one JSON document, refusing duplicate names.
pub fn from_str(text: &str) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = Strict::deserialize(&mut de)?.0;
    de.end()?;
    Ok(value)
}

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Strict, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("the name `{key}` is given twice in one object")));
            }
            let Strict(value) = map.next_value()?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_name_twice_in_one_object_is_refused_with_its_place() {
        let e =
            super::from_str("{\"type\": \"object\",\n \"properties\": {\"a\": {}},\n \"properties\": {}}").unwrap_err();
        assert!(e.to_string().contains("`properties` is given twice"), "{e}");
        assert_eq!(e.line(), 3, "{e}");
        // The same name in two objects is fine; values are as serde_json reads them.
        let v = super::from_str(r#"{"a": {"x": 1}, "b": {"x": [1.5, -2, 18446744073709551615, null, true, "s"]}}"#)
            .unwrap();
        let plain: serde_json::Value =
            serde_json::from_str(r#"{"a": {"x": 1}, "b": {"x": [1.5, -2, 18446744073709551615, null, true, "s"]}}"#)
                .unwrap();
        assert_eq!(v, plain);
        assert!(super::from_str("{} x").is_err(), "trailing text");
    }
}
