//! Built-in responders, for demos, health routes and tests: `echo` (the
//! request as JSON), `static` (a fixed response) and `redirect`.

use std::net::IpAddr;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, HeaderName, LOCATION, PROXY_AUTHORIZATION};
use http::{HeaderMap, HeaderValue, Response, StatusCode, request};
use http_body_util::BodyExt;

use crate::http::Answer;
use crate::http::error::GatewayError;
use crate::http::request_body::{BodyError, RequestBody};
use crate::router::rewrite::Template;

/// Echo reads at most this much body: it is a diagnostic, not a sink.
pub const ECHO_BODY_LIMIT: usize = 1 << 20;

/// Headers echo names but does not show: an answer that repeats them
/// would hand a page's script the cookies (`HttpOnly` ones included) and
/// credentials it may not read, as TRACE would (cross-site tracing).
static CREDENTIALS: [HeaderName; 3] = [AUTHORIZATION, PROXY_AUTHORIZATION, COOKIE];

#[derive(Debug)]
pub enum Responder {
    Echo,
    Static(StaticResponse),
    Redirect(Redirect),
}

#[derive(Debug)]
pub struct StaticResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Debug)]
pub struct Redirect {
    pub to: Template,
    pub status: StatusCode,
    pub keep_query: bool,
}

/// What echo reports besides the request itself.
pub struct EchoInfo<'a> {
    pub path: &'a str,
    pub client_ip: IpAddr,
    pub request_id: &'a HeaderValue,
    pub route: &'a str,
    pub params: Vec<(&'a str, &'a str)>,
    pub client_cert: Option<&'a crate::tls::ClientIdentity>,
}

impl Responder {
    /// `received`: set to the body bytes that were read (the log's request
    /// size, also when reading failed: not what `Content-Length` promised).
    pub async fn respond(
        &self,
        parts: &request::Parts,
        body: RequestBody,
        values: &[&str],
        info: EchoInfo<'_>,
        received: &mut Option<u64>,
    ) -> Result<Answer, GatewayError> {
        match self {
            Responder::Static(s) => {
                discard(parts, body, received).await?;
                let mut resp = Response::new(s.body.clone());
                *resp.status_mut() = s.status;
                *resp.headers_mut() = s.headers.clone();
                Ok(resp)
            }
            Responder::Redirect(r) => {
                discard(parts, body, received).await?;
                let mut to = r.to.render(values);
                // A local target whose parameter starts with an empty
                // segment (`/go//evil.example/x` with `merge_slashes:
                // false`) would be `//evil.example/x`: another host to
                // every browser. One leading `/` is kept.
                if to.starts_with("//") {
                    to.replace_range(..to.len() - to.trim_start_matches('/').len() - 1, "");
                }
                if r.keep_query
                    && let Some(q) = parts.uri.query().filter(|q| !q.is_empty())
                {
                    // Before the target's fragment: a query after `#` would
                    // be part of the fragment, which browsers never send.
                    let fragment = to.find('#').map(|at| to.split_off(at));
                    if !to.ends_with(['?', '&']) {
                        to.push(if to.contains('?') { '&' } else { '?' });
                    }
                    to.push_str(q);
                    to.push_str(fragment.as_deref().unwrap_or_default());
                }
                let location = HeaderValue::try_from(to).map_err(|e| GatewayError::Internal(e.into()))?;
                let mut resp = Response::new(Bytes::new());
                *resp.status_mut() = r.status;
                resp.headers_mut().insert(LOCATION, location);
                Ok(resp)
            }
            Responder::Echo => echo(parts, body, info, received).await,
        }
    }
}

/// Reads and drops a body that `static` and `redirect` do not use, so that
/// the route's `max_body_size` and body read timeout hold for it as for a
/// proxied one (a chunked body over the limit got 200 where a declared one
/// got 413; NGINX refuses the bodies it discards by the same limit), and the
/// connection stays usable after the answer. A client that waits for
/// `100 Continue` is answered without it and sends nothing (RFC 9110
/// §10.1.1); its connection closes after the answer (over HTTP/2, where
/// no `100` is sent, its stream is reset after the answer: read, it waited
/// for a body the client held back for its 100). `received`: the bytes
/// read, for the log.
async fn discard(
    parts: &request::Parts,
    mut body: RequestBody,
    received: &mut Option<u64>,
) -> Result<(), GatewayError> {
    let expects_continue = || {
        parts.version == http::Version::HTTP_2
            && parts
                .headers
                .get(http::header::EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
    };
    if body.is_end_stream() || body.awaits_continue() || expects_continue() {
        return Ok(());
    }
    while let Some(frame) = body.frame().await {
        if let Err(e) = frame {
            *received = Some(body.received());
            return Err(GatewayError::from(e));
        }
    }
    *received = Some(body.received());
    Ok(())
}

async fn echo(
    parts: &request::Parts,
    mut body: RequestBody,
    info: EchoInfo<'_>,
    received: &mut Option<u64>,
) -> Result<Answer, GatewayError> {
    // A body announced larger than echo takes is refused before a byte of
    // it is read (as a route's `max_body_size` is), not after 1 MiB.
    let declared = parts.headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > ECHO_BODY_LIMIT as u64) {
        return Err(GatewayError::BodyTooLarge { limit: ECHO_BODY_LIMIT as u64 });
    }
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e: BodyError| {
            *received = Some(body.received());
            GatewayError::from(e)
        })?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > ECHO_BODY_LIMIT {
                *received = Some(body.received());
                return Err(GatewayError::BodyTooLarge { limit: ECHO_BODY_LIMIT as u64 });
            }
            bytes.extend_from_slice(&data);
        }
    }
    *received = Some(body.received());
    let mut headers = serde_json::Map::new();
    for name in parts.headers.keys() {
        let values: Vec<String> = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| match CREDENTIALS.contains(name) {
                true => "<redacted>".to_string(),
                false => String::from_utf8_lossy(v.as_bytes()).into_owned(),
            })
            .collect();
        headers.insert(name.as_str().to_string(), values.into());
    }
    let params: serde_json::Map<String, serde_json::Value> =
        info.params.iter().map(|(k, v)| (k.to_string(), (*v).into())).collect();
    let doc = serde_json::json!({
        "method": parts.method.as_str(),
        "path": info.path,
        "query": parts.uri.query(),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "client_ip": info.client_ip.to_string(),
        "request_id": info.request_id.to_str().unwrap_or_default(),
        "route": info.route,
        "params": params,
        "client_cert": info.client_cert.map(|c| serde_json::json!({ "subject": c.subject, "sans": c.sans })),
        "body": String::from_utf8_lossy(&bytes),
    });
    let mut resp = Response::new(Bytes::from(doc.to_string()));
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}
