//! What saying *why* a body fails may cost.
//!
//! Whether a body passes is cheap whatever its shape: `jsonschema`'s
//! `is_valid` stops at the first fault and remembers what a recursive
//! `$ref` said about a value. Collecting the errors is not: for `anyOf` /
//! `oneOf` the library keeps every branch's errors, and through a `$ref`
//! cycle (a tree of polymorphic nodes, an OpenAPI `Pet` whose `children`
//! are `Pet`s) each level multiplies them by the branches: a 331-byte body
//! nested 21 levels took the gateway past 5 GB. Any keyword that sends one
//! value into two subschemas on the cycle does the same (`properties` and a
//! `patternProperties` naming one key, two `dependentSchemas`: a 405-byte
//! body, 4.5 GB). So for such a schema the
//! errors are collected only while the body's weight, each value counted as
//! `base^depth`, stays under a budget; past it the body is refused as one
//! problem at its root, the decision unchanged, only the detail shorter.
//!
//! The keywords about an object as a whole are the other cost: each of
//! their errors holds the whole object (a copy, from the tape), so listing
//! them costs errors × members. `propertyNames` makes one error per
//! refused name (4,000 names took 20 s and stalled a worker); `required`
//! one per missing name (30 missing beside 5,000 members: 170 ms, dev
//! build). With such keywords, errors are listed only while every object
//! of the body has at most `MAX_LISTED_MEMBERS` members (`propertyNames`,
//! whose errors come all at once, one per name: `MAX_NAMED_MEMBERS`).

use serde_json::Value;

use super::tape::Doc;

/// Weight a body may have and still get its errors listed. The model
/// over-counts on purpose: for the two-branch tree of the tests the work
/// measured doubles a level (a chain of 17 levels, ~3 ms with optimized
/// dependencies), the model's base is 4; at this budget such a body may
/// nest 10 levels and costs well under a millisecond.
const BUDGET: f64 = (1u64 << 20) as f64;

/// The most members an object may have for the errors of a schema with
/// object keywords (`propertyNames`, `required`…) to be listed.
const MAX_LISTED_MEMBERS: u32 = 256;

/// [`MAX_LISTED_MEMBERS`] with `propertyNames`: members² copies.
const MAX_NAMED_MEMBERS: u32 = 64;

/// Keywords whose errors carry the object they judge.
const OBJECT_KEYWORDS: &[&str] = &[
    "propertyNames",
    "required",
    "dependentRequired",
    "dependentSchemas",
    "dependencies",
    "minProperties",
    "maxProperties",
];

/// The detail of the one problem a body over the budget gets.
pub const TOO_INTRICATE: &str = "does not match the schema (nested too deeply in a recursive schema that checks a value in several ways, such as `anyOf`/`oneOf`/`allOf`, or an object of too many members whose names are checked, for the gateway to say where)";

/// A schema's error-collection cost model: `None` when it is linear in
/// the body (no alternatives, or no recursion through them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReportBudget {
    /// What one more level of nesting may multiply the work by.
    base: f64,
    /// With object keywords (`OBJECT_KEYWORDS`): the most members an
    /// object of a body may have for its errors to be listed.
    max_members: Option<u32>,
    /// How many ways the schema may take one value through its shared
    /// `$ref`s (1 unless they form a wide graph without a cycle): the
    /// budget left for the body's own weight is divided by it.
    paths: f64,
}

/// Ways through shared references past which a schema without recursion
/// is budgeted too: `S0: allOf [S1, S1]`, `S1: allOf [S2, S2]`… 24 levels
/// deep gave a 9-byte body that failed 16 million errors (the gateway was
/// killed for its memory), with no cycle for `recursive` to find.
const MAX_PATHS: f64 = 64.0;

