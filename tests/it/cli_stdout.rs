//! A stdout that nobody reads (a log pipe whose reader stalled) costs log
//! lines, never requests: the gateway's own warnings and its access log to
//! stdout both stop at a full pipe, and both must leave the workers alone.

use std::time::Duration;

use crate::support::get;
use crate::support::process::spawn_gateway_unread;

#[tokio::test]
async fn a_stalled_stdout_never_stops_requests() {
    // Nothing listens here: each request to /dead fails and logs a warning.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let config = format!(
        r#"
listeners: [ {{ name: gw, bind: "127.0.0.1:0" }} ]
admin: {{ bind: "127.0.0.1:0" }}
access_log: {{ to: stdout, buffer: 64 }}
upstreams: {{ dead: {{ targets: [ "http://{dead}" ] }} }}
routes:
  - {{ name: dead, match: {{ path_prefix: /dead }}, upstream: dead }}
  - {{ name: hello, match: {{ path: /hello }}, static: {{ body: "hi" }} }}
"#
    );
    let (gw, addr, admin) = spawn_gateway_unread(&config);
    let admin = admin.expect("the admin API's address");
    // Far more than a pipe holds (64 KiB): ~1 KiB of log per failed request.
    let in_time = |url: String| async move {
        tokio::time::timeout(Duration::from_secs(5), get(&url, &[]))
            .await
            .unwrap_or_else(|_| panic!("{url}: no answer"))
    };
    for i in 0..400 {
        assert_eq!(in_time(format!("http://{addr}/dead/{i}")).await.status, 502, "request {i}");
    }
    assert_eq!(in_time(format!("http://{addr}/hello")).await.text(), "hi");
    assert_eq!(in_time(format!("http://{admin}/healthz")).await.status, 200);
    // Nor the stop: the lines still held wait at most 2 s for the pipe
    // (the access log's flush waited for it for ever, past every SIGTERM).
    gw.signal("TERM");
    let mut gw = gw;
    let exited = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if let Some(status) = gw.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    })
    .await
    .unwrap();
    assert!(exited.is_some_and(|s| s.success()), "SIGTERM: {exited:?}");
}

/// What a client writes into a field of the gateway's own log (a query
/// name a validation report repeats) cannot begin a line of its own.
#[tokio::test]
async fn a_client_cannot_write_a_line_of_the_own_log() {
    let config = r#"
listeners: [ { name: gw, bind: "127.0.0.1:0" } ]
routes:
  - name: report
    match: { path: /r }
    static: { body: "ok" }
    validate: { mode: report, additional_query: deny, query: { n: { type: integer } } }
"#;
    let (gw, addr) = crate::support::process::spawn_gateway(config);
    let forged = "x%0A2026-01-01T00:00:00.000000Z%20ERROR%20portcullis:%20FORGED%0D%1B[2J";
    assert_eq!(get(&format!("http://{addr}/r?{forged}=1"), &[]).await.status, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let lines = gw.log.lock().unwrap().clone();
        if let Some(line) = lines.iter().find(|l| l.contains("FORGED")) {
            assert!(line.contains("report mode") && line.contains(r"x\n2026-01-01"), "{line}");
            assert!(!line.contains('\r') && !line.contains('\x1b'), "{line:?}");
            assert!(!lines.iter().any(|l| l.starts_with("2026-01-01")), "{lines:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no report line: {lines:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
