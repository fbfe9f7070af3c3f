//! The authentication providers, one by one, against hand-made requests and
//! a hand-set wall clock (`WallClock::fixed`): what each accepts, what it
//! refuses, and when a credential stops working. The HTTP paths (JWKS
//! fetching, the introspection call, identity headers on the wire) are
//! tested end to end in `tests/it/auth.rs`.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Request, request};
use serde_json::json;

use super::{Consumers, Failure, Provider, hash_key};
use crate::config::LoadedConfig;
use crate::policy::clock::WallClock;
use crate::policy::compile::{CompileCtx, Shared, with_test_ctx};
use crate::policy::ctx::Identity;
use crate::tls::ClientIdentity;

const SECRET: &str = "a-secret-of-at-least-thirty-two-bytes!!";
/// 2026-12-03T00:00:00Z.
const NOW: u64 = 1_796_256_000;

fn load(yaml: &str) -> LoadedConfig {
    crate::config::parse_str(yaml, "test.yaml", std::path::Path::new(".")).expect("test config parses")
}

/// Every provider of `yaml`'s `auth` section, compiled with its consumers.
fn providers(yaml: &str) -> std::collections::HashMap<String, Provider> {
    let loaded = load(yaml);
    let mut shared = Shared::default();
    let consumers = with_test_ctx(Shared::default(), |cx| Consumers::compile(&loaded.config.consumers, cx));
    shared.insert(Arc::new(Arc::new(consumers.expect("consumers compile"))));
    loaded
        .config
        .auth
        .iter()
        .map(|(name, cfg)| {
            let mut cx = CompileCtx::new(&loaded, format!("auth.{name}"), &shared);
            cx.name = name;
            (name.clone(), Provider::compile(cfg, &mut cx).expect("compiles"))
        })
        .collect()
}

