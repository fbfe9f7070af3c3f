//! Compiling one `routes[i]` entry: its matcher, its action (proxy or a
//! built-in responder) and rewrites; its policies are the registry's
//! (`policy::compile_route`).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use crate::config::{MatchConfig, RouteConfig};
use crate::policy::compile::{CompileCtx, Shared};
use crate::policy::{self, Chain};
use crate::responder::{Redirect, Responder, StaticResponse};
use crate::router::rewrite::{PathRewrite, Template};
use crate::router::{HeaderCondition, HostMatch, Matcher, PathPattern, VersionMatch, VersionSource};
use crate::upstream::Upstream;

use super::Ctx;

/// A compiled route (what to do once it matched).
#[derive(Debug)]
pub struct Route {
    pub name: Arc<str>,
    /// Parameter names, in the order the router captures values.
    pub params: Vec<Arc<str>>,
    /// Indices in `params` of those validated as OpenAPI `matrix` style
    /// (`;id=5`): the only segments that may start with `;`.
    pub matrix_params: Vec<usize>,
    pub action: Action,
    /// Its policies: request phases and response steps.
    pub policies: Chain,
    /// Largest request body, when the route sets one (else the listener's).
    pub max_body_size: Option<u64>,
}

#[derive(Debug)]
pub enum Action {
    Proxy(Proxy),
    Respond(Responder),
    /// Several upstream calls composed into one answer.
    Aggregate(super::aggregate::AggregatePlan),
}

#[derive(Debug)]
pub struct Proxy {
    pub upstream: Arc<Upstream>,
    pub rewrite: Option<PathRewrite>,
    pub host: HostRewrite,
    /// WebSocket upgrades are passed on (and the connection tunnelled after a valid 101).
    pub websocket: bool,
    /// The upstream's retry rules, with the route's `retry` fields over them.
    pub retry: Arc<crate::upstream::retry::RetryPolicy>,
}

/// Which `Host` the upstream sees.
#[derive(Debug)]
pub enum HostRewrite {
    /// The client's.
    Preserve,
    /// The target's `host:port`.
    Target,
    Set(HeaderValue),
}

