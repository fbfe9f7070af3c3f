//! Response validation in report mode (`apis[].validate.response: report`):
//! an upstream's answer is checked against the operation's `responses`
//! (status declared, media type declared, JSON body valid), and what does
//! not match is logged and counted. The response itself goes out
//! unchanged and undelayed: the body is copied as it streams (up to a
//! limit) and checked once its last byte has passed.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::HeaderValue;
use serde_json::Value;

use super::report_budget::{ReportBudget, TOO_INTRICATE, may_list};
use super::{MAX_ERRORS, Problem, compile_schema, is_json, media_essence};
use crate::http::buffer_budget::{BufferBudget, Held};
use crate::observe::metrics::Counter;

/// Bodies longer than this are not checked (and that is reported).
const MAX_CHECKED_BODY: usize = 1 << 20;

/// Which statuses a `responses` entry covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusKey {
    Exact(u16),
    /// `2XX`: the hundreds digit.
    Class(u16),
    Default,
}

/// A declared JSON body's schema and what listing its errors may cost.
type BodySchema = (jsonschema::Validator, Option<ReportBudget>, super::deep::Room);

#[derive(Debug)]
struct Declared {
    key: StatusKey,
    /// Media types (lowercase) and the JSON schema of the JSON ones.
    content: Vec<(String, Option<BodySchema>)>,
}

/// One operation's declared responses, compiled.
#[derive(Debug)]
pub struct ResponseRules {
    route: Arc<str>,
    declared: Vec<Declared>,
    failures: Arc<Counter>,
    /// What the copies of bodies count against (`max_buffered`).
    buffers: BufferBudget,
}

/// What a response's head says about checking it.
#[derive(Debug)]
pub enum HeadCheck {
    /// Nothing to check in the body (or nothing declared about it).
    Done(Vec<Problem>),
    /// The body is to be checked against `declared[i].content[j]`'s schema.
    Body { declared: usize, content: usize },
}

impl ResponseRules {
    /// `spec`: status key (`200`, `2XX`, `default`) -> media type -> schema
    /// (`null` when the document gives none), OpenAPI 3.0 already converted.
    pub fn compile(
        spec: &BTreeMap<String, BTreeMap<String, Value>>,
        formats: &BTreeMap<String, String>,
        route: Arc<str>,
        failures: Arc<Counter>,
    ) -> Result<ResponseRules, String> {
        let mut declared = Vec::new();
        for (key, content) in spec {
            let status = match key.to_ascii_uppercase().as_str() {
                "DEFAULT" => StatusKey::Default,
                k if k.len() == 3 && k.ends_with("XX") => match k[..1].parse::<u16>() {
                    Ok(d @ 1..=5) => StatusKey::Class(d),
                    _ => return Err(format!("responses: `{key}` is not a status")),
                },
                k => match k.parse::<u16>() {
                    Ok(s @ 100..=599) => StatusKey::Exact(s),
                    _ => return Err(format!("responses: `{key}` is not a status")),
                },
            };
            let mut media = Vec::new();
            for (m, schema) in content {
                let m = m.to_ascii_lowercase();
                let validator = match schema {
                    Value::Null => None,
                    s if is_json(&m) => Some((
                        compile_schema(s, formats).map_err(|e| format!("responses.{key}: {e}"))?,
                        ReportBudget::of(s),
                        super::deep::Room::of(s),
                    )),
                    _ => None,
                };
                media.push((m, validator));
            }
            declared.push(Declared { key: status, content: media });
        }
        Ok(ResponseRules { route, declared, failures, buffers: BufferBudget::unshared(u64::MAX) })
    }

    /// Counts the bodies copied for a check against `buffers`.
    pub fn counting_against(mut self, buffers: BufferBudget) -> ResponseRules {
        self.buffers = buffers;
        self
    }

    fn find(&self, status: u16) -> Option<usize> {
        let exact = self.declared.iter().position(|d| d.key == StatusKey::Exact(status));
        exact
            .or_else(|| self.declared.iter().position(|d| d.key == StatusKey::Class(status / 100)))
            .or_else(|| self.declared.iter().position(|d| d.key == StatusKey::Default))
    }

