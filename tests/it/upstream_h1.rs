//! The HTTP/1.1 upstream client (`upstream::h1`) on the wire: response
//! framings, connection reuse, early answers, retries and broken upstreams.

use std::time::Duration;

use http::{Method, Request};
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::scripted::Scripted;
use crate::support::{Gateway1, Upstream, gateway, get, http1_client, raw, send};

async fn in_front_of(url: &str) -> Gateway1 {
    gateway(&format!(
        "upstreams:\n  svc: {{ targets: [ \"{url}\" ] }}\nroutes:\n  - {{ name: svc, match: {{ path_prefix: / }}, upstream: svc }}\n"
    ))
    .await
}

#[tokio::test]
async fn chunked_responses_are_decoded_and_the_connection_reused() {
    let up = Scripted::start().await;
    let gw = in_front_of(&up.url()).await;
    for _ in 0..3 {
        let r = get(&gw.url("/chunked"), &[]).await;
        assert_eq!((r.status.as_u16(), r.text()), (200, "hello world".to_string()));
    }
    assert_eq!(up.connections(), 1, "extensions and trailers consumed; connection reused");
}

#[tokio::test]
async fn a_body_delimited_by_close_is_complete_and_the_connection_not_reused() {
    let up = Scripted::start().await;
    let gw = in_front_of(&up.url()).await;
    let r = get(&gw.url("/until-close"), &[]).await;
    assert_eq!((r.status.as_u16(), r.text()), (200, "until close".to_string()));
    assert_eq!(get(&gw.url("/"), &[]).await.text(), "ok");
    assert_eq!(up.connections(), 2);
}

#[tokio::test]
async fn head_responses_have_no_body_and_their_connection_is_not_reused() {
    let up = Scripted::start().await;
    let gw = in_front_of(&up.url()).await;
    for _ in 0..2 {
        let req = Request::builder().method(Method::HEAD).uri(gw.url("/head")).body(Full::default()).unwrap();
        let r = send(&http1_client(), req).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-head"), Some("1"));
        assert_eq!(r.header("content-length"), Some("10"));
        assert!(r.body.is_empty());
    }
    assert_eq!(get(&gw.url("/"), &[]).await.text(), "ok");
    // A body an application writes late after a HEAD answer would be read
    // by the next request on the connection (smuggling suite): one each.
    assert_eq!(up.connections(), 3);
}

#[tokio::test]
async fn informational_responses_from_the_upstream_are_skipped() {
    let up = Scripted::start().await;
    let gw = in_front_of(&up.url()).await;
    let r = get(&gw.url("/continue"), &[]).await;
    assert_eq!((r.status.as_u16(), r.text()), (200, "ok".to_string()));
}

#[tokio::test]
async fn an_early_answer_reaches_the_client_before_its_body_is_sent() {
    let up = Scripted::start().await;
    let gw = in_front_of(&up.url()).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    // Announces a megabyte, sends ten bytes, and waits for an answer.
    s.write_all(b"POST /early HTTP/1.1\r\nHost: gw\r\nContent-Length: 1000000\r\n\r\n0123456789").await.unwrap();
    let mut seen = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        while !seen.windows(4).any(|w| w == b"nope") {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read).await.expect("answered without the whole body");
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
}

/// A target that answers early and closes at once, its socket holding
/// body bytes it never read, resets the connection: the gateway's next
/// write fails, but the answer came before the reset and is passed on. A
/// write failure ended the exchange (502, flag UC) though the answer was
/// in the socket's buffer: most such uploads in a reviewer's run.
#[tokio::test]
async fn an_early_answer_from_a_target_that_then_resets_is_passed_on() {
    let up = Scripted::start().await;
    let gw = in_front_of(&up.url()).await;
    for i in 0..10 {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        let (mut rd, mut wr) = s.split();
        let upload = async {
            let _ = wr.write_all(b"POST /early HTTP/1.1\r\nHost: gw\r\nContent-Length: 4000000\r\n\r\n").await;
            let chunk = vec![b'x'; 64 * 1024];
            for _ in 0..61 {
                if wr.write_all(&chunk).await.is_err() {
                    break;
                }
            }
        };
        let answer = async {
            let mut seen = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), rd.read_to_end(&mut seen)).await;
            seen
        };
        let (_, seen) = tokio::join!(upload, answer);
        let text = String::from_utf8_lossy(&seen);
        assert!(text.starts_with("HTTP/1.1 413"), "upload {i}: {text}");
    }
}