/// `at`: where the route is in the config (`routes[3]`, or the API
/// operation it was made from).
pub(super) fn compile(
    cx: &mut Ctx,
    at: String,
    cfg: &RouteConfig,
    upstreams: &HashMap<&str, Arc<Upstream>>,
    known: &[&str],
    shared: &Shared,
) -> Option<(Matcher, Route)> {
    let before = cx.errors.len();
    if cfg.name.is_empty() {
        cx.err(format!("{at}.name"), "a route needs a name");
    }
    let mut matcher = compile_match(cx, &format!("{at}.match"), &cfg.matcher);
    // An aggregate reads: without `methods` it takes GET (and HEAD) only,
    // as KrakenD's endpoints do; a POST would have its body read and
    // dropped and get the GET calls' answer.
    if let Some(m) = matcher.as_mut().filter(|m| cfg.aggregate.is_some() && m.methods.is_none()) {
        m.methods = Some(vec![http::Method::GET, http::Method::HEAD]);
    }
    let params = matcher.as_ref().map(|m| m.params.clone()).unwrap_or_default();

    let actions = [
        cfg.upstream.is_some(),
        cfg.echo.is_some(),
        cfg.static_response.is_some(),
        cfg.redirect.is_some(),
        cfg.aggregate.is_some(),
    ];
    let action = match actions.iter().filter(|a| **a).count() {
        1 => match &cfg.aggregate {
            Some(agg) => {
                let registry = shared.get::<Arc<crate::observe::metrics::Registry>>().cloned().unwrap_or_default();
                super::aggregate::compile(cx, (&at, &cfg.name), agg, &params, upstreams, known, &registry)
                    .map(Action::Aggregate)
            }
            None => compile_action(cx, &at, cfg, matcher.as_ref(), upstreams, known),
        },
        _ => {
            cx.err(at.clone(), "a route needs exactly one of `upstream`, `echo`, `static`, `redirect` or `aggregate`");
            None
        }
    };
    if cfg.aggregate.is_some() && cfg.request_headers.is_some() {
        cx.err(
            format!("{at}.request_headers"),
            "an aggregate's calls are the gateway's own requests: `request_headers` does not apply to them",
        );
    }
    if cfg.retry.is_some() && cfg.upstream.is_none() {
        cx.err(format!("{at}.retry"), "retries apply to a route that proxies to an `upstream`");
    }
    if cfg.upstream.is_none() {
        if cfg.rewrite.is_some() {
            cx.err(format!("{at}.rewrite"), "`rewrite` only applies to routes with an `upstream`");
        }
        if !cfg.preserve_host {
            cx.err(format!("{at}.preserve_host"), "`preserve_host` only applies to routes with an `upstream`");
        }
        if cfg.websocket {
            cx.err(format!("{at}.websocket"), "`websocket` only applies to routes with an `upstream`");
        }
    }
    let policies = {
        let mut pcx = CompileCtx::new(cx.loaded, at.clone(), shared);
        pcx.name = &cfg.name;
        pcx.upstream = cfg.upstream.as_deref();
        let chain = policy::compile_route(cfg, &mut pcx);
        let errors = std::mem::take(&mut pcx.errors);
        cx.errors.extend(cx.loaded.errors(errors));
        chain
    };
    // A checked path parameter the path does not have would refuse every
    // request as missing it (a typo, `idd` for `id`).
    if let (Some(validate), Some(_)) = (&cfg.validate, &matcher) {
        for name in validate.path.keys().filter(|n| !params.iter().any(|p| **p == ***n)) {
            let has = if params.is_empty() { "none".to_string() } else { params.join(", ") };
            cx.err(
                format!("{at}.validate.path.{name}"),
                format!("`{name}` is not a parameter of this route's path (its parameters: {has})"),
            );
        }
    }
    if cx.errors.len() > before {
        return None;
    }
    let matrix_params = matrix_params(cfg, &params);
    let route = Route {
        name: cfg.name.as_str().into(),
        params,
        matrix_params,
        action: action?,
        policies: policies?,
        max_body_size: cfg.max_body_size.map(|s| s.0),
    };
    Some((matcher?, route))
}

/// The route's path parameters that its `validate.path` reads in `matrix` style.
fn matrix_params(cfg: &RouteConfig, params: &[Arc<str>]) -> Vec<usize> {
    let Some(path) = cfg.validate.as_ref().map(|v| &v.path) else { return Vec::new() };
    params
        .iter()
        .enumerate()
        .filter(|(_, name)| path.get(&***name).and_then(|p| p.get("style")).and_then(|s| s.as_str()) == Some("matrix"))
        .map(|(i, _)| i)
        .collect()
}

/// A route's path (or prefix) as requests for it arrive once normalized
/// with the config's `path_normalization`: raw non-ASCII percent-encoded
/// (`/naïve` is `/na%C3%AFve`), escapes of unreserved characters decoded
/// (`/%61dmin` is `/admin`), hex in upper case, dot segments resolved. As
/// Kong 3 does: a protected route written `/caf%c3%a9` would otherwise
/// never match, and its requests would fall to a broader, open route.
/// Characters never raw in a path (`|`, `[`, a space) are percent-encoded,
/// as in requests. A path that requests can never have (a refused `%2F`, a
/// `;`) is kept as written: the `unreachable-route-path` warning names it.
fn as_requests_arrive<'p>(cx: &Ctx, written: &'p str) -> std::borrow::Cow<'p, str> {
    use crate::http::normalize;
    let opts = normalize::Options { template: true, ..normalize::Options::of(&cx.loaded.config.path_normalization) };
    let wire: String =
        written.bytes().map(|b| if b.is_ascii() { (b as char).to_string() } else { format!("%{b:02X}") }).collect();
    match normalize::normalize(&wire, &opts) {
        Ok(n) if n != written => std::borrow::Cow::Owned(n.into_owned()),
        _ => std::borrow::Cow::Borrowed(written),
    }
}

