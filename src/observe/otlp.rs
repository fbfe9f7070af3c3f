//! Span export over OTLP/HTTP (protobuf): one SERVER span per sampled
//! request, named `{method} {route}`, with the HTTP semantic-convention
//! attributes and an error status for 5xx and for answers cut short.
//! Spans are queued (bounded; dropped and counted when full) and sent in
//! batches by a task of their own, never on the request path; a batch the
//! collector could not take for now (429, 502, 503, 504, no connection) is
//! sent again after a backoff or its `Retry-After` (the OTLP/HTTP
//! specification), and counted as dropped when it never gets through.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span, status};
use prost::Message;
use tokio::sync::mpsc;

use super::metrics::Counter;
use crate::config::OtlpConfig;
use crate::http::fetch::Fetcher;

/// Spans waiting to be sent; beyond this they are dropped and counted.
const QUEUE: usize = 8192;

/// Export requests' `User-Agent`.
const USER_AGENT: &str = concat!("portcullis/", env!("CARGO_PKG_VERSION"), " (OTLP/HTTP exporter)");
/// The longest value of an attribute the client wrote (path, query,
/// `User-Agent`, host), cut at a character boundary: a head may be 32 KiB,
/// and a queue of full-size spans behind a slow collector would hold
/// hundreds of MB. At this bound it holds ~40 MB at most. (The
/// OpenTelemetry SDKs' `attribute_value_length_limit`.)
const MAX_CLIENT_VALUE: usize = 1024;
/// The longest `tracestate` carried into a span (W3C: 32 members, 512
/// characters are what every vendor must pass on); a longer one is dropped.
const MAX_TRACE_STATE: usize = 512;
/// Spans per export request.
const BATCH: usize = 512;
/// How long a span may wait for its batch to fill.
const LINGER: Duration = Duration::from_secs(1);
/// Sends of one batch at most (the first and the retries).
const SENDS: u32 = 4;
/// The first retry's wait; doubled for each next one.
const BACKOFF: Duration = Duration::from_secs(1);
/// The longest `Retry-After` followed.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// A running exporter.
pub struct Exporter {
    pub config: OtlpConfig,
    /// The `ca` file's contents as started with ([`ca_fingerprint`]): a
    /// reload that keeps the config but finds another file starts anew.
    pub ca: u64,
    queue: mpsc::Sender<Item>,
    dropped: Arc<Counter>,
}

/// What the export task receives.
enum Item {
    Span(Box<Span>),
    /// Send what is queued now, then say so (shutdown).
    Flush(tokio::sync::oneshot::Sender<()>),
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter").field("endpoint", &self.config.endpoint).finish_non_exhaustive()
    }
}

/// What a finished request's span says.
pub struct Finished<'a> {
    pub trace_id: &'a [u8; 32],
    pub span_id: &'a [u8; 16],
    pub parent: Option<&'a [u8; 16]>,
    /// The trace's W3C flags (`sampled`, `random-trace-id`), as sent upstream.
    pub trace_flags: u8,
    /// The caller's `tracestate`, when its trace was continued.
    pub trace_state: Option<&'a str>,
    pub start: SystemTime,
    pub duration: Duration,
    /// `-` for a request whose head could not be read (nor its path).
    pub method: &'a str,
    pub route: Option<&'a str>,
    pub request: &'a super::SpanRequest,
    pub status: u16,
    pub client: std::net::IpAddr,
    pub flag: super::Flag,
}

fn unhex<const N: usize>(hex: &[u8]) -> Vec<u8> {
    let digit = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
    hex.chunks_exact(2).take(N).map(|p| digit(p[0]) << 4 | digit(p[1])).collect()
}

