//! The admin listener: the live page at `/`, `/healthz`, `/readyz`,
//! `/status`, `/config` and `/metrics`, and `POST /reload`, on its own address (loopback unless a
//! token guards it), never on a public listener. Served by hyper
//! (HTTP/1.1): a handful of requests a minute from probes, scrapers and
//! `portcullis reload`, not the hot path.

mod places;
mod redact;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, Version, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::server::Shared;
use crate::server::state::ReloadOutcome;

/// A running admin listener.
pub struct RunningAdmin {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RunningAdmin {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(1), self.task).await;
    }
}

/// Binds `addr` and serves the admin API for `shared` (whose current
/// plan's `admin` holds the token).
pub async fn start(addr: SocketAddr, shared: Arc<Shared>) -> std::io::Result<RunningAdmin> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (stop, mut stopped) = watch::channel(false);
    let places = places::Places::default();
    let reloads_waiting = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let task = tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = stopped.changed() => return,
            };
            // Over a limit (`places`): closed at once, as a public listener does.
            let Some(place) = places.take(peer.ip()) else {
                tracing::debug!(%peer, "admin connection limit reached; closing");
                drop(stream);
                continue;
            };
            let shared = shared.clone();
            let reloads_waiting = reloads_waiting.clone();
            tokio::spawn(async move {
                let conn_state = place.conn.clone();
                let service = service_fn(move |req: Request<Incoming>| {
                    let shared = shared.clone();
                    let reloads_waiting = reloads_waiting.clone();
                    // Not closed for room while a request is served.
                    let serving = conn_state.serving();
                    async move {
                        let _serving = serving;
                        let answer = match (req.uri().path(), req.method()) {
                            // Before anything reads `Host` (the tokenless guard does).
                            _ if let Some(why) = bad_host(&req) => problem(StatusCode::BAD_REQUEST, why),
                            ("/reload", &Method::POST) => reload(&shared, &req, &reloads_waiting).await,
                            _ => answer(&shared, &req),
                        };
                        Ok::<_, Infallible>(answer)
                    }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service);
                // Closed when its peer needs the place and it serves no request.
                tokio::select! {
                    _ = tokio::time::timeout(Duration::from_secs(60), conn) => {}
                    _ = place.conn.evicted() => {}
                }
            });
        }
    });
    tracing::info!(%addr, "admin listening");
    Ok(RunningAdmin { addr, stop, task })
}

/// On every admin answer: `portcullis reload` and `status` send the token
/// only to a listener that says it is the admin API (`/healthz` without
/// the token first), never to whatever else answers at an address a file
/// names (a public route, a moved `admin.bind` not yet live).
pub const MARK: &str = "portcullis-admin";

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(MARK, HeaderValue::from_static("1"));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // As the public listeners' answers: never framed, no referrer.
    resp.headers_mut().insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp.headers_mut().insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

fn problem(status: StatusCode, detail: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or(""),
        "status": status.as_u16(),
        "detail": detail,
    });
    respond(status, "application/problem+json", body.to_string())
}

/// The live admin page: one self-contained file (no CDN, no framework),
/// built into the binary. It holds no data (it reads `/status` and
/// `/metrics` with the token the user types, when one is set), so it is
/// served without the token, like `/healthz`.
const PAGE: &str = include_str!("page.html");

