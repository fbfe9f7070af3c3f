//! Compiling one `upstreams.<name>` entry.

use std::sync::Arc;

use http::Uri;
use http::uri::Scheme;

use crate::config::resilience::{RetryCondition, RetryConfig, RetryOn};
use crate::config::{BalanceConfig, HashKeyConfig, TargetConfig, UpstreamConfig};
use crate::upstream::active::{ProbeSettings, parse_status_range};
use crate::upstream::balance::{ConsistentHash, LeastRequest, RoundRobin};
use crate::upstream::breaker::{Breaker, BreakerSettings};
use crate::upstream::health::{Passive, PoolHealth};
use crate::upstream::limits::{ConnLimit, Limits, Refusal};
use crate::upstream::retry::{Budget, RetryPolicy};
use crate::upstream::{Balancer, HashKey, Target, Upstream, client};

use super::Ctx;
use crate::observe::metrics::Registry;

const MAX_TARGETS: usize = 1000;

pub(super) fn compile(cx: &mut Ctx, name: &str, cfg: &UpstreamConfig, registry: &Registry) -> Option<Upstream> {
    let at = format!("upstreams.{name}");
    let before = cx.errors.len();
    if cfg.targets.is_empty() {
        cx.err(format!("{at}.targets"), "an upstream needs at least one target");
    }
    if cfg.targets.len() > MAX_TARGETS {
        cx.err(format!("{at}.targets"), format!("at most {MAX_TARGETS} targets per upstream"));
    }
    // A zero time limit fails everything at once (every body, every tunnel).
    for (key, t) in
        [("connect", cfg.timeouts.connect.0), ("read", cfg.timeouts.read.0), ("request", cfg.timeouts.request.0)]
    {
        if t < std::time::Duration::from_millis(1) {
            cx.err(
                format!("{at}.timeouts.{key}"),
                "shorter than 1ms: every time limit is at least 1ms (a limit that short fails every request at once)",
            );
        }
    }
    let conn_limit = cfg.limits.max_connections.map(|max| {
        if max == 0 {
            cx.err(format!("{at}.limits.max_connections"), "at least 1");
        }
        Arc::new(ConnLimit::new(max.max(1), cfg.limits.max_pending.unwrap_or(0)))
    });
    if cfg.limits.max_pending.is_some() && conn_limit.is_none() {
        cx.err(
            format!("{at}.limits.max_pending"),
            "counts requests waiting for a connection: set `max_connections` too",
        );
    }
    let tls = upstream_tls(cx, &at, cfg);
    let mut targets = Vec::new();
    let mut ids = Vec::new();
    for (i, t) in cfg.targets.iter().enumerate() {
        let (url, weight, path) = match t {
            TargetConfig::Url(u) => (u, 1, format!("{at}.targets[{i}]")),
            TargetConfig::Weighted(w) => (&w.url, w.weight, format!("{at}.targets[{i}].url")),
        };
        if !(1..=1000).contains(&weight) {
            cx.err(format!("{at}.targets[{i}].weight"), "a weight is between 1 and 1000");
        }
        match parse_target(url) {
            Ok((scheme, authority)) => {
                ids.push(format!("{scheme}://{authority}"));
                let metrics = registry.client(name, authority.as_str());
                let mut target = Target::new(scheme.clone(), authority.clone(), weight, metrics);
                if scheme == Scheme::HTTP && cfg.protocol != crate::config::UpstreamProtocol::Http2 {
                    let port = authority.port_u16().unwrap_or(80);
                    target.h1 = Some(crate::upstream::h1::H1Pool::new(
                        format!("{}:{port}", authority.host()),
                        cfg.pool.max_idle_per_target,
                        cfg.pool.idle_timeout.0,
                        cfg.timeouts.connect.0,
                        conn_limit.clone(),
                    ));
                }
                if cfg.protocol == crate::config::UpstreamProtocol::Http2
                    && let Some(tls) = &tls
                {
                    target.h2 = h2_target(cx, &at, cfg, tls, &scheme, &authority).map(Arc::new);
                }
                targets.push(target);
            }
            Err(msg) => cx.err(path, msg),
        }
    }
    let weights: Vec<u32> = targets.iter().map(|t| t.weight.clamp(1, 1000)).collect();
    let balancer = match &cfg.balance {
        BalanceConfig::RoundRobin => Balancer::RoundRobin(RoundRobin::new(&weights)),
        BalanceConfig::LeastRequest => Balancer::LeastRequest(LeastRequest::default()),
        BalanceConfig::ConsistentHash(key) => {
            let key = match key {
                HashKeyConfig::Header(h) => match http::HeaderName::try_from(h.as_str()) {
                    Ok(_) if let Err(e) = crate::wire::admit::readable_request_header(h) => {
                        cx.err(format!("{at}.balance.consistent_hash.header"), e);
                        HashKey::ClientIp
                    }
                    Ok(n) => HashKey::Header(n),
                    Err(_) => {
                        cx.err(format!("{at}.balance.consistent_hash.header"), format!("`{h}` is not a header name"));
                        HashKey::ClientIp
                    }
                },
                HashKeyConfig::Cookie(c) => HashKey::Cookie(c.as_str().into()),
                HashKeyConfig::ClientIp(true) => HashKey::ClientIp,
                HashKeyConfig::ClientIp(false) => {
                    cx.err(format!("{at}.balance.consistent_hash.client_ip"), "write `client_ip: true`");
                    HashKey::ClientIp
                }
            };
            Balancer::ConsistentHash {
                ring: ConsistentHash::new(&ids, &weights),
                key,
                fallback: RoundRobin::new(&weights),
            }
        }
    };
    if cx.errors.len() > before {
        return None;
    }
    let tls = tls?;
    let client = client::build(cfg, (*tls.config).clone(), tls.server_name.clone());
    let upgrades = client::build_for_upgrades(cfg, (*tls.config).clone(), tls.server_name);
    let mut upstream = Upstream::new(Arc::from(name), targets, balancer, client, cfg.timeouts.request.0);
    upstream.upgrades = upgrades;
    upstream.read_timeout = cfg.timeouts.read.0;
    resilience(cx, &at, cfg, &mut upstream, conn_limit, registry);
    if cx.errors.len() > before {
        return None;
    }
    Some(upstream)
}

