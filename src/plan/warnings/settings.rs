//! `ineffective-setting`: a setting the file writes that nothing reads in
//! the place it is written (each one passed in silence, and looked like it
//! did something).

use super::Found;
use crate::config::{LoadedConfig, TargetConfig};
use crate::policy::auth::config::ProviderConfig;
use crate::policy::security_headers::SecurityHeadersConfig;

const NAME: &str = "ineffective-setting";

pub(super) fn ineffective_settings(loaded: &LoadedConfig, found: &mut Found) {
    let cfg = &loaded.config;
    let written = |path: &str| loaded.locations.has(path);
    for (name, provider) in &cfg.auth {
        let ProviderConfig::Jwt(j) = provider else { continue };
        if j.jwks_uri.is_some() || j.discovery {
            continue;
        }
        for key in ["jwks_ca", "jwks_refresh"] {
            let at = format!("auth.{name}.jwt.{key}");
            if written(&at) {
                found.add(
                    NAME,
                    at,
                    format!("`{key}` is for keys fetched from `jwks_uri` or `discovery`; this provider fetches none"),
                );
            }
        }
    }
    for (name, up) in &cfg.upstreams {
        let url = |t: &TargetConfig| match t {
            TargetConfig::Url(u) => u.clone(),
            TargetConfig::Weighted(w) => w.url.clone(),
        };
        if up.targets.iter().any(|t| url(t).get(..8).is_some_and(|s| s.eq_ignore_ascii_case("https://"))) {
            continue;
        }
        for key in ["ca", "server_name"] {
            let at = format!("upstreams.{name}.tls.{key}");
            if written(&at) {
                found.add(NAME, at, "every target of this upstream is `http://`: no TLS is spoken to them");
            }
        }
    }
    if let Some(otlp) = &cfg.tracing.otlp
        && !otlp.endpoint.get(..8).is_some_and(|s| s.eq_ignore_ascii_case("https://"))
        && written("tracing.otlp.ca")
    {
        found.add(NAME, "tracing.otlp.ca", "the endpoint is `http://`: no TLS is spoken to the collector");
    }
    // A validated body is read whole, within `max_buffered` for every
    // request together: one larger than that is refused (503) whatever
    // the route allows.
    let listener_max = cfg.listeners.iter().map(|l| l.limits.max_body_size.0).max().unwrap_or(0);
    for (i, r) in cfg.routes.iter().enumerate() {
        let reads_body = r.validate.as_ref().is_some_and(|v| v.body.is_some() || !v.content_types.is_empty());
        let max = r.max_body_size.map_or(listener_max, |m| m.0);
        if reads_body && max > cfg.max_buffered.0 {
            let at = if r.max_body_size.is_some() {
                format!("routes[{i}].max_body_size")
            } else {
                format!("routes[{i}].validate")
            };
            found.add(
                NAME,
                at,
                format!(
                    "this route reads bodies of up to {max} bytes whole to validate them, but `max_buffered` holds \
                     {} bytes for every request together: a larger body is refused with 503; lower \
                     `max_body_size` or raise `max_buffered`",
                    cfg.max_buffered.0
                ),
            );
        }
    }
    // A body schema is checked on JSON and form bodies: another type the
    // route accepts passes with only its type checked (a `text/plain` body
    // holding JSON reaches a lenient service unread).
    for (i, r) in cfg.routes.iter().enumerate() {
        let Some(v) = &r.validate else { continue };
        if v.body.is_none() {
            continue;
        }
        let read = |t: &str| crate::policy::validate::is_json(t) || t == "application/x-www-form-urlencoded";
        for (j, t) in v.content_types.iter().enumerate() {
            let t = t.to_ascii_lowercase();
            if !read(&t) {
                found.add(
                    NAME,
                    format!("routes[{i}].validate.content_types[{j}]"),
                    format!(
                        "`body` is checked on JSON and form bodies: a `{t}` body this route accepts that is no JSON \
                         document passes with only its type checked"
                    ),
                );
            }
        }
    }
    for (i, l) in cfg.listeners.iter().enumerate() {
        let at = format!("listeners[{i}].limits.tls_handshake_timeout");
        if l.tls.is_none() && written(&at) {
            found.add(NAME, at, "this listener has no `tls`: there is no handshake to time");
        }
    }
}

