//! Room on the stack for a schema check. The jsonschema crate's checks
//! recurse once per level of the document, times the `$ref`/`allOf` hops
//! the schema takes at each level: a body a few hundred levels deep
//! (`json_limits.max_depth` allows 512), an upstream answer 126 deep
//! against a chain of `allOf`s, or a 68-byte body against a schema of 80
//! hops a level, overflowed a 2 MiB worker stack and aborted the process.
//! A schema's hops a level are counted once, when it is compiled; a
//! document's check runs where `BASE` plus, for each level, `PER_LEVEL`
//! and `PER_HOP` for each hop, are left on the stack, on a stack of its
//! own (mapped for the check, then released) when the thread's is short:
//! shallow documents against plain schemas, the usual ones, never pay.

use std::collections::HashMap;

use serde_json::Value;

/// Stack a check takes besides its levels.
const BASE: usize = 256 << 10;

/// Stack a level of the document takes besides its schema's hops.
const PER_LEVEL: usize = 16 << 10;

/// Stack a `$ref` or applicator hop takes (a debug build's error listing
/// took ~2 KiB a hop; an optimised build less).
const PER_HOP: usize = 4 << 10;

/// The largest stack a check is given (a schema of hundreds of hops a
/// level, 512 levels deep: reserved address space, touched as used).
const MAX_STACK: usize = 1 << 30;

/// Hops counted at most on one level (a cycle of applicators without a
/// step into the document recurses without end; the library refuses it).
const MAX_HOPS: u32 = 4096;

/// How much stack a level of a document costs against one schema.
#[derive(Debug, Clone, Copy, Default)]
pub struct Room {
    hops: u32,
}

impl Room {
    /// `schema`'s most hops on one level of a document: the longest chain
    /// of `$ref`s and in-place applicators (`allOf`, `anyOf`, `oneOf`,
    /// `not`, `if`/`then`/`else`, `dependentSchemas`) between two steps
    /// into the document (`properties`, `items`, …).
    pub fn of(schema: &Value) -> Room {
        let mut walk = Walk { root: schema, chain: HashMap::new(), seen: HashMap::new() };
        Room { hops: walk.deepest(schema) }
    }

    /// The stack a check of a document `depth` levels deep needs.
    fn need(self, depth: u32) -> usize {
        let per_level = PER_LEVEL + self.hops as usize * PER_HOP;
        BASE.saturating_add((depth as usize).saturating_mul(per_level))
    }

    /// Whether a document `depth` levels deep can be checked within
    /// `MAX_STACK` (a schema of hundreds of hops a level, hundreds of
    /// levels deep, cannot: refused rather than risked).
    pub fn fits(self, depth: u32) -> bool {
        self.need(depth) <= MAX_STACK
    }

    /// Runs `check` (a schema check of a document `depth` levels deep)
    /// with stack enough for it (at most `MAX_STACK`: ask `fits` first).
    pub fn run<R>(self, depth: u32, check: impl FnOnce() -> R) -> R {
        let need = self.need(depth).min(MAX_STACK);
        stacker::maybe_grow(need, need, check)
    }
}

struct Walk<'a> {
    root: &'a Value,
    /// A node's longest in-place chain (memo; `None` while it is walked).
    chain: HashMap<*const Value, Option<u32>>,
    /// Nodes whose whole subtree (descents included) was walked.
    seen: HashMap<*const Value, u32>,
}

/// Keywords that apply their schemas to the same value.
const IN_PLACE: &[&str] = &["allOf", "anyOf", "oneOf", "not", "if", "then", "else", "dependentSchemas"];

/// Keywords that apply their schemas to values one level down.
const DESCENDING: &[&str] = &[
    "properties",
    "patternProperties",
    "additionalProperties",
    "unevaluatedProperties",
    "propertyNames",
    "items",
    "prefixItems",
    "additionalItems",
    "unevaluatedItems",
    "contains",
];

impl<'a> Walk<'a> {
    /// The most hops on any level of the document, over every schema
    /// reachable from `node`.
    fn deepest(&mut self, node: &'a Value) -> u32 {
        if let Some(&d) = self.seen.get(&(node as *const Value)) {
            return d;
        }
        self.seen.insert(node, 0);
        let mut most = self.in_place(node);
        let mut next: Vec<&'a Value> = Vec::new();
        for_each_sub(node, DESCENDING, &mut next);
        for_each_sub(node, IN_PLACE, &mut next);
        next.extend(self.target(node));
        for n in next {
            most = most.max(self.deepest(n));
        }
        self.seen.insert(node, most);
        most
    }

