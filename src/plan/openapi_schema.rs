//! An OpenAPI document's schemas as JSON Schemas the validator compiles:
//! 3.0's dialect rewritten as 2020-12, 3.1's `jsonSchemaDialect` honoured,
//! `required` lifted for `readOnly` properties in requests and `writeOnly`
//! ones in responses, and regular expressions written for JavaScript
//! without the `u` flag made valid under it. Each rewrite keeps what the
//! document means; none makes a check stricter than the document says.

use serde_json::{Map, Value, json};

use crate::policy::validate::defs_name;

/// Boolean `exclusiveMinimum`/`exclusiveMaximum` (draft 4's, and OpenAPI
/// 3.0's) as the numeric bounds later drafts take: `exclusiveMinimum:
/// true` with `minimum: 5` is `exclusiveMinimum: 5`; `false` is dropped.
/// A boolean means nothing else in any draft, so this keeps the meaning.
pub(super) fn numeric_exclusive_bounds(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (flag, bound) in [("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")] {
                if let Some(Value::Bool(on)) = m.get(flag).cloned() {
                    m.remove(flag);
                    if on && let Some(b) = m.remove(bound) {
                        m.insert(flag.into(), b);
                    }
                }
            }
            m.values_mut().for_each(numeric_exclusive_bounds);
        }
        Value::Array(a) => a.iter_mut().for_each(numeric_exclusive_bounds),
        _ => {}
    }
}

/// Whether a schema root declares draft 4 (whose bounds are booleans).
pub(super) fn is_draft_4(schema: &Value) -> bool {
    schema.get("$schema").and_then(Value::as_str).is_some_and(|s| s.trim_end_matches('#').ends_with("/draft-04/schema"))
}

/// An OpenAPI 3.0 schema as JSON Schema 2020-12: `nullable: true` adds
/// `null` to the type (and to the enum, which would refuse it otherwise),
/// boolean `exclusiveMinimum`/`exclusiveMaximum` take the bound's value.
pub(super) fn from_openapi_30(v: &mut Value) {
    nullable_as_type(v);
    numeric_exclusive_bounds(v);
}

/// Only a `nullable` with a boolean value is the keyword: a property
/// *named* `nullable` (an object schema) stays where it is.
fn nullable_as_type(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(&Value::Bool(nullable)) = m.get("nullable") {
                m.remove("nullable");
                if nullable {
                    if let Some(Value::String(t)) = m.get("type") {
                        let t = t.clone();
                        m.insert("type".into(), json!([t, "null"]));
                    } else if !m.contains_key("type")
                        && ["oneOf", "anyOf", "allOf", "$ref"].iter().any(|k| m.contains_key(*k))
                    {
                        // `nullable` without `type` (GitHub's `milestone: { oneOf:
                        // [string, integer], nullable: true }`): OpenAPI 3.0.3 reads it
                        // as nothing, but its authors mean null, and a gateway
                        // that refused it would refuse their documented requests.
                        // Annotations stay outside (`readOnly` lifts `required`).
                        let mut inner = std::mem::take(m);
                        for key in ["readOnly", "writeOnly", "description", "title", "deprecated", "default"] {
                            if let Some(v) = inner.remove(key) {
                                m.insert(key.into(), v);
                            }
                        }
                        m.insert("anyOf".into(), json!([Value::Object(inner), { "type": "null" }]));
                    }
                    if let Some(e) = m.get_mut("enum").and_then(Value::as_array_mut)
                        && !e.contains(&Value::Null)
                    {
                        e.push(Value::Null);
                    }
                }
            }
            m.values_mut().for_each(nullable_as_type);
        }
        Value::Array(a) => a.iter_mut().for_each(nullable_as_type),
        _ => {}
    }
}

