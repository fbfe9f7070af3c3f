//! Where JWT verification keys come from: fixed keys (secret, PEM file,
//! JWKS file) or a JWKS URL (directly or by OpenID discovery) that is
//! fetched at start, refreshed in the background, and refetched (at most
//! every 10 s) when a token names an unknown `kid`. When the endpoint is
//! down, the last good key set keeps serving.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::time::Instant;

use super::Failure;
use crate::http::fetch::Fetcher;

const REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// The longest a request with an unknown kid waits for a refetch another
/// request started (a fetch's own limits end it sooner: discovery and the
/// key set are two fetches).
const REFETCH_WAIT: Duration = Duration::from_secs(10);

/// Keys a token may be signed with: those of its `kid` (an identity
/// provider may list one kid for an RSA and an EC key, or for two keys
/// while it rotates), tried in the set's order.
pub type Candidates = Arc<[Arc<Key>]>;

/// A verification key, and the one algorithm it is for when its JWK says
/// (`alg`, RFC 7517 §4.4): such a key verifies tokens of that algorithm
/// only (a key published for RS512 is not one for RS256 tokens).
pub struct Key {
    pub decoding: DecodingKey,
    pub alg: Option<Algorithm>,
}

impl Key {
    /// Whether the key may verify a token signed with `alg`.
    pub fn verifies(&self, alg: Algorithm) -> bool {
        self.decoding.family() == alg.family() && self.alg.is_none_or(|a| a == alg)
    }
}

/// A set of keys, by `kid` when they have one.
#[derive(Default)]
pub struct KeySet {
    by_kid: HashMap<String, Candidates>,
    all: Candidates,
    /// The keys of the document left out as unusable, each with why (`unusable`).
    pub skipped: Vec<String>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet").field("kids", &self.by_kid.keys().collect::<Vec<_>>()).finish()
    }
}

impl KeySet {
    pub fn single(key: DecodingKey) -> KeySet {
        KeySet {
            by_kid: HashMap::new(),
            all: Arc::new([Arc::new(Key { decoding: key, alg: None })]),
            skipped: Vec::new(),
        }
    }

