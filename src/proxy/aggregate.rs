//! Running a route's `aggregate`: its calls as a small graph (every call
//! whose `after` calls have answered starts at once, so independent calls
//! run side by side), each within its own timeout and the aggregate's
//! budget, their JSON answers filtered and merged into one document.
//! Partial failure is explicit: `Portcullis-Aggregate: partial;
//! failed="orders"` and an `errors` entry per failed call; a call that must
//! succeed fails the whole request (502, or 504 when it timed out).

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::body::Body;
use super::caching::{self, Caching};
use super::forward::Tried;
use crate::config::aggregate::{MergeMode, OnFailure};
use crate::http::buffer_budget::{BufferBudget, Held, OverBudget};
use crate::http::error::{GatewayError, UpstreamRefusal};
use crate::http::forwarded::{X_FORWARDED_FOR, X_FORWARDED_PROTO};
use crate::http::request_body::RequestBody;
use crate::http::{problem, request_id};
use crate::observe::Flag;
use crate::observe::metrics::UpstreamError;
use crate::observe::trace::{TRACEPARENT, TRACESTATE};
use crate::plan::aggregate::{AggregatePlan, CallPlan, Piece};
use crate::upstream::Upstream;
use crate::wire::edits::HeaderEdits;
use smallvec::SmallVec;

const AGGREGATE: HeaderName = HeaderName::from_static("portcullis-aggregate");

/// Marks a partial answer in the response's extensions: the route's
/// `response_headers` may remove `Portcullis-Aggregate`, not this.
#[derive(Debug, Clone, Copy)]
struct Partial;

/// What every call carries from the client's request.
pub(super) struct Inputs<'a, 'p> {
    /// Each call's try, for the access log (`None`: nothing watches).
    pub tried: Option<&'a mut SmallVec<[Tried<'p>; 1]>>,
    /// Record `http_client_request_duration_seconds`.
    pub client_metrics: bool,
    /// The route's path parameter values.
    pub values: &'a [&'a str],
    pub request_id: &'a HeaderValue,
    /// The calls' `traceparent`: the request's trace, the gateway's span.
    pub traceparent: HeaderValue,
    /// The continued trace's `tracestate` (W3C Trace Context: sent on with
    /// the trace it belongs to), as the request carries it on by then.
    pub tracestate: Option<HeaderValue>,
    /// The client's address, as `X-Forwarded-For` gives it.
    pub client_ip: HeaderValue,
    pub scheme: &'static str,
    /// Identity header lines from authentication (names, values).
    pub identity: Option<(&'a [HeaderName], &'a [Option<HeaderValue>])>,
    /// What the answers count against while the request lives (`max_buffered`).
    pub buffers: &'a BufferBudget,
}

/// Each call's slots that outlive its future: its target once it has one,
/// its answer's count against `max_buffered`, what its answer says of caching.
struct Slots<'p> {
    reached: Reached<'p>,
    held: std::sync::Mutex<Option<Held>>,
    caching: std::sync::Mutex<Caching>,
}