/// `health`, `retry`, `limits` and `breaker`.
fn resilience(
    cx: &mut Ctx,
    at: &str,
    cfg: &UpstreamConfig,
    upstream: &mut Upstream,
    conn_limit: Option<Arc<ConnLimit>>,
    registry: &Registry,
) {
    let origin = tokio::time::Instant::now();
    let passive = cfg.health.passive.as_ref().map(|p| {
        if p.consecutive_failures == 0 {
            cx.err(format!("{at}.health.passive.consecutive_failures"), "at least 1");
        }
        if p.max_ejection < p.base_ejection {
            cx.err(format!("{at}.health.passive.max_ejection"), "shorter than `base_ejection`");
        }
        // Ejected for no time: passive health in name only.
        if p.base_ejection.0.is_zero() {
            cx.err(format!("{at}.health.passive.base_ejection"), "must be longer than zero");
        }
        Passive {
            consecutive_failures: p.consecutive_failures,
            base_ejection: p.base_ejection.0,
            max_ejection: p.max_ejection.0,
            max_ejected: p.max_ejected.0,
            enforce: p.enforce,
        }
    });
    if let Some(a) = &cfg.health.active {
        let path = format!("{at}.health.active");
        let mut expect = Vec::new();
        for (i, e) in a.expect.iter().enumerate() {
            match parse_status_range(e) {
                Ok(r) => expect.push(r),
                Err(msg) => cx.err(format!("{path}.expect[{i}]"), msg),
            }
        }
        if a.expect.is_empty() {
            cx.err(format!("{path}.expect"), "list the statuses that pass, e.g. [\"200-399\"]");
        }
        if a.interval.0 < std::time::Duration::from_millis(10) {
            cx.err(format!("{path}.interval"), "at least 10ms");
        }
        if a.timeout.0.is_zero() {
            cx.err(format!("{path}.timeout"), "longer than 0");
        }
        let probe_path = match http::uri::PathAndQuery::try_from(a.path.as_str()) {
            Ok(p) if a.path.starts_with('/') && !a.path.contains('#') => p,
            _ => {
                cx.err(format!("{path}.path"), format!("`{}` is not a path like `/healthz`", a.path));
                http::uri::PathAndQuery::from_static("/")
            }
        };
        upstream.probes_config = Some(ProbeSettings {
            path: probe_path,
            interval: a.interval.0,
            timeout: a.timeout.0,
            healthy: a.healthy,
            unhealthy: a.unhealthy,
            expect,
        });
    }
    upstream.health = PoolHealth::new(origin, passive, cfg.health.active.is_some(), cfg.health.all_unhealthy);

    let retry = compile_retry(cx, &format!("{at}.retry"), &RetryPolicy::default(), &cfg.retry, true);
    if cfg.pool.idle_timeout.0.is_zero() {
        cx.err(
            format!("{at}.pool.idle_timeout"),
            "must be longer than zero (to keep no idle connections, set `pool.max_idle_per_target: 0`)",
        );
    }
    let budget = cfg.retry.budget.clone().unwrap_or_default();
    if budget.window.0 < std::time::Duration::from_millis(10) {
        cx.err(format!("{at}.retry.budget.window"), "at least 10ms");
    }
    upstream.budget = Arc::new(Budget::new(budget.ratio.0, budget.min_per_second, budget.window.0, origin));
    upstream.retry = Arc::new(retry);

    if let Some(b) = &cfg.breaker {
        if b.consecutive_failures == 0 && b.error_ratio.is_none() {
            cx.err(format!("{at}.breaker"), "set `consecutive_failures` or `error_ratio`, or both");
        }
        if b.window.0 < std::time::Duration::from_millis(10) {
            cx.err(format!("{at}.breaker.window"), "at least 10ms");
        }
        // Open for no time, it lets the next request through as a probe at
        // once: no breaker at all.
        if b.open_for.0.is_zero() {
            cx.err(format!("{at}.breaker.open_for"), "must be longer than zero");
        }
        let settings = BreakerSettings {
            consecutive_failures: b.consecutive_failures,
            error_ratio: b.error_ratio.map(|r| r.0),
            window: b.window.0,
            min_requests: b.min_requests,
            open_for: b.open_for.0,
        };
        upstream.breaker = Some(Arc::new(Breaker::new(settings, origin)));
    }
    if cfg.limits.max_requests == Some(0) {
        cx.err(format!("{at}.limits.max_requests"), "at least 1");
    }
    upstream.limits = Limits::new(Some(cfg.limits.effective_max_requests()), conn_limit);

    let name = &*upstream.name;
    let labels = |pairs: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
        std::iter::once(("upstream", name.to_string())).chain(pairs.iter().map(|(k, v)| (*k, v.to_string()))).collect()
    };
    let c = &mut upstream.counters;
    c.retries = registry.counter("portcullis_upstream_retries", labels(&[("result", "sent")]));
    c.retries_denied = registry.counter("portcullis_upstream_retries", labels(&[("result", "budget_exhausted")]));
    c.ejections = registry.counter("portcullis_upstream_ejections", labels(&[("enforced", "true")]));
    c.would_eject = registry.counter("portcullis_upstream_ejections", labels(&[("enforced", "false")]));
    c.refused = Refusal::ALL.map(|r| registry.counter("portcullis_upstream_refusals", labels(&[("reason", r.name())])));
}

