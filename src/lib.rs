//! Portcullis: a secure, high-performance API gateway.
//!
//! The library API is small: load a config ([`config`]), [`check`] it or
//! [`Gateway::start`] it, and use the returned [`Handle`] to learn the bound
//! addresses, reload, or shut down. `main.rs` and the integration tests use
//! exactly this.
//!
//! Inside, each room imports only the rooms below it (checked by
//! `tests/it/layers.rs`), bottom first:
//!
//! | room | owns |
//! | --- | --- |
//! | `config` | serde types, loading, `${ENV}`, errors with file, path and line (every structural one at once, through the config's own JSON Schema); `FieldErrors` |
//! | `wire` | the own HTTP/1.1 codec, the security boundary: head parsers, admission, chunked bodies, the response encoder, header edits both writers apply |
//! | `tls` | listener TLS (rustls), client certificates, CA bundles |
//! | `http` | gateway HTTP semantics: normalization, forwarded headers, request ids, the error type and problem writer, body types, connection facts |
//! | `router`, `upstream`, `responder` | route matching and rewrites; upstream pools and balancing; built-in responders |
//! | `policy` | the shared floor (`ctx`, `compile`, `clock`), one folder per policy, and above them `policy/mod.rs`: the phase model and the registry |
//! | `plan` | compiling a config into the immutable plan; `check`'s warnings |
//! | `proxy` | the engine: one request from admission to response (`proxy/mod.rs` has the chart) |
//! | `server` | listeners, connections, HTTP/1.1 (with `wire`) and HTTP/2 (hyper), shutdown |
//! | `admin` | the admin listener: the live page, health, status, config, metrics, reload |
#![forbid(unsafe_code)]

pub(crate) mod admin;
pub mod config;
#[cfg(test)]
mod fuzz;
pub(crate) mod http;
pub(crate) mod observe;
pub(crate) mod plan;
pub(crate) mod policy;
pub(crate) mod proxy;
pub(crate) mod responder;
pub(crate) mod router;
pub(crate) mod server;
pub(crate) mod tls;
pub(crate) mod upstream;
pub(crate) mod wire;

/// The header every admin API answer carries (`portcullis reload` checks it).
pub use admin::MARK as ADMIN_MARK;

/// The SHA-256 form of an API key, as `consumers[].api_keys[].sha256` takes it.
pub use policy::auth::hash_key;

/// The gateway's own log lines' way to stdout (the binary sets it up).
pub use observe::own_log;

/// The open-file limit, raised at start (the binary calls it).
pub use server::open_files;

/// Checks a loaded config the way `Gateway::start` would compile it,
/// without binding anything: every problem at once.
pub fn check(loaded: &LoadedConfig) -> Result<(), ConfigErrors> {
    plan::compile(loaded).map(|_| ())
}

/// Reads and checks a config file, reporting every problem at once: when
/// the file does not parse, its structural problems (all of them, found
/// with the config's JSON Schema) and the semantic problems of the rest,
/// without the ones the cut-out parts would cause.
pub fn check_file(path: &std::path::Path) -> Result<LoadedConfig, ConfigErrors> {
    let loaded = load_explained(path)?;
    check(&loaded).map(|()| loaded)
}

