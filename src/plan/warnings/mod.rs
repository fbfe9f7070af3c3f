//! `portcullis check`'s warnings: configs that work but are unsafe or
//! most likely a mistake. Each warning has a name, shown after its
//! message; `warnings.allow` in the config silences the ones a deployment
//! means (docs/config.md#warnings says why each exists). A warning never
//! stops a config from loading; `check --strict` makes them errors.

mod documents;
mod fetches;
mod limits;
mod methods;
mod mtls_scope;
mod refusing;
mod rewrites;
mod settings;
mod timing;
mod unenforced;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use crate::config::{ConfigError, LoadedConfig, PathParameters};
use crate::policy::auth::config::ProviderConfig;

/// Every warning's name and what it is about (kept beside the config's
/// `warnings.allow`, whose editor schema lists the names).
pub use crate::config::warning_names::ALL;

/// Warnings of `loaded` that `warnings.allow` does not silence, in file order.
pub fn warnings(loaded: &LoadedConfig) -> Vec<ConfigError> {
    let mut found = Found::default();
    quoted_variables(loaded, &mut found);
    unused(loaded, &mut found);
    exposure(loaded, &mut found);
    fetches::auth_over_http(loaded, &mut found);
    secrets(loaded, &mut found);
    routes(loaded, &mut found);
    normalization(loaded, &mut found);
    certificates(loaded, &mut found);
    mtls_any_listener_ca(loaded, &mut found);
    mtls_scope::routes_around_required_client_certs(loaded, &mut found);
    documents::unknown_formats(loaded, &mut found);
    documents::shadowed_strict_apis(loaded, &mut found);
    methods::methods_fall_through(loaded, &mut found);
    rewrites::rewrites_reaching_guarded_paths(loaded, &mut found);
    unreachable_paths(loaded, &mut found);
    plus_in_paths(loaded, &mut found);
    timing::timeouts_beyond_budgets(loaded, &mut found);
    refusing::routes_that_refuse_everything(loaded, &mut found);
    unenforced::unenforced_openapi(loaded, &mut found);
    limits::ineffective_limit_settings(loaded, &mut found);
    settings::ineffective_settings(loaded, &mut found);
    settings::shown_software_headers(loaded, &mut found);
    settings::cidrs_with_host_bits(loaded, &mut found);
    let allow: BTreeSet<&str> = loaded.config.warnings.allow.iter().map(String::as_str).collect();
    let mut out: Vec<ConfigError> = found
        .0
        .into_iter()
        .filter(|(name, ..)| !allow.contains(name))
        .map(|(name, path, message)| loaded.error(path, format!("{message} [{name}]")))
        .collect();
    out.sort_by_key(|e| e.position.unwrap_or((usize::MAX, 0)));
    out
}

/// Names in `warnings.allow` that are not warnings (a config error).
pub fn unknown_allowed(loaded: &LoadedConfig) -> Vec<ConfigError> {
    let names: Vec<&str> = ALL.iter().map(|(n, _)| *n).collect();
    loaded
        .config
        .warnings
        .allow
        .iter()
        .enumerate()
        .filter(|(_, n)| !names.contains(&n.as_str()))
        .map(|(i, n)| {
            loaded.error(format!("warnings.allow[{i}]"), format!("unknown warning `{n}` (known: {})", names.join(", ")))
        })
        .collect()
}

