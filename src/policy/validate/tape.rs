//! A JSON body as a flat tape that `jsonschema` validates in place.
//!
//! `json_limits` reads a body into this tape in its one checked pass: one
//! entry per value, strings left where they are in the body (only strings
//! with escapes are copied, decoded), a container's entry holding its
//! length and where its subtree ends. `jsonschema` (0.61) validates any
//! representation that implements its `Json` trait, so the schema runs on
//! the tape directly: no `serde_json::Value` tree is built, which was a
//! third of a validated 1 KiB body's cost (its `BTreeMap` objects, a
//! `String` per key and per string, and dropping it all; BENCHMARKS.md,
//! issue 12). The tape is a tree (no node is its own descendant).

use std::borrow::Cow;

use jsonschema::JsonType;
use jsonschema::json::{Array, Json, Node, NodeIdentity, Object, cmp};
use serde_json::{Map, Number, Value};

/// One value of a document, in the order the body writes them.
#[derive(Debug, Clone, Copy)]
pub(super) enum Entry<'a> {
    Null,
    False,
    True,
    /// A non-negative integer that fits `u64`.
    PosInt(u64),
    /// A negative integer that fits `i64`.
    NegInt(i64),
    /// Any other number, as serde_json reads it.
    Float(f64),
    /// A string without escapes, where the body has it.
    Str(&'a str),
    /// A string with escapes, decoded: `decoded[i]`.
    Escaped(u32),
    /// `len` elements follow; the subtree ends before entry `end`.
    Array {
        len: u32,
        end: u32,
    },
    /// `len` members follow (a key entry, then its value's subtree); ends before entry `end`.
    Object {
        len: u32,
        end: u32,
    },
}

/// One document; entry 0 is its root.
#[derive(Debug)]
pub struct Doc<'a> {
    pub(super) entries: Vec<Entry<'a>>,
    pub(super) decoded: Vec<String>,
    /// How deep its containers nest (a scalar document is 0).
    pub(super) depth: u32,
}

impl<'a> Doc<'a> {
    pub(super) fn with_capacity(body_len: usize) -> Doc<'a> {
        // About one entry per 8 bytes of a typical body; it grows if not.
        Doc { entries: Vec::with_capacity(body_len / 8 + 4), decoded: Vec::new(), depth: 0 }
    }

    /// About the memory the document takes beside its text.
    pub(super) fn heap_size(&self) -> u64 {
        let entries = self.entries.len() * std::mem::size_of::<Entry<'_>>();
        let decoded: usize = self.decoded.iter().map(|s| s.capacity() + std::mem::size_of::<String>()).sum();
        (entries + decoded) as u64
    }

    /// How many entries the document holds: its values and members' names.
    pub fn values(&self) -> usize {
        self.entries.len()
    }

    /// The whole document.
    pub fn root(&self) -> TapeNode<'_> {
        TapeNode::At(self, 0)
    }

    /// The sum over every value of `base^depth` (the root at depth 0), or
    /// a number above `cap` as soon as it passes it.
    pub(super) fn weight(&self, base: f64, cap: f64) -> f64 {
        let mut ends: Vec<u32> = Vec::new();
        let mut sum = 0.0;
        for (i, entry) in self.entries.iter().enumerate() {
            let i = i as u32;
            while ends.last().is_some_and(|&end| end <= i) {
                ends.pop();
            }
            sum += base.powi(ends.len() as i32);
            if sum > cap {
                return sum;
            }
            if let Entry::Array { end, .. } | Entry::Object { end, .. } = *entry {
                ends.push(end);
            }
        }
        sum
    }

    /// The most members one object of the document has.
    pub(super) fn widest_object(&self) -> u32 {
        let members = self.entries.iter().map(|e| if let Entry::Object { len, .. } = *e { len } else { 0 });
        members.max().unwrap_or(0)
    }

    /// The index after `at`'s subtree.
    pub(super) fn next(&self, at: u32) -> u32 {
        match self.entries[at as usize] {
            Entry::Array { end, .. } | Entry::Object { end, .. } => end,
            _ => at + 1,
        }
    }

    /// A string entry's value (keys too).
    pub(super) fn str_at(&self, at: u32) -> Option<&str> {
        match *self.entries.get(at as usize)? {
            Entry::Str(s) => Some(s),
            Entry::Escaped(i) => self.decoded.get(i as usize).map(String::as_str),
            _ => None,
        }
    }

    /// How many members or elements the container at `at` has.
    fn len_at(&self, at: u32) -> u32 {
        match self.entries[at as usize] {
            Entry::Array { len, .. } | Entry::Object { len, .. } => len,
            _ => 0,
        }
    }

    fn number_at(&self, at: u32) -> Option<Number> {
        match self.entries[at as usize] {
            Entry::PosInt(n) => Some(Number::from(n)),
            Entry::NegInt(n) => Some(Number::from(n)),
            Entry::Float(f) => Number::from_f64(f),
            _ => None,
        }
    }

    /// The subtree at `at` as a `serde_json::Value` (errors and tests only).
    pub(super) fn value_at(&self, at: u32) -> Value {
        match self.entries[at as usize] {
            Entry::Null => Value::Null,
            Entry::False => Value::Bool(false),
            Entry::True => Value::Bool(true),
            Entry::PosInt(_) | Entry::NegInt(_) | Entry::Float(_) => {
                self.number_at(at).map_or(Value::Null, Value::Number)
            }
            Entry::Str(_) | Entry::Escaped(_) => Value::String(self.str_at(at).unwrap_or_default().to_owned()),
            Entry::Array { .. } => Value::Array(Elements::new(self, at).map(|i| self.value_at(i)).collect()),
            Entry::Object { .. } => {
                let mut map = Map::new();
                for (key, value) in Members::new(self, at) {
                    map.insert(self.str_at(key).unwrap_or_default().to_owned(), self.value_at(value));
                }
                Value::Object(map)
            }
        }
    }
}

