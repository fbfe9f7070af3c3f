//! HTTP/2 abuse at the frame level, as a hostile client would send it:
//! stream limits, CONTINUATION floods and rapid reset (CVE-2023-44487).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::gateway;
use crate::support::h2raw::{
    CONTINUATION, END_HEADERS, END_STREAM, GOAWAY, HEADERS, PREFACE, RST_STREAM, SETTINGS, frame,
};

/// HPACK for `GET http://x/`: static-table indexes plus a literal authority.
const REQUEST_BLOCK: &[u8] = &[0x82, 0x86, 0x84, 0x41, 0x01, b'x'];

/// A literal header `x-fill: <100 bytes>` without indexing.
fn filler() -> Vec<u8> {
    let mut b = vec![0x00, 6];
    b.extend_from_slice(b"x-fill");
    b.push(100);
    b.extend(std::iter::repeat_n(b'a', 100));
    b
}

async fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(PREFACE).await.unwrap();
    s.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    s
}

/// Reads frames until one of `kind` arrives (Some(payload)) or the connection ends (None).
async fn read_until<R: tokio::io::AsyncRead + Unpin>(s: &mut R, kind: u8) -> Option<Vec<u8>> {
    loop {
        let (got, _, _, payload) = crate::support::h2raw::read_frame(s).await?;
        if got == kind {
            return Some(payload);
        }
    }
}

const ROUTES: &str = "routes:\n  - { name: e, match: { path_prefix: / }, static: { body: ok } }\n";

#[tokio::test]
async fn server_settings_carry_the_stream_limit() {
    let yaml = ROUTES.to_string();
    let gw = gateway(&yaml).await;
    let mut s = connect(gw.addr).await;
    let settings = tokio::time::timeout(Duration::from_secs(5), read_until(&mut s, SETTINGS)).await.unwrap().unwrap();
    let max_streams = settings
        .chunks(6)
        .find(|p| u16::from_be_bytes([p[0], p[1]]) == 0x3)
        .map(|p| u32::from_be_bytes([p[2], p[3], p[4], p[5]]));
    assert_eq!(max_streams, Some(128), "SETTINGS_MAX_CONCURRENT_STREAMS");
    // What a client may send ahead of the gateway's reading: 64 KiB a
    // stream, 256 KiB a connection (hyper's 1 MiB let 300 connections park
    // 780 MB of bodies behind requests waiting for an upstream).
    let window = settings
        .chunks(6)
        .find(|p| u16::from_be_bytes([p[0], p[1]]) == 0x4)
        .map(|p| u32::from_be_bytes([p[2], p[3], p[4], p[5]]));
    assert_eq!(window.unwrap_or(65_535), 65_536, "SETTINGS_INITIAL_WINDOW_SIZE");
    let update = tokio::time::timeout(Duration::from_secs(5), read_until(&mut s, 8)).await.unwrap().unwrap();
    let increment = u32::from_be_bytes([update[0], update[1], update[2], update[3]]) & 0x7fff_ffff;
    assert_eq!(65_535 + increment, 256 << 10, "the connection's window");
}

#[tokio::test]
async fn continuation_flood_is_cut_off() {
    let gw = gateway(ROUTES).await;
    let mut s = connect(gw.addr).await;
    s.write_all(&frame(HEADERS, 0, 1, REQUEST_BLOCK)).await.unwrap();
    // Endless CONTINUATION frames, never END_HEADERS: 20 MiB if nobody stops us.
    let chunk = frame(CONTINUATION, 0, 1, &filler());
    let writer = async {
        for _ in 0..200_000 {
            if s.write_all(&chunk).await.is_err() {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), writer).await;
    // The gateway answered with GOAWAY or a reset, or closed the connection:
    // it did not wait for the header block to end.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the connection is still open after a CONTINUATION flood");
}

/// Rapid reset slowed down: each stream is reset only after the gateway
/// took it (the HTTP/2 library's bound counts resets of streams not yet
/// taken), so every one became an upstream request. Past 500 streams with
/// most of them reset before their answer, the connection gets GOAWAY
/// (Envoy's premature-reset rule) and takes no more.
#[tokio::test]
async fn streams_reset_after_they_are_taken_close_the_connection() {
    // An upstream that takes connections and never answers: each request waits.
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hang_addr = hang.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hang.accept().await {
            held.push(s);
        }
    });
    let gw = gateway(&format!(
        "upstreams:\n  hang: {{ targets: [ \"http://{hang_addr}\" ] }}\n\
         routes:\n  - {{ name: e, match: {{ path_prefix: / }}, upstream: hang }}\n"
    ))
    .await;
    let mut s = connect(gw.addr).await;
    let mut sent = 0u32;
    for i in 0..700u32 {
        let id = 2 * i + 1;
        if s.write_all(&frame(HEADERS, END_HEADERS | END_STREAM, id, REQUEST_BLOCK)).await.is_err() {
            break;
        }
        // Taken by the gateway before the reset comes.
        tokio::time::sleep(Duration::from_millis(2)).await;
        if s.write_all(&frame(RST_STREAM, 0, id, &8u32.to_be_bytes())).await.is_err() {
            break;
        }
        sent += 1;
    }
    let goaway = tokio::time::timeout(Duration::from_secs(10), read_until(&mut s, GOAWAY)).await.expect("no answer");
    goaway.unwrap_or_else(|| panic!("GOAWAY, not a silent close ({sent} streams sent)"));
    // And it closes (hyper's two-phase GOAWAY; this client answers no PING).
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the connection stays open after GOAWAY");
}

