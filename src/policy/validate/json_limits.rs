//! JSON threat protection (Apigee's `JSONThreatProtection`): a body is
//! checked against size limits and for well-formedness in one pass over its
//! bytes, before anything parses it into a value. A hostile document (a
//! megabyte of `[[[[`, a million keys, a 10 MB number, duplicate keys)
//! costs one linear scan and a bounded stack, and is refused with where it
//! broke the rule.

use std::borrow::Cow;
use std::collections::HashSet;

/// The limits of one route (each enforced while scanning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonLimits {
    /// Nesting of arrays and objects.
    pub max_depth: u32,
    /// Members of one object.
    pub max_entries: u32,
    /// Elements of one array.
    pub max_array: u32,
    /// Bytes of one string as written (escapes included), keys too.
    pub max_string: u64,
    /// Characters of one number.
    pub max_number_length: u32,
}

/// The safe defaults every validated route gets.
impl Default for JsonLimits {
    fn default() -> Self {
        JsonLimits {
            max_depth: 64,
            max_entries: 10_000,
            max_array: 10_000,
            max_string: 64 << 10,
            max_number_length: 64,
        }
    }
}

/// Why a document was refused, and where (a JSON pointer to the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub pointer: String,
    pub detail: String,
}

/// Objects with more members than this get a hash set for the duplicate check.
const LINEAR_KEYS: usize = 16;

struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
    limits: &'a JsonLimits,
    /// The path to the value being read, for the pointer of a violation.
    path: Vec<Step<'a>>,
}

#[derive(Clone, Copy)]
enum Step<'a> {
    Key(&'a [u8]),
    Index(u32),
}

type Scan<T> = Result<T, Violation>;

/// Checks `bytes` as one JSON document within `limits`.
pub fn check(bytes: &[u8], limits: &JsonLimits) -> Result<(), Violation> {
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(Violation {
            pointer: String::new(),
            detail: format!("the body is not valid UTF-8 (at byte {})", e.valid_up_to()),
        });
    }
    let mut s = Scanner { bytes, at: 0, limits, path: Vec::new() };
    s.skip_space();
    s.value(0)?;
    s.skip_space();
    if s.at != bytes.len() {
        return Err(s.fail(format!("unexpected data after the JSON document (at byte {})", s.at)));
    }
    Ok(())
}

impl<'a> Scanner<'a> {
    fn pointer(&self) -> String {
        let mut out = String::new();
        for step in &self.path {
            out.push('/');
            match step {
                Step::Key(k) => {
                    let key = unescape(k);
                    out.push_str(&String::from_utf8_lossy(&key).replace('~', "~0").replace('/', "~1"));
                }
                Step::Index(i) => out.push_str(&i.to_string()),
            }
        }
        out
    }

    fn fail(&self, detail: impl Into<String>) -> Violation {
        Violation { pointer: self.pointer(), detail: detail.into() }
    }

    fn syntax(&self) -> Violation {
        match self.bytes.get(self.at) {
            Some(b) => self.fail(format!("invalid JSON at byte {} (`{}`)", self.at, char::from(*b).escape_default())),
            None => self.fail("invalid JSON: the document ends early"),
        }
    }