    /// Checks the status and media type; says whether the body is to be checked.
    pub fn check_head(&self, status: u16, content_type: Option<&str>) -> HeadCheck {
        let Some(i) = self.find(status) else {
            let problem = Problem {
                place: "status",
                pointer: status.to_string(),
                detail: "the document declares no such response".into(),
            };
            return HeadCheck::Done(vec![problem]);
        };
        let declared = &self.declared[i];
        if declared.content.is_empty() {
            return HeadCheck::Done(Vec::new());
        }
        let media = content_type.map(media_essence);
        let Some(media) = media.filter(|m| !m.is_empty()) else {
            let problem = Problem {
                place: "header",
                pointer: "content-type".into(),
                detail: "the response has no Content-Type; the document declares one".into(),
            };
            return HeadCheck::Done(vec![problem]);
        };
        let matching = declared.content.iter().position(|(m, _)| media_covers(m, &media));
        match matching {
            None => {
                let listed: Vec<&str> = declared.content.iter().map(|(m, _)| m.as_str()).collect();
                HeadCheck::Done(vec![Problem {
                    place: "header",
                    pointer: "content-type".into(),
                    detail: format!("`{media}` is not declared for this status ({})", listed.join(", ")),
                }])
            }
            Some(j) if declared.content[j].1.is_some() && is_json(&media) => {
                HeadCheck::Body { declared: i, content: j }
            }
            Some(_) => HeadCheck::Done(Vec::new()),
        }
    }

    /// Checks a JSON body read whole (`None`: longer than the limit).
    pub fn check_body(&self, declared: usize, content: usize, body: Option<&[u8]>) -> Vec<Problem> {
        let Some((validator, budget, room)) =
            self.declared.get(declared).and_then(|d| d.content.get(content)).and_then(|c| c.1.as_ref())
        else {
            return Vec::new();
        };
        let Some(body) = body else {
            return vec![Problem {
                place: "body",
                pointer: String::new(),
                detail: format!("not checked: longer than {MAX_CHECKED_BODY} bytes"),
            }];
        };
        let value: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            // serde_json reads 128 levels at most: a deeper answer may be
            // valid JSON, only not checked here (not the upstream's fault).
            Err(e) if e.to_string().starts_with("recursion limit exceeded") => {
                let detail = "not checked: nested deeper than 128 levels".to_string();
                return vec![Problem { place: "body", pointer: String::new(), detail }];
            }
            Err(e) => return vec![Problem { place: "body", pointer: String::new(), detail: format!("not JSON: {e}") }],
        };
        let depth = super::deep::depth_of(&value);
        if !room.fits(depth) {
            let detail = format!("not checked: nested {depth} levels, deeper than the schema can be checked");
            return vec![Problem { place: "body", pointer: String::new(), detail }];
        }
        if room.run(depth, || validator.is_valid(&value)) {
            return Vec::new();
        }
        if !may_list(*budget, &value) {
            return vec![Problem { place: "body", pointer: String::new(), detail: TOO_INTRICATE.into() }];
        }
        room.run(depth, || {
            super::report_budget::listed(
                super::report_budget::values_in(&value),
                || validator.iter_errors(&value),
                || validator.validate(&value),
            )
        })
        .into_iter()
        .map(|e| Problem {
            place: "body",
            pointer: e.instance_path().as_str().to_string(),
            detail: super::detail_of(&e, &super::members_in(&value)),
        })
        .collect()
    }

    /// Logs and counts what did not match (one count per response).
    pub fn report(&self, problems: &[Problem], status: u16, request_id: &HeaderValue) {
        if problems.is_empty() {
            return;
        }
        self.failures.inc();
        for p in problems.iter().take(MAX_ERRORS) {
            tracing::info!(
                target: "portcullis::policy::validate",
                route = &*self.route,
                request_id = request_id.to_str().unwrap_or("-"),
                status,
                place = p.place,
                pointer = %p.pointer,
                detail = %p.detail,
                "the upstream's response does not match the document (report mode)"
            );
        }
    }
}

/// A declared media type (`application/json`, `application/*`, `*/*`)
/// against a response's.
fn media_covers(declared: &str, media: &str) -> bool {
    if declared == media || declared == "*/*" {
        return true;
    }
    match declared.strip_suffix("/*") {
        Some(top) => media.split('/').next() == Some(top),
        None => false,
    }
}

