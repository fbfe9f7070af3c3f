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
    /// The trace id is random (Trace Context Level 2's `random-trace-id`
    /// flag): the caller said so, or the gateway drew it.
    pub random: bool,
}

fn is_hex(b: &[u8]) -> bool {
    b.iter().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// A valid `traceparent` (version 00, or a later version read as 00
/// demands): trace id, parent id, flags.
pub fn parse(value: &[u8]) -> Option<([u8; 32], [u8; 16], u8)> {
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
    Some((trace.try_into().ok()?, parent.try_into().ok()?, flags))
}

/// The caller's `tracestate` lines as one list (RFC 9110 §5.3: several
/// lines are one comma-separated value), empty members left out; `None`
/// when nothing is left (W3C: an empty `tracestate` should not be sent), or
/// when a member is not a W3C list-member, a key repeats, or there are more
/// than 32: the whole state is dropped then, as OpenTelemetry's
/// propagators drop it, rather than passed on for another vendor to trip on.
pub fn joined_state(headers: &HeaderMap) -> Option<String> {
    const MAX_MEMBERS: usize = 32;
    let mut joined = String::new();
    let mut keys: Vec<&str> = Vec::new();
    for line in headers.get_all(TRACESTATE) {
        let text = std::str::from_utf8(line.as_bytes()).ok()?;
        for member in text.split(',') {
            let member = member.trim_matches([' ', '\t']);
            if member.is_empty() {
                continue;
            }
            let (key, value) = member.split_once('=')?;
            if !state_key(key) || !state_value(value) || keys.contains(&key) || keys.len() == MAX_MEMBERS {
                return None;
            }
            keys.push(key);
            if !joined.is_empty() {
                joined.push(',');
            }
            joined.push_str(member);
        }
    }
    (!joined.is_empty()).then_some(joined)
}

/// W3C Trace Context's list-member key: `vendor` or `tenant@vendor`, lower
/// case letters, digits and `_-*/`, starting with a letter (a tenant also
/// with a digit), at most 256 characters (tenant 241, vendor 14).
fn state_key(key: &str) -> bool {
    let part = |s: &str, max: usize, digit_first: bool| {
        let b = s.as_bytes();
        !b.is_empty()
            && b.len() <= max
            && (b[0].is_ascii_lowercase() || digit_first && b[0].is_ascii_digit())
            && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-' | b'*' | b'/'))
    };
    match key.split_once('@') {
        None => part(key, 256, false),
        Some((tenant, vendor)) => part(tenant, 241, true) && part(vendor, 14, false),
    }
}

/// A list-member value: 1 to 256 printable ASCII characters, no `,` or
/// `=`, not ending in a space.
fn state_value(value: &str) -> bool {
    let b = value.as_bytes();
    !b.is_empty()
        && b.len() <= 256
        && b.last() != Some(&b' ')
        && b.iter().all(|&c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=')
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
    /// trusted and sent one valid `traceparent` (two lines are no valid
    /// value: RFC 9110 §5.3 reads them as one list); else a new one, whose
    /// id is the request id when the gateway made it (128 random bits in
    /// hex; a caller's id may be neither random nor unique). `sample`
    /// decides a new trace's sampled flag.
    ///
    /// `recording`: the gateway exports spans. Without an exporter it has
    /// no span of its own to name: a continued trace goes on with the
    /// caller's span as the parent (a parent no backend would receive
    /// left the service's span an orphan), and a new one with the sampled
    /// flag set, so that the services' parent-based samplers record as
    /// they would without the gateway (a flag of 0 turned off tracing in
    /// every service behind it).
    pub fn of(
        headers: &HeaderMap,
        trusted: bool,
        request_id: &HeaderValue,
        sample: impl FnOnce() -> bool,
        recording: bool,
    ) -> TraceContext {
        let span_id = hex_of::<16>(&span_id().to_be_bytes());
        if trusted {
            let mut lines = headers.get_all(TRACEPARENT).iter();
            if let (Some(line), None) = (lines.next(), lines.next())
                && let Some((trace_id, parent, flags)) = parse(line.as_bytes())
            {
                let (sampled, random) = (flags & 1 == 1, flags & 2 == 2);
                let span_id = if recording { span_id } else { parent };
                return TraceContext { trace_id, parent: Some(parent), span_id, sampled, random };
            }
        }
        let id = request_id.as_bytes();
        let generated = !trusted || headers.get(crate::http::request_id::HEADER) != Some(request_id);
        let trace_id = match <[u8; 32]>::try_from(id) {
            Ok(t) if generated && is_hex(&t) && !t.iter().all(|&c| c == b'0') => t,
            _ => hex_of::<32>(&rand::random::<u128>().to_be_bytes()),
        };
        let sampled = if recording { sample() } else { true };
        TraceContext { trace_id, parent: None, span_id, sampled, random: true }
    }

    /// The W3C trace flags this trace goes on with: `sampled` (1) and
    /// `random-trace-id` (2).
    pub fn flags(&self) -> u8 {
        u8::from(self.sampled) | u8::from(self.random) << 1
    }

    /// The `traceparent` the upstream gets: this trace, the gateway's span.
    /// Cut from a per-thread slab, as request ids are: no allocation of its own.
    pub fn header(&self) -> HeaderValue {
        let mut v = [0u8; 55];
        v[..3].copy_from_slice(b"00-");
        v[3..35].copy_from_slice(&self.trace_id);
        v[35] = b'-';
        v[36..52].copy_from_slice(&self.span_id);
        // Two hex digits; the flags are 0 to 3.
        v[52..].copy_from_slice(&[b'-', b'0', b'0' + self.flags()]);
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
        let (t, p, flags) = parse(GOOD.as_bytes()).unwrap();
        assert_eq!(&t, b"0af7651916cd43dd8448eb211c80319c");
        assert_eq!(&p, b"b7ad6b7169203331");
        assert_eq!(flags, 1);
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
        let t = TraceContext::of(&h, true, &id, || false, true);
        assert_eq!(&t.trace_id, b"0af7651916cd43dd8448eb211c80319c");
        assert!(t.sampled);
        let out = t.header();
        assert!(out.to_str().unwrap().starts_with("00-0af7651916cd43dd8448eb211c80319c-"));
        assert_ne!(out, GOOD, "the upstream's parent is the gateway's span");
        let u = TraceContext::of(&h, false, &id, || false, true);
        assert_eq!(&u.trace_id, id.as_bytes(), "an untrusted caller's trace is not continued");
        assert!(u.parent.is_none() && !u.sampled);
        assert!(parse(u.header().as_bytes()).is_some());
    }

    /// Without an exporter the gateway has no span: the caller's goes on as
    /// the parent, and a new trace is marked sampled (the services decide).
    #[test]
    fn without_an_exporter_the_callers_span_stays_the_parent() {
        let mut h = HeaderMap::new();
        h.insert(TRACEPARENT, HeaderValue::from_static(GOOD));
        let id = HeaderValue::from_static("1234567890abcdef1234567890abcdef");
        assert_eq!(TraceContext::of(&h, true, &id, || false, false).header(), GOOD);
        let started = TraceContext::of(&h, false, &id, || false, false);
        assert!(started.header().to_str().unwrap().ends_with("-03"), "{:?}", started.header());
    }

    #[test]
    fn flags_ids_and_repeated_fields() {
        let id = HeaderValue::from_static("1234567890abcdef1234567890abcdef");
        let with = |lines: &[&'static str], x_request_id: bool| {
            let mut h = HeaderMap::new();
            for l in lines {
                h.append(TRACEPARENT, HeaderValue::from_static(l));
            }
            if x_request_id {
                h.insert(crate::http::request_id::HEADER, id.clone());
            }
            TraceContext::of(&h, true, &id, || true, true)
        };
        // Level 2's random-trace-id flag is kept when a trace is continued,
        // and set on a trace the gateway starts.
        let random = with(&["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-02"], false);
        assert!(random.header().to_str().unwrap().ends_with("-02"));
        assert!(with(&[GOOD], false).header().to_str().unwrap().ends_with("-01"));
        let started = with(&[], false);
        assert!(started.header().to_str().unwrap().ends_with("-03"));
        assert_eq!(&started.trace_id, id.as_bytes(), "the gateway's own request id");
        // A caller's `X-Request-Id` is not a trace id (it may be neither random nor unique).
        let taken = with(&[], true);
        assert_ne!(&taken.trace_id, id.as_bytes());
        // Two lines are one invalid list: a new trace.
        let two = with(&[GOOD, GOOD], false);
        assert!(two.parent.is_none());
    }

    #[test]
    fn tracestate_lines_are_one_list() {
        let mut h = HeaderMap::new();
        assert_eq!(joined_state(&h), None);
        h.append(TRACESTATE, HeaderValue::from_static(""));
        assert_eq!(joined_state(&h), None, "an empty tracestate is not sent on");
        h.append(TRACESTATE, HeaderValue::from_static("a=1, ,b=2"));
        h.append(TRACESTATE, HeaderValue::from_static("c=3"));
        assert_eq!(joined_state(&h).as_deref(), Some("a=1,b=2,c=3"));
        let one = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.append(TRACESTATE, HeaderValue::from_static(v));
            joined_state(&h)
        };
        assert_eq!(
            one("congo=t61rcWkgMzE,t1@rojo=00f067aa0ba902b7").as_deref(),
            Some("congo=t61rcWkgMzE,t1@rojo=00f067aa0ba902b7")
        );
        // Not W3C list-members: the whole state is dropped.
        for bad in ["a=1,INVALID KEY=2", "a=1,=x", "a=1,b", "A=1", "a=1,a=2", "a=x,y=", "1a=2", "t@Vendor=1"] {
            assert_eq!(one(bad), None, "{bad}");
        }
        let many = (0..33).map(|i| format!("k{i}=v")).collect::<Vec<_>>().join(",");
        let mut h = HeaderMap::new();
        h.append(TRACESTATE, HeaderValue::from_str(&many).unwrap());
        assert_eq!(joined_state(&h), None, "more than 32 members");
    }
}