    /// Keys of a JWKS document that can verify a token of one of
    /// `algorithms`; the others are skipped, one at a time (a key with a
    /// field this library cannot read, a `use` written as a list, does not
    /// take the set's other keys with it), and listed in `skipped`.
    pub fn from_jwks(doc: &serde_json::Value, algorithms: &[Algorithm], source: Source) -> Result<KeySet, String> {
        let listed = doc.get("keys").and_then(|k| k.as_array()).ok_or("not a JWKS: no `keys` list")?;
        let mut by_kid: HashMap<String, Vec<Arc<Key>>> = HashMap::new();
        let mut all = Vec::new();
        let mut skipped = Vec::new();
        use jsonwebtoken::jwk::{KeyOperations, PublicKeyUse};
        for (i, listed) in listed.iter().enumerate() {
            let Ok(jwk) = serde_json::from_value::<Jwk>(listed.clone()) else {
                let kid = listed.get("kid").and_then(|k| k.as_str());
                skipped.push(format!("{}: {UNREADABLE}", named(i, kid)));
                continue;
            };
            // A key published for encryption (`use: enc`), or whose
            // `key_ops` leave out `verify`, is not one to check signatures
            // with (RFC 7517 §4.2, §4.3): an identity provider that reuses
            // a token-encryption key must not make tokens signed with it pass.
            let for_signatures =
                !matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_)))
                    && jwk.common.key_operations.as_ref().is_none_or(|ops| ops.contains(&KeyOperations::Verify));
            if !for_signatures {
                continue;
            }
            let kid = jwk.common.key_id.as_deref();
            // By its written name: the library reads most encryption names
            // (`ECDH-ES`, `A256KW`, `dir`) as unknown ones.
            if let Some(name) = listed.get("alg").and_then(|a| a.as_str()).filter(|a| for_encryption(a)) {
                skipped.push(format!("{}: a key for encryption (`alg` {name}), not for signatures", named(i, kid)));
                continue;
            }
            if let Some(why) = listed.get("alg").and_then(|a| a.as_str()).and_then(|a| unverified_signature(a, &jwk)) {
                skipped.push(format!("{}: {why}", named(i, kid)));
                continue;
            }
            if let Some(why) = unusable(&jwk, algorithms, source) {
                skipped.push(format!("{}: {why}", named(i, kid)));
                continue;
            }
            let Ok(key) = DecodingKey::from_jwk(&jwk) else {
                skipped.push(format!("{}: {UNREADABLE}", named(i, kid)));
                continue;
            };
            let alg = jwk.common.key_algorithm.and_then(signature_algorithm);
            let key = Arc::new(Key { decoding: key, alg });
            if let Some(kid) = kid {
                by_kid.entry(kid.to_string()).or_default().push(key.clone());
            }
            all.push(key);
        }
        let by_kid = by_kid.into_iter().map(|(kid, keys)| (kid, keys.into())).collect();
        Ok(KeySet { by_kid, all: all.into(), skipped })
    }

    /// The key for `kid`. A set with one key and no kids (a secret, a PEM
    /// file) answers for any kid; otherwise the kid must match.
    fn find(&self, kid: Option<&str>) -> Option<Candidates> {
        let only = || (self.all.len() == 1).then(|| self.all.clone());
        match kid {
            Some(k) if !self.by_kid.is_empty() => self.by_kid.get(k).cloned(),
            _ => only(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// Whether a key of the set may verify a token signed with `alg`.
    pub fn verifies_any(&self, alg: Algorithm) -> bool {
        self.all.iter().any(|k| k.verifies(alg))
    }

    /// The family of a single fixed key.
    pub fn family(&self) -> Option<jsonwebtoken::AlgorithmFamily> {
        (self.all.len() == 1).then(|| self.all[0].decoding.family())
    }
}

/// A key of a JWKS as a log line or an error names it: by `kid`, else by place.
fn named(index: usize, kid: Option<&str>) -> String {
    match kid {
        Some(kid) => format!("kid `{}`", kid.escape_debug()),
        None => format!("key {index} (no kid)"),
    }
}

/// Where a key set comes from: a symmetric key is taken only from the
/// gateway's own file (`jwks_file`), never from a set served over HTTP
/// (`jwks_uri`, discovery), which its readers could sign tokens with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    File,
    Fetched,
}

/// The `jwks_uri` a discovery document names, unless it goes in clear from
/// an issuer reached over TLS (RFC 8414 §2: it is https): keys fetched in
/// clear could be replaced on the way, and tokens minted with them pass.
/// (An `http://` issuer is the operator's choice; `check` warns of it.)
fn discovered_jwks_uri<'d>(issuer: &str, uri: &'d str) -> Result<&'d str, String> {
    let tls = |u: &str| u.get(..8).is_some_and(|s| s.eq_ignore_ascii_case("https://"));
    if tls(issuer) && !tls(uri) {
        let shown = crate::http::url_in_message(uri);
        return Err(format!("discovery document's jwks_uri `{shown}` is not https (RFC 8414 §2)"));
    }
    Ok(uri)
}

/// Why a key this library cannot read is skipped.
const UNREADABLE: &str = "a key that cannot be read (an unknown `kty`, or without that type's fields)";

/// Whether a JWK's `alg` names a JWE algorithm (RFC 7518 §4.1, §5.1 and
/// the IANA JOSE registry: key management and content encryption), which
/// makes the key no signing key (RFC 7517 §4.4).
fn for_encryption(alg: &str) -> bool {
    const NAMES: [&str; 8] =
        ["dir", "RSA1_5", "A128GCM", "A192GCM", "A256GCM", "A128CBC-HS256", "A192CBC-HS384", "A256CBC-HS512"];
    NAMES.contains(&alg)
        || ["RSA-OAEP", "ECDH-", "PBES2-", "HPKE-"].iter().any(|p| alg.starts_with(p))
        || (alg.starts_with('A') && alg.ends_with("KW"))
}

