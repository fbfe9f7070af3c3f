//! WebSocket upgrades: opt-in per route (`websocket: true`), tunnelled only
//! after the upstream's valid `101`, on plain and TLS listeners alike.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::support::pki::{Pki, tls_connect};
use crate::support::recorder::Recorder;
use crate::support::wire::exchange;
use crate::support::{WsUpstream, gateway, load};

fn ws_routes(ws: &str, plain: &str) -> String {
    format!(
        r#"upstreams:
  ws: {{ targets: [ "{ws}" ] }}
  plain: {{ targets: [ "{plain}" ] }}
routes:
  - {{ name: chat, match: {{ path_prefix: /chat }}, upstream: ws, websocket: true }}
  - {{ name: plain, match: {{ path_prefix: /plain }}, upstream: plain }}
"#
    )
}

async fn echo_three<S>(socket: &mut tokio_tungstenite::WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    for text in ["hello", "through", "the gateway"] {
        socket.send(Message::text(text)).await.unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(5), socket.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), text);
    }
}

/// A gateway whose `/chat` tunnels to `ws`, one WebSocket per client at a
/// time (`concurrency`, `timeouts.read` the default 60 s); its `/chat` URL.
async fn one_websocket_per_client(ws: &WsUpstream) -> (crate::support::Gateway1, String) {
    let yaml = format!(
        r#"upstreams:
  ws: {{ targets: [ "http://{}" ] }}
routes:
  - {{ name: chat, match: {{ path_prefix: /chat }}, upstream: ws, websocket: true, concurrency: [ {{ key: ip, max: 1 }} ] }}
"#,
        ws.addr
    );
    let gw = gateway(&yaml).await;
    let url = format!("ws://{}/chat", gw.addr);
    (gw, url)
}

