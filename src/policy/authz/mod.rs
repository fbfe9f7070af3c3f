//! Authorization: what an authenticated caller may do on a route —
//! required scopes (all / any), claim conditions, consumer groups. Runs
//! after authentication; a failure is 403 (with `insufficient_scope` for
//! bearer tokens), never 401.

pub mod config;

use http::header::{HeaderValue, WWW_AUTHENTICATE};
use http::{StatusCode, request};

pub use config::*;

use crate::config::FieldErrors;
use crate::http::problem;
use crate::policy::compile::CompileCtx;
use crate::policy::ctx::{Identity, group_fault, scope_fault};
use crate::policy::ctx::{Outcome, RequestCtx};

#[derive(Debug, Clone)]
enum Test {
    Equals(String),
    Contains(String),
    OneOf(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct Compiled {
    all_scopes: Vec<String>,
    any_scopes: Vec<String>,
    claims: Vec<(Vec<String>, Test)>,
    allow_groups: Vec<String>,
    deny_groups: Vec<String>,
}

impl Compiled {
    pub fn compile(cfg: &AuthorizeConfig, _cx: &mut CompileCtx<'_>) -> Result<Compiled, FieldErrors> {
        let mut errors = FieldErrors::new();
        let mut claims = Vec::new();
        for (i, c) in cfg.claims.iter().enumerate() {
            let test = match (&c.equals, &c.contains, &c.one_of) {
                (Some(v), None, None) => Test::Equals(v.clone()),
                // An empty word is no word: it would match `a  b` (two spaces).
                (None, Some(v), None) if v.is_empty() || v.contains(' ') => {
                    errors.push((
                        format!("claims[{i}].contains"),
                        "one word: not empty, without spaces (a string claim is split at spaces)".into(),
                    ));
                    continue;
                }
                (None, Some(v), None) => Test::Contains(v.clone()),
                (None, None, Some(v)) => Test::OneOf(v.clone()),
                _ => {
                    errors
                        .push((format!("claims[{i}]"), "give exactly one of `equals`, `contains` or `one_of`".into()));
                    continue;
                }
            };
            claims.push((c.claim.split('.').map(String::from).collect(), test));
        }
        // Held to the rules identities' scopes and groups are: a name none
        // can have is a required scope or `allow` no one meets, a `deny`
        // that never bites.
        let listed = |key: &str, names: &[String], fault: fn(&str) -> Option<String>, errors: &mut FieldErrors| {
            for (i, name) in names.iter().enumerate() {
                if let Some(why) = fault(name) {
                    errors.push((format!("{key}[{i}]"), why));
                }
            }
        };
        listed("scopes", &cfg.scopes, scope_fault, &mut errors);
        listed("any_scopes", &cfg.any_scopes, scope_fault, &mut errors);
        listed("groups.allow", &cfg.groups.allow, group_fault, &mut errors);
        listed("groups.deny", &cfg.groups.deny, group_fault, &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Compiled {
            all_scopes: cfg.scopes.clone(),
            any_scopes: cfg.any_scopes.clone(),
            claims,
            allow_groups: cfg.groups.allow.clone(),
            deny_groups: cfg.groups.deny.clone(),
        })
    }

    pub fn on_request(&self, _req: &mut request::Parts, ctx: &mut RequestCtx<'_>) -> Outcome {
        let Some(id) = &ctx.identity else {
            // `authorize` without `authenticate` is refused by the config check;
            // stay closed if it ever happens.
            return Outcome::Respond(problem::problem(
                StatusCode::FORBIDDEN,
                "the caller is not allowed here",
                ctx.request_id,
            ));
        };
        let scopes_ok = self.all_scopes.iter().all(|s| id.scopes.contains(s))
            && (self.any_scopes.is_empty() || self.any_scopes.iter().any(|s| id.scopes.contains(s)));
        if !scopes_ok {
            let mut resp = problem::problem(StatusCode::FORBIDDEN, "the token lacks a required scope", ctx.request_id);
            if id.bearer {
                let needed = if self.all_scopes.is_empty() { &self.any_scopes } else { &self.all_scopes };
                let challenge = format!(
                    "Bearer realm=\"portcullis\", error=\"insufficient_scope\", scope=\"{}\"",
                    needed.join(" ").replace('"', "")
                );
                if let Ok(v) = HeaderValue::try_from(challenge) {
                    resp.headers_mut().insert(WWW_AUTHENTICATE, v);
                }
            }
            return Outcome::Respond(resp);
        }
        if !self.claims.iter().all(|(path, test)| claim_ok(id, path, test)) || !self.groups_ok(id) {
            return Outcome::Respond(problem::problem(
                StatusCode::FORBIDDEN,
                "the caller is not allowed here",
                ctx.request_id,
            ));
        }
        Outcome::Continue
    }

    fn groups_ok(&self, id: &Identity) -> bool {
        let groups = id.groups();
        let denied = self.deny_groups.iter().any(|g| groups.contains(g));
        let allowed = self.allow_groups.is_empty() || self.allow_groups.iter().any(|g| groups.contains(g));
        allowed && !denied
    }
}

fn claim_ok(id: &Identity, path: &[String], test: &Test) -> bool {
    let Some(mut value) = id.claims.as_deref() else { return false };
    for key in path {
        match value.get(key) {
            Some(v) => value = v,
            None => return false,
        }
    }
    let as_text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    match test {
        Test::Equals(want) => as_text(value).as_deref() == Some(want.as_str()),
        Test::OneOf(options) => as_text(value).is_some_and(|v| options.contains(&v)),
        Test::Contains(want) => match value {
            serde_json::Value::Array(items) => items.iter().filter_map(as_text).any(|v| &v == want),
            // Words split at the ASCII space only, as scopes are (RFC 6749
            // §3.3): `user\u{a0}admin` is one word, as the upstream reads it.
            serde_json::Value::String(s) => s.split(' ').any(|v| !v.is_empty() && v == want),
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests;