/// A `security_headers.remove` the file writes replaces the default list:
/// the defaults it leaves out (`server`, `x-powered-by`, …) reach clients
/// again, which is rarely what adding one name to it meant.
pub(super) fn shown_software_headers(loaded: &LoadedConfig, found: &mut Found) {
    let cfg = &loaded.config;
    let defaults = SecurityHeadersConfig::default().remove;
    let blocks = std::iter::once(("security_headers".to_string(), &cfg.security_headers)).chain(
        cfg.routes
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.security_headers.as_ref().map(|s| (format!("routes[{i}].security_headers"), s))),
    );
    for (at, block) in blocks {
        let at = format!("{at}.remove");
        if !block.enabled || !loaded.locations.has(&at) {
            continue;
        }
        let shown: Vec<&str> = defaults
            .iter()
            .filter(|d| !block.remove.iter().any(|r| r.eq_ignore_ascii_case(d)))
            .map(String::as_str)
            .collect();
        if !shown.is_empty() {
            found.add(
                "shown-software-headers",
                at,
                format!(
                    "this list replaces the default one: `{}` now reach clients; add them to keep them hidden",
                    shown.join("`, `")
                ),
            );
        }
    }
}

/// An address list entry with bits set past its prefix (`10.0.0.1/8`):
/// read as the whole network (`10.0.0.0/8`), where the writer likely meant
/// one address; NGINX warns "low address bits are meaningless" too.
pub(super) fn cidrs_with_host_bits(loaded: &LoadedConfig, found: &mut Found) {
    let doc = loaded.document();
    let mut seen = Vec::new();
    crate::config::for_each_string(&doc, &mut |path, text| {
        let listed = path.starts_with("trusted_proxies[") || path.contains("ip.allow[") || path.contains("ip.deny[");
        if let (true, Ok(net)) = (listed, text.trim().parse::<ipnet::IpNet>())
            && net != net.trunc()
        {
            seen.push((
                path.to_string(),
                format!(
                    "`{text}` has bits set past its /{} prefix: it is read as `{}` (all of that network); write \
                     that, or the one address alone (`{}`)",
                    net.prefix_len(),
                    net.trunc(),
                    net.addr()
                ),
            ));
        }
    });
    for (path, message) in seen {
        found.add("cidr-host-bits", path, message);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn settings_nothing_reads_where_they_are() {
        let text = r#"
listeners:
  - { name: plain, bind: "127.0.0.1:0", limits: { tls_handshake_timeout: 5s } }
upstreams:
  plain: { targets: [ "http://127.0.0.1:9" ], tls: { ca: ca.pem, server_name: a.example } }
  secure: { targets: [ "http://127.0.0.1:9", "HTTPS://127.0.0.1:9" ], tls: { server_name: a.example } }
auth:
  hs: { jwt: { algorithms: [HS256], secret: "${S}", jwks_ca: ca.pem, jwks_refresh: 1m } }
  idp: { jwt: { algorithms: [RS256], jwks_uri: "https://idp.example/jwks", jwks_ca: ca.pem } }
max_buffered: 1MiB
tracing: { otlp: { endpoint: "http://127.0.0.1:4318", ca: ca.pem } }
routes:
  - { name: big, match: { path: /big }, static: { status: 204 }, max_body_size: 2MiB, validate: { body: { schema: { type: object } } } }
  - { name: small, match: { path: /small }, static: { status: 204 }, max_body_size: 1MiB, validate: { body: { schema: { type: object } } } }
  - { name: stream, match: { path: /stream }, static: { status: 204 }, max_body_size: 2MiB }
"#;
        let loaded = crate::config::parse_str(text, "t.yaml", std::path::Path::new(".")).unwrap();
        let mut found = super::Found::default();
        super::ineffective_settings(&loaded, &mut found);
        let paths: Vec<&str> = found.0.iter().map(|(_, p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "auth.hs.jwt.jwks_ca",
                "auth.hs.jwt.jwks_refresh",
                "upstreams.plain.tls.ca",
                "upstreams.plain.tls.server_name",
                "tracing.otlp.ca",
                "routes[0].max_body_size",
                "listeners[0].limits.tls_handshake_timeout",
            ]
        );
    }

    #[test]
    fn a_written_remove_list_that_drops_the_defaults_is_named() {
        let text = r#"
security_headers: { remove: [ x-frame-options ] }
routes:
  - { name: all, match: { path: /a }, static: { status: 204 }, security_headers: { remove: [ X-Frame-Options, server, x-powered-by, x-aspnet-version, x-aspnetmvc-version, x-runtime ] } }
  - { name: none, match: { path: /b }, static: { status: 204 }, security_headers: { enabled: false, remove: [ ] } }
  - { name: default, match: { path: /c }, static: { status: 204 }, security_headers: { frame_options: SAMEORIGIN } }
"#;
        let loaded = crate::config::parse_str(text, "t.yaml", std::path::Path::new(".")).unwrap();
        let mut found = super::Found::default();
        super::shown_software_headers(&loaded, &mut found);
        let found: Vec<(&str, &str)> = found.0.iter().map(|(_, p, m)| (p.as_str(), m.as_str())).collect();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "security_headers.remove");
        assert!(found[0].1.contains("`server`, `x-powered-by`, `x-aspnet-version`"), "{}", found[0].1);
    }
}
