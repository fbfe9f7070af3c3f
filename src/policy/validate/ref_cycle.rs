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

/// The first `$ref` (by the JSON pointer of the schema holding it) whose
/// chain of same-document references comes back to itself without
/// meeting an assertion, with the chain; `None` if there is none.
pub(super) fn find(schema: &Value) -> Option<(String, String)> {
    // Drafts 4 to 7 ignore every keyword beside a `$ref`.
    let siblings_ignored = schema
        .get("$schema")
        .and_then(Value::as_str)
        .is_some_and(|s| ["draft-04", "draft-06", "draft-07"].iter().any(|d| s.contains(d)));
    let mut found = None;
    walk(schema, schema, siblings_ignored, &mut String::new(), &mut found);
    found
}

/// A same-document reference that is all its schema says.
fn bare_ref(node: &Value, siblings_ignored: bool) -> Option<&str> {
    let map = node.as_object()?;
    let target = map.get("$ref")?.as_str()?.strip_prefix('#')?;
    // `$id` starts a resource of its own: its references resolve against it.
    if map.contains_key("$id") || !siblings_ignored && ASSERTING.iter().any(|k| map.contains_key(*k)) {
        return None;
    }
    Some(target)
}

fn walk(root: &Value, node: &Value, siblings_ignored: bool, at: &mut String, found: &mut Option<(String, String)>) {
    if found.is_some() {
        return;
    }
    if let Some(first) = bare_ref(node, siblings_ignored) {
        let mut seen = HashSet::new();
        let mut chain = vec![first];
        let mut target = first;
        while seen.insert(target) {
            let Some(next) = root.pointer(target).and_then(|n| bare_ref(n, siblings_ignored)) else { break };
            chain.push(next);
            if next == first || seen.contains(next) {
                let shown: Vec<String> = chain.iter().map(|t| format!("#{t}")).collect();
                *found = Some((at.clone(), shown.join(" -> ")));
                return;
            }
            target = next;
        }
    }
    match node {
        Value::Object(map) => {
            // Values, not schemas: an `enum` member that looks like `{ "$ref": … }` refers to nothing.
            let data = |k: &str| matches!(k, "enum" | "const" | "default" | "examples" | "example");
            for (key, value) in map.iter().filter(|(k, _)| !data(k)) {
                let len = at.len();
                at.push('/');
                at.push_str(&key.replace('~', "~0").replace('/', "~1"));
                walk(root, value, siblings_ignored, at, found);
                at.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, value) in items.iter().enumerate() {
                let len = at.len();
                at.push('/');
                at.push_str(&i.to_string());
                walk(root, value, siblings_ignored, at, found);
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
        // Data that looks like a reference is data.
        let data = json!({ "enum": [ { "$ref": "#/enum/0" } ], "const": { "$ref": "#/const" } });
        assert_eq!(find(&data), None);
    }
}