impl ReportBudget {
    /// The model of `schema`, or `None` if collecting its errors is cheap.
    pub fn of(schema: &Value) -> Option<ReportBudget> {
        let mut found = Found::default();
        walk(schema, &mut String::new(), &mut found);
        let cyclic = found.opaque || recursive(&found.refs);
        let paths = if cyclic { 1.0 } else { ref_paths(&found.refs) };
        let multiplying = found.widest >= 2 && (cyclic || paths > MAX_PATHS);
        let max_members = match (found.names, found.object_keywords) {
            (true, _) => Some(MAX_NAMED_MEMBERS),
            (false, true) => Some(MAX_LISTED_MEMBERS),
            _ => None,
        };
        if !multiplying && max_members.is_none() {
            return None;
        }
        // Each branch collects its own errors and the library checks it
        // first: twice the branches per level, with room to spare.
        let base = if multiplying { 2.0 * found.widest as f64 } else { 1.0 };
        let paths = if multiplying { paths } else { 1.0 };
        Some(ReportBudget { base, max_members, paths })
    }

    /// Whether the errors of `doc` may be collected.
    pub fn affords(&self, doc: &Doc<'_>) -> bool {
        let budget = BUDGET / self.paths;
        self.max_members.is_none_or(|max| doc.widest_object() <= max) && doc.weight(self.base, budget) <= budget
    }

    /// [`affords`](Self::affords) for a parsed value (a parameter's JSON,
    /// a response body).
    pub fn affords_value(&self, value: &Value) -> bool {
        let budget = BUDGET / self.paths;
        let mut sum = 0.0;
        let mut stack = vec![(value, 0i32)];
        while let Some((v, depth)) = stack.pop() {
            sum += self.base.powi(depth);
            if sum > budget {
                return false;
            }
            match v {
                Value::Array(items) => stack.extend(items.iter().map(|i| (i, depth + 1))),
                Value::Object(map) if self.max_members.is_some_and(|max| map.len() > max as usize) => return false,
                Value::Object(map) => stack.extend(map.values().map(|m| (m, depth + 1))),
                _ => {}
            }
        }
        true
    }
}

/// The most values (members, elements and scalars, each counted) a failing
/// value may hold and get every error listed; beyond, it gets its first
/// error only. `jsonschema`'s `iter_errors` makes the whole list before the
/// first is read, each error a few hundred bytes with its paths: a 10 MB
/// array of 5 million strings checked against `type: array of strings`,
/// each element failing, took 1.9 GB and 5 s (7.8 GB with an `anyOf` of
/// three), where its first error costs what `is_valid` costs.
pub const MAX_LISTED_VALUES: usize = 4096;

/// How many values `value` holds, counted up to just past `MAX_LISTED_VALUES`.
pub fn values_in(value: &Value) -> usize {
    let mut count = 0;
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        count += 1;
        if count > MAX_LISTED_VALUES {
            break;
        }
        match v {
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => stack.extend(map.values()),
            _ => {}
        }
    }
    count
}

/// The errors to list for a failing value of `values` values (at most
/// `MAX_ERRORS`): `all` of them for a value of at most
/// `MAX_LISTED_VALUES`, else the `first`.
pub fn listed<'i>(
    values: usize,
    all: impl FnOnce() -> jsonschema::ErrorIterator<'i>,
    first: impl FnOnce() -> Result<(), jsonschema::ValidationError<'i>>,
) -> Vec<jsonschema::ValidationError<'i>> {
    if values <= MAX_LISTED_VALUES {
        all().take(super::MAX_ERRORS).collect()
    } else {
        first().err().into_iter().collect()
    }
}

/// Whether a failing `value`'s errors may be listed under `budget`.
pub fn may_list(budget: Option<ReportBudget>, value: &Value) -> bool {
    budget.is_none_or(|b| b.affords_value(value))
}

#[derive(Default)]
struct Found {
    /// The most subschemas holding a reference that one value meets in
    /// one schema object ([`ways_in`]; only those can lead back into a
    /// cycle: `anyOf: [string, integer]` multiplies nothing).
    widest: usize,
    /// Local references: (where the `$ref` is, the pointer it names).
    refs: Vec<(String, String)>,
    /// A reference this walk cannot follow (`$dynamicRef`, another
    /// document, an anchor): assumed recursive.
    opaque: bool,
    /// A `propertyNames` keyword somewhere.
    names: bool,
    /// An object keyword (`OBJECT_KEYWORDS`) somewhere.
    object_keywords: bool,
}

