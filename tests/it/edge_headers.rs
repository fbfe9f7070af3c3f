//! Security headers and CORS on responses.

use http::Request;

use crate::support::{Upstream, gateway, get, h2c_client, http1_client, send};

#[tokio::test]
async fn security_headers_on_every_response() {
    let (_up, gw) = behind_svc(
        r#"
  - { name: api, match: { path_prefix: /api }, upstream: svc }
  - name: page
    match: { path_prefix: /page }
    static: { body: "<html></html>", headers: { server: MyServer/1.0, x-powered-by: PHP } }
    security_headers: { frame_options: SAMEORIGIN, content_security_policy: "default-src 'self'", set: { Permissions-Policy: "camera=()" } }
  - { name: raw, match: { path_prefix: /raw }, static: { body: raw }, security_headers: { enabled: false } }
"#,
    )
    .await;
    for path in ["/api/x", "/missing"] {
        let r = get(&gw.url(path), &[]).await;
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{path}");
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(r.header("content-security-policy"), Some("default-src 'none'; frame-ancestors 'none'"), "{path}");
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{path}");
    }
    let page = get(&gw.url("/page"), &[]).await;
    assert_eq!(page.header("x-frame-options"), Some("SAMEORIGIN"));
    assert_eq!(page.header("content-security-policy"), Some("default-src 'self'"));
    assert_eq!(page.header("permissions-policy"), Some("camera=()"));
    assert!(page.header("server").is_none() && page.header("x-powered-by").is_none());
    let raw = get(&gw.url("/raw"), &[]).await;
    assert!(raw.header("x-frame-options").is_none());
}

/// An upstream's banner headers go, its own security headers stay (unless
/// the route sets them), and the request id is the gateway's: the same
/// whether the client speaks HTTP/1.1 (the upstream's lines are written as
/// received, with the edits on the way) or HTTP/2 (they go through the map).
#[tokio::test]
async fn upstream_headers_are_cleaned_for_every_client_protocol() {
    let (_up, gw) = behind_svc(
        r#"
  - { name: api, match: { path_prefix: /api }, upstream: svc, rewrite: { strip_prefix: /api } }
  - name: strict
    match: { path_prefix: /strict }
    upstream: svc
    rewrite: { strip_prefix: /strict }
    security_headers: { set: { x-frame-options: DENY, vary: "*" }, remove: [ server ] }
"#,
    )
    .await;
    for (protocol, client) in [("http/1.1", http1_client()), ("h2c", h2c_client())] {
        let r = send(&client, Request::get(gw.url("/api/branded")).body(Default::default()).unwrap()).await;
        assert_eq!(r.status, 200, "{protocol}");
        assert_eq!(r.text(), "branded", "{protocol}");
        assert!(r.header("server").is_none() && r.header("x-powered-by").is_none(), "{protocol}: {:?}", r.headers);
        assert_eq!(r.header("x-frame-options"), Some("SAMEORIGIN"), "{protocol}: the upstream's own value stays");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{protocol}");
        assert_eq!(r.header("vary"), Some("Accept"), "{protocol}");
        let ids: Vec<_> = r.headers.get_all("x-request-id").iter().collect();
        assert_eq!(ids.len(), 1, "{protocol}: {ids:?}");
        assert_ne!(ids[0], "upstream-id", "{protocol}: the request id is the gateway's");

        let r = send(&client, Request::get(gw.url("/strict/branded")).body(Default::default()).unwrap()).await;
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{protocol}: `set` replaces the upstream's");
        // `Vary` is added to (the service's stays: each field it varies on still counts).
        assert_eq!(r.headers.get_all("vary").iter().collect::<Vec<_>>(), ["Accept", "*"], "{protocol}");
        // This route removes only `server`: the upstream's X-Powered-By stays.
        assert!(r.header("server").is_none(), "{protocol}");
        assert_eq!(r.header("x-powered-by"), Some("Express"), "{protocol}");

        // An empty value protects nothing: the default takes its place.
        let r = send(&client, Request::get(gw.url("/api/blank-defaults")).body(Default::default()).unwrap()).await;
        assert_eq!(r.text(), "blank", "{protocol}");
        assert_eq!(r.headers.get_all("x-frame-options").iter().collect::<Vec<_>>(), ["DENY"], "{protocol}");
        assert_eq!(r.headers.get_all("x-content-type-options").iter().collect::<Vec<_>>(), ["nosniff"], "{protocol}");
    }
}

