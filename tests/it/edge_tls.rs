//! TLS termination: SNI, ALPN, HSTS, mutual TLS, redirects to HTTPS, and
//! certificate errors caught by `check`.

use std::path::Path;

use crate::support::pki::{Pki, https_get};
use crate::support::{Upstream, get, load};

async fn start(yaml: &str) -> portcullis::Handle {
    portcullis::Gateway::start(&load(yaml, Path::new("/"))).await.expect("gateway starts")
}

/// A TLS listener that requires client certificates of `pki`'s CA, with
/// the server certificate `cert`/`key`, echoing every request.
async fn mtls_echo(pki: &Pki, cert: &Path, key: &Path) -> (portcullis::Handle, std::net::SocketAddr) {
    let gw = start(&format!(
        r#"
listeners:
  - name: tls
    bind: "127.0.0.1:0"
    tls:
      certificates: [ {{ cert: "{}", key: "{}" }} ]
      client_auth: {{ ca: "{}" }}
routes:
  - {{ name: echo, match: {{ path_prefix: / }}, echo: {{}} }}
"#,
        cert.display(),
        key.display(),
        pki.ca_path().display()
    ))
    .await;
    let addr = gw.addr("tls").unwrap();
    (gw, addr)
}

#[tokio::test]
async fn sni_picks_the_certificate_and_alpn_offers_h2() {
    let pki = Pki::new();
    let (api_c, api_k) = pki.issue("api", "api", &["api.example.com"]);
    let (wild_c, wild_k) = pki.issue("wild", "wild", &["*.example.org"]);
    let up = Upstream::start("svc").await;
    let gw = start(&format!(
        r#"
listeners:
  - name: tls
    bind: "127.0.0.1:0"
    tls:
      certificates:
        - {{ cert: "{}", key: "{}" }}
        - {{ cert: "{}", key: "{}" }}
upstreams:
  svc: {{ targets: [ "{}" ] }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: svc }}
"#,
        api_c.display(),
        api_k.display(),
        wild_c.display(),
        wild_k.display(),
        up.url()
    ))
    .await;
    let addr = gw.addr("tls").unwrap();
    let api = https_get(addr, "api.example.com", &pki.ca_path(), None, "/x").await.unwrap();
    assert_eq!(api.reply.status, 200);
    assert_eq!(api.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(api.reply.version, http::Version::HTTP_2);
    let seen = api.reply.json();
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https");
    assert_eq!(api.reply.header("strict-transport-security"), Some("max-age=31536000"));
    // An upstream's own HSTS stands when a browser would take it; one
    // without `max-age` (an empty line, a lone directive) is ignored by
    // browsers (RFC 6797 §8.1) and is replaced by the gateway's.
    for (sent, seen) in [
        ("max-age=60;%20includeSubDomains", "max-age=60; includeSubDomains"),
        ("empty", "max-age=31536000"),
        ("includeSubDomains", "max-age=31536000"),
        ("max-age=", "max-age=31536000"),
        ("max-age=abc", "max-age=31536000"),
        ("max-age=100;%20max-age=200", "max-age=31536000"),
        // Withdrawn by the upstream (spaces around `=` are allowed): kept.
        ("max-age%20=%200", "max-age = 0"),
    ] {
        let r = https_get(addr, "api.example.com", &pki.ca_path(), None, &format!("/hsts?v={sent}")).await.unwrap();
        assert_eq!(r.reply.header("strict-transport-security"), Some(seen), "{sent}");
        assert_eq!(r.reply.headers.get_all("strict-transport-security").iter().count(), 1, "{sent}");
    }

    let wild = https_get(addr, "shop.example.org", &pki.ca_path(), None, "/x").await.unwrap();
    assert_eq!(wild.reply.status, 200);
    assert_ne!(wild.server_cert, api.server_cert, "SNI must select the wildcard certificate");
    // An unknown name gets the default (first) certificate, which does not
    // cover it: the client refuses, as it should.
    let err = https_get(addr, "other.test", &pki.ca_path(), None, "/x").await.err().expect("name mismatch");
    assert!(err.contains("NotValidForName") || err.contains("certificate"), "{err}");
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate() {
    let pki = Pki::new();
    let (c, k) = pki.issue("server", "server", &["api.example.com"]);
    let (cc, ck) = pki.issue("client", "svc-orders", &["orders.internal"]);
    let other = Pki::new();
    let (oc, ok) = other.issue("stranger", "stranger", &["x.internal"]);
    let (_gw, addr) = mtls_echo(&pki, &c, &k).await;
    let ok_reply = https_get(addr, "api.example.com", &pki.ca_path(), Some((&cc, &ck)), "/").await.unwrap();
    assert_eq!(ok_reply.reply.status, 200);
    let seen = ok_reply.reply.json();
    assert_eq!(seen["client_cert"]["subject"], "CN=svc-orders");
    assert_eq!(
        seen["client_cert"]["sans"],
        serde_json::json!(["DNS:orders.internal"]),
        "typed, as OpenSSL prints them"
    );
    // What a client sends after its own certificate (a stale intermediate,
    // an expired root) is not its identity: the handshake ignores it, so does the gateway.
    let (old, _) = pki.issue_until("old", "old-intermediate", &[], Some(1_600_000_000));
    let bundle = pki.dir.path().join("client-bundle.pem");
    std::fs::write(&bundle, [std::fs::read(&cc).unwrap(), std::fs::read(&old).unwrap()].concat()).unwrap();
    let with_extra = https_get(addr, "api.example.com", &pki.ca_path(), Some((&bundle, &ck)), "/").await;
    assert_eq!(
        with_extra.map(|r| r.reply.status.as_u16()),
        Ok(200),
        "an expired extra certificate refused a valid client"
    );
    let none = https_get(addr, "api.example.com", &pki.ca_path(), None, "/").await;
    assert!(none.is_err(), "a client without a certificate must be refused");
    let stranger = https_get(addr, "api.example.com", &pki.ca_path(), Some((&oc, &ok)), "/").await;
    assert!(stranger.is_err(), "a certificate from another CA must be refused");
}

/// A resumed TLS session carries the client certificate of the handshake
/// that made it: once that certificate has expired, resuming must not
/// keep its identity (each resumption handed out a new ticket, for ever).
#[tokio::test]
async fn a_resumed_session_does_not_outlive_its_client_certificate() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pki = Pki::new();
    let (c, k) = pki.issue("server", "server", &["api.example.com"]);
    let unix_now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let expires = unix_now() + 2;
    let (cc, ck) = pki.issue_until("client", "svc-short", &["short.internal"], Some(expires));
    let (_gw, addr) = mtls_echo(&pki, &c, &k).await;
    let config = crate::support::pki::client_config(&pki.ca_path(), Some((&cc, &ck)), &[b"http/1.1"]);
    // What one connection answers to a GET, and whether it was resumed.
    let get = async || {
        let mut tls = crate::support::pki::connect_with(config.clone(), addr, "api.example.com").await?;
        let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        let request = b"GET / HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n";
        tls.write_all(request).await.map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        let _ = tls.read_to_end(&mut answer).await;
        Ok::<_, String>((String::from_utf8_lossy(&answer).into_owned(), resumed))
    };
    let (first, _) = get().await.unwrap();
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    let (second, resumed) = get().await.unwrap();
    assert!(resumed && second.starts_with("HTTP/1.1 200"), "resumption works while the certificate is valid");
    // Past the certificate's notAfter (whole seconds), on the wall clock the gateway reads.
    while unix_now() <= expires {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    match get().await {
        Ok((answer, resumed)) => {
            assert!(resumed, "the test resumes the session");
            assert!(!answer.contains("svc-short"), "an expired certificate's identity was served: {answer}");
            assert!(answer.is_empty(), "the connection ends without an answer: {answer}");
        }
        Err(e) => assert!(!e.is_empty()),
    }
}

#[tokio::test]
async fn plain_listener_redirects_to_https() {
    let gw = start(
        r#"
listeners:
  - { name: plain, bind: "127.0.0.1:0", redirect_https: 8443 }
routes:
  - { name: echo, match: { path_prefix: / }, echo: {} }
"#,
    )
    .await;
    let url = format!("http://{}/a/b?q=1", gw.addr("plain").unwrap());
    let reply = get(&url, &[("host", "api.example.com:8080")]).await;
    assert_eq!(reply.status, 308);
    assert_eq!(reply.header("location"), Some("https://api.example.com:8443/a/b?q=1"));
    assert!(reply.header("strict-transport-security").is_none(), "no HSTS over plain HTTP");
    for bad in ["evil.com/x", "a@b", ""] {
        let reply = get(&url, &[("host", bad)]).await;
        assert_eq!(reply.status, 400, "Host `{bad}` must not be echoed into Location");
    }
    // `OPTIONS *` names no resource: the redirect goes to the root.
    let star = crate::support::wire::exchange(
        gw.addr("plain").unwrap(),
        b"OPTIONS * HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!((star.status, star.header("location").as_deref()), (308, Some("https://api.example.com:8443/")));
}

#[tokio::test]
async fn check_names_missing_and_mismatched_certificate_files() {
    let pki = Pki::new();
    let (c, _) = pki.issue("a", "a", &["a.test"]);
    let (b_cert, other_key) = pki.issue("b", "b", &["b.test"]);
    // A chain written upside down: the CA first, then the server's own.
    let upside_down = pki.dir.path().join("upside-down.pem");
    let ca = std::fs::read_to_string(pki.ca_path()).unwrap();
    std::fs::write(&upside_down, format!("{ca}{}", std::fs::read_to_string(&b_cert).unwrap())).unwrap();
    let yaml = format!(
        r#"
listeners:
  - name: tls
    bind: "127.0.0.1:0"
    tls:
      certificates:
        - {{ cert: "{}", key: "{}" }}
        - {{ cert: /nonexistent/cert.pem, key: /nonexistent/key.pem }}
        - {{ cert: "{}", key: "{}" }}
routes:
  - {{ name: echo, match: {{ path_prefix: / }}, echo: {{}} }}
"#,
        c.display(),
        other_key.display(),
        upside_down.display(),
        other_key.display()
    );
    let loaded = load(&yaml, Path::new("/"));
    let errors = portcullis::check(&loaded).unwrap_err().to_string();
    assert!(errors.contains("listeners[0].tls.certificates[0].key") && errors.contains("does not belong"), "{errors}");
    assert!(
        errors.contains("listeners[0].tls.certificates[1].cert") && errors.contains("/nonexistent/cert.pem"),
        "{errors}"
    );
    assert!(
        errors.contains("listeners[0].tls.certificates[2].key")
            && errors.contains("belongs to certificate 2")
            && errors.contains("comes first"),
        "{errors}"
    );
}

#[tokio::test]
async fn reload_rotates_certificates_without_restart() {
    let pki = Pki::new();
    let (old_c, old_k) = pki.issue("old", "old", &["api.example.com"]);
    let (new_c, new_k) = pki.issue("new", "new", &["api.example.com"]);
    let config = |c: &Path, k: &Path| {
        format!(
            "listeners:\n  - name: tls\n    bind: \"127.0.0.1:0\"\n    tls:\n      certificates: [ {{ cert: \"{}\", key: \"{}\" }} ]\nroutes:\n  - {{ name: e, match: {{ path_prefix: / }}, static: {{ body: ok }} }}\n",
            c.display(),
            k.display()
        )
    };
    let gw = start(&config(&old_c, &old_k)).await;
    let addr = gw.addr("tls").unwrap();
    let before = https_get(addr, "api.example.com", &pki.ca_path(), None, "/").await.unwrap();
    gw.reload(&load(&config(&new_c, &new_k), Path::new("/"))).await.unwrap();
    assert_eq!(gw.addr("tls"), Some(addr), "same listener, same port");
    let after = https_get(addr, "api.example.com", &pki.ca_path(), None, "/").await.unwrap();
    assert_eq!(after.reply.status, 200);
    assert_ne!(before.server_cert, after.server_cert, "new connections get the rotated certificate");
}

/// HTTP/1.1 over TLS is read by the gateway's own codec: bodies both ways
/// larger than a TLS record, `100 Continue`, keep-alive and pipelining.
#[tokio::test]
async fn http1_over_tls_streams_bodies_and_answers_100_continue() {
    use crate::support::pki::tls_connect;
    use crate::support::wire::RawConn;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    let pki = Pki::new();
    let (cert, key) = pki.issue("gw", "gw", &["gw.test"]);
    let up = Upstream::start("svc").await;
    let gw = start(&format!(
        r#"
listeners:
  - {{ name: tls, bind: "127.0.0.1:0", tls: {{ certificates: [ {{ cert: "{}", key: "{}" }} ] }} }}
upstreams:
  svc: {{ targets: [ "{}" ] }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: svc }}
"#,
        cert.display(),
        key.display(),
        up.url()
    ))
    .await;
    let addr = gw.addr("tls").unwrap();
    let ca = pki.ca_path();
    let connect = || tls_connect(addr, "gw.test", &ca, None, &[b"http/1.1"]);

    // 3 MiB up, 5 MiB down, on one keep-alive connection, then a pipelined pair.
    let mut conn = RawConn::over(connect().await.unwrap());
    let upload = vec![b'u'; 3 << 20];
    let mut request =
        format!("POST /count HTTP/1.1\r\nHost: gw.test\r\nContent-Length: {}\r\n\r\n", upload.len()).into_bytes();
    request.extend_from_slice(&upload);
    conn.send(&request).await;
    let resp = conn.response(false).await.unwrap();
    assert_eq!((resp.status, resp.text()), (200, format!("{{\"received\":{}}}", 3 << 20)));
    conn.send(format!("GET /big?bytes={} HTTP/1.1\r\nHost: gw.test\r\n\r\n", 5 << 20).as_bytes()).await;
    let resp = conn.response(false).await.unwrap();
    assert_eq!((resp.status, resp.body.len()), (200, 5 << 20));
    conn.send(b"GET /a HTTP/1.1\r\nHost: gw.test\r\n\r\nGET /b HTTP/1.1\r\nHost: gw.test\r\n\r\n").await;
    let (a, b) = (conn.response(false).await.unwrap(), conn.response(false).await.unwrap());
    assert!(a.text().contains("\"path\":\"/a\"") && b.text().contains("\"path\":\"/b\""), "{} {}", a.text(), b.text());

    // Expect: 100-continue: the client waits for the gateway's go-ahead.
    let mut tls = connect().await.unwrap();
    tls.write_all(b"POST /count HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reader = BufReader::new(tls);
    let mut line = String::new();
    tokio::time::timeout(std::time::Duration::from_secs(5), reader.read_line(&mut line)).await.unwrap().unwrap();
    assert!(line.starts_with("HTTP/1.1 100"), "{line}");
    reader.get_mut().write_all(b"hello").await.unwrap();
    let mut rest = String::new();
    let _ = reader.read_to_string(&mut rest).await;
    assert!(rest.contains("200 OK") && rest.contains("\"received\":5"), "{rest}");
}

/// A TLS connection that completes its handshake and then sends nothing
/// holds its slot for `header_read_timeout` from its start, as a plain one
/// does, not for `idle_timeout`.
/// A TLS listener (certificate for `gw.test` from the returned PKI) with
/// `limits`, answering `ok` to everything.
async fn static_tls(limits: &str) -> (Pki, portcullis::Handle) {
    let pki = Pki::new();
    let (cert, key) = pki.issue("gw", "gw", &["gw.test"]);
    let gw = start(&format!(
        r#"
listeners:
  - name: tls
    bind: "127.0.0.1:0"
    limits: {limits}
    tls: {{ certificates: [ {{ cert: "{}", key: "{}" }} ] }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, static: {{ body: ok }} }}
"#,
        cert.display(),
        key.display(),
    ))
    .await;
    (pki, gw)
}

#[tokio::test]
async fn a_silent_tls_connection_is_closed_after_the_header_timeout() {
    use crate::support::pki::tls_connect;
    use tokio::io::AsyncReadExt;

    let (pki, gw) = static_tls("{ header_read_timeout: 300ms, idle_timeout: 30s }").await;
    let mut silent =
        tls_connect(gw.addr("tls").unwrap(), "gw.test", &pki.ca_path(), None, &[b"http/1.1"]).await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), silent.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "a silent TLS connection was kept past header_read_timeout");
}

