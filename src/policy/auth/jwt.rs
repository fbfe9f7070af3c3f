//! JWT bearer tokens. Each provider has an explicit algorithm allow-list;
//! the key's type must match the algorithm (jsonwebtoken refuses HS256
//! "signed" with an RSA public key), `alg: none` does not exist here, and
//! verified tokens are cached until `exp` (`cache::TokenCache`) so that a
//! hot token costs a hash lookup, not a signature check.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{header, request};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::api_key::{query_param, remove_query_param};
use super::cache::TokenCache;
use super::config::JwtConfig;
use super::jwks::{KeySet, Keys, Location, RemoteJwks};
use super::{Failure, Identity, Provider, bearer_token, token_text};
use crate::config::FieldErrors;
use crate::http::fetch::Fetcher;
use crate::policy::clock::WallClock;
use crate::policy::compile::CompileCtx;

/// Verified tokens kept at once (per provider), and their bytes at most.
const CACHE_CAPACITY: usize = 100_000;
const CACHE_BYTES: usize = 64 << 20;
/// A cached verification is re-done at least this often.
const MAX_CACHE_TTL: Duration = Duration::from_secs(3600);

/// What the cache says about a request's token.
pub enum Cached {
    /// The request has no token for this provider.
    Absent,
    /// Decided without verifying (a cached token, or one too large).
    Answer(Result<Arc<Identity>, Failure>),
    /// A token to verify (`Jwt::authenticate`).
    Verify,
}

#[derive(Debug)]
pub struct Jwt {
    name: Arc<str>,
    keys: Keys,
    /// One validation per allowed algorithm: jsonwebtoken wants every
    /// algorithm of a validation to fit the key's family.
    validations: Vec<(Algorithm, Validation)>,
    max_age: Option<Duration>,
    required: Vec<String>,
    cookie: Option<String>,
    query: Option<String>,
    max_token_size: usize,
    cache: TokenCache<Arc<Identity>>,
    /// `exp`, `nbf` and `max_age` are checked here against this clock
    /// (not by jsonwebtoken, which reads the system's), with `leeway`.
    clock: WallClock,
    leeway: u64,
}

/// A NumericDate (RFC 7519 §2): seconds since the epoch, an integer or a
/// non-negative finite decimal (rounded by `round`).
pub(super) fn numeric_date(v: &serde_json::Value, round: fn(f64) -> f64) -> Option<u64> {
    v.as_u64().or_else(|| v.as_f64().filter(|f| f.is_finite() && *f >= 0.0).map(|f| round(f) as u64))
}