    fn skip_space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    fn value(&mut self, depth: u32) -> Scan<()> {
        match self.bytes.get(self.at) {
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().map(|_| ()),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            _ => Err(self.syntax()),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Scan<()> {
        if self.bytes[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(())
        } else {
            Err(self.syntax())
        }
    }

    fn nest(&self, depth: u32) -> Scan<()> {
        if depth > self.limits.max_depth {
            return Err(self.fail(format!("nested deeper than {} levels", self.limits.max_depth)));
        }
        Ok(())
    }

    fn object(&mut self, depth: u32) -> Scan<()> {
        self.nest(depth)?;
        self.at += 1;
        self.skip_space();
        if self.bytes.get(self.at) == Some(&b'}') {
            self.at += 1;
            return Ok(());
        }
        // Keys as compared (escapes resolved), borrowed from the body unless
        // they had an escape: no copy per key.
        let mut keys: Vec<Cow<'a, [u8]>> = Vec::new();
        let mut many: Option<HashSet<Cow<'a, [u8]>>> = None;
        loop {
            if self.bytes.get(self.at) != Some(&b'"') {
                return Err(self.syntax());
            }
            let key = self.string()?;
            if keys.len() as u64 + many.as_ref().map_or(0, |m| m.len() as u64) >= u64::from(self.limits.max_entries) {
                return Err(self.fail(format!("an object with more than {} members", self.limits.max_entries)));
            }
            self.path.push(Step::Key(key));
            let duplicate = match &mut many {
                Some(set) => !set.insert(unescape(key)),
                None => {
                    let plain = unescape(key);
                    let dup = keys.contains(&plain);
                    keys.push(plain);
                    if keys.len() > LINEAR_KEYS {
                        many = Some(keys.drain(..).collect());
                    }
                    dup
                }
            };
            if duplicate {
                return Err(self.fail("a duplicate member name"));
            }
            self.skip_space();
            if self.bytes.get(self.at) != Some(&b':') {
                return Err(self.syntax());
            }
            self.at += 1;
            self.skip_space();
            self.value(depth)?;
            self.path.pop();
            if self.next_or_close(b'}')? {
                return Ok(());
            }
        }
    }

    /// After a member or element: `,` (another follows: `false`) or the
    /// container's `close` (`true`).
    fn next_or_close(&mut self, close: u8) -> Scan<bool> {
        self.skip_space();
        match self.bytes.get(self.at) {
            Some(b',') => {
                self.at += 1;
                self.skip_space();
                Ok(false)
            }
            Some(&b) if b == close => {
                self.at += 1;
                Ok(true)
            }
            _ => Err(self.syntax()),
        }
    }

    fn array(&mut self, depth: u32) -> Scan<()> {
        self.nest(depth)?;
        self.at += 1;
        self.skip_space();
        if self.bytes.get(self.at) == Some(&b']') {
            self.at += 1;
            return Ok(());
        }
        let mut index = 0u32;
        loop {
            if index >= self.limits.max_array {
                return Err(self.fail(format!("an array with more than {} elements", self.limits.max_array)));
            }
            self.path.push(Step::Index(index));
            self.value(depth)?;
            self.path.pop();
            index += 1;
            if self.next_or_close(b']')? {
                return Ok(());
            }
        }
    }

    /// A string token; returns its contents as written (escapes kept).
    fn string(&mut self) -> Scan<&'a [u8]> {
        let start = self.at + 1;
        let mut i = start;
        loop {
            // Plain bytes in one step (the input is valid UTF-8 already).
            let run = memchr::memchr3(b'"', b'\\', b'\n', &self.bytes[i..]).unwrap_or(self.bytes.len() - i);
            if let Some(c) = self.bytes[i..i + run].iter().position(|&b| b < 0x20) {
                self.at = i + c;
                return Err(self.fail("a control character inside a string"));
            }
            i += run;
            if (i - start) as u64 > self.limits.max_string {
                self.at = i;
                return Err(self.fail(format!("a string longer than {} bytes", self.limits.max_string)));
            }
            match self.bytes.get(i) {
                Some(b'"') => {
                    self.at = i + 1;
                    return Ok(&self.bytes[start..i]);
                }
                Some(b'\\') => {
                    let ok = match self.bytes.get(i + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            i += 2;
                            true
                        }
                        Some(b'u') => {
                            let hex = self.bytes.get(i + 2..i + 6);
                            let valid = hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
                            i += 6;
                            valid
                        }
                        _ => false,
                    };
                    if !ok {
                        self.at = i.min(self.bytes.len());
                        return Err(self.fail("an invalid escape inside a string"));
                    }
                }
                Some(_) => {
                    self.at = i;
                    return Err(self.fail("a control character inside a string"));
                }
                None => {
                    self.at = self.bytes.len();
                    return Err(self.syntax());
                }
            }
        }
    }

    fn number(&mut self) -> Scan<()> {
        let start = self.at;
        let b = self.bytes;
        let mut i = start;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
            _ => {
                self.at = i;
                return Err(self.syntax());
            }
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            let digits = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == digits {
                self.at = i;
                return Err(self.syntax());
            }
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            let digits = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == digits {
                self.at = i;
                return Err(self.syntax());
            }
        }
        if (i - start) as u64 > u64::from(self.limits.max_number_length) {
            return Err(self.fail(format!("a number longer than {} characters", self.limits.max_number_length)));
        }
        self.at = i;
        Ok(())
    }
}

