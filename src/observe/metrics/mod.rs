//! Metrics: the registry that names every series, and the Prometheus text
//! and OpenMetrics renderings of `GET /metrics`.
//!
//! Every label value comes from the config (route, upstream, target,
//! listener, provider and limit names) or from a small fixed set (methods,
//! status codes, reasons); nothing a client sends becomes a label. Series
//! are registered when a plan is compiled and held by the plan: the
//! registry keeps them weakly, so a reload keeps the counts of whatever it
//! keeps (same names) and drops what it removed.

pub mod cells;
pub mod table;

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, Weak};

use http::{Method, StatusCode};

pub use cells::{Counter, DURATION, Gauge, Histogram, SIZE};
use table::{Table, overflow_class};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
    Info,
}

/// Every family the gateway exports, in the order `/metrics` lists them.
const FAMILIES: &[(&str, Kind, &str)] = &[
    (
        "http_server_request_duration_seconds",
        Kind::Histogram,
        "Time from a request's arrival to its response's last byte.",
    ),
    ("http_server_request_body_size_bytes", Kind::Histogram, "Request body bytes read from clients."),
    ("http_server_response_body_size_bytes", Kind::Histogram, "Response body bytes sent to clients."),
    ("http_server_active_requests", Kind::Gauge, "Requests being served."),
    (
        "http_client_request_duration_seconds",
        Kind::Histogram,
        "Time from sending a request upstream to its response head.",
    ),
    ("portcullis_auth_failures", Kind::Counter, "Requests refused by authentication."),
    ("portcullis_rate_limit_decisions", Kind::Counter, "Rate-limit and quota decisions."),
    (
        "portcullis_rate_limit_store_fallbacks",
        Kind::Counter,
        "Times the shared rate-limit store failed and its fallback applied.",
    ),
    ("portcullis_rate_limit_keys", Kind::Gauge, "Keys held by the in-memory rate-limit store."),
    (
        "portcullis_validation_failures",
        Kind::Counter,
        "Requests that failed validation (refused, or let through in report mode), and upstream responses that did not match the document (in=\"response\").",
    ),
    ("portcullis_connections", Kind::Gauge, "Client connections."),
    ("portcullis_tls_handshake_failures", Kind::Counter, "TLS handshakes that failed."),
    ("portcullis_upstream_connections", Kind::Gauge, "Upstream connections and requests in flight."),
    ("portcullis_upstream_targets", Kind::Gauge, "Upstream targets by health state."),
    ("portcullis_upstream_retries", Kind::Counter, "Retries sent, and retries the budget refused."),
    ("portcullis_upstream_ejections", Kind::Counter, "Targets ejected by passive health checks (or that would be)."),
    ("portcullis_upstream_refusals", Kind::Counter, "Requests refused before an upstream try, by rule."),
    ("portcullis_upstream_breaker_open", Kind::Gauge, "Circuit breaker state: 0 closed, 0.5 half-open, 1 open."),
    (
        "portcullis_aggregate_call_failures",
        Kind::Counter,
        "Aggregate calls that failed, by reason (a partial answer is still a 200).",
    ),
    (
        "portcullis_buffered_bytes",
        Kind::Gauge,
        "Bytes of bodies read whole (validated request bodies, aggregate answers) held in memory.",
    ),
    ("portcullis_buffer_refusals", Kind::Counter, "Requests refused because max_buffered bytes were held already."),
    ("portcullis_config_reloads", Kind::Counter, "Config reloads, by result."),
    ("portcullis_config_info", Kind::Info, "The config in use (its hash)."),
    ("portcullis_config_last_reload_timestamp_seconds", Kind::Gauge, "When the config in use was loaded (Unix time)."),
    (
        "portcullis_access_log_dropped",
        Kind::Counter,
        "Access log lines dropped: the writer fell behind, or a write failed (a full disk).",
    ),
    (
        "portcullis_trace_spans_dropped",
        Kind::Counter,
        "Spans dropped: the OTLP queue was full or the collector never took them.",
    ),
    ("portcullis_build_info", Kind::Info, "The gateway's version."),
];

