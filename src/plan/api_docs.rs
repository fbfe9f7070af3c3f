//! An api's `docs`: the OpenAPI document served as it was loaded, as JSON
//! at `<docs>/openapi.json` (its `servers` replaced by the gateway's own
//! base path: the document's may name internal hosts, or a path the
//! gateway does not serve), and a reference page at `<docs>` rendered
//! here, once, when the config loads (no script, no stylesheet, no CDN:
//! the page works under the gateway's own `default-src 'none'` policy).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::Value;

use crate::config::{ApiConfig, DocsConfig, MatchConfig, RouteConfig, StaticConfig};

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// The two routes that serve `doc` under `docs`'s path (to the callers it
/// lets in, when it names providers or IP lists).
/// `base_path`: where the gateway serves the document's paths.
pub(super) fn routes(
    api: &ApiConfig,
    doc: &Value,
    docs: &DocsConfig,
    base_path: &str,
    dir: &std::path::Path,
) -> Result<Vec<RouteConfig>, String> {
    let at = docs.path().trim_end_matches('/');
    if !at.starts_with('/') || at.contains(['{', '}', '*', '?', '#']) {
        return Err(format!("`{}` is not a plain path such as `/v3/docs`", docs.path()));
    }
    // A `GET` operation at the very path (no parameter in it: a literal
    // segment outranks `{id}`) takes the page's requests, and the HEAD it
    // takes as a GET, as much as the page's route does: they clash.
    let operations = doc.get("paths").and_then(Value::as_object).into_iter().flatten();
    for (template, _) in operations.filter(|(_, item)| item.get("get").is_some() || item.get("head").is_some()) {
        let full = format!("{base_path}{template}");
        for served in [at.to_string(), format!("{at}/openapi.json")] {
            if full.trim_end_matches('/') == served {
                return Err(format!(
                    "`{served}` is the path of the document's `{template}`, whose operations would take its \
                     requests: choose another `docs` path"
                ));
            }
        }
    }
    // A relative server URL: callers reach the paths on the host they read
    // the document from, under the gateway's base path.
    let mut served_doc = doc.clone();
    super::api_bundle::bundle(&mut served_doc, dir)?;
    if let Some(map) = served_doc.as_object_mut() {
        let url = if base_path.is_empty() { "/" } else { base_path };
        map.insert("servers".into(), serde_json::json!([ { "url": url } ]));
    }
    // A path's, an operation's or a link's own servers may name internal
    // hosts too, and the gateway serves every path under its one base
    // path: wherever they are (paths, path items by `$ref`, webhooks,
    // callbacks, bundled files).
    strip_servers(&mut served_doc);
    let json = serde_json::to_string_pretty(&served_doc).map_err(|e| e.to_string())?;
    let page = render(api, &served_doc, &format!("{at}/openapi.json"), base_path);
    let served = |name: &str, path: String, content_type: &str, body: String| {
        let matcher =
            MatchConfig { path: Some(path), methods: Some(vec!["GET".into(), "HEAD".into()]), ..Default::default() };
        let mut route = super::openapi::proxy_route(format!("{}.{name}", api.name), matcher, "");
        route.upstream = None;
        let headers = BTreeMap::from([("content-type".to_string(), content_type.to_string())]);
        route.static_response = Some(StaticConfig { status: 200, headers, body });
        if let DocsConfig::Guarded(g) = docs {
            route.authenticate = g.authenticate.clone();
            route.authorize = g.authorize.clone();
            route.ip = g.ip.clone();
        }
        route
    };
    Ok(vec![
        served("docs", at.to_string(), "text/html; charset=utf-8", page),
        served("openapi", format!("{at}/openapi.json"), "application/json", json),
    ])
}

