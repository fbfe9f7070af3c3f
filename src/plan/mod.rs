//! Compiling a config into the immutable [`Plan`] that requests read.
//! Every check that can fail runs here, and all failures are collected, so
//! `portcullis check` reports every problem at once; a config with any
//! error never becomes a plan.

mod admin;
pub mod aggregate;
mod api_bundle;
mod api_docs;
mod openapi;
mod openapi_schema;
mod route;
mod upstream;
pub mod warnings;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::{
    AccessLogConfig, ConfigError, ConfigErrors, FieldErrors, HstsConfig, ListenerLimits, LoadedConfig,
};
use crate::http::buffer_budget::BufferBudget;
use crate::http::forwarded::TrustedProxies;
use crate::http::normalize;
use crate::observe::Observer;
use crate::observe::access_log::{AccessLog, Redact};
use crate::observe::metrics::{Counter, Registry};
use crate::policy::Chain;
use crate::policy::auth::{Consumers, IdentityHeaders, Provider, ProviderNames, Providers};
use crate::policy::compile::{CompileCtx, Previous, Shared};
use crate::policy::ratelimit::{RateLimitHeaders, Stores};
use crate::policy::security_headers::{self, FieldEdits};
use crate::router::{Conflict, Router};
use crate::upstream::Upstream;

pub use admin::AdminPlan;
pub use route::{Action, HostRewrite, Proxy, Route};

/// Metric probes kept alive with the plan.
struct StateProbes(#[allow(dead_code)] Vec<Arc<dyn Fn() -> f64 + Send + Sync>>);

impl std::fmt::Debug for StateProbes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} probes", self.0.len())
    }
}

/// Everything a request needs, compiled once per config.
#[derive(Debug)]
pub struct Plan {
    /// Shared, so that a connection holds its listener's settings, not the
    /// whole plan (a keep-alive connection pinned its plan, with its health
    /// probes, past every reload).
    pub listeners: Vec<Arc<ListenerPlan>>,
    pub trusted_proxies: TrustedProxies,
    pub normalize: normalize::Options,
    pub router: Router,
    /// In config order; the router returns indexes into this.
    pub routes: Vec<Route>,
    /// The response steps of responses without a route (404, 405,
    /// refusals): the top-level security headers.
    pub without_route: Chain,
    pub shutdown_timeout: Duration,
    /// Serving on, `/readyz` 503, before the drain begins.
    pub shutdown_delay: Duration,
    pub providers: Providers,
    /// Stripped from every client request; set from the authenticated identity.
    pub identity_headers: Arc<IdentityHeaders>,
    pub rate_limit_headers: RateLimitHeaders,
    pub stores: Arc<Stores>,
    /// Metrics, access log and trace settings.
    pub observe: Arc<Observer>,
    /// The admin API's address and token, when `admin` is set.
    pub admin: Option<AdminPlan>,
    /// The access log to open when the plan goes live (`start_background`).
    access_log: Option<AccessLogConfig>,
    /// Every upstream (routes hold them too), for their active health checks.
    upstreams: Vec<Arc<Upstream>>,
    /// The upstreams' state gauges (held here: they read the upstreams weakly).
    _state_probes: StateProbes,
    /// Bytes of bodies read whole, held against `max_buffered`.
    pub buffers: BufferBudget,
    /// The span exporter to start then.
    #[cfg_attr(not(feature = "otlp"), allow(dead_code))]
    otlp: Option<crate::config::OtlpConfig>,
}