/// A `..` after a parameter (`/a/{id}/../b`) removes it with its segment:
/// the route would match `/a/b` only, its parameter gone unsaid.
fn lost_parameters(cx: &mut Ctx, at: &str, written: &str, arriving: &str) {
    let count = |p: &str| p.matches('{').count();
    if count(arriving) < count(written) {
        cx.err(
            at.to_string(),
            format!(
                "`{written}` is `{arriving}` once its dot segments are resolved, as requests are: a parameter is gone"
            ),
        );
    }
}

fn compile_match(cx: &mut Ctx, at: &str, m: &MatchConfig) -> Option<Matcher> {
    let before = cx.errors.len();
    let host = match &m.host {
        None => HostMatch::Any,
        Some(h) => HostMatch::parse(h).unwrap_or_else(|e| {
            cx.err(format!("{at}.host"), e);
            HostMatch::Any
        }),
    };
    let path = match (&m.path, &m.path_prefix) {
        (Some(_), Some(_)) => {
            cx.err(format!("{at}.path_prefix"), "use either `path` or `path_prefix`, not both");
            None
        }
        (Some(p), None) => {
            let arriving = as_requests_arrive(cx, p);
            lost_parameters(cx, &format!("{at}.path"), p, &arriving);
            PathPattern::parse_path(&arriving).map_err(|e| cx.err(format!("{at}.path"), e)).ok()
        }
        (None, Some(p)) => {
            let arriving = as_requests_arrive(cx, p);
            lost_parameters(cx, &format!("{at}.path_prefix"), p, &arriving);
            PathPattern::parse_prefix(&arriving).map_err(|e| cx.err(format!("{at}.path_prefix"), e)).ok()
        }
        (None, None) => PathPattern::parse_prefix("/").ok(),
    };
    let methods = m.methods.as_ref().map(|ms| {
        ms.iter()
            .enumerate()
            .filter_map(|(j, name)| {
                let upper = name.to_ascii_uppercase();
                Method::from_bytes(upper.as_bytes())
                    .map_err(|_| cx.err(format!("{at}.methods[{j}]"), format!("`{name}` is not an HTTP method")))
                    .ok()
            })
            .collect::<Vec<_>>()
    });
    if methods.as_ref().is_some_and(Vec::is_empty) && cx.errors.len() == before {
        cx.err(format!("{at}.methods"), "an empty method list matches nothing; remove `methods` to allow any");
    }
    if let Some(ms) = &methods {
        for (j, m) in ms.iter().enumerate() {
            if ms[..j].contains(m) {
                cx.err(format!("{at}.methods[{j}]"), format!("`{m}` is listed twice"));
            } else if crate::wire::admit::never_served(m) {
                // Refused on every listener before routing (`wire::admit`).
                cx.err(
                    format!("{at}.methods[{j}]"),
                    format!("the gateway answers every `{m}` with 501; no route serves it"),
                );
            }
        }
    }
    let mut headers = Vec::new();
    for (j, h) in m.headers.iter().enumerate() {
        if let Err(e) = crate::wire::admit::readable_request_header(&h.name) {
            cx.err(format!("{at}.headers[{j}].name"), e);
            continue;
        }
        let name = HeaderName::try_from(h.name.as_str());
        let value = h.value.as_deref().map(HeaderValue::try_from).transpose();
        match (name, value) {
            (Ok(name), Ok(_)) if headers.iter().any(|c: &HeaderCondition| c.name == name) => {
                cx.err(format!("{at}.headers[{j}].name"), format!("header `{name}` has two conditions; keep one"))
            }
            (Ok(name), Ok(value)) => headers.push(HeaderCondition { name, value }),
            (Err(_), _) => cx.err(format!("{at}.headers[{j}].name"), format!("`{}` is not a header name", h.name)),
            (_, Err(_)) => cx.err(format!("{at}.headers[{j}].value"), "not a valid header value"),
        }
    }
    let mut path = path?;
    let mut version = None;
    if let Some(v) = &m.version {
        let vat = format!("{at}.version");
        let sources = [v.path_prefix.is_some(), v.header.is_some(), v.accept_param.is_some()];
        if sources.iter().filter(|s| **s).count() != 1 {
            cx.err(vat.clone(), "a version needs exactly one of `path_prefix`, `header` or `accept_param`");
        } else if let Some(prefix) = &v.path_prefix {
            if v.value.is_some() || v.default {
                cx.err(vat.clone(), "`value` and `default` go with `header` or `accept_param`, not `path_prefix`");
            }
            match PathPattern::parse_prefix(&as_requests_arrive(cx, prefix)) {
                Ok(p) => path = path.prepend(&p),
                Err(e) => cx.err(format!("{vat}.path_prefix"), e),
            }
        } else {
            let source = match (&v.header, &v.accept_param) {
                (Some(h), _) if let Err(e) = crate::wire::admit::readable_request_header(h) => {
                    cx.err(format!("{vat}.header"), e);
                    None
                }
                (Some(h), _) => HeaderName::try_from(h.as_str())
                    .map(VersionSource::Header)
                    .map_err(|_| cx.err(format!("{vat}.header"), format!("`{h}` is not a header name")))
                    .ok(),
                (_, Some(p)) => Some(VersionSource::AcceptParam(p.as_str().into())),
                _ => None,
            };
            match (&v.value, source) {
                (Some(value), Some(source)) => {
                    version = Some(VersionMatch { source, value: value.as_str().into(), default: v.default })
                }
                (None, _) => cx.err(format!("{vat}.value"), "the version `value` this route serves is required"),
                _ => {}
            }
        }
    }
    let listeners = m.listeners.as_ref().map(|names| listener_names(cx, at, names));
    if cx.errors.len() > before {
        return None;
    }
    Some(Matcher { host, params: path.param_names(), path, methods, headers, version, listeners })
}

