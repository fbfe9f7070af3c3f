//! The common case of a validated JSON body, proved in one pass: the
//! schema compiled, when the config loads, into a tree of plain checks (an
//! expected type per value, each object's property names with a bit each,
//! numeric bounds inline), which reads the body and says "valid" or "not
//! sure". Not sure (a member the schema does not name, an escape, an
//! exponent, a keyword it does not know, any limit approached, anything
//! invalid) costs nothing but the pass: the body then takes the full path
//! (`json_limits` and `jsonschema`), which decides and words the errors.
//!
//! Why: reading a body into a tape and walking it with `jsonschema` costs
//! ~40k instructions for a 1 KiB order (BENCHMARKS.md, issue 12), most of
//! it general machinery (a tape entry per value, a fingerprint and a
//! duplicate bit per key, a validator node per keyword). A valid body of a
//! known shape needs none of it: a member name is matched against the few
//! the schema declares (a declared name seen twice is a duplicate), and a
//! value is checked as it is read. String keywords (`pattern`, `format`,
//! lengths, `enum`) still run through `jsonschema` itself, compiled from
//! the same keywords with the same options, so their answers are its
//! answers.
//!
//! The shortcut only ever says "valid" where the full path says valid too:
//! every check here is exact or refers the body on (a property test holds
//! the two to that, `tests::a_shortcut_pass_is_a_full_pass`).

mod compile;
mod read;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::json_limits::JsonLimits;
use super::tape::{Tape, TapeNode};

/// The JSON types a value may have, one bit each.
const NULL: u8 = 1;
const BOOLEAN: u8 = 2;
/// Integers only (`type: integer`); `NUMBER` admits every number.
const INTEGER: u8 = 4;
const NUMBER: u8 = 8;
const STRING: u8 = 16;
const ARRAY: u8 = 32;
const OBJECT: u8 = 64;
const ANY: u8 = 127;

/// A `required` bit no property has: an object of such a node is never
/// proved (a required name the schema does not declare as a property).
const UNDECLARED: u64 = 1 << 63;
/// At most this many properties per object (one bit each, `UNDECLARED` aside).
const MAX_PROPERTIES: usize = 63;
/// A schema compiling to more nodes than this gets no shortcut.
const MAX_NODES: usize = 4096;

/// The node every value passes whatever its type: node 0.
const ANYTHING: u32 = 0;

/// An inclusive or exclusive numeric bound.
#[derive(Debug, Clone, Copy)]
enum Bound {
    Int(i128),
    Float(f64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Minimum,
    Maximum,
    ExclusiveMinimum,
    ExclusiveMaximum,
}

struct Property {
    /// The name's fingerprint (`json_limits::fingerprint_bytes`: its length
    /// and first eight bytes): names of up to eight bytes are told apart by
    /// it and their length.
    print: u64,
    name: Box<[u8]>,
    node: u32,
}

/// What one schema (object) asks of a value.
struct Node {
    types: u8,
    bounds: Vec<(Side, Bound)>,
    /// This node's string keywords (`pattern`, `format`, `minLength`,
    /// `maxLength`, `enum`, `const`), run on strings (one check per
    /// schema an `allOf` joined here).
    strings: Vec<Arc<Strings>>,
    /// `enum` or `const`: only strings are proved (through `strings`).
    strings_only: bool,
    properties: Vec<Property>,
    required: u64,
    /// `additionalProperties` says something of names outside
    /// `properties` (never proved here, but an `allOf` part declaring a
    /// name this node does not must not be joined with it).
    closed: bool,
    min_properties: u64,
    max_properties: u64,
    items: u32,
    min_items: u64,
    max_items: u64,
}

impl Node {
    fn new(types: u8) -> Node {
        Node {
            types,
            bounds: Vec::new(),
            strings: Vec::new(),
            strings_only: false,
            closed: false,
            properties: Vec::new(),
            required: 0,
            min_properties: 0,
            max_properties: u64::MAX,
            items: ANYTHING,
            min_items: 0,
            max_items: u64::MAX,
        }
    }
}

/// How a node's string keywords are checked.
enum Strings {
    /// `jsonschema` compiled from them, with the policy's options.
    Schema(jsonschema::Validator<Tape>),
    /// `format: date-time` alone: the same check without the validator's call.
    DateTime,
}

impl Strings {
    #[inline(always)]
    fn accept(&self, s: &str) -> bool {
        match self {
            Strings::Schema(v) => v.is_valid(TapeNode::Name(s)),
            Strings::DateTime => super::date_time::is_date_time(s.as_bytes()),
        }
    }
}

/// A schema compiled for the shortcut.
pub(super) struct Shortcut {
    nodes: Vec<Node>,
    root: u32,
}

impl std::fmt::Debug for Shortcut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shortcut").field("nodes", &self.nodes.len()).finish_non_exhaustive()
    }
}

