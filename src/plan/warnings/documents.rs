//! Warnings about what schemas and API documents say: a `format` nothing
//! checks, and a strict API whose undeclared requests a broader route takes.

use std::collections::BTreeMap;

use serde_json::Value;

use super::Found;
use crate::config::{ApiConfig, LoadedConfig};

/// The formats the validator checks or knows as annotations: JSON
/// Schema's, and OpenAPI's (`int32`/`int64` are checked as ranges; the
/// others describe a value without a check).
const KNOWN_FORMATS: &[&str] = &[
    "date",
    "date-time",
    "duration",
    "email",
    "hostname",
    "idn-email",
    "idn-hostname",
    "ipv4",
    "ipv6",
    "iri",
    "iri-reference",
    "json-pointer",
    "regex",
    "relative-json-pointer",
    "time",
    "uri",
    "uri-reference",
    "uri-template",
    "uuid",
    "int32",
    "int64",
    "float",
    "double",
    "byte",
    "binary",
    "password",
];

/// Members whose values are data, not schemas (a `format` there is a value).
const DATA_MEMBERS: &[&str] = &["example", "examples", "default", "enum", "const"];

/// JSON Schema's keywords (2020-12 and the drafts before it) and OpenAPI's
/// schema fields: a key spelled like one of these but not one is a typo
/// JSON Schema ignores (`additionalproperties: false` leaves the object open).
#[rustfmt::skip]
const KEYWORDS: &[&str] = &[
    "$schema", "$id", "$ref", "$defs", "$anchor", "$dynamicRef", "$dynamicAnchor", "$comment", "$vocabulary",
    "definitions", "type", "enum", "const", "multipleOf", "maximum", "exclusiveMaximum", "minimum",
    "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems", "minItems", "uniqueItems", "maxContains",
    "minContains", "maxProperties", "minProperties", "required", "dependentRequired", "properties",
    "patternProperties", "additionalProperties", "unevaluatedProperties", "propertyNames", "items", "prefixItems",
    "additionalItems", "unevaluatedItems", "contains", "allOf", "anyOf", "oneOf", "not", "if", "then", "else",
    "dependentSchemas", "dependencies", "format", "contentEncoding", "contentMediaType", "contentSchema", "title",
    "description", "default", "deprecated", "readOnly", "writeOnly", "examples", "example", "nullable",
    "discriminator", "xml", "externalDocs",
];

/// OpenAPI's own fields around schemas (an API document is walked whole):
/// never taken for a misspelt keyword (`schema` is one letter from `$schema`).
#[rustfmt::skip]
const OPENAPI_FIELDS: &[&str] = &[
    "openapi", "info", "servers", "paths", "components", "security", "tags", "summary", "operationId",
    "parameters", "requestBody", "responses", "callbacks", "name", "in", "allowEmptyValue", "style", "explode",
    "allowReserved", "schema", "schemas", "content", "encoding", "headers", "links", "contentType",
    "propertyName", "mapping", "securitySchemes", "scheme", "bearerFormat", "flows", "openIdConnectUrl", "url",
    "variables", "termsOfService", "contact", "license", "version", "jsonSchemaDialect", "webhooks",
];

/// Maps whose keys are names (of properties, definitions, paths, media
/// types…), not keywords.
#[rustfmt::skip]
const NAME_MAPS: &[&str] = &[
    "properties", "patternProperties", "$defs", "definitions", "dependentSchemas", "dependentRequired", "schemas",
    "paths", "responses", "content", "headers", "securitySchemes", "links", "callbacks", "examples", "encoding",
    "variables", "mapping", "webhooks", "parameters", "requestBodies", "query", "path", "cookies",
    "security", "scopes", "securityDefinitions", "pathItems", "dependencies",
];

/// The keyword `key` looks like a misspelling of: another case, or (for
/// long keywords) one letter off.
fn misspelt_keyword(key: &str) -> Option<&'static str> {
    if KEYWORDS.contains(&key) || OPENAPI_FIELDS.contains(&key) || key.starts_with("x-") {
        return None;
    }
    KEYWORDS.iter().copied().find(|k| k.eq_ignore_ascii_case(key)).or_else(|| {
        (key.len() >= 7).then(|| KEYWORDS.iter().copied().find(|k| k.len() >= 7 && one_letter_off(key, k))).flatten()
    })
}

