//! JSON read strictly where a name given twice would be read two ways:
//! a token's claims, an identity provider's documents (the last copy wins
//! in `serde_json`, the first in other readers).

/// Whether a JSON text has an object naming a member twice (names compared
/// unescaped), or is not JSON at all. (The validator's own reader is
/// `policy::validate`'s.)
pub fn names_a_member_twice(json: &[u8]) -> bool {
    use serde::de::{DeserializeSeed, Deserializer, Error, MapAccess, SeqAccess, Visitor};
    struct Unique;
    impl<'de> DeserializeSeed<'de> for Unique {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(Unique)
        }
    }
    impl<'de> Visitor<'de> for Unique {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element_seed(Unique)?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(name) = map.next_key::<String>()? {
                if !seen.insert(name) {
                    return Err(A::Error::custom("a member is named twice"));
                }
                map.next_value_seed(Unique)?;
            }
            Ok(())
        }
    }
    Unique.deserialize(&mut serde_json::Deserializer::from_slice(json)).is_err()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_member_named_twice_is_found_at_any_depth() {
        assert!(!super::names_a_member_twice(br#"{"keys":[{"kid":"a"},{"kid":"a"}],"issuer":"x"}"#));
        assert!(super::names_a_member_twice(br#"{"keys":[],"keys":[{"kty":"oct"}]}"#));
        assert!(super::names_a_member_twice(br#"{"issuer":"evil.example","jwks_uri":"u","issuer":"x"}"#));
        assert!(super::names_a_member_twice(br#"{"keys":[{"kid":"a","kid":"b"}]}"#));
        // Escaped names are compared unescaped.
        assert!(super::names_a_member_twice(br#"{"iss":1,"\u0069ss":2}"#));
        assert!(super::names_a_member_twice(b"not json"));
    }
}
