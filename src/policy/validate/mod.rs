//! Input validation (the `validate` phase): a route's query parameters,
//! headers and body are checked against JSON Schemas before the request
//! goes on, and a JSON body first against size limits
//! (`json_limits`), before it is parsed. A refused request gets 400 (415
//! for a media type, 413 for size) with every problem found, as an RFC 9457
//! problem with an `errors` array; the upstream never sees it.
//!
//! Schemas are compiled when the config loads (the `jsonschema` crate,
//! offline: a remote `$ref` is a config error), never per request.

mod case_members;
pub mod config;
mod date_time;
mod deep;
mod email;
mod form_nesting;
pub mod json_limits;
mod params;
mod ref_cycle;
mod report_budget;
pub mod response;
mod shortcut;
mod tape;

pub use params::query_overrides_method;
pub use ref_cycle::defs_name;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderName};
use http::{StatusCode, request};
use http_body_util::BodyExt;
use serde_json::Value;

use crate::config::FieldErrors;
use crate::http::Answer;
use crate::http::buffer_budget::{BufferBudget, Held, OverBudget};
use crate::http::problem;
use crate::http::request_body::{BodyError, RequestBody};
use crate::observe::metrics::{Counter, Registry};
use crate::policy::compile::CompileCtx;
use crate::policy::ctx::{Outcome, RequestCtx};
use config::ValidateConfig;
pub use json_limits::JsonLimits;
use params::Param;

/// At most this many problems are listed in one answer…
const MAX_ERRORS: usize = 20;
/// …in at most this many bytes of `errors`.
const MAX_ERRORS_BYTES: usize = 8 << 10;

/// One problem with a request, as the answer lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `body`, `query`, `header`, `path` or `cookie`.
    pub place: &'static str,
    /// A JSON pointer into the body, or the parameter's name.
    pub pointer: String,
    pub detail: String,
}

/// A route's compiled checks.
pub struct Compiled {
    /// Accepted media types of a body (lowercase; `*` wildcards in the subtype).
    content_types: Vec<String>,
    body: Option<BodyRule>,
    path: Vec<Param>,
    query: Vec<Param>,
    deny_other_query: bool,
    headers: Vec<(HeaderName, Param)>,
    cookies: Vec<Param>,
    limits: JsonLimits,
    /// `mode: report`: problems are logged and counted, never answered.
    report: bool,
    /// The route's name, for report lines.
    route: Arc<str>,
    /// `portcullis_validation_failures_total{route,in}` by place.
    failures: BTreeMap<&'static str, Arc<Counter>>,
    /// The declared responses, checked in report mode.
    responses: Option<Arc<response::ResponseRules>>,
    /// What a body read whole counts against (`max_buffered`).
    buffers: BufferBudget,
    /// How long reading a body whole may take in all: the route's
    /// upstream's `timeouts.request` (60 s without one), which bounds a
    /// streamed upload the same way. `body_read_timeout` bounds only the
    /// pauses: a body trickled a byte per pause held its share of
    /// `max_buffered` for as long as the client liked, and forty of them
    /// shut every validated route out with 503s.
    read_deadline: std::time::Duration,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validate").field("content_types", &self.content_types).finish_non_exhaustive()
    }
}

struct BodyRule {
    /// The stack a level of a document takes against the schema.
    room: deep::Room,
    /// For JSON bodies of a shape the schema names, proved in one pass
    /// (`shortcut/`); `None` if the schema uses what it does not know.
    shortcut: Option<shortcut::Shortcut>,
    /// For JSON bodies, read into a tape (`tape.rs`).
    json_schema: jsonschema::Validator<tape::Tape>,
    /// How much listing a failing body's errors may cost (`None`: linear).
    report_budget: Option<report_budget::ReportBudget>,
    /// For form bodies, read into a `serde_json::Value`.
    schema: jsonschema::Validator,
    /// The schema's `properties`, for reading a form's values as their types.
    properties: serde_json::Map<String, Value>,
    required: bool,
    /// The schema has a pattern that needs backtracking (look-around,
    /// back-references): each value it judges may take
    /// `PATTERN_BACKTRACK_LIMIT` steps, so a body's strings are counted first.
    backtracking: bool,
    /// The schema says only "bytes" (`says_only_bytes`): the body is not read.
    bytes_only: bool,
    /// JSON members named as declared ones in another case (`None`: the
    /// schema declares no property).
    case_guard: Option<case_members::CaseGuard>,
}

/// A schema that says nothing a gateway could check of a body's bytes:
/// `{}`, or a string of bytes (`type: string, format: binary`, OpenAPI's
/// way to declare an upload), with notes.
pub(crate) fn says_only_bytes(schema: &Value) -> bool {
    let Some(map) = schema.as_object() else { return false };
    !map.is_empty()
        && map.iter().all(|(k, v)| match k.as_str() {
            "type" => v == "string",
            "format" => matches!(v.as_str(), Some("binary" | "byte" | "base64")),
            "contentMediaType" | "contentEncoding" => true,
            "description" | "title" | "example" | "examples" | "nullable" => true,
            k => k.starts_with("x-"),
        })
        && map.get("type").is_some_and(|t| t == "string")
}

/// A JSON Schema from the config, compiled with the config's named formats.
pub(crate) fn compile_schema(
    schema: &Value,
    formats: &BTreeMap<String, String>,
) -> Result<jsonschema::Validator, String> {
    compile_schema_for(schema, formats)
}

/// [`compile_schema`] for instances in the representation `F`.
fn compile_schema_for<F: jsonschema::json::Json>(
    schema: &Value,
    formats: &BTreeMap<String, String>,
) -> Result<jsonschema::Validator<F>, String> {
    build::<F>(schema, formats)
        .map_err(|(at, reason)| if at.is_empty() { reason } else { format!("{reason} (at {at})") })
}

/// Why `schema` does not compile: the JSON pointer of the fault inside it
/// (empty: the schema as a whole) and the reason; `None` if it compiles.
pub(crate) fn schema_fault(schema: &Value, formats: &BTreeMap<String, String>) -> Option<(String, String)> {
    build::<jsonschema::json::SerdeJson>(schema, formats).err()
}

/// How many backtracking steps a `pattern` that needs them (backreferences,
/// look-around) may take on one value: the library's default of a million
/// took ~75 ms of CPU for a 32-byte string against `^(a|aa)+\1$`, a cheap
/// way to burn the gateway's CPU. Past the limit the value is refused.
const PATTERN_BACKTRACK_LIMIT: usize = 10_000;

/// The most strings (keys and values, counted from the body's quotes, or a
/// form's fields) a body may hold on a route whose schema has a pattern
/// that backtracks: each may take `PATTERN_BACKTRACK_LIMIT` steps, and an
/// array of 10,000 such strings took ~4 s of CPU and stalled every other
/// request on the worker. Here a body costs at most ~10 M steps.
const MAX_BACKTRACKED_STRINGS: usize = 1024;

/// The `"` of a JSON text that are not escaped (`\"` inside a string):
/// twice its strings, keys included.
fn unescaped_quotes(bytes: &[u8]) -> usize {
    let mut count = 0;
    let mut backslashes = 0usize;
    for &b in bytes {
        match b {
            b'\\' => backslashes += 1,
            b'"' if backslashes.is_multiple_of(2) => {
                count += 1;
                backslashes = 0;
            }
            _ => backslashes = 0,
        }
    }
    count
}

