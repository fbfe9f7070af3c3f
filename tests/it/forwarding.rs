//! Forwarded headers and request ids, with and without trusted proxies.

use crate::support::{Upstream, gateway, get};

async fn setup(trusted: &str) -> (crate::support::Gateway1, Upstream) {
    let up = Upstream::start("svc").await;
    let gw = gateway(&format!(
        r#"
trusted_proxies: {trusted}
upstreams:
  svc: {{ targets: [ "{}" ] }}
routes:
  - {{ name: svc, match: {{ path_prefix: /svc }}, upstream: svc }}
  - {{ name: echo, match: {{ path_prefix: /echo }}, echo: {{}} }}
"#,
        up.url()
    ))
    .await;
    (gw, up)
}

const SPOOF: [(&str, &str); 6] = [
    ("x-forwarded-for", "203.0.113.7, 10.1.1.1"),
    ("x-forwarded-proto", "https"),
    ("x-forwarded-host", "spoofed.example"),
    ("forwarded", "for=198.51.100.1"),
    ("x-request-id", "from-client-1"),
    ("host", "api.example.com"),
];

#[tokio::test]
async fn untrusted_client_cannot_spoof_forwarding_headers() {
    // Loopback is not in the trusted list: the client is the TCP peer.
    let (gw, _up) = setup("[ 10.0.0.0/8 ]").await;
    let reply = get(&gw.url("/svc"), &SPOOF).await;
    let seen = &reply.json()["headers"];
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-host"], "api.example.com");
    assert!(seen.get("forwarded").is_none());
    let id = seen["x-request-id"].as_str().unwrap();
    assert_ne!(id, "from-client-1");
    assert_eq!(id.len(), 32);
    assert_eq!(reply.header("x-request-id"), Some(id));
    let echo = get(&gw.url("/echo"), &SPOOF).await.json();
    assert_eq!(echo["client_ip"], "127.0.0.1");
}

#[tokio::test]
async fn trusted_proxy_chain_is_walked_and_extended() {
    let (gw, _up) = setup("[ 127.0.0.0/8, 10.0.0.0/8 ]").await;
    let reply = get(&gw.url("/svc"), &SPOOF).await;
    let seen = &reply.json()["headers"];
    assert_eq!(seen["x-forwarded-for"], "203.0.113.7, 10.1.1.1, 127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "https");
    assert_eq!(seen["x-forwarded-host"], "spoofed.example");
    assert_eq!(seen["forwarded"], "for=198.51.100.1");
    assert_eq!(seen["x-request-id"], "from-client-1");
    assert_eq!(reply.header("x-request-id"), Some("from-client-1"));
    let echo = get(&gw.url("/echo"), &SPOOF).await.json();
    // 10.1.1.1 is trusted, so the client is the hop before it.
    assert_eq!(echo["client_ip"], "203.0.113.7");
}

#[tokio::test]
async fn invalid_request_id_from_a_trusted_proxy_is_replaced() {
    let (gw, _up) = setup("[ 127.0.0.1 ]").await;
    let reply = get(&gw.url("/svc"), &[("x-request-id", "has spaces and {braces}")]).await;
    let id = reply.json()["headers"]["x-request-id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 32);
    assert_eq!(reply.header("x-request-id"), Some(id.as_str()));
}
