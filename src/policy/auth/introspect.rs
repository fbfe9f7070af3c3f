//! OAuth 2.0 token introspection (RFC 7662): ask the authorization server
//! whether a bearer token is active. Active answers are cached until `exp`
//! (capped by `max_ttl`), inactive ones for `negative_ttl`; when the server
//! is down the request gets 503 (or 401), never a silent pass.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use base64::Engine;
use http::request;

use super::cache::{Key, TtlCache, key_of};
use super::config::{ClientAuthMethod, IntrospectionConfig, OnError};
use super::{Failure, Identity, bearer_token, token_text};
use crate::config::FieldErrors;
use crate::http::fetch::{Fetcher, form_encode};
use crate::policy::clock::WallClock;
use crate::policy::compile::CompileCtx;

/// How far ahead of the gateway's clock an answer's `nbf` may be (a
/// JWT's default `leeway`).
const NBF_LEEWAY_SECS: u64 = 30;

#[derive(Debug)]
pub struct Introspection {
    name: Arc<str>,
    endpoint: String,
    client_id: String,
    client_secret: String,
    client_auth: ClientAuthMethod,
    fetcher: Fetcher,
    max_ttl: Duration,
    negative_ttl: Duration,
    on_error: OnError,
    /// `None` caches an inactive token.
    cache: TtlCache<Option<Arc<Identity>>>,
    /// Reads an answer's `exp` against this.
    clock: WallClock,
    /// Calls to the endpoint under way, at most `MAX_CALLS`: one per request
    /// with an uncached token, without it (20,000 sockets for a flood of
    /// bogus tokens, and the file descriptors gone).
    calls: tokio::sync::Semaphore,
    /// How long a call may wait for its turn: the endpoint's `timeout`.
    timeout: Duration,
    /// The lookups under way, by token: a request whose token is being
    /// looked up waits for that answer instead of asking again (a burst of
    /// one new token's requests made one call each, Envoy's ext_authz
    /// too). Weak: a lookup whose requests all left is gone with them.
    lookups: std::sync::Mutex<HashMap<Key, Weak<Lookup>>>,
}

/// One answer being fetched: the identity, `None` for an inactive token,
/// or the failure every waiting request gets.
type Lookup = tokio::sync::OnceCell<Result<Option<Arc<Identity>>, Failure>>;

/// Distinct tokens being looked up at once beyond which a new one is
/// looked up alone (a flood of bogus tokens keeps the map this size).
const MAX_LOOKUPS: usize = 4 * MAX_CALLS;

/// Calls to one introspection endpoint under way at once (Envoy's
/// ext_authz cluster allows 1,024 requests by default; an identity
/// provider answers in milliseconds, so this is plenty).
const MAX_CALLS: usize = 64;

impl Introspection {
    pub fn compile(cfg: &IntrospectionConfig, cx: &mut CompileCtx<'_>) -> Result<Introspection, FieldErrors> {
        let (name, loaded): (Arc<str>, _) = (cx.name.into(), cx.loaded);
        if let Some(fault) = crate::http::fetch_url_fault(&cfg.endpoint) {
            return Err(FieldErrors::one("introspection.endpoint", fault));
        }
        // Read from the environment, it is empty when the variable is set to
        // nothing: every call would be refused (`invalid_client`), every
        // token 503 or 401, and the cause only in the server's logs.
        if cfg.client_secret.trim().is_empty() {
            return Err(FieldErrors::one(
                "introspection.client_secret",
                "the client secret is empty or blank (a `${VAR}` set to nothing?): set the secret the authorization server \
                 gave the gateway's client",
            ));
        }
        let ca = cfg.ca.as_ref().map(|f| loaded.resolve_file(f));
        let fetcher =
            Fetcher::new(ca.as_deref(), cfg.timeout.0).map_err(|e| FieldErrors::one("introspection.ca", e))?;
        Ok(Introspection {
            name,
            endpoint: cfg.endpoint.clone(),
            client_id: cfg.client_id.clone(),
            client_secret: cfg.client_secret.clone(),
            client_auth: cfg.client_auth,
            fetcher,
            max_ttl: cfg.max_ttl.0,
            negative_ttl: cfg.negative_ttl.0,
            on_error: cfg.on_error,
            cache: TtlCache::new(100_000),
            clock: WallClock::system(),
            calls: tokio::sync::Semaphore::new(MAX_CALLS),
            timeout: cfg.timeout.0,
            lookups: Default::default(),
        })
    }

    #[cfg(test)]
    pub fn set_clock(&mut self, clock: WallClock) {
        self.clock = clock;
    }

    pub async fn authenticate(&self, req: &mut request::Parts) -> Result<Arc<Identity>, Failure> {
        let token = bearer_token(req).and_then(token_text).ok_or(Failure::Invalid)?;
        if token.len() > 16 << 10 {
            return Err(Failure::Invalid);
        }
        let key = key_of(&[token.as_bytes()]);
        let cached = match self.cache.get(&key) {
            Some(c) => c,
            None => match self.joined(key) {
                Some(lookup) => {
                    let answer = lookup.get_or_init(|| self.look_up(key, token)).await.clone();
                    self.leave(key, &lookup);
                    answer?
                }
                None => self.look_up(key, token).await?,
            },
        };
        cached.ok_or(Failure::Invalid)
    }