/// The same abuser, going on after the GOAWAY and never answering the PING
/// that lets the gateway send the final one: it was taken for a client
/// still in its two-step goodbye, and its new streams (each an upstream
/// request) were served for as long as it kept one in flight. Its
/// connection is now dropped within a second of the GOAWAY, and what it
/// sends meanwhile reaches no upstream.
#[tokio::test]
async fn a_stream_abuser_that_ignores_goaway_is_dropped() {
    abuse_ignoring_goaway(true).await;
}

/// The same with each stream's body left open (a POST reset mid-body): its
/// work answered the reset with a response no one reads, which did not
/// count as a stream reset before its answer, and the rule never fired.
#[tokio::test]
async fn a_stream_abuser_resetting_mid_body_is_dropped() {
    abuse_ignoring_goaway(false).await;
}

async fn abuse_ignoring_goaway(end_stream: bool) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    // An upstream that counts the requests it gets (one per connection: it never answers).
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hang_addr = hang.local_addr().unwrap();
    let reached = Arc::new(AtomicUsize::new(0));
    let counted = reached.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hang.accept().await {
            counted.fetch_add(1, Ordering::Relaxed);
            held.push(s);
        }
    });
    let gw = gateway(&format!(
        "upstreams:\n  hang: {{ targets: [ \"http://{hang_addr}\" ], limits: {{ max_requests: 100000 }} }}\n\
         routes:\n  - {{ name: e, match: {{ path_prefix: / }}, upstream: hang }}\n"
    ))
    .await;
    let (mut read, mut write) = connect(gw.addr).await.into_split();
    // Streams taken, then reset, for as long as the connection lasts (4,000: over 8 s).
    let writer = tokio::spawn(async move {
        for i in 0..4_000u32 {
            let id = 2 * i + 1;
            // GET, ended; or POST (HPACK 0x83), its body to come.
            let (flags, block) = match end_stream {
                true => (END_HEADERS | END_STREAM, REQUEST_BLOCK.to_vec()),
                false => (END_HEADERS, [&[0x83][..], &REQUEST_BLOCK[1..]].concat()),
            };
            if write.write_all(&frame(HEADERS, flags, id, &block)).await.is_err() {
                return i;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
            if write.write_all(&frame(RST_STREAM, 0, id, &8u32.to_be_bytes())).await.is_err() {
                return i;
            }
        }
        4_000
    });
    let goaway = tokio::time::timeout(Duration::from_secs(10), read_until(&mut read, GOAWAY)).await.expect("no answer");
    goaway.expect("GOAWAY, not a silent close");
    let at_goaway = reached.load(Ordering::Relaxed);
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(4), read.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the connection stays open while its client goes on after GOAWAY");
    let sent = writer.await.unwrap();
    assert!(sent < 4_000, "the client could send all its streams");
    let after = reached.load(Ordering::Relaxed) - at_goaway;
    assert!(after <= 10, "{after} requests reached the upstream after the GOAWAY");
}