/// Why a call failed.
#[derive(Debug)]
enum CallError {
    /// No answer within the call's time (its `timeout`, the budget or the
    /// upstream's `timeouts.request`).
    Timeout(Duration),
    /// No connection within the upstream's `timeouts.connect`: 504, as a
    /// proxied request's.
    ConnectTimeout(Duration),
    /// No answer: the target could not be reached (`sent: false`), or it
    /// took the request and broke off (`sent: true`).
    Unreachable {
        sent: bool,
    },
    /// It answered with something that is no valid HTTP response.
    InvalidAnswer,
    Refused(UpstreamRefusal),
    Status(u16),
    NotJson(String),
    BadJson,
    TooLarge(u64),
    /// A call it waits for failed.
    Dependency(std::sync::Arc<str>),
    /// A `{call.field}` had no value to fill in (or one a path cannot take): the placeholder, why.
    Placeholder(String, &'static str),
    /// The call's path, filled in, is no valid request target.
    BadPath,
    /// Valid JSON, nested deeper than the parser goes (serde_json's
    /// recursion limit of 128 lets 127 levels of arrays and objects in).
    TooDeep,
    /// The gateway holds `max_buffered` bytes of bodies already.
    OverBudget(OverBudget),
}

impl CallError {
    /// Its index in `FAILURE_REASONS`.
    fn reason(&self) -> usize {
        match self {
            CallError::Timeout(_) => 0,
            CallError::ConnectTimeout(_) | CallError::Unreachable { sent: false } => 1,
            CallError::Unreachable { sent: true } | CallError::InvalidAnswer => 2,
            CallError::Refused(_) | CallError::OverBudget(_) => 3,
            CallError::Status(_) => 4,
            CallError::NotJson(_) | CallError::BadJson | CallError::TooLarge(_) | CallError::TooDeep => 5,
            CallError::Dependency(_) => 6,
            CallError::Placeholder(..) | CallError::BadPath => 7,
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            CallError::Timeout(_) | CallError::ConnectTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            CallError::Refused(_) | CallError::OverBudget(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    fn detail(&self) -> String {
        match self {
            CallError::Timeout(t) => format!("no answer within {} ms", t.as_millis()),
            CallError::ConnectTimeout(t) => format!("no connection to the upstream within {} ms", t.as_millis()),
            CallError::Unreachable { sent: false } => "the upstream could not be reached".into(),
            CallError::Unreachable { sent: true } => "the upstream broke off without an answer".into(),
            CallError::InvalidAnswer => "the upstream sent an invalid response".into(),
            CallError::Refused(rule) => rule.detail().into(),
            CallError::Status(s) => format!("the upstream answered {s}"),
            CallError::NotJson(media) => format!("the answer is not JSON ({media})"),
            CallError::BadJson => "the answer is not valid JSON".into(),
            CallError::TooLarge(n) => format!("the answer is longer than {n} bytes"),
            CallError::Dependency(call) => format!("it needs the answer of `{call}`, which failed"),
            CallError::Placeholder(p, why) => format!("`{{{p}}}` {why}"),
            CallError::BadPath => "the call's path, filled in, is not a valid request target".into(),
            CallError::TooDeep => "the answer is nested 128 levels deep or more (127 at most)".into(),
            CallError::OverBudget(over) => over.detail(),
        }
    }

    /// The access log's response flag when this failure fails the request
    /// (`None` for a failure that only passes on another call's).
    fn flag(&self) -> Option<Flag> {
        Some(match self {
            CallError::Timeout(_) => Flag::UpstreamTimeout,
            CallError::Unreachable { sent: false } | CallError::ConnectTimeout(_) => Flag::UpstreamConnectFailure,
            CallError::Unreachable { sent: true } | CallError::InvalidAnswer => Flag::UpstreamClosed,
            CallError::Refused(rule) => super::observe::refusal_flag(*rule),
            CallError::Dependency(_) => return None,
            // An answer came but could not be used: the gateway answered itself.
            CallError::Status(_)
            | CallError::NotJson(_)
            | CallError::BadJson
            | CallError::TooDeep
            | CallError::TooLarge(_)
            | CallError::Placeholder(..)
            | CallError::BadPath
            | CallError::OverBudget(_) => Flag::LocalResponse,
        })
    }

    /// An RFC 9457-style entry of the answer's `errors`.
    fn entry(&self, call: &str) -> Value {
        let status = self.status();
        serde_json::json!({
            "call": call,
            "status": status.as_u16(),
            "title": status.canonical_reason().unwrap_or("Error"),
            "detail": self.detail(),
        })
    }
}

/// A call's result, and its try as the access log reports it (none when
/// nothing watches, or the call never reached a target).
type CallOutcome<'p> = (Result<Value, CallError>, Option<Tried<'p>>);
/// A call's upstream, target and start, once it has a target.
type Reached<'p> = std::sync::Mutex<Option<(&'p Upstream, &'p crate::upstream::Target, Instant)>>;
type CallFuture<'a, 'p> = Pin<Box<dyn Future<Output = CallOutcome<'p>> + Send + 'a>>;

/// The answer, and the access log's response flag when a required call
/// failed (the first failure down the chain of calls it waited for).
pub(super) async fn run<'p>(plan: &'p AggregatePlan, inputs: Inputs<'_, 'p>) -> (Response<Body>, Flag) {
    let deadline = Instant::now() + plan.timeout;
    let headers = call_headers(&inputs);
    let n = plan.calls.len();
    let mut results: Vec<Option<Result<Value, CallError>>> = (0..n).map(|_| None).collect();
    let mut started = vec![false; n];
    // Each call's target once it has one, for the log when it is abandoned
    // under way (a required call failed first): a try that reached a target.
    // Each answer's count against `max_buffered`, until the response is made.
    let slots: Vec<Slots<'p>> = (0..n)
        .map(|_| Slots { reached: Default::default(), held: Default::default(), caching: Default::default() })
        .collect();
    let mut running: Vec<(usize, CallFuture<'_, 'p>)> = Vec::new();
    let watch = Watch { tries: inputs.tried.is_some(), client_metrics: inputs.client_metrics };
    // Logs the calls left under way however `run` ends (dropped before
    // `running`, whose futures only hold the slots it locks).
    let mut under_way = UnderWay { tried: inputs.tried, slots: &slots, calls: Vec::new() };
    loop {
        // Start what can start (calls are in an order where each comes after what it waits for).
        for i in 0..n {
            let call = &plan.calls[i];
            if started[i] || !call.after.iter().all(|&d| results[d].is_some()) {
                continue;
            }
            started[i] = true;
            if let Some(&d) = call.after.iter().find(|&&d| matches!(results[d], Some(Err(_)))) {
                results[i] = Some(Err(CallError::Dependency(plan.calls[d].name.clone())));
                continue;
            }
            match fill(call, inputs.values, &results) {
                Ok(pq) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let budget = call.timeout.map_or(left, |t| t.min(left));
                    // Whether the call's own `timeout` ends it (not the aggregate's budget).
                    let own = call.timeout.is_some_and(|t| t <= left);
                    let limit = (Instant::now() + budget, budget, own);
                    let headers = &headers;
                    let held = inputs.buffers.hold();
                    running.push((i, Box::pin(fetch(call, pq, headers, watch, limit, &slots[i], held))));
                    under_way.calls.push(i);
                }
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        if let Some(i) = (0..n).find(|&i| plan.calls[i].must_succeed && matches!(results[i], Some(Err(_)))) {
            // The calls still under way are abandoned: `under_way` logs them `cancelled`.
            count_failures(plan, &results);
            return (failed(plan, &results, i, inputs.request_id), root_flag(plan, &results, i));
        }
        if running.is_empty() {
            break;
        }
        let (k, i, (result, one_try)) = std::future::poll_fn(|cx| {
            for (k, (i, fut)) in running.iter_mut().enumerate() {
                if let std::task::Poll::Ready(r) = fut.as_mut().poll(cx) {
                    return std::task::Poll::Ready((k, *i, r));
                }
            }
            std::task::Poll::Pending
        })
        .await;
        drop(running.swap_remove(k));
        under_way.calls.retain(|&c| c != i);
        results[i] = Some(result);
        if let (Some(tried), Some(t)) = (under_way.tried.as_deref_mut(), one_try) {
            tried.push(t);
        }
    }
    // The answers go with the calls' counts; the document made of them is
    // counted until it has been sent (a client that does not read would
    // otherwise hold it uncounted).
    count_failures(plan, &results);
    let used: Vec<bool> = results.iter().map(|r| matches!(r, Some(Ok(_)))).collect();
    let mut answer = merged(plan, results);
    drop(running);
    // The answer is the caller's when the calls carried who it is. Only
    // the answers it is made of count (a failed call's is not in it).
    let parts: Vec<Caching> = slots
        .iter()
        .zip(&used)
        .filter(|(_, used)| **used)
        .map(|(s, _)| s.caching.lock().map(|c| *c).unwrap_or_default())
        .collect();
    if let Some(cache_control) = caching::merged(&parts, inputs.identity.is_some()) {
        answer.headers_mut().insert(header::CACHE_CONTROL, cache_control);
    }
    // The answers' counts go; the document's is taken below.
    for s in &slots {
        drop(s.held.lock().ok().and_then(|mut h| h.take()));
    }
    let mut held = inputs.buffers.hold();
    let len = http_body::Body::size_hint(answer.body()).exact().unwrap_or(0);
    if let Err(over) = held.grow(len) {
        let detail = over.detail();
        let mut busy = problem::problem(StatusCode::SERVICE_UNAVAILABLE, &detail, inputs.request_id);
        busy.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return (busy.map(Body::full), Flag::LocalResponse);
    }
    (answer.map(|b| b.counted(held)), Flag::None)
}

/// The calls under way when `run` ends before them: a required call failed
/// first, or the client left (the future dropped). Each that reached a
/// target is logged as a try, `cancelled` and timed up to the log line, as
/// a proxied request's try in flight is.
struct UnderWay<'a, 'p> {
    tried: Option<&'a mut SmallVec<[Tried<'p>; 1]>>,
    slots: &'a [Slots<'p>],
    calls: Vec<usize>,
}

impl Drop for UnderWay<'_, '_> {
    fn drop(&mut self) {
        let Some(tried) = self.tried.as_deref_mut() else { return };
        for &j in &self.calls {
            let taken = self.slots[j].reached.lock().ok().and_then(|mut r| r.take());
            if let Some((upstream, target, started)) = taken {
                let request_bytes = None;
                tried.push(Tried {
                    upstream,
                    target,
                    outcome: None,
                    started,
                    duration_ns: 0,
                    ended: false,
                    request_bytes,
                    body: None,
                });
            }
        }
    }
}

/// The call whose failure made `culprit` fail: itself, or the call it
/// waited for that failed first, followed through the chain.
fn root_cause(plan: &AggregatePlan, results: &[Option<Result<Value, CallError>>], mut culprit: usize) -> usize {
    for _ in 0..results.len() {
        let Some(Err(CallError::Dependency(name))) = &results[culprit] else { break };
        match plan.calls.iter().position(|c| c.name == *name) {
            Some(d) => culprit = d,
            None => break,
        }
    }
    culprit
}

/// Why the call `culprit` failed, followed through the calls it waited for.
fn root_flag(plan: &AggregatePlan, results: &[Option<Result<Value, CallError>>], culprit: usize) -> Flag {
    match &results[root_cause(plan, results, culprit)] {
        Some(Err(e)) => e.flag().unwrap_or(Flag::LocalResponse),
        _ => Flag::LocalResponse,
    }
}

/// `portcullis_aggregate_call_failures_total`: each call that failed, once.
fn count_failures(plan: &AggregatePlan, results: &[Option<Result<Value, CallError>>]) {
    for (call, result) in plan.calls.iter().zip(results) {
        if let Some(Err(e)) = result
            && let Some(counter) = call.failures.get(e.reason())
        {
            counter.inc();
        }
    }
}

/// The headers every call carries: the request id, the trace, where the
/// request came from, the identity authentication established. Not the
/// client's credentials or cookies: the calls are the gateway's.
fn call_headers(inputs: &Inputs<'_, '_>) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    // No `Accept-Encoding` would mean any coding is fine (RFC 9110
    // §12.5.3): the answers are parsed here, uncompressed.
    h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    h.insert(request_id::HEADER, inputs.request_id.clone());
    h.insert(TRACEPARENT, inputs.traceparent.clone());
    if let Some(state) = &inputs.tracestate {
        h.insert(TRACESTATE, state.clone());
    }
    h.insert(X_FORWARDED_FOR, inputs.client_ip.clone());
    h.insert(X_FORWARDED_PROTO, HeaderValue::from_static(inputs.scheme));
    if let Some((names, values)) = inputs.identity {
        for (name, value) in names.iter().zip(values) {
            if let Some(v) = value {
                h.insert(name.clone(), v.clone());
            }
        }
    }
    h
}

