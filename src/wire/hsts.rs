//! Whether a `Strict-Transport-Security` value is one browsers take
//! (RFC 6797 §6.1): directives separated by `;` (outside quoted strings),
//! optional whitespace around `=`, values tokens or quoted strings; a
//! `max-age` of digits (quoted or not) and `includeSubDomains` without a
//! value, each once. A browser ignores a header that breaks these rules
//! (§8.1), and only the first line counts.

/// Whether `value` is a Strict-Transport-Security value a browser follows
/// (as Chromium's `ParseHSTSHeader` reads it: `max-age` and
/// `includeSubDomains` once each, the latter without a value; other
/// directives ignored, but their values tokens or quoted strings).
pub fn valid(value: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(value) else { return false };
    let Some(directives) = split_outside_quotes(text) else { return false };
    let blank: &[char] = &[' ', '\t'];
    let (mut max_age, mut subdomains) = (false, false);
    for directive in directives.iter().map(|d| d.trim_matches(blank)).filter(|d| !d.is_empty()) {
        let (name, value) = match directive.split_once('=') {
            Some((name, value)) => (name.trim_matches(blank), Some(value.trim_matches(blank))),
            None => (directive, None),
        };
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return false;
        }
        let unquoted = match value {
            Some(v) if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') => Some(&v[1..v.len() - 1]),
            Some(v) if !v.is_empty() && v.bytes().all(is_tchar) => Some(v),
            Some(_) => return false,
            None => None,
        };
        if name.eq_ignore_ascii_case("max-age") {
            match unquoted {
                Some(digits) if !max_age && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                    max_age = true
                }
                _ => return false,
            }
        } else if name.eq_ignore_ascii_case("includeSubDomains") {
            if subdomains || value.is_some() {
                return false;
            }
            subdomains = true;
        }
    }
    max_age
}

/// The text split at each `;` outside a quoted string; `None` when a
/// quote is left open.
fn split_outside_quotes(text: &str) -> Option<Vec<&str>> {
    let (mut parts, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    (!quoted).then_some(parts)
}

/// RFC 9110 §5.6.2 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_browsers_follow() {
        for ok in [
            "max-age=31536000",
            "max-age=0",
            "max-age = 100",
            "max-age=\"100\"; includeSubDomains",
            "includeSubDomains; max-age=60; preload",
            "MAX-AGE=5;",
            "max-age=100; foo=\"a;b\"",
            "max-age=100; preload; preload",
        ] {
            assert!(super::valid(ok.as_bytes()), "{ok}");
        }
        for ignored in [
            "",
            "includeSubDomains",
            "max-age=",
            "max-age=abc",
            "max-age=-1",
            "max-age=\"\"",
            "max-age=100; max-age=200",
            "max-age=100, max-age=200",
            "max-age=1; includeSubDomains; includesubdomains",
            "max age=1",
            "max-age=100; includeSubDomains=1",
            "max-age=100; includeSubDomains=\"\"",
            "max-age=100; foo=a,b",
            "max-age=100; foo=a@b",
            "max-age=100; foo=\"unterminated",
        ] {
            assert!(!super::valid(ignored.as_bytes()), "{ignored}");
        }
    }
}