/// A draining gateway's GOAWAY takes no new stream from a client that does
/// not answer the PING (hyper sends the final GOAWAY, naming the last
/// stream, only after the answer): past a second, its new streams get 503
/// and reach no upstream, while the one in flight still finishes.
#[tokio::test]
async fn a_client_that_ignores_the_drains_goaway_gets_no_new_stream_served() {
    // Answers each request after 2 s (the one in flight when the drain starts).
    let slow = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slow_addr = slow.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = slow.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                tokio::time::sleep(Duration::from_secs(2)).await;
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nslow").await;
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let gw = gateway(&format!(
        "access_log: {{ to: \"{}\" }}\nupstreams:\n  slow: {{ targets: [ \"http://{slow_addr}\" ] }}\n\
         routes:\n  - {{ name: e, match: {{ path_prefix: / }}, upstream: slow }}\n",
        log.display()
    ))
    .await;
    let mut s = connect(gw.addr).await;
    s.write_all(&frame(HEADERS, END_HEADERS | END_STREAM, 1, REQUEST_BLOCK)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let drain = tokio::spawn(gw.handle.shutdown());
    tokio::time::timeout(Duration::from_secs(5), read_until(&mut s, GOAWAY)).await.unwrap().expect("GOAWAY");
    // No PING answer; a new stream after the gateway's second of patience.
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    s.write_all(&frame(HEADERS, END_HEADERS | END_STREAM, 3, REQUEST_BLOCK)).await.unwrap();
    let mut statuses = std::collections::HashMap::new();
    while statuses.len() < 2 {
        let next = tokio::time::timeout(Duration::from_secs(5), crate::support::h2raw::read_frame(&mut s)).await;
        let Some((kind, _, stream, payload)) = next.expect("answers within 5 s") else { break };
        if kind == HEADERS {
            statuses.insert(stream, payload);
        }
    }
    // HPACK: 200 is static-table index 8 (0x88); 503 a literal of name
    // index 8 (0x48), Huffman-coded in 3 bytes (0x83: `503` is 6c 0c ff).
    assert_eq!(statuses.get(&1).map(|p| p[0]), Some(0x88), "the request in flight finishes: {statuses:?}");
    let refused = statuses.get(&3).expect("the new stream is answered");
    assert_eq!(refused[..5], [0x48, 0x83, 0x6c, 0x0c, 0xff], "503: {refused:?}");
    drain.await.unwrap();
    // Logged as the gateway's own answer, not as invalid input.
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let refused_line = lines.iter().find(|l| l["http"]["response"]["status_code"] == 503).expect("logged");
    assert_eq!(refused_line["portcullis"]["response_flag"], "LR", "{refused_line}");
}

#[tokio::test]
async fn rapid_reset_gets_goaway() {
    let gw = gateway(ROUTES).await;
    let mut s = connect(gw.addr).await;
    let mut burst = Vec::new();
    for i in 0..2000u32 {
        let id = 2 * i + 1;
        burst.extend(frame(HEADERS, END_HEADERS | END_STREAM, id, REQUEST_BLOCK));
        burst.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes())); // CANCEL
    }
    let _ = s.write_all(&burst).await;
    let goaway = tokio::time::timeout(Duration::from_secs(5), read_until(&mut s, GOAWAY)).await.expect("no answer");
    let payload = goaway.expect("GOAWAY, not a silent close");
    let code = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
    assert_eq!(code, 0xb, "ENHANCE_YOUR_CALM");
}

/// A gateway whose listener gives up on silence after 300 ms.
async fn impatient() -> crate::support::Gateway1 {
    let yaml = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\", limits: {{ header_read_timeout: 300ms, idle_timeout: 300ms }} }}\n{ROUTES}"
    );
    let handle = portcullis::Gateway::start(&crate::support::load(&yaml, std::path::Path::new("."))).await.unwrap();
    let addr = handle.addr("gw").unwrap();
    crate::support::Gateway1 { handle, addr }
}

/// Whether the gateway closes `s` within 5 s (reading and dropping what it sends).
async fn closed_soon(s: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await.is_ok()
}

#[tokio::test]
async fn a_connection_that_never_finishes_its_handshake_or_header_block_is_closed() {
    let gw = impatient().await;
    // The preface and no SETTINGS: hyper's graceful close waits for the
    // handshake for ever; the gateway drops the connection.
    let mut silent = TcpStream::connect(gw.addr).await.unwrap();
    silent.write_all(PREFACE).await.unwrap();
    // A header block that never ends (no END_HEADERS, no CONTINUATION).
    let mut unfinished = connect(gw.addr).await;
    unfinished.write_all(&frame(HEADERS, 0, 1, REQUEST_BLOCK)).await.unwrap();
    assert!(closed_soon(&mut silent).await, "an h2 connection without SETTINGS stayed open");
    assert!(closed_soon(&mut unfinished).await, "an unfinished header block kept its connection open");
}