/// Plain HTTP sent to a TLS listener gets a plain 400 that says so (as
/// NGINX answers it: "The plain HTTP request was sent to HTTPS port"),
/// not a TLS alert that clients show as an opaque error; TLS clients of
/// the same port are served as usual.
#[tokio::test]
async fn plain_http_to_a_tls_listener_gets_a_400_saying_so() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (pki, gw) = static_tls("{}").await;
    let addr = gw.addr("tls").unwrap();
    // Any case, the empty lines a request may start with (RFC 9112 §2.2), a large body.
    let large = format!("POST /x HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 300000\r\n\r\n{}", "x".repeat(300_000));
    for sent in
        ["GET /x HTTP/1.1\r\nHost: gw.test\r\n\r\n", "get /x HTTP/1.1\r\n\r\n", "\r\nGET /x HTTP/1.1\r\n\r\n", &large]
    {
        let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
        plain.write_all(sent.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(std::time::Duration::from_secs(5), plain.read_to_end(&mut answer)).await.unwrap().unwrap();
        let answer = String::from_utf8_lossy(&answer);
        let what = &sent[..sent.len().min(20)];
        assert!(answer.starts_with("HTTP/1.1 400 "), "{what:?}: {answer}");
        assert!(answer.contains("application/problem+json") && answer.contains("plain HTTP"), "{what:?}: {answer}");
        assert!(answer.contains("\r\ndate: "), "{what:?}: {answer}");
        // The security headers every answer carries; no HSTS over plain HTTP.
        let head = answer.split("\r\n\r\n").next().unwrap_or_default().to_ascii_lowercase();
        for line in ["x-content-type-options: nosniff", "content-security-policy: ", "referrer-policy: no-referrer"] {
            assert!(head.contains(line), "{what:?}: no {line}: {answer}");
        }
        assert!(!head.contains("strict-transport-security"), "{what:?}: {answer}");
    }
    let ok = https_get(addr, "gw.test", &pki.ca_path(), None, "/x").await.unwrap();
    assert_eq!(ok.reply.status, 200);
}