impl Jwt {
    /// `previous`: the same provider in the running plan; its JWKS key set is
    /// kept when the source is unchanged (a reload while the IdP is down
    /// must not leave the gateway without keys).
    pub fn compile(cfg: &JwtConfig, cx: &mut CompileCtx<'_>) -> Result<Jwt, FieldErrors> {
        let (name, loaded): (Arc<str>, _) = (cx.name.into(), cx.loaded);
        let previous = match Provider::previous(cx) {
            Some(Provider::Jwt(j)) => Some(j),
            _ => None,
        };
        let mut errors = FieldErrors::new();
        let at = |k: &str| format!("jwt.{k}");
        let mut algorithms = Vec::new();
        for (i, a) in cfg.algorithms.iter().enumerate() {
            match a.parse::<Algorithm>() {
                Ok(alg) => algorithms.push(alg),
                Err(_) => errors.push((
                    at(&format!("algorithms[{i}]")),
                    format!("`{a}` is not one of HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, EdDSA"),
                )),
            }
        }
        if cfg.algorithms.is_empty() {
            errors.push((at("algorithms"), "list the accepted algorithms, e.g. `[RS256]`".into()));
        }
        let sources = [
            cfg.secret.is_some(),
            cfg.public_key_file.is_some(),
            cfg.jwks_file.is_some(),
            cfg.jwks_uri.is_some(),
            cfg.discovery,
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            errors.push((
                at("secret"),
                "give exactly one key source: `secret`, `public_key_file`, `jwks_file`, `jwks_uri` or `discovery: true`".into(),
            ));
        }
        let hmac = algorithms.iter().any(|a| is_hmac(*a));
        if cfg.secret.is_some()
            && algorithms.iter().any(|a| !matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
        {
            errors.push((at("algorithms"), "a `secret` only verifies HS256/384/512".into()));
        }
        // A fetched key set's symmetric keys are skipped (`jwks::unusable`):
        // only a `secret` or the gateway's own `jwks_file` verifies HS*.
        if cfg.secret.is_none() && hmac && cfg.jwks_file.is_none() {
            errors.push((
                at("algorithms"),
                "HS* algorithms need a `secret`, or a `jwks_file` holding symmetric keys (a key set served over \
                 HTTP is never used for them: whoever reads it could sign tokens)"
                    .into(),
            ));
        }
        if cfg.secret.as_ref().is_some_and(|s| s.len() < 32) {
            errors.push((at("secret"), "an HMAC secret must be at least 32 bytes".into()));
        }
        if cfg.discovery && cfg.issuer.is_none() {
            errors.push((at("discovery"), "discovery needs `issuer`".into()));
        }
        let fetcher = || {
            let ca = cfg.jwks_ca.as_ref().map(|f| loaded.resolve_file(f));
            Fetcher::new(ca.as_deref(), Duration::from_secs(5))
        };
        let keys = if let Some(secret) = &cfg.secret {
            Some(Keys::Fixed(KeySet::single(DecodingKey::from_secret(secret.as_bytes()))))
        } else if let Some(file) = &cfg.public_key_file {
            let path = loaded.resolve_file(file);
            match crate::config::read_file(&path) {
                Ok(pem) if String::from_utf8_lossy(&pem).contains("PRIVATE KEY") => {
                    errors.push((
                        at("public_key_file"),
                        format!("`{}` holds a private key; give the gateway the public key only", path.display()),
                    ));
                    None
                }
                Ok(pem) => {
                    let key = DecodingKey::from_rsa_pem(&pem)
                        .or_else(|_| DecodingKey::from_ec_pem(&pem))
                        .or_else(|_| DecodingKey::from_ed_pem(&pem));
                    match key {
                        Ok(k) => Some(Keys::Fixed(KeySet::single(k))),
                        Err(e) => {
                            errors.push((
                                at("public_key_file"),
                                format!("`{}` is not a PEM public key: {e}", path.display()),
                            ));
                            None
                        }
                    }
                }
                Err(e) => {
                    errors.push((at("public_key_file"), format!("cannot read `{}`: {e}", path.display())));
                    None
                }
            }
        } else if let Some(file) = &cfg.jwks_file {
            let path = loaded.resolve_file(file);
            let set = crate::config::read_file(&path)
                .map_err(|e| format!("cannot read `{}`: {e}", path.display()))
                .and_then(|b| {
                    // A name twice (`keys` twice, `k` twice in a key) is refused:
                    // read leniently, the last one won, unseen.
                    let text = String::from_utf8(b).map_err(|_| format!("`{}` is not UTF-8", path.display()))?;
                    crate::config::strict_json::from_str(&text)
                        .map_err(|e| format!("`{}` is not JSON: {e}", path.display()))
                })
                .and_then(|doc: serde_json::Value| {
                    // A set it can verify nothing with refuses every token: say so now.
                    let listed = doc.get("keys").and_then(|k| k.as_array()).map_or(0, Vec::len);
                    KeySet::from_jwks(&doc, &algorithms, super::jwks::Source::File).and_then(|set| {
                        match set.is_empty() {
                            true => Err(format!(
                                "`{}` holds no key the gateway can use ({listed} listed{}; a key needs its `kty` and \
                             that type's fields, e.g. `n` and `e` for RSA, is for signatures: no `use` but \
                             `sig`, `key_ops` with `verify` if any, and fits one of `algorithms`)",
                                path.display(),
                                set.skipped.iter().map(|s| format!("; {s}")).collect::<String>()
                            )),
                            // The file is the gateway's own: an HMAC algorithm
                            // none of its keys verifies (its `oct` keys too
                            // short, or none) is a mistake to say now, as for a
                            // `secret`, not a 401 for every such token.
                            false => match algorithms.iter().find(|a| is_hmac(**a) && !set.verifies_any(**a)) {
                                Some(alg) => Err(format!(
                                    "`{}` holds no key for {alg:?} (a symmetric `oct` key of at least 32 bytes){}",
                                    path.display(),
                                    set.skipped.iter().map(|s| format!("; {s}")).collect::<String>()
                                )),
                                None => Ok(set),
                            },
                        }
                    })
                });
            match set {
                Ok(s) => Some(Keys::Fixed(s)),
                Err(e) => {
                    errors.push((at("jwks_file"), e));
                    None
                }
            }
        } else {
            if let Some(fault) = cfg.jwks_uri.as_deref().and_then(crate::http::fetch_url_fault) {
                errors.push((at("jwks_uri"), fault));
            }
            // Refreshed in a loop: under a second it fetched as fast as the
            // identity provider answered (0s: no pause at all).
            if cfg.jwks_refresh.0 < std::time::Duration::from_secs(1) {
                errors.push((
                    at("jwks_refresh"),
                    "at least 1s (the key set is fetched again every `jwks_refresh`)".into(),
                ));
            }
            if cfg.discovery
                && cfg.jwks_uri.is_none()
                && let Some(fault) = cfg.issuer.as_deref().and_then(crate::http::fetch_url_fault)
            {
                errors.push((at("issuer"), format!("{fault} (with `discovery`, the keys are found from it)")));
            }
            let location = match (&cfg.jwks_uri, &cfg.issuer) {
                (Some(u), _) => Some(Location::Url(u.clone())),
                (None, Some(iss)) if cfg.discovery => Some(Location::Discovery(iss.clone())),
                _ => None,
            };
            let ca = cfg.jwks_ca.as_ref().map(|f| loaded.resolve_file(f));
            let same_source = |r: &Arc<RemoteJwks>| {
                location.as_ref().is_some_and(|l| r.identity == (l.clone(), cfg.jwks_refresh.0, ca.clone()))
            };
            let kept = previous.and_then(|p| match &p.keys {
                Keys::Remote(r) if same_source(r) => Some(r.clone()),
                _ => None,
            });
            match (location, fetcher()) {
                (Some(_), Ok(_)) if kept.as_ref().is_some_and(|k| k.takes(&algorithms)) => kept.map(Keys::Remote),
                (Some(loc), Ok(f)) => {
                    let refresh = cfg.jwks_refresh.0;
                    let fresh = RemoteJwks::new(name.clone(), loc, f, refresh, ca, algorithms.clone());
                    // Other algorithms, the same source: the keys held go
                    // on until the new set is fetched (an identity provider
                    // down at the reload left every token a 503).
                    let fresh = match &kept {
                        Some(before) => fresh.seeded_from(before),
                        None => fresh,
                    };
                    Some(Keys::Remote(Arc::new(fresh)))
                }
                (_, Err(e)) => {
                    errors.push((at("jwks_ca"), e));
                    None
                }
                (None, _) => None,
            }
        };
        // A fixed key verifies one algorithm family: say so now, not with 401s later.
        if let Some(Keys::Fixed(set)) = &keys
            && let Some(family) = set.family()
            && let Some(bad) = algorithms.iter().find(|a| a.family() != family)
        {
            errors.push((at("algorithms"), format!("{bad:?} does not fit the configured key ({family:?} family)")));
        }
        if cfg.token.cookie.is_some() && cfg.token.query.is_some() {
            errors.push((at("token"), "give at most one of `cookie` or `query`".into()));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let validations = algorithms
            .iter()
            .map(|alg| {
                let mut v = Validation::new(*alg);
                // Time claims are checked in `verify`, against the policy's clock.
                v.validate_exp = false;
                v.validate_nbf = false;
                // A configured issuer or audience must be present, not merely
                // "not different" (jsonwebtoken skips absent claims otherwise).
                let mut required = vec!["exp"];
                if cfg.issuer.is_some() {
                    required.push("iss");
                }
                if !cfg.audiences.is_empty() {
                    required.push("aud");
                }
                v.set_required_spec_claims(&required);
                match &cfg.issuer {
                    Some(iss) => v.set_issuer(&[iss]),
                    None => v.iss = None,
                }
                if cfg.audiences.is_empty() {
                    v.validate_aud = false;
                } else {
                    v.set_audience(&cfg.audiences);
                }
                (*alg, v)
            })
            .collect();
        Ok(Jwt {
            name,
            keys: keys.expect("checked above"),
            validations,
            max_age: cfg.max_age.map(|d| d.0),
            required: cfg.required_claims.clone(),
            cookie: cfg.token.cookie.clone(),
            query: cfg.token.query.clone(),
            max_token_size: cfg.max_token_size.0 as usize,
            cache: TokenCache::new(CACHE_CAPACITY, CACHE_BYTES),
            clock: WallClock::system(),
            leeway: cfg.leeway.0.as_secs(),
        })
    }

    #[cfg(test)]
    pub fn set_clock(&mut self, clock: WallClock) {
        self.clock = clock;
    }

    /// Whether tokens come from `Authorization: Bearer` (not a cookie or query).
    pub fn uses_bearer(&self) -> bool {
        self.cookie.is_none() && self.query.is_none()
    }

    /// Where it reads its token, in words.
    pub fn reads(&self) -> super::Place {
        match (&self.cookie, &self.query) {
            (Some(c), _) => super::Place::Cookie(c.clone()),
            (None, Some(q)) => super::Place::Query(q.clone()),
            (None, None) => super::Place::Authorization(Some("Bearer")),
        }
    }

    pub fn start(&self) {
        if let Keys::Remote(r) = &self.keys {
            r.start();
        }
    }

    pub fn token<'r>(&self, req: &'r request::Parts) -> Option<&'r [u8]> {
        // An empty value is no token, as an empty `Bearer` is (RFC 6750
        // §3.1): a cookie cleared by setting it empty (`session=`) got 401
        // on routes open to anonymous callers, and hid another provider's
        // valid credential.
        if let Some(c) = &self.cookie {
            return cookie(req, c).filter(|t| !t.is_empty()).map(str::as_bytes);
        }
        if let Some(q) = &self.query {
            return query_param(req.uri.query()?, q).filter(|t| !t.is_empty()).map(str::as_bytes);
        }
        bearer_token(req)
    }

