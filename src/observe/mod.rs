//! What operators see: the access log, the metrics and trace context. The
//! engine fills a [`Pending`] for each request at its last response step;
//! the response body carries it and, when the body is done (sent,
//! abandoned or broken), it records the request's metrics and queues its
//! log line.

pub mod access_log;
pub mod flag;
pub mod metrics;
#[cfg(feature = "otlp")]
pub mod otlp;
pub mod own_log;
pub mod trace;

use std::cell::RefCell;
use std::sync::Arc;

use tokio::time::Instant;

use http::{Method, StatusCode};

use access_log::{AccessLog, Record};
pub use flag::Flag;
use metrics::{Gauge, Registry, ServerSeries};

/// A plan's observers: compiled with it, shared by its requests.
#[derive(Debug)]
pub struct Observer {
    pub registry: Arc<Registry>,
    /// Set when the plan goes live (`Plan::start_background`).
    pub access_log: std::sync::OnceLock<Arc<AccessLog>>,
    /// Query parameters never logged.
    pub redact: access_log::Redact,
    pub active: Arc<Gauge>,
    /// Each route's request series (by route index), then the series of
    /// requests that matched no route.
    pub routes: Vec<Arc<ServerSeries>>,
    /// Each route's name, by index (for the log).
    pub route_names: Vec<Arc<access_log::LogName>>,
    /// Share of new traces marked sampled (0 without an exporter).
    pub sample: f64,
    /// Request metrics are recorded (the admin API is configured to serve them).
    pub metrics: bool,
    /// Set when the plan goes live, when `tracing.otlp` is.
    #[cfg(feature = "otlp")]
    pub exporter: std::sync::OnceLock<Arc<otlp::Exporter>>,
}

impl Observer {
    /// The series of requests without a route.
    pub fn unrouted(&self) -> &Arc<ServerSeries> {
        self.routes.last().expect("the unrouted series is always there")
    }

    /// Whether anything records requests: metrics (when the admin API can
    /// serve them), the access log, span export.
    pub fn watching(&self) -> bool {
        self.metrics || self.access_log.get().is_some() || self.exports()
    }

    /// Whether spans are exported.
    pub fn exports(&self) -> bool {
        #[cfg(feature = "otlp")]
        return self.exporter.get().is_some();
        #[cfg(not(feature = "otlp"))]
        false
    }

    /// Whether a new trace is sampled.
    pub fn sample(&self) -> bool {
        self.sample > 0.0 && (self.sample >= 1.0 || rand::random::<f64>() < self.sample)
    }
}

/// A request in progress as the observers see it, until its response body is done.
#[derive(Debug)]
pub struct Pending {
    /// `None` only while the box waits, finished, for another request.
    pub observer: Option<Arc<Observer>>,
    /// The route's index in `observer.routes` (`None`: no route).
    pub series: Option<usize>,
    pub start: Instant,
    pub method: Method,
    pub status: StatusCode,
    pub request_bytes: u64,
    pub response_bytes: u64,
    /// No body follows this head (HEAD, 1xx, 204, 304): done once sent.
    pub bodiless: bool,
    /// The access log line, when there is an access log.
    pub record: Option<Record>,
    pub flag: Flag,
    /// The span to export, for a sampled request when spans are exported.
    #[cfg_attr(not(feature = "otlp"), allow(dead_code))]
    pub span: Option<Box<SpanStart>>,
}

/// A sampled request's span, until it ends.
#[derive(Debug)]
#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
pub struct SpanStart {
    pub trace: trace::TraceContext,
    /// The caller's `tracestate` (its lines joined), when its trace is continued.
    pub trace_state: Option<String>,
    /// Wall time at arrival (spans carry Unix times).
    pub wall: std::time::SystemTime,
    pub request: SpanRequest,
    pub client: std::net::IpAddr,
}

/// What a span tells of its request (its semantic-convention attributes).
#[derive(Debug)]
#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
pub struct SpanRequest {
    pub path: String,
    /// Redacted as the access log's `url.query`.
    pub query: Option<String>,
    /// `http` or `https`: the listener's.
    pub scheme: &'static str,
    /// `1.0`, `1.1` or `2`.
    pub protocol: &'static str,
    pub user_agent: Option<String>,
    /// The host the request names (`:authority` or `Host`), and its port when one is written.
    pub server: Option<(String, Option<u16>)>,
}

/// How a response body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Every byte was handed to the connection.
    Complete,
    /// The upstream broke off mid-body.
    UpstreamBroke,
    /// The upstream sent nothing of the body for `timeouts.read`: cut.
    UpstreamStalled,
    /// The client left (or the connection was cut) before the end.
    ClientLeft,
    /// A tunnel closed for carrying nothing for its idle time.
    Idle,
}

/// Finished `Pending`s a thread keeps for its next requests (log text
/// buffer included): with mimalloc, a block freed and asked for again one
/// request later takes its slow path both ways (~170 instructions for the
/// box, as much again for the text).
const SPARES_KEPT: usize = 16;

/// The largest log text buffer kept with a spare.
const SPARE_TEXT_KEPT: usize = 4096;

thread_local! {
    // Boxes, not values: the allocation itself is what is reused.
    #[allow(clippy::vec_box)]
    static SPARES: RefCell<Vec<Box<Pending>>> = const { RefCell::new(Vec::new()) };
}