/// OpenAPI's `discriminator` beside a `oneOf` (or `anyOf`) of `$ref`s:
/// the discriminating property's value picks the one schema that checks
/// the value (`mapping`, else the schema's name: `pet_type: Cat` is
/// `Cat`), as OpenAPI's tools read it. Plain JSON Schema would refuse a
/// `Cat` that also happens to be a valid `Dog` ("valid under more than one
/// of the schemas"). A value naming no listed schema is refused (its
/// property is checked against the known names). Run after `$ref`s to
/// component schemas became `#/$defs/<name>`.
///
/// The discriminator may also sit on a base schema that every option
/// inherits with `allOf` (`Cat: { allOf: [ { $ref: Pet }, … ] }`, `Pet`
/// having the discriminator): `defs` (the component schemas, as written)
/// says so.
pub(super) fn discriminated(v: &mut Value, defs: &Map<String, Value>) {
    match v {
        Value::Object(m) => {
            m.values_mut().for_each(|x| discriminated(x, defs));
            let key = if m.contains_key("oneOf") { "oneOf" } else { "anyOf" };
            let Some(Value::Array(options)) = m.get(key) else { return };
            let refs: Option<Vec<String>> =
                options.iter().map(|o| o.get("$ref").and_then(Value::as_str).map(str::to_string)).collect();
            let Some(refs) = refs else { return };
            let Some(discriminator) = m.get("discriminator").cloned().or_else(|| inherited(&refs, defs)) else {
                return;
            };
            let property = discriminator.get("propertyName").and_then(Value::as_str);
            let Some(property) = property.map(str::to_string) else { return };
            // value -> the `$ref` it picks: the mapping's, then each schema's own name.
            let mut picks: Vec<(String, String)> = Vec::new();
            if let Some(mapping) = discriminator.get("mapping").and_then(Value::as_object) {
                for (value, target) in mapping {
                    let Some(target) = target.as_str() else { continue };
                    let target = match target.strip_prefix("#/components/schemas/") {
                        Some(name) => format!("#/$defs/{name}"),
                        // A schema's name (`Sea Bird`): a reference to it, URI-encoded.
                        None if !target.contains(['#', '/']) => format!("#/$defs/{}", fragment_token(target)),
                        None => target.to_string(),
                    };
                    picks.push((value.clone(), target));
                }
            }
            for r in &refs {
                // Already a mapping's target, however its reference is spelled.
                if let Some(name) = defs_name(r)
                    && !picks.iter().any(|(_, t)| t == r || defs_name(t).as_ref() == Some(&name))
                {
                    picks.push((name, r.clone()));
                }
            }
            let names: Vec<Value> = picks.iter().map(|(value, _)| Value::String(value.clone())).collect();
            let mut all_of =
                vec![json!({ "required": [property], "properties": { property.clone(): { "enum": names } } })];
            for (value, target) in picks {
                all_of.push(json!({
                    "if": { "properties": { property.clone(): { "const": value } } },
                    "then": { "$ref": target }
                }));
            }
            m.remove(key);
            match m.get_mut("allOf") {
                Some(Value::Array(existing)) => existing.extend(all_of),
                _ => {
                    m.insert("allOf".into(), Value::Array(all_of));
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| discriminated(x, defs)),
        _ => {}
    }
}

/// A schema name as one token of a JSON Pointer in a URI fragment: `~`
/// and `/` escaped (RFC 6901), then what a fragment cannot hold
/// percent-encoded (RFC 3986: `Sea Bird` is `Sea%20Bird`).
fn fragment_token(name: &str) -> String {
    use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
    const NOT_IN_FRAGMENT: &AsciiSet = &CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'%')
        .add(b'<')
        .add(b'>')
        .add(b'[')
        .add(b'\\')
        .add(b']')
        .add(b'^')
        .add(b'`')
        .add(b'{')
        .add(b'|')
        .add(b'}');
    let escaped = name.replace('~', "~0").replace('/', "~1");
    utf8_percent_encode(&escaped, NOT_IN_FRAGMENT).to_string()
}

/// The discriminator every option (`#/$defs/<name>`) inherits through an
/// `allOf` `$ref` to the same base schema, if they all do.
fn inherited(refs: &[String], defs: &Map<String, Value>) -> Option<Value> {
    let base_of = |r: &String| -> Option<String> {
        let def = defs.get(&defs_name(r)?)?;
        def.get("allOf")?.as_array()?.iter().find_map(|part| {
            let base = part.get("$ref")?.as_str()?;
            let base = defs_name(base).or_else(|| defs_name(&base.replacen("#/components/schemas/", "#/$defs/", 1)))?;
            defs.get(&base)?.get("discriminator").is_some().then_some(base)
        })
    };
    let first = base_of(refs.first()?)?;
    refs.iter().all(|r| base_of(r).as_ref() == Some(&first)).then(|| defs.get(&first)?.get("discriminator").cloned())?
}

/// Which way a schema checks data: OpenAPI's `required` holds for a
/// `readOnly` property in responses only, for a `writeOnly` one in
/// requests only (3.0.3, Schema Object: "the required will take effect on
/// the response only").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Direction {
    Request,
    Response,
}

impl Direction {
    /// The annotation whose properties this direction does not require.
    fn hidden(self) -> &'static str {
        match self {
            Direction::Request => "readOnly",
            Direction::Response => "writeOnly",
        }
    }
}

