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
    /// into the document (`properties`, `items`, …), over every subschema.
    pub fn of(schema: &Value) -> Room {
        let mut walk = Walk { index: Index::of(schema), chain: HashMap::new() };
        let nodes: Vec<&Value> = walk.index.base_of.keys().map(|&p| walk.index.nodes[&p]).collect();
        let hops = nodes.into_iter().map(|n| walk.in_place(n)).max().unwrap_or(0);
        Room { hops }
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

/// Where a schema's references lead: each subschema's base URI (its own
/// or its nearest ancestor's `$id`), the resources (`$id`) and anchors
/// (`$anchor`, `$dynamicAnchor`) by URI, as the library resolves them.
pub(super) struct Index<'a> {
    nodes: HashMap<*const Value, &'a Value>,
    base_of: HashMap<*const Value, url::Url>,
    resources: HashMap<String, &'a Value>,
    anchors: HashMap<(String, String), &'a Value>,
    /// How many schemas declare each `$dynamicAnchor` name: with more than
    /// one, a `$dynamicRef` to it resolves by the dynamic scope, which a
    /// static look cannot tell.
    dynamic: HashMap<String, usize>,
    /// Every in-place step in the schema: no chain on one level is longer
    /// (the count for a reference this index cannot follow).
    steps: u32,
}

/// Keywords whose values are data, not schemas (an `$id` in an `enum`
/// value names nothing).
pub(super) const DATA: &[&str] = &["enum", "const", "default", "examples", "example"];

/// Keywords whose members are names the document chose (a schema called
/// `default` under `$defs`, a property called `enum`): their values are
/// schemas whatever the name (OpenAPI's `components.schemas` too).
pub(super) const NAME_MAPS: &[&str] =
    &["$defs", "definitions", "properties", "patternProperties", "dependentSchemas", "schemas"];

impl<'a> Index<'a> {
    pub(super) fn of(root: &'a Value) -> Index<'a> {
        let base = url::Url::parse("https://portcullis.invalid/schema.json").expect("a valid URL");
        let mut index = Index {
            nodes: HashMap::new(),
            base_of: HashMap::new(),
            resources: HashMap::new(),
            anchors: HashMap::new(),
            dynamic: HashMap::new(),
            steps: 0,
        };
        index.resources.insert(base.to_string(), root);
        index.add(root, &base, false);
        index
    }

    /// `names`: `node` is a map of names (`NAME_MAPS`), not a schema.
    fn add(&mut self, node: &'a Value, base: &url::Url, names: bool) {
        match node {
            Value::Object(map) => {
                let mut base = base.clone();
                if let Some(id) = map.get("$id").and_then(Value::as_str)
                    && let Ok(mut joined) = base.join(id)
                {
                    let fragment = joined.fragment().filter(|f| !f.is_empty()).map(str::to_string);
                    joined.set_fragment(None);
                    // A fragment alone (`$id: "#note"`, drafts 6 and 7) names
                    // an anchor in the resource it is in, not a new resource:
                    // taken as one, it replaced the document, and every `#/…`
                    // reference in it led nowhere.
                    if !id.starts_with('#') {
                        base = joined;
                        self.resources.insert(base.to_string(), node);
                    }
                    if let Some(name) = fragment.filter(|f| !f.starts_with('/')) {
                        self.anchors.insert((base.to_string(), name), node);
                    }
                }
                for key in ["$anchor", "$dynamicAnchor"] {
                    if let Some(name) = map.get(key).and_then(Value::as_str) {
                        self.anchors.insert((base.to_string(), name.to_string()), node);
                        if key == "$dynamicAnchor" {
                            *self.dynamic.entry(name.to_string()).or_default() += 1;
                        }
                    }
                }
                let mut subs = Vec::new();
                for_each_sub(node, IN_PLACE, &mut subs);
                let refs = ["$ref", "$dynamicRef"].iter().filter(|k| map.contains_key(**k)).count();
                self.steps = self.steps.saturating_add((subs.len() + refs) as u32);
                self.nodes.insert(node, node);
                self.base_of.insert(node, base.clone());
                for (k, v) in map {
                    if names || !DATA.contains(&k.as_str()) {
                        self.add(v, &base, !names && NAME_MAPS.contains(&k.as_str()));
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| self.add(v, base, false)),
            _ => {}
        }
    }

    /// Whether `$dynamicAnchor` `name` is declared in more than one place.
    pub(super) fn dynamic_anchor_is_shared(&self, name: &str) -> bool {
        self.dynamic.get(name).is_some_and(|n| *n > 1)
    }

    /// What `node`'s `$ref` (or `$dynamicRef`, or draft 2019-09's
    /// `$recursiveRef`, followed statically) names: `Ok(None)` without
    /// one, `Err` for one not found here.
    pub(super) fn target(&self, node: &Value) -> Result<Option<&'a Value>, ()> {
        let reference = ["$ref", "$dynamicRef", "$recursiveRef"].iter().find_map(|k| node.get(*k));
        let Some(r) = reference.and_then(Value::as_str) else {
            return Ok(None);
        };
        let base = self.base_of.get(&(node as *const Value)).ok_or(())?;
        let mut uri = base.join(r).map_err(|_| ())?;
        let fragment = uri.fragment().map(str::to_string).unwrap_or_default();
        uri.set_fragment(None);
        let resource = self.resources.get(uri.as_str()).ok_or(())?;
        let found = if fragment.is_empty() {
            Some(*resource)
        } else if fragment.starts_with('/') {
            let decoded = percent_encoding::percent_decode_str(&fragment).decode_utf8().map_err(|_| ())?;
            resource.pointer(&decoded)
        } else {
            self.anchors.get(&(uri.to_string(), fragment)).copied()
        };
        found.map(Some).ok_or(())
    }
}

struct Walk<'a> {
    index: Index<'a>,
    /// A node's longest in-place chain (memo; `None` while it is walked).
    chain: HashMap<*const Value, Option<u32>>,
}

/// Keywords that apply their schemas to the same value.
const IN_PLACE: &[&str] = &["allOf", "anyOf", "oneOf", "not", "if", "then", "else", "dependentSchemas"];

impl<'a> Walk<'a> {
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
        let mut longest = 0u32;
        match self.index.target(node) {
            Ok(Some(target)) => next.push(target),
            Ok(None) => {}
            // Not followed: as long as every step in the schema.
            Err(()) => longest = self.index.steps,
        }
        for n in next {
            longest = longest.max(self.in_place(n).saturating_add(1).min(MAX_HOPS));
        }
        self.chain.insert(node, Some(longest));
        longest
    }
}

