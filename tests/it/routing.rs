//! Routing as a client sees it: precedence, methods, headers, versions,
//! deprecation, rewrites, redirects.

use crate::support::{Upstream, gateway, get};

const PRECEDENCE: &str = r#"
routes:
  - { name: root, match: { path_prefix: / }, static: { body: root } }
  - { name: users-prefix, match: { path_prefix: /users }, static: { body: users-prefix } }
  - { name: user-template, match: { path: "/users/{id}" }, static: { body: user-template } }
  - { name: files, match: { path: "/users/{id}/files/{*rest}" }, static: { body: files } }
  - { name: me, match: { path: /users/me }, static: { body: me } }
  - { name: wildcard-host, match: { host: "*.example.com", path_prefix: / }, static: { body: wildcard-host } }
  - { name: exact-host, match: { host: api.example.com, path_prefix: / }, static: { body: exact-host } }
"#;

#[tokio::test]
async fn most_specific_route_wins_whatever_the_order() {
    let gw = gateway(PRECEDENCE).await;
    for (host, path, expected) in [
        ("other", "/users/me", "me"),
        ("other", "/users/42", "user-template"),
        ("other", "/users/42/files/a/b.txt", "files"),
        ("other", "/users/42/posts", "users-prefix"),
        ("other", "/users", "users-prefix"),
        ("other", "/usersx", "root"),
        ("api.example.com", "/users/me", "exact-host"),
        ("www.example.com", "/users/me", "wildcard-host"),
        ("API.Example.COM:8080", "/x", "exact-host"),
    ] {
        let reply = get(&gw.url(path), &[("host", host)]).await;
        assert_eq!(reply.text(), expected, "{host}{path}");
    }
}

#[tokio::test]
async fn method_not_allowed_and_not_found_are_problems() {
    let gw = gateway(
        r#"
routes:
  - { name: read, match: { path: /items, methods: [GET] }, static: { body: read } }
  - { name: write, match: { path: /items, methods: [POST, PUT] }, static: { body: write } }
"#,
    )
    .await;
    let client = crate::support::http1_client();
    let req = http::Request::post(gw.url("/items")).body(Default::default()).unwrap();
    assert_eq!(crate::support::send(&client, req).await.text(), "write");
    let req = http::Request::delete(gw.url("/items")).body(Default::default()).unwrap();
    let reply = crate::support::send(&client, req).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET, HEAD, POST, PUT"));
    // HEAD goes where GET goes: the answer's head, no content.
    let req = http::Request::head(gw.url("/items")).body(Default::default()).unwrap();
    let head = crate::support::send(&client, req).await;
    assert_eq!((head.status.as_u16(), head.body.len(), head.header("content-length")), (200, 0, Some("4")));
    assert_eq!(reply.header("content-type"), Some("application/problem+json"));
    let missing = get(&gw.url("/nope"), &[]).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("content-type"), Some("application/problem+json"));
    let doc = missing.json();
    assert_eq!(doc["status"], 404);
    assert_eq!(doc["request_id"].as_str(), missing.header("x-request-id"));
}

