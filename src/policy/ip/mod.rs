//! IP allow and deny lists (access phase: before anything costs us work).
//! The address is the client's after trusted-proxy resolution.

use std::net::IpAddr;

use http::StatusCode;
use ipnet::IpNet;

use crate::http::problem;
use crate::policy::ctx::{Outcome, RequestCtx};

pub mod config;
use crate::config::FieldErrors;
use crate::policy::compile::CompileCtx;
pub use config::IpConfig;

#[derive(Debug, Clone)]
pub struct Compiled {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
}

impl Compiled {
    pub fn compile(cfg: &IpConfig, _cx: &mut CompileCtx<'_>) -> Result<Compiled, FieldErrors> {
        let mut errors = FieldErrors::new();
        let mut parse = |key: &str, list: &[String]| -> Vec<IpNet> {
            list.iter()
                .enumerate()
                .filter_map(|(i, s)| {
                    let net = crate::http::forwarded::parse_net(s);
                    if net.is_none() {
                        errors.push((format!("{key}[{i}]"), format!("`{s}` is not an IP address or CIDR")));
                    }
                    net
                })
                .collect()
        };
        let allow = parse("allow", &cfg.allow);
        let deny = parse("deny", &cfg.deny);
        if errors.is_empty() { Ok(Compiled { allow, deny }) } else { Err(errors) }
    }

    pub fn on_request(&self, ctx: &RequestCtx<'_>) -> Outcome {
        let ip = match ctx.client_ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ctx.client_ip, IpAddr::V4),
            v4 => v4,
        };
        let denied = self.deny.iter().any(|n| n.contains(&ip));
        let allowed = self.allow.is_empty() || self.allow.iter().any(|n| n.contains(&ip));
        if denied || !allowed {
            return Outcome::Respond(problem::problem(
                StatusCode::FORBIDDEN,
                "this address may not call this route",
                ctx.request_id,
            ));
        }
        Outcome::Continue
    }
}

#[cfg(test)]
mod tests;
