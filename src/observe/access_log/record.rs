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

/// One upstream try.
#[derive(Debug, Clone)]
pub struct Try {
    pub target: Arc<str>,
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
    pub route: Option<Arc<str>>,
    pub upstream: Option<Arc<str>>,
    pub tries: SmallVec<[Try; 1]>,
    pub consumer: Option<Arc<str>>,
    pub auth_provider: Option<Arc<str>>,
    pub auth_outcome: Option<&'static str>,
    pub rate_limit: Option<&'static str>,
    pub validation: Option<&'static str>,
    pub flag: Flag,
}

impl Record {
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
    pub fn write_ecs(&self, out: &mut String, clock: &mut DateCache) {
        let (path, query, ua, referrer) = self.parts();
        out.push_str("{\"@timestamp\":\"");
        clock.rfc3339(self.time, out);
        out.push_str(
            "\",\"ecs\":{\"version\":\"8.11.0\"},\"event\":{\"kind\":\"event\",\"category\":[\"web\"],\"duration\":",
        );
        push_u64(out, self.duration_ns);
        out.push_str(",\"outcome\":\"");
        out.push_str(if self.status >= 500 || self.flag != Flag::None && self.status >= 400 {
            "failure"
        } else {
            "success"
        });
        out.push_str("\"},\"http\":{\"version\":\"");
        out.push_str(version(self.version));
        out.push_str("\",\"request\":{\"id\":");
        json_str(out, self.request_id.to_str().unwrap_or("-"));
        out.push_str(",\"method\":");
        json_str(out, self.method.as_str());
        out.push_str(",\"body\":{\"bytes\":");
        push_u64(out, self.request_bytes);
        out.push('}');
        if let Some(r) = referrer {
            out.push_str(",\"referrer\":");
            json_str(out, r);
        }
        out.push_str("},\"response\":{\"status_code\":");
        push_u64(out, u64::from(self.status));
        out.push_str(",\"body\":{\"bytes\":");
        push_u64(out, self.response_bytes);
        out.push_str("}}},\"url\":{\"path\":");
        json_str(out, path);
        if let Some(q) = query {
            out.push_str(",\"query\":");
            json_str(out, q);
        }
        out.push_str("},\"client\":{\"ip\":\"");
        push_ip(out, self.client_ip);
        out.push_str("\"},\"source\":{\"ip\":\"");
        push_ip(out, self.source_ip);
        out.push_str("\"}");
        if let Some(ua) = ua {
            out.push_str(",\"user_agent\":{\"original\":");
            json_str(out, ua);
            out.push('}');
        }
        if let Some(v) = self.tls_version {
            out.push_str(",\"tls\":{\"version\":\"");
            out.push_str(v);
            out.push_str("\",\"version_protocol\":\"tls\"}");
        }
        if let Some(id) = &self.trace_id {
            out.push_str(",\"trace\":{\"id\":\"");
            out.push_str(std::str::from_utf8(id).unwrap_or_default());
            out.push_str("\"}");
        }
        if let Some(c) = &self.consumer {
            out.push_str(",\"user\":{\"id\":");
            json_str(out, c);
            out.push('}');
        }
        out.push_str(",\"portcullis\":{\"response_flag\":\"");
        out.push_str(self.flag.code());
        out.push('"');
        if let Some(r) = &self.route {
            out.push_str(",\"route\":");
            json_str(out, r);
        }
        let upstream_ns = self.upstream_ns();
        out.push_str(",\"gateway\":{\"duration\":");
        push_u64(out, self.duration_ns.saturating_sub(upstream_ns.unwrap_or(0)));
        out.push('}');
        if let Some(u) = &self.upstream {
            out.push_str(",\"upstream\":{\"name\":");
            json_str(out, u);
            if let Some(last) = self.tries.last() {
                out.push_str(",\"target\":");
                json_str(out, &last.target);
            }
            out.push_str(",\"duration\":");
            push_u64(out, upstream_ns.unwrap_or(0));
            out.push_str(",\"tries\":[");
            for (i, t) in self.tries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"target\":");
                json_str(out, &t.target);
                match t.outcome {
                    Ok(status) => {
                        out.push_str(",\"status_code\":");
                        push_u64(out, u64::from(status));
                    }
                    Err(e) => {
                        out.push_str(",\"error\":\"");
                        out.push_str(e);
                        out.push('"');
                    }
                }
                out.push_str(",\"duration\":");
                push_u64(out, t.duration_ns);
                out.push('}');
            }
            out.push_str("]}");
        }
        if self.auth_outcome.is_some() {
            out.push_str(",\"auth\":{\"outcome\":\"");
            out.push_str(self.auth_outcome.unwrap_or_default());
            out.push('"');
            if let Some(p) = &self.auth_provider {
                out.push_str(",\"provider\":");
                json_str(out, p);
            }
            out.push('}');
        }
        if let Some(d) = self.rate_limit {
            out.push_str(",\"rate_limit\":{\"decision\":\"");
            out.push_str(d);
            out.push_str("\"}");
        }
        if let Some(v) = self.validation {
            out.push_str(",\"validation\":{\"outcome\":\"");
            out.push_str(v);
            out.push_str("\"}");
        }
        out.push_str("}}\n");
    }

    /// NGINX's `combined` line, then the request id, route, response flag
    /// and duration in seconds:
    /// `ip - user [time] "GET /p?q HTTP/1.1" 200 12 "ref" "ua" id route flag 0.001`
    pub fn write_combined(&self, out: &mut String) {
        let (path, query, ua, referrer) = self.parts();
        let t = civil(self.time);
        push_ip(out, self.client_ip);
        out.push_str(" - ");
        out.push_str(self.consumer.as_deref().map_or("-", |c| c));
        out.push_str(" [");
        const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
        let _ = write!(
            out,
            "{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000",
            t.day,
            MONTHS[(t.month - 1) as usize],
            t.year,
            t.hour,
            t.minute,
            t.second
        );
        out.push_str("] \"");
        text_escaped(out, self.method.as_str());
        out.push(' ');
        text_escaped(out, path);
        if let Some(q) = query {
            out.push('?');
            text_escaped(out, q);
        }
        let _ = write!(out, " {}\" {} {} \"", version_line(self.version), self.status, self.response_bytes);
        text_escaped(out, referrer.unwrap_or("-"));
        out.push_str("\" \"");
        text_escaped(out, ua.unwrap_or("-"));
        out.push_str("\" ");
        text_escaped(out, self.request_id.to_str().unwrap_or("-"));
        out.push(' ');
        text_escaped(out, self.route.as_deref().unwrap_or("-"));
        let _ = writeln!(out, " {} {:.6}", self.flag.code(), self.duration_ns as f64 / 1e9);
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
    pub fn rfc3339(&mut self, time: SystemTime, out: &mut String) {
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
        out.push_str(&self.text);
        let ms = since.subsec_millis();
        out.push(char::from(b'0' + (ms / 100) as u8));
        out.push(char::from(b'0' + (ms / 10 % 10) as u8));
        out.push(char::from(b'0' + (ms % 10) as u8));
        out.push('Z');
    }
}

