//! Portcullis: a secure, high-performance API gateway.
//!
//! The library API is small: load a config, [`Gateway::start`] it, and use
//! the returned [`Handle`] to learn the bound addresses, reload, or shut down.
//! `main.rs` and the integration tests use exactly this.
#![forbid(unsafe_code)]

pub mod config;
pub mod http;
pub mod plan;
pub mod policy;
pub mod proxy;
pub mod responder;
pub mod router;
pub mod server;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Mutex;

use config::{ConfigErrors, LoadedConfig};
use plan::Plan;
use server::{RunningListener, Shared};

/// The demo config served by `portcullis` with no arguments.
pub const DEMO_CONFIG: &str = include_str!("../examples/demo.yaml");

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid config:\n{0}")]
    Config(#[from] ConfigErrors),
    #[error("listener `{name}` cannot bind {addr}: {source}")]
    Bind {
        name: String,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

pub struct Gateway;

impl Gateway {
    /// Compiles the config, binds every listener and starts serving.
    /// Must be called inside a Tokio runtime.
    pub async fn start(loaded: &LoadedConfig) -> Result<Handle, StartError> {
        let plan = plan::compile(loaded)?;
        plan.start_background();
        let shared = Arc::new(Shared { plan: ArcSwap::from_pointee(plan) });
        let listeners = open_listeners(&shared, &shared.plan.load(), Vec::new()).await?;
        tracing::info!(config_hash = format!("{:016x}", loaded.hash), "config loaded");
        Ok(Handle { shared, listeners: Mutex::new(listeners), reloads: AtomicU64::new(0) })
    }
}

/// Binds the listeners of `plan` that are not in `running` (by name and
/// address); returns the full set. On error nothing new stays bound.
async fn open_listeners(
    shared: &Arc<Shared>,
    plan: &Plan,
    mut running: Vec<RunningListener>,
) -> Result<Vec<RunningListener>, StartError> {
    let mut opened = Vec::new();
    for l in &plan.listeners {
        let kept = running.iter().any(|r| r.name == l.name && (r.addr == l.addr || l.addr.port() == 0));
        if kept {
            continue;
        }
        match RunningListener::start(l.name.clone(), l.addr, shared.clone()).await {
            Ok(r) => opened.push(r),
            Err(source) => {
                for r in opened {
                    r.drain(Duration::ZERO).await;
                }
                return Err(StartError::Bind { name: l.name.to_string(), addr: l.addr, source });
            }
        }
    }
    running.extend(opened);
    Ok(running)
}

/// A running gateway.
pub struct Handle {
    shared: Arc<Shared>,
    listeners: Mutex<Vec<RunningListener>>,
    reloads: AtomicU64,
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
        self.reloads.load(Ordering::Relaxed)
    }

    /// Compiles `loaded` and swaps it in: new requests use it, in-flight ones
    /// finish on the old plan. New listeners are bound, removed ones drained.
    /// An invalid config (or a listener that cannot bind) changes nothing.
    pub async fn reload(&self, loaded: &LoadedConfig) -> Result<(), StartError> {
        let plan = Arc::new(plan::compile(loaded)?);
        plan.start_background();
        let mut listeners = self.listeners.lock().await;
        let current = std::mem::take(&mut *listeners);
        // Bind first: if a new port is taken, the old plan keeps serving.
        let (keep, gone): (Vec<_>, Vec<_>) = current
            .into_iter()
            .partition(|r| plan.listeners.iter().any(|l| l.name == r.name && (l.addr == r.addr || l.addr.port() == 0)));
        let all = match open_listeners(&self.shared, &plan, keep).await {
            Ok(all) => all,
            Err(e) => {
                let (mut keep, _) = (Vec::new(), ());
                // Put back what was running, untouched.
                std::mem::swap(&mut keep, &mut *listeners);
                listeners.extend(gone);
                return Err(e);
            }
        };
        self.shared.plan.store(plan.clone());
        *listeners = all;
        drop(listeners);
        let deadline = plan.shutdown_timeout;
        for l in gone {
            tracing::info!(listener = %l.name, addr = %l.addr, "listener removed; draining");
            tokio::spawn(l.drain(deadline));
        }
        let n = self.reloads.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::info!(reloads = n, config_hash = format!("{:016x}", loaded.hash), "config reloaded");
        Ok(())
    }

    /// Graceful shutdown: stop accepting, let in-flight requests finish
    /// (idle keep-alive connections close, HTTP/2 gets GOAWAY), and cut what
    /// is left after the config's `shutdown_timeout`.
    pub async fn shutdown(self) {
        let deadline = self.shared.plan.load().shutdown_timeout;
        let listeners = self.listeners.into_inner();
        let drains: Vec<_> = listeners.into_iter().map(|l| tokio::spawn(l.drain(deadline))).collect();
        for d in drains {
            let _ = d.await;
        }
    }
}