/// A retry policy: `base` with the fields `cfg` sets over it. `upstream`:
/// the upstream's own (a route may not set the budget, which is shared).
pub(super) fn compile_retry(
    cx: &mut Ctx,
    at: &str,
    base: &RetryPolicy,
    cfg: &RetryConfig,
    upstream: bool,
) -> RetryPolicy {
    let mut p = base.clone();
    let set = cfg.attempts.is_some() || cfg.on.is_some() || cfg.methods.is_some() || cfg.per_try_timeout.is_some();
    if set {
        // Retry rules written out: the same target may be tried again.
        p.only_elsewhere = false;
    }
    if let Some(n) = cfg.attempts {
        if !(1..=10).contains(&n) {
            cx.err(format!("{at}.attempts"), "between 1 (no retries) and 10");
        }
        p.attempts = n.clamp(1, 10);
    }
    if let Some(on) = &cfg.on {
        p.connect_failure = false;
        p.reset = false;
        p.timeout = false;
        p.any_5xx = false;
        p.statuses.clear();
        for c in on {
            match c {
                RetryOn::Named(RetryCondition::ConnectFailure) => p.connect_failure = true,
                RetryOn::Named(RetryCondition::Reset) => p.reset = true,
                RetryOn::Named(RetryCondition::Timeout) => p.timeout = true,
                RetryOn::Named(RetryCondition::ServerError) => p.any_5xx = true,
                RetryOn::Status(s) => p.statuses.push(*s),
            }
        }
    }
    if let Some(methods) = &cfg.methods {
        p.methods.clear();
        for (i, m) in methods.iter().enumerate() {
            match http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                Ok(m) => p.methods.push(m),
                Err(_) => cx.err(format!("{at}.methods[{i}]"), format!("`{m}` is not a method")),
            }
        }
    }
    if let Some(t) = cfg.per_try_timeout {
        if t.0.is_zero() {
            cx.err(format!("{at}.per_try_timeout"), "longer than 0");
        }
        p.per_try_timeout = Some(t.0);
    }
    if let Some(b) = &cfg.backoff {
        if b.max < b.base {
            cx.err(format!("{at}.backoff.max"), "shorter than `base`");
        }
        p.backoff_base = b.base.0;
        p.backoff_max = b.max.0;
    }
    if let Some(size) = cfg.buffer {
        p.buffer = size.0;
    }
    if !upstream && cfg.budget.is_some() {
        cx.err(
            format!("{at}.budget"),
            "the retry budget is the upstream's (`upstreams.<name>.retry.budget`), shared by its routes",
        );
    }
    p
}