/// `match.listeners`: names of defined listeners that serve routes, each once.
pub(super) fn listener_names(cx: &mut Ctx, at: &str, names: &[String]) -> Vec<Arc<str>> {
    if names.is_empty() {
        cx.err(
            format!("{at}.listeners"),
            "an empty listener list matches nothing; remove `listeners` to serve on every listener",
        );
    }
    let defined: Vec<&str> = cx.loaded.config.listeners.iter().map(|l| l.name.as_str()).collect();
    let mut out: Vec<Arc<str>> = Vec::with_capacity(names.len());
    for (j, name) in names.iter().enumerate() {
        let at = format!("{at}.listeners[{j}]");
        match cx.loaded.config.listeners.iter().find(|l| l.name == *name) {
            None => {
                let mut known = defined.clone();
                known.sort_unstable();
                let known = if known.is_empty() { "no listeners are defined".to_string() } else { format!("defined: {}", known.join(", ")) };
                cx.err(at, format!("unknown listener `{name}` ({known})"));
            }
            Some(_) if out.iter().any(|l| **l == **name) => cx.err(at, format!("`{name}` is listed twice")),
            Some(l) if l.redirect_https.is_some() => cx.err(
                at,
                format!("listener `{name}` answers every request with a redirect to HTTPS (`redirect_https`); no route is served on it"),
            ),
            Some(_) => out.push(name.as_str().into()),
        }
    }
    out
}

/// The upstreams a config defines, for an "unknown upstream" message.
pub(super) fn defined(known: &[&str]) -> String {
    if known.is_empty() {
        "no upstreams are defined".to_string()
    } else {
        let mut names = known.to_vec();
        names.sort_unstable();
        format!("defined: {}", names.join(", "))
    }
}

