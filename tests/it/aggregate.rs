//! Response aggregation from outside: real upstreams answering JSON (or
//! failing, or slowly), the composed answer a client gets.

use std::time::Duration;

use crate::support::flaky::{Flaky, Mode};
use crate::support::{gateway, get};

async fn three() -> (Flaky, Flaky, Flaky) {
    (Flaky::start("users").await, Flaky::start("orders").await, Flaky::start("recs").await)
}

fn upstreams(u: &Flaky, o: &Flaky, r: &Flaky) -> String {
    format!(
        "upstreams:\n  users: {{ targets: [ \"{}\" ] }}\n  orders: {{ targets: [ \"{}\" ] }}\n  recs: {{ targets: [ \"{}\" ] }}\n",
        u.url(),
        o.url(),
        r.url()
    )
}

const DASHBOARD: &str = r#"
routes:
  - name: dashboard
    match: { path: "/dashboard/{id}", methods: [GET] }
    aggregate:
      timeout: 2s
      calls:
        user:   { upstream: users,  path: "/users/{id}", required: true }
        orders: { upstream: orders, path: "/orders?user={user.id}&name={user.name}", after: [ user ], timeout: 300ms, on_failure: omit, allow: [ id, total ] }
        recs:   { upstream: recs,   path: "/recs/{id}", on_failure: "null", as: recommendations, deny: [ internal ] }
"#;

