//! Security headers on every response the gateway sends or forwards, and
//! removal of headers that advertise what runs behind it. Defaults suit
//! JSON APIs; an upstream's own value of a default header is kept, while
//! `set` always wins.

use http::{HeaderName, HeaderValue};

pub mod config;
use crate::config::FieldErrors;
use crate::policy::compile::CompileCtx;
pub use crate::wire::field_edits::FieldEdits;
pub use config::SecurityHeadersConfig;

/// The compiled form: field edits that both response writers apply.
pub type Compiled = FieldEdits;

#[derive(Default)]
struct Parts {
    defaults: Vec<(HeaderName, HeaderValue)>,
    forced: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

/// The Referrer-Policy tokens (W3C Referrer Policy §3); a list of them is
/// a value too (browsers take the last one they know).
const REFERRER_POLICIES: [&str; 8] = [
    "no-referrer",
    "no-referrer-when-downgrade",
    "same-origin",
    "origin",
    "strict-origin",
    "origin-when-cross-origin",
    "strict-origin-when-cross-origin",
    "unsafe-url",
];

/// Errors are `(path under the config, message)`.
pub fn compile(cfg: &SecurityHeadersConfig, _cx: &mut CompileCtx<'_>) -> Result<Compiled, FieldErrors> {
    let mut out = Parts::default();
    if !cfg.enabled {
        return Ok(FieldEdits::default());
    }
    let mut errors = FieldErrors::new();
    let value = |errors: &mut FieldErrors, key: &str, v: &str| match HeaderValue::try_from(v) {
        Ok(v) => Some(v),
        Err(_) => {
            errors.push((key.to_string(), "not a valid header value".to_string()));
            None
        }
    };
    if cfg.content_type_options {
        out.defaults.push((http::header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")));
    }
    // A value browsers do not know is ignored by them: a typo would leave
    // the page without the protection it names.
    if !cfg.frame_options.is_empty()
        && !["DENY", "SAMEORIGIN"].iter().any(|v| cfg.frame_options.eq_ignore_ascii_case(v))
    {
        errors.push((
            "frame_options".to_string(),
            format!(
                "`{}` is not an X-Frame-Options value browsers follow: `DENY`, `SAMEORIGIN`, or `\"\"` to send none \
                 (for other framers use content_security_policy's `frame-ancestors`)",
                cfg.frame_options
            ),
        ));
    }
    // A list is a fallback chain (browsers take the last token they know,
    // skip empty items and compare without case): one known token is enough.
    let known = |t: &str| REFERRER_POLICIES.iter().any(|p| p.eq_ignore_ascii_case(t.trim()));
    if !cfg.referrer_policy.is_empty() && !cfg.referrer_policy.split(',').any(known) {
        errors.push((
            "referrer_policy".to_string(),
            format!(
                "`{}` names no Referrer-Policy browsers know: one of {}",
                cfg.referrer_policy,
                REFERRER_POLICIES.join(", ")
            ),
        ));
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
    out.forced = crate::wire::settable::settable(&cfg.set, |k, message| errors.push((format!("set.{k}"), message)));
    for (i, k) in cfg.remove.iter().enumerate() {
        match HeaderName::try_from(k.as_str()) {
            // Removed after CORS has added `Origin` to it: a shared cache
            // would then serve one origin's grant to another.
            Ok(name) if name == http::header::VARY => errors.push((
                format!("remove[{i}]"),
                "`Vary` cannot be removed here: it goes after CORS adds `Origin` to it, and caches would serve one \
                 origin's answer to another; a route's `response_headers.remove` drops the upstream's `Vary` alone"
                    .to_string(),
            )),
            Ok(name) => out.remove.push(name),
            Err(_) => errors.push((format!("remove[{i}]"), format!("`{k}` is not a header name"))),
        }
    }
    if errors.is_empty() { Ok(FieldEdits::new(out.defaults, out.forced, out.remove)) } else { Err(errors) }
}

#[cfg(test)]
mod tests;
