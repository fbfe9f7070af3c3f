//! Authentication and authorization as a client sees them, against a real
//! JWKS endpoint and a real RFC 7662 introspection endpoint on loopback.

use std::path::Path;

use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use crate::support::idp::{Idp, SigningKey, now, sign_hs};
use crate::support::{Upstream, get, load, raw};

const SECRET: &str = "an-hmac-secret-that-is-long-enough!";

fn claims(extra: Value) -> Value {
    let mut c = json!({ "sub": "alice", "iss": "https://idp.test/", "aud": "api", "exp": now() + 300, "iat": now(), "scope": "users:read" });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

struct Setup {
    gw: portcullis::Handle,
    up: Upstream,
    _dir: tempfile::TempDir,
}

impl Setup {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gw.addr("gw").unwrap())
    }
}

/// A gateway whose routes each use one provider; `auth` and `routes` are YAML bodies.
async fn setup(auth: &str, consumers: &str, routes: &str, files: &[(&str, &str)]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let up = Upstream::start("svc").await;
    let yaml = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\nupstreams:\n  svc: {{ targets: [ \"{}\" ] }}\nauth:\n{auth}\nconsumers:\n{consumers}\nroutes:\n{routes}",
        up.url()
    );
    let loaded = load(&yaml, dir.path());
    let gw = portcullis::Gateway::start(&loaded).await.unwrap_or_else(|e| panic!("{e}"));
    Setup { gw, up, _dir: dir }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn every_algorithm_with_a_valid_token() {
    let asym = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];
    let keys: Vec<SigningKey> = asym.iter().map(|a| SigningKey::generate(*a, &format!("{a:?}"))).collect();
    let mut auth = String::new();
    let mut routes = String::new();
    let mut files = Vec::new();
    for k in &keys {
        let name = format!("{:?}", k.alg).to_lowercase();
        auth.push_str(&format!(
            "  {name}: {{ jwt: {{ algorithms: [{:?}], issuer: \"https://idp.test/\", audiences: [api], public_key_file: {name}.pem }} }}\n",
            k.alg
        ));
        routes.push_str(&format!(
            "  - {{ name: {name}, match: {{ path_prefix: /{name} }}, upstream: svc, authenticate: [{name}] }}\n"
        ));
        files.push((format!("{name}.pem"), k.public_pem.clone()));
    }
    for hs in ["HS256", "HS384", "HS512"] {
        let name = hs.to_lowercase();
        auth.push_str(&format!("  {name}: {{ jwt: {{ algorithms: [{hs}], secret: \"{SECRET}\" }} }}\n"));
        routes.push_str(&format!(
            "  - {{ name: {name}, match: {{ path_prefix: /{name} }}, upstream: svc, authenticate: [{name}] }}\n"
        ));
    }
    let files: Vec<(&str, &str)> = files.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let s = setup(&auth, "  []", &routes, &files).await;
    for k in &keys {
        let name = format!("{:?}", k.alg).to_lowercase();
        let token = k.sign(&claims(json!({})));
        let r = get(&s.url(&format!("/{name}")), &[("authorization", &bearer(&token))]).await;
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        let seen = r.json();
        assert_eq!(seen["headers"]["x-auth-subject"], "alice", "{name}");
        assert_eq!(seen["headers"]["x-auth-provider"], name.as_str());
        assert_eq!(seen["headers"]["x-auth-scopes"], "users:read");
    }
    for (alg, name) in [(Algorithm::HS256, "hs256"), (Algorithm::HS384, "hs384"), (Algorithm::HS512, "hs512")] {
        let token = sign_hs(alg, SECRET, &claims(json!({})));
        let r = get(&s.url(&format!("/{name}")), &[("authorization", &bearer(&token))]).await;
        assert_eq!(r.status, 200, "{name}: {}", r.text());
    }
}

async fn jwks_setup(idp: &Idp) -> Setup {
    let auth = format!(
        "  idp: {{ jwt: {{ algorithms: [RS256, ES256], issuer: \"https://idp.test/\", audiences: [api, other], jwks_uri: \"{}\", max_age: 1h }} }}\n",
        idp.url("/jwks")
    );
    let routes = "  - { name: api, match: { path_prefix: /api }, upstream: svc, authenticate: [idp] }\n";
    setup(&auth, "  []", routes, &[]).await
}

#[tokio::test]
async fn jwks_rotation_without_restart() {
    let idp = Idp::start().await;
    let k1 = SigningKey::generate(Algorithm::RS256, "k1");
    let k2 = SigningKey::generate(Algorithm::ES256, "k2");
    idp.publish(&[&k1]);
    let s = jwks_setup(&idp).await;
    let url = s.url("/api");
    let ok = |t: String| {
        let url = url.clone();
        async move { get(&url, &[("authorization", &bearer(&t))]).await.status }
    };
    assert_eq!(ok(k1.sign(&claims(json!({})))).await, 200);
    // The IdP rotates to k2: the first k2 token triggers a refetch.
    idp.publish(&[&k2]);
    assert_eq!(ok(k2.sign(&claims(json!({})))).await, 200);
    // A kid nobody publishes: refused (and the refetch is rate-limited).
    let before = idp.jwks_fetches.load(std::sync::atomic::Ordering::SeqCst);
    let stranger = SigningKey::generate(Algorithm::RS256, "k9");
    assert_eq!(ok(stranger.sign(&claims(json!({})))).await, 401);
    assert_eq!(ok(stranger.sign(&claims(json!({ "jti": "2" })))).await, 401);
    assert!(idp.jwks_fetches.load(std::sync::atomic::Ordering::SeqCst) <= before + 1, "refetches are rate-limited");
}

/// A gateway on `k1` whose identity provider now publishes `k2` too and
/// answers its JWKS 400 ms late; the fetches made so far.
struct Rotating {
    idp: Idp,
    k2: SigningKey,
    s: Setup,
    url: String,
    before: usize,
}

async fn rotating() -> Rotating {
    let idp = Idp::start().await;
    let k1 = SigningKey::generate(Algorithm::RS256, "k1");
    let k2 = SigningKey::generate(Algorithm::ES256, "k2");
    idp.publish(&[&k1]);
    let s = jwks_setup(&idp).await;
    let url = s.url("/api");
    assert_eq!(get(&url, &[("authorization", &bearer(&k1.sign(&claims(json!({})))))]).await.status, 200);
    let before = idp.jwks_fetches.load(std::sync::atomic::Ordering::SeqCst);
    idp.jwks_delay_ms.store(400, std::sync::atomic::Ordering::SeqCst);
    idp.publish(&[&k1, &k2]);
    Rotating { idp, k2, s, url, before }
}

/// Requests that bring a rotated key's kid while the refetch another one
/// started is under way wait for it: none is refused with 401 (they were,
/// at once, for as long as the key set took to come).
#[tokio::test]
async fn requests_arriving_during_a_rotation_refetch_wait_for_it() {
    let Rotating { idp, k2, s: _gateway, url, before } = rotating().await;
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..8 {
        let (url, token) = (url.clone(), k2.sign(&claims(json!({ "jti": i.to_string() }))));
        requests.spawn(async move { get(&url, &[("authorization", &bearer(&token))]).await.status });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    while let Some(status) = requests.join_next().await {
        assert_eq!(status.unwrap(), 200, "a valid token with the new kid during the refetch");
    }
    assert_eq!(idp.jwks_fetches.load(std::sync::atomic::Ordering::SeqCst), before + 1, "one refetch for all");
}

/// The request that starts a refetch leaving (a client that never meant to
/// stay, with a made-up kid) does not cancel it: the others still get the
/// rotated key (they got 401 until the next window, 10 s on).
#[tokio::test]
async fn a_refetch_outlives_the_request_that_started_it() {
    use tokio::io::AsyncWriteExt;
    let Rotating { idp, k2, s, url, before } = rotating().await;
    let stranger = SigningKey::generate(Algorithm::RS256, "made-up").sign(&claims(json!({})));
    let mut quitter = tokio::net::TcpStream::connect(s.gw.addr("gw").unwrap()).await.unwrap();
    let head = format!("GET /api HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {stranger}\r\n\r\n");
    quitter.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    drop(quitter);
    for i in 0..3 {
        let token = k2.sign(&claims(json!({ "jti": i.to_string() })));
        assert_eq!(get(&url, &[("authorization", &bearer(&token))]).await.status, 200, "the rotated key, try {i}");
    }
    assert_eq!(idp.jwks_fetches.load(std::sync::atomic::Ordering::SeqCst), before + 1, "one refetch");
}

/// One kid for several keys (an RSA and an EC key, or two keys while an
/// IdP rotates): a token verifies with any of them of its algorithm.
#[tokio::test]
async fn a_kid_shared_by_several_keys_verifies_with_each() {
    let idp = Idp::start().await;
    let (rsa1, rsa2) = (SigningKey::generate(Algorithm::RS256, "k1"), SigningKey::generate(Algorithm::RS256, "k1"));
    let ec = SigningKey::generate(Algorithm::ES256, "k1");
    idp.publish(&[&rsa1, &rsa2, &ec]);
    let s = jwks_setup(&idp).await;
    for (name, key) in [("first RSA", &rsa1), ("second RSA", &rsa2), ("EC", &ec)] {
        let status = get(&s.url("/api"), &[("authorization", &bearer(&key.sign(&claims(json!({})))))]).await.status;
        assert_eq!(status, 200, "a token signed with the {name} key of kid k1");
    }
    let stranger = SigningKey::generate(Algorithm::RS256, "k1");
    let status = get(&s.url("/api"), &[("authorization", &bearer(&stranger.sign(&claims(json!({})))))]).await.status;
    assert_eq!(status, 401, "a key the IdP does not publish, under a published kid");
}

/// A route behind a JWT provider configured by discovery for `issuer`;
/// answers the status a token from that issuer gets.
async fn discovery_status(idp: &Idp, issuer: &str) -> http::StatusCode {
    let k = SigningKey::generate(Algorithm::ES256, "d1");
    idp.publish(&[&k]);
    let auth = format!("  oidc: {{ jwt: {{ algorithms: [ES256], issuer: \"{issuer}\", discovery: true }} }}\n");
    let routes = "  - { name: api, match: { path_prefix: /api }, upstream: svc, authenticate: [oidc] }\n";
    let s = setup(&auth, "  []", routes, &[]).await;
    let token = k.sign(&json!({ "sub": "bob", "iss": issuer, "exp": now() + 60 }));
    get(&s.url("/api"), &[("authorization", &bearer(&token))]).await.status
}

#[tokio::test]
async fn jwks_by_openid_discovery() {
    let idp = Idp::start().await;
    assert_eq!(discovery_status(&idp, &format!("http://{}", idp.addr)).await, 200);
}

#[tokio::test]
async fn a_discovery_document_for_another_issuer_is_refused() {
    let idp = Idp::start().await;
    // The document names `http://ADDR`; the configured issuer differs (a
    // trailing slash is enough: the match is exact). No keys: 503.
    assert_eq!(discovery_status(&idp, &format!("http://{}/", idp.addr)).await, 503);
    assert_eq!(idp.jwks_fetches.load(std::sync::atomic::Ordering::SeqCst), 0, "its jwks_uri is not followed");
}

#[tokio::test]
async fn bad_tokens_are_refused_with_invalid_token() {
    let idp = Idp::start().await;
    let rsa = SigningKey::generate(Algorithm::RS256, "k1");
    let ec = SigningKey::generate(Algorithm::ES256, "e1");
    idp.publish(&[&rsa, &ec]);
    let s = jwks_setup(&idp).await;
    let good = rsa.sign(&claims(json!({})));
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let parts: Vec<&str> = good.split('.').collect();
    let tampered_payload = format!("{}.{}.{}", parts[0], b64(&claims(json!({ "sub": "mallory" }))), parts[2]);
    let mut sig = parts[2].to_string();
    sig.replace_range(..4, if sig.starts_with("AAAA") { "BBBB" } else { "AAAA" });
    let tampered_sig = format!("{}.{}.{sig}", parts[0], parts[1]);
    let alg_none = format!("{}.{}.", b64(&json!({ "alg": "none", "typ": "JWT" })), b64(&claims(json!({}))));
    // Key confusion: HS256 "signed" with the RSA public key as the secret.
    let confused = sign_hs(Algorithm::HS256, &rsa.public_pem, &claims(json!({})));
    // ES256 with r = s = 0 (CVE-2022-21449, the "psychic signature").
    let es_header = b64(&json!({ "alg": "ES256", "typ": "JWT", "kid": "e1" }));
    let psychic = format!(
        "{es_header}.{}.{}",
        b64(&claims(json!({}))),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0u8; 64])
    );
    // A critical header extension we cannot understand (RFC 7515 §4.1.11).
    let mut crit_header = jsonwebtoken::Header::new(Algorithm::RS256);
    crit_header.kid = Some("k1".into());
    crit_header.crit = Some(vec!["x-unknown".into()]);
    let crit = jsonwebtoken::encode(&crit_header, &claims(json!({})), &rsa.encoding_key()).unwrap();
    let cases: Vec<(&str, String)> = vec![
        ("unknown crit extension", crit),
        ("expired", rsa.sign(&claims(json!({ "exp": now() - 3600 })))),
        ("not yet valid", rsa.sign(&claims(json!({ "nbf": now() + 3600 })))),
        ("wrong issuer", rsa.sign(&claims(json!({ "iss": "https://evil.test/" })))),
        ("wrong audience", rsa.sign(&claims(json!({ "aud": "someone-else" })))),
        ("too old (iat)", rsa.sign(&claims(json!({ "iat": now() - 7200 })))),
        ("issued in the future (iat), max_age would start then", rsa.sign(&claims(json!({ "iat": now() + 3600 })))),
        ("no exp", rsa.sign(&json!({ "sub": "a", "iss": "https://idp.test/", "aud": "api" }))),
        ("no iss", rsa.sign(&json!({ "sub": "a", "aud": "api", "exp": now() + 60, "iat": now() }))),
        ("no aud", rsa.sign(&json!({ "sub": "a", "iss": "https://idp.test/", "exp": now() + 60, "iat": now() }))),
        ("tampered payload", tampered_payload),
        ("tampered signature", tampered_sig),
        ("alg none", alg_none),
        ("HS/RS key confusion", confused),
        ("psychic signature", psychic),
        ("malformed base64", "e30.!!!not-base64!!!.e30".to_string()),
        ("oversized", format!("{}.{}.{}", parts[0], "A".repeat(20_000), parts[2])),
    ];
    for (what, token) in cases {
        let r = get(&s.url("/api"), &[("authorization", &bearer(&token))]).await;
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"portcullis\", error=\"invalid_token\""),
            "{what}"
        );
        assert_eq!(r.header("content-type"), Some("application/problem+json"), "{what}");
        assert!(!r.text().contains("signature"), "{what}: the body must not explain the crypto: {}", r.text());
    }
    assert_eq!(s.up.hits(), 0, "nothing invalid reaches the upstream");
    // No credential at all: 401 with a plain challenge.
    let r = get(&s.url("/api"), &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"portcullis\""));
    // And the good one passes.
    assert_eq!(get(&s.url("/api"), &[("authorization", &bearer(&good))]).await.status, 200);
}