/// A route for a host that only a listener requiring client certificates
/// serves, left open on the public listener: SNI picks the certificate,
/// `Host` the route, and a public client reaches the partners' route
/// without a certificate by sending their host (domain fronting). `check`
/// says so (`mtls-listener-bypass`); `match.listeners` closes it.
#[tokio::test]
async fn a_route_behind_a_required_client_certificate_is_warned_about_when_open_elsewhere() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pki = crate::support::pki::Pki::new();
    let (public_c, public_k) = pki.issue("public", "api.test", &["api.test"]);
    let (secure_c, secure_k) = pki.issue("secure", "secure.test", &["secure.test"]);
    let yaml = |scope: &str, keys: &str| {
        format!(
            "listeners:\n\
             \x20 - {{ name: public, bind: \"127.0.0.1:0\", tls: {{ certificates: [ {{ cert: \"{}\", key: \"{}\" }} ] }} }}\n\
             \x20 - {{ name: partners, bind: \"127.0.0.1:0\", tls: {{ certificates: [ {{ cert: \"{}\", key: \"{}\" }} ], client_auth: {{ ca: \"{}\", required: true }} }} }}\n\
             auth: {{ pm: {{ mtls: {{}} }} }}\n\
             routes:\n  - {{ name: partners-only, match: {{ host: secure.test{scope} }}{keys}, static: {{ body: internal }} }}\n",
            public_c.display(),
            public_k.display(),
            secure_c.display(),
            secure_k.display(),
            pki.ca_path().display()
        )
    };
    let fronted = async |gw: &portcullis::Handle| {
        let mut tls = crate::support::pki::tls_connect(
            gw.addr("public").unwrap(),
            "api.test",
            &pki.ca_path(),
            None,
            &[b"http/1.1"],
        )
        .await
        .unwrap();
        tls.write_all(b"GET / HTTP/1.1\r\nHost: secure.test\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut out = Vec::new();
        let _ = tls.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    };
    let open = load(&yaml("", ""), std::path::Path::new("/"));
    let warned: Vec<String> = portcullis::warnings(&open).iter().map(|w| w.to_string()).collect();
    assert!(
        warned.iter().any(|w| w.contains("[mtls-listener-bypass]") && w.contains("routes[0].match.host")),
        "{warned:?}"
    );
    let gw = portcullis::Gateway::start(&open).await.unwrap();
    assert!(fronted(&gw).await.ends_with("internal"), "what the warning is about");
    let scoped = load(&yaml(", listeners: [partners]", ""), std::path::Path::new("/"));
    let bypass = |cfg: &portcullis::config::LoadedConfig| {
        portcullis::warnings(cfg).iter().any(|w| w.to_string().contains("[mtls-listener-bypass]"))
    };
    assert!(!bypass(&scoped), "{:?}", portcullis::warnings(&scoped));
    let gw = portcullis::Gateway::start(&scoped).await.unwrap();
    assert!(fronted(&gw).await.starts_with("HTTP/1.1 404"));
    // An mtls provider closes it too, unless `anonymous` lets requests without a certificate through.
    let checked = load(&yaml("", ", authenticate: [pm]"), std::path::Path::new("/"));
    assert!(!bypass(&checked), "{:?}", portcullis::warnings(&checked));
    let optional = load(&yaml("", ", authenticate: [pm], anonymous: true"), std::path::Path::new("/"));
    assert!(bypass(&optional), "{:?}", portcullis::warnings(&optional));
    let gw = portcullis::Gateway::start(&optional).await.unwrap();
    assert!(fronted(&gw).await.ends_with("internal"), "what the warning is about");
}