/// The call's path and query with its placeholders filled in.
fn fill(
    call: &CallPlan,
    values: &[&str],
    results: &[Option<Result<Value, CallError>>],
) -> Result<PathAndQuery, CallError> {
    let mut out = String::new();
    // Past the `?`: values are query values there, where `&`, `=` and `+`
    // would start another parameter or change this one.
    let mut in_query = false;
    // The path segment being written, as a service decoding it once reads
    // it, and the last field in it: fields side by side (`{a.x}{a.y}`,
    // `%` then `2e`) or beside literal text make together what each alone
    // may not (`%252e%252e`: `..` to a service that decodes twice).
    let mut segment = String::new();
    let mut segment_field: Option<&String> = None;
    let whole = |segment: &str, field: Option<&String>| match field {
        Some(text) if segment == "." || segment == ".." || has_escape(segment) => Err(CallError::Placeholder(
            text.clone(),
            "makes, with what is beside it in its path segment, a dot segment or an escape of `/`, `\\`, `.` or `%`",
        )),
        _ => Ok(()),
    };
    for piece in &call.path {
        match piece {
            Piece::Literal(l) => {
                for c in l.chars() {
                    if in_query {
                        break;
                    }
                    if c == '/' || c == '?' {
                        whole(&segment, segment_field)?;
                        segment.clear();
                        segment_field = None;
                        in_query = c == '?';
                    } else {
                        segment.push(c);
                    }
                }
                in_query |= l.contains('?');
                out.push_str(l);
            }
            // A segment of the normalized request path (no `/`, no dot
            // segment, its escapes kept): in a query, its `&`, `=`, `+`
            // are escaped too.
            Piece::Param(i) => {
                let value = values.get(*i).copied().unwrap_or_default();
                if !in_query {
                    segment.push_str(value);
                }
                encode_param(value, in_query, &mut out);
            }
            Piece::Field { call: from, path, text } => {
                let value = match &results[*from] {
                    Some(Ok(v)) => lookup(v, path),
                    _ => None,
                };
                let scalar = match value {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) => match exact_number(n) {
                        Some(text) => text,
                        None => {
                            return Err(CallError::Placeholder(
                                text.clone(),
                                "is a number the gateway cannot write exactly (beyond 2^53): another resource's id",
                            ));
                        }
                    },
                    Some(Value::Bool(b)) => b.to_string(),
                    _ => return Err(CallError::Placeholder(text.clone(), "has no value to fill in")),
                };
                // In a path, these would address another resource than the
                // template says: the collection (``), the parent (`..`).
                if !in_query {
                    match scalar.as_str() {
                        "" => {
                            return Err(CallError::Placeholder(text.clone(), "is empty: a path segment needs a value"));
                        }
                        "." | ".." => {
                            return Err(CallError::Placeholder(text.clone(), "is a dot segment (`.` or `..`)"));
                        }
                        // Escaped as `%2F`, `%5C`, `%252e`: what the gateway
                        // refuses from clients, because services that decode
                        // before they resolve would read `../admin` in them.
                        s if s.contains(['/', '\\']) || has_escape(s) => {
                            return Err(CallError::Placeholder(
                                text.clone(),
                                "holds `/`, `\\` or an escape of one (or of `.`, `%`): not one path segment to every service",
                            ));
                        }
                        _ => {}
                    }
                    segment.push_str(&scalar);
                    segment_field = Some(text);
                }
                encode_into(&scalar, &mut out);
            }
        }
    }
    if !in_query {
        whole(&segment, segment_field)?;
    }
    // `/{rest}` with `merge_slashes: false` and a request for `/c//evil.example/x`.
    crate::router::rewrite::one_leading_slash(&mut out);
    PathAndQuery::try_from(out).map_err(|_| CallError::BadPath)
}

