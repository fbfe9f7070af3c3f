//! The request engine: one request from arrival to response, in this order
//! (`handle` reads the same way):
//!
//! ```text
//! hop-by-hop headers out (and what `Connection` lists) ─► client address (trusted proxies) ─► request id
//!   ─► admission (sync): listener, URI length 414, header count 431, `redirect_https` 308
//!   ─► normalize path 400 ─► CORS preflight? (answered for the route the real request takes)
//!   ─► route 404/405 ─► body size by Content-Length 413 ─► identity headers out
//!   ─► request phases (policy::Phase) ─► action: upstream (forward.rs) | built-in responder
//!   ─► response steps (policy::ResponseStep) on every response, errors included:
//!      rate-limit headers ─► route headers, deprecation, CORS, security headers ─► HSTS ─► request id ─► [observe]
//! ```
//! Framing, Host and the other protocol rules were checked before this, by
//! `wire::admit`, on every protocol path. It runs once per request whatever
//! the client's protocol (HTTP/1.1 or HTTP/2): policies see protocol-neutral
//! request parts.

mod aggregate;
pub mod body;
mod caching;
mod forward;
mod observe;

use std::ops::Deref;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::Body as _;

use crate::http::client_body::ClientBody;
use crate::http::conn::ConnInfo;
use crate::http::error::GatewayError;
use crate::http::request_body::RequestBody;
use crate::http::{forwarded, normalize, problem, request_id};
use crate::observe::trace::{TRACEPARENT, TRACESTATE};
use crate::plan::{Action, ListenerPlan, Plan, Route};
use crate::policy::Chain;
use crate::policy::ctx::{Outcome, RequestCtx, ResponseCtx};
use crate::policy::ratelimit;
use crate::responder::EchoInfo;
use crate::router::host::{host_of, request_host};
use crate::router::{Miss, RequestView};
use crate::wire::hop_by_hop;
use observe::Seen;

use crate::wire::field_edits::ResponseEdits;
use crate::wire::limit_fields::LimitFields;
pub use body::Body;
pub use forward::Tunnel;

