//! `apis`: an OpenAPI 3.0 or 3.1 document becomes routes, one per
//! operation, named `<api>.<operationId>` (or `<api>.<METHOD> <path>`),
//! each with the `validate` policy its parameters and request body imply
//! and the authentication its `security` names. Generated routes are
//! compiled like written ones (precedence, conflicts and all).
//!
//! The document is read once, here: `$ref`s to other parts of it and to
//! sibling files are resolved (schemas stay references, gathered under
//! `$defs`, so recursive schemas work); a remote `$ref` is refused. OpenAPI
//! 3.0 schemas are rewritten as JSON Schema 2020-12 (`nullable`, boolean
//! `exclusiveMinimum`/`exclusiveMaximum`); 3.1 schemas are used as they are.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::openapi_schema::{
    Direction, defs_for, dialect, discriminated, from_openapi_30, in_dialect, is_draft_4, lenient_patterns,
    lift_required, numeric_exclusive_bounds,
};

use crate::config::{ApiConfig, MatchConfig, RequestValidation, ResponseValidation, RouteConfig};
use crate::policy::authz::config::AuthorizeConfig;
use crate::policy::ctx::scope_fault;
use crate::policy::validate::config::{BodyConfig, ValidateConfig, ValidateMode};
use crate::policy::validate::{defs_name, is_json, is_json_range, media_essence as essence, pointer_token};

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// A route made from an operation, and where its problems are reported.
pub(super) struct Generated {
    pub at: String,
    pub route: RouteConfig,
}

