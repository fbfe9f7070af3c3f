//! What the engine knows about the connection a request came in on.

use std::net::SocketAddr;
use std::sync::Arc;

use http::HeaderValue;

use crate::tls::ClientIdentity;

/// When a request's head began to arrive, carried in its extensions when
/// the server knows it to be earlier than the request's handling (a head
/// that came in pieces): the start of its logged duration.
#[derive(Debug, Clone, Copy)]
pub struct HeadBegan(pub tokio::time::Instant);

/// Facts about the connection a request came in on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// The peer's IP as a header value (`X-Forwarded-For`), made once per connection.
    pub peer_ip: HeaderValue,
    /// `http` or `https`: what `X-Forwarded-Proto` says when we are the first proxy.
    pub scheme: &'static str,
    pub listener: Arc<str>,
    /// The verified client certificate (mutual TLS).
    pub client_cert: Option<Arc<ClientIdentity>>,
    /// TLS connections: the listener's `client_auth` the connection was
    /// last found good under (a reload may change it).
    pub client_auth: Option<Arc<crate::tls::ClientAuthSeen>>,
    /// `Strict-Transport-Security` for responses on this (TLS) connection.
    pub hsts: Option<HeaderValue>,
    /// Plain listener that only redirects to HTTPS on this port.
    pub redirect_https: Option<u16>,
    /// The TLS version (`1.2`, `1.3`), on TLS connections.
    pub tls_version: Option<&'static str>,
    /// The listener's `limits.idle_timeout`: also the longest the client
    /// may leave what is sent to it unread (a WebSocket's too).
    pub idle_timeout: std::time::Duration,
}
