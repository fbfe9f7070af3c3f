//! Observability seen from outside: `/metrics` scraped and parsed with a
//! Prometheus text-format parser after known traffic, access-log lines
//! read back as JSON, the admin API's guard and its drain answer, trace
//! context at the upstream.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use prometheus_parse::{Scrape, Value};
use serde_json::{Value as Json, json};

use crate::support::idp::{Idp, now, sign_hs};
use crate::support::{Upstream, closed_port, get, http1_client, load, send};
use portcullis::{Gateway, Handle};

/// Starts a gateway whose config is `body` plus a `gw` listener and an admin API.
async fn start(body: &str, dir: &Path) -> Handle {
    let yaml = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\nadmin: {{ bind: \"127.0.0.1:0\" }}\n\
         access_log: {{ to: \"{}\" }}\n{body}",
        dir.join("access.log").display()
    );
    Gateway::start(&load(&yaml, dir)).await.expect("gateway starts")
}

fn url(h: &Handle, path: &str) -> String {
    format!("http://{}{path}", h.addr("gw").unwrap())
}

fn admin(h: &Handle, path: &str) -> String {
    format!("http://{}{path}", h.admin_addr().unwrap())
}

async fn scrape(h: &Handle) -> Scrape {
    let text = get(&admin(h, "/metrics"), &[]).await.text();
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text format")
}

fn find<'a>(s: &'a Scrape, metric: &str, labels: &[(&str, &str)]) -> Vec<&'a Value> {
    s.samples
        .iter()
        .filter(|x| x.metric == metric && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| &x.value)
        .collect()
}

/// A counter's or gauge's value (0 when the series is absent).
fn number(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    find(s, metric, labels)
        .into_iter()
        .map(|v| match v {
            Value::Counter(n) | Value::Gauge(n) | Value::Untyped(n) => *n,
            _ => 0.0,
        })
        .sum()
}

/// How many observations a histogram series holds (its `+Inf` bucket).
fn observations(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    find(s, metric, labels)
        .into_iter()
        .map(|v| match v {
            Value::Histogram(b) => b.iter().find(|c| c.less_than.is_infinite()).map_or(0.0, |c| c.count),
            _ => 0.0,
        })
        .sum()
}

/// Scrapes until `ready` holds: a request is counted when its response
/// body is done, a moment after the client has read it.
async fn scrape_until(h: &Handle, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = scrape(h).await;
        if ready(&s) || Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The access log's lines as JSON, once `count` of them are written.
async fn log_lines(h: &Handle, dir: &Path, count: usize) -> Vec<Json> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        h.flush_logs();
        let text = std::fs::read_to_string(dir.join("access.log")).unwrap_or_default();
        let lines: Vec<Json> =
            text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
        if lines.len() >= count || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn metrics_count_known_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start("svc").await;
    let key = portcullis::hash_key("k-good");
    let body = format!(
        "upstreams:\n  svc: {{ targets: [\"{}\"] }}\n  gone: {{ targets: [\"http://{}\"] }}\n\
         auth:\n  keys: {{ api_key: {{ header: X-API-Key }} }}\n\
         consumers:\n  - {{ id: acme, api_keys: [ {{ sha256: \"{key}\" }} ] }}\n\
         routes:\n\
         \x20 - {{ name: up, match: {{ path_prefix: /up }}, upstream: svc }}\n\
         \x20 - {{ name: down, match: {{ path_prefix: /down }}, upstream: gone }}\n\
         \x20 - {{ name: keyed, match: {{ path_prefix: /keyed }}, upstream: svc, authenticate: [keys] }}\n\
         \x20 - {{ name: limited, match: {{ path_prefix: /limited }}, upstream: svc, rate_limit: [ {{ name: tight, key: ip, rate: 1/m }} ] }}\n\
         \x20 - {{ name: checked, match: {{ path_prefix: /checked }}, upstream: svc, validate: {{ body: {{ schema: {{ type: object }} }} }} }}\n",
        up.url(),
        closed_port().await
    );
    let h = start(&body, dir.path()).await;
    // A validated body (read whole by the gateway, then sent): 200 bytes, once.
    let json = format!("{{\"note\":\"{}\"}}", "x".repeat(189));
    assert_eq!(json.len(), 200);
    let checked = Request::post(url(&h, "/checked"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(json)))
        .unwrap();
    assert_eq!(send(&http1_client(), checked).await.status, 200);
    for _ in 0..3 {
        assert_eq!(get(&url(&h, "/up/x"), &[]).await.status, 200);
    }
    for _ in 0..2 {
        assert_eq!(get(&url(&h, "/nowhere"), &[]).await.status, 404);
    }
    assert_eq!(get(&url(&h, "/down"), &[]).await.status, 502);
    assert_eq!(get(&url(&h, "/keyed"), &[]).await.status, 401);
    assert_eq!(get(&url(&h, "/keyed"), &[("x-api-key", "k-bad")]).await.status, 401);
    assert_eq!(get(&url(&h, "/keyed"), &[("x-api-key", "k-good")]).await.status, 200);
    assert_eq!(get(&url(&h, "/limited"), &[]).await.status, 200);
    assert_eq!(get(&url(&h, "/limited"), &[]).await.status, 429);
    let post = Request::post(url(&h, "/up/upload")).body(Full::new(Bytes::from(vec![b'x'; 3000]))).unwrap();
    assert_eq!(send(&http1_client(), post).await.status, 200);

    let duration = "http_server_request_duration_seconds";
    let s = scrape_until(&h, |s| {
        observations(s, duration, &[]) >= 13.0 && number(s, "http_server_active_requests", &[]) == 0.0
    })
    .await;
    let up_get = [("http_route", "up"), ("http_request_method", "GET"), ("http_response_status_code", "200")];
    assert_eq!(observations(&s, duration, &up_get), 3.0);
    let unrouted = [("http_request_method", "GET"), ("http_response_status_code", "404")];
    let no_route: f64 = s
        .samples
        .iter()
        .filter(|x| x.metric == duration && x.labels.get("http_route").is_none_or(str::is_empty))
        .filter(|x| unrouted.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            Value::Histogram(b) => b.last().map_or(0.0, |c| c.count),
            _ => 0.0,
        })
        .sum();
    assert_eq!(no_route, 2.0, "requests without a route are counted without a route label");
    assert_eq!(observations(&s, duration, &[("http_route", "down"), ("http_response_status_code", "502")]), 1.0);
    assert_eq!(number(&s, "http_server_active_requests", &[]), 0.0);

    // The 3,000-byte upload lands in the (1024, 4096] bucket of the request size histogram.
    let sizes =
        find(&s, "http_server_request_body_size_bytes", &[("http_route", "up"), ("http_request_method", "POST")]);
    let Some(Value::Histogram(buckets)) = sizes.first() else { panic!("no request size series: {sizes:?}") };
    let count_at = |le: f64| buckets.iter().find(|b| b.less_than == le).map(|b| b.count).unwrap();
    assert_eq!((count_at(1024.0), count_at(4096.0)), (0.0, 1.0));
    let sizes = find(&s, "http_server_request_body_size_bytes", &[("http_route", "checked")]);
    let Some(Value::Histogram(buckets)) = sizes.first() else { panic!("no request size series: {sizes:?}") };
    let count_at = |le: f64| buckets.iter().find(|b| b.less_than == le).map(|b| b.count).unwrap();
    assert_eq!((count_at(64.0), count_at(256.0)), (0.0, 1.0), "200 bytes, counted once");

    let client = "http_client_request_duration_seconds";
    assert_eq!(observations(&s, client, &[("upstream", "svc"), ("http_response_status_code", "200")]), 7.0);
    assert_eq!(observations(&s, client, &[("upstream", "gone"), ("error_type", "connect")]), 1.0);

    let auth = "portcullis_auth_failures_total";
    assert_eq!(number(&s, auth, &[("route", "keyed"), ("reason", "missing")]), 1.0);
    assert_eq!(number(&s, auth, &[("route", "keyed"), ("provider", "keys"), ("reason", "invalid")]), 1.0);
    let limits = "portcullis_rate_limit_decisions_total";
    assert_eq!(number(&s, limits, &[("route", "limited"), ("limit", "tight"), ("decision", "allowed")]), 1.0);
    assert_eq!(number(&s, limits, &[("route", "limited"), ("limit", "tight"), ("decision", "rejected")]), 1.0);
    assert_eq!(number(&s, "portcullis_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0);
    assert_eq!(number(&s, "portcullis_config_reloads_total", &[("result", "success")]), 0.0);
    assert!(number(&s, "portcullis_rate_limit_keys", &[]) >= 1.0);

    // OpenMetrics when asked for it.
    let om = get(&admin(&h, "/metrics"), &[("accept", "application/openmetrics-text; version=1.0.0")]).await;
    assert!(om.header("content-type").unwrap().starts_with("application/openmetrics-text"));
    assert!(om.text().ends_with("# EOF\n"));
    openmetrics_names_are_consistent(&om.text());
}

/// OpenMetrics 1.0's naming rule, which its parsers enforce: a family's
/// samples are its name with its type's suffixes only (a counter's
/// `_total`, a histogram's `_bucket`/`_count`/`_sum`, an info's `_info`),
/// and no sample name belongs to two families.
fn openmetrics_names_are_consistent(text: &str) {
    let mut families: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(families.iter().all(|(n, _)| n != name), "family {name} twice");
            families.push((name.to_string(), kind.to_string()));
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let sample = line.split(['{', ' ']).next().unwrap();
        let (family, kind) = families.last().expect("a sample before any # TYPE");
        let suffixes: &[&str] = match kind.as_str() {
            "counter" => &["_total", "_created"],
            "histogram" => &["_bucket", "_count", "_sum", "_created"],
            "info" => &["_info"],
            _ => &[""],
        };
        assert!(
            suffixes.iter().any(|s| sample == format!("{family}{s}")),
            "sample {sample} in family {family} ({kind})"
        );
        // A sample that another family's name would claim clashes.
        assert!(families.iter().filter(|(n, _)| n != family).all(|(n, _)| n != sample), "{sample} clashes");
    }
}

#[tokio::test]
async fn series_do_not_grow_with_client_data() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start("svc").await;
    let body = format!(
        "trusted_proxies: [127.0.0.1]\nupstreams:\n  svc: {{ targets: [\"{}\"] }}\n\
         routes:\n  - {{ name: items, match: {{ path: \"/items/{{id}}\" }}, upstream: svc }}\n",
        up.url()
    );
    let h = start(&body, dir.path()).await;
    let client = http1_client();
    let round = |i: usize| {
        let method = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"][i % 7];
        let method = if i.is_multiple_of(3) { format!("X{i}") } else { method.to_string() };
        let path = if i.is_multiple_of(2) { format!("/items/{i}") } else { format!("/other/{i}?q={i}") };
        Request::builder()
            .method(method.as_str())
            .uri(url(&h, &path))
            .header("x-forwarded-for", format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255))
            .body(Full::default())
            .unwrap()
    };
    for i in 0..200 {
        send(&client, round(i)).await;
    }
    let series = |s: &Scrape| s.samples.len();
    let before =
        series(&scrape_until(&h, |s| observations(s, "http_server_request_duration_seconds", &[]) >= 200.0).await);
    for i in 200..10_000 {
        send(&client, round(i)).await;
    }
    let after = scrape_until(&h, |s| observations(s, "http_server_request_duration_seconds", &[]) >= 10_000.0).await;
    assert_eq!(observations(&after, "http_server_request_duration_seconds", &[]), 10_000.0);
    assert_eq!(series(&after), before, "10,000 distinct paths, addresses and methods add no series");
}

