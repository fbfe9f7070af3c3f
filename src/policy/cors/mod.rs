//! CORS (the Fetch standard's CORS protocol): preflights are answered at
//! the gateway without reaching the upstream, and allowed origins get the
//! `Access-Control-*` headers on actual responses.

use crate::http::Answer;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};

pub mod config;
use crate::config::FieldErrors;
use crate::policy::compile::CompileCtx;
pub use config::CorsConfig;

/// The CORS response fields a route with `cors` writes itself.
const UPSTREAM_CORS: [HeaderName; 7] = [
    header::ACCESS_CONTROL_ALLOW_ORIGIN,
    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
    header::ACCESS_CONTROL_EXPOSE_HEADERS,
    header::ACCESS_CONTROL_ALLOW_METHODS,
    header::ACCESS_CONTROL_ALLOW_HEADERS,
    header::ACCESS_CONTROL_MAX_AGE,
    // Private Network Access: granted by the upstream to any origin, not
    // by the route's list (the gateway does not answer its preflights).
    HeaderName::from_static("access-control-allow-private-network"),
];

/// Whether a field name is one of CORS's (`Access-Control-*`).
pub fn is_cors_field(name: &str) -> bool {
    name.get(..15).is_some_and(|p| p.eq_ignore_ascii_case("access-control-"))
}

#[derive(Debug, Clone)]
enum Origin {
    Any,
    Exact(String),
    /// `scheme://` and `.suffix` of `scheme://*.suffix`.
    Subdomains {
        scheme: String,
        suffix: String,
    },
}

#[derive(Debug, Clone)]
pub struct Compiled {
    origins: Vec<Origin>,
    methods: Vec<Method>,
    methods_value: HeaderValue,
    headers: Vec<String>,
    headers_value: Option<HeaderValue>,
    expose_value: Option<HeaderValue>,
    credentials: bool,
    max_age: Option<HeaderValue>,
}

/// One DNS label: letters, digits and `-`, not at either end.
fn is_label(label: &str) -> bool {
    !label.is_empty()
        && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// Why `*.suffix` would let in sites that are not the config owner's, if
/// it would: an IP address has no subdomains (`*.0.1` matched
/// `https://127.0.0.1`), and under a public suffix anyone registers a
/// name (`*.co.uk`, `*.github.io`). Not the whole Public Suffix List: the
/// second-level names of country domains and the shared hosting domains
/// most often met (`*.com` is refused as a one-label suffix already).
fn public_suffix(suffix: &str) -> Option<&'static str> {
    const COUNTRY_SECOND_LEVELS: &[&str] =
        &["co", "com", "net", "org", "gov", "edu", "ac", "or", "ne", "go", "gob", "mil", "nom", "ltd", "plc", "sch"];
    const SHARED_HOSTING: &[&str] = &[
        "github.io",
        "gitlab.io",
        "herokuapp.com",
        "vercel.app",
        "netlify.app",
        "pages.dev",
        "workers.dev",
        "web.app",
        "firebaseapp.com",
        "appspot.com",
        "azurewebsites.net",
        "azurestaticapps.net",
        "cloudfront.net",
        "amazonaws.com",
        "blogspot.com",
        "onrender.com",
        "fly.dev",
        "glitch.me",
        "ngrok.io",
        "ngrok-free.app",
        "repl.co",
        "nip.io",
        "sslip.io",
        "trycloudflare.com",
        "githubusercontent.com",
        "replit.dev",
        "xip.io",
        "localtest.me",
    ];
    let host =
        suffix.rsplit_once(':').filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit())).map_or(suffix, |(h, _)| h);
    let labels: Vec<&str> = host.split('.').collect();
    if host.starts_with('[') || labels.last().is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit())) {
        return Some("an IP address has no subdomains");
    }
    // Under a shared hosting domain, every name is anyone's (`*.s3.amazonaws.com`: every bucket).
    let shared = SHARED_HOSTING.iter().any(|d| host == *d || host.strip_suffix(d).is_some_and(|h| h.ends_with('.')));
    let public = shared
        || matches!(labels.as_slice(), [second, country] if country.len() == 2 && COUNTRY_SECOND_LEVELS.contains(second));
    public.then_some("it is a public suffix: anyone can register a site under it")
}

/// An origin's host and optional port (`app.example.com`, `localhost:3000`,
/// `[::1]:8080`): what a browser's `Origin` holds after the scheme, read
/// by the `Host` parser (less a trailing dot, which no origin has).
fn host_port(s: &str) -> bool {
    crate::wire::admit::host_and_port(s.as_bytes()).is_ok_and(|hp| !hp.host.ends_with(b"."))
}

fn join(items: &[String]) -> Option<HeaderValue> {
    (!items.is_empty()).then(|| HeaderValue::try_from(items.join(", ")).ok()).flatten()
}

