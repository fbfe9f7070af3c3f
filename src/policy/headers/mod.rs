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
        let mut out = Compiled::default();
        for (name, value) in &cfg.set {
            match (HeaderName::try_from(name.as_str()), HeaderValue::try_from(value.as_str())) {
                (Ok(n), Ok(_)) if crate::wire::hop_by_hop::not_settable(&n) => errors.push((
                    format!("set.{name}"),
                    format!("`{name}` is the gateway's to write (framing or connection-specific): it cannot be set"),
                )),
                (Ok(n), Ok(v)) => out.set.push((n, v)),
                (Err(_), _) => errors.push((format!("set.{name}"), format!("`{name}` is not a valid header name"))),
                (_, Err(_)) => errors.push((format!("set.{name}"), "not a valid header value".to_string())),
            }
        }
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
            headers.insert(name.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests;