#[tokio::test]
async fn header_conditions() {
    let gw = gateway(
        r#"
routes:
  - { name: stable, match: { path_prefix: /app }, static: { body: stable } }
  - { name: canary, match: { path_prefix: /app, headers: [ { name: X-Env, value: canary } ] }, static: { body: canary } }
  - { name: debug, match: { path_prefix: /app, methods: [GET], headers: [ { name: X-Debug } ] }, static: { body: debug } }
  - { name: in-stable, match: { path_prefix: /in }, static: { body: stable } }
  - { name: internal, match: { path_prefix: /in, headers: [ { name: X-Internal }, { name: X-Env, value: canary } ] }, static: { body: internal } }
  - { name: ua, match: { path_prefix: /app/ua, headers: [ { name: User-Agent, value: "Mozilla/5.0 (X11, Linux)" } ] }, static: { body: ua } }
"#,
    )
    .await;
    assert_eq!(get(&gw.url("/app/x"), &[]).await.text(), "stable");
    assert_eq!(get(&gw.url("/app/x"), &[("x-env", "canary")]).await.text(), "canary");
    assert_eq!(get(&gw.url("/app/x"), &[("x-env", "prod")]).await.text(), "stable");
    assert_eq!(get(&gw.url("/app/x"), &[("x-debug", "")]).await.text(), "debug");
    // Two lines that disagree (or a list): the service behind might read
    // either, so neither route takes it, the broader one included (400).
    for disagree in [&[("x-env", "canary"), ("x-env", "prod")][..], &[("x-env", "prod, canary")]] {
        let r = get(&gw.url("/app/x"), disagree).await;
        assert_eq!(r.status, 400, "{disagree:?}: {}", r.text());
        assert!(r.json()["detail"].as_str().unwrap().contains("`x-env` carries several values"), "{}", r.text());
    }
    assert_eq!(get(&gw.url("/app/x"), &[("x-env", "canary"), ("x-env", "canary")]).await.text(), "canary");
    // Lines that disagree without naming the route's value: no route of it, the broader one serves.
    assert_eq!(get(&gw.url("/app/x"), &[("x-env", "prod"), ("x-env", "dev")]).await.text(), "stable");
    // An empty item names nothing.
    assert_eq!(get(&gw.url("/app/x"), &[("x-env", "canary,")]).await.text(), "canary");
    // A route another condition of which is not met would not take it anyway.
    assert_eq!(get(&gw.url("/in/x"), &[("x-env", "canary, prod")]).await.text(), "stable");
    let both = [("x-internal", "1"), ("x-env", "canary, prod")];
    assert_eq!(get(&gw.url("/in/x"), &both).await.status, 400);
    // A value holding a comma, beside another value, on two lines or one.
    let ua = "Mozilla/5.0 (X11, Linux)";
    assert_eq!(get(&gw.url("/app/ua"), &[("user-agent", ua)]).await.text(), "ua");
    assert_eq!(get(&gw.url("/app/ua"), &[("user-agent", ua), ("user-agent", "evil")]).await.status, 400);
    assert_eq!(get(&gw.url("/app/ua"), &[("user-agent", "Mozilla/5.0 (X11, Linux), evil")]).await.status, 400);
    assert_eq!(get(&gw.url("/app/ua"), &[("user-agent", "curl/8")]).await.text(), "stable");
}