/// The element indices of the array at `at`.
struct Elements<'d, 'a> {
    doc: &'d Doc<'a>,
    next: u32,
    left: u32,
}

impl<'d, 'a> Elements<'d, 'a> {
    fn new(doc: &'d Doc<'a>, at: u32) -> Self {
        Elements { doc, next: at + 1, left: doc.len_at(at) }
    }
}

impl Iterator for Elements<'_, '_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let at = self.next;
        self.next = self.doc.next(at);
        Some(at)
    }
}

/// The (key, value) indices of the object at `at`.
pub(super) struct Members<'d, 'a> {
    doc: &'d Doc<'a>,
    next: u32,
    left: u32,
}

impl<'d, 'a> Members<'d, 'a> {
    pub(super) fn new(doc: &'d Doc<'a>, at: u32) -> Self {
        Members { doc, next: at + 1, left: doc.len_at(at) }
    }
}

impl Iterator for Members<'_, '_> {
    type Item = (u32, u32);

    fn next(&mut self) -> Option<(u32, u32)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let key = self.next;
        self.next = self.doc.next(key + 1);
        Some((key, key + 1))
    }
}

/// The `jsonschema` representation of a [`Doc`].
pub struct Tape;

/// A value of a [`Doc`], or a lone string (a member name that
/// `propertyNames` validates).
#[derive(Debug, Clone, Copy)]
pub enum TapeNode<'a> {
    At(&'a Doc<'a>, u32),
    Name(&'a str),
}

impl Json for Tape {
    type Node<'a> = TapeNode<'a>;
    type PreparedKey = Box<str>;
    type StringBuffer = ();

    // A lookup walks the members (objects in bodies are small), as a members pass does.
    const KEYS_PER_LOOKUP: usize = 2;
    const ACYCLIC: bool = true;

    fn prepare_key(key: &str) -> Box<str> {
        key.into()
    }

    fn with_string_node<T>((): &mut (), string: &str, f: impl FnOnce(TapeNode<'_>) -> T) -> T {
        f(TapeNode::Name(string))
    }
}

impl<'a> TapeNode<'a> {
    fn entry(&self) -> Option<(&'a Doc<'a>, u32, Entry<'a>)> {
        match *self {
            TapeNode::At(doc, at) => Some((doc, at, doc.entries[at as usize])),
            TapeNode::Name(_) => None,
        }
    }
}

impl<'a> Node<'a, Tape> for TapeNode<'a> {
    type Object = TapeObject<'a>;
    type Array = TapeArray<'a>;
    type Number = Number;