/// Serves one request on `plan` (held by the future: an `Arc` or a
/// reference). Never fails: errors become problem responses.
// Not an `async fn`: that would keep a second copy of every argument in
// its future (rust-lang/rust#62958), and the future is moved whole.
#[allow(clippy::manual_async_fn)]
pub fn handle<P: Deref<Target = Plan>>(
    plan: P,
    conn: &ConnInfo,
    mut req: Request<ClientBody>,
) -> impl Future<Output = Response<Body>> {
    async move {
        let plan: &Plan = &plan;
        let present = Present::of(req.headers());
        let is_head = req.method() == http::Method::HEAD;
        // Asked before the hop-by-hop headers go; granted only by a `websocket` route.
        let asks_websocket = present.upgrade && hop_by_hop::asks_websocket(req.method(), req.version(), req.headers());
        if present.hop_by_hop {
            // Connection-scoped headers, and every name `Connection` lists
            // (but not the framing, routing and forwarding ones), go before
            // anything reads the request: what is authorized is what is forwarded.
            hop_by_hop::strip(req.headers_mut(), true);
        }
        let client = forwarded::resolve(conn.peer.ip(), req.headers(), &plan.trusted_proxies);
        let request_id = request_id::take_or_generate(req.headers(), client.peer_trusted);
        // What the observers need from the request, read before it moves on.
        let mut seen = Seen::of(plan, &req, &client, conn.peer.ip(), conn.tls_version, &request_id);
        if let Some(&crate::http::conn::HeadBegan(since)) = req.extensions().get() {
            seen.began_at(since);
        }
        if present.trace && (!client.peer_trusted || seen.trace.parent.is_none()) {
            // Only a trusted proxy's trace is continued; the rest is not
            // passed on. A trace started here (no valid `traceparent`) takes
            // no `tracestate` either: it belonged to another trace (W3C
            // Trace Context §3.3.1: without a valid `traceparent`, it is
            // not to be read).
            req.headers_mut().remove(TRACEPARENT);
            req.headers_mut().remove(TRACESTATE);
        } else if present.trace {
            // A continued trace's `tracestate` goes on as one line, without
            // empty members (W3C Trace Context §3.3.1.1; RFC 9110 §5.3).
            match crate::observe::trace::joined_state(req.headers()).and_then(|j| HeaderValue::try_from(j).ok()) {
                Some(joined) => req.headers_mut().insert(TRACESTATE, joined),
                None => req.headers_mut().remove(TRACESTATE),
            };
        }
        let origin = if present.origin { req.headers().get(header::ORIGIN).cloned() } else { None };
        let request_id_ref = &request_id;
        // One function, not a nested `async fn`: the nested one's future (several
        // KiB) was copied into this one's on every request.
        // The rate-limit headers of a limited route (the first response step).
        let mut limit_fields = None;
        let mut notes = forward::TryNotes::default();
        // The answer is the gateway's to a CORS preflight.
        let mut preflight = false;
        let (route, result): (Option<&Route>, Result<Response<Body>, GatewayError>) = 'serve: {
            let request_id = request_id_ref;
            let listener = match admit(plan, conn, &req) {
                Ok(listener) => listener,
                Err(answer) => {
                    // A `redirect_https` listener's 308 is the gateway's own answer.
                    if answer.is_ok() {
                        seen.flag = crate::observe::Flag::LocalResponse;
                    }
                    break 'serve (None, answer);
                }
            };
            // A cheap clone (shared bytes) so the normalized path can borrow from it
            // while the request itself moves on.
            let uri = req.uri().clone();
            let path = match normalize::normalize(uri.path(), &plan.normalize) {
                Ok(p) => p,
                Err(e) => break 'serve (None, Err(e.into())),
            };
            // The declared body length: what the log reports of a body
            // never read (a request without a route included).
            let declared = if present.content_length {
                req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            } else {
                None
            };
            if let Some(len) = declared {
                seen.request_bytes = len;
            }
            // Looked up once: routing and forwarding both need it.
            let host_header = req.headers().get(header::HOST).cloned();
            let host = host_of(&uri, host_header.as_ref());

            // Preflights are answered here, for every route the real request
            // could take (`Router::preflight_routes`), when each has `cors`:
            // granted if each grants it, else the first refusal.
            if let Some(requested) = Chain::preflight_method(req.method(), req.headers()) {
                let view = RequestView {
                    listener: &listener.name,
                    host,
                    path: &path,
                    method: &requested,
                    headers: req.headers(),
                };
                let answers: Option<Vec<_>> = plan
                    .router
                    .preflight_routes(&view)
                    .into_iter()
                    .map(|r| plan.routes[r].policies.preflight(&requested, req.headers()).map(|a| (r, a)))
                    .collect();
                let mut answers = answers.unwrap_or_default();
                let chosen = answers.iter().position(|(_, a)| a.is_err()).unwrap_or(0);
                if chosen < answers.len() {
                    let (index, answer) = answers.swap_remove(chosen);
                    // A granted one carries the route's CORS fields already; a
                    // refused one gets none (not an actual request's grants).
                    preflight = true;
                    // Logged with its route, as the gateway's own answer (`UZ` if refused).
                    seen.route = Some(index);
                    seen.flag = crate::observe::Flag::LocalResponse;
                    let route = &plan.routes[index];
                    break 'serve (Some(route), answer.map(full).map_err(GatewayError::CorsRejected));
                }
            }

            // Route.
            let view = RequestView {
                listener: &listener.name,
                host,
                path: &path,
                method: req.method(),
                headers: req.headers(),
            };
            let found = match plan.router.find(&view) {
                Ok(found) => found,
                Err(Miss::NotFound) => break 'serve (None, Err(GatewayError::NoRoute)),
                Err(Miss::Ambiguous(name)) => break 'serve (None, Err(GatewayError::AmbiguousHeader(name))),
                Err(Miss::MethodNotAllowed(methods)) => {
                    let list: Vec<&str> = methods.iter().map(|m| m.as_str()).collect();
                    let allow = HeaderValue::try_from(list.join(", ")).unwrap_or(HeaderValue::from_static(""));
                    break 'serve (None, Err(GatewayError::MethodNotAllowed { allow }));
                }
            };
            let route = &plan.routes[found.route];
            seen.route = Some(found.route);
            if plan.normalize.matrix_segments
                && !normalize::matrix_segments_captured(&path, &route.matrix_params, &found.values)
            {
                break 'serve (Some(route), Err(normalize::PathError::SegmentParameter.into()));
            }
            let mut ctx = RequestCtx::new(client.ip, request_id, &route.name, conn.client_cert.as_deref());
            ctx.path_params = (&route.params, &found.values);

            let max_body = route.max_body_size.unwrap_or(listener.limits.max_body_size);
            if let Some(len) = declared
                && len > max_body
            {
                break 'serve (Some(route), Err(GatewayError::BodyTooLarge { limit: max_body }));
            }

            // Taken before the request is split: the upgraded connection is reached through it.
            let client_upgrade = match &route.action {
                Action::Proxy(proxy) if asks_websocket && proxy.websocket && req.body().is_end_stream() => {
                    if let Err(why) = forward::handshake_key_fault(req.headers()) {
                        break 'serve (Some(route), Err(GatewayError::BadHandshake(why)));
                    }
                    Some(forward::ClientSide::of(&mut req))
                }
                _ => None,
            };
            let (mut parts, incoming) = req.into_parts();
            // Identity headers come from the gateway only, never from the client;
            // address, scheme and URL claims only from a trusted proxy.
            plan.identity_headers.strip(&mut parts.headers);
            if let Err(name) =
                crate::wire::names::strip_client_claims(&mut parts.headers, client.peer_trusted, &parts.method)
            {
                break 'serve (Some(route), Err(GatewayError::MethodOverride(name)));
            }
            if parts.method == http::Method::POST
                && let Some(query) = parts.uri.query()
                && crate::policy::validate::query_overrides_method(query)
            {
                break 'serve (Some(route), Err(GatewayError::MethodOverride("_method")));
            }
            let mut body = RequestBody::new(incoming, max_body, listener.limits.body_read_timeout);
            // A phase that reads the body (validation) gets it in the context;
            // it puts back what goes on (the same bytes, read whole).
            let reads_body = route.policies.reads_body();
            if reads_body {
                ctx.body = Some(std::mem::replace(&mut body, RequestBody::empty()));
            }
            // Request phases: without awaiting as far as they can (a cached token,
            // the embedded limits); from the first policy that must await, a boxed
            // future, as the responders below: their futures (auth fetches, Redis)
            // would otherwise make every request's future as large as theirs.
            let outcome = if route.policies.has_request_policies() {
                match route.policies.on_request_sync(&mut parts, &mut ctx) {
                    Ok(outcome) => outcome,
                    Err(from) => Box::pin(route.policies.on_request_from(from, &mut parts, &mut ctx)).await,
                }
            } else {
                Outcome::Continue
            };
            if reads_body && let Some(read) = ctx.body.take() {
                body = read;
            }
            // The identity headers, when authentication left them to the engine:
            // lines added to the upstream request, or map entries for a responder.
            let identity = match &ctx.identity {
                Some(id) if route.policies.identity_by_engine() => Some(plan.identity_headers.lines(id)),
                _ => None,
            };
            // Action (unless a phase answered).
            let result = match outcome {
                Outcome::Respond(resp) => Ok(full(resp)),
                Outcome::Continue => match &route.action {
                    Action::Proxy(proxy) => {
                        let watching = seen.watching();
                        let target = forward::Forward {
                            proxy,
                            conn,
                            client,
                            request_id,
                            path: &path,
                            values: &found.values,
                            host_header: host_header.as_ref(),
                            identity,
                            traceparent: seen.trace.header(),
                            tried: watching.then_some(&mut seen.tried),
                            notes: &mut notes,
                            client_metrics: plan.observe.metrics,
                        };
                        forward::forward(target, parts, body, client_upgrade).await
                    }
                    Action::Aggregate(agg) => {
                        // The caller's identity goes to every call, whoever would
                        // have written it into a proxied request.
                        let identity = ctx.identity.as_deref().map(|id| plan.identity_headers.lines(id));
                        let client_ip = HeaderValue::try_from(client.ip.to_string()).unwrap_or(conn.peer_ip.clone());
                        let watching = seen.watching();
                        let inputs = aggregate::Inputs {
                            tried: watching.then_some(&mut seen.tried),
                            client_metrics: plan.observe.metrics,
                            values: &found.values,
                            request_id,
                            traceparent: seen.trace.header(),
                            tracestate: parts.headers.get(TRACESTATE).cloned(),
                            client_ip,
                            scheme: conn.scheme,
                            identity,
                            buffers: &plan.buffers,
                        };
                        // Boxed, as the responders: its future holds every call's.
                        let (answer, flag) = Box::pin(aggregate::run(agg, inputs)).await;
                        seen.flag = flag;
                        Ok(answer)
                    }
                    Action::Respond(responder) => {
                        if let Some(id) = ctx.identity.as_deref().filter(|_| identity.is_some()) {
                            plan.identity_headers.insert_into(&mut parts.headers, id);
                        }
                        let params = route.params.iter().map(|n| &**n).zip(found.values.iter().copied()).collect();
                        let info = EchoInfo {
                            path: &path,
                            client_ip: client.ip,
                            request_id,
                            route: &route.name,
                            params,
                            client_cert: ctx.client_cert,
                        };
                        let received = &mut notes.body_received;
                        let answer = Box::pin(responder.respond(&parts, body, &found.values, info, received)).await;
                        // What was read (a chunked body declares nothing).
                        if let Some(read) = notes.body_received {
                            seen.request_bytes = read;
                        }
                        answer.map(full)
                    }
                },
            };
            // ResponseStep::RateLimitHeaders: on every answer of a limited route,
            // 429 or not; `finish` sets them.
            let resp = result.unwrap_or_else(|e| {
                seen.flag = observe::flag_of(&e);
                if let (
                    GatewayError::BodyRead(_) | GatewayError::BodyTimeout | GatewayError::BodyTooLarge { .. },
                    Some(read),
                ) = (&e, notes.body_received)
                {
                    // What arrived, not what `Content-Length` promised.
                    seen.request_bytes = read;
                }
                let target = match (&route.action, notes.last_target) {
                    (Action::Proxy(p), Some(i)) => p.upstream.targets.get(i).map(|t| &*t.label),
                    _ => None,
                };
                full(problem::from_error(&e, request_id, target))
            });
            if let Some(info) = &ctx.rate_limit {
                limit_fields = ratelimit::header_fields(plan.rate_limit_headers, info);
            }
            seen.note(&ctx, matches!(route.action, Action::Respond(_)), route.policies.validates());
            let slots = std::mem::take(&mut ctx.slots);
            let tunnel = (resp.status() == StatusCode::SWITCHING_PROTOCOLS)
                .then(|| resp.extensions().get::<forward::TunnelLog>())
                .flatten();
            let resp = match tunnel {
                // A WebSocket holds them while it is open, not while its 101 is written.
                Some(log) => {
                    log.hold(slots);
                    resp
                }
                None => resp.map(|b| b.hold(slots)),
            };
            (Some(route), Ok(resp))
        };
        let mut resp = result.unwrap_or_else(|err| {
            seen.flag = observe::flag_of(&err);
            full(problem::from_error(&err, &request_id, None))
        });
        // Before the response steps, so that a route's `response_headers.remove`
        // can keep them from clients (they tell how healthy the pool is).
        if notes.tries > 1 || notes.all_unhealthy {
            forward::tell_tries(&mut resp, &notes);
        }
        // The other response steps, on every response, errors included.
        finish(plan, route, conn, origin.as_ref(), &mut resp, limit_fields, preflight);
        if route.is_some_and(|r| matches!(r.action, Action::Aggregate(_))) {
            aggregate::keep_partial_uncached(&mut resp);
        }
        // `validate.response: report`: an upstream's answer against the document.
        if notes.tries > 0
            && seen.flag == crate::observe::Flag::None
            && let Some(rules) = route.and_then(|r| r.policies.response_rules())
        {
            check_response(&mut resp, rules, &request_id, is_head);
        }
        body::set_request_id(&mut resp, request_id);
        // The connection counts it as a stream its client reset before the
        // answer (the premature-reset rule), as one whose work was dropped.
        if seen.flag == crate::observe::Flag::ClientClosed {
            resp.extensions_mut().insert(ClientLeft);
        }
        // ResponseStep::Observe: the access log and metrics, finished when the body is.
        if let Some(pending) = seen.pending(resp.status()) {
            // A WebSocket is logged when its tunnel closes.
            let tunnel = (resp.status() == StatusCode::SWITCHING_PROTOCOLS)
                .then(|| resp.extensions().get::<forward::TunnelLog>())
                .flatten();
            match tunnel {
                Some(log) => log.put(pending),
                None => resp.body_mut().watch(pending),
            }
        }
        resp
    }
}