/// A JSON number as a placeholder's text: integers as they came; a whole
/// number read as a double (`1e2`, `100.0`, `-0`) without its fraction
/// (`100`, `0`), as an id is written; `None` from 2^53 on, where a double
/// no longer holds every integer (`18446744073709551617` read back as
/// `…552000`, `9007199254740993.0` as `…992`: a call to another resource).
fn exact_number(n: &serde_json::Number) -> Option<String> {
    if n.is_u64() || n.is_i64() {
        return Some(n.to_string());
    }
    let f = n.as_f64()?;
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    match f {
        f if !f.is_finite() || f.abs() >= EXACT => None,
        f if f.fract() == 0.0 => Some(format!("{}", f as i64)),
        _ => Some(n.to_string()),
    }
}

/// Whether `s` holds an escape of `/`, `\`, `.` or `%` (`%2F`, `%2e`…):
/// escaped again, a service that decodes twice would read a separator or
/// a dot segment. Other escapes (a cursor's `%3D`) are harmless text.
fn has_escape(s: &str) -> bool {
    s.as_bytes().windows(3).any(|w| {
        let hex = |c: u8| (c as char).to_digit(16);
        matches!((w[0], hex(w[1]), hex(w[2])), (b'%', Some(h), Some(l)) if matches!(h * 16 + l, 0x2F | 0x5C | 0x2E | 0x25))
    })
}