#[tokio::test]
async fn access_log_lines_carry_the_fields_and_never_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start("svc").await;
    let idp = Idp::start().await;
    idp.tokens
        .lock()
        .unwrap()
        .push(("opaque-SECRET-5".into(), json!({ "active": true, "sub": "svc-1", "exp": now() + 600 })));
    let key = portcullis::hash_key("key-SECRET-2");
    let qkey = portcullis::hash_key("key-SECRET-3");
    let hash = bcrypt::hash("pass-SECRET-4", 4).unwrap();
    let jwt = sign_hs(
        jsonwebtoken::Algorithm::HS256,
        "hs-key-SECRET-0-long-enough-for-hs256",
        &json!({ "sub": "alice", "exp": now() + 300 }),
    );
    let body = format!(
        "upstreams:\n  svc: {{ targets: [\"{}\"] }}\n\
         auth:\n\
         \x20 hs: {{ jwt: {{ algorithms: [HS256], secret: hs-key-SECRET-0-long-enough-for-hs256 }} }}\n\
         \x20 keys: {{ api_key: {{ header: X-API-Key }} }}\n\
         \x20 qkeys: {{ api_key: {{ query: key }} }}\n\
         \x20 staff: {{ basic: {{ users: {{ carol: \"{hash}\" }} }} }}\n\
         \x20 opaque: {{ introspection: {{ endpoint: \"{}\", client_id: gw, client_secret: s3cret, timeout: 1s }} }}\n\
         consumers:\n  - {{ id: acme, api_keys: [ {{ sha256: \"{key}\" }}, {{ sha256: \"{qkey}\" }} ], basic_users: [carol] }}\n\
         routes:\n\
         \x20 - {{ name: jwt, match: {{ path_prefix: /jwt }}, upstream: svc, authenticate: [hs] }}\n\
         \x20 - {{ name: keyed, match: {{ path_prefix: /keyed }}, upstream: svc, authenticate: [keys, qkeys, staff] }}\n\
         \x20 - {{ name: opaque, match: {{ path_prefix: /opaque }}, upstream: svc, authenticate: [opaque] }}\n\
         \x20 - {{ name: open, match: {{ path_prefix: /open }}, upstream: svc }}\n",
        up.url(),
        idp.url("/introspect")
    );
    let h = start(&body, dir.path()).await;
    let basic = format!("Basic {}", base64_of("carol:pass-SECRET-4"));
    let requests: Vec<(String, Vec<(&str, String)>)> = vec![
        ("/jwt/a".into(), vec![("authorization", format!("Bearer {jwt}"))]),
        ("/keyed/b".into(), vec![("x-api-key", "key-SECRET-2".into())]),
        ("/keyed/c?key=key-SECRET-3&page=2".into(), vec![]),
        ("/keyed/d".into(), vec![("authorization", basic)]),
        ("/opaque/e".into(), vec![("authorization", "Bearer opaque-SECRET-5".into())]),
        (
            "/open/f?access_token=tok-SECRET-6".into(),
            vec![("cookie", "session=cookie-SECRET-7".into()), ("user-agent", "probe/1".into())],
        ),
        ("/jwt/g".into(), vec![("authorization", "Bearer not-a-SECRET-8".into())]),
        (
            "/open/h".into(),
            vec![
                ("proxy-authorization", "Basic cHJveHktU0VDUkVULTk=".into()),
                ("referer", "https://app.test/p?token=ref-SECRET-10".into()),
            ],
        ),
        ("/open/i".into(), vec![("referer", "//alice:ref-SECRET-11@app.test/p".into())]),
        ("/jwt/j".into(), vec![]),
        // A Java server's session in the path, SAML's assertion, CAS's ticket, a JWT-bearer grant.
        ("/open/k;jsessionid=path-SECRET-12".into(), vec![]),
        ("/open/l?SAMLResponse=saml-SECRET-13&ticket=ST-SECRET-14&client_assertion=ca-SECRET-15".into(), vec![]),
    ];
    for (path, headers) in &requests {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        get(&url(&h, path), &headers).await;
    }
    let lines = log_lines(&h, dir.path(), requests.len()).await;
    assert_eq!(lines.len(), requests.len(), "one line per request");
    let text = std::fs::read_to_string(dir.path().join("access.log")).unwrap();
    assert!(!text.contains("SECRET"), "a credential reached the access log:\n{text}");
    assert!(!text.contains(&jwt) && !text.contains("cHJveHkt"));

    let line =
        |path: &str| lines.iter().find(|l| l["url"]["path"] == path).unwrap_or_else(|| panic!("no line for {path}"));
    let jwt_line = line("/jwt/a");
    assert_eq!(jwt_line["http"]["request"]["method"], "GET");
    assert_eq!(jwt_line["http"]["response"]["status_code"], 200);
    assert_eq!(jwt_line["portcullis"]["route"], "jwt");
    assert_eq!(jwt_line["portcullis"]["auth"]["provider"], "hs");
    assert_eq!(jwt_line["portcullis"]["auth"]["outcome"], "success");
    assert_eq!(jwt_line["portcullis"]["upstream"]["name"], "svc");
    assert_eq!(jwt_line["portcullis"]["upstream"]["tries"].as_array().unwrap().len(), 1);
    assert_eq!(jwt_line["portcullis"]["response_flag"], "-");
    assert_eq!(jwt_line["client"]["ip"], "127.0.0.1");
    assert!(
        jwt_line["event"]["duration"].as_u64().unwrap()
            >= jwt_line["portcullis"]["upstream"]["duration"].as_u64().unwrap()
    );
    assert_eq!(jwt_line["trace"]["id"].as_str().unwrap().len(), 32);
    assert!(jwt_line["@timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(line("/keyed/b")["user"]["id"], "acme");
    assert_eq!(line("/keyed/c")["url"]["query"], "key=<redacted>&page=2");
    assert_eq!(line("/open/f")["url"]["query"], "access_token=<redacted>");
    assert_eq!(line("/open/f")["user_agent"]["original"], "probe/1");
    let refused = line("/jwt/g");
    assert_eq!(
        (refused["http"]["response"]["status_code"].as_u64(), &refused["portcullis"]["response_flag"]),
        (Some(401), &json!("UA"))
    );
    assert_eq!(refused["portcullis"]["auth"]["outcome"], "failure");
    // Which provider refused the credential sent, and why, as the metric says.
    assert_eq!(
        (&refused["portcullis"]["auth"]["provider"], &refused["portcullis"]["auth"]["reason"]),
        (&json!("hs"), &json!("invalid"))
    );
    let bare = &line("/jwt/j")["portcullis"]["auth"];
    assert_eq!(
        (&bare["outcome"], &bare["reason"], bare.get("provider")),
        (&json!("failure"), &json!("missing"), None),
        "{bare}"
    );
    assert_eq!(line("/open/h")["http"]["request"]["referrer"], "https://app.test/p?token=<redacted>");
    assert_eq!(line("/open/i")["http"]["request"]["referrer"], "//<redacted>@app.test/p");
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Waits until `hits()` (an upstream's request count) is more than
/// `before` (the client may leave once its request is there).
async fn upstream_hit(hits: impl Fn() -> usize, before: usize) {
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while hits() == before {
        assert!(std::time::Instant::now() < until, "the request never reached the upstream");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The access log's two lines, both of a client that left (499 `DC`),
/// within seconds (not at the upstream's timeout).
async fn two_clients_left(h: &Handle, dir: &Path) -> Vec<Json> {
    let lines = log_lines(h, dir, 2).await;
    assert_eq!(lines.len(), 2, "both lines within seconds, not at the upstream's timeout");
    for l in &lines {
        assert_eq!(
            (&l["http"]["response"]["status_code"], &l["portcullis"]["response_flag"]),
            (&json!(499), &json!("DC")),
            "{l}"
        );
    }
    lines
}

/// An HTTP/1.1 client that sent its whole body and then left while the
/// upstream works is watched for as one without a body is (NGINX does):
/// the upstream request is let go at once, 499 `DC`, and the upstream's
/// `max_requests` place is free again. It was held until the upstream's
/// timeout and logged as the upstream's 504. A request pipelined after a
/// body is still served in its turn.
#[tokio::test]
async fn a_client_that_leaves_after_its_body_frees_the_upstream_request() {
    use crate::support::flaky::{Flaky, Mode};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let up = Flaky::start("svc").await;
    let yaml = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\naccess_log: {{ to: access.log }}\n\
         upstreams:\n  svc: {{ targets: [\"{}\"], timeouts: {{ request: 60s }}, limits: {{ max_requests: 1 }} }}\n\
         routes:\n  - {{ name: p, match: {{ path_prefix: /p }}, upstream: svc }}\n",
        up.url()
    );
    let h = Gateway::start(&load(&yaml, dir.path())).await.unwrap();
    let addr = h.addr("gw").unwrap();
    up.set(Mode::Hang);
    for body in ["Content-Length: 2\r\n\r\nhi", "Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"] {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let before = up.hits();
        s.write_all(format!("POST /p/upload HTTP/1.1\r\nHost: t\r\n{body}").as_bytes()).await.unwrap();
        upstream_hit(|| up.hits(), before).await;
        drop(s);
    }
    for l in &two_clients_left(&h, dir.path()).await {
        assert_eq!(l["portcullis"]["upstream"]["tries"][0]["error"], "cancelled", "{l}");
    }
    // The place is free: the next request is not refused as over `max_requests`.
    up.set(Mode::Ok);
    assert_eq!(get(&url(&h, "/p/next"), &[]).await.status, 200);
    // A request pipelined right after a body is answered in its turn.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"POST /p/first HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhiGET /p/second HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut all)).await.expect("answered").unwrap();
    let all = String::from_utf8_lossy(&all);
    assert_eq!(all.matches("HTTP/1.1 200").count(), 2, "{all}");
    assert!(all.find("/p/first").unwrap() < all.find("/p/second").unwrap(), "{all}");
}

/// A client that pipelines more than a head may hold behind its request
/// and then closes is seen leaving too: the watcher stops reading at the
/// head limit, and the end of file waits behind the unread bytes (NGINX
/// sees it by `EPOLLRDHUP`). It held the upstream request until the
/// upstream's timeout, logged as the upstream's 504.
#[tokio::test]
async fn a_client_that_leaves_behind_a_pipeline_past_the_head_limit_is_seen_leaving() {
    use crate::support::flaky::{Flaky, Mode};
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let up = Flaky::start("svc").await;
    let yaml = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\naccess_log: {{ to: access.log }}\n\
         upstreams:\n  svc: {{ targets: [\"{}\"], timeouts: {{ request: 60s }} }}\n\
         routes:\n  - {{ name: p, match: {{ path_prefix: /p }}, upstream: svc }}\n",
        up.url()
    );
    let h = Gateway::start(&load(&yaml, dir.path())).await.unwrap();
    up.set(Mode::Hang);
    for first in
        ["GET /p/a HTTP/1.1\r\nHost: t\r\n\r\n", "POST /p/b HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi"]
    {
        let mut s = tokio::net::TcpStream::connect(h.addr("gw").unwrap()).await.unwrap();
        let before = up.hits();
        s.write_all(first.as_bytes()).await.unwrap();
        upstream_hit(|| up.hits(), before).await;
        // Three times the 32 KiB head limit: more than the watcher reads.
        let next = format!("GET /p/next HTTP/1.1\r\nHost: t\r\nX-Pad: {}\r\n\r\n", "x".repeat(96 << 10));
        s.write_all(next.as_bytes()).await.unwrap();
        drop(s);
    }
    two_clients_left(&h, dir.path()).await;
}

/// An HTTP/2 client that resets its stream in the middle of its body
/// (`RST_STREAM`, `NO_ERROR` or `CANCEL`) left, as an HTTP/1.1 client that
/// closes: 499 `DC` with the bytes that came, on a proxied route and on
/// `echo`. hyper reads a `NO_ERROR` reset as the body's end: the upstream
/// got a body short of its length, and the gateway answered 502, logged
/// the upstream as closed and ejected a healthy target.
/// A gateway logging to `access.log` in `dir`, with four routes that take
/// a body: `/p` proxied to `up` (it answers once the whole body has come),
/// `/count` to `up2` over HTTP/2 (hyper's client; it reads the whole
/// body), `/val` validating it, `/echo`. One failure ejects a target.
struct BodyRoutes {
    dir: tempfile::TempDir,
    up: crate::support::flaky::Flaky,
    up2: Upstream,
    h: portcullis::Handle,
}

/// An HTTP/2 POST's fields for `path` declaring `length` body bytes.
fn post_fields<'a>(path: &'a str, length: &'a str) -> [(&'a [u8], &'a [u8]); 5] {
    [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":authority", b"x"),
        (b":path", path.as_bytes()),
        (b"content-length", length.as_bytes()),
    ]
}

async fn body_routes() -> BodyRoutes {
    let dir = tempfile::tempdir().unwrap();
    let up = crate::support::flaky::Flaky::start("svc").await;
    let up2 = Upstream::start("svc2").await;
    let yaml = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\naccess_log: {{ to: access.log }}\n\
         upstreams:\n  svc: {{ targets: [\"{}\"], health: {{ passive: {{ consecutive_failures: 1 }} }} }}\n\
         \x20 svc2: {{ targets: [\"{}\"], protocol: http2, health: {{ passive: {{ consecutive_failures: 1 }} }} }}\n\
         routes:\n  - {{ name: p, match: {{ path_prefix: /p }}, upstream: svc }}\n\
         \x20 - {{ name: count, match: {{ path: /count }}, upstream: svc2 }}\n\
         \x20 - {{ name: val, match: {{ path: /val }}, upstream: svc, validate: {{ body: {{ schema: {{ type: object }} }} }} }}\n\
         \x20 - {{ name: echo, match: {{ path: /echo }}, echo: {{}} }}\n",
        up.url(),
        up2.url()
    );
    let h = Gateway::start(&load(&yaml, dir.path())).await.unwrap();
    BodyRoutes { dir, up, up2, h }
}

#[tokio::test]
async fn an_http2_client_resetting_mid_body_left_and_the_upstream_is_not_blamed() {
    use crate::support::h2raw::H2Conn;
    let BodyRoutes { dir, up, up2, h } = body_routes().await;
    let paths = ["/p/a", "/count", "/val", "/echo"];
    let mut sent = 0;
    // RST_STREAM NO_ERROR, CANCEL; GOAWAY then the connection closed; the connection closed.
    for ending in ["rst0", "rst8", "goaway", "close"] {
        for path in paths {
            let mut conn = H2Conn::connect(h.addr("gw").unwrap()).await;
            let fields = post_fields(path, "100");
            let before = (up.hits(), up2.hits.load(std::sync::atomic::Ordering::SeqCst));
            conn.headers(1, &fields, false).await;
            conn.data(1, &[b'x'; 10], false).await;
            if path.starts_with("/p") || path == "/count" {
                let until = Instant::now() + Duration::from_secs(5);
                while (up.hits(), up2.hits.load(std::sync::atomic::Ordering::SeqCst)) == before {
                    assert!(Instant::now() < until, "the request never reached the upstream");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            match ending {
                "rst0" => conn.reset(1, 0).await,
                "rst8" => conn.reset(1, 8).await,
                "goaway" => conn.goaway(0).await,
                _ => {}
            }
            drop(conn);
            sent += 1;
            // One at a time: the lines come in order.
            assert_eq!(log_lines(&h, dir.path(), sent).await.len(), sent, "{ending} {path}");
        }
    }
    let lines = log_lines(&h, dir.path(), sent).await;
    for (i, l) in lines.iter().enumerate() {
        let seen = (
            &l["http"]["response"]["status_code"],
            &l["portcullis"]["response_flag"],
            &l["http"]["request"]["body"]["bytes"],
        );
        let case = format!("{} {}", ["rst0", "rst8", "goaway", "close"][i / paths.len()], paths[i % paths.len()]);
        assert_eq!(seen, (&json!(499), &json!("DC"), &json!(10)), "{case}: {l}");
        if l["url"]["path"] == "/p/a" || l["url"]["path"] == "/count" {
            assert_eq!(l["portcullis"]["upstream"]["tries"][0]["error"], "cancelled", "{case}: {l}");
        }
        assert!(l["portcullis"]["validation"].is_null(), "no verdict on a body that never came: {case}: {l}");
    }
    // The same over HTTP/1.1 on the validated route, which reads the body whole.
    {
        use tokio::io::AsyncWriteExt;
        let mut s = tokio::net::TcpStream::connect(h.addr("gw").unwrap()).await.unwrap();
        s.write_all(b"POST /val HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{\"a\":\"1234\"").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lines = log_lines(&h, dir.path(), sent + 1).await;
    let l = &lines[sent];
    let seen = (
        &l["http"]["response"]["status_code"],
        &l["portcullis"]["response_flag"],
        &l["http"]["request"]["body"]["bytes"],
    );
    assert_eq!(seen, (&json!(499), &json!("DC"), &json!(11)), "{l}");
    assert!(l["portcullis"]["validation"].is_null(), "{l}");
    // No target was ejected (one failure would have done it).
    assert_eq!(get(&url(&h, "/p/after"), &[]).await.status, 200);
    assert_eq!(get(&url(&h, "/count"), &[]).await.status, 200);
}

/// An HTTP/2 body that ends (END_STREAM) short of its `content-length`,
/// or goes past it, is malformed (RFC 9113 §8.1.1): the stream is reset
/// with `PROTOCOL_ERROR`. Where the gateway answered the request itself (a
/// validated route, `echo`) the log says what the client did, 400 `IV`,
/// though the answer could not be written to the reset stream (it said
/// `DC`); no target is blamed.
#[tokio::test]
async fn an_http2_body_at_odds_with_its_length_is_logged_as_invalid() {
    use crate::support::h2raw::{H2Conn, Outcome};
    let BodyRoutes { dir, up: _up, up2: _up2, h } = body_routes().await;
    let paths = ["/p/a", "/count", "/val", "/echo"];
    let mut sent = 0;
    for (length, body) in [("100", &b"{}        "[..]), ("4", &b"{}        "[..])] {
        for path in paths {
            let mut conn = H2Conn::connect(h.addr("gw").unwrap()).await;
            let fields = post_fields(path, length);
            conn.headers(1, &fields, false).await;
            conn.data(1, body, true).await;
            let outcome = conn.outcome(1).await;
            assert!(matches!(outcome, Outcome::Reset(1) | Outcome::Status(400)), "{length} {path}: {outcome:?}");
            drop(conn);
            sent += 1;
            assert_eq!(log_lines(&h, dir.path(), sent).await.len(), sent, "{length} {path}");
        }
    }
    let lines = log_lines(&h, dir.path(), sent).await;
    for (i, l) in lines.iter().enumerate() {
        let case = format!("{} {}", ["short", "long"][i / paths.len()], paths[i % paths.len()]);
        let seen = (&l["http"]["response"]["status_code"], &l["portcullis"]["response_flag"]);
        if l["url"]["path"] == "/val" || l["url"]["path"] == "/echo" {
            assert_eq!(seen, (&json!(400), &json!("IV")), "{case}: {l}");
        } else {
            // hyper drops a proxied request's work when its stream is
            // reset, before the body's error is read: logged as the
            // client's leaving (noted in the docs), never the upstream's failure.
            assert!(seen == (&json!(400), &json!("IV")) || seen == (&json!(499), &json!("DC")), "{case}: {l}");
        }
    }
    // No target was ejected (one failure would have done it).
    assert_eq!(get(&url(&h, "/p/after"), &[]).await.status, 200);
    assert_eq!(get(&url(&h, "/count"), &[]).await.status, 200);
}

#[tokio::test]
async fn response_flags_say_why_there_was_no_upstream_answer() {
    let dir = tempfile::tempdir().unwrap();
    // Connecting to it hangs: no connection within `timeouts.connect` is `UF` too (504).
    let full = crate::support::full_accept_queue();
    let up = Upstream::start("svc").await;
    let body = format!(
        "upstreams:\n  svc: {{ targets: [\"{}\"], timeouts: {{ request: 300ms }} }}\n  gone: {{ targets: [\"http://{}\"] }}\n\
         \x20 full: {{ targets: [\"http://{}\"], timeouts: {{ connect: 200ms }} }}\n\
         routes:\n\
         \x20 - {{ name: ok, match: {{ path: /ok }}, upstream: svc }}\n\
         \x20 - {{ name: hang, match: {{ path: /hang }}, upstream: svc }}\n\
         \x20 - {{ name: hold, match: {{ path: /hold }}, upstream: svc }}\n\
         \x20 - {{ name: count, match: {{ path: /count }}, upstream: svc }}\n\
         \x20 - {{ name: gone, match: {{ path_prefix: /gone }}, upstream: gone }}\n\
         \x20 - {{ name: full, match: {{ path_prefix: /full }}, upstream: full }}\n\
         \x20 - {{ name: limited, match: {{ path_prefix: /limited }}, upstream: svc, rate_limit: [ {{ key: ip, rate: 1/m }} ] }}\n\
         \x20 - {{ name: local, match: {{ path: /local }}, static: {{ status: 200, body: hi }} }}\n\
         \x20 - {{ name: private, match: {{ path_prefix: /private }}, upstream: svc, ip: {{ allow: [10.0.0.0/8] }} }}\n\
         \x20 - {{ name: dry, match: {{ path: /dry }}, upstream: svc, validate: {{ mode: report, body: {{ schema: {{ required: [a] }} }} }} }}\n\
         \x20 - {{ name: echo, match: {{ path: /echo }}, echo: {{}}, max_body_size: 1KiB }}\n\
         \x20 - {{ name: cors, match: {{ path: /cors }}, upstream: svc, cors: {{ allow_origins: [ \"https://app.test\" ] }} }}\n",
        up.url(),
        closed_port().await,
        full.addr
    );
    let h = start(&body, dir.path()).await;
    // A body too large for `echo`: invalid input however it is framed.
    let chunked = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n{}\r\n0\r\n\r\n",
        "x".repeat(2048)
    );
    assert_eq!(crate::support::raw_status(&crate::support::raw(h.addr("gw").unwrap(), &chunked).await), 413);
    // CORS preflights, granted and refused: the gateway's answers, for the route.
    for (origin, status) in [("https://app.test", 204), ("https://evil.test", 403)] {
        let preflight = Request::options(url(&h, "/cors"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .body(Full::new(Bytes::new()));
        assert_eq!(send(&http1_client(), preflight.unwrap()).await.status, status, "{origin}");
    }
    // No route: the body is never read; its declared length is logged.
    let lost = Request::post(url(&h, "/nowhere/else")).body(Full::new(Bytes::from("123456789")));
    assert_eq!(send(&http1_client(), lost.unwrap()).await.status, 404);
    // Report mode: what would be refused goes on, and the log says it failed.
    let dry =
        Request::post(url(&h, "/dry")).header("content-type", "application/json").body(Full::new(Bytes::from("{}")));
    assert_eq!(send(&http1_client(), dry.unwrap()).await.status, 200);
    let expect: [(&str, u16, &str); 10] = [
        ("/ok", 200, "-"),
        ("/nothing", 404, "NR"),
        ("/gone", 502, "UF"),
        ("/full", 504, "UF"),
        ("/hang", 504, "UT"),
        ("/limited", 200, "-"),
        ("/limited", 429, "RL"),
        ("/local", 200, "LR"),
        ("/private", 403, "UZ"),
        ("/ok/a%00b", 400, "IV"),
    ];
    for (path, status, _) in expect {
        assert_eq!(get(&url(&h, path), &[]).await.status, status, "{path}");
    }
    // A client that leaves while the upstream is still working.
    let addr = h.addr("gw").unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let before = up.hits();
        s.write_all(b"GET /hold HTTP/1.1\r\nHost: t\r\n\r\n").await.unwrap();
        upstream_hit(|| up.hits(), before).await;
    }
    // A client that leaves in the middle of its body: it went away, it did
    // not send anything wrong; the bytes logged are the ones that came.
    {
        use tokio::io::AsyncWriteExt;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let before = up.hits();
        s.write_all(b"POST /count HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n").await.unwrap();
        s.write_all(&[b'x'; 100]).await.unwrap();
        upstream_hit(|| up.hits(), before).await;
    }
    // The same on a route the gateway answers itself (`echo` reads the body).
    {
        use tokio::io::AsyncWriteExt;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 500\r\n\r\n").await.unwrap();
        s.write_all(&[b'y'; 40]).await.unwrap();
    }
    let lines = log_lines(&h, dir.path(), expect.len() + 8).await;
    let lost = lines.iter().find(|l| l["url"]["path"] == "/nowhere/else").expect("the unrouted POST");
    let echo = lines.iter().find(|l| l["url"]["path"] == "/echo").expect("the chunked POST to echo");
    assert_eq!(
        (&echo["http"]["response"]["status_code"], &echo["portcullis"]["response_flag"]),
        (&json!(413), &json!("IV"))
    );
    let preflights: Vec<(&Json, &Json, &Json)> = lines
        .iter()
        .filter(|l| l["url"]["path"] == "/cors")
        .map(|l| (&l["http"]["response"]["status_code"], &l["portcullis"]["response_flag"], &l["portcullis"]["route"]))
        .collect();
    assert_eq!(preflights, [(&json!(204), &json!("LR"), &json!("cors")), (&json!(403), &json!("UZ"), &json!("cors"))]);
    assert_eq!(lost["http"]["request"]["body"]["bytes"], 9, "{lost}");
    let dry = lines.iter().find(|l| l["url"]["path"] == "/dry").expect("the report-mode line");
    assert_eq!(dry["portcullis"]["validation"]["outcome"], "failed", "{dry}");
    assert_eq!(
        (dry["portcullis"]["response_flag"].as_str(), dry["http"]["response"]["status_code"].as_u64()),
        (Some("-"), Some(200))
    );
    let left = lines.iter().find(|l| l["url"]["path"] == "/count").expect("the line of the body that broke off");
    assert_eq!(left["http"]["response"]["status_code"], 499, "{left}");
    assert_eq!(left["portcullis"]["response_flag"], "DC", "{left}");
    assert_eq!(left["http"]["request"]["body"]["bytes"], 100, "{left}");
    // Nothing reached the client that left: no response bytes either.
    assert_eq!(left["http"]["response"]["body"]["bytes"], 0, "{left}");
    let echo_left = lines
        .iter()
        .find(|l| l["url"]["path"] == "/echo" && l["http"]["response"]["status_code"] == 499)
        .expect("the echo line of the body that broke off");
    assert_eq!(
        (&echo_left["http"]["request"]["body"]["bytes"], &echo_left["http"]["response"]["body"]["bytes"]),
        (&json!(40), &json!(0)),
        "{echo_left}"
    );
    // The upstream had the head and part of the body: the try is there, cancelled.
    assert_eq!(left["portcullis"]["upstream"]["tries"][0]["error"], "cancelled", "{left}");
    // No connection in time: the try failed to connect, as a refused one did.
    for path in ["/full", "/gone"] {
        let line = lines.iter().find(|l| l["url"]["path"] == path).unwrap();
        assert_eq!(line["portcullis"]["upstream"]["tries"][0]["error"], "connect", "{line}");
    }
    let got: Vec<(String, u64, String)> = lines
        .iter()
        .map(|l| {
            (
                l["url"]["path"].as_str().unwrap().to_string(),
                l["http"]["response"]["status_code"].as_u64().unwrap(),
                l["portcullis"]["response_flag"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (path, status, flag) in expect {
        assert!(
            got.iter().any(|(p, s, f)| p == path && *s == u64::from(status) && f == flag),
            "{path} {status} {flag} in {got:?}"
        );
    }
    assert!(got.iter().any(|(p, s, f)| p == "/hold" && *s == 499 && f == "DC"), "client left: {got:?}");
    // It left while its try was in flight: where the request went is still logged.
    let hold = lines.iter().find(|l| l["url"]["path"] == "/hold").unwrap();
    let upstream = &hold["portcullis"]["upstream"];
    assert_eq!(upstream["name"], "svc", "{hold}");
    assert_eq!(upstream["target"], up.url().trim_start_matches("http://"), "{hold}");
    assert_eq!(upstream["tries"][0]["error"], "cancelled", "{hold}");
    assert!(upstream["tries"][0]["duration"].as_u64().unwrap() > 0, "{hold}");
    up.release();
}

#[tokio::test]
async fn admin_needs_its_token_and_stays_off_the_public_listener() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("noop"), "").unwrap();
    let yaml = "listeners:\n  - { name: gw, bind: \"127.0.0.1:0\" }\n\
                admin: { bind: \"127.0.0.1:0\", token: admin-token-0123456789 }\n\
                auth:\n  hs: { jwt: { algorithms: [HS256], secret: jwt-secret-value-long-enough-for-hs256 } }\n\
                \x20 kq: { api_key: { query: customq } }\n\
                rate_limit_store: { redis: { url: \"redis://:hunter2@127.0.0.1:1/0\" } }\n\
                upstreams:\n  probed: { targets: [ \"http://127.0.0.1:1\" ], health: { active: { path: \"/h?customq=probe-key-0123\" } } }\n\
                routes:\n  - { name: r, match: { path: /r }, static: { status: 200 }, authenticate: [hs] }\n\
                \x20 - { name: k, match: { path: /k }, upstream: probed, authenticate: [kq] }\n";
    let h = Gateway::start(&load(yaml, dir.path())).await.expect("starts");
    assert_eq!(get(&admin(&h, "/healthz"), &[]).await.status, 200, "liveness needs no token");
    for path in ["/metrics", "/status", "/config", "/readyz"] {
        let r = get(&admin(&h, path), &[]).await;
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"admin\""));
        assert_eq!((r.header("x-frame-options"), r.header("referrer-policy")), (Some("DENY"), Some("no-referrer")));
        // A token that is not the one: said so (RFC 6750 §3.1).
        let wrong = get(&admin(&h, path), &[("authorization", "Bearer wrong-token-0123456789")]).await;
        assert_eq!(wrong.status, 401);
        assert_eq!(wrong.header("www-authenticate"), Some("Bearer realm=\"admin\", error=\"invalid_token\""));
        assert_eq!(get(&admin(&h, path), &[("authorization", "Bearer admin-token-0123456789")]).await.status, 200);
        // Two credentials, whatever their order: one is checked, so neither is taken.
        for pair in [["Bearer admin-token-0123456789", "Bearer x"], ["Bearer x", "Bearer admin-token-0123456789"]] {
            let two = [("authorization", pair[0]), ("authorization", pair[1])];
            assert_eq!(get(&admin(&h, path), &two).await.status, 401, "{path} {pair:?}");
        }
    }
    let auth = [("authorization", "Bearer admin-token-0123456789")];
    let config = get(&admin(&h, "/config"), &auth).await.text();
    // `customq` is a provider's own query parameter: hidden as the access log hides it.
    for secret in ["admin-token-0123456789", "jwt-secret-value", "hunter2", "probe-key-0123"] {
        assert!(!config.contains(secret), "{secret} in /config: {config}");
    }
    // The effective config: what was written, and every default beside it.
    let doc: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(doc["routes"][0]["name"], "r");
    assert_eq!(doc["auth"]["hs"]["jwt"]["secret"], "<redacted>");
    assert_eq!(doc["admin"]["token"], "<redacted>");
    assert_eq!(doc["shutdown_timeout"], "30s", "a default not written in the file");
    assert_eq!(doc["listeners"][0]["limits"]["max_headers"], 100);
    let status = get(&admin(&h, "/status"), &auth).await.json();
    assert_eq!(status["routes"][0]["name"], "r");
    assert_eq!(status["listeners"][0]["name"], "gw");
    assert_eq!(get(&url(&h, "/metrics"), &[]).await.status, 404, "the public listener has no admin paths");
    // The scheme in any case, more than one space (RFC 9110 §11); the token
    // before the method's check (a GET to the POST-only /reload).
    let lower = [("authorization", "bearer   admin-token-0123456789")];
    assert_eq!(get(&admin(&h, "/status"), &lower).await.status, 200);
    assert_eq!(get(&admin(&h, "/reload"), &[]).await.status, 401);
    assert_eq!(get(&admin(&h, "/reload"), &auth).await.status, 405);
    // With a token, a page reached by DNS rebinding has nothing to send.
    let rebound = [auth[0], ("host", "attacker.example")];
    assert_eq!(get(&admin(&h, "/status"), &rebound).await.status, 200);

    // A non-loopback admin bind needs a token.
    let bad = "listeners:\n  - { name: gw, bind: \"127.0.0.1:0\" }\nadmin: { bind: \"0.0.0.0:0\" }\n";
    let errors = portcullis::check(&load(bad, dir.path())).unwrap_err().to_string();
    assert!(errors.contains("admin.bind") && errors.contains("admin.token"), "{errors}");
    // A token no `Authorization` line can carry (trimmed whitespace).
    let blank = "admin: { bind: \"127.0.0.1:0\", token: \"                \" }\n";
    let errors = portcullis::check(&load(blank, dir.path())).unwrap_err().to_string();
    assert!(errors.contains("admin.token") && errors.contains("without spaces"), "{errors}");
}

/// A gateway with an admin API on loopback and no token.
async fn tokenless_admin() -> (Handle, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "listeners:\n  - { name: gw, bind: \"127.0.0.1:0\" }\nadmin: { bind: \"127.0.0.1:0\" }\n\
                routes:\n  - { name: r, match: { path: /r }, static: { status: 200 } }\n";
    (Gateway::start(&load(yaml, dir.path())).await.expect("starts"), dir)
}

/// Without a token, loopback alone guards the admin API, and a web page can
/// reach loopback through DNS rebinding: its requests name its own domain.
#[tokio::test]
async fn a_tokenless_admin_answers_only_to_addresses_and_localhost() {
    let (h, _dir) = tokenless_admin().await;
    let port = h.admin_addr().unwrap().port();
    for path in ["/config", "/status", "/metrics", "/readyz"] {
        let rebound = get(&admin(&h, path), &[("host", &format!("attacker.example:{port}"))]).await;
        assert_eq!(rebound.status, 403, "{path}: {}", rebound.text());
        assert_eq!(rebound.header("content-type"), Some("application/problem+json"));
        for host in [
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("localhost.:{port}"),
            format!("[::1]:{port}"),
            "LOCALHOST".into(),
        ] {
            assert_eq!(get(&admin(&h, path), &[("host", &host)]).await.status, 200, "{path} {host}");
        }
    }
    let rebound = get(&admin(&h, "/status"), &[("host", &format!("localhost.attacker.example:{port}"))]).await;
    assert_eq!(rebound.status, 403);
    let malformed = get(&admin(&h, "/status"), &[("host", &format!("localhost..:{port}"))]).await;
    assert_eq!(malformed.status, 400, "{}", malformed.text());
    let rebound = get(&admin(&h, "/healthz"), &[("host", "attacker.example")]).await;
    assert_eq!(rebound.status, 200, "liveness tells nothing");
}

/// The `Host` the tokenless guard reads must be the only one, and a name
/// (RFC 9112 §3.2): with two, the first was judged (a local one, then the
/// rebound page's own name, passed); an HTTP/1.1 request without one, and
/// a port that is no number (`localhost:abc`), passed too. All are 400.
#[tokio::test]
async fn the_admin_api_refuses_a_host_it_cannot_read_as_one_name() {
    let (h, _dir) = tokenless_admin().await;
    let addr = h.admin_addr().unwrap();
    let ask = async |version: &str, hosts: &str| {
        let request = format!("GET /status {version}\r\n{hosts}Connection: close\r\n\r\n");
        crate::support::raw(addr, &request).await
    };
    for hosts in [
        "Host: 127.0.0.1\r\nHost: evil.com\r\n",
        "Host: evil.com\r\nHost: 127.0.0.1\r\n",
        "",
        "Host: localhost:abc\r\n",
        "Host: 127.0.0.1:\r\n",
        "Host: localhost, evil.com\r\n",
    ] {
        let answer = ask("HTTP/1.1", hosts).await;
        assert_eq!(crate::support::raw_status(&answer), 400, "{hosts:?}: {answer}");
        assert!(answer.contains("application/problem+json"), "{hosts:?}: {answer}");
    }
    let twice = ask("HTTP/1.1", "Host: localhost\r\nHost: localhost\r\n").await;
    assert!(twice.contains("more than one Host header"), "{twice}");
    let twice_on_1_0 = ask("HTTP/1.0", "Host: 127.0.0.1\r\nHost: evil.com\r\n").await;
    assert_eq!(crate::support::raw_status(&twice_on_1_0), 400, "{twice_on_1_0}");
    // What stays as it was: HTTP/1.0 may leave `Host` out; a foreign name is 403.
    assert_eq!(crate::support::raw_status(&ask("HTTP/1.0", "").await), 200);
    assert_eq!(crate::support::raw_status(&ask("HTTP/1.1", "Host: localhost:9901\r\n").await), 200);
    assert_eq!(crate::support::raw_status(&ask("HTTP/1.1", "Host: [::1]\r\n").await), 200);
    assert_eq!(crate::support::raw_status(&ask("HTTP/1.1", "Host: evil.com\r\n").await), 403);
}

/// Prometheus asks for OpenMetrics with q-values; a client may prefer the
/// text format or refuse OpenMetrics (`q=0`), in any letter case.
#[tokio::test]
async fn metrics_format_follows_accept_qualities() {
    let (h, _dir) = tokenless_admin().await;
    let prometheus = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
    for (accept, openmetrics) in [
        (prometheus, true),
        ("APPLICATION/OPENMETRICS-TEXT", true),
        ("application/openmetrics-text;q=0", false),
        ("application/openmetrics-text;q=0.5,text/plain;version=0.0.4;q=1", false),
        ("text/plain", false),
        ("*/*", false),
        ("", false),
    ] {
        let r = get(&admin(&h, "/metrics"), &[("accept", accept)]).await;
        let content_type = r.header("content-type").unwrap().to_string();
        assert_eq!(content_type.starts_with("application/openmetrics-text"), openmetrics, "{accept}: {content_type}");
        assert_eq!(r.text().ends_with("# EOF\n"), openmetrics, "{accept}");
    }
}

#[tokio::test]
async fn readyz_turns_503_while_draining() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start("svc").await;
    let body = format!(
        "shutdown_timeout: 5s\nupstreams:\n  svc: {{ targets: [\"{}\"] }}\nroutes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: svc }}\n",
        up.url()
    );
    let h = start(&body, dir.path()).await;
    let ready = admin(&h, "/readyz");
    assert_eq!(get(&ready, &[]).await.status, 200);
    // An in-flight request keeps the drain going.
    let slow = tokio::spawn(get(url(&h, "/hold").leak(), &[]));
    while up.hits() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stopping = tokio::spawn(h.shutdown());
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut seen = 0;
    while Instant::now() < deadline {
        seen = get(&ready, &[]).await.status.as_u16();
        if seen == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seen, 503, "/readyz says the gateway is draining");
    up.release();
    assert_eq!(slow.await.unwrap().status, 200, "the in-flight request finished");
    stopping.await.unwrap();
}

/// With `shutdown_delay`, a shutdown first answers 503 on `/readyz` while
/// the listeners still accept and serve (load balancers see the gateway
/// leave before its ports close: they closed at once); then it drains.
#[tokio::test]
async fn shutdown_delay_keeps_serving_while_readyz_says_draining() {
    let dir = tempfile::tempdir().unwrap();
    let body = "shutdown_delay: 2s\nroutes:\n  - { name: r, match: { path_prefix: / }, static: { body: served } }\n";
    let h = start(body, dir.path()).await;
    let (ready, public) = (admin(&h, "/readyz"), url(&h, "/x"));
    let addr = h.addr("gw").unwrap();
    let started = Instant::now();
    let stopping = tokio::spawn(h.shutdown());
    let mut seen = 0;
    while seen != 503 && started.elapsed() < Duration::from_secs(1) {
        seen = get(&ready, &[]).await.status.as_u16();
    }
    assert_eq!(seen, 503, "/readyz says the gateway is leaving");
    // Within the delay, on a new connection: still served.
    assert_eq!(get(&public, &[]).await.text(), "served");
    assert!(started.elapsed() < Duration::from_secs(2), "checked within the delay");
    tokio::time::timeout(Duration::from_secs(10), stopping).await.expect("the shutdown ends").unwrap();
    assert!(started.elapsed() >= Duration::from_secs(2), "the delay was kept");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "the port is closed after it");
}

#[tokio::test]
async fn trace_context_is_continued_from_trusted_peers_only() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start("svc").await;
    let routes = format!(
        "upstreams:\n  svc: {{ targets: [\"{}\"] }}\nroutes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: svc }}\n",
        up.url()
    );
    let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let sent = [("traceparent", parent), ("tracestate", "vendor=1")];

    let trusted = start(&format!("trusted_proxies: [127.0.0.1]\n{routes}"), dir.path()).await;
    let seen = get(&url(&trusted, "/a"), &sent).await.json();
    let tp = seen["headers"]["traceparent"].as_str().unwrap();
    // No exporter: the gateway has no span to name, the caller's stays the parent.
    assert_eq!(tp, parent);
    assert_eq!(seen["headers"]["tracestate"], "vendor=1");
    let logged = log_lines(&trusted, dir.path(), 1).await;
    assert_eq!(logged[0]["trace"]["id"], "0af7651916cd43dd8448eb211c80319c");
    // A trusted caller's invalid traceparent starts a new trace: its
    // tracestate belongs to another one and is not passed on (W3C §3.3.1).
    for invalid in [
        "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
    ] {
        let seen = get(&url(&trusted, "/c"), &[("traceparent", invalid), ("tracestate", "vendor=1")]).await.json();
        let tp = seen["headers"]["traceparent"].as_str().unwrap();
        assert!(!tp.to_ascii_lowercase().contains("0af7651916cd43dd8448eb211c80319c"), "{invalid}: {tp}");
        assert!(seen["headers"]["tracestate"].is_null(), "{invalid}: {seen}");
    }
    let seen = get(&url(&trusted, "/d"), &[("tracestate", "vendor=1")]).await.json();
    assert!(seen["headers"]["tracestate"].is_null(), "tracestate without traceparent: {seen}");
    // A request refused before routing (two framings) continues it too, and
    // is logged with the client the proxy names (it started a new trace).
    let refused = format!(
        "POST /e HTTP/1.1\r\nHost: t\r\ntraceparent: {parent}\r\nX-Forwarded-For: 203.0.113.7\r\n\
         Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    );
    let answer = crate::support::raw(trusted.addr("gw").unwrap(), &refused).await;
    assert_eq!(crate::support::raw_status(&answer), 400, "{answer}");
    let logged = log_lines(&trusted, dir.path(), 6).await;
    assert_eq!(logged[5]["trace"]["id"], "0af7651916cd43dd8448eb211c80319c", "{}", logged[5]);
    assert_eq!(logged[5]["client"]["ip"], "203.0.113.7");

    let dir2 = tempfile::tempdir().unwrap();
    let untrusted = start(&routes, dir2.path()).await;
    let seen = get(&url(&untrusted, "/b"), &sent).await.json();
    let tp = seen["headers"]["traceparent"].as_str().unwrap();
    assert!(!tp.contains("0af7651916cd43dd8448eb211c80319c"), "an untrusted caller's trace is not continued: {tp}");
    // A new trace, sampled: the services behind record as they would without the gateway.
    assert!(tp.ends_with("-03"), "{tp}");
    assert!(seen["headers"]["tracestate"].is_null(), "nor its tracestate");
    let logged = log_lines(&untrusted, dir2.path(), 1).await;
    assert_eq!(logged[0]["trace"]["id"].as_str(), tp.get(3..35));
}

#[cfg(feature = "otlp")]
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(feature = "otlp")]
#[tokio::test]
async fn sampled_requests_are_exported_as_spans_over_otlp() {
    use crate::support::otlp::Receiver;
    // (dev-dependencies: the receiver decodes with the same message types.)
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start("svc").await;
    let receiver = Receiver::start().await;
    let body = format!(
        "trusted_proxies: [127.0.0.1]\n\
         tracing:\n  otlp: {{ endpoint: \"{}\", sample: 0.0, headers: {{ x-api-key: collector-key }} }}\n\
         upstreams:\n  svc: {{ targets: [\"{}\"] }}\n  gone: {{ targets: [\"http://{}\"] }}\n\
         routes:\n  - {{ name: r, match: {{ path_prefix: /r }}, upstream: svc }}\n  - {{ name: g, match: {{ path_prefix: /g }}, upstream: gone }}\n",
        receiver.url(),
        up.url(),
        closed_port().await
    );
    let h = start(&body, dir.path()).await;
    // Sample 0: a new trace is not exported; a sampled parent's is, and so is its 5xx.
    get(&url(&h, "/r/unsampled"), &[]).await;
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let seen = get(&url(&h, "/r/a?page=2&token=T0KEN"), &[("traceparent", parent), ("user-agent", "probe/2")]).await;
    let seen = seen.json();
    get(&url(&h, "/g/b"), &[("traceparent", "00-5bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]).await;
    let spans = receiver.wait_for(2).await;
    assert_eq!(spans.len(), 2, "only the sampled requests: {spans:?}");
    let ok = spans.iter().find(|s| hex(&s.trace_id) == "4bf92f3577b34da6a3ce929d0e0e4736").expect("the span of /r/a");
    assert_eq!(ok.name, "GET r");
    assert_eq!(hex(&ok.parent_span_id), "00f067aa0ba902b7", "the caller's span is the parent");
    let upstream_parent = seen["headers"]["traceparent"].as_str().unwrap();
    assert_eq!(upstream_parent.get(36..52), Some(hex(&ok.span_id).as_str()), "the upstream's parent is this span");
    assert_eq!(ok.kind, 2, "SERVER");
    assert!(ok.end_time_unix_nano > ok.start_time_unix_nano);
    let attr = |s: &opentelemetry_proto::tonic::trace::v1::Span, key: &str| {
        s.attributes.iter().find(|a| a.key == key).and_then(|a| a.value.clone()).and_then(|v| v.value)
    };
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
    assert_eq!(attr(ok, "http.route"), Some(V::StringValue("r".into())));
    assert_eq!(attr(ok, "http.response.status_code"), Some(V::IntValue(200)));
    assert_eq!(ok.status.as_ref().map(|s| s.code), Some(0));
    // The HTTP server span's attributes (semantic conventions).
    let port = h.addr("gw").unwrap().port();
    for (key, value) in [
        ("url.scheme", V::StringValue("http".into())),
        ("url.path", V::StringValue("/r/a".into())),
        ("url.query", V::StringValue("page=2&token=<redacted>".into())),
        ("network.protocol.version", V::StringValue("1.1".into())),
        ("server.address", V::StringValue("127.0.0.1".into())),
        ("server.port", V::IntValue(i64::from(port))),
        ("user_agent.original", V::StringValue("probe/2".into())),
        ("client.address", V::StringValue("127.0.0.1".into())),
    ] {
        assert_eq!(attr(ok, key), Some(value), "{key}");
    }
    assert_eq!(attr(ok, "error.type"), None);
    let failed = spans.iter().find(|s| s.name == "GET g").expect("the span of /g/b");
    assert_eq!(attr(failed, "http.response.status_code"), Some(V::IntValue(502)));
    assert_eq!(failed.status.as_ref().map(|s| s.code), Some(2), "5xx is an error");
    assert_eq!(attr(failed, "error.type"), Some(V::StringValue("502".into())));
    assert!(receiver.headers.lock().unwrap().iter().any(|l| l == "x-api-key: collector-key"));
    assert!(receiver.headers.lock().unwrap().iter().any(|l| l == "content-type: application/x-protobuf"));
    // A method of the client's own: span names stay bounded (semantic
    // conventions: `_OTHER`, named `HTTP`, the original as an attribute).
    let odd = Request::builder()
        .method("XHJPZSC")
        .uri(url(&h, "/r/odd"))
        .header("traceparent", "00-6bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .body(Full::default())
        .unwrap();
    send(&http1_client(), odd).await;
    let spans = receiver.wait_for(3).await;
    let odd = spans.iter().find(|s| hex(&s.trace_id) == "6bf92f3577b34da6a3ce929d0e0e4736").expect("the odd span");
    assert_eq!(odd.name, "HTTP r");
    assert_eq!(attr(odd, "http.request.method"), Some(V::StringValue("_OTHER".into())));
    assert_eq!(attr(odd, "http.request.method_original"), Some(V::StringValue("XHJPZSC".into())));
    // What the client wrote is cut to 1 KiB a value (at a character
    // boundary): a queue of spans behind a slow collector stays small.
    let long_ua = format!("é{}", "u".repeat(20_000));
    let query = "q=".to_string() + &"x".repeat(6_000);
    get(
        &url(&h, &format!("/r/{}?{query}", "p".repeat(3_000))),
        &[("traceparent", "00-7bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), ("user-agent", &long_ua)],
    )
    .await;
    let spans = receiver.wait_for(4).await;
    let long = spans.iter().find(|s| hex(&s.trace_id) == "7bf92f3577b34da6a3ce929d0e0e4736").expect("the long span");
    for key in ["url.path", "url.query", "user_agent.original"] {
        let Some(V::StringValue(v)) = attr(long, key) else { panic!("{key}") };
        assert!((1020..=1024).contains(&v.len()), "{key}: {} bytes", v.len());
    }
    let Some(V::StringValue(ua)) = attr(long, "user_agent.original") else { unreachable!() };
    assert!(ua.starts_with("éuuu"));
}

/// W3C Trace Context Level 2 and the `tracestate` of a continued trace:
/// the random flag kept, the lines joined (empty ones left out) for the
/// upstream and in the span.
#[cfg(feature = "otlp")]
#[tokio::test]
async fn a_continued_trace_keeps_its_flags_and_state() {
    use crate::support::otlp::Receiver;
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start("svc").await;
    let receiver = Receiver::start().await;
    let body = format!(
        "trusted_proxies: [127.0.0.1]
tracing:
  otlp: {{ endpoint: \"{}\", sample: 0.0 }}
\
         upstreams:\n  svc: {{ targets: [\"{}\"] }}\nroutes:\n  - {{ name: r, match: {{ path_prefix: /r }}, upstream: svc }}\n",
        receiver.url(),
        up.url()
    );
    let h = start(&body, dir.path()).await;
    let mut req = Request::get(url(&h, "/r/state"))
        .header("traceparent", "00-7bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03")
        .header("tracestate", "")
        .header("tracestate", "congo=t61rcWkgMzE")
        .body(Full::default())
        .unwrap();
    req.headers_mut().append("tracestate", "rojo=00f067aa0ba902b7".parse().unwrap());
    let seen = send(&http1_client(), req).await.json();
    let upstream = &seen["headers"];
    assert!(upstream["traceparent"].as_str().unwrap().ends_with("-03"), "{upstream}");
    assert_eq!(upstream["tracestate"], "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7", "one line: {upstream}");
    let spans = receiver.wait_for(1).await;
    assert_eq!(spans[0].trace_state, "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
    // OTLP flags: the W3C flags as sent on (sampled, random), and a remote parent (0x100 | 0x200).
    assert_eq!(spans[0].flags, 0x303, "{:#x}", spans[0].flags);
    // Two `traceparent` lines are no valid value: a new trace, no state passed on.
    let mut req = Request::get(url(&h, "/r/two")).body(Full::default()).unwrap();
    for line in [
        "00-7bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-8bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ] {
        req.headers_mut().append("traceparent", line.parse().unwrap());
    }
    req.headers_mut().append("tracestate", "congo=t61rcWkgMzE".parse().unwrap());
    let seen = send(&http1_client(), req).await.json();
    let traceparent = seen["headers"]["traceparent"].as_str().unwrap();
    assert!(!traceparent.contains("7bf92f35") && !traceparent.contains("8bf92f35"), "{traceparent}");
    assert!(seen["headers"].get("tracestate").is_none(), "{}", seen["headers"]);
}

/// A batch the collector cannot take for now is sent again (OTLP/HTTP:
/// 429, 502, 503, 504, following `Retry-After`); one it refuses (400) is
/// not, and its spans are counted as dropped.
#[cfg(feature = "otlp")]
#[tokio::test]
async fn span_batches_are_retried_when_the_collector_is_busy() {
    use crate::support::otlp::Receiver;
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::answering(vec![(503, Some("0")), (200, None), (400, None)]).await;
    let body = format!(
        "tracing:\n  otlp: {{ endpoint: \"{}\", sample: 1.0 }}\n\
         routes:\n  - {{ name: r, match: {{ path_prefix: /r }}, static: {{ body: ok }} }}\n",
        receiver.url()
    );
    let h = start(&body, dir.path()).await;
    get(&url(&h, "/r/first"), &[]).await;
    let spans = receiver.wait_for(1).await;
    assert_eq!((spans.len(), *receiver.posts.lock().unwrap()), (1, 2), "sent again after the 503");
    get(&url(&h, "/r/second"), &[]).await;
    let s = scrape_until(&h, |s| number(s, "portcullis_trace_spans_dropped_total", &[]) >= 1.0).await;
    assert_eq!(number(&s, "portcullis_trace_spans_dropped_total", &[]), 1.0, "the refused batch's span");
    assert_eq!(*receiver.posts.lock().unwrap(), 3, "a 400 is not sent again");
}

/// A collector behind an internal CA: `tracing.otlp.ca` trusts it (the
/// Mozilla roots were the only ones). Without it the certificate is
/// refused once, not retried as an outage, and the batch counted lost.
/// Exports name their sender (`User-Agent`); spans a collector's 200 says
/// it rejected (`partial_success`) are counted as dropped, not sent again.
#[cfg(feature = "otlp")]
#[tokio::test]
async fn spans_go_to_a_collector_behind_an_internal_ca_and_rejections_are_counted() {
    use crate::support::otlp::Receiver;
    use crate::support::tls::TlsUpstream;
    let dir = tempfile::tempdir().unwrap();
    let (acceptor, ca_pem) = TlsUpstream::acceptor(&[b"http/1.1"]);
    std::fs::write(dir.path().join("collector-ca.pem"), ca_pem).unwrap();
    let receiver = Receiver::serving(Vec::new(), 0, Some(acceptor)).await;
    let endpoint = format!("https://127.0.0.1:{}", receiver.addr.port());
    let routes = "routes:\n  - { name: r, match: { path_prefix: /r }, static: { body: ok } }\n";
    let trusted = format!("tracing:\n  otlp: {{ endpoint: \"{endpoint}\", ca: collector-ca.pem }}\n{routes}");
    let h = start(&trusted, dir.path()).await;
    get(&url(&h, "/r/one"), &[]).await;
    assert_eq!(receiver.wait_for(1).await.len(), 1, "the span arrived over TLS");
    let agent = receiver.headers.lock().unwrap().iter().find(|l| l.starts_with("user-agent: ")).cloned();
    assert!(agent.as_deref().is_some_and(|a| a.starts_with("user-agent: portcullis/")), "{agent:?}");
    drop(h);

    // Not trusted: one handshake, refused, the span counted lost.
    let other = tempfile::tempdir().unwrap();
    let untrusted = format!("tracing:\n  otlp: {{ endpoint: \"{endpoint}\" }}\n{routes}");
    let h = start(&untrusted, other.path()).await;
    let before = *receiver.connections.lock().unwrap();
    get(&url(&h, "/r/two"), &[]).await;
    let s = scrape_until(&h, |s| number(s, "portcullis_trace_spans_dropped_total", &[]) >= 1.0).await;
    assert_eq!(number(&s, "portcullis_trace_spans_dropped_total", &[]), 1.0);
    assert_eq!(*receiver.connections.lock().unwrap() - before, 1, "a refused certificate is not tried again");
    drop(h);

    // A CA file that holds no certificate is a config error.
    std::fs::write(dir.path().join("empty.pem"), "").unwrap();
    let yaml = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\n\
         tracing:\n  otlp: {{ endpoint: \"{endpoint}\", ca: empty.pem }}\n{routes}"
    );
    let errors = portcullis::check(&load(&yaml, dir.path())).unwrap_err().to_string();
    assert!(errors.contains("tracing.otlp.ca") && errors.contains("holds no certificate"), "{errors}");

    // Two spans of a batch rejected by a 200: counted, not sent again.
    let rejecting = Receiver::serving(Vec::new(), 1, None).await;
    let body = format!("tracing:\n  otlp: {{ endpoint: \"{}\" }}\n{routes}", rejecting.url());
    let third = tempfile::tempdir().unwrap();
    let h = start(&body, third.path()).await;
    get(&url(&h, "/r/three"), &[]).await;
    let s = scrape_until(&h, |s| number(s, "portcullis_trace_spans_dropped_total", &[]) >= 1.0).await;
    assert_eq!(number(&s, "portcullis_trace_spans_dropped_total", &[]), 1.0, "the rejected span");
    assert_eq!(*rejecting.posts.lock().unwrap(), 1);
    drop(h);

    // The CA file replaced in place, then a reload of the same config: the new CA is trusted.
    let rotated = tempfile::tempdir().unwrap();
    let (_, wrong_ca) = TlsUpstream::acceptor(&[b"http/1.1"]);
    std::fs::write(rotated.path().join("collector-ca.pem"), wrong_ca).unwrap();
    let h = start(&trusted, rotated.path()).await;
    get(&url(&h, "/r/four"), &[]).await;
    let s = scrape_until(&h, |s| number(s, "portcullis_trace_spans_dropped_total", &[]) >= 1.0).await;
    assert_eq!(number(&s, "portcullis_trace_spans_dropped_total", &[]), 1.0, "another CA: refused");
    std::fs::copy(dir.path().join("collector-ca.pem"), rotated.path().join("collector-ca.pem")).unwrap();
    let yaml = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\nadmin: {{ bind: \"127.0.0.1:0\" }}\n\
         access_log: {{ to: \"{}\" }}\n{trusted}",
        rotated.path().join("access.log").display()
    );
    h.reload(&load(&yaml, rotated.path())).await.unwrap();
    get(&url(&h, "/r/five"), &[]).await;
    assert_eq!(receiver.wait_for(2).await.len(), 2, "the span went out under the rotated CA");
}

#[tokio::test]
async fn the_observability_example_serves_metrics_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/observability.yaml"))
        .unwrap()
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:9901", "127.0.0.1:0");
    // `to: access.log` is relative to the config's folder.
    let h = Gateway::start(&load(&text, dir.path())).await.expect("the example starts");
    let public = format!("http://{}", h.addrs()[0].1);
    assert_eq!(get(&format!("{public}/hello"), &[]).await.status, 200);
    let s = scrape_until(&h, |s| {
        observations(s, "http_server_request_duration_seconds", &[("http_route", "hello")]) >= 1.0
    })
    .await;
    assert_eq!(observations(&s, "http_server_request_duration_seconds", &[("http_route", "hello")]), 1.0);
    let lines = log_lines(&h, dir.path(), 1).await;
    assert_eq!(lines[0]["portcullis"]["route"], "hello");
}

#[tokio::test]
async fn tls_http2_and_unreadable_requests_are_logged_and_counted() {
    use crate::support::pki::{Pki, https_get};
    let pki = Pki::new();
    let (cert, key) = pki.issue("gw", "api.test", &["api.test"]);
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start("svc").await;
    let yaml = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\", limits: {{ header_read_timeout: 300ms }} }}\n\
         \x20 - {{ name: tls, bind: \"127.0.0.1:0\", tls: {{ certificates: [ {{ cert: \"{}\", key: \"{}\" }} ] }} }}\n\
         admin: {{ bind: \"127.0.0.1:0\" }}\naccess_log: {{ to: access.log }}\n\
         upstreams:\n  svc: {{ targets: [\"{}\"] }}\nroutes:\n  - {{ name: r, match: {{ path_prefix: /r }}, upstream: svc }}\n",
        cert.display(),
        key.display(),
        up.url()
    );
    let h = Gateway::start(&load(&yaml, dir.path())).await.unwrap();
    let tls = h.addr("tls").unwrap();
    let reply = https_get(tls, "api.test", &pki.ca_path(), None, "/r/over-h2").await.unwrap();
    assert_eq!((reply.reply.status.as_u16(), reply.alpn.as_deref()), (200, Some(&b"h2"[..])));
    // A handshake that fails, and a head that cannot be read.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(tls).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let _ = s.read(&mut [0u8; 64]).await;
    }
    let bad = crate::support::raw(h.addr("gw").unwrap(), "GET /r HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").await;
    assert_eq!(crate::support::raw_status(&bad), 400);
    let garbage = crate::support::raw(h.addr("gw").unwrap(), "\x01GET /r HTTP/1.1\r\n\r\n").await;
    assert_eq!(crate::support::raw_status(&garbage), 400);
    // Methods the gateway does not serve: refused (501) and logged as what they were.
    let trace =
        crate::support::raw(h.addr("gw").unwrap(), "TRACE /r/t1 HTTP/1.1\r\nHost: x\r\nUser-Agent: probe/1\r\n\r\n")
            .await;
    assert_eq!(crate::support::raw_status(&trace), 501);
    {
        use crate::support::h2raw::{H2Conn, Outcome};
        let mut conn = H2Conn::connect(h.addr("gw").unwrap()).await;
        let fields: [(&[u8], &[u8]); 5] = [
            (b":method", b"TRACE"),
            (b":scheme", b"http"),
            (b":authority", b"x"),
            (b":path", b"/r/t2"),
            (b"user-agent", b"probe/2"),
        ];
        conn.headers(1, &fields, true).await;
        assert_eq!(conn.outcome(1).await, Outcome::Status(501));
    }
    // An HTTP/2 field section over max_header_size: the gateway's own 431, logged.
    {
        use crate::support::h2raw::{H2Conn, Outcome};
        let mut conn = H2Conn::connect(h.addr("gw").unwrap()).await;
        let big = vec![b'a'; 40 << 10];
        let fields: [(&[u8], &[u8]); 5] = [
            (b":method", b"GET"),
            (b":scheme", b"http"),
            (b":authority", b"x"),
            (b":path", b"/r/big"),
            (b"x-big", &big),
        ];
        conn.headers(1, &fields, true).await;
        assert_eq!(conn.outcome(1).await, Outcome::Status(431));
    }
    // A head that never ends (slowloris): closed unanswered, logged as 408.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(h.addr("gw").unwrap()).await.unwrap();
        s.write_all(b"GET /r HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await.expect("closed");
        assert!(rest.is_empty(), "nothing is answered: {}", String::from_utf8_lossy(&rest));
    }
    // A head its client cut (it closed before the head ended): logged as a
    // client that left (NGINX logs such a connection too).
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(h.addr("gw").unwrap()).await.unwrap();
        s.write_all(b"GET /r HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        s.shutdown().await.unwrap();
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await.expect("closed");
        assert!(rest.is_empty(), "nothing is answered: {}", String::from_utf8_lossy(&rest));
    }

    let lines = log_lines(&h, dir.path(), 8).await;
    let cut = lines.iter().find(|l| l["http"]["response"]["status_code"] == 499).expect("the cut head's line");
    assert_eq!((&cut["http"]["request"]["method"], &cut["portcullis"]["response_flag"]), (&json!("-"), &json!("DC")));
    let large = lines.iter().find(|l| l["http"]["response"]["status_code"] == 431).expect("the large head's line");
    // A head read and refused before routing keeps its method and path.
    let refused = |path: &str| {
        let l = lines.iter().find(|l| l["url"]["path"] == path).unwrap_or_else(|| panic!("{path} in {lines:?}"));
        let (method, status) = (&l["http"]["request"]["method"], &l["http"]["response"]["status_code"]);
        (method.as_str().unwrap().to_string(), status.as_u64().unwrap(), l["portcullis"]["response_flag"].clone())
    };
    assert_eq!(refused("/r"), ("GET".to_string(), 400, json!("IV")));
    assert_eq!(refused("/r/t1"), ("TRACE".to_string(), 501, json!("IV")));
    assert_eq!(refused("/r/t2"), ("TRACE".to_string(), 501, json!("IV")));
    // With the protocol and the User-Agent it came with (an attack's fingerprint).
    for (path, version, agent) in [("/r/t1", "1.1", "probe/1"), ("/r/t2", "2", "probe/2")] {
        let l = lines.iter().find(|l| l["url"]["path"] == path).unwrap();
        assert_eq!((&l["http"]["version"], &l["user_agent"]["original"]), (&json!(version), &json!(agent)), "{path}");
    }
    assert_eq!(large["portcullis"]["response_flag"], "IV");
    let slow = lines.iter().find(|l| l["http"]["response"]["status_code"] == 408).expect("the slow head's line");
    assert_eq!((&slow["http"]["request"]["method"], &slow["portcullis"]["response_flag"]), (&json!("-"), &json!("IV")));
    // It lasted from its first byte to the timeout, not an instant at the end.
    let took = slow["event"]["duration"].as_u64().unwrap();
    assert!(took >= 300_000_000, "a slow head's duration is the time it took: {took} ns");
    let h2 = lines.iter().find(|l| l["url"]["path"] == "/r/over-h2").expect("the HTTP/2 request's line");
    assert_eq!((&h2["http"]["version"], &h2["tls"]["version"]), (&json!("2"), &json!("1.3")));
    let unread = lines.iter().find(|l| l["http"]["request"]["method"] == "-").expect("the unreadable request's line");
    assert_eq!(
        (&unread["http"]["response"]["status_code"], &unread["portcullis"]["response_flag"]),
        (&json!(400), &json!("IV"))
    );

    // A connection closed before its first byte (a load balancer's TCP
    // check, a port scan) is no handshake failure: it fed the alert.
    for _ in 0..3 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(h.addr("tls").unwrap()).await.unwrap();
        s.shutdown().await.unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut [0u8; 8])).await.expect("closed");
    }
    let s = scrape_until(&h, |s| number(s, "portcullis_tls_handshake_failures_total", &[]) >= 1.0).await;
    assert_eq!(number(&s, "portcullis_tls_handshake_failures_total", &[("listener", "tls"), ("reason", "error")]), 1.0);
    let r = [("http_route", "r"), ("http_request_method", "GET"), ("http_response_status_code", "200")];
    assert_eq!(observations(&s, "http_server_request_duration_seconds", &r), 1.0);
    assert_eq!(
        observations(
            &s,
            "http_server_request_duration_seconds",
            &[("http_request_method", "_OTHER"), ("http_response_status_code", "400")]
        ),
        1.0
    );
    // The HTTP/2 head over the limit was read (hyper's): its method is known.
    let large = [("http_request_method", "GET"), ("http_response_status_code", "431")];
    assert_eq!(observations(&s, "http_server_request_duration_seconds", &large), 1.0);
}

/// Shutdown sends the spans still queued (they wait up to a second for
/// their batch to fill): the last requests before a stop are not lost.
#[cfg(feature = "otlp")]
#[tokio::test]
async fn shutdown_flushes_queued_spans() {
    use crate::support::otlp::Receiver;
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let body = format!(
        "tracing:\n  otlp: {{ endpoint: \"{}\", sample: 1.0 }}\n\
         routes:\n  - {{ name: hi, match: {{ path: /hi }}, static: {{ status: 200, body: hi }} }}\n",
        receiver.url()
    );
    let h = start(&body, dir.path()).await;
    assert_eq!(get(&url(&h, "/hi"), &[]).await.status, 200);
    h.shutdown().await;
    // No waiting here: the flush happened before `shutdown` returned.
    let spans = receiver.spans.lock().unwrap().clone();
    assert_eq!(spans.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), vec!["GET hi"]);
}

/// An aggregate's calls are its tries: one entry each in the access log,
/// and in `http_client_request_duration_seconds`.
#[tokio::test]
async fn aggregate_calls_are_logged_as_tries_and_measured() {
    use crate::support::flaky::{Flaky, Mode};
    let dir = tempfile::tempdir().unwrap();
    let (a, b, slow) = (Upstream::start("a").await, Upstream::start("b").await, Flaky::start("slow").await);
    slow.set(Mode::Hang);
    let rude = Flaky::start("rude").await;
    rude.set(Mode::Reset);
    let body = format!(
        "upstreams:\n  a: {{ targets: [\"{}\"] }}\n  b: {{ targets: [\"{}\"] }}\n  slow: {{ targets: [\"{}\"] }}\n  rude: {{ targets: [\"{}\"] }}\n\
         routes:\n  - name: both\n    match: {{ path: /both }}\n    aggregate: {{ calls: {{ one: {{ upstream: a, path: /x }}, two: {{ upstream: b, path: /y }} }} }}\n\
         \x20 - name: late\n    match: {{ path: /late }}\n    aggregate: {{ calls: {{ one: {{ upstream: a, path: /x }}, hung: {{ upstream: slow, path: /z, timeout: 100ms }}, cut: {{ upstream: rude, path: /r }} }} }}\n\
         \x20 - name: abandon\n    match: {{ path: /abandon }}\n    aggregate: {{ calls: {{ need: {{ upstream: rude, path: /r, required: true }}, waiting: {{ upstream: slow, path: /w }} }} }}\n\
         \x20 - name: leave\n    match: {{ path: /leave }}\n    aggregate: {{ calls: {{ quick: {{ upstream: a, path: /x }}, waiting: {{ upstream: slow, path: /w }} }} }}\n",
        a.url(),
        b.url(),
        slow.url(),
        rude.url()
    );
    let h = start(&body, dir.path()).await;
    assert_eq!(get(&url(&h, "/both"), &[]).await.status, 200);
    let lines = log_lines(&h, dir.path(), 1).await;
    let upstream = &lines[0]["portcullis"]["upstream"];
    let tries = upstream["tries"].as_array().unwrap().clone();
    assert_eq!(tries.len(), 2, "{tries:?}");
    assert!(tries.iter().all(|t| t["status_code"] == 200), "{tries:?}");
    // Two upstreams: each try names its own, the line none of them.
    let mut names: Vec<&str> = tries.iter().map(|t| t["upstream"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["a", "b"]);
    assert!(upstream.get("name").is_none() && upstream.get("target").is_none(), "{upstream}");
    // Side by side, the calls take no longer than the request.
    let total = lines[0]["event"]["duration"].as_u64().unwrap();
    let busy = upstream["duration"].as_u64().unwrap();
    assert!(busy <= total, "upstream {busy} ns of a {total} ns request");
    assert_eq!(lines[0]["portcullis"]["gateway"]["duration"].as_u64().unwrap(), total - busy);
    let s = scrape_until(&h, |s| observations(s, "http_client_request_duration_seconds", &[("upstream", "b")]) >= 1.0)
        .await;
    assert_eq!(observations(&s, "http_client_request_duration_seconds", &[("upstream", "a")]), 1.0);

    // A call that runs out of time is still a try of its target, timed out.
    assert_eq!(get(&url(&h, "/late"), &[]).await.status, 200);
    let lines = log_lines(&h, dir.path(), 2).await;
    let late = lines.iter().find(|l| l["url"]["path"] == "/late").unwrap();
    let tries = late["portcullis"]["upstream"]["tries"].as_array().unwrap();
    let hung = tries.iter().find(|t| t["upstream"] == "slow").expect("the timed-out call's try");
    assert_eq!(hung["error"], "timeout", "{late}");
    // One that took the request and hung up is `closed`, not a connect failure.
    let cut = tries.iter().find(|t| t["upstream"] == "rude").expect("the reset call's try");
    assert_eq!(cut["error"], "closed", "{late}");
    let s = scrape_until(&h, |s| {
        observations(s, "http_client_request_duration_seconds", &[("upstream", "slow"), ("error_type", "timeout")])
            >= 1.0
    })
    .await;
    assert_eq!(observations(&s, "http_client_request_duration_seconds", &[("upstream", "slow")]), 1.0);

    // A required call fails while another is under way: that one is
    // abandoned, and logged as a try of its target, `cancelled`.
    assert_eq!(get(&url(&h, "/abandon"), &[]).await.status, 502);
    let lines = log_lines(&h, dir.path(), 3).await;
    let line = lines.iter().find(|l| l["url"]["path"] == "/abandon").unwrap();
    let tries = line["portcullis"]["upstream"]["tries"].as_array().unwrap();
    let waiting = tries.iter().find(|t| t["upstream"] == "slow").expect("the abandoned call's try");
    assert_eq!(waiting["error"], "cancelled", "{line}");

    // The client leaves while a call is under way: that call is a try too,
    // `cancelled`, timed up to the line, as a proxied request's try.
    let hits = slow.hits();
    let mut conn = tokio::net::TcpStream::connect(h.addr("gw").unwrap()).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut conn, b"GET /leave HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    while slow.hits() == hits {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    drop(conn);
    let lines = log_lines(&h, dir.path(), 4).await;
    let line = lines.iter().find(|l| l["url"]["path"] == "/leave").unwrap();
    assert_eq!(line["portcullis"]["response_flag"], "DC", "{line}");
    let tries = line["portcullis"]["upstream"]["tries"].as_array().unwrap();
    let waiting = tries.iter().find(|t| t["upstream"] == "slow").expect("the call under way");
    assert_eq!(waiting["error"], "cancelled", "{line}");
    assert!(line["portcullis"]["upstream"]["duration"].as_u64().unwrap() > 0, "{line}");
}

/// A WebSocket is logged when its tunnel closes, as NGINX logs it: status
/// 101, the session's whole duration and the bytes it carried each way.
#[tokio::test]
async fn a_websocket_is_logged_when_its_tunnel_closes() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let dir = tempfile::tempdir().unwrap();
    let ws = crate::support::WsUpstream::start().await;
    let body = format!(
        "upstreams:\n  ws: {{ targets: [ \"http://{}\" ] }}\n\
         routes:\n  - {{ name: chat, match: {{ path_prefix: /chat }}, upstream: ws, websocket: true }}\n",
        ws.addr
    );
    let h = start(&body, dir.path()).await;
    let (mut socket, resp) =
        tokio_tungstenite::connect_async(format!("ws://{}/chat", h.addr("gw").unwrap())).await.expect("upgrade");
    assert_eq!(resp.status(), 101);
    let text = "x".repeat(5000);
    socket.send(Message::text(text.clone())).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), socket.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), text);
    // Open while the log is looked at: no line yet, the request still active.
    let s = scrape_until(&h, |s| number(s, "http_server_active_requests", &[]) == 1.0).await;
    assert_eq!(number(&s, "http_server_active_requests", &[]), 1.0);
    // Kept open a while (a lower bound, not a race: the line must cover it).
    tokio::time::sleep(Duration::from_millis(200)).await;
    socket.close(None).await.unwrap();
    while socket.next().await.is_some() {}
    drop(socket);
    let lines = log_lines(&h, dir.path(), 1).await;
    let line = &lines[0];
    assert_eq!(line["http"]["response"]["status_code"], 101, "{line}");
    assert!(line["http"]["response"]["body"]["bytes"].as_u64().unwrap() > 5000, "{line}");
    assert!(line["http"]["request"]["body"]["bytes"].as_u64().unwrap() > 5000, "{line}");
    let logged = Duration::from_nanos(line["event"]["duration"].as_u64().unwrap());
    assert!(logged >= Duration::from_millis(200), "{logged:?}: the session, not its handshake");
    assert_eq!(line["portcullis"]["upstream"]["tries"][0]["status_code"], 101, "{line}");
    assert_eq!(line["portcullis"]["response_flag"], "-", "a side closed it: {line}");
}

/// A tunnel that carried nothing either way for the upstream's
/// `timeouts.read` is closed, and its line says why (`SI`, Envoy's stream
/// idle timeout): it read `-`, as a tunnel a side closed.
#[tokio::test]
async fn a_websocket_closed_for_idling_says_so() {
    use futures_util::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let ws = crate::support::WsUpstream::start().await;
    let body = format!(
        "upstreams:\n  ws: {{ targets: [ \"http://{}\" ], timeouts: {{ read: 200ms }} }}\n\
         routes:\n  - {{ name: chat, match: {{ path_prefix: /chat }}, upstream: ws, websocket: true }}\n",
        ws.addr
    );
    let h = start(&body, dir.path()).await;
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/chat", h.addr("gw").unwrap())).await.expect("upgrade");
    // Nothing sent: the gateway closes it.
    let closed =
        tokio::time::timeout(Duration::from_secs(10), async { while let Some(Ok(_)) = socket.next().await {} }).await;
    assert!(closed.is_ok(), "the idle tunnel was closed");
    let lines = log_lines(&h, dir.path(), 1).await;
    assert_eq!(
        (&lines[0]["http"]["response"]["status_code"], &lines[0]["portcullis"]["response_flag"]),
        (&json!(101), &json!("SI")),
        "{}",
        lines[0]
    );
}

/// An upstream that sends its head at once and its body 300 ms later:
/// that time is the upstream's (`upstream.duration`, its try's), not the
/// gateway's (`gateway.duration` counted it, as the gateway's own work).
#[tokio::test]
async fn a_slow_upstream_body_is_upstream_time_not_gateway_time() {
    let dir = tempfile::tempdir().unwrap();
    let up = crate::support::scripted::Scripted::start().await.addr;
    let body = format!(
        "upstreams:\n  slow: {{ targets: [ \"http://{up}\" ] }}\nroutes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: slow }}\n"
    );
    let h = start(&body, dir.path()).await;
    let r = get(&url(&h, "/slow-body"), &[]).await;
    assert_eq!((r.status.as_u16(), r.text()), (200, "0123456789".to_string()));
    let lines = log_lines(&h, dir.path(), 1).await;
    let line = &lines[0];
    let ms = |v: &Json| Duration::from_nanos(v.as_u64().unwrap());
    let upstream = ms(&line["portcullis"]["upstream"]["duration"]);
    let gateway = ms(&line["portcullis"]["gateway"]["duration"]);
    assert!(upstream >= Duration::from_millis(300), "{line}");
    assert_eq!(line["portcullis"]["upstream"]["tries"][0]["duration"], line["portcullis"]["upstream"]["duration"]);
    assert!(gateway < Duration::from_millis(200), "the body's wait is not the gateway's: {line}");
    assert_eq!(line["event"]["type"], serde_json::json!(["access"]), "{line}");
}

/// A response whose upstream broke off mid-body is counted with
/// `error_type="upstream_closed"` (it was one more 200 in the metrics,
/// invisible to an alert on errors), and logged as a failure.
#[tokio::test]
async fn a_body_cut_by_the_upstream_is_an_error_in_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let up = crate::support::scripted::Scripted::start().await.addr;
    let body = format!(
        "upstreams:\n  cut: {{ targets: [ \"http://{up}\" ] }}\nroutes:\n  - {{ name: cut, match: {{ path_prefix: / }}, upstream: cut }}\n"
    );
    let h = start(&body, dir.path()).await;
    let _ =
        crate::support::raw(h.addr("gw").unwrap(), "GET /cut HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await;
    let labels = [
        ("http_route", "cut"),
        ("http_request_method", "GET"),
        ("http_response_status_code", "200"),
        ("error_type", "upstream_closed"),
    ];
    let s = scrape_until(&h, |s| observations(s, "http_server_request_duration_seconds", &labels) == 1.0).await;
    assert_eq!(observations(&s, "http_server_request_duration_seconds", &labels), 1.0);
    let lines = log_lines(&h, dir.path(), 1).await;
    assert_eq!(lines[0]["portcullis"]["response_flag"], "UC", "{}", lines[0]);
    assert_eq!(lines[0]["event"]["outcome"], "failure", "{}", lines[0]);
}

/// A body the upstream stops sending, cut after `timeouts.read`, is a
/// timeout (flag `UT`, `error_type="upstream_timeout"`): the upstream is
/// slow, not gone (it was logged `UC`, counted `upstream_closed`).
#[tokio::test]
async fn a_body_stalled_past_the_read_timeout_is_a_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let up = crate::support::scripted::Scripted::start().await.addr;
    let body = format!(
        "upstreams:\n  slow: {{ targets: [ \"http://{up}\" ], timeouts: {{ read: 300ms }} }}\nroutes:\n  - {{ name: stall, match: {{ path_prefix: / }}, upstream: slow }}\n"
    );
    let h = start(&body, dir.path()).await;
    let _ =
        crate::support::raw(h.addr("gw").unwrap(), "GET /stall HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await;
    let labels = [("http_route", "stall"), ("http_response_status_code", "200"), ("error_type", "upstream_timeout")];
    let s = scrape_until(&h, |s| observations(s, "http_server_request_duration_seconds", &labels) == 1.0).await;
    assert_eq!(observations(&s, "http_server_request_duration_seconds", &labels), 1.0);
    let lines = log_lines(&h, dir.path(), 1).await;
    assert_eq!(lines[0]["portcullis"]["response_flag"], "UT", "{}", lines[0]);
    assert_eq!(lines[0]["event"]["outcome"], "failure", "{}", lines[0]);
}

/// A request an earlier phase refused (here 401) was never validated: its
/// line has no validation outcome (it read `passed`).
#[tokio::test]
async fn a_request_refused_before_validation_has_no_validation_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let body = "auth:\n  keys: { api_key: { header: X-Key } }\n\
                consumers: [ { id: a, api_keys: [ { sha256: 97b2173c4f5d679e391a4dc4abfeb971a53b80d7bea16a92216fdc74a428905d } ] } ]\n\
                routes:\n  - name: v\n    match: { path: /v }\n    static: { body: ok }\n    authenticate: [ keys ]\n\
                \x20   validate: { query: { n: { type: integer } } }\n";
    let h = start(body, dir.path()).await;
    assert_eq!(get(&url(&h, "/v?n=1"), &[]).await.status, 401);
    assert_eq!(get(&url(&h, "/v?n=1"), &[("x-key", "key-0123456789abcdef")]).await.status, 200);
    let lines = log_lines(&h, dir.path(), 2).await;
    assert!(lines[0]["portcullis"].get("validation").is_none(), "{}", lines[0]);
    assert_eq!(lines[1]["portcullis"]["validation"]["outcome"], "passed", "{}", lines[1]);
}

/// An upstream that closes before its head gets a whole 502 (flag `UC`):
/// its status says the error, with no `error_type` beside it, as for a
/// refused connection's 502 (it was `upstream_closed`, a label for bodies
/// cut off, so one failure landed in two series by how it failed).
#[tokio::test]
async fn a_whole_502_is_no_cut_body_in_the_metrics() {
    use crate::support::flaky::{Flaky, Mode};
    let dir = tempfile::tempdir().unwrap();
    let up = Flaky::start("svc").await;
    up.set(Mode::Reset);
    let body = format!(
        "upstreams:\n  svc: {{ targets: [ \"{}\" ] }}\nroutes:\n  - {{ name: reset, match: {{ path_prefix: / }}, upstream: svc }}\n",
        up.url()
    );
    let h = start(&body, dir.path()).await;
    assert_eq!(get(&url(&h, "/x"), &[]).await.status, 502);
    let lines = log_lines(&h, dir.path(), 1).await;
    assert_eq!(lines[0]["portcullis"]["response_flag"], "UC", "{}", lines[0]);
    let whole = [("http_route", "reset"), ("http_response_status_code", "502")];
    let s = scrape_until(&h, |s| observations(s, "http_server_request_duration_seconds", &whole) == 1.0).await;
    let cut = [("http_route", "reset"), ("error_type", "upstream_closed")];
    assert_eq!(observations(&s, "http_server_request_duration_seconds", &cut), 0.0);
}

/// A WebSocket still open when a shutdown's drain deadline passes is cut,
/// and its line says what it carried up to then, flagged `DC` (a cut
/// connection): it was logged with 0 bytes as a success, or not at all
/// when the process went before the cut tunnel was dropped.
#[tokio::test]
async fn a_websocket_cut_by_a_shutdown_is_logged_with_what_it_carried() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let dir = tempfile::tempdir().unwrap();
    let ws = crate::support::WsUpstream::start().await;
    let body = format!(
        "shutdown_timeout: 200ms\nupstreams:\n  ws: {{ targets: [ \"http://{}\" ] }}\n\
         routes:\n  - {{ name: chat, match: {{ path_prefix: /chat }}, upstream: ws, websocket: true }}\n",
        ws.addr
    );
    let h = start(&body, dir.path()).await;
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/chat", h.addr("gw").unwrap())).await.expect("upgrade");
    let text = "x".repeat(5000);
    socket.send(Message::text(text.clone())).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), socket.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), text);
    tokio::time::timeout(Duration::from_secs(5), h.shutdown()).await.expect("the drain ends");
    let text = std::fs::read_to_string(dir.path().join("access.log")).unwrap();
    let line: Json = serde_json::from_str(text.lines().next().expect("the WebSocket's line")).unwrap();
    assert_eq!(line["http"]["response"]["status_code"], 101, "{line}");
    assert!(line["http"]["response"]["body"]["bytes"].as_u64().unwrap() > 5000, "{line}");
    assert!(line["http"]["request"]["body"]["bytes"].as_u64().unwrap() > 5000, "{line}");
    assert_eq!(line["portcullis"]["response_flag"], "DC", "{line}");
}

#[tokio::test]
async fn upstream_connections_count_http1_and_http2_connections() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start("svc").await;
    let body = format!(
        "upstreams:\n  one: {{ targets: [\"{url}\"] }}\n  two: {{ targets: [\"{url}\"], protocol: http2 }}\n\
         routes:\n  - {{ name: one, match: {{ path_prefix: /one }}, upstream: one }}\n\
         \x20 - {{ name: two, match: {{ path_prefix: /two }}, upstream: two }}\n",
        url = up.url()
    );
    let h = start(&body, dir.path()).await;
    let conns = |s: &Scrape, upstream: &str, state: &str| {
        number(s, "portcullis_upstream_connections", &[("upstream", upstream), ("state", state)])
    };
    let s = scrape(&h).await;
    assert_eq!((conns(&s, "one", "idle"), conns(&s, "two", "idle")), (0.0, 0.0), "nothing connected yet");
    for path in ["/one/a", "/two/a", "/two/b"] {
        assert_eq!(get(&url(&h, path), &[]).await.status, 200, "{path}");
    }
    // Each upstream keeps one connection, waiting for the next request.
    let s = scrape_until(&h, |s| conns(s, "one", "idle") == 1.0 && conns(s, "two", "idle") == 1.0).await;
    assert_eq!((conns(&s, "one", "idle"), conns(&s, "two", "idle")), (1.0, 1.0));
    assert_eq!((conns(&s, "one", "active"), conns(&s, "two", "active")), (0.0, 0.0));
}

/// `state="active"` counts the requests in flight across a reload (the
/// new config carries their counts; its gauge once watched fresh counters
/// nothing updated, and read 0 after every reload).
#[tokio::test]
async fn upstream_active_connections_are_counted_across_a_reload() {
    use crate::support::flaky::{Flaky, Mode};
    let dir = tempfile::tempdir().unwrap();
    let slow = Flaky::start("slow").await;
    slow.set(Mode::Slow(Duration::from_millis(1500)));
    let body = |extra: &str| {
        format!(
            "upstreams:\n  slow: {{ targets: [\"{}\"]{extra} }}\nroutes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: slow }}\n",
            slow.url()
        )
    };
    let h = start(&body(""), dir.path()).await;
    let in_flight = tokio::spawn({
        let url = url(&h, "/x");
        async move { get(&url, &[]).await.status }
    });
    let active =
        |s: &Scrape| number(s, "portcullis_upstream_connections", &[("upstream", "slow"), ("state", "active")]);
    assert_eq!(active(&scrape_until(&h, |s| active(s) == 1.0).await), 1.0);
    let yaml = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\nadmin: {{ bind: \"127.0.0.1:0\" }}\n\
         access_log: {{ to: \"{}\" }}\n{}",
        dir.path().join("access.log").display(),
        body(", timeouts: { connect: 2s }")
    );
    h.reload(&load(&yaml, dir.path())).await.unwrap();
    assert_eq!(active(&scrape(&h).await), 1.0, "the old config's request, counted by the new gauge");
    assert_eq!(in_flight.await.unwrap(), 200);
    assert_eq!(active(&scrape_until(&h, |s| active(s) == 0.0).await), 0.0);
    // A refused reload changes nothing: the gauges read from the live plan
    // are still reported (they vanished until the next good reload).
    let bad = yaml.replace("upstream: slow", "upstream: nowhere");
    assert!(h.reload(&load(&bad, dir.path())).await.is_err());
    let after = scrape(&h).await;
    for (family, labels) in [
        ("portcullis_upstream_connections", vec![("upstream", "slow"), ("state", "active")]),
        ("portcullis_upstream_targets", vec![("upstream", "slow")]),
        ("portcullis_buffered_bytes", vec![]),
    ] {
        assert!(!find(&after, family, &labels).is_empty(), "{family} after a refused reload");
    }
}

/// Long client-written fields are cut in the line (and end in `…`): a
/// client's 32 KB of `"` grew each line to 128 KB once escaped.
#[tokio::test]
async fn long_client_fields_are_cut_in_the_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let h = start("routes:\n  - { name: s, match: { path_prefix: / }, static: { body: ok } }\n", dir.path()).await;
    let quotes = "\"".repeat(12_000);
    let path = format!("/{}", "p".repeat(4500));
    let query = format!("q={}", "v".repeat(3000));
    let reply = get(
        &url(&h, &format!("{path}?{query}")),
        &[("user-agent", &quotes), ("referer", &format!("https://a.example/{}", "r".repeat(5000)))],
    )
    .await;
    assert_eq!(reply.status, 200);
    let lines = log_lines(&h, dir.path(), 1).await;
    let line = &lines[0];
    let ua = line["user_agent"]["original"].as_str().unwrap();
    assert_eq!(ua, format!("{}…", &quotes[..1024]));
    let logged_path = line["url"]["path"].as_str().unwrap();
    assert!(
        logged_path.len() <= 4096 + 3 && logged_path.ends_with('…') && logged_path.starts_with("/ppp"),
        "{}",
        logged_path.len()
    );
    assert!(line["url"]["query"].as_str().unwrap().len() <= 4096 + 3);
    let raw = std::fs::read_to_string(dir.path().join("access.log")).unwrap();
    assert!(raw.len() < 20_000, "a line of {} bytes", raw.len());
}

/// A head that comes in pieces is timed from its first byte, as NGINX's
/// `$request_time` is: a slow client's request is not logged as instant.
/// On a kept-alive connection's second request (not timed from the
/// connection's start), and against a request sent whole on the same connection.
#[tokio::test]
async fn a_head_in_pieces_is_timed_from_its_first_byte() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start("svc").await;
    let body = format!(
        "upstreams:\n  svc: {{ targets: [\"{}\"] }}\nroutes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: svc }}\n",
        up.url()
    );
    let h = start(&body, dir.path()).await;
    let mut conn = tokio::net::TcpStream::connect(h.addr("gw").unwrap()).await.unwrap();
    let mut answered = 0;
    let mut read = Vec::new();
    let mut until_answered = async |conn: &mut tokio::net::TcpStream, n: usize| {
        while read.windows(4).filter(|w| w == b"\r\n\r\n").count() < n {
            let mut chunk = [0u8; 4096];
            let got = conn.read(&mut chunk).await.unwrap();
            assert!(got > 0, "closed early: {}", String::from_utf8_lossy(&read));
            read.extend_from_slice(&chunk[..got]);
        }
    };
    conn.write_all(b"GET /whole HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    answered += 1;
    until_answered(&mut conn, answered).await;
    // Idle a while first: idleness is not the request's time.
    tokio::time::sleep(Duration::from_millis(700)).await;
    conn.write_all(b"GET /pieces HTTP/1.1\r\nHo").await.unwrap();
    // A lower bound, not a race: the line must cover at least this.
    tokio::time::sleep(Duration::from_millis(300)).await;
    conn.write_all(b"st: a\r\n\r\n").await.unwrap();
    answered += 1;
    until_answered(&mut conn, answered).await;
    let lines = log_lines(&h, dir.path(), 2).await;
    let took = |path: &str| {
        let line = lines.iter().find(|l| l["url"]["path"] == path).unwrap_or_else(|| panic!("{path}: {lines:?}"));
        Duration::from_nanos(line["event"]["duration"].as_u64().unwrap())
    };
    assert!(took("/pieces") >= Duration::from_millis(300), "{:?}", took("/pieces"));
    assert!(took("/pieces") < Duration::from_millis(1000), "idleness counted: {:?}", took("/pieces"));
    assert!(took("/whole") < Duration::from_millis(300), "{:?}", took("/whole"));
}

/// A `redirect_https` listener's 308 is the gateway's own answer: `LR`,
/// not `-` (which says an upstream answered).
#[tokio::test]
async fn the_https_redirect_is_logged_as_a_local_response() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\", redirect_https: 443 }}\n\
         access_log: {{ to: \"{}\" }}\nroutes:\n  - {{ name: all, match: {{ path_prefix: / }}, echo: {{}} }}\n",
        dir.path().join("access.log").display()
    );
    let h = Gateway::start(&load(&yaml, dir.path())).await.expect("gateway starts");
    assert_eq!(get(&url(&h, "/x"), &[("host", "api.test")]).await.status, 308);
    let lines = log_lines(&h, dir.path(), 1).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(
        (&lines[0]["http"]["response"]["status_code"], &lines[0]["portcullis"]["response_flag"]),
        (&json!(308), &json!("LR")),
        "{}",
        lines[0]
    );
}

/// The admin listener bounds its connections per client address (16) and
/// in all (1,024): an idle flood of the admin port took every file
/// descriptor, the public listeners' included; a small total alone let 64
/// idle sockets from one peer shut out the probes. An address at its limit
/// has its oldest connection without a request closed for a new one:
/// refusing the new one let 16 idle sockets lock every client of that
/// address out (on loopback, the readiness probe and `portcullis reload`).
#[tokio::test]
async fn the_admin_listener_bounds_its_connections_per_peer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let yaml = "listeners:\n  - { name: gw, bind: \"127.0.0.1:0\" }\nadmin: { bind: \"127.0.0.1:0\" }\n\
                routes:\n  - { name: r, match: { path_prefix: / }, static: { body: ok } }\n";
    let gw = Gateway::start(&load(yaml, Path::new("."))).await.unwrap();
    let admin = gw.admin_addr().unwrap();
    let from = async |source: [u8; 4]| {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind((std::net::Ipv4Addr::from(source), 0).into()).unwrap();
        socket.connect(admin).await.unwrap()
    };
    // The answer to `/healthz` on a new connection from `source`: `None` when closed unanswered.
    let health = async |source: [u8; 4]| {
        let mut s = from(source).await;
        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").await;
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await.expect("not held");
        (read.is_ok() && !answer.is_empty()).then(|| String::from_utf8_lossy(&answer).into_owned())
    };
    let mut held = Vec::new();
    for i in 0..16 {
        let mut s = from([127, 0, 0, 1]).await;
        // One half-sent head among them (a slow client is no request yet).
        if i == 1 {
            s.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        }
        held.push(s);
    }
    // Each new one from the address is served, and the oldest idle one closed for it.
    for oldest in 0..2 {
        let answer = health([127, 0, 0, 1]).await.expect("the 17th from one address is served");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), held[oldest].read_to_end(&mut rest)).await;
        assert!(matches!(read, Ok(Ok(0))), "connection {oldest} closed for room: {read:?} {rest:?}");
        // The address at its limit again.
        held.push(from([127, 0, 0, 1]).await);
    }
    // The newer ones are kept.
    held[15].write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), held[15].read_to_end(&mut answer)).await.unwrap().unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    let other = health([127, 0, 0, 2]).await.expect("another address is served");
    assert!(other.starts_with("HTTP/1.1 200"), "{other}");
    // The public listener serves on.
    assert_eq!(get(&format!("http://{}/", gw.addr("gw").unwrap()), &[]).await.text(), "ok");
}