/// On a response made after its client left (its body cut by a stream
/// reset, the connection closed): no one reads it.
#[derive(Debug, Clone, Copy)]
pub struct ClientLeft;

/// Checks an upstream's response head now and its body as it streams
/// (reports only: the response goes out unchanged).
fn check_response(
    resp: &mut Response<Body>,
    rules: &std::sync::Arc<crate::policy::validate::response::ResponseRules>,
    request_id: &HeaderValue,
    is_head: bool,
) {
    use crate::policy::validate::response::{BodyCheck, HeadCheck};
    let status = resp.status().as_u16();
    let headers = body::headers_mut(resp);
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    // A body that is not there (HEAD, 204, 304) or not as the document
    // describes it (compressed) is not judged.
    let judge_body = !is_head
        && !matches!(status, 204 | 304)
        && headers.get(header::CONTENT_ENCODING).is_none_or(|e| e.as_bytes().eq_ignore_ascii_case(b"identity"));
    match rules.check_head(status, content_type) {
        HeadCheck::Done(problems) => rules.report(&problems, status, request_id),
        HeadCheck::Body { .. } if !judge_body => {}
        HeadCheck::Body { declared, content } => {
            let check = BodyCheck::new(rules.clone(), declared, content, status, request_id.clone());
            resp.body_mut().check(check);
        }
    }
}

