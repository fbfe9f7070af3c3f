//! HTTP Basic authentication against bcrypt or argon2 hashes. Unknown users
//! cost the same as known ones (a dummy hash is checked), successful checks
//! are cached briefly (so bcrypt cannot be turned into a CPU denial of
//! service by a valid user), and the hashing runs off the async workers,
//! at most one check per core at once (`Checks`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine;
use http::{header, request};

use super::cache::{TtlCache, key_of};
use super::config::BasicConfig;
use super::{Consumers, Failure, Identity};
use crate::config::FieldErrors;
use crate::policy::compile::CompileCtx;

#[derive(Debug)]
pub struct Basic {
    name: Arc<str>,
    realm: String,
    users: HashMap<String, String>,
    consumers: Arc<Consumers>,
    verified: TtlCache<()>,
    /// Credentials that just failed: the same wrong password again (a
    /// client with a stale one, retrying) is refused without a hash.
    rejected: TtlCache<()>,
    cache_ttl: Duration,
    /// Checked for unknown users, at the cost of the real hashes, so that
    /// timing does not tell which user names exist.
    dummy_hash: String,
}

impl Basic {
    pub fn compile(cfg: &BasicConfig, cx: &mut CompileCtx<'_>) -> Result<Basic, FieldErrors> {
        let (name, loaded, consumers): (Arc<str>, _, _) = (cx.name.into(), cx.loaded, super::consumers_of(cx));
        let mut users = HashMap::new();
        let mut errors = FieldErrors::new();
        if let Some(file) = &cfg.htpasswd {
            let path = loaded.resolve_file(file);
            match crate::config::read_text(&path) {
                Ok(text) => {
                    for (n, line) in text.lines().enumerate() {
                        let line = line.trim();
                        if line.is_empty() || line.starts_with('#') {
                            continue;
                        }
                        match line.split_once(':') {
                            // An empty user name: `Basic :password` would log in
                            // as nobody in particular (a subject of "").
                            Some(("", _)) => errors.push((
                                "basic.htpasswd".into(),
                                format!("{}:{}: a user name is empty", path.display(), n + 1),
                            )),
                            Some((u, h)) if is_supported(h) => {
                                users.insert(u.to_string(), h.to_string());
                            }
                            _ => errors.push((
                                "basic.htpasswd".into(),
                                format!(
                                    "{}:{}: only bcrypt (`$2y$`) and argon2 hashes are supported",
                                    path.display(),
                                    n + 1
                                ),
                            )),
                        }
                    }
                }
                Err(e) => errors.push(("basic.htpasswd".into(), format!("cannot read `{}`: {e}", path.display()))),
            }
        }
        for (u, h) in &cfg.users {
            if u.is_empty() {
                errors.push(("basic.users".into(), "a user name is empty".into()));
            }
            if !is_supported(h) {
                errors
                    .push((format!("basic.users.{u}"), "not a bcrypt (`$2y$…`) or argon2 (`$argon2id$…`) hash".into()));
            }
            users.insert(u.clone(), h.clone());
        }
        // The realm is a quoted-string in the challenge: `"` and `\` would
        // end or escape it (`realm="Ops\"` never closes), and a client
        // shows it to people (printable ASCII only).
        if let Some(c) = cfg.realm.chars().find(|c| !(' '..='~').contains(c) || *c == '"' || *c == '\\') {
            errors.push((
                "basic.realm".into(),
                format!("`{}` cannot be in a realm: use printable ASCII without `\"` and `\\`", c.escape_debug()),
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        // Same algorithm and cost as the configured hashes (the first bcrypt one).
        let cost = users
            .values()
            .find_map(|h| h.strip_prefix("$2").and_then(|r| r.get(2..4)).and_then(|c| c.parse::<u32>().ok()))
            .unwrap_or(bcrypt::DEFAULT_COST);
        let dummy_hash = bcrypt::hash("portcullis-unknown-user", cost).unwrap_or_default();
        Ok(Basic {
            name,
            realm: cfg.realm.clone(),
            users,
            consumers,
            verified: TtlCache::new(10_000),
            rejected: TtlCache::new(10_000),
            cache_ttl: cfg.cache_ttl.0,
            dummy_hash,
        })
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    pub async fn authenticate(&self, req: &mut request::Parts) -> Result<Arc<Identity>, Failure> {
        let (user, password) = credentials(req).ok_or(Failure::Invalid)?;
        let key = key_of(&[user.as_bytes(), password.as_bytes()]);
        if self.verified.get(&key).is_none() {
            if self.rejected.get(&key).is_some() {
                return Err(Failure::Invalid);
            }
            let hash = self.users.get(&user).cloned();
            let known = hash.is_some();
            let hash = hash.unwrap_or_else(|| self.dummy_hash.clone());
            let ok = checks().verify(password.clone(), hash).await?;
            if !(ok && known) {
                self.rejected.insert(key, (), REJECTED_TTL);
                return Err(Failure::Invalid);
            }
            self.verified.insert(key, (), self.cache_ttl);
        }
        req.headers.remove(header::AUTHORIZATION);
        let consumer = self.consumers.by_basic_user.get(&user).cloned();
        Ok(Arc::new(Identity {
            provider: self.name.clone(),
            scopes: consumer.as_ref().map(|c| c.scopes.clone()).unwrap_or_default(),
            subject: user,
            consumer,
            claims: None,
            bearer: false,
            rendered: Default::default(),
        }))
    }
}

fn is_supported(hash: &str) -> bool {
    hash.starts_with("$2") || hash.starts_with("$argon2")
}

/// How long a failed user and password are refused without a hash.
const REJECTED_TTL: Duration = Duration::from_secs(10);

/// Checks waiting for a core, per core, before more are refused (503).
const WAITING_PER_CORE: usize = 32;

/// The password checks of the whole process. A bcrypt check at cost 10
/// takes ~50 ms of a core by design; unbounded, a flood of wrong passwords
/// filled tokio's blocking pool (hundreds of threads) and took the cores
/// from the async workers: every route of every listener stalled. So at
/// most one check per core runs at once, a bounded number wait, and past
/// that a request is refused at once with 503 rather than queued.
struct Checks {
    running: tokio::sync::Semaphore,
    waiting: AtomicUsize,
    max_waiting: usize,
}

fn checks() -> &'static Checks {
    static CHECKS: OnceLock<Checks> = OnceLock::new();
    CHECKS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Checks::new(cores, cores * WAITING_PER_CORE)
    })
}

/// Counted in `Checks::waiting` while it lives (a request dropped while
/// waiting leaves the count too).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Checks {
    fn new(running: usize, max_waiting: usize) -> Checks {
        Checks { running: tokio::sync::Semaphore::new(running), waiting: AtomicUsize::new(0), max_waiting }
    }