impl Plan {
    /// Starts background work (JWKS refresh, the access log's writer);
    /// call once the plan is in a runtime. `previous`: the plan it
    /// replaces, whose access log goes on when the config did not change it.
    pub fn start_background(&self, previous: Option<&Plan>) -> std::io::Result<()> {
        if let Some(cfg) = &self.access_log {
            let running = previous.and_then(|p| p.observe.access_log.get()).filter(|l| l.config == *cfg);
            let log = match running {
                Some(l) => l.clone(),
                None => {
                    let dropped = self.observe.registry.counter("portcullis_access_log_dropped", Vec::new());
                    Arc::new(AccessLog::start(cfg, dropped)?)
                }
            };
            let _ = self.observe.access_log.set(log);
        }
        #[cfg(feature = "otlp")]
        if let Some(cfg) = &self.otlp {
            use crate::observe::otlp::Exporter;
            let ca = crate::observe::otlp::ca_fingerprint(cfg);
            let running = previous.and_then(|p| p.observe.exporter.get()).filter(|e| e.config == *cfg && e.ca == ca);
            let exporter = match running {
                Some(e) => e.clone(),
                None => {
                    let dropped = self.observe.registry.counter("portcullis_trace_spans_dropped", Vec::new());
                    Arc::new(Exporter::start(cfg, dropped).map_err(std::io::Error::other)?)
                }
            };
            let _ = self.observe.exporter.set(exporter);
        }
        for p in self.providers.values() {
            p.start();
        }
        for u in &self.upstreams {
            // Targets the replaced config had too keep what was known of their health.
            if let Some(before) = previous.and_then(|p| p.upstreams.iter().find(|b| b.name == u.name)) {
                for t in &u.targets {
                    if let Some(old) =
                        before.targets.iter().find(|o| o.scheme == t.scheme && o.authority == t.authority)
                    {
                        u.health.carry_over(&t.health, &before.health, &old.health);
                    }
                }
            }
            crate::upstream::active::spawn(u);
            for pool in u.targets.iter().filter_map(|t| t.h1.as_ref()) {
                crate::upstream::h1::H1Pool::sweep_while_alive(pool);
            }
        }
        Ok(())
    }

    /// A reload replaced this plan: its upstreams' background work stops
    /// (requests still under way finish on it).
    pub fn retire(&self) {
        for u in &self.upstreams {
            u.retire();
        }
    }

    /// Every upstream of the config.
    pub fn upstreams(&self) -> &[Arc<Upstream>] {
        &self.upstreams
    }

    pub fn listener(&self, name: &str) -> Option<&Arc<ListenerPlan>> {
        self.listeners.iter().find(|l| &*l.name == name)
    }
}

pub struct ListenerPlan {
    pub name: Arc<str>,
    pub addr: SocketAddr,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// `tls.client_auth`, as requests check their connection against it.
    pub client_auth: Option<Arc<crate::tls::ClientAuth>>,
    /// `Strict-Transport-Security` value for TLS responses.
    pub hsts: Option<HeaderValue>,
    pub redirect_https: Option<u16>,
    pub limits: Limits,
    /// The HTTP/2 server settings derived from `limits` (HTTP/1.1 is the
    /// gateway's own codec, `server/h1`, which reads `limits` itself).
    pub http2: hyper::server::conn::http2::Builder<TokioExecutor>,
    /// `portcullis_tls_handshake_failures_total{reason="error"|"timeout"}` (TLS listeners).
    pub tls_failures: Option<[Arc<Counter>; 2]>,
}

impl std::fmt::Debug for ListenerPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerPlan")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// A listener's `limits`, as requests read them: plain values, each
/// checked and clamped here, once.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub tls_handshake_timeout: Duration,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_read_timeout: Duration,
    /// Largest request head, within what `check_limits` allows.
    pub max_header_size: usize,
    pub max_headers: usize,
    pub max_uri_length: u64,
    pub max_body_size: u64,
}

impl Limits {
    fn of(cfg: &ListenerLimits) -> Limits {
        Limits {
            max_connections: cfg.max_connections,
            tls_handshake_timeout: cfg.tls_handshake_timeout.0,
            header_read_timeout: cfg.header_read_timeout.0,
            idle_timeout: cfg.idle_timeout.0,
            body_read_timeout: cfg.body_read_timeout.0,
            max_header_size: head_limit(cfg),
            max_headers: cfg.max_headers,
            max_uri_length: cfg.max_uri_length.0,
            max_body_size: cfg.max_body_size.0,
        }
    }
}

/// Collects errors while compiling.
pub(crate) struct Ctx<'a> {
    pub loaded: &'a LoadedConfig,
    pub errors: Vec<ConfigError>,
}

