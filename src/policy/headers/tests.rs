//! Unit tests of the `headers` policy.

use super::*;
use crate::policy::compile::{Shared, with_test_ctx};

#[test]
fn sets_and_removes() {
    let cfg = HeaderOpsConfig { set: [("X-A".to_string(), "1".to_string())].into(), remove: vec!["x-b".to_string()] };
    let c = with_test_ctx(Shared::default(), |cx| Compiled::compile(&cfg, cx)).unwrap();
    let mut h = HeaderMap::new();
    h.insert("x-b", "gone".parse().unwrap());
    h.insert("x-a", "old".parse().unwrap());
    c.apply(&mut h);
    assert_eq!(h.get("x-a").unwrap(), "1");
    assert!(!h.contains_key("x-b"));
}

#[test]
fn rejects_bad_names() {
    let cfg = HeaderOpsConfig { set: [("bad name".to_string(), "1".to_string())].into(), remove: vec![] };
    let errs = with_test_ctx(Shared::default(), |cx| Compiled::compile(&cfg, cx)).unwrap_err();
    assert_eq!(errs[0].0, "set.bad name");
}

#[test]
fn framing_and_connection_fields_are_not_settable() {
    for name in ["Content-Length", "transfer-encoding", "Connection", "keep-alive", "upgrade", "te", "trailer"] {
        let cfg = HeaderOpsConfig { set: [(name.to_string(), "1".to_string())].into(), remove: vec![] };
        let errs = with_test_ctx(Shared::default(), |cx| Compiled::compile(&cfg, cx)).unwrap_err();
        assert_eq!(errs[0].0, format!("set.{name}"));
        assert!(errs[0].1.contains("cannot be set"), "{}", errs[0].1);
    }
    // Removing them is fine (the gateway frames the message anyway).
    let cfg = HeaderOpsConfig { set: Default::default(), remove: vec!["content-length".to_string()] };
    assert!(with_test_ctx(Shared::default(), |cx| Compiled::compile(&cfg, cx)).is_ok());
}

#[test]
fn a_name_twice_in_another_case_and_a_host_that_is_none_are_refused() {
    let set = [("X-A", "1"), ("x-a", "2"), ("Host", "evil.com@x"), ("X-B", "ok")];
    let cfg = HeaderOpsConfig { set: set.map(|(k, v)| (k.to_string(), v.to_string())).into(), remove: vec![] };
    let errs = with_test_ctx(Shared::default(), |cx| Compiled::compile(&cfg, cx)).unwrap_err();
    let paths: Vec<&str> = errs.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["set.Host", "set.x-a"]);
    assert!(errs[1].1.contains("written twice"), "{}", errs[1].1);
    let cfg = HeaderOpsConfig { set: [("Host".to_string(), "api.internal:8080".to_string())].into(), remove: vec![] };
    assert!(with_test_ctx(Shared::default(), |cx| Compiled::compile(&cfg, cx)).is_ok());
}

#[test]
fn values_with_surrounding_blanks_and_names_with_underscores_are_refused() {
    // A client's such names are dropped (`x_user` read as `X-User` by CGI);
    // a value's surrounding blanks are trimmed by HTTP/1.1, refused by HTTP/2.
    let set = [("X_User", "a"), ("x.tenant", "b"), ("X-Lead", " a "), ("X-Tab", "b\t"), ("X-Fine", "a b")];
    let cfg = HeaderOpsConfig { set: set.map(|(k, v)| (k.to_string(), v.to_string())).into(), remove: vec![] };
    let errs = with_test_ctx(Shared::default(), |cx| Compiled::compile(&cfg, cx)).unwrap_err();
    let mut paths: Vec<&str> = errs.iter().map(|(p, _)| p.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(paths, ["set.X-Lead", "set.X-Tab", "set.X_User", "set.x.tenant"], "{errs:?}");
}