/// Why a key marked with a registered JWS name the JWT library does not
/// verify is skipped (RFC 7517 §4.4: `alg` is the algorithm the key is
/// for; IANA JOSE registry): `ES512`, `ES256K`, `Ed448`, `ML-DSA-*`,
/// `RS1`, `ESP512`, the brainpool `ESB*` and `none` name algorithms no
/// token this gateway takes is signed with, so
/// the key must not verify `ES256` or `RS256` tokens because its type
/// would (a `secp256k1` name on a P-256 key). `Ed25519`, `ESP256` and
/// `ESP384` (RFC 9864, fully specified names of EdDSA and ECDSA on one
/// curve) are for keys of that curve only. A name outside the registry
/// says nothing: the key's type decides.
fn unverified_signature(alg: &str, jwk: &Jwk) -> Option<String> {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve};
    const REGISTERED: [&str; 13] = [
        "ES512",
        "ES256K",
        "Ed448",
        "ML-DSA-44",
        "ML-DSA-65",
        "ML-DSA-87",
        "none",
        "RS1",
        "ESP512",
        "ESB256",
        "ESB320",
        "ESB384",
        "ESB512",
    ];
    if REGISTERED.contains(&alg) {
        return Some(format!("a key for `{alg}`, an algorithm the gateway does not verify"));
    }
    // RFC 9864's fully specified names of algorithms the gateway verifies
    // under their older names: for keys of that one curve only.
    let curve = match &jwk.algorithm {
        AlgorithmParameters::OctetKeyPair(k) => Some(&k.curve),
        AlgorithmParameters::EllipticCurve(k) => Some(&k.curve),
        _ => None,
    };
    let fits = match alg {
        "Ed25519" => curve == Some(&EllipticCurve::Ed25519),
        "ESP256" => curve == Some(&EllipticCurve::P256),
        "ESP384" => curve == Some(&EllipticCurve::P384),
        _ => true,
    };
    (!fits).then(|| format!("marked `alg` {alg}, which does not fit a key of its type"))
}

/// The signature algorithm a JWK's `alg` names, if it names one.
fn signature_algorithm(declared: jsonwebtoken::jwk::KeyAlgorithm) -> Option<Algorithm> {
    use jsonwebtoken::jwk::KeyAlgorithm as K;
    Some(match declared {
        K::HS256 => Algorithm::HS256,
        K::HS384 => Algorithm::HS384,
        K::HS512 => Algorithm::HS512,
        K::ES256 => Algorithm::ES256,
        K::ES384 => Algorithm::ES384,
        K::RS256 => Algorithm::RS256,
        K::RS384 => Algorithm::RS384,
        K::RS512 => Algorithm::RS512,
        K::PS256 => Algorithm::PS256,
        K::PS384 => Algorithm::PS384,
        K::PS512 => Algorithm::PS512,
        K::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// The shortest symmetric key a `jwks_file` may hold, as a `secret`.
const MIN_HMAC_BYTES: usize = 32;

/// The length of a base64url value, decoded.
fn base64_len(value: &str) -> Option<usize> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(value.trim_end_matches('=')).ok().map(|b| b.len())
}

/// The smallest RSA modulus taken (RFC 7518 §3.3: 2048 bits or larger).
const MIN_RSA_BITS: usize = 2048;

/// Why a JWKS key can verify no token of a provider taking `algorithms`,
/// if it cannot: a symmetric (`oct`) key (a key set is published: whoever
/// reads it could sign tokens with it), an RSA key under 2048 bits, or a
/// key that fits none of the algorithms. Skipped before the set is judged:
/// an answer holding only such keys kept none the gateway could use, yet
/// replaced the last good set.
fn unusable(jwk: &Jwk, algorithms: &[Algorithm], source: Source) -> Option<String> {
    use jsonwebtoken::Algorithm::*;
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve};
    // A key that names its algorithm is for that one only (RFC 7517 §4.4;
    // encryption names are skipped before, by `for_encryption`, and
    // registered signature names this library does not know by
    // `unverified_signature`). `Ed25519` on an Ed25519 key, or a name outside
    // the registry: the key's type decides, as without one.
    if let Some(alg) = jwk.common.key_algorithm.and_then(signature_algorithm)
        && !algorithms.contains(&alg)
    {
        return Some(format!("a key for {alg:?}, not one of the provider's algorithms"));
    }
    let fits: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::OctetKey(_) if source == Source::Fetched => {
            return Some("a symmetric (`oct`) key: a key set served over HTTP is no place for a secret".into());
        }
        AlgorithmParameters::OctetKey(oct) => match base64_len(&oct.value) {
            // As a `secret` (RFC 7518 §3.2: a key as long as the hash).
            Some(len) if len < MIN_HMAC_BYTES => {
                return Some(format!("a symmetric key of {len} bytes (at least {MIN_HMAC_BYTES})"));
            }
            Some(_) => &[HS256, HS384, HS512],
            None => return Some(UNREADABLE.into()),
        },
        AlgorithmParameters::RSA(rsa) => match rsa_bits(&rsa.n) {
            Some(bits) if bits < MIN_RSA_BITS => {
                return Some(format!("an RSA key of {bits} bits (at least {MIN_RSA_BITS})"));
            }
            _ => &[RS256, RS384, RS512, PS256, PS384, PS512],
        },
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => &[ES256],
            EllipticCurve::P384 => &[ES384],
            _ => &[],
        },
        AlgorithmParameters::OctetKeyPair(okp) => match okp.curve {
            EllipticCurve::Ed25519 => &[EdDSA],
            _ => &[],
        },
        _ => return Some(UNREADABLE.into()),
    };
    // A key marked for an algorithm of another key type (`RS256` on an EC
    // key) verifies nothing: skipped, so a set of only such keys does not
    // replace a good one.
    if let Some(declared) = jwk.common.key_algorithm.and_then(signature_algorithm)
        && !fits.contains(&declared)
    {
        return Some(format!("marked `alg` {declared:?}, which does not fit a key of its type"));
    }
    if fits.iter().any(|a| algorithms.contains(a)) {
        return None;
    }
    let listed: Vec<String> = algorithms.iter().map(|a| format!("{a:?}")).collect();
    Some(format!("fits none of the provider's algorithms ({})", listed.join(", ")))
}