impl Ctx<'_> {
    pub fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let e = self.loaded.error(path, message);
        self.errors.push(e);
    }

    /// Takes the problems of one part of the config, found under `key`.
    pub fn nest(&mut self, key: &str, errors: FieldErrors) {
        let mut at = FieldErrors::new();
        at.nest(key, errors);
        self.errors.extend(self.loaded.errors(at));
    }
}

/// Compiles `loaded` into a plan, or reports every problem in it.
pub fn compile(loaded: &LoadedConfig) -> Result<Plan, ConfigErrors> {
    compile_after(loaded, None)
}

/// Compiles a config that replaces `previous` (a reload): state that must
/// outlive a reload, such as rate-limit counters, is carried over.
pub fn compile_after(loaded: &LoadedConfig, previous: Option<&Plan>) -> Result<Plan, ConfigErrors> {
    // A bug that panics on some config must refuse that config, not end
    // the gateway that is serving the last good one (a reload compiles on
    // the task that runs the gateway).
    let compiled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| compile_unguarded(loaded, previous)));
    compiled.unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(ConfigErrors(vec![crate::config::ConfigError {
            file: loaded.source_name.clone(),
            path: String::new(),
            position: None,
            message: format!(
                "the gateway failed on this config (a bug, please report it: {what}); the config is refused"
            ),
        }]))
    })
}