/// A `Vary` in the top-level `security_headers.set` is added to each
/// answer's, as a route's: it replaced CORS's `Origin` (a shared cache then
/// handed a copy without grants to an allowed origin) and the route's own.
#[tokio::test]
async fn a_vary_set_for_every_route_keeps_the_answers_own() {
    let up = Upstream::start("svc").await;
    let gw = gateway(&format!(
        r#"
security_headers: {{ set: {{ Vary: Accept-Encoding }} }}
upstreams:
  svc: {{ targets: [ "{}" ] }}
routes:
  - name: list
    match: {{ path_prefix: /list }}
    upstream: svc
    cors: {{ allow_origins: [ "https://a.example.com" ], allow_credentials: true }}
    response_headers: {{ set: {{ Vary: Accept-Version }} }}
"#,
        up.url()
    ))
    .await;
    let vary = |r: &crate::support::Reply| {
        r.headers.get_all("vary").iter().map(|v| v.to_str().unwrap().to_string()).collect::<Vec<_>>().join(", ")
    };
    let plain = get(&gw.url("/list/x"), &[]).await;
    assert_eq!(vary(&plain), "Accept-Version, Origin, Accept-Encoding");
    let granted = send(&http1_client(), preflight(gw.url("/list/x"), "https://a.example.com", "GET", "")).await;
    assert_eq!(granted.status, 204);
    assert_eq!(
        vary(&granted),
        "Origin, Access-Control-Request-Method, Access-Control-Request-Headers, Accept-Version, Accept-Encoding"
    );
}

/// A route that lets every origin in answers every request alike, with
/// `Origin` or without: a copy a shared cache kept for a same-origin
/// request (no grant, no `Vary`) was served to cross-origin pages.
#[tokio::test]
async fn a_cors_route_open_to_every_origin_answers_alike() {
    let (_up, gw) = behind_svc(
        r#"
  - name: open
    match: { path_prefix: /open }
    upstream: svc
    cors: { allow_origins: [ "*" ], expose_headers: [ X-Total ] }
"#,
    )
    .await;
    for origin in [None, Some("https://app.example.com"), Some("null")] {
        let headers: Vec<_> = origin.map(|o| ("origin", o)).into_iter().collect();
        let r = get(&gw.url("/open/x"), &headers).await;
        assert_eq!(r.header("access-control-allow-origin"), Some("*"), "{origin:?}");
        assert_eq!(r.header("access-control-expose-headers"), Some("X-Total"), "{origin:?}");
        assert!(!r.headers.get_all("vary").iter().any(|v| v == "Origin"), "{origin:?}: {:?}", r.headers);
    }
}

/// A HEAD preflight is answered for the route the real HEAD would take (a
/// GET route's), not routed on past it to a catch-all without `cors`,
/// whose service then got the OPTIONS. A route's `Vary` adds to the
/// preflight answer's and to the service's, replacing neither.
#[tokio::test]
async fn a_head_preflight_is_the_get_routes_and_a_routes_vary_adds() {
    let (up, gw) = behind_svc(
        r#"
  - name: m
    match: { path_prefix: /m, methods: [ GET ] }
    upstream: svc
    rewrite: { strip_prefix: /m }
    cors: { allow_origins: [ "https://app.example.com" ], allow_methods: [ GET ], allow_headers: [ Authorization ] }
    response_headers: { set: { Vary: Accept-Version } }
  - name: n
    match: { path_prefix: /n, methods: [ GET ] }
    upstream: svc
    cors: { allow_origins: [ "https://app.example.com" ], allow_methods: [ GET, HEAD ] }
  - { name: rest, match: { path_prefix: / }, upstream: svc }
"#,
    )
    .await;
    let client = http1_client();
    // HEAD is CORS-safelisted: judged by its headers, a header `m` does not allow.
    let refused = send(&client, preflight(gw.url("/m/x"), "https://app.example.com", "HEAD", "x-other")).await;
    assert_eq!(refused.status, 403, "{:?}", refused.headers);
    let headed = send(&client, preflight(gw.url("/m/x"), "https://app.example.com", "HEAD", "authorization")).await;
    assert_eq!(headed.status, 204, "{:?}", headed.headers);
    assert_eq!(up.hits(), 0, "a preflight never reaches the service");
    let vary: Vec<_> = refused.headers.get_all("vary").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    assert_eq!(
        vary.join(", "),
        "Origin, Access-Control-Request-Method, Access-Control-Request-Headers, Accept-Version"
    );
    let granted = send(&client, preflight(gw.url("/n/x"), "https://app.example.com", "HEAD", "")).await;
    assert_eq!(granted.status, 204, "{:?}", granted.headers);
    assert_eq!(up.hits(), 0);
    let actual = get(&gw.url("/m/blank-defaults"), &[("origin", "https://app.example.com")]).await;
    assert_eq!(actual.text(), "blank");
    let vary: Vec<_> = actual.headers.get_all("vary").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    assert_eq!(vary.join(", "), "Accept-Encoding, Accept-Version, Origin");
}