/// The routes of `api` (`at`: its YAML path, `apis[i]`), or what is wrong.
pub(super) fn expand(
    api: &ApiConfig,
    at: &str,
    base_dir: &Path,
    formats: &BTreeMap<String, String>,
) -> Result<Vec<Generated>, Vec<(String, String)>> {
    let file = base_dir.join(&api.openapi);
    let doc = load(&file).map_err(|e| vec![(format!("{at}.openapi"), e)])?;
    let version = doc.get("openapi").and_then(Value::as_str).unwrap_or("");
    // `3.0.3`, `3.1.0`: a patch number, not `3.0.x` or `3.1`.
    let minor = |m: &str| version.strip_prefix(m).is_some_and(|patch| patch.starts_with(|c: char| c.is_ascii_digit()));
    let v30 = minor("3.0.");
    if !v30 && !minor("3.1.") {
        let e = match doc.get("swagger") {
            Some(_) => format!(
                "`{}` is a Swagger 2.0 document: OpenAPI 3.0.x or 3.1.x is read (convert it, e.g. with \
                 swagger2openapi)",
                file.display()
            ),
            None => match doc.get("openapi") {
                None => format!("`{}` has no `openapi` field (3.0.x or 3.1.x is read)", file.display()),
                // Unquoted in YAML, `2.0` is a number: shown as it was read.
                Some(v) => format!(
                    "`{}`: `openapi: {}` is not 3.0.x or 3.1.x (a version such as \"3.1.0\")",
                    file.display(),
                    v.as_str().map_or_else(|| v.to_string(), str::to_string)
                ),
            },
        };
        return Err(vec![(format!("{at}.openapi"), e)]);
    }
    let mut docs = Docs { dir: file.parent().map(Path::to_path_buf).unwrap_or_default(), files: BTreeMap::new() };
    let mut errors = Vec::new();
    let mut defs = Map::new();
    // Every schema under components, as `$defs` (references to them are rewritten to `#/$defs/<name>`).
    if let Some(schemas) = doc.pointer("/components/schemas").and_then(Value::as_object) {
        for (name, schema) in schemas {
            let mut s = schema.clone();
            if let Err(e) = docs.resolve(&doc, &mut s, 0, true) {
                errors.push((format!("{at}.openapi"), format!("components.schemas.{name}: {e}")));
                // Said once, here: its unresolved `$ref` would be said
                // again, wrongly, by each compile of the schemas using it.
                s = json!({});
            }
            if v30 {
                from_openapi_30(&mut s);
            }
            lenient_patterns(&mut s);
            defs.insert(name.clone(), s);
        }
    }
    // Discriminators once every component is known (one may sit on a base schema).
    let as_written = defs.clone();
    defs.values_mut().for_each(|d| discriminated(d, &as_written));
    let dialect = if v30 {
        None
    } else {
        dialect(&doc).map_err(|e| vec![(format!("{at}.openapi"), format!("`{}`: {e}", file.display()))])?
    };
    let schemas = Schemas {
        request_defs: defs_for(&defs, Direction::Request),
        response_defs: defs_for(&defs, Direction::Response),
        v30,
        dialect,
        file: api.openapi.clone(),
        formats: formats.clone(),
        components_faulty: std::cell::Cell::new(false),
    };
    // The component schemas, checked once: a fault in one is reported at
    // its place in the document, not again for each operation using it.
    if !schemas.request_defs.is_empty() {
        let all = schemas.in_dialect(json!({ "$defs": schemas.request_defs.clone() }));
        if let Err(Some(e)) = schemas.fault(&all, "") {
            errors.push((format!("{at}.openapi"), e));
        }
    }
    let base_path = match &api.base_path {
        Some(p) => p.trim_end_matches('/').to_string(),
        None => server_path(&doc),
    };
    if let Err(e) = misspelt(&doc, &DOCUMENT_FIELDS, "", &schemas.file) {
        errors.push((format!("{at}.openapi"), e));
        return Err(errors);
    }
    let mut routes = Vec::new();
    // 3.1 makes `paths` optional (a document of webhooks or components only): no operations.
    let no_paths = Map::new();
    let paths = match doc.get("paths").and_then(Value::as_object) {
        Some(paths) => paths,
        None if !v30 && doc.get("paths").is_none() => &no_paths,
        None => {
            errors.push((format!("{at}.openapi"), format!("`{}` has no `paths`", file.display())));
            return Err(errors);
        }
    };
    // operationId -> the first operation that has it ("GET /a").
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    for (path, item) in paths {
        let mut item = item.clone();
        if let Err(e) = docs.resolve(&doc, &mut item, 0, true) {
            errors.push((format!("{at}.openapi"), format!("paths.{path}: {e}")));
            continue;
        }
        if let Err(e) = misspelt(&item, &PATH_ITEM_FIELDS, &format!("/paths/{}", pointer_token(path)), &schemas.file) {
            errors.push((format!("{at}.openapi"), e));
            continue;
        }
        // Not a Path Item field (OpenAPI): read by nothing, it left the
        // operations it was meant for public. Refused, as a malformed one.
        if item.get("security").is_some() {
            errors.push((
                format!("{at}.openapi"),
                format!(
                    "`{}` at `/paths/{}/security`: `security` belongs on each operation or on the document, \
                     not on a path (OpenAPI reads it nowhere there)",
                    schemas.file,
                    pointer_token(path)
                ),
            ));
            continue;
        }
        let shared_params = item.get("parameters").and_then(Value::as_array).cloned().unwrap_or_default();
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let op_id = op.get("operationId").and_then(Value::as_str);
            let this = format!("{} {path}", method.to_ascii_uppercase());
            if let Some(id) = op_id
                && let Some(first) = ids.insert(id.to_string(), this.clone())
            {
                errors.push((
                    format!("{at}.openapi"),
                    format!(
                        "`{}`: operationId `{id}` is given to `{first}` and `{this}`; each operation needs its own \
                         (OpenAPI: unique among all operations)",
                        api.openapi
                    ),
                ));
                continue;
            }
            let name = match op_id {
                Some(id) => format!("{}.{id}", api.name),
                None => format!("{}.{} {path}", api.name, method.to_ascii_uppercase()),
            };
            let op_at = match op_id {
                Some(id) => format!("{at}.operations.{id}"),
                None => format!("{at}.openapi"),
            };
            let item_at = format!("/paths/{}", pointer_token(path));
            let op_at_doc = format!("{item_at}/{method}");
            match operation(api, &doc, op, (&shared_params, &item_at), &op_at_doc, &schemas) {
                Ok((validate, Security { providers: authenticate, scopes, any_scopes, anonymous })) => {
                    let extras = op_id.and_then(|id| api.operations.get(id)).cloned().unwrap_or_default();
                    let asks = !scopes.is_empty() || !any_scopes.is_empty();
                    let authorize = extras
                        .authorize
                        .clone()
                        .or_else(|| asks.then(|| AuthorizeConfig { scopes, any_scopes, ..Default::default() }));
                    let matcher = MatchConfig {
                        path: Some(format!("{base_path}{path}")),
                        methods: Some(vec![method.to_ascii_uppercase()]),
                        ..Default::default()
                    };
                    let mut route = proxy_route(name, matcher, &api.upstream);
                    route.rewrite = extras.rewrite;
                    route.retry = extras.retry;
                    let checks_responses = validate.responses.is_some();
                    route.validate = match api.validate.request {
                        RequestValidation::Enforce => Some(validate),
                        RequestValidation::Report => Some(ValidateConfig { mode: ValidateMode::Report, ..validate }),
                        // Requests unchecked; the responses still, when asked.
                        RequestValidation::Off if checks_responses => Some(ValidateConfig {
                            mode: ValidateMode::Report,
                            responses: validate.responses,
                            ..Default::default()
                        }),
                        RequestValidation::Off => None,
                    };
                    route.request_headers = extras.request_headers;
                    route.response_headers = extras.response_headers;
                    route.deprecated = extras.deprecated;
                    route.max_body_size = extras.max_body_size;
                    route.cors = extras.cors;
                    route.ip = extras.ip;
                    route.authenticate = authenticate;
                    route.anonymous = anonymous;
                    route.authorize = authorize;
                    route.rate_limit = extras.rate_limit;
                    route.quota = extras.quota;
                    route.concurrency = extras.concurrency;
                    routes.push(Generated { at: op_at, route });
                }
                Err(Some(e)) => errors.push((op_at, e)),
                // Reported once, at the component schema it is in.
                Err(None) => {}
            }
        }
    }
    for id in api.operations.keys() {
        if !routes.iter().any(|r| r.route.name == format!("{}.{id}", api.name)) {
            errors.push((format!("{at}.operations.{id}"), format!("the document has no operation `{id}`")));
        }
    }
    if let Some(docs_cfg) = &api.docs {
        let dir = file.parent().unwrap_or(base_dir);
        match super::api_docs::routes(api, &doc, docs_cfg, &base_path, dir) {
            Ok(served) => routes.extend(served.into_iter().map(|route| Generated { at: format!("{at}.docs"), route })),
            Err(e) => errors.push((format!("{at}.docs"), e)),
        }
    }
    if !api.strict {
        // Whatever the document does not declare goes to the upstream unchecked.
        let prefix = if base_path.is_empty() { "/".to_string() } else { base_path.clone() };
        let matcher = MatchConfig { path_prefix: Some(prefix), ..Default::default() };
        let route = proxy_route(format!("{}.undeclared", api.name), matcher, &api.upstream);
        routes.push(Generated { at: format!("{at}.strict"), route });
    }
    if errors.is_empty() { Ok(routes) } else { Err(errors) }
}