fn compile_unguarded(loaded: &LoadedConfig, previous: Option<&Plan>) -> Result<Plan, ConfigErrors> {
    let cfg = &loaded.config;
    let mut cx = Ctx { loaded, errors: Vec::new() };

    // Series live across reloads: the same names keep counting.
    let registry: Arc<Registry> = previous.map(|p| p.observe.registry.clone()).unwrap_or_default();
    let listeners = compile_listeners(&mut cx, &registry);
    let trusted_proxies = compile_trusted(&mut cx);
    // What the plan-wide parts read besides their config: on a reload, the
    // running plan's state that outlives it; then each part for the next.
    let mut shared = Shared::default();
    shared.insert(Arc::new(registry.clone()));
    // Bytes held by whole reads: one count per gateway, as the series.
    let buffered = previous.map(|p| p.buffers.count().clone()).unwrap_or_default();
    if cfg.max_buffered.0 == 0 {
        cx.err("max_buffered", "0 would refuse every validated body and aggregate answer (the default is 256MiB)");
    }
    let buffers = BufferBudget::new(buffered, cfg.max_buffered.0);
    shared.insert(Arc::new(buffers.clone()));
    if let Some(p) = previous {
        shared.insert(Arc::new(Previous(p.providers.clone())));
        shared.insert(Arc::new(Previous(p.stores.clone())));
    }
    let (security_headers, consumers, identity_headers, stores) = {
        let mut top = CompileCtx::new(loaded, String::new(), &shared);
        let c = security_headers::compile(&cfg.security_headers, &mut top);
        let security_headers: Arc<FieldEdits> = top.take("security_headers", c).map(Arc::new).unwrap_or_default();
        if let Some((i, route)) =
            cfg.routes.iter().enumerate().find(|(_, r)| r.cors.is_some() && r.security_headers.is_none())
        {
            for name in cfg.security_headers.set.keys().filter(|k| crate::policy::cors::is_cors_field(k)) {
                top.error(
                    &format!("security_headers.set.{name}"),
                    format!("routes[{i}] (`{}`) has `cors`, which writes the Access-Control-* fields for the origins it allows: this would answer every origin alike; leave it to `cors`", route.name),
                );
            }
        }
        let c = Consumers::compile(&cfg.consumers, &mut top);
        let consumers = Arc::new(top.take("consumers", c).unwrap_or_default());
        let c = IdentityHeaders::compile(&cfg.identity_headers, &mut top);
        let identity_headers = match top.take("identity_headers", c) {
            Some(h) => Arc::new(h),
            None => Arc::new(IdentityHeaders::compile(&Default::default(), &mut top).expect("defaults are valid")),
        };
        let c = Stores::compile(&cfg.rate_limit_store, &mut top);
        let stores = match top.take("rate_limit_store", c) {
            Some(s) => Arc::new(s),
            None => Arc::new(Stores::compile(&Default::default(), &mut top).expect("the default store")),
        };
        cx.nest("", top.errors);
        (security_headers, consumers, identity_headers, stores)
    };
    shared.insert(Arc::new(consumers));
    let mut providers = Providers::new();
    for (name, pcfg) in &cfg.auth {
        let mut pcx = CompileCtx::new(loaded, format!("auth.{name}"), &shared);
        pcx.name = name;
        let c = Provider::compile(pcfg, &mut pcx);
        if let Some(p) = pcx.take("", c) {
            providers.insert(name.clone(), Arc::new(p));
        }
        cx.nest("", pcx.errors);
    }
    // What every route's policies may use, by type (`CompileCtx::shared`).
    shared.insert(Arc::new(providers.clone()));
    shared.insert(Arc::new(ProviderNames(cfg.auth.keys().cloned().collect())));
    shared.insert(Arc::new(identity_headers.clone()));
    shared.insert(Arc::new(stores.clone()));
    shared.insert(Arc::new(security_headers.clone()));

    let mut upstreams: HashMap<&str, Arc<Upstream>> = HashMap::new();
    let mut state_probes = buffer_probes(&buffers, &registry);
    for (name, ucfg) in &cfg.upstreams {
        if let Some(mut u) = upstream::compile(&mut cx, name, ucfg, &registry) {
            if let Some(before) = previous.and_then(|p| p.upstreams.iter().find(|b| *b.name == **name)) {
                u.keep_state_of(before);
            }
            u.probes = upstream::connection_probes(name, &u, &registry);
            let u = Arc::new(u);
            state_probes.extend(upstream::state_probes(&u, &registry));
            upstreams.insert(name, u);
        }
    }
    let known: Vec<&str> = cfg.upstreams.keys().map(String::as_str).collect();

    let mut routes = Vec::new();
    let mut matchers = Vec::new();
    // Where each compiled route is in the config (routes with errors are left out).
    let mut compiled: Vec<(String, String)> = Vec::new();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let written = cfg.routes.iter().enumerate().map(|(i, r)| (format!("routes[{i}]"), r.clone()));
    let generated = compile_apis(&mut cx);
    for (at, rcfg) in written.chain(generated) {
        if let Some(first) = names.insert(rcfg.name.clone(), at.clone()) {
            cx.err(format!("{at}.name"), format!("duplicate route name `{}` (also {first})", rcfg.name));
        }
        if let Some((matcher, route)) = route::compile(&mut cx, at.clone(), &rcfg, &upstreams, &known, &shared) {
            matchers.push(matcher);
            routes.push(route);
            compiled.push((at, rcfg.name.clone()));
        }
    }

    let router = Router::new(matchers);
    for conflict in router.conflicts() {
        report_conflict(&mut cx, &conflict, &compiled);
    }

    let observe = compile_observe(&mut cx, registry, &routes);
    let admin = cfg.admin.as_ref().and_then(|a| match AdminPlan::compile(a, loaded) {
        Ok(a) => Some(a),
        Err(errors) => {
            cx.errors.extend(errors);
            None
        }
    });
    if let Some(a) = &admin
        && let Some(l) = listeners.iter().find(|l| binds_clash(&l.addr, &a.addr))
    {
        cx.err("admin.bind", format!("`{}` is bound by listener `{}` too", a.addr, l.name));
    }

    cx.errors.extend(warnings::unknown_allowed(loaded));
    if !cx.errors.is_empty() {
        // In file order: the way a user reads and fixes them.
        cx.errors.sort_by_key(|e| e.position.unwrap_or((usize::MAX, 0)));
        return Err(ConfigErrors(cx.errors));
    }
    Ok(Plan {
        listeners,
        trusted_proxies,
        normalize: normalize::Options {
            matrix_segments: routes.iter().any(|r| !r.matrix_params.is_empty()),
            ..normalize::Options::of(&cfg.path_normalization)
        },
        router,
        routes,
        without_route: Chain::without_route(security_headers),
        shutdown_timeout: cfg.shutdown_timeout.0,
        shutdown_delay: cfg.shutdown_delay.0,
        providers,
        identity_headers,
        rate_limit_headers: cfg.rate_limit_headers,
        upstreams: upstreams.into_values().collect(),
        _state_probes: StateProbes(state_probes),
        buffers,
        stores,
        observe: Arc::new(observe),
        admin,
        // A relative file is relative to the config's folder, as every file the config names.
        access_log: cfg.access_log.clone().map(|mut log| {
            if log.to != "stdout" {
                log.to = loaded.resolve_file(&log.to).display().to_string();
            }
            log
        }),
        otlp: cfg.tracing.otlp.clone().map(|mut otlp| {
            otlp.ca = otlp.ca.map(|ca| loaded.resolve_file(&ca).display().to_string());
            otlp
        }),
    })
}