/// A gateway in front of an upstream `svc` (an echoing server), with `routes`
/// (YAML list items).
async fn behind_svc(routes: &str) -> (Upstream, crate::support::Gateway1) {
    let up = Upstream::start("svc").await;
    let gw = gateway(&format!("upstreams:\n  svc: {{ targets: [ \"{}\" ] }}\nroutes:\n{routes}", up.url())).await;
    (up, gw)
}

/// A CORS preflight: `OPTIONS` from `origin`, asking for `method` with `headers`.
fn preflight(url: String, origin: &str, method: &str, headers: &str) -> Request<http_body_util::Full<bytes::Bytes>> {
    Request::options(url)
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", headers)
        .body(Default::default())
        .unwrap()
}

/// A preflight carries none of the headers it announces: a route that
/// matches on one of them (a version header, `headers`) answers it when the
/// preflight names that header, or browsers could never call the route.
#[tokio::test]
async fn a_preflight_reaches_routes_that_match_on_the_headers_it_announces() {
    let (up, gw) = behind_svc(
        r#"
  - name: v2
    match: { path_prefix: /api, version: { header: Api-Version, value: "2" } }
    upstream: svc
    cors: { allow_origins: [ "https://app.example.com" ], allow_headers: [ Api-Version ] }
  - name: debug
    match: { path_prefix: /dbg, headers: [ { name: X-Debug, value: "1" } ] }
    upstream: svc
    cors: { allow_origins: [ "https://app.example.com" ], allow_headers: [ X-Debug, Content-Type ] }
"#,
    )
    .await;
    let client = http1_client();
    let preflight = |path: &str, headers: &str| preflight(gw.url(path), "https://app.example.com", "GET", headers);
    for (path, headers) in [("/api/x", "api-version"), ("/dbg/x", "content-type, X-Debug")] {
        let r = send(&client, preflight(path, headers)).await;
        assert_eq!(r.status, 204, "{path}");
        assert_eq!(r.header("access-control-allow-origin"), Some("https://app.example.com"), "{path}");
    }
    // Not even announced: still the one route such a request could reach.
    assert_eq!(send(&client, preflight("/dbg/x", "content-type")).await.status, 204);
    assert_eq!(up.hits(), 0, "preflights never reach the upstream");
    // The real requests still need the values.
    assert_eq!(get(&gw.url("/api/x"), &[("api-version", "2")]).await.status, 200);
    assert_eq!(get(&gw.url("/api/x"), &[("api-version", "1")]).await.status, 404);
}

