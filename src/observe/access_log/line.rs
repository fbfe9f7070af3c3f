//! How values are put into the bytes of a log line: numbers, addresses
//! and JSON strings without `core::fmt` (it cost half of a proxied
//! request per line), each string copied whole unless it needs escapes.
//!
//! A piece of varying length but a known limit (a number, an address, a
//! name of the config, a short path) is copied as a fixed-size block, its
//! room, and the line then cut back to the piece's length: a fixed-size
//! copy is a few moves inlined, a copy of varying length a call to
//! `memcpy` (together with `itoa`'s, ~440 of a line's ~1,670 instructions
//! before, `benches/access_log.rs`).
//!
//! (Writing through a cursor over room made ready in advance, instead of
//! `Vec` pushes, was measured: no fewer instructions, as the position
//! lives in memory across the copies' calls either way.)

use std::net::IpAddr;

/// Text into a line (the line is bytes: no UTF-8 bookkeeping per push).
#[inline(always)]
pub fn put(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
}

/// The first `len` bytes of `block`, copied as the whole block (see the
/// module's note); `len` is at most `N`.
#[inline(always)]
pub fn put_cut<const N: usize>(out: &mut Vec<u8>, block: &[u8; N], len: usize) {
    let at = out.len();
    out.extend_from_slice(block);
    out.truncate(at + len);
}

/// Bytes that are followed, where they are stored, by at least `N - len`
/// more (`room` is the stored slice from the bytes' start): copied as one
/// block of `N` when they fit in it.
#[inline(always)]
pub fn put_from<const N: usize>(out: &mut Vec<u8>, room: &[u8], len: usize) {
    match room.first_chunk::<N>() {
        Some(block) if len <= N => put_cut(out, block, len),
        _ => out.extend_from_slice(&room[..len]),
    }
}

/// Each number below 100 as two digits.
const PAIRS: [[u8; 2]; 100] = {
    let mut pairs = [[0u8; 2]; 100];
    let mut i = 0;
    while i < 100 {
        pairs[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    pairs
};

/// A number in decimal, as `itoa` writes it (four digits a step, from the
/// end) but into a fixed block: the digits end at byte 20 of 40, and the 20
/// bytes from the first digit are copied as one block (see the module's note).
pub fn push_u64(out: &mut Vec<u8>, v: u64) {
    if v < 10 {
        // Body sizes of 0 (most requests) and other one-digit numbers.
        out.push(b'0' + v as u8);
        return;
    }
    let mut digits = [0u8; 40];
    let mut at = 20;
    let mut rest = v;
    while rest >= 10_000 {
        let four = (rest % 10_000) as usize;
        rest /= 10_000;
        digits[at - 4..at - 2].copy_from_slice(&PAIRS[four / 100]);
        digits[at - 2..at].copy_from_slice(&PAIRS[four % 100]);
        at -= 4;
    }
    let mut rest = rest as usize;
    if rest >= 100 {
        digits[at - 2..at].copy_from_slice(&PAIRS[rest % 100]);
        rest /= 100;
        at -= 2;
    }
    if rest >= 10 {
        digits[at - 2..at].copy_from_slice(&PAIRS[rest]);
        at -= 2;
    } else {
        digits[at - 1] = b'0' + rest as u8;
        at -= 1;
    }
    if let Some(block) = digits[at..].first_chunk::<20>() {
        put_cut(out, block, 20 - at);
    }
}

/// A status code: three digits (a `StatusCode` is 100-999).
pub fn push_status(out: &mut Vec<u8>, v: u16) {
    if (100..1000).contains(&v) {
        let [a, b] = PAIRS[usize::from(v % 100)];
        out.extend_from_slice(&[b'0' + (v / 100) as u8, a, b]);
    } else {
        push_u64(out, u64::from(v));
    }
}

/// An address as text. IPv4 from a table of the 256 octets' digits (a
/// digit-by-digit loop cost ~110 instructions an address, `itoa` per octet
/// and a push per dot ~220).
pub fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            // Each octet's digits are stored four bytes wide, the dot after
            // them included; the last dot is not kept.
            let mut text = [0u8; 16];
            let mut len = 0;
            for octet in v4.octets() {
                let (digits, n) = OCTETS[usize::from(octet)];
                text[len..len + 4].copy_from_slice(&digits);
                len += usize::from(n);
            }
            put_cut(out, &text, len - 1);
        }
        IpAddr::V6(v6) => {
            let _ = std::fmt::Write::write_fmt(&mut TextOut(out), format_args!("{v6}"));
        }
    }
}

/// A JSON string: quotes, backslashes and control characters escaped.
pub fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    if !any_needs_escape(s) {
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f | 0x7f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// A JSON string of bytes that are almost always plain ASCII (a header
/// value): copied as they are after one scan, else read as UTF-8 with
/// invalid sequences replaced, and escaped.
pub fn json_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    json_bytes_in(out, bytes, bytes);
}

/// [`json_bytes`] of the first `bytes.len()` bytes of `room` (see [`put_from`]).
#[inline]
pub fn json_bytes_in(out: &mut Vec<u8>, bytes: &[u8], room: &[u8]) {
    if scan::<true>(bytes) {
        json_str(out, &String::from_utf8_lossy(bytes));
    } else {
        out.push(b'"');
        put_from::<32>(out, room, bytes.len());
        out.push(b'"');
    }
}

/// Text for the `combined` line, NGINX-style: `"`, `\` and bytes outside
/// printable ASCII as `\xHH`, so that a client cannot forge a line or a field.
pub fn text_escaped(out: &mut Vec<u8>, s: &[u8]) {
    escaped::<false>(out, s);
}

