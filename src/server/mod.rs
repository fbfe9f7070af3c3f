//! Listeners and connections.
//!
//! ```text
//! accept ─► connection limit ─► TLS handshake (SNI, ALPN, mTLS) ─► HTTP/1.1 | HTTP/2
//!        ─► proxy::handle per request, on the plan current at that moment
//! ```
//! Each connection also watches its listener's stop signal (graceful
//! shutdown: GOAWAY / `Connection: close`, in-flight requests finish) and its
//! own idleness (`limits.idle_timeout`).

mod conn;
mod h1;
pub mod open_files;
pub mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::plan::Plan;

/// What every connection shares: the current plan (swapped on reload),
/// and the gateway's state (for the admin API).
pub struct Shared {
    pub plan: ArcSwap<Plan>,
    pub state: state::GatewayState,
}

/// One bound listener and the task that serves it.
pub struct RunningListener {
    pub name: Arc<str>,
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    /// Wakes our HTTP/1.1 connections' idle waits (see `StopSignal`).
    stop_notify: Arc<Notify>,
    /// Tells the accept loop the drain's deadline passed: cut what is left.
    cut: Arc<Notify>,
    task: JoinHandle<()>,
}

/// How long the connections cut at a drain's deadline get to be dropped
/// (their access-log lines written: a WebSocket's, with its bytes).
const CUT_GRACE: Duration = Duration::from_secs(2);

/// A listener's stop signal as its connections see it: the flag (a watch,
/// which hyper's connections and the accept loop wait on) and a `Notify`
/// for our HTTP/1.1 connections, which wait on one registered `Notified`
/// for their whole life (re-polling it is cheaper than `watch::changed`).
#[derive(Clone)]
pub(crate) struct StopSignal {
    pub flag: watch::Receiver<bool>,
    pub notify: Arc<Notify>,
}

/// Connections the kernel queues for a listener before they are accepted
/// (capped by `net.core.somaxconn`).
const LISTEN_BACKLOG: u32 = 1024;

/// A bound socket not yet accepting: binding and serving are separate so
/// that a reload can bind every new port first and only then switch over.
pub struct BoundListener {
    pub name: Arc<str>,
    pub addr: SocketAddr,
    listener: TcpListener,
}

impl BoundListener {
    /// Binds `addr`. Port 0 picks a free port. The accept queue holds
    /// `LISTEN_BACKLOG` connections (tokio's `bind` asks for 128, as the
    /// standard library: under a burst of connects one in ~130 waited a
    /// second for the client's SYN to be sent again; NGINX asks for 511).
    pub async fn bind(name: Arc<str>, addr: SocketAddr) -> std::io::Result<BoundListener> {
        let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        let listener = socket.listen(LISTEN_BACKLOG)?;
        let addr = listener.local_addr()?;
        Ok(BoundListener { name, addr, listener })
    }

    /// Starts accepting (the plan that names this listener must be live).
    pub fn serve(self, shared: Arc<Shared>) -> RunningListener {
        let (stop, stop_rx) = watch::channel(false);
        let stop_notify = Arc::new(Notify::new());
        let signal = StopSignal { flag: stop_rx, notify: stop_notify.clone() };
        let cut = Arc::new(Notify::new());
        let task = tokio::spawn(accept_loop(self.listener, self.name.clone(), shared, signal, cut.clone()));
        tracing::info!(listener = %self.name, addr = %self.addr, "listening");
        RunningListener { name: self.name, addr: self.addr, stop, stop_notify, cut, task }
    }
}

impl RunningListener {
    /// Stops accepting, asks every connection to finish politely, and waits
    /// up to `deadline` for them before cutting what is left.
    pub async fn drain(self, deadline: Duration) {
        // The flag first: a connection that registers after the notice sees it.
        let _ = self.stop.send(true);
        self.stop_notify.notify_waiters();
        let mut task = self.task;
        if tokio::time::timeout(deadline, &mut task).await.is_err() {
            tracing::warn!(listener = %self.name, "drain deadline passed; closing remaining connections");
            // The accept loop cuts its connections and waits until each is
            // dropped, so that what they log on the way out (a WebSocket's
            // line) is written before the process flushes its log and goes.
            self.cut.notify_one();
            if tokio::time::timeout(CUT_GRACE, &mut task).await.is_err() {
                task.abort();
            }
        }
    }
}

async fn accept_loop(listener: TcpListener, name: Arc<str>, shared: Arc<Shared>, signal: StopSignal, cut: Arc<Notify>) {
    let mut stop = signal.flag.clone();
    let open = Arc::new(AtomicUsize::new(0));
    // `portcullis_connections{listener,state="open"}`, while this loop runs.
    let probe: Arc<dyn Fn() -> f64 + Send + Sync> = {
        let open = open.clone();
        Arc::new(move || open.load(Ordering::Relaxed) as f64)
    };
    let labels = vec![("listener", name.to_string()), ("state", "open".to_string())];
    shared.plan.load().observe.registry.probe("portcullis_connections", labels, probe.clone());
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let plan = shared.plan.load_full();
                    let Some(lp) = plan.listener(&name) else { continue };
                    // Over the limit: close at once rather than queue (NGINX and Envoy do the same).
                    if open.load(Ordering::Relaxed) >= lp.limits.max_connections {
                        tracing::debug!(listener = %name, %peer, "connection limit reached; closing");
                        drop(stream);
                        continue;
                    }
                    open.fetch_add(1, Ordering::Relaxed);
                    let guard = OpenGuard(open.clone());
                    connections.spawn(conn::serve(stream, peer, name.clone(), shared.clone(), signal.clone(), guard));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    let _probe = probe;
    // Connections saw the same stop signal and are finishing; wait for
    // them, or, once the drain's deadline passed, cut them and wait until
    // each is dropped.
    loop {
        tokio::select! {
            joined = connections.join_next() => if joined.is_none() { break },
            () = cut.notified() => {
                connections.abort_all();
                while connections.join_next().await.is_some() {}
                break;
            }
        }
    }
}

/// Counts a connection as open until dropped.
struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