/// A target that answers at once and then reads the body (an echo, a 202
/// before the upload): the gateway sends no more of the body after an
/// early answer, and says so with the end of its stream, so the target
/// sees the body end short instead of waiting for the rest until a timeout
/// while its answer waits on it (the client got a head, then nothing).
#[tokio::test]
async fn a_target_reading_the_body_after_its_answer_sees_the_body_end() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut chunk = [0u8; 4096];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").await;
                // Reads the body until its end, as an echo would.
                let mut body = got.len() - got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() - 4;
                loop {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => body += n,
                    }
                }
                let text = format!("read {body}");
                let _ = s.write_all(format!("{:x}\r\n{text}\r\n0\r\n\r\n", text.len()).as_bytes()).await;
            });
        }
    });
    let gw = in_front_of(&format!("http://{addr}")).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 30\r\n\r\n0123456789").await.unwrap();
    let mut seen = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        while !seen.windows(5).any(|w| w == b"\r\n0\r\n") {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read).await.expect("the target saw the body end");
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("read "), "{text}");
}

#[tokio::test]
async fn an_idempotent_request_is_retried_when_a_reused_connection_closes() {
    let up = Scripted::start().await;
    let gw = in_front_of(&up.url()).await;
    for i in 0..2 {
        let r = get(&gw.url("/flaky"), &[]).await;
        assert_eq!((r.status.as_u16(), r.text()), (200, "ok".to_string()), "request {i}");
    }
    assert_eq!((up.connections(), up.requests()), (2, 3), "the second GET was sent twice");

    // A POST may have been acted on: it is not sent again (NGINX does the same).
    let req = Request::post(gw.url("/flaky")).body(Full::from("x")).unwrap();
    let r = send(&http1_client(), req).await;
    assert_eq!(r.status, 502);
    assert_eq!(up.requests(), 4);
}

/// The resend after a reused connection closed goes on a new connection,
/// as the docs say: the other pooled connections are as old, and likely
/// closed too (one keep-alive timeout). It took the next pooled one, and
/// the request failed (502) with three idle connections in the pool.
#[tokio::test]
async fn the_resend_after_a_closed_reused_connection_goes_on_a_new_one() {
    let up = Scripted::start().await;
    let gw = in_front_of(&up.url()).await;
    // Three connections in the pool, each used once.
    let slow: Vec<_> = (0..3).map(|_| tokio::spawn(get_owned(gw.url("/slow-body")))).collect();
    for t in slow {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(up.connections(), 3);
    let r = get(&gw.url("/flaky"), &[]).await;
    assert_eq!((r.status.as_u16(), r.text()), (200, "ok".to_string()));
    assert_eq!((up.connections(), up.requests()), (4, 5), "sent once on a pooled connection, once on a new one");
}

async fn get_owned(url: String) -> u16 {
    get(&url, &[]).await.status.as_u16()
}

#[tokio::test]
async fn an_idempotent_request_with_a_body_is_sent_again_when_a_reused_connection_closes() {
    let up = Scripted::start().await;
    let gw = in_front_of(&up.url()).await;
    assert_eq!(get(&gw.url("/flaky"), &[]).await.status, 200, "a connection to reuse");
    // The body went out on the closed connection: it goes again, whole
    // (the target reads `content-length` bytes before it answers).
    // (A DELETE's body closes its connection: a GET leaves one to reuse after it.)
    for (method, body) in [(Method::PUT, "{\"name\":\"rex\"}".repeat(100)), (Method::DELETE, "x".into())] {
        let req = Request::builder().method(method.clone()).uri(gw.url("/flaky")).body(Full::from(body)).unwrap();
        let r = send(&http1_client(), req).await;
        assert_eq!((r.status.as_u16(), r.text()), (200, "ok".to_string()), "{method}");
    }
    assert_eq!((up.connections(), up.requests()), (3, 5), "each sent twice, on a new connection");

    // A body larger than what is kept for that is not sent again.
    assert_eq!(get(&gw.url("/flaky"), &[]).await.status, 200, "a connection to reuse");
    let req = Request::put(gw.url("/flaky")).body(Full::from(vec![b'x'; 100 * 1024])).unwrap();
    assert_eq!(send(&http1_client(), req).await.status, 502);
}

/// A retry policy whose `buffer` is below the 64 KiB the pool keeps for
/// that resend does not switch it off (the smaller limit, asked first, held).
#[tokio::test]
async fn a_small_retry_buffer_keeps_the_resend_on_a_closed_reused_connection() {
    let up = Scripted::start().await;
    let gw = gateway(&format!(
        "upstreams:\n  svc: {{ targets: [ \"{}\" ], retry: {{ attempts: 3, on: [connect_failure, reset], buffer: 1KiB }} }}\n\
         routes:\n  - {{ name: svc, match: {{ path_prefix: / }}, upstream: svc }}\n",
        up.url()
    ))
    .await;
    assert_eq!(get(&gw.url("/flaky"), &[]).await.status, 200, "a connection to reuse");
    let req = Request::put(gw.url("/flaky")).body(Full::from(vec![b'x'; 10 * 1024])).unwrap();
    let r = send(&http1_client(), req).await;
    assert_eq!((r.status.as_u16(), r.text()), (200, "ok".to_string()));
}

#[tokio::test]
async fn broken_upstream_responses() {
    let up = Scripted::start().await;
    let gw = in_front_of(&up.url()).await;
    let r = get(&gw.url("/garbage"), &[]).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));

    // A body that breaks after the head: the client's connection is cut
    // (with or without the part that was good), never completed with a
    // final chunk that would make a broken body look whole.
    let resp = raw(gw.addr, "GET /bad-chunk HTTP/1.1\r\nHost: gw\r\n\r\n").await;
    assert!(resp.is_empty() || resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(!resp.ends_with("0\r\n\r\n"), "{resp}");
    assert_eq!(get(&gw.url("/"), &[]).await.text(), "ok", "the gateway carries on");
}