/// Reloads run one at a time, and a request waiting for its turn keeps
/// its connection from being closed for room: at most four wait, the next
/// get 429 at once (sixteen kept waiting by a client asking again as each
/// answer came filled the address's places, and shut the probes out).
#[tokio::test]
async fn admin_reloads_waiting_for_their_turn_are_bounded() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let yaml = "listeners:\n  - { name: gw, bind: \"127.0.0.1:0\" }\nadmin: { bind: \"127.0.0.1:0\" }\n\
                routes:\n  - { name: r, match: { path_prefix: / }, static: { body: ok } }\n";
    let gw = Gateway::start(&load(yaml, Path::new("."))).await.unwrap();
    let admin = gw.admin_addr().unwrap();
    // Taken and never answered: every reload waits.
    let requests = gw.reload_requests();
    let mut waiting = Vec::new();
    for _ in 0..4 {
        let mut s = tokio::net::TcpStream::connect(admin).await.unwrap();
        s.write_all(b"POST /reload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n").await.unwrap();
        waiting.push(s);
    }
    // Until all four are queued (the reads below would race them).
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(admin).await.unwrap();
        s.write_all(b"POST /reload HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer))
            .await
            .expect("answered at once")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
        assert!(answer.starts_with("http/1.1 429") && answer.contains("retry-after: 1"), "{answer}");
    }
    let health = get(&format!("http://{admin}/healthz"), &[]).await;
    assert_eq!(health.status, 200);
    drop(requests);
    drop(waiting);
}

