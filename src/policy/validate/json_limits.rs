//! JSON threat protection (Apigee's `JSONThreatProtection`) and the parse
//! of a validated body, in one pass: each limit is checked on the bytes
//! before the value it guards is built, so a hostile document (a megabyte
//! of `[[[[`, a million keys, a 10 MB number, duplicate keys) costs one
//! linear pass and a bounded stack, and is refused with where it broke the
//! rule. One pass rather than a scan then `serde_json::from_slice`: the two
//! walks of the body cost about as much each (BENCHMARKS.md, issue 12).

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashSet;

use super::tape::{Doc, Entry};

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

/// Up to this many members, a new key is looked for among the earlier
/// ones in place; past it, an object's keys go into a set (a hostile
/// object of `max_entries` members stays linear).
const KEYS_SCANNED: u32 = 16;

/// What is wrong with a document; made a [`Violation`] (with its pointer
/// and words) only once, when the scan stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Syntax,
    Depth,
    Members,
    Elements,
    StringLength,
    NumberLength,
    Escape,
    Control,
    Duplicate,
    Range,
    Trailing,
}

/// Whether a fault's pointer names the innermost open container
/// (`Container`) or the member or element being read in it (`Inside`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    Container,
    Inside,
}

type Step<T> = Result<T, (Fault, Reach)>;

/// An array or object being read.
struct Frame {
    /// Its entry in the tape.
    entry: u32,
    /// Members or elements read so far (the index of the one being read).
    count: u32,
    object: bool,
    /// For an object: the entry of the key being read.
    key: u32,
    /// For an object: one bit per key read so far, chosen by its
    /// fingerprint. A new key whose bit is clear is new (most are, so
    /// most keys cost no comparison); one whose bit is set is compared
    /// with the earlier keys, read off the tape.
    seen: u64,
    /// For an object of more than `KEYS_SCANNED` members: its set of
    /// keys in `Scanner::sets`.
    many: Option<u32>,
}

thread_local! {
    /// The scan's stack, kept per thread between bodies (emptied after
    /// each): a body then costs one allocation, its tape.
    static STACK: Cell<Vec<Frame>> = const { Cell::new(Vec::new()) };
}

/// A stack grown past this is not kept (a deep body's room goes back).
const KEPT_FRAMES: usize = 64;

/// One pass over the body, iterative (an explicit stack of open
/// containers, no call per value), so that a passing document costs a
/// few instructions per byte and the pointer of a refused one is read off
/// the stack.
struct Scanner<'a> {
    bytes: &'a [u8],
    /// The same bytes, known to be UTF-8 (strings are sliced from it).
    text: &'a str,
    at: usize,
    limits: JsonLimits,
    doc: Doc<'a>,
    stack: Vec<Frame>,
    /// The key sets of large objects (see `Frame::many`).
    sets: Vec<HashSet<Cow<'a, str>>>,
}

/// Reads `bytes` as one JSON document within `limits`, into a tape that
/// `jsonschema` validates in place.
pub fn read<'a>(bytes: &'a [u8], limits: &JsonLimits) -> Result<Doc<'a>, Violation> {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            return Err(Violation {
                pointer: String::new(),
                detail: format!("the body is not valid UTF-8 (at byte {})", e.valid_up_to()),
            });
        }
    };
    if u32::try_from(bytes.len()).is_err() {
        // Offsets into the body are u32; no route buffers 4 GiB.
        return Err(Violation { pointer: String::new(), detail: "a body of 4 GiB or more".into() });
    }
    let stack = STACK.take();
    let doc = Doc::with_capacity(bytes.len());
    let mut s = Scanner { bytes, text, at: 0, limits: *limits, doc, stack, sets: Vec::new() };
    let result = s.document().map_err(|(fault, reach)| s.violation(fault, reach));
    let Scanner { doc, mut stack, .. } = s;
    if stack.capacity() <= KEPT_FRAMES {
        stack.clear();
        STACK.set(stack);
    }
    result.map(|()| doc)
}