/// `portcullis_buffered_bytes` and `portcullis_buffer_refusals_total`,
/// read from the gateway's count when scraped.
fn buffer_probes(buffers: &BufferBudget, registry: &Registry) -> Vec<Arc<dyn Fn() -> f64 + Send + Sync>> {
    let count = buffers.count();
    let (a, b) = (count.clone(), count.clone());
    let held: Arc<dyn Fn() -> f64 + Send + Sync> = Arc::new(move || a.held() as f64);
    let refused: Arc<dyn Fn() -> f64 + Send + Sync> = Arc::new(move || b.refused() as f64);
    registry.probe("portcullis_buffered_bytes", Vec::new(), held.clone());
    registry.probe("portcullis_buffer_refusals", Vec::new(), refused.clone());
    vec![held, refused]
}

/// The observers: each route's request series, the access log's settings
/// and what it redacts, trace sampling.
fn compile_observe(cx: &mut Ctx, registry: Arc<Registry>, routes: &[Route]) -> Observer {
    use crate::policy::auth::config::ProviderConfig;
    let cfg = &cx.loaded.config;
    let mut series: Vec<_> = routes.iter().map(|r| registry.server(&r.name)).collect();
    series.push(registry.server(""));
    // Query parameters that carry credentials in this config.
    let params = cfg.auth.values().filter_map(|p| match p {
        ProviderConfig::ApiKey(k) => k.query.clone(),
        ProviderConfig::Jwt(j) => j.token.query.clone(),
        _ => None,
    });
    if let Some(log) = &cfg.access_log {
        if log.buffer == 0 || log.buffer > 1 << 20 {
            cx.err("access_log.buffer", "must be between 1 and 1048576 lines");
        }
        if log.to != "stdout" {
            let resolved = cx.loaded.resolve_file(&log.to);
            let path = resolved.as_path();
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
            if log.to.is_empty() || path.is_dir() || !dir.is_dir() {
                cx.err("access_log.to", format!("`{}` is not a file in an existing directory (or `stdout`)", log.to));
            }
        }
    }
    // Checked here, once, whether a schema uses the format or not (a use
    // site skips a bad one: the fault is the format's, said here).
    for (name, pattern) in &cfg.formats {
        if let Err(e) = regex::Regex::new(pattern) {
            let why = e.to_string();
            let why = why.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("").trim_start_matches("error: ");
            cx.err(format!("formats.{name}"), format!("not a regular expression: {why}"));
        }
    }
    let mut sample = 0.0;
    if let Some(otlp) = &cfg.tracing.otlp {
        if !cfg!(feature = "otlp") {
            cx.err(
                "tracing.otlp",
                "this build has no OTLP export (built without the `otlp` feature); remove `otlp` \
                 (traceparent propagation is always on)",
            );
        }
        // Schemes are case-insensitive (RFC 3986 §3.1): `HTTPS://` is https.
        let scheme = |s: &str| otlp.endpoint.get(..s.len()).is_some_and(|p| p.eq_ignore_ascii_case(s));
        if !(scheme("http://") || scheme("https://")) || otlp.endpoint.parse::<http::Uri>().is_err() {
            let shown = crate::http::url_in_message(&otlp.endpoint);
            cx.err("tracing.otlp.endpoint", format!("`{shown}` is not an http(s) URL"));
        } else if let Some(fault) = crate::http::port_fault(&otlp.endpoint) {
            cx.err("tracing.otlp.endpoint", fault);
        } else if otlp.endpoint.contains(['?', '#'])
            || otlp.endpoint.parse::<http::Uri>().ok().and_then(|u| u.authority().map(|a| a.as_str().contains('@')))
                == Some(true)
        {
            // `/v1/traces` is appended to the endpoint: after a query it
            // would land in the query, and user:password is never sent.
            let shown = crate::http::url_in_message(&otlp.endpoint);
            cx.err(
                "tracing.otlp.endpoint",
                format!(
                    "`{shown}`: the endpoint is a base URL (`/v1/traces` is appended to it), without a query, a \
                     fragment or user:password; put credentials in `headers`"
                ),
            );
        }
        if let Some(ca) = &otlp.ca
            && let Err(e) = crate::tls::load_roots(&cx.loaded.resolve_file(ca))
        {
            cx.err("tracing.otlp.ca", e);
        }
        if !(0.0..=1.0).contains(&otlp.sample) {
            cx.err("tracing.otlp.sample", "a share between 0.0 and 1.0 (0.1 = one trace in ten)");
        }
        for (name, value) in &otlp.headers {
            if http::HeaderName::try_from(name.as_str()).is_err()
                || http::HeaderValue::try_from(value.as_str()).is_err()
            {
                cx.err(format!("tracing.otlp.headers.{name}"), "not a valid header name and value");
            }
        }
        sample = otlp.sample;
    }
    let active = registry.gauge("http_server_active_requests", Vec::new());
    Observer {
        registry,
        access_log: std::sync::OnceLock::new(),
        redact: Redact::new(params),
        active,
        routes: series,
        route_names: routes.iter().map(|r| crate::observe::access_log::LogName::new(r.name.clone())).collect(),
        sample,
        metrics: cfg.admin.is_some(),
        #[cfg(feature = "otlp")]
        exporter: std::sync::OnceLock::new(),
    }
}