/// Keywords whose value maps names (a member's, a definition's) to
/// schemas: the map itself is no schema (a member named `items` is no
/// keyword).
const NAME_MAPS: &[&str] =
    &["properties", "patternProperties", "$defs", "definitions", "dependentSchemas", "dependencies"];

fn walk(v: &Value, at: &mut String, found: &mut Found) {
    walk_at(v, true, at, found);
}

/// `walk`, `schema`: whether `v` stands where a schema does.
fn walk_at(v: &Value, schema: bool, at: &mut String, found: &mut Found) {
    match v {
        Value::Object(map) => {
            if schema {
                found.widest = found.widest.max(ways_in(map));
            }
            for (key, value) in map {
                match (key.as_str(), value) {
                    // A resource of its own resolves `#/…` against itself: this
                    // walk would read its references against the root.
                    ("$id", _) if !at.is_empty() => found.opaque = true,
                    ("$ref", Value::String(target)) => match local_pointer(target) {
                        Some(pointer) => found.refs.push((at.clone(), pointer)),
                        None => found.opaque = true,
                    },
                    ("$dynamicRef" | "$recursiveRef", _) => found.opaque = true,
                    (k, _) if OBJECT_KEYWORDS.contains(&k) => {
                        found.object_keywords = true;
                        found.names |= k == "propertyNames";
                    }
                    _ => {}
                }
                let len = at.len();
                at.push('/');
                at.push_str(&key.replace('~', "~0").replace('/', "~1"));
                walk_at(value, !(schema && NAME_MAPS.contains(&key.as_str())), at, found);
                at.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = at.len();
                at.push('/');
                at.push_str(&i.to_string());
                walk_at(item, true, at, found);
                at.truncate(len);
            }
        }
        _ => {}
    }
}

/// The most subschemas holding a reference that one value meets through
/// the schema object `map`: the value itself (`allOf`/`anyOf`/`oneOf`,
/// `if`/`then`/`else`, `not`, `dependentSchemas`, a `$ref` beside them),
/// one member of it (`properties`, every `patternProperties` its name
/// may match, `additionalProperties`, `unevaluatedProperties`) or one item
/// (`items`/`prefixItems`, `contains`, `unevaluatedItems`). Two of them on
/// a cycle double the errors a level: through `allOf` as through a key
/// that both `properties` and a pattern name.
fn ways_in(map: &serde_json::Map<String, Value>) -> usize {
    let one = |key: &str| map.get(key).is_some_and(holds_reference) as usize;
    let each = |key: &str| match map.get(key) {
        Some(Value::Array(schemas)) => schemas.iter().filter(|s| holds_reference(s)).count(),
        Some(Value::Object(schemas)) => schemas.values().filter(|s| holds_reference(s)).count(),
        _ => 0,
    };
    let any = |key: &str| (each(key) > 0) as usize;
    let in_place = each("allOf")
        + each("anyOf")
        + each("oneOf")
        + one("if")
        + one("then")
        + one("else")
        + one("not")
        + each("dependentSchemas")
        + each("dependencies")
        + ["$ref", "$dynamicRef", "$recursiveRef"].iter().any(|k| map.contains_key(*k)) as usize;
    // A member meets `properties` and every pattern its name matches, or
    // else `additionalProperties`, or else `unevaluatedProperties`; an item
    // its position's `prefixItems`/`items` or the rest's schema, and `contains`.
    let member = (any("properties") + each("patternProperties"))
        .max(one("additionalProperties"))
        .max(one("unevaluatedProperties"));
    let item =
        any("prefixItems").max(one("items")).max(any("items")).max(one("additionalItems")).max(one("unevaluatedItems"))
            + one("contains");
    // What meets the value itself may check its members too (a `$ref` to a
    // schema with `properties`, an `allOf` branch, a `then`): those ways
    // add to this object's own.
    in_place + member.max(item)
}