/// Reads `bytes` as [`read`] does, as a `serde_json::Value`.
#[cfg(test)]
pub fn parse(bytes: &[u8], limits: &JsonLimits) -> Result<serde_json::Value, Violation> {
    read(bytes, limits).map(|doc| doc.value_at(0))
}

/// The byte at `at`, or 0 past the end (never valid where a token starts).
#[inline(always)]
fn byte(bytes: &[u8], at: usize) -> u8 {
    bytes.get(at).copied().unwrap_or(0)
}

#[inline(always)]
fn skip_space(bytes: &[u8], mut at: usize) -> usize {
    while let b' ' | b'\t' | b'\n' | b'\r' = byte(bytes, at) {
        at += 1;
    }
    at
}

/// The string token whose opening quote is at `at`: the index of its
/// closing quote and whether it has escapes; or the fault and where.
#[inline(always)]
fn string_token(bytes: &[u8], at: usize, max_string: u64) -> Result<(usize, bool), (Fault, usize)> {
    let start = at + 1;
    let mut i = start;
    let mut escaped = false;
    loop {
        // Plain bytes in one step (the input is valid UTF-8 already).
        i += plain_run(bytes.get(i..).unwrap_or_default());
        if (i - start) as u64 > max_string {
            return Err((Fault::StringLength, i));
        }
        match bytes.get(i) {
            Some(b'"') => return Ok((i, escaped)),
            Some(b'\\') => {
                escaped = true;
                match bytes.get(i + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                    Some(b'u') if bytes.get(i + 2..i + 6).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) => {
                        i += 6
                    }
                    _ => return Err((Fault::Escape, (i + 6).min(bytes.len()))),
                }
            }
            Some(_) => return Err((Fault::Control, i)),
            None => return Err((Fault::Syntax, bytes.len())),
        }
    }
}

impl<'a> Scanner<'a> {
    #[inline(always)]
    fn push(&mut self, entry: Entry<'a>) -> u32 {
        // Fewer entries than body bytes, and the body is under 4 GiB (`read`).
        let at = self.doc.entries.len() as u32;
        self.doc.entries.push(entry);
        at
    }

