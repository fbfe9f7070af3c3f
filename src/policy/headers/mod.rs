//! The header policy: set and remove request or response headers.

use http::{HeaderMap, HeaderName, HeaderValue};

pub mod config;
use crate::config::FieldErrors;
use crate::policy::compile::CompileCtx;
pub use config::HeaderOpsConfig;

#[derive(Debug, Clone, Default)]
pub struct Compiled {
    set: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

impl Compiled {
    /// Checks names and values; errors name the offending key (`set.X-Foo`).
    pub fn compile(cfg: &HeaderOpsConfig, _cx: &mut CompileCtx<'_>) -> Result<Compiled, FieldErrors> {
        let mut errors = FieldErrors::new();
        let set =
            crate::wire::settable::settable(&cfg.set, |key, message| errors.push((format!("set.{key}"), message)));
        let mut out = Compiled { set, remove: Vec::new() };
        for (i, name) in cfg.remove.iter().enumerate() {
            match HeaderName::try_from(name.as_str()) {
                Ok(n) => out.remove.push(n),
                Err(_) => errors.push((format!("remove[{i}]"), format!("`{name}` is not a valid header name"))),
            }
        }
        if errors.is_empty() { Ok(out) } else { Err(errors) }
    }

    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            // `Vary` is added to, not replaced: each field the answer
            // depends on must stay known to caches (the service's
            // `Accept-Encoding`, a preflight's `Origin`), as NGINX's
            // `add_header Vary` adds. (`remove: [Vary]` drops them first.)
            if name == http::header::VARY && headers.contains_key(http::header::VARY) {
                if !headers.get_all(http::header::VARY).iter().any(|v| v == value) {
                    headers.append(name.clone(), value.clone());
                }
                continue;
            }
            headers.insert(name.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests;
