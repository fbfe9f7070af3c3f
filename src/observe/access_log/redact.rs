//! Query parameters that carry credentials, replaced before a query is
//! logged. Matched by name, case-insensitively: the configured API-key
//! parameters and the names that carry tokens, passwords and signatures
//! in common APIs (OAuth 2.0, AWS and Azure signed URLs…).

pub const REDACTED: &str = "<redacted>";

const ALWAYS: &[&str] = &[
    "access_token",
    "api_key",
    "apikey",
    "api-key",
    "auth",
    "authorization",
    "client_secret",
    "code",
    "id_token",
    "jwt",
    "key",
    "pass",
    "passwd",
    "password",
    "refresh_token",
    "secret",
    "sig",
    "signature",
    "token",
    "x-amz-credential",
    "x-amz-security-token",
    "x-amz-signature",
];

/// The parameter names whose values are never logged.
#[derive(Debug, Clone, Default)]
pub struct Redact {
    extra: Vec<String>,
}

impl Redact {
    /// `extra`: the API-key query parameters the config names.
    pub fn new(extra: impl IntoIterator<Item = String>) -> Redact {
        Redact { extra: extra.into_iter().map(|s| s.to_ascii_lowercase()).collect() }
    }

    fn secret(&self, name: &str) -> bool {
        // A percent-encoded name is compared decoded enough to catch `%6Bey`-style dodges.
        let decoded = percent_decoded_lower(name);
        let is = |n: &str| n.as_bytes() == &decoded[..];
        ALWAYS.iter().any(|n| is(n)) || self.extra.iter().any(|n| is(n))
    }

    /// `query` with every secret parameter's value replaced.
    pub fn query(&self, query: &str, out: &mut Vec<u8>) {
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push(b'&');
            }
            match pair.split_once('=') {
                Some((name, _)) if self.secret(name) => {
                    out.extend_from_slice(name.as_bytes());
                    out.push(b'=');
                    out.extend_from_slice(REDACTED.as_bytes());
                }
                _ => out.extend_from_slice(pair.as_bytes()),
            }
        }
    }
}

/// On the stack for any name a request really uses (two allocations a
/// parameter before: every logged query paid them).
fn percent_decoded_lower(s: &str) -> smallvec::SmallVec<[u8; 64]> {
    let b = s.as_bytes();
    let mut out = smallvec::SmallVec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    out.make_ascii_lowercase();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_replaced_and_the_rest_kept() {
        let r = Redact::new(["X-Api-Key".to_string()]);
        let mut out = Vec::new();
        r.query("page=2&access_token=abc&x-api-key=k1&%6Bey=k2&flag&Token=t", &mut out);
        assert_eq!(out, b"page=2&access_token=<redacted>&x-api-key=<redacted>&%6Bey=<redacted>&flag&Token=<redacted>");
    }
}