fn compile_action(
    cx: &mut Ctx,
    at: &str,
    cfg: &RouteConfig,
    matcher: Option<&Matcher>,
    upstreams: &HashMap<&str, Arc<Upstream>>,
    known: &[&str],
) -> Option<Action> {
    let params = matcher.map(|m| m.params.clone()).unwrap_or_default();
    if let Some(name) = &cfg.upstream {
        let upstream = upstreams.get(name.as_str()).cloned();
        if upstream.is_none() && !known.contains(&name.as_str()) {
            cx.err(format!("{at}.upstream"), format!("unknown upstream `{name}` ({})", defined(known)));
        }
        let (rewrite, host) = compile_rewrite(cx, at, cfg, matcher, &params);
        let upstream = upstream?;
        if cfg.websocket && upstream.targets.iter().any(|t| t.h2.is_some()) {
            // hyper's client would send the handshake as an HTTP/2 request
            // (no upgrade there, and the target's address as `:authority`).
            cx.err(
                format!("{at}.websocket"),
                format!(
                    "upstream `{name}` is spoken to over HTTP/2 (`protocol: http2`), and the gateway opens WebSockets \
                     over HTTP/1.1 only: give this route an upstream without `protocol: http2`"
                ),
            );
        }
        let retry = match &cfg.retry {
            Some(r) => Arc::new(super::upstream::compile_retry(cx, &format!("{at}.retry"), &upstream.retry, r, false)),
            None => upstream.retry.clone(),
        };
        return Some(Action::Proxy(Proxy { upstream, rewrite, host, websocket: cfg.websocket, retry }));
    }
    if cfg.echo.is_some() {
        return Some(Action::Respond(Responder::Echo));
    }
    if let Some(s) = &cfg.static_response {
        let status = StatusCode::from_u16(s.status).ok().filter(|st| (200..600).contains(&st.as_u16())).or_else(|| {
            cx.err(format!("{at}.static.status"), format!("`{}` is not a final HTTP status (200-599)", s.status));
            None
        });
        // RFC 9110 §15.3.5, §15.3.6, §15.4.5.
        if matches!(s.status, 204 | 205 | 304) && !s.body.is_empty() {
            cx.err(format!("{at}.static.body"), format!("a {} response has no body", s.status));
        }
        let mut headers = HeaderMap::new();
        let settable = crate::wire::settable::settable(&s.headers, |k, message| {
            cx.err(format!("{at}.static.headers.{k}"), message)
        });
        for (name, value) in settable {
            headers.insert(name, value);
        }
        // RFC 9110 §8.3: content goes with its type; a YAML string is text.
        if !s.body.is_empty() && !headers.contains_key(http::header::CONTENT_TYPE) {
            headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        }
        return Some(Action::Respond(Responder::Static(StaticResponse {
            status: status?,
            headers,
            body: Bytes::from(s.body.clone()),
        })));
    }
    let r = cfg.redirect.as_ref()?;
    if ![301, 302, 303, 307, 308].contains(&r.status) {
        cx.err(format!("{at}.redirect.status"), "a redirect status is 301, 302, 303, 307 or 308");
    }
    let to = Template::parse(&r.to, &params).map_err(|e| cx.err(format!("{at}.redirect.to"), e)).ok()?;
    if let Some(why) = open_redirect(&r.to).or_else(|| unsendable_target(&r.to)) {
        cx.err(format!("{at}.redirect.to"), why);
    }
    let status = StatusCode::from_u16(r.status).ok()?;
    Some(Action::Respond(Responder::Redirect(Redirect { to, status, keep_query: r.keep_query })))
}