    /// The longest chain of hops from `node` that stays on its level.
    fn in_place(&mut self, node: &'a Value) -> u32 {
        match self.chain.get(&(node as *const Value)) {
            Some(Some(d)) => return *d,
            Some(None) => return MAX_HOPS, // a cycle on one level
            None => {}
        }
        self.chain.insert(node, None);
        let mut next: Vec<&'a Value> = Vec::new();
        for_each_sub(node, IN_PLACE, &mut next);
        next.extend(self.target(node));
        let mut longest = 0u32;
        for n in next {
            longest = longest.max(self.in_place(n).saturating_add(1).min(MAX_HOPS));
        }
        self.chain.insert(node, Some(longest));
        longest
    }

    /// What a same-document `$ref` or `$dynamicRef` (`#/$defs/Pet`) names.
    fn target(&self, node: &Value) -> Option<&'a Value> {
        let r = node.get("$ref").or_else(|| node.get("$dynamicRef"))?.as_str()?;
        let pointer = r.strip_prefix('#')?;
        let decoded = percent_encoding::percent_decode_str(pointer).decode_utf8().ok()?;
        self.root.pointer(&decoded)
    }
}

/// The subschemas `node` applies under `keywords`: a schema, a list of
/// them, or a map of them.
fn for_each_sub<'a>(node: &'a Value, keywords: &[&str], out: &mut Vec<&'a Value>) {
    let Some(map) = node.as_object() else { return };
    for k in keywords {
        match map.get(*k) {
            Some(v @ Value::Object(_)) if matches!(*k, "properties" | "patternProperties" | "dependentSchemas") => {
                out.extend(v.as_object().into_iter().flat_map(|m| m.values()));
            }
            Some(v @ Value::Object(_)) => out.push(v),
            Some(Value::Array(list)) => out.extend(list.iter()),
            _ => {}
        }
    }
}

/// How deep `v` is (a scalar is 0, `[]` and `{}` 1), without recursion.
pub fn depth_of(v: &Value) -> u32 {
    let mut deepest = 0;
    let mut open: Vec<(&Value, u32)> = vec![(v, 0)];
    while let Some((v, d)) = open.pop() {
        match v {
            Value::Array(items) => {
                deepest = deepest.max(d + 1);
                open.extend(items.iter().map(|i| (i, d + 1)));
            }
            Value::Object(members) => {
                deepest = deepest.max(d + 1);
                open.extend(members.values().map(|m| (m, d + 1)));
            }
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn depth_counts_containers() {
        assert_eq!(depth_of(&json!(1)), 0);
        assert_eq!(depth_of(&json!({})), 1);
        assert_eq!(depth_of(&json!([1, [2, {"a": [3]}], {}])), 4);
    }

    #[test]
    fn hops_are_counted_per_level() {
        assert_eq!(Room::of(&json!({ "type": "object" })).hops, 0);
        // n -> m -> allOf -> o -> u, then `c` goes one level down to n again.
        let chain = json!({ "$ref": "#/$defs/n", "$defs": {
            "n": { "$ref": "#/$defs/m" },
            "m": { "allOf": [ { "$ref": "#/$defs/o" } ] },
            "o": { "allOf": [ { "$ref": "#/$defs/u" } ] },
            "u": { "type": "object", "properties": { "c": { "$ref": "#/$defs/n" } } }
        } });
        // root -$ref-> n -$ref-> m -allOf-> {…} -$ref-> o -allOf-> {…} -$ref-> u
        assert_eq!(Room::of(&chain).hops, 6);
        // Deeper inside a property counts as much as at the top.
        let inner = json!({ "properties": { "a": { "allOf": [ { "anyOf": [ { "not": {} } ] } ] } } });
        assert_eq!(Room::of(&inner).hops, 3);
        // A cycle on one level is counted as the most.
        let cycle = json!({ "$defs": { "a": { "allOf": [ { "$ref": "#/$defs/a" } ] } }, "$ref": "#/$defs/a" });
        assert_eq!(Room::of(&cycle).hops, MAX_HOPS);
        assert!(Room::of(&cycle).fits(60) && !Room::of(&cycle).fits(70), "1 GiB at most");
        assert!(Room::of(&chain).fits(512));
    }

    /// A check deeper than the thread's stack allows runs on a grown one.
    #[test]
    fn a_deep_check_gets_a_stack_of_its_own() {
        fn down(n: u32) -> u32 {
            let pad = std::hint::black_box([0u8; 16 << 10]);
            if n == 0 { u32::from(pad[0]) } else { down(n - 1) + u32::from(pad[n as usize % 16]) }
        }
        // 512 levels of 16 KiB or more each: 8 MiB, four times a 2 MiB
        // thread's stack (the room for 8 hops a level: 48 KiB).
        let ran = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(|| Room { hops: 8 }.run(512, || down(512)))
            .unwrap()
            .join();
        assert_eq!(ran.ok(), Some(0));
    }
}