/// Reads a config file; when it does not parse, says every problem it has
/// (as `check` does), not the reader's first: `run` and reloads too.
pub fn load_explained(path: &std::path::Path) -> Result<LoadedConfig, ConfigErrors> {
    let parsed = match config::load_file(path) {
        Ok(loaded) => return Ok(loaded),
        Err(errors) => errors,
    };
    let base = path.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
    let repaired =
        config::read_text(path).ok().and_then(|text| config::parse_repaired(&text, &path.display().to_string(), &base));
    let Some((repaired, cut)) = repaired else { return Err(parsed) };
    let mut parsed = parsed;
    // A value cut for the reader's sake is a problem of its own, unless a
    // known one lies in it or around it (a field missing only because the
    // schema's cut took it).
    let related = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}.")) || a.starts_with(&format!("{b}["));
    for e in cut {
        if !parsed.0.iter().any(|known| related(&known.path, &e.path) || related(&e.path, &known.path)) {
            parsed.0.push(e);
        }
    }
    parsed.0.sort_by_key(|e| e.position.unwrap_or((usize::MAX, 0)));
    let Err(semantic) = check(&repaired) else { return Err(parsed) };
    // The parts cut out: what lies beside them, and names defined in them,
    // would only show the cut. (A key given twice cuts nothing: the
    // repaired reading keeps its last value.)
    let cuts = || parsed.0.iter().filter(|e| !e.message.starts_with("duplicate key"));
    // A top-level key cut out (`log_level: verbose`) hides only what is
    // under it: its parent, the whole file, would hide every other problem.
    let mut parents: Vec<String> =
        cuts().map(|e| e.path.rsplit_once(['.', '[']).map_or(e.path.as_str(), |(p, _)| p).to_string()).collect();
    // A key misspelt (`listners`): what is missing for want of the meant key
    // (`no listeners`) is the same mistake, unless the file has that key too.
    for e in cuts() {
        if let Some(meant) = e.message.split("did you mean `").nth(1).and_then(|m| m.split('`').next()) {
            let meant = match e.path.rsplit_once('.') {
                Some((parent, _)) => format!("{parent}.{meant}"),
                None => meant.to_string(),
            };
            if repaired.locations.find(&meant).is_none() {
                parents.push(meant);
            }
        }
    }
    let under = |path: &str, p: &str| {
        p.is_empty() || path == p || path.starts_with(&format!("{p}.")) || path.starts_with(&format!("{p}["))
    };
    let entry_cut = |e: &config::ConfigError| {
        let p = e.path.as_str();
        ["upstreams", "auth", "consumers", "formats"].iter().any(|top| {
            p == *top
                || p.strip_prefix(top).and_then(|r| r.strip_prefix('.')).is_some_and(|name| !name.contains(['.', '[']))
        })
    };
    let names_cut = cuts().any(entry_cut);
    let mut errors = parsed.0.clone();
    for e in semantic.0 {
        let beside_a_cut = parents.iter().any(|p| under(&e.path, p));
        let unknown_name = names_cut && e.message.starts_with("unknown ");
        if !beside_a_cut && !unknown_name && !errors.iter().any(|known| known.path == e.path) {
            errors.push(e);
        }
    }
    errors.sort_by_key(|e| e.position.unwrap_or((usize::MAX, 0)));
    Err(ConfigErrors(errors))
}

/// What `check` warns about in a config that loads: unsafe or likely
/// mistaken settings, less the ones `warnings.allow` silences, in file order.
pub fn warnings(loaded: &LoadedConfig) -> Vec<config::ConfigError> {
    plan::warnings::warnings(loaded)
}

/// What the micro-benchmarks in `benches/` measure, and the integration
/// tests drive directly (not a stable API).
#[doc(hidden)]
pub mod bench {
    pub use crate::observe::access_log::record::bench::EcsLine;
    pub use crate::policy::auth::cache::{TokenCache, TtlCache, key_of};
    pub use crate::policy::ratelimit::gcra::Gcra;
    pub use crate::policy::ratelimit::memory::MemoryStore;
    pub use crate::policy::ratelimit::redis::RedisStore;
    pub use crate::policy::validate::bench::BodyCheck;
}

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::Mutex;

use config::{ConfigErrors, LoadedConfig};
use plan::Plan;
use server::state::GatewayState;
pub use server::state::{ReloadOutcome, ReloadRequest};
use server::{BoundListener, RunningListener, Shared};

/// The demo config served by `portcullis` with no arguments.
pub const DEMO_CONFIG: &str = include_str!("../examples/demo.yaml");

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid config:\n{0}")]
    Config(#[from] ConfigErrors),
    #[error("the admin API cannot bind {addr}: {source}")]
    Admin {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the access log cannot be opened: {0}")]
    AccessLog(#[source] std::io::Error),
    #[error("listener `{name}` cannot bind {addr}: {source}{}", held_by.as_ref().map(|r| format!(
        " (the running listener `{r}` holds it: a listener renamed on its address is a new one; keep the name, \
         or reload twice: first move it to another address, then rename it back)")).unwrap_or_default())]
    Bind {
        name: String,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
        /// The running listener of another name on that address, on a reload.
        held_by: Option<String>,
    },
}