/// A route that proxies to `upstream`, with nothing else set.
pub(super) fn proxy_route(name: String, matcher: MatchConfig, upstream: &str) -> RouteConfig {
    RouteConfig {
        name,
        matcher,
        upstream: Some(upstream.to_string()),
        echo: None,
        static_response: None,
        redirect: None,
        aggregate: None,
        rewrite: None,
        retry: None,
        preserve_host: true,
        websocket: false,
        validate: None,
        request_headers: None,
        response_headers: None,
        deprecated: None,
        max_body_size: None,
        security_headers: None,
        cors: None,
        ip: None,
        authenticate: Vec::new(),
        anonymous: false,
        authorize: None,
        rate_limit: Vec::new(),
        quota: Vec::new(),
        concurrency: Vec::new(),
    }
}

/// What an operation's `security` asks of a caller.
struct Security {
    /// The providers of every scheme named (any one suffices).
    providers: Vec<String>,
    /// Scopes every caller needs (`authorize.scopes`).
    scopes: Vec<String>,
    /// Scopes of which a caller needs one (`authorize.any_scopes`).
    any_scopes: Vec<String>,
    /// An empty requirement (`{}`) is among them: no credential is needed.
    anonymous: bool,
}

/// One operation's checks, its providers and the scopes its security asks for.
/// Where the second of two parameters with one `name` and `in` is, if a
/// list has such (header names compared without case, as HTTP does).
/// What makes two parameters the same one: `name` and `in`, a header's
/// name in any case (header names are case-insensitive).
pub(super) fn param_key(p: &Value) -> (String, String) {
    let place = p.get("in").and_then(Value::as_str).unwrap_or("").to_string();
    let name = p.get("name").and_then(Value::as_str).unwrap_or("");
    let name = if place == "header" { name.to_ascii_lowercase() } else { name.to_string() };
    (name, place)
}

fn declared_twice(list: &[(&Value, String)]) -> Option<String> {
    let mut seen = std::collections::BTreeSet::new();
    list.iter().find(|(p, _)| p.get("name").is_some() && !seen.insert(param_key(p))).map(|(_, at)| at.clone())
}

/// A field of `object` that differs from one of `fields` only by case
/// (`Security`, `Schema`, `Parameters`): OpenAPI's names are
/// case-sensitive, and it was read as nothing (an API public, a body or a
/// parameter unchecked). `x-` extensions are the document's own.
fn misspelt(object: &Value, fields: &[&str], at: &str, file: &str) -> Result<(), String> {
    let Some(map) = object.as_object() else { return Ok(()) };
    for key in map.keys().filter(|k| !k.starts_with("x-") && !fields.contains(&k.as_str())) {
        if let Some(field) = fields.iter().find(|f| f.eq_ignore_ascii_case(key)) {
            return Err(format!(
                "`{file}` at `{at}`: `{key}` is not an OpenAPI field, `{field}` is (names are case-sensitive): as \
                 written it would be ignored"
            ));
        }
    }
    Ok(())
}

/// The OpenAPI Object's fixed fields (3.0 and 3.1).
const DOCUMENT_FIELDS: [&str; 10] = [
    "openapi",
    "info",
    "jsonSchemaDialect",
    "servers",
    "paths",
    "webhooks",
    "components",
    "security",
    "tags",
    "externalDocs",
];

/// A Path Item's fixed fields.
const PATH_ITEM_FIELDS: [&str; 13] = [
    "$ref",
    "summary",
    "description",
    "get",
    "put",
    "post",
    "delete",
    "options",
    "head",
    "patch",
    "trace",
    "servers",
    "parameters",
];

/// A Parameter's, a Request Body's and a Media Type's fixed fields.
const PARAMETER_FIELDS: [&str; 13] = [
    "name",
    "in",
    "description",
    "required",
    "deprecated",
    "allowEmptyValue",
    "style",
    "explode",
    "allowReserved",
    "schema",
    "example",
    "examples",
    "content",
];
const REQUEST_BODY_FIELDS: [&str; 3] = ["description", "content", "required"];
const MEDIA_TYPE_FIELDS: [&str; 4] = ["schema", "example", "examples", "encoding"];

/// An Operation Object's fixed fields (OpenAPI 3.0 and 3.1).
const OPERATION_FIELDS: [&str; 12] = [
    "tags",
    "summary",
    "description",
    "externalDocs",
    "operationId",
    "parameters",
    "requestBody",
    "responses",
    "callbacks",
    "deprecated",
    "security",
    "servers",
];