#[tokio::test]
async fn a_client_that_reads_none_of_its_response_is_cut_off() {
    let gw = impatient().await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(PREFACE).await.unwrap();
    // SETTINGS_INITIAL_WINDOW_SIZE = 0: the response's DATA may never be sent.
    s.write_all(&frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 0])).await.unwrap();
    s.write_all(&frame(HEADERS, END_HEADERS | END_STREAM, 1, REQUEST_BLOCK)).await.unwrap();
    assert!(closed_soon(&mut s).await, "a response the client never reads held its connection open");
}

/// A request the client resets before its answer is ready no longer counts
/// as in flight: the connection still idles out (the count stayed up, and
/// such a connection was never closed for idleness).
#[tokio::test]
async fn a_reset_request_does_not_keep_its_connection_from_idling_out() {
    // An upstream that takes every connection and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            held.push(conn);
        }
    });
    let yaml = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\", limits: {{ idle_timeout: 300ms }} }}\n\
         upstreams:\n  silent: {{ targets: [ \"http://{silent_addr}\" ] }}\n\
         routes:\n  - {{ name: e, match: {{ path_prefix: / }}, upstream: silent }}\n"
    );
    let handle = portcullis::Gateway::start(&crate::support::load(&yaml, std::path::Path::new("."))).await.unwrap();
    let mut s = connect(handle.addr("gw").unwrap()).await;
    s.write_all(&frame(HEADERS, END_HEADERS | END_STREAM, 1, REQUEST_BLOCK)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.write_all(&frame(RST_STREAM, 0, 1, &8u32.to_be_bytes())).await.unwrap(); // CANCEL
    assert!(closed_soon(&mut s).await, "a connection whose only request was reset never idled out");
}

/// One stream left unread while the client keeps others moving: the
/// connection-wide rule above never fires (every new request counts as
/// activity), so the stream is cut on its own after `idle_timeout` and its
/// upstream connection goes (Envoy's per-stream idle timeout), while the
/// connection and its moving streams carry on.
#[tokio::test]
async fn a_stream_left_unread_among_moving_ones_releases_its_upstream() {
    // An upstream that starts a long answer, then reports when the gateway lets go.
    let big = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let big_addr = big.local_addr().unwrap();
    let (closed_tx, mut closed) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = big.accept().await {
            let closed_tx = closed_tx.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n";
                let _ = conn.write_all(head).await;
                let _ = conn.write_all(&[b'a'; 65536]).await;
                while matches!(conn.read(&mut buf).await, Ok(n) if n > 0) {}
                let _ = closed_tx.send(());
            });
        }
    });
    let yaml = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\", limits: {{ idle_timeout: 400ms }} }}\n\
         upstreams:\n  big: {{ targets: [ \"http://{big_addr}\" ] }}\n\
         routes:\n  - {{ name: big, match: {{ path: /big }}, upstream: big }}\n\
         \x20 - {{ name: ping, match: {{ path_prefix: / }}, static: {{ status: 204 }} }}\n"
    );
    let handle = portcullis::Gateway::start(&crate::support::load(&yaml, std::path::Path::new("."))).await.unwrap();
    let mut s = TcpStream::connect(handle.addr("gw").unwrap()).await.unwrap();
    s.write_all(PREFACE).await.unwrap();
    // SETTINGS_INITIAL_WINDOW_SIZE = 0: no stream's DATA may be sent.
    s.write_all(&frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 0])).await.unwrap();
    let get_big = [0x82, 0x86, 0x04, 4, b'/', b'b', b'i', b'g', 0x41, 0x01, b'x'];
    s.write_all(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &get_big)).await.unwrap();
    // Another request every 100 ms (answered without DATA): the connection moves.
    let mut id = 3u32;
    let cut = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            s.write_all(&frame(HEADERS, END_HEADERS | END_STREAM, id, REQUEST_BLOCK)).await.unwrap();
            id += 2;
            tokio::select! {
                _ = closed.recv() => return,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    })
    .await;
    assert!(cut.is_ok(), "the unread stream held its upstream connection while others moved");
    // The connection itself is still served.
    s.write_all(&frame(HEADERS, END_HEADERS | END_STREAM, id, REQUEST_BLOCK)).await.unwrap();
    assert!(read_until(&mut s, HEADERS).await.is_some(), "the moving connection was cut too");
}
