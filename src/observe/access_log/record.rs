//! One access-log line's facts, gathered on the request path (owned, so
//! that the line can be written after the response is gone) and put into
//! text on the writer's thread.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use http::{HeaderValue, Method, Version};
use smallvec::SmallVec;

use super::super::flag::Flag;
use super::time::civil;

/// A name from the config (a route, an upstream, a target) as the log
/// writes it: its text, and its JSON string made once, when the config is
/// compiled (the line copies it without looking for escapes).
#[derive(Debug)]
pub struct LogName {
    pub text: Arc<str>,
    json: Box<[u8]>,
}

impl LogName {
    pub fn new(text: Arc<str>) -> Arc<LogName> {
        let mut json = Vec::with_capacity(text.len() + 2);
        json_str(&mut json, &text);
        Arc::new(LogName { text, json: json.into_boxed_slice() })
    }

    /// The JSON string, quotes included.
    pub fn json(&self) -> &[u8] {
        &self.json
    }
}

/// One upstream try.
#[derive(Debug, Clone)]
pub struct Try {
    pub target: Arc<LogName>,
    /// The status, or what went wrong (`connect`, `timeout`, `closed`).
    pub outcome: Result<u16, &'static str>,
    pub duration_ns: u64,
}

/// What the access log says about one request.
#[derive(Debug)]
pub struct Record {
    pub time: SystemTime,
    pub duration_ns: u64,
    pub method: Method,
    pub version: Version,
    /// The path as the client sent it, the redacted query, user agent and
    /// referrer, one after the other in `text` (one allocation for all).
    pub text: String,
    pub path_len: u32,
    pub query_len: Option<u32>,
    pub user_agent_len: Option<u32>,
    pub referrer_len: Option<u32>,
    pub request_id: HeaderValue,
    pub trace_id: Option<[u8; 32]>,
    pub client_ip: IpAddr,
    pub source_ip: IpAddr,
    pub tls_version: Option<&'static str>,
    pub status: u16,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub route: Option<Arc<LogName>>,
    pub upstream: Option<Arc<LogName>>,
    pub tries: SmallVec<[Try; 1]>,
    pub consumer: Option<Arc<str>>,
    pub auth_provider: Option<Arc<str>>,
    pub auth_outcome: Option<&'static str>,
    pub rate_limit: Option<&'static str>,
    pub validation: Option<&'static str>,
    pub flag: Flag,
}

impl Default for Record {
    fn default() -> Record {
        Record {
            time: std::time::UNIX_EPOCH,
            duration_ns: 0,
            method: Method::GET,
            version: Version::HTTP_11,
            text: String::new(),
            path_len: 0,
            query_len: None,
            user_agent_len: None,
            referrer_len: None,
            request_id: HeaderValue::from_static(""),
            trace_id: None,
            client_ip: std::net::Ipv4Addr::UNSPECIFIED.into(),
            source_ip: std::net::Ipv4Addr::UNSPECIFIED.into(),
            tls_version: None,
            status: 0,
            request_bytes: 0,
            response_bytes: 0,
            route: None,
            upstream: None,
            tries: SmallVec::new(),
            consumer: None,
            auth_provider: None,
            auth_outcome: None,
            rate_limit: None,
            validation: None,
            flag: Flag::None,
        }
    }
}

impl Record {
    /// Lets go of everything shared (names, the request id) and empties
    /// the text, keeping its capacity: a record kept for another request.
    pub fn release(&mut self) {
        self.text.clear();
        self.request_id = HeaderValue::from_static("");
        self.route = None;
        self.upstream = None;
        self.tries.clear();
        self.consumer = None;
        self.auth_provider = None;
    }

    fn parts(&self) -> (&str, Option<&str>, Option<&str>, Option<&str>) {
        let mut at = self.path_len as usize;
        let path = &self.text[..at];
        let mut next = |len: Option<u32>| {
            len.map(|l| {
                let s = &self.text[at..at + l as usize];
                at += l as usize;
                s
            })
        };
        let query = next(self.query_len);
        let ua = next(self.user_agent_len);
        let referrer = next(self.referrer_len);
        (path, query, ua, referrer)
    }