/// Whether `a` and `b` differ by one letter added, removed or changed, or
/// two neighbours swapped (`requried`).
fn one_letter_off(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    match long.len() - short.len() {
        0 => {
            let differ: Vec<usize> = (0..short.len()).filter(|&i| short[i] != long[i]).collect();
            match differ[..] {
                [_] => true,
                [i, j] => j == i + 1 && short[i] == long[j] && short[j] == long[i],
                _ => false,
            }
        }
        1 => (0..long.len()).any(|skip| long[..skip] == short[..skip] && long[skip + 1..] == short[skip..]),
        _ => false,
    }
}

/// Unknown `format` names: a typo (`uuuid`) leaves the value unchecked, as
/// JSON Schema says an unknown format is. One warning per name and place,
/// with the first schema location and how many use it.
pub(super) fn unknown_formats(loaded: &LoadedConfig, found: &mut Found) {
    let cfg = &loaded.config;
    let named = |f: &str| KNOWN_FORMATS.contains(&f) || cfg.formats.contains_key(f);
    for (i, route) in cfg.routes.iter().enumerate() {
        let Some(v) = &route.validate else { continue };
        let mut unknown = Unknown::default();
        let inline = v.path.iter().map(|(k, s)| (format!("path.{k}"), s));
        let inline = inline.chain(v.query.iter().map(|(k, s)| (format!("query.{k}"), s)));
        let inline = inline.chain(v.headers.iter().map(|(k, s)| (format!("headers.{k}"), s)));
        let inline = inline.chain(v.cookies.iter().map(|(k, s)| (format!("cookies.{k}"), s)));
        let body = v.body.as_ref().and_then(|b| b.schema.as_ref()).map(|s| ("body.schema".to_string(), s));
        for (at, schema) in inline.chain(body) {
            walk(schema, &format!("routes[{i}].validate.{at}"), &named, &mut unknown);
        }
        unknown.report(found, |_| None);
        if let Some(file) = v.body.as_ref().and_then(|b| b.schema_file.as_ref())
            && let Ok(doc) = crate::config::load_document(&loaded.resolve_file(file))
        {
            let mut unknown = Unknown::default();
            walk(&doc, "", &named, &mut unknown);
            let at = format!("routes[{i}].validate.body.schema_file");
            unknown.report(found, |pointer| Some((at.clone(), format!("in `{file}` at `{pointer}`"))));
        }
    }
    for (i, api) in cfg.apis.iter().enumerate() {
        let Some(doc) = document(loaded, api) else { continue };
        let v31 = doc.get("openapi").and_then(Value::as_str).is_some_and(|v| v.starts_with("3.1."));
        let mut unknown = Unknown { 3: v31, ..Unknown::default() };
        walk(&doc, "", &named, &mut unknown);
        let at = format!("apis[{i}].openapi");
        unknown.report(found, |pointer| Some((at.clone(), format!("in `{}` at `{pointer}`", api.openapi))));
    }
}

fn document(loaded: &LoadedConfig, api: &ApiConfig) -> Option<Value> {
    crate::config::load_document(&loaded.resolve_file(&api.openapi)).ok()
}

/// Unknown format names: the first place each was seen, and how often;
/// bounds no value can meet (place, what); misspelt keywords (place, what);
/// whether the schemas are an OpenAPI 3.1 document's (where 3.0's
/// `nullable` is no keyword).
#[derive(Default)]
struct Unknown(BTreeMap<String, (String, usize)>, Vec<(String, String)>, Vec<(String, String)>, bool);

/// Lower and upper bounds of one schema object that cannot both hold.
const BOUNDS: &[(&str, &str)] =
    &[("minimum", "maximum"), ("minLength", "maxLength"), ("minItems", "maxItems"), ("minProperties", "maxProperties")];