#[tokio::test]
async fn chunked_request_bodies_are_forwarded_chunked() {
    let up = Upstream::start("svc").await;
    let gw = in_front_of(&up.url()).await;
    let resp = raw(
        gw.addr,
        "POST /count HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("\"received\":8"), "{resp}");
}

/// Reads from `s` until `want` has arrived (or the connection ends).
async fn read_until(s: &mut TcpStream, want: &[u8]) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 1024];
    while !seen.windows(want.len()).any(|w| w == want) {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
        }
    }
    seen
}

/// A gateway in front of `up` with room for one request at a time, and
/// `settings` for the upstream (`timeouts: { read: 5s }`).
async fn one_at_a_time(up: &Scripted, settings: &str) -> Gateway1 {
    gateway(&format!(
        "upstreams:\n  svc: {{ targets: [ \"{}\" ], limits: {{ max_requests: 1 }}{settings} }}\n\
         routes:\n  - {{ name: svc, match: {{ path_prefix: / }}, upstream: svc }}\n",
        up.url()
    ))
    .await
}

/// Asks for `/stall` and reads up to its two bytes.
async fn stalled(gw: &Gateway1) -> (TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /stall HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let seen = read_until(&mut s, b"\r\n\r\nab").await;
    (s, seen)
}

/// The stalled upstream request has ended (within `within`), and its
/// `max_requests` place serves the next request.
async fn place_is_free_again(up: &Scripted, gw: &Gateway1, within: Duration) {
    let until = tokio::time::Instant::now() + within;
    while up.stalls_ended() == 0 {
        assert!(tokio::time::Instant::now() < until, "the stalled upstream request was kept");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(get(&gw.url("/next"), &[]).await.status, 200, "its place is free again");
}

/// An HTTP/1.1 client that leaves while the upstream's body is stalled:
/// the upstream request goes with it, and the places it held
/// (`max_requests: 1` here) are free for the next.
#[tokio::test]
async fn a_client_leaving_a_stalled_body_lets_go_of_the_upstream() {
    let up = Scripted::start().await;
    let gw = one_at_a_time(&up, "").await;
    let (s, seen) = stalled(&gw).await;
    assert!(seen.ends_with(b"ab"), "{}", String::from_utf8_lossy(&seen));
    drop(s);
    place_is_free_again(&up, &gw, Duration::from_secs(5)).await;
}

/// `timeouts.read`: a body that stalls longer is cut off (the client sees
/// the connection close short of the declared length), and the upstream
/// connection and its places go. On a paused clock: no real seconds.
#[tokio::test(start_paused = true)]
async fn a_stalled_body_is_cut_after_the_read_timeout() {
    let up = Scripted::start().await;
    let gw = one_at_a_time(&up, ", timeouts: { read: 5s }").await;
    let started = tokio::time::Instant::now();
    let (mut s, mut seen) = stalled(&gw).await;
    let cut = tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut seen)).await;
    assert!(cut.is_ok(), "still open after a minute of silence");
    let waited = started.elapsed();
    assert!(seen.ends_with(b"ab"), "cut after the two bytes: {}", String::from_utf8_lossy(&seen));
    assert!(waited >= Duration::from_secs(5) && waited < Duration::from_secs(6), "{waited:?}");
    place_is_free_again(&up, &gw, Duration::from_secs(1)).await;
}