fn push_u64(out: &mut String, v: u64) {
    out.push_str(itoa::Buffer::new().format(v));
}

fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            // Digit by digit: four `itoa` calls and seven pushes cost ~220
            // instructions an address, a stack buffer's UTF-8 check ~80.
            out.reserve(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
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
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS != 0;
    let mut words = s.as_bytes().chunks_exact(8);
    for chunk in &mut words {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_ne_bytes(word);
        if w.wrapping_sub(ONES * 0x20) & !w & HIGHS != 0
            || has_zero(w ^ (ONES * u64::from(b'"')))
            || has_zero(w ^ (ONES * u64::from(b'\\')))
            || has_zero(w ^ (ONES * 0x7f))
        {
            return true;
        }
    }
    words.remainder().iter().any(|&b| needs_escape(b))
}

/// A JSON string: quotes, backslashes and control characters escaped.
pub fn json_str(out: &mut String, s: &str) {
    out.push('"');
    if !any_needs_escape(s) {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f | 0x7f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Text for the `combined` line, NGINX-style: `"`, `\` and bytes outside
/// printable ASCII as `\xHH`, so that a client cannot forge a line or a field.
fn text_escaped(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(b as char);
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
            route: Some("pets".into()),
            upstream: Some("pets".into()),
            tries: smallvec::smallvec![Try { target: "127.0.0.1:9".into(), outcome: Ok(200), duration_ns: 1_000_000 }],
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
        let mut out = String::new();
        record().write_ecs(&mut out, &mut DateCache::default());
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
        assert_eq!(v["portcullis"]["response_flag"], "-");
        assert_eq!(v["trace"]["id"], "0af7651916cd43dd8448eb211c80319c");
    }

    #[test]
    fn the_date_cache_follows_the_clock() {
        let mut clock = DateCache::default();
        let mut out = String::new();
        for ms in [1_796_330_096_123u64, 1_796_330_096_999, 1_796_330_097_005, 951_827_696_000] {
            clock.rfc3339(SystemTime::UNIX_EPOCH + Duration::from_millis(ms), &mut out);
            out.push(' ');
        }
        assert_eq!(
            out,
            "2026-12-03T20:34:56.123Z 2026-12-03T20:34:56.999Z 2026-12-03T20:34:57.005Z 2000-02-29T12:34:56.000Z "
        );
        let mut v6 = String::new();
        push_ip(&mut v6, "2001:db8::1".parse().unwrap());
        push_ip(&mut v6, "10.0.255.1".parse().unwrap());
        assert_eq!(v6, "2001:db8::110.0.255.1");
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
        for fine in ["", "abc", "/pets/1?x=y", "ünïcödé and 日本語 text", " !#$%&'()*+,-./~[]^_`{|}"] {
            assert!(!any_needs_escape(fine), "{fine}");
        }
        let mut v4 = String::new();
        for ip in ["0.0.0.0", "255.255.255.255", "10.0.100.9", "192.168.1.42"] {
            v4.clear();
            push_ip(&mut v4, ip.parse().unwrap());
            assert_eq!(v4, ip);
        }
    }

    #[test]
    fn combined_line_cannot_be_forged() {
        let mut out = String::new();
        record().write_combined(&mut out);
        assert_eq!(out.matches('\n').count(), 1);
        assert!(out.starts_with("10.0.0.1 - acme [03/Dec/2026:20:34:56 +0000] \"GET /pets/1?limit=2&api_key=<redacted> HTTP/1.1\" 200 12 \"-\" \"curl/8 \\x22x\\x22\\x0A{\\x22evil\\x22:1}\" abc pets - 0.001500\n"), "{out}");
    }
}