impl Shortcut {
    /// The shortcut for `schema` as the validate policy compiles it (the
    /// same `formats`), or what it uses that the shortcut does not know
    /// (the full path then checks every body).
    pub(super) fn compile(schema: &Value, formats: &BTreeMap<String, String>) -> Result<Shortcut, String> {
        compile::compile(schema, formats)
    }

    /// Whether `body` is proved valid within `limits`; `false` is "not
    /// sure", never "invalid".
    pub(super) fn passes(&self, body: &[u8], limits: &JsonLimits) -> bool {
        read::passes(self, body, limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::validate::json_limits::read;
    use proptest::prelude::*;
    use serde_json::json;

    /// The full path's verdict: the read within `limits`, then `jsonschema`.
    fn full(schema: &Value, body: &str, limits: &JsonLimits) -> bool {
        let validator = super::super::build::<Tape>(schema, &BTreeMap::new()).unwrap();
        read(body.as_bytes(), limits).is_ok_and(|doc| validator.is_valid(doc.root()))
    }

    fn shortcut(schema: &Value) -> Shortcut {
        Shortcut::compile(schema, &BTreeMap::new()).unwrap_or_else(|e| panic!("no shortcut for {schema}: {e}"))
    }

    /// A long chain of `$ref`s gets no shortcut (compiling it recursed once
    /// a link: a 2,000-long chain overflowed the stack of `check` and reloads).
    #[test]
    fn a_long_chain_of_refs_gets_no_shortcut() {
        let chain = |n: usize| {
            let mut defs = serde_json::Map::new();
            for i in 0..n {
                defs.insert(format!("n{i}"), json!({ "$ref": format!("#/$defs/n{}", i + 1) }));
            }
            defs.insert(format!("n{n}"), json!({ "type": "integer" }));
            json!({ "$ref": "#/$defs/n0", "$defs": defs })
        };
        assert!(Shortcut::compile(&chain(10), &BTreeMap::new()).is_ok());
        let why = Shortcut::compile(&chain(5000), &BTreeMap::new()).err().unwrap();
        assert!(why.contains("nested more than 64 deep"), "{why}");
    }

    fn order_schema() -> Value {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/bench/orders-schema.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn a_valid_order_is_proved_and_an_invalid_one_is_not() {
        let schema = order_schema();
        let s = shortcut(&schema);
        let limits = JsonLimits::default();
        let item = r#"{"sku":"HHH-0000","qty":1,"price":10.0,"added":"2024-01-01T00:00:00Z"}"#;
        let valid = [
            format!(r#"{{"customer":{{"email":"jane.doe@example.com","name":"Jane Doe"}},"items":[{item},{item}]}}"#),
            // Whitespace, members in another order, an empty array.
            " { \"items\" : [ ] ,\n\t\"customer\" : { \"email\" : \"a@b.example\" } } ".to_string(),
            r#"{"customer":{"email":"a@b.example"},"items":[{"qty":2,"sku":"ABC-1234","price":-0.5}]}"#.to_string(),
        ];
        for body in &valid {
            assert!(s.passes(body.as_bytes(), &limits), "{body}");
            assert!(full(&schema, body, &limits), "{body}");
        }
        // Each is invalid, or not the shortcut's to prove: never passed by it.
        for body in [
            r#"{"customer":{"email":"not-an-email"},"items":[]}"#,
            r#"{"customer":{"email":"a@b.example"},"items":[{"sku":"abc-12","qty":1}]}"#,
            r#"{"customer":{"email":"a@b.example"},"items":[{"sku":"ABC-1234","qty":0}]}"#,
            r#"{"customer":{"email":"a@b.example"},"items":[{"sku":"ABC-1234","qty":1.5}]}"#,
            r#"{"customer":{"email":"a@b.example"},"items":[{"sku":"ABC-1234","qty":1,"added":"2024-13-45"}]}"#,
            r#"{"customer":{"email":"a@b.example"},"items":[{"sku":"ABC-1234"}]}"#,
            r#"{"customer":{"email":"a@b.example"}}"#,
            r#"{"customer":{"email":"a@b.example"},"items":[],"items":[]}"#,
            r#"{"customer":{"email":"a@b.example"},"items":[]}x"#,
            r#"{"customer":{"email":"a@b.example"},"items":[],}"#,
            r#"{"customer":{"email":"a@b.example"},"items":[1]}"#,
            r#"{"customer":{"email":"a@b.example","name":"\u0041"},"items":[]}"#,
            r#"{"customer":{"email":"a@b.example"},"items":[],"note":1}"#,
            r#"{"customer":{"email":"a@b.example"},"items":[{"sku":"ABC-1234","qty":1e0}]}"#,
            r#"{"customer":{"email":"a@b.example"},"items":[{"sku":"ABC-1234","qty":01}]}"#,
            r#"{"customer":{"email":"a@b.example"},"items":[{"sku":"ABC-1234","qty":1,"price":1.}]}"#,
            r#"{"customer":{"email":"a@b.example"},"items":[{"sku":"ABC-1234","qty":tru}]}"#,
            "{\"customer\":{\"email\":\"a@b.example\",\"name\":\"tab\there\"},\"items\":[]}",
            r#"{"customer":{"email":"a@b.example"},"items":[]"#,
            "",
        ] {
            assert!(!s.passes(body.as_bytes(), &limits), "{body}");
        }
        assert!(!s.passes(b"{\"customer\":{\"email\":\"a@b.example\",\"name\":\"\xff\"},\"items\":[]}", &limits));
    }

    #[test]
    fn limits_are_met_or_the_body_goes_the_full_way() {
        let schema = json!({ "type": "object", "properties": {
            "a": { "type": "array", "items": { "type": "array", "items": { "type": "integer" } } },
            "s": { "type": "string" }, "n": { "type": "number" }, "b": {}, "c": {} } });
        let s = shortcut(&schema);
        let limits = JsonLimits { max_depth: 3, max_entries: 3, max_array: 2, max_string: 4, max_number_length: 5 };
        for (body, proved) in [
            (r#"{"a":[[1,2],[3]]}"#, true),
            (r#"{"a":[[1,2,3]]}"#, false),
            (r#"{"a":[[1],[2],[3]]}"#, false),
            (r#"{"s":"abcd"}"#, true),
            (r#"{"s":"abcde"}"#, false),
            (r#"{"n":-12.5}"#, true),
            (r#"{"n":-12.55}"#, false),
            (r#"{"a":[],"s":"","n":1}"#, true),
            (r#"{"a":[],"s":"","n":1,"b":null}"#, false),
        ] {
            assert_eq!(s.passes(body.as_bytes(), &limits), proved, "{body}");
            assert_eq!(full(&schema, body, &limits), proved, "{body}");
        }
        let deep = JsonLimits { max_depth: 2, ..limits };
        assert!(!s.passes(br#"{"a":[[1]]}"#, &deep));
        assert!(s.passes(br#"{"a":[]}"#, &deep));
    }

    #[test]
    fn what_the_shortcut_does_not_know_has_none() {
        for schema in [
            json!({ "oneOf": [ { "type": "string" }, { "type": "integer" } ] }),
            json!({ "$schema": "http://json-schema.org/draft-07/schema#", "type": "object" }),
            json!({ "$defs": { "n": { "properties": { "next": { "$ref": "#/$defs/n" } } } }, "$ref": "#/$defs/n" }),
            json!({ "type": "object", "patternProperties": { "^a": { "type": "string" } } }),
            json!({ "type": "integer", "multipleOf": 2 }),
            json!({ "type": "array", "uniqueItems": true }),
            json!({ "properties": { "a": { "$id": "https://example.com/a", "type": "string" } } }),
            json!({ "allOf": [ { "properties": { "a": {} }, "additionalProperties": false }, { "properties": { "b": {} } } ] }),
        ] {
            assert!(Shortcut::compile(&schema, &BTreeMap::new()).is_err(), "{schema}");
        }
        // Shared definitions are one node each; `$id` at the root is allowed.
        let schema = json!({ "$id": "https://example.com/order", "$defs": { "q": { "type": "integer", "minimum": 1 } },
            "properties": { "a": { "$ref": "#/$defs/q" }, "b": { "$ref": "#/$defs/q", "description": "again" } } });
        let s = shortcut(&schema);
        assert!(s.passes(br#"{"a":1,"b":2}"#, &JsonLimits::default()));
        assert!(!s.passes(br#"{"a":1,"b":0}"#, &JsonLimits::default()));
        assert_eq!(s.nodes.len(), 3, "anything, q, the root");
        // A root `$schema` naming the policy's own dialect changes nothing.
        let own = json!({ "$schema": "https://json-schema.org/draft/2020-12/schema#", "type": "integer" });
        assert!(shortcut(&own).passes(b"1", &JsonLimits::default()));
        // A declared name with control characters stands for no other name.
        let odd = json!({ "properties": { "x\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{9}": { "type": "string" } },
            "additionalProperties": false });
        assert!(!shortcut(&odd).passes(br#"{"x":"s"}"#, &JsonLimits::default()));
        assert!(!full(&odd, r#"{"x":"s"}"#, &JsonLimits::default()));
    }

    #[test]
    fn all_of_and_a_ref_beside_keywords_ask_for_both() {
        let limits = JsonLimits::default();
        let schema = json!({
            "$defs": { "pet": { "type": "object", "required": ["name"], "properties": { "name": { "type": "string", "maxLength": 5 } } } },
            "allOf": [ { "$ref": "#/$defs/pet" }, { "properties": { "name": { "pattern": "^[a-z]+$" }, "age": { "type": "integer", "minimum": 0 } }, "required": ["age"] } ],
            "properties": { "age": { "maximum": 30 } },
        });
        let s = shortcut(&schema);
        for (body, proved) in [
            (r#"{"name":"rex","age":3}"#, true),
            (r#"{"age":3}"#, false),
            (r#"{"name":"rex"}"#, false),
            (r#"{"name":"Rex","age":3}"#, false),
            (r#"{"name":"rexrex","age":3}"#, false),
            (r#"{"name":"rex","age":31}"#, false),
            (r#"{"name":"rex","age":-1}"#, false),
        ] {
            assert_eq!(s.passes(body.as_bytes(), &limits), proved, "{body}");
            assert_eq!(full(&schema, body, &limits), proved, "{body}");
        }
        let beside = json!({ "$defs": { "q": { "type": "integer" } }, "properties": { "a": { "$ref": "#/$defs/q", "minimum": 1 } } });
        let s = shortcut(&beside);
        assert!(s.passes(br#"{"a":1}"#, &limits));
        assert!(!s.passes(br#"{"a":0}"#, &limits));
        assert!(!full(&beside, r#"{"a":0}"#, &limits));
        // A closed part joins another only on the names it declares.
        let closed = json!({ "allOf": [ { "properties": { "a": {} }, "additionalProperties": false }, { "properties": { "a": { "type": "string" } } } ] });
        assert!(shortcut(&closed).passes(br#"{"a":"x"}"#, &limits));
        assert!(!shortcut(&closed).passes(br#"{"a":1}"#, &limits));
    }

    #[test]
    fn numbers_compare_exactly_with_their_bounds() {
        let limits = JsonLimits::default();
        for (schema, body, proved) in [
            (json!({ "type": "integer", "format": "int64" }), "9007199254740993", true),
            (json!({ "type": "integer", "format": "int64" }), "9223372036854775807", false), // 19 digits: full path
            (json!({ "type": "number" }), "13.120000000000001", true),
            (json!({ "type": "number", "minimum": 0 }), "13.120000000000001", false), // 17 digits: full path
            (json!({ "type": "integer", "maximum": 9007199254740993.0 }), "9007199254740993", false),
            (json!({ "type": "integer", "format": "int32" }), "2147483647", true),
            (json!({ "type": "integer", "format": "int32" }), "2147483648", false),
            (json!({ "type": "number", "minimum": 0.1 }), "0.1", true),
            (json!({ "type": "number", "exclusiveMinimum": 0.1 }), "0.1", false),
            (json!({ "type": "number", "maximum": 3 }), "3.0", true),
            (json!({ "type": "number", "exclusiveMaximum": 3 }), "2.999", true),
            (json!({ "type": "integer", "minimum": -5 }), "-5", true),
            (json!({ "type": "integer", "minimum": -5 }), "-6", false),
            (json!({ "type": "integer" }), "1.0", false), // an integer to JSON Schema: the full path says so
            (json!({ "type": "number" }), "-0", true),
            (json!({ "type": ["integer", "null"] }), "null", true),
            (json!({ "enum": ["a", "b"] }), "\"b\"", true),
            (json!({ "enum": ["a", 1] }), "1", false),
        ] {
            let s = shortcut(&schema);
            assert_eq!(s.passes(body.as_bytes(), &limits), proved, "{schema} {body}");
            if proved {
                assert!(full(&schema, body, &limits), "{schema} {body}");
            }
        }
    }

    fn schema() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(json!(true)),
            Just(json!(false)),
            Just(json!({})),
            (-3i64..3).prop_map(|m| json!({ "type": "integer", "minimum": m })),
            (-3i64..3).prop_map(|m| json!({ "type": "integer", "exclusiveMaximum": m })),
            (-20i64..20).prop_map(|m| json!({ "type": "number", "maximum": m as f64 / 4.0 })),
            (-20i64..20).prop_map(|m| json!({ "exclusiveMinimum": m as f64 / 8.0 })),
            Just(json!({ "type": "string", "pattern": "^[a-c]+$" })),
            Just(json!({ "type": "string", "format": "date" })),
            Just(json!({ "format": "date-time" })),
            (0u64..3).prop_map(|n| json!({ "type": "string", "minLength": n, "maxLength": n + 2 })),
            Just(json!({ "enum": ["a", "x", 1, null] })),
            Just(json!({ "const": "a" })),
            Just(json!({ "type": ["string", "null"] })),
            Just(json!({ "type": "boolean" })),
            Just(json!({ "type": "number", "format": "int32" })),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                (
                    prop::collection::btree_map("(a|b|c)", inner.clone(), 0..4),
                    prop::collection::vec("(a|b|c|d)", 0..3),
                    any::<bool>(),
                    0u64..3,
                )
                    .prop_map(|(props, required, closed, max)| {
                        json!({ "type": "object", "properties": props, "required": required,
                            "additionalProperties": !closed, "maxProperties": max + 1 })
                    }),
                (inner.clone(), 0u64..3).prop_map(
                    |(items, n)| json!({ "type": "array", "items": items, "minItems": n, "maxItems": n + 2 })
                ),
                inner
                    .clone()
                    .prop_map(|s| json!({ "$defs": { "d": s }, "properties": { "a": { "$ref": "#/$defs/d" } } })),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| json!({ "allOf": [a, b] })),
                (inner.clone(), inner).prop_map(|(a, b)| {
                    let mut own = b.as_object().cloned().unwrap_or_default();
                    own.insert("$ref".into(), json!("#/$defs/d"));
                    let mut root = serde_json::Map::new();
                    root.insert("$defs".into(), json!({ "d": a }));
                    root.insert("properties".into(), json!({ "b": own }));
                    Value::Object(root)
                }),
            ]
        })
    }

    fn document() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-5i64..5).prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (-40i64..40).prop_map(|n| Value::from(n as f64 / 8.0)),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            prop_oneof![
                Just("a".to_string()),
                Just("2024-02-30".to_string()),
                Just("2024-02-29T23:59:60Z".to_string()),
                "[a-c\"\\\\é]{0,4}"
            ]
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
                prop::collection::btree_map("(a|b|c|d)", inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn limits() -> impl Strategy<Value = JsonLimits> {
        (1u32..6, 0u32..5, 0u32..5, 0u64..5, 1u32..8).prop_map(|(d, e, a, s, n)| JsonLimits {
            max_depth: d,
            max_entries: e,
            max_array: a,
            max_string: s,
            max_number_length: n,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        /// The invariant: a body the shortcut proves, the full path passes.
        #[test]
        fn a_shortcut_pass_is_a_full_pass(
            schema in schema(),
            doc in document(),
            pretty in any::<bool>(),
            limits in prop_oneof![Just(JsonLimits::default()), limits()],
        ) {
            // A schema the config would refuse never gets this far.
            if super::super::build::<Tape>(&schema, &BTreeMap::new()).is_err() {
                return Ok(());
            }
            let Ok(s) = Shortcut::compile(&schema, &BTreeMap::new()) else { return Ok(()) };
            let body = if pretty { serde_json::to_string_pretty(&doc) } else { serde_json::to_string(&doc) }.unwrap();
            if s.passes(body.as_bytes(), &limits) {
                prop_assert!(full(&schema, &body, &limits), "{} proved, invalid: {}", schema, body);
            }
        }

        /// Hostile bytes never panic it, and a proof is still a full pass.
        #[test]
        fn random_bytes_never_panic_it(bytes in prop::collection::vec(prop_oneof![
            Just(b'{'), Just(b'}'), Just(b'['), Just(b']'), Just(b'"'), Just(b':'), Just(b','), Just(b'-'),
            Just(b'1'), Just(b'.'), Just(b'a'), Just(b' '), Just(b'\\'), any::<u8>()], 0..40)) {
            let schema = json!({ "type": ["object", "array", "string", "number"],
                "properties": { "a": { "type": "array", "items": {} } }, "items": { "type": "integer" } });
            let s = shortcut(&schema);
            if s.passes(&bytes, &JsonLimits::default()) {
                prop_assert!(full(&schema, std::str::from_utf8(&bytes).unwrap(), &JsonLimits::default()));
            }
        }
    }
}