/// A preflight is for every route its real request could reach: one route
/// matching on an announced header cannot grant it for a broader route
/// that the real request reaches with another value of that header.
#[tokio::test]
async fn a_preflight_is_granted_only_if_every_route_the_request_could_reach_grants_it() {
    let (up, gw) = behind_svc(
        r#"
  - name: partner
    match: { path_prefix: /api, headers: [ { name: X-Partner, value: letmein } ] }
    upstream: svc
    cors: { allow_origins: [ "*" ], allow_methods: [ GET, DELETE ], allow_headers: [ X-Partner ] }
  - name: internal
    match: { path_prefix: /api }
    upstream: svc
    cors: { allow_origins: [ "https://app.example.com" ], allow_methods: [ GET, DELETE ], allow_headers: [ X-Partner ] }
  - name: beta
    match: { path_prefix: /beta, headers: [ { name: X-Beta, value: "1" } ] }
    upstream: svc
    cors: { allow_origins: [ "*" ], allow_headers: [ X-Beta ] }
  - { name: beta-rest, match: { path_prefix: /beta }, upstream: svc }
  # A default version first, granting more than its sibling does.
  - name: v1
    match: { path_prefix: /reports, version: { header: Api-Version, value: "1", default: true } }
    upstream: svc
    cors: { allow_origins: [ "https://app.example.com" ], allow_methods: [ GET, DELETE ], allow_headers: [ Api-Version ] }
  - name: v2
    match: { path_prefix: /reports, version: { header: Api-Version, value: "2" } }
    upstream: svc
    cors: { allow_origins: [ "https://other.example.com" ], allow_methods: [ GET ] }
  # Conditions on headers a browser never announces (it sets their values itself).
  - name: typed
    match: { path_prefix: /ct, headers: [ { name: Content-Type, value: text/plain } ] }
    upstream: svc
    cors: { allow_origins: [ "https://other.example.com" ], allow_methods: [ GET ] }
  - name: untyped
    match: { path_prefix: /ct }
    upstream: svc
    cors: { allow_origins: [ "https://app.example.com" ], allow_methods: [ GET, DELETE ] }
  - name: accept-v2
    match: { path_prefix: /search, version: { accept_param: version, value: "2" } }
    upstream: svc
    cors: { allow_origins: [ "https://other.example.com" ], allow_methods: [ GET ] }
  - name: accept-any
    match: { path_prefix: /search }
    upstream: svc
    cors: { allow_origins: [ "https://app.example.com" ], allow_methods: [ GET, DELETE ] }
  # A HEAD: the route listing HEAD outranks the GET route taking it.
  - name: h-get
    match: { path: /h, methods: [ GET ] }
    upstream: svc
    cors: { allow_origins: [ "https://app.example.com" ], allow_methods: [ GET, HEAD ], allow_headers: [ X-Foo ] }
  - name: h-head
    match: { path: /h, methods: [ HEAD ] }
    upstream: svc
    cors: { allow_origins: [ "https://other.example.com" ], allow_methods: [ HEAD ], allow_headers: [ X-Foo ] }
"#,
    )
    .await;
    let client = http1_client();
    let preflight = |path: &str, origin: &str, headers: &str| preflight(gw.url(path), origin, "DELETE", headers);
    // `internal` takes the DELETE with any other X-Partner: it refuses this origin.
    let evil = send(&client, preflight("/api/orders/1", "https://evil.example", "x-partner")).await;
    assert_eq!(evil.status, 403);
    assert!(evil.header("access-control-allow-origin").is_none());
    // An origin both allow: granted.
    let app = send(&client, preflight("/api/orders/1", "https://app.example.com", "x-partner")).await;
    assert_eq!(app.status, 204);
    // Whatever header values the page sends, every route they could reach must grant it.
    for (path, headers) in [("/reports/7", "api-version"), ("/ct/x", "content-type"), ("/search/x", "")] {
        let r = send(&client, preflight(path, "https://app.example.com", headers)).await;
        assert_eq!(r.status, 403, "{path}: another route with other values forbids it");
    }
    let head = send(&client, self::preflight(gw.url("/h"), "https://app.example.com", "HEAD", "x-foo")).await;
    assert_eq!(head.status, 403, "the HEAD goes to the route listing HEAD, which forbids it");
    // A route the real request could reach has no `cors`: no grant here;
    // the OPTIONS goes on as a request (to that route's service).
    let hits = up.hits();
    let beta = send(&client, preflight("/beta/x", "https://evil.example", "x-beta")).await;
    assert!(beta.header("access-control-allow-origin").is_none(), "{:?}", beta.headers);
    assert_eq!(up.hits(), hits + 1);
}

/// GET, HEAD and POST are CORS-safelisted (Fetch): a preflight for one,
/// asked because of a header, is judged by its headers, whatever
/// `allow_methods` lists (it was refused, while the actual GET was granted).
#[tokio::test]
async fn a_preflight_for_a_safelisted_method_is_judged_by_its_headers() {
    let (_up, gw) = behind_svc(
        r#"
  - name: api
    match: { path_prefix: /api }
    upstream: svc
    cors: { allow_origins: [ "https://app.example.com" ], allow_methods: [ PUT ], allow_headers: [ Authorization ] }
"#,
    )
    .await;
    let client = http1_client();
    for method in ["GET", "HEAD", "POST"] {
        let r = send(&client, preflight(gw.url("/api/x"), "https://app.example.com", method, "authorization")).await;
        assert_eq!(r.status, 204, "{method}");
        let r = send(&client, preflight(gw.url("/api/x"), "https://app.example.com", method, "x-other")).await;
        assert_eq!(r.status, 403, "{method} with a header not allowed");
    }
    let r = send(&client, preflight(gw.url("/api/x"), "https://app.example.com", "DELETE", "")).await;
    assert_eq!(r.status, 403, "a method neither listed nor safelisted");
}

