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

const SPOOF: [(&str, &str); 16] = [
    ("x-forwarded-for", "203.0.113.7, 10.1.1.1"),
    ("x-forwarded-proto", "https"),
    ("x-forwarded-host", "spoofed.example"),
    ("forwarded", "for=198.51.100.1"),
    ("x-request-id", "from-client-1"),
    ("host", "api.example.com"),
    // What frameworks read the address, scheme, port and URL from besides.
    ("x-real-ip", "198.51.100.9"),
    ("x-forwarded-ssl", "on"),
    ("x-forwarded-port", "443"),
    ("x-original-url", "/admin"),
    // A client certificate's identity, as TLS-terminating proxies pass it on.
    ("x-forwarded-client-cert", "By=spiffe://x;Subject=\"CN=root\""),
    ("X-SSL-Client-S-DN", "CN=root"),
    ("client-cert", ":MIIB:"),
    ("X-Amzn-Mtls-Clientcert-Subject", "CN=root"),
    // An application's own header that merely looks alike: passed on.
    ("x-client-id", "mobile-app"),
    // httpoxy: never passed on.
    ("proxy", "http://127.0.0.1:9/"),
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
    for claim in [
        "x-real-ip",
        "x-forwarded-ssl",
        "x-forwarded-port",
        "x-original-url",
        "x-forwarded-client-cert",
        "x-ssl-client-s-dn",
        "client-cert",
        "x-amzn-mtls-clientcert-subject",
        "proxy",
    ] {
        assert!(seen.get(claim).is_none(), "{claim} from an untrusted client reached the upstream");
    }
    assert_eq!(seen["x-client-id"], "mobile-app", "not a claim: {seen}");
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
    assert_eq!((&seen["x-real-ip"], &seen["x-forwarded-ssl"]), (&"198.51.100.9".into(), &"on".into()));
    assert_eq!(seen["x-ssl-client-s-dn"], "CN=root", "a trusted proxy's certificate claims are passed on");
    assert!(seen.get("proxy").is_none(), "not even from a trusted proxy");
    assert_eq!(seen["x-request-id"], "from-client-1");
    assert_eq!(reply.header("x-request-id"), Some("from-client-1"));
    let echo = get(&gw.url("/echo"), &SPOOF).await.json();
    // 10.1.1.1 is trusted, so the client is the hop before it.
    assert_eq!(echo["client_ip"], "203.0.113.7");
}

#[tokio::test]
async fn an_empty_forwarded_for_from_a_trusted_proxy_adds_no_hop() {
    let (gw, _up) = setup("[ 127.0.0.0/8 ]").await;
    let reply = get(&gw.url("/svc"), &[("x-forwarded-for", "")]).await;
    assert_eq!(reply.json()["headers"]["x-forwarded-for"], "127.0.0.1");
}

