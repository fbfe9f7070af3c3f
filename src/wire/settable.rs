//! The headers a config sets on a message, checked once at load: what a
//! policy, a security-header block or a static answer may write.

use http::{HeaderName, HeaderValue};

/// The headers a config sets on a message (`set` of `request_headers`,
/// `response_headers` and `security_headers`, a static answer's
/// `headers`), checked; `error(key, message)` for each one refused: a bad
/// name or value, a field the gateway frames or that belongs to one
/// connection (set by hand it would contradict the framing sent: an
/// HTTP/2 stream whose `content-length` is not its DATA's length is
/// malformed), a name written twice in another case (one would silently
/// win), or a `Host` that is not a host (a client's would be refused).
pub fn settable<'a>(
    entries: impl IntoIterator<Item = (&'a String, &'a String)>,
    mut error: impl FnMut(&'a str, String),
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out: Vec<(HeaderName, HeaderValue)> = Vec::new();
    for (key, value) in entries {
        let (name, value) = match (HeaderName::try_from(key.as_str()), HeaderValue::try_from(value.as_str())) {
            (Ok(n), Ok(v)) => (n, v),
            (Err(_), _) => {
                error(key, format!("`{key}` is not a valid header name"));
                continue;
            }
            (_, Err(_)) => {
                error(key, "not a valid header value".to_string());
                continue;
            }
        };
        let bytes = value.as_bytes();
        if name.as_str().contains(['_', '.']) {
            // The gateway drops such names from clients: CGI, WSGI and PHP
            // read `_` as `-` (`x_user` would pass as `X-User`).
            error(
                key,
                format!("`{key}` holds `_` or `.`: services read such names as others (`x_user` as `x-user`); use `-`"),
            );
        } else if bytes.first().is_some_and(|b| matches!(b, b' ' | b'\t'))
            || bytes.last().is_some_and(|b| matches!(b, b' ' | b'\t'))
        {
            // RFC 9110 §5.5: no whitespace around a value (HTTP/1.1 readers
            // trim it, HTTP/2 ones must refuse it).
            error(key, "the value begins or ends with a space or tab: write it without (RFC 9110 §5.5)".to_string());
        } else if super::hop_by_hop::not_settable(&name) {
            error(key, format!("`{key}` is the gateway's to write (framing or connection-specific): it cannot be set"));
        } else if out.iter().any(|(n, _)| *n == name) {
            error(key, format!("`{key}` is written twice (header names are the same in any case): keep one"));
        } else if name == http::header::STRICT_TRANSPORT_SECURITY && !super::hsts::valid(bytes) {
            // Browsers ignore it (RFC 6797 §8.1): the page would go without HSTS.
            error(
                key,
                "not a Strict-Transport-Security value browsers follow (RFC 6797 §6.1: `max-age=<seconds>` once, \
                 each directive once, `;` between them)"
                    .to_string(),
            );
        } else if name == http::header::HOST && super::admit::host_and_port(value.as_bytes()).is_err() {
            error(key, format!("`{}` is not a host (with an optional port)", value.to_str().unwrap_or_default()));
        } else {
            out.push((name, value));
        }
    }
    out
}