#[tokio::test]
async fn cors_preflight_is_answered_at_the_gateway() {
    let (up, gw) = behind_svc(
        r#"
  - name: api
    match: { path_prefix: /api, methods: [GET, PUT] }
    upstream: svc
    cors:
      allow_origins: [ "https://app.example.com", "https://*.example.org" ]
      allow_methods: [ GET, PUT ]
      allow_headers: [ Content-Type, Authorization ]
      expose_headers: [ X-Total ]
      allow_credentials: true
      max_age: 10m
"#,
    )
    .await;
    let client = http1_client();
    let preflight =
        |origin: &str, method: &str, headers: &str| preflight(gw.url("/api/items"), origin, method, headers);
    let ok = send(&client, preflight("https://app.example.com", "PUT", "content-type")).await;
    assert_eq!(ok.status, 204);
    assert_eq!(ok.header("access-control-allow-origin"), Some("https://app.example.com"));
    assert_eq!(ok.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(ok.header("access-control-allow-methods"), Some("GET, PUT"));
    assert_eq!(ok.header("access-control-max-age"), Some("600"));
    assert_eq!(up.hits(), 0, "preflights never reach the upstream");
    let sub = send(&client, preflight("https://shop.example.org", "GET", "")).await;
    assert_eq!(sub.status, 204);
    let evil = send(&client, preflight("https://evil.example.net", "GET", "")).await;
    assert_eq!(evil.status, 403);
    assert!(evil.header("access-control-allow-origin").is_none());
    // Refused, it varies as a granted answer does (shared caches).
    assert_eq!(evil.header("vary"), Some("Origin, Access-Control-Request-Method, Access-Control-Request-Headers"));
    let bad_header = send(&client, preflight("https://app.example.com", "PUT", "x-secret")).await;
    assert_eq!(bad_header.status, 403);
    // A refused preflight carries no grants of an actual request either.
    for name in ["access-control-allow-origin", "access-control-allow-credentials", "access-control-expose-headers"] {
        assert!(bad_header.header(name).is_none(), "{name} on a refused preflight");
    }

    let actual = get(&gw.url("/api/items"), &[("origin", "https://app.example.com")]).await;
    assert_eq!(actual.status, 200);
    assert_eq!(actual.header("access-control-allow-origin"), Some("https://app.example.com"));
    assert_eq!(actual.header("access-control-expose-headers"), Some("X-Total"));
    assert!(actual.headers.get_all("vary").iter().any(|v| v == "Origin"));
    let foreign = get(&gw.url("/api/items"), &[("origin", "https://evil.example.net")]).await;
    assert!(foreign.header("access-control-allow-origin").is_none());
    // The answer varies with Origin even when nothing is granted (shared caches).
    let plain = get(&gw.url("/api/items"), &[]).await;
    assert!(plain.headers.get_all("vary").iter().any(|v| v == "Origin"));
    // A preflight answer carries each header once.
    let again = send(&client, preflight("https://app.example.com", "GET", "")).await;
    assert_eq!(again.headers.get_all("vary").iter().filter(|v| *v == "Origin").count(), 1);
    // The route's `cors` is the answer's CORS, whatever the upstream's own says.
    let evil = get(&gw.url("/api/permissive"), &[("origin", "https://evil.example.net")]).await;
    assert_eq!(evil.text(), "permissive");
    for name in [
        "access-control-allow-origin",
        "access-control-allow-credentials",
        "access-control-expose-headers",
        "access-control-allow-private-network",
    ] {
        assert!(evil.header(name).is_none(), "{name}: {:?}", evil.header(name));
    }
    let app = get(&gw.url("/api/permissive"), &[("origin", "https://app.example.com")]).await;
    assert_eq!(app.header("access-control-allow-origin"), Some("https://app.example.com"));
    assert_eq!(app.header("access-control-expose-headers"), Some("X-Total"));
    assert_eq!(app.headers.get_all("access-control-allow-origin").iter().count(), 1);
}
