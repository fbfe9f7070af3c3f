//! Path normalization attacks: the path that is authorized is the path
//! that is forwarded, and ambiguous encodings are refused.

use crate::support::{Upstream, gateway, raw, raw_status};

async fn setup() -> (crate::support::Gateway1, Upstream) {
    with_routes(
        "  - { name: public, match: { path_prefix: /public }, upstream: public }\n\
         \x20 - { name: admin, match: { path_prefix: /admin }, static: { status: 403, body: \"admin is closed\" } }\n",
    )
    .await
}

/// A gateway with `routes` (YAML list items), the upstream `public` an echo of what it receives.
async fn with_routes(routes: &str) -> (crate::support::Gateway1, Upstream) {
    let public = Upstream::start("public").await;
    let gw =
        gateway(&format!("upstreams:\n  public: {{ targets: [ \"{}\" ] }}\nroutes:\n{routes}", public.url())).await;
    (gw, public)
}

fn request(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
}

/// The path the upstream received, or the gateway's status when it did not forward.
async fn outcome(gw: &crate::support::Gateway1, path: &str) -> Result<String, u16> {
    let resp = raw(gw.addr, &request(path)).await;
    match raw_status(&resp) {
        200 => {
            let body = &resp[resp.find("\r\n\r\n").unwrap() + 4..];
            let doc: serde_json::Value = serde_json::from_str(body.trim()).expect("upstream JSON");
            Ok(doc["path"].as_str().unwrap().to_string())
        }
        status => Err(status),
    }
}

#[tokio::test]
async fn dot_segments_resolve_before_routing() {
    let (gw, public) = setup().await;
    assert_eq!(outcome(&gw, "/admin/../public/page").await, Ok("/public/page".into()));
    // Traversal out of /public lands on /admin, which is closed: never forwarded to public.
    assert_eq!(outcome(&gw, "/public/%2e%2e/admin").await, Err(403));
    assert_eq!(outcome(&gw, "/public/%2E%2E/%2e/admin/x").await, Err(403));
    assert_eq!(outcome(&gw, "/public/./../admin").await, Err(403));
    assert_eq!(outcome(&gw, "//public///a//b").await, Ok("/public/a/b".into()));
    assert_eq!(outcome(&gw, "/public/%7euser/%41").await, Ok("/public/~user/A".into()));
    assert_eq!(public.hits(), 3);
}

#[tokio::test]
async fn ambiguous_encodings_are_refused() {
    let (gw, public) = setup().await;
    for path in [
        "/public/..%2Fadmin",
        "/public/%2e%2e%2fadmin",
        "/public/..%5Cadmin",
        "/public/a%00b",
        "/public/%zz",
        "/public/%252e%252e/admin",
        "/public/..;/admin",
    ] {
        assert_eq!(outcome(&gw, path).await, Err(400), "{path}");
    }
    assert_eq!(public.hits(), 0);
    let resp = raw(gw.addr, &request("/public/%2F")).await;
    assert!(resp.contains("application/problem+json"), "{resp}");
    assert!(resp.contains("encoded `/`"), "{resp}");
    // A raw byte outside ASCII is said as such (it is no percent-encoding).
    let resp = raw(gw.addr, &request("/public/caf\u{e9}")).await;
    assert_eq!(raw_status(&resp), 400, "{resp}");
    assert!(resp.contains("a byte outside ASCII"), "{resp}");
}