/// Whether a `pattern` (or `patternProperties` name) in `schema` needs
/// the backtracking engine: look-around, a back-reference or a possessive
/// quantifier (the others run on the linear `regex` engine). An escaped
/// `\++` is taken for one too: counting strings costs nothing more.
fn backtracking_pattern(schema: &Value) -> bool {
    let backtracks = |p: &str| {
        ["(?=", "(?!", "(?<=", "(?<!", "\\k<", "*+", "++", "?+", "}+"].iter().any(|f| p.contains(f))
            || p.as_bytes().windows(2).any(|w| w[0] == b'\\' && (b'1'..=b'9').contains(&w[1]))
    };
    match schema {
        Value::Object(map) => map.iter().any(|(k, v)| match (k.as_str(), v) {
            ("pattern", Value::String(p)) => backtracks(p),
            ("patternProperties", Value::Object(names)) => {
                names.keys().any(|p| backtracks(p)) || names.values().any(backtracking_pattern)
            }
            _ => backtracking_pattern(v),
        }),
        Value::Array(items) => items.iter().any(backtracking_pattern),
        _ => false,
    }
}

fn build<F: jsonschema::json::Json>(
    schema: &Value,
    formats: &BTreeMap<String, String>,
) -> Result<jsonschema::Validator<F>, (String, String)> {
    let whole = |reason: String| (String::new(), reason);
    if let Some((at, chain)) = ref_cycle::find(schema) {
        return Err((
            at,
            format!("`$ref` goes round without a constraint on the way ({chain}): it would accept anything"),
        ));
    }
    let mut schema = schema.clone();
    openapi_formats(&mut schema);
    let mut options = jsonschema::options_for::<F>()
        .should_validate_formats(true)
        .with_pattern_options(jsonschema::PatternOptions::fancy_regex().backtrack_limit(PATTERN_BACKTRACK_LIMIT));
    if schema.get("$schema").is_none() {
        let draft = jsonschema::Draft::Draft202012;
        options = options.with_draft(draft);
        if !formats.contains_key("email") {
            // The same answers as the built-in `email`, plain addresses faster (`email.rs`).
            options = options.with_format("email", email::format(draft).map_err(whole)?);
        }
    }
    if !formats.contains_key("byte") {
        // OpenAPI's `byte`: base64 (RFC 4648 §4), padded.
        options = options.with_format("byte", |s: &str| {
            let b = s.as_bytes();
            let body = b.iter().rposition(|&c| c != b'=').map_or(0, |i| i + 1);
            b.len().is_multiple_of(4)
                && b.len() - body <= 2
                && b[..body].iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/'))
        });
    }
    for (name, pattern) in formats {
        // A bad pattern is the format's fault, said at `formats.<name>` (plan).
        let Ok(re) = regex::Regex::new(pattern) else { continue };
        options = options.with_format(name.clone(), move |s: &str| re.is_match(s));
    }
    options.build(&schema).map_err(|e| {
        let reason = match e.kind() {
            // The library's words name its cargo features; say what to do instead.
            jsonschema::error::ValidationErrorKind::Referencing(jsonschema::ReferencingError::Unretrievable {
                uri,
                ..
            }) => format!(
                "`$ref` to `{uri}`: a schema is read on its own (nothing fetched, no other file): \
                 put what it names under this schema's `$defs` and refer to `#/$defs/…`"
            ),
            jsonschema::error::ValidationErrorKind::Referencing(jsonschema::ReferencingError::PointerToNowhere {
                pointer,
            }) => match pointer.strip_prefix("/$defs/") {
                // An OpenAPI document's components are gathered as `$defs`.
                Some(_) => format!(
                    "`$ref: #{pointer}` names nothing here (in an OpenAPI document: no `#/components/schemas/{}`)",
                    &pointer["/$defs/".len()..]
                ),
                None => format!("`$ref: #{pointer}` names nothing in the schema"),
            },
            _ => e.to_string(),
        };
        (e.instance_path().as_str().to_string(), reason)
    })
}

/// OpenAPI's `int32`, `int64` and `float` formats as the ranges they
/// stand for (JSON Schema's format checks only apply to strings).
fn openapi_formats(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.get("format").and_then(Value::as_str) == Some("float") {
                let max = f64::from(f32::MAX);
                map.entry("minimum").or_insert((-max).into());
                map.entry("maximum").or_insert(max.into());
            }
            let range = match map.get("format").and_then(Value::as_str) {
                Some("int32") => Some((i64::from(i32::MIN), i64::from(i32::MAX))),
                Some("int64") => Some((i64::MIN, i64::MAX)),
                _ => None,
            };
            if let Some((min, max)) = range {
                if min == i64::MIN {
                    // A JSON integer below `i64::MIN` is read as a float, and
                    // floats that close to -2^63 cannot tell -2^63 from
                    // -2^63 - 1000: `minimum: i64::MIN` let them through (to a
                    // service whose `long` they overflow). So -2^63 itself
                    // is excluded with them.
                    if !map.contains_key("minimum") && !map.contains_key("exclusiveMinimum") {
                        map.insert("exclusiveMinimum".into(), i64::MIN.into());
                    }
                } else {
                    map.entry("minimum").or_insert(min.into());
                }
                map.entry("maximum").or_insert(max.into());
            }
            map.values_mut().for_each(openapi_formats);
        }
        Value::Array(items) => items.iter_mut().for_each(openapi_formats),
        _ => {}
    }
}