/// The reference page: the document's title and description, then each
/// path's operations (parameters, body, security), then the schemas.
fn render(api: &ApiConfig, doc: &Value, json_at: &str, base_path: &str) -> String {
    let title = text(doc.pointer("/info/title"));
    let title = if title.is_empty() { api.name.as_str() } else { title };
    let mut out = String::with_capacity(16 << 10);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title></head><body>\n\
         <h1>{} <small>{}</small></h1>\n<p>{}</p>\n<p>The document: <a href=\"{}\">{}</a> (OpenAPI {}).</p>\n",
        esc(title),
        esc(title),
        esc(text(doc.pointer("/info/version"))),
        esc(text(doc.pointer("/info/description"))),
        esc(json_at),
        esc(json_at),
        esc(text(doc.get("openapi"))),
    );
    if let Some(schemes) = doc.pointer("/components/securitySchemes").and_then(Value::as_object) {
        out.push_str("<h2>Authentication</h2>\n<ul>\n");
        for (name, s) in schemes {
            let kind = [text(s.get("type")), text(s.get("scheme")), text(s.get("in")), text(s.get("name"))]
                .into_iter()
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(out, "<li><code>{}</code>: {}</li>", esc(name), esc(&kind));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("<h2>Operations</h2>\n");
    for (path, item) in doc.get("paths").and_then(Value::as_object).into_iter().flatten() {
        // A path item given by `$ref` (`#/components/pathItems/…`, or a
        // bundled file's): the item it names.
        let item = referenced(doc, item);
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let _ = writeln!(
                out,
                "<h3 id=\"{}\"><code>{} {}</code> {}</h3>\n<p>{}</p>",
                esc(text(op.get("operationId"))),
                method.to_ascii_uppercase(),
                esc(&format!("{base_path}{path}")),
                esc(text(op.get("operationId"))),
                esc(text(op.get("summary")).trim()),
            );
            // An operation's parameter replaces the path's of the same name
            // and place (OpenAPI: "will override it but can never remove it").
            let description = text(op.get("description")).trim();
            if !description.is_empty() {
                let _ = writeln!(out, "<p>{}</p>", esc(description));
            }
            // `$ref: '#/components/parameters/Tenant'`: the parameter it names.
            let own: Vec<&Value> = op
                .get("parameters")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|p| referenced(doc, p))
                .collect();
            let key = super::openapi::param_key;
            let shared =
                item.get("parameters").and_then(Value::as_array).into_iter().flatten().map(|p| referenced(doc, p));
            let params: Vec<&Value> =
                own.iter().copied().chain(shared.filter(|p| !own.iter().any(|o| key(o) == key(p)))).collect();
            if !params.is_empty() {
                out.push_str("<table><tr><th>parameter</th><th>in</th><th>required</th><th>schema</th></tr>\n");
                for p in params {
                    let (name, place, schema) = match p.get("$ref").and_then(Value::as_str) {
                        Some(r) => (r, "", String::new()),
                        None => (text(p.get("name")), text(p.get("in")), compact(p.get("schema"))),
                    };
                    let required = p.get("required").and_then(Value::as_bool).unwrap_or(place == "path");
                    let _ = writeln!(
                        out,
                        "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                        esc(name),
                        esc(place),
                        if required { "yes" } else { "no" },
                        esc(&schema),
                    );
                }
                out.push_str("</table>\n");
            }
            if let Some(body) = op.get("requestBody") {
                let required = body.get("required").and_then(Value::as_bool).unwrap_or(false);
                for (media, content) in body.get("content").and_then(Value::as_object).into_iter().flatten() {
                    let _ = writeln!(
                        out,
                        "<p>Body{} <code>{}</code>: <code>{}</code></p>",
                        if required { " (required)" } else { "" },
                        esc(media),
                        esc(&compact(content.get("schema"))),
                    );
                }
            }
            if let Some(security) = op.get("security").or_else(|| doc.get("security")).and_then(Value::as_array) {
                let alternatives: Vec<String> = security
                    .iter()
                    .filter_map(Value::as_object)
                    .map(|req| req.keys().cloned().collect::<Vec<_>>().join(" and "))
                    .map(|s| if s.is_empty() { "none".to_string() } else { s })
                    .collect();
                // `security: []`: public.
                let needed = if alternatives.is_empty() { "none".to_string() } else { alternatives.join(" or ") };
                let _ = writeln!(out, "<p>Authentication: {}</p>", esc(&needed));
            }
        }
    }
    if let Some(schemas) = doc.pointer("/components/schemas").and_then(Value::as_object) {
        out.push_str("<h2>Schemas</h2>\n");
        for (name, schema) in schemas {
            let pretty = serde_json::to_string_pretty(schema).unwrap_or_default();
            let _ = writeln!(out, "<h3 id=\"schema-{}\">{}</h3>\n<pre>{}</pre>", esc(name), esc(name), esc(&pretty));
        }
    }
    out.push_str("</body></html>\n");
    out
}