/// A chunked body read by `static` and `echo` is logged with the bytes
/// that came (it declares none: the log said 0).
#[tokio::test]
async fn bodies_local_answers_read_are_logged_with_their_size() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let h = start(
        "routes:\n  - { name: e, match: { path: /echo }, echo: {} }\n  - { name: s, match: { path: /s }, static: { body: ok } }\n",
        dir.path(),
    )
    .await;
    for path in ["/s", "/echo"] {
        let mut s = tokio::net::TcpStream::connect(h.addr("gw").unwrap()).await.unwrap();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n64\r\n{}\r\n0\r\n\r\n",
            "a".repeat(100)
        );
        s.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await.unwrap().unwrap();
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    }
    let lines = log_lines(&h, dir.path(), 2).await;
    for line in &lines {
        assert_eq!(line["http"]["request"]["body"]["bytes"], 100, "{line}");
    }
}

/// The `echo` responder's refusal of a body past its 1 MiB logs the bytes
/// it read (it logged 0, where a proxied route logs what it read).
#[tokio::test]
async fn an_echo_refused_for_its_size_logs_the_bytes_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let h = start("routes:\n  - { name: e, match: { path_prefix: /echo }, echo: {} }\n", dir.path()).await;
    let mut s = tokio::net::TcpStream::connect(h.addr("gw").unwrap()).await.unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n").await.unwrap();
    let chunk = vec![b'a'; 64 << 10];
    for _ in 0..17 {
        if s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await.is_err()
            || s.write_all(&chunk).await.is_err()
            || s.write_all(b"\r\n").await.is_err()
        {
            break;
        }
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 413"), "{}", String::from_utf8_lossy(&answer));
    let lines = log_lines(&h, dir.path(), 1).await;
    let bytes = lines[0]["http"]["request"]["body"]["bytes"].as_u64().unwrap_or(0);
    assert!(bytes > 1 << 20, "{}", lines[0]);
}