impl Compiled {
    pub fn compile(cfg: &ValidateConfig, cx: &mut CompileCtx<'_>) -> Result<Compiled, FieldErrors> {
        let mut errors = FieldErrors::new();
        let formats = &cx.loaded.config.formats;
        let body = match &cfg.body {
            None => None,
            Some(b) => {
                let schema = match (&b.schema_file, &b.schema) {
                    (Some(file), None) => crate::config::load_document(&cx.loaded.resolve_file(file))
                        .map_err(|e| ("body.schema_file", e))
                        .map(|s| (s, Some(file))),
                    (None, Some(s)) => Ok((s.clone(), None)),
                    _ => Err(("body", "exactly one of `schema_file` or `schema`".to_string())),
                };
                let compiled = schema.and_then(|(s, file)| {
                    // A fault inside a schema file names the file.
                    let in_file = |e: String| match file {
                        Some(f) => ("body.schema_file", format!("`{f}`: {e}")),
                        None => ("body", e),
                    };
                    let properties = params::form_properties(&s);
                    let json = compile_schema_for(&s, formats);
                    json.and_then(|json| compile_schema(&s, formats).map(|form| (json, form, properties)))
                        .map(|(json, form, properties)| {
                            let shortcut = shortcut::Shortcut::compile(&s, formats)
                                .inspect(|_| tracing::debug!(route = %cx.name, "validate: bodies of the declared shape are checked in one pass"))
                                .inspect_err(|why| {
                                    tracing::debug!(route = %cx.name, "validate: the body schema uses {why}: every body is checked the full way");
                                })
                                .ok();
                            let backtracking = backtracking_pattern(&s);
                            let extras = (report_budget::ReportBudget::of(&s), backtracking, says_only_bytes(&s), deep::Room::of(&s));
                            (json, form, properties, shortcut, extras, case_members::CaseGuard::of(&s))
                        })
                        .map_err(in_file)
                });
                match compiled {
                    Ok((
                        json_schema,
                        schema,
                        properties,
                        shortcut,
                        (report_budget, backtracking, bytes_only, room),
                        case_guard,
                    )) => Some(BodyRule {
                        room,
                        shortcut,
                        json_schema,
                        report_budget,
                        schema,
                        backtracking,
                        bytes_only,
                        properties,
                        required: b.required,
                        case_guard,
                    }),
                    Err((at, e)) => {
                        errors.add(at, e);
                        None
                    }
                }
            }
        };
        let compile_params = |place: &str, params: &BTreeMap<String, Value>, errors: &mut FieldErrors| {
            let mut out = Vec::new();
            for (name, schema) in params {
                match Param::compile(place, name, schema, formats) {
                    Ok(p) => out.push(p),
                    Err(e) => errors.add(format!("{place}.{name}"), e),
                }
            }
            out
        };
        let path = compile_params("path", &cfg.path, &mut errors);
        let query = compile_params("query", &cfg.query, &mut errors);
        let cookies = compile_params("cookie", &cfg.cookies, &mut errors);
        let mut headers = Vec::new();
        for (name, schema) in &cfg.headers {
            let Ok(header) = HeaderName::try_from(name.as_str()) else {
                errors.add(format!("headers.{name}"), format!("`{name}` is not a header name"));
                continue;
            };
            match Param::compile("header", name, schema, formats) {
                // Required, it could never be sent: every request refused.
                // Optional (a third-party document's), it checks nothing: left out.
                Ok(p) if crate::wire::admit::readable_request_header(name).is_err() => {
                    if p.required {
                        let e = crate::wire::admit::readable_request_header(name).unwrap_err();
                        errors.add(format!("headers.{name}"), format!("{e}; as required, every request is refused"));
                    }
                }
                Ok(p) => headers.push((header, p)),
                Err(e) => errors.add(format!("headers.{name}"), e),
            }
        }
        let mut content_types: Vec<String> = cfg.content_types.iter().map(|t| t.trim().to_ascii_lowercase()).collect();
        for (i, t) in content_types.iter().enumerate() {
            if t != "*/*" && t.split_once('/').is_none_or(|(a, b)| a.is_empty() || b.is_empty() || a == "*") {
                errors.add(
                    format!("content_types[{i}]"),
                    format!("`{t}` is not a media type such as `application/json`"),
                );
            } else if t.contains(';') {
                // Requests are matched by their type alone (`charset` is
                // checked on its own): with parameters, it matched nothing.
                errors.add(
                    format!("content_types[{i}]"),
                    format!(
                        "`{t}`: list the media type without parameters (`{}`); a request's parameters are not \
                         matched (a `charset` other than UTF-8 is refused anyway)",
                        t.split(';').next().unwrap_or("").trim()
                    ),
                );
            }
        }
        if content_types.is_empty() && body.is_some() {
            content_types = vec!["application/json".into(), "application/*+json".into()];
        }
        let l = &cfg.json_limits;
        let d = JsonLimits::default();
        let limits = JsonLimits {
            max_depth: l.max_depth.unwrap_or(d.max_depth),
            max_entries: l.max_entries.unwrap_or(d.max_entries),
            max_array: l.max_array.unwrap_or(d.max_array),
            max_string: l.max_string.map_or(d.max_string, |b| b.0),
            max_number_length: l.max_number_length.unwrap_or(d.max_number_length),
        };
        if !(1..=512).contains(&limits.max_depth) {
            errors.add("json_limits.max_depth", "between 1 and 512");
        }
        let registry = cx.shared::<Arc<Registry>>().cloned().unwrap_or_default();
        let failures = ["body", "query", "header", "path", "cookie"]
            .into_iter()
            .map(|place| {
                let labels = vec![("route", cx.name.to_string()), ("in", place.to_string())];
                (place, registry.counter("portcullis_validation_failures", labels))
            })
            .collect();
        let buffers = cx.shared::<BufferBudget>().cloned().unwrap_or_else(|| BufferBudget::unshared(u64::MAX));
        let responses = cfg.responses.as_ref().and_then(|spec| {
            let labels = vec![("route", cx.name.to_string()), ("in", "response".to_string())];
            let counter = registry.counter("portcullis_validation_failures", labels);
            match response::ResponseRules::compile(spec, formats, Arc::from(cx.name), counter) {
                Ok(rules) => Some(Arc::new(rules.counting_against(buffers.clone()))),
                Err(e) => {
                    errors.add("responses", e);
                    None
                }
            }
        });
        let deny_other_query = cfg.additional_query == config::AdditionalQuery::Deny;
        let report = cfg.mode == config::ValidateMode::Report;
        let route = Arc::from(cx.name);
        let read_deadline = cx
            .upstream
            .and_then(|u| cx.loaded.config.upstreams.get(u))
            .map_or_else(|| crate::config::TimeoutsConfig::default().request.0, |u| u.timeouts.request.0);
        errors.or_value(Compiled {
            buffers,
            read_deadline,
            content_types,
            body,
            path,
            query,
            deny_other_query,
            headers,
            cookies,
            limits,
            report,
            route,
            failures,
            responses,
        })
    }

    /// The declared responses to check upstream answers against, if asked.
    pub fn response_rules(&self) -> Option<&Arc<response::ResponseRules>> {
        self.responses.as_ref()
    }

    /// Whether the body must be read to check it.
    pub fn reads_body(&self) -> bool {
        self.body.is_some() || !self.content_types.is_empty()
    }

    /// The checks that need no body, without awaiting: `None` when the body
    /// is still to be read (`on_request`).
    pub fn try_sync(&self, req: &request::Parts, ctx: &mut RequestCtx<'_>) -> Option<Outcome> {
        if self.reads_body() {
            return None;
        }
        let problems = self.parameters(req, ctx);
        Some(self.decided(problems, ctx))
    }

    pub async fn on_request(&self, req: &mut request::Parts, ctx: &mut RequestCtx<'_>) -> Outcome {
        let mut problems = self.parameters(req, ctx);
        // A client waiting for `100 Continue` is refused on what its head
        // says alone, before its upload (docs: a refused request gets no
        // 100): its parameters, or a body's type or coding this route does
        // not take. A client that sends its body at once has every problem
        // listed, the body's too.
        if !self.report && ctx.body.as_ref().is_some_and(RequestBody::awaits_continue) {
            if let Some((refusal, reported)) = self.head_refusal(req, ctx.body.as_ref()) {
                problems.push(Problem { place: "body", pointer: String::new(), detail: reported.into() });
                self.count(&problems);
                return Outcome::Respond(refusal(ctx));
            }
            if !problems.is_empty() {
                return self.decided(problems, ctx);
            }
        }
        if self.reads_body()
            && let Some(body) = ctx.body.take()
        {
            let (limit, stall) = (body.limit(), body.stall_timeout());
            let (bytes, held) = match read_whole(body, &self.buffers, self.read_deadline).await {
                Ok(read) => read,
                Err(Unread::Body(e, received)) => {
                    if e.client_left() {
                        ctx.client_left = Some(received);
                    }
                    return body_refused(&e, ctx);
                }
                Err(Unread::OverBudget(over)) => return Outcome::Respond(busy(&over, ctx)),
            };
            let mut held = held;
            if let Some((refusal, reported)) = self.check_body(req, &bytes, &mut held, &mut problems) {
                problems.push(Problem { place: "body", pointer: String::new(), detail: reported.into() });
                if !self.report {
                    // A 415 is a refusal like a 400; a full `max_buffered` (503) is no fault of the request.
                    if reported != OVER_BUDGET_REPORTED {
                        self.count(&problems);
                    }
                    return Outcome::Respond(refusal(ctx));
                }
            }
            // The read document is gone: the body's bytes go on counting.
            let _ = held.resize(bytes.len() as u64);
            ctx.body = Some(RequestBody::buffered(bytes, limit, stall).holding(held));
        }
        self.decided(problems, ctx)
    }

