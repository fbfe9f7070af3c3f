//! Deprecated routes (response step): every response of the route says so,
//! with `Deprecation` (RFC 9745), `Sunset` (RFC 8594) and a `Link` to the
//! migration page. Appended, so an upstream's own `Link` headers
//! (pagination…) stay.

use std::time::UNIX_EPOCH;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::config::FieldErrors;
use crate::config::units::parse_date;
use crate::policy::compile::CompileCtx;

pub mod config;
pub use config::DeprecationConfig;

#[derive(Debug, Clone)]
pub struct Compiled {
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Compiled {
    pub fn compile(d: &DeprecationConfig, _cx: &mut CompileCtx<'_>) -> Result<Compiled, FieldErrors> {
        let mut errors = FieldErrors::new();
        let mut headers = Vec::new();
        match parse_date(&d.since) {
            // RFC 9745: a Structured Field Date, `@<unix seconds>`.
            Some(t) => headers.push((
                HeaderName::from_static("deprecation"),
                HeaderValue::try_from(format!("@{}", t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()))
                    .expect("digits"),
            )),
            None => errors.add("since", format!("`{}` is not a date like `2026-06-30`", d.since)),
        }
        if let Some(s) = &d.sunset {
            match parse_date(s) {
                // RFC 9745 §3: the sunset comes no earlier than the deprecation.
                Some(t) if parse_date(&d.since).is_some_and(|since| t < since) => errors.add(
                    "sunset",
                    format!("`{s}` is before `since` (`{}`): an API is deprecated before it goes", d.since),
                ),
                // RFC 8594: an HTTP-date.
                Some(t) => headers.push((
                    HeaderName::from_static("sunset"),
                    HeaderValue::try_from(httpdate::fmt_http_date(t)).expect("http-date"),
                )),
                None => errors.add("sunset", format!("`{s}` is not a date like `2027-01-31`")),
            }
        }
        if let Some(link) = &d.link {
            match link.parse::<http::Uri>() {
                Ok(u) if u.scheme().is_some() => headers.push((
                    http::header::LINK,
                    HeaderValue::try_from(format!("<{link}>; rel=\"deprecation\"; type=\"text/html\"")).expect("uri"),
                )),
                _ => errors.add("link", format!("`{link}` is not an absolute URL")),
            }
        }
        errors.or_value(Compiled { headers })
    }

    pub fn on_response(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.headers {
            headers.append(name.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests;