fn request_with(header: &str, value: &str) -> request::Parts {
    let mut req = Request::builder().uri("/orders?page=1").body(()).unwrap().into_parts().0;
    req.headers.insert(http::HeaderName::from_bytes(header.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
    req
}

mod jwt {
    use super::*;

    fn provider(clock: &WallClock) -> Provider {
        let yaml = format!(
            "auth:\n  hs: {{ jwt: {{ algorithms: [HS256], secret: \"{SECRET}\", issuer: gw, audiences: [api], leeway: 30s }} }}\n"
        );
        let mut p = providers(&yaml).remove("hs").unwrap();
        let Provider::Jwt(j) = &mut p else { unreachable!() };
        j.set_clock(clock.clone());
        p
    }

    fn sign(claims: serde_json::Value) -> String {
        let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
        jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256), &claims, &key).unwrap()
    }

    async fn check(p: &Provider, token: &str) -> Result<Arc<Identity>, Failure> {
        let Provider::Jwt(j) = p else { unreachable!() };
        j.authenticate(&mut request_with("authorization", &format!("Bearer {token}"))).await
    }

    fn claims(exp: u64) -> serde_json::Value {
        json!({ "iss": "gw", "aud": "api", "sub": "alice", "exp": exp, "scope": "orders:read orders:write" })
    }

    #[tokio::test]
    async fn a_valid_token_gives_its_subject_and_scopes() {
        let p = provider(&WallClock::fixed(NOW));
        let id = check(&p, &sign(claims(NOW + 600))).await.unwrap();
        assert_eq!(id.subject, "alice");
        assert_eq!(id.scopes, ["orders:read", "orders:write"]);
        assert!(id.bearer);
        assert_eq!(&*id.provider, "hs");
        // `scp` (Azure AD's name) when there is no `scope`, or a `null` one.
        for scope in [None, Some(json!(null))] {
            let mut c = claims(NOW + 600);
            match scope {
                Some(v) => c["scope"] = v,
                None => drop(c.as_object_mut().unwrap().remove("scope")),
            }
            c["scp"] = json!("read");
            assert_eq!(check(&p, &sign(c)).await.unwrap().scopes, ["read"]);
        }
    }

    #[tokio::test]
    async fn expiry_is_read_against_the_clock_with_leeway() {
        let p = provider(&WallClock::fixed(NOW));
        // 10 s past `exp`: within the 30 s leeway.
        assert!(check(&p, &sign(claims(NOW - 10))).await.is_ok());
        // 31 s past: refused.
        assert_eq!(check(&p, &sign(claims(NOW - 31))).await.unwrap_err(), Failure::Invalid);
    }

    #[tokio::test]
    async fn a_token_not_yet_valid_is_refused() {
        let p = provider(&WallClock::fixed(NOW));
        let mut early = claims(NOW + 600);
        early["nbf"] = json!(NOW + 60);
        assert_eq!(check(&p, &sign(early)).await.unwrap_err(), Failure::Invalid);
        let mut skewed = claims(NOW + 600);
        skewed["nbf"] = json!(NOW + 20);
        assert!(check(&p, &sign(skewed)).await.is_ok(), "within the leeway");
    }

    #[tokio::test]
    async fn time_claims_must_be_numbers() {
        let p = provider(&WallClock::fixed(NOW));
        let mut no_exp = claims(0);
        no_exp.as_object_mut().unwrap().remove("exp");
        assert!(check(&p, &sign(no_exp)).await.is_err());
        let mut text_exp = claims(0);
        text_exp["exp"] = json!("never");
        assert!(check(&p, &sign(text_exp)).await.is_err());
        let mut text_nbf = claims(NOW + 600);
        text_nbf["nbf"] = json!("now");
        assert!(check(&p, &sign(text_nbf)).await.is_err());
    }

    #[tokio::test]
    async fn time_claims_may_have_a_fraction() {
        // RFC 7519 §2: a NumericDate is a JSON number, fractions allowed.
        let p = provider(&WallClock::fixed(NOW));
        let mut decimal = claims(0);
        decimal["exp"] = json!(NOW as f64 + 600.5);
        decimal["nbf"] = json!(NOW as f64 - 10.5);
        assert!(check(&p, &sign(decimal)).await.is_ok());
        let mut past = claims(0);
        past["exp"] = json!(NOW as f64 - 31.5);
        assert!(check(&p, &sign(past)).await.is_err(), "expired, fraction or not");
        let mut negative = claims(0);
        negative["exp"] = json!(-1.5);
        assert!(check(&p, &sign(negative)).await.is_err());
    }

    #[tokio::test]
    async fn a_payload_with_a_member_twice_is_refused() {
        use base64::Engine as _;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let p = provider(&WallClock::fixed(NOW));
        // Signed as it is: a service reading the first `tenant` would see `evil`.
        let signed = |payload: &str| {
            let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
            let message = format!("{header}.{}", URL_SAFE_NO_PAD.encode(payload));
            let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
            let signature =
                jsonwebtoken::crypto::sign(message.as_bytes(), &key, jsonwebtoken::Algorithm::HS256).unwrap();
            format!("{message}.{signature}")
        };
        let base = format!(r#""iss":"gw","aud":"api","sub":"alice","exp":{}"#, NOW + 600);
        assert!(check(&p, &signed(&format!(r#"{{{base},"tenant":"acme"}}"#))).await.is_ok());
        let twice = signed(&format!(r#"{{{base},"tenant":"evil","tenant":"acme"}}"#));
        assert_eq!(check(&p, &twice).await.unwrap_err(), Failure::Invalid);
    }

    #[tokio::test]
    async fn issuer_must_be_one_string() {
        let p = provider(&WallClock::fixed(NOW));
        let mut listed = claims(NOW + 600);
        listed["iss"] = json!(["gw"]);
        assert!(check(&p, &sign(listed)).await.is_err(), "an iss list is not an issuer");
    }

    #[tokio::test]
    async fn issuer_audience_and_signature_are_checked() {
        let p = provider(&WallClock::fixed(NOW));
        let mut other_issuer = claims(NOW + 600);
        other_issuer["iss"] = json!("someone-else");
        assert!(check(&p, &sign(other_issuer)).await.is_err());
        let mut no_audience = claims(NOW + 600);
        no_audience.as_object_mut().unwrap().remove("aud");
        assert!(check(&p, &sign(no_audience)).await.is_err());
        let token = sign(claims(NOW + 600));
        let tampered = format!("{}x", &token[..token.len() - 1]);
        assert!(check(&p, &tampered).await.is_err());
        assert!(check(&p, "not.a.token").await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_cached_token_stops_working_at_its_exp() {
        let clock = WallClock::fixed(NOW);
        let p = provider(&clock);
        let token = sign(claims(NOW + 5));
        assert!(check(&p, &token).await.is_ok());
        // Both clocks move on past `exp` (and the leeway): the cached
        // verification must not outlive the token.
        clock.advance(40);
        tokio::time::advance(Duration::from_secs(40)).await;
        assert!(check(&p, &token).await.is_err());
    }
}

mod api_key {
    use super::*;
    use crate::policy::auth::api_key::Presented;

    fn provider(clock: &WallClock) -> Provider {
        let yaml = format!(
            "auth:\n  keys: {{ api_key: {{ header: X-API-Key }} }}\nconsumers:\n  - {{ id: mobile, scopes: [orders:read], api_keys: [ {{ sha256: \"{}\" }}, {{ sha256: \"{}\", expires: 2027-01-31 }} ] }}\n",
            hash_key("key-current"),
            hash_key("key-expiring"),
        );
        let mut p = providers(&yaml).remove("keys").unwrap();
        let Provider::ApiKey(k) = &mut p else { unreachable!() };
        k.set_clock(clock.clone());
        p
    }

    fn check(p: &Provider, req: &mut request::Parts) -> Result<Arc<Identity>, Failure> {
        let Provider::ApiKey(k) = p else { unreachable!() };
        k.authenticate(req)
    }

    #[test]
    fn a_known_key_is_its_consumer_and_is_not_forwarded() {
        let p = provider(&WallClock::fixed(NOW));
        let mut req = request_with("x-api-key", "key-current");
        let id = check(&p, &mut req).unwrap();
        assert_eq!(&*id.consumer.as_ref().unwrap().id, "mobile");
        assert_eq!(id.scopes, ["orders:read"]);
        assert!(!req.headers.contains_key("x-api-key"), "the key is for the gateway only");
    }

    #[test]
    fn unknown_and_missing_keys_are_refused() {
        let p = provider(&WallClock::fixed(NOW));
        assert_eq!(check(&p, &mut request_with("x-api-key", "key-guessed")).unwrap_err(), Failure::Invalid);
        assert_eq!(check(&p, &mut request_with("x-other", "key-current")).unwrap_err(), Failure::Invalid);
    }

    /// A key sent twice or not as text is there, and refused: never
    /// "absent", which would let an anonymous route or the next provider
    /// take the request with the unchecked copies forwarded.
    #[test]
    fn a_key_that_cannot_be_read_is_present_and_refused() {
        let p = provider(&WallClock::fixed(NOW));
        let Provider::ApiKey(k) = &p else { unreachable!() };
        let mut twice = request_with("x-api-key", "");
        twice.headers.append("x-api-key", HeaderValue::from_static("key-current"));
        let mut binary = request_with("x-api-key", "x");
        binary.headers.insert("x-api-key", HeaderValue::from_bytes(b"bad\xe9key").unwrap());
        for mut req in [twice, binary] {
            assert_eq!(k.key(&req), Presented::Unreadable);
            assert_eq!(check(&p, &mut req).unwrap_err(), Failure::Invalid);
        }
        assert_eq!(k.key(&request_with("x-api-key", "  ")), Presented::Absent, "an empty header names no key");
        assert_eq!(k.key(&request_with("x-other", "key-current")), Presented::Absent);

        let yaml = "auth:\n  q: { api_key: { query: api_key } }\n";
        let p = providers(yaml).remove("q").unwrap();
        let Provider::ApiKey(k) = &p else { unreachable!() };
        let at = |q: &str| Request::builder().uri(format!("/o?{q}")).body(()).unwrap().into_parts().0;
        assert_eq!(k.key(&at("page=1&api_key=k1")), Presented::Key("k1"));
        assert_eq!(k.key(&at("api_key=k1&API_KEY=k2")), Presented::Key("k1"), "the others go with it on success");
        assert_eq!(k.key(&at("page=1")), Presented::Absent);
        for q in [
            "api_key=&api_key=k1",
            "api_key=k1&api_key=k2",
            "API_KEY=k1",
            "api%5Fkey=k1",
            "api_key[]=k1",
            "x=1;api_key=k1",
            "api_key",
        ] {
            assert_eq!(k.key(&at(q)), Presented::Unreadable, "{q}");
        }
    }

    #[test]
    fn a_key_stops_working_on_its_expiry_date() {
        let clock = WallClock::fixed(NOW);
        let p = provider(&clock);
        assert!(check(&p, &mut request_with("x-api-key", "key-expiring")).is_ok());
        // 2027-01-31T00:00:00Z and after.
        clock.advance(1_801_353_600 - NOW);
        assert_eq!(check(&p, &mut request_with("x-api-key", "key-expiring")).unwrap_err(), Failure::Invalid);
        assert!(check(&p, &mut request_with("x-api-key", "key-current")).is_ok(), "keys without expiry stay");
    }
}

mod basic {
    use base64::Engine;

    use super::*;

    #[test]
    fn a_realm_that_would_break_its_quoted_string_is_refused() {
        for realm in ["Ops\\\\", "say \\\"hi\\\"", "caf\u{e9}", "a\\tb"] {
            let yaml = format!("auth:\n  b: {{ basic: {{ realm: {realm:?}, users: {{}} }} }}\n");
            let loaded = load(&yaml);
            let mut shared = Shared::default();
            let consumers = with_test_ctx(Shared::default(), |cx| Consumers::compile(&loaded.config.consumers, cx));
            shared.insert(Arc::new(Arc::new(consumers.expect("consumers compile"))));
            let mut cx = CompileCtx::new(&loaded, "auth.b".into(), &shared);
            cx.name = "b";
            let errors = Provider::compile(&loaded.config.auth["b"], &mut cx).expect_err(realm);
            assert_eq!(errors[0].0, "basic.realm", "{realm:?}");
        }
    }

    fn provider() -> Provider {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let yaml = format!(
            "auth:\n  users: {{ basic: {{ users: {{ alice: \"{hash}\" }} }} }}\nconsumers:\n  - {{ id: back-office, groups: [staff], basic_users: [alice] }}\n"
        );
        providers(&yaml).remove("users").unwrap()
    }

    async fn check(p: &Provider, user: &str, password: &str) -> Result<Arc<Identity>, Failure> {
        let Provider::Basic(b) = p else { unreachable!() };
        let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        b.authenticate(&mut request_with("authorization", &format!("Basic {pair}"))).await
    }

    #[tokio::test]
    async fn the_right_password_gives_the_consumer() {
        let p = provider();
        let id = check(&p, "alice", "s3cret").await.unwrap();
        assert_eq!(id.subject, "alice");
        assert_eq!(id.groups(), ["staff"]);
        assert!(!id.bearer);
    }

    #[tokio::test]
    async fn wrong_passwords_and_unknown_users_are_refused_alike() {
        let p = provider();
        assert_eq!(check(&p, "alice", "guess").await.unwrap_err(), Failure::Invalid);
        assert_eq!(check(&p, "mallory", "s3cret").await.unwrap_err(), Failure::Invalid);
        // A cached success for alice is not a pass for another password.
        assert!(check(&p, "alice", "s3cret").await.is_ok());
        assert_eq!(check(&p, "alice", "s3cret!").await.unwrap_err(), Failure::Invalid);
    }
}

mod mtls {
    use super::*;

    fn provider() -> Provider {
        let yaml = "auth:\n  certs: { mtls: {} }\nconsumers:\n  - { id: svc-a, scopes: [internal], certificates: [ { subject: \"CN=svc-a, O=Example\" } ] }\n  - { id: svc-b, certificates: [ { san: svc-b.internal } ] }\n";
        providers(yaml).remove("certs").unwrap()
    }

    fn check(p: &Provider, cert: Option<&ClientIdentity>) -> Result<Arc<Identity>, Failure> {
        let Provider::Mtls(m) = p else { unreachable!() };
        m.authenticate(cert)
    }

    fn cert(subject: &str, sans: &[&str]) -> ClientIdentity {
        ClientIdentity::new(subject, sans)
    }

    #[test]
    fn a_certificate_is_the_consumer_its_subject_or_san_names() {
        let p = provider();
        // DN spacing and case do not matter.
        let a = check(&p, Some(&cert("cn=svc-a,o=Example", &[]))).unwrap();
        assert_eq!(&*a.consumer.as_ref().unwrap().id, "svc-a");
        assert_eq!(a.scopes, ["internal"]);
        let b = check(&p, Some(&cert("CN=anything", &["DNS:SVC-B.internal"]))).unwrap();
        assert_eq!(&*b.consumer.as_ref().unwrap().id, "svc-b");
    }

    #[test]
    fn a_san_matches_only_a_san_of_its_type() {
        let p = provider();
        // `svc-b.internal` is a DNS name: an email or URI SAN of that text is not it.
        for other in ["email:svc-b.internal", "URI:svc-b.internal", "DNS:rando.internal"] {
            assert_eq!(check(&p, Some(&cert("CN=x", &[other]))).unwrap_err(), Failure::Invalid, "{other}");
        }
        // An escaped comma is part of a value, not a second attribute.
        assert_eq!(check(&p, Some(&cert("CN=svc-a\\, O=Example", &[]))).unwrap_err(), Failure::Invalid);
    }

    /// OpenSSL's default output (`C = US, CN = svc-a`) never matches a
    /// certificate: refused at load, with the form to write.
    #[test]
    fn a_subject_with_spaces_around_equals_is_refused() {
        let yaml =
            |subject: &str| format!("consumers:\n  - {{ id: a, certificates: [ {{ subject: \"{subject}\" }} ] }}\n");
        for bad in ["C = US, O = Example, CN = svc-a", "CN =svc-a", "CN= svc-a"] {
            let loaded = load(&yaml(bad));
            let err =
                with_test_ctx(Shared::default(), |cx| Consumers::compile(&loaded.config.consumers, cx)).unwrap_err();
            let said = format!("{err:?}");
            assert!(said.contains("spaces around `=`") && said.contains("certificates[0].subject"), "{bad}: {said}");
        }
        // OpenSSL's other outputs: its old form, its label, quoted values.
        for bad in ["/O=Example/CN=svc1", "subject=O=Example, CN=svc1", r#"O=\"Example, Inc\", CN=x"#] {
            let loaded = load(&yaml(bad));
            let err =
                with_test_ctx(Shared::default(), |cx| Consumers::compile(&loaded.config.consumers, cx)).unwrap_err();
            assert!(format!("{err:?}").contains("certificates[0].subject"), "{bad}: {err:?}");
        }
        for good in ["C=US, O=Example, CN=svc-a", r"CN=a\\, b = c", r"O=Example\\, Inc, CN=x"] {
            let loaded = load(&yaml(good));
            assert!(
                with_test_ctx(Shared::default(), |cx| Consumers::compile(&loaded.config.consumers, cx)).is_ok(),
                "{good}"
            );
        }
    }

    #[test]
    fn no_certificate_or_an_unclaimed_one_is_refused() {
        let p = provider();
        assert_eq!(check(&p, None).unwrap_err(), Failure::Invalid);
        assert_eq!(check(&p, Some(&cert("CN=svc-c", &["DNS:svc-c.internal"]))).unwrap_err(), Failure::Invalid);
    }
}

mod introspection {
    use super::*;
    use crate::policy::auth::introspect::Introspection;

    fn provider(clock: &WallClock) -> Introspection {
        let yaml = "auth:\n  idp: { introspection: { endpoint: \"http://127.0.0.1:9/introspect\", client_id: gw, client_secret: s, max_ttl: 5m } }\n";
        let Provider::Introspection(mut i) = providers(yaml).remove("idp").unwrap() else { unreachable!() };
        i.set_clock(clock.clone());
        i
    }

    #[test]
    fn an_active_answer_is_cached_until_its_exp_at_most() {
        let i = provider(&WallClock::fixed(NOW));
        let (id, ttl) =
            i.read_answer(json!({ "active": true, "sub": "alice", "scope": "a b", "exp": NOW + 60 })).unwrap();
        assert_eq!(id.subject, "alice");
        assert_eq!(id.scopes, ["a", "b"]);
        assert_eq!(ttl, Duration::from_secs(60));
        let (_, ttl) = i.read_answer(json!({ "active": true, "username": "bob" })).unwrap();
        assert_eq!(ttl, Duration::from_secs(300), "no exp: max_ttl");
    }

    #[test]
    fn inactive_or_expired_answers_are_no_identity() {
        let i = provider(&WallClock::fixed(NOW));
        assert!(i.read_answer(json!({ "active": false, "sub": "alice" })).is_none());
        assert!(i.read_answer(json!({ "sub": "alice" })).is_none(), "`active` is required");
        assert!(i.read_answer(json!({ "active": "true" })).is_none(), "`active` is a boolean");
        assert!(i.read_answer(json!({ "active": true, "exp": NOW })).is_none());
        // A NumericDate may be a decimal: one in the past is expired too.
        assert!(i.read_answer(json!({ "active": true, "exp": NOW as f64 - 5.5 })).is_none());
        // An `exp` that is no date makes the answer unusable, not cached for max_ttl.
        for exp in [json!(-5), json!("soon"), json!(null)] {
            assert!(i.read_answer(json!({ "active": true, "exp": exp })).is_none(), "{exp}");
        }
        // Not valid yet (`nbf`), beyond the clocks' leeway; or an `nbf` that is no date.
        assert!(i.read_answer(json!({ "active": true, "nbf": NOW + 3600, "exp": NOW + 7200 })).is_none());
        assert!(i.read_answer(json!({ "active": true, "nbf": "later" })).is_none());
        assert!(i.read_answer(json!({ "active": true, "nbf": NOW + 10, "exp": NOW + 60 })).is_some());
        assert!(i.read_answer(json!({ "active": true, "nbf": NOW - 10 })).is_some());
    }

    #[test]
    fn a_decimal_exp_bounds_the_cache_time() {
        let i = provider(&WallClock::fixed(NOW));
        let (_, ttl) = i.read_answer(json!({ "active": true, "exp": NOW as f64 + 3.5 })).unwrap();
        assert_eq!(ttl, Duration::from_secs(3), "cached until exp (rounded down), not for max_ttl");
    }

    #[test]
    fn the_subject_falls_back_to_username_then_client_id() {
        let i = provider(&WallClock::fixed(NOW));
        let (id, _) = i.read_answer(json!({ "active": true, "client_id": "batch-job" })).unwrap();
        assert_eq!(id.subject, "batch-job");
    }
}

#[test]
fn bearer_tokens_are_read_strictly() {
    let token = |v: &str| {
        let req = request_with("authorization", v);
        super::bearer_token(&req).map(|t| String::from_utf8(t.to_vec()).unwrap())
    };
    assert_eq!(token("Bearer abc.def"), Some("abc.def".into()));
    assert_eq!(token("bearer abc"), Some("abc".into()), "the scheme in any case");
    assert_eq!(token("BEARER   abc  "), Some("abc".into()), "spaces around the token");
    assert_eq!(token("Bearerabc"), None);
    assert_eq!(token("Bearer "), None);
    assert_eq!(token("Basic YTpi"), None);
    assert_eq!(token("Bearer"), None);
    let mut req = request_with("authorization", "x");
    req.headers.insert("authorization", HeaderValue::from_bytes("Bearer t\u{e9}".as_bytes()).unwrap());
    let raw = super::bearer_token(&req).expect("read as bytes");
    assert_eq!(super::token_text(raw), None, "verified only if visible ASCII");
    assert_eq!(super::token_text(b"a b"), None);
    assert_eq!(super::token_text(b"a\x01"), None);
    assert_eq!(super::token_text(b"abc.def-_~+/="), Some("abc.def-_~+/="));
}

/// Scopes are scope tokens separated by spaces only (RFC 6749 §3.3): no
/// other whitespace splits them, and a piece that is no token is dropped,
/// so that `X-Auth-Scopes` (joined with spaces) says what `authorize` saw.
#[test]
fn scopes_are_space_separated_scope_tokens() {
    use super::scopes_of;
    let of = |v: serde_json::Value| scopes_of(Some(&v));
    assert_eq!(of(json!("orders:read  orders:write ")), ["orders:read", "orders:write"]);
    for other in ["x\u{a0}orders:read", "x\torders:read", "x\u{3000}orders:read", "x\norders:read"] {
        assert_eq!(of(json!(other)), Vec::<String>::new(), "{other:?}");
    }
    assert_eq!(of(json!(["profile admin:write", "read", "a\"b", 7])), ["read"]);
    assert_eq!(scopes_of(None), Vec::<String>::new());
}