fn page() -> Response<Full<Bytes>> {
    let mut resp = respond(StatusCode::OK, "text/html; charset=utf-8", PAGE);
    // Its own inline script and style; fetches to this origin only.
    let csp = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; \
               base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
    resp.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    resp.headers_mut().insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp.headers_mut().insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

/// The answer to a request without the admin token (when one is set).
fn unauthorized(shared: &Shared, req: &Request<Incoming>) -> Option<Response<Full<Bytes>>> {
    let plan = shared.plan.load();
    // A reload dropped `admin`: no token opens it (a 401 asked for one).
    let Some(admin) = plan.admin.as_ref() else {
        return Some(problem(
            StatusCode::NOT_FOUND,
            "the running config has no `admin` section (a reload removed it): only /healthz answers until a \
             reload that restores it or a restart",
        ));
    };
    // Without a token, loopback is the only guard, and a web page can get
    // around it by DNS rebinding (its own name, re-pointed at 127.0.0.1,
    // reads this API in the operator's browser): such a request names that
    // domain in `Host`. Only an address or `localhost` is answered.
    if !admin.has_token() && !local_host(req) {
        return Some(problem(
            StatusCode::FORBIDDEN,
            "without `admin.token` the admin API answers only requests to an IP address or `localhost` (`Host`)",
        ));
    }
    // Two `Authorization` lines are refused, as on public listeners: one
    // credential is checked, and it must be the only one.
    let mut lines = req.headers().get_all(header::AUTHORIZATION).iter();
    let token = match (lines.next(), lines.next()) {
        (first, None) => first.map(HeaderValue::as_bytes),
        (Some(_), Some(_)) => return Some(needs_token(true)),
        (None, Some(_)) => None,
    };
    // `error="invalid_token"` only for a bearer token (RFC 6750 §3.1).
    let bearer = token.is_some_and(|t| t.len() > 7 && t[..7].eq_ignore_ascii_case(b"bearer "));
    (!admin.authorized(token)).then(|| needs_token(bearer))
}

/// 401; `given`: the request carried a credential, which was not the token
/// (RFC 6750 §3.1: `error="invalid_token"`).
fn needs_token(given: bool) -> Response<Full<Bytes>> {
    let mut resp = problem(StatusCode::UNAUTHORIZED, "this admin path needs `Authorization: Bearer <admin.token>`");
    let challenge = if given { "Bearer realm=\"admin\", error=\"invalid_token\"" } else { "Bearer realm=\"admin\"" };
    resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    resp
}

/// Why the request's `Host` cannot be read as one name, if it cannot (RFC
/// 9112 §3.2: 400 for an HTTP/1.1 request without one, and for any with
/// several or a malformed one). hyper lets all of these through, and
/// `local_host` reads one `Host`: with two, a rebound page's own name came
/// second and the first passed; `localhost:abc` passed as `localhost`.
/// The public listeners refuse the same (`wire::admit`).
fn bad_host(req: &Request<Incoming>) -> Option<&'static str> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => Some("more than one Host header"),
        (Some(host), None) => crate::wire::admit::host_and_port(host.as_bytes()).err(),
        // Only HTTP/1.0 may leave it out.
        (None, _) if req.version() != Version::HTTP_10 => Some("an HTTP/1.1 request needs a Host header"),
        (None, _) => None,
    }
}

/// Whether the request's authority (`Host`, or the target's) is an IP
/// address or `localhost`, with or without a port (`bad_host` has
/// refused any other form of `Host`).
fn local_host(req: &Request<Incoming>) -> bool {
    let host = match req.uri().authority() {
        Some(a) => a.host(),
        None => match req.headers().get(header::HOST).and_then(|h| h.to_str().ok()) {
            Some(h) => match h.strip_prefix('[') {
                Some(v6) => return v6.split(']').next().is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok()),
                None => h.rsplit_once(':').map_or(h, |(name, _)| name),
            },
            // HTTP/1.0 without `Host`: no name a page could have chosen.
            None => return true,
        },
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    // `localhost.` is the same name written absolute (RFC 6761 §6.3: it
    // resolves to loopback only, so no page can be rebound onto it).
    let name = host.strip_suffix('.').unwrap_or(host);
    name.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok()
}

/// `POST /reload`: reloads the config file and answers what came of it
/// (200 with the new config's hash, 422 with every problem of a refused
/// one, 409 when there is no file to reload).
/// Reload requests that may wait for their turn at once: reloads run one
/// at a time, and each waiting request keeps its connection busy (not
/// closed for room, `places`): sixteen kept waiting by a client asking
/// again as each answer came filled the address's places, and the
/// readiness probe was shut out.
const RELOADS_WAITING: usize = 4;

struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

async fn reload(
    shared: &Shared,
    req: &Request<Incoming>,
    waiting: &std::sync::atomic::AtomicUsize,
) -> Response<Full<Bytes>> {
    if let Some(refused) = unauthorized(shared, req) {
        return refused;
    }
    // A web page can send a cross-site POST without a preflight, but its
    // browser always says where it comes from: refuse any `Origin`.
    if req.headers().contains_key(header::ORIGIN) {
        return problem(StatusCode::FORBIDDEN, "a reload cannot be asked from a web page (`Origin` is set)");
    }
    let Some(requests) = shared.state.reload_requests() else {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "this gateway does not take reloads through the admin API");
    };
    if waiting.fetch_add(1, std::sync::atomic::Ordering::AcqRel) >= RELOADS_WAITING {
        waiting.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        let mut busy = problem(
            StatusCode::TOO_MANY_REQUESTS,
            "reloads are already waiting for their turn (they run one at a time): ask again in a moment",
        );
        busy.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return busy;
    }
    let _waiting = Waiting(waiting);
    let (reply, outcome) = tokio::sync::oneshot::channel();
    if requests.send(reply).await.is_err() {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "the gateway is shutting down");
    }
    let Ok(Ok(outcome)) = tokio::time::timeout(Duration::from_secs(60), outcome).await else {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "the reload did not finish within 60 s");
    };
    match outcome {
        ReloadOutcome::Reloaded { hash, warnings } => {
            let loaded = shared.state.loaded();
            let body = serde_json::json!({
                "result": "reloaded",
                "config": {
                    "hash": format!("{hash:016x}"),
                    "loaded_at": loaded.at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
                    "reloads": shared.state.reloads(),
                },
                "warnings": warnings,
            });
            respond(StatusCode::OK, "application/json", body.to_string())
        }
        ReloadOutcome::Refused { errors } => {
            let running = format!("{:016x}", shared.state.loaded().hash);
            let body = serde_json::json!({
                "type": "about:blank",
                "title": "Unprocessable Content",
                "status": 422,
                "detail": format!("the new config was refused; still serving config {running}"),
                "config": { "hash": running },
                "errors": errors,
            });
            respond(StatusCode::UNPROCESSABLE_ENTITY, "application/problem+json", body.to_string())
        }
        ReloadOutcome::Unavailable(why) => problem(StatusCode::CONFLICT, &why),
    }
}