/// A segment of the request's normalized path (its own `%` escapes kept)
/// in a call's path or, past the `?`, as a query value: what RFC 3986 does
/// not allow there raw (`"`, `{`, `|`, `^`, `<`…, which the gateway takes
/// from clients as servers do but a strict service refuses) is escaped,
/// and in a query what would end or split the value (`&`, `=`, `+`, `;`, `#`).
fn encode_param(s: &str, in_query: bool, out: &mut String) {
    for b in s.bytes() {
        let allowed = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'_' | b'~' | b'%' | b'/' | b':' | b'@' | b'!' | b'$' | b'\'' | b'(' | b')' | b'*' | b','
            )
            || !in_query && matches!(b, b'&' | b'=' | b'+' | b';');
        if allowed {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// Percent-encodes all but RFC 3986's unreserved characters: safe in a
/// path segment and in a query value alike.
fn encode_into(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

fn lookup<'v>(v: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(v, |v, key| match v {
        Value::Object(m) => m.get(key),
        Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// One call: admitted by its upstream's breaker and limits, sent to a
/// healthy target, answered with JSON in a 2xx, within `time` (the
/// instant it ends, its length for the answer, and whether it is the
/// call's own `timeout`): a call that runs out is still a try of its target.
async fn fetch<'p>(
    call: &'p CallPlan,
    pq: PathAndQuery,
    headers: &HeaderMap,
    watch: Watch,
    time: (Instant, Duration, bool),
    slots: &Slots<'p>,
    mut held: Held,
) -> CallOutcome<'p> {
    let upstream: &'p Upstream = &call.upstream;
    let now = Instant::now();
    // The same admission as a proxied request: limits, breaker, a healthy target.
    let refused = |e: GatewayError| match e {
        GatewayError::Refused { rule, .. } => CallError::Refused(rule),
        _ => CallError::Unreachable { sent: false },
    };
    let (slot, probe) = match super::forward::admit(upstream, now) {
        Ok(admitted) => admitted,
        Err(e) => return (Err(refused(e)), None),
    };
    let Some(picked) = upstream.pick(None, &[], now) else {
        return (Err(refused(super::forward::refuse(upstream, UpstreamRefusal::NoHealthyTarget))), None);
    };
    let target = &upstream.targets[picked.index];
    if watch.tries
        && let Ok(mut r) = slots.reached.lock()
    {
        *r = Some((upstream, target, now));
    }
    let _in_flight = target.begin().with(slot);
    let uri =
        Uri::builder().scheme(target.scheme.clone()).authority(target.authority.clone()).path_and_query(pq).build();
    let Ok(uri) = uri else { return (Err(CallError::Unreachable { sent: false }), None) };
    let mut headers = headers.clone();
    // HTTP/2 names the host in `:authority` (the URI's) alone (RFC 9113 §8.3.1).
    if target.h2.is_none()
        && let Ok(host) = HeaderValue::try_from(target.authority.as_str())
    {
        headers.insert(header::HOST, host);
    }
    let mut req = Request::new(RequestBody::empty());
    *req.method_mut() = call.method.clone();
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    let mut answered = None;
    // No connection came free in time: not the target's doing.
    let mut waited = false;
    let exchange = async {
        match &target.h1 {
            Some(pool) => {
                let (mut parts, mut body) = req.into_parts();
                let edits = HeaderEdits::default();
                let timeout = upstream.request_timeout;
                // Waits as one of `max_pending` when `max_connections` are busy, as proxying does.
                match super::forward::send_h1(upstream, pool, &mut parts, &mut body, &edits, timeout).await {
                    Ok(resp) => {
                        answered = Some(resp.status);
                        // Only the media type is read: no header map built for it.
                        let media = media_type(resp.headers.get_all(&header::CONTENT_TYPE));
                        if let Ok(mut c) = slots.caching.lock() {
                            *c = Caching::of(resp.headers.get_all(&header::CACHE_CONTROL));
                        }
                        read(resp.status, media, resp.body, (call.max_body, &mut held), upstream.read_timeout).await
                    }
                    Err(GatewayError::UpstreamTimeout { waited: true, .. }) => {
                        waited = true;
                        Err(CallError::Timeout(timeout))
                    }
                    // Connecting took the connect timeout or the whole request's.
                    Err(GatewayError::UpstreamTimeout { sent: false, .. }) => {
                        Err(CallError::ConnectTimeout(pool.connect_timeout().min(timeout)))
                    }
                    Err(GatewayError::UpstreamTimeout { .. }) => Err(CallError::Timeout(timeout)),
                    Err(GatewayError::UpstreamUnreachable { cause, .. })
                        if crate::http::error::invalid_response(cause.as_ref()) =>
                    {
                        Err(CallError::InvalidAnswer)
                    }
                    Err(GatewayError::UpstreamUnreachable { sent, .. }) => Err(CallError::Unreachable { sent }),
                    Err(e) => Err(refused(e)),
                }
            }
            None => match tokio::time::timeout(upstream.request_timeout, upstream.client.request(req)).await {
                // hyper's client reads leniently: the framing rules the own
                // codec holds `http://` targets to (a proxied request's too).
                // The answer dropped unread: its connection is not reused.
                Ok(Ok(resp))
                    if resp.status().as_u16() > 599
                        || crate::wire::upstream_head::lenient_framing_fault(resp.headers()).is_some() =>
                {
                    Err(CallError::InvalidAnswer)
                }
                Ok(Ok(resp)) => {
                    let (parts, body) = resp.into_parts();
                    answered = Some(parts.status);
                    let media =
                        media_type(parts.headers.get_all(header::CONTENT_TYPE).iter().map(HeaderValue::as_bytes));
                    if let Ok(mut c) = slots.caching.lock() {
                        *c =
                            Caching::of(parts.headers.get_all(header::CACHE_CONTROL).iter().map(HeaderValue::as_bytes));
                    }
                    read(parts.status, media, body, (call.max_body, &mut held), upstream.read_timeout).await
                }
                Ok(Err(e)) if crate::http::error::invalid_response(&e) => Err(CallError::InvalidAnswer),
                Ok(Err(e)) => Err(CallError::Unreachable { sent: !super::forward::not_sent(&e) }),
                Err(_) => Err(CallError::Timeout(upstream.request_timeout)),
            },
        }
    };
    // Cut off by the aggregate's budget: its time ran out (perhaps in other
    // calls), which says nothing about the target. Cut off by the call's
    // own `timeout`: the target was too slow, a failure (as Envoy counts a
    // route's timeout; a hanging target was never counted otherwise).
    let mut cut_off = false;
    let result = match tokio::time::timeout_at(time.0, exchange).await {
        Ok(result) => result,
        Err(_) => {
            cut_off = true;
            Err(CallError::Timeout(time.1))
        }
    };
    if let Ok(mut slot) = slots.held.lock() {
        *slot = Some(held);
    }
    // For the upstream's health, as for a proxied request: a 5xx or no
    // answer is a failure; an answer the aggregate cannot use is not.
    let verdict = match &result {
        _ if waited || (cut_off && !time.2) => None,
        // The gateway's memory, not the target's doing.
        Err(CallError::OverBudget(_)) => None,
        Ok(_) | Err(CallError::NotJson(_) | CallError::BadJson | CallError::TooDeep | CallError::TooLarge(_)) => {
            Some(true)
        }
        Err(CallError::Status(s)) => Some(*s < 500),
        Err(CallError::Unreachable { .. } | CallError::Timeout(_) | CallError::ConnectTimeout(_)) => Some(false),
        Err(_) => None,
    };
    let end = Instant::now();
    if let Some(ok) = verdict {
        upstream.record(picked.index, ok, probe, end);
    }
    // The try for the access log and `http_client_request_duration_seconds`.
    // An answer whose body did not arrive whole (in time) is that failure,
    // not its head's status.
    let outcome = match (&result, answered) {
        (Err(CallError::ConnectTimeout(_)), _) => Err(UpstreamError::Connect),
        (Err(CallError::Timeout(_)), _) => Err(UpstreamError::Timeout),
        (Err(CallError::Unreachable { sent: false }), None) => Err(UpstreamError::Connect),
        (Err(CallError::Unreachable { .. }), _) => Err(UpstreamError::Closed),
        (_, Some(status)) => Ok(status),
        _ => return (result, None),
    };
    let duration_ns = end.saturating_duration_since(now).as_nanos() as u64;
    if watch.client_metrics {
        target.metrics.record(outcome, duration_ns);
    }
    let one_try = watch.tries.then(|| Tried {
        upstream,
        target,
        outcome: Some(outcome.map(|s| s.as_u16())),
        started: now,
        duration_ns,
        ended: true,
        request_bytes: None,
        body: None,
    });
    (result, one_try)
}

/// What is recorded of each call.
#[derive(Debug, Clone, Copy)]
struct Watch {
    /// Its try goes to the access log.
    tries: bool,
    /// `http_client_request_duration_seconds` is recorded.
    client_metrics: bool,
}

/// The answer's media type from its `Content-Type` values, lowercased
/// (`""` without one). Sent twice, the field is ambiguous (a reader that
/// takes the first and one that takes the last disagree): that answer is
/// not judged JSON, whatever its values say.
fn media_type<'v>(mut values: impl Iterator<Item = &'v [u8]>) -> String {
    let (first, second) = (values.next(), values.next());
    if second.is_some() {
        return "more than one Content-Type".into();
    }
    first.and_then(|v| std::str::from_utf8(v).ok()).map(crate::policy::validate::media_essence).unwrap_or_default()
}