/// A response the gateway made (policy, responder, problem) in the engine's body type.
fn full(answer: crate::http::Answer) -> Response<Body> {
    answer.map(Body::full)
}

/// Which of the headers the engine looks up a request carries, from one
/// pass over its names: most requests have none of them, and looking up an
/// absent name still costs a hash and a probe.
#[derive(Default)]
struct Present {
    origin: bool,
    content_length: bool,
    upgrade: bool,
    /// Any hop-by-hop header (`Upgrade` among them).
    hop_by_hop: bool,
    /// `traceparent` or `tracestate`.
    trace: bool,
}

impl Present {
    fn of(headers: &http::HeaderMap) -> Present {
        let mut present = Present::default();
        for name in headers.keys() {
            if name == header::ORIGIN {
                present.origin = true;
            } else if name == header::CONTENT_LENGTH {
                present.content_length = true;
            } else if name == TRACEPARENT || name == TRACESTATE {
                present.trace = true;
            } else if hop_by_hop::is_hop_by_hop(name) {
                present.hop_by_hop = true;
                present.upgrade |= name == header::UPGRADE;
            }
        }
        present
    }
}

/// The answer to a request that could not even be read (a malformed or
/// oversized head): a problem response with a fresh request id and the
/// default security headers. The connection closes after it.
/// `since`: when the head began to arrive, if the server knows; `request`:
/// its method and target, when the head was read and refused by admission
/// (`TRACE`, a bad `Host`, ambiguous framing).
pub fn refuse(
    plan: &Plan,
    conn: &ConnInfo,
    status: StatusCode,
    detail: &str,
    since: Option<tokio::time::Instant>,
    request: Option<&http::Request<()>>,
) -> Response<Body> {
    let request_id = request_id::generate();
    let mut resp = full(problem::problem(status, detail, &request_id));
    finish(plan, None, conn, None, &mut resp, None, false);
    // Logged and counted like any request, as far as it is known: its
    // method and path, or method `-` and no path; flag `IV`, or `LR` for a
    // 503 (an HTTP/2 stream refused on a closing connection: nothing wrong
    // with the request).
    let mut seen = Seen::unread(plan, conn, &request_id, since, request);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        seen.flag = crate::observe::Flag::LocalResponse;
    }
    resp.headers_mut().insert(request_id::HEADER, request_id);
    if let Some(pending) = seen.pending(resp.status()) {
        resp.body_mut().watch(pending);
    }
    resp
}

