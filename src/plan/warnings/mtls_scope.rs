//! `mtls-listener-bypass`: a route for a host that a listener requiring
//! client certificates serves, open on the other listeners too. SNI picks
//! the certificate, `Host` picks the route, and the two need not agree: a
//! client of the public listener sends `Host: partners.example.com` and
//! reaches the partners' route without a certificate (domain fronting).
//! NGINX scopes a `server` to its `listen` ports and Envoy a route table to
//! its listener, so the same layout is safe there.

use x509_parser::certificate::X509Certificate;

use super::Found;
use crate::config::LoadedConfig;
use crate::policy::auth::config::ProviderConfig;

/// The DNS names of a certificate's SAN, lowercased.
pub(super) fn dns_names(cert: &X509Certificate<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok(Some(ext)) = cert.subject_alternative_name() else { return Vec::new() };
    ext.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// The names a listener's certificates are picked by: their `server_names`,
/// else their DNS names.
fn served_names(loaded: &LoadedConfig, tls: &crate::config::ListenerTlsConfig) -> Vec<String> {
    let mut names = Vec::new();
    for c in &tls.certificates {
        if !c.server_names.is_empty() {
            names.extend(c.server_names.iter().map(|n| n.to_ascii_lowercase()));
            continue;
        }
        let Ok(pem) = crate::config::read_file(&loaded.resolve_file(&c.cert)) else { continue };
        let Some(Ok(first)) = x509_parser::pem::Pem::iter_from_buffer(&pem).next() else { continue };
        if let Ok(cert) = first.parse_x509() {
            names.extend(dns_names(&cert));
        }
    }
    names
}

/// Whether a route's `host` and a certificate name can meet on one
/// request. A route's `*.` covers one label or more (routing.md), a
/// certificate's exactly one (RFC 6125): `*.example.com` on a route meets
/// the certificate name `partner.api.example.com`.
fn meet(host: &str, name: &str) -> bool {
    match (host.strip_prefix("*."), name.strip_prefix("*.")) {
        (None, None) => host == name,
        (None, Some(s)) => labels_under(host, s).is_some_and(|l| !l.contains('.')),
        (Some(s), None) => labels_under(name, s).is_some(),
        // Some one-label name under `b` ends in `.a`.
        (Some(a), Some(b)) => b == a || b.ends_with(&format!(".{a}")),
    }
}

/// The labels of `name` before `.suffix` (none if it is not under it).
fn labels_under<'n>(name: &'n str, suffix: &str) -> Option<&'n str> {
    name.strip_suffix(suffix).and_then(|l| l.strip_suffix('.')).filter(|l| !l.is_empty())
}

pub(super) fn routes_around_required_client_certs(loaded: &LoadedConfig, found: &mut Found) {
    let cfg = &loaded.config;
    if cfg.listeners.len() < 2 {
        return;
    }
    for (l, listener) in cfg.listeners.iter().enumerate() {
        let Some(tls) = &listener.tls else { continue };
        if !tls.client_auth.as_ref().is_some_and(|c| c.required) {
            continue;
        }
        let names = served_names(loaded, tls);
        for (i, route) in cfg.routes.iter().enumerate() {
            let Some(host) = route.matcher.host.as_deref().map(str::to_ascii_lowercase) else { continue };
            // Scoped to listeners, or checking the certificate itself (not
            // when `anonymous` lets a request without one through).
            if route.matcher.listeners.is_some()
                || !route.anonymous
                    && route.authenticate.iter().any(|p| matches!(cfg.auth.get(p), Some(ProviderConfig::Mtls(_))))
            {
                continue;
            }
            let Some(name) = names.iter().find(|n| meet(&host, n)) else { continue };
            let others: Vec<&str> =
                cfg.listeners.iter().enumerate().filter(|(k, _)| *k != l).map(|(_, o)| o.name.as_str()).collect();
            found.add(
                "mtls-listener-bypass",
                format!("routes[{i}].match.host"),
                format!(
                    "`{host}` is served by listener `{}` (certificate name `{name}`), whose clients must show a \
                     certificate, but the route is on every listener: a client of `{}` reaches it without one by \
                     sending `Host: {host}` (SNI and Host need not agree). Add `match.listeners: [{}]`, or \
                     `authenticate` with an mtls provider",
                    listener.name,
                    others.join("`, `"),
                    listener.name
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::meet;

    #[test]
    fn hosts_and_certificate_names_meet_as_sni_and_routing_read_them() {
        assert!(meet("secure.test", "secure.test"));
        assert!(meet("a.secure.test", "*.secure.test"));
        assert!(meet("*.secure.test", "a.secure.test"));
        assert!(meet("*.secure.test", "*.secure.test"));
        assert!(!meet("a.b.secure.test", "*.secure.test"));
        assert!(!meet("secure.test", "*.secure.test"));
        assert!(!meet("api.test", "secure.test"));
        // A route's wildcard covers several labels; a certificate's one.
        assert!(meet("*.example.com", "partner.api.example.com"));
        assert!(meet("*.example.com", "*.api.example.com"));
        assert!(!meet("*.api.example.com", "*.example.com"));
        assert!(!meet("*.example.com", "example.com"));
    }
}
