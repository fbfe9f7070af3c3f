//! Zero-downtime reload and graceful shutdown.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::{Upstream, get, load};

fn config(body: &str, extra_listener: bool) -> String {
    let extra = if extra_listener { "  - { name: extra, bind: \"127.0.0.1:0\" }\n" } else { "" };
    format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\n{extra}routes:\n  - {{ name: r, match: {{ path_prefix: / }}, static: {{ body: \"{body}\" }} }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_lose_no_requests() {
    let gw = portcullis::Gateway::start(&load(&config("v0", false), Path::new("."))).await.unwrap();
    let url = format!("http://{}/", gw.addr("gw").unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (url, stop, ok, failed) = (url.clone(), stop.clone(), ok.clone(), failed.clone());
        clients.push(tokio::spawn(async move {
            let client = crate::support::http1_client();
            while !stop.load(Ordering::Relaxed) {
                let req = http::Request::get(&url).body(Default::default()).unwrap();
                match client.request(req).await {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    let mut last = String::new();
    for i in 1..=6 {
        // Wait for some traffic between reloads.
        let target = ok.load(Ordering::Relaxed) + 50;
        while ok.load(Ordering::Relaxed) < target {
            tokio::task::yield_now().await;
        }
        if i == 3 {
            let broken =
                load("listeners: []\nroutes:\n  - { name: r, match: { path: nope }, echo: {} }\n", Path::new("."));
            assert!(gw.reload(&broken).await.is_err(), "an invalid config must be refused");
        } else {
            last = format!("v{i}");
            gw.reload(&load(&config(&last, i % 2 == 0), Path::new("."))).await.unwrap();
        }
    }
    let target = ok.load(Ordering::Relaxed) + 50;
    while ok.load(Ordering::Relaxed) < target {
        tokio::task::yield_now().await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "{} ok", ok.load(Ordering::Relaxed));
    assert_eq!(gw.reloads(), 5);
    assert_eq!(get(&url, &[]).await.text(), last);
    // v6 has the extra listener: it was opened, and it serves.
    let extra = gw.addr("extra").expect("listener added by reload");
    assert_eq!(get(&format!("http://{extra}/"), &[]).await.text(), last);
}

#[tokio::test]
async fn removed_listener_stops_accepting() {
    let gw = portcullis::Gateway::start(&load(&config("a", true), Path::new("."))).await.unwrap();
    let extra = gw.addr("extra").unwrap();
    assert_eq!(get(&format!("http://{extra}/"), &[]).await.text(), "a");
    gw.reload(&load(&config("b", false), Path::new("."))).await.unwrap();
    assert!(gw.addr("extra").is_none());
    // Give the drain task its turn, then the port refuses connections.
    let mut refused = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(extra).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "the removed listener's port still accepts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_requests_finish() {
    let up = Upstream::start("slow").await;
    let yaml = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\nshutdown_timeout: 10s\nupstreams:\n  u: {{ targets: [ \"{}\" ] }}\nroutes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: u }}\n",
        up.url()
    );
    let gw = portcullis::Gateway::start(&load(&yaml, Path::new("."))).await.unwrap();
    let addr = gw.addr("gw").unwrap();
    let in_flight = tokio::spawn(async move { get(&format!("http://{addr}/hold"), &[]).await });
    while up.hits() < 1 {
        tokio::task::yield_now().await;
    }
    let shutdown = tokio::spawn(gw.shutdown());
    // New connections are refused while the old request is still running.
    let mut refused = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "still accepting after shutdown began");
    assert!(!shutdown.is_finished(), "shutdown must wait for the in-flight request");
    up.release();
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, 200);
    tokio::time::timeout(Duration::from_secs(5), shutdown).await.expect("shutdown completes").unwrap();
}

#[tokio::test]
async fn shutdown_closes_idle_keep_alive_connections_at_once() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let yaml = "listeners:\n  - { name: gw, bind: \"127.0.0.1:0\" }\nshutdown_timeout: 30s\nroutes:\n  - { name: r, match: { path_prefix: / }, static: { body: ok } }\n";
    let gw = portcullis::Gateway::start(&load(yaml, Path::new("."))).await.unwrap();
    let addr = gw.addr("gw").unwrap();
    // A keep-alive connection that has been served and now waits.
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut first = [0u8; 1024];
    let n = idle.read(&mut first).await.unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    let started = tokio::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(5), gw.shutdown())
        .await
        .expect("shutdown does not wait for idle connections");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the idle connection is closed");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// An idle HTTP/2 connection whose client answers nothing (not the PING
/// that follows GOAWAY) is dropped a second after GOAWAY, as a draining
/// keep-alive connection is closed: it must not hold every shutdown and
/// listener drain for the whole `shutdown_timeout`.
#[tokio::test]
async fn shutdown_drops_an_idle_http2_connection_that_answers_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let yaml = "listeners:\n  - { name: gw, bind: \"127.0.0.1:0\" }\nshutdown_timeout: 30s\nroutes:\n  - { name: r, match: { path_prefix: / }, static: { body: ok } }\n";
    let gw = portcullis::Gateway::start(&load(yaml, Path::new("."))).await.unwrap();
    let mut idle = tokio::net::TcpStream::connect(gw.addr("gw").unwrap()).await.unwrap();
    // The preface, an empty SETTINGS, and `GET /` on stream 1 (HPACK:
    // :method GET, :scheme http, :path /, :authority x), ending the stream.
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0".to_vec();
    hello.extend_from_slice(b"\0\0\x06\x01\x05\0\0\0\x01\x82\x86\x84\x41\x01x");
    idle.write_all(&hello).await.unwrap();
    // Served: its answer's DATA (`ok`) arrives; then the client goes quiet.
    let mut seen = Vec::new();
    while !seen.windows(2).any(|w| w == b"ok") {
        let mut chunk = [0u8; 1024];
        let n = idle.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before answering");
        seen.extend_from_slice(&chunk[..n]);
    }
    tokio::time::timeout(Duration::from_secs(10), gw.shutdown())
        .await
        .expect("shutdown does not wait shutdown_timeout for an idle HTTP/2 connection");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the idle connection is closed");
}

#[tokio::test]
async fn reload_with_a_busy_port_changes_nothing() {
    let gw = portcullis::Gateway::start(&load(&config("kept", false), Path::new("."))).await.unwrap();
    let url = format!("http://{}/", gw.addr("gw").unwrap());
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let yaml = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\n  - {{ name: new, bind: \"{}\" }}\nroutes:\n  - {{ name: r, match: {{ path_prefix: / }}, static: {{ body: \"new\" }} }}\n",
        busy.local_addr().unwrap()
    );
    let err = gw.reload(&load(&yaml, Path::new("."))).await.unwrap_err();
    assert!(err.to_string().contains("cannot bind"), "{err}");
    // The old listener and the old config keep serving.
    assert_eq!(get(&url, &[]).await.text(), "kept");
    assert_eq!(gw.reloads(), 0);
}

/// A listener renamed on its address is a new listener: the reload is
/// refused, and the error names the running listener that holds the
/// address and what to do (it said only "Address already in use").
#[tokio::test]
async fn renaming_a_listener_on_its_address_names_the_holder() {
    let gw = portcullis::Gateway::start(&load(&config("kept", false), Path::new("."))).await.unwrap();
    let addr = gw.addr("gw").unwrap();
    let yaml = format!(
        "listeners:\n  - {{ name: renamed, bind: \"{addr}\" }}\nroutes:\n  - {{ name: r, match: {{ path_prefix: / }}, static: {{ body: \"new\" }} }}\n"
    );
    let err = gw.reload(&load(&yaml, Path::new("."))).await.unwrap_err().to_string();
    assert!(
        err.contains("listener `renamed` cannot bind") && err.contains("the running listener `gw` holds it"),
        "{err}"
    );
    assert_eq!(get(&format!("http://{addr}/"), &[]).await.text(), "kept");
}

/// `admin.bind` changes at a restart only: a reload that drops the token
/// while the admin API still listens on a non-loopback address is refused,
/// and the token keeps guarding it.
#[tokio::test]
async fn a_reload_cannot_leave_a_public_admin_api_without_its_token() {
    let with_admin = |admin: &str| format!("{}admin: {admin}\n", config("v", false));
    let token = "t0ken-t0ken-t0ken-1";
    let gw = portcullis::Gateway::start(&load(
        &with_admin(&format!("{{ bind: \"0.0.0.0:0\", token: {token} }}")),
        Path::new("."),
    ))
    .await
    .unwrap();
    let status = format!("http://127.0.0.1:{}/status", gw.admin_addr().unwrap().port());
    assert_eq!(get(&status, &[]).await.status, 401);

    for admin in ["{ bind: \"127.0.0.1:0\" }", "{ bind: \"0.0.0.0:0\" }"] {
        // (The second is refused by `check`'s own rule too.)
        let loaded = load(&with_admin(admin), Path::new("."));
        let err = gw.reload(&loaded).await.expect_err(admin).to_string();
        assert!(err.contains("admin.token"), "{err}");
        assert_eq!(get(&status, &[]).await.status, 401, "still guarded after {admin}");
    }
    // With a token (a new one), or without the admin section, it reloads.
    let other = "an0ther-t0ken-t0ken";
    gw.reload(&load(&with_admin(&format!("{{ bind: \"127.0.0.1:0\", token: {other} }}")), Path::new(".")))
        .await
        .unwrap();
    let bearer = format!("Bearer {other}");
    assert_eq!(get(&status, &[("authorization", bearer.as_str())]).await.status, 200);
    gw.reload(&load(&config("v", false), Path::new("."))).await.unwrap();
    // No `admin` in the running config: no token opens it, and it says so (it asked for one).
    let gone = get(&status, &[("authorization", bearer.as_str())]).await;
    assert_eq!(gone.status, 404);
    assert!(gone.header("www-authenticate").is_none());
    assert!(gone.json()["detail"].as_str().unwrap().contains("no `admin` section"), "{}", gone.text());
    let health = format!("http://127.0.0.1:{}/healthz", gw.admin_addr().unwrap().port());
    assert_eq!(get(&health, &[]).await.status, 200);
}

/// What a reload cannot change while running is said, not silently left:
/// an admin API added (bound at start), the own log's level or format (set
/// up at start). A listener moved to another address with port 0 is bound
/// there (it stayed on the old address, with no word).
#[tokio::test]
async fn a_reload_says_what_waits_for_a_restart_and_moves_a_port_0_listener() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.yaml");
    let body = |bind: &str, extra: &str| {
        format!(
            "{extra}listeners:\n  - {{ name: gw, bind: \"{bind}:0\" }}\n\
             routes:\n  - {{ name: r, match: {{ path_prefix: / }}, static: {{ body: ok }} }}\n"
        )
    };
    std::fs::write(&path, body("127.0.0.1", "")).unwrap();
    let gw = portcullis::Gateway::start(&portcullis::config::load_file(&path).unwrap()).await.unwrap();
    assert_eq!(gw.addr("gw").unwrap().ip().to_string(), "127.0.0.1");

    std::fs::write(&path, body("127.0.0.2", "admin: { bind: \"127.0.0.1:0\" }\nlog_level: debug\n")).unwrap();
    let portcullis::ReloadOutcome::Reloaded { warnings, .. } = gw.reload_file(&path).await else {
        panic!("the reload was refused")
    };
    assert!(warnings.iter().any(|w| w.contains("`admin` was added")), "{warnings:?}");
    assert!(warnings.iter().any(|w| w.contains("`log_level` or `log_format`")), "{warnings:?}");
    assert!(gw.admin_addr().is_none(), "the admin API starts with the gateway");
    let moved = gw.addr("gw").unwrap();
    assert_eq!(moved.ip().to_string(), "127.0.0.2", "the listener moved");
    assert_eq!(get(&format!("http://{moved}/"), &[]).await.text(), "ok");

    // Back to the level it started with: nothing to say.
    std::fs::write(&path, body("127.0.0.2", "")).unwrap();
    let portcullis::ReloadOutcome::Reloaded { warnings, .. } = gw.reload_file(&path).await else {
        panic!("the reload was refused")
    };
    assert!(warnings.is_empty(), "{warnings:?}");
}