/// Why a redirect template would let a request choose the host it sends
/// clients to (an open redirect), if it would: a `{param}` before the end
/// of the scheme and host (`https://docs.example.com{page}` with `page`
/// `@evil.example`, `https://{host}/`), or at the very start (`{*rest}`
/// with `https:/evil.example`, which browsers read as that host).
pub(super) fn open_redirect(to: &str) -> Option<String> {
    if to.bytes().any(|b| b.is_ascii_control()) {
        // Browsers drop tabs and line breaks from a URL: `/\t/{x}` is `//{x}`.
        return Some(format!(
            "`{}`: a control character (a tab, a line break) in a redirect target",
            to.escape_debug()
        ));
    }
    if to.trim() != to {
        // HTTP drops a header value's leading spaces, browsers a URL's: ` //{x}` is `//{x}`.
        return Some(format!("`{to}`: spaces around a redirect target (HTTP and browsers drop them)"));
    }
    let first = to.find('{')?;
    // Browsers read `\` as `/` in http(s) URLs (`/\evil.example` is `//evil.example`).
    let before = to[..first].replace('\\', "/");
    // Relative to the request's own URL: its query or fragment, or a path
    // (`/docs/`, `./`, `v2/`) whose first segment holds no `:` (a scheme).
    let relative = before.starts_with(['?', '#'])
        || (before.starts_with('/') && !before.starts_with("//"))
        || before.split_once('/').is_some_and(|(head, _)| !head.contains(':') && !head.is_empty());
    if relative {
        return None;
    }
    // `scheme://host` then `/`, `?` or `#`, all before the first parameter;
    // the host not empty (`https:///{x}` is read as `https://{x}`).
    let after_scheme = before
        .split_once(':')
        .filter(|(scheme, _)| {
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        })
        .map_or(before.as_str(), |(_, rest)| rest);
    if let Some(authority) = after_scheme.strip_prefix("//")
        && authority.find(['/', '?', '#']).is_some_and(|end| end > 0)
    {
        return None;
    }
    Some(format!(
        "`{to}`: a parameter stands in the scheme or host part, so a request could choose where clients are \
         redirected (an open redirect); start `to` with `/` or a whole `https://host/` before the first parameter"
    ))
}

/// Why a redirect target would not reach clients as written, if it would
/// not: nothing at all, a scheme-relative `//host/…` (sent as `/host/…`,
/// since one leading `/` is all a local target keeps), or characters a
/// URL holds only percent-encoded (a space, `"`, `<`, `\`, non-ASCII),
/// which clients mend each their own way (`\` into `/`: `/\evil.example`
/// is another host to browsers).
pub(super) fn unsendable_target(to: &str) -> Option<String> {
    if to.is_empty() {
        return Some("`to` is empty: a redirect needs a target".into());
    }
    if to.starts_with("//") {
        return Some(format!(
            "`{to}` is scheme-relative, and a local target keeps one leading `/`: write the scheme (`https:{to}`)"
        ));
    }
    // `\`: browsers read it as `/` (`/\evil.example` goes to that host).
    let bad = to.chars().find(|&c| !c.is_ascii() || c.is_ascii_control() || " \"<>`\\".contains(c))?;
    Some(format!("`{to}`: `{bad}` must be percent-encoded in a URL (a space is `%20`, `\\` is `%5C`, `é` is `%C3%A9`)"))
}

/// A rewrite's target (`replace_prefix.to`, a `path` template) as the
/// upstream will read it: the gateway forwards it as written, so one that
/// normalization would change (`//admin`, `/./admin`, `/x/../admin`,
/// `/%61dmin`, a raw space or `ï`) reads as another path behind, past the
/// routes (and the `rewrite-reaches-guarded` warning) that know it as
/// written. Refused, with the form to write.
fn normal_target(cx: &Ctx, target: &str) -> Result<(), String> {
    use crate::http::normalize;
    // Parameters stand in as plain tokens, put back in the answer.
    let mut names: Vec<&str> = Vec::new();
    let mut plain = String::with_capacity(target.len());
    let mut rest = target;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else { break };
        plain.push_str(&rest[..open]);
        plain.push_str(&format!("pcl{}x", names.len()));
        names.push(&rest[open..open + close + 1]);
        rest = &rest[open + close + 1..];
    }
    plain.push_str(rest);
    let back = |text: &str| {
        let mut out = text.to_string();
        for (i, name) in names.iter().enumerate() {
            out = out.replace(&format!("pcl{i}x"), name);
        }
        out
    };
    let unusable = plain.bytes().any(|b| !b.is_ascii_graphic());
    // An encoded `/` or a `%25` written in a target is the operator's
    // meaning (`group%2Fproject`), not a client's trick.
    let mut opts = normalize::Options::of(&cx.loaded.config.path_normalization);
    (opts.reject_encoded_slash, opts.reject_double_encoding) = (false, false);
    match normalize::normalize(&plain, &opts) {
        Ok(n) if n == plain && !unusable => Ok(()),
        Ok(n) if !unusable => {
            Err(format!("`{target}` is not a normalized path: the upstream may read it as `{}`; write that", back(&n)))
        }
        _ => {
            let encoded: String = plain
                .bytes()
                .map(|b| if b.is_ascii_graphic() { (b as char).to_string() } else { format!("%{b:02X}") })
                .collect();
            Err(format!(
                "`{target}` holds what a request line cannot (a space, a byte beyond ASCII, a bad escape): \
                 write it percent-encoded, `{}`",
                back(&encoded)
            ))
        }
    }
}

