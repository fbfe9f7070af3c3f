//! The pooled HTTP client of one upstream: keep-alive connections over
//! plain TCP or rustls (aws-lc-rs), HTTP/1.1 or HTTP/2, with a connect timeout.

use std::path::Path;
use std::sync::Arc;

use hyper_rustls::{ConfigBuilderExt, FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_pki_types::ServerName;

use crate::config::{UpstreamConfig, UpstreamProtocol};

pub type HttpClient = Client<HttpsConnector<HttpConnector>, crate::http::request_body::RequestBody>;

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
    client.build(connector)
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
