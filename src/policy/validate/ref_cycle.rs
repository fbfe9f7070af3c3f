//! A `$ref` that only leads to other `$ref`s and back to itself: the
//! library accepts any instance there (nothing on the way asserts
//! anything), so `a: { $ref: b }`, `b: { $ref: a }` would let every body
//! through without a word. Found before the schema is compiled and refused.

use std::collections::HashSet;

use serde_json::Value;

/// Keywords that assert something, or apply subschemas that do; a schema
/// without any of them beside its `$ref` is only that reference (unknown
/// keywords and annotations such as `description` are ignored by
/// validation).
const ASSERTING: &[&str] = &[
    "type",
    "enum",
    "const",
    "multipleOf",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "format",
    "maxItems",
    "minItems",
    "uniqueItems",
    "maxContains",
    "minContains",
    "contains",
    "maxProperties",
    "minProperties",
    "required",
    "dependentRequired",
    "dependentSchemas",
    "dependencies",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "prefixItems",
    "items",
    "additionalItems",
    "properties",
    "patternProperties",
    "additionalProperties",
    "propertyNames",
    "unevaluatedItems",
    "unevaluatedProperties",
    "$dynamicRef",
    "$recursiveRef",
];

/// The name of the `$defs` member a `$ref` (`#/$defs/<name>…`) points
/// into, as the document has it: the fragment is URI-encoded (`A%20B`,
/// RFC 6901 §6) and the token pointer-escaped (`a~1b` is `a/b`), as the
/// validator reads it.
pub fn defs_name(r: &str) -> Option<String> {
    let rest = r.strip_prefix("#/$defs/")?;
    let token = rest.split('/').next().unwrap_or(rest);
    let token = percent_encoding::percent_decode_str(token).decode_utf8().ok()?;
    Some(token.replace("~1", "/").replace("~0", "~"))
}

/// The first `$ref` (by the JSON pointer of the schema holding it) whose
/// chain of same-document references comes back to itself without
/// meeting an assertion, with the chain; `None` if there is none.
/// References are followed as the validator resolves them (`deep::Index`:
/// JSON pointers, `$anchor`s, `$id` URIs, an empty `$ref`, nested
/// resources against their own base): a loop written with `#A` anchors or
/// through an `$id` URI was taken to end, and passed.
pub(super) fn find(schema: &Value) -> Option<(String, String)> {
    // Drafts 4 to 7 ignore every keyword beside a `$ref`.
    let siblings_ignored = schema
        .get("$schema")
        .and_then(Value::as_str)
        .is_some_and(|s| ["draft-04", "draft-06", "draft-07"].iter().any(|d| s.contains(d)));
    let index = super::deep::Index::of(schema);
    let mut found = None;
    let mut clean = HashSet::new();
    let cx = Cx { index: &index, siblings_ignored };
    walk(&cx, schema, false, &mut String::new(), (&mut found, &mut clean));
    found
}

struct Cx<'i, 'a> {
    index: &'i super::deep::Index<'a>,
    siblings_ignored: bool,
}

/// The schema a reference that is all its schema says leads to (also when
/// wrapped alone in an `allOf`, `anyOf` or `oneOf`, as OpenAPI documents
/// often write `allOf: [ { $ref: … } ]`), with the reference as written;
/// `None` for a schema that asserts something, or a reference the index
/// cannot follow (the library names those).
fn bare_target<'a>(cx: &Cx<'_, 'a>, node: &'a Value) -> Option<(&'a Value, &'a str)> {
    let map = node.as_object()?;
    if let Some(written) = map.get("$ref") {
        if !cx.siblings_ignored && ASSERTING.iter().any(|k| map.contains_key(*k)) {
            return None;
        }
        let written = written.as_str()?;
        return cx.index.target(node).ok().flatten().map(|t| (t, written));
    }
    // A `$dynamicRef` alone, followed to the `$dynamicAnchor` it names in
    // its own resource (where a one-document schema's scope finds it); a
    // `$recursiveRef` (`#`, draft 2019-09) to its resource's root.
    if let Some((key, written)) = ["$dynamicRef", "$recursiveRef"].iter().find_map(|k| Some((*k, map.get(*k)?))) {
        if ASSERTING.iter().any(|k| *k != key && map.contains_key(*k)) {
            return None;
        }
        // An anchor several resources declare is found by the dynamic scope
        // (the spec's extension pattern): not followed, as it cannot be told here.
        let name = written.as_str()?.rsplit_once('#').map_or("", |(_, n)| n);
        if key == "$dynamicRef" && cx.index.dynamic_anchor_is_shared(name) {
            return None;
        }
        let written = written.as_str()?;
        return cx.index.target(node).ok().flatten().map(|t| (t, written));
    }
    let (key, only) = ["allOf", "anyOf", "oneOf"].iter().find_map(|k| Some((*k, map.get(*k)?.as_array()?)))?;
    let alone = only.len() == 1 && !ASSERTING.iter().any(|k| *k != key && map.contains_key(*k));
    if alone { bare_target(cx, &only[0]) } else { None }
}