fn attribute(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue { key: key.to_string(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

/// The spans' resource, as OpenTelemetry SDKs make it: `service.name`
/// `portcullis` and `service.version`, then `OTEL_RESOURCE_ATTRIBUTES`
/// (`key=value,…`, values percent-encoded; one malformed pair discards
/// the whole variable, as the specification asks), then
/// `OTEL_SERVICE_NAME`, which wins. Several gateways in one backend are
/// told apart so (`service.instance.id`, `deployment.environment`).
fn resource_attributes(env: impl Fn(&str) -> Option<String>) -> Vec<KeyValue> {
    let mut pairs: Vec<(String, String)> = vec![
        ("service.name".into(), "portcullis".into()),
        ("service.version".into(), env!("CARGO_PKG_VERSION").into()),
    ];
    let mut set = |key: String, value: String| match pairs.iter_mut().find(|(k, _)| *k == key) {
        Some(pair) => pair.1 = value,
        None => pairs.push((key, value)),
    };
    if let Some(listed) = env("OTEL_RESOURCE_ATTRIBUTES").filter(|v| !v.trim().is_empty()) {
        let parsed: Option<Vec<(String, String)>> = listed
            .split(',')
            .map(|pair| {
                let (key, value) = pair.split_once('=')?;
                let key = key.trim();
                let value = percent_encoding::percent_decode_str(value.trim()).decode_utf8().ok()?;
                (!key.is_empty()).then(|| (key.to_string(), value.into_owned()))
            })
            .collect();
        match parsed {
            Some(parsed) => parsed.into_iter().for_each(|(k, v)| set(k, v)),
            None => tracing::warn!("OTEL_RESOURCE_ATTRIBUTES is not `key=value,…`: ignored"),
        }
    }
    if let Some(name) = env("OTEL_SERVICE_NAME").filter(|v| !v.trim().is_empty()) {
        set("service.name".into(), name.trim().to_string());
    }
    pairs.into_iter().map(|(k, v)| attribute(&k, any_value::Value::StringValue(v))).collect()
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

fn text(key: &str, value: impl Into<String>) -> KeyValue {
    attribute(key, any_value::Value::StringValue(value.into()))
}

/// An attribute whose value the client wrote, cut to `MAX_CLIENT_VALUE` bytes.
fn client_text(key: &str, value: &str) -> KeyValue {
    text(key, truncated(value, MAX_CLIENT_VALUE))
}

/// `value`'s first `max` bytes at most, ending at a character boundary.
fn truncated(value: &str, max: usize) -> &str {
    if value.len() <= max {
        return value;
    }
    let mut end = max;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

/// The span of a finished request, with the HTTP server span's attributes
/// of the OpenTelemetry semantic conventions. `http.route` is the route's
/// name, as the metrics' `http_route` label is (the gateway's routes match
/// by host, method, headers and version too, not by a path template alone).
fn span_of(f: &Finished<'_>) -> Span {
    // The semantic conventions' methods; any other (a client's word, of
    // any case) is `_OTHER`, named `HTTP`, with the original beside it.
    let known =
        matches!(f.method, "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "CONNECT" | "OPTIONS" | "TRACE" | "PATCH");
    let (name_method, method) = if known { (f.method, f.method) } else { ("HTTP", "_OTHER") };
    let name = match f.route {
        Some(route) => format!("{name_method} {route}"),
        None => name_method.to_string(),
    };
    let r = f.request;
    let mut attributes = vec![
        text("http.request.method", method),
        attribute("http.response.status_code", any_value::Value::IntValue(i64::from(f.status))),
        text("url.scheme", r.scheme),
        text("network.protocol.version", r.protocol),
        text("client.address", f.client.to_string()),
        text("portcullis.response_flag", f.flag.code()),
    ];
    // A head that could not be read has no method or path to tell.
    let read = f.method != "-";
    if read {
        attributes.push(client_text("url.path", r.path.as_str()));
    }
    if !known && read {
        attributes.push(client_text("http.request.method_original", f.method));
    }
    for (key, value) in [("url.query", &r.query), ("user_agent.original", &r.user_agent)] {
        if let Some(v) = value {
            attributes.push(client_text(key, v.as_str()));
        }
    }
    if let Some((host, port)) = &r.server {
        attributes.push(client_text("server.address", host.as_str()));
        if let Some(port) = port {
            attributes.push(attribute("server.port", any_value::Value::IntValue(i64::from(*port))));
        }
    }
    if let Some(route) = f.route {
        attributes.push(text("http.route", route));
    }
    let error = error_type(f.status, f.flag);
    if let Some(e) = &error {
        attributes.push(text("error.type", e.clone()));
    }
    Span {
        trace_id: unhex::<16>(f.trace_id),
        span_id: unhex::<8>(f.span_id),
        parent_span_id: f.parent.map(|p| unhex::<8>(p)).unwrap_or_default(),
        trace_state: f.trace_state.filter(|s| s.len() <= MAX_TRACE_STATE).unwrap_or_default().to_string(),
        flags: span_flags(f.trace_flags, f.parent.is_some()),
        name,
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: unix_nanos(f.start),
        end_time_unix_nano: unix_nanos(f.start + f.duration),
        attributes,
        status: Some(Status {
            code: if error.is_some() { status::StatusCode::Error } else { status::StatusCode::Unset } as i32,
            message: String::new(),
        }),
        ..Default::default()
    }
}

/// OTLP's `Span.flags`: the W3C trace flags in the low byte, and (bits 8
/// and 9) that the span says whether its parent is remote, and that it is
/// (a continued trace's parent is the caller's span, in another process).
fn span_flags(trace_flags: u8, parent: bool) -> u32 {
    const HAS_IS_REMOTE: u32 = 0x100;
    const IS_REMOTE: u32 = 0x200;
    u32::from(trace_flags) | HAS_IS_REMOTE | if parent { IS_REMOTE } else { 0 }
}

/// A server span's `error.type`: the status code of a 5xx answer (the
/// semantic conventions' rule), or why an answer was cut short (the client
/// left, the upstream broke off mid-body: the span's status is an error
/// whatever the status code said). `None`: no error.
fn error_type(status: u16, flag: super::Flag) -> Option<String> {
    use super::Flag;
    match flag {
        Flag::ClientClosed => Some("client_closed".into()),
        Flag::UpstreamClosed if status < 500 => Some("upstream_closed".into()),
        Flag::UpstreamTimeout if status < 500 => Some("upstream_timeout".into()),
        _ if status >= 500 => Some(status.to_string()),
        _ => None,
    }
}

/// A hash of the `ca` file's bytes (0 without `ca`; 1 when unreadable):
/// a certificate rotated in place under the same name is a change.
pub fn ca_fingerprint(config: &OtlpConfig) -> u64 {
    use std::hash::{Hash, Hasher};
    let Some(path) = &config.ca else { return 0 };
    let Ok(bytes) = crate::config::read_file(std::path::Path::new(path)) else { return 1 };
    let mut hash = std::hash::DefaultHasher::new();
    bytes.hash(&mut hash);
    hash.finish().max(2)
}

impl Exporter {
    /// Starts the export task (inside a Tokio runtime). `dropped` counts
    /// spans the queue had no room for, and those the collector never took.
    pub fn start(config: &OtlpConfig, dropped: Arc<Counter>) -> Result<Exporter, String> {
        // OpenTelemetry's default export timeout (`OTEL_EXPORTER_OTLP_TIMEOUT`):
        // at 5 s a collector answering in 8 got every batch four times.
        let fetcher = Fetcher::new(config.ca.as_deref().map(std::path::Path::new), Duration::from_secs(10))?;
        let url = format!("{}/v1/traces", config.endpoint.trim_end_matches('/'));
        let mut headers: Vec<(HeaderName, HeaderValue)> = config
            .headers
            .iter()
            .filter_map(|(k, v)| {
                Some((HeaderName::try_from(k.as_str()).ok()?, HeaderValue::try_from(v.as_str()).ok()?))
            })
            .collect();
        // The exporter names itself (OTLP exporter spec: SHOULD), unless the config does.
        if !headers.iter().any(|(name, _)| name == http::header::USER_AGENT) {
            headers.push((http::header::USER_AGENT, HeaderValue::from_static(USER_AGENT)));
        }
        let (queue, spans) = mpsc::channel(QUEUE);
        tokio::spawn(send_batches(spans, fetcher, url, headers, dropped.clone()));
        Ok(Exporter { config: config.clone(), ca: ca_fingerprint(config), queue, dropped })
    }

    /// Queues the span of a finished request; never waits.
    pub fn export(&self, f: &Finished<'_>) {
        let span = span_of(f);
        if self.queue.try_send(Item::Span(Box::new(span))).is_err() {
            self.dropped.inc();
        }
    }

    /// Sends the spans queued so far, waiting at most `wait` (at shutdown:
    /// the last requests' spans are not lost with the process).
    pub async fn flush(&self, wait: Duration) {
        let (done, sent) = tokio::sync::oneshot::channel();
        if tokio::time::timeout(wait, self.queue.send(Item::Flush(done))).await.is_ok() {
            let _ = tokio::time::timeout(wait, sent).await;
        }
    }
}

async fn send_batches(
    mut spans: mpsc::Receiver<Item>,
    fetcher: Fetcher,
    url: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    dropped: Arc<Counter>,
) {
    let resource = Resource { attributes: resource_attributes(|name| std::env::var(name).ok()), ..Default::default() };
    let scope = InstrumentationScope {
        name: "portcullis".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    };
    let mut failures_logged = 0u32;
    while let Some(first) = spans.recv().await {
        let mut flushed = None;
        let mut batch = match first {
            Item::Span(span) => vec![*span],
            Item::Flush(done) => {
                let _ = done.send(());
                continue;
            }
        };
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, spans.recv()).await {
                Ok(Some(Item::Span(s))) => batch.push(*s),
                Ok(Some(Item::Flush(done))) => {
                    flushed = Some(done);
                    break;
                }
                Ok(None) | Err(_) => break,
            }
        }
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(resource.clone()),
                scope_spans: vec![ScopeSpans { scope: Some(scope.clone()), spans: batch, schema_url: String::new() }],
                schema_url: String::new(),
            }],
        };
        let count = request.resource_spans[0].scope_spans[0].spans.len();
        let body = Bytes::from(request.encode_to_vec());
        match send(&fetcher, &url, body, &headers).await {
            Ok(None) => failures_logged = 0,
            Ok(Some(rejected)) => {
                // Taken, but some spans refused: not sent again (the spec's rule).
                dropped.add(rejected.spans.min(count as u64));
                note_failure(&mut failures_logged, &rejected.to_string());
            }
            Err(error) => {
                dropped.add(count as u64);
                note_failure(&mut failures_logged, &error);
            }
        }
        if let Some(done) = flushed {
            let _ = done.send(());
        }
    }
}

/// Spans a collector took the batch without (OTLP's `partial_success`).
struct Rejected {
    spans: u64,
    why: String,
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the collector rejected {} spans of the batch", self.spans)?;
        if !self.why.is_empty() {
            write!(f, ": {}", self.why.escape_debug())?;
        }
        Ok(())
    }
}