/// A WebSocket to `url`, tried every 20 ms until one is let in, for at most `within`.
async fn upgrade_within(
    url: &str,
    within: Duration,
) -> Option<tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>> {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if let Ok((socket, _)) = tokio_tungstenite::connect_async(url).await {
            return Some(socket);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

#[tokio::test]
async fn a_websocket_route_tunnels_after_the_upstreams_101() {
    let ws = WsUpstream::start().await;
    let rec = Recorder::start().await;
    let gw = gateway(&ws_routes(&format!("http://{}", ws.addr), &rec.url())).await;
    let (mut socket, resp) = tokio_tungstenite::connect_async(format!("ws://{}/chat", gw.addr)).await.expect("upgrade");
    assert_eq!(resp.status(), 101);
    // The response security headers are for documents, not for a 101.
    assert!(resp.headers().get("x-frame-options").is_none(), "{:?}", resp.headers());
    assert!(resp.headers().get("x-request-id").is_some(), "{:?}", resp.headers());
    echo_three(&mut socket).await;
    socket.close(None).await.unwrap();

    // The same handshake to a route without `websocket: true` is served as a
    // plain request: the upstream sees no upgrade, the client no tunnel.
    let err = tokio_tungstenite::connect_async(format!("ws://{}/plain/x", gw.addr)).await.expect_err("no upgrade");
    assert!(err.to_string().contains("200"), "{err}");
    rec.wait_for("/plain/x").await;
    let seen = &rec.requests()[0];
    assert!(seen.header("upgrade").is_none() && seen.header("sec-websocket-key").is_some(), "{seen:?}");
}

#[tokio::test]
async fn a_websocket_route_on_a_tls_listener() {
    let ws = WsUpstream::start().await;
    let pki = Pki::new();
    let (cert, key) = pki.issue("gw", "gw", &["gw.test"]);
    let yaml = format!(
        "listeners:\n  - {{ name: tls, bind: \"127.0.0.1:0\", tls: {{ certificates: [ {{ cert: \"{}\", key: \"{}\" }} ] }} }}\n{}",
        cert.display(),
        key.display(),
        ws_routes(&format!("http://{}", ws.addr), "http://127.0.0.1:9")
    );
    let handle = portcullis::Gateway::start(&load(&yaml, std::path::Path::new("."))).await.unwrap();
    let addr = handle.addr("tls").unwrap();
    let tls = tls_connect(addr, "gw.test", &pki.ca_path(), None, &[b"http/1.1"]).await.unwrap();
    let (mut socket, resp) = tokio_tungstenite::client_async("wss://gw.test/chat", tls).await.expect("upgrade");
    assert_eq!(resp.status(), 101);
    echo_three(&mut socket).await;
}

/// An upstream that answers every upgrade with a `101` whose accept value is wrong.
async fn forged_101() -> Recorder {
    Recorder::with_replies(|_| {
        Some(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: bm90IHRoZSByaWdodCBvbmU=\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\npoisoned"
                .to_vec(),
        )
    })
    .await
}

#[tokio::test]
async fn a_101_that_does_not_complete_the_handshake_is_a_502() {
    let rec = forged_101().await;
    let gw = gateway(&ws_routes(&rec.url(), &rec.url())).await;
    let handshake = b"GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let resp = exchange(gw.addr, handshake).await.expect("an answer");
    assert_eq!(resp.status, 502, "{}", resp.head);
}

/// A handshake without exactly one `Sec-WebSocket-Key` of 16 bytes in
/// base64 is refused before the upstream: with two, the gateway checked
/// the answer against the first while the target could use the other;
/// without one, the handshake was forwarded and could only end in a 502.
#[tokio::test]
async fn a_handshake_needs_exactly_one_key() {
    let rec = Recorder::start().await;
    let gw = gateway(&ws_routes(&rec.url(), &rec.url())).await;
    let upgrade =
        "GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n";
    for keys in [
        "",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: YW5vdGhlciBzYW1wbGUgbm9uY2U=\r\n",
        "Sec-WebSocket-Key: not base64!\r\n",
        "Sec-WebSocket-Key: c2hvcnQ=\r\n",
    ] {
        let resp = exchange(gw.addr, format!("{upgrade}{keys}\r\n").as_bytes()).await.expect("an answer");
        assert_eq!(resp.status, 400, "{keys:?}: {}", resp.head);
    }
    assert_eq!(rec.count(), 0, "nothing reached the upstream: {}", rec.transcript());
}

/// An upstream that answers every upgrade with `reply`, its correct
/// `Sec-WebSocket-Accept` filled in for `{accept}`.
async fn answering_upgrades(reply: &'static str) -> Recorder {
    Recorder::with_replies(move |req| {
        let key = req.header("sec-websocket-key")?;
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        Some(reply.replace("{accept}", &accept).into_bytes())
    })
    .await
}

/// A `101` gets no security headers added, but what hides the upstream's
/// software (`security.remove`: `Server`, `X-Powered-By`) goes from it as
/// from any other answer.
#[tokio::test]
async fn a_101_loses_the_upstreams_server_headers() {
    let rec = answering_upgrades(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nServer: secret-ws/1.2\r\nX-Powered-By: Express\r\nSec-WebSocket-Accept: {accept}\r\n\r\n",
    )
    .await;
    let gw = gateway(&ws_routes(&rec.url(), &rec.url())).await;
    let handshake = b"GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let resp = exchange(gw.addr, handshake).await.expect("an answer");
    assert_eq!(resp.status, 101, "{}", resp.head);
    let head = resp.head.to_ascii_lowercase();
    assert!(!head.contains("secret-ws") && !head.contains("express"), "{}", resp.head);
    assert!(!head.contains("x-content-type-options"), "nothing added to a handshake: {}", resp.head);
}

/// HTTP/1.0 has no upgrades and a `101` no body: such an answer, even with
/// the right accept value, is a broken upstream (502), not a tunnel.
#[tokio::test]
async fn a_101_in_http_1_0_or_with_a_body_framing_is_a_502() {
    let handshake = b"GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    for reply in [
        "HTTP/1.0 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\nContent-Length: 5\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        let rec = answering_upgrades(reply).await;
        let gw = gateway(&ws_routes(&rec.url(), &rec.url())).await;
        let resp = exchange(gw.addr, handshake).await.expect("an answer");
        assert_eq!(resp.status, 502, "{reply:?}: {}", resp.head);
    }
    // The same answer in HTTP/1.1 without framing is a tunnel, and the
    // upstream's own fields (a cookie) reach the client, as NGINX passes them.
    let rec = answering_upgrades(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\nSet-Cookie: sticky=a1\r\nPortcullis-Tries: 9\r\n\r\n",
    )
    .await;
    let gw = gateway(&ws_routes(&rec.url(), &rec.url())).await;
    let resp = exchange(gw.addr, handshake).await.expect("an answer");
    assert_eq!(resp.status, 101, "{}", resp.head);
    let head = resp.head.to_ascii_lowercase();
    assert!(head.contains("set-cookie: sticky=a1"), "{}", resp.head);
    assert!(!head.contains("portcullis-tries: 9"), "{}", resp.head);
}

/// A connection whose upgrade the target declined (here a `200`) is not
/// kept for the next handshake: pooled, it carried the handshakes of every
/// later client and route into a connection the target reads as it likes.
#[tokio::test]
async fn a_declined_handshake_leaves_its_connection_unused() {
    let rec = Recorder::with_replies(|_| Some(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno".to_vec())).await;
    let gw = gateway(&ws_routes(&rec.url(), &rec.url())).await;
    let handshake = b"GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    for _ in 0..3 {
        assert_eq!(exchange(gw.addr, handshake).await.expect("an answer").status, 200);
    }
    let connections: Vec<usize> = rec.requests().iter().map(|r| r.connection).collect();
    assert_eq!(connections, [0, 1, 2], "each handshake on its own connection");
}

/// A `websocket` route needs an upstream spoken to over HTTP/1.1: over
/// `protocol: http2`, the handshake went out as an HTTP/2 request with
/// no upgrade (and the target's address as `:authority`).
#[tokio::test]
async fn a_websocket_route_to_an_http2_upstream_is_a_config_error() {
    let yaml = "listeners:\n  - { name: gw, bind: \"127.0.0.1:0\" }\nupstreams:\n  h2: { targets: [ \"http://127.0.0.1:9\" ], protocol: http2 }\nroutes:\n  - { name: chat, match: { path_prefix: /chat }, upstream: h2, websocket: true }\n";
    let errors = portcullis::check(&load(yaml, std::path::Path::new("."))).unwrap_err().to_string();
    assert!(errors.contains("routes[0].websocket: upstream `h2` is spoken to over HTTP/2"), "{errors}");
}

/// A WebSocket holds its route's concurrency slot for as long as it is
/// open (NGINX `limit_conn`), not only while its `101` is written.
#[tokio::test]
async fn an_open_websocket_holds_its_concurrency_slot() {
    let ws = WsUpstream::start().await;
    let (_gw, url) = one_websocket_per_client(&ws).await;
    let (mut first, _) = tokio_tungstenite::connect_async(&url).await.expect("upgrade");
    echo_three(&mut first).await;
    let err = tokio_tungstenite::connect_async(&url).await.expect_err("a second WebSocket while the first is open");
    assert!(err.to_string().contains("503"), "{err}");
    first.close(None).await.unwrap();
    drop(first);
    // The slot comes back when the tunnel closes.
    let again = upgrade_within(&url, Duration::from_secs(1)).await;
    echo_three(&mut again.expect("the slot is given back when the first WebSocket closes")).await;
}

/// An open WebSocket holds its connection to the upstream, outside the
/// pool: it takes a place in the upstream's `limits.max_connections` for
/// as long as it is open (50 tunnels went past `max_connections: 2`).
#[tokio::test]
async fn open_websockets_count_in_the_upstreams_max_connections() {
    let ws = WsUpstream::start().await;
    let yaml = format!(
        "upstreams:\n  ws: {{ targets: [ \"http://{}\" ], limits: {{ max_connections: 2 }} }}\n\
         routes:\n  - {{ name: chat, match: {{ path_prefix: /chat }}, upstream: ws, websocket: true }}\n",
        ws.addr
    );
    let gw = gateway(&yaml).await;
    let url = format!("ws://{}/chat", gw.addr);
    let (mut first, _) = tokio_tungstenite::connect_async(&url).await.expect("upgrade");
    let (mut second, _) = tokio_tungstenite::connect_async(&url).await.expect("upgrade");
    echo_three(&mut first).await;
    let err = tokio_tungstenite::connect_async(&url).await.expect_err("a third WebSocket while two are open");
    assert!(err.to_string().contains("503"), "{err}");
    echo_three(&mut second).await;
    first.close(None).await.unwrap();
    drop(first);
    let again = upgrade_within(&url, Duration::from_secs(2)).await;
    echo_three(&mut again.expect("the place is given back when a WebSocket closes")).await;
}

/// A tunnel ends when either side closes, as NGINX ends one: an upstream
/// that hangs up frees the route's concurrency slot at once, even while
/// the client keeps its end open (it was held until `timeouts.read`).
#[tokio::test]
async fn a_websocket_ends_when_the_upstream_hangs_up() {
    let ws = WsUpstream::start().await;
    let (_gw, url) = one_websocket_per_client(&ws).await;
    let (mut first, _) = tokio_tungstenite::connect_async(&url).await.expect("upgrade");
    first.send(Message::text("hang up")).await.unwrap();
    // `first` stays open on this side, unread.
    // Within the few seconds the other way is given to finish (its timeouts.read is 60 s).
    let again = upgrade_within(&url, Duration::from_secs(8)).await;
    echo_three(&mut again.expect("the slot is given back when the upstream hangs up")).await;
    drop(first);
}

/// A client that sends its close frame and half-closes its socket still
/// gets the upstream's answering close frame: the way still open is given
/// time to finish before the tunnel ends.
#[tokio::test]
async fn a_half_close_after_a_close_frame_still_gets_the_answer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ws = WsUpstream::start().await;
    let gw = gateway(&ws_routes(&format!("http://{}", ws.addr), "http://127.0.0.1:9")).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(
        b"GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(s.read(&mut byte).await.unwrap(), 1, "the 101 head");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    // A masked close frame (code 1000), then the write side shut.
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x88, 0x82];
    frame.extend_from_slice(&mask);
    frame.extend([0x03 ^ mask[0], 0xe8 ^ mask[1]]);
    s.write_all(&frame).await.unwrap();
    s.shutdown().await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await.expect("closed").unwrap();
    assert_eq!(answer.first(), Some(&0x88), "the upstream's close frame arrives: {answer:?}");
}

/// A tunnel that carries nothing either way for the upstream's
/// `timeouts.read` is closed; one that keeps talking is not.
#[tokio::test(start_paused = true)]
async fn a_silent_websocket_is_closed_after_the_upstreams_read_timeout() {
    let ws = WsUpstream::start().await;
    let yaml = format!(
        r#"upstreams:
  ws: {{ targets: [ "http://{}" ], timeouts: {{ read: 2s }} }}
routes:
  - {{ name: chat, match: {{ path_prefix: /chat }}, upstream: ws, websocket: true }}
"#,
        ws.addr
    );
    let gw = gateway(&yaml).await;
    let url = format!("ws://{}/chat", gw.addr);
    let (mut talking, _) = tokio_tungstenite::connect_async(&url).await.expect("upgrade");
    let (mut silent, _) = tokio_tungstenite::connect_async(&url).await.expect("upgrade");
    // Virtual time: 3 s of one message a second on one, silence on the other.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        echo_three(&mut talking).await;
    }
    let ended = tokio::time::timeout(Duration::from_secs(1), silent.next()).await;
    assert!(
        matches!(ended, Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_))))),
        "a silent tunnel was kept past timeouts.read: {ended:?}"
    );
    echo_three(&mut talking).await;
}