    fn as_object(&self) -> Option<TapeObject<'a>> {
        match self.entry()? {
            (doc, at, Entry::Object { .. }) => Some(TapeObject { doc, at }),
            _ => None,
        }
    }

    fn as_array(&self) -> Option<TapeArray<'a>> {
        match self.entry()? {
            (doc, at, Entry::Array { .. }) => Some(TapeArray { doc, at }),
            _ => None,
        }
    }

    fn as_string(&self) -> Option<Cow<'a, str>> {
        match *self {
            TapeNode::At(doc, at) => doc.str_at(at).map(Cow::Borrowed),
            TapeNode::Name(name) => Some(Cow::Borrowed(name)),
        }
    }

    fn as_number(&self) -> Option<Number> {
        match self.entry()?.2 {
            Entry::PosInt(n) => Some(Number::from(n)),
            Entry::NegInt(n) => Some(Number::from(n)),
            Entry::Float(f) => Number::from_f64(f),
            _ => None,
        }
    }

    fn is_number(&self) -> bool {
        self.json_type() == JsonType::Number
    }

    fn as_boolean(&self) -> Option<bool> {
        match self.entry()?.2 {
            Entry::True => Some(true),
            Entry::False => Some(false),
            _ => None,
        }
    }

    fn is_null(&self) -> bool {
        self.entry().is_some_and(|(_, _, e)| matches!(e, Entry::Null))
    }

    fn json_type(&self) -> JsonType {
        match self.entry() {
            None => JsonType::String,
            Some((_, _, e)) => match e {
                Entry::Null => JsonType::Null,
                Entry::False | Entry::True => JsonType::Boolean,
                Entry::PosInt(_) | Entry::NegInt(_) | Entry::Float(_) => JsonType::Number,
                Entry::Str(_) | Entry::Escaped(_) => JsonType::String,
                Entry::Array { .. } => JsonType::Array,
                Entry::Object { .. } => JsonType::Object,
            },
        }
    }

    fn equals_value(&self, expected: &Value) -> bool {
        // `enum` and `const` on scalars, without building a `Value`.
        match (self.json_type(), expected) {
            (JsonType::String, Value::String(s)) => self.as_string().is_some_and(|v| *v == **s),
            (JsonType::Number, Value::Number(n)) => self.as_number().is_some_and(|v| cmp::equal_numbers(&v, n)),
            (JsonType::Array | JsonType::Object, _) => cmp::equal(&self.to_value(), expected),
            (JsonType::Null, Value::Null) => true,
            (JsonType::Boolean, Value::Bool(b)) => self.as_boolean() == Some(*b),
            _ => false,
        }
    }

    fn to_value(&self) -> Cow<'a, Value> {
        match *self {
            TapeNode::At(doc, at) => Cow::Owned(doc.value_at(at)),
            TapeNode::Name(name) => Cow::Owned(Value::String(name.to_owned())),
        }
    }

    fn identity(&self) -> Option<NodeIdentity> {
        match *self {
            TapeNode::At(doc, at) => Some(NodeIdentity::tagged(std::ptr::from_ref(doc) as usize, at)),
            TapeNode::Name(name) => Some(NodeIdentity::tagged(name.as_ptr() as usize, u32::MAX)),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct TapeObject<'a> {
    doc: &'a Doc<'a>,
    at: u32,
}

pub struct MembersIter<'a> {
    doc: &'a Doc<'a>,
    inner: Members<'a, 'a>,
}

impl<'a> Iterator for MembersIter<'a> {
    type Item = (&'a str, TapeNode<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let (key, value) = self.inner.next()?;
        Some((self.doc.str_at(key).unwrap_or_default(), TapeNode::At(self.doc, value)))
    }
}

impl<'a> Object<'a, Tape> for TapeObject<'a> {
    type Node = TapeNode<'a>;
    type MemberName = &'a str;
    type MembersIter = MembersIter<'a>;

    fn len(&self) -> usize {
        self.doc.len_at(self.at) as usize
    }

    fn get(&self, key: &Box<str>) -> Option<TapeNode<'a>> {
        Members::new(self.doc, self.at)
            .find(|&(k, _)| self.doc.str_at(k) == Some(&**key))
            .map(|(_, value)| TapeNode::At(self.doc, value))
    }

    fn members(&self) -> MembersIter<'a> {
        MembersIter { doc: self.doc, inner: Members::new(self.doc, self.at) }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct TapeArray<'a> {
    doc: &'a Doc<'a>,
    at: u32,
}

pub struct ElementsIter<'a> {
    doc: &'a Doc<'a>,
    inner: Elements<'a, 'a>,
}

impl<'a> Iterator for ElementsIter<'a> {
    type Item = TapeNode<'a>;

    fn next(&mut self) -> Option<TapeNode<'a>> {
        self.inner.next().map(|at| TapeNode::At(self.doc, at))
    }
}

impl<'a> Array<'a, Tape> for TapeArray<'a> {
    type Node = TapeNode<'a>;
    type ElementsIter = ElementsIter<'a>;

    fn len(&self) -> usize {
        self.doc.len_at(self.at) as usize
    }

    fn elements(&self) -> ElementsIter<'a> {
        ElementsIter { doc: self.doc, inner: Elements::new(self.doc, self.at) }
    }
}