fn operation(
    api: &ApiConfig,
    doc: &Value,
    op: &Value,
    (shared_params, item_at): (&[Value], &str),
    op_at: &str,
    schemas: &Schemas,
) -> Result<(ValidateConfig, Security), Option<String>> {
    // Field names are case-sensitive: a `Security` or `RequestBody` was
    // read as nothing (the operation public, its body unchecked).
    misspelt(op, &OPERATION_FIELDS, op_at, &schemas.file).map_err(Some)?;
    let mut v = ValidateConfig {
        mode: ValidateMode::Enforce,
        content_types: Vec::new(),
        body: None,
        path: BTreeMap::new(),
        query: BTreeMap::new(),
        additional_query: api.additional_query,
        headers: BTreeMap::new(),
        cookies: BTreeMap::new(),
        json_limits: api.json_limits.clone(),
        responses: None,
    };
    if api.validate.response == ResponseValidation::Report {
        v.responses = Some(declared_responses(op, op_at, schemas)?);
    }
    // The operation's parameters override the path's with the same name and
    // place; each with where it is in the document.
    let mut params: Vec<(&Value, String)> = op
        .get("parameters")
        .and_then(Value::as_array)
        .map(|p| p.iter().enumerate().map(|(i, p)| (p, format!("{op_at}/parameters/{i}"))).collect())
        .unwrap_or_default();
    let shared_at: Vec<(&Value, String)> =
        shared_params.iter().enumerate().map(|(i, p)| (p, format!("{item_at}/parameters/{i}"))).collect();
    for list in [&params, &shared_at] {
        if let Some(twice) = declared_twice(list) {
            return Err(Some(format!(
                "`{}` at `{twice}`: a parameter declared twice in one list, with the same `name` and `in` (OpenAPI: \
                 the list must not hold duplicates; which one would be checked?)",
                schemas.file
            )));
        }
    }
    for (i, shared) in shared_params.iter().enumerate() {
        // (`X-Tenant` on the path and `x-tenant` on the operation are one
        // header: both were enforced, refusing what the operation allows.)
        let same = |(p, _): &(&Value, String)| param_key(p) == param_key(shared);
        if !params.iter().any(same) {
            params.push((shared, format!("{item_at}/parameters/{i}")));
        }
    }
    for (p, p_at) in params {
        misspelt(p, &PARAMETER_FIELDS, &p_at, &schemas.file).map_err(Some)?;
        for (media, m) in p.get("content").and_then(Value::as_object).into_iter().flatten() {
            misspelt(m, &MEDIA_TYPE_FIELDS, &format!("{p_at}/content/{}", pointer_token(media)), &schemas.file)
                .map_err(Some)?;
        }
        let name = p
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| Some(format!("`{}` at `{p_at}`: a parameter without a `name`", schemas.file)))?
            .to_string();
        let place = p.get("in").and_then(Value::as_str).unwrap_or("");
        // OpenAPI: such header parameters "SHALL be ignored" (the body's
        // media types, the responses' and `security` say these).
        if place == "header"
            && ["accept", "content-type", "authorization"].contains(&name.to_ascii_lowercase().as_str())
        {
            continue;
        }
        // `content` instead of `schema`: one media type, its schema; a JSON
        // one means the value is a JSON text to parse first.
        let content = p.get("content").and_then(Value::as_object).and_then(|c| c.iter().next());
        let (schema, schema_at) = match (p.get("schema"), content) {
            (Some(s), _) => (s.clone(), format!("{p_at}/schema")),
            (None, Some((media, c))) => (
                c.get("schema").cloned().unwrap_or_else(|| json!({})),
                format!("{p_at}/content/{}/schema", pointer_token(media)),
            ),
            (None, None) => (json!({}), p_at.clone()),
        };
        let mut schema = schemas.checked(schema, Direction::Request, &schema_at)?;
        let members =
            schema.as_object_mut().ok_or_else(|| Some(format!("parameter `{name}`: its schema is not an object")))?;
        // The parameter's `required` takes the member's place: an object
        // schema's own list of required properties moves into `allOf`.
        if let Some(list @ Value::Array(_)) = members.remove("required") {
            let all_of = members.entry("allOf").or_insert_with(|| json!([]));
            if let Some(all) = all_of.as_array_mut() {
                all.push(json!({ "required": list }));
            }
        }
        members.insert("required".into(), p.get("required").cloned().unwrap_or(Value::Bool(place == "path")));
        for key in ["style", "explode"] {
            if let Some(x) = p.get(key) {
                members.insert(key.into(), x.clone());
            }
        }
        if p.get("schema").is_none()
            && let Some((media, _)) = content
        {
            members.insert("content".into(), Value::String(media.clone()));
        }
        match place {
            "path" => v.path.insert(name, schema),
            "query" => v.query.insert(name, schema),
            "header" => v.headers.insert(name, schema),
            "cookie" => v.cookies.insert(name, schema),
            other => {
                return Err(Some(format!(
                    "`{}` at `{p_at}`: parameter `{name}`: `in: {other}` is not path, query, header or cookie",
                    schemas.file
                )));
            }
        };
    }
    if let Some(body) = op.get("requestBody") {
        misspelt(body, &REQUEST_BODY_FIELDS, &format!("{op_at}/requestBody"), &schemas.file).map_err(Some)?;
        let content = body.get("content").and_then(Value::as_object).ok_or_else(|| {
            Some(format!("`{}` at `{op_at}/requestBody`: a requestBody without `content`", schemas.file))
        })?;
        for (media, m) in content {
            let media_at = format!("{op_at}/requestBody/content/{}", pointer_token(media));
            misspelt(m, &MEDIA_TYPE_FIELDS, &media_at, &schemas.file).map_err(Some)?;
        }
        let json_first = content.iter().find(|(k, _)| is_json(&essence(k)));
        let form = content.iter().find(|(k, _)| essence(k) == "application/x-www-form-urlencoded");
        // A range (`application/*`, `*/*`, `text/*`) covers JSON bodies too: its schema is theirs.
        let range = content.iter().find(|(k, _)| is_json_range(&essence(k)));
        let chosen = json_first.or(form).or(range);
        // A body is checked against one schema (the chosen type's): a JSON
        // or form type with another schema is not accepted (415) rather
        // than checked against the wrong one (docs/validation.md).
        let checked = |k: &str| {
            let t = essence(k);
            is_json(&t) || t == "application/x-www-form-urlencoded" || is_json_range(&t)
        };
        let schema_of = |c: &Value| c.get("schema").cloned();
        // A media type key may carry parameters (`application/json; charset=utf-8`):
        // requests are matched on the type itself, as a Content-Type is.
        for (k, c) in content {
            if checked(k) && chosen.is_some_and(|(_, chosen)| schema_of(chosen) != schema_of(c)) {
                continue;
            }
            let t = essence(k);
            if !v.content_types.contains(&t) {
                v.content_types.push(t);
            }
        }
        let required = body.get("required").and_then(Value::as_bool).unwrap_or(false);
        let schema = match chosen {
            Some((media, c)) => match c.get("schema") {
                Some(s) => {
                    let at = format!("{op_at}/requestBody/content/{}/schema", pointer_token(media));
                    Some(schemas.checked(s.clone(), Direction::Request, &at)?)
                }
                None => None,
            },
            None => None,
        };
        v.body = Some(BodyConfig { schema_file: None, schema: Some(schema.unwrap_or_else(|| json!({}))), required });
    }
    // Security: any one requirement suffices (OR); the providers of every
    // scheme named. The schemes of one requirement must all pass (AND),
    // which one credential per request cannot do: refused, unless they
    // are one provider.
    let (security, security_at) = match op.get("security") {
        Some(s) => (Some(s), format!("{op_at}/security")),
        None => (doc.get("security"), "/security".to_string()),
    };
    // A `security` of another shape is refused, not read as none (it made
    // the operation public, or dropped its scopes: looser than written).
    let shape = |at: &str, what: &str| Err(Some(format!("`{}` at `{at}`: {what}", schemas.file)));
    let requirements = match security {
        None => None,
        Some(Value::Array(list)) => Some(list),
        Some(_) => {
            return shape(
                &security_at,
                "`security` is a list of requirements (`- oauth: [read]`; `[]` for a public operation)",
            );
        }
    };
    let mut providers = Vec::new();
    let mut scopes = Vec::new();
    // Each requirement's scopes, to tell an OR of single scopes from the rest.
    let mut alternatives: Vec<Vec<String>> = Vec::new();
    let mut anonymous = false;
    for (r, req) in requirements.into_iter().flatten().enumerate() {
        let Some(req) = req.as_object() else {
            return shape(
                &format!("{security_at}/{r}"),
                "a security requirement is a map of scheme names to their scopes (`oauth: [read]`, `api_key: []`)",
            );
        };
        if req.is_empty() {
            anonymous = true;
        }
        let mut these: Vec<&String> = Vec::new();
        let mut wanted_here: Vec<String> = Vec::new();
        for (scheme, wanted) in req {
            let scheme_at = format!("{security_at}/{r}/{}", pointer_token(scheme));
            let Some(wanted) = wanted.as_array() else {
                return shape(&scheme_at, "a scheme's scopes are a list of strings (`[]` for none)");
            };
            if let Some(i) = wanted.iter().position(|w| !w.is_string()) {
                return shape(&format!("{scheme_at}/{i}"), "a scope is a string");
            }
            let provider = api.security.get(scheme).ok_or_else(|| {
                Some(if doc.pointer(&format!("/components/securitySchemes/{}", pointer_token(scheme))).is_none() {
                    format!(
                        "security scheme `{scheme}` is not declared in the document's `components.securitySchemes` \
                         (map it anyway with `security: {{ {scheme}: <provider> }}`)"
                    )
                } else {
                    format!(
                        "security scheme `{scheme}` is not mapped to an auth provider (add `security: {{ {scheme}: <provider> }}`)"
                    )
                })
            })?;
            if !these.contains(&provider) {
                these.push(provider);
            }
            if !providers.contains(provider) {
                providers.push(provider.clone());
            }
            for (i, s) in wanted.iter().enumerate().filter_map(|(i, v)| Some((i, v.as_str()?))) {
                // Held to the rule the config's own scopes are (a scope with a
                // space is two to every service), and said of the document.
                if let Some(why) = scope_fault(s) {
                    return shape(&format!("{scheme_at}/{i}"), &why);
                }
                if !scopes.iter().any(|x: &String| x == s) {
                    scopes.push(s.to_string());
                }
                if !wanted_here.iter().any(|x| x == s) {
                    wanted_here.push(s.to_string());
                }
            }
        }
        if these.len() > 1 {
            let names: Vec<&str> = req.keys().map(String::as_str).collect();
            return Err(Some(format!(
                "a security requirement names several schemes ({}), which must all pass; the gateway checks one \
                 credential per request, so it cannot enforce both: list them as alternatives (`- {}: []` each) \
                 if either will do, or map them to one provider",
                names.join(" and "),
                names.join(": []` and `- ")
            )));
        }
        if !req.is_empty() {
            alternatives.push(wanted_here);
        }
    }
    let mut any_scopes = Vec::new();
    if anonymous {
        // `{}` is always met: no scope can be asked of anyone.
        scopes.clear();
    } else if alternatives.len() > 1 && alternatives.windows(2).any(|w| w[0] != w[1]) {
        // Alternatives that differ in their scopes. One scope each, with one
        // provider: the caller needs one of them (`any_scopes`). Otherwise
        // every scope listed stays required: stricter than the document
        // (docs/validation.md), never looser.
        if providers.len() == 1 && alternatives.iter().all(|a| a.len() == 1) {
            any_scopes = std::mem::take(&mut scopes);
        }
    }
    // Only `{}` (`security: [{}]`): public.
    let anonymous = anonymous && !providers.is_empty();
    Ok((v, Security { providers, scopes, any_scopes, anonymous }))
}

