//! Where JWT verification keys come from: fixed keys (secret, PEM file,
//! JWKS file) or a JWKS URL (directly or by OpenID discovery) that is
//! fetched at start, refreshed in the background, and refetched (at most
//! every 10 s) when a token names an unknown `kid`. When the endpoint is
//! down, the last good key set keeps serving.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::Jwk;
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
pub type Candidates = Arc<[Arc<DecodingKey>]>;

/// A set of keys, by `kid` when they have one.
#[derive(Default)]
pub struct KeySet {
    by_kid: HashMap<String, Candidates>,
    all: Candidates,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet").field("kids", &self.by_kid.keys().collect::<Vec<_>>()).finish()
    }
}

impl KeySet {
    pub fn single(key: DecodingKey) -> KeySet {
        KeySet { by_kid: HashMap::new(), all: Arc::new([Arc::new(key)]) }
    }

    /// Keys of a JWKS document; keys this library cannot use are skipped,
    /// one at a time (a key with a field it cannot read, a `use` written as
    /// a list, does not take the set's other keys with it).
    pub fn from_jwks(doc: &serde_json::Value) -> Result<KeySet, String> {
        let listed = doc.get("keys").and_then(|k| k.as_array()).ok_or("not a JWKS: no `keys` list")?;
        let keys: Vec<Jwk> = listed.iter().filter_map(|k| serde_json::from_value(k.clone()).ok()).collect();
        let mut by_kid: HashMap<String, Vec<Arc<DecodingKey>>> = HashMap::new();
        let mut all = Vec::new();
        use jsonwebtoken::jwk::{KeyOperations, PublicKeyUse};
        for jwk in &keys {
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
            let Ok(key) = DecodingKey::from_jwk(jwk) else { continue };
            let key = Arc::new(key);
            if let Some(kid) = &jwk.common.key_id {
                by_kid.entry(kid.clone()).or_default().push(key.clone());
            }
            all.push(key);
        }
        let by_kid = by_kid.into_iter().map(|(kid, keys)| (kid, keys.into())).collect();
        Ok(KeySet { by_kid, all: all.into() })
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

    /// The family of a single fixed key.
    pub fn family(&self) -> Option<jsonwebtoken::AlgorithmFamily> {
        (self.all.len() == 1).then(|| self.all[0].family())
    }
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
    /// What identifies the source: a reload with the same keeps the keys.
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
    ) -> RemoteJwks {
        RemoteJwks {
            identity: (location.clone(), refresh, ca),
            provider,
            location,
            fetcher,
            refresh,
            keys: ArcSwap::from_pointee(KeySet::default()),
            last_refetch: Mutex::new(None),
            down: false.into(),
            attempted: tokio::sync::watch::Sender::new(false),
            refetching: tokio::sync::watch::Sender::new(false),
            started: false.into(),
        }
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
                doc.get("jwks_uri").and_then(|v| v.as_str()).ok_or("discovery document has no jwks_uri")?.to_string()
            }
        };
        let set = KeySet::from_jwks(&self.fetcher.get_json(&url).await?)?;
        // An empty or unusable answer is an identity provider's (or a
        // cache's) mistake, not a revocation of every key: keep the last
        // good set, as a failed fetch does (Envoy does the same).
        if set.is_empty() {
            return Err("the JWKS holds no key the gateway can use".into());
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::KeySet;

    /// Keys for encryption (`use: enc`, `key_ops` without `verify`) are
    /// left out of the set that checks signatures.
    #[test]
    fn only_keys_for_signatures_are_kept() {
        let key = |kid: &str, extra: serde_json::Value| {
            let mut k =
                serde_json::json!({ "kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTMyYg", "kid": kid });
            k.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            k
        };
        let doc = serde_json::json!({ "keys": [
            key("plain", serde_json::json!({})),
            key("sig", serde_json::json!({ "use": "sig" })),
            key("enc", serde_json::json!({ "use": "enc" })),
            key("other", serde_json::json!({ "use": "tls" })),
            key("encrypt-only", serde_json::json!({ "key_ops": ["encrypt"] })),
            key("verify", serde_json::json!({ "key_ops": ["sign", "verify"] })),
        ]});
        let set = KeySet::from_jwks(&doc).unwrap();
        let mut kids: Vec<&str> = set.by_kid.keys().map(String::as_str).collect();
        kids.sort_unstable();
        assert_eq!(kids, ["plain", "sig", "verify"]);
        assert_eq!(set.all.len(), 3);
        // A key with a field it cannot read is skipped alone.
        let doc = serde_json::json!({ "keys": [
            key("bad-ops", serde_json::json!({ "key_ops": "verify" })),
            key("bad-use", serde_json::json!({ "use": ["sig"] })),
            key("good", serde_json::json!({})),
        ]});
        let set = KeySet::from_jwks(&doc).unwrap();
        assert_eq!(set.by_kid.keys().collect::<Vec<_>>(), ["good"]);
        assert!(KeySet::from_jwks(&serde_json::json!({ "key": [] })).is_err());
    }
}