fn compile_rewrite(
    cx: &mut Ctx,
    at: &str,
    cfg: &RouteConfig,
    matcher: Option<&Matcher>,
    params: &[Arc<str>],
) -> (Option<PathRewrite>, HostRewrite) {
    let mut host = if cfg.preserve_host { HostRewrite::Preserve } else { HostRewrite::Target };
    let Some(rw) = &cfg.rewrite else {
        return (None, host);
    };
    let at = format!("{at}.rewrite");
    if let Some(h) = &rw.host {
        // As a client's Host is read: no userinfo (`evil.com@x`), no path.
        let host_port = crate::wire::admit::host_and_port(h.as_bytes()).is_ok();
        match HeaderValue::try_from(h.as_str()).ok().filter(|_| host_port) {
            Some(v) => host = HostRewrite::Set(v),
            None => cx.err(format!("{at}.host"), format!("`{h}` is not a host (with an optional port)")),
        }
    }
    let ops = [rw.strip_prefix.is_some(), rw.replace_prefix.is_some(), rw.path.is_some()];
    if ops.iter().filter(|o| **o).count() > 1 {
        cx.err(at.clone(), "use one of `strip_prefix`, `replace_prefix` or `path`");
        return (None, host);
    }
    // A prefix rewrite must name a prefix that every matching path has
    // (both as requests arrive: `/naïve` is `/na%C3%AFve`).
    let mut check_prefix = |key: &str, prefix: &str| -> Option<Box<str>> {
        let prefix = &as_requests_arrive(cx, prefix).into_owned();
        let trimmed = prefix.trim_end_matches('/');
        let segments: Vec<&str> = trimmed.split('/').skip(1).collect();
        let literal: Vec<&str> = matcher.map(|m| m.path.literal_prefix_segments().collect()).unwrap_or_default();
        if !prefix.starts_with('/') || (matcher.is_some() && !literal.starts_with(&segments)) {
            cx.err(format!("{at}.{key}"), format!("`{prefix}` is not a prefix of every path this route matches"));
            return None;
        }
        Some(trimmed.into())
    };
    let rewrite = if let Some(p) = &rw.strip_prefix {
        check_prefix("strip_prefix", p).map(PathRewrite::StripPrefix)
    } else if let Some(r) = &rw.replace_prefix {
        let from = check_prefix("replace_prefix.from", &r.from);
        if !r.to.starts_with('/') {
            cx.err(format!("{at}.replace_prefix.to"), "must start with `/`");
        } else if let Err(e) = normal_target(cx, &r.to) {
            cx.err(format!("{at}.replace_prefix.to"), e);
        }
        from.map(|from| PathRewrite::ReplacePrefix { from, to: r.to.as_str().into() })
    } else if let Some(p) = &rw.path {
        if !p.starts_with('/') || p.contains(['?', '#']) {
            cx.err(format!("{at}.path"), "must start with `/` and hold a path only (the query is kept as sent)");
        } else if let Err(e) = normal_target(cx, p) {
            cx.err(format!("{at}.path"), e);
        }
        Template::parse(p, params).map(PathRewrite::Template).map_err(|e| cx.err(format!("{at}.path"), e)).ok()
    } else {
        None
    };
    (rewrite, host)
}