/// An operation's `responses`: status key -> media type -> schema (`null`
/// when none is given), converted to JSON Schema 2020-12.
fn declared_responses(
    op: &Value,
    op_at: &str,
    schemas: &Schemas,
) -> Result<BTreeMap<String, BTreeMap<String, Value>>, Option<String>> {
    let mut out = BTreeMap::new();
    let responses = op
        .get("responses")
        .and_then(Value::as_object)
        .ok_or_else(|| Some(format!("`{}` at `{op_at}`: an operation without `responses`", schemas.file)))?;
    for (status, response) in responses {
        let mut media = BTreeMap::new();
        for (m, content) in response.get("content").and_then(Value::as_object).into_iter().flatten() {
            let schema = match content.get("schema") {
                Some(s) => {
                    let at = format!("{op_at}/responses/{}/content/{}/schema", pointer_token(status), pointer_token(m));
                    Some(schemas.checked(s.clone(), Direction::Response, &at)?)
                }
                None => None,
            };
            media.insert(m.clone(), schema.unwrap_or(Value::Null));
        }
        out.insert(status.clone(), media);
    }
    Ok(out)
}

/// How the document's schemas become the validator's.
struct Schemas {
    /// The component schemas, `required` as requests see them.
    request_defs: Map<String, Value>,
    /// The same, as responses see them.
    response_defs: Map<String, Value>,
    v30: bool,
    /// A 3.1 document's `jsonSchemaDialect`, when not 2020-12.
    dialect: Option<&'static str>,
    /// The document as the config names it, for errors.
    file: String,
    /// The config's named formats (a schema using one compiles).
    formats: BTreeMap<String, String>,
    /// A component schema's fault was reported: faults inside `$defs`
    /// are not reported again for each operation.
    components_faulty: std::cell::Cell<bool>,
}