/// Removes the server lists of path items and operations, and links'
/// `server`, by their place in the document (not by their shape, which
/// an example or a default may have too): under `paths`, `webhooks`,
/// `components.pathItems` and callbacks, following `$ref`s, and the same
/// in each bundled file (whose own top-level `servers` go too).
fn strip_servers(doc: &mut Value) {
    let bundled = keys_of(doc, "/x-portcullis-bundled");
    let roots: Vec<String> =
        std::iter::once(String::new()).chain(bundled.iter().map(|f| child("/x-portcullis-bundled", f))).collect();
    let mut items = Vec::new();
    let mut links = Vec::new();
    for root in &roots {
        if !root.is_empty()
            && let Some(file) = doc.pointer_mut(root).and_then(Value::as_object_mut)
        {
            file.remove("servers");
        }
        for base in ["paths", "webhooks", "components/pathItems"] {
            let base = format!("{root}/{base}");
            items.extend(keys_of(doc, &base).iter().map(|k| child(&base, k)));
        }
        let callbacks = format!("{root}/components/callbacks");
        for cb in keys_of(doc, &callbacks) {
            let cb = child(&callbacks, &cb);
            items.extend(keys_of(doc, &cb).iter().map(|e| child(&cb, e)));
        }
        let named = format!("{root}/components/links");
        links.extend(keys_of(doc, &named).iter().map(|l| child(&named, l)));
        let responses = format!("{root}/components/responses");
        for r in keys_of(doc, &responses) {
            let at = child(&child(&responses, &r), "links");
            links.extend(keys_of(doc, &at).iter().map(|l| child(&at, l)));
        }
    }
    let mut seen = std::collections::HashSet::new();
    while let Some(item) = items.pop() {
        // Beside a `$ref` too (OpenAPI 3.1 lets a path item have both).
        if let Some(map) = doc.pointer_mut(&item).and_then(Value::as_object_mut) {
            map.remove("servers");
        }
        let item = resolved(doc, item);
        if !seen.insert(item.clone()) {
            continue;
        }
        let Some(map) = doc.pointer_mut(&item).and_then(Value::as_object_mut) else { continue };
        map.remove("servers");
        for method in METHODS {
            let op = child(&item, method);
            match doc.pointer_mut(&op).and_then(Value::as_object_mut) {
                Some(map) => drop(map.remove("servers")),
                None => continue,
            }
            // An operation written as a `$ref` (the gateway routes those too).
            let op = resolved(doc, op);
            if let Some(map) = doc.pointer_mut(&op).and_then(Value::as_object_mut) {
                map.remove("servers");
            }
            let callbacks = child(&op, "callbacks");
            for cb in keys_of(doc, &callbacks) {
                let cb = resolved(doc, child(&callbacks, &cb));
                items.extend(keys_of(doc, &cb).iter().map(|e| child(&cb, e)));
            }
            let responses = child(&op, "responses");
            for r in keys_of(doc, &responses) {
                let at = child(&resolved(doc, child(&responses, &r)), "links");
                links.extend(keys_of(doc, &at).iter().map(|l| child(&at, l)));
            }
        }
    }
    for link in links {
        if let Some(map) = doc.pointer_mut(&link).and_then(Value::as_object_mut) {
            map.remove("server");
        }
        let link = resolved(doc, link);
        if let Some(map) = doc.pointer_mut(&link).and_then(Value::as_object_mut) {
            map.remove("server");
        }
    }
}

