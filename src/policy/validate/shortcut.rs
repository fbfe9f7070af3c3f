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

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{Map, Number, Value};

use super::json_limits::{JsonLimits, POWERS_OF_TEN, plain_run};
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

/// A number as the body writes it, when the shortcut can know its value
/// exactly as the full read does.
#[derive(Debug, Clone, Copy)]
enum Num {
    Int(i64),
    Float(f64),
}

struct Property {
    /// The name's length and first eight bytes (`print`): names of up to
    /// eight bytes are told apart by it and their length.
    print: u64,
    name: Box<[u8]>,
    node: u32,
}

/// `name`'s length and first eight bytes, as one word.
#[inline(always)]
fn print(name: &[u8]) -> u64 {
    let mut head = [0u8; 8];
    let n = name.len().min(8);
    head[..n].copy_from_slice(&name[..n]);
    u64::from_le_bytes(head) ^ (name.len() as u64).rotate_right(8)
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

/// Keywords that say nothing about validity.
const ANNOTATIONS: [&str; 13] = [
    "title",
    "description",
    "default",
    "examples",
    "example",
    "readOnly",
    "writeOnly",
    "deprecated",
    "$comment",
    "discriminator",
    "xml",
    "externalDocs",
    // OpenAPI 3.0's, turned into JSON Schema before this; in 3.1 a keyword `jsonschema` ignores.
    "nullable",
];

/// The dialect the policy validates in (a root `$schema` naming it changes nothing).
const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// Keywords handed to `jsonschema` for string values.
const STRING_KEYWORDS: [&str; 6] = ["pattern", "format", "minLength", "maxLength", "enum", "const"];

struct Compiler<'s> {
    root: &'s Value,
    formats: &'s BTreeMap<String, String>,
    nodes: Vec<Node>,
    /// `$ref` targets compiled so far (a shared definition is one node).
    done: HashMap<String, u32>,
    /// `$ref`s being compiled: one met again is recursion, not supported.
    open: Vec<String>,
}

/// A property name of joined nodes, and its node in each (if declared there).
type Declared = (Box<[u8]>, Option<u32>, Option<u32>);

/// Not supported: the schema gets no shortcut, for this reason.
struct Unsupported(String);

fn no(reason: impl Into<String>) -> Unsupported {
    Unsupported(reason.into())
}

impl Shortcut {
    /// The shortcut for `schema` as the validate policy compiles it (the
    /// same `formats`), or what it uses that the shortcut does not know
    /// (the full path then checks every body).
    pub(super) fn compile(schema: &Value, formats: &BTreeMap<String, String>) -> Result<Shortcut, String> {
        if let Some(dialect) = schema.get("$schema")
            && dialect.as_str().map(|d| d.trim_end_matches('#')) != Some(DRAFT_2020_12)
        {
            // Another dialect: its keywords may mean other things.
            return Err(format!("`$schema: {dialect}`"));
        }
        let mut schema = schema.clone();
        super::openapi_formats(&mut schema);
        let mut c =
            Compiler { root: &schema, formats, nodes: vec![Node::new(ANY)], done: HashMap::new(), open: Vec::new() };
        let root = c.node(&schema, true).map_err(|Unsupported(reason)| reason)?;
        Ok(Shortcut { nodes: c.nodes, root })
    }

    /// Whether `body` is proved valid within `limits`; `false` is "not
    /// sure", never "invalid".
    pub(super) fn passes(&self, body: &[u8], limits: &JsonLimits) -> bool {
        let Ok(text) = std::str::from_utf8(body) else { return false };
        let mut r = Reader { bytes: body, text, at: 0, depth: 0, limits };
        r.value(self, self.root) && {
            r.skip_space();
            r.at == body.len()
        }
    }
}