#[tokio::test]
async fn invalid_request_id_from_a_trusted_proxy_is_replaced() {
    let (gw, _up) = setup("[ 127.0.0.1 ]").await;
    let reply = get(&gw.url("/svc"), &[("x-request-id", "has spaces and {braces}")]).await;
    let id = reply.json()["headers"]["x-request-id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 32);
    assert_eq!(reply.header("x-request-id"), Some(id.as_str()));
}

/// Every line the gateway sets (X-Forwarded-For/Proto/Host, X-Request-Id,
/// traceparent: five, held inline since the edits list has room for
/// them) reaches the upstream exactly once with the gateway's value, however
/// many copies the client sent.
#[tokio::test]
async fn each_set_line_goes_upstream_once_whatever_the_client_doubled() {
    let (gw, _up) = setup("[ 10.0.0.0/8 ]").await;
    let mut request = String::from("GET /svc HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n");
    for (name, value) in [
        ("X-Forwarded-For", "203.0.113.7"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "spoofed.example"),
        ("X-Request-Id", "from-client-1"),
        ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    ] {
        request.push_str(&format!("{name}: {value}\r\n{name}: {value}-again\r\n"));
    }
    request.push_str("\r\n");
    let resp = crate::support::raw(gw.addr, &request).await;
    assert_eq!(crate::support::raw_status(&resp), 200, "{resp}");
    let body: serde_json::Value = serde_json::from_str(resp[resp.find("\r\n\r\n").unwrap() + 4..].trim()).unwrap();
    let seen = &body["headers"];
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-host"], "api.example.com");
    let id = seen["x-request-id"].as_str().unwrap();
    assert_eq!(id.len(), 32, "{id}");
    let parent = seen["traceparent"].as_str().unwrap();
    assert!(!parent.contains(',') && !parent.contains("0af7651916cd43dd8448eb211c80319c"), "{parent}");
}

/// A route's own `request_headers.set` of a claim header stands (the
/// client's claims are removed before the route's phases, not after):
/// `X-Forwarded-Prefix` with `strip_prefix` is how Spring, ASP.NET and
/// Werkzeug apps learn the path they are served under.
#[tokio::test]
async fn a_route_may_set_the_claims_a_client_may_not_send() {
    let up = Upstream::start("svc").await;
    let gw = gateway(&format!(
        r#"
upstreams:
  svc: {{ targets: [ "{}" ] }}
routes:
  - name: prefixed
    match: {{ path_prefix: /api }}
    upstream: svc
    rewrite: {{ strip_prefix: /api }}
    request_headers: {{ set: {{ X-Forwarded-Prefix: /api, X-Forwarded-Port: "443" }} }}
"#,
        up.url()
    ))
    .await;
    let reply = get(&gw.url("/api/hello"), &[("x-forwarded-prefix", "/evil"), ("x-real-ip", "198.51.100.9")]).await;
    let seen = &reply.json()["headers"];
    assert_eq!((&seen["x-forwarded-prefix"], &seen["x-forwarded-port"]), (&"/api".into(), &"443".into()));
    assert!(seen.get("x-real-ip").is_none(), "{seen}");
}

/// Only the header `client_ip_header` names is read: behind a balancer
/// that writes `Forwarded` and passes the client's `X-Forwarded-For` on,
/// the client cannot pick its own address (and the other way round).
#[tokio::test]
async fn only_the_configured_client_ip_header_is_read() {
    let (gw, _up) = setup("[ 127.0.0.0/8 ]\nclient_ip_header: forwarded").await;
    let both = [("x-forwarded-for", "6.6.6.6"), ("forwarded", "for=198.51.100.1")];
    assert_eq!(get(&gw.url("/echo"), &both).await.json()["client_ip"], "198.51.100.1");
    // The service reading `X-Forwarded-For` gets the same client, not the one the client wrote.
    let seen = get(&gw.url("/svc"), &both).await.json();
    assert_eq!(seen["headers"]["x-forwarded-for"], "198.51.100.1, 127.0.0.1");
    // The balancer's `proto=` and `host=` are the scheme and host the service is told.
    let rfc7239 = [("forwarded", "for=198.51.100.1;proto=https;host=\"shop.example:8443\"")];
    let seen = get(&gw.url("/svc"), &rfc7239).await.json();
    let told = (&seen["headers"]["x-forwarded-proto"], &seen["headers"]["x-forwarded-host"]);
    assert_eq!(told, (&"https".into(), &"shop.example:8443".into()), "{seen}");
    let odd = [("forwarded", "for=198.51.100.1;proto=gopher;host=\"a b\"")];
    let seen = get(&gw.url("/svc"), &odd).await.json();
    assert_eq!(seen["headers"]["x-forwarded-proto"], "http", "not a scheme of the web: the gateway's own");
    assert_ne!(seen["headers"]["x-forwarded-host"], "a b", "not a host: the request's own");
    let (gw, _up) = setup("[ 127.0.0.0/8 ]").await;
    assert_eq!(get(&gw.url("/echo"), &both).await.json()["client_ip"], "6.6.6.6");
    let forwarded_only = [("forwarded", "for=198.51.100.1")];
    assert_eq!(get(&gw.url("/echo"), &forwarded_only).await.json()["client_ip"], "127.0.0.1");
}
