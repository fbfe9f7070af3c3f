use super::*;

fn matcher(host: Option<&str>, path: &str, methods: Option<&[&str]>) -> Matcher {
    let path = match path.strip_suffix('*') {
        Some(p) => PathPattern::parse_prefix(p).unwrap(),
        None => PathPattern::parse_path(path).unwrap(),
    };
    Matcher {
        host: host.map_or(HostMatch::Any, |h| HostMatch::parse(h).unwrap()),
        params: path.param_names(),
        path,
        methods: methods.map(|ms| ms.iter().map(|m| m.parse().unwrap()).collect()),
        headers: vec![],
        version: None,
        listeners: None,
    }
}

fn find(r: &Router, host: Option<&str>, path: &str, method: &str) -> Result<usize, Miss> {
    let method: Method = method.parse().unwrap();
    let headers = HeaderMap::new();
    r.find(&RequestView { listener: "public", host, path, method: &method, headers: &headers }).map(|f| f.route)
}

#[test]
fn most_specific_wins_whatever_the_config_order() {
    let r = Router::new(vec![
        matcher(None, "/*", None),
        matcher(None, "/users/*", None),
        matcher(None, "/users/{id}", None),
        matcher(None, "/users/me", None),
        matcher(Some("api.example.com"), "/*", None),
        matcher(Some("*.example.com"), "/*", None),
    ]);
    assert_eq!(find(&r, None, "/users/me", "GET"), Ok(3));
    assert_eq!(find(&r, None, "/users/7", "GET"), Ok(2));
    assert_eq!(find(&r, None, "/users/7/posts", "GET"), Ok(1));
    assert_eq!(find(&r, None, "/other", "GET"), Ok(0));
    assert_eq!(find(&r, Some("api.example.com"), "/users/me", "GET"), Ok(4));
    assert_eq!(find(&r, Some("www.example.com"), "/users/me", "GET"), Ok(5));
    assert!(r.conflicts().is_empty(), "{:?}", r.conflicts());
}

#[test]
fn method_not_allowed_lists_methods() {
    let r = Router::new(vec![matcher(None, "/a", Some(&["GET"])), matcher(None, "/a", Some(&["POST", "PUT"]))]);
    assert_eq!(find(&r, None, "/a", "POST"), Ok(1));
    let Err(Miss::MethodNotAllowed(allow)) = find(&r, None, "/a", "DELETE") else { panic!() };
    assert_eq!(allow.len(), 4, "GET, HEAD (implied), POST, PUT: {allow:?}");
    assert_eq!(find(&r, None, "/b", "GET"), Err(Miss::NotFound));
}

#[test]
fn head_goes_where_get_goes_unless_a_route_takes_head_itself() {
    let r = Router::new(vec![matcher(None, "/a", Some(&["GET"])), matcher(None, "/b", Some(&["POST"]))]);
    assert_eq!(find(&r, None, "/a", "HEAD"), Ok(0));
    let Err(Miss::MethodNotAllowed(allow)) = find(&r, None, "/b", "HEAD") else { panic!() };
    assert_eq!(allow, [http::Method::POST]);
    let r = Router::new(vec![matcher(None, "/a", Some(&["GET"])), matcher(None, "/a", Some(&["HEAD"]))]);
    assert_eq!(find(&r, None, "/a", "HEAD"), Ok(1));
    // A less specific route that takes any method (a public catch-all)
    // does not take the HEAD of a more specific GET route (an
    // authenticated one, whose service answers HEAD with its GET handler).
    let r = Router::new(vec![matcher(None, "/admin*", Some(&["GET"])), matcher(None, "/*", None)]);
    assert_eq!(find(&r, None, "/admin/users", "HEAD"), Ok(0));
    assert_eq!(find(&r, None, "/admin/users", "POST"), Ok(1));
    assert_eq!(find(&r, None, "/public", "HEAD"), Ok(1));
    let r =
        Router::new(vec![matcher(None, "/admin*", Some(&["GET"])), matcher(None, "/*", Some(&["HEAD", "OPTIONS"]))]);
    assert_eq!(find(&r, None, "/admin/users", "HEAD"), Ok(0));
    // As specific, listing HEAD itself among more methods: that route takes HEAD.
    let r = Router::new(vec![matcher(None, "/x", Some(&["GET"])), matcher(None, "/x", Some(&["HEAD", "OPTIONS"]))]);
    assert_eq!(find(&r, None, "/x", "HEAD"), Ok(1));
    assert_eq!(find(&r, None, "/x", "GET"), Ok(0));
    // As specific by a header instead of methods, taking any method: not HEAD's.
    let mut tagged = matcher(None, "/admin*", None);
    tagged.headers.push(HeaderCondition { name: http::HeaderName::from_static("x-client"), value: None });
    let r = Router::new(vec![matcher(None, "/admin*", Some(&["GET"])), tagged]);
    let mut headers = http::HeaderMap::new();
    headers.insert("x-client", http::HeaderValue::from_static("app"));
    let head = RequestView {
        listener: "public",
        host: None,
        path: "/admin/x",
        method: &http::Method::HEAD,
        headers: &headers,
    };
    assert_eq!(r.find(&head).map(|f| f.route), Ok(0));
    let post = RequestView { method: &http::Method::POST, ..head };
    assert_eq!(r.find(&post).map(|f| f.route), Ok(1));
}