#[derive(Default)]
struct Found(Vec<(&'static str, String, String)>);

impl Found {
    fn add(&mut self, name: &'static str, path: impl Into<String>, message: impl Into<String>) {
        self.0.push((name, path.into(), message.into()));
    }
}

/// `${NAME}` left in a string: interpolation only applies to plain
/// (unquoted) scalars, so a quoted one reached the config as written.
fn quoted_variables(loaded: &LoadedConfig, found: &mut Found) {
    crate::config::for_each_string(&loaded.document(), &mut |path, s| {
        if has_variable(s) && !plain_scalar_at(loaded, path) {
            found.add(
                "quoted-variable",
                path,
                "`${…}` in a quoted string stays as written: only unquoted values read the environment \
                 (write `key: ${VAR}`; inside a flow mapping `{ … }`, write the mapping in block style)",
            );
        }
    });
}

/// Whether the value at `path` is written as a plain scalar: a `${NAME}`
/// left in one came from the `$${NAME}` escape, on purpose. Quoted and
/// block scalars (`"…"`, `'…'`, `|`, `>`), or a place not found, are not.
fn plain_scalar_at(loaded: &LoadedConfig, path: &str) -> bool {
    let Some((line, col)) = loaded.locations.find(path) else { return false };
    let first = loaded.text.lines().nth(line.saturating_sub(1)).and_then(|l| l.get(col.saturating_sub(1)..));
    first.and_then(|rest| rest.chars().next()).is_some_and(|c| !matches!(c, '"' | '\'' | '|' | '>'))
}

/// `${` then a variable name then `}`.
fn has_variable(s: &str) -> bool {
    s.match_indices("${").any(|(at, _)| {
        let rest = &s[at + 2..];
        let name_len = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
        name_len > 0 && rest[name_len..].starts_with('}') && !rest.as_bytes()[0].is_ascii_digit()
    })
}

fn unused(loaded: &LoadedConfig, found: &mut Found) {
    let cfg = &loaded.config;
    let mut upstreams: BTreeSet<&str> = cfg.routes.iter().filter_map(|r| r.upstream.as_deref()).collect();
    for r in &cfg.routes {
        if let Some(a) = &r.aggregate {
            upstreams.extend(a.calls.values().map(|c| c.upstream.as_str()));
        }
    }
    upstreams.extend(cfg.apis.iter().map(|a| a.upstream.as_str()));
    for name in cfg.upstreams.keys().filter(|n| !upstreams.contains(n.as_str())) {
        found.add(
            "unused-upstream",
            format!("upstreams.{name}"),
            format!("upstream `{name}` is not used by any route, aggregate call or API (its health checks still run)"),
        );
    }
    let mut providers: BTreeSet<&str> =
        cfg.routes.iter().flat_map(|r| r.authenticate.iter().map(String::as_str)).collect();
    providers.extend(cfg.apis.iter().flat_map(|a| a.security.values().map(String::as_str)));
    for name in cfg.auth.keys().filter(|n| !providers.contains(n.as_str())) {
        found.add(
            "unused-auth-provider",
            format!("auth.{name}"),
            format!("auth provider `{name}` is not used by any route (`authenticate`) or API (`security`)"),
        );
    }
}

/// Whether an address is only reachable from this host.
fn loopback(bind: &str) -> bool {
    bind.parse::<SocketAddr>().is_ok_and(|a| a.ip().is_loopback())
}

/// Providers whose credentials travel in the request (all but mTLS).
fn sends_credentials(p: &ProviderConfig) -> bool {
    !matches!(p, ProviderConfig::Mtls(_))
}

fn exposure(loaded: &LoadedConfig, found: &mut Found) {
    let cfg = &loaded.config;
    let used = cfg
        .routes
        .iter()
        .flat_map(|r| r.authenticate.iter())
        .chain(cfg.apis.iter().flat_map(|a| a.security.values()))
        .any(|name| cfg.auth.get(name).is_some_and(sends_credentials));
    if used {
        for (i, l) in cfg.listeners.iter().enumerate() {
            if l.tls.is_none() && l.redirect_https.is_none() && !loopback(&l.bind) {
                found.add(
                    "credentials-over-http",
                    format!("listeners[{i}].bind"),
                    format!(
                        "listener `{}` takes plain HTTP on a non-loopback address, and routes accept credentials \
                         (Basic passwords, API keys, bearer tokens) that cross it in clear: add `tls`, or \
                         `redirect_https`, or allow this warning if TLS ends in front of the gateway",
                        l.name
                    ),
                );
            }
        }
    }
    if let Some(admin) = &cfg.admin
        && !loopback(&admin.bind)
    {
        found.add(
            "public-admin",
            "admin.bind",
            "the admin API (config, status, metrics, reload) listens beyond this host: keep it on 127.0.0.1 \
             and scrape through a private network, or allow this warning",
        );
    }
    for (i, cidr) in cfg.trusted_proxies.iter().enumerate() {
        let everyone = cidr.split_once('/').is_some_and(|(ip, len)| ip.parse::<IpAddr>().is_ok() && len.trim() == "0");
        if everyone {
            found.add(
                "trusted-proxies-everyone",
                format!("trusted_proxies[{i}]"),
                format!(
                    "`{cidr}` trusts every client's `X-Forwarded-For` and `X-Request-Id`: any client can pick the \
                     IP that rate limits and IP lists see; list your proxies' addresses"
                ),
            );
        }
    }
}

/// The cost of a bcrypt hash (`$2b$05$…` is 5), if it is one.
fn bcrypt_cost(hash: &str) -> Option<u32> {
    let rest = hash.strip_prefix("$2a$").or_else(|| hash.strip_prefix("$2b$")).or_else(|| hash.strip_prefix("$2y$"))?;
    rest.get(..2)?.parse().ok()
}

fn secrets(loaded: &LoadedConfig, found: &mut Found) {
    let cfg = &loaded.config;
    // Whether the file's text at `path` reads the environment.
    let from_env = |path: &str| {
        loaded
            .locations
            .find(path)
            .and_then(|(line, _)| loaded.text.lines().nth(line.saturating_sub(1)))
            .is_some_and(crate::config::reads_environment)
    };
    for (name, p) in &cfg.auth {
        match p {
            ProviderConfig::Jwt(j) if j.secret.is_some() => {
                let path = format!("auth.{name}.jwt.secret");
                if !from_env(&path) {
                    found.add(
                        "literal-secret",
                        path,
                        "the HMAC secret is written in the file: anyone who reads the file (or a backup of it) can \
                         mint tokens; use `secret: ${JWT_SECRET}`",
                    );
                }
            }
            ProviderConfig::Introspection(i) if !i.client_secret.is_empty() => {
                let path = format!("auth.{name}.introspection.client_secret");
                if !from_env(&path) {
                    found.add(
                        "literal-secret",
                        path,
                        "the client secret is written in the file; use `client_secret: ${INTROSPECTION_SECRET}`",
                    );
                }
            }
            ProviderConfig::Basic(b) => {
                for (user, hash) in &b.users {
                    if let Some(cost) = bcrypt_cost(hash).filter(|c| *c < 10) {
                        found.add(
                            "weak-password-hash",
                            format!("auth.{name}.basic.users.{user}"),
                            format!("`{user}`'s bcrypt hash has cost {cost}: a stolen file is cracked fast; use cost 10 or more (`htpasswd -B -C 12`)"),
                        );
                    }
                }
                if let Some(file) = &b.htpasswd
                    && let Ok(text) = crate::config::read_text(&loaded.resolve_file(file))
                {
                    for (user, hash) in text.lines().filter_map(|l| l.split_once(':')) {
                        if let Some(cost) = bcrypt_cost(hash.trim()).filter(|c| *c < 10) {
                            found.add(
                                "weak-password-hash",
                                format!("auth.{name}.basic.htpasswd"),
                                format!("`{user}`'s bcrypt hash in `{file}` has cost {cost}: use cost 10 or more (`htpasswd -B -C 12`)"),
                            );
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

fn routes(loaded: &LoadedConfig, found: &mut Found) {
    let cfg = &loaded.config;
    for (i, r) in cfg.routes.iter().enumerate() {
        if r.authenticate.is_empty() {
            continue;
        }
        if let Some(cors) = &r.cors
            && let Some(j) = cors.allow_origins.iter().position(|o| o == "*")
        {
            found.add(
                "cors-any-origin-with-auth",
                format!("routes[{i}].cors.allow_origins[{j}]"),
                format!(
                    "route `{}` authenticates and lets any web origin call it: a page on any site can use the \
                     caller's credentials it holds; list the origins",
                    r.name
                ),
            );
        }
        let expensive = r.authenticate.iter().find(|name| {
            matches!(cfg.auth.get(*name), Some(ProviderConfig::Basic(_) | ProviderConfig::Introspection(_)))
        });
        if let Some(name) = expensive
            && r.rate_limit.is_empty()
        {
            found.add(
                "unlimited-expensive-auth",
                format!("routes[{i}].authenticate"),
                format!(
                    "route `{}` checks `{name}` (a password hash or a call to the token endpoint per new \
                     credential) with no `rate_limit`: one client can keep a core or the identity provider \
                     busy; add `rate_limit: [ {{ key: ip, rate: 10/s }} ]`",
                    r.name
                ),
            );
        }
    }
}

/// A route `path` or `path_prefix` that no request path can be once
/// normalized (`/r/%2F` and `/m;x` are refused, `?` and `#` are no part of
/// a path): the route never matches. (`/k/%41`, `/r/é` and `/s/../t` are
/// matched as they arrive, `/k/A`, `/r/%C3%A9` and `/t`.)
fn unreachable_paths(loaded: &LoadedConfig, found: &mut Found) {
    use crate::http::normalize;
    let opts = normalize::Options::of(&loaded.config.path_normalization);
    for (i, r) in loaded.config.routes.iter().enumerate() {
        for (key, written) in [("path", &r.matcher.path), ("path_prefix", &r.matcher.path_prefix)] {
            let Some(written) = written else { continue };
            if let Some(c) = written.chars().find(|c| matches!(c, '?' | '#')) {
                let why = match c {
                    '?' => "a path never holds `?` (it starts the query, which routes do not match)",
                    _ => "a path never holds `#` (clients keep the fragment to themselves)",
                };
                found.add(
                    "unreachable-route-path",
                    format!("routes[{i}].match.{key}"),
                    format!("route `{}` can never match `{written}`: {why}", r.name),
                );
                continue;
            }
            // A parameter stands for some segment text: `x` in its place.
            let mut literal = String::with_capacity(written.len());
            let mut rest = written.as_str();
            while let Some(open) = rest.find('{') {
                literal.push_str(&rest[..open]);
                literal.push('x');
                rest = rest[open..].find('}').map_or("", |close| &rest[open + close + 1..]);
            }
            literal.push_str(rest);
            let wire: String = literal
                .bytes()
                .map(|b| if b.is_ascii() { (b as char).to_string() } else { format!("%{b:02X}") })
                .collect();
            // A path that normalizes is matched as it arrives (`plan::route`).
            let why = match normalize::normalize(&wire, &opts) {
                Err(e) => format!("requests with such a path are refused ({e})"),
                Ok(_) => continue,
            };
            found.add(
                "unreachable-route-path",
                format!("routes[{i}].match.{key}"),
                format!("route `{}` can never match `{written}`: {why}", r.name),
            );
        }
    }
}

/// A route path with `+` (or `%2B`): the router keeps the two spellings
/// apart (a service that reads paths with a form decoder takes `+` for a
/// space), but most services (Go, NGINX, Spring, Express) read `%2B` as
/// `+`: a request for `/c%2B%2B/x` passed a guard on `/c++` to a broader
/// route, and reached the same handler.
fn plus_in_paths(loaded: &LoadedConfig, found: &mut Found) {
    for (i, r) in loaded.config.routes.iter().enumerate() {
        for (key, written) in [("path", &r.matcher.path), ("path_prefix", &r.matcher.path_prefix)] {
            let Some(written) = written else { continue };
            let encoded = written.to_ascii_uppercase().contains("%2B");
            if !written.contains('+') && !encoded {
                continue;
            }
            let other = if encoded { "`+`" } else { "`%2B`" };
            found.add(
                "plus-in-route-path",
                format!("routes[{i}].match.{key}"),
                format!(
                    "route `{}` matches `{written}` as written: a request that writes its `+` as {other} is \
                     another path to the routes (most services read the two alike), and goes to another \
                     route; give the other spelling a route of its own with the same policies",
                    r.name
                ),
            );
        }
    }
}

fn normalization(loaded: &LoadedConfig, found: &mut Found) {
    let n = &loaded.config.path_normalization;
    let weakened = [
        (!n.merge_slashes, "merge_slashes", "`//admin` and `/admin` route differently"),
        (!n.reject_encoded_slash, "reject_encoded_slash", "`%2F` lets a path hide a `/` from the routes"),
        (!n.reject_double_encoding, "reject_double_encoding", "`%252e` passes as data and may be decoded twice behind"),
        (
            !n.decode_delimiters,
            "decode_delimiters",
            "`/jobs/7%3Acancel` does not match a route for `/jobs/{id}:cancel`, but a service that decodes it reads that path",
        ),
        (
            n.path_parameters == PathParameters::Strip,
            "path_parameters",
            "`;` parameters are cut before routing, as some servers behind do, but the upstream may read them",
        ),
    ];
    for (weaker, key, why) in weakened {
        if weaker {
            found.add(
                "weakened-normalization",
                format!("path_normalization.{key}"),
                format!("weaker than the default: {why}"),
            );
        }
    }
}

/// The wall clock, for certificate dates.
#[allow(clippy::disallowed_methods)]
fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Consumer certificates without `ca` where the `mtls` providers take
/// certificates of more than one CA (a listener's bundle of two, two
/// listeners' CAs, two providers' `ca`s): a subject or SAN is a name any
/// of those CAs can issue, so one (a partner's) can issue another's names.
fn mtls_any_listener_ca(loaded: &LoadedConfig, found: &mut Found) {
    let cfg = &loaded.config;
    // The CA certificates of a PEM bundle, by their bytes.
    let certs_of = |file: &str| -> BTreeSet<Vec<u8>> {
        let Ok(pem) = crate::config::read_file(&loaded.resolve_file(file)) else { return BTreeSet::new() };
        x509_parser::pem::Pem::iter_from_buffer(&pem).map_while(Result::ok).map(|p| p.contents).collect()
    };
    let listeners: BTreeSet<Vec<u8>> = cfg
        .listeners
        .iter()
        .filter_map(|l| l.tls.as_ref()?.client_auth.as_ref())
        .flat_map(|c| certs_of(&c.ca))
        .collect();
    let mut taken = BTreeSet::new();
    for p in cfg.auth.values() {
        if let ProviderConfig::Mtls(m) = p {
            match &m.ca {
                // What a listener verifies too (a provider's CA no listener
                // trusts never sees a certificate); all of it when none is
                // shared (its CA may be an intermediate under a listener's).
                Some(ca) => {
                    let own = certs_of(ca);
                    let shared: BTreeSet<Vec<u8>> = own.intersection(&listeners).cloned().collect();
                    taken.extend(if shared.is_empty() { own } else { shared });
                }
                None => taken.extend(listeners.iter().cloned()),
            }
        }
    }
    // A CA and its own intermediates are one issuer of names: count the
    // certificates whose issuer is not among them (roots, lone intermediates).
    let parsed: Vec<(Vec<u8>, Vec<u8>)> = taken
        .iter()
        .filter_map(|der| {
            let (_, c) = x509_parser::parse_x509_certificate(der).ok()?;
            Some((c.subject().as_raw().to_vec(), c.issuer().as_raw().to_vec()))
        })
        .collect();
    let subjects: BTreeSet<&Vec<u8>> = parsed.iter().map(|(s, _)| s).collect();
    let issuers = parsed.iter().filter(|(s, i)| s == i || !subjects.contains(i)).count();
    if issuers < 2 {
        return;
    }
    let unbound: Vec<(usize, usize)> = cfg
        .consumers
        .iter()
        .enumerate()
        .flat_map(|(i, c)| c.certificates.iter().enumerate().filter(|(_, m)| m.ca.is_none()).map(move |(j, _)| (i, j)))
        .collect();
    if let Some(&(i, j)) = unbound.first() {
        let more = match unbound.len() {
            1 => String::new(),
            n => format!(" ({} more consumer certificates have none either)", n - 1),
        };
        found.add(
            "mtls-any-listener-ca",
            format!("consumers[{i}].certificates[{j}]"),
            format!(
                "the mtls providers take certificates of {issuers} CAs, and this certificate has no `ca`: any of \
                 them can issue its subject or SAN{more}. Give it `ca`, the CAs that issue it"
            ),
        );
    }
}

fn certificates(loaded: &LoadedConfig, found: &mut Found) {
    let now = unix_now();
    for (i, l) in loaded.config.listeners.iter().enumerate() {
        let Some(tls) = &l.tls else { continue };
        // The preload list (hstspreload.org) takes a site only with
        // `includeSubDomains` and a max-age of a year or more.
        let hsts = &tls.hsts;
        if hsts.enabled
            && hsts.preload
            && (!hsts.include_subdomains || hsts.max_age.0 < std::time::Duration::from_secs(365 * 86_400))
        {
            found.add(
                "hsts-preload-ineligible",
                format!("listeners[{i}].tls.hsts.preload"),
                "`preload` needs `include_subdomains: true` and a `max_age` of at least 365 days, or the preload \
                 list refuses the site",
            );
        }
        // Names claimed so far on this listener (SNI: the first certificate naming one wins).
        let mut claimed: Vec<(String, usize)> = Vec::new();
        for (j, c) in tls.certificates.iter().enumerate() {
            let Ok(pem) = crate::config::read_file(&loaded.resolve_file(&c.cert)) else { continue };
            // The first certificate of the chain is the listener's own.
            let pems: Vec<_> = x509_parser::pem::Pem::iter_from_buffer(&pem).map_while(Result::ok).collect();
            let Some(Ok(cert)) = pems.first().map(|p| p.parse_x509()) else { continue };
            chain_order(i, j, c, &pems, found);
            let not_before = cert.validity().not_before.timestamp();
            if not_before > now {
                found.add(
                    "certificate-expiring",
                    format!("listeners[{i}].tls.certificates[{j}].cert"),
                    format!(
                        "`{}` is not valid yet (not before {}): clients refuse it",
                        c.cert,
                        cert.validity().not_before
                    ),
                );
                continue;
            }
            name_mismatches(i, j, c, &cert, found);
            let names: Vec<String> = match c.server_names.is_empty() {
                true => mtls_scope::dns_names(&cert),
                false => c.server_names.iter().map(|n| n.to_ascii_lowercase()).collect(),
            };
            for name in names {
                let name = name.trim_end_matches('.').to_string();
                match claimed.iter().find(|(n, _)| *n == name) {
                    Some((_, k)) if *k != j => found.add(
                        "certificate-never-chosen",
                        format!("listeners[{i}].tls.certificates[{j}].cert"),
                        format!(
                            "`{name}` is named by certificates[{k}] first: SNI picks that one for it (the first \
                             certificate naming a name wins); reorder them, or drop the name from one"
                        ),
                    ),
                    Some(_) => {}
                    None => claimed.push((name, j)),
                }
            }
            // SNI carries DNS names only (RFC 6066 §3): a certificate other
            // than the first (the default) with no DNS name to be picked by
            // is never served.
            if j > 0 && c.server_names.is_empty() && mtls_scope::dns_names(&cert).is_empty() {
                found.add(
                    "certificate-never-chosen",
                    format!("listeners[{i}].tls.certificates[{j}].cert"),
                    format!(
                        "`{}` has no DNS name (an IP address is never sent as SNI, RFC 6066): no handshake picks \
                         it; put it first to make it the default (served without SNI), or give it `server_names`",
                        c.cert
                    ),
                );
            }
            let not_after = cert.validity().not_after.timestamp();
            let days = (not_after - now).div_euclid(86_400);
            if days < 30 {
                let when =
                    if not_after <= now { "has expired".to_string() } else { format!("expires in {days} day(s)") };
                found.add(
                    "certificate-expiring",
                    format!("listeners[{i}].tls.certificates[{j}].cert"),
                    format!("`{}` {when} (not after {})", c.cert, cert.validity().not_after),
                );
            }
        }
    }
}

/// A chain whose next certificate is not the issuer of the one before it
/// (an unrelated certificate, or the chain in the wrong order): the gateway
/// serves it as written, and clients that lack the intermediate refuse the
/// handshake (browsers that cached it do not: the mistake shows late).
fn chain_order(
    i: usize,
    j: usize,
    c: &crate::config::CertificateConfig,
    pems: &[x509_parser::pem::Pem],
    found: &mut Found,
) {
    let certs: Vec<_> = pems.iter().map_while(|p| p.parse_x509().ok()).collect();
    for pair in certs.windows(2) {
        if pair[0].issuer() != pair[1].subject() {
            found.add(
                "certificate-chain-order",
                format!("listeners[{i}].tls.certificates[{j}].cert"),
                format!(
                    "in `{}`, `{}` follows `{}`, whose issuer is `{}`: put the chain in order (the \
                     listener's certificate first, then each one's issuer), or clients without the \
                     intermediate refuse the handshake",
                    c.cert,
                    pair[1].subject(),
                    pair[0].subject(),
                    pair[0].issuer()
                ),
            );
            return;
        }
    }
}

/// `server_names` of a listener certificate that its DNS names do not
/// cover (exactly, or by a `*.` wildcard for one label): SNI picks the
/// certificate for that name, and the client refuses the handshake.
fn name_mismatches(
    i: usize,
    j: usize,
    c: &crate::config::CertificateConfig,
    cert: &x509_parser::certificate::X509Certificate<'_>,
    found: &mut Found,
) {
    let sans = mtls_scope::dns_names(cert);
    for (k, name) in c.server_names.iter().enumerate() {
        let name = name.to_ascii_lowercase();
        let wildcard = |san: &String| {
            san.strip_prefix("*.").is_some_and(|suffix| {
                name.strip_suffix(suffix)
                    .and_then(|label| label.strip_suffix('.'))
                    .is_some_and(|label| !label.is_empty() && !label.contains('.'))
            })
        };
        if !sans.iter().any(|san| *san == name || wildcard(san)) {
            let names = if sans.is_empty() { "none".to_string() } else { sans.join(", ") };
            found.add(
                "certificate-name-mismatch",
                format!("listeners[{i}].tls.certificates[{j}].server_names[{k}]"),
                format!(
                    "`{}` does not carry the name `{name}` (its DNS names: {names}): clients asking for it \
                     refuse the handshake",
                    c.cert
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The warnings `check` finds in `yaml`: (name, path, message).
    fn found_by(yaml: &str, check: fn(&LoadedConfig, &mut Found)) -> Vec<(&'static str, String, String)> {
        let loaded = crate::config::parse_str(yaml, "t.yaml", std::path::Path::new(".")).unwrap();
        let mut found = Found::default();
        check(&loaded, &mut found);
        found.0
    }

    /// A key on `X-Forwarded-For` or `Forwarded` is said to count by `ip`.
    #[test]
    fn a_key_on_a_forwarding_header_is_said_to_be_ip() {
        let yaml = "routes:\n  - { name: r, match: { path: / }, static: { status: 200 }, rate_limit: [ \
                    { key: [ route, { header: x-forwarded-for } ], rate: 1/s }, { key: { header: X-Tenant }, rate: 1/s } ] }\n";
        let warned = found_by(yaml, limits::ineffective_limit_settings);
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert_eq!((warned[0].0, warned[0].1.as_str()), ("ineffective-limit-setting", "routes[0].rate_limit[0].key"));
        assert!(warned[0].2.contains("counted as the client address (`ip`)"), "{}", warned[0].2);
        assert!(!warned[0].2.contains("  "), "{}", warned[0].2);
        // `ipv6_prefix` applies to it, as to `ip`: not said to do nothing.
        let prefixed = "routes:\n  - { name: r, match: { path: / }, static: { status: 200 }, rate_limit: [ \
                        { key: { header: Forwarded }, rate: 1/s, ipv6_prefix: 64 } ] }\n";
        let warned = found_by(prefixed, limits::ineffective_limit_settings);
        assert_eq!(warned.iter().map(|w| w.1.as_str()).collect::<Vec<_>>(), ["routes[0].rate_limit[0].key"]);
    }

    /// A route path with `+` is said to leave its `%2B` spelling to others.
    #[test]
    fn a_plus_in_a_route_path_is_warned_about() {
        let yaml = "routes:\n  - { name: cpp, match: { path_prefix: /langs/c++ }, static: { status: 200 } }\n  \
                    - { name: enc, match: { path: /c%2b }, static: { status: 200 } }\n  \
                    - { name: all, match: { path_prefix: / }, static: { status: 200 } }\n";
        let warned = found_by(yaml, plus_in_paths);
        let at: Vec<&str> = warned.iter().map(|w| w.1.as_str()).collect();
        assert_eq!(at, ["routes[0].match.path_prefix", "routes[1].match.path"]);
        assert!(warned[0].2.contains("writes its `+` as `%2B`"), "{}", warned[0].2);
        assert!(!warned[0].2.contains("  "), "{}", warned[0].2);
    }

    /// A guarded route's unlisted methods fall to an open broader route.
    #[test]
    fn methods_a_guarded_route_leaves_out_fall_through() {
        let found_for = |open: &str| {
            let yaml = format!(
                "auth: {{ k: {{ api_key: {{ header: X-Key }} }} }}\nroutes:\n\
                 \x20 - {{ name: admin, match: {{ path_prefix: /admin, methods: [GET, POST] }}, static: {{ status: 200 }}, authenticate: [k] }}\n\
                 \x20 - {{ name: all, match: {{ path_prefix: /{open} }}, upstream: u }}\n\
                 upstreams: {{ u: {{ targets: [ \"http://127.0.0.1:9\" ] }} }}\n"
            );
            found_by(&yaml, methods::methods_fall_through)
        };
        let warned = found_for("");
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert_eq!((warned[0].0, warned[0].1.as_str()), ("methods-fall-through", "routes[0].match.methods"));
        assert!(warned[0].2.contains("every other method on its paths go to route `all`"), "{}", warned[0].2);
        assert!(found_for("other").is_empty(), "a broader route elsewhere covers nothing of `/admin`");
        assert!(found_for(", methods: [HEAD, GET]").is_empty(), "HEAD goes with GET");
        let warned = found_for(", methods: [DELETE]");
        assert!(warned[0].2.contains("`DELETE` on its paths"), "{}", warned[0].2);
        // More shapes: exact paths, parameters, wildcard hosts, versions; and
        // routes that reach no service (a `static` 405, the advised fix).
        let found = |routes: &str| {
            let yaml = format!(
                "auth: {{ k: {{ api_key: {{ header: X-Key }} }} }}\nupstreams: {{ u: {{ targets: [ \"http://127.0.0.1:9\" ] }} }}\nroutes:\n{routes}"
            );
            found_by(&yaml, methods::methods_fall_through).len()
        };
        let guarded =
            |m: &str| format!("  - {{ name: g, match: {{ {m}, methods: [GET] }}, upstream: u, authenticate: [k] }}\n");
        let open = |m: &str, action: &str| format!("  - {{ name: o, match: {{ {m} }}, {action} }}\n");
        for (g, o, warned) in [
            ("path: /p/users", open("path: \"/p/{section}\"", "upstream: u"), 1),
            ("path: /x/one", open("path: /x/one", "upstream: u"), 1),
            (
                "host: admin.example.com, path_prefix: /g",
                open("host: \"*.example.com\", path_prefix: /g", "upstream: u"),
                1,
            ),
            (
                "host: Admin.Example.org, path_prefix: /h",
                open("host: admin.example.org, path_prefix: /h", "upstream: u"),
                1,
            ),
            ("path_prefix: /v/admin", open("path_prefix: /admin, version: { path_prefix: /v }", "upstream: u"), 1),
            ("path_prefix: /a", open("path_prefix: /a", "static: { status: 405 }"), 0),
            ("path_prefix: /e, version: { path_prefix: /v2 }", open("path_prefix: /e", "upstream: u"), 0),
            ("path: /x/one", open("path: /x/two", "upstream: u"), 0),
            ("host: a.example.com, path_prefix: /g", open("host: b.example.com, path_prefix: /g", "upstream: u"), 0),
            (
                "host: \"admin.example.com.\", path_prefix: /a",
                open("host: admin.example.com, path_prefix: /a", "upstream: u"),
                1,
            ),
            // `{*rest}` takes one more segment at least: not `/admin` itself.
            ("path: /admin", open("path: \"/admin/{*rest}\"", "upstream: u"), 0),
        ] {
            assert_eq!(found(&(guarded(g) + &o)), warned, "{g} / {o}");
        }
        // The advised fix: a `static` 405 on the same paths takes the other
        // methods before a catch-all does.
        let fixed = guarded("path_prefix: /admin")
            + &open("path_prefix: /admin", "static: { status: 405 }")
            + &open("path_prefix: /", "upstream: u");
        assert_eq!(found(&fixed.replacen("name: o", "name: o1", 1)), 0);
    }

    /// A body schema beside a content type it is not checked on.
    #[test]
    fn a_body_type_the_schema_is_not_checked_on_is_warned_about() {
        let found_for = |types: &str| {
            let yaml = format!(
                "routes:\n  - {{ name: r, match: {{ path: /r }}, static: {{ status: 200 }}, validate: {{ content_types: {types}, body: {{ schema: {{ type: object }} }} }} }}\n"
            );
            found_by(&yaml, settings::ineffective_settings)
                .into_iter()
                .map(|(name, path, _)| (name, path))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            found_for("[ application/json, \"*/*\", text/plain ]"),
            vec![
                ("ineffective-setting", "routes[0].validate.content_types[1]".to_string()),
                ("ineffective-setting", "routes[0].validate.content_types[2]".to_string())
            ]
        );
        assert!(
            found_for("[ application/json, application/x-www-form-urlencoded, \"application/*+json\" ]").is_empty()
        );
    }

    #[test]
    fn hsts_preload_needs_subdomains_and_a_year() {
        let yaml = |hsts: &str| {
            format!(
                "listeners:\n  - {{ name: s, bind: \"127.0.0.1:0\", tls: {{ certificates: [ {{ cert: missing.pem, key: k.pem }} ], hsts: {hsts} }} }}\n"
            )
        };
        let found_for = |hsts: &str| {
            let loaded = crate::config::parse_str(&yaml(hsts), "t.yaml", std::path::Path::new(".")).unwrap();
            let mut found = Found::default();
            certificates(&loaded, &mut found);
            found.0.into_iter().map(|(name, path, _)| (name, path)).collect::<Vec<_>>()
        };
        let warned = vec![("hsts-preload-ineligible", "listeners[0].tls.hsts.preload".to_string())];
        assert_eq!(found_for("{ preload: true }"), warned);
        assert_eq!(found_for("{ preload: true, include_subdomains: true, max_age: 30d }"), warned);
        assert!(found_for("{ preload: true, include_subdomains: true }").is_empty());
        assert!(found_for("{ include_subdomains: true, max_age: 1d }").is_empty());
    }

    #[test]
    fn a_certificate_not_valid_yet_is_warned_about() {
        let dir = tempfile::tempdir().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["gw.example".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2100, 1, 1);
        params.not_after = rcgen::date_time_ymd(2101, 1, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        std::fs::write(dir.path().join("c.pem"), params.self_signed(&key).unwrap().pem()).unwrap();
        let yaml = "listeners:\n  - { name: s, bind: \"127.0.0.1:0\", tls: { certificates: [ { cert: c.pem, key: k.pem } ] } }\n";
        let loaded = crate::config::parse_str(yaml, "t.yaml", dir.path()).unwrap();
        let mut found = Found::default();
        certificates(&loaded, &mut found);
        assert_eq!(found.0.len(), 1);
        assert!(found.0[0].2.contains("is not valid yet"), "{}", found.0[0].2);
    }

    #[test]
    fn server_names_the_certificate_does_not_carry_are_warned_about() {
        let dir = tempfile::tempdir().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["gw.example".to_string(), "*.api.example".to_string()]).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        std::fs::write(dir.path().join("c.pem"), params.self_signed(&key).unwrap().pem()).unwrap();
        let yaml = "listeners:\n  - { name: s, bind: \"127.0.0.1:0\", tls: { certificates: [ { cert: c.pem, key: k.pem, \
                    server_names: [ GW.example, v1.api.example, a.b.api.example, other.example ] } ] } }\n";
        let loaded = crate::config::parse_str(yaml, "t.yaml", dir.path()).unwrap();
        let mut found = Found::default();
        certificates(&loaded, &mut found);
        let paths: Vec<&str> = found.0.iter().map(|(_, p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            ["listeners[0].tls.certificates[0].server_names[2]", "listeners[0].tls.certificates[0].server_names[3]"]
        );
    }

    #[test]
    fn variables_are_found_where_they_stayed_literal() {
        assert!(has_variable("${TOKEN}") && has_variable("Bearer ${T_1}!"));
        assert!(!has_variable("${}") && !has_variable("$TOKEN") && !has_variable("${1A}") && !has_variable("/{id}"));
        assert_eq!(bcrypt_cost("$2y$05$abcdefghijklmnopqrstuv"), Some(5));
        assert_eq!(bcrypt_cost("$argon2id$v=19$m=19456"), None);
    }
}
