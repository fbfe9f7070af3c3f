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
mod tests {
    use super::*;
    use crate::policy::compile::{Shared, with_test_ctx};

    #[test]
    fn sets_and_removes() {
        let cfg =
            HeaderOpsConfig { set: [("X-A".to_string(), "1".to_string())].into(), remove: vec!["x-b".to_string()] };
        let c = with_test_ctx(Shared::default(), |cx| Compiled::compile(&cfg, cx)).unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-b", "gone".parse().unwrap());
        h.insert("x-a", "old".parse().unwrap());
        c.apply(&mut h);
        assert_eq!(h.get("x-a").unwrap(), "1");
        assert!(!h.contains_key("x-b"));
    }

    #[test]
    fn rejects_bad_names() {
        let cfg = HeaderOpsConfig { set: [("bad name".to_string(), "1".to_string())].into(), remove: vec![] };
        let errs = with_test_ctx(Shared::default(), |cx| Compiled::compile(&cfg, cx)).unwrap_err();
        assert_eq!(errs[0].0, "set.bad name");
    }
}