/// A head that did not arrive whole within `header_read_timeout`
/// (slowloris): nothing is answered (the connection just closes, as NGINX
/// does), but the attempt is logged and counted as NGINX's 408, method `-`,
/// flag `IV`, so that such clients show; `since` the head began, so that
/// its line says when it came and how long it took.
pub fn head_timed_out(plan: &Plan, conn: &ConnInfo, since: Option<tokio::time::Instant>) {
    log_unfinished_head(plan, conn, since, None);
}

/// An HTTP/1.1 head begun and then cut by its client (the connection
/// closed before the head ended): logged as a client that left (`499`,
/// `DC`), though nothing is answered (NGINX logs such a connection too,
/// as a `400` with the request line it read).
pub fn head_cut(plan: &Plan, conn: &ConnInfo, since: Option<tokio::time::Instant>) {
    log_unfinished_head(plan, conn, since, Some(crate::observe::Flag::ClientClosed));
}

fn log_unfinished_head(
    plan: &Plan,
    conn: &ConnInfo,
    since: Option<tokio::time::Instant>,
    flag: Option<crate::observe::Flag>,
) {
    let request_id = request_id::generate();
    let mut seen = Seen::unread(plan, conn, &request_id, since, None);
    if let Some(flag) = flag {
        seen.flag = flag;
    }
    if let Some(pending) = seen.pending(StatusCode::REQUEST_TIMEOUT) {
        let mut body = Body::empty();
        body.watch(pending);
    }
}

