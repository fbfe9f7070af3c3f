//! The rate-limit fields of one response: `RateLimit-Policy` and
//! `RateLimit` (draft-ietf-httpapi-ratelimit-headers), and the older
//! `X-RateLimit-Limit/Remaining/Reset`. Kept as numbers until written: the
//! own codec writes the lines straight into the head, so a limited response
//! allocates no value; a map gets `HeaderValue`s (`insert_into`). A value
//! and a map insert per field were most of what a limited route cost
//! (callgrind, BENCHMARKS.md).

use http::{HeaderMap, HeaderName, HeaderValue};

use super::field;

static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
static X_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
static X_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
static X_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

#[derive(Debug, Clone)]
pub struct LimitFields {
    /// `RateLimit-Policy` and `RateLimit`.
    pub ietf: bool,
    /// `X-RateLimit-Limit`, `-Remaining` and `-Reset`.
    pub legacy: bool,
    /// The limit's `RateLimit-Policy` value, made once per limit
    /// (`"name";q=…;w=…`); `RateLimit` starts with the same quoted name.
    pub policy: HeaderValue,
    pub limit: u64,
    pub remaining: u64,
    pub reset_secs: u64,
}

/// One of the fields, by what its value is made of (and its index in `ALL`).
#[derive(Debug, Clone, Copy)]
pub enum Field {
    Policy,
    State,
    Limit,
    Remaining,
    Reset,
}

/// Every field with its name, in the order they are written.
pub static ALL: [(&HeaderName, Field); 5] = [
    (&RATELIMIT_POLICY, Field::Policy),
    (&RATELIMIT, Field::State),
    (&X_LIMIT, Field::Limit),
    (&X_REMAINING, Field::Remaining),
    (&X_RESET, Field::Reset),
];

impl LimitFields {
    /// The fields set, with their names, in the order they are written.
    pub fn fields(&self) -> impl Iterator<Item = (&'static HeaderName, Field)> {
        let (ietf, legacy) = ALL.split_at(2);
        let ietf = ietf.iter().copied().filter(|_| self.ietf);
        ietf.chain(legacy.iter().copied().filter(|_| self.legacy))
    }

    /// Whether `name` is one of the fields set (an upstream's line of that
    /// name is replaced). Most names have none of their lengths, which is
    /// checked inline; the comparison is not (inlined into the raw-lines
    /// loop, it cost every response ~100 instructions, limited or not).
    #[inline]
    pub fn sets(&self, name: &HeaderName) -> bool {
        // "ratelimit" 9, "ratelimit-policy" 16, "x-ratelimit-limit"/"-reset" 17, "-remaining" 21.
        matches!(name.as_str().len(), 9 | 16 | 17 | 21) && self.sets_named(name)
    }

    #[inline(never)]
    fn sets_named(&self, name: &HeaderName) -> bool {
        self.fields().any(|(n, _)| n == name)
    }

    /// Appends `field`'s value.
    pub fn write_value(&self, field: Field, out: &mut Vec<u8>) {
        let mut digits = [0u8; 20];
        match field {
            Field::Policy => out.extend_from_slice(self.policy.as_bytes()),
            Field::State => {
                // `"name";r=…;t=…`: the policy's quoted name (its `"` and
                // `\` escaped), then the state.
                let policy = self.policy.as_bytes();
                let name_end = quoted_string_end(policy);
                structured_item(out, &policy[..name_end], [(b'r', self.remaining), (b't', self.reset_secs)]);
            }
            Field::Limit => out.extend_from_slice(field::decimal(self.limit, &mut digits)),
            Field::Remaining => out.extend_from_slice(field::decimal(self.remaining, &mut digits)),
            Field::Reset => out.extend_from_slice(field::decimal(self.reset_secs, &mut digits)),
        }
    }

    /// Appends the line `name: value` of `field`.
    #[inline(never)]
    pub fn write_line(&self, name: &HeaderName, field: Field, out: &mut Vec<u8>) {
        out.reserve(name.as_str().len() + self.policy.len() + 48);
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        self.write_value(field, out);
        out.extend_from_slice(b"\r\n");
    }