#[tokio::test]
async fn introspection_caches_and_fails_closed() {
    let idp = Idp::start().await;
    idp.tokens.lock().unwrap().push((
        "opaque-good".into(),
        json!({ "active": true, "sub": "svc-1", "scope": "orders:read orders:write", "exp": now() + 600 }),
    ));
    let auth = format!(
        "  opaque: {{ introspection: {{ endpoint: \"{}\", client_id: gateway, client_secret: s3cret, timeout: 1s }} }}\n",
        idp.url("/introspect")
    );
    let routes = "  - { name: api, match: { path_prefix: /api }, upstream: svc, authenticate: [opaque], authorize: { scopes: [orders:write] } }\n";
    let s = setup(&auth, "  []", routes, &[]).await;
    let calls = || idp.introspections.load(std::sync::atomic::Ordering::SeqCst);
    for _ in 0..3 {
        let r = get(&s.url("/api"), &[("authorization", "Bearer opaque-good")]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["headers"]["x-auth-subject"], "svc-1");
    }
    assert_eq!(calls(), 1, "active answers are cached");
    for _ in 0..2 {
        assert_eq!(get(&s.url("/api"), &[("authorization", "Bearer revoked")]).await.status, 401);
    }
    assert_eq!(calls(), 2, "inactive answers are cached briefly too");
    idp.broken.store(true, std::sync::atomic::Ordering::SeqCst);
    let r = get(&s.url("/api"), &[("authorization", "Bearer never-seen")]).await;
    assert_eq!(r.status, 503, "an unreachable introspection endpoint never lets a request pass");
}

