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
    let (_gw, addr, admin) = spawn_gateway_unread(&config);
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
}