/// `minimum: 5, maximum: 1` and the like: the schema refuses every value.
/// So does an object that must have a member it may not have (`required`
/// beside `additionalProperties: false` without it in `properties`).
fn impossible_bounds(map: &serde_json::Map<String, Value>) -> Option<String> {
    let bounds = BOUNDS.iter().find_map(|(low, high)| {
        let (l, h) = (map.get(*low)?.as_f64()?, map.get(*high)?.as_f64()?);
        (l > h).then(|| format!("`{low}: {l}` is above `{high}: {h}`"))
    });
    bounds.or_else(|| {
        let closed = map.get("additionalProperties") == Some(&Value::Bool(false))
            && map.get("type").and_then(Value::as_str) == Some("object")
            && !map.contains_key("patternProperties");
        let declared = map.get("properties").and_then(Value::as_object);
        let missing = map
            .get("required")?
            .as_array()?
            .iter()
            .filter_map(Value::as_str)
            .find(|name| !declared.is_some_and(|p| p.contains_key(*name)))?;
        closed.then(|| {
            format!(
                "`required` names `{missing}`, which `additionalProperties: false` refuses (it is not in `properties`)"
            )
        })
    })
}

impl Unknown {
    /// One warning per name. `place` turns the first location into the
    /// config path to report and the words saying where (`None`: the
    /// location is a config path itself).
    fn report(self, found: &mut Found, place: impl Fn(&str) -> Option<(String, String)>) {
        for (first, what) in self.1 {
            let (at, where_) = place(&first).unwrap_or_else(|| (first.clone(), String::new()));
            let where_ = if where_.is_empty() { String::new() } else { format!(" {where_}") };
            found.add(
                "impossible-schema",
                at,
                format!("{what}{where_}: no value meets this schema, so every request with one is refused"),
            );
        }
        for (first, what) in self.2 {
            let (at, where_) = place(&first).unwrap_or_else(|| (first.clone(), String::new()));
            let where_ = if where_.is_empty() { String::new() } else { format!(" {where_}") };
            found.add("unknown-keyword", at, format!("{what}{where_}: JSON Schema ignores it, so it checks nothing"));
        }
        for (name, (first, count)) in self.0 {
            let more = if count > 1 { format!(" (and {} more)", count - 1) } else { String::new() };
            let (at, where_) = place(&first).unwrap_or_else(|| (first.clone(), String::new()));
            let where_ = if where_.is_empty() { String::new() } else { format!(" {where_}") };
            found.add(
                "unknown-format",
                at,
                format!(
                    "format `{name}`{where_}{more} is not one the gateway knows: such values pass unchecked; \
                     fix the name, or give it a pattern in the top-level `formats`"
                ),
            );
        }
    }
}

/// Every `format: <string>` in a schema tree, by config path (`prefix`
/// not empty: `a.b[0]`) or JSON pointer (`prefix` empty: `/a/b/0`).
fn walk(v: &Value, at: &str, named: &impl Fn(&str) -> bool, unknown: &mut Unknown) {
    walk_in(v, at, None, named, unknown)
}

/// `walk` of a value found under the key `parent` (`None`: an array item or the root).
fn walk_in(v: &Value, at: &str, parent: Option<&str>, named: &impl Fn(&str) -> bool, unknown: &mut Unknown) {
    let pointer = at.is_empty() || at.starts_with('/');
    match v {
        Value::Object(map) => {
            // A map of names: its keys are names, its values what they name
            // (a property called `content` or `default` is a schema).
            let names_here = parent.is_some_and(|p| NAME_MAPS.contains(&p));
            if !names_here {
                for key in map.keys() {
                    let place = || if pointer { format!("{at}/{key}") } else { format!("{at}.{key}") };
                    if let Some(keyword) = misspelt_keyword(key) {
                        unknown
                            .2
                            .push((place(), format!("`{key}` is not a schema keyword (did you mean `{keyword}`?)")));
                    } else if unknown.3 && key == "nullable" && map.get(key) == Some(&Value::Bool(true)) {
                        let what = "`nullable` is OpenAPI 3.0's, not a keyword of a 3.1 document (write the type as \
                                    `[string, \"null\"]`: `null` is refused as it stands)";
                        unknown.2.push((place(), what.to_string()));
                    }
                }
            }
            if let Some(what) = impossible_bounds(map) {
                unknown.1.push((at.to_string(), what));
            }
            if let Some(Value::String(f)) = map.get("format")
                && !named(f)
            {
                let place = if pointer { format!("{at}/format") } else { format!("{at}.format") };
                let entry = unknown.0.entry(f.clone()).or_insert((place, 0));
                entry.1 += 1;
            }
            for (k, child) in map {
                if !names_here && (DATA_MEMBERS.contains(&k.as_str()) || k.starts_with("x-")) {
                    continue;
                }
                let next = if pointer {
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"))
                } else {
                    format!("{at}.{k}")
                };
                walk_in(child, &next, (!names_here).then_some(k.as_str()), named, unknown);
            }
        }
        Value::Array(items) => {
            // OpenAPI's `security` is a list of maps of scheme names.
            let item_parent = parent.filter(|p| *p == "security");
            for (i, child) in items.iter().enumerate() {
                let next = if pointer { format!("{at}/{i}") } else { format!("{at}[{i}]") };
                walk_in(child, &next, item_parent, named, unknown);
            }
        }
        _ => {}
    }
}