/// `schema` without `required` for the properties `direction` does not
/// require; `defs` (the document's component schemas, as they are) says
/// what a `$ref`ed property is.
pub(super) fn lift_required(schema: &mut Value, direction: Direction, defs: &Map<String, Value>) {
    let flag = direction.hidden();
    let marked = |property: &Value| -> bool {
        let own = property.get(flag) == Some(&Value::Bool(true));
        let referenced = property
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(defs_name)
            .and_then(|name| defs.get(&name))
            .is_some_and(|def| def.get(flag) == Some(&Value::Bool(true)));
        own || referenced
    };
    // `{ $ref: X, nullable: true }` is `anyOf: [ { $ref: X }, null ]` by now.
    let hidden = |property: &Value| -> bool {
        marked(property)
            || property.get("anyOf").and_then(Value::as_array).is_some_and(|branches| branches.iter().any(marked))
    };
    match schema {
        Value::Object(m) => {
            let hidden_names: Vec<String> = match m.get("properties").and_then(Value::as_object) {
                Some(props) => props.iter().filter(|(_, p)| hidden(p)).map(|(n, _)| n.clone()).collect(),
                None => Vec::new(),
            };
            if !hidden_names.is_empty()
                && let Some(Value::Array(required)) = m.get_mut("required")
            {
                required.retain(|n| n.as_str().is_none_or(|n| !hidden_names.iter().any(|h| h == n)));
            }
            m.values_mut().for_each(|x| lift_required(x, direction, defs));
        }
        Value::Array(a) => a.iter_mut().for_each(|x| lift_required(x, direction, defs)),
        _ => {}
    }
}

/// The component schemas as `direction` sees them ([`lift_required`] on each).
pub(super) fn defs_for(defs: &Map<String, Value>, direction: Direction) -> Map<String, Value> {
    defs.iter()
        .map(|(name, def)| {
            let mut def = def.clone();
            lift_required(&mut def, direction, defs);
            (name.clone(), def)
        })
        .collect()
}

/// The `$schema` a 3.1 document's `jsonSchemaDialect` gives its schemas:
/// `None` for 2020-12 (the default, also OpenAPI's own base dialect), the
/// draft's URI for the earlier drafts the validator knows, or what is wrong.
pub(super) fn dialect(doc: &Value) -> Result<Option<&'static str>, String> {
    let Some(d) = doc.get("jsonSchemaDialect") else { return Ok(None) };
    let uri = d.as_str().ok_or("`jsonSchemaDialect` is not a string")?;
    match known_dialect(uri) {
        Some(found) => Ok(found),
        None => Err(format!(
            "`jsonSchemaDialect: {uri}` is not a dialect the gateway knows (JSON Schema 2020-12, 2019-09, draft 7, 6 \
             or 4, or OpenAPI 3.1's base dialect)"
        )),
    }
}

/// `Some(None)`: 2020-12; `Some(Some(uri))`: an earlier draft; `None`: unknown.
fn known_dialect(uri: &str) -> Option<Option<&'static str>> {
    let bare = uri.trim_end_matches('#');
    match bare {
        "https://spec.openapis.org/oas/3.1/dialect/base"
        | "https://spec.openapis.org/oas/3.1/dialect/2024-11-10"
        | "https://json-schema.org/draft/2020-12/schema" => Some(None),
        "https://json-schema.org/draft/2019-09/schema" => Some(Some("https://json-schema.org/draft/2019-09/schema")),
        "http://json-schema.org/draft-07/schema" => Some(Some("http://json-schema.org/draft-07/schema#")),
        "http://json-schema.org/draft-06/schema" => Some(Some("http://json-schema.org/draft-06/schema#")),
        "http://json-schema.org/draft-04/schema" => Some(Some("http://json-schema.org/draft-04/schema#")),
        _ => None,
    }
}

/// A schema's root in the document's dialect: `$schema` set to `dialect`
/// unless the schema names its own; OpenAPI's base dialect named as what
/// it is for validation, 2020-12 (the validator fetches no meta-schema).
pub(super) fn in_dialect(schema: &mut Value, dialect: Option<&str>) {
    let Some(m) = schema.as_object_mut() else { return };
    match m.get("$schema").and_then(Value::as_str).map(known_dialect) {
        Some(Some(None)) => {
            m.remove("$schema");
        }
        Some(_) => {}
        None => {
            if let Some(d) = dialect {
                m.insert("$schema".into(), Value::String(d.to_string()));
            }
        }
    }
}

