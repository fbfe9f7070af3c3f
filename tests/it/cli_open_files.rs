//! The open-file limit: a shell's low soft limit is raised to the hard one
//! at start, so the listeners' connection limits are not cut by it; a
//! config that asks for more connections than the hard limit allows is
//! warned about.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::process::spawn_gateway_after;

fn config(max_connections: usize) -> String {
    format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\", limits: {{ max_connections: {max_connections} }} }}\n\
         routes:\n  - {{ name: r, match: {{ path_prefix: / }}, static: {{ body: \"ok\" }} }}\n"
    )
}

/// The `Max open files` soft and hard limits of a running process.
fn open_file_limits(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let mut numbers = line.split_whitespace().filter_map(|w| w.parse().ok());
    (numbers.next().unwrap(), numbers.next().unwrap())
}

#[tokio::test]
async fn a_low_soft_limit_is_raised_so_connections_are_not_cut_at_it() {
    let (gw, addr) = spawn_gateway_after("ulimit -Sn 256 && ulimit -Hn 4096", &config(1000));
    assert_eq!(open_file_limits(gw.id()), (4096, 4096));

    // 400 connections open at once, more than the 256 the shell allowed:
    // each gets its answer.
    let mut held = Vec::new();
    for _ in 0..400 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
        held.push(s);
    }
    for (i, s) in held.iter_mut().enumerate() {
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.unwrap().unwrap();
        let head = String::from_utf8_lossy(&buf[..n]);
        assert!(head.starts_with("HTTP/1.1 200"), "connection {i}: {head:?}");
    }
    assert!(gw.log.lock().unwrap().iter().any(|l| l.contains("open-file limit raised")));
}

#[tokio::test]
async fn listeners_asking_for_more_connections_than_files_are_warned_about() {
    let (gw, _) = spawn_gateway_after("ulimit -Sn 512 && ulimit -Hn 512", &config(10_000));
    assert_eq!(open_file_limits(gw.id()), (512, 512));
    let log = gw.log.lock().unwrap();
    let warning = log.iter().find(|l| l.contains("more than the open-file limit")).expect("a warning");
    assert!(warning.contains("WARN") && warning.contains("connections=10000") && warning.contains("open_files=512"));
}

/// Each upstream request may hold a connection of its own: the upstreams'
/// `max_requests` (1,024 each by default) count against the limit too.
#[tokio::test]
async fn upstream_requests_count_against_the_open_file_limit() {
    let upstreams =
        "upstreams:\n  a: { targets: [ \"http://127.0.0.1:9\" ] }\n  b: { targets: [ \"http://127.0.0.1:9\" ] }\n";
    let (gw, _) = spawn_gateway_after("ulimit -Sn 2048 && ulimit -Hn 2048", &format!("{}{upstreams}", config(1000)));
    let log = gw.log.lock().unwrap();
    let warning = log.iter().find(|l| l.contains("more than the open-file limit")).expect("a warning");
    assert!(warning.contains("upstream_requests=2048") && warning.contains("open_files=2048"), "{warning}");
    drop(log);
    let (gw, _) = spawn_gateway_after("ulimit -Sn 4096 && ulimit -Hn 4096", &format!("{}{upstreams}", config(1000)));
    assert!(!gw.log.lock().unwrap().iter().any(|l| l.contains("more than the open-file limit")));
}
