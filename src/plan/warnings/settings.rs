//! `ineffective-setting`: a setting the file writes that nothing reads in
//! the place it is written (each one passed in silence, and looked like it
//! did something).

use super::Found;
use crate::config::{LoadedConfig, TargetConfig};
use crate::policy::auth::config::ProviderConfig;

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
    for (i, l) in cfg.listeners.iter().enumerate() {
        let at = format!("listeners[{i}].limits.tls_handshake_timeout");
        if l.tls.is_none() && written(&at) {
            found.add(NAME, at, "this listener has no `tls`: there is no handshake to time");
        }
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
                "routes[0].max_body_size",
                "listeners[0].limits.tls_handshake_timeout",
            ]
        );
    }
}