fn answer(shared: &Shared, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    // Everything but the liveness answer and the page (which asks for the
    // token itself) needs the token first, whatever the method.
    if path != "/healthz"
        && path != "/"
        && let Some(refused) = unauthorized(shared, req)
    {
        return refused;
    }
    if path == "/reload" {
        let mut resp = problem(StatusCode::METHOD_NOT_ALLOWED, "a reload is asked with POST");
        resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
        return resp;
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = problem(StatusCode::METHOD_NOT_ALLOWED, "this admin path is read-only");
        resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    if path == "/healthz" {
        return respond(StatusCode::OK, "text/plain; charset=utf-8", "ok\n");
    }
    if path == "/" {
        return page();
    }
    match path {
        "/readyz" => {
            if shared.state.draining() {
                respond(StatusCode::SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", "draining\n")
            } else {
                respond(StatusCode::OK, "text/plain; charset=utf-8", "ready\n")
            }
        }
        "/metrics" => {
            let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
            let openmetrics = prefers_openmetrics(accept);
            let text = shared.plan.load().observe.registry.render(openmetrics);
            let content_type = if openmetrics {
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
            } else {
                "text/plain; version=0.0.4; charset=utf-8"
            };
            respond(StatusCode::OK, content_type, text)
        }
        "/status" => respond(StatusCode::OK, "application/json", status(shared).to_string()),
        "/config" => {
            let mut doc = shared.state.document();
            redact::redact(&mut doc, &shared.plan.load().observe.redact);
            respond(StatusCode::OK, "application/json", doc.to_string())
        }
        _ => problem(
            StatusCode::NOT_FOUND,
            "admin paths: / (the live page), /healthz, /readyz, /status, /config, /metrics, POST /reload",
        ),
    }
}

/// Whether an `Accept` value prefers OpenMetrics to the Prometheus text
/// format: its highest quality (RFC 9110 §12.5.1: media types compared
/// without case, `q=0` refusing) above the text format's (`text/plain`,
/// `text/*` or `*/*`); a tie keeps the text format.
fn prefers_openmetrics(accept: &str) -> bool {
    let (mut openmetrics, mut text) = (0.0f32, 0.0f32);
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .map_or(Some(1.0), |(_, v)| v.trim().parse::<f32>().ok().filter(|q| (0.0..=1.0).contains(q)))
            .unwrap_or(0.0);
        match media.as_str() {
            "application/openmetrics-text" => openmetrics = openmetrics.max(q),
            "text/plain" | "text/*" | "*/*" => text = text.max(q),
            _ => {}
        }
    }
    openmetrics > 0.0 && openmetrics > text
}

/// An upstream's targets with their health, what is in flight, its
/// breaker and connections.
fn upstream_status(u: &crate::upstream::Upstream, now: tokio::time::Instant) -> serde_json::Value {
    let targets: Vec<_> = u
        .targets
        .iter()
        .map(|t| {
            serde_json::json!({
                "address": format!("{}://{}", t.scheme, t.authority),
                "weight": t.weight,
                "in_flight": t.in_flight(),
                "state": u.health.state(&t.health, now).as_str(),
            })
        })
        .collect();
    let in_flight: usize = u.targets.iter().map(|t| t.in_flight()).sum();
    let mut status = serde_json::json!({ "targets": targets, "in_flight": in_flight });
    if let Some(b) = &u.breaker {
        status["breaker"] = b.state_name(tokio::time::Instant::now()).into();
    }
    if let Some(c) = &u.limits.connections {
        status["connections"] = serde_json::json!({ "open": c.open(), "max": c.max_connections });
    }
    status
}

fn status(shared: &Shared) -> serde_json::Value {
    use crate::plan::Action;
    let plan = shared.plan.load();
    let loaded = shared.state.loaded();
    let listeners: Vec<_> = shared
        .state
        .listeners()
        .into_iter()
        .map(|(name, addr)| {
            let tls = plan.listener(&name).is_some_and(|l| l.tls.is_some());
            serde_json::json!({ "name": &*name, "address": addr.to_string(), "tls": tls })
        })
        .collect();
    let now = tokio::time::Instant::now();
    // Every upstream, whether routes proxy to it or aggregates call it.
    let upstreams: std::collections::BTreeMap<String, serde_json::Value> =
        plan.upstreams().iter().map(|u| (u.name.to_string(), upstream_status(u, now))).collect();
    let routes: Vec<_> = plan
        .routes
        .iter()
        .map(|r| {
            let upstream = match &r.action {
                Action::Proxy(p) => Some(p.upstream.name.to_string()),
                Action::Respond(_) | Action::Aggregate(_) => None,
            };
            serde_json::json!({ "name": &*r.name, "upstream": upstream })
        })
        .collect();
    serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "commit": env!("PORTCULLIS_COMMIT"),
        "config": {
            "hash": format!("{:016x}", loaded.hash),
            "loaded_at": loaded.at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            "reloads": shared.state.reloads(),
            // The file a reload reads (absolute; `portcullis reload --config`
            // compares it with the file it was given).
            "file": std::fs::canonicalize(&loaded.config.source_name)
                .map_or_else(|_| loaded.config.source_name.clone(), |p| p.display().to_string()),
        },
        "draining": shared.state.draining(),
        "listeners": listeners,
        "routes": routes,
        "upstreams": upstreams,
    })
}