/// `compiled`: where each compiled route is in the config, and its name.
fn report_conflict(cx: &mut Ctx, conflict: &Conflict, compiled: &[(String, String)]) {
    match *conflict {
        Conflict::Ambiguous { first, second } => {
            let ((first_at, first), (second_at, second)) = (&compiled[first], &compiled[second]);
            cx.err(
                format!("{second_at}.match"),
                format!(
                    "route `{second}` is ambiguous with route `{first}` ({first_at}): both can match the same request \
                 with the same precedence; make one more specific (host, path, methods, headers or version)"
                ),
            )
        }
        Conflict::Unreachable { route, shadowed_by } => {
            let ((route_at, route), (by_at, by)) = (&compiled[route], &compiled[shadowed_by]);
            cx.err(
                format!("{route_at}.match"),
                format!("route `{route}` is unreachable: every request it matches is taken by route `{by}` ({by_at})"),
            )
        }
    }
}

/// The routes of every `apis` entry, with where each is in the config.
fn compile_apis(cx: &mut Ctx) -> Vec<(String, crate::config::RouteConfig)> {
    let mut out = Vec::new();
    for (i, api) in cx.loaded.config.apis.iter().enumerate() {
        // Checked once here, and given to each of its routes when sound.
        let errors = cx.errors.len();
        let listeners = api.listeners.as_ref().map(|names| route::listener_names(cx, &format!("apis[{i}]"), names));
        let listeners =
            listeners.filter(|_| cx.errors.len() == errors).map(|ls| ls.iter().map(|l| l.to_string()).collect());
        match openapi::expand(api, &format!("apis[{i}]"), &cx.loaded.base_dir, &cx.loaded.config.formats) {
            Ok(routes) => out.extend(routes.into_iter().map(|mut g| {
                g.route.matcher.listeners.clone_from(&listeners);
                (g.at, g.route)
            })),
            Err(errors) => {
                for (at, message) in errors {
                    cx.err(at, message);
                }
            }
        }
    }
    out
}