impl Compiler<'_> {
    fn add(&mut self, node: Node) -> Result<u32, Unsupported> {
        if self.nodes.len() >= MAX_NODES {
            return Err(no(format!("more than {MAX_NODES} schemas")));
        }
        self.nodes.push(node);
        Ok(self.nodes.len() as u32 - 1)
    }

    fn node(&mut self, schema: &Value, is_root: bool) -> Result<u32, Unsupported> {
        let map = match schema {
            Value::Bool(true) => return Ok(ANYTHING),
            Value::Bool(false) => return self.add(Node::new(0)),
            Value::Object(map) => map,
            _ => return Err(no("a schema that is not an object or a boolean")),
        };
        // Schemas the value must also meet: `$ref`'s target and `allOf`'s parts.
        let mut parts = Vec::new();
        if let Some(reference) = map.get("$ref") {
            let reference = reference.as_str().ok_or_else(|| no("a `$ref` that is not a string"))?;
            let target = self.reference(reference)?;
            if map.keys().all(|k| k == "$ref" || is_ignored(k, is_root)) {
                return Ok(target);
            }
            parts.push(target);
        }
        let mut node = Node::new(ANY);
        let mut strings = Map::new();
        for (keyword, value) in map {
            match keyword.as_str() {
                "type" => node.types = types(value)?,
                "properties" => {
                    let properties = value.as_object().ok_or_else(|| no("`properties` not an object"))?;
                    if properties.len() > MAX_PROPERTIES {
                        return Err(no(format!("more than {MAX_PROPERTIES} properties")));
                    }
                    for (name, schema) in properties {
                        let child = self.node(schema, false)?;
                        node.properties.push(Property {
                            print: print(name.as_bytes()),
                            name: name.as_bytes().into(),
                            node: child,
                        });
                    }
                }
                "items" => node.items = self.node(value, false)?,
                "$ref" | "required" => {} // read above / below
                "allOf" => {
                    for part in value.as_array().ok_or_else(|| no("`allOf` not an array"))? {
                        parts.push(self.node(part, false)?);
                    }
                }
                "additionalProperties" => {
                    node.closed = !(value == &Value::Bool(true) || value == &Value::Object(Map::new()))
                }
                "minProperties" => node.min_properties = count(value)?,
                "maxProperties" => node.max_properties = count(value)?,
                "minItems" => node.min_items = count(value)?,
                "maxItems" => node.max_items = count(value)?,
                "minimum" => node.bounds.push((Side::Minimum, bound(value)?)),
                "maximum" => node.bounds.push((Side::Maximum, bound(value)?)),
                "exclusiveMinimum" => node.bounds.push((Side::ExclusiveMinimum, bound(value)?)),
                "exclusiveMaximum" => node.bounds.push((Side::ExclusiveMaximum, bound(value)?)),
                k if STRING_KEYWORDS.contains(&k) => {
                    node.strings_only |= k == "enum" || k == "const";
                    strings.insert(k.to_string(), value.clone());
                }
                k if is_ignored(k, is_root) => {}
                other => return Err(no(format!("`{other}`"))),
            }
        }
        // `additionalProperties` concerns only names outside `properties`,
        // which the shortcut never proves: whatever it says, it is met.
        if let Some(required) = map.get("required") {
            for name in required.as_array().ok_or_else(|| no("`required` not an array"))? {
                let name = name.as_str().ok_or_else(|| no("`required` not strings"))?;
                node.required |= match node.properties.iter().position(|p| &*p.name == name.as_bytes()) {
                    Some(i) => 1 << i,
                    None => UNDECLARED,
                };
            }
        }
        let date_time = strings.len() == 1 && strings.get("format").and_then(Value::as_str) == Some("date-time");
        if date_time && !self.formats.contains_key("date-time") {
            node.strings.push(Arc::new(Strings::DateTime));
        } else if !strings.is_empty() {
            let validator = super::build::<Tape>(&Value::Object(strings), self.formats).map_err(|(_, e)| no(e))?;
            node.strings.push(Arc::new(Strings::Schema(validator)));
        }
        let own = self.add(node)?;
        parts.into_iter().try_fold(own, |joined, part| self.conjoin(joined, part))
    }

    /// A node asking what both `a` and `b` ask (`allOf`).
    fn conjoin(&mut self, a: u32, b: u32) -> Result<u32, Unsupported> {
        if a == b || b == ANYTHING {
            return Ok(a);
        }
        if a == ANYTHING {
            return Ok(b);
        }
        let (na, nb) = (&self.nodes[a as usize], &self.nodes[b as usize]);
        let declares = |n: &Node, name: &[u8]| n.properties.iter().any(|p| *p.name == *name);
        let a_only = na.properties.iter().any(|p| !declares(nb, &p.name));
        let b_only = nb.properties.iter().any(|p| !declares(na, &p.name));
        if (a_only && nb.closed) || (b_only && na.closed) {
            return Err(no("`allOf` parts that each close their objects to the other's properties"));
        }
        // Each name once, with the nodes of the parts that declare it.
        let mut names: Vec<Declared> = na
            .properties
            .iter()
            .map(|p| (p.name.clone(), Some(p.node), nb.properties.iter().find(|q| q.name == p.name).map(|q| q.node)))
            .collect();
        names.extend(
            nb.properties.iter().filter(|p| !declares(na, &p.name)).map(|p| (p.name.clone(), None, Some(p.node))),
        );
        if names.len() > MAX_PROPERTIES {
            return Err(no(format!("more than {MAX_PROPERTIES} properties")));
        }
        let mut joined = Node::new(na.types & nb.types);
        joined.bounds = na.bounds.iter().chain(&nb.bounds).copied().collect();
        joined.strings = na.strings.iter().chain(&nb.strings).cloned().collect();
        joined.strings_only = na.strings_only || nb.strings_only;
        joined.closed = na.closed || nb.closed;
        joined.min_properties = na.min_properties.max(nb.min_properties);
        joined.max_properties = na.max_properties.min(nb.max_properties);
        joined.min_items = na.min_items.max(nb.min_items);
        joined.max_items = na.max_items.min(nb.max_items);
        for n in [na, nb] {
            joined.required |= n.required & UNDECLARED;
            for (i, p) in n.properties.iter().enumerate() {
                if n.required & (1 << i) != 0
                    && let Some(at) = names.iter().position(|(name, _, _)| *name == p.name)
                {
                    joined.required |= 1 << at;
                }
            }
        }
        let (items_a, items_b) = (na.items, nb.items);
        joined.items = self.conjoin(items_a, items_b)?;
        for (name, from_a, from_b) in names {
            let node = match (from_a, from_b) {
                (Some(x), Some(y)) => self.conjoin(x, y)?,
                (Some(x), None) | (None, Some(x)) => x,
                (None, None) => ANYTHING,
            };
            joined.properties.push(Property { print: print(&name), name, node });
        }
        self.add(joined)
    }

    /// A `$ref` to a JSON pointer inside the same schema (`#/$defs/Pet`).
    fn reference(&mut self, reference: &str) -> Result<u32, Unsupported> {
        let pointer = reference
            .strip_prefix('#')
            .filter(|p| p.is_empty() || p.starts_with('/'))
            .ok_or_else(|| no(format!("`$ref: {reference}`")))?;
        if pointer.contains('%') {
            return Err(no(format!("`$ref: {reference}`")));
        }
        if let Some(&done) = self.done.get(pointer) {
            return Ok(done);
        }
        if self.open.iter().any(|p| p == pointer) {
            // A recursive schema: its depth is the body's, not the schema's.
            return Err(no(format!("a recursive `$ref: {reference}`")));
        }
        let target = self.root.pointer(pointer).ok_or_else(|| no(format!("`$ref: {reference}`")))?;
        self.open.push(pointer.to_string());
        let node = self.node(target, pointer.is_empty());
        self.open.pop();
        let node = node?;
        self.done.insert(pointer.to_string(), node);
        Ok(node)
    }
}