/// Whether `v` holds a `$ref` (or `$dynamicRef`, `$recursiveRef`) anywhere.
fn holds_reference(v: &Value) -> bool {
    match v {
        Value::Object(map) => {
            ["$ref", "$dynamicRef", "$recursiveRef"].iter().any(|k| map.contains_key(*k))
                || map.values().any(holds_reference)
        }
        Value::Array(items) => items.iter().any(holds_reference),
        _ => false,
    }
}

/// `#/a/b` as the pointer `/a/b` (`#` is the root, ``); `None` for
/// anything else (another document, an anchor, percent-escapes).
fn local_pointer(target: &str) -> Option<String> {
    let pointer = target.strip_prefix('#')?;
    (pointer.is_empty() || pointer.starts_with('/') && !pointer.contains('%')).then(|| pointer.to_string())
}

/// Whether following references can come back to one: a reference leads
/// to every reference inside the subschema it names.
/// The most ways one reference leads on through the references inside
/// its target, and theirs (the graph has no cycle: `recursive` said so),
/// capped far above `MAX_PATHS`.
fn ref_paths(refs: &[(String, String)]) -> f64 {
    let inside =
        |at: &str, target: &str| at.strip_prefix(target).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    let next: Vec<Vec<usize>> =
        refs.iter().map(|(_, target)| (0..refs.len()).filter(|&j| inside(&refs[j].0, target)).collect()).collect();
    // Memoised depth-first sums: ways(i) = 1 + the sum of ways(j) over the references j inside i's target.
    let mut ways: Vec<Option<f64>> = vec![None; refs.len()];
    for start in 0..refs.len() {
        let mut stack = vec![start];
        while let Some(&node) = stack.last() {
            if ways[node].is_some() {
                stack.pop();
                continue;
            }
            let pending: Vec<usize> = next[node].iter().copied().filter(|&j| ways[j].is_none()).collect();
            if pending.is_empty() {
                let sum: f64 = next[node].iter().map(|&j| ways[j].unwrap_or(1.0)).sum();
                ways[node] = Some((1.0 + sum).min(1e12));
                stack.pop();
            } else {
                stack.extend(pending);
            }
        }
    }
    ways.into_iter().flatten().fold(1.0, f64::max)
}