    /// The answer when it needs no verification: a token already verified
    /// (and cached until its `exp`), or one too large to be. Nothing is
    /// changed unless it answers.
    pub fn try_cached(&self, req: &mut request::Parts) -> Cached {
        let Some(token) = self.token(req) else { return Cached::Absent };
        if token.len() > self.max_token_size {
            return Cached::Answer(Err(self.refused("larger than max_token_size")));
        }
        let Some(identity) = self.cache.get(token) else { return Cached::Verify };
        self.remove_token(req);
        Cached::Answer(Ok(identity))
    }

    pub async fn authenticate(&self, req: &mut request::Parts) -> Result<Arc<Identity>, Failure> {
        match self.try_cached(req) {
            Cached::Answer(answer) => return answer,
            Cached::Absent => return Err(Failure::Invalid),
            Cached::Verify => {}
        }
        let token = self.token(req).and_then(token_text).ok_or_else(|| self.refused("not text"))?;
        let (id, ttl) = self.verify(token).await?;
        let id = Arc::new(id);
        self.cache.insert(token.as_bytes(), id.clone(), ttl.min(MAX_CACHE_TTL));
        self.remove_token(req);
        Ok(id)
    }

    /// Full verification; returns the identity and how long it stays valid.
    /// A refusal, said at `debug` (as the library's own refusals are).
    fn refused(&self, why: &'static str) -> Failure {
        tracing::debug!(provider = %self.name, error = why, "JWT refused");
        Failure::Invalid
    }

