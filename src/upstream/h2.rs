//! HTTP/2 to one target (`protocol: http2`): a single multiplexed
//! connection, made when first needed and again once it has closed.
//!
//! Not hyper-util's pooled client: that client connects by the request
//! URI's authority, which HTTP/2 also sends as `:authority`, so the Host a
//! route keeps (`preserve_host`) or rewrites could only go as a `Host`
//! field that contradicts it (RFC 9113 §8.3.1: strict servers refuse such
//! a request). Here the connection is the target's and every request
//! names its own `:authority`.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

use crate::http::error::{BoxError, NotSent};
use crate::http::request_body::RequestBody;

/// The connection to one target, shared by its requests.
pub struct H2Target {
    /// `host:port` to connect to.
    addr: String,
    /// TLS (ALPN `h2`) for `https://` targets: the settings and the name
    /// the certificate must carry.
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    connect_timeout: Duration,
    conn: tokio::sync::Mutex<Option<SendRequest<RequestBody>>>,
}

impl std::fmt::Debug for H2Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Target").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl H2Target {
    /// `tls`: the client settings and the certificate's name, for `https://`.
    pub fn new(
        addr: String,
        tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
        connect_timeout: Duration,
    ) -> H2Target {
        let tls = tls.map(|(config, name)| {
            let mut config = (*config).clone();
            config.alpn_protocols = vec![b"h2".to_vec()];
            (tokio_rustls::TlsConnector::from(Arc::new(config)), name)
        });
        H2Target { addr, tls, connect_timeout, conn: tokio::sync::Mutex::new(None) }
    }

    /// Whether the connection is open with no request on it (an idle
    /// connection, for `portcullis_upstream_connections`). `in_flight`:
    /// the target's requests under way.
    pub fn idle(&self, in_flight: usize) -> bool {
        in_flight == 0 && self.conn.try_lock().is_ok_and(|c| c.as_ref().is_some_and(|s| !s.is_closed()))
    }

    /// Sends `req` (its URI absolute: the scheme, the `:authority`, the
    /// path) on the target's connection. A failure to connect is `NotSent`.
    pub async fn send(&self, req: Request<RequestBody>) -> Result<Response<Incoming>, BoxError> {
        let mut sender = self.sender().await?;
        // Waits while the connection has no stream to spare.
        sender.ready().await.map_err(|e| Box::new(NotSent(Box::new(e))) as BoxError)?;
        sender.send_request(req).await.map_err(|e| {
            // RFC 9113 §8.7: a stream refused (`REFUSED_STREAM`) or above a
            // `GOAWAY`'s last id was not processed: safe to try elsewhere,
            // whatever the method, as a connection that was never made.
            if unprocessed(&e) { Box::new(NotSent(Box::new(e))) as BoxError } else { Box::new(e) }
        })
    }

    /// The open connection, or a new one (one at a time: requests that
    /// find none wait for the one being made).
    async fn sender(&self) -> Result<SendRequest<RequestBody>, BoxError> {
        let mut slot = self.conn.lock().await;
        if let Some(open) = slot.as_ref().filter(|s| !s.is_closed()) {
            return Ok(open.clone());
        }
        *slot = None;
        let made = self.connect().await.map_err(|e| Box::new(NotSent(e)) as BoxError)?;
        *slot = Some(made.clone());
        Ok(made)
    }

    async fn connect(&self) -> Result<SendRequest<RequestBody>, BoxError> {
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.addr))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
        tcp.set_nodelay(true)?;
        let mut h2 = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new()).keep_alive_interval(Duration::from_secs(30)).keep_alive_while_idle(false);
        let sender = match &self.tls {
            None => {
                let (sender, conn) = h2.handshake(TokioIo::new(tcp)).await?;
                tokio::spawn(conn);
                sender
            }
            Some((connector, name)) => {
                let stream =
                    tokio::time::timeout(self.connect_timeout, connector.connect(name.clone(), tcp))
                        .await
                        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
                if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
                    return Err("the target did not agree to HTTP/2 (ALPN `h2`)".into());
                }
                let (sender, conn) = h2.handshake(TokioIo::new(stream)).await?;
                tokio::spawn(conn);
                sender
            }
        };
        Ok(sender)
    }
}

/// Whether the upstream said it did not process the stream.
fn unprocessed(e: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h2) = s.downcast_ref::<h2::Error>() {
            return h2.is_remote() && (h2.is_go_away() || h2.reason() == Some(h2::Reason::REFUSED_STREAM));
        }
        source = s.source();
    }
    false
}