async fn read<B>(
    status: StatusCode,
    media: String,
    body: B,
    (max, held): (u64, &mut Held),
    read_timeout: Duration,
) -> Result<Value, CallError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // A 206 is part of a resource (calls ask for no range): not the answer.
    if !status.is_success() || status == StatusCode::PARTIAL_CONTENT {
        return Err(CallError::Status(status.as_u16()));
    }
    if !crate::policy::validate::is_json(&media) {
        return Err(CallError::NotJson(if media.is_empty() { "no content type".into() } else { media }));
    }
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    let mut body = std::pin::pin!(http_body_util::Limited::new(body, limit));
    let mut bytes = bytes::BytesMut::new();
    loop {
        // `timeouts.read`: the longest pause between two pieces of the body.
        let frame = match tokio::time::timeout(read_timeout, body.frame()).await {
            Err(_) => return Err(CallError::Timeout(read_timeout)),
            Ok(None) => break,
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(e))) if e.is::<http_body_util::LengthLimitError>() => return Err(CallError::TooLarge(max)),
            Ok(Some(Err(_))) => return Err(CallError::Unreachable { sent: true }),
        };
        if let Ok(data) = frame.into_data() {
            held.grow(data.len() as u64).map_err(CallError::OverBudget)?;
            bytes.extend_from_slice(&data);
        }
    }
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| match e.to_string().contains("recursion limit") {
        true => CallError::TooDeep,
        false => CallError::BadJson,
    })?;
    // Held parsed until the response is made: counted at what it takes
    // (a document of small values takes several times its text).
    held.resize(crate::http::buffer_budget::json_size(&value)).map_err(CallError::OverBudget)?;
    Ok(value)
}