    fn parameters(&self, req: &request::Parts, ctx: &RequestCtx<'_>) -> Vec<Problem> {
        let mut problems = Vec::new();
        let (names, values) = ctx.path_params;
        for p in &self.path {
            let value = names.iter().position(|n| **n == *p.name).and_then(|i| values.get(i));
            let decoded = value.map(|v| params::decode_path(v));
            let values: Vec<&str> = decoded.iter().map(String::as_str).collect();
            p.check("path", &values, &mut problems);
        }
        if !self.query.is_empty() || self.deny_other_query {
            let pairs = params::query_pairs(req.uri.query().unwrap_or(""));
            problems.extend(pairs.iter().filter_map(|(k, _)| params::control_in_name("query", k, k.clone())));
            let bracketed: Vec<String> = self.query.iter().filter_map(|p| p.bracket_spelling(&pairs)).collect();
            for p in &self.query {
                if p.is_deep_object() {
                    p.check_deep_object(&pairs, &mut problems);
                    continue;
                }
                if p.is_exploded_object() {
                    p.check_exploded_object(&pairs, &mut problems);
                    continue;
                }
                let spelled = p.bracket_spelling(&pairs);
                let key = spelled.as_deref().unwrap_or(&p.name);
                let values: Vec<&str> = pairs.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect();
                p.check("query", &values, &mut problems);
            }
            self.other_spellings(&pairs, &bracketed, &mut problems);
            if self.deny_other_query {
                let declared = |k: &str| {
                    bracketed.iter().any(|b| b == k)
                        || self.query.iter().any(|p| {
                            p.name == k
                                || (p.is_exploded_object() && p.declares_member(k))
                                || (p.is_deep_object()
                                    && k.strip_prefix(p.name.as_str())
                                        .is_some_and(|r| r.starts_with('[') && r.ends_with(']')))
                        })
                };
                // A name after a `;` is checked above where it names a
                // parameter, but is no other parameter of its own: to most
                // servers `?next=/a;jsessionid=X` is one value with a `;`.
                let query = req.uri.query().unwrap_or("");
                let sent = if query.contains(';') {
                    std::borrow::Cow::Owned(params::ampersand_pairs(query))
                } else {
                    std::borrow::Cow::Borrowed(&pairs)
                };
                for (k, _) in sent.iter() {
                    // Refused already, and listed no further: each name scans
                    // the problems so far, which must stay few (thousands of
                    // names in one query were quadratic).
                    if problems.len() >= MAX_ERRORS {
                        break;
                    }
                    if !declared(k) && !problems.iter().any(|p| p.pointer == *k) {
                        let detail = format!("`{k}` is not a parameter of this operation");
                        problems.push(Problem { place: "query", pointer: k.clone(), detail });
                    }
                }
            }
        }
        for (name, p) in &self.headers {
            // Bytes past ASCII read as UTF-8 (the rest as U+FFFD), never
            // skipped: a value with one such byte went by unchecked, and
            // a second copy of the header uncounted.
            let values: Vec<_> =
                req.headers.get_all(name).iter().map(|v| String::from_utf8_lossy(v.as_bytes())).collect();
            let values: Vec<&str> = values.iter().map(|v| v.as_ref()).collect();
            p.check("header", &values, &mut problems);
        }
        for p in &self.cookies {
            let values = params::cookie_values(&req.headers, &p.name);
            let values: Vec<&str> = values.iter().map(String::as_str).collect();
            p.check("cookie", &values, &mut problems);
        }
        if !self.cookies.is_empty() {
            self.other_cookie_spellings(&req.headers, &mut problems);
        }
        problems
    }

    /// Another spelling of a declared query name that some frameworks read
    /// as it (`params::read_as`): the service would get a value nobody
    /// checked. A name the route declares itself (`page[size]`
    /// beside `page`, `ID` beside `id`) is its own parameter.
    fn other_spellings(&self, pairs: &[(String, String)], bracketed: &[String], problems: &mut Vec<Problem>) {
        let declared = |k: &str| {
            bracketed.iter().any(|b| b == k)
                || self.query.iter().any(|q| q.name == k || (q.is_exploded_object() && q.declares_member(k)))
        };
        for (k, _) in pairs {
            // As in `additional_query: deny`: enough to refuse and list.
            if problems.len() >= MAX_ERRORS {
                return;
            }
            if declared(k) || problems.iter().any(|q| q.pointer == *k) {
                continue;
            }
            let meant = self.query.iter().find_map(|p| {
                if p.is_deep_object() {
                    // `CREATED[gte]` beside `created[gte]`: ASP.NET reads either,
                    // and `created.gte` (its own nesting) too.
                    let other_case =
                        (k != &p.name && k.eq_ignore_ascii_case(&p.name)) || params::other_case_head(k, &p.name);
                    let dotted =
                        k.strip_prefix(p.name.as_str()).is_some_and(|rest| rest.len() > 1 && rest.starts_with('.'));
                    return (other_case || dotted).then(|| p.name.clone());
                }
                if p.is_exploded_object() {
                    // `LAT` for the member `lat`; and `pt.lat`, `pt[lat]` for the
                    // object `pt` (ASP.NET binds a `Point pt` from `pt.lat` first).
                    return p.member_ignoring_case(k).or_else(|| params::read_as(k, &p.name).then(|| p.name.clone()));
                }
                params::read_as(k, &p.name).then(|| p.name.clone())
            });
            if let Some(name) = meant {
                let detail = format!(
                    "`{}` is read as the parameter `{name}` by some frameworks (case, brackets, PHP's `.` and spaces): send it once, as `{name}`",
                    cut(k)
                );
                problems.push(Problem { place: "query", pointer: k.clone(), detail });
            }
        }
    }