#[tokio::test]
async fn api_keys_basic_and_spoofed_identity_headers() {
    let bcrypt_hash = bcrypt::hash("correct horse", 4).unwrap();
    let htpasswd = format!("carol:{bcrypt_hash}\n");
    let key_hash = portcullis::hash_key("key-mobile");
    let old_hash = portcullis::hash_key("key-revoked");
    let consumers = format!(
        "  - {{ id: mobile-app, groups: [partners], api_keys: [ {{ sha256: \"{key_hash}\" }}, {{ sha256: \"{old_hash}\", expires: 2020-01-01 }} ] }}\n  - {{ id: carol-co, groups: [staff], basic_users: [carol] }}\n"
    );
    let auth = "  keys: { api_key: { header: X-API-Key } }\n  qkeys: { api_key: { query: api_key } }\n  staff: { basic: { realm: Staff, htpasswd: users.htpasswd } }\n";
    let routes = "  - { name: k, match: { path_prefix: /k }, upstream: svc, authenticate: [keys] }\n  - { name: q, match: { path_prefix: /q }, upstream: svc, authenticate: [qkeys] }\n  - { name: b, match: { path_prefix: /b }, upstream: svc, authenticate: [staff] }\n  - { name: partners, match: { path_prefix: /partners }, upstream: svc, authenticate: [keys, staff], authorize: { groups: { allow: [partners] } } }\n  - { name: open, match: { path_prefix: /open }, upstream: svc }\n  - { name: maybe, match: { path_prefix: /maybe }, upstream: svc, authenticate: [keys], anonymous: true }\n  - { name: both, match: { path_prefix: /both }, upstream: svc, authenticate: [keys, qkeys, staff] }\n";
    let s = setup(auth, &consumers, routes, &[("users.htpasswd", &htpasswd)]).await;

    let r = get(&s.url("/k"), &[("x-api-key", "key-mobile"), ("x-consumer-id", "admin")]).await;
    assert_eq!(r.status, 200);
    let seen = r.json();
    assert_eq!(seen["headers"]["x-consumer-id"], "mobile-app", "the client's spoofed value is replaced");
    assert_eq!(seen["headers"]["x-consumer-groups"], "partners");
    assert!(seen["headers"].get("x-api-key").is_none(), "the key is not forwarded");
    assert_eq!(get(&s.url("/k"), &[("x-api-key", "key-revoked")]).await.status, 401);
    assert_eq!(get(&s.url("/k"), &[("x-api-key", "nope")]).await.status, 401);
    let r = get(&s.url("/q?api_key=key-mobile&x=1"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["query"], "x=1", "the key is not forwarded in the query either");
    // Nor a second one spelled percent-encoded, that a service decoding names would read.
    let r = get(&s.url("/q?api_key=key-mobile&api%5Fkey=chosen&%61pi_key=too&x=1"), &[]).await;
    assert_eq!((r.status.as_u16(), r.json()["query"].as_str()), (200, Some("x=1")));
    let r = get(&s.url("/q?api_key=key-mobile&x=1;api_key=chosen;y=2&api+key=3"), &[]).await;
    assert_eq!((r.status.as_u16(), r.json()["query"].as_str()), (200, Some("x=1;y=2")));
    let r = get(&s.url("/q?api_key=key-mobile&API_KEY=4&api[key=5&api_key%00=6&x=1&&api_key_id=7"), &[]).await;
    assert_eq!((r.status.as_u16(), r.json()["query"].as_str()), (200, Some("x=1&&api_key_id=7")));
    assert_eq!(get(&s.url("/k"), &[]).await.header("www-authenticate"), Some("ApiKey realm=\"portcullis\""));

    let basic =
        |u: &str, p: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}")));
    let r = get(&s.url("/b"), &[("authorization", &basic("carol", "correct horse"))]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["headers"]["x-consumer-id"], "carol-co");
    let r = get(&s.url("/b"), &[("authorization", &basic("carol", "wrong"))]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"Staff\", charset=\"UTF-8\""));
    assert_eq!(get(&s.url("/b"), &[("authorization", &basic("mallory", "x"))]).await.status, 401);
    // A Basic credential that does not decode is an invalid one, not none.
    let r = get(&s.url("/b"), &[("authorization", "Basic !!!")]).await;
    assert_eq!((r.status.as_u16(), r.json()["detail"].as_str()), (401, Some("the credentials are not valid")));

    // Groups: carol (staff) is authenticated but not allowed: 403, not 401.
    assert_eq!(get(&s.url("/partners"), &[("authorization", &basic("carol", "correct horse"))]).await.status, 403);
    assert_eq!(get(&s.url("/partners"), &[("x-api-key", "key-mobile")]).await.status, 200);
    // The first credential present decides: a bad key does not fall through to Basic.
    let r =
        get(&s.url("/partners"), &[("x-api-key", "bad"), ("authorization", &basic("carol", "correct horse"))]).await;
    assert_eq!(r.status, 401);

    // `anonymous: true`: no credential passes with no identity (a spoofed one stripped);
    // a credential presented must still be valid.
    let seen = get(&s.url("/maybe"), &[("x-consumer-id", "admin")]).await;
    assert_eq!(seen.status, 200);
    assert!(seen.json()["headers"].get("x-consumer-id").is_none());
    let seen = get(&s.url("/maybe"), &[("x-api-key", "key-mobile")]).await;
    assert_eq!(seen.json()["headers"]["x-consumer-id"], "mobile-app");
    assert_eq!(get(&s.url("/maybe"), &[("x-api-key", "nope")]).await.status, 401);
    // A key that cannot be read is not "no key": an empty line before a bad
    // one, or a key that is not text, is refused, not let in as anonymous
    // (or to the next provider) with the unchecked key forwarded.
    let addr = s.gw.addr("gw").unwrap();
    let maybe = "GET /maybe HTTP/1.1\r\nHost: gw\r\nX-API-Key:\r\nX-API-Key: nope\r\nConnection: close\r\n\r\n";
    assert!(raw(addr, maybe).await.starts_with("HTTP/1.1 401"), "an empty line, then a bad key");
    let binary = "GET /maybe HTTP/1.1\r\nHost: gw\r\nX-API-Key: bad\u{e9}key\r\nConnection: close\r\n\r\n";
    assert!(raw(addr, binary).await.starts_with("HTTP/1.1 401"), "a key that is not text");
    let partners = format!(
        "GET /partners HTTP/1.1\r\nHost: gw\r\nX-API-Key:\r\nX-API-Key: bad\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
        basic("carol", "correct horse")
    );
    assert!(raw(addr, &partners).await.starts_with("HTTP/1.1 401"), "no fall-through to Basic");
    assert_eq!(get(&s.url("/q?API_KEY=nope"), &[]).await.status, 401, "only another spelling of the name");
    // Authenticated by one provider, the route's other keys (never checked) go too.
    let forged_basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("root:guess"));
    let r =
        get(&s.url("/both?api_key=forged&x=1"), &[("x-api-key", "key-mobile"), ("authorization", &forged_basic)]).await;
    assert_eq!((r.status.as_u16(), r.json()["query"].as_str()), (200, Some("x=1")));
    assert!(r.json()["headers"].get("authorization").is_none(), "the unchecked Basic login goes too");

    // Public routes never see identity headers from clients either.
    let seen = get(&s.url("/open"), &[("x-consumer-id", "admin"), ("x-auth-subject", "root")]).await.json();
    assert!(seen["headers"].get("x-consumer-id").is_none() && seen["headers"].get("x-auth-subject").is_none());
}

#[tokio::test]
async fn scopes_claims_and_ip_lists() {
    let auth = format!("  hs: {{ jwt: {{ algorithms: [HS256], secret: \"{SECRET}\" }} }}\n");
    let routes = r#"  - name: read
    match: { path_prefix: /read }
    upstream: svc
    authenticate: [hs]
    authorize: { scopes: [users:read], claims: [ { claim: tenant, equals: acme }, { claim: roles, contains: admin }, { claim: plan, one_of: [gold, silver] } ] }
  - name: any
    match: { path_prefix: /any }
    upstream: svc
    authenticate: [hs]
    authorize: { any_scopes: [a, users:read] }
  - name: internal
    match: { path_prefix: /internal }
    upstream: svc
    ip: { allow: [ 10.0.0.0/8 ] }
    authenticate: [hs]
"#;
    let s = setup(&auth, "  []", routes, &[]).await;
    let tok = |c: Value| bearer(&sign_hs(Algorithm::HS256, SECRET, &c));
    let good = json!({ "sub": "a", "exp": now() + 60, "scope": "users:read", "tenant": "acme", "roles": ["user", "admin"], "plan": "gold" });
    assert_eq!(get(&s.url("/read"), &[("authorization", &tok(good.clone()))]).await.status, 200);
    let mut no_scope = good.clone();
    no_scope["scope"] = json!("other");
    let r = get(&s.url("/read"), &[("authorization", &tok(no_scope))]).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"portcullis\", error=\"insufficient_scope\", scope=\"users:read\"")
    );
    for (claim, value) in [("tenant", json!("umbrella")), ("roles", json!(["user"])), ("plan", json!("bronze"))] {
        let mut c = good.clone();
        c[claim] = value;
        assert_eq!(get(&s.url("/read"), &[("authorization", &tok(c))]).await.status, 403, "{claim}");
    }
    assert_eq!(get(&s.url("/any"), &[("authorization", &tok(good.clone()))]).await.status, 200);
    // IP lists run before authentication: no challenge, and no token needed to be refused.
    let r = get(&s.url("/internal"), &[]).await;
    assert_eq!(r.status, 403);
    assert!(r.header("www-authenticate").is_none());
    assert_eq!(s.up.hits(), 2);
}

