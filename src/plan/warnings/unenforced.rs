//! `unenforced-openapi`: what an API document declares that the gateway
//! does not check or follow, said once per document instead of passing in
//! silence (the reference page shows it as if it applied).

use serde_json::Value;

use super::Found;
use crate::config::LoadedConfig;

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

pub(super) fn unenforced_openapi(loaded: &LoadedConfig, found: &mut Found) {
    for (i, api) in loaded.config.apis.iter().enumerate() {
        let Ok(doc) = crate::config::load_document(&loaded.resolve_file(&api.openapi)) else { continue };
        let mut seen: Vec<String> = Vec::new();
        let mut note = |what: String| {
            if !seen.contains(&what) {
                seen.push(what);
            }
        };
        for (path, item) in doc.get("paths").and_then(Value::as_object).into_iter().flatten() {
            if item.get("servers").is_some() {
                note(format!("`servers` of path `{path}` (the document's base path applies)"));
            }
            for method in METHODS {
                let Some(op) = item.get(method) else { continue };
                let at = format!("`{} {path}`", method.to_ascii_uppercase());
                if op.get("servers").is_some() {
                    note(format!("`servers` of {at} (the document's base path applies)"));
                }
                let params = op.get("parameters").and_then(Value::as_array).into_iter().flatten();
                let shared = item.get("parameters").and_then(Value::as_array).into_iter().flatten();
                let mut in_path: Vec<&str> = Vec::new();
                let mut unread = false;
                for p in params.chain(shared) {
                    if p.get("allowEmptyValue").and_then(Value::as_bool) == Some(true) {
                        note(format!("`allowEmptyValue` of {at} (an empty value is checked as any other)"));
                    }
                    // A local `$ref` followed once; another kind: nothing is said of the path's names.
                    let p = match p.get("$ref").and_then(Value::as_str) {
                        Some(r) => match r.strip_prefix('#').and_then(|r| doc.pointer(r)) {
                            Some(target) => target,
                            None => {
                                unread = true;
                                continue;
                            }
                        },
                        None => p,
                    };
                    if p.get("in").and_then(Value::as_str) == Some("path") {
                        in_path.extend(p.get("name").and_then(Value::as_str));
                    }
                }
                // OpenAPI: each `{name}` of the path MUST have its path parameter;
                // without one, the gateway routes on it and checks nothing of it.
                for name in path.split('{').skip(1).filter_map(|rest| rest.split_once('}')).map(|(n, _)| n) {
                    if !unread && !in_path.contains(&name) {
                        note(format!("`{{{name}}}` of {at} (no path parameter declares it: any value passes)"));
                    }
                }
                let content = op.pointer("/requestBody/content").and_then(Value::as_object).into_iter().flatten();
                for (media, c) in content {
                    let media = media.to_ascii_lowercase();
                    let essence = media.split(';').next().unwrap_or("").trim();
                    let read = crate::policy::validate::is_json(essence)
                        || essence == "application/x-www-form-urlencoded"
                        || crate::policy::validate::is_json_range(essence);
                    // A schema on a type the gateway does not read (`multipart/…`,
                    // `text/plain`, `application/xml`): only the media type is
                    // checked. A plain binary upload's schema says nothing more.
                    if !read
                        && c.get("schema").is_some_and(|s| {
                            !s.as_object().is_some_and(serde_json::Map::is_empty)
                                && !crate::policy::validate::says_only_bytes(s)
                        })
                    {
                        note(format!("the `{media}` schema of {at} (only its media type is checked)"));
                    }
                    // A range's schema is checked on JSON and form bodies only: a
                    // body labelled `text/plain` passes unread, and a service that
                    // parses whatever it gets as JSON would act on it.
                    if crate::policy::validate::is_json_range(essence)
                        && c.get("schema").is_some_and(|s| !crate::policy::validate::says_only_bytes(s))
                    {
                        note(format!(
                            "the `{essence}` schema of {at} (checked on JSON and form bodies only; \
                             a body sent as another type that is no JSON document passes unchecked)"
                        ));
                    }
                    if c.get("encoding").is_some() {
                        note(format!(
                            "the `encoding` of {at}'s `{media}` body (fields are read by their schema, `name[key]` and `name[0]` nested as PHP, Rails and `qs` build them; other styles and content types are not applied)"
                        ));
                    }
                }
            }
        }
        if seen.is_empty() {
            continue;
        }
        let more = if seen.len() > 3 { format!(", and {} more", seen.len() - 3) } else { String::new() };
        seen.truncate(3);
        found.add(
            "unenforced-openapi",
            format!("apis[{i}].openapi"),
            format!("`{}` declares what the gateway does not check: {}{more}", api.openapi, seen.join("; ")),
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn what_is_not_enforced_is_said_once_per_document() {
        let dir = tempfile::tempdir().unwrap();
        let doc = "openapi: 3.0.3\ninfo: { title: t, version: '1' }\npaths:\n  /a:\n    servers: [ { url: /v3 } ]\n    \
                   put:\n      parameters: [ { name: e, in: query, allowEmptyValue: true, schema: { type: integer } } ]\n      \
                   requestBody: { content: { multipart/form-data: { schema: { type: object } } } }\n      responses: {}\n    \
                   post:\n      requestBody: { content: { '*/*': { schema: { type: object } } } }\n      responses: {}\n";
        std::fs::write(dir.path().join("d.yaml"), doc).unwrap();
        let text = "apis:\n  - { name: a, openapi: d.yaml, upstream: u }\n";
        let loaded = crate::config::parse_str(text, "t.yaml", dir.path()).unwrap();
        let mut found = super::Found::default();
        super::unenforced_openapi(&loaded, &mut found);
        assert_eq!(found.0.len(), 1);
        let message = &found.0[0].2;
        for part in
            ["`servers` of path `/a`", "`allowEmptyValue` of `PUT /a`", "`multipart/form-data` schema", "and 1 more"]
        {
            assert!(message.contains(part), "{part}: {message}");
        }
        let range = "openapi: 3.0.3\ninfo: { title: t, version: '1' }\npaths:\n  /b:\n    post:\n      \
                     requestBody: { content: { 'application/*': { schema: { type: object } } } }\n      responses: {}\n";
        std::fs::write(dir.path().join("d.yaml"), range).unwrap();
        let mut found = super::Found::default();
        super::unenforced_openapi(&loaded, &mut found);
        assert!(found.0[0].2.contains("the `application/*` schema of `POST /b` (checked on JSON and form bodies only"));
        // A schema on a type the gateway does not read is said; a plain upload's
        // and a JSON alias's are not.
        let kinds = "openapi: 3.0.3\ninfo: { title: t, version: '1' }\npaths:\n  /c:\n    post:\n      \
                     requestBody: { content: { text/plain: { schema: { type: string, maxLength: 9 } }, \
                     application/octet-stream: { schema: { type: string, format: binary } }, \
                     text/json: { schema: { type: object } } } }\n      responses: {}\n";
        std::fs::write(dir.path().join("d.yaml"), kinds).unwrap();
        let mut found = super::Found::default();
        super::unenforced_openapi(&loaded, &mut found);
        assert_eq!(found.0.len(), 1, "{:?}", found.0);
        let message = &found.0[0].2;
        assert!(message.contains("the `text/plain` schema of `POST /c` (only its media type is checked)"), "{message}");
        assert!(!message.contains("octet-stream") && !message.contains("text/json"), "{message}");
        // A path name without its path parameter, directly or by `$ref`.
        let names = "openapi: 3.0.3\ninfo: { title: t, version: '1' }\npaths:\n  /u/{uid}/{kind}:\n    \
                     parameters: [ { $ref: '#/components/parameters/Kind' } ]\n    get:\n      responses: {}\n\
                     components:\n  parameters:\n    Kind: { name: kind, in: path, required: true, schema: { type: string } }\n";
        std::fs::write(dir.path().join("d.yaml"), names).unwrap();
        let mut found = super::Found::default();
        super::unenforced_openapi(&loaded, &mut found);
        let message = &found.0[0].2;
        assert!(message.contains("`{uid}` of `GET /u/{uid}/{kind}` (no path parameter declares it"), "{message}");
        assert!(!message.contains("`{kind}`"), "{message}");
    }
}
