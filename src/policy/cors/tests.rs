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