/// A key's bytes with its escapes resolved (only keys with a backslash are copied).
fn unescape(raw: &[u8]) -> Cow<'_, [u8]> {
    if !raw.contains(&b'\\') {
        return Cow::Borrowed(raw);
    }
    let quoted = [b"\"", raw, b"\""].concat();
    match serde_json::from_slice::<String>(&quoted) {
        Ok(s) => Cow::Owned(s.into_bytes()),
        Err(_) => Cow::Borrowed(raw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limits() -> JsonLimits {
        JsonLimits { max_depth: 3, max_entries: 3, max_array: 4, max_string: 5, max_number_length: 6 }
    }

    fn refused(doc: &str) -> Violation {
        check(doc.as_bytes(), &limits()).expect_err(doc)
    }

    #[test]
    fn each_limit_trips_exactly_past_its_boundary() {
        let l = limits();
        for ok in [
            r#"[[[1]]]"#,
            r#"{"a":1,"b":2,"c":3}"#,
            r#"[1,2,3,4]"#,
            r#""abcde""#,
            r#"{"abcde":123456}"#,
            r#"-1.5e3"#,
            r#" { "a" : [ true , false , null ] } "#,
            r#""\n\t""#,
        ] {
            assert_eq!(check(ok.as_bytes(), &l), Ok(()), "{ok}");
        }
        assert_eq!(refused(r#"[[[[1]]]]"#).pointer, "/0/0/0");
        assert!(refused(r#"[[[[1]]]]"#).detail.contains("3 levels"));
        assert_eq!(refused(r#"{"a":1,"b":2,"c":3,"d":4}"#).detail, "an object with more than 3 members");
        assert_eq!(refused(r#"{"x":[1,2,3,4,5]}"#).pointer, "/x", "the array that is too long");
        assert_eq!(refused(r#"["abcdef"]"#).pointer, "/0");
        assert!(refused(r#"{"abcdef":1}"#).detail.contains("string longer than 5"));
        assert!(refused(r#"[1234567]"#).detail.contains("number longer than 6"));
        assert_eq!(
            refused(r#"{"a":{"k":1,"k":2}}"#),
            Violation { pointer: "/a/k".into(), detail: "a duplicate member name".into() }
        );
        let escaped = check(br#"{"a":1,"\u0061":2}"#, &JsonLimits::default()).unwrap_err();
        assert_eq!(escaped.detail, "a duplicate member name", "escapes do not hide a duplicate");
    }

    #[test]
    fn malformed_documents_are_refused() {
        let l = JsonLimits::default();
        for bad in [
            "",
            "{",
            "[1,]",
            "{\"a\":}",
            "{\"a\" 1}",
            "01",
            "1.",
            "1e",
            "-",
            "+1",
            "tru",
            "nul",
            "[1 2]",
            "\"abc",
            "\"a\\x\"",
            "\"\\u12\"",
            "\"a\tb\"",
            "{} {}",
            "{'a':1}",
            "[1]x",
            "{\"a\":1,}",
            "NaN",
        ] {
            assert!(check(bad.as_bytes(), &l).is_err(), "{bad:?} was accepted");
        }
        assert!(check(b"\"\xff\"", &l).unwrap_err().detail.contains("UTF-8"));
    }

    #[test]
    fn hostile_bodies_cost_one_bounded_pass() {
        let l = JsonLimits::default();
        let deep = "[".repeat(1 << 20);
        assert!(check(deep.as_bytes(), &l).unwrap_err().detail.contains("64 levels"));
        let mut wide = String::from("{");
        for i in 0..1_000_000 {
            wide.push_str(&format!("\"k{i}\":0,"));
        }
        wide.push_str("\"end\":0}");
        assert!(check(wide.as_bytes(), &l).unwrap_err().detail.contains("10000 members"));
        let mut dup = String::from("{");
        for i in 0..9_000 {
            dup.push_str(&format!("\"k{i}\":0,"));
        }
        dup.push_str("\"k17\":1}");
        assert_eq!(check(dup.as_bytes(), &l).unwrap_err().pointer, "/k17");
    }

    /// Random JSON values, serialized: what serde_json accepts, the scanner
    /// accepts within generous limits, and it agrees on the limits it enforces.
    fn json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(serde_json::Value::from),
            ".{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(6, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                prop::collection::btree_map(".{0,6}", inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Whether serde_json reads `bytes` as JSON, counting a number beyond
    /// f64's range as JSON (the grammar allows it; serde_json then refuses
    /// it, and so does the validator after this scan).
    fn serde_json_grammar(bytes: &[u8]) -> bool {
        match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(_) => true,
            Err(e) => e.to_string().contains("number out of range"),
        }
    }

    fn depth(v: &serde_json::Value) -> u32 {
        match v {
            serde_json::Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
            serde_json::Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }

    proptest! {
        #[test]
        fn valid_documents_pass_and_limits_hold(v in json(), max_depth in 0u32..8) {
            let text = serde_json::to_string(&v).unwrap();
            let roomy = JsonLimits { max_depth: 64, max_entries: 100, max_array: 100, max_string: 1 << 20, max_number_length: 64 };
            prop_assert_eq!(check(text.as_bytes(), &roomy), Ok(()));
            let tight = JsonLimits { max_depth, ..roomy };
            prop_assert_eq!(check(text.as_bytes(), &tight).is_ok(), depth(&v) <= max_depth);
        }

        #[test]
        fn random_bytes_never_panic_and_never_pass_invalid_json(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let ours = check(&bytes, &JsonLimits::default()).is_ok();
            let theirs = serde_json_grammar(&bytes);
            // serde_json accepts duplicate keys; everything we accept, it accepts.
            prop_assert!(!ours || theirs, "accepted invalid JSON {:?}", String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn mutated_documents_never_pass_invalid_json(v in json(), cut in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let mut text = serde_json::to_string(&v).unwrap().into_bytes();
            let i = cut.index(text.len().max(1)).min(text.len().saturating_sub(1));
            if !text.is_empty() { text[i] = byte; }
            let ours = check(&text, &JsonLimits::default()).is_ok();
            let theirs = serde_json_grammar(&text);
            prop_assert!(!ours || theirs, "accepted invalid JSON {:?}", String::from_utf8_lossy(&text));
        }
    }
}