    /// The lookup of `key` under way, or a new one; `None` when too many
    /// distinct tokens are being looked up to keep track of one more.
    fn joined(&self, key: Key) -> Option<Arc<Lookup>> {
        let mut lookups = self.lookups.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(lookup) = lookups.get(&key).and_then(Weak::upgrade) {
            return Some(lookup);
        }
        if lookups.len() >= MAX_LOOKUPS {
            lookups.retain(|_, l| l.strong_count() > 0);
            if lookups.len() >= MAX_LOOKUPS {
                return None;
            }
        }
        let lookup = Arc::new(Lookup::new());
        lookups.insert(key, Arc::downgrade(&lookup));
        Some(lookup)
    }

    /// Forgets a finished lookup (its answer is in the cache now, or was a
    /// failure the next request asks again after).
    fn leave(&self, key: Key, lookup: &Arc<Lookup>) {
        let mut lookups = self.lookups.lock().unwrap_or_else(|e| e.into_inner());
        if lookups.get(&key).is_some_and(|l| std::ptr::eq(l.as_ptr(), Arc::as_ptr(lookup))) {
            lookups.remove(&key);
        }
    }

    /// Asks the endpoint about `token` and caches the answer.
    async fn look_up(&self, key: Key, token: &str) -> Result<Option<Arc<Identity>>, Failure> {
        let answer = self.ask(token).await.map_err(|e| {
            tracing::warn!(provider = %self.name, error = %e, "token introspection failed");
            match self.on_error {
                OnError::Unavailable => Failure::Unavailable,
                OnError::Unauthorized => Failure::Invalid,
            }
        })?;
        Ok(match answer {
            Some((id, ttl)) => {
                let id = Arc::new(id);
                self.cache.insert(key, Some(id.clone()), ttl.min(self.max_ttl));
                Some(id)
            }
            None => {
                self.cache.insert(key, None, self.negative_ttl);
                None
            }
        })
    }

    /// `Ok(None)`: the server says the token is not active.
    async fn ask(&self, token: &str) -> Result<Option<(Identity, Duration)>, String> {
        let _turn = match tokio::time::timeout(self.timeout, self.calls.acquire()).await {
            Ok(Ok(permit)) => permit,
            _ => return Err(format!("{MAX_CALLS} calls to the endpoint under way did not end within its timeout")),
        };
        let mut form = format!("token={}&token_type_hint=access_token", form_encode(token));
        let auth = match self.client_auth {
            ClientAuthMethod::Basic => {
                let pair = format!("{}:{}", form_encode(&self.client_id), form_encode(&self.client_secret));
                Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair)))
            }
            ClientAuthMethod::Form => {
                form.push_str(&format!(
                    "&client_id={}&client_secret={}",
                    form_encode(&self.client_id),
                    form_encode(&self.client_secret)
                ));
                None
            }
        };
        let (status, body) = self.fetcher.post_form(&self.endpoint, form, auth.as_deref()).await?;
        if !status.is_success() {
            return Err(format!("the endpoint answered {status}"));
        }
        // A member named twice (`"active":false,"active":true`) is refused,
        // as in a JWT: readers disagree on which one counts.
        let text = std::str::from_utf8(&body).map_err(|_| "not UTF-8".to_string())?;
        let doc = crate::config::strict_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        Ok(self.read_answer(doc))
    }

    /// An RFC 7662 answer: the identity and how long it may be cached, or
    /// `None` for a token that is not active (or whose `exp` has passed).
    pub(super) fn read_answer(&self, doc: serde_json::Value) -> Option<(Identity, Duration)> {
        if doc.get("active").and_then(|v| v.as_bool()) != Some(true) {
            return None;
        }
        let now = self.clock.unix_secs();
        // A NumericDate may be a decimal (RFC 7662 §2.2, RFC 7519 §2),
        // rounded down here (the token ends no later); an `exp` that is no
        // date at all makes the answer unusable, not endless.
        let ttl = match doc.get("exp").map(|v| super::jwt::numeric_date(v, f64::floor)) {
            Some(None) => return None,
            Some(Some(exp)) if exp <= now => return None,
            Some(Some(exp)) => Duration::from_secs(exp - now),
            None => self.max_ttl,
        };
        // Not valid before `nbf` (RFC 7662 §2.2): an authorization server
        // that says `active` of a token not valid yet is answered as a JWT
        // would be, with a JWT's default leeway for the two clocks.
        match doc.get("nbf").map(|v| super::jwt::numeric_date(v, f64::ceil)) {
            Some(None) => return None,
            Some(Some(nbf)) if nbf > now.saturating_add(NBF_LEEWAY_SECS) => return None,
            _ => {}
        }
        let field = |k: &str| doc.get(k).and_then(|v| v.as_str()).map(String::from);
        let subject = field("sub").or_else(|| field("username")).or_else(|| field("client_id")).unwrap_or_default();
        let scopes = super::scopes_of(doc.get("scope").filter(|v| v.is_string()));
        let identity = Identity {
            provider: self.name.clone(),
            subject,
            consumer: None,
            scopes,
            claims: Some(Arc::new(doc)),
            bearer: true,
            rendered: Default::default(),
        };
        Some((identity, ttl))
    }
}