/// Label pairs, names from the code and values from the config.
pub type Labels = Vec<(&'static str, String)>;

enum Held {
    Counter(Weak<Counter>),
    Gauge(Weak<Gauge>),
    /// A value read at scrape time (a map's size, a pool's idle count):
    /// the newest one still alive is reported. Older ones are kept while
    /// they live: a reload that is refused drops the plan it built (and
    /// the probes it registered), and the live plan's probes must report
    /// again, not leave the family empty until the next good reload.
    Probe(Vec<Weak<dyn Fn() -> f64 + Send + Sync>>),
    Server(Weak<ServerSeries>),
    Client(Weak<ClientSeries>),
}

impl Held {
    fn alive(&self) -> bool {
        match self {
            Held::Counter(w) => w.strong_count() > 0,
            Held::Gauge(w) => w.strong_count() > 0,
            Held::Probe(ws) => ws.iter().any(|w| w.strong_count() > 0),
            Held::Server(w) => w.strong_count() > 0,
            Held::Client(w) => w.strong_count() > 0,
        }
    }
}

/// Names every series; shared by a gateway's plans across reloads.
#[derive(Default)]
pub struct Registry {
    entries: Mutex<Entries>,
}

/// The series by family and labels. A map, not a list: a config with
/// thousands of routes registers a few series each, and a list searched on
/// every registration made loading it quadratic (20,000 routes took
/// minutes). Series whose owner dropped them are swept once as many have
/// been registered since the last sweep as were alive after it.
#[derive(Default)]
struct Entries {
    map: std::collections::HashMap<(&'static str, Labels), Held>,
    since_sweep: usize,
}

impl Entries {
    fn sweep_now_and_then(&mut self) {
        self.since_sweep += 1;
        if self.since_sweep > self.map.len() / 2 {
            self.map.retain(|_, held| held.alive());
            self.since_sweep = 0;
        }
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

macro_rules! get_or_make {
    ($self:ident, $family:expr, $labels:expr, $variant:ident, $make:expr) => {{
        let mut entries = $self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let key = ($family, $labels);
        let found = match entries.map.get(&key) {
            Some(Held::$variant(w)) => w.upgrade(),
            _ => None,
        };
        found.unwrap_or_else(|| {
            let made = Arc::new($make);
            entries.map.insert(key, Held::$variant(Arc::downgrade(&made)));
            entries.sweep_now_and_then();
            made
        })
    }};
}

impl Registry {
    pub fn counter(&self, family: &'static str, labels: Labels) -> Arc<Counter> {
        get_or_make!(self, family, labels, Counter, Counter::default())
    }

    pub fn gauge(&self, family: &'static str, labels: Labels) -> Arc<Gauge> {
        get_or_make!(self, family, labels, Gauge, Gauge::default())
    }

    /// A route's request series (`http_server_*`).
    pub fn server(&self, route: &str) -> Arc<ServerSeries> {
        get_or_make!(
            self,
            "http_server_request_duration_seconds",
            vec![("http_route", route.to_string())],
            Server,
            ServerSeries::new()
        )
    }

    /// One upstream target's series (`http_client_request_duration_seconds`).
    pub fn client(&self, upstream: &str, address: &str) -> Arc<ClientSeries> {
        let labels = vec![("upstream", upstream.to_string()), ("server_address", address.to_string())];
        get_or_make!(self, "http_client_request_duration_seconds", labels, Client, ClientSeries::new())
    }

    /// A value read when scraped; reported while the returned `Arc` lives.
    pub fn probe(&self, family: &'static str, labels: Labels, read: Arc<dyn Fn() -> f64 + Send + Sync>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.map.get_mut(&(family, labels.clone())) {
            Some(Held::Probe(ws)) => {
                ws.retain(|w| w.strong_count() > 0);
                ws.push(Arc::downgrade(&read));
            }
            _ => {
                entries.map.insert((family, labels), Held::Probe(vec![Arc::downgrade(&read)]));
            }
        }
        entries.sweep_now_and_then();
        // The caller keeps `read` alive; a second `Arc` here would never let it go.
        drop(read);
    }

    /// The exposition: Prometheus text format 0.0.4, or OpenMetrics 1.0.
    pub fn render(&self, openmetrics: bool) -> String {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::with_capacity(16 * 1024);
        for &(family, kind, help) in FAMILIES {
            let sample = match kind {
                Kind::Counter => format!("{family}_total"),
                _ => family.to_string(),
            };
            // OpenMetrics names a family without its samples' suffix:
            // `portcullis_auth_failures` has `_total` samples, the info
            // family `portcullis_build` has `portcullis_build_info` ones.
            let type_name = match kind {
                _ if !openmetrics => &sample,
                Kind::Info => family.strip_suffix("_info").unwrap_or(family),
                _ => family,
            };
            let kind_name = match kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
                Kind::Info if openmetrics => "info",
                Kind::Info => "gauge",
            };
            if openmetrics {
                // The OpenMetrics examples' order, with the unit its name ends in.
                let _ = writeln!(out, "# TYPE {type_name} {kind_name}");
                if let Some(unit) = ["seconds", "bytes"].into_iter().find(|u| type_name.ends_with(&format!("_{u}"))) {
                    let _ = writeln!(out, "# UNIT {type_name} {unit}");
                }
                let _ = writeln!(out, "# HELP {type_name} {help}");
            } else {
                let _ = writeln!(out, "# HELP {type_name} {help}");
                let _ = writeln!(out, "# TYPE {type_name} {kind_name}");
            }
            let mut lines = Vec::new();
            for ((entry_family, labels), held) in &entries.map {
                render_entry(entry_family, labels, held, family, &sample, openmetrics, &mut lines);
            }
            lines.sort();
            for l in lines {
                out.push_str(&l);
            }
        }
        if openmetrics {
            out.push_str("# EOF\n");
        }
        out
    }
}

/// The lines `e` contributes to `family` (one string per series: a
/// histogram's bucket lines stay together and in order when sorted).
fn render_entry(
    entry_family: &str,
    entry_labels: &Labels,
    held: &Held,
    family: &str,
    sample: &str,
    openmetrics: bool,
    out: &mut Vec<String>,
) {
    match held {
        Held::Counter(w) if entry_family == family => {
            if let Some(c) = w.upgrade() {
                out.push(format!("{sample}{} {}\n", labels_text(entry_labels, None), c.get()));
            }
        }
        Held::Gauge(w) if entry_family == family => {
            if let Some(g) = w.upgrade() {
                out.push(format!("{sample}{} {}\n", labels_text(entry_labels, None), g.get()));
            }
        }
        Held::Probe(ws) if entry_family == family => {
            if let Some(p) = ws.iter().rev().find_map(Weak::upgrade) {
                out.push(format!("{sample}{} {}\n", labels_text(entry_labels, None), number(p())));
            }
        }
        Held::Server(w) => {
            let Some(s) = w.upgrade() else { return };
            for (key, series) in s.table.series() {
                let mut labels = entry_labels.clone();
                labels.extend(server_labels(key));
                let h = match family {
                    "http_server_request_duration_seconds" => &series.duration,
                    "http_server_request_body_size_bytes" => &series.request_size,
                    "http_server_response_body_size_bytes" => &series.response_size,
                    _ => return,
                };
                out.push(histogram_text(family, &labels, h, openmetrics));
            }
        }
        Held::Client(w) if family == "http_client_request_duration_seconds" => {
            let Some(c) = w.upgrade() else { return };
            for (key, h) in c.table.series() {
                let mut labels = entry_labels.clone();
                labels.extend(client_labels(key));
                out.push(histogram_text(family, &labels, h, openmetrics));
            }
        }
        _ => {}
    }
}

fn histogram_text(family: &str, labels: &Labels, h: &Histogram, openmetrics: bool) -> String {
    let s = h.snapshot();
    let mut out = String::new();
    for (i, count) in s.cumulative.iter().enumerate() {
        let le = match s.buckets.bounds.get(i) {
            // OpenMetrics' canonical numbers: `1.0`, not `1` (a bound is
            // matched as text across scrapes).
            Some(&b) if openmetrics => format!("{:?}", b as f64 / s.buckets.scale),
            Some(&b) => number(b as f64 / s.buckets.scale),
            None => "+Inf".to_string(),
        };
        let _ = writeln!(out, "{family}_bucket{} {count}", labels_text(labels, Some(&le)));
    }
    let l = labels_text(labels, None);
    let _ = writeln!(out, "{family}_sum{l} {}", number(s.sum as f64 / s.buckets.scale));
    let _ = writeln!(out, "{family}_count{l} {}", s.count());
    out
}

/// A float as Prometheus prints it (`0.005`, `1`, `2.5`).
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { format!("{v}") }
}

fn labels_text(labels: &Labels, le: Option<&str>) -> String {
    if labels.is_empty() && le.is_none() {
        return String::new();
    }
    let mut out = String::from("{");
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{k}=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    if let Some(le) = le {
        if !labels.is_empty() {
            out.push(',');
        }
        let _ = write!(out, "le=\"{le}\"");
    }
    out.push('}');
    out
}

/// The methods with a label of their own; any other is `_OTHER`.
const METHODS: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];

