//! What the gateway as a whole is doing, for the admin API and the
//! gateway-level metrics: the config in use, reloads, listeners, draining.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::config::LoadedConfig;
use crate::observe::metrics::{Counter, Gauge, Registry};

pub struct GatewayState {
    /// Where the admin API's `POST /reload` asks for a reload (set by
    /// whoever runs the gateway from a file: `Handle::reload_requests`).
    reload_requests: Mutex<Option<ReloadRequests>>,
    draining: AtomicBool,
    loaded: Mutex<Loaded>,
    listeners: Mutex<Vec<(Arc<str>, SocketAddr)>>,
    reloaded: Arc<Counter>,
    refused: Arc<Counter>,
    last_reload: Arc<Gauge>,
    _build: Arc<Gauge>,
}

/// What a reload came to, as the admin API answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The new config is live; its hash, and what `check` warns about in it
    /// (and settings that wait for a restart), one line each.
    Reloaded { hash: u64, warnings: Vec<String> },
    /// The new config was refused (every problem, one line each); the
    /// previous one keeps serving.
    Refused { errors: Vec<String> },
    /// Nothing to reload (the embedded demo config), or no one to do it.
    Unavailable(String),
}

/// A reload asked for: the answer goes back on the oneshot.
pub type ReloadRequest = tokio::sync::oneshot::Sender<ReloadOutcome>;
pub type ReloadRequests = tokio::sync::mpsc::Sender<ReloadRequest>;

#[derive(Clone)]
pub struct Loaded {
    pub hash: u64,
    pub at: SystemTime,
    pub config: Arc<LoadedConfig>,
    /// `portcullis_config_info{hash}`: replaced with the config.
    _info: Arc<Gauge>,
}

/// Wall time for the admin's status and the reload timestamp metric.
#[allow(clippy::disallowed_methods)]
fn wall_now() -> SystemTime {
    SystemTime::now()
}

fn loaded(config: &LoadedConfig, registry: &Registry) -> Loaded {
    let hash = format!("{:016x}", config.hash);
    let info = registry.gauge("portcullis_config_info", vec![("hash", hash)]);
    info.set(1);
    Loaded { hash: config.hash, at: wall_now(), config: Arc::new(config.clone()), _info: info }
}

fn unix_now() -> i64 {
    wall_now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

impl GatewayState {
    pub fn new(config: &LoadedConfig, registry: &Registry) -> GatewayState {
        let build = registry.gauge("portcullis_build_info", vec![("version", env!("CARGO_PKG_VERSION").into())]);
        build.set(1);
        let last_reload = registry.gauge("portcullis_config_last_reload_timestamp_seconds", Vec::new());
        last_reload.set(unix_now());
        GatewayState {
            reload_requests: Mutex::new(None),
            draining: AtomicBool::new(false),
            loaded: Mutex::new(loaded(config, registry)),
            listeners: Mutex::new(Vec::new()),
            reloaded: registry.counter("portcullis_config_reloads", vec![("result", "success".into())]),
            refused: registry.counter("portcullis_config_reloads", vec![("result", "failure".into())]),
            last_reload,
            _build: build,
        }
    }

    pub fn reloaded(&self, config: &LoadedConfig, registry: &Registry) {
        *self.loaded.lock().unwrap_or_else(|e| e.into_inner()) = loaded(config, registry);
        self.reloaded.inc();
        self.last_reload.set(unix_now());
    }

    pub fn reload_refused(&self) {
        self.refused.inc();
    }

    pub fn reloads(&self) -> u64 {
        self.reloaded.get()
    }

    pub fn loaded(&self) -> Loaded {
        self.loaded.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The running config's document (secrets in clear: redact before showing).
    pub fn document(&self) -> serde_json::Value {
        self.loaded().config.document()
    }

    pub fn set_listeners(&self, listeners: Vec<(Arc<str>, SocketAddr)>) {
        *self.listeners.lock().unwrap_or_else(|e| e.into_inner()) = listeners;
    }

    pub fn listeners(&self) -> Vec<(Arc<str>, SocketAddr)> {
        self.listeners.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn set_reload_requests(&self, to: ReloadRequests) {
        *self.reload_requests.lock().unwrap_or_else(|e| e.into_inner()) = Some(to);
    }

    /// Where to ask for a reload, if anyone answers.
    pub fn reload_requests(&self) -> Option<ReloadRequests> {
        self.reload_requests.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