/// A certificate for an IP address only, after the first: SNI carries
/// names, never addresses (RFC 6066), so no handshake picks it (a client of
/// `https://127.0.0.1` gets the default one). `check` says so.
#[tokio::test]
async fn a_certificate_no_sni_can_pick_is_warned_about() {
    let pki = Pki::new();
    let (named_c, named_k) = pki.issue("named", "api.test", &["api.test"]);
    let (ip_c, ip_k) = pki.issue("ip", "ip", &["127.0.0.1"]);
    let yaml = |first: (&Path, &Path), second: (&Path, &Path)| {
        format!(
            "listeners:\n  - {{ name: tls, bind: \"127.0.0.1:0\", tls: {{ certificates: [ {{ cert: \"{}\", key: \"{}\" }}, {{ cert: \"{}\", key: \"{}\" }} ] }} }}\n\
             routes:\n  - {{ name: r, match: {{ path_prefix: / }}, static: {{ body: ok }} }}\n",
            first.0.display(),
            first.1.display(),
            second.0.display(),
            second.1.display()
        )
    };
    let unreachable = load(&yaml((&named_c, &named_k), (&ip_c, &ip_k)), Path::new("/"));
    let warned: Vec<String> = portcullis::warnings(&unreachable).iter().map(|w| w.to_string()).collect();
    assert!(
        warned.iter().any(|w| w.contains("[certificate-never-chosen]") && w.contains("certificates[1]")),
        "{warned:?}"
    );
    // First, it is the default: served to clients that send no SNI.
    let default = load(&yaml((&ip_c, &ip_k), (&named_c, &named_k)), Path::new("/"));
    assert!(portcullis::warnings(&default).is_empty(), "{:?}", portcullis::warnings(&default));
    // A name an earlier certificate claims (case and a trailing dot aside):
    // SNI picks the earlier one for it, whatever comes after.
    let (wild_c, wild_k) = pki.issue("wild", "wild", &["*.wild.test", "api.test"]);
    let (again_c, again_k) = pki.issue("again", "again", &["*.Wild.Test", "other.test"]);
    let shadowed = load(&yaml((&wild_c, &wild_k), (&again_c, &again_k)), Path::new("/"));
    let warned: Vec<String> = portcullis::warnings(&shadowed).iter().map(|w| w.to_string()).collect();
    let never: Vec<&String> = warned.iter().filter(|w| w.contains("[certificate-never-chosen]")).collect();
    assert_eq!(never.len(), 1, "{warned:?}");
    assert!(never[0].contains("certificates[1]") && never[0].contains("`*.wild.test` is named by certificates[0]"));
}