/// Whether two bind addresses cannot both be bound: the same address, the
/// same port on a wildcard address and another of its family, or on `[::]`
/// and any IPv4 address (Linux binds `[::]` dual-stack: IPv4 too). Port 0
/// (any free port) never clashes.
fn binds_clash(a: &SocketAddr, b: &SocketAddr) -> bool {
    let dual_stack = |x: &SocketAddr, y: &SocketAddr| x.is_ipv6() && x.ip().is_unspecified() && y.is_ipv4();
    a.port() != 0
        && a.port() == b.port()
        && (a == b
            || a.is_ipv4() == b.is_ipv4() && (a.ip().is_unspecified() || b.ip().is_unspecified())
            || dual_stack(a, b)
            || dual_stack(b, a))
}

fn compile_listeners(cx: &mut Ctx, registry: &Registry) -> Vec<Arc<ListenerPlan>> {
    let cfg = &cx.loaded.config;
    if cfg.listeners.is_empty() {
        // A file of nothing (or of comments alone) is more likely the wrong
        // file, or one an editor emptied, than a config without listeners.
        let blank = cx.loaded.text.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
        let why = if blank { "the file is empty (or comments only): " } else { "" };
        cx.err("listeners", format!("{why}no listeners: add one, e.g. `- {{ name: public, bind: 0.0.0.0:8080 }}`"));
    }
    let mut out: Vec<Arc<ListenerPlan>> = Vec::new();
    for (i, l) in cfg.listeners.iter().enumerate() {
        if l.name.is_empty() {
            cx.err(format!("listeners[{i}].name"), "a listener needs a name");
        }
        if let Some(j) = out.iter().position(|o| *o.name == *l.name) {
            cx.err(
                format!("listeners[{i}].name"),
                format!("duplicate listener name `{}` (also listeners[{j}])", l.name),
            );
        }
        let at = format!("listeners[{i}]");
        let (tls, client_auth) = match l.tls.as_ref().map(|t| crate::tls::build(t, cx.loaded)) {
            Some(Ok((config, client_auth))) => (Some(config), client_auth),
            Some(Err(errs)) => {
                cx.nest(&format!("{at}.tls"), errs);
                (None, None)
            }
            None => (None, None),
        };
        if l.tls.is_some() && l.redirect_https.is_some() {
            cx.err(
                format!("{at}.redirect_https"),
                "a TLS listener cannot redirect to HTTPS; put this on a plain listener",
            );
        }
        if l.redirect_https == Some(0) {
            cx.err(format!("{at}.redirect_https"), "the HTTPS port to redirect to, 1 to 65535 (443 usually)");
        }
        check_limits(cx, &at, &l.limits);
        let hsts = l.tls.as_ref().and_then(|t| hsts_value(&t.hsts));
        match l.bind.parse::<SocketAddr>() {
            Ok(addr) => {
                if let Some(other) = out.iter().find(|o| binds_clash(&o.addr, &addr)) {
                    cx.err(format!("{at}.bind"), format!("`{addr}` is bound by listener `{}` too", other.name));
                }
                out.push(Arc::new(ListenerPlan {
                    name: l.name.as_str().into(),
                    addr,
                    tls,
                    client_auth,
                    hsts,
                    redirect_https: l.redirect_https,
                    http2: http2_server(&l.limits),
                    limits: Limits::of(&l.limits),
                    tls_failures: l.tls.as_ref().map(|_| {
                        let counter = |reason: &str| {
                            let labels = vec![("listener", l.name.clone()), ("reason", reason.to_string())];
                            registry.counter("portcullis_tls_handshake_failures", labels)
                        };
                        [counter("error"), counter("timeout")]
                    }),
                }));
            }
            Err(_) => cx.err(
                format!("listeners[{i}].bind"),
                format!("`{}` is not an `IP:PORT` address (e.g. `0.0.0.0:8080`, `[::]:8080`)", l.bind),
            ),
        }
    }
    out
}