/// `portcullis_upstream_connections{upstream,state}`: requests in flight
/// (`active`) and open connections waiting for one (`idle`): pooled
/// HTTP/1.1 connections, and an HTTP/2 target's connection while no
/// request uses it; with `limits.max_connections`, requests waiting for
/// a connection (`pending`, as Envoy's `upstream_rq_pending_active`).
/// Made once the upstream holds its final counters (a reload hands it the
/// running plan's in-flight counts: probes made before watched counters
/// nothing updated, and `active` read 0 after every reload).
pub(super) fn connection_probes(
    name: &str,
    upstream: &Upstream,
    registry: &Registry,
) -> Vec<Arc<dyn Fn() -> f64 + Send + Sync>> {
    use std::sync::atomic::Ordering::Relaxed;
    let active: Vec<_> = upstream.targets.iter().map(|t| t.in_flight_counter()).collect();
    let pools: Vec<_> = upstream.targets.iter().filter_map(|t| t.h1.clone()).collect();
    let h2: Vec<_> = upstream.targets.iter().filter_map(|t| t.h2.clone().map(|c| (c, t.in_flight_counter()))).collect();
    let active: Arc<dyn Fn() -> f64 + Send + Sync> =
        Arc::new(move || active.iter().map(|a| a.load(Relaxed)).sum::<usize>() as f64);
    let idle: Arc<dyn Fn() -> f64 + Send + Sync> = Arc::new(move || {
        let h1 = pools.iter().map(|p| p.idle()).sum::<usize>();
        let h2 = h2.iter().filter(|(c, in_flight)| c.idle(in_flight.load(Relaxed))).count();
        (h1 + h2) as f64
    });
    let mut probes = vec![("active", active), ("idle", idle)];
    if let Some(limit) = upstream.limits.connections.clone() {
        let pending: Arc<dyn Fn() -> f64 + Send + Sync> = Arc::new(move || limit.pending() as f64);
        probes.push(("pending", pending));
    }
    for (state, probe) in &probes {
        let labels = vec![("upstream", name.to_string()), ("state", state.to_string())];
        registry.probe("portcullis_upstream_connections", labels, probe.clone());
    }
    probes.into_iter().map(|(_, probe)| probe).collect()
}

/// `portcullis_upstream_targets{upstream,state}` and
/// `portcullis_upstream_breaker_open{upstream}`, read through a weak
/// reference (the plan holds the returned probes, the upstream does not).
pub(super) fn state_probes(up: &Arc<Upstream>, registry: &Registry) -> Vec<Arc<dyn Fn() -> f64 + Send + Sync>> {
    use crate::upstream::health::State;
    let mut probes: Vec<Arc<dyn Fn() -> f64 + Send + Sync>> = Vec::new();
    for state in [State::Healthy, State::Unhealthy, State::Ejected] {
        let weak = Arc::downgrade(up);
        let probe: Arc<dyn Fn() -> f64 + Send + Sync> = Arc::new(move || {
            let Some(up) = weak.upgrade() else { return 0.0 };
            let now = tokio::time::Instant::now();
            up.targets.iter().filter(|t| up.health.state(&t.health, now) == state).count() as f64
        });
        let labels = vec![("upstream", up.name.to_string()), ("state", state.as_str().to_string())];
        registry.probe("portcullis_upstream_targets", labels, probe.clone());
        probes.push(probe);
    }
    if up.breaker.is_some() {
        let weak = Arc::downgrade(up);
        let probe: Arc<dyn Fn() -> f64 + Send + Sync> = Arc::new(move || {
            weak.upgrade().and_then(|u| u.breaker.as_ref().map(|b| b.gauge(tokio::time::Instant::now()))).unwrap_or(0.0)
        });
        registry.probe("portcullis_upstream_breaker_open", vec![("upstream", up.name.to_string())], probe.clone());
        probes.push(probe);
    }
    probes
}