impl StartError {
    /// The error as the operator reads it: a port or file the config names
    /// is shown at its place in the file (`gw.yaml:3:11: listeners[0].bind: …`).
    pub fn located(&self, loaded: &LoadedConfig) -> String {
        let cfg = &loaded.config;
        let at = match self {
            StartError::Bind { name, .. } => {
                cfg.listeners.iter().position(|l| l.name == *name).map(|i| format!("listeners[{i}].bind"))
            }
            StartError::Admin { .. } => Some("admin.bind".to_string()),
            StartError::AccessLog(_) => Some("access_log.to".to_string()),
            StartError::Config(_) => None,
        };
        match at {
            Some(path) => loaded.error(path, self.to_string()).to_string(),
            None => self.to_string(),
        }
    }
}

pub struct Gateway;

impl Gateway {
    /// Compiles the config, binds every listener and starts serving.
    /// Must be called inside a Tokio runtime.
    pub async fn start(loaded: &LoadedConfig) -> Result<Handle, StartError> {
        Gateway::start_with(loaded, None).await
    }

    /// [`Gateway::start`], with the admin API's `POST /reload` requests
    /// going to the receiver returned from the first moment the admin API
    /// listens (asked for later, [`Handle::reload_requests`] leaves a window
    /// in which a reload is answered 503).
    pub async fn start_taking_reloads(
        loaded: &LoadedConfig,
    ) -> Result<(Handle, tokio::sync::mpsc::Receiver<ReloadRequest>), StartError> {
        let (to, from) = tokio::sync::mpsc::channel(4);
        Ok((Gateway::start_with(loaded, Some(to)).await?, from))
    }

    async fn start_with(
        loaded: &LoadedConfig,
        reloads: Option<server::state::ReloadRequests>,
    ) -> Result<Handle, StartError> {
        let plan = plan::compile(loaded)?;
        let bound = bind_new(&plan, &[]).await?;
        plan.start_background(None).map_err(StartError::AccessLog)?;
        let state = GatewayState::new(loaded, &plan.observe.registry);
        if let Some(to) = reloads {
            state.set_reload_requests(to);
        }
        let admin_addr = plan.admin.as_ref().map(|a| a.addr);
        let shared = Arc::new(Shared { plan: ArcSwap::from_pointee(plan), state });
        let admin = match admin_addr {
            Some(addr) => {
                Some(admin::start(addr, shared.clone()).await.map_err(|source| StartError::Admin { addr, source })?)
            }
            None => None,
        };
        let listeners: Vec<RunningListener> = bound.into_iter().map(|b| b.serve(shared.clone())).collect();
        shared.state.set_listeners(listeners.iter().map(|l| (l.name.clone(), l.addr)).collect());
        tracing::info!(config_hash = format!("{:016x}", loaded.hash), "config loaded");
        log_warnings(loaded);
        let logging = (loaded.config.log_level, loaded.config.log_format);
        Ok(Handle { shared, listeners: Mutex::new(listeners), admin: std::sync::Mutex::new(admin), logging })
    }
}

/// `check`'s warnings, one log event each, when a config goes live.
fn log_warnings(loaded: &LoadedConfig) {
    for w in warnings(loaded) {
        tracing::warn!(warning = %w, "config warning");
    }
}

/// Whether a running listener serves `l` as the new plan describes it.
fn same_listener(r: &RunningListener, l: &plan::ListenerPlan) -> bool {
    // Port 0 is "any port": the one bound stands for it, on the same address.
    r.name == l.name && (r.addr == l.addr || l.addr.port() == 0 && l.addr.ip() == r.addr.ip())
}