#[tokio::test]
async fn check_refuses_bad_auth_config() {
    let yaml = r#"
listeners: [ { name: gw, bind: "127.0.0.1:0" } ]
auth:
  weak: { jwt: { algorithms: [HS256], secret: short } }
  none: { jwt: { algorithms: [none], secret: "an-hmac-secret-that-is-long-enough!" } }
  mixed: { jwt: { algorithms: [RS256], secret: "an-hmac-secret-that-is-long-enough!" } }
  a: { jwt: { algorithms: [HS256], secret: "an-hmac-secret-that-is-long-enough!" } }
  b: { jwt: { algorithms: [HS384], secret: "another-hmac-secret-long-enough!!" } }
  c1: { jwt: { algorithms: [HS256], secret: "an-hmac-secret-that-is-long-enough!", token: { cookie: session } } }
  c2: { jwt: { algorithms: [HS384], secret: "another-hmac-secret-long-enough!!", token: { cookie: session } } }
  staff: { basic: { users: { alice: "$2y$05$abcdefghijklmnopqrstuu5dZ0y5pIJ0tM9GD/2m0nq6V1m1G7dUS" } } }
  other: { basic: { users: { bob: "$2y$05$abcdefghijklmnopqrstuu5dZ0y5pIJ0tM9GD/2m0nq6V1m1G7dUS" } } }
  k1: { api_key: { header: X-Key } }
  k2: { api_key: { header: x-key } }
  q1: { api_key: { query: access_token } }
  q2: { jwt: { algorithms: [HS256], secret: "an-hmac-secret-that-is-long-enough!", token: { query: access_token } } }
  kauth: { api_key: { header: Authorization } }
  kcookie: { api_key: { header: Cookie } }
  q3: { api_key: { query: api_key } }
  q4: { jwt: { algorithms: [HS256], secret: "an-hmac-secret-that-is-long-enough!", token: { query: API.KEY } } }
warnings: { allow: [ literal-secret ] }
identity_headers: { consumer: Authorization }
routes:
  - { name: r, match: { path_prefix: / }, echo: {}, authenticate: [nobody], authorize: { scopes: [x] } }
  - { name: s, match: { path_prefix: /s }, echo: {}, authorize: { scopes: [x] } }
  - { name: t, match: { path_prefix: /t }, echo: {}, authenticate: [a, b] }
  - { name: u, match: { path_prefix: /u }, echo: {}, anonymous: true }
  - { name: v, match: { path_prefix: /v }, echo: {}, authenticate: [a], anonymous: true, authorize: { scopes: [x] } }
  - { name: w, match: { path_prefix: /w }, echo: {}, authenticate: [staff, k1, c1, q1, other, k2, c2, q2] }
  - { name: x, match: { path_prefix: /x }, echo: {}, authenticate: [kauth, a, kcookie, c1] }
  - { name: y, match: { path_prefix: /y }, echo: {}, authenticate: [q3, q4] }
"#;
    let errors = portcullis::check(&load(yaml, Path::new("."))).unwrap_err().to_string();
    // Two providers reading one place: the second would never be asked.
    for (i, second, first, place) in [
        (4, "other", "staff", "`Authorization: Basic`"),
        (5, "k2", "k1", "the header `x-key`"),
        (6, "c2", "c1", "the cookie `session`"),
        (7, "q2", "q1", "the query parameter `access_token`"),
    ] {
        let want = format!("routes[5].authenticate[{i}]: `{second}` reads the same credential as `{first}` ({place})");
        assert!(errors.contains(&want), "missing `{want}` in:\n{errors}");
    }
    // An API key named `Authorization` takes every scheme's value; one named `Cookie`, every cookie.
    for (i, second, first, place) in
        [(1, "a", "kauth", "`Authorization: Bearer`"), (3, "c1", "kcookie", "the cookie `session`")]
    {
        let want = format!("routes[6].authenticate[{i}]: `{second}` reads the same credential as `{first}` ({place})");
        assert!(errors.contains(&want), "missing `{want}` in:\n{errors}");
    }
    // `api_key` reads `API.KEY` as its `api_key` (as PHP and Rack would): every token there was refused.
    let want = "routes[7].authenticate[1]: `q4` reads the same credential as `q3`";
    assert!(errors.contains(want), "missing `{want}` in:\n{errors}");
    for want in [
        "auth.weak.jwt.secret: an HMAC secret must be at least 32 bytes",
        "auth.none.jwt.algorithms[0]: `none` is not one of",
        "auth.mixed.jwt.algorithms: a `secret` only verifies HS256/384/512",
        "routes[0].authenticate[0]: unknown auth provider `nobody`",
        "routes[1].authorize: `authorize` needs `authenticate`",
        "routes[2].authenticate: at most one bearer-token provider",
        "routes[3].anonymous: `anonymous` needs `authenticate`",
        "routes[4].authorize: `authorize` would refuse every anonymous caller",
        "identity_headers: `authorization` cannot carry an identity",
    ] {
        assert!(errors.contains(want), "missing `{want}` in:\n{errors}");
    }
}

/// A JWKS endpoint that takes connections and never answers, from the
/// start: a request waits for the first fetch (up to 5 s), then gets 503
/// (the token may be fine), without starting a second fetch of its own
/// (the first counts as one: such requests waited twice as long).
#[tokio::test]
async fn a_jwks_silent_from_the_start_is_fetched_once_and_answers_503() {
    let tarpit = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", tarpit.local_addr().unwrap());
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = tarpit.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(s);
        }
    });
    let auth = format!("  idp: {{ jwt: {{ algorithms: [ES256], jwks_uri: \"{url}\" }} }}\n");
    let routes = "  - { name: api, match: { path_prefix: /api }, upstream: svc, authenticate: [idp] }\n";
    let s = setup(&auth, "  []", routes, &[]).await;
    let k = SigningKey::generate(Algorithm::ES256, "k1");
    let token = k.sign(&json!({ "sub": "a", "exp": now() + 60 }));
    let reply = get(&s.url("/api"), &[("authorization", &bearer(&token))]).await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 1, "one fetch, not one more per request");
}

#[tokio::test]
async fn jwks_outage_keeps_the_last_good_keys() {
    jwks_outage_keeps_the_last_good_keys_when(|idp| idp.take_down_jwks()).await;
}

/// An answer with no usable key is an IdP's mistake, not the revocation of
/// every key: the last good set keeps serving, as it does when the IdP is down.
#[tokio::test]
async fn an_empty_jwks_answer_keeps_the_last_good_keys() {
    jwks_outage_keeps_the_last_good_keys_when(|idp| idp.publish(&[])).await;
}

/// An answer whose every key is unusable (an RSA key under 2048 bits, a
/// symmetric key, keys that fit none of the provider's `algorithms`) holds
/// no key the gateway can use either: it was "loaded", replaced the good
/// set, and every valid token got 401.
#[tokio::test]
async fn an_answer_of_unusable_keys_keeps_the_last_good_keys() {
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    // The provider takes ES256 only: an RSA key (however long) and a P-384 key fit none of it.
    let rsa = SigningKey::generate(Algorithm::RS256, "rsa");
    let p384 = SigningKey::generate(Algorithm::ES384, "p384");
    let unusable = json!({ "keys": [
        { "kty": "RSA", "kid": "k1", "n": b64(&[0xc5; 128]), "e": "AQAB" },
        { "kty": "oct", "kid": "k1", "k": b64(b"a-secret-anyone-reading-the-set-has!") },
        rsa.jwk(),
        p384.jwk(),
    ]});
    jwks_outage_keeps_the_last_good_keys_when(|idp| *idp.jwks.lock().unwrap() = unusable).await;
}

