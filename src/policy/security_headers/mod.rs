//! Security headers on every response the gateway sends or forwards, and
//! removal of headers that advertise what runs behind it. Defaults suit
//! JSON APIs; an upstream's own value of a default header is kept, while
//! `set` always wins.

use std::collections::BTreeMap;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::http::field;
use crate::http::names::LengthMask;
use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityHeadersConfig {
    /// `false` sends none of the defaults (and removes nothing).
    pub enabled: bool,
    /// `X-Content-Type-Options: nosniff`.
    pub content_type_options: bool,
    /// `X-Frame-Options`; empty to omit.
    pub frame_options: String,
    /// `Content-Security-Policy`; empty to omit.
    pub content_security_policy: String,
    /// `Referrer-Policy`; empty to omit.
    pub referrer_policy: String,
    /// Response headers removed (they reveal the software behind the gateway).
    pub remove: Vec<String>,
    /// Any other headers to set, replacing the upstream's.
    pub set: BTreeMap<String, String>,
}

impl Default for SecurityHeadersConfig {
    fn default() -> Self {
        SecurityHeadersConfig {
            enabled: true,
            content_type_options: true,
            frame_options: "DENY".into(),
            content_security_policy: "default-src 'none'; frame-ancestors 'none'".into(),
            referrer_policy: "no-referrer".into(),
            remove: ["server", "x-powered-by", "x-aspnet-version", "x-aspnetmvc-version", "x-runtime"]
                .map(String::from)
                .to_vec(),
            set: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Compiled {
    /// Added when the response has no such header.
    defaults: Vec<(HeaderName, HeaderValue)>,
    /// Always set.
    forced: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
    /// For writers that stream lines (`passing`, `*_lines`), made once here:
    /// the lengths of every name above, and the lines to add, rendered.
    touched: LengthMask,
    default_lines: Vec<u8>,
    forced_lines: Vec<u8>,
}

/// What becomes of an upstream's header line (see `Compiled::passing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passing {
    /// Removed, or replaced by a `set` value.
    Dropped,
    Kept,
    /// Kept, and it stands in for the default at this index.
    KeptForDefault(usize),
}

impl Compiled {
    /// Errors are `(path under the config, message)`.
    pub fn compile(cfg: &SecurityHeadersConfig) -> Result<Compiled, Vec<(String, String)>> {
        let mut out = Compiled::default();
        if !cfg.enabled {
            return Ok(out);
        }
        let mut errors: Vec<(String, String)> = Vec::new();
        let value = |errors: &mut Vec<(String, String)>, key: &str, v: &str| match HeaderValue::try_from(v) {
            Ok(v) => Some(v),
            Err(_) => {
                errors.push((key.to_string(), "not a valid header value".to_string()));
                None
            }
        };
        if cfg.content_type_options {
            out.defaults.push((http::header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")));
        }
        for (key, name, v) in [
            ("frame_options", http::header::X_FRAME_OPTIONS, &cfg.frame_options),
            ("content_security_policy", http::header::CONTENT_SECURITY_POLICY, &cfg.content_security_policy),
            ("referrer_policy", http::header::REFERRER_POLICY, &cfg.referrer_policy),
        ] {
            if !v.is_empty()
                && let Some(v) = value(&mut errors, key, v)
            {
                out.defaults.push((name, v));
            }
        }
        for (k, v) in &cfg.set {
            match HeaderName::try_from(k.as_str()) {
                Ok(name) => {
                    if let Some(v) = value(&mut errors, &format!("set.{k}"), v) {
                        out.forced.push((name, v));
                    }
                }
                Err(_) => errors.push((format!("set.{k}"), format!("`{k}` is not a header name"))),
            }
        }
        for (i, k) in cfg.remove.iter().enumerate() {
            match HeaderName::try_from(k.as_str()) {
                Ok(name) => out.remove.push(name),
                Err(_) => errors.push((format!("remove[{i}]"), format!("`{k}` is not a header name"))),
            }
        }
        // A default that `set` replaces anyway is dropped: the outcome of
        // `apply` is the same, and a writer that streams lines (`keeps`)
        // need not know about the overlap.
        let forced: Vec<HeaderName> = out.forced.iter().map(|(n, _)| n.clone()).collect();
        out.defaults.retain(|(n, _)| !forced.contains(n));
        out.touched = LengthMask::of(out.defaults.iter().chain(&out.forced).map(|(n, _)| n).chain(&out.remove));
        out.default_lines = render(&out.defaults);
        out.forced_lines = render(&out.forced);
        if errors.is_empty() { Ok(out) } else { Err(errors) }
    }

    /// For writers that stream an upstream's header lines instead of
    /// editing a map (the same outcome as `apply`): what becomes of a line
    /// named `name`. Most names are none of ours, which the length mask
    /// tells without a comparison.
    pub fn passing(&self, name: &HeaderName) -> Passing {
        if !self.touched.may_contain(name) {
            return Passing::Kept;
        }
        if self.remove.contains(name) || self.forced.iter().any(|(n, _)| n == name) {
            return Passing::Dropped;
        }
        match self.defaults.iter().position(|(n, _)| n == name) {
            Some(i) => Passing::KeptForDefault(i),
            None => Passing::Kept,
        }
    }

    /// Every default, as header lines: what a streaming writer adds when
    /// the upstream had none of them.
    pub fn default_lines(&self) -> &[u8] {
        &self.default_lines
    }

    /// The `set` values, as header lines.
    pub fn forced_lines(&self) -> &[u8] {
        &self.forced_lines
    }

    /// Added when the response has no such header (`apply`'s first pass).
    pub fn defaults(&self) -> &[(HeaderName, HeaderValue)] {
        &self.defaults
    }

    pub fn apply(&self, headers: &mut HeaderMap) {
        crate::http::remove::remove_all(headers, &self.remove);
        for (name, value) in &self.defaults {
            headers.entry(name).or_insert_with(|| value.clone());
        }
        for (name, value) in &self.forced {
            headers.insert(name.clone(), value.clone());
        }
    }
}

fn render(fields: &[(HeaderName, HeaderValue)]) -> Vec<u8> {
    let mut lines = Vec::new();
    for (name, value) in fields {
        field::write(&mut lines, name.as_str().as_bytes(), value.as_bytes());
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_lines_meet_the_same_fate_as_map_entries() {
        let mut cfg = SecurityHeadersConfig::default();
        cfg.set.insert("x-frame-options".into(), "SAMEORIGIN".into());
        cfg.set.insert("x-team".into(), "api".into());
        let c = Compiled::compile(&cfg).unwrap();
        let name = |n: &'static str| HeaderName::from_static(n);
        assert_eq!(c.passing(&name("server")), Passing::Dropped);
        assert_eq!(c.passing(&name("x-frame-options")), Passing::Dropped);
        assert_eq!(c.passing(&name("x-team")), Passing::Dropped);
        assert_eq!(c.passing(&name("content-type")), Passing::Kept);
        let Passing::KeptForDefault(i) = c.passing(&name("referrer-policy")) else { panic!() };
        assert_eq!(c.defaults()[i].0, "referrer-policy");
        assert_eq!(
            String::from_utf8_lossy(c.default_lines()),
            "x-content-type-options: nosniff\r\ncontent-security-policy: default-src 'none'; \
             frame-ancestors 'none'\r\nreferrer-policy: no-referrer\r\n"
        );
        assert_eq!(c.forced_lines(), b"x-frame-options: SAMEORIGIN\r\nx-team: api\r\n");
    }

    #[test]
    fn defaults_fill_gaps_and_remove_banners() {
        let c = Compiled::compile(&SecurityHeadersConfig::default()).unwrap();
        let mut h = HeaderMap::new();
        h.insert("server", "Apache/2.4".parse().unwrap());
        h.insert("x-frame-options", "SAMEORIGIN".parse().unwrap());
        c.apply(&mut h);
        assert!(!h.contains_key("server"));
        assert_eq!(h["x-frame-options"], "SAMEORIGIN");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
    }

    #[test]
    fn disabled_does_nothing() {
        let cfg = SecurityHeadersConfig { enabled: false, ..Default::default() };
        let c = Compiled::compile(&cfg).unwrap();
        let mut h = HeaderMap::new();
        h.insert("server", "x".parse().unwrap());
        c.apply(&mut h);
        assert_eq!(h.len(), 1);
    }
}