/// Keywords the shortcut may pass over: annotations, extensions, and the
/// root's own `$id` and definitions (reached through `$ref`s).
fn is_ignored(keyword: &str, is_root: bool) -> bool {
    ANNOTATIONS.contains(&keyword)
        || keyword.starts_with("x-")
        || is_root && matches!(keyword, "$schema" | "$id" | "$defs" | "definitions")
}

fn types(value: &Value) -> Result<u8, Unsupported> {
    let one = |name: &Value| match name.as_str() {
        Some("null") => Ok(NULL),
        Some("boolean") => Ok(BOOLEAN),
        Some("integer") => Ok(INTEGER),
        Some("number") => Ok(NUMBER | INTEGER),
        Some("string") => Ok(STRING),
        Some("array") => Ok(ARRAY),
        Some("object") => Ok(OBJECT),
        _ => Err(no(format!("`type: {name}`"))),
    };
    match value {
        Value::Array(names) => names.iter().try_fold(0, |all, name| Ok(all | one(name)?)),
        name => one(name),
    }
}

fn count(value: &Value) -> Result<u64, Unsupported> {
    value.as_u64().ok_or_else(|| no(format!("a size of {value}")))
}

fn bound(value: &Value) -> Result<Bound, Unsupported> {
    let n: &Number = match value {
        Value::Number(n) => n,
        _ => return Err(no(format!("a bound of {value}"))),
    };
    if let Some(i) = n.as_i64() {
        Ok(Bound::Int(i128::from(i)))
    } else if let Some(u) = n.as_u64() {
        Ok(Bound::Int(i128::from(u)))
    } else {
        n.as_f64().filter(|f| f.is_finite()).map(Bound::Float).ok_or_else(|| no(format!("a bound of {value}")))
    }
}

/// 2^53: integers below it in magnitude are exact in f64.
const EXACT: i128 = 1 << 53;