    /// The whole document. The cursor lives in a local (`self.at` is set
    /// only when the scan stops), so that it stays in a register.
    fn document(&mut self) -> Step<()> {
        let bytes = self.bytes;
        let mut at = 0;
        macro_rules! fail {
            ($fault:expr, $reach:expr, $at:expr) => {{
                self.at = $at;
                return Err(($fault, $reach));
            }};
        }
        'value: loop {
            at = skip_space(bytes, at);
            match byte(bytes, at) {
                open @ (b'{' | b'[') => {
                    if self.stack.len() as u32 >= self.limits.max_depth {
                        fail!(Fault::Depth, Reach::Inside, at);
                    }
                    let object = open == b'{';
                    self.doc.depth = self.doc.depth.max(self.stack.len() as u32 + 1);
                    let entry = self.push(if object {
                        Entry::Object { len: 0, end: 0 }
                    } else {
                        Entry::Array { len: 0, end: 0 }
                    });
                    at = skip_space(bytes, at + 1);
                    if byte(bytes, at) == if object { b'}' } else { b']' } {
                        at += 1;
                        self.close(entry, object, 0);
                    } else {
                        self.stack.push(Frame { entry, count: 0, object, key: u32::MAX, seen: 0, many: None });
                        if object {
                            at = match self.key(at) {
                                Ok(next) => next,
                                Err((fault, reach, where_)) => fail!(fault, reach, where_),
                            };
                        } else if self.limits.max_array == 0 {
                            fail!(Fault::Elements, Reach::Container, at);
                        }
                        continue 'value;
                    }
                }
                b'"' => {
                    let (end, escaped) = match string_token(bytes, at, self.limits.max_string) {
                        Ok(token) => token,
                        Err((fault, where_)) => fail!(fault, Reach::Inside, where_),
                    };
                    match self.string_entry(at + 1, end, escaped) {
                        Some(entry) => self.push(entry),
                        None => fail!(Fault::Escape, Reach::Inside, end),
                    };
                    at = end + 1;
                }
                b'-' | b'0'..=b'9' => {
                    let (entry, end) = match number(bytes, at, self.limits.max_number_length) {
                        Ok(number) => number,
                        Err((fault, where_)) => fail!(fault, Reach::Inside, where_),
                    };
                    self.push(entry);
                    at = end;
                }
                b't' if bytes[at..].starts_with(b"true") => {
                    self.push(Entry::True);
                    at += 4;
                }
                b'f' if bytes[at..].starts_with(b"false") => {
                    self.push(Entry::False);
                    at += 5;
                }
                b'n' if bytes[at..].starts_with(b"null") => {
                    self.push(Entry::Null);
                    at += 4;
                }
                _ => fail!(Fault::Syntax, Reach::Inside, at),
            }
            // After a value: the next member or element, or close containers.
            loop {
                let Some(top) = self.stack.last_mut() else {
                    at = skip_space(bytes, at);
                    if at != bytes.len() {
                        fail!(Fault::Trailing, Reach::Container, at);
                    }
                    return Ok(());
                };
                top.count += 1;
                let (object, count) = (top.object, top.count);
                at = skip_space(bytes, at);
                match byte(bytes, at) {
                    b',' => {
                        at += 1;
                        if object {
                            at = match self.key(at) {
                                Ok(next) => next,
                                Err((fault, reach, where_)) => fail!(fault, reach, where_),
                            };
                        } else if count >= self.limits.max_array {
                            fail!(Fault::Elements, Reach::Container, at);
                        }
                        continue 'value;
                    }
                    b'}' if object => {}
                    b']' if !object => {}
                    _ => fail!(Fault::Syntax, Reach::Container, at),
                }
                at += 1;
                if let Some(frame) = self.stack.pop() {
                    self.close(frame.entry, object, count);
                }
            }
        }
    }

    /// Writes a finished container's length and end into its entry.
    fn close(&mut self, entry: u32, object: bool, len: u32) {
        let end = self.doc.entries.len() as u32;
        self.doc.entries[entry as usize] = if object { Entry::Object { len, end } } else { Entry::Array { len, end } };
    }

    /// A member's name and its `:` from `at`, in the object on top of the
    /// stack; where its value starts, or the fault, its reach and where.
    #[inline(always)]
    fn key(&mut self, at: usize) -> Result<usize, (Fault, Reach, usize)> {
        let bytes = self.bytes;
        let at = skip_space(bytes, at);
        if byte(bytes, at) != b'"' {
            return Err((Fault::Syntax, Reach::Container, at));
        }
        let (end, escaped) =
            string_token(bytes, at, self.limits.max_string).map_err(|(f, i)| (f, Reach::Container, i))?;
        if self.stack.last().is_none_or(|top| top.count >= self.limits.max_entries) {
            return Err((Fault::Members, Reach::Container, end + 1));
        }
        let entry = self.string_entry(at + 1, end, escaped).ok_or((Fault::Escape, Reach::Container, end))?;
        let print = match entry {
            // Unescaped: read off the body in one load where eight bytes follow.
            Entry::Str(_) => fingerprint_at(bytes, at + 1, end),
            _ => fingerprint(self.doc.decoded.last().map_or("", String::as_str)),
        };
        let key = self.push(entry);
        // Refused before its value is read.
        if self.is_duplicate(key, print) {
            return Err((Fault::Duplicate, Reach::Inside, at));
        }
        let at = skip_space(bytes, end + 1);
        if byte(bytes, at) != b':' {
            return Err((Fault::Syntax, Reach::Inside, at));
        }
        Ok(at + 1)
    }

    /// Whether the key at entry `key` (its fingerprint `print`) is one of
    /// its object's earlier keys; records it. Inlined: for most keys this
    /// is a few instructions, and the rest is out of line.
    #[inline(always)]
    fn is_duplicate(&mut self, key: u32, print: u64) -> bool {
        let Some(top) = self.stack.last_mut() else { return false };
        top.key = key;
        if top.count < KEYS_SCANNED {
            // A multiplicative hash of the fingerprint picks the bit.
            let bit = 1u64 << (print.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58);
            let maybe = top.seen & bit != 0;
            top.seen |= bit;
            return maybe && self.among_earlier(key);
        }
        self.in_key_set(key)
    }

    /// The earlier keys of the object on top of the stack, off the tape
    /// (their values are whole).
    fn earlier_keys(&self) -> impl Iterator<Item = u32> + '_ {
        let (mut at, count) = self.stack.last().map_or((0, 0), |top| (top.entry + 1, top.count));
        (0..count).map(move |_| {
            let k = at;
            at = self.doc.next(k + 1);
            k
        })
    }

    /// Whether `key` equals an earlier key of its object.
    #[inline(never)]
    fn among_earlier(&self, key: u32) -> bool {
        let name = self.doc.str_at(key);
        self.earlier_keys().any(|k| self.doc.str_at(k) == name)
    }

    /// Past `KEYS_SCANNED` members: whether `key` is in its object's set
    /// of keys (made from the earlier ones the first time); adds it.
    #[inline(never)]
    fn in_key_set(&mut self, key: u32) -> bool {
        let doc = &self.doc;
        let owned = |at: u32| -> Cow<'a, str> {
            match doc.entries[at as usize] {
                Entry::Str(s) => Cow::Borrowed(s),
                _ => Cow::Owned(doc.str_at(at).unwrap_or_default().to_owned()),
            }
        };
        let index = match self.stack.last().and_then(|top| top.many) {
            Some(index) => index as usize,
            None => {
                let set = self.earlier_keys().map(owned).collect();
                self.sets.push(set);
                let index = self.sets.len() - 1;
                if let Some(top) = self.stack.last_mut() {
                    top.many = Some(index as u32);
                }
                index
            }
        };
        !self.sets[index].insert(owned(key))
    }

    /// The entry of the string whose contents are `start..end` of the body;
    /// `None` for an escape serde_json refuses (a lone surrogate).
    #[inline(always)]
    fn string_entry(&mut self, start: usize, end: usize, escaped: bool) -> Option<Entry<'a>> {
        if !escaped {
            return Some(Entry::Str(&self.text[start..end]));
        }
        // Escapes are rare: serde_json resolves them.
        let decoded = serde_json::from_str::<String>(&self.text[start - 1..=end]).ok()?;
        let index = self.doc.decoded.len() as u32;
        self.doc.decoded.push(decoded);
        Some(Entry::Escaped(index))
    }

    /// The violation for `fault` where the scan stopped.
    fn violation(&self, fault: Fault, reach: Reach) -> Violation {
        let l = &self.limits;
        let detail = match fault {
            Fault::Syntax => match self.bytes.get(self.at) {
                // A byte-order mark is allowed to be refused (RFC 8259 §8.1),
                // and said as such; any other byte beyond ASCII as its value.
                Some(0xEF) if self.at == 0 && self.bytes.starts_with(b"\xEF\xBB\xBF") => {
                    "invalid JSON at byte 0: a byte-order mark (UTF-8 JSON has none, RFC 8259 §8.1)".to_string()
                }
                Some(b) if b.is_ascii_graphic() || *b == b' ' => {
                    format!("invalid JSON at byte {} (`{}`)", self.at, char::from(*b))
                }
                Some(b) => format!("invalid JSON at byte {} (byte 0x{b:02X})", self.at),
                None => "invalid JSON: the document ends early".to_string(),
            },
            Fault::Depth => format!("nested deeper than {} levels", l.max_depth),
            Fault::Members => format!("an object with more than {} members", l.max_entries),
            Fault::Elements => format!("an array with more than {} elements", l.max_array),
            Fault::StringLength => format!("a string longer than {} bytes", l.max_string),
            Fault::NumberLength => format!("a number longer than {} characters", l.max_number_length),
            Fault::Escape => "an invalid escape inside a string".to_string(),
            Fault::Control => "a control character inside a string".to_string(),
            Fault::Duplicate => "a duplicate member name".to_string(),
            Fault::Range => "a number out of range".to_string(),
            Fault::Trailing => format!("unexpected data after the JSON document (at byte {})", self.at),
        };
        let mut pointer = String::new();
        let open = match reach {
            Reach::Inside => self.stack.len(),
            Reach::Container => self.stack.len().saturating_sub(1),
        };
        for frame in &self.stack[..open] {
            pointer.push('/');
            if frame.object {
                let key = self.doc.str_at(frame.key).unwrap_or_default();
                pointer.push_str(&super::pointer_token(key));
            } else {
                pointer.push_str(&frame.count.to_string());
            }
        }
        Violation { pointer, detail }
    }
}