impl Schemas {
    /// One schema of the document (its `$ref`s resolved), ready to compile
    /// for `direction`.
    fn prepare(&self, mut schema: Value, direction: Direction) -> Value {
        if self.v30 {
            from_openapi_30(&mut schema);
        }
        lenient_patterns(&mut schema);
        discriminated(&mut schema, &self.request_defs);
        let defs = match direction {
            Direction::Request => &self.request_defs,
            Direction::Response => &self.response_defs,
        };
        lift_required(&mut schema, direction, defs);
        self.in_dialect(with_defs(schema, defs))
    }

    /// A schema root in the document's dialect (see `openapi_schema::in_dialect`).
    fn in_dialect(&self, mut schema: Value) -> Value {
        in_dialect(&mut schema, self.dialect);
        if !self.v30 && !is_draft_4(&schema) {
            // 3.1 documents migrated from 3.0 keep draft 4's boolean bounds.
            numeric_exclusive_bounds(&mut schema);
        }
        schema
    }

    /// [`Schemas::prepare`], then compiled once to find what is wrong
    /// with it where the document has it (`at`: the schema's JSON pointer
    /// in the document). `Err(None)`: the fault is in a component schema,
    /// reported already.
    fn checked(&self, schema: Value, direction: Direction, at: &str) -> Result<Value, Option<String>> {
        let schema = self.prepare(schema, direction);
        self.fault(&schema, at)?;
        Ok(schema)
    }

