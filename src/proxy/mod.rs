//! The request engine: one request from arrival to response.
//!
//! ```text
//! normalize path ─► client address, request id ─► route ─► policy phases
//!   ─► upstream (forward.rs) | built-in responder ─► response phase ─► common headers
//! ```
//! It runs once per request whatever the client's protocol (HTTP/1.1 or
//! HTTP/2): policies see protocol-neutral request parts.

pub mod body;
pub mod error;
mod forward;

use std::net::SocketAddr;

use http::header::HeaderValue;
use http::{Request, Response};
use hyper::body::Incoming;

use crate::http::{forwarded, normalize, problem, request_id};
use crate::plan::{Action, Plan, Route};
use crate::policy::{Outcome, RequestCtx};
use crate::responder::EchoInfo;
use crate::router::{Miss, RequestView, host::request_host};

pub use body::Body;
use error::GatewayError;

/// Facts about the connection a request came in on.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// `http` or `https`: what `X-Forwarded-Proto` says when we are the first proxy.
    pub scheme: &'static str,
}

/// Serves one request on `plan`. Never fails: errors become problem responses.
pub async fn handle(plan: &Plan, conn: &ConnInfo, req: Request<Incoming>) -> Response<Body> {
    let client = forwarded::resolve(conn.peer.ip(), req.headers(), &plan.trusted_proxies);
    let request_id = request_id::take_or_generate(req.headers(), client.peer_trusted);
    let mut resp = match serve(plan, conn, client, &request_id, req).await {
        Ok(resp) => resp,
        Err(err) => problem::from_error(&err, &request_id),
    };
    resp.headers_mut().insert(request_id::HEADER, request_id);
    resp
}

async fn serve(
    plan: &Plan,
    conn: &ConnInfo,
    client: forwarded::Client,
    request_id: &HeaderValue,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, GatewayError> {
    // A cheap clone (shared bytes) so the normalized path can borrow from it
    // while the request itself moves on.
    let uri = req.uri().clone();
    let path = normalize::normalize(uri.path(), &plan.normalize)?;
    let view = RequestView {
        host: request_host(req.uri(), req.headers()),
        path: &path,
        method: req.method(),
        headers: req.headers(),
    };
    let found = plan.router.find(&view).map_err(|miss| match miss {
        Miss::NotFound => GatewayError::NoRoute,
        Miss::MethodNotAllowed(methods) => {
            let list: Vec<&str> = methods.iter().map(|m| m.as_str()).collect();
            GatewayError::MethodNotAllowed {
                allow: HeaderValue::try_from(list.join(", ")).unwrap_or(HeaderValue::from_static("")),
            }
        }
    })?;
    let route = &plan.routes[found.route];
    let ctx = RequestCtx { client_ip: client.ip, request_id, route: &route.name };

    // Taken before the request is split: the upgraded connection is reached through it.
    let client_upgrade = forward::wants_upgrade(&req).then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let resp = match route.policies.on_request(&mut parts, &ctx).await {
        Outcome::Respond(resp) => resp,
        Outcome::Continue => match &route.action {
            Action::Proxy(proxy) => {
                let target = forward::Forward { proxy, conn, client, request_id, path: &path, values: &found.values };
                forward::forward(target, parts, body, client_upgrade).await?
            }
            Action::Respond(responder) => {
                let params = route.params.iter().map(|n| &**n).zip(found.values.iter().copied()).collect();
                let info = EchoInfo { path: &path, client_ip: client.ip, request_id, route: &route.name, params };
                responder.respond(&parts, body, &found.values, info).await?
            }
        },
    };
    Ok(finish(route, resp, &ctx))
}

/// The response phase and the route's fixed headers.
fn finish(route: &Route, resp: Response<Body>, ctx: &RequestCtx<'_>) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    route.policies.on_response(&mut parts, ctx);
    for (name, value) in &route.deprecation {
        parts.headers.insert(name.clone(), value.clone());
    }
    Response::from_parts(parts, body)
}