/// [`text_escaped`] for a field outside quotes (a consumer, a route name):
/// a space is escaped too, so that the field stays one.
pub fn field_escaped(out: &mut Vec<u8>, s: &[u8]) {
    escaped::<true>(out, s);
}

fn escaped<const SPACE: bool>(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) || SPACE && b == b' ' {
            out.extend_from_slice(&[b'\\', b'x', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        } else {
            out.push(b);
        }
    }
}

/// `core::fmt` into a line, for the rare parts that need it.
pub struct TextOut<'a>(pub &'a mut Vec<u8>);

impl std::fmt::Write for TextOut<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        put(self.0, s);
        Ok(())
    }
}

/// Each octet's digits and a dot, and how many of those bytes count.
const OCTETS: [([u8; 4], u8); 256] = {
    let mut table = [([0u8; 4], 0u8); 256];
    let mut i = 0;
    while i < 256 {
        let o = i as u8;
        table[i] = if o >= 100 {
            ([b'0' + o / 100, b'0' + o / 10 % 10, b'0' + o % 10, b'.'], 4)
        } else if o >= 10 {
            ([b'0' + o / 10, b'0' + o % 10, b'.', 0], 3)
        } else {
            ([b'0' + o, b'.', 0, 0], 2)
        };
        i += 1;
    }
    table
};

/// Bytes a JSON string cannot hold as they are.
const fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\' || b == 0x7f
}

/// Whether any byte of `s` needs an escape, eight bytes at a time (the
/// byte-by-byte test was a quarter of a line's cost): a word has a byte
/// below 0x20 or equal to `"`, `\\` or DEL exactly when the classic
/// "has a zero byte" test finds one in the word (for the three equalities)
/// or its "has a byte less than n" form does (for the controls).
pub fn any_needs_escape(s: &str) -> bool {
    scan::<false>(s.as_bytes())
}

/// The word-at-a-time test behind [`any_needs_escape`]; with `HIGH`, a
/// byte outside ASCII counts too (for bytes not known to be UTF-8).
fn scan<const HIGH: bool>(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS != 0;
    let mut words = bytes.chunks_exact(8);
    for chunk in &mut words {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_ne_bytes(word);
        if (HIGH && w & HIGHS != 0)
            || w.wrapping_sub(ONES * 0x20) & !w & HIGHS != 0
            || has_zero(w ^ (ONES * u64::from(b'"')))
            || has_zero(w ^ (ONES * u64::from(b'\\')))
            || has_zero(w ^ (ONES * 0x7f))
        {
            return true;
        }
    }
    words.remainder().iter().any(|&b| needs_escape(b) || HIGH && b >= 0x80)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_found_anywhere_in_a_string() {
        for bad in [b'"', b'\\', b'\n', 0x00, 0x1f, 0x7f] {
            for len in 0..20 {
                for at in 0..len {
                    let mut s = vec![b'a'; len];
                    s[at] = bad;
                    let s = String::from_utf8(s).unwrap();
                    assert!(any_needs_escape(&s), "{bad:#x} at {at} of {len}");
                }
            }
        }
        for b in 0u8..0x80 {
            let word = String::from_utf8(vec![b; 8]).unwrap();
            assert_eq!(any_needs_escape(&word), needs_escape(b), "{b:#x}");
        }
        for (bytes, json) in [
            (&b"0af7651916cd43dd8448eb211c80319c"[..], "\"0af7651916cd43dd8448eb211c80319c\""),
            (b"caf\xc3\xa9 \"q\"", "\"caf\u{e9} \\\"q\\\"\""),
            (b"bad \xff\x01 byte", "\"bad \u{fffd}\\u0001 byte\""),
        ] {
            let mut out = Vec::new();
            json_bytes(&mut out, bytes);
            assert_eq!(String::from_utf8(out).unwrap(), json);
        }
        for fine in ["", "abc", "/pets/1?x=y", "ünïcödé and 日本語 text", " !#$%&'()*+,-./~[]^_`{|}"] {
            assert!(!any_needs_escape(fine), "{fine}");
        }
    }

    #[test]
    fn addresses_and_numbers_are_written_whole() {
        let written = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut out = Vec::new();
            f(&mut out);
            String::from_utf8(out).unwrap()
        };
        for ip in ["0.0.0.0", "255.255.255.255", "10.0.100.9", "192.168.1.42", "2001:db8::1", "::ffff:10.0.0.1"] {
            assert_eq!(written(&|o| push_ip(o, ip.parse().unwrap())), ip);
        }
        for v in [100u16, 200, 404, 999, 0, 42, 1000] {
            assert_eq!(written(&|o| push_status(o, v)), v.to_string());
        }
        let mut numbers = vec![0, 1, u64::MAX, u64::MAX - 1];
        for p in 0..20 {
            let ten = 10u64.pow(p);
            numbers.extend([ten - 1, ten, ten + 1, ten.saturating_mul(3).saturating_sub(7)]);
        }
        for v in numbers {
            assert_eq!(written(&|o| push_u64(o, v)), v.to_string());
        }
    }

    #[test]
    fn pieces_copied_as_blocks_are_cut_to_their_length() {
        // After what is already in the line, with and without room behind the piece.
        for len in 0..40 {
            let piece: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let mut stored = piece.clone();
            stored.extend_from_slice(&[b'#'; 32]);
            for room in [&piece[..], &stored[..]] {
                let mut out = b"{\"x\":".to_vec();
                json_bytes_in(&mut out, &piece, room);
                out.push(b'}');
                let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
                assert_eq!(v["x"].as_str().unwrap().as_bytes(), &piece[..]);
            }
        }
        // A piece needing escapes is escaped, room or not.
        let mut out = Vec::new();
        json_bytes_in(&mut out, b"a\"b", b"a\"b and more than thirty-two bytes of room");
        assert_eq!(out, b"\"a\\\"b\"");
    }
}
