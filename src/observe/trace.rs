//! W3C Trace Context (`traceparent`, `tracestate`): the gateway continues a
//! trusted caller's trace or starts one, and tells the upstream which span
//! it is in. Always on; exporting spans is separate (`tracing.otlp`).

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::wire::recycle::Slab;

thread_local! {
    static SLAB: Slab = Slab::new(4096);
}

pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// One request's place in a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits.
    pub trace_id: [u8; 32],
    /// The caller's span (16 hex digits), when the trace came with the request.
    pub parent: Option<[u8; 16]>,
    /// The gateway's own span for this request.
    pub span_id: [u8; 16],
    pub sampled: bool,
}

fn is_hex(b: &[u8]) -> bool {
    b.iter().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// A valid `traceparent` (version 00, or a later version read as 00
/// demands): trace id, parent id, sampled flag.
pub fn parse(value: &[u8]) -> Option<([u8; 32], [u8; 16], bool)> {
    if value.len() < 55 || value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let (version, trace, parent, flags) = (&value[0..2], &value[3..35], &value[36..52], &value[53..55]);
    if !is_hex(version) || version == b"ff" || !is_hex(trace) || !is_hex(parent) || !is_hex(flags) {
        return None;
    }
    // Version 00 is exactly 55 bytes; a later version may append `-…`.
    if (version == b"00" && value.len() != 55) || (value.len() > 55 && value[55] != b'-') {
        return None;
    }
    if trace.iter().all(|&c| c == b'0') || parent.iter().all(|&c| c == b'0') {
        return None;
    }
    let flags = u8::from_str_radix(std::str::from_utf8(flags).ok()?, 16).ok()?;
    Some((trace.try_into().ok()?, parent.try_into().ok()?, flags & 1 == 1))
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A new span id: SplitMix64 over a per-thread state seeded at random.
/// Span ids must be unique, not secret; this costs a few instructions where
/// the thread's CSPRNG cost ~80 per request.
fn span_id() -> u64 {
    thread_local! {
        static STATE: std::cell::Cell<u64> = std::cell::Cell::new(rand::random());
    }
    STATE.with(|s| {
        let next = s.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        s.set(next);
        let mut z = next;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        // Never the all-zero id W3C forbids.
        (z ^ (z >> 31)).max(1)
    })
}

fn hex_of<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 15)];
    }
    out
}

impl TraceContext {
    /// The trace a request belongs to: its caller's, when the caller is
    /// trusted and sent a valid `traceparent`; else a new one, whose id is
    /// the request id when that is a fresh 128-bit hex id. `sample` decides
    /// a new trace's sampled flag.
    pub fn of(
        headers: &HeaderMap,
        trusted: bool,
        request_id: &HeaderValue,
        sample: impl FnOnce() -> bool,
    ) -> TraceContext {
        let span_id = hex_of::<16>(&span_id().to_be_bytes());
        if trusted && let Some((trace_id, parent, sampled)) = headers.get(TRACEPARENT).and_then(|v| parse(v.as_bytes()))
        {
            return TraceContext { trace_id, parent: Some(parent), span_id, sampled };
        }
        let id = request_id.as_bytes();
        let trace_id = match <[u8; 32]>::try_from(id) {
            Ok(t) if is_hex(&t) && !t.iter().all(|&c| c == b'0') => t,
            _ => hex_of::<32>(&rand::random::<u128>().to_be_bytes()),
        };
        TraceContext { trace_id, parent: None, span_id, sampled: sample() }
    }

    /// The `traceparent` the upstream gets: this trace, the gateway's span.
    /// Cut from a per-thread slab, as request ids are: no allocation of its own.
    pub fn header(&self) -> HeaderValue {
        let mut v = [0u8; 55];
        v[..3].copy_from_slice(b"00-");
        v[3..35].copy_from_slice(&self.trace_id);
        v[35] = b'-';
        v[36..52].copy_from_slice(&self.span_id);
        v[52..].copy_from_slice(if self.sampled { b"-01" } else { b"-00" });
        let bytes = SLAB.with(|slab| slab.copy(&v));
        HeaderValue::from_maybe_shared(bytes).expect("hex digits and dashes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn parses_only_valid_traceparents() {
        let (t, p, s) = parse(GOOD.as_bytes()).unwrap();
        assert_eq!(&t, b"0af7651916cd43dd8448eb211c80319c");
        assert_eq!(&p, b"b7ad6b7169203331");
        assert!(s);
        for bad in [
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-01",
            "",
        ] {
            assert!(parse(bad.as_bytes()).is_none(), "{bad}");
        }
        assert!(parse(b"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00-later").is_some());
    }

    #[test]
    fn continues_trusted_traces_and_starts_others() {
        let mut h = HeaderMap::new();
        h.insert(TRACEPARENT, HeaderValue::from_static(GOOD));
        let id = HeaderValue::from_static("1234567890abcdef1234567890abcdef");
        let t = TraceContext::of(&h, true, &id, || false);
        assert_eq!(&t.trace_id, b"0af7651916cd43dd8448eb211c80319c");
        assert!(t.sampled);
        let out = t.header();
        assert!(out.to_str().unwrap().starts_with("00-0af7651916cd43dd8448eb211c80319c-"));
        assert_ne!(out, GOOD, "the upstream's parent is the gateway's span");
        let u = TraceContext::of(&h, false, &id, || false);
        assert_eq!(&u.trace_id, id.as_bytes(), "an untrusted caller's trace is not continued");
        assert!(u.parent.is_none() && !u.sampled);
        assert!(parse(u.header().as_bytes()).is_some());
    }
}