/// `clean`: schemas whose chain is known to end (in an assertion or a
/// reference that cannot be followed) without coming back: a chain that
/// reaches one is done. Without it each of a chain's n links walked the
/// rest of the chain again (a 5,000-link chain took minutes to load).
/// `names`: `node` is a map of names (`$defs`, `properties`…): its members
/// are schemas whatever they are called (`default`, `enum`).
fn walk<'a>(
    cx: &Cx<'_, 'a>,
    node: &'a Value,
    names: bool,
    at: &mut String,
    (found, clean): (&mut Option<(String, String)>, &mut HashSet<*const Value>),
) {
    if found.is_some() {
        return;
    }
    if !names && let Some((first, written)) = bare_target(cx, node) {
        let mut seen: HashSet<*const Value> = HashSet::new();
        let mut chain = vec![written.to_string()];
        let mut passed = vec![first as *const Value];
        let mut target = first;
        while !clean.contains(&(target as *const Value)) && seen.insert(target) {
            let Some((next, written)) = bare_target(cx, target) else { break };
            chain.push(written.to_string());
            passed.push(next);
            if seen.contains(&(next as *const Value)) {
                *found = Some((at.clone(), chain.join(" -> ")));
                return;
            }
            target = next;
        }
        clean.extend(passed);
    }
    match node {
        Value::Object(map) => {
            // Values, not schemas: an `enum` member that looks like `{ "$ref": … }`
            // refers to nothing (unless it is a name the document chose).
            let data = |k: &str| !names && super::deep::DATA.contains(&k);
            for (key, value) in map.iter().filter(|(k, _)| !data(k)) {
                let len = at.len();
                at.push('/');
                at.push_str(&key.replace('~', "~0").replace('/', "~1"));
                let members_are_names = !names && super::deep::NAME_MAPS.contains(&key.as_str());
                walk(cx, value, members_are_names, at, (&mut *found, &mut *clean));
                at.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, value) in items.iter().enumerate() {
                let len = at.len();
                at.push('/');
                at.push_str(&i.to_string());
                walk(cx, value, false, at, (&mut *found, &mut *clean));
                at.truncate(len);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::find;
    use serde_json::json;

    /// A `$dynamicRef` is a reference too: a loop through one accepted
    /// every body (it was counted as an assertion).
    #[test]
    fn a_loop_through_a_dynamic_reference_is_found() {
        let schema = json!({ "$dynamicAnchor": "n", "$ref": "#/$defs/a", "$defs": { "a": { "$dynamicRef": "#n" } } });
        assert_eq!(find(&schema).map(|f| f.1).as_deref(), Some("#/$defs/a -> #n -> #/$defs/a"));
        let schema = json!({ "$ref": "#/$defs/a", "$defs": {
            "a": { "$dynamicAnchor": "n", "allOf": [ { "$dynamicRef": "#n" } ] } } });
        assert!(find(&schema).is_some());
        // An anchor that two resources declare resolves by the dynamic
        // scope (here to the outer, asserting, schema): no loop to say.
        let extended = json!({ "$id": "https://ex.test/outer", "$dynamicAnchor": "n", "type": "object",
            "properties": { "x": { "$ref": "inner" } },
            "$defs": { "inner": { "$id": "inner", "$dynamicAnchor": "n", "$ref": "#/$defs/a",
                                  "$defs": { "a": { "$dynamicRef": "#n" } } } } });
        assert_eq!(find(&extended), None);
        // Draft 2019-09's `$recursiveRef` too.
        let recursive = json!({ "$schema": "https://json-schema.org/draft/2019-09/schema", "$recursiveAnchor": true,
            "$ref": "#/$defs/a", "$defs": { "a": { "$recursiveRef": "#" } } });
        assert!(find(&recursive).is_some());
        // Recursion through a step into the document is no loop.
        let tree = json!({ "$dynamicAnchor": "node", "type": "object", "properties": {
            "children": { "type": "array", "items": { "$dynamicRef": "#node" } } } });
        assert_eq!(find(&tree), None);
        let compiled = super::super::compile_schema(&tree, &Default::default()).unwrap();
        assert!(!compiled.is_valid(&json!({ "children": [ 1 ] })));
    }

    #[test]
    fn a_loop_of_bare_references_is_found_with_its_chain() {
        let schema = json!({ "$ref": "#/$defs/a", "$defs": {
            "a": { "$ref": "#/$defs/b", "description": "only words" },
            "b": { "$ref": "#/$defs/a" } } });
        let (at, chain) = find(&schema).expect("a loop");
        assert_eq!(at, "");
        assert_eq!(chain, "#/$defs/a -> #/$defs/b -> #/$defs/a");
        // Refused where schemas are compiled (a route's `validate`, an OpenAPI document's).
        let refused = super::super::compile_schema(&schema, &Default::default()).unwrap_err();
        assert!(refused.contains("goes round") && refused.contains("accept anything"), "{refused}");
        // A schema that refers to itself, deeper down.
        let schema = json!({ "properties": { "x": { "$ref": "#/properties/x" } } });
        assert_eq!(find(&schema).map(|f| f.0).as_deref(), Some("/properties/x"));
    }

    /// Links known to end are not walked again (each link of a long chain
    /// walked the rest of it: loading 5,000 links took minutes), and that
    /// memory hides no loop: one reached from a known-good chain, or after
    /// one, is still found.
    #[test]
    fn long_chains_are_walked_once_and_loops_beside_them_still_found() {
        let mut defs = serde_json::Map::new();
        for i in 0..3000 {
            defs.insert(format!("d{i}"), json!({ "$ref": format!("#/$defs/d{}", i + 1) }));
        }
        defs.insert("d3000".into(), json!({ "type": "string" }));
        let clean = json!({ "$ref": "#/$defs/d0", "$defs": defs.clone() });
        assert_eq!(find(&clean), None);
        // `z` joins the loop `x -> y -> x`; `e` (walked after the chain's
        // links) enters the chain, then the loop is met from `z`.
        defs.insert("e".into(), json!({ "$ref": "#/$defs/d5" }));
        defs.insert("z".into(), json!({ "$ref": "#/$defs/x" }));
        defs.insert("x".into(), json!({ "$ref": "#/$defs/y" }));
        defs.insert("y".into(), json!({ "$ref": "#/$defs/x" }));
        let (_, chain) = find(&json!({ "$ref": "#/$defs/d0", "$defs": defs })).expect("the loop");
        assert!(
            chain.ends_with("#/$defs/x -> #/$defs/y -> #/$defs/x")
                || chain.ends_with("#/$defs/y -> #/$defs/x -> #/$defs/y"),
            "{chain}"
        );
    }

    /// Loops written as the validator reads them, not only as `#/…`
    /// pointers from the root: `$anchor`s, an `$id` URI, an empty `$ref`,
    /// inside a nested resource, and through names the document chose that
    /// are also keywords (`default`, `enum`). Each passed `check` and let
    /// every body through.
    #[test]
    fn loops_through_anchors_ids_and_keyword_names_are_found() {
        for schema in [
            json!({ "$ref": "#A", "$defs": { "a": { "$anchor": "A", "$ref": "#B" }, "b": { "$anchor": "B", "$ref": "#A" } } }),
            json!({ "$ref": "#/$defs/a", "$defs": { "a": { "$anchor": "A", "$ref": "#/$defs/b" }, "b": { "$ref": "#A" } } }),
            json!({ "$ref": "#/$defs/inner", "$defs": { "inner": { "$id": "https://ex.test/inner.json",
                "$ref": "#/$defs/a", "$defs": { "a": { "$ref": "#/$defs/b" }, "b": { "$ref": "#/$defs/a" } } } } }),
            json!({ "$id": "https://ex.test/root.json", "$ref": "https://ex.test/root.json#/$defs/a",
                "$defs": { "a": { "$ref": "https://ex.test/root.json#/$defs/b" }, "b": { "$ref": "#/$defs/a" } } }),
            json!({ "$ref": "#/$defs/a", "$defs": { "a": { "$ref": "" } } }),
            json!({ "type": "object", "properties": { "v": { "type": "object", "$ref": "#/$defs/default" } },
                "$defs": { "default": { "$ref": "#/$defs/example" }, "example": { "$ref": "#/$defs/default" } } }),
            json!({ "properties": { "enum": { "$ref": "#/properties/const" }, "const": { "$ref": "#/properties/enum" } } }),
            json!({ "properties": { "x": { "id": "legacy", "properties": { "y": { "$ref": "#/properties/x/$defs/a" } },
                "$defs": { "a": { "$ref": "#/properties/x/$defs/b" }, "b": { "$ref": "#/properties/x/$defs/a" } } } } }),
        ] {
            assert!(find(&schema).is_some(), "a loop in {schema}");
        }
        // An `enum` member that looks like a reference is data.
        assert_eq!(find(&json!({ "enum": [ { "$ref": "#/enum/0" } ] })), None);
    }

    #[test]
    fn recursion_through_an_assertion_is_no_loop() {
        // A tree: each node is checked before its children are.
        let tree = json!({ "$ref": "#/$defs/node", "$defs": {
            "node": { "type": "object", "properties": { "children": { "items": { "$ref": "#/$defs/node" } } } } } });
        assert_eq!(find(&tree), None);
        let typed = json!({ "$defs": { "a": { "$ref": "#/$defs/a", "type": "string" } } });
        assert_eq!(find(&typed), None);
        // Drafts before 2019-09 ignore the `type` beside the `$ref`.
        let draft7 = json!({ "$schema": "http://json-schema.org/draft-07/schema#",
            "definitions": { "a": { "$ref": "#/definitions/a", "type": "string" } } });
        assert!(find(&draft7).is_some());
        // A chain that ends, and references into nothing (the library names those).
        let chain =
            json!({ "$ref": "#/$defs/a", "$defs": { "a": { "$ref": "#/$defs/b" }, "b": { "type": "integer" } } });
        assert_eq!(find(&chain), None);
        assert_eq!(find(&json!({ "$ref": "#/$defs/missing" })), None);
        // Wrapped alone in an `allOf` (OpenAPI's habit), and URI-encoded pointers.
        let wrapped =
            json!({ "$defs": { "a": { "allOf": [ { "$ref": "#/$defs/a%20b" } ] }, "a b": { "$ref": "#/$defs/a" } } });
        assert!(find(&wrapped).is_some());
        let two = json!({ "$defs": { "a": { "allOf": [ { "$ref": "#/$defs/a" }, { "type": "string" } ] } } });
        assert_eq!(find(&two), None);
        // A nested resource resolves against itself: not judged from the root.
        let nested = json!({ "$defs": { "r": { "$id": "https://x.example/r", "$ref": "#/$defs/r",
            "$defs": { "r": { "type": "string" } } } }, "a": { "$ref": "#/a" } });
        assert_eq!(find(&nested).map(|f| f.0), Some("/a".to_string()));
        // Data that looks like a reference is data.
        let data = json!({ "enum": [ { "$ref": "#/enum/0" } ], "const": { "$ref": "#/const" } });
        assert_eq!(find(&data), None);
    }
}