    /// Upstream time: the sum of the tries.
    pub fn upstream_ns(&self) -> Option<u64> {
        (!self.tries.is_empty()).then(|| self.tries.iter().map(|t| t.duration_ns).sum())
    }

    /// One ECS JSON object and a newline. Written without `core::fmt` (it
    /// cost half of a proxied request per line): integers through `itoa`,
    /// addresses and the date by hand, strings copied whole unless they
    /// need escapes.
    pub fn write_ecs(&self, out: &mut Vec<u8>, clock: &mut DateCache) {
        let (path, query, ua, referrer) = self.parts();
        out.extend_from_slice(b"{\"@timestamp\":\"");
        clock.rfc3339(self.time, out);
        put(
            out,
            "\",\"ecs\":{\"version\":\"8.11.0\"},\"event\":{\"kind\":\"event\",\"category\":[\"web\"],\"duration\":",
        );
        push_u64(out, self.duration_ns);
        out.extend_from_slice(b",\"outcome\":\"");
        put(
            out,
            if self.status >= 500 || self.flag != Flag::None && self.status >= 400 { "failure" } else { "success" },
        );
        out.extend_from_slice(b"\"},\"http\":{\"version\":\"");
        put(out, version(self.version));
        out.extend_from_slice(b"\",\"request\":{\"id\":");
        json_bytes(out, self.request_id.as_bytes());
        out.extend_from_slice(b",\"method\":");
        // A method is a token (`http` refuses anything else): nothing to escape.
        out.push(b'"');
        put(out, self.method.as_str());
        out.push(b'"');
        out.extend_from_slice(b",\"body\":{\"bytes\":");
        push_u64(out, self.request_bytes);
        out.push(b'}');
        if let Some(r) = referrer {
            out.extend_from_slice(b",\"referrer\":");
            json_str(out, r);
        }
        out.extend_from_slice(b"},\"response\":{\"status_code\":");
        push_u64(out, u64::from(self.status));
        out.extend_from_slice(b",\"body\":{\"bytes\":");
        push_u64(out, self.response_bytes);
        out.extend_from_slice(b"}}},\"url\":{\"path\":");
        json_str(out, path);
        if let Some(q) = query {
            out.extend_from_slice(b",\"query\":");
            json_str(out, q);
        }
        out.extend_from_slice(b"},\"client\":{\"ip\":\"");
        let client_at = out.len();
        push_ip(out, self.client_ip);
        let client_end = out.len();
        out.extend_from_slice(b"\"},\"source\":{\"ip\":\"");
        if self.source_ip == self.client_ip {
            out.extend_from_within(client_at..client_end);
        } else {
            push_ip(out, self.source_ip);
        }
        out.extend_from_slice(b"\"}");
        if let Some(ua) = ua {
            out.extend_from_slice(b",\"user_agent\":{\"original\":");
            json_str(out, ua);
            out.push(b'}');
        }
        if let Some(v) = self.tls_version {
            out.extend_from_slice(b",\"tls\":{\"version\":\"");
            put(out, v);
            out.extend_from_slice(b"\",\"version_protocol\":\"tls\"}");
        }
        if let Some(id) = &self.trace_id {
            out.extend_from_slice(b",\"trace\":{\"id\":\"");
            out.extend_from_slice(id);
            out.extend_from_slice(b"\"}");
        }
        if let Some(c) = &self.consumer {
            out.extend_from_slice(b",\"user\":{\"id\":");
            json_str(out, c);
            out.push(b'}');
        }
        out.extend_from_slice(b",\"portcullis\":{\"response_flag\":\"");
        put(out, self.flag.code());
        out.push(b'"');
        if let Some(r) = &self.route {
            out.extend_from_slice(b",\"route\":");
            out.extend_from_slice(r.json());
        }
        let upstream_ns = self.upstream_ns();
        out.extend_from_slice(b",\"gateway\":{\"duration\":");
        push_u64(out, self.duration_ns.saturating_sub(upstream_ns.unwrap_or(0)));
        out.push(b'}');
        if let Some(u) = &self.upstream {
            out.extend_from_slice(b",\"upstream\":{\"name\":");
            out.extend_from_slice(u.json());
            if let Some(last) = self.tries.last() {
                out.extend_from_slice(b",\"target\":");
                out.extend_from_slice(last.target.json());
            }
            out.extend_from_slice(b",\"duration\":");
            push_u64(out, upstream_ns.unwrap_or(0));
            out.extend_from_slice(b",\"tries\":[");
            for (i, t) in self.tries.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"target\":");
                out.extend_from_slice(t.target.json());
                match t.outcome {
                    Ok(status) => {
                        out.extend_from_slice(b",\"status_code\":");
                        push_u64(out, u64::from(status));
                    }
                    Err(e) => {
                        out.extend_from_slice(b",\"error\":\"");
                        put(out, e);
                        out.push(b'"');
                    }
                }
                out.extend_from_slice(b",\"duration\":");
                push_u64(out, t.duration_ns);
                out.push(b'}');
            }
            out.extend_from_slice(b"]}");
        }
        if self.auth_outcome.is_some() {
            out.extend_from_slice(b",\"auth\":{\"outcome\":\"");
            put(out, self.auth_outcome.unwrap_or_default());
            out.push(b'"');
            if let Some(p) = &self.auth_provider {
                out.extend_from_slice(b",\"provider\":");
                json_str(out, p);
            }
            out.push(b'}');
        }
        if let Some(d) = self.rate_limit {
            out.extend_from_slice(b",\"rate_limit\":{\"decision\":\"");
            put(out, d);
            out.extend_from_slice(b"\"}");
        }
        if let Some(v) = self.validation {
            out.extend_from_slice(b",\"validation\":{\"outcome\":\"");
            put(out, v);
            out.extend_from_slice(b"\"}");
        }
        out.extend_from_slice(b"}}\n");
    }

    /// NGINX's `combined` line, then the request id, route, response flag
    /// and duration in seconds:
    /// `ip - user [time] "GET /p?q HTTP/1.1" 200 12 "ref" "ua" id route flag 0.001`
    pub fn write_combined(&self, out: &mut Vec<u8>) {
        let (path, query, ua, referrer) = self.parts();
        let t = civil(self.time);
        push_ip(out, self.client_ip);
        out.extend_from_slice(b" - ");
        put(out, self.consumer.as_deref().map_or("-", |c| c));
        out.extend_from_slice(b" [");
        const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
        let _ = write!(
            TextOut(out),
            "{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000",
            t.day,
            MONTHS[(t.month - 1) as usize],
            t.year,
            t.hour,
            t.minute,
            t.second
        );
        out.extend_from_slice(b"] \"");
        text_escaped(out, self.method.as_str());
        out.push(b' ');
        text_escaped(out, path);
        if let Some(q) = query {
            out.push(b'?');
            text_escaped(out, q);
        }
        let _ = write!(TextOut(out), " {}\" {} {} \"", version_line(self.version), self.status, self.response_bytes);
        text_escaped(out, referrer.unwrap_or("-"));
        out.extend_from_slice(b"\" \"");
        text_escaped(out, ua.unwrap_or("-"));
        out.extend_from_slice(b"\" ");
        text_escaped(out, self.request_id.to_str().unwrap_or("-"));
        out.push(b' ');
        text_escaped(out, self.route.as_ref().map_or("-", |r| &r.text));
        let _ = writeln!(TextOut(out), " {} {:.6}", self.flag.code(), self.duration_ns as f64 / 1e9);
    }
}