    async fn verify(&self, token: &str) -> Result<(Identity, Duration), Failure> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| self.refused("no readable JOSE header"))?;
        // RFC 7515 §4.1.11: extensions listed in `crit` must be understood,
        // and we understand none (jsonwebtoken does not check this).
        // (`"crit": null` reads as no `crit`: a malformed header, refused too.)
        let names_crit = || {
            token
                .split('.')
                .next()
                .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
                .and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok())
                .is_some_and(|h| h.get("crit").is_some())
        };
        if header.crit.is_some() || names_crit() {
            return Err(self.refused("crit names an extension"));
        }
        let validation = self
            .validations
            .iter()
            .find(|(a, _)| *a == header.alg)
            .map(|(_, v)| v)
            .ok_or_else(|| self.refused("alg is not one of the provider's algorithms"))?;
        let candidates = self.keys.find(header.kid.as_deref()).await.map_err(|f| match f {
            Failure::Invalid => self.refused("no key for its kid"),
            other => other,
        })?;
        // Only keys of the token's algorithm family, and of its very
        // algorithm when the key names one: HS256 "signed" with an RSA
        // public key must not verify.
        let mut keys = candidates.iter().filter(|k| k.verifies(header.alg)).map(|k| &k.decoding);
        let first = keys.next().ok_or_else(|| self.refused("no key of its alg for its kid"))?;
        let decode = |key| jsonwebtoken::decode::<serde_json::Value>(token, key, validation);
        let data = keys.fold(decode(first), |result, key| result.or_else(|_| decode(key))).map_err(|e| {
            tracing::debug!(provider = %self.name, error = %e, "JWT refused");
            Failure::Invalid
        })?;
        let claims = data.claims;
        // A member given twice (`"tenant":"evil","tenant":"acme"`): the
        // claims above kept the last, and a service that reads the token
        // again may keep the first. Refused, as the validator refuses such
        // bodies (read again only here, after the signature held; verified
        // tokens are cached).
        let payload = token
            .split('.')
            .nth(1)
            .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
            .ok_or_else(|| self.refused("no readable payload"))?;
        if crate::http::json::names_a_member_twice(&payload) {
            return Err(self.refused("a claim is given twice"));
        }
        let now = self.clock.unix_secs();
        if self.required.iter().any(|c| claims.get(c).is_none_or(|v| v.is_null())) {
            return Err(self.refused("a required claim is missing"));
        }
        // `iss` is one StringOrURI (RFC 7519 §4.1.1): jsonwebtoken also
        // takes a list, which an upstream that reads the token again may not.
        if claims.get("iss").is_some_and(|v| !v.is_string()) {
            return Err(self.refused("iss is not a string"));
        }
        // RFC 7519 §4.1.4/5, with `leeway` either way: `exp` (required, a
        // NumericDate) has not passed, `nbf` (if present) has. A NumericDate
        // may have a fraction: `exp` is rounded down, `nbf` up (each the
        // stricter way).
        let exp = claims
            .get("exp")
            .and_then(|v| numeric_date(v, f64::floor))
            .ok_or_else(|| self.refused("exp is missing or not a NumericDate"))?;
        if exp.saturating_add(self.leeway) < now {
            return Err(self.refused("expired (exp)"));
        }
        if let Some(nbf) = claims.get("nbf") {
            let nbf = numeric_date(nbf, f64::ceil).ok_or_else(|| self.refused("nbf is not a NumericDate"))?;
            if nbf > now.saturating_add(self.leeway) {
                return Err(self.refused("not valid yet (nbf)"));
            }
        }
        let mut valid_until = exp;
        if let Some(max_age) = self.max_age {
            let iat = claims
                .get("iat")
                .and_then(|v| numeric_date(v, f64::floor))
                .ok_or_else(|| self.refused("iat is missing or not a NumericDate (max_age)"))?;
            // Issued in the future: `max_age` would count from then, and a
            // token stamped a year ahead would live that year.
            if iat > now.saturating_add(self.leeway) {
                return Err(self.refused("issued in the future (iat)"));
            }
            let limit = iat.saturating_add(max_age.as_secs());
            if limit < now {
                return Err(self.refused("older than max_age (iat)"));
            }
            valid_until = valid_until.min(limit);
        }
        // A `scope` of `null` is no scope claim: `scp` is read then.
        let scopes = super::scopes_of(claims.get("scope").filter(|v| !v.is_null()).or_else(|| claims.get("scp")));
        let subject = claims.get("sub").and_then(|v| v.as_str()).unwrap_or_default().to_string();
        let identity = Identity {
            provider: self.name.clone(),
            subject,
            consumer: None,
            scopes,
            claims: Some(Arc::new(claims)),
            bearer: true,
            rendered: Default::default(),
        };
        Ok((identity, Duration::from_secs(valid_until.saturating_sub(now))))
    }

    /// A token from a cookie or query parameter is for the gateway only.
    pub(super) fn remove_token(&self, req: &mut request::Parts) {
        if let Some(name) = &self.query {
            remove_query_param(req, name);
        }
        if let Some(name) = &self.cookie {
            // Bytes, as they came: a non-ASCII byte in another cookie's
            // value (`name=café`) neither drops the header nor hides the token.
            let rest: Vec<&[u8]> = req
                .headers
                .get_all(header::COOKIE)
                .iter()
                .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
                .map(<[u8]>::trim_ascii)
                .filter(|p| !p.is_empty() && !cookie_piece_names(&String::from_utf8_lossy(p), name))
                .collect();
            let joined = rest.join(&b"; "[..]);
            req.headers.remove(header::COOKIE);
            if !joined.is_empty()
                && let Ok(v) = http::HeaderValue::from_bytes(&joined)
            {
                req.headers.insert(header::COOKIE, v);
            }
        }
    }
}