#[cfg(test)]
mod tests {
    use super::Tape;
    use crate::policy::validate::json_limits::{JsonLimits, read};
    use proptest::prelude::*;
    use serde_json::{Value, json};

    /// Schemas that use most of what JSON Schema 2020-12 has, each run
    /// on the tape and on `serde_json::Value`.
    fn schemas() -> Vec<Value> {
        vec![
            json!({ "type": "object", "required": ["a"], "properties": { "a": { "type": "integer", "minimum": 0, "multipleOf": 2 }, "b": { "type": "string", "minLength": 2, "maxLength": 4, "pattern": "^[a-z]+$" } }, "additionalProperties": false }),
            json!({ "type": "array", "items": { "enum": [1, "x", null, true, [1], { "k": 1.0 }] }, "uniqueItems": true, "minItems": 1, "maxItems": 4 }),
            json!({ "oneOf": [ { "type": "string", "format": "email" }, { "type": "number", "exclusiveMaximum": 10 }, { "type": "object", "minProperties": 1 } ] }),
            json!({ "anyOf": [ { "const": { "a": [1, 2] } }, { "type": "array", "prefixItems": [ { "type": "boolean" } ], "contains": { "type": "null" } } ] }),
            json!({ "$defs": { "node": { "type": "object", "properties": { "next": { "$ref": "#/$defs/node" }, "v": { "type": "number" } } } }, "$ref": "#/$defs/node" }),
            json!({ "type": "object", "propertyNames": { "maxLength": 2 }, "patternProperties": { "^x": { "type": "string", "format": "date-time" } }, "dependentRequired": { "a": ["b"] }, "unevaluatedProperties": { "type": "integer" } }),
            json!({ "if": { "type": "object", "required": ["kind"] }, "then": { "properties": { "kind": { "const": "a" } } }, "else": { "not": { "type": "object" } } }),
            json!({ "type": ["string", "null", "integer"], "format": "uuid", "maximum": 3.5 }),
            json!(true),
            json!(false),
        ]
    }

    /// What each validator says about `doc`: valid, then each error's place and message.
    fn verdicts(doc: &str) -> Vec<(bool, Vec<(String, String)>)> {
        let value: Value = serde_json::from_str(doc).unwrap();
        let tape = read(doc.as_bytes(), &JsonLimits::default()).unwrap();
        let mut out = Vec::new();
        for schema in schemas() {
            let on_value = jsonschema::options().should_validate_formats(true).build(&schema).unwrap();
            let on_tape = jsonschema::options_for::<Tape>().should_validate_formats(true).build(&schema).unwrap();
            let errors = |e: jsonschema::ErrorIterator<'_>| -> Vec<(String, String)> {
                e.map(|e| (e.instance_path().as_str().to_string(), e.to_string())).collect()
            };
            let a = (on_value.is_valid(&value), errors(on_value.iter_errors(&value)));
            let b = (on_tape.is_valid(tape.root()), errors(on_tape.iter_errors(tape.root())));
            assert_eq!(a, b, "{schema} on {doc}");
            out.push(a);
        }
        out
    }

    #[test]
    fn the_tape_validates_as_serde_json_values_do() {
        for doc in [
            r#"{"a":4,"b":"ab"}"#,
            r#"{"a":3,"b":"ABCDE","c":1}"#,
            r#"[1,"x",null,true,[1],{"k":1}]"#,
            r#"[1,1]"#,
            r#""a@example.com""#,
            r#""not an email""#,
            r#"9.5"#,
            r#"{"a":[1,2]}"#,
            r#"{"a":[1,2.0]}"#,
            r#"[true, null]"#,
            r#"{"next":{"next":{"v":"x"}}}"#,
            r#"{"xa":"2024-01-01T00:00:00Z","a":1,"zz":"s"}"#,
            r#"{"kind":"b"}"#,
            r#""6fa459ea-ee8a-3ca4-894e-db77e160355e""#,
            r#"4"#,
            r#"{"a\u0062":1,"é":"\u00e9"}"#,
            r#"18446744073709551615"#,
            r#"-9223372036854775808"#,
            r#"1e300"#,
        ] {
            verdicts(doc);
        }
    }

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-5i64..12).prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (-20.0f64..20.0).prop_map(Value::from),
            prop_oneof![Just("a".to_string()), Just("x".to_string()), "[a-zA-Z@.]{0,6}"].prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
                prop::collection::btree_map("(a|b|c|kind|next|v|x[a-z]?|zz)", inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn random_documents_get_the_same_verdicts(v in json()) {
            verdicts(&serde_json::to_string(&v).unwrap());
        }
    }
}
