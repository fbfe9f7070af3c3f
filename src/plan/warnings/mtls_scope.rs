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

/// Whether two `client_auth.ca` files hold the same CAs (the same file, or
/// the same bytes).
fn same_cas(loaded: &LoadedConfig, a: &str, b: &str) -> bool {
    let (a, b) = (loaded.resolve_file(a), loaded.resolve_file(b));
    a == b || crate::config::read_file(&a).is_ok_and(|x| crate::config::read_file(&b).is_ok_and(|y| x == y))
}

/// Whether a route checks the client certificate itself: every provider it
/// takes is `mtls` (any one provider lets a request in: with `[client_cert,
/// logins]`, a Basic login on the public listener reaches it without a
/// certificate), and `anonymous` does not let a request without one through.
fn needs_a_certificate(cfg: &crate::config::Config, route: &crate::config::RouteConfig) -> bool {
    !route.anonymous
        && !route.authenticate.is_empty()
        && route.authenticate.iter().all(|p| matches!(cfg.auth.get(p), Some(ProviderConfig::Mtls(_))))
}

pub(super) fn routes_around_required_client_certs(loaded: &LoadedConfig, found: &mut Found) {
    let cfg = &loaded.config;
    if cfg.listeners.len() < 2 {
        return;
    }
    for (l, listener) in cfg.listeners.iter().enumerate() {
        let Some(tls) = &listener.tls else { continue };
        let Some(required_ca) = tls.client_auth.as_ref().filter(|c| c.required).map(|c| c.ca.clone()) else {
            continue;
        };
        let names = served_names(loaded, tls);
        for (i, route) in cfg.routes.iter().enumerate() {
            let Some(host) = route.matcher.host.as_deref().map(str::to_ascii_lowercase) else { continue };
            if route.matcher.listeners.is_some() || needs_a_certificate(cfg, route) {
                continue;
            }
            let Some(name) = names.iter().find(|n| meet(&host, n)) else { continue };
            // Listeners where a client without this listener's certificate
            // reaches routes: not one that only redirects to HTTPS, nor one
            // that requires certificates of the same CAs (another CA's
            // clients, staff beside partners, are the bypass too).
            let open = |o: &crate::config::ListenerConfig| {
                o.redirect_https.is_none()
                    && !o
                        .tls
                        .as_ref()
                        .and_then(|t| t.client_auth.as_ref())
                        .is_some_and(|c| c.required && same_cas(loaded, &c.ca, &required_ca))
            };
            let others: Vec<&str> = cfg
                .listeners
                .iter()
                .enumerate()
                .filter(|(k, o)| *k != l && open(o))
                .map(|(_, o)| o.name.as_str())
                .collect();
            if others.is_empty() {
                continue;
            }
            found.add(
                "mtls-listener-bypass",
                format!("routes[{i}].match.host"),
                format!(
                    "`{host}` is served by listener `{}` (certificate name `{name}`), whose clients must show a \
                     certificate, but the route is on every listener: a client of `{}` reaches it without one by \
                     sending `Host: {host}` (SNI and Host need not agree). Add `match.listeners: [{}]`, or \
                     `authenticate` with mtls providers only",
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
    use super::{Found, meet, routes_around_required_client_certs};

    /// A route is guarded by certificates only when every provider it
    /// takes is `mtls`: any other lets a client of the public listener in
    /// without one (`[client_cert, logins]`: a Basic login).
    #[test]
    fn a_route_that_also_takes_another_provider_is_reachable_without_a_certificate() {
        let warned = |authenticate: &str| warned_with("{ name: public, bind: \"127.0.0.1:0\" }", authenticate);
        let bypass = ["mtls-listener-bypass routes[0].match.host"];
        assert_eq!(warned(""), bypass);
        assert_eq!(warned(", authenticate: [client_cert, logins]"), bypass);
        assert_eq!(warned(", authenticate: [logins, client_cert]"), bypass);
        assert_eq!(warned(", authenticate: [logins]"), bypass);
        assert_eq!(warned(", authenticate: [client_cert], anonymous: true"), bypass);
        assert!(warned(", authenticate: [client_cert]").is_empty());
        assert!(warned(", authenticate: [client_cert, partner_ca]").is_empty());
    }

    /// A listener that only redirects to HTTPS, or that requires client
    /// certificates itself, lets no client without one reach the route.
    #[test]
    fn listeners_a_client_without_a_certificate_cannot_use_are_no_bypass() {
        let redirect = "{ name: public, bind: \"127.0.0.1:0\", redirect_https: 443 }";
        assert!(warned_with(redirect, "").is_empty());
        let also_mtls = "{ name: public, bind: \"127.0.0.1:0\", tls: { certificates: [ { cert: c.pem, key: k.pem } ], \
                         client_auth: { ca: ca.pem } } }";
        assert!(warned_with(also_mtls, "").is_empty());
        // Certificates of another CA (staff beside partners): a staff client
        // reaches the partners' route without a partner certificate.
        let other_ca = also_mtls.replace("ca: ca.pem", "ca: staff-ca.pem");
        assert_eq!(warned_with(&other_ca, ""), ["mtls-listener-bypass routes[0].match.host"]);
    }

    /// The warnings for a `public` listener beside the partners' one.
    fn warned_with(public: &str, authenticate: &str) -> Vec<String> {
        let yaml = format!(
            "listeners:\n\
             \x20 - {public}\n\
             \x20 - {{ name: partners, bind: \"127.0.0.1:0\", tls: {{ certificates: [ {{ cert: c.pem, key: k.pem, \
             server_names: [ secure.test ] }} ], client_auth: {{ ca: ca.pem, required: true }} }} }}\n\
             auth:\n  client_cert: {{ mtls: {{}} }}\n  partner_ca: {{ mtls: {{}} }}\n\
             \x20 logins: {{ basic: {{ htpasswd: users.htpasswd }} }}\n\
             routes:\n  - {{ name: r, match: {{ host: secure.test }}, static: {{ status: 200 }}{authenticate} }}\n"
        );
        let loaded = crate::config::parse_str(&yaml, "t.yaml", std::path::Path::new(".")).unwrap();
        let mut found = Found::default();
        routes_around_required_client_certs(&loaded, &mut found);
        found.0.iter().map(|(name, path, _)| format!("{name} {path}")).collect::<Vec<_>>()
    }

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