#[test]
fn detects_ambiguous_routes() {
    let r = Router::new(vec![matcher(None, "/a/{x}", None), matcher(None, "/a/{y}", None)]);
    assert_eq!(r.conflicts(), vec![Conflict::Ambiguous { first: 0, second: 1 }]);
    let r = Router::new(vec![matcher(None, "/a", Some(&["GET"])), matcher(None, "/a", Some(&["POST"]))]);
    assert!(r.conflicts().is_empty());
    let r = Router::new(vec![matcher(None, "/a", Some(&["GET", "POST"])), matcher(None, "/a", Some(&["POST", "PUT"]))]);
    assert_eq!(r.conflicts().len(), 1);
}

/// Any host, path and method against a table of every kind of pattern: no
/// panic, and a route found is one whose host and path match, with no more
/// specific route matching as well.
#[test]
fn fuzz_router() {
    use proptest::prelude::*;
    let table = || {
        vec![
            matcher(None, "/*", None),
            matcher(None, "/users/*", None),
            matcher(None, "/users/{id}", Some(&["GET"])),
            matcher(None, "/users/{id}/posts/{post}", None),
            matcher(None, "/users/me", None),
            matcher(None, "/files/{*rest}", None),
            matcher(Some("api.example.com"), "/*", None),
            matcher(Some("*.example.com"), "/v1/*", Some(&["POST", "PUT"])),
        ]
    };
    let router = Router::new(table());
    let matchers = table();
    let segment = prop::sample::select(vec!["users", "me", "7", "posts", "files", "v1", "", "%2F", "a.b", "~"]);
    let host =
        prop::sample::select(vec![None, Some("api.example.com"), Some("x.example.com"), Some("example.com"), Some("")]);
    let method = prop::sample::select(vec!["GET", "POST", "PUT", "DELETE"]);
    let cases = (prop::collection::vec(segment, 0..6), host, method, any::<bool>());
    crate::fuzz::run("router", cases, |(segments, host, method, trailing)| {
        let mut path = format!("/{}", segments.join("/"));
        if trailing {
            path.push('/');
        }
        let method: Method = method.parse().unwrap();
        let headers = HeaderMap::new();
        let view = RequestView { listener: "public", host, path: &path, method: &method, headers: &headers };
        if let Ok(found) = router.find(&view) {
            let m = &matchers[found.route];
            prop_assert!(m.host.matches(host) && m.path.matches(&path, &mut Vec::new()), "{path} {host:?}");
        }
        Ok(())
    });
}

/// The index only leaves out routes that cannot match: on random tables and
/// paths, finding through it answers what trying every route in precedence
/// order answers, and its pairs hold every conflict that comparing every
/// pair of routes finds.
#[test]
fn fuzz_router_index_matches_trying_every_route() {
    use proptest::prelude::*;
    let segment = || prop::sample::select(vec!["a", "b", "", "{p}", "{q}.json", "v{n}"]);
    let path_text = (prop::collection::vec(segment(), 0..4), 0..4u8).prop_map(|(segments, tail)| {
        let mut path = format!("/{}", segments.join("/"));
        match tail {
            0 => path.push_str(if segments.is_empty() { "*" } else { "/*" }),
            1 if !segments.is_empty() => path.push_str("/{*rest}"),
            _ => {}
        }
        path
    });
    let methods = prop::sample::select(vec![None, Some(&["GET"][..]), Some(&["POST", "GET"][..])]);
    let host = prop::sample::select(vec![None, Some("x.com")]);
    let table = prop::collection::vec((host, path_text, methods), 0..12);
    let request = prop::collection::vec(prop::sample::select(vec!["a", "b", "", "7", "7.json", "v2"]), 0..5);
    let cases = (table, prop::collection::vec((request, any::<bool>()), 1..8));
    crate::fuzz::run("router_index", cases, |(table, requests)| {
        // Paths a pattern cannot be (a parameter twice, a prefix with one) are left out.
        let matchers: Vec<Matcher> = table
            .iter()
            .filter(|(_, path, _)| match path.strip_suffix('*') {
                Some(prefix) => PathPattern::parse_prefix(prefix).is_ok(),
                None => PathPattern::parse_path(path).is_ok(),
            })
            .map(|(host, path, methods)| matcher(*host, path, *methods))
            .collect();
        let router = Router::new(matchers);
        let every_route = 0..router.ordered.len();
        for (segments, to_host) in requests {
            let path = format!("/{}", segments.join("/"));
            let host = to_host.then_some("x.com");
            for method in [Method::GET, Method::HEAD, Method::DELETE] {
                let headers = HeaderMap::new();
                let view = RequestView { listener: "public", host, path: &path, method: &method, headers: &headers };
                let (indexed, tried) = (router.find(&view), router.find_among(every_route.clone(), &view));
                prop_assert_eq!(
                    indexed.as_ref().map(|f| (f.route, f.values.clone())),
                    tried.as_ref().map(|f| (f.route, f.values.clone())),
                    "{} {}",
                    method,
                    path
                );
            }
        }
        let mut every_pair = Vec::new();
        for earlier in every_route.clone() {
            for later in earlier + 1..every_route.end {
                every_pair.extend(router.conflict_between(earlier, later));
            }
        }
        prop_assert_eq!(router.conflicts(), every_pair);
        Ok(())
    });
}