/// The whole request failed: a call that had to succeed did not.
fn failed(
    plan: &AggregatePlan,
    results: &[Option<Result<Value, CallError>>],
    culprit: usize,
    request_id: &HeaderValue,
) -> Response<Body> {
    let errors: Vec<Value> = plan
        .calls
        .iter()
        .zip(results)
        .filter_map(|(c, r)| match r {
            Some(Err(e)) => Some(e.entry(&c.name)),
            _ => None,
        })
        .collect();
    // The status of the root cause: a call that failed because the one it
    // waited for did is judged by that one.
    let root = &results[root_cause(plan, results, culprit)];
    let status = match root {
        Some(Err(CallError::Timeout(_) | CallError::ConnectTimeout(_))) => StatusCode::GATEWAY_TIMEOUT,
        // Refused by its upstream's limits, breaker or health, or by the
        // gateway's memory: 503, as a proxied request.
        Some(Err(CallError::Refused(_) | CallError::OverBudget(_))) => StatusCode::SERVICE_UNAVAILABLE,
        // What the client itself is told by the service: the resource the
        // answer is made of is not there (404, 410), or the client is to
        // slow down (429, whose clients back off where a 502's retry at
        // once). Another 4xx says the gateway's call was wrong: 502.
        Some(Err(CallError::Status(s @ (404 | 410 | 429)))) => {
            StatusCode::from_u16(*s).unwrap_or(StatusCode::BAD_GATEWAY)
        }
        _ => StatusCode::BAD_GATEWAY,
    };
    let detail = format!("the call `{}` failed, and the answer cannot be made without it", plan.calls[culprit].name);
    let mut answer = problem::with_members(status, &detail, request_id, [("errors", Value::Array(errors))]);
    if let Some(Err(CallError::OverBudget(_))) = root {
        answer.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    answer.map(Body::full)
}

/// The answer: each call's (filtered) JSON merged as configured, and what failed.
fn merged<'p>(plan: &'p AggregatePlan, results: Vec<Option<Result<Value, CallError>>>) -> Response<Body> {
    let mut doc = Map::new();
    let mut errors = Vec::new();
    let mut failed: Vec<&str> = Vec::new();
    // A flat merge keeps the first value of a field (docs/aggregation.md),
    // whoever sets it: an object's member, or a call's own key. What a call
    // lost is logged once per call (an answer may bring thousands of them).
    let mut dropped: Vec<(&str, usize, String)> = Vec::new();
    let mut put = |doc: &mut Map<String, Value>, call: &'p CallPlan, k: String, v: Value| {
        if !doc.contains_key(&k) {
            doc.insert(k, v);
        } else if let Some(d) = dropped.iter_mut().find(|d| d.0 == &*call.name) {
            d.1 += 1;
        } else {
            dropped.push((&call.name, 1, k));
        }
    };
    for (call, result) in plan.calls.iter().zip(results) {
        match result {
            Some(Ok(value)) => {
                let value = filter(value, call);
                match (plan.merge, value) {
                    (MergeMode::Flat, Value::Object(members)) => {
                        for (k, v) in members {
                            put(&mut doc, call, k, v);
                        }
                    }
                    (_, value) => put(&mut doc, call, call.key.to_string(), value),
                }
            }
            Some(Err(e)) => {
                errors.push(e.entry(&call.name));
                failed.push(&call.name);
                if call.on_failure == OnFailure::Null {
                    put(&mut doc, call, call.key.to_string(), Value::Null);
                }
            }
            None => {}
        }
    }
    for (call, count, first) in dropped {
        tracing::warn!(
            call,
            fields = count,
            first = %first.escape_debug(),
            "aggregate: fields already set by an earlier call; kept the first"
        );
    }
    let partial = !failed.is_empty();
    let mark = if !partial {
        HeaderValue::from_static("complete")
    } else {
        doc.insert("errors".into(), Value::Array(errors));
        HeaderValue::try_from(format!("partial; failed=\"{}\"", failed.join(",")))
            .unwrap_or(HeaderValue::from_static("partial"))
    };
    // `to_vec`, not `to_string`: no trip through `core::fmt` (a Value always serialises).
    let body = serde_json::to_vec(&Value::Object(doc)).unwrap_or_default();
    let mut resp = Response::new(Body::full(Bytes::from(body)));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut().insert(AGGREGATE, mark);
    if partial {
        resp.extensions_mut().insert(Partial);
    }
    resp
}