/// Binds the listeners of `plan` that are not already running. On error
/// nothing new stays bound and the running ones are untouched.
async fn bind_new(plan: &Plan, running: &[RunningListener]) -> Result<Vec<BoundListener>, StartError> {
    let mut bound = Vec::new();
    for l in &plan.listeners {
        if running.iter().any(|r| same_listener(r, l)) {
            continue;
        }
        let b = BoundListener::bind(l.name.clone(), l.addr).await.map_err(|source| StartError::Bind {
            name: l.name.to_string(),
            addr: l.addr,
            held_by: running
                .iter()
                .find(|r| {
                    // The same address, or the same port where either is a wildcard.
                    r.name != l.name
                        && r.addr.port() == l.addr.port()
                        && (r.addr.ip() == l.addr.ip() || r.addr.ip().is_unspecified() || l.addr.ip().is_unspecified())
                })
                .map(|r| r.name.to_string()),
            source,
        })?;
        bound.push(b);
    }
    Ok(bound)
}

/// A running gateway.
pub struct Handle {
    shared: Arc<Shared>,
    listeners: Mutex<Vec<RunningListener>>,
    admin: std::sync::Mutex<Option<admin::RunningAdmin>>,
    /// The own log's level and format, set up once at start.
    logging: (config::LogLevel, config::LogFormat),
}

impl Handle {
    /// The bound address of the listener `name`.
    pub fn addr(&self, name: &str) -> Option<SocketAddr> {
        self.addrs().into_iter().find(|(n, _)| n == name).map(|(_, a)| a)
    }