    /// Cookies a service could read as a declared one though the gateway
    /// checked another (PHP reads `page.size` and `page_size[]` as
    /// `page_size`, ASP.NET `PAGE_SIZE`), or whose name holds a control
    /// character: refused, as their query counterparts are.
    fn other_cookie_spellings(&self, headers: &http::HeaderMap, problems: &mut Vec<Problem>) {
        for (k, decoded) in params::cookie_names(headers) {
            // As for query names: enough to refuse and list, and the scan of
            // the problems so far stays short (40,000 names took 13 s).
            if problems.len() >= MAX_ERRORS {
                return;
            }
            if problems.iter().any(|q| q.place == "cookie" && q.pointer == k) {
                continue;
            }
            if let Some(problem) = params::control_in_name("cookie", &decoded, k.clone()) {
                problems.push(problem);
                continue;
            }
            // The declared name as written is checked; `sess%5Fid` is
            // another spelling of `sess_id` (its value was never checked).
            if self.cookies.iter().any(|c| c.name == k) {
                continue;
            }
            let spelled = |name: &str| decoded == name || params::read_as(&decoded, name) || params::read_as(&k, name);
            if let Some(c) = self.cookies.iter().find(|c| spelled(&c.name)) {
                let detail = format!(
                    "`{}` is read as the cookie `{}` by some frameworks (case, brackets, PHP's `.` and spaces): send it once, as `{}`",
                    cut(&k),
                    c.name,
                    c.name
                );
                problems.push(Problem { place: "cookie", pointer: k, detail });
            }
        }
    }

    /// What `check_body` refuses by the head alone (a body announced, of a
    /// type the route does not take, or compressed), for a client that
    /// waits for `100 Continue`.
    /// (`Transfer-Encoding` is gone from the head by now: the body's
    /// framing says whether one comes.)
    fn head_refusal(&self, req: &request::Parts, body: Option<&RequestBody>) -> Option<(Refusal, &'static str)> {
        let announced = body.is_some_and(|b| !http_body::Body::is_end_stream(b));
        if !self.reads_body() || !announced {
            return None;
        }
        let media = req.headers.get(CONTENT_TYPE).map(|v| media_essence_of(v.as_bytes())).unwrap_or_default();
        if !self.content_types.is_empty() && !self.content_types.iter().any(|t| media_matches(t, &media)) {
            return Some((unsupported_media_type, "a Content-Type this route does not accept (415 when enforced)"));
        }
        let checked = self.body.as_ref().is_some_and(|rule| !rule.bytes_only);
        (checked && compressed(req))
            .then_some((unsupported_coding, "a Content-Encoding: bodies are checked uncompressed (415 when enforced)"))
    }

    /// The body's checks; `Some` is an answer other than 400 (415), and
    /// what report mode logs for it.
    fn check_body(
        &self,
        req: &request::Parts,
        bytes: &Bytes,
        held: &mut Held,
        problems: &mut Vec<Problem>,
    ) -> Option<(Refusal, &'static str)> {
        if bytes.is_empty() {
            if self.body.as_ref().is_some_and(|b| b.required) {
                problems.push(Problem {
                    place: "body",
                    pointer: String::new(),
                    detail: "a request body is required".into(),
                });
            }
            return None;
        }
        // The type itself, read from the bytes: a parameter with a byte
        // beyond ASCII (`application/json; x=\xE9`) must not make the type
        // unreadable, and with it the body unread.
        let media = req.headers.get(CONTENT_TYPE).map(|v| media_essence_of(v.as_bytes())).unwrap_or_default();
        if !self.content_types.is_empty() && !self.content_types.iter().any(|t| media_matches(t, &media)) {
            return Some((unsupported_media_type, "a Content-Type this route does not accept (415 when enforced)"));
        }
        // A body taken by a range (`*/*`, `application/*`, `text/*`) or sent
        // without a type, under another name than the gateway reads: a
        // service that reads it as JSON anyway (FastAPI without a type,
        // Rails' `application/jsonrequest`, a prefix match on
        // `application/json5`) would get it unchecked. A body that is a
        // JSON document (as Python's `json.loads` reads bytes: a UTF-8
        // byte-order mark skipped, UTF-16 and UTF-32 decoded), or starts as
        // one, is checked as one; any other passes unread.
        let Some(rule) = &self.body else { return None };
        // A schema of bytes (`type: string, format: binary`, an upload of
        // any file) says nothing of what they are: read as JSON, a `.json`
        // file would be refused as "not a string".
        if rule.bytes_only {
            return None;
        }
        let sniffed =
            (!is_json(&media) && media != "application/x-www-form-urlencoded" && !self.content_types.contains(&media))
                .then(|| as_json_document(bytes))
                .flatten();
        let (media, owned) = match sniffed {
            Some(document) => ("application/json".to_string(), document),
            None => (media, bytes.clone()),
        };
        let bytes = &owned;
        // A compressed body is not read here: checked as it is, it would be
        // refused as garbage (gzip) or passed unread to a service that
        // decodes it (a plain body labelled `br`). RFC 9110 §15.5.16: 415.
        if compressed(req) {
            return Some((
                unsupported_coding,
                "a Content-Encoding: bodies are checked uncompressed (415 when enforced)",
            ));
        }
        let read_as_text = is_json(&media) || media == "application/x-www-form-urlencoded";
        if read_as_text && !utf8_charset(req.headers.get(CONTENT_TYPE)) {
            // Checked as UTF-8, the body could read otherwise to a service
            // that honours `charset=utf-16` or `latin1` (RFC 8259 §8.1: JSON
            // exchanged is UTF-8).
            return Some((unsupported_charset, "a charset other than UTF-8 (415 when enforced)"));
        }
        if rule.backtracking {
            let strings = if is_json(&media) {
                unescaped_quotes(bytes) / 2
            } else {
                memchr::memchr_iter(b'&', bytes).count() + 1
            };
            if strings > MAX_BACKTRACKED_STRINGS {
                let detail = format!(
                    "holds more than {MAX_BACKTRACKED_STRINGS} strings, the most this route checks against its \
                     patterns that backtrack (look-around, back-references)"
                );
                problems.push(Problem { place: "body", pointer: String::new(), detail });
                return None;
            }
        }
        if is_json(&media) {
            if rule.shortcut.as_ref().is_some_and(|s| s.passes(bytes, &self.limits)) {
                return None;
            }
            let doc = match json_limits::read(bytes, &self.limits) {
                Ok(doc) => doc,
                Err(v) => {
                    problems.push(Problem { place: "body", pointer: v.pointer, detail: v.detail });
                    return None;
                }
            };
            // The read document counts too: many small values take
            // several times their text.
            if held.grow(doc.heap_size()).is_err() {
                return Some((over_budget, OVER_BUDGET_REPORTED));
            }
            // Passing is the common case: a yes/no check first, the errors
            // collected only for a body that fails.
            if !rule.room.fits(doc.depth) {
                let detail = format!("nested {} levels: deeper than this route's schema can be checked", doc.depth);
                problems.push(Problem { place: "body", pointer: String::new(), detail });
                return None;
            }
            // A body the shortcut proved has no member it does not declare;
            // one in another case than declared comes this way.
            if let Some(guard) = &rule.case_guard {
                rule.room.run(doc.depth, || guard.check(&doc.root(), MAX_ERRORS, problems));
            }
            if !rule.room.run(doc.depth, || rule.json_schema.is_valid(doc.root())) {
                if rule.report_budget.is_none_or(|b| b.affords(&doc)) {
                    let errors = rule.room.run(doc.depth, || {
                        report_budget::listed(
                            doc.values(),
                            || rule.json_schema.iter_errors(doc.root()),
                            || rule.json_schema.validate(doc.root()),
                        )
                    });
                    // Rare (an object that must be empty): the tape read whole then.
                    let members_at = |at: &str| members_in(&jsonschema::json::Node::to_value(&doc.root()))(at);
                    schema_problems(errors, &members_at, problems);
                } else {
                    let detail = report_budget::TOO_INTRICATE.to_string();
                    problems.push(Problem { place: "body", pointer: String::new(), detail });
                }
            }
        } else if media == "application/x-www-form-urlencoded" {
            let value = params::form_object(bytes, &rule.properties, problems);
            if held.grow(crate::http::buffer_budget::json_size(&value)).is_err() {
                return Some((over_budget, OVER_BUDGET_REPORTED));
            }
            let depth = deep::depth_of(&value);
            if !rule.room.fits(depth) {
                let detail = format!("nested {depth} levels: deeper than this route's schema can be checked");
                problems.push(Problem { place: "body", pointer: String::new(), detail });
                return None;
            }
            if !rule.room.run(depth, || rule.schema.is_valid(&value)) {
                let values = report_budget::values_in(&value);
                let errors = rule.room.run(depth, || {
                    report_budget::listed(values, || rule.schema.iter_errors(&value), || rule.schema.validate(&value))
                });
                schema_problems(errors, &members_in(&value), problems);
            }
        }
        // Another declared type: present, and of a declared type; that is all.
        None
    }