/// A target reached that ends the exchange before answering is said to
/// have broken off, not to be unreachable (the operator looks for another
/// cause): flag `UC`, its own detail.
#[tokio::test]
async fn an_upstream_that_closes_before_answering_broke_off() {
    let dir = tempfile::tempdir().unwrap();
    let up = crate::support::scripted::Scripted::start().await.addr;
    let body = format!(
        "upstreams:\n  s: {{ targets: [ \"http://{up}\" ] }}\nroutes:\n  - {{ name: s, match: {{ path_prefix: / }}, upstream: s }}\n"
    );
    let h = start(&body, dir.path()).await;
    let addr = h.addr("gw").unwrap();
    // The first request leaves a pooled connection; the target closes it at
    // the next (a POST: not sent again).
    let first = crate::support::raw(addr, "GET /flaky HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    let post = "POST /flaky HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi";
    let answer = crate::support::raw(addr, post).await;
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    assert!(answer.contains("the upstream service broke off without an answer"), "{answer}");
    let lines = log_lines(&h, dir.path(), 2).await;
    assert_eq!(lines[1]["portcullis"]["response_flag"], "UC", "{}", lines[1]);
}

/// An access log that cannot be written (a full disk: `/dev/full` answers
/// every write `ENOSPC`) costs lines, counted as dropped ones are, and
/// never a request.
#[tokio::test]
async fn lines_a_full_disk_refuses_are_counted_as_dropped() {
    let yaml = "listeners:\n  - { name: gw, bind: \"127.0.0.1:0\" }\nadmin: { bind: \"127.0.0.1:0\" }\n\
                access_log: { to: /dev/full }\nroutes:\n  - { name: r, match: { path: /r }, static: { status: 200 } }\n";
    let h = Gateway::start(&load(yaml, Path::new("."))).await.expect("gateway starts");
    for _ in 0..20 {
        assert_eq!(get(&url(&h, "/r"), &[]).await.status, 200);
    }
    h.flush_logs();
    let s = scrape_until(&h, |s| number(s, "portcullis_access_log_dropped_total", &[]) >= 20.0).await;
    assert_eq!(number(&s, "portcullis_access_log_dropped_total", &[]), 20.0);
}

/// A FIFO no process reads is refused at once (its `open` waited for a
/// reader: the start, or a reload on the thread that takes the signals,
/// hung for ever); one that a process reads gets the lines.
#[tokio::test]
async fn an_access_log_fifo_without_a_reader_is_refused_not_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("log.fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let yaml = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\naccess_log: {{ to: \"{}\" }}\n\
         routes:\n  - {{ name: r, match: {{ path: /r }}, static: {{ status: 200 }} }}\n",
        fifo.display()
    );
    let started = tokio::time::timeout(Duration::from_secs(10), Gateway::start(&load(&yaml, dir.path()))).await;
    let Ok(Err(e)) = started else { panic!("started, or still waiting, with no reader") };
    assert!(e.to_string().contains("no process reads"), "{e}");
    // With a reader, the lines come through it.
    let reader = std::thread::spawn({
        let fifo = fifo.clone();
        move || {
            use std::io::BufRead;
            let mut line = String::new();
            std::io::BufReader::new(std::fs::File::open(fifo).unwrap()).read_line(&mut line).unwrap();
            line
        }
    });
    let h = loop {
        // The reader's `open` waits for this writer, and this one needs it open first.
        match Gateway::start(&load(&yaml, dir.path())).await {
            Ok(h) => break h,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    assert_eq!(get(&url(&h, "/r"), &[]).await.status, 200);
    h.flush_logs();
    let line = tokio::task::spawn_blocking(move || reader.join().unwrap()).await.unwrap();
    assert!(line.contains("\"url\":{\"path\":\"/r\"}"), "{line}");
}
