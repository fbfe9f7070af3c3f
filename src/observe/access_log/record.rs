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
use super::line::{
    TextOut, field_escaped, json_bytes, json_bytes_in, json_str, push_ip, push_status, push_u64, put, put_cut,
    put_from, text_escaped,
};
use super::time::civil;

/// A name from the config (a route, an upstream, a target) as the log
/// writes it: its text, and its JSON string made once, when the config is
/// compiled (the line copies it without looking for escapes), stored with
/// room for a fixed-size copy (`line::put_from`).
#[derive(Debug)]
pub struct LogName {
    pub text: Arc<str>,
    json: Box<[u8]>,
    json_len: usize,
}

impl LogName {
    pub fn new(text: Arc<str>) -> Arc<LogName> {
        let mut json = Vec::with_capacity(text.len() + 2);
        json_str(&mut json, &text);
        let json_len = json.len();
        json.resize(json_len.max(NAME_ROOM), 0);
        Arc::new(LogName { text, json: json.into_boxed_slice(), json_len })
    }

    /// Appends the JSON string, quotes included.
    #[inline]
    fn put_json(&self, out: &mut Vec<u8>) {
        put_from::<NAME_ROOM>(out, &self.json, self.json_len);
    }
}

/// Names up to this long (as JSON) are copied as one block.
const NAME_ROOM: usize = 32;

/// The longest path, query, user agent and referrer a line keeps (bytes,
/// before escapes); a longer one is cut and ends in `…`. A client's 32 KB
/// of `"` grew each line to 128 KB once escaped, and a stalled log
/// destination held thousands of them (NGINX buffers logs by bytes).
pub const MAX_PATH: usize = 4096;
pub const MAX_QUERY: usize = 4096;
pub const MAX_USER_AGENT: usize = 1024;
pub const MAX_REFERRER: usize = 2048;

/// Cuts the field that starts at `from` in `text` to `max` bytes, with
/// `…` after it when it was longer.
#[inline]
pub fn cut_field(text: &mut Vec<u8>, from: usize, max: usize) {
    if text.len() - from > max {
        cut_at(text, from + max);
    }
}

/// Cuts `text` at `end`, or just before it where `end` would split a
/// UTF-8 character or a `%` escape, and ends it in `…`.
#[cold]
fn cut_at(text: &mut Vec<u8>, mut end: usize) {
    let start = end.saturating_sub(3);
    while end > start && text.get(end).is_some_and(|b| b & 0xC0 == 0x80) {
        end -= 1;
    }
    if let Some(p) = text[end.saturating_sub(2)..end].iter().position(|&b| b == b'%') {
        end = end.saturating_sub(2) + p;
    }
    text.truncate(end);
    text.extend_from_slice("…".as_bytes());
}

/// Zeros after the texts of a record (`Record::pad`): room for copying a
/// short path as one block.
pub const TEXT_ROOM: [u8; 32] = [0; 32];

/// The request's texts kept in a record's `text`.
struct Parts<'a> {
    path: &'a [u8],
    query: Option<&'a [u8]>,
    ua: Option<&'a [u8]>,
    referrer: Option<&'a [u8]>,
}