/// Every `pattern` in `v` made valid under ECMA-262's `u` flag, which the
/// validator's syntax follows: a `{` or `}` that is not part of a
/// quantifier and a `]` outside a class are literal characters to
/// JavaScript without the flag (Annex B), and are escaped here. Documents
/// are often written for JavaScript tools; a valid `u`-mode pattern comes
/// out unchanged.
pub(super) fn lenient_patterns(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(p)) = m.get_mut("pattern") {
                *p = escape_literal_braces(p);
            }
            m.values_mut().for_each(lenient_patterns);
        }
        Value::Array(a) => a.iter_mut().for_each(lenient_patterns),
        _ => {}
    }
}

/// See [`lenient_patterns`].
fn escape_literal_braces(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 4);
    let mut in_class = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                out.push(c);
                if let Some(&next) = chars.get(i + 1) {
                    out.push(next);
                    i += 1;
                    // `\u{…}`, `\p{…}`, `\P{…}`: the braces belong to the escape.
                    if matches!(next, 'u' | 'p' | 'P') && chars.get(i + 1) == Some(&'{') {
                        while let Some(&b) = chars.get(i + 1) {
                            out.push(b);
                            i += 1;
                            if b == '}' {
                                break;
                            }
                        }
                    }
                }
            }
            '[' if !in_class => {
                in_class = true;
                out.push(c);
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            ']' => out.push_str("\\]"),
            '{' if !in_class => match quantifier_len(&chars[i..]) {
                Some(n) => {
                    out.extend(&chars[i..i + n]);
                    i += n - 1;
                }
                None => out.push_str("\\{"),
            },
            '}' if !in_class => out.push_str("\\}"),
            _ => out.push(c),
        }
        i += 1;
    }
    out
}

