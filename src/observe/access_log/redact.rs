//! Query parameters that carry credentials, replaced before a query is
//! logged. Matched by name without case or separators (`X-Api-Key`,
//! `api.key`, `api key` and `apiKey` all read `apikey`: PHP turns `.` and
//! spaces into `_`, frameworks ignore case): the configured API-key
//! parameters, names that are credentials whole (`key`, `code`, `sig`),
//! and names that end as one does (`session_token`, `x-api-key`,
//! `private_key`, AWS's `X-Amz-Signature`). Redacting a harmless
//! `next_page_token` costs a log reader little; logging a key costs more.

pub const REDACTED: &str = "<redacted>";

/// Names that are a credential as a whole (compacted: letters and digits only).
const WHOLE: &[&str] = &[
    "auth",
    "authorization",
    "bearer",
    "code",
    "jwt",
    "key",
    "pass",
    // Short spellings of a password (`pwd` in ASP and SQL connection strings).
    "pw",
    "pwd",
    "sig",
    "session",
    "sid",
    "otp",
    "pin",
    // SAML's signed assertion and artifact, CAS's service ticket: each a
    // login for whoever replays it.
    "samlresponse",
    "samlart",
    "ticket",
];

/// Endings of names that say `token` but carry a position, not a
/// credential (`pageToken`, `next_token`): kept, so pagination stays
/// readable in the log.
const PAGING: &[&str] = &["pagetoken", "nexttoken", "prevtoken", "previoustoken", "continuationtoken", "cursortoken"];

/// Endings that make a name a credential (`apitoken`, `clientsecret`, `xapikey`).
const ENDINGS: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "apikey",
    "signature",
    "credential",
    "credentials",
    "privatekey",
    "accesskey",
    "secretkey",
    "sessionid",
    "sessid",
    "sessionkey",
    "accesskeyid",
    "passphrase",
    "authkey",
    // OAuth's JWT-bearer grant and client authentication (`assertion`, `client_assertion`).
    "assertion",
];

/// The parameter names whose values are never logged.
#[derive(Debug, Clone, Default)]
pub struct Redact {
    extra: Vec<String>,
}

impl Redact {
    /// `extra`: the API-key query parameters the config names.
    pub fn new(extra: impl IntoIterator<Item = String>) -> Redact {
        Redact { extra: extra.into_iter().map(|s| String::from_utf8_lossy(&compact(s.as_bytes())).into()).collect() }
    }

    fn secret(&self, name: &[u8]) -> bool {
        // A percent-encoded name is compared decoded enough to catch `%6Bey`-style dodges.
        let decoded = decoded_name(name);
        // `apikey%3DKEY`: a service that decodes before splitting reads the
        // pair `apikey` = `KEY`; the name is what comes before that `=`.
        // PHP ends a name at a NUL (`k%00x` is `k`), as `api_key` reads it.
        let decoded = match decoded.iter().position(|&b| b == b'=' || b == 0) {
            Some(end) => smallvec::SmallVec::from_slice(&decoded[..end]),
            None => decoded,
        };
        let is = |part: &[u8]| {
            let part = compact(part);
            WHOLE.iter().any(|n| n.as_bytes() == &part[..])
                || ENDINGS.iter().any(|n| part.ends_with(n.as_bytes()))
                    && !PAGING.iter().any(|n| part.ends_with(n.as_bytes()))
                || self.extra.iter().any(|n| n.as_bytes() == &part[..])
        };
        // The PHP/Rails forms: `api_key[]`, `user[password]`: the name
        // before the brackets, and each key inside them; and the whole name,
        // for a `[` without its `]`, which PHP reads as `_` (`api[key`).
        is(&decoded) || decoded.split(|&b| b == b'[' || b == b']').any(|part| !part.is_empty() && is(part))
    }

    /// `query` with every secret parameter's value replaced. Parameters are
    /// split at `&` and at `;` (the separator HTML 4 recommended, which
    /// many servers still read). Bytes, as they came: the log escapes them.
    pub fn query(&self, query: &[u8], out: &mut Vec<u8>) {
        let mut pairs = query.split(|&b| b == b'&' || b == b';').peekable();
        let mut at = 0;
        while let Some(pair) = pairs.next() {
            match pair.iter().position(|&b| b == b'=') {
                // The name itself holds an encoded `=` (and so part of the secret): all of it goes.
                Some(eq) if self.secret(&pair[..eq]) && decoded_name(&pair[..eq]).contains(&b'=') => {
                    out.extend_from_slice(REDACTED.as_bytes());
                }
                Some(eq) if self.secret(&pair[..eq]) => {
                    out.extend_from_slice(&pair[..=eq]);
                    out.extend_from_slice(REDACTED.as_bytes());
                }
                None if self.secret(pair) && decoded_name(pair).contains(&b'=') => {
                    out.extend_from_slice(REDACTED.as_bytes());
                }
                _ => out.extend_from_slice(pair),
            }
            at += pair.len();
            if pairs.peek().is_some() {
                out.push(query[at]);
                at += 1;
            }
        }
    }

