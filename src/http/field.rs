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

/// The elements of a comma-separated field value (`Connection`,
/// `Transfer-Encoding`), trimmed; empty elements are kept (RFC 9110 §5.6.1
/// lets a recipient skip them, and callers do).
pub fn list(value: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_and_a_list() {
        let mut out = Vec::new();
        write(&mut out, b"x-a", b"1");
        assert_eq!(out, b"x-a: 1\r\n");
        let items: Vec<&[u8]> = list(b" close ,, Keep-Alive").collect();
        assert_eq!(items, [&b"close"[..], b"", b"Keep-Alive"]);
    }
}