/// The keys of the mapping at `pointer` (none if it is not one).
fn keys_of(doc: &Value, pointer: &str) -> Vec<String> {
    doc.pointer(pointer).and_then(Value::as_object).map(|m| m.keys().cloned().collect()).unwrap_or_default()
}

/// The JSON Pointer of `key` under `pointer` (RFC 6901 escapes: paths hold `/`).
fn child(pointer: &str, key: &str) -> String {
    format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1"))
}

/// Where a same-document `$ref` at `pointer` leads (a few hops at most).
fn resolved(doc: &Value, mut pointer: String) -> String {
    for _ in 0..8 {
        let target = doc.pointer(&pointer).and_then(|v| v.get("$ref")).and_then(Value::as_str);
        match target.and_then(|r| r.strip_prefix('#')) {
            Some(next) if doc.pointer(next).is_some() => pointer = next.to_string(),
            _ => break,
        }
    }
    pointer
}

/// What a same-document `$ref` leads to (a few hops at most), else `v`.
fn referenced<'d>(doc: &'d Value, mut v: &'d Value) -> &'d Value {
    for _ in 0..8 {
        match v.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix('#')).and_then(|p| doc.pointer(p)) {
            Some(target) => v = target,
            None => break,
        }
    }
    v
}

fn text(v: Option<&Value>) -> &str {
    v.and_then(Value::as_str).unwrap_or("")
}

/// A schema on one line (a `$ref` as its target).
fn compact(schema: Option<&Value>) -> String {
    match schema {
        None => String::new(),
        Some(s) => match s.get("$ref").and_then(Value::as_str) {
            Some(r) => r.to_string(),
            None => s.to_string(),
        },
    }
}