/// The spans a success answer says were rejected, if any.
fn rejected(answer: &[u8]) -> Option<Rejected> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
    let partial = ExportTraceServiceResponse::decode(answer).ok()?.partial_success?;
    let spans = u64::try_from(partial.rejected_spans).ok().filter(|n| *n > 0)?;
    let why: String = partial.error_message.chars().take(200).collect();
    Some(Rejected { spans, why })
}

/// Sends one batch, again after a wait while the collector says (or
/// shows) it is only busy for now; `Ok(Some)`: taken with some spans
/// rejected; `Err`: why it is lost.
async fn send(
    fetcher: &Fetcher,
    url: &str,
    body: Bytes,
    headers: &[(HeaderName, HeaderValue)],
) -> Result<Option<Rejected>, String> {
    let mut wait = BACKOFF;
    let mut sent = 1;
    loop {
        let (error, retry_after) = match fetcher.post(url, "application/x-protobuf", body.clone(), headers).await {
            Ok((status, _, answer)) if status.is_success() => return Ok(rejected(&answer)),
            Ok((status, answer, _)) if retryable(status) => {
                (format!("the collector answered {status}"), retry_after(&answer))
            }
            Ok((status, _, _)) => return Err(format!("the collector answered {status}")),
            // A refused certificate is not a passing outage.
            Err(e) if e.lasting => return Err(e.message),
            Err(e) => (e.message, None),
        };
        if sent == SENDS {
            return Err(format!("{error} ({SENDS} tries)"));
        }
        tokio::time::sleep(retry_after.unwrap_or(wait)).await;
        wait *= 2;
        sent += 1;
    }
}