/// 1 + the method's place in `METHODS`; one past them for any other.
fn method_index(m: &Method) -> u32 {
    match *m {
        Method::GET => 1,
        Method::HEAD => 2,
        Method::POST => 3,
        Method::PUT => 4,
        Method::DELETE => 5,
        Method::CONNECT => 6,
        Method::OPTIONS => 7,
        Method::TRACE => 8,
        Method::PATCH => 9,
        _ => METHODS.len() as u32 + 1,
    }
}

/// The status label of an overflow series' class (`5xx`: an alert on
/// `http_response_status_code=~"5.."` counts it).
fn class_label(class: u32) -> String {
    if (1..=5).contains(&class) { format!("{class}xx") } else { "_OTHER".into() }
}

fn server_labels(key: u32) -> Labels {
    if let Some(class) = overflow_class(key) {
        return vec![("http_request_method", "_OTHER".into()), ("http_response_status_code", class_label(class))];
    }
    let method = METHODS.get(((key >> 16) & 0xff) as usize - 1).copied().unwrap_or("_OTHER");
    let mut labels =
        vec![("http_request_method", method.into()), ("http_response_status_code", (key & 0xffff).to_string())];
    if let Some(cut) = CUTS.get((key >> 24) as usize).filter(|c| !c.is_empty()) {
        labels.push(("error_type", (*cut).into()));
    }
    labels
}

