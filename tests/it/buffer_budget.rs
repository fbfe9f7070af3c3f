//! `max_buffered` from outside: the bytes of bodies the gateway reads whole
//! (validated request bodies, aggregate answers) are bounded across every
//! request; past the bound a request gets 503 with `Retry-After` at once,
//! and the bytes count only while their request lives.

use std::time::{Duration, Instant};

use prometheus_parse::{Scrape, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::flaky::{Flaky, Mode};
use crate::support::recorder::Recorder;
use crate::support::{Gateway1, gateway, get, raw_status};

/// A gauge's or counter's value from `/metrics`.
async fn metric(gw: &Gateway1, name: &str) -> f64 {
    let url = format!("http://{}/metrics", gw.handle.admin_addr().expect("admin"));
    let text = get(&url, &[]).await.text();
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text format");
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .map(|s| match s.value {
            Value::Counter(n) | Value::Gauge(n) | Value::Untyped(n) => n,
            _ => 0.0,
        })
        .sum()
}

/// Waits until `name` reads `want` (the gateway reads a body's pieces as they come).
async fn metric_reaches(gw: &Gateway1, name: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = metric(gw, name).await;
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{name} is {got}, never {want}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A POST of a JSON body of `len` bytes, as raw HTTP/1.1.
fn post(len: usize) -> String {
    let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(len - 10));
    format!(
        "POST /in HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n{body}"
    )
}

async fn exchange(gw: &Gateway1, request: &str) -> String {
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn validated_bodies_held_at_once_are_bounded_and_released() {
    let up = Recorder::start().await;
    let gw = gateway(&format!(
        "admin: {{ bind: \"127.0.0.1:0\" }}\nmax_buffered: 1000\n\
         upstreams:\n  app: {{ targets: [\"{}\"] }}\n\
         routes:\n  - name: in\n    match: {{ path: /in }}\n    upstream: app\n\
         \x20   validate: {{ body: {{ schema: {{ type: object }} }} }}\n",
        up.url()
    ))
    .await;

    // A body larger than the whole budget: 503 at once, a problem body, Retry-After.
    let answer = exchange(&gw, &post(2000)).await;
    assert_eq!(raw_status(&answer), 503, "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 1\r\n"), "{answer}");
    assert!(answer.contains("application/problem+json") && answer.contains("max_buffered"), "{answer}");

    // One upload holds room for its declared 900 bytes, its last 100 still
    // to come (the room is what memory holds, counted as it is taken).
    let whole = post(900);
    let mut slow = TcpStream::connect(gw.addr).await.unwrap();
    slow.write_all(&whole.as_bytes()[..whole.len() - 100]).await.unwrap();
    metric_reaches(&gw, "portcullis_buffered_bytes", 900.0).await;
    // Another body that would go past the budget meanwhile is refused...
    assert_eq!(raw_status(&exchange(&gw, &post(300)).await), 503);
    // ...the held one completes and goes on...
    slow.write_all(&whole.as_bytes()[whole.len() - 100..]).await.unwrap();
    let mut out = Vec::new();
    slow.read_to_end(&mut out).await.unwrap();
    assert_eq!(raw_status(&String::from_utf8_lossy(&out)), 200);
    // ...and once it is forwarded, its bytes no longer count.
    metric_reaches(&gw, "portcullis_buffered_bytes", 0.0).await;
    assert_eq!(raw_status(&exchange(&gw, &post(300)).await), 200);
    assert_eq!(metric(&gw, "portcullis_buffer_refusals_total").await, 2.0);
    assert_eq!(up.requests().len(), 2, "refused bodies never reach the upstream");
}

/// An upload that declares a large body and stalls holds the room taken
/// for it (up to 64 KiB before more comes), counted: 10,000 such HTTP/2
/// streams held 780 MB with 10 KiB counted, never a 503.
#[tokio::test]
async fn the_room_a_stalled_upload_holds_is_counted() {
    let up = Recorder::start().await;
    let gw = gateway(&format!(
        "admin: {{ bind: \"127.0.0.1:0\" }}\nmax_buffered: 100KiB\n\
         upstreams:\n  app: {{ targets: [\"{}\"] }}\n\
         routes:\n  - name: in\n    match: {{ path: /in }}\n    upstream: app\n\
         \x20   validate: {{ body: {{ schema: {{ type: object }} }} }}\n",
        up.url()
    ))
    .await;
    let stalled = "POST /in HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n{";
    let mut first = TcpStream::connect(gw.addr).await.unwrap();
    first.write_all(stalled.as_bytes()).await.unwrap();
    metric_reaches(&gw, "portcullis_buffered_bytes", 65536.0).await;
    let mut second = TcpStream::connect(gw.addr).await.unwrap();
    second.write_all(stalled.as_bytes()).await.unwrap();
    let mut status = [0u8; 12];
    second.read_exact(&mut status).await.unwrap();
    assert_eq!(&status, b"HTTP/1.1 503", "past max_buffered");
    drop(first);
    metric_reaches(&gw, "portcullis_buffered_bytes", 0.0).await;
    assert_eq!(up.requests().len(), 0);
}

#[tokio::test]
async fn an_aggregate_answer_past_the_budget_fails_its_call_with_503() {
    let users = Flaky::start("users").await;
    let big: &'static str =
        Box::leak(format!("{{\"items\":[{}]}}", vec!["{\"id\":1}"; 150].join(",")).into_boxed_str());
    users.set(Mode::Json(big));
    let gw = gateway(&format!(
        "admin: {{ bind: \"127.0.0.1:0\" }}\nmax_buffered: 2KiB\n\
         upstreams:\n  users: {{ targets: [\"{}\"], breaker: {{ consecutive_failures: 1, open_for: 1m }} }}\n\
         routes:\n  - name: page\n    match: {{ path: /page }}\n    aggregate:\n      calls:\n\
         \x20       user: {{ upstream: users, path: /u, required: true }}\n",
        users.url()
    ))
    .await;
    let reply = get(&gw.url("/page"), &[]).await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_eq!(reply.header("retry-after"), Some("1"));
    let body = reply.json();
    assert_eq!(body["errors"][0]["call"], "user", "{body}");
    assert!(body["errors"][0]["detail"].as_str().unwrap().contains("max_buffered"), "{body}");
    // The gateway's memory is not the upstream's fault: its breaker stays closed.
    users.set(Mode::Json("{\"id\":1}"));
    let reply = get(&gw.url("/page"), &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(metric(&gw, "portcullis_buffered_bytes").await, 0.0);
    assert_eq!(metric(&gw, "portcullis_buffer_refusals_total").await, 1.0);
}

/// An aggregate's answer counts until it has been sent: a client that
/// does not read it holds it counted, and a second such request past the
/// budget is refused.
#[tokio::test]
async fn an_aggregate_answer_counts_until_the_client_has_read_it() {
    let users = Flaky::start("users").await;
    let big: &'static str = Box::leak(format!("{{\"blob\":\"{}\"}}", "x".repeat(12 << 20)).into_boxed_str());
    users.set(Mode::Json(big));
    let gw = gateway(&format!(
        "admin: {{ bind: \"127.0.0.1:0\" }}\nmax_buffered: 40MiB\n\
         upstreams:\n  users: {{ targets: [\"{}\"] }}\n\
         routes:\n  - name: page\n    match: {{ path: /page }}\n    aggregate:\n      calls:\n\
         \x20       user: {{ upstream: users, path: /u, required: true, max_body_size: 16MiB }}\n",
        users.url()
    ))
    .await;
    // The client asks and reads nothing: the 12 MiB answer waits, counted.
    let mut stalled = TcpStream::connect(gw.addr).await.unwrap();
    stalled.write_all(b"GET /page HTTP/1.1\r\nHost: t\r\n\r\n").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&gw, "portcullis_buffered_bytes").await < (12 << 20) as f64 {
        assert!(Instant::now() < deadline, "the unread answer was not counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Read: it no longer counts.
    let mut head = [0u8; 12];
    stalled.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let mut rest = vec![0u8; 1 << 20];
    let mut total = 0;
    while total < (12 << 20) {
        let n = stalled.read(&mut rest).await.unwrap();
        assert!(n > 0, "closed early");
        total += n;
    }
    metric_reaches(&gw, "portcullis_buffered_bytes", 0.0).await;
}

/// A validated body counts at what its read document takes, not only its
/// bytes: 40 KB of small numbers is several times that once read.
#[tokio::test]
async fn a_validated_body_counts_at_its_read_size() {
    let up = Recorder::start().await;
    let gw = gateway(&format!(
        "admin: {{ bind: \"127.0.0.1:0\" }}\nmax_buffered: 100KiB\n\
         upstreams:\n  app: {{ targets: [\"{}\"] }}\n\
         routes:\n  - name: in\n    match: {{ path: /in }}\n    upstream: app\n\
         \x20   validate: {{ body: {{ schema: {{ type: array, items: {{ type: [string, array], items: {{ type: string }} }} }} }} }}\n",
        up.url()
    ))
    .await;
    let send = |body: String| {
        format!(
            "POST /in HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let numbers = format!("[{}]", vec![format!("[{}]", vec!["0"; 5000].join(",")); 4].join(","));
    assert!(numbers.len() < 50_000);
    let answer = exchange(&gw, &send(numbers)).await;
    assert_eq!(raw_status(&answer), 503, "{answer}");
    assert!(answer.contains("max_buffered"), "{answer}");
    // As many bytes in one string read small: through.
    let text = format!("[\"{}\"]", "x".repeat(40_000));
    assert_eq!(raw_status(&exchange(&gw, &send(text)).await), 200);
    metric_reaches(&gw, "portcullis_buffered_bytes", 0.0).await;
    assert_eq!(up.requests().len(), 1);
}

/// Over HTTP/2 too: an answer its client's window keeps from being sent
/// stays counted (hyper's send buffer took it whole, uncounted, before).
#[tokio::test]
async fn an_aggregate_answer_an_http2_client_does_not_read_stays_counted() {
    use crate::support::h2raw::{END_HEADERS, END_STREAM, HEADERS, PREFACE, SETTINGS, frame};
    let users = Flaky::start("users").await;
    let big: &'static str = Box::leak(format!("{{\"blob\":\"{}\"}}", "x".repeat(1 << 20)).into_boxed_str());
    users.set(Mode::Json(big));
    let gw = gateway(&format!(
        "admin: {{ bind: \"127.0.0.1:0\" }}\n\
         upstreams:\n  users: {{ targets: [\"{}\"] }}\n\
         routes:\n  - name: page\n    match: {{ path: /page }}\n    aggregate:\n      calls:\n\
         \x20       user: {{ upstream: users, path: /u, required: true, max_body_size: 2MiB }}\n",
        users.url()
    ))
    .await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(PREFACE).await.unwrap();
    // SETTINGS_INITIAL_WINDOW_SIZE = 1000: the answer's first 1000 bytes may be sent, no more.
    s.write_all(&frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0x03, 0xE8])).await.unwrap();
    // GET /page: method, scheme, a literal path, a literal authority.
    let get_page = [0x82, 0x86, 0x04, 5, b'/', b'p', b'a', b'g', b'e', 0x41, 0x01, b'x'];
    s.write_all(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &get_page)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&gw, "portcullis_buffered_bytes").await < (1 << 20) as f64 - 65536.0 {
        assert!(Instant::now() < deadline, "the unread answer was not counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Held while unread (the connection idles out only after a minute).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(metric(&gw, "portcullis_buffered_bytes").await > 900_000.0);
    drop(s);
    metric_reaches(&gw, "portcullis_buffered_bytes", 0.0).await;
}