/// Admission before routing, synchronous: the listener's limits on the
/// target's length and the number of header fields (both protocols), and
/// the redirect of `redirect_https` listeners. `Err` is the answer.
// Inlined into `handle`, where the answer is used in place: boxing it would
// allocate for every refusal.
#[allow(clippy::result_large_err)]
#[inline]
fn admit<'p, B>(
    plan: &'p Plan,
    conn: &ConnInfo,
    req: &Request<B>,
) -> Result<&'p ListenerPlan, Result<Response<Body>, GatewayError>> {
    let Some(listener) = plan.listener(&conn.listener) else {
        return Err(Err(GatewayError::NoRoute));
    };
    let limit = listener.limits.max_uri_length;
    if req.uri().path_and_query().map_or(0, |pq| pq.as_str().len()) as u64 > limit {
        return Err(Err(GatewayError::UriTooLong { limit }));
    }
    if req.headers().len() > listener.limits.max_headers {
        return Err(Err(GatewayError::TooManyHeaders));
    }
    if let Some(port) = conn.redirect_https {
        return Err(redirect_to_https(req, port));
    }
    if let Some(seen) = &conn.client_auth
        && !seen.still_trusted(conn.client_cert.as_deref(), listener.client_auth.as_deref())
    {
        return Err(Err(GatewayError::StaleClientAuth));
    }
    Ok(listener)
}

/// 308 to the same host and path on HTTPS (`redirect_https` listeners).
fn redirect_to_https<B>(req: &Request<B>, port: u16) -> Result<Response<Body>, GatewayError> {
    let host = request_host(req.uri(), req.headers()).ok_or(GatewayError::MissingHost)?;
    // Only a plain host name or IP literal goes into Location: no `@`, `/`, spaces.
    let plain = !host.is_empty()
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'[' | b']'));
    if !plain {
        return Err(GatewayError::MissingHost);
    }
    let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_string() };
    let authority = if port == 443 { host } else { format!("{host}:{port}") };
    // `OPTIONS *` names no resource: the site's root (`https://host*` was
    // no URL at all).
    let pq = req.uri().path_and_query().map(|pq| pq.as_str()).filter(|pq| pq.starts_with('/')).unwrap_or("/");
    let location = HeaderValue::try_from(format!("https://{authority}{pq}")).map_err(|_| GatewayError::MissingHost)?;
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
    resp.headers_mut().insert(header::LOCATION, location);
    Ok(resp)
}

/// The response steps of `policy::ResponseStep`, in that order, on every
/// response (forwarded, made by a responder or a policy, or an error): the
/// rate-limit headers `limit_fields`, the route's (`Chain::on_response`:
/// route headers, deprecation, CORS, security headers), then HSTS. The
/// request id is the caller's last step.
fn finish(
    plan: &Plan,
    route: Option<&Route>,
    conn: &ConnInfo,
    origin: Option<&HeaderValue>,
    resp: &mut Response<Body>,
    limit_fields: Option<LimitFields>,
    preflight: bool,
) {
    let chain = route.map_or(&plan.without_route, |r| &r.policies);
    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    // When only the rate-limit and security headers apply, an upstream's raw
    // lines go out as received and the writer applies them; else a step
    // must see the map. A 101 keeps its head untouched.
    let writer_edits = !switching && conn.hsts.is_none() && !chain.edits_map();
    let mut limit_fields = limit_fields;
    if writer_edits
        && body::defer_edits(resp, || ResponseEdits {
            limits: limit_fields.take(),
            fields: chain.security().clone(),
            request_id: None,
        })
    {
        return;
    }
    let headers = body::headers_mut(resp);
    if let Some(limits) = &limit_fields {
        limits.insert_into(headers);
    }
    chain.on_response(headers, &ResponseCtx { origin, switching, preflight });
    if let Some(hsts) = &conn.hsts {
        let headers = resp.headers_mut();
        // An upstream's own value stands only when a browser would take it
        // (only the first line counts): one it ignores (an empty line, no
        // `max-age`, a directive twice; RFC 6797 §6.1, §8.1) must not stand
        // in for the gateway's.
        if !headers.get(header::STRICT_TRANSPORT_SECURITY).is_some_and(|v| crate::wire::hsts::valid(v.as_bytes())) {
            headers.insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
    }
}