    /// Every listener's name and bound address.
    pub fn addrs(&self) -> Vec<(String, SocketAddr)> {
        match self.listeners.try_lock() {
            Ok(ls) => ls.iter().map(|l| (l.name.to_string(), l.addr)).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// How many reloads have succeeded.
    pub fn reloads(&self) -> u64 {
        self.shared.state.reloads()
    }

    /// The admin API keeps listening where it was bound until a restart,
    /// whatever `admin.bind` now says: a config that drops `admin.token`
    /// is refused while that address is not a loopback one (`check` judges
    /// the file's own `bind`, which a reload does not apply).
    fn admin_stays_guarded(&self, loaded: &LoadedConfig, plan: &plan::Plan) -> Result<(), StartError> {
        let Some(running) = self.admin_addr() else { return Ok(()) };
        if running.ip().is_loopback() || plan.admin.as_ref().is_none_or(|a| a.has_token()) {
            return Ok(());
        }
        let message = format!(
            "the admin API listens on `{running}` until the gateway restarts (a change of `admin.bind` waits \
             for a restart), not a loopback address: `admin.token` must stay set"
        );
        Err(StartError::Config(config::ConfigErrors(vec![loaded.error("admin.token", message)])))
    }

    /// The admin API's bound address, when `admin` is set.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|a| a.addr)
    }

    /// Counts a reload that failed before `reload` was reached (a config
    /// file that did not parse).
    pub fn reload_refused(&self) {
        self.shared.state.reload_refused();
    }

    /// Reopens the access log's file (after logrotate moved it; SIGUSR1).
    pub fn reopen_logs(&self) {
        if let Some(log) = self.shared.plan.load().observe.access_log.get() {
            log.reopen();
        }
    }

    /// Waits (up to one second) until the access log lines queued so far are written.
    pub fn flush_logs(&self) {
        if let Some(log) = self.shared.plan.load().observe.access_log.get() {
            log.flush(std::time::Duration::from_secs(1));
        }
    }

    /// Reloads from the config file at `path` (SIGHUP, `--watch` and the
    /// admin API's `POST /reload` all come here). A refused config is
    /// logged one problem per event (a log shipper keeps each whole) and
    /// changes nothing.
    pub async fn reload_file(&self, path: &std::path::Path) -> ReloadOutcome {
        // Read and parsed off the runtime's threads (a large OpenAPI
        // document takes seconds): requests and signals go on meanwhile.
        let owned = path.to_path_buf();
        let read = tokio::task::spawn_blocking(move || load_explained(&owned)).await;
        let read = read.unwrap_or_else(|e| {
            Err(config::ConfigErrors(vec![config::ConfigError {
                file: path.display().to_string(),
                path: String::new(),
                position: None,
                message: format!("the config could not be read: {e}"),
            }]))
        });
        let result = match read {
            Ok(loaded) => {
                let result = self.try_reload(&loaded).await;
                if result.is_err() {
                    self.shared.state.reload_refused();
                }
                result.map(|warnings| (loaded.hash, warnings))
            }
            Err(errors) => {
                self.reload_refused();
                Err(errors.into())
            }
        };
        match result {
            Ok((hash, warnings)) => ReloadOutcome::Reloaded { hash, warnings },
            Err(e) => {
                let errors = match e {
                    // Read in the running gateway's environment, fixed when
                    // it started: not the shell that sent `portcullis reload`.
                    StartError::Config(errors) => errors
                        .0
                        .iter()
                        .map(|e| match e.message.contains("environment variable") && e.message.ends_with("is not set") {
                            true => format!("{e} in the running gateway's environment (fixed when it started: restart it to add one)"),
                            false => e.to_string(),
                        })
                        .collect(),
                    other => match config::load_file(path) {
                        Ok(loaded) => vec![other.located(&loaded)],
                        Err(_) => vec![other.to_string()],
                    },
                };
                for e in &errors {
                    tracing::error!(problem = %e, "reload refused");
                }
                let running = self.shared.state.loaded().hash;
                tracing::error!(
                    problems = errors.len(),
                    config_hash = format!("{running:016x}"),
                    "reload refused: still serving the previous config"
                );
                ReloadOutcome::Refused { errors }
            }
        }
    }

    /// Reload requests from the admin API's `POST /reload`, for the loop
    /// that runs the gateway to answer (with [`Handle::reload_file`]).
    /// Without a receiver, `POST /reload` answers 503.
    pub fn reload_requests(&self) -> tokio::sync::mpsc::Receiver<ReloadRequest> {
        let (to, from) = tokio::sync::mpsc::channel(4);
        self.shared.state.set_reload_requests(to);
        from
    }

    /// Compiles `loaded` and swaps it in: new requests use it, in-flight ones
    /// finish on the old plan. New listeners are bound, removed ones drained.
    /// An invalid config (or a listener that cannot bind) changes nothing.
    pub async fn reload(&self, loaded: &LoadedConfig) -> Result<(), StartError> {
        let result = self.try_reload(loaded).await;
        if result.is_err() {
            self.shared.state.reload_refused();
        }
        result.map(drop)
    }

    /// [`Handle::reload`], giving back the warnings it logged (the config's,
    /// and settings that take effect at a restart only).
    async fn try_reload(&self, loaded: &LoadedConfig) -> Result<Vec<String>, StartError> {
        let previous = self.shared.plan.load_full();
        // Compiled off the runtime's threads, as it is read (`reload_file`).
        let (owned, before) = (loaded.clone(), previous.clone());
        let compiled = tokio::task::spawn_blocking(move || plan::compile_after(&owned, Some(&before))).await;
        let plan = Arc::new(compiled.unwrap_or_else(|e| {
            Err(config::ConfigErrors(vec![config::ConfigError {
                file: loaded.source_name.clone(),
                path: String::new(),
                position: None,
                message: format!("the gateway failed on this config ({e}); the config is refused"),
            }]))
        })?);
        self.admin_stays_guarded(loaded, &plan)?;
        let mut listeners = self.listeners.lock().await;
        // Bind new ports first: if one is taken, nothing changes.
        let bound = bind_new(&plan, &listeners).await?;
        plan.start_background(Some(&previous)).map_err(StartError::AccessLog)?;
        let mut notes = Vec::new();
        // Port 0 in the file is "any port": the one bound is not a change.
        let unchanged = |a: SocketAddr, running: SocketAddr| a == running || (a.port() == 0 && a.ip() == running.ip());
        if let Some(running) = self.admin_addr()
            && !plan.admin.as_ref().is_some_and(|a| unchanged(a.addr, running))
        {
            let note = match &plan.admin {
                Some(_) => format!(
                    "a change of `admin.bind` takes effect when the gateway restarts: the admin API stays on {running}"
                ),
                // What the running admin API serves without its block.
                None => format!(
                    "`admin` was removed: the admin API on {running} stops listening when the gateway restarts; \
                     until then only /healthz answers there"
                ),
            };
            tracing::warn!("{note}");
            notes.push(note);
        }
        let mut restart_notes = Vec::new();
        if self.admin_addr().is_none()
            && let Some(admin) = &plan.admin
        {
            restart_notes.push(format!(
                "`admin` was added: the admin API listens on {} once the gateway restarts (it is bound at start)",
                admin.addr
            ));
        }
        if (loaded.config.log_level, loaded.config.log_format) != self.logging {
            restart_notes.push(
                "a change of `log_level` or `log_format` takes effect when the gateway restarts (the log is set up \
                 at start)"
                    .to_string(),
            );
        }
        for note in restart_notes {
            tracing::warn!("{note}");
            notes.push(note);
        }
        // The plan goes live before the new listeners accept, so their first
        // connections find their settings.
        self.shared.plan.store(plan.clone());
        previous.retire();
        let (keep, gone): (Vec<_>, Vec<_>) = std::mem::take(&mut *listeners)
            .into_iter()
            .partition(|r| plan.listeners.iter().any(|l| same_listener(r, l)));
        *listeners = keep;
        listeners.extend(bound.into_iter().map(|b| b.serve(self.shared.clone())));
        self.shared.state.set_listeners(listeners.iter().map(|l| (l.name.clone(), l.addr)).collect());
        drop(listeners);
        let deadline = plan.shutdown_timeout;
        for l in gone {
            tracing::info!(listener = %l.name, addr = %l.addr, "listener removed; draining");
            tokio::spawn(l.drain(deadline));
        }
        self.shared.state.reloaded(loaded, &plan.observe.registry);
        for w in warnings(loaded) {
            tracing::warn!(warning = %w, "config warning");
            notes.push(w.to_string());
        }
        tracing::info!(
            reloads = self.shared.state.reloads(),
            config_hash = format!("{:016x}", loaded.hash),
            "config reloaded"
        );
        Ok(notes)
    }

    /// Graceful shutdown: stop accepting, let in-flight requests finish
    /// (idle keep-alive connections close, HTTP/2 gets GOAWAY), and cut what
    /// is left after the config's `shutdown_timeout`.
    /// `/readyz` answers 503 from the start of the drain; the admin API
    /// stops last, and the access log and queued spans are flushed before
    /// this returns.
    pub async fn shutdown(self) {
        self.shutdown_unless(std::future::pending()).await;
    }

    /// [`Handle::shutdown`], cut short when `cut` completes first (a second
    /// SIGTERM or Ctrl-C): what is still in flight is dropped with the
    /// process; the access log lines written so far are flushed.
    pub async fn shutdown_unless(self, cut: impl std::future::Future<Output = ()>) {
        let shared = self.shared.clone();
        tokio::select! {
            () = self.drain() => {}
            () = cut => {
                tracing::warn!("stopping now: a second signal cut the drain (requests still in flight are dropped)");
                if let Some(log) = shared.plan.load().observe.access_log.get().cloned() {
                    log.flush_within(std::time::Duration::from_secs(2)).await;
                }
            }
        }
    }

    async fn drain(self) {
        self.shared.state.start_draining();
        // Load balancers polling `/readyz` see 503 while traffic is still
        // served (Envoy's drain keeps its listeners too): they stop sending
        // before the ports close, rather than finding them closed.
        let delay = self.shared.plan.load().shutdown_delay;
        if !delay.is_zero() {
            tracing::info!(?delay, "shutting down: /readyz answers 503; serving on until the delay ends");
            tokio::time::sleep(delay).await;
        }
        tracing::info!("shutting down: draining connections");
        let deadline = self.shared.plan.load().shutdown_timeout;
        let listeners = self.listeners.into_inner();
        let drains: Vec<_> = listeners.into_iter().map(|l| tokio::spawn(l.drain(deadline))).collect();
        for d in drains {
            let _ = d.await;
        }
        let admin = self.admin.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(admin) = admin {
            admin.stop().await;
        }
        if let Some(log) = self.shared.plan.load().observe.access_log.get().cloned() {
            log.flush_within(std::time::Duration::from_secs(2)).await;
        }
        // The last requests' spans, sent before the process goes.
        #[cfg(feature = "otlp")]
        if let Some(exporter) = self.shared.plan.load().observe.exporter.get().cloned() {
            exporter.flush(std::time::Duration::from_secs(2)).await;
        }
    }
}
