//! Listeners and connections: accept TCP, serve HTTP/1.1 and HTTP/2 (h2c
//! with prior knowledge) on the same port, and hand each request to the
//! engine with the current plan. TLS arrives here as one more layer around
//! the accepted stream (`ConnInfo::scheme` is its seam).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::plan::Plan;
use crate::proxy::{self, ConnInfo};

/// What every connection shares: the current plan (swapped on reload).
pub struct Shared {
    pub plan: ArcSwap<Plan>,
    http: auto::Builder<TokioExecutor>,
}

impl Shared {
    pub fn new(plan: Plan) -> Shared {
        let mut http = auto::Builder::new(TokioExecutor::new());
        http.http1().timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(30));
        http.http2().timer(TokioTimer::new());
        Shared { plan: ArcSwap::from_pointee(plan), http }
    }
}

/// Binds a listener; port 0 picks a free port.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Accepts connections until `stop` turns true.
pub async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(serve_connection(stream, peer, shared.clone()));
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
    connections.abort_all();
}

async fn serve_connection(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let conn = ConnInfo { peer, scheme: "http" };
    let svc_shared = shared.clone();
    let service = service_fn(move |req| {
        // One atomic load per request; the plan stays alive until the request ends.
        let plan = svc_shared.plan.load_full();
        async move { Ok::<_, Infallible>(proxy::handle(&plan, &conn, req).await) }
    });
    if let Err(e) = shared.http.serve_connection_with_upgrades(TokioIo::new(stream), service).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
