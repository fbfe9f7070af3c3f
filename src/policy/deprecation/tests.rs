//! Unit tests of the `deprecation` policy.

use super::*;
use crate::policy::compile::{Shared, with_test_ctx};

fn compile(since: &str, sunset: Option<&str>, link: Option<&str>) -> Result<Compiled, FieldErrors> {
    let cfg = DeprecationConfig { since: since.into(), sunset: sunset.map(String::from), link: link.map(String::from) };
    with_test_ctx(Shared::default(), |cx| Compiled::compile(&cfg, cx))
}

#[test]
fn headers_are_appended_in_their_standard_forms() {
    let c = compile("2026-06-30", Some("2027-01-31"), Some("https://example.com/migrate")).unwrap();
    let mut h = HeaderMap::new();
    h.append(http::header::LINK, HeaderValue::from_static("</page/2>; rel=\"next\""));
    c.on_response(&mut h);
    assert_eq!(h["deprecation"], "@1782777600");
    assert_eq!(h["sunset"], "Sun, 31 Jan 2027 00:00:00 GMT");
    assert_eq!(h.get_all(http::header::LINK).iter().count(), 2, "the upstream's own Link stays");
}

#[test]
fn bad_dates_and_links_are_named() {
    let errs = compile("yesterday", Some("soon"), Some("/relative")).unwrap_err();
    let paths: Vec<&str> = errs.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["since", "sunset", "link"]);
}

/// RFC 9745 §3: a `Sunset` earlier than the `Deprecation` is refused.
#[test]
fn a_sunset_before_the_deprecation_is_refused() {
    let errs = compile("2026-01-01", Some("2025-01-01"), None).unwrap_err();
    assert_eq!(errs.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(), ["sunset"]);
    assert!(errs[0].1.contains("before `since`"), "{errs:?}");
    assert!(compile("2026-01-01", Some("2026-01-01"), None).is_ok(), "the same day is fine");
}