/// The length of a `{n}`, `{n,}` or `{n,m}` quantifier at the start of `s`.
fn quantifier_len(s: &[char]) -> Option<usize> {
    let digits = |from: usize| s[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let first = digits(1);
    if first == 0 {
        return None;
    }
    let mut at = 1 + first;
    if s.get(at) == Some(&',') {
        at += 1 + digits(at + 1);
    }
    (s.get(at) == Some(&'}')).then_some(at + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nullable_without_a_type_admits_null_beside_its_alternatives() {
        let mut s = json!({ "oneOf": [ { "type": "string" }, { "type": "integer" } ], "nullable": true });
        from_openapi_30(&mut s);
        let validator = jsonschema::validator_for(&s).unwrap();
        for ok in [json!(null), json!("v1"), json!(3)] {
            assert!(validator.is_valid(&ok), "{ok} against {s}");
        }
        assert!(!validator.is_valid(&json!(true)));
    }

    #[test]
    fn nullable_keeps_properties_named_like_keywords_and_reaches_the_enum() {
        let mut s = json!({
            "type": "object",
            "properties": { "nullable": { "type": "boolean" }, "exclusiveMinimum": { "type": "integer" } },
            "nullable": true
        });
        from_openapi_30(&mut s);
        assert_eq!(s["properties"]["nullable"], json!({ "type": "boolean" }));
        assert_eq!(s["properties"]["exclusiveMinimum"], json!({ "type": "integer" }));
        assert_eq!(s["type"], json!(["object", "null"]));
        let mut e = json!({ "type": "string", "enum": ["a", "b"], "nullable": true });
        from_openapi_30(&mut e);
        assert_eq!(e, json!({ "type": ["string", "null"], "enum": ["a", "b", null] }));
    }

    #[test]
    fn read_only_properties_are_required_in_responses_only() {
        let defs: Map<String, Value> = serde_json::from_value(json!({
            "Id": { "type": "string", "readOnly": true },
            "Pet": {
                "type": "object",
                "required": ["id", "name", "secret", "tag"],
                "properties": {
                    "id": { "$ref": "#/$defs/Id" },
                    "name": { "type": "string" },
                    "secret": { "type": "string", "writeOnly": true },
                    "tag": { "type": "string", "readOnly": false }
                }
            }
        }))
        .unwrap();
        let request = defs_for(&defs, Direction::Request);
        assert_eq!(request["Pet"]["required"], json!(["name", "secret", "tag"]));
        let response = defs_for(&defs, Direction::Response);
        assert_eq!(response["Pet"]["required"], json!(["id", "name", "tag"]));
        let mut inline = json!({ "properties": { "n": { "readOnly": true } }, "required": ["n", "m"] });
        lift_required(&mut inline, Direction::Request, &defs);
        assert_eq!(inline["required"], json!(["m"]));
        // `nullable` without a type (drf-spectacular's read-only enums): still read-only.
        let mut spectacular = json!({
            "required": ["status", "id", "m"],
            "properties": {
                "status": { "allOf": [ { "$ref": "#/$defs/Id" } ], "readOnly": true, "nullable": true },
                "id": { "$ref": "#/$defs/Id", "nullable": true }
            }
        });
        from_openapi_30(&mut spectacular);
        lift_required(&mut spectacular, Direction::Request, &defs);
        assert_eq!(spectacular["required"], json!(["m"]), "{spectacular}");
    }

    #[test]
    fn a_discriminator_picks_the_schema_by_its_property() {
        let mut s = json!({
            "oneOf": [ { "$ref": "#/$defs/Cat" }, { "$ref": "#/$defs/Dog" } ],
            "discriminator": { "propertyName": "pet_type", "mapping": { "kitty": "#/components/schemas/Cat" } }
        });
        discriminated(&mut s, &Map::new());
        assert!(s.get("oneOf").is_none());
        assert_eq!(
            s["allOf"],
            json!([
                { "required": ["pet_type"], "properties": { "pet_type": { "enum": ["kitty", "Dog"] } } },
                { "if": { "properties": { "pet_type": { "const": "kitty" } } }, "then": { "$ref": "#/$defs/Cat" } },
                { "if": { "properties": { "pet_type": { "const": "Dog" } } }, "then": { "$ref": "#/$defs/Dog" } }
            ])
        );
        // Not every option a `$ref`: left as written.
        let mut inline = json!({ "oneOf": [ { "type": "string" } ], "discriminator": { "propertyName": "k" } });
        let before = inline.clone();
        discriminated(&mut inline, &Map::new());
        assert_eq!(inline, before);
        // Inherited: both options `allOf` the base that has the discriminator.
        let defs: Map<String, Value> = serde_json::from_value(json!({
            "Pet": { "discriminator": { "propertyName": "pet_type" } },
            "Cat": { "allOf": [ { "$ref": "#/$defs/Pet" }, { "properties": { "hunts": {} } } ] },
            "Dog": { "allOf": [ { "$ref": "#/$defs/Pet" } ] }
        }))
        .unwrap();
        let mut embedded = json!({ "oneOf": [ { "$ref": "#/$defs/Cat" }, { "$ref": "#/$defs/Dog" } ] });
        discriminated(&mut embedded, &defs);
        assert_eq!(embedded["allOf"][0]["properties"]["pet_type"]["enum"], json!(["Cat", "Dog"]));
        let mut unrelated = json!({ "oneOf": [ { "$ref": "#/$defs/Cat" }, { "$ref": "#/$defs/Pet" } ] });
        discriminated(&mut unrelated, &defs);
        assert!(unrelated.get("oneOf").is_some(), "Pet does not inherit from itself");
    }

    #[test]
    fn dialects_name_what_the_validator_knows() {
        assert_eq!(dialect(&json!({})), Ok(None));
        let of = |d: &str| dialect(&json!({ "jsonSchemaDialect": d }));
        assert_eq!(of("https://spec.openapis.org/oas/3.1/dialect/base"), Ok(None));
        assert_eq!(of("http://json-schema.org/draft-04/schema#"), Ok(Some("http://json-schema.org/draft-04/schema#")));
        assert!(of("https://example.com/mine").unwrap_err().contains("example.com/mine"));
        let mut s = json!({ "type": "number" });
        in_dialect(&mut s, Some("http://json-schema.org/draft-04/schema#"));
        assert_eq!(s["$schema"], "http://json-schema.org/draft-04/schema#");
        let mut own = json!({ "$schema": "https://spec.openapis.org/oas/3.1/dialect/base" });
        in_dialect(&mut own, Some("http://json-schema.org/draft-04/schema#"));
        assert_eq!(own, json!({}));
    }

    #[test]
    fn patterns_for_javascript_without_the_u_flag_are_escaped_and_valid_ones_kept() {
        for (written, expected) in [
            ("^{[0-9a-f]{4}}$", r"^\{[0-9a-f]{4}\}$"),
            ("a{,3}", r"a\{,3\}"),
            ("x{2,}y{1,3}z{4}", "x{2,}y{1,3}z{4}"),
            ("[{}]", "[{}]"),
            (r"\u{1F600}\p{L}\{", r"\u{1F600}\p{L}\{"),
            ("a]b", r"a\]b"),
            ("^[A-Z]{3}-[0-9]{4}$", "^[A-Z]{3}-[0-9]{4}$"),
        ] {
            assert_eq!(escape_literal_braces(written), expected, "{written}");
        }
    }
}