    /// What is wrong with a prepared schema, as `file at pointer: reason`.
    fn fault(&self, schema: &Value, at: &str) -> Result<(), Option<String>> {
        let Some((inner, reason)) = crate::policy::validate::schema_fault(schema, &self.formats) else {
            return Ok(());
        };
        let pointer = match inner.strip_prefix("/$defs/") {
            Some(rest) => {
                if self.components_faulty.replace(true) {
                    return Err(None);
                }
                format!("/components/schemas/{rest}")
            }
            None => format!("{at}{inner}"),
        };
        Err(Some(format!("`{}` at `{pointer}`: {reason}", self.file)))
    }
}

/// A schema with the component schemas it reaches (through `$ref`s,
/// transitively) beside it as `$defs`: only those, so that an operation
/// of a document with a thousand components (GitHub's has 969) carries,
/// and compiles, the few it uses.
fn with_defs(mut schema: Value, defs: &Map<String, Value>) -> Value {
    let mut reached = std::collections::BTreeSet::new();
    let mut queue = Vec::new();
    refs_to_defs(&schema, &mut queue);
    while let Some(name) = queue.pop() {
        if let Some(def) = defs.get(&name)
            && reached.insert(name)
        {
            refs_to_defs(def, &mut queue);
        }
    }
    if !reached.is_empty()
        && let Some(m) = schema.as_object_mut()
    {
        let used: Map<String, Value> =
            reached.into_iter().filter_map(|n| Some((n.clone(), defs.get(&n)?.clone()))).collect();
        m.insert("$defs".into(), Value::Object(used));
    }
    schema
}

/// The component names `v`'s `$ref: "#/$defs/<name>…"` point into.
fn refs_to_defs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(name) = m.get("$ref").and_then(Value::as_str).and_then(defs_name) {
                out.push(name);
            }
            m.values().for_each(|x| refs_to_defs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| refs_to_defs(x, out)),
        _ => {}
    }
}

/// The path of `servers[0].url` (`https://api.example.com/v3` -> `/v3`).
/// Server variables take their `default` (`https://{host}/{basePath}`
/// with `basePath: { default: v2 }` -> `/v2`).
pub(super) fn server_path(doc: &Value) -> String {
    let mut url = doc.pointer("/servers/0/url").and_then(Value::as_str).unwrap_or("").to_string();
    for (name, var) in doc.pointer("/servers/0/variables").and_then(Value::as_object).into_iter().flatten() {
        if let Some(default) = var.get("default").and_then(Value::as_str) {
            url = url.replace(&format!("{{{name}}}"), default);
        }
    }
    // The URL's path (RFC 3986 §3): after `scheme://authority`, or a
    // network-path reference's `//authority` (it was taken for a path, and
    // served as the document's URL: the internal host given away), and
    // before a `?` or `#` (with them no operation could ever match).
    let url = url.as_str();
    let path = match url.split_once("://").map(|(_, rest)| rest).or_else(|| url.strip_prefix("//")) {
        Some(rest) => &rest[rest.find(['/', '?', '#']).unwrap_or(rest.len())..],
        None => url,
    };
    let path = path.split(['?', '#']).next().unwrap_or_default();
    path.trim_end_matches('/').to_string()
}

fn load(path: &Path) -> Result<Value, String> {
    crate::config::load_document(path)
}

/// The document and the sibling files its `$ref`s name.
struct Docs {
    /// The document's folder: no file outside it is read.
    dir: PathBuf,
    /// Shared, not cloned: a `$ref` into a sibling file resolves against it.
    files: BTreeMap<PathBuf, std::rc::Rc<Value>>,
}

/// The document a `$ref` is written in, and its folder (a relative file
/// reference is read from there, as JSON Reference resolves it against
/// the referring document).
#[derive(Clone, Copy)]
struct Src<'a> {
    doc: &'a Value,
    dir: &'a Path,
}

/// How deep `$ref`s may chain (a cycle outside schemas ends here).
const MAX_REF_DEPTH: usize = 32;

impl Docs {
    /// Resolves `$ref`s in `v` (from the API's own document) as
    /// [`Docs::resolve_in`] does.
    fn resolve(&mut self, doc: &Value, v: &mut Value, depth: usize, main: bool) -> Result<(), String> {
        let dir = self.dir.clone();
        self.resolve_in(Src { doc, dir: &dir }, v, depth, main)
    }