fn check_limits(cx: &mut Ctx, at: &str, limits: &ListenerLimits) {
    if (limits.max_header_size.0 as usize) < MIN_HEADER_SIZE {
        cx.err(format!("{at}.limits.max_header_size"), "must be at least 8KiB");
    }
    if limits.max_header_size.0 as usize > MAX_HEADER_SIZE {
        cx.err(format!("{at}.limits.max_header_size"), "must be at most 1MiB");
    }
    for (key, d) in [
        ("header_read_timeout", limits.header_read_timeout),
        ("idle_timeout", limits.idle_timeout),
        ("body_read_timeout", limits.body_read_timeout),
        ("tls_handshake_timeout", limits.tls_handshake_timeout),
    ] {
        if d.0.is_zero() {
            cx.err(format!("{at}.limits.{key}"), "must be longer than zero");
        }
    }
    for (key, n) in [
        ("max_connections", limits.max_connections),
        ("max_headers", limits.max_headers),
        ("h2_max_concurrent_streams", limits.h2_max_concurrent_streams as usize),
    ] {
        if n == 0 {
            cx.err(format!("{at}.limits.{key}"), "must be at least 1");
        }
    }
}

fn hsts_value(cfg: &HstsConfig) -> Option<HeaderValue> {
    if !cfg.enabled {
        return None;
    }
    let mut v = format!("max-age={}", cfg.max_age.0.as_secs());
    if cfg.include_subdomains {
        v.push_str("; includeSubDomains");
    }
    if cfg.preload {
        v.push_str("; preload");
    }
    HeaderValue::try_from(v).ok()
}

// hyper's HTTP/2 server settings for one listener: the limits that hyper
// enforces itself (stream limits and rapid-reset protection). The header
// list may be up to twice `max_header_size` here, a bound on what one
// stream's fields can hold in memory: `max_header_size` itself is checked
// by admission (`wire::admit::parsed`), whose 431 is a problem response,
// logged and counted; only a list over twice the limit gets the HTTP/2
// layer's bare 431.
fn http2_server(limits: &ListenerLimits) -> hyper::server::conn::http2::Builder<TokioExecutor> {
    let mut http = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http.timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(2 * head_limit(limits) as u32)
        // CVE-2023-44487 (rapid reset) and friends: cap streams reset before
        // being served, and streams we had to reset for errors.
        .max_pending_accept_reset_streams(Some(20))
        .max_local_error_reset_streams(Some(1024))
        // What a stream's response may queue for a client that does not
        // read while granting huge windows: hyper's 400 KiB default held
        // 50 MB per connection at 128 streams (and 600 MB for ten
        // connections that sent 1,280 HEADERS frames). A response then
        // waits for the client as over HTTP/1.1; NGINX buffers a few 4-8 KiB
        // buffers per request, Envoy 1 MiB per connection.
        .max_send_buf_size(H2_SEND_BUFFER)
        // What a client may send before the gateway reads it: hyper's 1 MiB
        // windows let 300 connections park 780 MB of request bodies behind
        // requests waiting for an upstream connection, counted by no limit.
        // NGINX pre-reads 64 KiB a stream (`http2_body_preread_size`).
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW);
    http
}

/// Bytes of response an HTTP/2 stream queues ahead of its client.
const H2_SEND_BUFFER: usize = 32 << 10;

/// Bytes of request body a client may send on one stream, and on one
/// connection, ahead of the gateway's reading.
const H2_STREAM_WINDOW: u32 = 64 << 10;
const H2_CONNECTION_WINDOW: u32 = 256 << 10;

/// The largest request head, in the range `check_limits` allows (a
/// config outside it never becomes a plan; the clamp only keeps the two
/// in step).
fn head_limit(limits: &ListenerLimits) -> usize {
    (limits.max_header_size.0 as usize).clamp(MIN_HEADER_SIZE, MAX_HEADER_SIZE)
}

const MIN_HEADER_SIZE: usize = 8 << 10;
const MAX_HEADER_SIZE: usize = 1 << 20;

fn compile_trusted(cx: &mut Ctx) -> TrustedProxies {
    let mut nets = Vec::new();
    for (i, text) in cx.loaded.config.trusted_proxies.iter().enumerate() {
        match crate::http::forwarded::parse_net(text) {
            Some(net) => nets.push(net),
            None => cx.err(format!("trusted_proxies[{i}]"), format!("`{text}` is not an IP address or CIDR")),
        }
    }
    TrustedProxies::new(nets, cx.loaded.config.client_ip_header)
}

#[cfg(test)]
mod tests;