/// OpenAPI's `matrix` style puts `;` in a path segment (`/users/;id=5`).
/// Such a segment passes only where the matched route reads it as a
/// matrix-style parameter; every other `;` is refused as before, on this
/// route and on the others.
#[tokio::test]
async fn matrix_segments_pass_only_as_a_routes_matrix_parameter() {
    let users = Upstream::start("users").await;
    let gw = gateway(&format!(
        r#"
upstreams:
  users: {{ targets: [ "{}" ] }}
routes:
  - name: user
    match: {{ path: "/users/{{id}}/orders" }}
    upstream: users
    validate:
      path: {{ id: {{ type: integer, style: matrix }} }}
  - {{ name: items, match: {{ path: "/items/{{id}}" }}, upstream: users }}
  - name: orders
    match: {{ path: "/accounts/{{id}}/orders/{{oid}}" }}
    upstream: users
    validate:
      path: {{ id: {{ type: integer, style: matrix }} }}
  - {{ name: admin, match: {{ path_prefix: /admin }}, static: {{ status: 403, body: "admin is closed" }} }}
"#,
        users.url()
    ))
    .await;
    assert_eq!(outcome(&gw, "/users/;id=5/orders").await, Ok("/users/;id=5/orders".into()));
    assert_eq!(outcome(&gw, "/x/../users/;id=7/orders").await, Ok("/users/;id=7/orders".into()));
    assert_eq!(users.hits(), 2);
    for path in [
        // Read as the parameter, and not a valid one.
        "/users/;id=five/orders",
        "/users/;other=5/orders",
        // Not where the route reads a matrix value.
        "/items/;id=5",
        "/admin/;x=1",
        "/admin;x/secret",
        "/users/5;x/orders",
        "/users/..;/admin",
        // The matrix value's text again, where a non-matrix parameter reads it.
        "/accounts/;id=5/orders/;id=5",
    ] {
        assert_eq!(outcome(&gw, path).await, Err(400), "{path}");
    }
    // Kept whole, a `;` segment can still match no route at all.
    assert_eq!(outcome(&gw, "/users/;id=5/orders/;x=1").await, Err(404));
    assert_eq!(users.hits(), 2, "nothing refused reached the upstream");
}

/// A character never raw in a path (`|`, `[`, `]`, `"`, `^`, `{`, `}`)
/// and its escape are one spelling: a route guarding one was passed by the
/// other, which services decode alike. Routes written either way, with a
/// space too, match both; the upstream gets the escaped form.
#[tokio::test]
async fn a_raw_character_and_its_escape_route_alike() {
    let (gw, public) = with_routes(
        r#"  - { name: reports, match: { path_prefix: "/reports/q1|q2" }, static: { status: 403, body: closed } }
  - { name: data, match: { path_prefix: "/data/%5binternal%5D" }, static: { status: 403, body: closed } }
  - { name: docs, match: { path_prefix: "/my docs" }, static: { status: 403, body: closed } }
  - { name: public, match: { path_prefix: / }, upstream: public }
"#,
    )
    .await;
    for path in [
        "/reports/q1|q2",
        "/reports/q1%7Cq2",
        "/reports/q1%7cq2",
        "/data/[internal]",
        "/data/%5Binternal%5D",
        "/my%20docs/x",
    ] {
        assert_eq!(outcome(&gw, path).await, Err(403), "{path}");
    }
    assert_eq!(outcome(&gw, "/open/a|b[1]").await, Ok("/open/a%7Cb%5B1%5D".into()));
    assert_eq!(public.hits(), 1);
}

/// An encoded delimiter is what a service that decodes it reads: `%3A` in
/// `/jobs/7%3Acancel` is the `:` of a route for `/jobs/{id}:cancel` (and
/// `%40` the `@` of `/@admin`), not a way past that route to a broader one.
#[tokio::test]
async fn encoded_delimiters_route_as_the_service_reads_them() {
    let (gw, public) = with_routes(
        "  - { name: jobs, match: { path: \"/jobs/{id}\" }, upstream: public }\n\
         \x20 - { name: cancel, match: { path: \"/jobs/{id}:cancel\" }, static: { status: 403, body: closed } }\n\
         \x20 - { name: site, match: { path_prefix: / }, upstream: public }\n\
         \x20 - { name: at, match: { path_prefix: /@admin }, static: { status: 403, body: closed } }\n",
    )
    .await;
    assert_eq!(outcome(&gw, "/jobs/7:cancel").await, Err(403));
    assert_eq!(outcome(&gw, "/jobs/7%3Acancel").await, Err(403));
    assert_eq!(outcome(&gw, "/jobs/7%3acancel").await, Err(403));
    // The verb is the segment's end, as gRPC-Gateway reads it: a second one
    // is no way to the broader route.
    assert_eq!(outcome(&gw, "/jobs/7:cancel:cancel").await, Err(403));
    assert_eq!(outcome(&gw, "/jobs/7%3Acancel%3Acancel").await, Err(403));
    assert_eq!(outcome(&gw, "/%40admin/x").await, Err(403));
    // Forwarded decoded, as matched; `+` stays encoded (a form decoder reads a raw `+` as a space).
    assert_eq!(outcome(&gw, "/users/a%40b.example%2Bc").await, Ok("/users/a@b.example%2Bc".into()));
    assert_eq!(public.hits(), 1);
}