    /// A path with the values of its parameters (`;jsessionid=…`, Java
    /// servers' session in the URL, and any other `;name=value`) replaced;
    /// the common path, with no `;`, copied as it is.
    pub fn path(&self, path: &[u8], out: &mut Vec<u8>) {
        if !path.contains(&b';') {
            out.extend_from_slice(path);
            return;
        }
        let mut in_value = false;
        let mut in_parameter = false;
        for &b in path {
            match b {
                b'/' => (in_parameter, in_value) = (false, false),
                b';' => (in_parameter, in_value) = (true, false),
                b'=' if in_parameter && !in_value => {
                    out.push(b'=');
                    out.extend_from_slice(REDACTED.as_bytes());
                    in_value = true;
                    continue;
                }
                _ => {}
            }
            if !in_value {
                out.push(b);
            }
        }
    }

    /// A URL (a `Referer`) with its user part (`crate::http::user_part`),
    /// its path's `;` parameter values, and the values of secret parameters
    /// in its query and its fragment (OAuth's implicit flow puts
    /// `#access_token=…` there), replaced.
    pub fn url(&self, url: &[u8], out: &mut Vec<u8>) {
        let (before_fragment, fragment) = split_at_byte(url, b'#');
        let (base, query) = split_at_byte(before_fragment, b'?');
        match crate::http::user_part(base) {
            // Its path's `;` parameters too (`;jsessionid=…`), as `url.path`'s.
            Some(user) => {
                out.extend_from_slice(&base[..user.start]);
                out.extend_from_slice(REDACTED.as_bytes());
                self.path(&base[user.end..], out);
            }
            None => self.path(base, out),
        }
        if let Some(q) = query {
            out.push(b'?');
            self.query(q, out);
        }
        if let Some(f) = fragment {
            out.push(b'#');
            self.query(f, out);
        }
    }
}

/// What comes before the first `at` byte, and what after it (if it is there).
fn split_at_byte(s: &[u8], at: u8) -> (&[u8], Option<&[u8]>) {
    match s.iter().position(|&b| b == at) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    }
}

/// On the stack for any name a request really uses (two allocations a
/// parameter before: every logged query paid them).
/// A name's letters and digits, lower case (`X-Api-Key` -> `xapikey`).
fn compact(name: &[u8]) -> smallvec::SmallVec<[u8; 64]> {
    name.iter().filter(|b| b.is_ascii_alphanumeric()).map(u8::to_ascii_lowercase).collect()
}

/// A parameter name as a service that decodes it more than once reads it
/// (`%2561pikey` is `%61pikey`, then `apikey`): decoded up to three times.
fn decoded_name(name: &[u8]) -> smallvec::SmallVec<[u8; 64]> {
    let mut decoded = percent_decoded_lower(name);
    for _ in 0..2 {
        if !decoded.contains(&b'%') {
            break;
        }
        decoded = percent_decoded_lower(&decoded);
    }
    decoded
}

