//! The shortcut's compiler: a schema into nodes of plain checks, or the
//! keyword it does not know.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{Map, Number, Value};

use super::super::json_limits::fingerprint_bytes;
use super::super::tape::Tape;
use super::{
    ANY, ANYTHING, ARRAY, BOOLEAN, Bound, INTEGER, MAX_NODES, MAX_PROPERTIES, NULL, NUMBER, Node, OBJECT, Property,
    STRING, Shortcut, Side, Strings, UNDECLARED,
};

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

/// The most `$ref`s followed inside one another (the full path checks the rest).
const MAX_OPEN_REFS: usize = 64;

/// A property name of joined nodes, and its node in each (if declared there).
type Declared = (Box<[u8]>, Option<u32>, Option<u32>);

/// Not supported: the schema gets no shortcut, for this reason.
struct Unsupported(String);

fn no(reason: impl Into<String>) -> Unsupported {
    Unsupported(reason.into())
}

/// [`Shortcut::compile`].
pub(super) fn compile(schema: &Value, formats: &BTreeMap<String, String>) -> Result<Shortcut, String> {
    if let Some(dialect) = schema.get("$schema")
        && dialect.as_str().map(|d| d.trim_end_matches('#')) != Some(DRAFT_2020_12)
    {
        // Another dialect: its keywords may mean other things.
        return Err(format!("`$schema: {dialect}`"));
    }
    let mut schema = schema.clone();
    super::super::openapi_formats(&mut schema);
    let mut c =
        Compiler { root: &schema, formats, nodes: vec![Node::new(ANY)], done: HashMap::new(), open: Vec::new() };
    let root = c.node(&schema, true).map_err(|Unsupported(reason)| reason)?;
    Ok(Shortcut { nodes: c.nodes, root })
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
                            print: fingerprint_bytes(name.as_bytes()),
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
            let validator =
                super::super::build::<Tape>(&Value::Object(strings), self.formats).map_err(|(_, e)| no(e))?;
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
            joined.properties.push(Property { print: fingerprint_bytes(&name), name, node });
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
        if self.open.len() >= MAX_OPEN_REFS {
            // A long chain of `$ref`s: compiling it recursed once per link
            // (a 2,000-long chain overflowed `check`'s stack, and a reload's).
            return Err(no(format!("`$ref`s nested more than {MAX_OPEN_REFS} deep")));
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
