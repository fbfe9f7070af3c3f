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
                "listeners[0].limits.tls_handshake_timeout",
            ]
        );
    }
}