    async fn verify(&'static self, password: String, hash: String) -> Result<bool, Failure> {
        let waiting = Waiting(&self.waiting);
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= self.max_waiting {
            return Err(Failure::Unavailable);
        }
        let Ok(running) = self.running.acquire().await else { return Err(Failure::Unavailable) };
        drop(waiting);
        // The place is held by the check itself: a request dropped
        // meanwhile does not free it before the hash is done.
        let check = move || {
            let _running = running;
            verify(&password, &hash)
        };
        Ok(tokio::task::spawn_blocking(check).await.unwrap_or(false))
    }
}

fn verify(password: &str, hash: &str) -> bool {
    if hash.starts_with("$argon2") {
        use argon2::PasswordVerifier;
        return argon2::PasswordHash::new(hash)
            .is_ok_and(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok());
    }
    bcrypt::verify(password, hash).unwrap_or(false)
}

/// Whether the request offers a Basic credential at all (decodable or not:
/// one that is not is an invalid credential, not a missing one).
pub(super) fn offered(req: &request::Parts) -> bool {
    req.headers
        .get(header::AUTHORIZATION)
        .is_some_and(|v| super::scheme_of(v.as_bytes()).0.eq_ignore_ascii_case(b"basic"))
}

/// Base64 with or without its `=` padding: clients that leave it off are
/// let in by NGINX and Apache, and RFC 7617 names no padding rule.
const BASE64_PADDING_OPTIONAL: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// `Authorization: Basic base64(user:password)`.
pub(super) fn credentials(req: &request::Parts) -> Option<(String, String)> {
    let v = req.headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, b64) = super::scheme_of(v);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let raw = BASE64_PADDING_OPTIONAL.decode(b64.trim_ascii()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offering(value: &str) -> request::Parts {
        http::Request::builder().header("authorization", value).body(()).unwrap().into_parts().0
    }

    #[test]
    fn credentials_decode_with_or_without_padding() {
        let alice = Some(("alice".to_string(), "alicepw".to_string()));
        assert_eq!(credentials(&offering("Basic YWxpY2U6YWxpY2Vwdw==")), alice);
        assert_eq!(credentials(&offering("Basic YWxpY2U6YWxpY2Vwdw")), alice);
        assert_eq!(credentials(&offering("basic  YWxpY2U6YWxpY2Vwdw== ")), alice);
        // Not base64 (a stray `=` inside, a URL-safe alphabet byte): no credential.
        assert_eq!(credentials(&offering("Basic YWxp=Y2U6YWxpY2Vwdw")), None);
        assert_eq!(credentials(&offering("Basic YWxpY2U6YWxpY2Vwdw-_")), None);
    }

    #[tokio::test]
    async fn password_checks_run_one_per_place_and_refuse_past_the_waiting_room() {
        let checks: &'static Checks = Box::leak(Box::new(Checks::new(1, 1)));
        let hash = bcrypt::hash("right", 4).unwrap();
        // The one place taken: one check may wait, the next is refused at once.
        let held = checks.running.acquire().await.unwrap();
        let waiter = tokio::spawn(checks.verify("right".into(), hash.clone()));
        while checks.waiting.load(Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(checks.verify("x".into(), hash.clone()).await, Err(Failure::Unavailable)));
        drop(held);
        assert!(matches!(waiter.await.unwrap(), Ok(true)));
        assert_eq!(checks.waiting.load(Ordering::Relaxed), 0);
        assert!(matches!(checks.verify("wrong".into(), hash).await, Ok(false)));
    }
}