#[tokio::test]
async fn calls_are_chained_filtered_renamed_and_merged() {
    let (u, o, r) = three().await;
    u.set(Mode::Json(r#"{"id":7,"name":"Ann Lee","email":"ann@example.com"}"#));
    o.set(Mode::Json(r#"[{"id":1,"total":5,"card":"4111"},{"id":2,"total":9,"card":"4222"}]"#));
    r.set(Mode::Json(r#"{"items":["a","b"],"internal":"model-v3"}"#));
    let gw = gateway(&format!("{}{DASHBOARD}", upstreams(&u, &o, &r))).await;
    let reply = get(&gw.url("/dashboard/7"), &[("authorization", "Bearer secret-token")]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("portcullis-aggregate"), Some("complete"));
    assert_eq!(
        reply.json(),
        serde_json::json!({
            "user": { "id": 7, "name": "Ann Lee", "email": "ann@example.com" },
            "orders": [ { "id": 1, "total": 5 }, { "id": 2, "total": 9 } ],
            "recommendations": { "items": ["a", "b"] },
        })
    );
    // Placeholders from the earlier answer, URL-encoded.
    let seen = o.last_request().expect("orders was called");
    assert_eq!(seen.uri, "/orders?user=7&name=Ann%20Lee");
    assert_eq!(u.last_request().unwrap().uri, "/users/7");
    // The request id and trace go to every call; the client's credentials do not.
    for up in [&u, &o, &r] {
        let h = up.last_request().unwrap().headers;
        assert_eq!(h.get("x-request-id").map(|v| v.to_str().unwrap()), reply.header("x-request-id"));
        assert!(h.contains_key("traceparent"));
        assert!(!h.contains_key("authorization"));
        assert_eq!(h.get("accept-encoding").map(|v| v.to_str().unwrap()), Some("identity"));
    }
    assert!(reply.header("cache-control").is_none(), "a complete answer's caching is the service's call");
}

/// A trusted caller's trace goes on to every call with its `tracestate`
/// (W3C Trace Context: the state travels with the trace it belongs to).
#[tokio::test]
async fn calls_continue_a_trusted_callers_trace_with_its_state() {
    let (u, o, r) = three().await;
    u.set(Mode::Json(r#"{"id":7,"name":"Ann"}"#));
    o.set(Mode::Json("[]"));
    r.set(Mode::Json("{}"));
    let gw = gateway(&format!("trusted_proxies: [ 127.0.0.1 ]\n{}{DASHBOARD}", upstreams(&u, &o, &r))).await;
    let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let reply = get(&gw.url("/dashboard/7"), &[("traceparent", parent), ("tracestate", "vendor=abc")]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    for up in [&u, &o, &r] {
        let h = up.last_request().unwrap().headers;
        let tp = h.get("traceparent").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        assert!(tp.starts_with("00-0af7651916cd43dd8448eb211c80319c-"), "{tp}");
        assert_eq!(h.get("tracestate").map(|v| v.to_str().unwrap()), Some("vendor=abc"));
    }
}

/// `allow` lets through only the fields it names: never a string or
/// number standing where it names fields (the card number in `"4111…"`).
#[tokio::test]
async fn allow_lets_through_only_what_it_names() {
    let (u, o, r) = three().await;
    u.set(Mode::Json(r#"{"id":7,"name":"Ann"}"#));
    o.set(Mode::Json(r#"[1,"4111111111111111",{"id":1,"total":5,"card":"4111"},{"id":"x","total":{"card":"4222"}}]"#));
    r.set(Mode::Json(r#""top secret""#));
    let gw = gateway(&format!(
        "{}{}",
        upstreams(&u, &o, &r),
        DASHBOARD
            .replace("deny: [ internal ]", "allow: [ items ]")
            .replace("allow: [ id, total ]", "allow: [ id, total.amount ]")
    ))
    .await;
    let reply = get(&gw.url("/dashboard/7"), &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let doc = reply.json();
    assert_eq!(doc["orders"], serde_json::json!([{ "id": 1 }, { "id": "x", "total": {} }]));
    assert!(doc["recommendations"].is_null(), "{doc}");
    assert!(!reply.text().contains("4111") && !reply.text().contains("4222") && !reply.text().contains("secret"));
}

#[tokio::test]
async fn independent_calls_run_side_by_side() {
    let (a, b, c) = three().await;
    a.set(Mode::Slow(Duration::from_millis(400)));
    b.set(Mode::Slow(Duration::from_millis(400)));
    c.set(Mode::Slow(Duration::from_millis(400)));
    let gw = gateway(&format!(
        r#"{}
routes:
  - name: all
    match: {{ path: "/all" }}
    aggregate:
      calls:
        a: {{ upstream: users, path: "/a" }}
        b: {{ upstream: orders, path: "/b" }}
        c: {{ upstream: recs, path: "/c" }}
"#,
        upstreams(&a, &b, &c)
    ))
    .await;
    let started = tokio::time::Instant::now();
    let reply = get(&gw.url("/all"), &[]).await;
    let took = started.elapsed();
    assert_eq!(reply.header("portcullis-aggregate"), Some("complete"), "{}", reply.text());
    assert_eq!(reply.json()["b"]["path"], "/b");
    // About the slowest call (400 ms), not the sum (1.2 s).
    assert!(took < Duration::from_millis(900), "took {took:?}");
}

#[tokio::test]
async fn a_failed_optional_call_gives_a_partial_answer_that_says_so() {
    let (u, o, r) = three().await;
    u.set(Mode::Json(r#"{"id":7,"name":"ann"}"#));
    o.set(Mode::Hang);
    r.set(Mode::Status(503));
    let admin = "admin: { bind: \"127.0.0.1:0\" }\n";
    let gw = gateway(&format!("{admin}{}{DASHBOARD}", upstreams(&u, &o, &r))).await;
    let started = tokio::time::Instant::now();
    let reply = get(&gw.url("/dashboard/7"), &[]).await;
    assert!(started.elapsed() < Duration::from_secs(1), "the hanging call was cut at its own 300 ms");
    assert_eq!(reply.status, 200);
    let mark = reply.header("portcullis-aggregate").unwrap().to_string();
    assert!(mark.starts_with("partial; failed=\""), "{mark}");
    assert!(mark.contains("orders") && mark.contains("recs"), "{mark}");
    let doc = reply.json();
    assert_eq!(doc["user"]["id"], 7);
    assert!(doc.get("orders").is_none(), "on_failure: omit");
    assert!(doc["recommendations"].is_null(), "on_failure: \"null\"");
    let errors = doc["errors"].as_array().unwrap();
    let by_call = |name: &str| errors.iter().find(|e| e["call"] == name).unwrap().clone();
    assert_eq!(by_call("orders")["status"], 504);
    assert_eq!(by_call("recs")["status"], 502);
    assert!(by_call("recs")["detail"].as_str().unwrap().contains("503"));
    assert_eq!(reply.header("cache-control"), Some("no-store"), "a partial answer is not cached");
    // A partial answer is a 200: the failed calls are counted, by reason.
    let metrics = get(&format!("http://{}/metrics", gw.handle.admin_addr().unwrap()), &[]).await.text();
    let scrape = prometheus_parse::Scrape::parse(metrics.lines().map(|l| Ok(l.to_string()))).unwrap();
    let failures = |call: &str, reason: &str| {
        let found = scrape.samples.iter().find(|x| {
            x.metric == "portcullis_aggregate_call_failures_total"
                && x.labels.get("route") == Some("dashboard")
                && x.labels.get("call") == Some(call)
                && x.labels.get("reason") == Some(reason)
        });
        match found.map(|x| &x.value) {
            Some(prometheus_parse::Value::Counter(n)) => *n,
            other => panic!("{call} {reason}: {other:?}"),
        }
    };
    assert_eq!((failures("orders", "timeout"), failures("recs", "status")), (1.0, 1.0));
    assert_eq!(
        (failures("user", "timeout"), failures("user", "status"), failures("orders", "status")),
        (0.0, 0.0, 0.0)
    );
    // Not even when the route asks caches to keep its answers.
    let cached = DASHBOARD.replace(
        "    aggregate:\n",
        "    response_headers: { set: { Cache-Control: \"public, max-age=600\" } }\n    aggregate:\n",
    );
    let gw = gateway(&format!("{}{cached}", upstreams(&u, &o, &r))).await;
    let reply = get(&gw.url("/dashboard/7"), &[]).await;
    assert_eq!(reply.header("cache-control"), Some("no-store"), "{:?}", reply.header("portcullis-aggregate"));
    o.set(Mode::Json("[]"));
    r.set(Mode::Json("{}"));
    let reply = get(&gw.url("/dashboard/7"), &[]).await;
    assert_eq!(reply.header("portcullis-aggregate"), Some("complete"));
    assert_eq!(reply.header("cache-control"), Some("public, max-age=600"), "a complete answer: the route's");
}

#[tokio::test]
async fn a_failed_required_call_fails_the_request() {
    let (u, o, r) = three().await;
    u.set(Mode::Status(500));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let access_log = format!("access_log: {{ to: \"{}\" }}\n", log.display());
    let gw = gateway(&format!("{access_log}{}{DASHBOARD}", upstreams(&u, &o, &r))).await;
    let reply = get(&gw.url("/dashboard/7"), &[]).await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.header("content-type"), Some("application/problem+json"));
    let doc = reply.json();
    assert_eq!(doc["errors"][0]["call"], "user");
    assert_eq!(o.hits(), 0, "orders needed the user's answer: never called");
    // The log says why there is no upstream answer: the gateway made it.
    assert_eq!(nth_flag(&gw, &log, 1).await, "LR");
    // A required call that times out: 504, flagged as an upstream timeout
    // (the call that waited for it fails by its dependency: the root counts).
    u.set(Mode::Hang);
    let gw = gateway(&format!(
        r#"{access_log}{}
routes:
  - name: one
    match: {{ path: "/one" }}
    aggregate: {{ timeout: 300ms, calls: {{ user: {{ upstream: users, path: "/u", required: true }} }} }}
"#,
        upstreams(&u, &o, &r)
    ))
    .await;
    assert_eq!(get(&gw.url("/one"), &[]).await.status, 504);
    assert_eq!(nth_flag(&gw, &log, 2).await, "UT");
    let gw = gateway(&format!("{}{DASHBOARD}", upstreams(&u, &o, &r))).await;
    // What the service tells the client itself passes on: the resource is
    // not there (404, 410), or slow down (429); another 4xx is the
    // gateway's call gone wrong (502).
    for (answered, status) in [(404, 404), (410, 410), (429, 429), (400, 502), (403, 502)] {
        u.set(Mode::Status(answered));
        let reply = get(&gw.url("/dashboard/7"), &[]).await;
        assert_eq!(reply.status, status, "{answered}: {}", reply.text());
        assert_eq!(reply.json()["errors"][0]["detail"], format!("the upstream answered {answered}"));
    }
}

/// The response flag of the access log's `n`th line, once it is written
/// (a request is logged when its response body is done, a moment after
/// the client read it).
async fn nth_flag(gw: &crate::support::Gateway1, log: &std::path::Path, n: usize) -> String {
    nth_line(gw, log, n).await["portcullis"]["response_flag"].as_str().unwrap().to_string()
}

/// The access log's `n`th line, once it is written.
async fn nth_line(gw: &crate::support::Gateway1, log: &std::path::Path, n: usize) -> serde_json::Value {
    for _ in 0..250 {
        gw.handle.flush_logs();
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().nth(n - 1) {
            return serde_json::from_str(line).unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no access log line in {}", log.display());
}

#[tokio::test]
async fn only_json_answers_are_merged_and_flat_merges_members() {
    let (u, o, r) = three().await;
    u.set(Mode::Json(r#"{"id":7,"name":"ann"}"#));
    o.set(Mode::Json(r#"{"orders":3,"id":99}"#));
    // `Ok` answers JSON too; a health answer is text: use the health path.
    let gw = gateway(&format!(
        r#"{}
routes:
  - name: flat
    match: {{ path: "/flat" }}
    aggregate:
      merge: flat
      calls:
        user: {{ upstream: users, path: "/u" }}
        stats: {{ upstream: orders, path: "/s" }}
        text: {{ upstream: recs, path: "/healthz" }}
        zname: {{ upstream: users, path: "/l", as: name }}
"#,
        upstreams(&u, &o, &r)
    ))
    .await;
    let reply = get(&gw.url("/flat"), &[]).await;
    let doc = reply.json();
    assert_eq!(doc["name"], "ann");
    assert_eq!(doc["orders"], 3);
    // Calls merge in name order (`stats` before `user`); on a collision the first stays,
    // whether the later value is a member or a whole answer under the call's key.
    assert_eq!(doc["id"], 99);
    assert_eq!(doc["name"], "ann", "not overwritten by the later answer named `name`");
    let text_error = doc["errors"].as_array().unwrap().iter().find(|e| e["call"] == "text").unwrap().clone();
    assert!(text_error["detail"].as_str().unwrap().contains("not JSON"), "{text_error}");
    // A 206 is a part of a resource, not an answer to merge.
    o.set(Mode::Status(206));
    let doc = get(&gw.url("/flat"), &[]).await.json();
    let stats = doc["errors"].as_array().unwrap().iter().find(|e| e["call"] == "stats").unwrap().clone();
    assert_eq!(stats["detail"], "the upstream answered 206", "{doc}");
    // Without `methods`, an aggregate reads: GET and HEAD only.
    let post = crate::support::raw(
        gw.addr,
        "POST /flat HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    )
    .await;
    assert_eq!(crate::support::raw_status(&post), 405, "{post}");
    assert!(post.to_ascii_lowercase().contains("allow: get, head"), "{post}");
    let head = crate::support::raw(gw.addr, "HEAD /flat HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_eq!(crate::support::raw_status(&head), 200, "{head}");
}

#[tokio::test]
async fn aggregate_config_mistakes_are_refused_with_their_path() {
    let cases = [
        (
            "a: { upstream: svc, path: /a, after: [ b ] }\n        b: { upstream: svc, path: /b, after: [ a ] }",
            "circle",
        ),
        ("a: { upstream: svc, path: /a, after: [ nope ] }", "nope"),
        ("a: { upstream: svc, path: \"/a/{b.id}\" }\n        b: { upstream: svc, path: /b }", "list it in `after`"),
        ("a: { upstream: svc, path: \"/a/{nope}\" }", "not a path parameter"),
        ("a: { upstream: other, path: /a }", "unknown upstream"),
        ("a: { upstream: svc, path: /a, as: b }\n        b: { upstream: svc, path: /b }", "also the key"),
        ("errors: { upstream: svc, path: /a }", "`errors` is the key"),
        ("a: { upstream: svc, path: \"/a#frag?x=1\" }", "no fragment"),
        ("a: { upstream: svc, path: \"/caf\u{e9}\" }", "a path is ASCII"),
        ("a: { upstream: svc, path: \"/a/%zz\" }", "two hex digits"),
        ("a: { upstream: svc, path: /a, method: CONNECT }", "CONNECT opens a tunnel"),
        ("a: { upstream: svc, path: /a, method: head }", "a HEAD answer has no body"),
        ("a: { upstream: svc, path: /a, method: TRACE }", "TRACE echoes the request"),
        ("'a,b': { upstream: svc, path: /a }", "letters, digits"),
        ("a: { upstream: svc, path: /a, timeout: 0s }", "longer than zero"),
    ];
    for (calls, expected) in cases {
        let yaml = format!(
            "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\nupstreams:\n  svc: {{ targets: [ \"http://127.0.0.1:9\" ] }}\nroutes:\n  - name: r\n    match: {{ path: \"/r/{{id}}\" }}\n    aggregate:\n      calls:\n        {calls}\n"
        );
        let loaded = portcullis::config::parse_str(&yaml, "test.yaml", std::path::Path::new("."))
            .unwrap_or_else(|e| panic!("{calls}: {e}"));
        let err = portcullis::check(&loaded).expect_err(calls).to_string();
        assert!(err.contains(expected) && err.contains("routes[0].aggregate"), "{calls}: {err}");
    }
}

#[tokio::test]
async fn authentication_applies_and_the_identity_goes_to_every_call() {
    let (u, o, r) = three().await;
    let key_hash = portcullis::hash_key("key-mobile");
    let gw = gateway(&format!(
        r#"{}
auth:
  keys: {{ api_key: {{ header: X-API-Key }} }}
consumers:
  - {{ id: mobile-app, groups: [partners], api_keys: [ {{ sha256: "{key_hash}" }} ] }}
routes:
  - name: mine
    match: {{ path: "/mine" }}
    authenticate: [ keys ]
    # A limit keyed by a header: the identity still reaches the calls.
    rate_limit: [ {{ key: {{ header: x-api-key }}, rate: 100/s }} ]
    aggregate:
      calls:
        a: {{ upstream: users, path: "/a" }}
        b: {{ upstream: orders, path: "/b" }}
"#,
        upstreams(&u, &o, &r)
    ))
    .await;
    assert_eq!(get(&gw.url("/mine"), &[]).await.status, 401);
    assert_eq!((u.hits(), o.hits()), (0, 0), "refused before any call");
    let reply = get(&gw.url("/mine"), &[("x-api-key", "key-mobile"), ("x-consumer-id", "spoofed")]).await;
    assert_eq!(reply.header("portcullis-aggregate"), Some("complete"), "{}", reply.text());
    for up in [&u, &o] {
        let h = up.last_request().unwrap().headers;
        assert_eq!(h.get("x-consumer-id").unwrap(), "mobile-app");
        assert_eq!(h.get("x-consumer-groups").unwrap(), "partners");
        assert!(!h.contains_key("x-api-key"), "the client's key stays at the gateway");
    }
}

/// The answer is cached no longer and no more widely than its strictest
/// part allows: a backend's `private, no-store` was lost in the merge, and
/// a shared cache could keep one caller's data for the next (an API key in
/// `X-API-Key` is no `Authorization` to it). An answer made with the
/// caller's identity is `private`.
#[tokio::test]
async fn the_answer_is_cached_as_its_strictest_part_allows() {
    let (u, o, r) = three().await;
    let key_hash = portcullis::hash_key("key-ann");
    let gw = gateway(&format!(
        r#"{}
auth:
  keys: {{ api_key: {{ header: X-API-Key }} }}
consumers:
  - {{ id: ann, api_keys: [ {{ sha256: "{key_hash}" }} ] }}
routes:
  - name: me
    match: {{ path: "/me" }}
    authenticate: [ keys ]
    aggregate:
      calls:
        profile: {{ upstream: users, path: "/p" }}
  - name: public
    match: {{ path: "/public" }}
    aggregate:
      calls:
        a: {{ upstream: orders, path: "/a" }}
        b: {{ upstream: recs, path: "/b" }}
  - name: unmarked
    match: {{ path: "/unmarked" }}
    response_headers: {{ remove: [ portcullis-aggregate ] }}
    aggregate:
      calls:
        a: {{ upstream: orders, path: "/a" }}
        b: {{ upstream: recs, path: "/b" }}
"#,
        upstreams(&u, &o, &r)
    ))
    .await;
    let cache_control = async |path: &str| {
        let reply = get(&gw.url(path), &[("x-api-key", "key-ann")]).await;
        assert_eq!(reply.header("portcullis-aggregate"), Some("complete"), "{}", reply.text());
        reply.header("cache-control").map(str::to_string)
    };
    u.set(Mode::JsonCached("private, no-store", r#"{"email":"ann@example.com"}"#));
    assert_eq!(cache_control("/me").await.as_deref(), Some("no-store"));
    u.set(Mode::Json(r#"{"email":"ann@example.com"}"#));
    assert_eq!(cache_control("/me").await.as_deref(), Some("private"), "made for the caller");
    o.set(Mode::JsonCached("public, max-age=60", "{}"));
    r.set(Mode::JsonCached("Max-Age=30", "{}"));
    assert_eq!(cache_control("/public").await.as_deref(), Some("max-age=30"));
    r.set(Mode::JsonCached("private, max-age=300", "{}"));
    assert_eq!(cache_control("/public").await.as_deref(), Some("private, max-age=60"));
    r.set(Mode::Json("{}"));
    assert_eq!(cache_control("/public").await, None, "a part without freshness: nothing said, as a proxied answer");
    // A partial answer is never kept, even when the route hides that it is one.
    o.set(Mode::JsonCached("max-age=600", "{}"));
    r.set(Mode::Status(500));
    let reply = get(&gw.url("/unmarked"), &[]).await;
    assert_eq!((reply.status.as_u16(), reply.header("portcullis-aggregate")), (200, None), "{}", reply.text());
    assert_eq!(reply.header("cache-control"), Some("no-store"));
}

/// Fields side by side in one path segment are checked together: `%`
/// and `2e` each pass alone, but `{a.x}{a.y}{a.x}{a.y}` wrote
/// `%252e%252e`, `..` to a service that decodes twice; so does a field
/// beside literal text (`{a.x}2e`).
#[tokio::test]
async fn fields_side_by_side_are_checked_as_their_segment() {
    let (u, o, r) = three().await;
    let yaml = format!(
        "{}routes:\n  - name: adj\n    match: {{ path: \"/adj/{{which}}\" }}\n    aggregate:\n      calls:\n        \
         user: {{ upstream: users, path: \"/users/1\", required: true }}\n        \
         pair: {{ upstream: orders, path: \"/files/{{user.x}}{{user.y}}{{user.x}}{{user.y}}/secret\", after: [ user ] }}\n        \
         beside: {{ upstream: recs, path: \"/files/{{user.x}}2e/secret\", after: [ user ] }}\n",
        upstreams(&u, &o, &r)
    );
    let gw = gateway(&yaml).await;
    o.set(Mode::Json("[]"));
    r.set(Mode::Json("[]"));
    u.set(Mode::Json(r#"{"x":"%","y":"2e"}"#));
    let reply = get(&gw.url("/adj/1"), &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("portcullis-aggregate"), Some("partial; failed=\"beside,pair\""), "{}", reply.text());
    assert!(o.last_request().is_none() && r.last_request().is_none(), "neither call was sent");
    // Harmless neighbours are one segment as usual.
    u.set(Mode::Json(r#"{"x":"ab","y":"cd"}"#));
    let reply = get(&gw.url("/adj/2"), &[]).await;
    assert_eq!(reply.header("portcullis-aggregate"), Some("complete"), "{}", reply.text());
    assert_eq!(o.last_request().unwrap().uri, "/files/abcdabcd/secret");
    assert_eq!(r.last_request().unwrap().uri, "/files/ab2e/secret");
}

/// Values cannot step out of the template: a field that is `..`, `.` or
/// empty would address another resource in a path (the parent, the
/// collection) and fails the call; a route parameter in a query cannot add
/// parameters (`&`, `=`, `+` escaped).
#[tokio::test]
async fn placeholder_values_stay_inside_their_place() {
    let (u, o, r) = three().await;
    let yaml = format!(
        "{}routes:\n  - name: chain\n    match: {{ path: \"/c/{{id}}\" }}\n    aggregate:\n      calls:\n        \
         user: {{ upstream: users, path: \"/users/{{id}}?q={{id}}\", required: true }}\n        \
         orders: {{ upstream: orders, path: \"/users/{{user.v}}/orders?v={{user.v}}\", after: [ user ] }}\n",
        upstreams(&u, &o, &r)
    );
    let gw = gateway(&yaml).await;
    o.set(Mode::Json("[]"));
    // `/`, `\` and escapes too: encoded, some services would decode them
    // before resolving dot segments (the gateway refuses them from clients).
    for (v, sent) in [
        (r#""..""#, false),
        (r#"".""#, false),
        (r#""""#, false),
        (r#""a.b""#, true),
        (r#""../admin""#, false),
        (r#""a\\b""#, false),
        (r#""%2e%2e""#, false),
        (r#""50%off""#, true),
        (r#""abc%3D%3D""#, true),
        (r#""%2E%2e""#, false),
        // A number a double cannot hold exactly would name another resource.
        ("18446744073709551617", false),
        ("1e2", true),
    ] {
        u.set(Mode::Json(Box::leak(format!(r#"{{"v":{v}}}"#).into_boxed_str())));
        let before = o.last_request().map(|r| r.uri);
        let reply = get(&gw.url("/c/7"), &[]).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let called = o.last_request().map(|r| r.uri) != before;
        assert_eq!(called, sent, "value {v}: {}", reply.text());
        if !sent {
            assert_eq!(reply.header("portcullis-aggregate"), Some("partial; failed=\"orders\""), "{v}");
        }
    }
    assert_eq!(o.last_request().unwrap().uri, "/users/100/orders?v=100", "`1e2` is the id 100");
    // The client's `&`, `=` and `+` in a route parameter stay in its query value.
    get(&gw.url("/c/7&admin=true+x"), &[]).await;
    assert_eq!(u.last_request().unwrap().uri, "/users/7&admin=true+x?q=7%26admin%3Dtrue%2Bx");
    // What a strict service refuses raw in a target (`"`, `{`, `|`) is escaped in both places.
    let reply = crate::support::raw(gw.addr, "GET /c/a\"b{|} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_eq!(crate::support::raw_status(&reply), 200, "{reply}");
    assert_eq!(u.last_request().unwrap().uri, "/users/a%22b%7B%7C%7D?q=a%22b%7B%7C%7D");
}

/// The upstream's `timeouts.read` bounds a call's body as it bounds a
/// proxied one, and a required call that failed because the call it
/// waited for timed out is a 504 (its root cause), not a 502.
#[tokio::test]
async fn calls_keep_their_upstreams_read_timeout_and_failures_their_root_status() {
    let (u, o, r) = three().await;
    u.set(Mode::StallBody);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let yaml = format!(
        "access_log: {{ to: \"{}\" }}\nupstreams:\n  users: {{ targets: [ \"{}\" ], timeouts: {{ read: 200ms }} }}\n  \
         orders: {{ targets: [ \"{}\" ], limits: {{ max_requests: 1 }} }}\n  recs: {{ targets: [ \"{}\" ] }}\n\
         routes:\n  - name: stall\n    match: {{ path: /stall }}\n    aggregate:\n      timeout: 5s\n      calls:\n        \
         user: {{ upstream: users, path: /u, required: true }}\n  \
         - name: chain\n    match: {{ path: /chain }}\n    aggregate:\n      timeout: 5s\n      calls:\n        \
         user: {{ upstream: users, path: /u, timeout: 100ms }}\n        \
         orders: {{ upstream: orders, path: \"/o/{{user.id}}\", after: [ user ], required: true }}\n",
        log.display(),
        u.url(),
        o.url(),
        r.url()
    );
    let gw = gateway(&yaml).await;
    let reply = get(&gw.url("/stall"), &[]).await;
    assert_eq!(reply.status, 504, "{}", reply.text());
    // Cut by `timeouts.read` (200 ms), not by the 5 s budget.
    assert_eq!(reply.json()["errors"][0]["detail"], "no answer within 200 ms", "{}", reply.text());
    // Its head said 200, its body never came: the try is a timeout.
    let line = nth_line(&gw, &log, 1).await;
    let try_ = &line["portcullis"]["upstream"]["tries"][0];
    assert_eq!((try_["error"].as_str(), try_.get("status_code")), (Some("timeout"), None), "{line}");
    u.set(Mode::Slow(Duration::from_millis(400)));
    let reply = get(&gw.url("/chain"), &[]).await;
    assert_eq!(reply.status, 504, "the root cause timed out: {}", reply.text());
}

/// A call cut off by its own `timeout` says its target is too slow: it
/// counts as a failure for the breaker and passive health, as Envoy counts
/// a route's timeout (a hanging target behind an aggregate was never
/// counted, its calls' timeouts being shorter than `timeouts.request`).
/// One cut off by the aggregate's budget says nothing about its target
/// (the time may have gone to other calls): not counted.
#[tokio::test]
async fn a_call_cut_off_by_its_own_timeout_counts_and_one_cut_by_the_budget_does_not() {
    let (u, o, r) = three().await;
    u.set(Mode::Slow(Duration::from_millis(300)));
    let yaml = |aggregate: &str| {
        format!(
            "upstreams:\n  users: {{ targets: [ \"{}\" ], breaker: {{ consecutive_failures: 2, open_for: 30s }}, \
             health: {{ passive: {{ consecutive_failures: 2 }} }} }}\n  orders: {{ targets: [ \"{}\" ] }}\n  \
             recs: {{ targets: [ \"{}\" ] }}\n\
             routes:\n  - name: dash\n    match: {{ path: /dash }}\n    aggregate:\n{aggregate}\
             \x20 - {{ name: users, match: {{ path_prefix: /users }}, upstream: users }}\n",
            u.url(),
            o.url(),
            r.url()
        )
    };
    // The budget runs out: the target is not blamed.
    let gw = gateway(&yaml("      timeout: 50ms\n      calls:\n        user: { upstream: users, path: /u }\n")).await;
    for _ in 0..4 {
        let reply = get(&gw.url("/dash"), &[]).await;
        assert_eq!(reply.json()["errors"][0]["status"], 504, "{}", reply.text());
    }
    let reply = get(&gw.url("/users/1"), &[]).await;
    assert_eq!(reply.status, 200, "the breaker stays closed: {}", reply.text());

    // The call's own limit runs out, twice: the breaker opens.
    let gw = gateway(&yaml("      calls:\n        user: { upstream: users, path: /u, timeout: 50ms }\n")).await;
    for _ in 0..2 {
        let reply = get(&gw.url("/dash"), &[]).await;
        assert_eq!(reply.json()["errors"][0]["detail"], "no answer within 50 ms", "{}", reply.text());
    }
    let reply = get(&gw.url("/dash"), &[]).await;
    assert_eq!(reply.json()["errors"][0]["status"], 503, "refused by the open breaker: {}", reply.text());
    let reply = get(&gw.url("/users/1"), &[]).await;
    assert_eq!(reply.status, 503, "{}", reply.text());
}

#[tokio::test]
async fn a_call_that_cannot_connect_in_time_says_so() {
    // Connecting hangs until `timeouts.connect`.
    let full = crate::support::full_accept_queue();
    let addr = full.addr;
    let yaml = format!(
        "upstreams:\n  full: {{ targets: [ \"http://{addr}\" ], timeouts: {{ connect: 200ms }} }}\n\
         routes:\n  - name: agg\n    match: {{ path: /agg }}\n    aggregate:\n      calls:\n        \
         a: {{ upstream: full, path: /x, required: true }}\n"
    );
    let gw = gateway(&yaml).await;
    let reply = get(&gw.url("/agg"), &[]).await;
    assert_eq!(reply.status, 504, "{}", reply.text());
    assert_eq!(reply.json()["errors"][0]["detail"], "no connection to the upstream within 200 ms", "{}", reply.text());
}

/// Fields a flat merge drops are logged once per call and request, with
/// their count: an answer with thousands of colliding keys is one line.
#[tokio::test]
async fn fields_a_flat_merge_drops_are_logged_once_per_call() {
    let (u, o, r) = three().await;
    u.set(Mode::Json(r#"{"a":1,"b":2,"c":3,"d":4}"#));
    o.set(Mode::Json(r#"{"a":9,"b":9,"c":9,"e":5}"#));
    let yaml = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\n{}\
         routes:\n  - name: flat\n    match: {{ path: /flat }}\n    aggregate:\n      merge: flat\n      calls:\n        \
         first: {{ upstream: users, path: /u }}\n        second: {{ upstream: orders, path: /o }}\n",
        upstreams(&u, &o, &r)
    );
    let (gw, addr) = crate::support::process::spawn_gateway(&yaml);
    let doc = get(&format!("http://{addr}/flat"), &[]).await.json();
    assert_eq!((doc["a"].as_i64(), doc["e"].as_i64()), (Some(1), Some(5)));
    let mut lines = Vec::new();
    for _ in 0..100 {
        lines = gw.log.lock().unwrap().iter().filter(|l| l.contains("kept the first")).cloned().collect();
        if !lines.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains("call=\"second\"") && lines[0].contains("fields=3") && lines[0].contains("first=a"),
        "{}",
        lines[0]
    );
}

/// A call to an HTTP/2 upstream names its host in `:authority` alone, as
/// proxied requests do (RFC 9113 §8.3.1): a `host` field went beside it.
#[tokio::test]
async fn a_call_to_an_http2_upstream_sends_no_host_field() {
    let up = crate::support::Upstream::start("svc").await;
    let gw = gateway(&format!(
        r#"
upstreams:
  h2: {{ targets: [ "{}" ], protocol: http2 }}
routes:
  - name: all
    match: {{ path: "/all" }}
    aggregate:
      calls:
        seen: {{ upstream: h2, path: "/seen" }}
"#,
        up.url()
    ))
    .await;
    let reply = get(&gw.url("/all"), &[]).await;
    assert_eq!(reply.header("portcullis-aggregate"), Some("complete"), "{}", reply.text());
    let seen = &reply.json()["seen"];
    assert_eq!(seen["version"], "HTTP/2.0", "{seen}");
    assert!(seen["headers"].get("host").is_none(), "{seen}");
}
