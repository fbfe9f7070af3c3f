//! A throwaway PKI for TLS tests: a CA, server certificates for given
//! names, client certificates, written as PEM files; and an HTTPS client.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::Reply;

pub struct Pki {
    pub dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    pub fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "Test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pki = Pki { dir: tempfile::tempdir().unwrap(), ca };
        std::fs::write(pki.ca_path(), pki.ca.pem()).unwrap();
        pki
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Writes `<stem>.pem` and `<stem>-key.pem` for a certificate with these
    /// DNS names (and common name `cn`), signed by the CA.
    pub fn issue(&self, stem: &str, cn: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        self.issue_until(stem, cn, names, None)
    }

    /// A client certificate with no SAN and this subject, attribute by
    /// attribute (OIDs as rcgen writes them).
    pub fn issue_subject(&self, stem: &str, subject: &[(DnType, &str)]) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        for (kind, value) in subject {
            params.distinguished_name.push(kind.clone(), *value);
        }
        self.sign(stem, params)
    }

    /// Signs `params` with the CA; writes `<stem>.pem` and `<stem>-key.pem`.
    fn sign(&self, stem: &str, params: CertificateParams) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let (c, k) = (self.dir.path().join(format!("{stem}.pem")), self.dir.path().join(format!("{stem}-key.pem")));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    /// `issue`, valid until `not_after` (Unix seconds) when given.
    pub fn issue_until(&self, stem: &str, cn: &str, names: &[&str], not_after: Option<u64>) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        if let Some(secs) = not_after {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(1970, 1, 1) + std::time::Duration::from_secs(secs);
        }
        self.sign(stem, params)
    }
}

/// What a TLS client saw.
pub struct TlsReply {
    pub reply: Reply,
    pub alpn: Option<Vec<u8>>,
    /// The server certificate's DER.
    pub server_cert: Vec<u8>,
}

/// A TLS connection with SNI `sni`, trusting `ca`, optionally presenting
/// a client cert, offering `alpn`.
pub async fn tls_connect(
    addr: std::net::SocketAddr,
    sni: &str,
    ca: &Path,
    client: Option<(&Path, &Path)>,
    alpn: &[&[u8]],
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    connect_with(client_config(ca, client, alpn), addr, sni).await
}

/// A TLS connection made with `config` (one config kept across
/// connections resumes their sessions).
pub async fn connect_with(
    config: Arc<rustls::ClientConfig>,
    addr: std::net::SocketAddr,
    sni: &str,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from(sni.to_string()).unwrap();
    TlsConnector::from(config).connect(name, tcp).await.map_err(|e| e.to_string())
}

/// A client config trusting `ca`, optionally presenting a client cert,
/// offering `alpn`; it keeps sessions for resumption.
pub fn client_config(ca: &Path, client: Option<(&Path, &Path)>, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert).unwrap().map(|c| c.unwrap()).collect();
            builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key).unwrap()).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// GET `path` over TLS with SNI `sni`, trusting `ca`, optionally presenting a client cert.
pub async fn https_get(
    addr: std::net::SocketAddr,
    sni: &str,
    ca: &Path,
    client: Option<(&Path, &Path)>,
    path: &str,
) -> Result<TlsReply, String> {
    let tls = tls_connect(addr, sni, ca, client, &[b"h2", b"http/1.1"]).await?;
    let (_, session) = tls.get_ref();
    let alpn = session.alpn_protocol().map(|p| p.to_vec());
    let server_cert = session.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec()).unwrap_or_default();
    let req = Request::get(format!("https://{sni}{path}")).body(Full::<Bytes>::default()).unwrap();
    let io = TokioIo::new(tls);
    let resp = if alpn.as_deref() == Some(b"h2") {
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await.map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        send.send_request(req).await.map_err(|e| e.to_string())?
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut req = req;
        req.headers_mut().insert(http::header::HOST, sni.parse().unwrap());
        send.send_request(req).await.map_err(|e| e.to_string())?
    };
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(TlsReply {
        reply: Reply { status: parts.status, headers: parts.headers, body, version: parts.version },
        alpn,
        server_cert,
    })
}