    /// `portcullis_validation_failures_total`: once per place a request's problems are in.
    fn count(&self, problems: &[Problem]) {
        let mut counted: Vec<&str> = Vec::new();
        for p in problems {
            if !counted.contains(&p.place) {
                counted.push(p.place);
                if let Some(c) = self.failures.get(p.place) {
                    c.inc();
                }
            }
        }
    }

    fn decided(&self, problems: Vec<Problem>, ctx: &mut RequestCtx<'_>) -> Outcome {
        if problems.is_empty() {
            return Outcome::Continue;
        }
        self.count(&problems);
        if self.report {
            ctx.invalid_reported = true;
            // A dry run: what `enforce` would refuse, said where operators look.
            for p in problems.iter().take(MAX_ERRORS) {
                tracing::info!(
                    route = &*self.route,
                    request_id = ctx.request_id.to_str().unwrap_or("-"),
                    place = p.place,
                    pointer = %p.pointer,
                    detail = %p.detail,
                    "validation would refuse this request (report mode)"
                );
            }
            return Outcome::Continue;
        }
        Outcome::Respond(invalid(&problems, ctx))
    }
}

/// What a schema's complaint says, without the value sent (`masked`).
/// Unexpected members are the one complaint that names what the client
/// wrote: their names are kept when short (a name is a place, not a
/// value), a long one is not echoed back.
/// The member names of the object at a JSON pointer of the checked value.
pub(super) type MembersAt<'d> = &'d dyn Fn(&str) -> Option<Vec<String>>;

/// `MembersAt` for a `Value`.
pub(super) fn members_in(value: &Value) -> impl Fn(&str) -> Option<Vec<String>> + '_ {
    |at| Some(value.pointer(at)?.as_object()?.keys().cloned().collect())
}

/// What `e` says, in words for the client; `members_at` reads the checked
/// value (the library's error for an object that must be empty carries
/// one member's value, not the object's names).
pub(super) fn detail_of(e: &jsonschema::ValidationError<'_>, members_at: MembersAt<'_>) -> String {
    use jsonschema::error::ValidationErrorKind as Kind;
    if let Kind::BacktrackLimitExceeded { .. } = e.kind() {
        // The engine's own words (`Error executing regex: …`) say nothing to a client.
        return "the value could not be checked against the schema's `pattern` within the gateway's step limit".into();
    }
    // `anyOf: [ X, { type: "null" } ]` (FastAPI's every `Optional`, 3.1's
    // nullable): "not valid under any of the schemas" says nothing; the
    // one branch that is not the null's says what is wrong.
    if let Kind::AnyOf { context } | Kind::OneOfNotValid { context } = e.kind() {
        let null_only = |branch: &Vec<jsonschema::ValidationError<'_>>| {
            use jsonschema::error::TypeKind;
            use jsonschema::types::JsonType;
            matches!(branch.as_slice(), [only] if matches!(only.kind(), Kind::Type { kind: TypeKind::Single(JsonType::Null) }))
        };
        let mut others = context.iter().filter(|branch| !null_only(branch));
        if let (Some(branch), None) = (others.next(), others.next())
            && let Some(first) = branch.first()
        {
            return detail_of(first, members_at);
        }
    }
    if let Kind::PropertyNames { error } = e.kind() {
        // The library's masking does not reach the name inside: a name
        // the client wrote is not repeated (it may be any length or text).
        return format!("a member name the schema does not allow ({})", error.kind().keyword());
    }
    // `additionalProperties: false` with no `properties` beside it (an
    // empty object): the library says "False schema does not allow value"
    // of the object; every member it has is one the schema does not allow.
    if let Kind::FalseSchema = e.kind()
        && matches!(
            keyword_at_end(&e.schema_path().to_string()),
            Some("additionalProperties" | "unevaluatedProperties")
        )
        && let Some(members) = members_at(e.instance_path().as_str())
    {
        return not_allowed(&members);
    }
    if let Kind::FalseSchema = e.kind() {
        return "no value is allowed here (its schema is `false`)".to_string();
    }
    let (Kind::AdditionalProperties { unexpected } | Kind::UnevaluatedProperties { unexpected }) = e.kind() else {
        return e.masked().to_string();
    };
    not_allowed(unexpected)
}

/// The keyword a schema path ends in, when its last step is one (not a
/// name the document chose: a property called `additionalProperties`).
fn keyword_at_end(path: &str) -> Option<&str> {
    let mut name_next = false;
    let mut last = None;
    for step in path.split('/').skip(1) {
        last = (!name_next).then_some(step);
        name_next = !name_next && deep::NAME_MAPS.contains(&step);
    }
    last
}

/// Members a schema does not allow, named when few and short (else counted).
fn not_allowed(unexpected: &[String]) -> String {
    const SHOWN: usize = 5;
    const LONGEST: usize = 40;
    if unexpected.len() <= SHOWN && unexpected.iter().all(|n| n.len() <= LONGEST) {
        let names: Vec<String> = unexpected.iter().map(|n| format!("`{}`", n.escape_default())).collect();
        let what = if names.len() == 1 { "a member" } else { "members" };
        return format!("{what} the schema does not allow: {}", names.join(", "));
    }
    match unexpected.len() {
        1 => "a member the schema does not allow (its name is too long to repeat)".to_string(),
        n => format!("{n} members the schema does not allow"),
    }
}

/// A schema's complaints about a body, as problems (at most `MAX_ERRORS`).
fn schema_problems(
    errors: Vec<jsonschema::ValidationError<'_>>,
    members_at: MembersAt<'_>,
    problems: &mut Vec<Problem>,
) {
    for e in errors.into_iter().take(MAX_ERRORS) {
        let detail = detail_of(&e, members_at);
        let problem = Problem { place: "body", pointer: e.instance_path().as_str().to_string(), detail };
        push_once(problems, problem);
    }
}