/// A strict API refuses what its document does not declare, unless a
/// broader route takes it first: a `path_prefix` (or `{*rest}` path) that
/// covers the API's base path, or another API that passes its undeclared
/// requests on. Most specific wins, so such a request reaches that route's
/// upstream unchecked.
pub(super) fn shadowed_strict_apis(loaded: &LoadedConfig, found: &mut Found) {
    let cfg = &loaded.config;
    let bases: Vec<Option<String>> = cfg.apis.iter().map(|api| base_path(loaded, api)).collect();
    for (i, api) in cfg.apis.iter().enumerate() {
        let Some(base) = bases[i].as_deref().filter(|_| api.strict) else { continue };
        let base = if base.is_empty() { "/" } else { base };
        let routes = cfg.routes.iter().enumerate().filter_map(|(j, r)| {
            let m = &r.matcher;
            let covering = match (&m.path_prefix, &m.path) {
                (Some(prefix), _) => Some(prefix.as_str()),
                (None, Some(path)) => path.rsplit_once("/{*").map(|(literal, _)| literal),
                _ => None,
            };
            let covering = covering.filter(|p| !p.contains('{') && segment_prefix(p, base))?;
            Some((format!("route `{}`", r.name), format!("routes[{j}].match"), covering.to_string()))
        });
        let apis = cfg.apis.iter().enumerate().filter_map(|(j, other)| {
            let other_base = bases[j].as_deref().filter(|_| j != i && !other.strict)?;
            let other_base = if other_base.is_empty() { "/" } else { other_base };
            segment_prefix(other_base, base).then(|| {
                (format!("API `{}` (strict: false)", other.name), format!("apis[{j}].strict"), other_base.to_string())
            })
        });
        for (who, at, prefix) in routes.chain(apis).collect::<Vec<_>>() {
            found.add(
                "strict-api-shadowed",
                at,
                format!(
                    "{who} takes every path under `{prefix}`, so requests under `{base}` that API `{}`'s \
                     document does not declare (other paths, other methods) reach it unchecked instead of \
                     404/405; narrow it, or mean it with `strict: false` on the API",
                    api.name
                ),
            );
        }
    }
}

/// The API's base path as the plan computes it (`None`: the document does not load).
fn base_path(loaded: &LoadedConfig, api: &ApiConfig) -> Option<String> {
    match &api.base_path {
        Some(p) => Some(p.trim_end_matches('/').to_string()),
        None => document(loaded, api).map(|doc| super::super::openapi::server_path(&doc)),
    }
}