/// The subschemas `node` applies under `keywords`: a schema, a list of
/// them, or a map of them.
fn for_each_sub<'a>(node: &'a Value, keywords: &[&str], out: &mut Vec<&'a Value>) {
    let Some(map) = node.as_object() else { return };
    for k in keywords {
        match map.get(*k) {
            Some(v @ Value::Object(_)) if *k == "dependentSchemas" => {
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
        // The same chain by `$anchor` names, and by URIs under `$id`s.
        let anchors = json!({ "$ref": "#n", "$defs": {
            "n": { "$anchor": "n", "$ref": "#m" },
            "m": { "$anchor": "m", "allOf": [ { "$ref": "#o" } ] },
            "o": { "$anchor": "o", "allOf": [ { "$ref": "#u" } ] },
            "u": { "$anchor": "u", "type": "object", "properties": { "c": { "$ref": "#n" } } }
        } });
        assert_eq!(Room::of(&anchors).hops, 6);
        let ids = json!({ "$id": "https://ex.test/s.json", "$ref": "s.json#/$defs/n", "$defs": {
            "n": { "$ref": "https://ex.test/s.json#/$defs/m" },
            "m": { "allOf": [ { "$ref": "m.json" } ] },
            "o": { "$id": "m.json", "allOf": [ { "$ref": "s.json#/$defs/u" } ] },
            "u": { "type": "object", "properties": { "c": { "$ref": "#/$defs/n" } } }
        } });
        assert_eq!(Room::of(&ids).hops, 6);
        // Draft 7's `$id: "#name"` is an anchor: `#/…` references still
        // lead into the document, and `#name` to the schema.
        let draft7 = json!({ "$ref": "#/definitions/n", "definitions": {
            "note": { "$id": "#note", "type": "string" },
            "n": { "allOf": [ { "$ref": "#note" } ] } } });
        let index = Index::of(&draft7);
        assert_eq!(index.target(&draft7), Ok(Some(&draft7["definitions"]["n"])));
        assert_eq!(index.target(&draft7["definitions"]["n"]["allOf"][0]), Ok(Some(&draft7["definitions"]["note"])));
        // A reference not found here counts as every step in the schema.
        let lost = json!({ "allOf": [ { "$ref": "other.json" } ], "properties": { "a": { "not": {} } } });
        assert_eq!(Room::of(&lost).hops, 1 + 3, "the hop to it, then every step");
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