/// The size of an RSA modulus given as a JWK's `n` (base64url, big-endian);
/// `None` when it is not base64url (the key is refused as unreadable).
fn rsa_bits(n: &str) -> Option<usize> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(n).ok()?;
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    let significant = &bytes[first..];
    Some(significant.first().map_or(0, |b| significant.len() * 8 - b.leading_zeros() as usize))
}

#[derive(Debug)]
pub enum Keys {
    Fixed(KeySet),
    Remote(Arc<RemoteJwks>),
}

impl Keys {
    pub async fn find(&self, kid: Option<&str>) -> Result<Candidates, Failure> {
        match self {
            Keys::Fixed(set) => set.find(kid).ok_or(Failure::Invalid),
            Keys::Remote(remote) => remote.find(kid).await,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Url(String),
    /// `<issuer>/.well-known/openid-configuration` names the JWKS URL.
    Discovery(String),
}

#[derive(Debug)]
pub struct RemoteJwks {
    provider: Arc<str>,
    location: Location,
    fetcher: Fetcher,
    refresh: Duration,
    /// The provider's: a fetched key that fits none of them is skipped.
    algorithms: Vec<Algorithm>,
    keys: ArcSwap<KeySet>,
    /// When the last unknown-kid refetch started (they are rate-limited;
    /// scheduled refreshes are not counted).
    last_refetch: Mutex<Option<Instant>>,
    /// The last fetch failed and there are no keys at all.
    down: std::sync::atomic::AtomicBool,
    /// Becomes true once the first fetch has finished (well or not).
    attempted: tokio::sync::watch::Sender<bool>,
    /// True while an unknown-kid refetch runs: requests with a new kid that
    /// may not start their own (rate-limited) wait for it rather than get
    /// 401 during a rotation.
    refetching: tokio::sync::watch::Sender<bool>,
    /// The refresher runs once, even when a reload keeps this key set.
    started: std::sync::atomic::AtomicBool,
    /// What identifies the source: a reload with the same keeps the keys
    /// (with other `algorithms`, see `seeded_from`).
    pub identity: (Location, Duration, Option<std::path::PathBuf>),
}

/// Marks an unknown-kid refetch as running until dropped.
struct Refetching<'a>(&'a tokio::sync::watch::Sender<bool>);

impl Drop for Refetching<'_> {
    fn drop(&mut self) {
        self.0.send_replace(false);
    }
}

impl RemoteJwks {
    pub fn new(
        provider: Arc<str>,
        location: Location,
        fetcher: Fetcher,
        refresh: Duration,
        ca: Option<std::path::PathBuf>,
        algorithms: Vec<Algorithm>,
    ) -> RemoteJwks {
        RemoteJwks {
            identity: (location.clone(), refresh, ca),
            provider,
            location,
            fetcher,
            refresh,
            algorithms,
            keys: ArcSwap::from_pointee(KeySet::default()),
            last_refetch: Mutex::new(None),
            down: false.into(),
            attempted: tokio::sync::watch::Sender::new(false),
            refetching: tokio::sync::watch::Sender::new(false),
            started: false.into(),
        }
    }

