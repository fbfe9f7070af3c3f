//! A throwaway CA and an HTTPS upstream signed by it.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// An HTTPS server on loopback answering `{"tls": true, "path": ...}`.
pub struct TlsUpstream {
    pub addr: SocketAddr,
    /// PEM of the CA that signed the server certificate.
    pub ca_pem: String,
}

impl TlsUpstream {
    /// A CA, a server certificate for `upstream.test` and 127.0.0.1 signed
    /// by it, and an acceptor offering `alpn`.
    pub fn acceptor(alpn: &[&[u8]]) -> (TlsAcceptor, String) {
        Self::acceptor_of(alpn, false)
    }

    /// `self_ca`: the server's certificate is itself a self-signed CA
    /// certificate (`CA:TRUE`, what `openssl req -x509` makes by default),
    /// given as the one to trust.
    fn acceptor_of(alpn: &[&[u8]], self_ca: bool) -> (TlsAcceptor, String) {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let mut params = CertificateParams::new(vec!["upstream.test".to_string()]).unwrap();
        params.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        let key = KeyPair::generate().unwrap();
        let (cert, ca_pem) = if self_ca {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let cert = params.self_signed(&key).unwrap();
            let pem = cert.pem();
            (cert, pem)
        } else {
            (params.signed_by(&key, &ca).unwrap(), ca.pem())
        };

        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        (TlsAcceptor::from(Arc::new(config)), ca_pem)
    }

    /// A server whose own certificate is a self-signed CA certificate; its
    /// `ca_pem` is that certificate. It closes every connection it accepts.
    pub async fn self_signed_ca() -> TlsUpstream {
        let (acceptor, ca_pem) = Self::acceptor_of(&[b"http/1.1"], true);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move { drop(acceptor.accept(stream).await) });
            }
        });
        TlsUpstream { addr, ca_pem }
    }

    /// Serves each accepted TLS connection with `serve`, on loopback.
    pub async fn serve<F, Fut>(alpn: &[&[u8]], serve: F) -> TlsUpstream
    where
        F: Fn(tokio_rustls::server::TlsStream<tokio::net::TcpStream>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (acceptor, ca_pem) = Self::acceptor(alpn);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let serve = Arc::new(serve);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, serve) = (acceptor.clone(), serve.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        serve(tls).await;
                    }
                });
            }
        });
        TlsUpstream { addr, ca_pem }
    }

    /// An HTTPS/1.1 server that answers every request head with `reply`, byte for byte.
    pub async fn raw(reply: &'static [u8]) -> TlsUpstream {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        Self::serve(&[b"http/1.1"], move |mut tls| async move {
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = tls.read(&mut buf).await {
                if n == 0 {
                    return;
                }
                seen.extend_from_slice(&buf[..n]);
                if seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    seen.clear();
                    if tls.write_all(reply).await.is_err() {
                        return;
                    }
                }
            }
        })
        .await
    }

    /// An HTTPS server (h2 or HTTP/1.1) answering `{"tls": true, "path": ...}`.
    pub async fn start() -> TlsUpstream {
        Self::serve(&[b"h2", b"http/1.1"], |tls| async move {
            let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                let doc = serde_json::json!({
                    "tls": true,
                    "path": req.uri().path(),
                    "version": format!("{:?}", req.version()),
                    "authority": req.uri().authority().map(|a| a.as_str()),
                    "host": req.headers().get("host").and_then(|h| h.to_str().ok()),
                });
                Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(bytes::Bytes::from(
                    doc.to_string(),
                ))))
            });
            let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(tls), svc).await;
        })
        .await
    }
}