/// One upstream try.
#[derive(Debug, Clone)]
pub struct Try {
    pub target: Arc<LogName>,
    /// Its upstream, when the request's tries went to more than one (an
    /// aggregate's calls); otherwise the record's `upstream` names it.
    pub upstream: Option<Arc<LogName>>,
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
    /// referrer, one after the other in `text` (one allocation for all;
    /// bytes, as the headers came: checked for UTF-8 only when written, in
    /// the scan for escapes), then `TEXT_ROOM`'s zeros.
    pub text: Vec<u8>,
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
    /// The time during which a try was under way (tries may overlap).
    pub upstream_ns: Option<u64>,
    /// When the response relays the last try's answer (its body read from
    /// the upstream as it is sent): that try's start, in nanoseconds from
    /// the request's. The try then lasts to the response's end, as NGINX's
    /// `$upstream_response_time` runs to the upstream's last byte: a slow
    /// body is the upstream's time, not the gateway's.
    pub relayed_from_ns: Option<u64>,
    pub consumer: Option<Arc<str>>,
    pub auth_provider: Option<Arc<str>>,
    pub auth_outcome: Option<&'static str>,
    /// Why authentication failed (`missing`, `invalid`, `unavailable`).
    pub auth_reason: Option<&'static str>,
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
            text: Vec::new(),
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
            upstream_ns: None,
            relayed_from_ns: None,
            consumer: None,
            auth_provider: None,
            auth_outcome: None,
            auth_reason: None,
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
        self.upstream_ns = None;
        self.relayed_from_ns = None;
        self.consumer = None;
        self.auth_provider = None;
    }

    fn parts(&self) -> Parts<'_> {
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
        Parts { path, query, ua, referrer }
    }

    /// One ECS JSON object and a newline. Written without `core::fmt` (it
    /// cost half of a proxied request per line): the constant runs between
    /// values as few, long pieces (one per outcome and HTTP version, one
    /// per common method), integers through `itoa`, addresses and the date
    /// by hand, strings copied whole unless they need escapes.
    pub fn write_ecs(&self, out: &mut Vec<u8>, clock: &mut DateCache) {
        let Parts { path, query, ua, referrer } = self.parts();
        out.extend_from_slice(b"{\"@timestamp\":\"");
        clock.rfc3339(self.time, out);
        out.extend_from_slice(
            b"\",\"ecs\":{\"version\":\"8.11.0\"},\"event\":{\"kind\":\"event\",\"category\":[\"web\"],\"type\":[\"access\"],\"duration\":",
        );
        push_u64(out, self.duration_ns);
        // A response cut mid-body (its upstream broke off, its client
        // left) failed, whatever its status said.
        let failure = self.status >= 500
            || self.flag != Flag::None && self.status >= 400
            || matches!(self.flag, Flag::UpstreamClosed | Flag::UpstreamTimeout | Flag::ClientClosed);
        put(out, outcome_to_request_id(failure, self.version));
        let id = self.request_id.as_bytes();
        json_bytes_in(out, id, id);
        match method_to_body_bytes(&self.method) {
            Some(run) => put(out, run),
            None => {
                // A method is a token (`http` refuses anything else): nothing to escape.
                out.extend_from_slice(b",\"method\":\"");
                put(out, self.method.as_str());
                out.extend_from_slice(b"\",\"body\":{\"bytes\":");
            }
        }
        push_u64(out, self.request_bytes);
        out.push(b'}');
        if let Some(r) = referrer {
            out.extend_from_slice(b",\"referrer\":");
            json_bytes(out, r);
        }
        out.extend_from_slice(b"},\"response\":{\"status_code\":");
        push_status(out, self.status);
        out.extend_from_slice(b",\"body\":{\"bytes\":");
        push_u64(out, self.response_bytes);
        out.extend_from_slice(b"}}},\"url\":{\"path\":");
        json_bytes_in(out, path, &self.text);
        if let Some(q) = query {
            out.extend_from_slice(b",\"query\":");
            json_bytes(out, q);
        }
        out.extend_from_slice(b"},\"client\":{\"ip\":\"");
        push_ip(out, self.client_ip);
        out.extend_from_slice(b"\"},\"source\":{\"ip\":\"");
        push_ip(out, self.source_ip);
        out.extend_from_slice(b"\"}");
        if let Some(ua) = ua {
            out.extend_from_slice(b",\"user_agent\":{\"original\":");
            json_bytes(out, ua);
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
            r.put_json(out);
        }
        let upstream_ns = self.upstream_ns;
        out.extend_from_slice(b",\"gateway\":{\"duration\":");
        push_u64(out, self.duration_ns.saturating_sub(upstream_ns.unwrap_or(0)));
        out.push(b'}');
        if !self.tries.is_empty() {
            // One upstream: its name and last target here; several (an
            // aggregate's calls): each try names its own.
            match (&self.upstream, self.tries.last()) {
                (Some(u), Some(last)) => {
                    out.extend_from_slice(b",\"upstream\":{\"name\":");
                    u.put_json(out);
                    out.extend_from_slice(b",\"target\":");
                    last.target.put_json(out);
                    out.extend_from_slice(b",\"duration\":");
                }
                _ => out.extend_from_slice(b",\"upstream\":{\"duration\":"),
            }
            push_u64(out, upstream_ns.unwrap_or(0));
            out.extend_from_slice(b",\"tries\":[");
            for (i, t) in self.tries.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.push(b'{');
                if let Some(u) = &t.upstream {
                    out.extend_from_slice(b"\"upstream\":");
                    u.put_json(out);
                    out.push(b',');
                }
                out.extend_from_slice(b"\"target\":");
                t.target.put_json(out);
                match t.outcome {
                    Ok(status) => {
                        out.extend_from_slice(b",\"status_code\":");
                        push_status(out, status);
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
            if let Some(reason) = self.auth_reason {
                out.extend_from_slice(b",\"reason\":\"");
                put(out, reason);
                out.push(b'"');
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
        let Parts { path, query, ua, referrer } = self.parts();
        let t = civil(self.time);
        push_ip(out, self.client_ip);
        out.extend_from_slice(b" - ");
        field_escaped(out, self.consumer.as_deref().map_or(b"-", |c| c.as_bytes()));
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
        if path.is_empty() {
            // A request line that could not be read: no method, target or
            // version to show (not `-  HTTP/1.1`, a version it never sent).
            out.push(b'-');
        } else {
            text_escaped(out, self.method.as_str().as_bytes());
            out.push(b' ');
            text_escaped(out, path);
            if let Some(q) = query {
                out.push(b'?');
                text_escaped(out, q);
            }
            out.push(b' ');
            out.extend_from_slice(version_line(self.version).as_bytes());
        }
        let _ = write!(TextOut(out), "\" {} {} \"", self.status, self.response_bytes);
        text_escaped(out, referrer.unwrap_or(b"-"));
        out.extend_from_slice(b"\" \"");
        text_escaped(out, ua.unwrap_or(b"-"));
        out.extend_from_slice(b"\" ");
        field_escaped(out, self.request_id.as_bytes());
        out.push(b' ');
        field_escaped(out, self.route.as_ref().map_or(b"-", |r| r.text.as_bytes()));
        let _ = writeln!(TextOut(out), " {} {:.6}", self.flag.code(), self.duration_ns as f64 / 1e9);
    }
}

/// The constant run from the event's outcome to the request id's value,
/// for each outcome and HTTP version.
fn outcome_to_request_id(failure: bool, v: Version) -> &'static str {
    macro_rules! run {
        ($outcome:literal, $version:literal) => {
            concat!(",\"outcome\":\"", $outcome, "\"},\"http\":{\"version\":\"", $version, "\",\"request\":{\"id\":")
        };
    }
    match (failure, v) {
        (false, Version::HTTP_10) => run!("success", "1.0"),
        (false, Version::HTTP_2) => run!("success", "2"),
        (false, Version::HTTP_3) => run!("success", "3"),
        (false, Version::HTTP_09) => run!("success", "0.9"),
        (false, _) => run!("success", "1.1"),
        (true, Version::HTTP_10) => run!("failure", "1.0"),
        (true, Version::HTTP_2) => run!("failure", "2"),
        (true, Version::HTTP_3) => run!("failure", "3"),
        (true, Version::HTTP_09) => run!("failure", "0.9"),
        (true, _) => run!("failure", "1.1"),
    }
}

/// The constant run from the method to the request body's size, for the
/// common methods.
fn method_to_body_bytes(m: &Method) -> Option<&'static str> {
    macro_rules! run {
        ($method:literal) => {
            concat!(",\"method\":\"", $method, "\",\"body\":{\"bytes\":")
        };
    }
    Some(match *m {
        Method::GET => run!("GET"),
        Method::POST => run!("POST"),
        Method::PUT => run!("PUT"),
        Method::DELETE => run!("DELETE"),
        Method::PATCH => run!("PATCH"),
        Method::HEAD => run!("HEAD"),
        Method::OPTIONS => run!("OPTIONS"),
        _ => return None,
    })
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
    /// `2026-12-03T20:34:56.` (20 bytes until the year 10000), its length.
    text: [u8; 32],
    len: usize,
}

impl DateCache {
    /// `2026-12-03T20:34:56.123Z`.
    pub fn rfc3339(&mut self, time: SystemTime, out: &mut Vec<u8>) {
        let since = time.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        if since.as_secs() != self.second || self.len == 0 {
            let t = civil(time);
            let mut text = String::new();
            let _ = write!(
                text,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.",
                t.year, t.month, t.day, t.hour, t.minute, t.second
            );
            self.len = text.len().min(self.text.len());
            self.text[..self.len].copy_from_slice(&text.as_bytes()[..self.len]);
            self.second = since.as_secs();
        }
        let ms = since.subsec_millis();
        put_cut(out, &self.text, self.len);
        out.extend_from_slice(&[b'0' + (ms / 100) as u8, b'0' + (ms / 10 % 10) as u8, b'0' + (ms % 10) as u8, b'Z']);
    }
}

/// What `benches/access_log.rs` measures: the line of a plain proxied GET
/// (the bench's request: no query or user agent, one try).
#[doc(hidden)]
pub mod bench {
    use super::*;

    pub struct EcsLine {
        record: Record,
        clock: DateCache,
        pub out: Vec<u8>,
    }

    impl EcsLine {
        pub fn new() -> EcsLine {
            let target = LogName::new("127.0.0.1:18081".into());
            let record = Record {
                time: std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_796_330_096_123),
                duration_ns: 5_137_290,
                text: [&b"/"[..], &TEXT_ROOM].concat(),
                path_len: 1,
                request_id: HeaderValue::from_static("0da950b93451e704670c0b11ec6c6af5"),
                trace_id: Some(*b"0da950b93451e704670c0b11ec6c6af5"),
                client_ip: std::net::Ipv4Addr::LOCALHOST.into(),
                source_ip: std::net::Ipv4Addr::LOCALHOST.into(),
                status: 200,
                response_bytes: 2,
                route: Some(LogName::new("all".into())),
                upstream: Some(LogName::new("fast".into())),
                tries: smallvec::smallvec![Try { target, upstream: None, outcome: Ok(200), duration_ns: 266_465 }],
                upstream_ns: Some(266_465),
                relayed_from_ns: None,
                ..Record::default()
            };
            EcsLine { record, clock: DateCache::default(), out: Vec::with_capacity(64 << 10) }
        }

        /// Appends one line (the buffer is emptied when it gets full).
        pub fn write(&mut self) {
            if self.out.len() > 60 << 10 {
                self.out.clear();
            }
            self.record.write_ecs(&mut self.out, &mut self.clock);
        }
    }

    impl Default for EcsLine {
        fn default() -> Self {
            EcsLine::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_cut_field_ends_on_a_character_and_outside_an_escape() {
        let cut = |text: &str, max: usize| {
            let mut t = b"x".to_vec();
            t.extend_from_slice(text.as_bytes());
            cut_field(&mut t, 1, max);
            String::from_utf8(t[1..].to_vec()).expect("still UTF-8")
        };
        assert_eq!(cut("abcdef", 10), "abcdef");
        assert_eq!(cut("abcdef", 3), "abc…");
        // `é` is two bytes: a cut inside it goes before it.
        assert_eq!(cut("abé", 3), "ab…");
        assert_eq!(cut("a%2Fb", 2), "a…");
        assert_eq!(cut("a%2Fb", 3), "a…");
        assert_eq!(cut("a%2Fb", 4), "a%2F…");
    }

    fn record() -> Record {
        let path = "/pets/1";
        let query = "limit=2&api_key=<redacted>";
        let ua = "curl/8 \"x\"\n{\"evil\":1}";
        let text = [path, query, ua].concat().into_bytes();
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
                upstream: None,
                outcome: Ok(200),
                duration_ns: 1_000_000
            }],
            upstream_ns: Some(1_000_000),
            relayed_from_ns: None,
            consumer: Some("acme".into()),
            auth_provider: Some("keys".into()),
            auth_outcome: Some("ok"),
            auth_reason: None,
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
        assert_eq!(v["portcullis"]["route"], "pets");
        assert_eq!(v["portcullis"]["upstream"]["target"], "127.0.0.1:9");
        assert_eq!(v["portcullis"]["response_flag"], "-");
        assert_eq!(v["trace"]["id"], "0af7651916cd43dd8448eb211c80319c");
    }

    #[test]
    fn outcome_is_failure_for_errors_and_broken_bodies() {
        let outcome = |status: u16, flag: Flag| {
            let mut r = record();
            r.status = status;
            r.flag = flag;
            let mut out = Vec::new();
            r.write_ecs(&mut out, &mut DateCache::default());
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            v["event"]["outcome"].as_str().unwrap().to_string()
        };
        assert_eq!(outcome(200, Flag::None), "success");
        assert_eq!(outcome(404, Flag::None), "success", "an upstream's 404 is its answer");
        assert_eq!(outcome(404, Flag::NoRoute), "failure");
        assert_eq!(outcome(503, Flag::None), "failure");
        assert_eq!(outcome(200, Flag::UpstreamClosed), "failure", "the body broke off");
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
    }

    #[test]
    fn combined_fields_outside_quotes_stay_one_field() {
        let mut r = record();
        r.route = Some(LogName::new("my route".into()));
        r.consumer = Some("acme corp\n1.2.3.4 - - [".into());
        let mut out = Vec::new();
        r.write_combined(&mut out);
        let out = String::from_utf8(out).unwrap();
        assert_eq!(out.matches('\n').count(), 1, "{out}");
        assert!(out.starts_with("10.0.0.1 - acme\\x20corp\\x0A1.2.3.4\\x20-\\x20-\\x20[ ["), "{out}");
        assert!(out.contains(" abc my\\x20route - "), "{out}");
    }

    #[test]
    fn combined_line_of_an_unreadable_request_shows_no_request() {
        let mut r = record();
        r.method = Method::from_bytes(b"-").unwrap();
        r.text = TEXT_ROOM.to_vec();
        r.path_len = 0;
        (r.query_len, r.user_agent_len, r.referrer_len) = (None, None, None);
        r.status = 400;
        let mut out = Vec::new();
        r.write_combined(&mut out);
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("] \"-\" 400 "), "{out}");
        let mut out = Vec::new();
        record().write_combined(&mut out);
        assert!(
            String::from_utf8(out).unwrap().contains("\"GET /pets/1?limit=2&api_key=<redacted> HTTP/1.1\""),
            "a readable one as before"
        );
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
