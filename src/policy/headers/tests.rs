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
