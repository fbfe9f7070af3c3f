//! `auth-over-http`: keys or token answers the gateway fetches over plain
//! HTTP from another host. Whoever can change a JWKS on the way can add a
//! key of their own and mint tokens the gateway accepts; an introspection
//! call carries the client secret and every bearer token in clear.

use super::Found;
use crate::config::LoadedConfig;
use crate::policy::auth::config::ProviderConfig;

const NAME: &str = "auth-over-http";

pub(super) fn auth_over_http(loaded: &LoadedConfig, found: &mut Found) {
    for (name, provider) in &loaded.config.auth {
        match provider {
            ProviderConfig::Jwt(j) => {
                if let Some(uri) = j.jwks_uri.as_deref().filter(|u| in_clear(u)) {
                    found.add(
                        NAME,
                        format!("auth.{name}.jwt.jwks_uri"),
                        format!(
                            "the signing keys come over plain HTTP from `{}`: whoever can change them on the way \
                             can add a key and mint tokens this gateway accepts; use https://",
                            host_of(uri)
                        ),
                    );
                } else if let Some(issuer) = j.issuer.as_deref().filter(|i| j.discovery && in_clear(i)) {
                    found.add(
                        NAME,
                        format!("auth.{name}.jwt.issuer"),
                        format!(
                            "`discovery` fetches the issuer's document and keys over plain HTTP from `{}`: \
                             whoever can change them on the way can mint tokens this gateway accepts; use https://",
                            host_of(issuer)
                        ),
                    );
                }
            }
            ProviderConfig::Introspection(i) if in_clear(&i.endpoint) => found.add(
                NAME,
                format!("auth.{name}.introspection.endpoint"),
                format!(
                    "token introspection goes over plain HTTP to `{}`: the client secret and every bearer token \
                     cross the network in clear, and the answers can be forged on the way; use https://",
                    host_of(&i.endpoint)
                ),
            ),
            _ => {}
        }
    }
}

/// An `http://` URL to a host other than this one (a sidecar on loopback
/// is as private as the gateway's own memory).
fn in_clear(url: &str) -> bool {
    let Some(rest) = url.get(..7).filter(|s| s.eq_ignore_ascii_case("http://")).map(|_| &url[7..]) else {
        return false;
    };
    let host = host_of_rest(rest);
    let host = host.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.');
    let loopback_ip = |ip: std::net::IpAddr| match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(v6.is_loopback(), |v4| v4.is_loopback()),
        v4 => v4.is_loopback(),
    };
    !(host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(loopback_ip))
}

/// The host of a URL, without user part or port (for messages; never a password).
fn host_of(url: &str) -> &str {
    host_of_rest(url.split_once("://").map_or(url, |(_, rest)| rest))
}

fn host_of_rest(rest: &str) -> &str {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_and_introspection_from_another_host_in_clear_are_warned() {
        let text = r#"
listeners:
  - { name: gw, bind: "127.0.0.1:0" }
auth:
  clear: { jwt: { algorithms: [RS256], jwks_uri: "http://user:pw@idp.example:8080/jwks" } }
  found: { jwt: { algorithms: [RS256], issuer: "HTTP://idp.example", discovery: true } }
  sidecar: { jwt: { algorithms: [RS256], jwks_uri: "http://127.0.0.1:9000/jwks" } }
  local: { jwt: { algorithms: [RS256], jwks_uri: "http://[::1]:9000/jwks" } }
  dotted: { jwt: { algorithms: [RS256], jwks_uri: "http://localhost.:9000/jwks" } }
  mapped: { jwt: { algorithms: [RS256], jwks_uri: "http://[::ffff:127.0.0.1]:9000/jwks" } }
  safe: { jwt: { algorithms: [RS256], jwks_uri: "https://idp.example/jwks" } }
  intro: { introspection: { endpoint: "http://oauth.internal/introspect", client_id: gw, client_secret: "${S}" } }
"#;
        let loaded = crate::config::parse_str(text, "t.yaml", std::path::Path::new(".")).unwrap();
        let mut found = super::Found::default();
        super::auth_over_http(&loaded, &mut found);
        let paths: Vec<&str> = found.0.iter().map(|(_, p, _)| p.as_str()).collect();
        assert_eq!(paths, ["auth.clear.jwt.jwks_uri", "auth.found.jwt.issuer", "auth.intro.introspection.endpoint"]);
        assert!(found.0[0].2.contains("`idp.example`") && !found.0[0].2.contains("pw"), "{}", found.0[0].2);
    }
}
