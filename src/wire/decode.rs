//! HTTP/1.1 body decoding, for request bodies from clients and response
//! bodies from upstreams: `Content-Length`, chunked (RFC 9112 §7.1) and
//! until-close. A pure state machine over the connection's read buffer, so
//! every split point of the input can be tested without a socket.
//!
//! Chunked framing is read to the letter of the grammar: a size of hex
//! digits, extensions of tokens and quoted strings only after `;`, CRLF
//! line ends, trailer lines that are well-formed fields. Anything else (a
//! size followed by garbage, a bare CR or LF, a NUL, a trailer line without
//! a colon, obs-fold) is an error: lenient chunk parsers are how
//! TE.TE-style smuggling finds a second reading of a body. Trailer fields
//! are checked and dropped, never forwarded.

use bytes::{Buf, Bytes, BytesMut};

/// How a message body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// Until the peer closes the connection (responses only).
    UntilClose,
}

/// A chunk-size line longer than this (extensions included) is refused.
const MAX_CHUNK_LINE: usize = 4096;
/// Trailer fields are read and dropped, up to this much.
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("malformed chunked body: {0}")]
    Chunked(&'static str),
    #[error("the connection closed before the body was complete")]
    Truncated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoder {
    Length(u64),
    ChunkSize,
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    Trailers(usize),
    UntilClose,
    Done,
    /// A framing error was found: it stays (the line that failed is gone
    /// from the buffer, and what follows it must never be read as the
    /// body's end, nor as a next request).
    Failed(DecodeError),
}

impl Decoder {
    pub fn new(framing: Framing) -> Decoder {
        match framing {
            Framing::Empty | Framing::Length(0) => Decoder::Done,
            Framing::Length(n) => Decoder::Length(n),
            Framing::Chunked => Decoder::ChunkSize,
            Framing::UntilClose => Decoder::UntilClose,
        }
    }

    pub fn is_done(&self) -> bool {
        *self == Decoder::Done
    }

    /// Bytes of body still expected, when known.
    pub fn remaining(&self) -> Option<u64> {
        match self {
            Decoder::Length(n) => Some(*n),
            Decoder::Done => Some(0),
            _ => None,
        }
    }

    /// Bytes of body the framing has promised and not yet given: the rest
    /// of a `Content-Length`, or of the chunk being read (a size line of
    /// `ffffffff` promises 4 GiB before one byte of it has come).
    pub fn promised(&self) -> u64 {
        match self {
            Decoder::Length(n) | Decoder::ChunkData(n) => *n,
            _ => 0,
        }
    }

    /// The next piece of body data from the front of `buf`. `Ok(None)`
    /// means: done (see `is_done`) or more input is needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, DecodeError> {
        let result = self.decode_next(buf);
        if let Err(e) = result {
            *self = Decoder::Failed(e);
        }
        result
    }

    fn decode_next(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, DecodeError> {
        loop {
            match *self {
                Decoder::Failed(e) => return Err(e),
                Decoder::Done => return Ok(None),
                Decoder::Length(n) => {
                    let data = take_up_to(buf, n);
                    *self = match n - data.len() as u64 {
                        0 => Decoder::Done,
                        left => Decoder::Length(left),
                    };
                    return Ok((!data.is_empty()).then_some(data));
                }
                Decoder::UntilClose => {
                    return Ok((!buf.is_empty()).then(|| buf.split().freeze()));
                }
                Decoder::ChunkData(n) => {
                    let data = take_up_to(buf, n);
                    *self = match n - data.len() as u64 {
                        0 => Decoder::ChunkEnd,
                        left => Decoder::ChunkData(left),
                    };
                    return Ok((!data.is_empty()).then_some(data));
                }
                Decoder::ChunkEnd => {
                    if buf.len() < 2 {
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(DecodeError::Chunked("chunk data not followed by CRLF"));
                    }
                    buf.advance(2);
                    *self = Decoder::ChunkSize;
                }
                Decoder::ChunkSize => {
                    let Some(line) = take_line(buf, MAX_CHUNK_LINE)? else { return Ok(None) };
                    let size = parse_chunk_size(&line)?;
                    *self = if size == 0 { Decoder::Trailers(0) } else { Decoder::ChunkData(size) };
                }
                Decoder::Trailers(seen) => {
                    let Some(line) = take_line(buf, MAX_TRAILERS - seen)? else { return Ok(None) };
                    if line.len() == 2 {
                        *self = Decoder::Done;
                    } else {
                        check_trailer(&line[..line.len() - 2])?;
                        *self = Decoder::Trailers(seen + line.len());
                    }
                }
            }
        }
    }

    /// The connection reached end of file: fine only for an until-close body.
    pub fn eof(&mut self) -> Result<(), DecodeError> {
        match self {
            Decoder::UntilClose | Decoder::Done => {
                *self = Decoder::Done;
                Ok(())
            }
            Decoder::Failed(e) => Err(*e),
            _ => {
                *self = Decoder::Failed(DecodeError::Truncated);
                Err(DecodeError::Truncated)
            }
        }
    }
}

/// The body length that `Content-Length` declares, if any. `5, 5` and
/// repeated lines are fine if they agree (RFC 9110 §8.6); anything else
/// that is not one decimal number is an error (a smuggling sign).
pub fn content_length(headers: &http::HeaderMap) -> Result<Option<u64>, &'static str> {
    let mut length = DeclaredLength::default();
    for value in headers.get_all(http::header::CONTENT_LENGTH) {
        length.note(value.as_bytes());
    }
    length.result()
}

