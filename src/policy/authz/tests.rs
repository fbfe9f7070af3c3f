//! Authorization decisions for hand-made identities: scopes (all and any),
//! claim conditions, groups, and the answer a refused caller gets.

use std::sync::Arc;

use http::{HeaderValue, Request, StatusCode};
use serde_json::json;

use super::{AuthorizeConfig, Compiled};
use crate::config::FieldErrors;
use crate::policy::compile::{Shared, with_test_ctx};
use crate::policy::ctx::{Consumer, Identity, Outcome, RequestCtx};

fn compile(yaml: &str) -> Result<Compiled, FieldErrors> {
    let cfg: AuthorizeConfig = serde_saphyr::from_str(yaml).expect("authorize config parses");
    with_test_ctx(Shared::default(), |cx| Compiled::compile(&cfg, cx))
}

fn identity(scopes: &[&str], groups: &[&str], claims: serde_json::Value, bearer: bool) -> Arc<Identity> {
    Arc::new(Identity {
        provider: "test".into(),
        subject: "alice".into(),
        consumer: Some(Arc::new(Consumer {
            id: "c".into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            scopes: Vec::new(),
        })),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        claims: Some(Arc::new(claims)),
        bearer,
        rendered: Default::default(),
    })
}

/// The status and `WWW-Authenticate` of the decision (200: let through).
fn decide(policy: &Compiled, id: Option<Arc<Identity>>) -> (StatusCode, Option<String>) {
    let request_id = HeaderValue::from_static("r-1");
    let mut ctx = RequestCtx::new("192.0.2.1".parse().unwrap(), &request_id, "route", None);
    ctx.identity = id;
    let mut req = Request::new(()).into_parts().0;
    match policy.on_request(&mut req, &mut ctx) {
        Outcome::Continue => (StatusCode::OK, None),
        Outcome::Respond(resp) => {
            let challenge = resp.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string());
            (resp.status(), challenge)
        }
    }
}

#[test]
fn every_listed_scope_is_required_and_a_bearer_caller_is_told_which() {
    let p = compile("scopes: [orders:read, orders:write]").unwrap();
    let ok = identity(&["orders:read", "orders:write", "x"], &[], json!({}), true);
    assert_eq!(decide(&p, Some(ok)).0, StatusCode::OK);
    let (status, challenge) = decide(&p, Some(identity(&["orders:read"], &[], json!({}), true)));
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        challenge.as_deref(),
        Some("Bearer realm=\"portcullis\", error=\"insufficient_scope\", scope=\"orders:read orders:write\"")
    );
    // Not a bearer credential (an API key): 403 without a bearer challenge.
    let (status, challenge) = decide(&p, Some(identity(&["orders:read"], &[], json!({}), false)));
    assert_eq!((status, challenge), (StatusCode::FORBIDDEN, None));
}

#[test]
fn any_scopes_needs_one_of_them() {
    let p = compile("any_scopes: [admin, support]").unwrap();
    assert_eq!(decide(&p, Some(identity(&["support"], &[], json!({}), true))).0, StatusCode::OK);
    assert_eq!(decide(&p, Some(identity(&["user"], &[], json!({}), true))).0, StatusCode::FORBIDDEN);
}

#[test]
fn claim_conditions_read_nested_claims() {
    let p = compile(
        "claims:\n  - { claim: tenant, equals: acme }\n  - { claim: realm_access.roles, contains: buyer }\n  - { claim: tier, one_of: [gold, \"2\"] }\n",
    )
    .unwrap();
    let claims = json!({ "tenant": "acme", "realm_access": { "roles": ["buyer", "viewer"] }, "tier": 2 });
    assert_eq!(decide(&p, Some(identity(&[], &[], claims.clone(), true))).0, StatusCode::OK);
    let mut other_tenant = claims.clone();
    other_tenant["tenant"] = json!("globex");
    assert_eq!(decide(&p, Some(identity(&[], &[], other_tenant, true))).0, StatusCode::FORBIDDEN);
    let mut roles_as_text = claims.clone();
    roles_as_text["realm_access"]["roles"] = json!("viewer buyer");
    assert_eq!(decide(&p, Some(identity(&[], &[], roles_as_text, true))).0, StatusCode::OK);
    // Words are split at the ASCII space only, as scopes: another blank joins them.
    for joined in ["viewer\u{a0}buyer", "viewer\tbuyer", "viewer\u{3000}buyer", "viewer\nbuyer"] {
        let mut one_word = claims.clone();
        one_word["realm_access"]["roles"] = json!(joined);
        assert_eq!(decide(&p, Some(identity(&[], &[], one_word, true))).0, StatusCode::FORBIDDEN, "{joined:?}");
    }
    let mut missing = claims;
    missing.as_object_mut().unwrap().remove("tier");
    assert_eq!(decide(&p, Some(identity(&[], &[], missing, true))).0, StatusCode::FORBIDDEN);
}

#[test]
fn groups_allow_and_deny_with_deny_winning() {
    let p = compile("groups: { allow: [partners, staff], deny: [suspended] }").unwrap();
    assert_eq!(decide(&p, Some(identity(&[], &["staff"], json!({}), false))).0, StatusCode::OK);
    assert_eq!(decide(&p, Some(identity(&[], &["public"], json!({}), false))).0, StatusCode::FORBIDDEN);
    let both = identity(&[], &["staff", "suspended"], json!({}), false);
    assert_eq!(decide(&p, Some(both)).0, StatusCode::FORBIDDEN);
}

#[test]
fn no_identity_is_refused_closed() {
    let p = compile("scopes: []").unwrap();
    assert_eq!(decide(&p, None).0, StatusCode::FORBIDDEN);
}

#[test]
fn a_claim_condition_needs_exactly_one_test() {
    let errs = compile("claims: [ { claim: roles, contains: \"\" }, { claim: roles, contains: a b } ]").unwrap_err();
    assert_eq!(errs.len(), 2, "{errs:?}");
    let errs = compile("claims: [ { claim: tenant, equals: a, contains: b }, { claim: tier } ]").unwrap_err();
    let paths: Vec<&str> = errs.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["claims[0]", "claims[1]"]);
}