/// `http://host:port` or `https://host[:port]`, nothing else.
fn parse_target(url: &str) -> Result<(Scheme, http::uri::Authority), String> {
    // Shown without a user part or credential parameters (messages reach logs).
    let shown = crate::http::url_in_message(url);
    let uri: Uri = url.parse().map_err(|_| format!("`{shown}` is not a URL like `http://10.0.0.1:8080`"))?;
    let scheme = match uri.scheme_str() {
        Some("http") => Scheme::HTTP,
        Some("https") => Scheme::HTTPS,
        _ => {
            return Err(format!("`{shown}`: a target URL starts with `http://` or `https://`"));
        }
    };
    let authority = uri.authority().cloned().ok_or_else(|| format!("`{shown}` has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!("`{shown}`: credentials in target URLs are not supported"));
    }
    if authority.host().is_empty() {
        return Err(format!("`{shown}` has no host"));
    }
    // Written, a port is 1 to 65535 (`:0` and `:99999` passed, then every request got 502).
    if crate::http::bad_port(&authority) {
        return Err(format!("`{shown}`: a port is a number from 1 to 65535"));
    }
    // The URI parser drops a `#fragment` unsaid.
    if url.contains('#') {
        return Err(format!("`{shown}`: a target is scheme, host and port only, without a `#fragment`"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!("`{shown}`: a target is scheme, host and port only; change paths with `rewrite`"));
    }
    Ok((scheme, authority))
}

/// An upstream's TLS settings for its targets, read once for its client
/// and its HTTP/2 targets alike.
struct UpstreamTls {
    config: Arc<rustls::ClientConfig>,
    /// `tls.server_name`: the name every target's certificate must carry.
    server_name: Option<rustls_pki_types::ServerName<'static>>,
}

/// Reads `tls.ca` and checks `tls.server_name`; `None` once an error is noted.
fn upstream_tls(cx: &mut Ctx, at: &str, cfg: &UpstreamConfig) -> Option<UpstreamTls> {
    let ca = cfg.tls.ca.as_ref().map(|f| cx.loaded.resolve_file(f));
    let config = client::tls_config(ca.as_deref()).map_err(|e| cx.err(format!("{at}.tls.ca"), e)).ok();
    let server_name = match &cfg.tls.server_name {
        Some(name) => match rustls_pki_types::ServerName::try_from(name.clone()) {
            Ok(name) => Some(name),
            Err(_) => {
                cx.err(format!("{at}.tls.server_name"), format!("`{name}` is not a valid TLS server name"));
                return None;
            }
        },
        None => None,
    };
    Some(UpstreamTls { config: Arc::new(config?), server_name })
}

/// The HTTP/2 connection of a `protocol: http2` target: plain (h2c) or TLS,
/// verified as the upstream's client verifies (`tls.ca`, `tls.server_name`).
fn h2_target(
    cx: &mut Ctx,
    at: &str,
    cfg: &UpstreamConfig,
    tls: &UpstreamTls,
    scheme: &Scheme,
    authority: &http::uri::Authority,
) -> Option<crate::upstream::h2::H2Target> {
    let default_port = if *scheme == Scheme::HTTPS { 443 } else { 80 };
    let addr = format!("{}:{}", authority.host(), authority.port_u16().unwrap_or(default_port));
    let tls = if *scheme == Scheme::HTTPS {
        let name = match &tls.server_name {
            Some(name) => name.clone(),
            None => {
                let host = authority.host().trim_matches(['[', ']']).to_string();
                let Ok(name) = rustls_pki_types::ServerName::try_from(host.clone()) else {
                    cx.err(format!("{at}.tls.server_name"), format!("`{host}` is not a valid TLS server name"));
                    return None;
                };
                name
            }
        };
        Some((tls.config.clone(), name))
    } else {
        None
    };
    Some(crate::upstream::h2::H2Target::new(addr, tls, cfg.timeouts.connect.0))
}