/// `value` against `bound`, exactly; `None` where exactness is not cheap.
fn compare(value: Num, bound: Bound) -> Option<std::cmp::Ordering> {
    match (value, bound) {
        (Num::Int(v), Bound::Int(b)) => Some(i128::from(v).cmp(&b)),
        (Num::Int(v), Bound::Float(b)) if i128::from(v).abs() < EXACT => (v as f64).partial_cmp(&b),
        (Num::Float(v), Bound::Int(b)) if b.abs() < EXACT => v.partial_cmp(&(b as f64)),
        (Num::Float(v), Bound::Float(b)) => v.partial_cmp(&b),
        _ => None,
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    text: &'a str,
    at: usize,
    /// Containers open around the value being read.
    depth: u32,
    limits: &'a JsonLimits,
}

impl Reader<'_> {
    #[inline(always)]
    fn byte(&self) -> u8 {
        self.bytes.get(self.at).copied().unwrap_or(0)
    }

    #[inline(always)]
    fn skip_space(&mut self) {
        // Most bodies have no space between tokens.
        if self.byte() > b' ' {
            return;
        }
        while let b' ' | b'\t' | b'\n' | b'\r' = self.byte() {
            self.at += 1;
        }
    }

    /// A string without escapes from its opening quote at `self.at`: its
    /// contents' range, the cursor left after its closing quote.
    #[inline(always)]
    fn plain_string(&mut self) -> Option<(usize, usize)> {
        let start = self.at + 1;
        let end = start + plain_run(self.bytes.get(start..)?);
        // An escape, a control character or the end: not proved here.
        if self.bytes.get(end) != Some(&b'"') || (end - start) as u64 > self.limits.max_string {
            return None;
        }
        self.at = end + 1;
        Some((start, end))
    }

    /// One value that `node` must accept; `false`: not proved.
    fn value(&mut self, shortcut: &Shortcut, node: u32) -> bool {
        let Some(n) = shortcut.nodes.get(node as usize) else { return false };
        self.skip_space();
        match self.byte() {
            b'{' => n.types & OBJECT != 0 && !n.strings_only && self.object(shortcut, n),
            b'[' => n.types & ARRAY != 0 && !n.strings_only && self.array(shortcut, n),
            first => self.scalar(n, first),
        }
    }

    /// A value that is not a container, starting with `first`: inline in
    /// the loops over members and elements (most values are scalars).
    #[inline(always)]
    fn scalar(&mut self, n: &Node, first: u8) -> bool {
        if n.strings_only && first != b'"' {
            return false;
        }
        match first {
            b'"' => {
                if n.types & STRING == 0 {
                    return false;
                }
                let Some((start, end)) = self.plain_string() else { return false };
                match n.strings.as_slice() {
                    [] => true,
                    // Quotes are character boundaries of the (UTF-8) body.
                    checks => self.text.get(start..end).is_some_and(|s| checks.iter().all(|c| c.accept(s))),
                }
            }
            b'-' | b'0'..=b'9' => self.number(n),
            b't' => n.types & BOOLEAN != 0 && self.literal(b"true"),
            b'f' => n.types & BOOLEAN != 0 && self.literal(b"false"),
            b'n' => n.types & NULL != 0 && self.literal(b"null"),
            _ => false,
        }
    }

    /// A member's or element's value: scalars here, containers by a call.
    #[inline(always)]
    fn member(&mut self, shortcut: &Shortcut, node: u32) -> bool {
        self.skip_space();
        match self.byte() {
            b'{' | b'[' => self.value(shortcut, node),
            first => shortcut.nodes.get(node as usize).is_some_and(|n| self.scalar(n, first)),
        }
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        let matched = self.bytes.get(self.at..).is_some_and(|rest| rest.starts_with(word));
        self.at += word.len();
        matched
    }

    fn object(&mut self, shortcut: &Shortcut, n: &Node) -> bool {
        if self.depth >= self.limits.max_depth {
            return false;
        }
        self.depth += 1;
        self.at += 1;
        let mut seen = 0u64;
        let mut members = 0u64;
        // Bodies mostly write members in the schema's order: look from the next one.
        let mut next = 0;
        self.skip_space();
        if self.byte() != b'}' {
            loop {
                self.skip_space();
                if self.byte() != b'"' {
                    return false;
                }
                let Some((start, end)) = self.plain_string() else { return false };
                let Some(i) = self.property(n, next, start, end) else { return false };
                let bit = 1u64 << i;
                if seen & bit != 0 {
                    return false; // a duplicate: refused by the full path
                }
                seen |= bit;
                members += 1;
                next = i + 1;
                self.skip_space();
                if self.byte() != b':' {
                    return false;
                }
                self.at += 1;
                if !self.member(shortcut, n.properties[i].node) {
                    return false;
                }
                self.skip_space();
                match self.byte() {
                    b',' => self.at += 1,
                    b'}' => break,
                    _ => return false,
                }
            }
        }
        self.at += 1;
        self.depth -= 1;
        seen & n.required == n.required
            && members <= u64::from(self.limits.max_entries)
            && (n.min_properties..=n.max_properties).contains(&members)
    }

    /// The index of the property named by `start..end` of the body,
    /// looked for from `next` on (bodies mostly follow the schema's order).
    #[inline(always)]
    fn property(&self, n: &Node, next: usize, start: usize, end: usize) -> Option<usize> {
        let len = end - start;
        let head = match self.bytes.get(start..start + 8) {
            // The eight bytes from the name's start, the quote and what follows it masked off.
            Some(word) => {
                let word = u64::from_le_bytes(word.try_into().ok()?);
                let kept = if len >= 8 { u64::MAX } else { (1u64 << (len * 8)) - 1 };
                (word & kept) ^ (len as u64).rotate_right(8)
            }
            None => print(self.bytes.get(start..end)?),
        };
        let count = n.properties.len();
        let mut i = next;
        for _ in 0..count {
            if i >= count {
                i = 0;
            }
            let p = &n.properties[i];
            // Up to eight bytes, the print is the name, but for a declared name
            // with control characters (escaped in the schema, never raw in a
            // body) that could share it: the length settles that.
            if p.print == head && p.name.len() == len && (len <= 8 || self.bytes.get(start..end) == Some(&p.name[..])) {
                return Some(i);
            }
            i += 1;
        }
        None
    }

    fn array(&mut self, shortcut: &Shortcut, n: &Node) -> bool {
        if self.depth >= self.limits.max_depth {
            return false;
        }
        self.depth += 1;
        self.at += 1;
        let mut elements = 0u64;
        self.skip_space();
        if self.byte() != b']' {
            loop {
                if !self.member(shortcut, n.items) {
                    return false;
                }
                elements += 1;
                if elements > u64::from(self.limits.max_array) {
                    return false;
                }
                self.skip_space();
                match self.byte() {
                    b',' => self.at += 1,
                    b']' => break,
                    _ => return false,
                }
            }
        }
        self.at += 1;
        self.depth -= 1;
        (n.min_items..=n.max_items).contains(&elements)
    }

    /// A number `n` must accept. Proved, without an exponent: integers of
    /// up to 18 digits, decimals where no bound needs their value, and
    /// decimals of up to 15 digits (read to the same value as the full
    /// read: Clinger's exact division) compared with the bounds.
    fn number(&mut self, n: &Node) -> bool {
        let b = self.bytes;
        let start = self.at;
        let mut i = start;
        let negative = b.get(i) == Some(&b'-');
        i += usize::from(negative);
        let mut mantissa = 0u64;
        let mut digits = 0u32;
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while let Some(&d @ b'0'..=b'9') = b.get(i) {
                    mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
                    digits += 1;
                    i += 1;
                }
            }
            _ => return false,
        }
        let whole_digits = digits;
        let mut scale = 0;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let first = i;
            while let Some(&d @ b'0'..=b'9') = b.get(i) {
                mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
                digits += 1;
                i += 1;
            }
            if i == first {
                return false;
            }
            scale = i - first;
        }
        self.at = i;
        if matches!(b.get(i), Some(b'e' | b'E')) || (i - start) as u64 > u64::from(self.limits.max_number_length) {
            return false;
        }
        let value = if scale == 0 {
            if n.types & INTEGER == 0 || digits > 18 {
                return false;
            }
            let m = mantissa as i64; // under 10^18
            Num::Int(if negative { -m } else { m })
        } else {
            // `1.0` is an integer to JSON Schema: left to the full path.
            if n.types & NUMBER == 0 {
                return false;
            }
            if n.bounds.is_empty() {
                // Its value does not matter, only that it is a finite
                // float (clients write up to 17 digits: `13.120000000000001`).
                return whole_digits <= 300;
            }
            // Up to 15 digits, read exactly as the full read does (Clinger).
            let Some(power) = POWERS_OF_TEN.get(scale).filter(|_| digits <= 15) else { return false };
            let v = mantissa as f64 / power;
            Num::Float(if negative { -v } else { v })
        };
        n.bounds.iter().all(|&(side, bound)| {
            use std::cmp::Ordering::{Greater, Less};
            match (side, compare(value, bound)) {
                (Side::Minimum, Some(o)) => o != Less,
                (Side::Maximum, Some(o)) => o != Greater,
                (Side::ExclusiveMinimum, Some(o)) => o == Greater,
                (Side::ExclusiveMaximum, Some(o)) => o == Less,
                (_, None) => false,
            }
        })
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