/// `Content-Length` lines, noted one by one while a head is parsed.
#[derive(Debug, Default, Clone, Copy)]
pub struct DeclaredLength {
    length: Option<u64>,
    error: Option<&'static str>,
}

impl DeclaredLength {
    pub fn note(&mut self, value: &[u8]) {
        for part in value.split(|&b| b == b',') {
            match parse_decimal(trim(part)) {
                None => self.error = Some("bad Content-Length"),
                Some(n) if self.length.is_some_and(|l| l != n) => {
                    self.error = Some("conflicting Content-Length values");
                }
                Some(n) => self.length = Some(n),
            }
        }
    }

    /// Whether any line was noted.
    pub fn is_present(&self) -> bool {
        self.length.is_some() || self.error.is_some()
    }

    pub fn result(&self) -> Result<Option<u64>, &'static str> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.length),
        }
    }
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0')))
}

/// `bytes` without leading and trailing whitespace.
pub fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |e| e + 1);
    &bytes[start..end]
}

/// Up to `n` bytes from the front of `buf` (none if it is empty).
fn take_up_to(buf: &mut BytesMut, n: u64) -> Bytes {
    let take = n.min(buf.len() as u64) as usize;
    buf.split_to(take).freeze()
}

/// One CRLF-terminated line (CRLF included) from the front of `buf`.
fn take_line(buf: &mut BytesMut, max: usize) -> Result<Option<BytesMut>, DecodeError> {
    match buf.iter().position(|&b| b == b'\n') {
        Some(i) if i + 1 > max => Err(DecodeError::Chunked("line too long")),
        Some(i) if i == 0 || buf[i - 1] != b'\r' => Err(DecodeError::Chunked("bare LF")),
        Some(i) => Ok(Some(buf.split_to(i + 1))),
        None if buf.len() >= max => Err(DecodeError::Chunked("line too long")),
        None => Ok(None),
    }
}

/// `1*HEXDIG [ chunk-ext ] CRLF` (RFC 9112 §7.1.1); extensions are checked
/// and ignored.
fn parse_chunk_size(line: &[u8]) -> Result<u64, DecodeError> {
    const BAD: DecodeError = DecodeError::Chunked("bad chunk size");
    let line = &line[..line.len() - 2];
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(BAD);
    }
    check_extensions(&line[digits..])?;
    let size = line[..digits].iter().fold(0u64, |n, &d| (n << 4) | u64::from(hex_value(d)));
    Ok(size)
}

fn hex_value(d: u8) -> u8 {
    match d {
        b'0'..=b'9' => d - b'0',
        b'a'..=b'f' => d - b'a' + 10,
        _ => d - b'A' + 10,
    }
}

/// `*( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )`, ext-val a token or
/// a quoted string.
fn check_extensions(mut rest: &[u8]) -> Result<(), DecodeError> {
    const BAD: DecodeError = DecodeError::Chunked("bad chunk extension");
    let skip_ws = |s: &[u8]| -> usize { s.iter().take_while(|&&b| b == b' ' || b == b'\t').count() };
    while !rest.is_empty() {
        // Whitespace only before a `;` (`5 \r\n` is not a chunk-size line).
        rest = &rest[skip_ws(rest)..];
        match rest.split_first() {
            Some((b';', after)) => rest = after,
            _ => return Err(BAD),
        }
        rest = &rest[skip_ws(rest)..];
        let name = token_len(rest);
        if name == 0 {
            return Err(BAD);
        }
        rest = &rest[name..];
        let ws = skip_ws(rest);
        if rest.get(ws) != Some(&b'=') {
            continue;
        }
        rest = &rest[ws + 1..];
        rest = &rest[skip_ws(rest)..];
        let value = if rest.first() == Some(&b'"') { quoted_len(rest).ok_or(BAD)? } else { token_len(rest) };
        if value == 0 {
            return Err(BAD);
        }
        rest = &rest[value..];
    }
    Ok(())
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn token_len(s: &[u8]) -> usize {
    s.iter().take_while(|&&b| is_tchar(b)).count()
}

/// The length of the quoted string `s` starts with (RFC 9110 §5.6.4).
fn quoted_len(s: &[u8]) -> Option<usize> {
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            b'"' => return Some(i + 1),
            b'\\' => {
                let escaped = *s.get(i + 1)?;
                if escaped != b'\t' && !(0x20..=0x7e).contains(&escaped) && escaped < 0x80 {
                    return None;
                }
                i += 2;
            }
            b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff => i += 1,
            _ => return None,
        }
    }
    None
}

