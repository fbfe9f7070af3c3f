//! Unit tests of the `cors` policy.

use super::*;
use crate::policy::compile::{Shared, with_test_ctx};

fn cors(origins: &[&str], credentials: bool) -> Result<Compiled, FieldErrors> {
    let cfg = CorsConfig {
        allow_origins: origins.iter().map(|s| s.to_string()).collect(),
        allow_methods: vec!["GET".into(), "PUT".into()],
        allow_headers: vec!["Content-Type".into()],
        expose_headers: vec![],
        allow_credentials: credentials,
        max_age: None,
    };
    with_test_ctx(Shared::default(), |cx| Compiled::compile(&cfg, cx))
}

#[test]
fn star_with_credentials_is_refused() {
    let errs = cors(&["*"], true).unwrap_err();
    assert_eq!(errs[0].0, "allow_credentials");
}

#[test]
fn origin_patterns() {
    let c = cors(&["https://app.example.com", "https://*.example.org"], false).unwrap();
    assert!(c.allows(&"https://app.example.com".parse().unwrap()));
    assert!(c.allows(&"https://a.b.example.org".parse().unwrap()));
    assert!(!c.allows(&"https://example.org".parse().unwrap()));
    assert!(!c.allows(&"http://app.example.com".parse().unwrap()));
    assert!(!c.allows(&"https://app.example.com.evil.net".parse().unwrap()));
}

#[test]
fn origins_that_no_browser_sends_are_refused_by_the_config() {
    for bad in [
        "https://*example.com",
        "https://*",
        "https://*.com:x",
        "https://app.example.com?x",
        "https://app.example.com/path",
        "https://user@app.example.com",
        "ftp://app.example.com",
        "app.example.com",
        "https://app.example.com:99999x",
        // A default port: browsers leave it out (RFC 6454 §6.2), so it never matches.
        "https://app.example.com:443",
        "http://c.example:80",
        "https://*.example.org:443",
        "https://a.example.com:0443",
        "http://a.example.com:080",
        "https://[::1]:443",
        "http://localhost:03000",
    ] {
        assert!(cors(&[bad], false).is_err(), "{bad}");
    }
    let Err(errors) = cors(&["HTTPS://App.example.com:443"], false) else { panic!("accepted") };
    assert!(format!("{errors:?}").contains("write `https://app.example.com`"), "{errors:?}");
    for good in [
        "https://app.example.com/",
        "http://localhost:3000",
        "https://[::1]:8443",
        "https://[::1]",
        "https://*.example.org:8443",
        "http://app.example.com:443",
        "https://app.example.com:80",
    ] {
        assert!(cors(&[good], false).is_ok(), "{good}");
    }
}

#[test]
fn a_subdomain_pattern_takes_host_labels_only() {
    let c = cors(&["https://*.example.com"], true).unwrap();
    assert!(c.allows(&"https://a.example.com".parse().unwrap()));
    for odd in [
        "https://evil.com/.example.com",
        "https://user@a.example.com",
        "https://evil.com%2e.example.com",
        "https://-a.example.com",
    ] {
        assert!(!c.allows(&odd.parse().unwrap()), "{odd}");
    }
}

/// A wildcard over a public suffix or an IP address lets in sites that are
/// not the config owner's: refused at load.
#[test]
fn wildcards_over_public_suffixes_or_addresses_are_refused() {
    for bad in [
        "https://*.github.io",
        "https://*.co.uk",
        "https://*.com.au",
        "https://*.0.1",
        "https://*.1.1.1",
        "https://*.herokuapp.com:8443",
        "https://*.s3.amazonaws.com",
        "https://*.nip.io",
        "https://*.myorg.github.io",
    ] {
        let errs = cors(&[bad], true).unwrap_err();
        assert!(errs[0].1.contains("not yours"), "{bad}: {errs:?}");
    }
    for good in ["https://*.example.co.uk", "https://*.example.com", "https://*.internal.example"] {
        assert!(cors(&[good], true).is_ok(), "{good}");
    }
}

/// Two `Access-Control-Request-Headers` lines are one list: a name on the
/// second is asked for too; a second `Access-Control-Request-Method`
/// makes the preflight malformed.
#[test]
fn preflight_lines_sent_twice() {
    let c = cors(&["https://app.example.com"], false).unwrap();
    let mut h = HeaderMap::new();
    h.insert(header::ORIGIN, "https://app.example.com".parse().unwrap());
    h.insert(header::ACCESS_CONTROL_REQUEST_METHOD, "GET".parse().unwrap());
    h.append(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type".parse().unwrap());
    assert!(c.preflight(&Method::GET, &h).is_ok());
    h.append(header::ACCESS_CONTROL_REQUEST_HEADERS, "x-evil".parse().unwrap());
    assert!(c.preflight(&Method::GET, &h).is_err(), "the second line's name is asked for too");
    h.remove(header::ACCESS_CONTROL_REQUEST_HEADERS);
    h.append(header::ACCESS_CONTROL_REQUEST_METHOD, "DELETE".parse().unwrap());
    assert!(c.preflight(&Method::GET, &h).is_err(), "two methods");
    // `*` grants still say the answer depends on Origin.
    let any = cors(&["*"], false).unwrap();
    let mut h = HeaderMap::new();
    h.insert(header::ORIGIN, "https://x.example".parse().unwrap());
    let resp = any.preflight(&Method::GET, &h).unwrap();
    let vary: Vec<_> = resp.headers().get_all(header::VARY).iter().map(|v| v.to_str().unwrap().to_string()).collect();
    assert!(vary.iter().any(|v| v.contains("Origin")), "{vary:?}");
}

#[test]
fn methods_the_gateway_never_serves_are_not_granted() {
    let cfg = CorsConfig {
        allow_origins: vec!["https://app.example.com".into()],
        allow_methods: vec!["GET".into(), "trace".into(), "CONNECT".into()],
        allow_headers: vec![],
        expose_headers: vec![],
        allow_credentials: false,
        max_age: None,
    };
    let errs = with_test_ctx(Shared::default(), |cx| Compiled::compile(&cfg, cx)).unwrap_err();
    let paths: Vec<&str> = errs.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["allow_methods[1]", "allow_methods[2]"]);
}

#[test]
fn max_age_is_sent_in_whole_seconds_rounded_up() {
    let with = |age: &str| {
        let cfg = CorsConfig {
            allow_origins: vec!["https://app.example.com".into()],
            allow_methods: vec![],
            allow_headers: vec![],
            expose_headers: vec![],
            allow_credentials: false,
            max_age: Some(age.parse().unwrap()),
        };
        with_test_ctx(Shared::default(), |cx| Compiled::compile(&cfg, cx)).unwrap().max_age.unwrap()
    };
    assert_eq!(with("500ms"), "1");
    assert_eq!(with("10m"), "600");
    assert_eq!(with("0s"), "0");
}
