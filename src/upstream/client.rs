//! The pooled HTTP client of one upstream: keep-alive connections over
//! plain TCP or rustls (aws-lc-rs), HTTP/1.1 or HTTP/2, with a connect timeout.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;

use hyper_rustls::{ConfigBuilderExt, FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_pki_types::ServerName;

use crate::config::{UpstreamConfig, UpstreamProtocol};
use crate::wire::BoxError;

pub type HttpClient = Client<Bounded, crate::http::request_body::RequestBody>;

/// A connector with `timeouts.connect` over the whole of making a
/// connection: TCP and the TLS handshake. hyper-util's own connect timeout
/// bounds the TCP connect only, so a target that took the connection and
/// never answered the ClientHello (a tarpit, an overloaded balancer) held
/// each request for all of `timeouts.request`, and it was no connect
/// failure to retry on another target (NGINX's `proxy_connect_timeout`
/// covers the handshake; the `http2` path's connect does too).
#[derive(Clone)]
pub struct Bounded {
    inner: HttpsConnector<HttpConnector>,
    timeout: Duration,
}

type Made = <HttpsConnector<HttpConnector> as tower_service::Service<Uri>>::Response;

/// When a connection was made, in its `Connected` extras: a request that
/// fails on a connection older than itself failed on a reused one
/// (hyper-util's error does not say), and an idempotent one may go again
/// (`proxy::forward`), as the own HTTP/1.1 pool resends.
#[derive(Clone, Copy, Debug)]
pub struct MadeAt(pub tokio::time::Instant);

/// A connection stamped with when it was made.
pub struct Stamped<T> {
    io: T,
    made: MadeAt,
}

impl<T: hyper::rt::Read + Unpin> hyper::rt::Read for Stamped<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: hyper::rt::Write + Unpin> hyper::rt::Write for Stamped<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}

impl<T: Connection> Connection for Stamped<T> {
    fn connected(&self) -> Connected {
        self.io.connected().extra(self.made)
    }
}

impl tower_service::Service<Uri> for Bounded {
    type Response = Stamped<Made>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Stamped<Made>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(made) => made.map(|io| Stamped { io, made: MadeAt(tokio::time::Instant::now()) }),
                Err(_) => Err(Box::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no connection (TCP and TLS handshake) within timeouts.connect",
                )) as BoxError),
            }
        })
    }
}

/// Builds the client over the upstream's TLS settings (`tls_config`) and
/// `tls.server_name`, both checked by the plan.
pub fn build(cfg: &UpstreamConfig, tls: rustls::ClientConfig, server_name: Option<ServerName<'static>>) -> HttpClient {
    build_with(cfg, tls, server_name, cfg.pool.max_idle_per_target)
}

/// The client of WebSocket handshakes: it keeps no idle connection. A
/// connection whose handshake the target declined (a `200`, a `426`) is
/// one the target may read as it likes from then on; pooled, it carried
/// the next handshakes of every client and route (NGINX opens one
/// connection per WebSocket too).
pub fn build_for_upgrades(
    cfg: &UpstreamConfig,
    tls: rustls::ClientConfig,
    server_name: Option<ServerName<'static>>,
) -> HttpClient {
    build_with(cfg, tls, server_name, 0)
}

fn build_with(
    cfg: &UpstreamConfig,
    tls: rustls::ClientConfig,
    server_name: Option<ServerName<'static>>,
    max_idle: usize,
) -> HttpClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(cfg.timeouts.connect.0));
    http.set_keepalive(Some(std::time::Duration::from_secs(60)));

    let mut https = HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http();
    if let Some(name) = server_name {
        https = https.with_server_name_resolver(FixedServerNameResolver::new(name));
    }
    // HTTP/1.1 unless the upstream says `http2` (then `upstream::h2`
    // carries its requests, and this client only its health probes): over
    // hyper-util's client, an HTTP/2 request's `:authority` is the target
    // it connects to, not the Host the route keeps or rewrites.
    let connector = match cfg.protocol {
        UpstreamProtocol::Auto | UpstreamProtocol::Http1 => https.enable_http1().wrap_connector(http),
        UpstreamProtocol::Http2 => https.enable_http2().wrap_connector(http),
    };

    let mut client = Client::builder(TokioExecutor::new());
    client
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(cfg.pool.idle_timeout.0)
        .pool_max_idle_per_host(max_idle)
        // Host is always set by the gateway (preserved or rewritten).
        .set_host(false)
        .http2_only(cfg.protocol == UpstreamProtocol::Http2);
    client.build(Bounded { inner: connector, timeout: cfg.timeouts.connect.0 })
}

/// The TLS settings for connections to targets: TLS 1.2 and 1.3 with
/// aws-lc-rs, verified against `ca` (a PEM bundle) or the Mozilla roots.
pub fn tls_config(ca: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    Ok(match ca {
        Some(path) => builder.with_root_certificates(crate::tls::load_roots(path)?),
        None => builder.with_webpki_roots(),
    }
    .with_no_client_auth())
}