/// A trailer line: `field-name ":" OWS field-value OWS`, with no control
/// bytes but HTAB in the value and no obs-fold.
fn check_trailer(line: &[u8]) -> Result<(), DecodeError> {
    const BAD: DecodeError = DecodeError::Chunked("bad trailer field");
    let name = token_len(line);
    if name == 0 || line.get(name) != Some(&b':') {
        return Err(BAD);
    }
    if line[name + 1..].iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(BAD);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` split at every position and collects the body.
    fn decode_all(framing: Framing, input: &[u8]) -> Result<(Vec<u8>, Vec<u8>), DecodeError> {
        let mut result = None;
        for split in 0..=input.len() {
            let mut decoder = Decoder::new(framing);
            let mut buf = BytesMut::new();
            let mut body = Vec::new();
            let outcome = (|| {
                for part in [&input[..split], &input[split..]] {
                    buf.extend_from_slice(part);
                    while let Some(data) = decoder.decode(&mut buf)? {
                        body.extend_from_slice(&data);
                    }
                }
                if !decoder.is_done() {
                    decoder.eof()?;
                }
                Ok((body.clone(), buf.to_vec()))
            })();
            match &result {
                None => result = Some(outcome),
                Some(first) => assert_eq!(first, &outcome, "split at {split}"),
            }
        }
        result.unwrap()
    }

    #[test]
    fn length_leaves_what_follows() {
        let (body, rest) = decode_all(Framing::Length(5), b"helloHTTP").unwrap();
        assert_eq!((&body[..], &rest[..]), (&b"hello"[..], &b"HTTP"[..]));
        assert_eq!(decode_all(Framing::Length(5), b"hel"), Err(DecodeError::Truncated));
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let input = b"5;name=v\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        let (body, rest) = decode_all(Framing::Chunked, input).unwrap();
        assert_eq!((&body[..], &rest[..]), (&b"hello world"[..], &b"NEXT"[..]));
        let (body, _) = decode_all(Framing::Chunked, b"A\r\n0123456789\r\n0\r\n\r\n").unwrap();
        assert_eq!(body, b"0123456789");
        let ext = b"5 ; a = b ;c;d=\"q \\\" ;\"\r\nhello\r\n000\r\nx-t:\tv \r\n\r\n";
        let (body, _) = decode_all(Framing::Chunked, ext).unwrap();
        assert_eq!(body, b"hello");
    }

    /// Chunked bodies with a framing error in them.
    const BAD_CHUNKED: &[&[u8]] = &[
        b"5\r\nhelloXX0\r\n\r\n",
        b"zz\r\n",
        b"5\nhello\r\n0\r\n\r\n",
        b"11111111111111111\r\n",
        b"-1\r\n",
        b"+5\r\nhello\r\n0\r\n\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhel",
        b"5 xyz\r\nhello\r\n0\r\n\r\n",
        b"5 \r\nhello\r\n0\r\n\r\n",
        b"5;\r\nhello\r\n0\r\n\r\n",
        b"5;a=\r\nhello\r\n0\r\n\r\n",
        b"5;a\rb\r\nhello\r\n0\r\n\r\n",
        b"5;a=\"b\r\nhello\r\n0\r\n\r\n",
        b"5;a=\"b\0\"\r\nhello\r\n0\r\n\r\n",
        b"5;a=b c\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhello\n0\r\n\r\n",
        b"5\r\nhello\r\n0\r\nx: a\0b\r\n\r\n",
        b"5\r\nhello\r\n0\r\nno colon\r\n\r\n",
        b"5\r\nhello\r\n0\r\nx: a\r\n folded\r\n\r\n",
        b"5\r\nhello\r\n0\r\n: empty name\r\n\r\n",
        b"5\r\nhello\r\n0\r\nx: a\rb\r\n\r\n",
        b"5\r\nhello\r\n0\r\nx : a\r\n\r\n",
        b"00000000000000000005\r\nhello\r\n0\r\n\r\n",
    ];

    #[test]
    fn chunked_errors() {
        for bad in BAD_CHUNKED {
            assert!(decode_all(Framing::Chunked, bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let long = format!("1;{}\r\n", "x".repeat(MAX_CHUNK_LINE));
        assert!(decode_all(Framing::Chunked, long.as_bytes()).is_err());
    }

    /// An error stays: the line that failed is gone from the buffer, and
    /// what follows (a body's end, a request behind it) must never make
    /// the body look complete (the connection would read it as the next
    /// request).
    #[test]
    fn a_framing_error_is_final() {
        for bad in BAD_CHUNKED {
            let mut input = bad.to_vec();
            input.extend_from_slice(b"0\r\n\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n");
            let mut decoder = Decoder::new(Framing::Chunked);
            let mut buf = BytesMut::from(&input[..]);
            let first = loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(_)) => continue,
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                }
            };
            let name = String::from_utf8_lossy(bad);
            let Err(e) = first else { panic!("{name}: no error") };
            for _ in 0..3 {
                assert_eq!(decoder.decode(&mut buf), Err(e), "{name}");
            }
            assert_eq!(decoder.eof(), Err(e), "{name}");
            assert!(!decoder.is_done(), "{name}");
            assert_eq!(decoder.remaining(), None, "{name}");
        }
    }

    #[test]
    fn until_close_takes_everything() {
        let (body, _) = decode_all(Framing::UntilClose, b"all of it").unwrap();
        assert_eq!(body, b"all of it");
    }

    /// Any input, split anywhere: no panic, never more body than input.
    #[test]
    fn fuzz_chunked_bytes() {
        use proptest::prelude::*;
        let seed = b"5;a=b\r\nhello\r\n6\r\n world\r\n0\r\nx-t: 1\r\n\r\nNEXT".to_vec();
        let inputs =
            prop_oneof![prop::collection::vec(crate::fuzz::wire_byte(), 0..200), crate::fuzz::mutated(seed, 6),];
        crate::fuzz::run("chunked bytes", (inputs, any::<prop::sample::Index>()), |(input, split)| {
            let at = split.index(input.len() + 1);
            let mut decoder = Decoder::new(Framing::Chunked);
            let mut buf = BytesMut::new();
            let mut body = 0;
            for part in [&input[..at], &input[at..]] {
                buf.extend_from_slice(part);
                while let Ok(Some(data)) = decoder.decode(&mut buf) {
                    body += data.len();
                }
            }
            prop_assert!(body <= input.len());
            Ok(())
        });
    }

    /// Differential: a body chunked any way (sizes, extensions, trailers)
    /// decodes to itself, whatever the split, and leaves what follows.
    #[test]
    fn fuzz_chunked_round_trip() {
        use proptest::prelude::*;
        let chunks = prop::collection::vec(
            (
                prop::collection::vec(any::<u8>(), 1..40),
                prop::sample::select(vec!["", ";a", ";a=b", " ;a=\"q\\\"\"", "\t; x = y"]),
            ),
            0..6,
        );
        let trailers = prop::collection::vec(prop::sample::select(vec!["x-t: 1", "a:", "b: c d\t"]), 0..3);
        crate::fuzz::run(
            "chunked round trip",
            (chunks, trailers, any::<bool>(), any::<prop::sample::Index>()),
            |(chunks, trailers, upper, split)| {
                let mut wire = Vec::new();
                let mut body = Vec::new();
                for (data, ext) in &chunks {
                    let size = if upper { format!("{:X}", data.len()) } else { format!("{:x}", data.len()) };
                    wire.extend_from_slice(format!("{size}{ext}\r\n").as_bytes());
                    wire.extend_from_slice(data);
                    wire.extend_from_slice(b"\r\n");
                    body.extend_from_slice(data);
                }
                wire.extend_from_slice(b"0\r\n");
                for t in &trailers {
                    wire.extend_from_slice(format!("{t}\r\n").as_bytes());
                }
                wire.extend_from_slice(b"\r\nNEXT");
                let at = split.index(wire.len() + 1);
                let mut decoder = Decoder::new(Framing::Chunked);
                let mut buf = BytesMut::new();
                let mut got = Vec::new();
                for part in [&wire[..at], &wire[at..]] {
                    buf.extend_from_slice(part);
                    while let Some(data) = decoder.decode(&mut buf).map_err(|e| TestCaseError::fail(e.to_string()))? {
                        got.extend_from_slice(&data);
                    }
                }
                prop_assert!(decoder.is_done());
                prop_assert_eq!(got, body);
                prop_assert_eq!(&buf[..], b"NEXT");
                Ok(())
            },
        );
    }
}
