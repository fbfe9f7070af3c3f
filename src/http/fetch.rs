//! A small HTTP(S) client for the gateway's own calls: JWKS and OpenID
//! discovery documents, token introspection. Bounded in time and size.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{ConfigBuilderExt, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Documents larger than this are refused (a JWKS is a few KiB).
const MAX_BODY: usize = 1 << 20;

#[derive(Clone)]
pub struct Fetcher {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

/// Idle connections kept per host by a [`Fetcher`].
const MAX_IDLE_PER_HOST: usize = 16;

impl Fetcher {
    /// `ca`: PEM bundle to trust instead of the Mozilla roots.
    pub fn new(ca: Option<&Path>, timeout: Duration) -> Result<Fetcher, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let tls = match ca {
            Some(path) => builder.with_root_certificates(crate::tls::load_roots(path)?),
            None => builder.with_webpki_roots(),
        }
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let https =
            HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().wrap_connector(http);
        // A few idle connections kept per host (hyper-util keeps all by
        // default: after a burst of token introspections, thousands of idle
        // sockets held for 90 s).
        let client = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(MAX_IDLE_PER_HOST).build(https);
        Ok(Fetcher { client, timeout })
    }

    pub async fn get_json(&self, url: &str) -> Result<serde_json::Value, String> {
        let req = Request::get(url)
            .header(header::ACCEPT, "application/json")
            .body(Full::default())
            .map_err(|e| e.to_string())?;
        // Named without a user part or credential parameters (logged).
        let shown = crate::http::url_in_message(url);
        self.send(req).await.and_then(|(status, body)| {
            if !status.is_success() {
                return Err(format!("{shown} answered {status}"));
            }
            let doc = serde_json::from_slice(&body).map_err(|e| format!("{shown} did not return JSON: {e}"))?;
            // A member named twice (`"keys"`, `"issuer"`): the last copy
            // would win here unseen, as a `jwks_file`'s is refused.
            if crate::http::json::names_a_member_twice(&body) {
                return Err(format!("{shown} returned JSON that names a member twice"));
            }
            Ok(doc)
        })
    }

    /// POSTs a form; returns the status and the body.
    pub async fn post_form(
        &self,
        url: &str,
        form: String,
        authorization: Option<&str>,
    ) -> Result<(StatusCode, Bytes), String> {
        let mut req = Request::post(url)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json");
        if let Some(a) = authorization {
            req = req.header(header::AUTHORIZATION, a);
        }
        self.send(req.body(Full::new(Bytes::from(form))).map_err(|e| e.to_string())?).await
    }

    #[cfg_attr(not(feature = "otlp"), allow(dead_code))]
    /// POSTs `body` with its content type and extra headers; returns the
    /// status, the answer's headers and its body.
    pub async fn post(
        &self,
        url: &str,
        content_type: &str,
        body: Bytes,
        headers: &[(http::HeaderName, http::HeaderValue)],
    ) -> Result<(StatusCode, http::HeaderMap, Bytes), Failure> {
        let mut req = Request::post(url).header(header::CONTENT_TYPE, content_type);
        for (name, value) in headers {
            req = req.header(name, value);
        }
        let req = req.body(Full::new(body)).map_err(|e| Failure { message: e.to_string(), lasting: true })?;
        self.exchange(req).await
    }

    async fn send(&self, req: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), String> {
        self.exchange(req).await.map(|(status, _, body)| (status, body)).map_err(|f| f.message)
    }

    async fn exchange(&self, req: Request<Full<Bytes>>) -> Result<(StatusCode, http::HeaderMap, Bytes), Failure> {
        let call = async {
            let resp = self.client.request(req).await.map_err(|e| Failure {
                message: format!("request failed: {}", with_causes(&e)),
                lasting: refused_by_tls(&e),
            })?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|e| Failure { message: format!("reading the answer failed: {e}"), lasting: false })?
                .to_bytes();
            Ok((parts.status, parts.headers, body))
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| Failure { message: "timed out".to_string(), lasting: false })?
    }
}

/// Why a call got no answer.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    /// Trying again will not help (the server's certificate was refused,
    /// the handshake failed): not a passing outage.
    #[cfg_attr(not(feature = "otlp"), allow(dead_code))]
    pub lasting: bool,
}

/// An error with the causes under it (`client error (Connect): invalid
/// peer certificate: UnknownIssuer`): hyper's own text says only which
/// step failed, the same for a refused certificate and a closed port.
fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    text
}

/// Whether TLS refused the connection somewhere under `e` (rustls's error
/// travels inside `io::Error`s, whose `source` skips what they wrap).
fn refused_by_tls(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.is::<rustls::Error>() {
            return true;
        }
        cause = match c.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(wrapped) => Some(wrapped as &(dyn std::error::Error + 'static)),
            None => c.source(),
        };
    }
    false
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
