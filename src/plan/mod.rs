//! Compiling a config into the immutable [`Plan`] that requests read.
//! Every check that can fail runs here, and all failures are collected, so
//! `portcullis check` reports every problem at once; a config with any
//! error never becomes a plan.

mod route;
mod upstream;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

use crate::config::{ConfigError, ConfigErrors, LoadedConfig, NormalizeConfig};
use crate::http::forwarded::TrustedProxies;
use crate::router::{Conflict, Router};
use crate::upstream::Upstream;

pub use route::{Action, HostRewrite, Proxy, Route};

/// Everything a request needs, compiled once per config.
#[derive(Debug)]
pub struct Plan {
    pub listeners: Vec<ListenerPlan>,
    pub trusted_proxies: TrustedProxies,
    pub normalize: NormalizeConfig,
    pub router: Router,
    /// In config order; the router returns indexes into this.
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerPlan {
    pub name: Arc<str>,
    pub addr: SocketAddr,
}

/// Collects errors while compiling.
pub(crate) struct Ctx<'a> {
    pub loaded: &'a LoadedConfig,
    pub errors: Vec<ConfigError>,
}

impl Ctx<'_> {
    pub fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let e = self.loaded.error(path, message);
        self.errors.push(e);
    }
}

/// Compiles `loaded` into a plan, or reports every problem in it.
pub fn compile(loaded: &LoadedConfig) -> Result<Plan, ConfigErrors> {
    let cfg = &loaded.config;
    let mut cx = Ctx { loaded, errors: Vec::new() };

    let listeners = compile_listeners(&mut cx);
    let trusted_proxies = compile_trusted(&mut cx);

    let mut upstreams: HashMap<&str, Arc<Upstream>> = HashMap::new();
    for (name, ucfg) in &cfg.upstreams {
        if let Some(u) = upstream::compile(&mut cx, name, ucfg) {
            upstreams.insert(name, Arc::new(u));
        }
    }
    let known: Vec<&str> = cfg.upstreams.keys().map(String::as_str).collect();

    let mut routes = Vec::new();
    let mut matchers = Vec::new();
    // Config index of each compiled route (routes with errors are left out).
    let mut compiled = Vec::new();
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, rcfg) in cfg.routes.iter().enumerate() {
        if let Some(first) = names.insert(&rcfg.name, i) {
            cx.err(format!("routes[{i}].name"), format!("duplicate route name `{}` (also routes[{first}])", rcfg.name));
        }
        if let Some((matcher, route)) = route::compile(&mut cx, i, rcfg, &upstreams, &known) {
            matchers.push(matcher);
            routes.push(route);
            compiled.push(i);
        }
    }

    let router = Router::new(matchers);
    for conflict in router.conflicts() {
        report_conflict(&mut cx, &conflict, &compiled);
    }

    if !cx.errors.is_empty() {
        // In file order: the way a user reads and fixes them.
        cx.errors.sort_by_key(|e| e.position.unwrap_or((usize::MAX, 0)));
        return Err(ConfigErrors(cx.errors));
    }
    Ok(Plan { listeners, trusted_proxies, normalize: cfg.path_normalization.clone(), router, routes })
}

fn report_conflict(cx: &mut Ctx, conflict: &Conflict, compiled: &[usize]) {
    let routes = &cx.loaded.config.routes;
    match *conflict {
        Conflict::Ambiguous { first, second } => {
            let (first, second) = (compiled[first], compiled[second]);
            cx.err(
                format!("routes[{second}].match"),
                format!(
                    "route `{}` is ambiguous with route `{}` (routes[{first}]): both can match the same request \
                 with the same precedence; make one more specific (host, path, methods, headers or version)",
                    routes[second].name, routes[first].name
                ),
            )
        }
        Conflict::Unreachable { route, shadowed_by } => {
            let (route, shadowed_by) = (compiled[route], compiled[shadowed_by]);
            cx.err(
            format!("routes[{route}].match"),
            format!(
                "route `{}` is unreachable: every request it matches is taken by route `{}` (routes[{shadowed_by}])",
                routes[route].name, routes[shadowed_by].name
            ),
            )
        }
    }
}

fn compile_listeners(cx: &mut Ctx) -> Vec<ListenerPlan> {
    let cfg = &cx.loaded.config;
    if cfg.listeners.is_empty() {
        cx.err("listeners", "no listeners: add one, e.g. `- { name: public, bind: 0.0.0.0:8080 }`");
    }
    let mut out: Vec<ListenerPlan> = Vec::new();
    for (i, l) in cfg.listeners.iter().enumerate() {
        if l.name.is_empty() {
            cx.err(format!("listeners[{i}].name"), "a listener needs a name");
        }
        if let Some(j) = out.iter().position(|o| *o.name == *l.name) {
            cx.err(
                format!("listeners[{i}].name"),
                format!("duplicate listener name `{}` (also listeners[{j}])", l.name),
            );
        }
        match l.bind.parse::<SocketAddr>() {
            Ok(addr) => {
                if addr.port() != 0 && out.iter().any(|o| o.addr == addr) {
                    cx.err(format!("listeners[{i}].bind"), format!("`{addr}` is bound by another listener"));
                }
                out.push(ListenerPlan { name: l.name.as_str().into(), addr });
            }
            Err(_) => cx.err(
                format!("listeners[{i}].bind"),
                format!("`{}` is not an `IP:PORT` address (e.g. `0.0.0.0:8080`, `[::]:8080`)", l.bind),
            ),
        }
    }
    out
}

fn compile_trusted(cx: &mut Ctx) -> TrustedProxies {
    let mut nets = Vec::new();
    for (i, text) in cx.loaded.config.trusted_proxies.iter().enumerate() {
        let parsed = text.parse::<IpNet>().or_else(|_| text.parse::<IpAddr>().map(IpNet::from));
        match parsed {
            Ok(net) => nets.push(net.trunc()),
            Err(_) => cx.err(format!("trusted_proxies[{i}]"), format!("`{text}` is not an IP address or CIDR")),
        }
    }
    TrustedProxies::new(nets)
}