/// A client that reads slowly is timed by the listener's `idle_timeout`
/// (the longest a client may leave what is sent to it unread), not by the
/// upstream's `timeouts.read`: the upstream had data the whole time. Cut
/// at `idle_timeout` and logged as the client's doing, not as silence.
#[tokio::test(start_paused = true)]
async fn a_websocket_client_that_reads_slowly_is_timed_by_idle_timeout() {
    slow_reader_cut_at_idle_timeout("1s").await;
}

/// The same with a `timeouts.read` longer than `idle_timeout` (quiet
/// WebSockets are told to raise it): the client is still cut at
/// `idle_timeout`, not when the silence timer next looks (it was cut at
/// 60 s, or never when the client read a little in between).
#[tokio::test(start_paused = true)]
async fn a_websocket_client_reading_nothing_is_cut_at_idle_timeout_whatever_timeouts_read() {
    slow_reader_cut_at_idle_timeout("60s").await;
}

async fn slow_reader_cut_at_idle_timeout(read: &str) {
    let ws = WsUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"listeners:
  - {{ name: gw, bind: "127.0.0.1:0", limits: {{ idle_timeout: 10s }} }}
access_log: {{ to: access.log }}
upstreams:
  ws: {{ targets: [ "http://{}" ], timeouts: {{ read: {read} }} }}
routes:
  - {{ name: chat, match: {{ path_prefix: /chat }}, upstream: ws, websocket: true }}
"#,
        ws.addr
    );
    let gw = portcullis::Gateway::start(&load(&yaml, dir.path())).await.unwrap();
    let url = format!("ws://{}/chat", gw.addr("gw").unwrap());
    let (mut client, _) = tokio_tungstenite::connect_async(&url).await.expect("upgrade");
    let read_all = async |client: &mut tokio_tungstenite::WebSocketStream<_>, n: usize| {
        let mut got = 0;
        while got < n {
            match tokio::time::timeout(Duration::from_secs(1), client.next()).await {
                Ok(Some(Ok(m))) if m.is_binary() => got += 1,
                _ => break,
            }
        }
        got
    };
    // 16 MiB the client does not read for 5 s: past the upstream's 1 s, within 10 s.
    client.send(Message::text("flood 256")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(read_all(&mut client, 256).await, 256, "the tunnel was cut while the client was slow");
    // Unread past `idle_timeout`: cut.
    client.send(Message::text("flood 256")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert!(read_all(&mut client, 256).await < 256, "a client reading nothing for idle_timeout is cut");
    drop(client);
    gw.flush_logs();
    let log = std::fs::read_to_string(dir.path().join("access.log")).unwrap_or_default();
    assert!(log.contains("\"response_flag\":\"DC\""), "{log}");
}
