//! The plan as a whole: whatever a config file says, compiling it never panics.

#[cfg(test)]
mod fuzz {
    /// Config text built from the file's own keys and values, mangled:
    /// loading and compiling never panic; a refusal names a path.
    #[test]
    fn fuzz_config() {
        use proptest::prelude::*;
        let seed = r#"listeners:
  - { name: public, bind: "127.0.0.1:0", limits: { max_body_size: 1MiB, header_read_timeout: 5s } }
upstreams:
  u: { targets: [ "http://127.0.0.1:9", { url: "http://127.0.0.1:10", weight: 2 } ], balance: round_robin }
auth:
  k: { api_key: { header: X-API-Key } }
consumers:
  - { id: c, api_keys: [ { sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" } ] }
routes:
  - name: r
    match: { host: "*.example.com", path: "/v1/{id}", methods: [GET] }
    upstream: u
    websocket: true
    rewrite: { strip_prefix: /v1 }
    authenticate: [ k ]
    rate_limit: [ { key: ip, rate: 10/s, burst: 20 } ]
    cors: { allow_origins: [ "https://a.example" ] }
path_normalization: { path_parameters: strip }
"#;
        crate::fuzz::run("config", crate::fuzz::mutated(seed.as_bytes().to_vec(), 8), |bytes| {
            let text = String::from_utf8_lossy(&bytes);
            match crate::config::parse_str(&text, "fuzz.yaml", std::path::Path::new(".")) {
                Ok(loaded) => {
                    if let Err(errors) = crate::plan::compile(&loaded) {
                        prop_assert!(!errors.0.is_empty());
                    }
                }
                Err(errors) => prop_assert!(!errors.0.is_empty()),
            }
            Ok(())
        });
    }
}

/// Durations that would switch a feature off in silence are refused.
#[test]
fn zero_durations_that_would_disable_a_feature_are_refused() {
    let text = r#"
listeners: [ { name: gw, bind: "127.0.0.1:0" } ]
upstreams:
  u:
    targets: [ "http://127.0.0.1:9" ]
    breaker: { consecutive_failures: 5, open_for: 0s }
    pool: { idle_timeout: 0s }
    health: { passive: { base_ejection: 0s, max_ejection: 0s } }
auth:
  idp: { jwt: { algorithms: [RS256], jwks_uri: "http://127.0.0.1:9/jwks", jwks_refresh: 0s } }
routes:
  - { name: r, match: { path: /r }, upstream: u }
"#;
    let loaded = crate::config::parse_str(text, "t.yaml", std::path::Path::new(".")).unwrap();
    let errors = crate::plan::compile(&loaded).expect_err("refused").0;
    let said: Vec<String> = errors.iter().map(|e| format!("{}: {}", e.path, e.message)).collect();
    assert!(said.iter().any(|m| m.starts_with("upstreams.u.breaker.open_for: must be longer than zero")), "{said:?}");
    assert!(said.iter().any(|m| m.starts_with("upstreams.u.pool.idle_timeout: must be longer than zero")), "{said:?}");
    assert!(said.iter().any(|m| m.contains("max_idle_per_target: 0")), "{said:?}");
    assert!(said.iter().any(|m| m.starts_with("upstreams.u.health.passive.base_ejection: must be longer")), "{said:?}");
    assert!(said.iter().any(|m| m.starts_with("auth.idp.jwt.jwks_refresh: at least 1s")), "{said:?}");
}

/// An OTLP endpoint's scheme is read case-insensitively (RFC 3986 §3.1).
#[test]
fn otlp_endpoint_schemes_are_case_insensitive() {
    for endpoint in ["HTTPS://collector.example:4318", "Http://127.0.0.1:4318"] {
        let text = format!(
            "listeners: [ {{ name: gw, bind: \"127.0.0.1:0\" }} ]\ntracing: {{ otlp: {{ endpoint: \"{endpoint}\" }} }}\nroutes: [ {{ name: r, match: {{ path: /r }}, echo: {{}} }} ]\n"
        );
        let loaded = crate::config::parse_str(&text, "t.yaml", std::path::Path::new(".")).unwrap();
        if let Err(errors) = crate::plan::compile(&loaded) {
            let said: Vec<String> = errors.0.iter().map(|e| format!("{}: {}", e.path, e.message)).collect();
            panic!("{endpoint}: {said:?}");
        }
    }
}

/// A static status outside 200-599 is refused (`http` takes up to 999, and
/// a `999 Unknown` went out; RFC 9110 §15: three digits, 100-599).
#[test]
fn static_statuses_are_final_http_statuses() {
    for (status, ok) in [(199, false), (200, true), (599, true), (600, false), (999, false)] {
        let text = format!(
            "listeners: [ {{ name: gw, bind: \"127.0.0.1:0\" }} ]\nroutes: [ {{ name: r, match: {{ path: /r }}, static: {{ status: {status} }} }} ]\n"
        );
        let loaded = crate::config::parse_str(&text, "t.yaml", std::path::Path::new(".")).unwrap();
        match crate::plan::compile(&loaded) {
            Ok(_) => assert!(ok, "{status} taken"),
            Err(errors) => {
                assert!(!ok, "{status} refused");
                assert_eq!(errors.0[0].path, "routes[0].static.status");
            }
        }
    }
}

/// Rates the counters cannot keep as written are refused where they are written.
#[test]
fn rates_the_counters_cannot_keep_are_refused() {
    let text = r#"
listeners: [ { name: gw, bind: "127.0.0.1:0" } ]
rate_limit_store: { redis: { url: "redis://127.0.0.1:9/" } }
routes:
  - name: fast
    match: { path: /fast }
    static: { body: ok }
    rate_limit: [ { key: route, rate: 200000/s }, { key: route, rate: 100000/s } ]
  - name: long
    match: { path: /long }
    static: { body: ok }
    rate_limit: [ { key: ip, rate: 1/day, burst: 1000000000 }, { key: ip, rate: 1/day, burst: 100000 } ]
"#;
    let loaded = crate::config::parse_str(text, "t.yaml", std::path::Path::new(".")).unwrap();
    let errors = crate::plan::compile(&loaded).expect_err("refused").0;
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["routes[0].rate_limit[0].rate", "routes[1].rate_limit[0].burst"], "{errors:?}");
    assert!(errors[0].message.contains("microseconds"), "{}", errors[0].message);
    assert!(errors[1].message.contains("at most 106750 requests"), "{}", errors[1].message);
}

#[test]
fn a_redirect_parameter_may_not_choose_the_host() {
    for safe in [
        "/{page}",
        "/docs/{page}",
        "https://example.com/{rest}",
        "https://example.com?next={page}",
        "https://example.com#{page}",
        "/static",
        "https://example.com",
        "?p={page}",
        "#{page}",
        "v2/{page}",
        "./{page}",
        "../{page}",
    ] {
        assert_eq!(super::route::open_redirect(safe), None, "{safe}");
    }
    for open in [
        "https://docs.example.com{page}",
        "https://{host}/{rest}",
        "{*rest}",
        "//{host}/x",
        "//example.com{page}",
        "https:{page}",
        "docs{page}",
        "{scheme}://example.com/",
        "/\\{page}",
        "\\\\{page}",
        "https:///{page}",
        "https:\\\\{host}/",
        "/\t/{page}",
        "https://a.example/\n{page}",
        "https:{page}/x",
        " //{page}",
        " /{page}",
    ] {
        assert!(super::route::open_redirect(open).is_some(), "{open}");
    }
}

#[test]
fn redirect_targets_are_sent_as_written() {
    for fine in ["/new", "https://x.example/a%20b?q=1#f", "/docs/{page}", "?p={page}", "../{page}", "/a|b^c"] {
        assert_eq!(super::route::unsendable_target(fine), None, "{fine}");
    }
    for (bad, says) in [
        ("", "empty"),
        ("//evil.example/x", "https://evil.example/x"),
        ("/a b", "` ` must be percent-encoded"),
        ("/caf\u{e9}", "`\u{e9}` must be"),
        ("/x?q=\"y\"", "`\"`"),
        ("/\\evil.example/x", "`\\`"),
        ("\\\\evil.example/x", "`\\`"),
    ] {
        let why = super::route::unsendable_target(bad).unwrap_or_default();
        assert!(why.contains(says), "{bad}: {why}");
    }
}

/// `match.listeners` names defined listeners that serve routes, once each.
#[test]
fn route_listeners_must_be_defined_listeners_that_serve_routes() {
    let text = r#"
listeners:
  - { name: public, bind: "127.0.0.1:0" }
  - { name: plain, bind: "127.0.0.1:0", redirect_https: 443 }
routes:
  - { name: a, match: { path: /a, listeners: [ publik ] }, static: { body: a } }
  - { name: b, match: { path: /b, listeners: [ public, public ] }, static: { body: b } }
  - { name: c, match: { path: /c, listeners: [ plain ] }, static: { body: c } }
  - { name: d, match: { path: /d, listeners: [] }, static: { body: d } }
  - { name: e, match: { path: /e, listeners: [ public ] }, static: { body: e } }
  - { name: f, match: { path: /e }, static: { body: f } }
"#;
    let loaded = crate::config::parse_str(text, "t.yaml", std::path::Path::new(".")).unwrap();
    let errors = crate::plan::compile(&loaded).expect_err("refused").0;
    let at = |path: &str| errors.iter().find(|e| e.path == path).map(|e| e.message.clone());
    assert!(
        at("routes[0].match.listeners[0]")
            .is_some_and(|m| m.contains("unknown listener `publik` (defined: plain, public)")),
        "{errors:?}"
    );
    assert!(at("routes[1].match.listeners[1]").is_some_and(|m| m.contains("listed twice")), "{errors:?}");
    assert!(at("routes[2].match.listeners[0]").is_some_and(|m| m.contains("redirect_https")), "{errors:?}");
    assert!(at("routes[3].match.listeners").is_some_and(|m| m.contains("empty listener list")), "{errors:?}");
    // A route scoped to a listener and one for every listener, on one path: no conflict.
    assert_eq!(errors.len(), 4, "{errors:?}");
}

/// Quotas sharing a name share one count, so one window.
#[test]
fn quotas_sharing_a_name_share_their_window() {
    let text = r#"
listeners: [ { name: gw, bind: "127.0.0.1:0" } ]
routes:
  - { name: a, match: { path: /a }, static: { body: a }, quota: [ { name: q, key: ip, limit: 2, per: minute } ] }
  - { name: b, match: { path: /b }, static: { body: b }, quota: [ { name: q, key: ip, limit: 9, per: minute } ] }
  - { name: c, match: { path: /c }, static: { body: c }, quota: [ { name: q, key: ip, limit: 2, per: hour } ] }
"#;
    let loaded = crate::config::parse_str(text, "t.yaml", std::path::Path::new(".")).unwrap();
    let errors = crate::plan::compile(&loaded).expect_err("refused").0;
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["routes[0].quota[0].per", "routes[1].quota[0].per", "routes[2].quota[0].per"], "{errors:?}");
    assert!(errors[2].message.contains("this one is per hour, another per minute"), "{}", errors[2].message);
}

/// A rewrite target is forwarded as written: one that normalization would
/// change reads as another path behind (`//admin/{id}` as `/admin/7`),
/// past the routes that know it as written. Refused, with the form to write.
#[test]
fn rewrite_targets_must_be_normalized_paths() {
    let text = r#"
listeners: [ { name: gw, bind: "127.0.0.1:0" } ]
upstreams: { up: { targets: [ "http://127.0.0.1:9" ] } }
routes:
  - { name: a, match: { path: "/a/{id}" }, upstream: up, rewrite: { path: "//admin/{id}" } }
  - { name: b, match: { path: "/b/{id}" }, upstream: up, rewrite: { path: "/./admin/{id}" } }
  - { name: c, match: { path: "/c/{id}" }, upstream: up, rewrite: { path: "/%61dmin/{id}" } }
  - { name: d, match: { path_prefix: /d }, upstream: up, rewrite: { replace_prefix: { from: /d, to: "/x/../admin" } } }
  - { name: e, match: { path_prefix: /e }, upstream: up, rewrite: { replace_prefix: { from: /e, to: "/a b" } } }
  - { name: f, match: { path: "/f/{id}" }, upstream: up, rewrite: { path: "/naïve/{id}" } }
  - { name: g, match: { path: "/g/{id}" }, upstream: up, rewrite: { path: "/projects/group%2Fproject/{id}" } }
  - { name: h, match: { path: "/h/{id}" }, upstream: up, rewrite: { path: "/users/{id}/files" } }
"#;
    let loaded = crate::config::parse_str(text, "t.yaml", std::path::Path::new(".")).unwrap();
    let errors = crate::plan::compile(&loaded).expect_err("refused").0;
    let at = |path: &str| errors.iter().find(|e| e.path == path).map(|e| e.message.clone()).unwrap_or_default();
    assert!(at("routes[0].rewrite.path").contains("read it as `/admin/{id}`"), "{errors:?}");
    assert!(at("routes[1].rewrite.path").contains("read it as `/admin/{id}`"), "{errors:?}");
    assert!(at("routes[2].rewrite.path").contains("read it as `/admin/{id}`"), "{errors:?}");
    assert!(at("routes[3].rewrite.replace_prefix.to").contains("read it as `/admin`"), "{errors:?}");
    assert!(at("routes[4].rewrite.replace_prefix.to").contains("`/a%20b`"), "{errors:?}");
    assert!(at("routes[5].rewrite.path").contains("`/na%C3%AFve/{id}`"), "{errors:?}");
    assert_eq!(errors.len(), 6, "an encoded slash and a plain template are fine: {errors:?}");
}