/// A partial answer is not the resource: a cache that stored it
/// (heuristically, RFC 9111 §4.2.2, or by a route's `response_headers`)
/// would serve it as complete. Applied after the response steps, so that
/// a route's `Cache-Control` does not undo it.
pub fn keep_partial_uncached(resp: &mut Response<Body>) {
    if resp.extensions().get::<Partial>().is_some() {
        resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// `allow` (only these fields) then `deny` (not these), by dot path; an
/// array's items are filtered one by one.
fn filter(value: Value, call: &CallPlan) -> Value {
    let mut value = match &call.allow {
        Some(paths) => {
            let paths: Vec<&[String]> = paths.iter().map(Vec::as_slice).collect();
            keep(&value, &paths).unwrap_or(Value::Null)
        }
        None => value,
    };
    for path in &call.deny {
        remove(&mut value, path);
    }
    value
}

/// What `paths` allow of `value`: an object's named members, an array's
/// items each so filtered; `None` for anything else (a string where fields
/// are named has none of them: an allow list never lets through a value it
/// does not name, `customer: "4111…"` for `customer.name` included).
fn keep(value: &Value, paths: &[&[String]]) -> Option<Value> {
    match value {
        Value::Array(items) => Some(Value::Array(items.iter().filter_map(|i| keep(i, paths)).collect())),
        Value::Object(members) => {
            let mut out = Map::new();
            for (key, v) in members {
                let rests: Vec<&[String]> = paths.iter().filter(|p| p.first() == Some(key)).map(|p| &p[1..]).collect();
                if rests.is_empty() {
                    continue;
                }
                if rests.iter().any(|r| r.is_empty()) {
                    out.insert(key.clone(), v.clone());
                } else if let Some(kept) = keep(v, &rests) {
                    out.insert(key.clone(), kept);
                }
            }
            Some(Value::Object(out))
        }
        _ => None,
    }
}

fn remove(value: &mut Value, path: &[String]) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(|i| remove(i, path)),
        Value::Object(members) => match path {
            [last] => {
                members.remove(last);
            }
            [first, rest @ ..] => {
                if let Some(v) = members.get_mut(first) {
                    remove(v, rest);
                }
            }
            [] => {}
        },
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(p: &[&str]) -> Vec<Vec<String>> {
        p.iter().map(|s| s.split('.').map(str::to_string).collect()).collect()
    }

    #[test]
    fn allow_and_deny_by_dot_paths_through_arrays() {
        let v = json!([
            { "id": 1, "total": 5, "secret": "x", "customer": { "name": "a", "card": "4111" } },
            { "id": 2, "total": 7, "secret": "y", "customer": { "name": "b", "card": "4222" } }
        ]);
        let allow = paths(&["id", "customer.name"]);
        let allow: Vec<&[String]> = allow.iter().map(Vec::as_slice).collect();
        assert_eq!(
            keep(&v, &allow),
            Some(json!([{ "id": 1, "customer": { "name": "a" } }, { "id": 2, "customer": { "name": "b" } }]))
        );
        // A value that is not an object where fields are named has none of them.
        let odd = json!([1, "secret", { "id": 3, "x": 2 }, { "customer": "4111", "id": 4 }, { "customer": ["4111", { "name": "c", "ssn": 1 }] }]);
        assert_eq!(keep(&odd, &allow), Some(json!([{ "id": 3 }, { "id": 4 }, { "customer": [{ "name": "c" }] }])));
        assert_eq!(keep(&json!("top secret"), &allow), None);
        let mut v = v;
        for p in paths(&["secret", "customer.card"]) {
            remove(&mut v, &p);
        }
        assert_eq!(v[1], json!({ "id": 2, "total": 7, "customer": { "name": "b" } }));
    }

    #[test]
    fn request_path_values_are_escaped_where_they_would_not_stand() {
        let fill = |v: &str, in_query: bool| {
            let mut out = String::new();
            encode_param(v, in_query, &mut out);
            out
        };
        assert_eq!(fill("a\"b{c}|^`<>", false), "a%22b%7Bc%7D%7C%5E%60%3C%3E");
        assert_eq!(fill("a%20b:c@d", false), "a%20b:c@d", "escapes and pchar delimiters stay");
        assert_eq!(fill("x/y&z=1", false), "x/y&z=1");
        assert_eq!(fill("42&admin=true+1;#\"", true), "42%26admin%3Dtrue%2B1%3B%23%22");
    }

    #[test]
    fn placeholders_are_encoded() {
        let mut out = String::new();
        encode_into("a b/c?d&e=é", &mut out);
        assert_eq!(out, "a%20b%2Fc%3Fd%26e%3D%C3%A9");
        let v = json!({ "user": { "id": 42, "tags": ["x"] } });
        assert_eq!(lookup(&v, &paths(&["user.id"])[0]), Some(&json!(42)));
        assert_eq!(lookup(&v, &paths(&["user.tags.0"])[0]), Some(&json!("x")));
        assert_eq!(lookup(&v, &paths(&["user.name"])[0]), None);
    }

    #[test]
    fn numbers_fill_placeholders_exactly_or_not_at_all() {
        let doc: Value =
            serde_json::from_str(r#"[7, -3, 1e2, 100.0, -0, 1.5, 9007199254740993, 9007199254740991.0, 18446744073709551617, 1e300, 9007199254740993.0, -9007199254740992e0]"#)
                .unwrap();
        let written: Vec<Option<String>> =
            doc.as_array().unwrap().iter().map(|v| exact_number(v.as_number().unwrap())).collect();
        let want = [Some("7"), Some("-3"), Some("100"), Some("100"), Some("0"), Some("1.5"), Some("9007199254740993")];
        let want: Vec<Option<String>> = want
            .iter()
            .map(|w| w.map(str::to_string))
            .chain([Some("9007199254740991".into()), None, None, None, None])
            .collect();
        assert_eq!(written, want);
    }
}