/// A response body being copied for its check.
#[derive(Debug)]
pub struct BodyCheck {
    rules: Arc<ResponseRules>,
    declared: usize,
    content: usize,
    status: u16,
    request_id: HeaderValue,
    copy: Vec<u8>,
    /// The copy's count against `max_buffered`.
    held: Held,
    too_long: bool,
    /// The copy would have gone past `max_buffered`: not checked.
    over_budget: bool,
    /// The whole body has passed: judged when dropped.
    complete: bool,
}

impl BodyCheck {
    pub fn new(
        rules: Arc<ResponseRules>,
        declared: usize,
        content: usize,
        status: u16,
        request_id: HeaderValue,
    ) -> BodyCheck {
        let held = rules.buffers.hold();
        BodyCheck {
            rules,
            declared,
            content,
            status,
            request_id,
            copy: Vec::new(),
            held,
            too_long: false,
            over_budget: false,
            complete: false,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        if self.too_long || self.over_budget {
            return;
        }
        if self.copy.len() + data.len() > MAX_CHECKED_BODY {
            self.too_long = true;
            self.copy = Vec::new();
        } else if self.held.grow(data.len() as u64).is_err() {
            // The response goes on; only its check is given up.
            self.over_budget = true;
            self.copy = Vec::new();
        } else {
            self.copy.extend_from_slice(data);
        }
    }

    /// The body has ended; it is checked when this is dropped (a body cut
    /// off before its end is not judged).
    pub fn complete(&mut self) {
        self.complete = true;
    }
}

impl Drop for BodyCheck {
    fn drop(&mut self) {
        if !self.complete {
            return;
        }
        if self.too_long {
            tracing::debug!(
                target: "portcullis::policy::validate",
                route = &*self.rules.route,
                "response body not checked: longer than {MAX_CHECKED_BODY} bytes"
            );
            return;
        }
        if self.over_budget {
            tracing::debug!(
                target: "portcullis::policy::validate",
                route = &*self.rules.route,
                "response body not checked: the gateway holds max_buffered bytes of bodies"
            );
            return;
        }
        let problems = self.rules.check_body(self.declared, self.content, Some(&self.copy));
        self.rules.report(&problems, self.status, &self.request_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules() -> ResponseRules {
        let spec: BTreeMap<String, BTreeMap<String, Value>> = serde_json::from_value(json!({
            "200": { "application/json": { "type": "object", "required": ["id"], "properties": { "id": { "type": "integer" } } } },
            "204": {},
            "4XX": { "application/problem+json": null },
        }))
        .unwrap();
        ResponseRules::compile(&spec, &BTreeMap::new(), "r".into(), Arc::default()).unwrap()
    }

    #[test]
    fn statuses_media_types_and_bodies() {
        let r = rules();
        let HeadCheck::Body { declared, content } = r.check_head(200, Some("application/json; charset=utf-8")) else {
            panic!("a JSON 200 is checked")
        };
        assert!(r.check_body(declared, content, Some(br#"{"id":1}"#)).is_empty());
        let p = r.check_body(declared, content, Some(br#"{"id":"x"}"#));
        assert_eq!((p[0].place, p[0].pointer.as_str()), ("body", "/id"));
        assert_eq!(r.check_body(declared, content, None)[0].detail, "not checked: longer than 1048576 bytes");
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let p = r.check_body(declared, content, Some(deep.as_bytes()));
        assert_eq!(p[0].detail, "not checked: nested deeper than 128 levels", "valid JSON, not blamed as invalid");
        assert!(r.check_body(declared, content, Some(b"{"))[0].detail.starts_with("not JSON"));
        assert!(matches!(r.check_head(204, None), HeadCheck::Done(p) if p.is_empty()));
        assert!(matches!(r.check_head(404, Some("application/problem+json")), HeadCheck::Done(p) if p.is_empty()));
        let HeadCheck::Done(p) = r.check_head(500, Some("application/json")) else { panic!() };
        assert_eq!((p[0].place, p[0].pointer.as_str()), ("status", "500"));
        let HeadCheck::Done(p) = r.check_head(200, Some("text/html")) else { panic!() };
        assert_eq!(p[0].pointer, "content-type");
    }
}
