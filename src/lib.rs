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

use tokio::sync::watch;
use tokio::task::JoinSet;

use config::{ConfigErrors, LoadedConfig};
use server::Shared;

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
        let mut bound = Vec::new();
        for l in &plan.listeners {
            let listener = server::bind(l.addr).await.map_err(|source| StartError::Bind {
                name: l.name.to_string(),
                addr: l.addr,
                source,
            })?;
            let addr = listener.local_addr().map_err(|source| StartError::Bind {
                name: l.name.to_string(),
                addr: l.addr,
                source,
            })?;
            bound.push((l.name.to_string(), addr, listener));
        }
        let shared = Arc::new(Shared::new(plan));
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut addrs = Vec::new();
        for (name, addr, listener) in bound {
            tracing::info!(listener = %name, %addr, "listening");
            tasks.spawn(server::accept_loop(listener, shared.clone(), stop_rx.clone()));
            addrs.push((name, addr));
        }
        Ok(Handle { addrs, shared, stop, tasks })
    }
}

/// A running gateway.
pub struct Handle {
    addrs: Vec<(String, SocketAddr)>,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Handle {
    /// The bound address of the listener `name`.
    pub fn addr(&self, name: &str) -> Option<SocketAddr> {
        self.addrs.iter().find(|(n, _)| n == name).map(|(_, a)| *a)
    }

    /// Every listener's name and bound address, in config order.
    pub fn addrs(&self) -> &[(String, SocketAddr)] {
        &self.addrs
    }

    /// Compiles `loaded` and swaps it in: new requests use it, in-flight ones
    /// finish on the old plan. An invalid config changes nothing. (Listeners
    /// are not re-bound yet: changes to `listeners` need a restart.)
    pub fn reload(&self, loaded: &LoadedConfig) -> Result<(), ConfigErrors> {
        let plan = plan::compile(loaded)?;
        self.shared.plan.store(Arc::new(plan));
        Ok(())
    }

    /// Stops accepting and closes connections.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}
