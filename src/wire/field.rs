//! Header field lines on the HTTP/1.1 wire, shared by both codecs (the
//! server's responses, the upstream client's requests).

use super::decode::trim;

/// Writes `name: value` and the line break.
#[inline]
pub fn write(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    // One capacity check that can grow the buffer, not four.
    out.reserve(name.len() + value.len() + 4);
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The decimal digits of `n`, formatted into `buf` (no allocation: a
/// `Content-Length` is written on every message).
pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// The elements of a comma-separated field value (`Connection`,
/// `Transfer-Encoding`), trimmed; empty elements are kept (RFC 9110 §5.6.1
/// lets a recipient skip them, and callers do).
pub fn list(value: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim)
}

/// Whether a response's `Transfer-Encoding` value names `chunked` alone,
/// with any empty list elements before it (RFC 9110 §5.6.1 lets a
/// recipient skip them): `, chunked` does; `chunked ,` does not (hyper's
/// client reads the last element only, and would read to the close).
pub fn chunked_alone(value: &[u8]) -> bool {
    let mut items = list(value).rev();
    items.next().is_some_and(|last| last.eq_ignore_ascii_case(b"chunked")) && items.all(<[u8]>::is_empty)
}

/// Whether a LF in `head` is not preceded by CR. httparse accepts bare LF
/// line endings (it refuses a CR not followed by LF itself); a parser in
/// front of or behind the gateway may not, and would read other lines.
pub fn has_bare_lf(head: &[u8]) -> bool {
    // One branch-free pass over (previous, current) byte pairs, which the
    // compiler vectorizes: `memchr_iter` costs a call per line instead.
    let Some((&first, _)) = head.split_first() else { return false };
    first == b'\n'
        || head.iter().zip(&head[1..]).fold(false, |bare, (&prev, &b)| bare | ((b == b'\n') & (prev != b'\r')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_alone_skips_only_empty_elements_before_it() {
        for yes in ["chunked", "Chunked", " chunked ", ", chunked", ",,chunked", " , \tchunked"] {
            assert!(chunked_alone(yes.as_bytes()), "{yes:?}");
        }
        for no in ["", ",", "chunked,", "chunked ,", "gzip, chunked", "chunked, chunked", "xchunked", "chunked;q=1"] {
            assert!(!chunked_alone(no.as_bytes()), "{no:?}");
        }
    }

    #[test]
    fn a_line_and_a_list() {
        let mut out = Vec::new();
        write(&mut out, b"x-a", b"1");
        assert_eq!(out, b"x-a: 1\r\n");
        let items: Vec<&[u8]> = list(b" close ,, Keep-Alive").collect();
        assert_eq!(items, [&b"close"[..], b"", b"Keep-Alive"]);
    }

    #[test]
    fn digits() {
        assert_eq!(decimal(0, &mut [0; 20]), b"0");
        assert_eq!(decimal(1234567890, &mut [0; 20]), b"1234567890");
        assert_eq!(decimal(u64::MAX, &mut [0; 20]), b"18446744073709551615");
    }

    #[test]
    fn bare_lf_anywhere_in_a_head() {
        assert!(!has_bare_lf(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(has_bare_lf(b"\n"));
        assert!(has_bare_lf(b"GET / HTTP/1.1\r\nHost: x\n\r\n"));
    }

    /// The branch-free scan agrees with the plain reading of the rule.
    #[test]
    fn fuzz_bare_lf() {
        use proptest::prelude::*;
        let heads = prop::collection::vec(prop::sample::select(&b"\r\nab"[..]), 0..64);
        crate::fuzz::run("bare LF", heads, |head| {
            let plain = head.iter().enumerate().any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'));
            prop_assert_eq!(has_bare_lf(&head), plain);
            Ok(())
        });
    }
}