/// A response that did not reach its end (OpenTelemetry's `error.type` on
/// `http.server.request.duration`): its status says what began, not what
/// the client got. Without it, an upstream that cut every body was counted
/// as so many 200s, and no alert on errors could see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Answered to its end.
    None = 0,
    /// The upstream broke off mid-body (flag `UC`).
    UpstreamClosed = 1,
    /// The client left before the end (flag `DC`, and NGINX's `499`).
    ClientClosed = 2,
    /// The upstream sent nothing of the body for `timeouts.read` (flag `UT`).
    UpstreamTimeout = 3,
}

/// `error_type` by `Cut` (index 0, `Cut::None`, has none).
const CUTS: [&str; 4] = ["", "upstream_closed", "client_closed", "upstream_timeout"];

/// Why an upstream exchange produced no response (`error_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamError {
    Connect = 1,
    Timeout = 2,
    Closed = 3,
}

const UPSTREAM_ERRORS: [&str; 3] = ["connect", "timeout", "closed"];

fn client_labels(key: u32) -> Labels {
    if let Some(class) = overflow_class(key) {
        return vec![("http_response_status_code", class_label(class))];
    }
    match key >> 16 {
        0 => vec![("http_response_status_code", (key & 0xffff).to_string())],
        e => vec![("error_type", UPSTREAM_ERRORS.get(e as usize - 1).copied().unwrap_or("_OTHER").into())],
    }
}

/// A route's requests, by method and status.
#[derive(Debug)]
pub struct ServerSeries {
    table: Table<Exchange>,
}

#[derive(Debug)]
pub struct Exchange {
    pub duration: Histogram,
    pub request_size: Histogram,
    pub response_size: Histogram,
}

impl ServerSeries {
    fn new() -> ServerSeries {
        // 10 methods x the statuses a route answers with: 64 is plenty; beyond, one overflow series.
        ServerSeries {
            table: Table::new(64, || Exchange {
                duration: Histogram::new(&DURATION),
                request_size: Histogram::new(&SIZE),
                response_size: Histogram::new(&SIZE),
            }),
        }
    }