/// Adds `problem` unless the same one is listed already: the branches of a
/// discriminated `oneOf` each said `"kind" is a required property`, three
/// identical lines for one fault.
pub(super) fn push_once(problems: &mut Vec<Problem>, problem: Problem) {
    if !problems.contains(&problem) {
        problems.push(problem);
    }
}

/// `application/json`, any `…+json` type, and the other names frameworks
/// read as JSON: `text/json` (ASP.NET Core's default input formatter, and
/// Swashbuckle's documents list it), `application/x-json`, `text/x-json`.
/// A body under one of them that went unread would reach a service that
/// parses it as JSON unchecked.
pub(crate) fn is_json(media: &str) -> bool {
    matches!(media, "application/json" | "text/json" | "application/x-json" | "text/x-json") || media.ends_with("+json")
}

/// The media ranges an OpenAPI document may give a body schema that covers
/// JSON bodies (`text/*` takes `text/json`).
pub(crate) fn is_json_range(media: &str) -> bool {
    matches!(media, "*/*" | "application/*" | "text/*")
}

/// `bytes` as a JSON object or array in UTF-8, when it reads as one: the
/// encoding told as Python's `json.detect_encoding` tells it (a UTF-32,
/// UTF-16 or UTF-8 byte-order mark, else the zero bytes among the first
/// four), then decoded. A text that is no valid JSON but that Python's
/// reader takes (`NaN`, `Infinity`, lone surrogate escapes) is returned
/// too: checked, it is refused rather than passed unread to a service
/// that reads it. `None`: no such document.
fn as_json_document(bytes: &Bytes) -> Option<Bytes> {
    let utf16 = |big: bool, body: &[u8]| -> Option<Bytes> {
        let units = body.chunks(2).map(|c| {
            let pair = [c[0], c.get(1).copied().unwrap_or(0)];
            if big { u16::from_be_bytes(pair) } else { u16::from_le_bytes(pair) }
        });
        // Python decodes JSON bytes with `surrogatepass`: a lone surrogate
        // is read, so it is read here too (as U+FFFD: the checked text).
        Some(Bytes::from(
            char::decode_utf16(units).map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER)).collect::<String>(),
        ))
    };
    let utf32 = |big: bool, body: &[u8]| -> Option<Bytes> {
        body.chunks(4)
            .map(|c| {
                let unit: [u8; 4] = c.try_into().ok()?;
                let code = if big { u32::from_be_bytes(unit) } else { u32::from_le_bytes(unit) };
                match code {
                    0xD800..=0xDFFF => Some(char::REPLACEMENT_CHARACTER),
                    _ => char::from_u32(code),
                }
            })
            .collect::<Option<String>>()
            .map(Bytes::from)
    };
    let text = match bytes.as_ref() {
        [0, 0, 0xFE, 0xFF, rest @ ..] => utf32(true, rest)?,
        [0xFF, 0xFE, 0, 0, rest @ ..] => utf32(false, rest)?,
        [0xFE, 0xFF, rest @ ..] => utf16(true, rest)?,
        [0xFF, 0xFE, rest @ ..] => utf16(false, rest)?,
        [0xEF, 0xBB, 0xBF, ..] => bytes.slice(3..),
        [0, 0, _, _, ..] => utf32(true, bytes)?,
        [0, _, ..] => utf16(true, bytes)?,
        [_, 0, 0, 0, ..] => utf32(false, bytes)?,
        [_, 0, ..] => utf16(false, bytes)?,
        _ => bytes.clone(),
    };
    // An object or an array, as API bodies are: a text that happens to be
    // a JSON scalar (`123`, `true`) under `text/*` is text.
    let document = text.trim_ascii_start().first().is_some_and(|b| matches!(b, b'{' | b'['));
    let reads = |t: &[u8]| serde_json::from_slice::<serde::de::IgnoredAny>(t).is_ok();
    (document && (reads(&text) || reads(&as_python_reads(&text)))).then_some(text)
}

/// `text` with what Python's `json.loads` takes beyond JSON made JSON:
/// `NaN`, `Infinity` and `-Infinity` outside strings as `0`, and every
/// `\uXXXX` escape as one that stands alone (a lone surrogate is one).
/// Only to tell whether such a reader reads the text as a document.
fn as_python_reads(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let (mut at, mut in_string) = (0, false);
    while let Some(&b) = text.get(at) {
        let rest = &text[at..];
        if in_string {
            match rest {
                [b'\\', b'u', hex @ ..] if hex.len() >= 4 && hex[..4].iter().all(u8::is_ascii_hexdigit) => {
                    out.extend_from_slice(b"\\u0041");
                    at += 6;
                    continue;
                }
                [b'\\', escaped, ..] => {
                    out.extend_from_slice(&[b'\\', *escaped]);
                    at += 2;
                    continue;
                }
                _ => in_string = b != b'"',
            }
        } else if let Some(word) = ["-Infinity", "Infinity", "NaN"].iter().find(|w| rest.starts_with(w.as_bytes())) {
            out.push(b'0');
            at += word.len();
            continue;
        } else {
            in_string = b == b'"';
        }
        out.push(b);
        at += 1;
    }
    out
}

/// A media type without its parameters, lowercased
/// (`Application/JSON; charset=utf-8` -> `application/json`).
/// A coding other than `identity` in `Content-Encoding` (codings are
/// case-insensitive, RFC 9110 §8.4.1: `IDENTITY` is none).
fn compressed(req: &request::Parts) -> bool {
    req.headers.get_all(CONTENT_ENCODING).iter().any(|v| {
        v.as_bytes().split(|&b| b == b',').any(|c| {
            let c = c.trim_ascii();
            !c.is_empty() && !c.eq_ignore_ascii_case(b"identity")
        })
    })
}