    /// Starts with the keys `before` holds (the same source, other
    /// `algorithms`: a reload that changes them while the identity provider
    /// is down keeps serving; its first fetch filters the set anew).
    pub fn seeded_from(self, before: &RemoteJwks) -> RemoteJwks {
        self.keys.store(before.keys.load_full());
        self.attempted.send_replace(*before.attempted.borrow());
        self
    }

    /// Whether the provider takes the same algorithms as `algorithms`.
    pub fn takes(&self, algorithms: &[Algorithm]) -> bool {
        self.algorithms == algorithms
    }

    /// Fetches now, then refreshes every `refresh` while the provider lives.
    /// Started again (a reload kept this key set): fetches once more now,
    /// keeping the keys it has if that fails, so that a key the identity
    /// provider withdrew is dropped by a reload, not only at the next refresh.
    pub fn start(self: &Arc<Self>) {
        let weak: Weak<RemoteJwks> = Arc::downgrade(self);
        if self.started.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tokio::spawn(async move {
                if let Some(this) = weak.upgrade() {
                    this.fetch_now().await;
                }
            });
            return;
        }
        tokio::spawn(async move {
            loop {
                let Some(this) = weak.upgrade() else { return };
                this.fetch_now().await;
                let wait = this.refresh;
                drop(this);
                tokio::time::sleep(wait).await;
            }
        });
    }

    async fn find(self: &Arc<Self>, kid: Option<&str>) -> Result<Candidates, Failure> {
        if let Some(k) = self.keys.load().find(kid) {
            return Ok(k);
        }
        // Requests that arrive before the first fetch finished wait for it.
        let mut attempted = self.attempted.subscribe();
        let waited = !*attempted.borrow();
        if waited {
            let _ = tokio::time::timeout(Duration::from_secs(5), attempted.wait_for(|done| *done)).await;
            if let Some(k) = self.keys.load().find(kid) {
                return Ok(k);
            }
        }
        // Unknown kid (or nothing loaded yet): refetch, unless we just did,
        // or this request waited for the first fetch (that fetch was its
        // own: with the provider down at start, a second one held such
        // requests twice as long, about 10 s, 15 s with discovery).
        let may_fetch = !waited && {
            let mut last = self.last_refetch.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let ok = last.is_none_or(|t| now.duration_since(t) >= REFETCH_INTERVAL);
            if ok {
                *last = Some(now);
            }
            ok
        };
        if !waited {
            // Subscribed before the fetch is started: its end is seen.
            let mut running = self.refetching.subscribe();
            if may_fetch {
                // A task of its own: a client that leaves (or never meant
                // to stay) cannot cancel the fetch the others wait for.
                self.refetching.send_replace(true);
                let this = self.clone();
                tokio::spawn(async move {
                    let _running = Refetching(&this.refetching);
                    this.fetch_now().await;
                });
            }
            if *running.borrow_and_update() {
                let _ = tokio::time::timeout(REFETCH_WAIT, running.wait_for(|on| !*on)).await;
            }
        }
        match self.keys.load().find(kid) {
            Some(k) => Ok(k),
            // No key yet: the provider is down, or its first fetch is still under way.
            None if self.keys.load().is_empty()
                && (self.down.load(std::sync::atomic::Ordering::Relaxed) || !*self.attempted.borrow()) =>
            {
                Err(Failure::Unavailable)
            }
            None => Err(Failure::Invalid),
        }
    }

    async fn fetch_now(&self) {
        let result = self.load().await;
        match result {
            Ok(set) => {
                // Said once, not at every refresh: an identity provider may
                // well publish keys for algorithms this provider leaves out.
                if !set.skipped.is_empty() && set.skipped != self.keys.load().skipped {
                    let skipped = set.skipped.join("; ");
                    tracing::warn!(provider = %self.provider, %skipped, "JWKS keys skipped as unusable");
                }
                tracing::info!(provider = %self.provider, keys = set.all.len(), "JWKS loaded");
                self.keys.store(Arc::new(set));
                self.down.store(false, std::sync::atomic::Ordering::Relaxed);
            }
            Err(e) => {
                // Keep the last good key set.
                tracing::warn!(provider = %self.provider, error = %e, "JWKS fetch failed; keeping the last key set");
                self.down.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        // Last: a request woken by this must find the keys (or `down`) set;
        // woken before, it saw neither and refused a valid token with 401.
        self.attempted.send_replace(true);
    }

    async fn load(&self) -> Result<KeySet, String> {
        let url = match &self.location {
            Location::Url(u) => u.clone(),
            Location::Discovery(issuer) => {
                let doc = self
                    .fetcher
                    .get_json(&format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/')))
                    .await?;
                // OpenID Connect Discovery §4.3: the document must name the
                // issuer it was fetched for, exactly (a mix-up otherwise).
                let named = doc.get("issuer").and_then(|v| v.as_str()).unwrap_or_default();
                if named != issuer.as_str() {
                    return Err(format!("discovery document names issuer `{named}`, not `{issuer}`"));
                }
                let uri = doc.get("jwks_uri").and_then(|v| v.as_str()).ok_or("discovery document has no jwks_uri")?;
                discovered_jwks_uri(issuer, uri)?.to_string()
            }
        };
        let set = KeySet::from_jwks(&self.fetcher.get_json(&url).await?, &self.algorithms, Source::Fetched)?;
        // An empty or unusable answer is an identity provider's (or a
        // cache's) mistake, not a revocation of every key: keep the last
        // good set, as a failed fetch does (Envoy does the same).
        if set.is_empty() {
            let skipped = match set.skipped.is_empty() {
                true => String::new(),
                false => format!(" (skipped: {})", set.skipped.join("; ")),
            };
            return Err(format!("the JWKS holds no key the gateway can use{skipped}"));
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::{KeySet, Source};
    use base64::Engine;
    use jsonwebtoken::Algorithm;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A P-256 key (its point unchecked until a signature is) with `extra` fields.
    fn ec(kid: &str, extra: serde_json::Value) -> serde_json::Value {
        let mut k =
            serde_json::json!({ "kty": "EC", "crv": "P-256", "x": b64(&[1; 32]), "y": b64(&[2; 32]), "kid": kid });
        k.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        k
    }

    fn kids(set: &KeySet) -> Vec<&str> {
        let mut kids: Vec<&str> = set.by_kid.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }

    #[test]
    fn a_discovered_jwks_uri_is_https_when_the_issuer_is() {
        use super::discovered_jwks_uri as uri;
        assert_eq!(uri("https://idp.example", "https://idp.example/keys"), Ok("https://idp.example/keys"));
        assert_eq!(uri("https://idp.example", "HTTPS://keys.example/k"), Ok("HTTPS://keys.example/k"));
        assert_eq!(uri("http://127.0.0.1:9", "http://127.0.0.1:9/keys"), Ok("http://127.0.0.1:9/keys"));
        let refused = uri("https://idp.example", "http://idp.example/keys").unwrap_err();
        assert!(refused.contains("is not https"), "{refused}");
    }

    /// Keys for encryption (`use: enc`, `key_ops` without `verify`) are
    /// left out of the set that checks signatures.
    #[test]
    fn only_keys_for_signatures_are_kept() {
        let doc = serde_json::json!({ "keys": [
            ec("plain", serde_json::json!({})),
            ec("sig", serde_json::json!({ "use": "sig" })),
            ec("enc", serde_json::json!({ "use": "enc" })),
            ec("other", serde_json::json!({ "use": "tls" })),
            ec("encrypt-only", serde_json::json!({ "key_ops": ["encrypt"] })),
            ec("verify", serde_json::json!({ "key_ops": ["sign", "verify"] })),
        ]});
        let set = KeySet::from_jwks(&doc, &[Algorithm::ES256], Source::Fetched).unwrap();
        assert_eq!(kids(&set), ["plain", "sig", "verify"]);
        assert_eq!(set.all.len(), 3);
        // A key with a field it cannot read is skipped alone.
        let doc = serde_json::json!({ "keys": [
            ec("bad-ops", serde_json::json!({ "key_ops": "verify" })),
            ec("bad-use", serde_json::json!({ "use": ["sig"] })),
            ec("good", serde_json::json!({})),
        ]});
        let set = KeySet::from_jwks(&doc, &[Algorithm::ES256], Source::Fetched).unwrap();
        assert_eq!(kids(&set), ["good"]);
        assert_eq!(set.skipped.len(), 2, "{:?}", set.skipped);
        assert!(KeySet::from_jwks(&serde_json::json!({ "key": [] }), &[Algorithm::ES256], Source::Fetched).is_err());
    }

    /// Keys no token of the provider could be verified with are skipped
    /// before the set is judged, each named with why: a set of only such
    /// keys is empty (and kept out, as an empty answer is), not "loaded".
    #[test]
    fn keys_the_provider_cannot_use_are_skipped_and_said() {
        // A modulus of `bits` bits (its top bit set), with the usual exponent.
        let rsa = |kid: &str, bits: usize| {
            let mut n = vec![0xff; bits / 8];
            n.insert(0, 0); // a leading zero byte, as DER integers carry, is no bit
            serde_json::json!({ "kty": "RSA", "kid": kid, "n": b64(&n), "e": "AQAB" })
        };
        let oct =
            serde_json::json!({ "kty": "oct", "kid": "hmac", "k": b64(b"a-secret-of-at-least-thirty-two-bytes!!") });
        let p384 = ec("p384", serde_json::json!({ "crv": "P-384", "x": b64(&[1; 48]), "y": b64(&[2; 48]) }));
        let ed = serde_json::json!({ "kty": "OKP", "crv": "Ed25519", "x": b64(&[3; 32]), "kid": "ed" });
        let doc = serde_json::json!({ "keys": [
            rsa("rsa-1024", 1024), rsa("rsa-2040", 2040), oct, p384, ed, rsa("rsa-2048", 2048),
            ec("p256", serde_json::json!({})), { "kty": "RSA", "n": b64(&[0x7f; 128]), "e": "AQAB" },
        ]});
        let set = KeySet::from_jwks(&doc, &[Algorithm::RS256, Algorithm::ES256], Source::Fetched).unwrap();
        assert_eq!(kids(&set), ["p256", "rsa-2048"]);
        let said = set.skipped.join("\n");
        for why in [
            "kid `rsa-1024`: an RSA key of 1024 bits (at least 2048)",
            "kid `rsa-2040`: an RSA key of 2040 bits",
            "kid `hmac`: a symmetric (`oct`) key",
            "kid `p384`: fits none of the provider's algorithms (RS256, ES256)",
            "kid `ed`: fits none",
            "key 7 (no kid): an RSA key of 1023 bits",
        ] {
            assert!(said.contains(why), "no `{why}` in:\n{said}");
        }
        assert_eq!(set.skipped.len(), 6, "{said}");
        // The same keys for a provider of other algorithms.
        let set =
            KeySet::from_jwks(&doc, &[Algorithm::EdDSA, Algorithm::ES384, Algorithm::HS256], Source::Fetched).unwrap();
        assert_eq!(kids(&set), ["ed", "p384"]);
        let set = KeySet::from_jwks(&doc, &[Algorithm::PS512], Source::Fetched).unwrap();
        assert_eq!(kids(&set), ["rsa-2048"]);
        // Only unusable keys: an empty set, which the gateway does not take.
        let unusable = serde_json::json!({ "keys": [rsa("rsa-1024", 1024), rsa("rsa-2048", 2048)] });
        let set = KeySet::from_jwks(&unusable, &[Algorithm::ES256], Source::Fetched).unwrap();
        assert!(set.is_empty());
        assert_eq!(set.skipped.len(), 2);
    }

    /// A `jwks_file`'s symmetric key verifies HS* when it is as long as a
    /// `secret` must be; a fetched set's never does.
    #[test]
    fn a_files_symmetric_keys_are_held_to_a_secrets_length() {
        let k = |bytes: &[u8]| serde_json::json!({ "kty": "oct", "kid": "h", "k": b64(bytes) });
        let doc = |key| serde_json::json!({ "keys": [key] });
        let short = KeySet::from_jwks(&doc(k(b"secret")), &[Algorithm::HS256], Source::File).unwrap();
        assert!(short.is_empty());
        assert_eq!(short.skipped, ["kid `h`: a symmetric key of 6 bytes (at least 32)"]);
        let long = k(b"a-secret-of-at-least-thirty-two-bytes!!");
        assert!(!KeySet::from_jwks(&doc(long.clone()), &[Algorithm::HS256], Source::File).unwrap().is_empty());
        assert!(KeySet::from_jwks(&doc(long), &[Algorithm::HS256], Source::Fetched).unwrap().is_empty());
    }

    /// A key that names its algorithm (RFC 7517 §4.4) is for that one only:
    /// skipped when the provider does not take it, or when it names an
    /// encryption algorithm; kept, it verifies tokens of that algorithm
    /// only (a P-256 key marked ES384 verified ES256 tokens).
    #[test]
    fn a_keys_own_alg_is_the_only_one_it_verifies() {
        let doc = serde_json::json!({ "keys": [
            ec("plain", serde_json::json!({})),
            ec("marked", serde_json::json!({ "alg": "ES256" })),
            ec("other", serde_json::json!({ "alg": "ES384" })),
            ec("enc", serde_json::json!({ "alg": "RSA-OAEP-256" })),
            // A name outside the registry: the key's type decides.
            ec("unknown", serde_json::json!({ "alg": "X-private" })),
            // Registered names the gateway does not verify: for no token it takes.
            ec("k1", serde_json::json!({ "alg": "ES256K" })),
            ec("p521", serde_json::json!({ "alg": "ES512" })),
            ec("ed448", serde_json::json!({ "alg": "Ed448" })),
            ec("mldsa", serde_json::json!({ "alg": "ML-DSA-44" })),
            ec("rs1", serde_json::json!({ "alg": "RS1" })),
            ec("esp256", serde_json::json!({ "alg": "ESP256" })),
            ec("esp384", serde_json::json!({ "alg": "ESP384" })),
            ec("ed25519", serde_json::json!({ "alg": "Ed25519" })),
            { "kty": "OKP", "crv": "Ed25519", "x": b64(&[3; 32]), "kid": "okp", "alg": "Ed25519" },
            // Encryption names the library does not know are still encryption.
            ec("ecdh", serde_json::json!({ "alg": "ECDH-ES+A128KW" })),
            ec("wrap", serde_json::json!({ "alg": "A256GCMKW" })),
            ec("dir", serde_json::json!({ "alg": "dir" })),
            ec("oaep384", serde_json::json!({ "alg": "RSA-OAEP-384" })),
            // An algorithm of another key type: it verifies nothing.
            ec("misfit", serde_json::json!({ "alg": "RS256" })),
        ] });
        let set =
            KeySet::from_jwks(&doc, &[Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA], Source::Fetched).unwrap();
        assert_eq!(kids(&set), ["esp256", "marked", "okp", "plain", "unknown"]);
        assert_eq!(
            set.skipped,
            [
                "kid `other`: a key for ES384, not one of the provider's algorithms",
                "kid `enc`: a key for encryption (`alg` RSA-OAEP-256), not for signatures",
                "kid `k1`: a key for `ES256K`, an algorithm the gateway does not verify",
                "kid `p521`: a key for `ES512`, an algorithm the gateway does not verify",
                "kid `ed448`: a key for `Ed448`, an algorithm the gateway does not verify",
                "kid `mldsa`: a key for `ML-DSA-44`, an algorithm the gateway does not verify",
                "kid `rs1`: a key for `RS1`, an algorithm the gateway does not verify",
                "kid `esp384`: marked `alg` ESP384, which does not fit a key of its type",
                "kid `ed25519`: marked `alg` Ed25519, which does not fit a key of its type",
                "kid `ecdh`: a key for encryption (`alg` ECDH-ES+A128KW), not for signatures",
                "kid `wrap`: a key for encryption (`alg` A256GCMKW), not for signatures",
                "kid `dir`: a key for encryption (`alg` dir), not for signatures",
                "kid `oaep384`: a key for encryption (`alg` RSA-OAEP-384), not for signatures",
                "kid `misfit`: marked `alg` RS256, which does not fit a key of its type",
            ]
        );
        let marked = &set.by_kid["marked"][0];
        assert!(marked.verifies(Algorithm::ES256));
        assert!(!marked.verifies(Algorithm::ES384));
        assert!(set.by_kid["plain"][0].verifies(Algorithm::ES256));
    }
}