/// A reload that replaces the listener's client CA does not leave the
/// keep-alive connections its old CA verified trusted: the next request
/// on such a connection gets 421 (a browser sends it again on a new
/// connection) and the connection closes; a new connection with the old
/// certificate is refused. A reload that keeps the CA keeps connections
/// as they are. (They kept their identity as long as they stayed busy.)
#[tokio::test]
async fn a_reload_that_rotates_the_client_ca_out_ends_its_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pki = Pki::new();
    let (c, k) = pki.issue("server", "server", &["api.example.com"]);
    let (cc, ck) = pki.issue("client", "svc-a", &["a.internal"]);
    let other = Pki::new();
    let config = |ca: &Path, body: &str| {
        format!(
            "listeners:\n  - name: tls\n    bind: \"127.0.0.1:0\"\n    tls:\n      certificates: [ {{ cert: \"{}\", key: \"{}\" }} ]\n      client_auth: {{ ca: \"{}\" }}\n\
             routes:\n  - {{ name: r, match: {{ path_prefix: / }}, static: {{ body: \"{body}\" }} }}\n",
            c.display(),
            k.display(),
            ca.display()
        )
    };
    let gw = start(&config(&pki.ca_path(), "one")).await;
    let addr = gw.addr("tls").unwrap();
    let client = crate::support::pki::client_config(&pki.ca_path(), Some((&cc, &ck)), &[b"http/1.1"]);
    let mut tls = crate::support::pki::connect_with(client.clone(), addr, "api.example.com").await.unwrap();
    let exchange = async |tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>| {
        tls.write_all(b"GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n").await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), tls.read(&mut buf)).await.unwrap().unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert!(exchange(&mut tls).await.starts_with("HTTP/1.1 200"));
    // An HTTP/2 connection beside it.
    let h2_client = crate::support::pki::client_config(&pki.ca_path(), Some((&cc, &ck)), &[b"h2"]);
    let h2_tls = crate::support::pki::connect_with(h2_client, addr, "api.example.com").await.unwrap();
    let (h2, h2_conn) = h2::client::handshake(h2_tls).await.unwrap();
    let mut h2_conn = tokio::spawn(h2_conn);
    let h2_get = async || {
        let req = http::Request::get("https://api.example.com/").body(()).unwrap();
        let (answer, _) = h2.clone().ready().await.unwrap().send_request(req, true).unwrap();
        answer.await.map(|a| a.status().as_u16()).map_err(|e| e.to_string())
    };
    assert_eq!(h2_get().await, Ok(200));
    // The same CA (another route body): the connection goes on.
    gw.reload(&load(&config(&pki.ca_path(), "two"), Path::new("/"))).await.unwrap();
    let answer = exchange(&mut tls).await;
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("two"), "{answer}");
    assert_eq!(h2_get().await, Ok(200));
    // Another CA: the next request is refused and the connection ends.
    gw.reload(&load(&config(&other.ca_path(), "three"), Path::new("/"))).await.unwrap();
    let answer = exchange(&mut tls).await;
    assert!(answer.starts_with("HTTP/1.1 421"), "{answer}");
    // HTTP/2: 421, then GOAWAY: the client's connection ends (it stayed until idle).
    assert_eq!(h2_get().await, Ok(421));
    let ended = tokio::time::timeout(std::time::Duration::from_secs(5), &mut h2_conn).await;
    assert!(ended.is_ok(), "the HTTP/2 connection is closed after its 421");
    assert!(!answer.contains("three"), "{answer}");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), tls.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(_)) | Ok(Err(_))), "the connection closes");
    let again = crate::support::pki::connect_with(client, addr, "api.example.com").await;
    let refused = match again {
        Err(_) => true,
        Ok(mut tls) => {
            let _ = tls.write_all(b"GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n").await;
            let mut buf = Vec::new();
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), tls.read_to_end(&mut buf)).await;
            buf.is_empty()
        }
    };
    assert!(refused, "a new connection with the old CA's certificate is refused");
}