/// The number starting at `at`: its entry and where it ends; or the fault and where.
fn number<'a>(b: &[u8], at: usize, max_length: u32) -> Result<(Entry<'a>, usize), (Fault, usize)> {
    let start = at;
    let mut i = start;
    let negative = b.get(i) == Some(&b'-');
    if negative {
        i += 1;
    }
    // The digits as one integer while they fit (19 digits always do),
    // so that most numbers need no second reading.
    let mut mantissa = 0u64;
    let mut digits = 0u32;
    let mut take = |d: u8| {
        if digits < 19 {
            mantissa = mantissa * 10 + u64::from(d - b'0');
        }
        digits += 1;
    };
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            while let Some(&d @ b'0'..=b'9') = b.get(i) {
                take(d);
                i += 1;
            }
        }
        _ => {
            return Err((Fault::Syntax, i));
        }
    }
    let mut integer = true;
    let mut scale = 0i32;
    if b.get(i) == Some(&b'.') {
        integer = false;
        i += 1;
        let first = i;
        while let Some(&d @ b'0'..=b'9') = b.get(i) {
            take(d);
            i += 1;
        }
        if i == first {
            return Err((Fault::Syntax, i));
        }
        scale = -((i - first).min(1 << 20) as i32);
    }
    if let Some(b'e' | b'E') = b.get(i) {
        integer = false;
        i += 1;
        let minus = b.get(i) == Some(&b'-');
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        let first = i;
        let mut exponent = 0i32;
        while let Some(&d @ b'0'..=b'9') = b.get(i) {
            exponent = (exponent * 10 + i32::from(d - b'0')).min(1 << 20);
            i += 1;
        }
        if i == first {
            return Err((Fault::Syntax, i));
        }
        scale += if minus { -exponent } else { exponent };
    }
    if (i - start) as u64 > u64::from(max_length) {
        return Err((Fault::NumberLength, start));
    }
    // As serde_json reads numbers: integers as u64 or i64 while they
    // fit, anything else as f64; beyond f64's range, refused.
    if integer && digits <= 19 {
        if !negative {
            return Ok((Entry::PosInt(mantissa), i));
        }
        if let Ok(n) = i64::try_from(-i128::from(mantissa)) {
            return Ok((Entry::NegInt(n), i));
        }
    }
    // Clinger's fast path: a mantissa below 2^53 and a power of ten up
    // to 22 are both exact in f64, so one multiplication or division
    // rounds once, to exactly what the full parse gives.
    if !integer && digits <= 15 && (-22..=22).contains(&scale) {
        let power = POWERS_OF_TEN[scale.unsigned_abs() as usize];
        let value = if scale < 0 { mantissa as f64 / power } else { mantissa as f64 * power };
        return Ok((Entry::Float(if negative { -value } else { value }), i));
    }
    // Digits, signs, points and exponents: ASCII.
    let written = std::str::from_utf8(&b[start..i]).unwrap_or_default();
    if integer && let Ok(n) = written.parse::<u64>() {
        return Ok((Entry::PosInt(n), i));
    }
    if integer && let Ok(n) = written.parse::<i64>() {
        return Ok((Entry::NegInt(n), i));
    }
    match written.parse::<f64>() {
        Ok(f) if f.is_finite() => Ok((Entry::Float(f), i)),
        _ => Err((Fault::Range, i)),
    }
}