fn version(v: Version) -> &'static str {
    match v {
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        Version::HTTP_09 => "0.9",
        _ => "1.1",
    }
}

fn version_line(v: Version) -> &'static str {
    match v {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        _ => "HTTP/1.1",
    }
}

/// `@timestamp`s: the date and time to the second are formatted once per
/// second, the milliseconds per line.
#[derive(Default)]
pub struct DateCache {
    second: u64,
    text: String,
}

impl DateCache {
    /// `2026-12-03T20:34:56.123Z`.
    pub fn rfc3339(&mut self, time: SystemTime, out: &mut Vec<u8>) {
        let since = time.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        if since.as_secs() != self.second || self.text.is_empty() {
            let t = civil(time);
            self.second = since.as_secs();
            self.text.clear();
            let _ = write!(
                self.text,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.",
                t.year, t.month, t.day, t.hour, t.minute, t.second
            );
        }
        let ms = since.subsec_millis();
        out.extend_from_slice(self.text.as_bytes());
        out.extend_from_slice(&[b'0' + (ms / 100) as u8, b'0' + (ms / 10 % 10) as u8, b'0' + (ms % 10) as u8, b'Z']);
    }
}

/// Text into a line (the line is bytes: no UTF-8 bookkeeping per push).
fn put(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
}