/// Whether a `;`-separated piece of a `Cookie` line holds `name` in a
/// spelling some parser reads: its own name, or that of a pair after a
/// `,` or a space in it (Python's `SimpleCookie` and Rack 2 split there
/// too: `a=1, session=x` holds their `session`).
fn cookie_piece_names(piece: &str, name: &str) -> bool {
    if super::api_key::names(piece.split('=').next().unwrap_or(""), name) {
        return true;
    }
    // A quoted value is one value (`msg="hello session=x"`): what is inside
    // quotes is left out, what follows a closing quote is read on
    // (`b="x" session=y` is SimpleCookie's `session`). Spaces before an
    // `=` go first (`a=1, session =x` is its `session` too).
    let mut squeezed = String::with_capacity(piece.len());
    let (mut quoted, mut escaped) = (false, false);
    for c in piece.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            _ if quoted => {}
            '=' => {
                squeezed.truncate(squeezed.trim_end_matches([' ', '\t']).len());
                squeezed.push(c);
            }
            _ => squeezed.push(c),
        }
    }
    squeezed
        .split([',', ' ', '\t'])
        .filter(|p| p.contains('='))
        .any(|p| super::api_key::names(p.split('=').next().unwrap_or(""), name))
}

fn cookie<'r>(req: &'r request::Parts, name: &str) -> Option<&'r str> {
    // Read by bytes: another cookie's non-ASCII value must not hide the token.
    req.headers.get_all(header::COOKIE).iter().flat_map(|v| v.as_bytes().split(|&b| b == b';')).find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        (&pair[..eq] == name.as_bytes()).then(|| std::str::from_utf8(&pair[eq + 1..]).ok()).flatten()
    })
}