/// 10^0 to 10^22, each exact in f64.
pub(super) const POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// A key's length and first eight bytes: equal keys have equal prints,
/// and the keys of one object rarely share one.
fn fingerprint(key: &str) -> u64 {
    fingerprint_bytes(key.as_bytes())
}

/// [`fingerprint`] of a name as bytes (the shortcut's property names too).
#[inline(always)]
pub(super) fn fingerprint_bytes(bytes: &[u8]) -> u64 {
    // (`fingerprint_at` computes the same from the body.)
    let mut head = [0u8; 8];
    let n = bytes.len().min(8);
    head[..n].copy_from_slice(&bytes[..n]);
    u64::from_le_bytes(head) ^ (bytes.len() as u64).rotate_right(8)
}

/// [`fingerprint`] of the unescaped key at `start..end` of `bytes`.
#[inline(always)]
pub(super) fn fingerprint_at(bytes: &[u8], start: usize, end: usize) -> u64 {
    let len = end - start;
    match bytes.get(start..start + 8).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
        Some(word) => {
            let head =
                if len >= 8 { u64::from_le_bytes(word) } else { u64::from_le_bytes(word) & ((1u64 << (len * 8)) - 1) };
            head ^ (len as u64).rotate_right(8)
        }
        None => bytes.get(start..end).map_or(0, fingerprint_bytes),
    }
}