pub(crate) fn media_essence(media: &str) -> String {
    media.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// `media_essence` of a field's bytes: the parameters may hold any byte
/// (quoted text allows obs-text), the type itself only ASCII; a type with
/// another byte is none (`""`).
fn media_essence_of(value: &[u8]) -> String {
    let essence = value.split(|&b| b == b';').next().unwrap_or_default().trim_ascii();
    match std::str::from_utf8(essence) {
        Ok(text) if text.is_ascii() => text.to_ascii_lowercase(),
        _ => String::new(),
    }
}

/// Whether a `Content-Type`'s `charset` parameters, if any, all say UTF-8
/// (or US-ASCII, a subset of it).
fn utf8_charset(content_type: Option<&http::HeaderValue>) -> bool {
    let Some(value) = content_type else { return true };
    let Ok(text) = value.to_str() else { return false };
    text.split(';').skip(1).filter_map(|p| p.split_once('=')).all(|(name, value)| {
        !name.trim().eq_ignore_ascii_case("charset")
            || matches!(value.trim().trim_matches('"').to_ascii_lowercase().as_str(), "utf-8" | "utf8" | "us-ascii")
    })
}

/// A name as one JSON pointer token (`a/b` -> `a~1b`).
pub(crate) fn pointer_token(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

/// A configured type (`application/*+json` may use `*` before a suffix) against a request's.
fn media_matches(configured: &str, media: &str) -> bool {
    if configured == "*/*" {
        return true;
    }
    match configured.split_once("/*") {
        Some((top, suffix)) => media.split_once('/').is_some_and(|(t, sub)| t == top && sub.ends_with(suffix)),
        None => configured == media,
    }
}

/// A body's answer other than 400.
type Refusal = fn(&RequestCtx<'_>) -> Answer;

/// What report mode logs when the budget refused a body's read document.
const OVER_BUDGET_REPORTED: &str = "the gateway's memory for bodies (max_buffered) was taken (503 when enforced)";

/// 503: the read document would go past `max_buffered`.
fn over_budget(ctx: &RequestCtx<'_>) -> Answer {
    let detail = "the gateway's memory for bodies read whole (max_buffered) is taken; try again shortly";
    let mut answer = problem::problem(StatusCode::SERVICE_UNAVAILABLE, detail, ctx.request_id);
    answer.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("1"));
    answer
}

fn unsupported_media_type(ctx: &RequestCtx<'_>) -> Answer {
    problem::problem(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "this route does not accept a body of this Content-Type",
        ctx.request_id,
    )
}

fn unsupported_charset(ctx: &RequestCtx<'_>) -> Answer {
    problem::problem(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "this route checks its request bodies as UTF-8: send them with `charset=utf-8` or no charset",
        ctx.request_id,
    )
}

fn unsupported_coding(ctx: &RequestCtx<'_>) -> Answer {
    let mut answer = problem::problem(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "this route checks its request bodies and reads them uncompressed only: send it without Content-Encoding",
        ctx.request_id,
    );
    answer.headers_mut().insert(http::header::ACCEPT_ENCODING, http::HeaderValue::from_static("identity"));
    answer
}

/// Why a body was not read whole.
enum Unread {
    /// The body's error, and the bytes read before it.
    Body(BodyError, u64),
    OverBudget(OverBudget),
}

/// The body in one piece, counted against `max_buffered` as it comes
/// (the count held until the body, forwarded, is dropped), within
/// `deadline` in all (408 past it, as a pause past `body_read_timeout`).
async fn read_whole(
    mut body: RequestBody,
    buffers: &BufferBudget,
    deadline: std::time::Duration,
) -> Result<(Bytes, Held), Unread> {
    let mut held = buffers.hold();
    // One copy: each piece joins the whole as it comes, not a list of
    // pieces joined at the end. The room taken is what `max_buffered`
    // counts, taken as bytes come: up to a little at first for a declared
    // length (a declared 10 MiB that never comes must not be reserved:
    // 500 such uploads held 5 GB), then doubling up to it. (The bytes alone
    // were counted: each stalled upload held 64 KiB of room uncounted, 780 MB
    // for 10,000 HTTP/2 streams with 10 KiB counted.)
    let declared = http_body::Body::size_hint(&body).exact().map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let mut whole: Vec<u8> = Vec::new();
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame = match frame {
                Ok(frame) => frame,
                Err(e) => return Err(Unread::Body(e, body.received())),
            };
            if let Ok(data) = frame.into_data() {
                let needed = whole.len() + data.len();
                if needed > whole.capacity() {
                    let doubled = needed.max(2 * whole.capacity()).max(FIRST_ROOM);
                    let room = if declared >= needed { doubled.min(declared) } else { doubled };
                    held.grow((room - whole.capacity()) as u64).map_err(Unread::OverBudget)?;
                    whole.reserve_exact(room - whole.len());
                }
                whole.extend_from_slice(&data);
            }
        }
        Ok(())
    };
    match tokio::time::timeout(deadline, read).await {
        Ok(Ok(())) => Ok((Bytes::from(whole), held)),
        Ok(Err(unread)) => Err(unread),
        Err(_) => Err(Unread::Body(BodyError::Timeout, body.received())),
    }
}

/// The most room taken for a body before its bytes come.
const FIRST_ROOM: usize = 64 << 10;

/// 503: the gateway holds `max_buffered` bytes of bodies already.
fn busy(over: &OverBudget, ctx: &RequestCtx<'_>) -> Answer {
    let mut answer = problem::problem(StatusCode::SERVICE_UNAVAILABLE, &over.detail(), ctx.request_id);
    answer.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("1"));
    answer
}

fn body_refused(e: &BodyError, ctx: &RequestCtx<'_>) -> Outcome {
    let status = match e {
        BodyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        BodyError::Timeout => StatusCode::REQUEST_TIMEOUT,
        BodyError::Read(_) => StatusCode::BAD_REQUEST,
    };
    Outcome::Respond(problem::problem(status, &e.to_string(), ctx.request_id))
}

/// 400 with the problems found, at most `MAX_ERRORS` of them in at most
/// `MAX_ERRORS_BYTES`.
/// The longest pointer or detail an answer repeats; longer ones end in `…`.
const MAX_SHOWN: usize = 200;

/// `text` cut to `MAX_SHOWN` bytes at a character boundary, `…` after it.
pub(super) fn cut(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= MAX_SHOWN {
        return text.into();
    }
    let mut end = MAX_SHOWN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end]).into()
}

fn invalid(problems: &[Problem], ctx: &RequestCtx<'_>) -> Answer {
    let mut errors = Vec::new();
    let mut size = 0;
    for p in problems.iter().take(MAX_ERRORS) {
        // A pointer or detail may repeat a name the client wrote, of any length.
        let entry = serde_json::json!({ "in": p.place, "pointer": cut(&p.pointer), "detail": cut(&p.detail) });
        size += entry.to_string().len();
        if size > MAX_ERRORS_BYTES && !errors.is_empty() {
            break;
        }
        errors.push(entry);
    }
    let detail = match problems.len() {
        1 => "the request is invalid: 1 problem".to_string(),
        n => format!("the request is invalid: {n} problems"),
    };
    problem::with_members(StatusCode::BAD_REQUEST, &detail, ctx.request_id, [("errors", Value::Array(errors))])
}

/// What `benches/validate.rs` measures: a JSON body's read and schema
/// check, as a validated route does them.
#[doc(hidden)]
pub mod bench {
    use crate::policy::validate::{JsonLimits, compile_schema_for, json_limits, shortcut::Shortcut, tape::Tape};

    pub struct BodyCheck {
        shortcut: Option<Shortcut>,
        schema: jsonschema::Validator<Tape>,
        limits: JsonLimits,
    }

    impl BodyCheck {
        pub fn new(schema: &serde_json::Value) -> Result<BodyCheck, String> {
            let shortcut = Shortcut::compile(schema, &Default::default()).ok();
            let schema = compile_schema_for(schema, &Default::default())?;
            Ok(BodyCheck { shortcut, schema, limits: JsonLimits::default() })
        }

        /// Whether `body` is JSON within the default limits that the
        /// schema accepts, as a validated route decides it.
        pub fn check(&self, body: &[u8]) -> bool {
            self.shortcut.as_ref().is_some_and(|s| s.passes(body, &self.limits)) || self.full(body)
        }

        /// The full path only: the read and `jsonschema`.
        pub fn full(&self, body: &[u8]) -> bool {
            json_limits::read(body, &self.limits).is_ok_and(|doc| self.schema.is_valid(doc.root()))
        }

        /// Only the read, within the default limits.
        pub fn read(&self, body: &[u8]) -> bool {
            json_limits::read(body, &self.limits).is_ok()
        }
    }
}

#[cfg(test)]
mod tests;