/// An HMAC algorithm (a shared secret, not a public key).
fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use proptest::prelude::*;

    const SECRET: &str = "a-secret-of-at-least-thirty-two-bytes!!";

    fn provider() -> Jwt {
        let yaml = format!("auth:\n  hs: {{ jwt: {{ algorithms: [HS256], secret: \"{SECRET}\", issuer: gw }} }}\n");
        let loaded = crate::config::parse_str(&yaml, "fuzz.yaml", std::path::Path::new(".")).unwrap();
        let crate::policy::auth::config::ProviderConfig::Jwt(cfg) = &loaded.config.auth["hs"] else { unreachable!() };
        let shared = crate::policy::compile::Shared::default();
        let mut cx = CompileCtx::new(&loaded, "auth.hs".into(), &shared);
        cx.name = "hs";
        Jwt::compile(cfg, &mut cx).unwrap()
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Tokens: segments of real and mangled JOSE headers and claims, and
    /// properly signed ones (which must verify).
    fn tokens() -> impl Strategy<Value = (String, bool)> {
        let header = prop::sample::select(vec![
            r#"{"alg":"HS256","typ":"JWT"}"#,
            r#"{"alg":"none"}"#,
            r#"{"alg":"RS256","kid":"x"}"#,
            r#"{"alg":"HS256","crit":["exp"]}"#,
            r#"{"alg":"HS256","kid":"../../etc/passwd"}"#,
            r#"{"alg":123}"#,
            r#"{"alg":"HS256","jku":"http://evil/"}"#,
            "[]",
            "",
            "{",
        ]);
        let claims = prop::sample::select(vec![
            r#"{"iss":"gw","exp":99999999999,"sub":"a","scope":"x y"}"#,
            r#"{"iss":"other","exp":99999999999}"#,
            r#"{"iss":"gw","exp":1}"#,
            r#"{"iss":"gw","exp":"never"}"#,
            r#"{"iss":"gw","exp":99999999999,"scp":[1,"a",null]}"#,
            "null",
            "",
        ]);
        let sig = prop::collection::vec(any::<u8>(), 0..40);
        let forged = (header, claims, sig, crate::fuzz::mutated(Vec::new(), 3)).prop_map(|(h, c, s, junk)| {
            let mut token = format!("{}.{}.{}", b64(h.as_bytes()), b64(c.as_bytes()), b64(&s));
            token.push_str(&String::from_utf8_lossy(&junk));
            (token, false)
        });
        let signed = (any::<u32>(), prop::sample::select(vec!["a", "b c", ""])).prop_map(|(n, scope)| {
            let claims =
                serde_json::json!({ "iss": "gw", "exp": 99_999_999_999u64, "sub": format!("u{n}"), "scope": scope });
            let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
            (jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap(), true)
        });
        let bytes = prop::collection::vec(crate::fuzz::wire_byte(), 0..120)
            .prop_map(|b| (String::from_utf8_lossy(&b).into_owned(), false));
        prop_oneof![3 => forged, 1 => signed, 1 => bytes]
    }

    #[test]
    fn a_jwks_file_without_a_usable_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for (name, jwks, why) in [
            ("empty.json", r#"{"keys": []}"#, "holds no key the gateway can use"),
            (
                "broken.json",
                r#"{"keys": [{"kty": "RSA", "kid": "x", "n": "abc"}]}"#,
                "holds no key the gateway can use",
            ),
            // A name twice: read leniently, the last `keys` (or `k`) won, unseen.
            ("twice.json", r#"{"keys": [], "keys": [{"kty": "oct", "k": "AAAA"}]}"#, "`keys` is given twice"),
            // HS256 beside ES256: the file's only `oct` key is too short (the
            // EC key alone would verify nothing of HS256, unsaid).
            (
                "short-hmac.json",
                r#"{"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}, {"kty": "EC", "crv": "P-256", "kid": "e", "x": "AQ", "y": "Ag"}]}"#,
                "holds no key for HS256 (a symmetric `oct` key of at least 32 bytes); kid `h`: a symmetric key of 6 \
                 bytes (at least 32)",
            ),
            // Keys it could use for no token of `[RS256]`, each said with why.
            (
                "unusable.json",
                r#"{"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}, {"kty": "RSA", "kid": "r", "n": "wQ", "e": "AQAB"}]}"#,
                "(2 listed; kid `h`: a symmetric key of 6 bytes (at least 32); kid `r`: an RSA key of 8 bits (at \
                 least 2048);",
            ),
        ] {
            std::fs::write(dir.path().join(name), jwks).unwrap();
            let algorithms = if name == "short-hmac.json" { "ES256, HS256" } else { "RS256" };
            let yaml = format!("auth:\n  j: {{ jwt: {{ algorithms: [{algorithms}], jwks_file: {name} }} }}\n");
            let loaded = crate::config::parse_str(&yaml, "t.yaml", dir.path()).unwrap();
            let crate::policy::auth::config::ProviderConfig::Jwt(cfg) = &loaded.config.auth["j"] else {
                unreachable!()
            };
            let shared = crate::policy::compile::Shared::default();
            let mut cx = CompileCtx::new(&loaded, "auth.j".into(), &shared);
            let errors = Jwt::compile(cfg, &mut cx).unwrap_err();
            assert!(errors[0].1.contains(why), "{name}: {errors:?}");
        }
    }

    /// HS* verifies with a `secret` or the gateway's own `jwks_file`: a
    /// fetched key set's `oct` keys are skipped, so HS* beside one alone
    /// would refuse every such token. A `jwks_file`'s `oct` key verifies.
    #[test]
    fn a_jwks_files_symmetric_key_verifies_hs256() {
        let dir = tempfile::tempdir().unwrap();
        let k = "c2VjcmV0LW9mLWF0LWxlYXN0LXRoaXJ0eS10d28tYnl0ZXMhIQ";
        std::fs::write(dir.path().join("k.json"), format!(r#"{{"keys": [{{"kty": "oct", "kid": "h", "k": "{k}"}}]}}"#))
            .unwrap();
        let yaml = "auth:\n  j: { jwt: { algorithms: [HS256], jwks_file: k.json } }\n";
        let loaded = crate::config::parse_str(yaml, "t.yaml", dir.path()).unwrap();
        let crate::policy::auth::config::ProviderConfig::Jwt(cfg) = &loaded.config.auth["j"] else { unreachable!() };
        let shared = crate::policy::compile::Shared::default();
        let mut cx = CompileCtx::new(&loaded, "auth.j".into(), &shared);
        assert!(Jwt::compile(cfg, &mut cx).is_ok());
    }

    /// HS* beside a fetched key set alone (no `secret`): a check error.
    #[test]
    fn hmac_algorithms_need_a_secret_whatever_the_key_source() {
        for source in ["jwks_uri: \"https://idp.example/keys\"", "discovery: true, issuer: \"https://idp.example\""] {
            let yaml = format!("auth:\n  j: {{ jwt: {{ algorithms: [RS256, HS256], {source} }} }}\n");
            let loaded = crate::config::parse_str(&yaml, "t.yaml", std::path::Path::new(".")).unwrap();
            let crate::policy::auth::config::ProviderConfig::Jwt(cfg) = &loaded.config.auth["j"] else {
                unreachable!()
            };
            let shared = crate::policy::compile::Shared::default();
            let mut cx = CompileCtx::new(&loaded, "auth.j".into(), &shared);
            let errors = Jwt::compile(cfg, &mut cx).unwrap_err();
            assert!(
                errors.iter().any(|(path, why)| path == "jwt.algorithms" && why.contains("need a `secret`")),
                "{errors:?}"
            );
        }
    }

    /// Every refusal says why at `debug` (operators look for `alg: none`,
    /// key confusion and kid probing there).
    #[test]
    fn every_refusal_says_why() {
        #[derive(Clone, Default)]
        struct Lines(Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let dispatch = tracing::Dispatch::new(subscriber);
        let jwt = provider();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let claims = b64(br#"{"iss":"gw","exp":99999999999}"#);
        for (header, why) in [
            (r#"{"alg":"none"}"#, "no readable JOSE header"),
            (r#"{"alg":"RS384"}"#, "alg is not one of the provider's algorithms"),
            (r#"{"alg":"HS256","crit":["exp"]}"#, "crit names an extension"),
            (r#"{"alg":"HS256","crit":null}"#, "crit names an extension"),
        ] {
            let token = format!("{}.{claims}.c2ln", b64(header.as_bytes()));
            tracing::dispatcher::with_default(&dispatch, || {
                assert!(rt.block_on(jwt.verify(&token)).is_err(), "{header}");
            });
            let seen = String::from_utf8_lossy(&lines.0.lock().unwrap()).into_owned();
            assert!(seen.contains("JWT refused") && seen.contains(why), "{header}: {seen}");
        }
    }

    /// Any token: verification never panics; a forged one never passes, a
    /// properly signed one always does.
    #[test]
    fn fuzz_jwt_tokens() {
        let jwt = provider();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        crate::fuzz::run("jwt tokens", tokens(), |(token, genuine)| {
            let verified = rt.block_on(jwt.verify(&token));
            prop_assert_eq!(verified.is_ok(), genuine, "{}", token);
            Ok(())
        });
    }
}