    #[inline]
    pub fn record(
        &self,
        method: &Method,
        status: StatusCode,
        cut: Cut,
        duration_ns: u64,
        request_bytes: u64,
        response_bytes: u64,
    ) {
        let e = self.table.get((cut as u32) << 24 | method_index(method) << 16 | u32::from(status.as_u16()));
        // One thread-shard lookup for the three.
        let slot = cells::slot();
        e.duration.record_in(slot, duration_ns);
        e.request_size.record_in(slot, request_bytes);
        e.response_size.record_in(slot, response_bytes);
    }
}

/// One upstream target's exchanges, by status or error.
#[derive(Debug)]
pub struct ClientSeries {
    table: Table<Histogram>,
}

impl Default for ClientSeries {
    fn default() -> Self {
        ClientSeries::new()
    }
}

impl ClientSeries {
    fn new() -> ClientSeries {
        ClientSeries { table: Table::new(32, || Histogram::new(&DURATION)) }
    }

    #[inline]
    pub fn record(&self, outcome: Result<StatusCode, UpstreamError>, duration_ns: u64) {
        let key = match outcome {
            Ok(status) => u32::from(status.as_u16()),
            Err(e) => (e as u32) << 16,
        };
        self.table.get(key).record(duration_ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_indexes_follow_the_label_list() {
        for (i, name) in METHODS.iter().enumerate() {
            assert_eq!(method_index(&Method::from_bytes(name.as_bytes()).unwrap()), i as u32 + 1, "{name}");
        }
        assert_eq!(method_index(&Method::from_bytes(b"BREW").unwrap()), METHODS.len() as u32 + 1);
    }

    #[test]
    fn renders_families_series_and_escapes_labels() {
        let r = Registry::default();
        let c = r.counter("portcullis_auth_failures", vec![("route", "a\"b".into()), ("reason", "missing".into())]);
        c.add(3);
        let same = r.counter("portcullis_auth_failures", vec![("route", "a\"b".into()), ("reason", "missing".into())]);
        assert!(Arc::ptr_eq(&c, &same), "the same labels give the same series");
        let s = r.server("orders");
        s.record(&Method::GET, StatusCode::OK, Cut::None, 2_000_000, 0, 100);
        s.record(&Method::from_bytes(b"BREW").unwrap(), StatusCode::NOT_FOUND, Cut::None, 1, 0, 0);
        s.record(&Method::GET, StatusCode::OK, Cut::UpstreamClosed, 1, 0, 0);
        let text = r.render(false);
        assert!(text.contains("# TYPE portcullis_auth_failures_total counter\n"));
        assert!(text.contains("portcullis_auth_failures_total{route=\"a\\\"b\",reason=\"missing\"} 3\n"));
        assert!(text.contains(
            "http_server_request_duration_seconds_bucket{http_route=\"orders\",http_request_method=\"GET\",http_response_status_code=\"200\",le=\"0.0025\"} 1\n"
        ));
        assert!(text.contains("http_request_method=\"_OTHER\",http_response_status_code=\"404\""));
        assert!(text.contains(
            "http_server_request_duration_seconds_count{http_route=\"orders\",http_request_method=\"GET\",http_response_status_code=\"200\",error_type=\"upstream_closed\"} 1\n"
        ), "{text}");
        let om = r.render(true);
        assert!(om.contains("# TYPE portcullis_auth_failures counter\n") && om.ends_with("# EOF\n"));
        assert!(om.contains("# TYPE portcullis_build info\n"), "{om}");
        assert!(
            om.contains("# TYPE http_server_request_duration_seconds histogram\n# UNIT http_server_request_duration_seconds seconds\n# HELP http_server_request_duration_seconds "),
            "{om}"
        );
        assert!(
            om.contains(",le=\"0.0025\"} 1\n") && om.contains(",le=\"1.0\"} ") && !om.contains(",le=\"1\"}"),
            "{om}"
        );
        drop((c, same));
        assert!(!r.render(false).contains("portcullis_auth_failures_total{"), "a dropped series is gone");
    }
}
