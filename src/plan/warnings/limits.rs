//! `ineffective-limit-setting`: a rate-limit setting that changes nothing
//! or does not do what it says (each one was a silent no-op).

use super::Found;
use crate::config::LoadedConfig;
use crate::policy::auth::ProviderConfig;
use crate::policy::ratelimit::{KeyPart, Mode};

pub(super) fn ineffective_limit_settings(loaded: &LoadedConfig, found: &mut Found) {
    const NAME: &str = "ineffective-limit-setting";
    for (i, r) in loaded.config.routes.iter().enumerate() {
        let keys = r.rate_limit.iter().enumerate().map(|(j, l)| (format!("routes[{i}].rate_limit[{j}]"), &l.key));
        let keys = keys.chain(r.quota.iter().enumerate().map(|(j, q)| (format!("routes[{i}].quota[{j}]"), &q.key)));
        let keys = keys
            .chain(r.concurrency.iter().enumerate().map(|(j, c)| (format!("routes[{i}].concurrency[{j}]"), &c.key)));
        for (at, key) in keys {
            let by_identity = key.parts().iter().any(|p| matches!(p, KeyPart::Consumer | KeyPart::Claim(_)));
            // A header the route's provider reads as its credential is
            // removed before limits run: the key falls back to the client
            // IP (one client rotating addresses gets a budget per address,
            // clients behind one NAT share one).
            for part in key.parts() {
                let KeyPart::Header(name) = part else { continue };
                if crate::policy::ratelimit::names_the_client(name) {
                    found.add(
                        NAME,
                        format!("{at}.key"),
                        format!(
                            "`{name}` is counted as the client address (`ip`): the gateway believes it only from \
                             `trusted_proxies`, and any other client could send a new value (a new budget) each \
                             time; write `ip` (with `trusted_proxies` for the proxies in front)"
                        ),
                    );
                    continue;
                }
                // Taken by one provider, it is removed whoever authenticates
                // (the other providers' callers have no reason to send it,
                // and one that does is taken by it too): ineffective unless
                // another provider forwards it as its own credential (a
                // bearer token beside `basic`: its callers keep the key).
                let provider = |p: &String| loaded.config.auth.get(p.as_str());
                let named = |h: Option<&str>| h.is_some_and(|h| h.eq_ignore_ascii_case(name));
                let forwarded = r.authenticate.iter().any(|p| named(provider(p).and_then(forwarded_header)));
                let taken = r
                    .authenticate
                    .iter()
                    .find(|p| named(provider(p).and_then(credential_header)))
                    .filter(|_| !forwarded);
                if let Some(provider) = taken {
                    found.add(
                        NAME,
                        format!("{at}.key"),
                        format!(
                            "`{name}` is the credential provider `{provider}` reads, removed before limits run: \
                             {}; key by `consumer` (one budget per consumer) instead",
                            if key.parts().len() > 1 {
                                "this part of the key is always missing (the client IP stands in for it)"
                            } else {
                                "this key always falls back to the client IP"
                            }
                        ),
                    );
                }
            }
            if by_identity && r.authenticate.is_empty() {
                found.add(
                    NAME,
                    format!("{at}.key"),
                    format!(
                        "route `{}` authenticates nobody: a `consumer` or `claim` key always falls back to \
                         the client IP here; add `authenticate`, or key by `ip`",
                        r.name
                    ),
                );
            }
        }
        for (j, l) in r.rate_limit.iter().enumerate() {
            let at = format!("routes[{i}].rate_limit[{j}]");
            if let Some(delay) = l.delay
                && l.mode == Mode::Delay
                && delay >= l.burst
            {
                found.add(
                    NAME,
                    format!("{at}.delay"),
                    format!(
                        "`delay: {delay}` with `burst: {}`: every excess request goes at once, as with \
                         `mode: nodelay`; a delay below the burst makes the rest wait",
                        l.burst
                    ),
                );
            }
            let by_address = |p: &KeyPart| match p {
                KeyPart::Ip => true,
                KeyPart::Header(h) => crate::policy::ratelimit::names_the_client(h),
                _ => false,
            };
            if l.ipv6_prefix.is_some() && !l.key.parts().iter().any(by_address) {
                found.add(
                    NAME,
                    format!("{at}.ipv6_prefix"),
                    "`ipv6_prefix` applies to an `ip` key; this limit's key has none, and its fallback to \
                     the client address counts whole addresses: it does nothing here",
                );
            }
        }
    }
}