/// OTLP/HTTP: 429, 502, 503 and 504 are worth another try; others are not.
fn retryable(status: http::StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 502 | 503 | 504)
}

/// A `Retry-After` in seconds (an HTTP date is not followed: the backoff is), at most `MAX_RETRY_AFTER`.
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

/// Logs the first few export failures in a row, then every hundredth,
/// until one succeeds (the spans lost are counted either way).
fn note_failure(logged: &mut u32, error: &str) {
    if *logged < 3 || logged.is_multiple_of(100) {
        tracing::warn!(error, failed_in_a_row = *logged + 1, "OTLP span export failed; spans of this batch are lost");
    }
    *logged += 1;
}

#[cfg(test)]
mod tests {
    #[test]
    fn resource_attributes_follow_the_otel_environment() {
        let read = |vars: &'static [(&'static str, &'static str)]| {
            let attributes =
                super::resource_attributes(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string()));
            attributes
                .into_iter()
                .map(|kv| match kv.value.and_then(|v| v.value) {
                    Some(any_value::Value::StringValue(s)) => (kv.key, s),
                    other => panic!("{other:?}"),
                })
                .collect::<Vec<_>>()
        };
        let plain = read(&[]);
        assert_eq!(plain[0], ("service.name".to_string(), "portcullis".to_string()));
        let listed = read(&[("OTEL_RESOURCE_ATTRIBUTES", "service.name=edge, deployment.environment=prod%20eu")]);
        assert!(listed.contains(&("service.name".into(), "edge".into())), "{listed:?}");
        assert!(listed.contains(&("deployment.environment".into(), "prod eu".into())), "{listed:?}");
        let named = read(&[("OTEL_RESOURCE_ATTRIBUTES", "service.name=edge"), ("OTEL_SERVICE_NAME", "gw-eu")]);
        assert!(named.contains(&("service.name".into(), "gw-eu".into())), "OTEL_SERVICE_NAME wins: {named:?}");
        // One malformed pair: the variable is ignored whole.
        let bad = read(&[("OTEL_RESOURCE_ATTRIBUTES", "a=1,oops")]);
        assert_eq!(bad, plain);
    }

    use super::*;

    #[test]
    fn span_flags_carry_the_trace_flags_and_whether_the_parent_is_remote() {
        assert_eq!(span_flags(0b11, false), 0x103, "a trace the gateway began: no parent, known not remote");
        assert_eq!(span_flags(0b01, true), 0x301, "a caller's trace: its span is the remote parent");
    }
    use crate::observe::Flag;

    #[test]
    fn errors_are_5xx_and_answers_cut_short() {
        assert_eq!(error_type(200, Flag::None), None);
        assert_eq!(error_type(404, Flag::NoRoute), None, "a client's error is not the server span's");
        assert_eq!(error_type(502, Flag::UpstreamConnectFailure).as_deref(), Some("502"));
        assert_eq!(error_type(499, Flag::ClientClosed).as_deref(), Some("client_closed"));
        assert_eq!(error_type(200, Flag::UpstreamClosed).as_deref(), Some("upstream_closed"));
    }

    #[test]
    fn retry_after_in_seconds_is_followed_up_to_a_bound() {
        let mut h = http::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("86400"));
        assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER));
        h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&h), None, "a date: the backoff's wait");
        assert!(retryable(http::StatusCode::TOO_MANY_REQUESTS) && !retryable(http::StatusCode::BAD_REQUEST));
    }
}
