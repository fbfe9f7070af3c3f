//! Span export over OTLP/HTTP (protobuf): one SERVER span per sampled
//! request, named `{method} {route}`, with the HTTP semantic-convention
//! attributes and an error status for 5xx. Spans are queued (bounded;
//! dropped and counted when full) and sent in batches by a task of their
//! own, never on the request path.

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
/// Spans per export request.
const BATCH: usize = 512;
/// How long a span may wait for its batch to fill.
const LINGER: Duration = Duration::from_secs(1);

/// A running exporter.
pub struct Exporter {
    pub config: OtlpConfig,
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
    pub start: SystemTime,
    pub duration: Duration,
    pub method: &'a str,
    pub route: Option<&'a str>,
    pub path: &'a str,
    pub status: u16,
    pub client: std::net::IpAddr,
    pub flag: &'static str,
}

fn unhex<const N: usize>(hex: &[u8]) -> Vec<u8> {
    let digit = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
    hex.chunks_exact(2).take(N).map(|p| digit(p[0]) << 4 | digit(p[1])).collect()
}

fn attribute(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue { key: key.to_string(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

impl Exporter {
    /// Starts the export task (inside a Tokio runtime). `dropped` counts
    /// spans the queue had no room for.
    pub fn start(config: &OtlpConfig, dropped: Arc<Counter>) -> Result<Exporter, String> {
        let fetcher = Fetcher::new(None, Duration::from_secs(5))?;
        let url = format!("{}/v1/traces", config.endpoint.trim_end_matches('/'));
        let headers: Vec<(HeaderName, HeaderValue)> = config
            .headers
            .iter()
            .filter_map(|(k, v)| {
                Some((HeaderName::try_from(k.as_str()).ok()?, HeaderValue::try_from(v.as_str()).ok()?))
            })
            .collect();
        let (queue, spans) = mpsc::channel(QUEUE);
        tokio::spawn(send_batches(spans, fetcher, url, headers));
        Ok(Exporter { config: config.clone(), queue, dropped })
    }

    /// Queues the span of a finished request; never waits.
    pub fn export(&self, f: &Finished<'_>) {
        // The semantic conventions' methods; any other (a client's word, of
        // any case) is `_OTHER`, named `HTTP`, with the original beside it.
        let known =
            matches!(f.method, "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "CONNECT" | "OPTIONS" | "TRACE" | "PATCH");
        let (name_method, method) = if known { (f.method, f.method) } else { ("HTTP", "_OTHER") };
        let name = match f.route {
            Some(route) => format!("{name_method} {route}"),
            None => name_method.to_string(),
        };
        let mut attributes = vec![
            attribute("http.request.method", any_value::Value::StringValue(method.to_string())),
            attribute("url.path", any_value::Value::StringValue(f.path.to_string())),
            attribute("http.response.status_code", any_value::Value::IntValue(i64::from(f.status))),
            attribute("client.address", any_value::Value::StringValue(f.client.to_string())),
            attribute("portcullis.response_flag", any_value::Value::StringValue(f.flag.to_string())),
        ];
        if !known {
            attributes.push(attribute("http.request.method_original", any_value::Value::StringValue(f.method.into())));
        }
        if let Some(route) = f.route {
            attributes.push(attribute("http.route", any_value::Value::StringValue(route.to_string())));
        }
        let error = f.status >= 500;
        let span = Span {
            trace_id: unhex::<16>(f.trace_id),
            span_id: unhex::<8>(f.span_id),
            parent_span_id: f.parent.map(|p| unhex::<8>(p)).unwrap_or_default(),
            flags: 1,
            name,
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: unix_nanos(f.start),
            end_time_unix_nano: unix_nanos(f.start + f.duration),
            attributes,
            status: Some(Status {
                code: if error { status::StatusCode::Error } else { status::StatusCode::Unset } as i32,
                message: String::new(),
            }),
            ..Default::default()
        };
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
) {
    let resource = Resource {
        attributes: vec![
            attribute("service.name", any_value::Value::StringValue("portcullis".into())),
            attribute("service.version", any_value::Value::StringValue(env!("CARGO_PKG_VERSION").into())),
        ],
        ..Default::default()
    };
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
        let body = Bytes::from(request.encode_to_vec());
        match fetcher.post(&url, "application/x-protobuf", body, &headers).await {
            Ok((status, _)) if status.is_success() => failures_logged = 0,
            Ok((status, _)) => note_failure(&mut failures_logged, &format!("the collector answered {status}")),
            Err(e) => note_failure(&mut failures_logged, &e),
        }
        if let Some(done) = flushed {
            let _ = done.send(());
        }
    }
}

/// Logs the first few export failures in a row, then stays quiet until one succeeds.
fn note_failure(logged: &mut u32, error: &str) {
    if *logged < 3 {
        tracing::warn!(error, "OTLP span export failed; spans of this batch are lost");
    }
    *logged += 1;
}