    /// Sets every field in a map, replacing what it had of those names.
    pub fn insert_into(&self, headers: &mut HeaderMap) {
        for (name, field) in self.fields() {
            let mut value = Vec::with_capacity(self.policy.len() + 48);
            self.write_value(field, &mut value);
            if let Ok(value) = HeaderValue::from_maybe_shared(bytes::Bytes::from(value)) {
                headers.insert(name.clone(), value);
            }
        }
    }
}

/// Appends a structured-field item (RFC 9651) with two integer parameters:
/// `item;k=n;k=n`. `item` is already serialized (e.g. a quoted string).
pub fn structured_item(out: &mut Vec<u8>, item: &[u8], params: [(u8, u64); 2]) {
    // The parameters are put together on the stack and copied once.
    let mut tail = [0u8; 2 * (3 + 20)];
    let mut len = 0;
    for (key, n) in params {
        let mut buf = [0u8; 20];
        let digits = field::decimal(n, &mut buf);
        tail[len..len + 3].copy_from_slice(&[b';', key, b'=']);
        tail[len + 3..len + 3 + digits.len()].copy_from_slice(digits);
        len += 3 + digits.len();
    }
    out.extend_from_slice(item);
    out.extend_from_slice(&tail[..len]);
}

/// The length of the sf-string `"…"` at the start of `value` (RFC 9651
/// §3.3.3: `\` escapes the next byte); 0 when it does not start with one.
fn quoted_string_end(value: &[u8]) -> usize {
    if value.first() != Some(&b'"') {
        return 0;
    }
    let mut i = 1;
    while i < value.len() {
        match value[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_keeps_an_escaped_name_whole() {
        let policy = HeaderValue::from_static(r#""we\"ird\\ name;q=1, \"x\"";q=105;w=1"#);
        let f = LimitFields { ietf: true, legacy: false, policy, limit: 105, remaining: 5, reset_secs: 1 };
        let mut out = Vec::new();
        f.write_value(Field::State, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), r#""we\"ird\\ name;q=1, \"x\"";r=5;t=1"#);
    }

    fn fields(ietf: bool, legacy: bool) -> LimitFields {
        let policy = HeaderValue::from_static("\"per-ip\";q=100;w=60");
        LimitFields { ietf, legacy, policy, limit: 100, remaining: 97, reset_secs: 42 }
    }

    #[test]
    fn lines_and_map_values_say_the_same() {
        let both = fields(true, true);
        let mut lines = Vec::new();
        for (name, field) in both.fields() {
            both.write_line(name, field, &mut lines);
        }
        assert_eq!(
            String::from_utf8(lines).unwrap(),
            "ratelimit-policy: \"per-ip\";q=100;w=60\r\nratelimit: \"per-ip\";r=97;t=42\r\n\
             x-ratelimit-limit: 100\r\nx-ratelimit-remaining: 97\r\nx-ratelimit-reset: 42\r\n"
        );
        let mut map = HeaderMap::new();
        map.insert("ratelimit", HeaderValue::from_static("from-upstream"));
        both.insert_into(&mut map);
        assert_eq!(map["ratelimit"], "\"per-ip\";r=97;t=42");
        assert_eq!(map["x-ratelimit-reset"], "42");
        assert_eq!(map.len(), 5);
    }

    #[test]
    fn only_the_fields_set_are_claimed() {
        let ietf = fields(true, false);
        assert!(ietf.sets(&RATELIMIT) && ietf.sets(&RATELIMIT_POLICY));
        assert!(!ietf.sets(&X_LIMIT) && !ietf.sets(&X_REMAINING));
        let legacy = fields(false, true);
        assert!(legacy.sets(&X_REMAINING) && legacy.sets(&X_RESET) && !legacy.sets(&RATELIMIT));
        assert!(!fields(true, true).sets(&HeaderName::from_static("ratelimits")));
        assert!(!fields(true, true).sets(&http::header::CONTENT_TYPE));
    }
}
