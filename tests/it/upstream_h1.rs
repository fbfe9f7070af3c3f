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
async fn head_responses_have_no_body_and_keep_the_connection() {
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
    assert_eq!(up.connections(), 1);
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
