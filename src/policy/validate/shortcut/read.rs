//! The shortcut's reader: a body checked against the nodes as it is read.

use super::super::json_limits::{JsonLimits, POWERS_OF_TEN, fingerprint_at, plain_run};
use super::{ARRAY, BOOLEAN, Bound, INTEGER, NULL, NUMBER, Node, OBJECT, STRING, Shortcut, Side};

/// A number as the body writes it, when the shortcut can know its value
/// exactly as the full read does.
#[derive(Debug, Clone, Copy)]
enum Num {
    Int(i64),
    Float(f64),
}

/// [`Shortcut::passes`].
pub(super) fn passes(shortcut: &Shortcut, body: &[u8], limits: &JsonLimits) -> bool {
    let Ok(text) = std::str::from_utf8(body) else { return false };
    let mut r = Reader { bytes: body, text, at: 0, depth: 0, limits };
    r.value(shortcut, shortcut.root) && {
        r.skip_space();
        r.at == body.len()
    }
}

/// 2^53: integers below it in magnitude are exact in f64.
const EXACT: i128 = 1 << 53;

/// `value` against `bound`, exactly; `None` where exactness is not cheap.
fn compare(value: Num, bound: Bound) -> Option<std::cmp::Ordering> {
    match (value, bound) {
        (Num::Int(v), Bound::Int(b)) => Some(i128::from(v).cmp(&b)),
        (Num::Int(v), Bound::Float(b)) if i128::from(v).abs() < EXACT => (v as f64).partial_cmp(&b),
        (Num::Float(v), Bound::Int(b)) if b.abs() < EXACT => v.partial_cmp(&(b as f64)),
        (Num::Float(v), Bound::Float(b)) => v.partial_cmp(&b),
        _ => None,
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    text: &'a str,
    at: usize,
    /// Containers open around the value being read.
    depth: u32,
    limits: &'a JsonLimits,
}

impl Reader<'_> {
    #[inline(always)]
    fn byte(&self) -> u8 {
        self.bytes.get(self.at).copied().unwrap_or(0)
    }

    #[inline(always)]
    fn skip_space(&mut self) {
        // Most bodies have no space between tokens.
        if self.byte() > b' ' {
            return;
        }
        while let b' ' | b'\t' | b'\n' | b'\r' = self.byte() {
            self.at += 1;
        }
    }

    /// A string without escapes from its opening quote at `self.at`: its
    /// contents' range, the cursor left after its closing quote.
    #[inline(always)]
    fn plain_string(&mut self) -> Option<(usize, usize)> {
        let start = self.at + 1;
        let end = start + plain_run(self.bytes.get(start..)?);
        // An escape, a control character or the end: not proved here.
        if self.bytes.get(end) != Some(&b'"') || (end - start) as u64 > self.limits.max_string {
            return None;
        }
        self.at = end + 1;
        Some((start, end))
    }

    /// One value that `node` must accept; `false`: not proved.
    fn value(&mut self, shortcut: &Shortcut, node: u32) -> bool {
        let Some(n) = shortcut.nodes.get(node as usize) else { return false };
        self.skip_space();
        match self.byte() {
            b'{' => n.types & OBJECT != 0 && !n.strings_only && self.object(shortcut, n),
            b'[' => n.types & ARRAY != 0 && !n.strings_only && self.array(shortcut, n),
            first => self.scalar(n, first),
        }
    }

    /// A value that is not a container, starting with `first`: inline in
    /// the loops over members and elements (most values are scalars).
    #[inline(always)]
    fn scalar(&mut self, n: &Node, first: u8) -> bool {
        if n.strings_only && first != b'"' {
            return false;
        }
        match first {
            b'"' => {
                if n.types & STRING == 0 {
                    return false;
                }
                let Some((start, end)) = self.plain_string() else { return false };
                // Quotes are character boundaries of the (UTF-8) body.
                match (n.strings.as_slice(), self.text.get(start..end)) {
                    ([], _) => true,
                    ([one], Some(s)) => one.accept(s),
                    (checks, Some(s)) => checks.iter().all(|c| c.accept(s)),
                    (_, None) => false,
                }
            }
            b'-' | b'0'..=b'9' => self.number(n),
            b't' => n.types & BOOLEAN != 0 && self.literal(b"true"),
            b'f' => n.types & BOOLEAN != 0 && self.literal(b"false"),
            b'n' => n.types & NULL != 0 && self.literal(b"null"),
            _ => false,
        }
    }

    /// A member's or element's value: scalars here, containers by a call.
    #[inline(always)]
    fn member(&mut self, shortcut: &Shortcut, node: u32) -> bool {
        self.skip_space();
        match self.byte() {
            b'{' | b'[' => self.value(shortcut, node),
            first => shortcut.nodes.get(node as usize).is_some_and(|n| self.scalar(n, first)),
        }
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        let matched = self.bytes.get(self.at..).is_some_and(|rest| rest.starts_with(word));
        self.at += word.len();
        matched
    }

    fn object(&mut self, shortcut: &Shortcut, n: &Node) -> bool {
        if self.depth >= self.limits.max_depth {
            return false;
        }
        self.depth += 1;
        self.at += 1;
        let mut seen = 0u64;
        let mut members = 0u64;
        // Bodies mostly write members in the schema's order: look from the next one.
        let mut next = 0;
        self.skip_space();
        if self.byte() != b'}' {
            loop {
                self.skip_space();
                if self.byte() != b'"' {
                    return false;
                }
                let Some((start, end)) = self.plain_string() else { return false };
                let Some(i) = self.property(n, next, start, end) else { return false };
                let bit = 1u64 << i;
                if seen & bit != 0 {
                    return false; // a duplicate: refused by the full path
                }
                seen |= bit;
                members += 1;
                next = i + 1;
                self.skip_space();
                if self.byte() != b':' {
                    return false;
                }
                self.at += 1;
                if !self.member(shortcut, n.properties[i].node) {
                    return false;
                }
                self.skip_space();
                match self.byte() {
                    b',' => self.at += 1,
                    b'}' => break,
                    _ => return false,
                }
            }
        }
        self.at += 1;
        self.depth -= 1;
        seen & n.required == n.required
            && members <= u64::from(self.limits.max_entries)
            && (n.min_properties..=n.max_properties).contains(&members)
    }

    /// The index of the property named by `start..end` of the body,
    /// looked for from `next` on (bodies mostly follow the schema's order).
    #[inline(always)]
    fn property(&self, n: &Node, next: usize, start: usize, end: usize) -> Option<usize> {
        let len = end - start;
        let head = fingerprint_at(self.bytes, start, end);
        let count = n.properties.len();
        let mut i = next;
        for _ in 0..count {
            if i >= count {
                i = 0;
            }
            let p = &n.properties[i];
            // Up to eight bytes, the print is the name, but for a declared name
            // with control characters (escaped in the schema, never raw in a
            // body) that could share it: the length settles that.
            if p.print == head && p.name.len() == len && (len <= 8 || self.bytes.get(start..end) == Some(&p.name[..])) {
                return Some(i);
            }
            i += 1;
        }
        None
    }

    fn array(&mut self, shortcut: &Shortcut, n: &Node) -> bool {
        if self.depth >= self.limits.max_depth {
            return false;
        }
        self.depth += 1;
        self.at += 1;
        let mut elements = 0u64;
        self.skip_space();
        if self.byte() != b']' {
            loop {
                if !self.member(shortcut, n.items) {
                    return false;
                }
                elements += 1;
                if elements > u64::from(self.limits.max_array) {
                    return false;
                }
                self.skip_space();
                match self.byte() {
                    b',' => self.at += 1,
                    b']' => break,
                    _ => return false,
                }
            }
        }
        self.at += 1;
        self.depth -= 1;
        (n.min_items..=n.max_items).contains(&elements)
    }

    /// A number `n` must accept. Proved, without an exponent: integers of
    /// up to 18 digits, decimals where no bound needs their value, and
    /// decimals of up to 15 digits (read to the same value as the full
    /// read: Clinger's exact division) compared with the bounds.
    fn number(&mut self, n: &Node) -> bool {
        let b = self.bytes;
        let start = self.at;
        let mut i = start;
        let negative = b.get(i) == Some(&b'-');
        i += usize::from(negative);
        let mut mantissa = 0u64;
        let mut digits = 0u32;
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while let Some(&d @ b'0'..=b'9') = b.get(i) {
                    mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
                    digits += 1;
                    i += 1;
                }
            }
            _ => return false,
        }
        let whole_digits = digits;
        let mut scale = 0;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let first = i;
            while let Some(&d @ b'0'..=b'9') = b.get(i) {
                mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
                digits += 1;
                i += 1;
            }
            if i == first {
                return false;
            }
            scale = i - first;
        }
        self.at = i;
        if matches!(b.get(i), Some(b'e' | b'E')) || (i - start) as u64 > u64::from(self.limits.max_number_length) {
            return false;
        }
        let value = if scale == 0 {
            if n.types & INTEGER == 0 || digits > 18 {
                return false;
            }
            let m = mantissa as i64; // under 10^18
            Num::Int(if negative { -m } else { m })
        } else {
            // `1.0` is an integer to JSON Schema: left to the full path.
            if n.types & NUMBER == 0 {
                return false;
            }
            if n.bounds.is_empty() {
                // Its value does not matter, only that it is a finite
                // float (clients write up to 17 digits: `13.120000000000001`).
                return whole_digits <= 300;
            }
            // Up to 15 digits, read exactly as the full read does (Clinger).
            let Some(power) = POWERS_OF_TEN.get(scale).filter(|_| digits <= 15) else { return false };
            let v = mantissa as f64 / power;
            Num::Float(if negative { -v } else { v })
        };
        n.bounds.iter().all(|&(side, bound)| {
            use std::cmp::Ordering::{Greater, Less};
            match (side, compare(value, bound)) {
                (Side::Minimum, Some(o)) => o != Less,
                (Side::Maximum, Some(o)) => o != Greater,
                (Side::ExclusiveMinimum, Some(o)) => o == Greater,
                (Side::ExclusiveMaximum, Some(o)) => o == Less,
                (_, None) => false,
            }
        })
    }
}