/// Text for HTML: the document is the operator's, but never trusted as markup.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_escapes_the_document_and_the_path_must_be_plain() {
        let api: ApiConfig =
            serde_saphyr::from_str("{ name: a, openapi: x.yaml, upstream: u, docs: /docs }").expect("an api");
        let doc = serde_json::json!({
            "openapi": "3.1.0",
            "info": { "title": "<script>alert(1)</script>", "version": "1" },
            "paths": { "/x": { "get": { "operationId": "getX", "summary": "a & b" } } }
        });
        let routes = routes(&api, &doc, &DocsConfig::Path("/docs/".into()), "", std::path::Path::new(".")).unwrap();
        let page = &routes[0].static_response.as_ref().unwrap().body;
        assert!(!page.contains("<script>") && page.contains("&lt;script&gt;"), "{page}");
        assert!(page.contains("a &amp; b") && page.contains("href=\"/docs/openapi.json\""), "{page}");
        assert_eq!(routes[1].matcher.path.as_deref(), Some("/docs/openapi.json"));
        for bad in ["docs", "/docs/{x}", "/docs?x"] {
            assert!(
                super::routes(&api, &doc, &DocsConfig::Path(bad.into()), "", std::path::Path::new(".")).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_served_document_says_where_the_gateway_serves_it() {
        let api: ApiConfig =
            serde_saphyr::from_str("{ name: a, openapi: x.yaml, upstream: u, docs: /docs }").expect("an api");
        let doc = serde_json::json!({
            "openapi": "3.0.3",
            "info": { "title": "t", "version": "1" },
            "servers": [ { "url": "http://10.1.2.3:8080/internal" } ],
            "paths": { "/items/{id}": {
                "servers": [ { "url": "http://10.7.7.7:1234/evil" } ],
                "parameters": [ { "name": "id", "in": "path", "required": true, "schema": { "type": "integer" } } ],
                "get": { "operationId": "getItem", "description": "Reads one item.",
                         "servers": [ { "url": "http://op-internal.corp:9999/" } ],
                         "parameters": [ { "name": "id", "in": "path", "required": true, "schema": { "type": "string" } },
                                         { "$ref": "#/components/parameters/Tenant" } ] }
            } },
            "components": {
                "parameters": { "Tenant": { "name": "X-Tenant", "in": "header", "required": true, "schema": { "type": "string", "format": "uuid" } } },
                "pathItems": { "Pet": { "get": { "operationId": "getPet", "summary": "One pet" } } }
            }
        });
        let mut doc = doc;
        doc["paths"]["/pets/{petId}"] = serde_json::json!({ "$ref": "#/components/pathItems/Pet",
            "servers": [ { "url": "http://sibling-of-ref-internal.corp/" } ] });
        // Servers reached by `$ref`, in webhooks, callbacks and links.
        let internal = serde_json::json!([ { "url": "http://pathitem-internal.corp:7777/" } ]);
        doc["components"]["pathItems"]["Pet"]["servers"] = internal.clone();
        doc["components"]["pathItems"]["Pet"]["get"]["servers"] = internal.clone();
        doc["webhooks"] = serde_json::json!({ "ev": { "post": { "servers": internal.clone() } } });
        // An operation written as a `$ref`.
        doc["paths"]["/ops"] = serde_json::json!({ "get": { "$ref": "#/x-ops/listOps" } });
        doc["x-ops"] = serde_json::json!({ "listOps": { "operationId": "listOps", "servers": internal.clone() } });
        doc["paths"]["/items/{id}"]["get"]["callbacks"] =
            serde_json::json!({ "done": { "{$request.body#/cb}": { "servers": internal.clone(), "post": {} } } });
        doc["components"]["links"] = serde_json::json!({ "next": { "operationId": "getItem", "server": { "url": "http://link-internal.corp/" } } });
        // A schema's property named `servers` is no server list, nor an example shaped like one.
        doc["components"]["schemas"] = serde_json::json!({ "Host": { "type": "object",
            "properties": { "servers": { "type": "array" }, "server": { "type": "object" } },
            "example": { "servers": [ { "url": "https://db1.example/" } ], "server": { "url": "https://db2.example/" } } } });
        // Whatever the entries (one without `url`, a `$ref`), and in a file bundled whole.
        doc["paths"]["/items/{id}"]["servers"] =
            serde_json::json!([ { "description": "mixed-internal.corp" }, { "$ref": "#/x" } ]);
        doc["x-portcullis-bundled"] = serde_json::json!({ "other.yaml": {
            "servers": [ { "url": "http://bundled-internal.corp/" } ],
            "paths": { "/o": { "get": { "servers": [ { "url": "http://bundled-op-internal.corp/" } ] } } } } });
        let routes = routes(&api, &doc, &DocsConfig::Path("/docs".into()), "/gw", std::path::Path::new(".")).unwrap();
        let served = &routes[1].static_response.as_ref().unwrap().body;
        let json: Value = serde_json::from_str(served).unwrap();
        assert_eq!(json["servers"], serde_json::json!([ { "url": "/gw" } ]), "not the internal host");
        assert!(
            !served.contains("10.7.7.7") && !served.contains("internal.corp"),
            "path and operation servers: {served}"
        );
        assert_eq!(json["components"]["schemas"]["Host"]["properties"]["servers"]["type"], "array");
        let example = &json["components"]["schemas"]["Host"]["example"];
        assert_eq!(
            (example["servers"][0]["url"].as_str(), example["server"]["url"].as_str()),
            (Some("https://db1.example/"), Some("https://db2.example/")),
            "examples are served as written"
        );
        let page = &routes[0].static_response.as_ref().unwrap().body;
        assert!(page.contains("GET /gw/items/{id}") && !page.contains("10.1.2.3"), "{page}");
        assert_eq!(page.matches("<tr><td><code>id</code>").count(), 1, "the operation's `id` only: {page}");
        assert!(page.contains("<tr><td><code>X-Tenant</code></td><td>header</td><td>yes</td>"), "{page}");
        assert!(page.contains("<p>Reads one item.</p>"), "{page}");
        assert!(page.contains("GET /gw/pets/{petId}</code> getPet"), "a path item by `$ref`: {page}");
    }
}
