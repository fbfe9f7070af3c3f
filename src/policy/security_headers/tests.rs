//! Unit tests of the `security_headers` policy.

use super::*;
use crate::policy::compile::{Shared, with_test_ctx};
use crate::wire::field_edits::Passing;
use http::HeaderMap;

#[test]
fn streamed_lines_meet_the_same_fate_as_map_entries() {
    let mut cfg = SecurityHeadersConfig::default();
    cfg.set.insert("x-frame-options".into(), "SAMEORIGIN".into());
    cfg.set.insert("x-team".into(), "api".into());
    let c = with_test_ctx(Shared::default(), |cx| compile(&cfg, cx)).unwrap();
    let name = |n: &'static str| HeaderName::from_static(n);
    assert_eq!(c.passing(&name("server")), Passing::Dropped);
    assert_eq!(c.passing(&name("x-frame-options")), Passing::Dropped);
    assert_eq!(c.passing(&name("x-team")), Passing::Dropped);
    assert_eq!(c.passing(&name("content-type")), Passing::Kept);
    let Passing::KeptForDefault(i) = c.passing(&name("referrer-policy")) else { panic!() };
    assert_eq!(c.defaults()[i].0, "referrer-policy");
    assert_eq!(
        String::from_utf8_lossy(c.default_lines()),
        "x-content-type-options: nosniff\r\ncontent-security-policy: default-src 'none'; \
         frame-ancestors 'none'\r\nreferrer-policy: no-referrer\r\n"
    );
    assert_eq!(c.forced_lines().0, b"x-frame-options: SAMEORIGIN\r\nx-team: api\r\n");
}

#[test]
fn defaults_fill_gaps_and_remove_banners() {
    let c = with_test_ctx(Shared::default(), |cx| compile(&SecurityHeadersConfig::default(), cx)).unwrap();
    let mut h = HeaderMap::new();
    h.insert("server", "Apache/2.4".parse().unwrap());
    h.insert("x-frame-options", "SAMEORIGIN".parse().unwrap());
    c.apply(&mut h);
    assert!(!h.contains_key("server"));
    assert_eq!(h["x-frame-options"], "SAMEORIGIN");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "no-referrer");
}

#[test]
fn disabled_does_nothing() {
    let cfg = SecurityHeadersConfig { enabled: false, ..Default::default() };
    let c = with_test_ctx(Shared::default(), |cx| compile(&cfg, cx)).unwrap();
    let mut h = HeaderMap::new();
    h.insert("server", "x".parse().unwrap());
    c.apply(&mut h);
    assert_eq!(h.len(), 1);
}

#[test]
fn values_browsers_ignore_and_fields_the_gateway_writes_are_refused() {
    let refused = |cfg: SecurityHeadersConfig| -> Vec<String> {
        let errors = with_test_ctx(Shared::default(), |cx| compile(&cfg, cx)).unwrap_err();
        errors.iter().map(|(path, _)| path.clone()).collect()
    };
    let mut cfg = SecurityHeadersConfig {
        frame_options: "ALLOWALL".into(),
        referrer_policy: "no-referer".into(),
        ..Default::default()
    };
    for (name, value) in
        [("Content-Length", "5"), ("Upgrade", "h2c"), ("Transfer-Encoding", "chunked"), ("X-A", "1"), ("x-a", "2")]
    {
        cfg.set.insert(name.into(), value.into());
    }
    assert_eq!(
        refused(cfg),
        ["frame_options", "referrer_policy", "set.Content-Length", "set.Transfer-Encoding", "set.Upgrade", "set.x-a"]
    );
    // What browsers do follow passes, in any case, lists of policies included.
    for (frame, referrer) in [
        ("sameorigin", "strict-origin-when-cross-origin"),
        ("DENY", "no-referrer, strict-origin"),
        ("DENY", "No-Referrer,"),
        ("DENY", "no-referrer,,future-policy"),
        ("", ""),
    ] {
        let cfg = SecurityHeadersConfig {
            frame_options: frame.into(),
            referrer_policy: referrer.into(),
            ..Default::default()
        };
        assert!(with_test_ctx(Shared::default(), |cx| compile(&cfg, cx)).is_ok(), "{frame} {referrer}");
    }
}

/// `Vary` may not be removed: the removal comes after CORS adds `Origin`
/// to it, and a shared cache would serve one origin's grant to another.
#[test]
fn vary_is_not_removable() {
    let cfg = SecurityHeadersConfig { remove: vec!["server".into(), "Vary".into()], ..Default::default() };
    let errors = with_test_ctx(Shared::default(), |cx| compile(&cfg, cx)).expect_err("refused");
    let said: Vec<String> = errors.iter().map(|(k, m)| format!("{k}: {m}")).collect();
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(said[0].starts_with("remove[1]: `Vary` cannot be removed"), "{said:?}");
}