    /// Resolves `$ref`s in `v` (from `src`): references to component
    /// schemas become `#/$defs/<name>`; others are replaced by what they
    /// point to.
    /// `main`: `src` is the API's own document, whose component schemas
    /// stay references (to `$defs`, so recursive schemas work); in a
    /// sibling file they are that file's, and are put in place.
    fn resolve_in(&mut self, src: Src<'_>, v: &mut Value, depth: usize, main: bool) -> Result<(), String> {
        if depth > MAX_REF_DEPTH {
            return Err("`$ref`s nest too deep (a cycle?)".into());
        }
        match v {
            // A schema with its own `$id` is a resource of its own: its
            // `#/$defs/…` references are to its own `$defs`, for the
            // validator to follow (JSON Schema 2020-12, which 3.1 uses).
            Value::Object(m) if m.get("$id").is_some_and(Value::is_string) && m.contains_key("$defs") => {
                m.values_mut().try_for_each(|x| self.resolve_outside_own_defs(src, x, depth, main))
            }
            Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(Value::as_str).map(str::to_string) {
                    if main && let Some(name) = r.strip_prefix("#/components/schemas/") {
                        m.insert("$ref".into(), Value::String(format!("#/$defs/{name}")));
                        return Ok(());
                    }
                    let (mut target, file) = self.target(src, &r)?;
                    // A target in another file resolves against that file.
                    // (Never a copy of the document: GitHub's is 13 MB with thousands of `$ref`s.)
                    match file {
                        None => self.resolve_in(src, &mut target, depth + 1, main)?,
                        Some(path) => {
                            let owner = self.files.get(&path).cloned().unwrap_or_default();
                            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
                            self.resolve_in(Src { doc: &owner, dir: &dir }, &mut target, depth + 1, false)?;
                        }
                    }
                    *v = target;
                    return Ok(());
                }
                for x in m.values_mut() {
                    self.resolve_in(src, x, depth, main)?;
                }
                Ok(())
            }
            Value::Array(a) => a.iter_mut().try_for_each(|x| self.resolve_in(src, x, depth, main)),
            _ => Ok(()),
        }
    }

    /// [`Docs::resolve_in`] inside a schema resource: its own `#/$defs/…`
    /// references stay as they are.
    fn resolve_outside_own_defs(
        &mut self,
        src: Src<'_>,
        v: &mut Value,
        depth: usize,
        main: bool,
    ) -> Result<(), String> {
        match v {
            Value::Object(m) if m.get("$ref").and_then(Value::as_str).is_some_and(|r| r.starts_with("#/$defs/")) => {
                Ok(())
            }
            Value::Object(m) if !m.contains_key("$ref") => {
                m.values_mut().try_for_each(|x| self.resolve_outside_own_defs(src, x, depth, main))
            }
            Value::Array(a) => a.iter_mut().try_for_each(|x| self.resolve_outside_own_defs(src, x, depth, main)),
            _ => self.resolve_in(src, v, depth, main),
        }
    }

    /// What `r` (written in `src`) names, and the file it is in when that
    /// is another file.
    fn target(&mut self, src: Src<'_>, r: &str) -> Result<(Value, Option<PathBuf>), String> {
        if r.contains("://") || r.starts_with("//") {
            return Err(format!("`$ref: {r}`: remote references are refused (the gateway never fetches documents)"));
        }
        let (file, pointer) = split_ref(r);
        let (source, path) = if file.is_empty() {
            (src.doc, None)
        } else {
            let path = super::api_bundle::normalize(&src.dir.join(file));
            // The document's folder and those under it only: the served
            // document bundles every file it names, whole, and a path
            // out of the folder would publish what lies there.
            if Path::new(file).is_absolute() || !super::api_bundle::inside(&self.dir, &path) {
                return Err(format!(
                    "`$ref: {r}` names a file outside the document's folder: put it beside the document \
                     or in a folder under it (the file is served with the document)"
                ));
            }
            if !self.files.contains_key(&path) {
                let loaded = load(&path)?;
                self.files.insert(path.clone(), std::rc::Rc::new(loaded));
            }
            (&*self.files[&path], Some(path))
        };
        let found = if pointer.is_empty() { Some(source) } else { source.pointer(pointer) };
        let found = found.cloned().ok_or_else(|| format!("`$ref: {r}` points to nothing"))?;
        Ok((found, path))
    }
}

/// `file.yaml#/a/b` -> (`file.yaml`, `/a/b`); `#/a` -> (``, `/a`).
fn split_ref(r: &str) -> (&str, &str) {
    match r.split_once('#') {
        Some((file, pointer)) => (file, pointer),
        None => (r, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_path_takes_server_variables_defaults() {
        let doc = json!({ "servers": [ {
            "url": "https://{name}.example.com:{port}/{basePath}/api",
            "variables": { "name": { "default": "demo" }, "port": { "default": "443" }, "basePath": { "default": "v2" } }
        } ] });
        assert_eq!(server_path(&doc), "/v2/api");
        assert_eq!(server_path(&json!({ "servers": [ { "url": "/v1/" } ] })), "/v1");
        assert_eq!(server_path(&json!({})), "");
        for (url, path) in [
            ("//internal.corp.example/api", "/api"),
            ("https://internal.corp.example/shop?tenant=a", "/shop"),
            ("https://h.example?x=1", ""),
            ("/v3#top", "/v3"),
        ] {
            assert_eq!(server_path(&json!({ "servers": [ { "url": url } ] })), path, "{url}");
        }
    }

    #[test]
    fn an_operation_carries_only_the_component_schemas_it_reaches() {
        let defs: Map<String, Value> = serde_json::from_value(json!({
            "Pet": { "properties": { "owner": { "$ref": "#/$defs/Owner" }, "tags": { "$ref": "#/$defs/a~1b" } } },
            "Owner": { "properties": { "pets": { "items": { "$ref": "#/$defs/Pet" } } } },
            "a/b": { "type": "string" },
            "Unrelated": { "type": "integer" }
        }))
        .unwrap();
        let schema = with_defs(json!({ "$ref": "#/$defs/Pet" }), &defs);
        let carried: Vec<&String> = schema["$defs"].as_object().unwrap().keys().collect();
        assert_eq!(carried, ["Owner", "Pet", "a/b"]);
        assert_eq!(with_defs(json!({ "type": "string" }), &defs), json!({ "type": "string" }));
    }
}