async fn jwks_outage_keeps_the_last_good_keys_when(outage: impl FnOnce(&Idp)) {
    let idp = Idp::start().await;
    let k = SigningKey::generate(Algorithm::ES256, "k1");
    idp.publish(&[&k]);
    let auth =
        format!("  idp: {{ jwt: {{ algorithms: [ES256], jwks_uri: \"{}\", jwks_refresh: 1s }} }}\n", idp.url("/jwks"));
    let s = setup(
        &auth,
        "  []",
        "  - { name: api, match: { path_prefix: /api }, upstream: svc, authenticate: [idp] }\n",
        &[],
    )
    .await;
    let token = |n: u64| k.sign(&json!({ "sub": "a", "exp": now() + 60, "n": n }));
    assert_eq!(get(&s.url("/api"), &[("authorization", &bearer(&token(1)))]).await.status, 200);
    outage(&idp);
    // Wait until the gateway has tried (and failed) to refresh twice.
    let fetches = || idp.jwks_fetches.load(std::sync::atomic::Ordering::SeqCst);
    let target = fetches() + 2;
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while fetches() < target {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the gateway keeps refreshing");
    // A token it has never seen (not cached) still verifies with the last good set.
    assert_eq!(get(&s.url("/api"), &[("authorization", &bearer(&token(2)))]).await.status, 200);
}

#[tokio::test]
async fn tokens_from_cookies_and_queries_are_not_forwarded() {
    let auth = format!(
        "  c: {{ jwt: {{ algorithms: [HS256], secret: \"{SECRET}\", token: {{ cookie: session }} }} }}\n  q: {{ jwt: {{ algorithms: [HS256], secret: \"{SECRET}\", token: {{ query: access_token }} }} }}\n"
    );
    let routes = "  - { name: c, match: { path_prefix: /c }, upstream: svc, authenticate: [c] }\n  - { name: q, match: { path_prefix: /q }, upstream: svc, authenticate: [q] }\n";
    let s = setup(&auth, "  []", routes, &[]).await;
    let t = sign_hs(Algorithm::HS256, SECRET, &json!({ "sub": "a", "exp": now() + 60 }));
    let seen = get(&s.url("/c"), &[("cookie", &format!("theme=dark; session={t}"))]).await.json();
    assert_eq!(seen["headers"]["cookie"], "theme=dark");
    // Another cookie's non-ASCII value does not hide the token (it was a 401).
    let seen = get(&s.url("/c"), &[("cookie", &format!("name=café; session={t}"))]).await;
    assert_eq!((seen.status.as_u16(), seen.json()["headers"]["cookie"].as_str()), (200, Some("name=café")));
    let seen = get(&s.url(&format!("/q?x=1&access_token={t}")), &[]).await.json();
    assert_eq!(seen["query"], "x=1");
    // Nor other spellings a service reads as the same name, beside the checked one:
    // a cookie name with spaces (parsers trim it), a `;`-separated or
    // bracketed parameter, PHP's `.` for `_`.
    let cookie = format!("theme=dark; session={t}; session =chosen; %73ession=too");
    let seen = get(&s.url("/c"), &[("cookie", &cookie)]).await.json();
    assert_eq!(seen["headers"]["cookie"], "theme=dark");
    let seen =
        get(&s.url(&format!("/q?access_token={t}&x=1;access_token=chosen&access_token[]=too&access.token=3")), &[])
            .await
            .json();
    assert_eq!(seen["query"], "x=1");
    // A bearer token beside the cookie or query token was never checked:
    // not forwarded (a service reading `Authorization` took it as the token).
    let forged = sign_hs(Algorithm::HS256, "another-secret-another-secret-32b", &json!({ "sub": "admin" }));
    let beside = format!("Bearer {forged}");
    for url in [s.url("/c"), s.url(&format!("/q?access_token={t}"))] {
        let seen = get(&url, &[("cookie", &format!("session={t}")), ("authorization", &beside)]).await;
        assert_eq!(seen.status, 200, "{url}");
        assert!(seen.json()["headers"]["authorization"].is_null(), "{url}: {}", seen.text());
    }
    // Another scheme is not the token's business: a service's own Basic stays.
    let seen = get(&s.url("/c"), &[("cookie", &format!("session={t}")), ("authorization", "Basic dTpw")]).await;
    assert_eq!(seen.json()["headers"]["authorization"], "Basic dTpw");
}

/// Nor when another provider of the route decides (an API key beside a
/// query JWT) or none does (an anonymous route with a cookie JWT): no
/// provider of the route checked that bearer token.
#[tokio::test]
async fn a_bearer_token_no_provider_checked_is_not_forwarded() {
    let key = portcullis::hash_key("k-1");
    let auth = format!(
        "  c: {{ jwt: {{ algorithms: [HS256], secret: \"{SECRET}\", token: {{ cookie: session }} }} }}\n  q: {{ jwt: {{ algorithms: [HS256], secret: \"{SECRET}\", token: {{ query: access_token }} }} }}\n  keys: {{ api_key: {{ header: X-API-Key }} }}\n"
    );
    let consumers = format!("  - {{ id: c1, api_keys: [ {{ sha256: \"{key}\" }} ] }}");
    let routes = "  - { name: kq, match: { path_prefix: /kq }, upstream: svc, authenticate: [keys, q] }\n  - { name: anon, match: { path_prefix: /anon }, upstream: svc, authenticate: [c], anonymous: true }\n";
    let s = setup(&auth, &consumers, routes, &[]).await;
    let forged = format!(
        "Bearer {}",
        sign_hs(Algorithm::HS256, "another-secret-another-secret-32b", &json!({ "sub": "admin" }))
    );
    for (path, extra) in [("/kq", Some(("x-api-key", "k-1"))), ("/anon", None)] {
        let mut headers = vec![("authorization", forged.as_str())];
        headers.extend(extra);
        let seen = get(&s.url(path), &headers).await;
        assert_eq!(seen.status, 200, "{path}: {}", seen.text());
        assert!(seen.json()["headers"]["authorization"].is_null(), "{path}: {}", seen.text());
    }
    // An empty token is no token (RFC 6750 §3.1), as an empty `Bearer` is:
    // a cookie cleared by setting it empty got 401 on an anonymous route,
    // and an empty query token hid a valid API key beside it.
    let seen = get(&s.url("/anon"), &[("cookie", "session=")]).await;
    assert_eq!(seen.status, 200, "{}", seen.text());
    let seen = get(&s.url("/kq?access_token="), &[("x-api-key", "k-1")]).await;
    assert_eq!(seen.status, 200, "{}", seen.text());
}

/// On an anonymous route, a request that presents none of the route's
/// credentials passes with none of what looks like one: another spelling
/// of the token's cookie or query parameter, `Bearer<TAB>`, a Basic value
/// that does not decode. They reached the service unchecked (a framework
/// splitting on any whitespace reads `Bearer<TAB>token` as a bearer token);
/// `Bearer<TAB>` is a bearer token here too, verified (401 when bad).
#[tokio::test]
async fn anonymous_routes_forward_no_unchecked_credential() {
    let bcrypt_hash = bcrypt::hash("pw", 4).unwrap();
    let auth = format!(
        "  c: {{ jwt: {{ algorithms: [HS256], secret: \"{SECRET}\", token: {{ cookie: session }} }} }}\n  q: {{ jwt: {{ algorithms: [HS256], secret: \"{SECRET}\", token: {{ query: access_token }} }} }}\n  h: {{ jwt: {{ algorithms: [HS256], secret: \"{SECRET}\" }} }}\n  staff: {{ basic: {{ realm: Staff, htpasswd: users.htpasswd }} }}\n  keys: {{ api_key: {{ header: X-API-Key }} }}\n"
    );
    let routes = "  - { name: c, match: { path_prefix: /c }, upstream: svc, authenticate: [c], anonymous: true }\n  - { name: q, match: { path_prefix: /q }, upstream: svc, authenticate: [q], anonymous: true }\n  - { name: h, match: { path_prefix: /h }, upstream: svc, authenticate: [h, staff], anonymous: true }\n  - { name: kh, match: { path_prefix: /kh }, upstream: svc, authenticate: [keys, h] }\n";
    let consumers =
        "  - { id: app, api_keys: [ { sha256: \"KEY\" } ] }\n".replace("KEY", &portcullis::hash_key("key-app"));
    let s = setup(&auth, &consumers, routes, &[("users.htpasswd", &format!("carol:{bcrypt_hash}\n"))]).await;
    let seen = get(&s.url("/c"), &[("cookie", "theme=dark; session =forged; SESSION=f2; %73ession=f3")]).await;
    assert_eq!(seen.status, 200);
    assert_eq!(seen.json()["headers"]["cookie"], "theme=dark");
    // After a `,` or a space inside a pair: Python's SimpleCookie and Rack 2 read a `session` there.
    for cookie in [
        "theme=dark; a=1, session=forged",
        "theme=dark; a=1 session=forged",
        "theme=dark; a=1,SESSION=x",
        "theme=dark; a=1, session =x",
        "theme=dark; a=1 session = x",
    ] {
        let seen = get(&s.url("/c"), &[("cookie", cookie)]).await;
        assert_eq!(
            (seen.status.as_u16(), seen.json()["headers"]["cookie"].as_str()),
            (200, Some("theme=dark")),
            "{cookie}"
        );
    }
    // A quoted value is one value: kept whole, whatever it holds; what
    // follows its closing quote is read on (SimpleCookie's `session`).
    let seen = get(&s.url("/c"), &[("cookie", "msg=\"hello session=world\"; prefs=a,b")]).await;
    assert_eq!(seen.json()["headers"]["cookie"], "msg=\"hello session=world\"; prefs=a,b");
    let seen = get(&s.url("/c"), &[("cookie", "theme=dark; b=\"x\" session=evil")]).await;
    assert_eq!(seen.json()["headers"]["cookie"], "theme=dark");
    // A non-ASCII byte in another cookie's value keeps the header (it went whole).
    let seen = get(&s.url("/c"), &[("cookie", "name=café; session =x; theme=dark")]).await;
    assert_eq!(seen.json()["headers"]["cookie"], "name=café; theme=dark");
    let seen = get(&s.url("/q?x=1&ACCESS_TOKEN=forged&access%5Ftoken=f2&access.token=f3&access_token[]=f4"), &[]).await;
    assert_eq!((seen.status.as_u16(), seen.json()["query"].as_str()), (200, Some("x=1")));
    let forged = sign_hs(
        Algorithm::HS256,
        "another-secret-of-thirty-two-bytes!!",
        &json!({ "sub": "admin", "exp": now() + 60 }),
    );
    let tab = format!("Bearer\t{forged}");
    assert_eq!(get(&s.url("/h"), &[("authorization", &tab)]).await.status, 401, "a bearer token, and not valid");
    let good = sign_hs(Algorithm::HS256, SECRET, &json!({ "sub": "a", "exp": now() + 60 }));
    let seen = get(&s.url("/h"), &[("authorization", &format!("Bearer\t{good}"))]).await;
    assert_eq!((seen.status.as_u16(), seen.json()["headers"]["x-auth-subject"].as_str()), (200, Some("a")));
    // A Basic credential that does not decode (or has no `:`) is presented
    // and not valid, as an unreadable API key is: refused, never forwarded.
    for unreadable in ["Basic !!", "Basic\tY2Fyb2w=", "Basic Y2Fyb2w="] {
        let seen = get(&s.url("/h"), &[("authorization", unreadable)]).await;
        assert_eq!(seen.status, 401, "{unreadable:?}: presented, not valid");
    }
    // Authenticated by a key: a tab-separated bearer token beside it was never checked.
    let seen = get(&s.url("/kh"), &[("x-api-key", "key-app"), ("authorization", &tab)]).await;
    assert_eq!(seen.status, 200);
    assert!(seen.json()["headers"].get("authorization").is_none(), "the unchecked token reached the service");
}

#[tokio::test]
async fn mtls_maps_the_client_certificate_to_a_consumer() {
    let pki = crate::support::pki::Pki::new();
    let (c, k) = pki.issue("server", "server", &["api.example.com"]);
    let (known_c, known_k) = pki.issue("orders", "svc-orders", &["orders.internal"]);
    let (other_c, other_k) = pki.issue("other", "svc-unknown", &["unknown.internal"]);
    let yaml = format!(
        r#"
listeners:
  - name: tls
    bind: "127.0.0.1:0"
    tls:
      certificates: [ {{ cert: "{}", key: "{}" }} ]
      client_auth: {{ ca: "{}", required: false }}
auth:
  certs: {{ mtls: {{}} }}
consumers:
  - {{ id: orders-service, groups: [internal], certificates: [ {{ san: orders.internal }} ] }}
routes:
  - {{ name: echo, match: {{ path_prefix: / }}, echo: {{}}, authenticate: [certs] }}
"#,
        c.display(),
        k.display(),
        pki.ca_path().display()
    );
    let gw = portcullis::Gateway::start(&load(&yaml, Path::new("/"))).await.unwrap();
    let addr = gw.addr("tls").unwrap();
    let https = crate::support::pki::https_get;
    let ok = https(addr, "api.example.com", &pki.ca_path(), Some((&known_c, &known_k)), "/").await.unwrap();
    assert_eq!(ok.reply.status, 200);
    assert_eq!(ok.reply.json()["headers"]["x-consumer-id"][0], "orders-service");
    let unknown = https(addr, "api.example.com", &pki.ca_path(), Some((&other_c, &other_k)), "/").await.unwrap();
    assert_eq!(unknown.reply.status, 401, "a valid certificate that maps to no consumer");
    let none = https(addr, "api.example.com", &pki.ca_path(), None, "/").await.unwrap();
    assert_eq!(none.reply.status, 401, "client_auth is optional here, the route is not");
}

/// A subject is written as `openssl x509 -subject -nameopt
/// oneline,-space_eq` prints it (the docs' command), OpenSSL's short names
/// included (`emailAddress`, `street`, `GN`): those were read under other
/// names (`Email`) and never matched. The long names match too.
#[tokio::test]
async fn mtls_subjects_match_as_openssl_prints_them() {
    use rcgen::DnType;
    let pki = crate::support::pki::Pki::new();
    let (c, k) = pki.issue("server", "server", &["api.example.com"]);
    let email = DnType::CustomDnType(vec![1, 2, 840, 113549, 1, 9, 1]);
    let street = DnType::CustomDnType(vec![2, 5, 4, 9]);
    let given = DnType::CustomDnType(vec![2, 5, 4, 42]);
    let (a_c, a_k) = pki.issue_subject("a", &[(DnType::CommonName, "svc2"), (email.clone(), "svc2@example.org")]);
    let (b_c, b_k) = pki.issue_subject("b", &[(DnType::CommonName, "svc3"), (street, "Main St 1"), (given, "Ann")]);
    let (e_c, e_k) = pki.issue_subject("e", &[(DnType::CommonName, "svc4"), (email, "svc4@example.org")]);
    let yaml = format!(
        r#"
listeners:
  - name: tls
    bind: "127.0.0.1:0"
    tls:
      certificates: [ {{ cert: "{}", key: "{}" }} ]
      client_auth: {{ ca: "{}", required: false }}
auth:
  certs: {{ mtls: {{}} }}
consumers:
  - {{ id: svc2, certificates: [ {{ subject: "CN=svc2, emailAddress=svc2@example.org" }} ] }}
  - {{ id: svc3, certificates: [ {{ subject: "CN=svc3, street=Main St 1, GN=Ann" }} ] }}
  - {{ id: svc4, certificates: [ {{ subject: "CN=svc4, Email=svc4@example.org" }} ] }}
routes:
  - {{ name: echo, match: {{ path_prefix: / }}, echo: {{}}, authenticate: [certs] }}
"#,
        c.display(),
        k.display(),
        pki.ca_path().display()
    );
    let gw = portcullis::Gateway::start(&load(&yaml, Path::new("/"))).await.unwrap();
    let addr = gw.addr("tls").unwrap();
    for ((cert, key), id, subject) in [
        ((&a_c, &a_k), "svc2", "CN=svc2, emailAddress=svc2@example.org"),
        ((&b_c, &b_k), "svc3", "CN=svc3, street=Main St 1, GN=Ann"),
        ((&e_c, &e_k), "svc4", "CN=svc4, emailAddress=svc4@example.org"),
    ] {
        let seen = crate::support::pki::https_get(addr, "api.example.com", &pki.ca_path(), Some((cert, key)), "/")
            .await
            .unwrap();
        assert_eq!(seen.reply.status, 200, "{id}: {}", seen.reply.text());
        let json = seen.reply.json();
        assert_eq!(json["headers"]["x-consumer-id"][0], id);
        assert_eq!(json["client_cert"]["subject"], subject, "{id}");
    }
}

/// Two listeners trust two CAs (internal services, partners). A partner
/// CA's certificate naming an internal service's SAN passed, on the
/// partners' listener, for the internal consumer: an `mtls` provider with
/// `ca` takes only its CA's certificates; without `ca`, `check` warns
/// when the listeners trust different CAs.
#[tokio::test]
async fn an_mtls_provider_with_a_ca_takes_only_that_cas_certificates() {
    let (internal, partners) = (crate::support::pki::Pki::new(), crate::support::pki::Pki::new());
    let (c, k) = internal.issue("server", "server", &["api.example.com"]);
    let (svc_c, svc_k) = internal.issue("svc", "svc-a", &["svc-a.internal"]);
    let (evil_c, evil_k) = partners.issue("evil", "svc-a", &["svc-a.internal"]);
    let listener = |name: &str, ca: &Path| {
        format!(
            "  - name: {name}\n    bind: \"127.0.0.1:0\"\n    tls: {{ certificates: [ {{ cert: \"{}\", key: \"{}\" }} ], client_auth: {{ ca: \"{}\", required: true }} }}\n",
            c.display(),
            k.display(),
            ca.display()
        )
    };
    let config = |mtls: &str| {
        format!(
            "listeners:\n{}{}auth:\n  certs: {{ mtls: {mtls} }}\nconsumers:\n  - {{ id: svc-a, groups: [internal], certificates: [ {{ san: svc-a.internal }} ] }}\nroutes:\n  - {{ name: echo, match: {{ path_prefix: / }}, echo: {{}}, authenticate: [certs] }}\n",
            listener("internal", &internal.ca_path()),
            listener("partners", &partners.ca_path()),
        )
    };
    let https = crate::support::pki::https_get;
    let bound = load(&config(&format!("{{ ca: \"{}\" }}", internal.ca_path().display())), Path::new("/"));
    assert!(portcullis::check(&bound).is_ok());
    assert!(portcullis::warnings(&bound).is_empty(), "{:?}", portcullis::warnings(&bound));
    let gw = portcullis::Gateway::start(&bound).await.unwrap();
    let (on_internal, on_partners) = (gw.addr("internal").unwrap(), gw.addr("partners").unwrap());
    let ok = https(on_internal, "api.example.com", &internal.ca_path(), Some((&svc_c, &svc_k)), "/").await.unwrap();
    assert_eq!(ok.reply.status, 200);
    assert_eq!(ok.reply.json()["headers"]["x-consumer-id"][0], "svc-a");
    let evil = https(on_partners, "api.example.com", &internal.ca_path(), Some((&evil_c, &evil_k)), "/").await.unwrap();
    assert_eq!(evil.reply.status, 401, "a partner CA's certificate is no internal consumer");
    // Without `ca`, any listener's CA may name a consumer: the check says so.
    let open = load(&config("{}"), Path::new("/"));
    let warned: Vec<String> = portcullis::warnings(&open).iter().map(|w| w.to_string()).collect();
    assert!(
        warned.iter().any(|w| w.contains("[mtls-any-listener-ca]") && w.contains("consumers[0].certificates[0]")),
        "{warned:?}"
    );
    let gw = portcullis::Gateway::start(&open).await.unwrap();
    let on_partners = gw.addr("partners").unwrap();
    let evil = https(on_partners, "api.example.com", &internal.ca_path(), Some((&evil_c, &evil_k)), "/").await.unwrap();
    assert_eq!(evil.reply.status, 200, "what the warning is about");
}

/// The warning counts the CAs whose certificates can reach a provider: a
/// provider's `ca` bundle holding a CA no listener trusts adds nothing (no
/// such certificate passes the handshake), so one CA is no warning.
#[tokio::test]
async fn mtls_warning_counts_only_cas_a_listener_verifies() {
    let (internal, partners) = (crate::support::pki::Pki::new(), crate::support::pki::Pki::new());
    let (c, k) = internal.issue("server", "server", &["api.example.com"]);
    let dir = tempfile::tempdir().unwrap();
    let both = dir.path().join("both.pem");
    let bundle = [internal.ca_path(), partners.ca_path()].map(|p| std::fs::read_to_string(p).unwrap()).concat();
    std::fs::write(&both, bundle).unwrap();
    let yaml = |listener_ca: &Path| {
        format!(
            "listeners:\n  - name: tls\n    bind: \"127.0.0.1:0\"\n    tls: {{ certificates: [ {{ cert: \"{}\", key: \"{}\" }} ], client_auth: {{ ca: \"{}\", required: true }} }}\n\
             auth:\n  int: {{ mtls: {{ ca: \"{}\" }} }}\n\
             consumers:\n  - {{ id: svc-a, certificates: [ {{ san: svc-a.internal }} ] }}\n\
             routes:\n  - {{ name: echo, match: {{ path_prefix: / }}, echo: {{}}, authenticate: [int] }}\n",
            c.display(),
            k.display(),
            listener_ca.display(),
            both.display()
        )
    };
    let one = load(&yaml(&internal.ca_path()), Path::new("/"));
    assert!(portcullis::warnings(&one).is_empty(), "{:?}", portcullis::warnings(&one));
    let two = load(&yaml(&both), Path::new("/"));
    let warned: Vec<String> = portcullis::warnings(&two).iter().map(|w| w.to_string()).collect();
    assert!(warned.iter().any(|w| w.contains("[mtls-any-listener-ca]")), "{warned:?}");
}

/// Two `mtls` providers with their own `ca` on one route, one listener
/// trusting both CAs: each takes its CA's certificates. The first decided
/// alone (every certificate was "its" credential), so the second's
/// callers got 401. And a consumer's certificate bound to its CA (`ca` on
/// the entry) is not named by the other CA's certificate, through either
/// provider: the partners' CA issuing `svc-a.internal` got svc-a's identity.
#[tokio::test]
async fn two_mtls_providers_on_a_route_each_take_their_cas_certificates() {
    let (internal, partners) = (crate::support::pki::Pki::new(), crate::support::pki::Pki::new());
    let (c, k) = internal.issue("server", "server", &["api.example.com"]);
    let (svc_c, svc_k) = internal.issue("svc", "svc-a", &["svc-a.internal"]);
    let (partner_c, partner_k) = partners.issue("acme", "acme", &["acme.partner"]);
    let (evil_c, evil_k) = partners.issue("evil", "svc-a", &["svc-a.internal"]);
    let dir = tempfile::tempdir().unwrap();
    let both = dir.path().join("both.pem");
    let bundle = [internal.ca_path(), partners.ca_path()].map(|p| std::fs::read_to_string(p).unwrap()).concat();
    std::fs::write(&both, bundle).unwrap();
    let yaml = format!(
        "listeners:\n  - name: tls\n    bind: \"127.0.0.1:0\"\n    tls: {{ certificates: [ {{ cert: \"{}\", key: \"{}\" }} ], client_auth: {{ ca: \"{}\", required: true }} }}\n\
         auth:\n  int: {{ mtls: {{ ca: \"{}\" }} }}\n  partner: {{ mtls: {{ ca: \"{}\" }} }}\n\
         consumers:\n  - {{ id: svc-a, certificates: [ {{ san: svc-a.internal, ca: \"{int}\" }} ] }}\n  - {{ id: acme, certificates: [ {{ san: acme.partner, ca: \"{partner}\" }} ] }}\n\
         routes:\n  - {{ name: echo, match: {{ path_prefix: / }}, echo: {{}}, authenticate: [int, partner] }}\n",
        c.display(),
        k.display(),
        both.display(),
        internal.ca_path().display(),
        partners.ca_path().display(),
        int = internal.ca_path().display(),
        partner = partners.ca_path().display(),
    );
    let loaded = load(&yaml, Path::new("/"));
    assert!(portcullis::warnings(&loaded).is_empty(), "{:?}", portcullis::warnings(&loaded));
    let unbound = load(&yaml.replace(&format!(", ca: \"{}\"", partners.ca_path().display()), ""), Path::new("/"));
    let warned: Vec<String> = portcullis::warnings(&unbound).iter().map(|w| w.to_string()).collect();
    assert!(warned.iter().any(|w| w.contains("consumers[1].certificates[0]") && w.contains("2 CAs")), "{warned:?}");
    let gw = portcullis::Gateway::start(&loaded).await.unwrap();
    let addr = gw.addr("tls").unwrap();
    let https = crate::support::pki::https_get;
    for (cert, key, who) in [(&svc_c, &svc_k, "svc-a"), (&partner_c, &partner_k, "acme")] {
        let got = https(addr, "api.example.com", &internal.ca_path(), Some((cert, key)), "/").await.unwrap();
        assert_eq!(got.reply.status, 200, "{who}");
        assert_eq!(got.reply.json()["headers"]["x-consumer-id"][0], who);
    }
    let evil = https(addr, "api.example.com", &internal.ca_path(), Some((&evil_c, &evil_k)), "/").await.unwrap();
    assert_eq!(evil.reply.status, 401, "the partners' CA issuing svc-a's name is not svc-a");
}

#[tokio::test]
async fn a_reload_during_an_idp_outage_keeps_the_keys() {
    let idp = Idp::start().await;
    let k = SigningKey::generate(Algorithm::ES256, "k1");
    idp.publish(&[&k]);
    let auth = format!("  idp: {{ jwt: {{ algorithms: [ES256], jwks_uri: \"{}\" }} }}\n", idp.url("/jwks"));
    let routes = "  - { name: api, match: { path_prefix: /api }, upstream: svc, authenticate: [idp] }\n";
    let s = setup(&auth, "  []", routes, &[]).await;
    let token = |n: u64| bearer(&k.sign(&json!({ "sub": "a", "exp": now() + 60, "n": n })));
    assert_eq!(get(&s.url("/api"), &[("authorization", &token(1))]).await.status, 200);
    idp.take_down_jwks();
    let yaml = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\nupstreams:\n  svc: {{ targets: [ \"{}\" ] }}\nauth:\n{auth}\nroutes:\n{routes}",
        s.up.url()
    );
    s.gw.reload(&load(&yaml, Path::new("."))).await.unwrap();
    // A token never seen before still verifies: the key set survived the reload.
    assert_eq!(get(&s.url("/api"), &[("authorization", &token(2))]).await.status, 200);
    // So it does through a reload that changes the provider's algorithms
    // (they filter the key set: it was fetched anew, and every token got 503).
    s.gw.reload(&load(&yaml.replace("algorithms: [ES256]", "algorithms: [ES256, PS256]"), Path::new(".")))
        .await
        .unwrap();
    assert_eq!(get(&s.url("/api"), &[("authorization", &token(3))]).await.status, 200);
}

/// A reload fetches a kept key set again at once: a key the IdP withdrew
/// (an emergency revocation) stops verifying without waiting for
/// `jwks_refresh`; a key it still publishes goes on verifying.
#[tokio::test]
async fn a_reload_drops_a_key_the_idp_withdrew() {
    let idp = Idp::start().await;
    let (old, new) = (SigningKey::generate(Algorithm::ES256, "k1"), SigningKey::generate(Algorithm::ES256, "k2"));
    idp.publish(&[&old, &new]);
    let auth =
        format!("  idp: {{ jwt: {{ algorithms: [ES256], jwks_uri: \"{}\", jwks_refresh: 1h }} }}\n", idp.url("/jwks"));
    let routes = "  - { name: api, match: { path_prefix: /api }, upstream: svc, authenticate: [idp] }\n";
    let s = setup(&auth, "  []", routes, &[]).await;
    let token = |k: &SigningKey, n: u64| bearer(&k.sign(&json!({ "sub": "a", "exp": now() + 60, "n": n })));
    assert_eq!(get(&s.url("/api"), &[("authorization", &token(&old, 1))]).await.status, 200);
    idp.publish(&[&new]);
    let fetches = || idp.jwks_fetches.load(std::sync::atomic::Ordering::SeqCst);
    let before = fetches();
    let yaml = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\nupstreams:\n  svc: {{ targets: [ \"{}\" ] }}\nauth:\n{auth}\nroutes:\n{routes}",
        s.up.url()
    );
    s.gw.reload(&load(&yaml, Path::new("."))).await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while fetches() == before {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the reload fetches the key set again");
    // The fetch is counted when asked; the set is stored once it arrived.
    let mut status = http::StatusCode::OK;
    for n in 2..200 {
        status = get(&s.url("/api"), &[("authorization", &token(&old, n))]).await.status;
        if status != 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(status, 401, "the withdrawn key verifies nothing new after the reload");
    assert_eq!(get(&s.url("/api"), &[("authorization", &token(&new, 1))]).await.status, 200);
}

/// The identity headers arrive the same whichever writes them: the engine
/// as lines of the upstream request (a plain route), authentication into the
/// map (a route whose later phases read headers), or the map of a responder.
#[tokio::test]
async fn identity_headers_reach_the_service_on_every_path() {
    let auth = format!("  hs: {{ jwt: {{ algorithms: [HS256], secret: \"{SECRET}\" }} }}\n");
    let routes = r#"  - { name: plain, match: { path_prefix: /plain }, upstream: svc, authenticate: [hs] }
  - name: edited
    match: { path_prefix: /edited }
    upstream: svc
    authenticate: [hs]
    request_headers: { set: { X-Auth-Scopes: overridden }, remove: [ X-Auth-Subject ] }
  - name: limited
    match: { path_prefix: /limited }
    upstream: svc
    authenticate: [hs]
    rate_limit: [ { key: { header: X-Auth-Subject }, rate: 1/min } ]
  - { name: echoed, match: { path_prefix: /echoed }, echo: {}, authenticate: [hs] }
"#;
    let s = setup(&auth, "  []", routes, &[]).await;
    let alice = bearer(&sign_hs(Algorithm::HS256, SECRET, &claims(json!({ "scope": "a b" }))));
    let bob = bearer(&sign_hs(Algorithm::HS256, SECRET, &claims(json!({ "sub": "bob" }))));
    let spoofed = [("x-auth-subject", "root"), ("x-consumer-id", "admin")];

    // Twice: the first request verifies, the second is answered from the cache.
    for _ in 0..2 {
        let r = get(&s.url("/plain"), &[&[("authorization", alice.as_str())][..], &spoofed].concat()).await;
        assert_eq!(r.status, 200);
        let h = &r.json()["headers"];
        assert_eq!(
            (&h["x-auth-subject"], &h["x-auth-scopes"], &h["x-auth-provider"]),
            (&json!("alice"), &json!("a b"), &json!("hs"))
        );
        assert!(h.get("x-consumer-id").is_none(), "no consumer, and the client's value is gone: {h}");
    }

    let r = get(&s.url("/edited"), &[("authorization", alice.as_str())]).await;
    let h = &r.json()["headers"];
    assert_eq!(h["x-auth-scopes"], "overridden", "request_headers runs after authentication and wins");
    assert!(h.get("x-auth-subject").is_none(), "and can remove an identity header: {h}");
    assert_eq!(h["x-auth-provider"], "hs");

    // A limit keyed by an identity header counts per subject.
    assert_eq!(get(&s.url("/limited"), &[("authorization", alice.as_str())]).await.status, 200);
    assert_eq!(get(&s.url("/limited"), &[("authorization", alice.as_str())]).await.status, 429);
    assert_eq!(get(&s.url("/limited"), &[("authorization", bob.as_str())]).await.status, 200);

    let r = get(&s.url("/echoed"), &[&[("authorization", alice.as_str())][..], &spoofed].concat()).await;
    let h = &r.json()["headers"];
    assert_eq!((&h["x-auth-subject"], &h["x-auth-scopes"]), (&json!(["alice"]), &json!(["a b"])));
    assert!(h.get("x-consumer-id").is_none(), "{h}");
}

/// An empty user name (an htpasswd line `:hash`) would let `Basic :password`
/// in with an empty subject: refused when the config loads.
#[tokio::test]
async fn an_empty_basic_user_name_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let hash = bcrypt::hash("pw", 4).unwrap();
    std::fs::write(dir.path().join("users.htpasswd"), format!("carol:{hash}\n:{hash}\n")).unwrap();
    let yaml = "listeners:\n  - { name: gw, bind: \"127.0.0.1:0\" }\n\
                auth:\n  staff: { basic: { realm: Staff, htpasswd: users.htpasswd } }\n\
                routes:\n  - { name: r, match: { path: /r }, static: { status: 200 }, authenticate: [staff] }\n";
    let errors = portcullis::check(&load(yaml, dir.path())).unwrap_err().to_string();
    assert!(errors.contains("users.htpasswd:2: a user name is empty"), "{errors}");
}

/// URLs the gateway fetches from must be http(s): an `ftp://` endpoint
/// or a `htp://` typo passed `check` and then failed every request.
#[tokio::test]
async fn auth_urls_that_are_not_http_are_config_errors() {
    let yaml = "listeners:\n  - { name: gw, bind: \"127.0.0.1:0\" }\n\
                auth:\n  i: { introspection: { endpoint: \"ftp://127.0.0.1:9/x\", client_id: a, client_secret: s } }\n  \
                j: { jwt: { algorithms: [RS256], jwks_uri: \"htp://idp/jwks\" } }\n  \
                k: { jwt: { algorithms: [RS256], jwks_uri: \"https://u:pw@idp/jwks\" } }\n\
                routes:\n  - { name: r, match: { path: /r }, static: { status: 200 }, authenticate: [i] }\n  \
                - { name: s, match: { path: /s }, static: { status: 200 }, authenticate: [j] }\n  \
                - { name: t, match: { path: /t }, static: { status: 200 }, authenticate: [k] }\n\
                warnings: { allow: [ literal-secret, unlimited-expensive-auth ] }\n";
    let errors = portcullis::check(&load(yaml, Path::new("."))).unwrap_err().to_string();
    assert!(errors.contains("auth.i.introspection.endpoint: `ftp://127.0.0.1:9/x` is not an http(s) URL"), "{errors}");
    assert!(errors.contains("auth.j.jwt.jwks_uri: `htp://idp/jwks` is not an http(s) URL"), "{errors}");
    assert!(errors.contains("auth.k.jwt.jwks_uri: `https://<redacted>@idp/jwks`: a user and password"), "{errors}");
    assert!(!errors.contains("pw@"), "{errors}");
}

/// An introspection endpoint that answers `body` after 200 ms, counting
/// the calls it got and the most it held at once.
async fn slow_introspection_endpoint(
    body: &'static str,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (calls, peak) = (std::sync::Arc::new(AtomicUsize::new(0)), std::sync::Arc::new(AtomicUsize::new(0)));
    let open = std::sync::Arc::new(AtomicUsize::new(0));
    let (c, p) = (calls.clone(), peak.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (o, c, p) = (open.clone(), c.clone(), p.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 << 10];
                loop {
                    let mut got = Vec::new();
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    c.fetch_add(1, Ordering::SeqCst);
                    let now = o.fetch_add(1, Ordering::SeqCst) + 1;
                    p.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    o.fetch_sub(1, Ordering::SeqCst);
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    );
                    if s.write_all(format!("{head}{body}").as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, calls, peak)
}

/// A gateway whose `/api` authenticates by introspection at `endpoint`;
/// the gateway and the URL of `/api`.
async fn introspecting_gateway(endpoint: std::net::SocketAddr) -> (portcullis::Handle, String) {
    let yaml = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\n\
         auth:\n  opaque: {{ introspection: {{ endpoint: \"http://{endpoint}/introspect\", client_id: gateway, client_secret: s3cret, timeout: 10s }} }}\n\
         routes:\n  - {{ name: api, match: {{ path_prefix: /api }}, static: {{ status: 200 }}, authenticate: [opaque] }}\n\
         warnings: {{ allow: [ unlimited-expensive-auth ] }}\n"
    );
    let gw = portcullis::Gateway::start(&load(&yaml, Path::new("."))).await.expect("starts");
    let url = format!("http://{}/api", gw.addr("gw").unwrap());
    (gw, url)
}

/// Calls to an introspection endpoint under way are bounded (64): a flood
/// of distinct bogus tokens once opened one connection per request (20,000
/// sockets, the file descriptors gone). The others wait their turn.
#[tokio::test]
async fn introspection_calls_under_way_are_bounded() {
    use std::sync::atomic::Ordering;
    let (addr, _, peak) = slow_introspection_endpoint(r#"{"active":false}"#).await;
    let (_gw, url) = introspecting_gateway(addr).await;
    let requests = (0..150).map(|i| {
        let url = url.clone();
        tokio::spawn(async move { get(&url, &[("authorization", &format!("Bearer bogus-{i}"))]).await.status })
    });
    for r in requests.collect::<Vec<_>>() {
        assert_eq!(r.await.unwrap(), 401);
    }
    let peak = peak.load(Ordering::SeqCst);
    assert!(peak <= 64 && peak > 8, "calls under way at once: {peak}");
}

/// An introspection answer naming a member twice
/// (`"active":false,"active":true`) is not an answer: readers disagree on
/// which one counts (serde_json keeps the last), so it is refused as a
/// JWT's claims are, and the request is not let through.
#[tokio::test]
async fn an_introspection_answer_naming_a_member_twice_is_not_trusted() {
    let (addr, calls, _) = slow_introspection_endpoint(r#"{"active":false,"active":true,"sub":"dupe"}"#).await;
    let (_gw, url) = introspecting_gateway(addr).await;
    let reply = get(&url, &[("authorization", "Bearer dupe-1")]).await;
    assert_eq!(reply.status, 503, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// Requests that bring one token the cache does not know yet wait for one
/// lookup of it: a burst of 40 made 40 calls to the endpoint, and every
/// one of them gets its answer (the identity, here).
#[tokio::test]
async fn concurrent_requests_with_one_new_token_make_one_call() {
    use std::sync::atomic::Ordering;
    let (addr, calls, _) = slow_introspection_endpoint(r#"{"active":true,"sub":"svc-7","scope":"read"}"#).await;
    let (_gw, url) = introspecting_gateway(addr).await;
    let requests: Vec<_> = (0..40)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&url, &[("authorization", "Bearer one-new-token")]).await.status })
        })
        .collect();
    for r in requests {
        assert_eq!(r.await.unwrap(), 200);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "calls to the endpoint for one token");
    // Another token is another lookup.
    assert_eq!(get(&url, &[("authorization", "Bearer another")]).await.status, 200);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// A refused bearer token on a route that also takes a cookie token: one
/// Bearer challenge, the one saying the token was invalid (a plain one
/// beside it contradicted it; RFC 6750 clients may read only one).
#[tokio::test]
async fn a_refused_token_gets_one_bearer_challenge() {
    let auth = format!(
        "  h: {{ jwt: {{ algorithms: [HS256], secret: \"{SECRET}\" }} }}\n  c: {{ jwt: {{ algorithms: [HS256], secret: \"{SECRET}\", token: {{ cookie: session }} }} }}\n  keys: {{ api_key: {{ header: X-API-Key }} }}\n"
    );
    let routes = "  - { name: m, match: { path_prefix: /m }, upstream: svc, authenticate: [h, c, keys] }\n";
    let s = setup(&auth, "  []", routes, &[]).await;
    let r = get(&s.url("/m"), &[("authorization", "Bearer junk")]).await;
    assert_eq!(r.status, 401);
    let challenges: Vec<String> =
        r.headers.get_all("www-authenticate").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    assert_eq!(challenges, ["Bearer realm=\"portcullis\", error=\"invalid_token\"", "ApiKey realm=\"portcullis\""]);
    // Without a credential: the plain one, once.
    let r = get(&s.url("/m"), &[]).await;
    let challenges: Vec<String> =
        r.headers.get_all("www-authenticate").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    assert_eq!(challenges, ["Bearer realm=\"portcullis\"", "ApiKey realm=\"portcullis\""]);
}
