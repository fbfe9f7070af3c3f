//! One client connection: optional TLS handshake, then HTTP/1.1 or HTTP/2
//! (detected from the first bytes or ALPN) until the client leaves, the
//! connection idles out, or the listener stops.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{OpenGuard, Shared, tls};
use crate::plan::ListenerPlan;
use crate::proxy::{self, ConnInfo};

pub(super) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    listener: Arc<str>,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    _open: OpenGuard,
) {
    let _ = stream.set_nodelay(true);
    let plan = shared.plan.load_full();
    let Some(lp) = plan.listener(&listener) else { return };
    let mut info = ConnInfo {
        peer,
        scheme: "http",
        listener: listener.clone(),
        client_cert: None,
        hsts: None,
        redirect_https: lp.redirect_https,
    };
    match &lp.tls {
        None => run(stream, info, lp, shared.clone(), stop).await,
        Some(config) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
            let tls = match tokio::time::timeout(lp.limits.tls_handshake_timeout.0, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            info.scheme = "https";
            info.hsts = lp.hsts.clone();
            info.client_cert = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(tls::client_identity)
                .map(Arc::new);
            run(tls, info, lp, shared.clone(), stop).await
        }
    }
}

/// When the connection last finished a request, and how many are in flight.
#[derive(Default)]
struct Activity {
    in_flight: AtomicUsize,
    /// Requests seen so far (a connection that never sends one is cut off).
    started: AtomicU64,
    /// Milliseconds since the connection started.
    last_ms: AtomicU64,
}

async fn run<I>(io: I, info: ConnInfo, lp: &ListenerPlan, shared: Arc<Shared>, mut stop: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let started = Instant::now();
    let activity = Arc::new(Activity::default());
    let info = Arc::new(info);
    let svc_activity = activity.clone();
    let service = service_fn(move |req| {
        // One atomic load per request; the plan stays alive until the request ends.
        let plan = shared.plan.load_full();
        let info = info.clone();
        let activity = svc_activity.clone();
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        activity.started.fetch_add(1, Ordering::Relaxed);
        async move {
            let resp = proxy::handle(&plan, &info, req).await;
            activity.last_ms.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
            activity.in_flight.fetch_sub(1, Ordering::Relaxed);
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = lp.http.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let idle = lp.limits.idle_timeout.0;
    let mut closing = *stop.borrow();
    if closing {
        conn.as_mut().graceful_shutdown();
    }
    let mut check = tokio::time::interval_at(started + idle, idle.max(std::time::Duration::from_millis(100)) / 2);
    // hyper's header timer starts with the first byte; a connection that
    // sends nothing at all gets the same deadline from here.
    let first_request = tokio::time::sleep(lp.limits.header_read_timeout.0);
    tokio::pin!(first_request);
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stop.changed(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = &mut first_request, if !closing && activity.started.load(Ordering::Relaxed) == 0 => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = check.tick(), if !closing => {
                let quiet_since = std::time::Duration::from_millis(activity.last_ms.load(Ordering::Relaxed));
                if activity.in_flight.load(Ordering::Relaxed) == 0 && started.elapsed().saturating_sub(quiet_since) >= idle {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
