//! Whether a `Strict-Transport-Security` value is one browsers take
//! (RFC 6797 §6.1): directives separated by `;`, each named once (any
//! case), with optional whitespace around `=`; a `max-age` of digits
//! (quoted or not). A browser ignores a header that breaks these rules
//! (§8.1), and only the first line counts.

/// Whether `value` is a Strict-Transport-Security value a browser follows.
pub fn valid(value: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(value) else { return false };
    let blank: &[char] = &[' ', '\t'];
    let mut names: Vec<String> = Vec::new();
    let mut max_age = false;
    for directive in text.split(';').map(|d| d.trim_matches(blank)).filter(|d| !d.is_empty()) {
        let (name, value) = match directive.split_once('=') {
            Some((name, value)) => (name.trim_matches(blank), Some(value.trim_matches(blank))),
            None => (directive, None),
        };
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return false;
        }
        let name = name.to_ascii_lowercase();
        if names.contains(&name) {
            return false;
        }
        if name == "max-age" {
            let Some(value) = value else { return false };
            let digits = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return false;
            }
            max_age = true;
        }
        names.push(name);
    }
    max_age
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
        ] {
            assert!(!super::valid(ignored.as_bytes()), "{ignored}");
        }
    }
}