/// The request header a provider reads its credential from and forwards
/// unchanged: a bearer token (JWT or introspected) in `Authorization`.
fn forwarded_header(provider: &ProviderConfig) -> Option<&str> {
    match provider {
        ProviderConfig::Jwt(j) if j.token.cookie.is_none() && j.token.query.is_none() => Some("authorization"),
        ProviderConfig::Introspection(_) => Some("authorization"),
        _ => None,
    }
}

/// The request header a provider reads its credential from and removes
/// before the request goes on (a bearer token, JWT or introspected, goes
/// on unchanged; a JWT cookie provider removes its own cookie only).
fn credential_header(provider: &ProviderConfig) -> Option<&str> {
    match provider {
        ProviderConfig::ApiKey(k) => k.header.as_deref(),
        ProviderConfig::Basic(_) => Some("authorization"),
        ProviderConfig::Jwt(_) | ProviderConfig::Introspection(_) | ProviderConfig::Mtls(_) => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn delays_beyond_the_burst_prefixes_without_ip_identities_nobody_has_and_credentials() {
        let text = r#"
auth:
  keys: { api_key: { header: x-key } }
  others: { api_key: { header: x-other } }
  logins: { basic: { users: { a: "$2y$05$0000000000000000000000000000000000000000000000000000" } } }
  tokens: { jwt: { algorithms: [ HS256 ], secret: "0123456789abcdef0123456789abcdef" } }
consumers: [ { id: a, api_keys: [ { sha256: "0000000000000000000000000000000000000000000000000000000000000000" } ] } ]
routes:
  - name: open
    match: { path: /o }
    static: { body: x }
    rate_limit: [ { key: consumer, rate: 1/s }, { key: ip, rate: 1/s, burst: 5, mode: delay, delay: 5 } ]
  - name: keyed
    match: { path: /k }
    static: { body: x }
    authenticate: [ keys ]
    rate_limit: [ { key: consumer, rate: 1/s, ipv6_prefix: 64 }, { key: ip, rate: 1/s, burst: 5, mode: delay, delay: 4 } ]
  - name: by-credential
    match: { path: /c }
    static: { body: x }
    authenticate: [ keys ]
    rate_limit: [ { key: { header: X-Key }, rate: 1/s }, { key: { header: X-Tenant }, rate: 1/s } ]
  - name: either-credential
    match: { path: /e }
    static: { body: x }
    authenticate: [ keys, others ]
    rate_limit: [ { key: { header: X-Key }, rate: 1/s } ]
  - name: basic-or-bearer
    match: { path: /b }
    static: { body: x }
    authenticate: [ logins, tokens ]
    rate_limit: [ { key: { header: Authorization }, rate: 1/s } ]
  - name: basic-only
    match: { path: /l }
    static: { body: x }
    authenticate: [ logins ]
    rate_limit: [ { key: { header: Authorization }, rate: 1/s } ]
"#;
        let loaded = crate::config::parse_str(text, "t.yaml", std::path::Path::new(".")).unwrap();
        let mut found = super::Found::default();
        super::ineffective_limit_settings(&loaded, &mut found);
        let paths: Vec<&str> = found.0.iter().map(|(_, p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "routes[0].rate_limit[0].key",
                "routes[0].rate_limit[1].delay",
                "routes[1].rate_limit[0].ipv6_prefix",
                "routes[2].rate_limit[0].key",
                "routes[3].rate_limit[0].key",
                "routes[5].rate_limit[0].key"
            ]
        );
    }
}
