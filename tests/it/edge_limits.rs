//! Connection and request limits, as a client sees them.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Upstream, raw, raw_status};

/// A listener with limits: the helper's listener line is replaced.
async fn gateway_with_limits(limits: &str) -> (crate::support::Gateway1, Upstream) {
    let up = Upstream::start("svc").await;
    let yaml = format!(
        r#"
listeners:
  - {{ name: gw, bind: "127.0.0.1:0", limits: {limits} }}
upstreams:
  svc: {{ targets: [ "{}" ] }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: svc }}
  - {{ name: small, match: {{ path_prefix: /small }}, upstream: svc, max_body_size: 10, rewrite: {{ strip_prefix: /small }} }}
"#,
        up.url()
    );
    let handle = portcullis::Gateway::start(&crate::support::load(&yaml, std::path::Path::new("."))).await.unwrap();
    let addr = handle.addr("gw").unwrap();
    (crate::support::Gateway1 { handle, addr }, up)
}

#[tokio::test]
async fn oversized_requests_get_413_414_431() {
    let (gw, up) = gateway_with_limits("{ max_uri_length: 100, max_headers: 20, max_body_size: 1KiB }").await;
    let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "a".repeat(200));
    assert_eq!(raw_status(&raw(gw.addr, &long).await), 414);
    let many: String = (0..30).map(|i| format!("x-h{i}: v\r\n")).collect();
    let req = format!("GET / HTTP/1.1\r\nHost: x\r\n{many}Connection: close\r\n\r\n");
    assert_eq!(raw_status(&raw(gw.addr, &req).await), 431);
    let big = format!("GET / HTTP/1.1\r\nHost: x\r\nx-big: {}\r\nConnection: close\r\n\r\n", "b".repeat(40 << 10));
    assert_eq!(raw_status(&raw(gw.addr, &big).await), 431);
    // A HEAD refused while its head is read gets the answer's head alone
    // (RFC 9110 §9.3.2), its line read or not.
    let many_head = format!("HEAD / HTTP/1.1\r\nHost: x\r\n{many}Connection: close\r\n\r\n");
    // Past the head's size: refused before its line is whole.
    let long_head = format!("HEAD /{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "a".repeat(40_000));
    for (request, status) in [(many_head, 431), (long_head, 414)] {
        let answer = raw(gw.addr, &request).await;
        assert_eq!(raw_status(&answer), status, "{answer}");
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.to_ascii_lowercase().contains("content-type: application/problem+json"), "{head}");
        assert_eq!(body, "", "{status}: no body for a HEAD");
    }
    // Declared too large: refused before anything reaches the upstream.
    let req = "POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_status(&raw(gw.addr, req).await), 413);
    // Route limit, chunked (no length): enforced while streaming.
    let req = "POST /small/count HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n";
    let resp = raw(gw.addr, req).await;
    assert_eq!(raw_status(&resp), 413, "{resp}");
    assert!(resp.contains("application/problem+json"), "{resp}");
    // Within limits all is well.
    let req = "POST /small/count HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    assert!(raw(gw.addr, req).await.contains("\"received\":5"));
    let _ = up;
}

#[tokio::test]
async fn slow_clients_are_cut_off() {
    let (gw, _up) = gateway_with_limits("{ header_read_timeout: 300ms, body_read_timeout: 300ms }").await;
    // Slowloris: half a request head, then nothing. The gateway closes.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the gateway must close a connection that stalls in its headers");
    // A connection that never sends a byte is closed after the header timeout too.
    let mut silent = TcpStream::connect(gw.addr).await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "a silent connection must be closed");
    // Part of the HTTP/2 preface, then nothing: cut off the same way.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2").await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "a connection that stalls in the HTTP/2 preface must be closed");
    // Slow POST: the body stalls: 408.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\nhel")
        .await
        .unwrap();
    let mut buf = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut buf)).await.unwrap().unwrap();
    assert_eq!(raw_status(&buf), 408, "{buf}");
}

#[tokio::test]
async fn connection_limit_and_idle_timeout() {
    let (gw, _up) = gateway_with_limits("{ max_connections: 2, idle_timeout: 300ms }").await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0);
        held.push(s);
    }
    // A third connection is closed without an answer.
    let mut third = TcpStream::connect(gw.addr).await.unwrap();
    let _ = third.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut buf)).await.unwrap();
    assert!(buf.is_empty(), "over the limit: {}", String::from_utf8_lossy(&buf));
    // The idle ones are closed by the gateway after idle_timeout.
    for mut s in held {
        let mut rest = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
        assert!(r.is_ok(), "an idle keep-alive connection must be closed");
    }
    // And new connections are accepted again.
    assert_eq!(raw_status(&raw(gw.addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await), 200);
}

/// Reads one response whose body is `Content-Length` delimited.
async fn read_response(s: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                .unwrap_or(0);
            if seen.len() >= end + 4 + length {
                return String::from_utf8_lossy(&seen).into_owned();
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "closed mid-response: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&chunk[..n]);
    }
}