/// How many bytes from the start of `bytes` are plain string contents:
/// the index of the first `"`, `\\` or control character (< 0x20), or the
/// length. Eight bytes at a time: the classic "has a zero byte" test on the
/// word XORed with `"` and with `\\`, and its "has a byte below 0x20" form;
/// their lowest flagged byte is exact (a borrow only flags bytes above a
/// true match). A `memchr3` per run and a byte loop for controls cost
/// twice as much on the short strings of a JSON body.
#[inline]
pub(super) fn plain_run(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    let zero_bytes = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let mut words = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut words {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let stops = zero_bytes(w ^ (ONES * u64::from(b'"')))
            | zero_bytes(w ^ (ONES * u64::from(b'\\')))
            | (w.wrapping_sub(ONES * 0x20) & !w & HIGHS);
        if stops != 0 {
            return at + (stops.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    at + words.remainder().iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20).unwrap_or(words.remainder().len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Whether `bytes` is one JSON document within `limits`.
    fn check(bytes: &[u8], limits: &JsonLimits) -> Result<(), Violation> {
        parse(bytes, limits).map(drop)
    }

    fn limits() -> JsonLimits {
        JsonLimits { max_depth: 3, max_entries: 3, max_array: 4, max_string: 5, max_number_length: 6 }
    }

    fn refused(doc: &str) -> Violation {
        check(doc.as_bytes(), &limits()).expect_err(doc)
    }

    /// Where the reading stopped, said plainly: a byte-order mark as one,
    /// a byte beyond ASCII by its value (not Rust's escape of a Latin-1 char).
    #[test]
    fn syntax_errors_name_the_byte_plainly() {
        let l = JsonLimits::default();
        let bom = check(b"\xEF\xBB\xBF{}", &l).unwrap_err();
        assert_eq!(bom.detail, "invalid JSON at byte 0: a byte-order mark (UTF-8 JSON has none, RFC 8259 §8.1)");
        assert_eq!(check("{\"a\":é}".as_bytes(), &l).unwrap_err().detail, "invalid JSON at byte 5 (byte 0xC3)");
        assert_eq!(check(b"{\"a\":x}", &l).unwrap_err().detail, "invalid JSON at byte 5 (`x`)");
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
        // Past the members compared in place, a set of the keys: the same answers.
        let mut large: String = (0..40).map(|i| format!("\"k{i}\":{i},")).collect();
        large.insert(0, '{');
        let dup = check(format!("{large}\"\\u006b33\":0}}").as_bytes(), &JsonLimits::default()).unwrap_err();
        assert_eq!(dup, Violation { pointer: "/k33".into(), detail: "a duplicate member name".into() });
        assert_eq!(check(format!("{large}\"k40\":0}}").as_bytes(), &JsonLimits::default()), Ok(()));
    }

    #[test]
    fn fingerprints_off_the_body_are_the_keys_fingerprints() {
        let body = br#"{"":1,"a":1,"abcdefg":1,"abcdefgh":1,"abcdefghi":1,"\u00e9t\u00e9":1,"tail"}"#;
        for (start, end) in [(2, 2), (7, 8), (13, 20), (25, 33), (38, 47), (71, 75)] {
            let key = std::str::from_utf8(&body[start..end]).unwrap();
            assert_eq!(fingerprint_at(body, start, end), fingerprint(key), "{key}");
        }
    }

    #[test]
    fn plain_runs_stop_where_a_byte_loop_stops() {
        let naive = |b: &[u8]| b.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20).unwrap_or(b.len());
        for stop in (0u8..=255).filter(|&c| c == b'"' || c == b'\\' || c < 0x20) {
            for len in 0..20 {
                for at in 0..len {
                    // Bytes around the stop that could fool a word-wide test.
                    for filler in [b'a', 0x80, 0xff, b'!', b'#', b']', b'\x21', b'\x5d'] {
                        let mut v = vec![filler; len];
                        v[at] = stop;
                        if at + 1 < len {
                            v[at + 1] = stop.wrapping_add(1);
                        }
                        assert_eq!(plain_run(&v), naive(&v), "{v:?}");
                    }
                }
            }
        }
        for len in 0..20 {
            let v = vec![0xe6u8; len];
            assert_eq!(plain_run(&v), len);
        }
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

    /// The same document, floats within a few units in the last place
    /// (serde_json's default float reader is not always correctly rounded).
    fn same(a: &serde_json::Value, b: &serde_json::Value) -> bool {
        use serde_json::Value as V;
        match (a, b) {
            (V::Number(x), V::Number(y)) if x.is_f64() || y.is_f64() => {
                let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
                x == y || (x - y).abs() <= x.abs().max(y.abs()) * 4.0 * f64::EPSILON
            }
            (V::Array(x), V::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
            (V::Object(x), V::Object(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|((kx, vx), (ky, vy))| kx == ky && same(vx, vy))
            }
            _ => a == b,
        }
    }

    #[test]
    fn values_are_what_serde_json_reads() {
        let l = JsonLimits::default();
        for doc in [
            r#"{"a":[1,-2,3.5,-0,18446744073709551615,-9223372036854775808,1e3,2E-2],"b":{"c":null,"d":true}}"#,
            r#""\u00e9\n\"x\"\ud83d\ude00""#,
            r#"{"\u0061b":"plain","":""}"#,
            r#"123456789012345678901234567890"#,
        ] {
            let ours = parse(doc.as_bytes(), &l).unwrap();
            let theirs: serde_json::Value = serde_json::from_str(doc).unwrap();
            assert!(same(&ours, &theirs), "{doc}: {ours} against {theirs}");
        }
        assert_eq!(parse(b"1e400", &l).unwrap_err().detail, "a number out of range");
        assert_eq!(
            parse(br#"{"a":"\ud800"}"#, &l).unwrap_err(),
            Violation { pointer: "/a".into(), detail: "an invalid escape inside a string".into() }
        );
    }

    /// A number's value as the scan reads it.
    fn number(text: &str) -> Entry<'_> {
        let doc = read(text.as_bytes(), &JsonLimits::default()).unwrap();
        doc.entries[0]
    }

    #[test]
    fn numbers_read_as_the_standard_parse_reads_them() {
        for text in [
            "0",
            "-0",
            "-0.0",
            "12.99",
            "1e22",
            "1e23",
            "123456789012345.6",
            "1234567890123456.7",
            "0.1",
            "-9.75e-3",
            "5e-324",
            "1.7976931348623157e308",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "100000000000000000000",
        ] {
            match number(text) {
                Entry::PosInt(n) => assert_eq!(Ok(n), text.parse::<u64>(), "{text}"),
                Entry::NegInt(n) => assert_eq!(Ok(n), text.parse::<i64>(), "{text}"),
                Entry::Float(f) => assert_eq!(f.to_bits(), text.parse::<f64>().unwrap().to_bits(), "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    proptest! {
        #[test]
        fn decimals_read_exactly(m in 0u64..10_000_000_000_000_000, point in 0usize..17, e in -30i32..30, neg in any::<bool>(), exp in any::<bool>()) {
            let digits = m.to_string();
            let point = point.min(digits.len().saturating_sub(1));
            let mut text = format!("{}{}.{}", if neg { "-" } else { "" }, &digits[..digits.len() - point], &digits[digits.len() - point..]);
            if text.ends_with('.') { text.push('0'); }
            if exp { text.push_str(&format!("e{e}")); }
            let Entry::Float(f) = number(&text) else { panic!("{text}") };
            prop_assert_eq!(f.to_bits(), text.parse::<f64>().unwrap().to_bits(), "{}", text);
        }

        #[test]
        fn parsed_values_are_serde_jsons(v in json()) {
            let text = serde_json::to_string(&v).unwrap();
            let ours = parse(text.as_bytes(), &JsonLimits::default()).unwrap();
            prop_assert!(same(&ours, &v), "{} read as {}", text, ours);
        }

        #[test]
        fn valid_documents_pass_and_limits_hold(v in json(), max_depth in 0u32..8) {
            let text = serde_json::to_string(&v).unwrap();
            let roomy = JsonLimits { max_depth: 64, max_entries: 100, max_array: 100, max_string: 1 << 20, max_number_length: 64 };
            prop_assert_eq!(check(text.as_bytes(), &roomy), Ok(()));
            let tight = JsonLimits { max_depth, ..roomy };
            prop_assert_eq!(check(text.as_bytes(), &tight).is_ok(), depth(&v) <= max_depth);
        }

        /// Duplicates are found whatever the object's size (compared in
        /// place, then through a set) and whatever lies between them.
        #[test]
        fn duplicate_keys_are_found_exactly(keys in prop::collection::vec("[a-d]{0,2}", 0..40), nested in any::<bool>()) {
            let value = if nested { r#"{"x":[1,{"y":2}],"z":"s"}"# } else { "1" };
            let members: Vec<String> = keys.iter().map(|k| format!("\"{k}\":{value}")).collect();
            let text = format!("{{{}}}", members.join(","));
            let first_repeat = keys.iter().enumerate().find(|(i, k)| keys[..*i].contains(k)).map(|(_, k)| k);
            match first_repeat {
                None => prop_assert_eq!(check(text.as_bytes(), &JsonLimits::default()), Ok(())),
                Some(k) => prop_assert_eq!(
                    check(text.as_bytes(), &JsonLimits::default()),
                    Err(Violation { pointer: format!("/{k}"), detail: "a duplicate member name".into() })
                ),
            }
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
