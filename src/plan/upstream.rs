//! Compiling one `upstreams.<name>` entry.

use std::sync::Arc;

use http::Uri;
use http::uri::Scheme;

use crate::config::{BalanceConfig, HashKeyConfig, TargetConfig, UpstreamConfig};
use crate::upstream::balance::{ConsistentHash, LeastRequest, RoundRobin};
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
                    ));
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
    let ca = cfg.tls.ca.as_ref().map(|f| cx.loaded.resolve_file(f));
    let client = match client::build(cfg, ca.as_deref()) {
        Ok(c) => Some(c),
        Err(msg) => {
            let key = if msg.contains("server name") { "server_name" } else { "ca" };
            cx.err(format!("{at}.tls.{key}"), msg);
            None
        }
    };
    if cx.errors.len() > before {
        return None;
    }
    let mut upstream = Upstream::new(Arc::from(name), targets, balancer, client?, cfg.timeouts.request.0);
    upstream.probes = connection_probes(name, &upstream, registry);
    Some(upstream)
}

/// `portcullis_upstream_connections{upstream,state}`: requests in flight
/// (`active`) and pooled HTTP/1.1 connections waiting for one (`idle`).
fn connection_probes(name: &str, upstream: &Upstream, registry: &Registry) -> Vec<Arc<dyn Fn() -> f64 + Send + Sync>> {
    let active: Vec<_> = upstream.targets.iter().map(|t| t.in_flight_counter()).collect();
    let pools: Vec<_> = upstream.targets.iter().filter_map(|t| t.h1.clone()).collect();
    let active: Arc<dyn Fn() -> f64 + Send + Sync> =
        Arc::new(move || active.iter().map(|a| a.load(std::sync::atomic::Ordering::Relaxed)).sum::<usize>() as f64);
    let idle: Arc<dyn Fn() -> f64 + Send + Sync> =
        Arc::new(move || pools.iter().map(|p| p.idle()).sum::<usize>() as f64);
    for (state, probe) in [("active", &active), ("idle", &idle)] {
        let labels = vec![("upstream", name.to_string()), ("state", state.to_string())];
        registry.probe("portcullis_upstream_connections", labels, probe.clone());
    }
    vec![active, idle]
}

/// `http://host:port` or `https://host[:port]`, nothing else.
fn parse_target(url: &str) -> Result<(Scheme, http::uri::Authority), String> {
    let uri: Uri = url.parse().map_err(|_| format!("`{url}` is not a URL like `http://10.0.0.1:8080`"))?;
    let scheme = match uri.scheme_str() {
        Some("http") => Scheme::HTTP,
        Some("https") => Scheme::HTTPS,
        _ => {
            return Err(format!("`{url}`: a target URL starts with `http://` or `https://`"));
        }
    };
    let authority = uri.authority().cloned().ok_or_else(|| format!("`{url}` has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!("`{url}`: credentials in target URLs are not supported"));
    }
    if authority.host().is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!("`{url}`: a target is scheme, host and port only; change paths with `rewrite`"));
    }
    Ok((scheme, authority))
}