/// `core::fmt` into a line, for the rare parts that need it.
struct TextOut<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for TextOut<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        put(self.0, s);
        Ok(())
    }
}

fn push_u64(out: &mut Vec<u8>, v: u64) {
    put(out, itoa::Buffer::new().format(v));
}

/// An address as text. IPv4 digit by digit into a stack buffer, copied
/// once (four `itoa` calls and seven pushes cost ~220 instructions an
/// address).
pub fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut text = [0u8; 15];
            let mut len = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text[len] = b'.';
                    len += 1;
                }
                if octet >= 100 {
                    text[len] = b'0' + octet / 100;
                    len += 1;
                }
                if octet >= 10 {
                    text[len] = b'0' + octet / 10 % 10;
                    len += 1;
                }
                text[len] = b'0' + octet % 10;
                len += 1;
            }
            out.extend_from_slice(&text[..len]);
        }
        IpAddr::V6(v6) => {
            let _ = write!(TextOut(out), "{v6}");
        }
    }
}

/// Bytes a JSON string cannot hold as they are.
const fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\' || b == 0x7f
}

/// Whether any byte of `s` needs an escape, eight bytes at a time (the
/// byte-by-byte test was a quarter of a line's cost): a word has a byte
/// below 0x20 or equal to `"`, `\\` or DEL exactly when the classic
/// "has a zero byte" test finds one in the word (for the three equalities)
/// or its "has a byte less than n" form does (for the controls).
fn any_needs_escape(s: &str) -> bool {
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

/// A JSON string of bytes that are almost always plain ASCII (a header
/// value): copied as they are after one scan, else read as UTF-8 with
/// invalid sequences replaced, and escaped.
pub fn json_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    if scan::<true>(bytes) {
        json_str(out, &String::from_utf8_lossy(bytes));
    } else {
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
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

/// Text for the `combined` line, NGINX-style: `"`, `\` and bytes outside
/// printable ASCII as `\xHH`, so that a client cannot forge a line or a field.
fn text_escaped(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in s.bytes() {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            out.extend_from_slice(&[b'\\', b'x', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        } else {
            out.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn record() -> Record {
        let path = "/pets/1";
        let query = "limit=2&api_key=<redacted>";
        let ua = "curl/8 \"x\"\n{\"evil\":1}";
        let mut text = String::new();
        text.push_str(path);
        text.push_str(query);
        text.push_str(ua);
        Record {
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_330_096_123),
            duration_ns: 1_500_000,
            method: Method::GET,
            version: Version::HTTP_11,
            text,
            path_len: path.len() as u32,
            query_len: Some(query.len() as u32),
            user_agent_len: Some(ua.len() as u32),
            referrer_len: None,
            request_id: HeaderValue::from_static("abc"),
            trace_id: Some(*b"0af7651916cd43dd8448eb211c80319c"),
            client_ip: "10.0.0.1".parse().unwrap(),
            source_ip: "127.0.0.1".parse().unwrap(),
            tls_version: Some("1.3"),
            status: 200,
            request_bytes: 0,
            response_bytes: 12,
            route: Some(LogName::new("pets".into())),
            upstream: Some(LogName::new("pets\"\n".into())),
            tries: smallvec::smallvec![Try {
                target: LogName::new("127.0.0.1:9".into()),
                outcome: Ok(200),
                duration_ns: 1_000_000
            }],
            consumer: Some("acme".into()),
            auth_provider: Some("keys".into()),
            auth_outcome: Some("ok"),
            rate_limit: Some("allowed"),
            validation: None,
            flag: Flag::None,
        }
    }

    #[test]
    fn ecs_line_is_one_json_object_with_the_fields() {
        let mut out = Vec::new();
        record().write_ecs(&mut out, &mut DateCache::default());
        let out = String::from_utf8(out).unwrap();
        assert!(out.ends_with('\n') && out.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["@timestamp"], "2026-12-03T20:34:56.123Z");
        assert_eq!(v["http"]["request"]["method"], "GET");
        assert_eq!(v["http"]["response"]["status_code"], 200);
        assert_eq!(v["url"]["query"], "limit=2&api_key=<redacted>");
        assert_eq!(v["user_agent"]["original"], "curl/8 \"x\"\n{\"evil\":1}");
        assert_eq!(v["event"]["duration"], 1_500_000);
        assert_eq!(v["portcullis"]["gateway"]["duration"], 500_000);
        assert_eq!(v["portcullis"]["upstream"]["tries"][0]["status_code"], 200);
        assert_eq!(v["portcullis"]["upstream"]["name"], "pets\"\n");
        assert_eq!(v["portcullis"]["upstream"]["target"], "127.0.0.1:9");
        assert_eq!(v["portcullis"]["response_flag"], "-");
        assert_eq!(v["trace"]["id"], "0af7651916cd43dd8448eb211c80319c");
    }

    #[test]
    fn the_date_cache_follows_the_clock() {
        let mut clock = DateCache::default();
        let mut out = Vec::new();
        for ms in [1_796_330_096_123u64, 1_796_330_096_999, 1_796_330_097_005, 951_827_696_000] {
            clock.rfc3339(SystemTime::UNIX_EPOCH + Duration::from_millis(ms), &mut out);
            out.push(b' ');
        }
        let out = String::from_utf8(out).unwrap();
        assert_eq!(
            out,
            "2026-12-03T20:34:56.123Z 2026-12-03T20:34:56.999Z 2026-12-03T20:34:57.005Z 2000-02-29T12:34:56.000Z "
        );
        let mut v6 = Vec::new();
        push_ip(&mut v6, "2001:db8::1".parse().unwrap());
        push_ip(&mut v6, "10.0.255.1".parse().unwrap());
        assert_eq!(v6, b"2001:db8::110.0.255.1");
    }

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
        let mut v4 = Vec::new();
        for ip in ["0.0.0.0", "255.255.255.255", "10.0.100.9", "192.168.1.42"] {
            v4.clear();
            push_ip(&mut v4, ip.parse().unwrap());
            assert_eq!(v4, ip.as_bytes());
        }
    }

    #[test]
    fn combined_line_cannot_be_forged() {
        let mut out = Vec::new();
        record().write_combined(&mut out);
        let out = String::from_utf8(out).unwrap();
        assert_eq!(out.matches('\n').count(), 1);
        assert!(out.starts_with("10.0.0.1 - acme [03/Dec/2026:20:34:56 +0000] \"GET /pets/1?limit=2&api_key=<redacted> HTTP/1.1\" 200 12 \"-\" \"curl/8 \\x22x\\x22\\x0A{\\x22evil\\x22:1}\" abc pets - 0.001500\n"), "{out}");
    }
}