/// `timeouts.request` running out while the client's body is late is the
/// client's doing: 408, and the target keeps its health (one failure would
/// eject it here). On a paused clock.
#[tokio::test(start_paused = true)]
async fn a_late_request_body_is_a_408_not_an_upstream_timeout() {
    let up = Scripted::start().await;
    let gw = gateway(&format!(
        "upstreams:\n  svc:\n    targets: [ \"{}\" ]\n    timeouts: {{ request: 1s }}\n    \
         health: {{ passive: {{ consecutive_failures: 1 }} }}\n\
         routes:\n  - {{ name: svc, match: {{ path_prefix: / }}, upstream: svc }}\n",
        up.url()
    ))
    .await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc").await.unwrap();
    let mut seen = Vec::new();
    let answered = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut seen)).await;
    assert!(answered.is_ok(), "no answer");
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert_eq!(get(&gw.url("/next"), &[]).await.status, 200, "the target was not marked down");
}

/// More than 8 interim (1xx) answers is a broken upstream (502), whether
/// they come in one read or one per read.
#[tokio::test]
async fn interim_answers_are_counted_across_reads() {
    let up = Scripted::start().await;
    let gw = in_front_of(&up.url()).await;
    assert_eq!(get(&gw.url("/interims-apart"), &[]).await.status, 502);
    assert_eq!(get(&gw.url("/"), &[]).await.text(), "ok", "the next request gets its own answer");
}

/// An idle pooled connection is closed once `pool.idle_timeout` has passed,
/// on a target nobody sends to any more (it was only checked when a
/// connection was taken: a quiet target's sockets stayed open for ever).
#[tokio::test]
async fn idle_connections_close_after_the_idle_timeout_without_traffic() {
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = upstream.local_addr().unwrap();
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut conn, _) = upstream.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = conn.read(&mut buf).await;
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await.unwrap();
        // Then wait for the gateway to close its end.
        let _ = conn.read(&mut buf).await;
        let _ = closed_tx.send(());
    });
    let gw = gateway(&format!(
        "upstreams:\n  svc: {{ targets: [ \"http://{addr}\" ], pool: {{ idle_timeout: 300ms }} }}\nroutes:\n  - {{ name: svc, match: {{ path_prefix: / }}, upstream: svc }}\n"
    ))
    .await;
    assert_eq!(get(&gw.url("/"), &[]).await.text(), "ok");
    let closed = tokio::time::timeout(Duration::from_secs(5), closed_rx).await;
    assert!(closed.is_ok(), "the idle connection outlived pool.idle_timeout");
}

/// A body that has ended is no longer late, however its last piece came:
/// time that runs out after it is the upstream's (504), not the client's.
#[tokio::test]
async fn time_that_runs_out_after_the_body_ended_is_a_504() {
    let up = crate::support::Upstream::start("svc").await;
    let gw = gateway(&format!(
        "upstreams:\n  svc: {{ targets: [ \"{}\" ], timeouts: {{ request: 800ms }} }}\n\
         routes:\n  - {{ name: svc, match: {{ path_prefix: / }}, upstream: svc }}\n",
        up.url()
    ))
    .await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(
        b"POST /hang HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.write_all(b"0\r\n\r\n").await.unwrap();
    let mut seen = Vec::new();
    let answered = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut seen)).await;
    assert!(answered.is_ok(), "no answer");
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 504"), "{text}");
}
