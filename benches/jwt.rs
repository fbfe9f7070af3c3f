//! What a JWT costs per request: a full RS256 / ES256 / HS256 verification
//! (a token the gateway has not seen) against a cache hit (a hot token:
//! SHA-256 of the token and one map lookup). Not a test: run with
//! `cargo bench --bench jwt`.
// A benchmark measures real elapsed time: the wall clock and `Instant` are its to read.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use portcullis::bench::{TokenCache, TtlCache, key_of};

fn per_op(n: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..n / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_nanos() as f64 / f64::from(n) / 1000.0
}

fn main() {
    let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 3600;
    let claims = serde_json::json!({ "sub": "alice", "exp": exp, "scope": "users:read" });
    for (alg, rc) in [(Algorithm::RS256, &rcgen::PKCS_RSA_SHA256), (Algorithm::ES256, &rcgen::PKCS_ECDSA_P256_SHA256)] {
        let key = rcgen::KeyPair::generate_for(rc).unwrap();
        let enc = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(key.serialize_pem().as_bytes()).unwrap(),
            _ => EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap(),
        };
        let dec = match alg {
            Algorithm::RS256 => DecodingKey::from_rsa_pem(key.public_key_pem().as_bytes()).unwrap(),
            _ => DecodingKey::from_ec_pem(key.public_key_pem().as_bytes()).unwrap(),
        };
        let token = jsonwebtoken::encode(&Header::new(alg), &claims, &enc).unwrap();
        let v = Validation::new(alg);
        let us = per_op(2_000, || {
            black_box(jsonwebtoken::decode::<serde_json::Value>(black_box(&token), &dec, &v).unwrap());
        });
        println!("{alg:?} full verification:      {us:8.2} µs");
    }
    let secret = b"an-hmac-secret-that-is-long-enough!";
    let token =
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret)).unwrap();
    let (dec, v) = (DecodingKey::from_secret(secret), Validation::new(Algorithm::HS256));
    let us = per_op(20_000, || {
        black_box(jsonwebtoken::decode::<serde_json::Value>(black_box(&token), &dec, &v).unwrap());
    });
    println!("HS256 full verification:      {us:8.2} µs");

    // The gateway's hot path for a token it verified before.
    let cache: TtlCache<Arc<String>> = TtlCache::new(100_000);
    cache.insert(key_of(&[token.as_bytes()]), Arc::new("identity".into()), Duration::from_secs(3600));
    let us = per_op(200_000, || {
        black_box(cache.get(&key_of(&[black_box(token.as_bytes())])));
    });
    println!("MAC-keyed (SipHash-128 + map): {us:8.2} µs");

    // What JWT providers use: the token kept, found by a seeded xxh3.
    let tokens: TokenCache<Arc<String>> = TokenCache::new(100_000, 64 << 20);
    tokens.insert(token.as_bytes(), Arc::new("identity".into()), Duration::from_secs(3600));
    let us = per_op(200_000, || {
        black_box(tokens.get(black_box(token.as_bytes())));
    });
    println!("cached token (xxh3 + compare): {us:8.2} µs");
}