impl Compiled {
    pub fn compile(cfg: &CorsConfig, _cx: &mut CompileCtx<'_>) -> Result<Compiled, FieldErrors> {
        let mut errors = FieldErrors::new();
        let mut origins = Vec::new();
        for (i, o) in cfg.allow_origins.iter().enumerate() {
            let lower = o.trim().to_ascii_lowercase();
            let (scheme, rest) = lower.split_once("://").unwrap_or(("", &lower));
            let web = matches!(scheme, "http" | "https");
            let rest = rest.strip_suffix('/').unwrap_or(rest);
            let default_port = if scheme == "https" { 443 } else { 80 };
            // The port as written (after an IPv6 address's `]`).
            let after_host = rest.rsplit_once(']').map_or(rest, |(_, tail)| tail);
            let port = after_host.rsplit_once(':').map(|(_, p)| p);
            let bare = port.map(|p| &rest[..rest.len() - p.len() - 1]);
            if web
                && let (Some(p), Some(bare)) = (port, bare)
                && (p.parse() == Ok(default_port) || (p.len() > 1 && p.starts_with('0')))
            {
                // RFC 6454 §6.2: an origin is serialized without its scheme's
                // default port, and a port in plain digits.
                let shown = if p.parse() == Ok(default_port) {
                    String::new()
                } else {
                    format!(":{}", p.trim_start_matches('0'))
                };
                errors.push((
                    format!("allow_origins[{i}]"),
                    format!("`{o}`: browsers send an origin without its default port or leading zeros, so it would never match: write `{scheme}://{bare}{shown}`"),
                ));
            } else if lower == "*" {
                origins.push(Origin::Any);
            } else if let Some(suffix) = rest.strip_prefix("*.").filter(|s| web && host_port(s) && s.contains('.')) {
                match public_suffix(suffix) {
                    Some(why) => errors.push((
                        format!("allow_origins[{i}]"),
                        format!("`{o}` lets in sites that are not yours ({why}): list your own origins or domain"),
                    )),
                    None => origins
                        .push(Origin::Subdomains { scheme: format!("{scheme}://"), suffix: format!(".{suffix}") }),
                }
            } else if web && host_port(rest) {
                origins.push(Origin::Exact(format!("{scheme}://{rest}")));
            } else {
                errors.push((
                    format!("allow_origins[{i}]"),
                    format!("`{o}` is not an origin like `https://app.example.com`"),
                ));
            }
        }
        if origins.is_empty() && errors.is_empty() {
            errors.push(("allow_origins".into(), "list at least one origin".into()));
        }
        if cfg.allow_credentials && origins.iter().any(|o| matches!(o, Origin::Any)) {
            errors.push((
                "allow_credentials".into(),
                "credentials cannot be allowed for any origin (`*`): list the origins".into(),
            ));
        }
        let method_names: Vec<String> = if cfg.allow_methods.is_empty() {
            vec!["GET".into(), "HEAD".into(), "POST".into()]
        } else {
            cfg.allow_methods.iter().map(|m| m.to_ascii_uppercase()).collect()
        };
        let mut methods = Vec::new();
        for (i, m) in method_names.iter().enumerate() {
            if m == "*" {
                errors.push((format!("allow_methods[{i}]"), "`*` is not supported here; list the methods".into()));
                continue;
            }
            // The gateway answers these itself (501): granting them to a page is a promise it does not keep.
            if matches!(m.as_str(), "CONNECT" | "TRACE" | "TRACK") {
                errors
                    .push((format!("allow_methods[{i}]"), format!("`{m}` is never served (the gateway answers 501)")));
                continue;
            }
            match Method::from_bytes(m.as_bytes()) {
                Ok(m) => methods.push(m),
                Err(_) => errors.push((format!("allow_methods[{i}]"), format!("`{m}` is not an HTTP method"))),
            }
        }
        for (key, list) in [("allow_headers", &cfg.allow_headers), ("expose_headers", &cfg.expose_headers)] {
            for (i, h) in list.iter().enumerate() {
                if h == "*" {
                    errors.push((format!("{key}[{i}]"), "`*` is not supported here; list the header names".into()));
                } else if HeaderName::try_from(h.as_str()).is_err() {
                    errors.push((format!("{key}[{i}]"), format!("`{h}` is not a header name")));
                } else if key == "allow_headers"
                    && let Err(e) = crate::wire::admit::readable_request_header(h)
                {
                    errors.push((format!("{key}[{i}]"), e));
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Compiled {
            origins,
            methods_value: join(&method_names).unwrap_or(HeaderValue::from_static("GET")),
            methods,
            headers: cfg.allow_headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
            headers_value: join(&cfg.allow_headers),
            expose_value: join(&cfg.expose_headers),
            credentials: cfg.allow_credentials,
            // Whole seconds, rounded up: `500ms` sent as `0` turned caching off.
            max_age: cfg.max_age.map(|d| HeaderValue::from(d.0.as_secs() + u64::from(d.0.subsec_nanos() > 0))),
        })
    }

    fn allows(&self, origin: &HeaderValue) -> bool {
        let Ok(origin) = origin.to_str() else { return false };
        let origin = origin.to_ascii_lowercase();
        self.origins.iter().any(|o| match o {
            Origin::Any => true,
            Origin::Exact(e) => *e == origin,
            // Labels before the suffix, nothing else: no `/`, `@` or `%`
            // that would make `https://evil.com/.example.com` a subdomain.
            Origin::Subdomains { scheme, suffix } => origin
                .strip_prefix(scheme.as_str())
                .and_then(|host| host.strip_suffix(suffix.as_str()))
                .is_some_and(|labels| !labels.is_empty() && labels.split('.').all(is_label)),
        })
    }

    fn allow_origin_headers(&self, origin: &HeaderValue, headers: &mut HeaderMap) {
        let any = !self.credentials && self.origins.iter().any(|o| matches!(o, Origin::Any));
        let value = if any { HeaderValue::from_static("*") } else { origin.clone() };
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        if !any {
            headers.append(header::VARY, HeaderValue::from_static("Origin"));
        }
        if self.credentials {
            headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        }
    }

    /// A preflight is `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
    pub fn is_preflight(method: &Method, headers: &HeaderMap) -> Option<Method> {
        if method != Method::OPTIONS || !headers.contains_key(header::ORIGIN) {
            return None;
        }
        Method::from_bytes(headers.get(header::ACCESS_CONTROL_REQUEST_METHOD)?.as_bytes()).ok()
    }

    /// The answer to a preflight: 204 with the grants, or 403 when refused.
    pub fn preflight(&self, requested: &Method, headers: &HeaderMap) -> Result<Answer, &'static str> {
        let origin = headers.get(header::ORIGIN).filter(|o| self.allows(o)).ok_or("origin not allowed")?;
        // One method is asked for; a second line makes the preflight
        // malformed (the first alone was read, and granted).
        if headers.get_all(header::ACCESS_CONTROL_REQUEST_METHOD).iter().nth(1).is_some() {
            return Err("Access-Control-Request-Method sent twice");
        }
        // GET, HEAD and POST are CORS-safelisted: browsers never need them
        // in `Access-Control-Allow-Methods` (Fetch, CORS-preflight fetch),
        // and the actual request is granted without a preflight anyway; a
        // preflight for one (asked because of a header) is judged by its
        // headers, as Envoy and Kong answer it.
        let safelisted = matches!(*requested, Method::GET | Method::HEAD | Method::POST);
        if !safelisted && !self.methods.contains(requested) {
            return Err("method not allowed for cross-origin requests");
        }
        // Several lines are one list (RFC 9110 §5.3): every name on each.
        let mut asked = headers.get_all(header::ACCESS_CONTROL_REQUEST_HEADERS).iter();
        if !asked.all(|line| {
            line.to_str().is_ok_and(|line| {
                line.split(',')
                    .map(str::trim)
                    .filter(|h| !h.is_empty())
                    .all(|h| self.headers.iter().any(|a| a.eq_ignore_ascii_case(h)))
            })
        }) {
            return Err("request header not allowed for cross-origin requests");
        }
        let mut resp = Response::new(bytes::Bytes::new());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        let out = resp.headers_mut();
        self.allow_origin_headers(origin, out);
        out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, self.methods_value.clone());
        if let Some(h) = &self.headers_value {
            out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, h.clone());
        }
        if let Some(age) = &self.max_age {
            out.insert(header::ACCESS_CONTROL_MAX_AGE, age.clone());
        }
        // `Origin` too when the grant is `*`: another route that the same
        // path may match (by a header) can answer another origin otherwise.
        let vary = if out.contains_key(header::VARY) {
            "Access-Control-Request-Method, Access-Control-Request-Headers"
        } else {
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
        };
        out.append(header::VARY, HeaderValue::from_static(vary));
        Ok(resp)
    }

    /// Response step of an actual (non-preflight) request. A response that
    /// carries its grants already (a preflight answer, or an upstream that
    /// does CORS itself) is left as it is.
    /// The route's CORS is the answer's: an upstream's own `Access-Control-*`
    /// fields go first (a backend library that lets every origin in, with
    /// credentials, would otherwise override the allow-list set here).
    pub fn on_response(&self, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
        for name in UPSTREAM_CORS {
            headers.remove(name);
        }
        let any = !self.credentials && self.origins.iter().any(|o| matches!(o, Origin::Any));
        if any {
            // Every origin gets `*`, a request without `Origin` too: one
            // answer for all, which a shared cache may keep (a copy without
            // the grant, cached for a same-origin request, was served to
            // cross-origin pages, which the browser then refused).
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        } else if let Some(origin) = origin.filter(|o| self.allows(o)) {
            self.allow_origin_headers(origin, headers);
        } else {
            // The answer depends on Origin even when it grants nothing: tell caches.
            headers.append(header::VARY, HeaderValue::from_static("Origin"));
            return;
        }
        if let Some(e) = &self.expose_value {
            headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, e.clone());
        }
    }
}

#[cfg(test)]
mod tests;