// The gateway runs on the test's runtime, so a paused clock is its clock
// too: the pauses below pass in virtual time (advanced whenever every task
// waits), the timers fire in their order, and no real seconds go by.
#[tokio::test(start_paused = true)]
async fn idle_keep_alive_is_bounded_by_idle_timeout_not_header_timeout() {
    // Between requests a connection is idle, not slow: the header timer
    // starts with the next request's first byte.
    let (gw, _up) = gateway_with_limits("{ header_read_timeout: 1s, idle_timeout: 30s }").await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    for i in 0..3 {
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let resp = read_response(&mut s).await;
        assert_eq!(raw_status(&resp), 200, "request {i}: {resp}");
        tokio::time::sleep(Duration::from_millis(2500)).await;
    }
    // A head started during idleness is still held to the header timeout.
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "a stalled head after idleness must be cut off");
}

#[tokio::test(start_paused = true)]
async fn a_partial_pipelined_head_survives_parking() {
    let (gw, _up) = gateway_with_limits("{ header_read_timeout: 10s }").await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    // One whole request and the start of the next, then a pause (virtual,
    // as above) with the half head buffered.
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\n").await.unwrap();
    assert_eq!(raw_status(&read_response(&mut s).await), 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.write_all(b"Host: x\r\n\r\n").await.unwrap();
    let resp = read_response(&mut s).await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    assert!(resp.contains("/second"), "{resp}");
}

/// Heads the gateway will not serve get a problem answer (never reaching
/// the upstream) and the connection closes: the smuggling shapes, a missing
/// Host, a transfer coding it cannot decode, a request line that never ends.
#[tokio::test]
async fn unservable_heads_get_problem_answers() {
    let (gw, up) = gateway_with_limits("{ max_header_size: 8KiB }").await;
    let never_ending = format!("GET /{}", "a".repeat(9000));
    for (raw_req, status) in [
        ("GET / HTTP/1.1\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc", 400),
        ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 400),
        ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (never_ending.as_str(), 414),
    ] {
        let resp = raw(gw.addr, raw_req).await;
        assert_eq!(raw_status(&resp), status, "{raw_req:.60?}: {resp}");
        let lower = resp.to_ascii_lowercase();
        assert!(lower.contains("content-type: application/problem+json"), "{resp}");
        assert!(lower.contains("x-request-id: ") && lower.contains("x-content-type-options: nosniff"), "{resp}");
        assert!(lower.contains("connection: close"), "{resp}");
    }
    assert_eq!(up.hits(), 0, "nothing refused reached the upstream");
}

#[tokio::test]
async fn http10_keep_alive_and_pipelining() {
    let (gw, _up) = gateway_with_limits("{}").await;
    // HTTP/1.0 closes unless asked to keep the connection.
    let resp = raw(gw.addr, "GET /one HTTP/1.0\r\n\r\n").await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    assert!(resp.to_ascii_lowercase().contains("connection: close"), "{resp}");
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /one HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").await.unwrap();
    let first = read_response(&mut s).await;
    assert!(first.to_ascii_lowercase().contains("connection: keep-alive"), "{first}");
    // Pipelined: two requests in one write, answered in order on the same connection.
    s.write_all(b"GET /two HTTP/1.1\r\nHost: x\r\n\r\nGET /three HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut seen = String::new();
    let mut chunk = [0u8; 4096];
    while !(seen.contains("\"/three\"") && seen.matches("HTTP/1.1 200").count() == 2) {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "closed early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&chunk[..n]));
    }
    let two = seen.find("\"/two\"").expect("the first pipelined request is answered");
    assert!(two < seen.find("\"/three\"").unwrap(), "answered in order: {seen}");
}

/// `static` and `redirect` answers read the body they ignore: a chunked one
/// over the route's `max_body_size` gets 413 as a declared one does, and
/// one within it leaves the connection usable.
#[tokio::test]
async fn local_answers_hold_the_body_limit() {
    let yaml = r#"
listeners:
  - { name: gw, bind: "127.0.0.1:0" }
routes:
  - { name: ok, match: { path: /ok }, static: { status: 200, body: "fine" }, max_body_size: 10 }
  - { name: go, match: { path: /go }, redirect: { to: /elsewhere }, max_body_size: 10 }
"#;
    let handle = portcullis::Gateway::start(&crate::support::load(yaml, std::path::Path::new("."))).await.unwrap();
    let addr = handle.addr("gw").unwrap();
    for (path, fine) in [("/ok", 200), ("/go", 302)] {
        let over = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n"
        );
        let resp = raw(addr, &over).await;
        assert_eq!(raw_status(&resp), 413, "{resp}");
        assert!(resp.contains("application/problem+json"), "{resp}");
        let declared = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 16\r\nConnection: close\r\n\r\n1234567812345678"
        );
        assert_eq!(raw_status(&raw(addr, &declared).await), 413);
        // Within the limit: answered, and the next request on the same connection too.
        let mut s = TcpStream::connect(addr).await.unwrap();
        let within =
            format!("POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n12345\r\n0\r\n\r\n");
        s.write_all(within.as_bytes()).await.unwrap();
        let first = read_response(&mut s).await;
        assert_eq!(raw_status(&first), fine, "{first}");
        assert!(!first.to_ascii_lowercase().contains("connection: close"), "{first}");
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
        let second = read_response(&mut s).await;
        assert_eq!(raw_status(&second), fine, "{second}");
    }
}