#[tokio::test]
async fn api_versions_by_path_header_and_media_type() {
    let gw = gateway(
        r#"
routes:
  - { name: v1, match: { path: /orders, version: { header: Accept-Version, value: "1", default: true } }, static: { body: v1 } }
  - { name: v2, match: { path: /orders, version: { header: Accept-Version, value: "2" } }, static: { body: v2 } }
  - { name: m1, match: { path: /carts, version: { accept_param: version, value: "1" } }, static: { body: m1 } }
  - { name: m2, match: { path: /carts, version: { accept_param: version, value: "2" } }, static: { body: m2 } }
  - { name: p3, match: { path_prefix: /orders, version: { path_prefix: /v3 } }, static: { body: p3 } }
"#,
    )
    .await;
    assert_eq!(get(&gw.url("/orders"), &[]).await.text(), "v1");
    assert_eq!(get(&gw.url("/orders"), &[("accept-version", "1")]).await.text(), "v1");
    assert_eq!(get(&gw.url("/orders"), &[("accept-version", "2")]).await.text(), "v2");
    assert_eq!(get(&gw.url("/orders"), &[("accept-version", "9")]).await.status, 404);
    // Other spellings of the version are that version (a service reads `2.0` as 2).
    for spelled in ["2.0", "\"2\"", "02", "v2"] {
        assert_eq!(get(&gw.url("/orders"), &[("accept-version", spelled)]).await.text(), "v2", "{spelled}");
    }
    assert_eq!(get(&gw.url("/orders"), &[("accept-version", "2, 2.0")]).await.text(), "v2");
    // Two versions in one request: the service might read the other one.
    let both = [("accept-version", "1"), ("accept-version", "2")];
    assert_eq!(get(&gw.url("/orders"), &both).await.status, 400);
    assert_eq!(get(&gw.url("/orders"), &[("accept-version", "1, 2")]).await.status, 400);
    assert_eq!(get(&gw.url("/orders"), &[("accept-version", "2,")]).await.text(), "v2");
    // Two versions neither route serves: no version route takes it (404 here, no broader route).
    assert_eq!(get(&gw.url("/orders"), &[("accept-version", "7, 8")]).await.status, 404);
    let accept = |v: &'static str| [("accept", v)];
    assert_eq!(get(&gw.url("/carts"), &accept("application/json; version=2")).await.text(), "m2");
    assert_eq!(get(&gw.url("/carts"), &accept("application/json;version=1")).await.text(), "m1");
    assert_eq!(get(&gw.url("/carts"), &[]).await.status, 404);
    assert_eq!(get(&gw.url("/carts"), &accept(r#"application/json; p="a;version=2""#)).await.status, 404);
    assert_eq!(get(&gw.url("/v3/orders/7"), &[]).await.text(), "p3");
}

#[tokio::test]
async fn deprecated_route_announces_its_sunset() {
    let gw = gateway(
        r#"
routes:
  - name: old
    match: { path: /old }
    static: { body: old }
    deprecated: { since: 2026-01-01, sunset: "2027-06-30T12:00:00Z", link: "https://docs.example.com/migrate" }
  - { name: new, match: { path: /new }, static: { body: new } }
"#,
    )
    .await;
    let old = get(&gw.url("/old"), &[]).await;
    assert_eq!(old.header("deprecation"), Some("@1767225600"));
    assert_eq!(old.header("sunset"), Some("Wed, 30 Jun 2027 12:00:00 GMT"));
    assert_eq!(old.header("link"), Some("<https://docs.example.com/migrate>; rel=\"deprecation\"; type=\"text/html\""));
    let new = get(&gw.url("/new"), &[]).await;
    assert!(new.header("deprecation").is_none());
}

#[tokio::test]
async fn rewrites_change_what_the_upstream_sees() {
    let up = Upstream::start("svc").await;
    let gw = gateway(&format!(
        r#"
upstreams:
  svc: {{ targets: [ "{url}" ] }}
routes:
  - {{ name: strip, match: {{ path_prefix: /v1 }}, upstream: svc, rewrite: {{ strip_prefix: /v1 }} }}
  - {{ name: replace, match: {{ path_prefix: /api }}, upstream: svc, rewrite: {{ replace_prefix: {{ from: /api, to: /internal/api }} }} }}
  - {{ name: template, match: {{ path: "/u/{{id}}/f/{{*rest}}" }}, upstream: svc, rewrite: {{ path: "/users/{{id}}/files/{{rest}}" }} }}
  - {{ name: host, match: {{ path_prefix: /h }}, upstream: svc, rewrite: {{ host: internal.svc }} }}
  - {{ name: target-host, match: {{ path_prefix: /t }}, upstream: svc, preserve_host: false }}
  - name: headers
    match: {{ path_prefix: /hd }}
    upstream: svc
    request_headers: {{ set: {{ X-Added: yes-please }}, remove: [ X-Remove-Me ] }}
    response_headers: {{ set: {{ X-From-Gateway: "1" }}, remove: [ Content-Type ] }}
"#,
        url = up.url()
    ))
    .await;
    let path = |r: &crate::support::Reply| r.json()["path"].as_str().unwrap().to_string();
    assert_eq!(path(&get(&gw.url("/v1/users/1?x=1"), &[]).await), "/users/1");
    assert_eq!(get(&gw.url("/v1/users/1?x=1"), &[]).await.json()["query"], "x=1");
    assert_eq!(path(&get(&gw.url("/v1"), &[]).await), "/");
    assert_eq!(path(&get(&gw.url("/api/orders"), &[]).await), "/internal/api/orders");
    assert_eq!(path(&get(&gw.url("/u/7/f/a/b.txt"), &[]).await), "/users/7/files/a/b.txt");
    let host = |r: &crate::support::Reply| r.json()["headers"]["host"].as_str().unwrap().to_string();
    assert_eq!(host(&get(&gw.url("/h"), &[("host", "public.example")]).await), "internal.svc");
    assert_eq!(host(&get(&gw.url("/x/../t"), &[("host", "public.example")]).await), up.addr.to_string());
    assert_eq!(host(&get(&gw.url("/v1/a"), &[("host", "public.example")]).await), "public.example");
    let reply = get(&gw.url("/hd"), &[("x-remove-me", "1")]).await;
    assert_eq!(reply.header("x-from-gateway"), Some("1"));
    assert!(reply.header("content-type").is_none());
    let seen = reply.json();
    assert_eq!(seen["headers"]["x-added"], "yes-please");
    assert!(seen["headers"].get("x-remove-me").is_none());
}

#[tokio::test]
async fn redirects_use_captures_and_keep_the_query() {
    let gw = gateway(
        r#"
routes:
  - { name: moved, match: { path: "/docs/{page}" }, redirect: { to: "https://new.example.com/guide/{page}", status: 301 } }
  - { name: search, match: { path: "/rx/{q}" }, redirect: { to: "https://d.example.com/search?p={q}&safe=1", keep_query: false } }
  - { name: anchor, match: { path: /b }, redirect: { to: "/new#frag" } }
  - { name: both, match: { path: /c }, redirect: { to: "https://x.example/new?a=1#f", status: 307 } }
  - { name: query, match: { path: /a }, redirect: { to: "/new?a=1" } }
"#,
    )
    .await;
    // The client's query goes before the target's fragment (RFC 3986: path,
    // query, fragment); an empty one adds nothing.
    for (sent, location) in [
        ("/b?b=2", "/new?b=2#frag"),
        ("/c?b=2", "https://x.example/new?a=1&b=2#f"),
        ("/a?", "/new?a=1"),
        ("/a?b=2", "/new?a=1&b=2"),
        ("/b", "/new#frag"),
    ] {
        assert_eq!(get(&gw.url(sent), &[]).await.header("location"), Some(location), "{sent}");
    }
    let reply = get(&gw.url("/docs/intro?lang=en"), &[]).await;
    assert_eq!(reply.status, 301);
    assert_eq!(reply.header("location"), Some("https://new.example.com/guide/intro?lang=en"));
    // A capture in the target's query is one value: an encoded `&`/`=` adds no parameter.
    for sent in ["/rx/a%26safe%3D0", "/rx/a&safe=0"] {
        let reply = get(&gw.url(sent), &[]).await;
        assert_eq!(reply.header("location"), Some("https://d.example.com/search?p=a%26safe%3D0&safe=1"), "{sent}");
    }
}

/// A parameter inside a segment (`{name}.json`) never captures `.` or
/// `..`: a template would turn it into a dot segment of the rewritten
/// path, the redirect target or an aggregate call (`/reports/...json` into
/// `/internal/reports/../data`).
#[tokio::test]
async fn a_mixed_segment_parameter_is_never_a_dot_segment() {
    let up = Upstream::start("svc").await;
    let gw = gateway(&format!(
        r#"
upstreams:
  svc: {{ targets: [ "{url}" ] }}
routes:
  - {{ name: report, match: {{ path: "/reports/{{name}}.json" }}, upstream: svc, rewrite: {{ path: "/internal/reports/{{name}}/data" }} }}
  - {{ name: jobs, match: {{ path: "/jobs/{{id}}:cancel" }}, redirect: {{ to: "/internal/jobs/{{id}}/cancel" }} }}
"#,
        url = up.url()
    ))
    .await;
    let seen = get(&gw.url("/reports/q3.json"), &[]).await;
    assert_eq!(seen.json()["path"], "/internal/reports/q3/data");
    for path in ["/reports/...json", "/reports/%2e%2e.json", "/reports/..json", "/jobs/..:cancel", "/jobs/.:cancel"] {
        let reply = get(&gw.url(path), &[]).await;
        assert_eq!(reply.status, 404, "{path}: {:?} {}", reply.header("location"), reply.text());
    }
}

/// A route's path is matched as requests arrive once normalized (as Kong
/// 3 does): written with raw non-ASCII, lower-case hex or an escaped
/// unreserved character, a protected route still takes its requests,
/// instead of leaving them to a broader open route (review of December
/// 2026). A prefix rewrite written the same way still strips.
#[tokio::test]
async fn route_paths_are_matched_as_requests_arrive() {
    let up = Upstream::start("up").await;
    let gw = gateway(&format!(
        r#"
upstreams: {{ up: {{ targets: [ "{}" ] }} }}
routes:
  - {{ name: cafe, match: {{ path_prefix: "/caf%c3%a9" }}, static: {{ status: 403, body: closed }} }}
  - {{ name: naive, match: {{ path_prefix: "/naïve" }}, upstream: up, rewrite: {{ strip_prefix: "/naïve" }} }}
  - {{ name: admin, match: {{ path: "/%61dmin2/{{id}}" }}, static: {{ status: 403, body: closed }} }}
  - {{ name: colon, match: {{ path_prefix: "/x%3Ay" }}, static: {{ status: 403, body: closed }} }}
  - {{ name: all, match: {{ path_prefix: / }}, upstream: up }}
"#,
        up.url()
    ))
    .await;
    for path in ["/caf%C3%A9/secret", "/caf%c3%a9/secret", "/admin2/7", "/%61dmin2/7", "/x:y/z", "/x%3Ay/z"] {
        assert_eq!(get(&gw.url(path), &[]).await.status, 403, "{path}");
    }
    let seen = get(&gw.url("/na%C3%AFve/x"), &[]).await;
    assert_eq!(seen.json()["path"], "/x", "matched by `naive` and stripped");
    assert_eq!(up.hits(), 1);
}

/// With `merge_slashes: false`, what goes upstream never begins with `//`
/// (Node's `new URL(path, base)` reads `//evil.example/x` as a host and the
/// path `/x`): a leading run of slashes is one, before routing, and a
/// rewrite's result is cut to one slash. Inner runs stay.
#[tokio::test]
async fn no_forwarded_path_begins_with_two_slashes() {
    let up = Upstream::start("up").await;
    let gw = gateway(&format!(
        r#"
path_normalization: {{ merge_slashes: false }}
warnings: {{ allow: [ weakened-normalization ] }}
upstreams: {{ up: {{ targets: [ "{}" ] }} }}
routes:
  - {{ name: svc, match: {{ path_prefix: /svc }}, upstream: up, rewrite: {{ strip_prefix: /svc }} }}
  - {{ name: files, match: {{ path: "/files/{{*rest}}" }}, upstream: up, rewrite: {{ path: "/{{rest}}" }} }}
  - {{ name: agg, match: {{ path: "/agg/{{*rest}}" }}, aggregate: {{ calls: {{ a: {{ upstream: up, path: "/{{rest}}" }} }} }} }}
  - {{ name: all, match: {{ path_prefix: / }}, upstream: up }}
"#,
        up.url()
    ))
    .await;
    for (sent, forwarded) in [
        ("/svc//evil.example/x", "/evil.example/x"),
        ("/svc///x", "/x"),
        ("/files//evil.example/x", "/evil.example/x"),
        ("//evil.example/x", "/evil.example/x"),
        ("/a//b", "/a//b"),
    ] {
        let seen = get(&gw.url(sent), &[]).await;
        assert_eq!(seen.json()["path"], forwarded, "{sent}");
    }
    // An aggregate call's path too.
    let seen = get(&gw.url("/agg//evil.example/x"), &[]).await;
    assert_eq!(seen.json()["a"]["path"], "/evil.example/x", "{}", seen.text());
}

/// With `merge_slashes: false`, a redirect whose parameter starts with an
/// empty segment does not become a scheme-relative `//host` target.
#[tokio::test]
async fn a_redirect_never_points_at_another_host_by_accident() {
    let gw = gateway(
        r#"
path_normalization: { merge_slashes: false }
warnings: { allow: [ weakened-normalization ] }
routes:
  - { name: go, match: { path: "/go/{*rest}" }, redirect: { to: "/{rest}" } }
"#,
    )
    .await;
    let reply = get(&gw.url("/go//evil.example/x"), &[]).await;
    assert_eq!(reply.header("location"), Some("/evil.example/x"));
}

/// The HEAD of an authenticated GET route is that route's, not a public
/// catch-all's: services answer HEAD with their GET handler.
#[tokio::test]
async fn head_of_a_protected_get_route_is_not_taken_by_a_public_catch_all() {
    let gw = gateway(
        r#"
auth: { keys: { api_key: { header: X-API-Key } } }
routes:
  - { name: admin-read, match: { path_prefix: /admin, methods: [GET] }, static: { body: secret }, authenticate: [keys] }
  - { name: site, match: { path_prefix: / }, static: { body: public } }
"#,
    )
    .await;
    let client = crate::support::http1_client();
    let head = |path: &str| {
        let req = http::Request::head(gw.url(path)).body(http_body_util::Full::default()).unwrap();
        crate::support::send(&client, req)
    };
    assert_eq!(head("/admin/users").await.status, 401);
    assert_eq!(get(&gw.url("/admin/users"), &[]).await.status, 401);
    assert_eq!(head("/about").await.status, 200);
    assert_eq!(get(&gw.url("/about"), &[]).await.text(), "public");
}

/// `match.listeners`: a route exists only on the listeners it names, over
/// HTTP/1.1 and HTTP/2 alike; elsewhere a 404 (or another route), and no
/// method of it in a 405's `Allow`.
#[tokio::test]
async fn a_route_is_served_only_on_its_listeners() {
    let yaml = r#"
listeners:
  - { name: public, bind: "127.0.0.1:0" }
  - { name: internal, bind: "127.0.0.1:0" }
routes:
  - { name: admin, match: { path_prefix: /admin, listeners: [ internal ] }, static: { body: admin } }
  - { name: status, match: { path: /status, methods: [ DELETE ], listeners: [ internal ] }, static: { body: deleted } }
  - { name: status-read, match: { path: /status, methods: [ GET ] }, static: { body: status } }
  - { name: orders-internal, match: { path: /orders, listeners: [ internal ] }, static: { body: orders-internal } }
  - { name: orders, match: { path: /orders }, static: { body: orders } }
apis:
  - { name: intapi, openapi: int.yaml, upstream: up, base_path: /intapi, docs: /intapi/docs, listeners: [ internal ] }
"#;
    // An API's operations, docs and all, are scoped the same way.
    let up = crate::support::Upstream::start("up").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("int.yaml"),
        "openapi: 3.0.3\ninfo: { title: t, version: '1' }\npaths:\n  /secret:\n    get: { responses: {} }\n",
    )
    .unwrap();
    let yaml = format!("upstreams:\n  up: {{ targets: [ \"{}\" ] }}\n{yaml}", up.url());
    let gw = portcullis::Gateway::start(&crate::support::load(&yaml, dir.path())).await.unwrap();
    let (public, internal) = (gw.addr("public").unwrap(), gw.addr("internal").unwrap());
    let on = |addr: std::net::SocketAddr, path: &str| format!("http://{addr}{path}");

    let reply = get(&on(internal, "/admin/users"), &[]).await;
    assert_eq!((reply.status.as_u16(), reply.text()), (200, "admin".to_string()));
    let reply = get(&on(public, "/admin/users"), &[]).await;
    assert_eq!(reply.status.as_u16(), 404, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/problem+json"));

    // HTTP/2 (h2c) on the public listener: the same table.
    let h2 = crate::support::h2c_client();
    let req = http::Request::get(on(public, "/admin/users")).body(Default::default()).unwrap();
    assert_eq!(crate::support::send(&h2, req).await.status.as_u16(), 404);
    let req = http::Request::get(on(internal, "/admin/users")).body(Default::default()).unwrap();
    assert_eq!(crate::support::send(&h2, req).await.text(), "admin");

    // The internal DELETE is no method of /status on the public listener.
    let client = crate::support::http1_client();
    let req = http::Request::delete(on(public, "/status")).body(Default::default()).unwrap();
    let reply = crate::support::send(&client, req).await;
    assert_eq!(reply.status.as_u16(), 405);
    assert_eq!(reply.header("allow"), Some("GET, HEAD"));
    let req = http::Request::delete(on(internal, "/status")).body(Default::default()).unwrap();
    assert_eq!(crate::support::send(&client, req).await.text(), "deleted");

    // One path, a route per listener: each listener its own.
    assert_eq!(get(&on(internal, "/orders"), &[]).await.text(), "orders-internal");
    assert_eq!(get(&on(public, "/orders"), &[]).await.text(), "orders");
    for path in ["/intapi/secret", "/intapi/docs", "/intapi/docs/openapi.json"] {
        assert_eq!(get(&on(internal, path), &[]).await.status.as_u16(), 200, "{path}");
        assert_eq!(get(&on(public, path), &[]).await.status.as_u16(), 404, "{path}");
    }
}

/// What the config names the `Host` header (a route's `headers`
/// condition, a rate-limit key) is `:authority` on HTTP/2, as NGINX makes
/// a `Host` of it: a route matched on `Host` fell through to the broader
/// route over HTTP/2 (curl, browsers), and a key on it was missing.
#[tokio::test]
async fn a_host_header_condition_reads_the_http2_authority() {
    use crate::support::h2raw::{H2Conn, Outcome};
    let gw = gateway(
        r#"
routes:
  - name: internal
    match: { path_prefix: /a, headers: [ { name: Host, value: internal.example.com } ] }
    static: { status: 201, body: internal }
  - { name: rest, match: { path_prefix: / }, static: { status: 202, body: rest } }
"#,
    )
    .await;
    let ask = |authority: &'static [u8]| async move {
        let mut conn = H2Conn::connect(gw.addr).await;
        let fields: &[(&[u8], &[u8])] =
            &[(b":method", b"GET"), (b":scheme", b"http"), (b":authority", authority), (b":path", b"/a")];
        conn.headers(1, fields, true).await;
        conn.outcome(1).await
    };
    assert_eq!(ask(b"internal.example.com").await, Outcome::Status(201));
    assert_eq!(ask(b"other.example.com").await, Outcome::Status(202));
    // HTTP/1.1 alike.
    let r = get(&gw.url("/a"), &[("host", "internal.example.com")]).await;
    assert_eq!(r.status.as_u16(), 201);
}