fn percent_decoded_lower(b: &[u8]) -> smallvec::SmallVec<[u8; 64]> {
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
        r.query(b"page=2&access_token=abc&x-api-key=k1&%6Bey=k2&flag&Token=t", &mut out);
        assert_eq!(out, b"page=2&access_token=<redacted>&x-api-key=<redacted>&%6Bey=<redacted>&flag&Token=<redacted>");
        // Spellings and names of credentials in the wild, whatever the separators.
        let r = Redact::default();
        let mut out = Vec::new();
        r.query(
            b"x-api-key=1&api_token=2&session_token=3&private_key=4&bearer=5&apiKey=6&api.key=7&api+key=8\
              &%20api_key=9&X-Amz-Signature=10&PHPSESSID=11&monkey=ok&sort=ok&page_size=ok",
            &mut out,
        );
        let shown = String::from_utf8(out).unwrap();
        assert_eq!(shown.matches(REDACTED).count(), 11, "{shown}");
        assert!(shown.ends_with("&monkey=ok&sort=ok&page_size=ok"), "{shown}");
        let mut out = Vec::new();
        r.query(b"pageToken=p&next_token=n&sessionkey=s&awsAccessKeyId=a", &mut out);
        assert_eq!(out, b"pageToken=p&next_token=n&sessionkey=<redacted>&awsAccessKeyId=<redacted>");
        // Short and long spellings of a password, and keys called `authkey`.
        let mut out = Vec::new();
        r.query(b"pwd=1&PW=2&passphrase=3&ssh_passphrase=4&authkey=5&x-authkey=6&pwdump=ok&power=ok", &mut out);
        let shown = String::from_utf8(out).unwrap();
        assert_eq!(shown.matches(REDACTED).count(), 6, "{shown}");
        assert!(shown.ends_with("&pwdump=ok&power=ok"), "{shown}");
        // PHP reads a `[` without its `]` as `_`: `api[key_v2` is `api_key_v2`.
        let r = Redact::new(["api_key_v2".to_string()]);
        let mut out = Vec::new();
        r.query(b"api[key_v2=k1&api%5Bkey_v2=k2&api[v2]=ok", &mut out);
        assert_eq!(out, b"api[key_v2=<redacted>&api%5Bkey_v2=<redacted>&api[v2]=ok");
        // A configured name is compared the same way.
        let r = Redact::new(["X_Tenant_Pass".to_string()]);
        let mut out = Vec::new();
        r.query(b"x-tenant.pass=1", &mut out);
        assert_eq!(out, b"x-tenant.pass=<redacted>");
    }

    #[test]
    fn names_cut_at_a_nul_are_found() {
        let r = Redact::new(["k".to_string()]);
        let mut out = Vec::new();
        r.query(b"k%00x=SECRET5&kx=ok&password%00=P", &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "k%00x=<redacted>&kx=ok&password%00=<redacted>");
    }

    #[test]
    fn names_encoded_twice_or_holding_an_encoded_equals_sign_are_found() {
        let r = Redact::new(["apikey".to_string()]);
        let mut out = Vec::new();
        r.query(b"%2561pikey=K1&apikey%3DK2&page=2&x%253Dy=ok&apikey%3DK3=more&%252561pikey=K4", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "%2561pikey=<redacted>&<redacted>&page=2&x%253Dy=ok&<redacted>&%252561pikey=<redacted>"
        );
    }

    #[test]
    fn semicolons_brackets_userinfo_and_fragments() {
        let r = Redact::default();
        let mut out = Vec::new();
        r.query(b"a=1;password=V7&api_key[]=V8&user[password]=V9&list[]=1;", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a=1;password=<redacted>&api_key[]=<redacted>&user[password]=<redacted>&list[]=1;"
        );
        let mut out = Vec::new();
        r.url(b"http://user:R3@a.example:8080/p?q=1&token=T#access_token=F&state=s", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "http://<redacted>@a.example:8080/p?q=1&token=<redacted>#access_token=<redacted>&state=s"
        );
        let mut out = Vec::new();
        r.url(b"https://a.example/x@y?z=1", &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "https://a.example/x@y?z=1", "an @ in the path is no user part");
        // A session id in the path's parameters, as `url.path` has it.
        let mut out = Vec::new();
        r.url(b"http://h/a;jsessionid=PW9/b?x=1", &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "http://h/a;jsessionid=<redacted>/b?x=1");
    }

    #[test]
    fn a_user_part_is_found_however_the_url_is_written() {
        let r = Redact::default();
        let shown = |url: &[u8]| {
            let mut out = Vec::new();
            r.url(url, &mut out);
            out
        };
        // A network-path reference (RFC 3986 §4.2), the slashes and
        // backslashes browsers accept, no slashes at all.
        for (url, want) in [
            (&b"//alice:PW1@example.com/p"[..], &b"//<redacted>@example.com/p"[..]),
            (b"https:\\\\alice:PW2@example.com/p", b"https:\\\\<redacted>@example.com/p"),
            (b"https:///alice:PW3@example.com", b"https:///<redacted>@example.com"),
            (b"https:alice:PW4@example.com", b"https:<redacted>@example.com"),
            (b"/local/a@b", b"/local/a@b"),
            // A `\` is a password's byte for schemes that are not special.
            (b"redis://:REDIS\\PASS@127.0.0.1:6379/0", b"redis://<redacted>@127.0.0.1:6379/0"),
            (b"https://alice:PW5\\x@example.com/p", b"https://<redacted>@example.com/p"),
        ] {
            assert_eq!(String::from_utf8_lossy(&shown(url)), String::from_utf8_lossy(want));
        }
        // Bytes that are not UTF-8 are kept as they came (the log escapes them).
        assert_eq!(shown(b"https://h/\xff?token=T"), b"https://h/\xff?token=<redacted>");
        assert_eq!(shown(b"r\x80"), b"r\x80");
        let mut out = Vec::new();
        r.query(b"a&&b=1;", &mut out);
        assert_eq!(out, b"a&&b=1;", "separators kept as they were");
    }
}

#[cfg(test)]
mod path_tests {
    use super::Redact;

    #[test]
    fn path_parameters_lose_their_values() {
        let path = |p: &str| {
            let mut out = Vec::new();
            Redact::default().path(p.as_bytes(), &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(path("/a/b"), "/a/b");
        assert_eq!(path("/ok/x;jsessionid=PathSessSecret1"), "/ok/x;jsessionid=<redacted>");
        assert_eq!(path("/a;v=1;s=2/b;t=3"), "/a;v=<redacted>;s=<redacted>/b;t=<redacted>");
        assert_eq!(path("/a;flag/b=c"), "/a;flag/b=c");
    }
}