impl Pending {
    /// The `Pending` of a request that arrived at `start`: a spare of this
    /// thread's when there is one, every field set anew.
    pub fn take(observer: Arc<Observer>, start: Instant, method: &Method) -> Box<Pending> {
        let spare = SPARES.with(|s| s.try_borrow_mut().ok().and_then(|mut s| s.pop()));
        let Some(mut p) = spare else {
            return Box::new(Pending {
                observer: Some(observer),
                series: None,
                start,
                method: method.clone(),
                status: StatusCode::OK,
                request_bytes: 0,
                response_bytes: 0,
                bodiless: false,
                record: None,
                flag: Flag::None,
                span: None,
            });
        };
        p.observer = Some(observer);
        p.series = None;
        p.start = start;
        p.method = method.clone();
        p.status = StatusCode::OK;
        p.request_bytes = 0;
        p.response_bytes = 0;
        p.bodiless = false;
        p.flag = Flag::None;
        p.span = None;
        p
    }

    /// Keeps a finished box for another request of this thread, without
    /// anything that would hold the plan (or its access log) alive.
    fn recycle(mut self: Box<Self>) {
        self.observer = None;
        self.span = None;
        match &mut self.record {
            Some(r) if r.text.capacity() <= SPARE_TEXT_KEPT => r.release(),
            _ => self.record = None,
        }
        SPARES.with(|s| {
            if let Ok(mut s) = s.try_borrow_mut()
                && s.len() < SPARES_KEPT
            {
                s.push(self);
            }
        });
    }

    /// Records the request, then keeps the box for another.
    pub fn finish(mut self: Box<Self>, ending: Ending) {
        self.report(ending);
        self.recycle();
    }

    /// Works in the box: moving a `Pending` (and its log record) out of it
    /// cost a few hundred bytes of copying a request.
    fn report(&mut self, ending: Ending) {
        let p = self;
        let flag = match ending {
            Ending::Complete => p.flag,
            Ending::UpstreamBroke => Flag::UpstreamClosed,
            Ending::UpstreamStalled => Flag::UpstreamTimeout,
            // A refusal's answer the client did not stay for (an HTTP/2
            // stream the gateway reset as malformed, a client that closes
            // on its 413) keeps the refusal's flag: it says why there was
            // no upstream answer; the client's leaving came after.
            Ending::ClientLeft if p.flag.is_refusal() => p.flag,
            Ending::ClientLeft => Flag::ClientClosed,
            Ending::Idle => Flag::StreamIdle,
        };
        let duration_ns = p.start.elapsed().as_nanos() as u64;
        // A 499's client had left before its answer: what was written
        // (a problem body, to a closed connection) never reached it.
        if p.status.as_u16() == 499 {
            p.response_bytes = 0;
        }
        let Some(observer) = p.observer.as_deref() else { return };
        if observer.metrics {
            observer.active.add(-1);
            let routes = &observer.routes;
            let counted = p.series.and_then(|i| routes.get(i)).unwrap_or(observer.unrouted());
            // `upstream_closed` is a body cut off, not a whole 502 for an
            // upstream that closed before its head (flag `UC` too): that
            // one's status says it, as for a refused connection's 502.
            let cut = match (flag, ending) {
                (_, Ending::UpstreamBroke) => metrics::Cut::UpstreamClosed,
                (_, Ending::UpstreamStalled) => metrics::Cut::UpstreamTimeout,
                (Flag::ClientClosed, _) => metrics::Cut::ClientClosed,
                _ => metrics::Cut::None,
            };
            counted.record(&p.method, p.status, cut, duration_ns, p.request_bytes, p.response_bytes);
        }
        if let (Some(r), Some(log)) = (p.record.as_mut(), observer.access_log.get()) {
            r.duration_ns = duration_ns;
            if let (Some(from), Some(last)) = (r.relayed_from_ns, r.tries.last_mut()) {
                // The relayed try ran until its body ended with the response.
                let relayed = duration_ns.saturating_sub(from);
                if relayed > last.duration_ns {
                    r.upstream_ns = r.upstream_ns.map(|u| u + (relayed - last.duration_ns));
                    last.duration_ns = relayed;
                }
            }
            r.response_bytes = p.response_bytes;
            r.request_bytes = p.request_bytes;
            r.flag = flag;
            log.log(r);
        }
        #[cfg(feature = "otlp")]
        if let (Some(s), Some(exporter)) = (&p.span, observer.exporter.get()) {
            let route = series_name(observer, p.series);
            exporter.export(&otlp::Finished {
                trace_id: &s.trace.trace_id,
                span_id: &s.trace.span_id,
                parent: s.trace.parent.as_ref(),
                trace_flags: s.trace.flags(),
                trace_state: s.trace_state.as_deref(),
                start: s.wall,
                duration: std::time::Duration::from_nanos(duration_ns),
                method: p.method.as_str(),
                route: route.as_deref(),
                request: &s.request,
                status: p.status.as_u16(),
                client: s.client,
                flag,
            });
        }
    }
}

/// The route name of a series index, for spans.
#[cfg(feature = "otlp")]
fn series_name(observer: &Observer, series: Option<usize>) -> Option<Arc<str>> {
    series.and_then(|i| observer.route_names.get(i)).map(|n| n.text.clone())
}
