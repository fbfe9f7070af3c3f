//! A test identity provider: signing keys of every JWT family, a JWKS and
//! OpenID discovery endpoint, and an RFC 7662 introspection endpoint, all
//! real HTTP servers on loopback.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A signing key with its public forms.
pub struct SigningKey {
    pub alg: Algorithm,
    pub kid: String,
    pub private_pem: String,
    pub public_pem: String,
    public_der: Vec<u8>,
}

impl SigningKey {
    pub fn generate(alg: Algorithm, kid: &str) -> SigningKey {
        let rc = match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => &rcgen::PKCS_RSA_SHA256,
            Algorithm::ES256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Algorithm::ES384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            Algorithm::EdDSA => &rcgen::PKCS_ED25519,
            _ => panic!("use a secret for HMAC"),
        };
        let key = rcgen::KeyPair::generate_for(rc).unwrap();
        SigningKey {
            alg,
            kid: kid.to_string(),
            private_pem: key.serialize_pem(),
            public_pem: key.public_key_pem(),
            public_der: rcgen::PublicKeyData::subject_public_key_info(&key),
        }
    }

    pub fn encoding_key(&self) -> EncodingKey {
        let pem = self.private_pem.as_bytes();
        match self.alg {
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem).unwrap(),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem).unwrap(),
            _ => EncodingKey::from_rsa_pem(pem).unwrap(),
        }
    }

    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding_key()).unwrap()
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> Value {
        let (_, spki) = SubjectPublicKeyInfo::from_der(&self.public_der).unwrap();
        match spki.parsed().unwrap() {
            PublicKey::RSA(rsa) => {
                // DER integers carry a leading zero byte; JWK big integers do not.
                let unsigned = |b: &[u8]| b.iter().position(|x| *x != 0).map_or(Vec::new(), |i| b[i..].to_vec());
                json!({ "kty": "RSA", "kid": self.kid, "n": b64(&unsigned(rsa.modulus)), "e": b64(&unsigned(rsa.exponent)) })
            }
            PublicKey::EC(point) => {
                let raw = point.data();
                let half = (raw.len() - 1) / 2;
                let crv = if half == 32 { "P-256" } else { "P-384" };
                json!({ "kty": "EC", "kid": self.kid, "crv": crv, "x": b64(&raw[1..1 + half]), "y": b64(&raw[1 + half..]) })
            }
            _ => json!({ "kty": "OKP", "kid": self.kid, "crv": "Ed25519", "x": b64(&spki.subject_public_key.data) }),
        }
    }
}

/// Signs `claims` with an HMAC secret.
pub fn sign_hs(alg: Algorithm, secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

/// JWKS + discovery + introspection on one loopback server.
pub struct Idp {
    pub addr: SocketAddr,
    pub jwks: Arc<Mutex<Value>>,
    pub jwks_fetches: Arc<AtomicUsize>,
    pub introspections: Arc<AtomicUsize>,
    /// Token → introspection answer; absent tokens are inactive.
    pub tokens: Arc<Mutex<Vec<(String, Value)>>>,
    /// When true the introspection endpoint answers 500.
    pub broken: Arc<std::sync::atomic::AtomicBool>,
    /// Milliseconds the JWKS endpoint waits before it answers.
    pub jwks_delay_ms: Arc<std::sync::atomic::AtomicU64>,
}

impl Idp {
    pub async fn start() -> Idp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let idp = Idp {
            addr,
            jwks: Arc::new(Mutex::new(json!({ "keys": [] }))),
            jwks_fetches: Arc::default(),
            introspections: Arc::default(),
            tokens: Arc::default(),
            broken: Arc::default(),
            jwks_delay_ms: Arc::default(),
        };
        let state = (
            idp.jwks.clone(),
            idp.jwks_fetches.clone(),
            idp.introspections.clone(),
            idp.tokens.clone(),
            idp.broken.clone(),
            idp.jwks_delay_ms.clone(),
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| serve(req, state.clone(), addr));
                    let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        idp
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// From now on the JWKS endpoint answers 503.
    pub fn take_down_jwks(&self) {
        *self.jwks.lock().unwrap() = Value::Null;
    }

    pub fn publish(&self, keys: &[&SigningKey]) {
        *self.jwks.lock().unwrap() = json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() });
    }
}

type State = (
    Arc<Mutex<Value>>,
    Arc<AtomicUsize>,
    Arc<AtomicUsize>,
    Arc<Mutex<Vec<(String, Value)>>>,
    Arc<std::sync::atomic::AtomicBool>,
    Arc<std::sync::atomic::AtomicU64>,
);

async fn serve(req: Request<Incoming>, s: State, addr: SocketAddr) -> Result<Response<Full<Bytes>>, Infallible> {
    let (jwks, fetches, introspections, tokens, broken, jwks_delay_ms) = s;
    let json_resp = |v: Value| Response::new(Full::new(Bytes::from(v.to_string())));
    match req.uri().path() {
        "/.well-known/openid-configuration" => {
            Ok(json_resp(json!({ "issuer": format!("http://{addr}"), "jwks_uri": format!("http://{addr}/jwks") })))
        }
        "/jwks" => {
            fetches.fetch_add(1, Ordering::SeqCst);
            let delay = jwks_delay_ms.load(Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
            let doc = jwks.lock().unwrap().clone();
            if doc.is_null() {
                // `Idp::take_down_jwks`: the endpoint fails.
                let mut r = json_resp(json!({ "error": "down" }));
                *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                return Ok(r);
            }
            Ok(json_resp(doc))
        }
        "/introspect" => {
            introspections.fetch_add(1, Ordering::SeqCst);
            if broken.load(Ordering::SeqCst) {
                let mut r = json_resp(json!({ "error": "down" }));
                *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                return Ok(r);
            }
            let client_ok = req.headers().get("authorization").and_then(|v| v.to_str().ok())
                == Some(&format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("gateway:s3cret")));
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let body = String::from_utf8_lossy(&body).into_owned();
            let token = body.split('&').find_map(|p| p.strip_prefix("token=")).unwrap_or_default().to_string();
            if !client_ok {
                let mut r = json_resp(json!({ "error": "invalid_client" }));
                *r.status_mut() = http::StatusCode::UNAUTHORIZED;
                return Ok(r);
            }
            let answer = tokens.lock().unwrap().iter().find(|(t, _)| *t == token).map(|(_, v)| v.clone());
            Ok(json_resp(answer.unwrap_or(json!({ "active": false }))))
        }
        _ => {
            let mut r = json_resp(json!({}));
            *r.status_mut() = http::StatusCode::NOT_FOUND;
            Ok(r)
        }
    }
}