/// Whether `prefix` covers `path` at segment boundaries (`/` covers all,
/// `/api` covers `/api/v2`, not `/apis`).
pub(super) fn segment_prefix(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty() || path == prefix || path.starts_with(prefix) && path[prefix.len()..].starts_with('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 3.0's `nullable: true` left in a 3.1 document: `null` is refused
    /// there, so said; in a 3.0 document it is a keyword.
    #[test]
    fn nullable_is_no_keyword_of_a_3_1_document() {
        let doc = serde_json::json!({ "components": { "schemas": { "A": {
            "type": "object", "properties": { "a": { "type": "string", "nullable": true }, "nullable": { "type": "string" } }
        } } } });
        let mut v31 = Unknown { 3: true, ..Unknown::default() };
        walk(&doc, "", &|_: &str| true, &mut v31);
        let places: Vec<&str> = v31.2.iter().map(|(at, _)| at.as_str()).collect();
        assert_eq!(places, ["/components/schemas/A/properties/a/nullable"], "a property named so is a name");
        let mut v30 = Unknown::default();
        walk(&doc, "", &|_: &str| true, &mut v30);
        assert!(v30.2.is_empty(), "{:?}", v30.2);
    }

    #[test]
    fn misspelt_keywords_are_found_and_names_left_alone() {
        for (key, meant) in [
            ("additionalproperties", "additionalProperties"),
            ("MaxLength", "maxLength"),
            ("requried", "required"),
            ("uniqueItem", "uniqueItems"),
            ("exclusiveMinimun", "exclusiveMinimum"),
        ] {
            assert_eq!(misspelt_keyword(key), Some(meant), "{key}");
        }
        for key in ["schema", "operationId", "x-internal", "requestBody", "tags", "name", "type", "fooBar"] {
            assert_eq!(misspelt_keyword(key), None, "{key}");
        }
        let mut unknown = Unknown::default();
        let schema = serde_json::json!({
            "type": "object",
            "properties": { "requried": { "type": "string" }, "a": { "additionalproperties": false } },
            "$defs": { "MaxLength": { "type": "integer" } }
        });
        walk(&schema, "", &|_: &str| true, &mut unknown);
        let closed = serde_json::json!({ "type": "object", "required": ["a"], "additionalProperties": false, "properties": { "b": {} } });
        walk(&closed, "", &|_: &str| true, &mut unknown);
        assert_eq!(unknown.1.len(), 1, "an object that must have what it may not");
        assert!(unknown.1[0].1.contains("`required` names `a`"), "{:?}", unknown.1);
        let names = serde_json::json!({
            "properties": { "content": { "maxlength": 3 }, "default": { "minLenght": 1 } },
            "security": [ { "Default": [] } ],
            "dependencies": { "Required": ["a"] }
        });
        walk(&names, "", &|_: &str| true, &mut unknown);
        let places: Vec<&str> = unknown.2.iter().map(|(at, _)| at.as_str()).collect();
        assert_eq!(
            places,
            ["/properties/a/additionalproperties", "/properties/content/maxlength", "/properties/default/minLenght"],
            "names are names, and what they name is a schema"
        );
    }

    #[test]
    fn prefixes_cover_at_segment_boundaries() {
        assert!(segment_prefix("/", "/api"));
        assert!(segment_prefix("/api", "/api"));
        assert!(segment_prefix("/api/", "/api/v2"));
        assert!(!segment_prefix("/api", "/apis"));
        assert!(!segment_prefix("/api/v2", "/api"));
    }

    #[test]
    fn bounds_no_value_meets_are_found() {
        let doc = serde_json::json!({
            "properties": {
                "n": { "type": "integer", "minimum": 5, "maximum": 1 },
                "s": { "type": "string", "minLength": 3, "maxLength": 3 },
                "a": { "type": "array", "minItems": 2, "maxItems": 1 }
            }
        });
        let mut found = Unknown::default();
        walk(&doc, "", &|_: &str| true, &mut found);
        let places: Vec<&str> = found.1.iter().map(|(at, _)| at.as_str()).collect();
        assert_eq!(places.len(), 2, "{:?}", found.1);
        assert!(places.contains(&"/properties/n") && places.contains(&"/properties/a"), "{places:?}");
    }

    #[test]
    fn formats_in_data_members_are_values_not_schemas() {
        let doc = serde_json::json!({
            "properties": {
                "id": { "type": "string", "format": "uuuid" },
                "format": { "type": "string", "format": "uuid" },
                "file": { "type": "string", "example": { "format": "pdf" }, "default": { "format": "a4" } }
            },
            "items": [{ "format": "uuuid" }, { "format": "e164" }]
        });
        let mut unknown = Unknown::default();
        walk(&doc, "", &|f: &str| KNOWN_FORMATS.contains(&f) || f == "e164", &mut unknown);
        assert!(unknown.1.is_empty());
        let got: Vec<(&str, usize)> = unknown.0.iter().map(|(k, (_, n))| (k.as_str(), *n)).collect();
        assert_eq!(got, [("uuuid", 2)]);
        let first = &unknown.0["uuuid"].0;
        assert!(["/items/0/format", "/properties/id/format"].contains(&first.as_str()), "{first}");
    }
}