fn recursive(refs: &[(String, String)]) -> bool {
    let inside =
        |at: &str, target: &str| at.strip_prefix(target).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    let next: Vec<Vec<usize>> =
        refs.iter().map(|(_, target)| (0..refs.len()).filter(|&j| inside(&refs[j].0, target)).collect()).collect();
    // Depth-first, colouring nodes: 1 on the path, 2 done.
    let mut colour = vec![0u8; refs.len()];
    for start in 0..refs.len() {
        if colour[start] != 0 {
            continue;
        }
        let mut stack = vec![(start, 0usize)];
        colour[start] = 1;
        while let Some(&mut (node, ref mut edge)) = stack.last_mut() {
            match next[node].get(*edge) {
                Some(&to) => {
                    *edge += 1;
                    match colour[to] {
                        1 => return true,
                        0 => {
                            colour[to] = 1;
                            stack.push((to, 0));
                        }
                        _ => {}
                    }
                }
                None => {
                    colour[node] = 2;
                    stack.pop();
                }
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pets() -> Value {
        json!({
            "$ref": "#/$defs/Pet",
            "$defs": {
                "Pet": { "oneOf": [ { "$ref": "#/$defs/Cat" }, { "$ref": "#/$defs/Dog" } ] },
                "Base": { "type": "object", "properties": {
                    "name": { "type": "string" },
                    "children": { "type": "array", "items": { "$ref": "#/$defs/Pet" } } } },
                "Cat": { "allOf": [ { "$ref": "#/$defs/Base" }, { "properties": { "purrs": { "type": "boolean" } } } ] },
                "Dog": { "allOf": [ { "$ref": "#/$defs/Base" }, { "properties": { "barks": { "type": "boolean" } } } ] }
            }
        })
    }

    #[test]
    fn only_recursion_through_alternatives_is_budgeted() {
        assert_eq!(ReportBudget::of(&pets()), Some(ReportBudget { base: 4.0, max_members: None, paths: 1.0 }));
        // Alternatives without recursion, recursion without alternatives: linear.
        assert_eq!(ReportBudget::of(&json!({ "anyOf": [ { "type": "string" }, { "type": "integer" } ] })), None);
        let list = json!({ "$defs": { "Node": { "properties": { "next": { "$ref": "#/$defs/Node" } } } }, "$ref": "#/$defs/Node" });
        assert_eq!(ReportBudget::of(&list), None);
        // A chain of references that ends is no cycle.
        let chain = json!({ "$defs": { "A": { "$ref": "#/$defs/B" }, "B": { "type": "string" } },
            "anyOf": [ { "$ref": "#/$defs/A" }, { "type": "null" } ] });
        assert_eq!(ReportBudget::of(&chain), None);
        // The root named by `#`, and a reference the walk cannot follow.
        let two_ways = |b: Value| json!({ "anyOf": [ b.clone(), { "type": "object", "properties": { "x": b } } ] });
        assert!(ReportBudget::of(&two_ways(json!({ "type": "array", "items": { "$ref": "#" } }))).is_some());
        assert!(ReportBudget::of(&two_ways(json!({ "$ref": "#node" }))).is_some());
        // Alternatives that name no schema multiply nothing, even in a recursive schema.
        let list = json!({ "$defs": { "Node": { "properties": { "v": { "anyOf": [ { "type": "string" }, { "type": "integer" } ] },
            "next": { "$ref": "#/$defs/Node" } } } }, "$ref": "#/$defs/Node" });
        assert_eq!(ReportBudget::of(&list), None);
        // `allOf` of two references back into the cycle does multiply.
        let both = json!({ "$defs": { "N": { "properties": { "c": { "allOf": [ { "$ref": "#/$defs/N" }, { "$ref": "#/$defs/N" } ] } } } },
            "$ref": "#/$defs/N" });
        assert!(ReportBudget::of(&both).is_some());
        // A nested resource (`$id`) resolves against itself: assumed recursive.
        let nested = json!({ "$defs": { "T": { "$id": "https://x/t", "$defs": { "A": { "$ref": "#/$defs/A" } },
            "oneOf": [ { "$ref": "#/$defs/A" }, { "$ref": "#/$defs/A" } ] } }, "$ref": "#/$defs/T" });
        assert!(ReportBudget::of(&nested).is_some());
        // Other keywords that send one value (or member, or item) two ways into the cycle.
        let node = |n: Value| json!({ "$defs": { "n": n }, "$ref": "#/$defs/n" });
        let r = json!({ "$ref": "#/$defs/n" });
        for two_ways in [
            json!({ "properties": { "k": r, "z": { "type": "integer" } }, "patternProperties": { "^k": r } }),
            json!({ "patternProperties": { "^k": r, "k$": r } }),
            json!({ "dependentSchemas": { "a": { "properties": { "k": r } }, "b": { "properties": { "k": r } } } }),
            json!({ "dependencies": { "a": { "properties": { "k": r } }, "b": { "properties": { "k": r } } } }),
            json!({ "items": r, "contains": r }),
            json!({ "$ref": "#/$defs/m", "anyOf": [ { "properties": { "k": r } } ] }),
            // The regression review's: what meets the value checks its members too.
            json!({ "$ref": "#/$defs/m", "properties": { "k": r } }),
            json!({ "allOf": [ { "properties": { "k": r } } ], "properties": { "k": r } }),
            json!({ "if": { "type": "object" }, "then": { "properties": { "k": r } }, "properties": { "k": r } }),
            json!({ "not": { "properties": { "k": r } }, "properties": { "k": { "allOf": [ r, r ] } } }),
        ] {
            assert!(ReportBudget::of(&node(two_ways.clone())).is_some(), "{two_ways}");
        }
        // 2019-09's `$recursiveRef` is a reference too (a 148-byte body: 30 s, 6.3 GB).
        let recursive = json!({ "$schema": "https://json-schema.org/draft/2019-09/schema", "$recursiveAnchor": true,
            "type": "object", "properties": { "c": { "anyOf": [ { "$recursiveRef": "#" }, { "$recursiveRef": "#" } ] } } });
        assert!(ReportBudget::of(&recursive).is_some());
        // One way per member or item is linear: a tree with named children.
        let tree = json!({ "properties": { "left": r, "right": r }, "additionalProperties": false,
            "dependentSchemas": { "a": { "required": [ "b" ] } } });
        assert_eq!(ReportBudget::of(&node(tree)).map(|b| b.base), Some(1.0), "object keywords only");
        assert_eq!(ReportBudget::of(&node(json!({ "items": r, "prefixItems": [ r ] }))), None);
        // A member meets `properties` or else `additionalProperties` or else `unevaluatedProperties`.
        let tree =
            json!({ "properties": { "left": r, "right": r, "v": { "type": "integer" } }, "additionalProperties": r });
        assert_eq!(ReportBudget::of(&node(tree)), None);
        assert_eq!(ReportBudget::of(&node(json!({ "properties": { "k": r }, "unevaluatedProperties": r }))), None);
        // Members named as keywords are no keywords.
        let named = json!({ "properties": { "items": r, "contains": r, "properties": { "type": "string" } } });
        assert_eq!(ReportBudget::of(&node(named)), None);
    }

    /// The reviewer's bodies: 135 bytes nested 21 levels under `properties`
    /// with a matching pattern (8 s, 1.25 GB before), 405 bytes nested 22
    /// under two `dependentSchemas` (4.5 GB).
    #[test]
    fn a_key_checked_two_ways_on_a_cycle_is_budgeted() {
        let limits = super::super::json_limits::JsonLimits::default();
        for (schema, depth) in [
            (
                json!({ "$defs": { "n": { "type": "object", "properties": { "k": { "$ref": "#/$defs/n" }, "z": { "type": "integer" } },
                "patternProperties": { "^k": { "$ref": "#/$defs/n" } } } }, "$ref": "#/$defs/n" }),
                21,
            ),
            (
                json!({ "$defs": { "n": { "type": "object", "properties": { "z": { "type": "integer" } },
                "dependentSchemas": { "a": { "properties": { "k": { "$ref": "#/$defs/n" } } },
                    "b": { "properties": { "k": { "$ref": "#/$defs/n" } } } } } }, "$ref": "#/$defs/n" }),
                22,
            ),
        ] {
            let budget = ReportBudget::of(&schema).unwrap();
            let body = format!("{}{{\"z\":\"s\"}}{}", "{\"a\":1,\"b\":1,\"k\":".repeat(depth), "}".repeat(depth));
            let doc = super::super::json_limits::read(body.as_bytes(), &limits).unwrap();
            assert!(!budget.affords(&doc), "{schema}");
            let shallow = format!("{}{{\"z\":\"s\"}}{}", "{\"a\":1,\"b\":1,\"k\":".repeat(3), "}".repeat(3));
            assert!(budget.affords(&super::super::json_limits::read(shallow.as_bytes(), &limits).unwrap()));
        }
    }

    /// Shared references without a cycle multiply too: `S0: allOf [S1, S1]`
    /// and so on, 24 levels (a 9-byte failing body: 16 million errors, the
    /// gateway killed for its memory). A few shared references do not.
    #[test]
    fn a_wide_graph_of_shared_references_is_budgeted() {
        let limits = super::super::json_limits::JsonLimits::default();
        let dag = |depth: usize| {
            let mut defs = serde_json::Map::new();
            for i in 0..depth {
                let next = json!({ "$ref": format!("#/$defs/S{}", i + 1) });
                defs.insert(format!("S{i}"), json!({ "allOf": [ next.clone(), next ] }));
            }
            defs.insert(format!("S{depth}"), json!({ "type": "object", "properties": { "a": { "type": "integer" } } }));
            json!({ "$defs": defs, "$ref": "#/$defs/S0" })
        };
        let budget = ReportBudget::of(&dag(24)).expect("budgeted");
        assert!(!budget.affords(&super::super::json_limits::read(br#"{"a":"x"}"#, &limits).unwrap()));
        assert_eq!(ReportBudget::of(&dag(3)), None, "8 ways: listed in full");
        // The usual shared components (an address used twice) are no such graph.
        let shared = json!({ "$defs": { "A": { "type": "object" } }, "properties": {
            "billing": { "$ref": "#/$defs/A" }, "shipping": { "$ref": "#/$defs/A" } },
            "anyOf": [ { "required": [ "billing" ] }, { "required": [ "shipping" ] } ] });
        assert_eq!(ReportBudget::of(&shared).and_then(|b| (b.paths > 1.0).then_some(b)), None);
    }

    fn nested(levels: usize, leaf: &str) -> String {
        format!("{}{leaf}{}", "{\"children\":[".repeat(levels), "]}".repeat(levels))
    }

    /// Each refused member name's error holds the whole object: listing
    /// them for a wide object cost names × members (4000 names: 20 s).
    #[test]
    fn names_are_listed_for_small_objects_only() {
        let schema = json!({ "type": "object", "propertyNames": { "maxLength": 3 } });
        let budget = ReportBudget::of(&schema).unwrap();
        assert_eq!(budget, ReportBudget { base: 1.0, max_members: Some(MAX_NAMED_MEMBERS), paths: 1.0 });
        let required = ReportBudget::of(&json!({ "required": ["a"] }));
        assert_eq!(required, Some(ReportBudget { base: 1.0, max_members: Some(MAX_LISTED_MEMBERS), paths: 1.0 }));
        let limits = super::super::json_limits::JsonLimits::default();
        let body = |n: usize| {
            let members: Vec<String> = (0..n).map(|i| format!("\"aaaaaaaaaaaaaaaaaaaaaac{i}\": 1")).collect();
            format!("{{{}}}", members.join(","))
        };
        let small = body(10);
        assert!(budget.affords(&super::super::json_limits::read(small.as_bytes(), &limits).unwrap()));
        let wide = body(65);
        assert!(!budget.affords(&super::super::json_limits::read(wide.as_bytes(), &limits).unwrap()));
        let value: Value = serde_json::from_str(&wide).unwrap();
        assert!(!budget.affords_value(&value), "parameters and responses alike");
    }

    #[test]
    fn a_deep_failing_body_is_refused_at_once_with_one_problem() {
        let schema = pets();
        let budget = ReportBudget::of(&schema).unwrap();
        let limits = super::super::json_limits::JsonLimits::default();
        let validator =
            super::super::compile_schema_for::<super::super::tape::Tape>(&schema, &Default::default()).unwrap();
        let shallow = nested(3, "{\"name\":1}");
        let doc = super::super::json_limits::read(shallow.as_bytes(), &limits).unwrap();
        assert!(budget.affords(&doc), "a shallow body gets its errors listed");
        // 21 levels: past 5 GB of errors before this budget.
        let deep = nested(21, "{\"name\":1}");
        let doc = super::super::json_limits::read(deep.as_bytes(), &limits).unwrap();
        assert!(!validator.is_valid(doc.root()));
        assert!(!budget.affords(&doc));
        // The same weights for a parsed value (parameters, responses).
        assert!(budget.affords_value(&serde_json::from_str(&shallow).unwrap()));
        assert!(!budget.affords_value(&serde_json::from_str(&deep).unwrap()));
        assert!(may_list(None, &serde_json::from_str(&deep).unwrap()), "a linear schema lists every error");
    }
}
