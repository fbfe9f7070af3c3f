//! Rate limits (GCRA, with NGINX `limit_req` delay/nodelay semantics),
//! quotas per calendar window, and concurrency limits, counted in the
//! embedded sharded store or, for rates and quotas, in Redis shared by
//! every instance.
//!
//! Limits keyed only by client IP run in the `limit_by_ip` phase (before
//! authentication, which costs CPU); the others in `limit`. Within a phase
//! they run in order — rates, quotas, concurrency — and the first refusal
//! stops the request, so limits it did not reach spend nothing.

pub mod config;
pub mod gcra;
pub mod memory;
pub mod quota;
pub mod redis;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use http::{StatusCode, request};

pub use config::*;
use gcra::{Decision, Gcra};
use memory::MemoryStore;
use redis::RedisStore;

use crate::config::FieldErrors;
use crate::http::problem;
use crate::observe::metrics::{Counter, Registry};
use crate::policy::clock::WallClock;
use crate::policy::compile::{CompileCtx, Previous};
use crate::policy::ctx::{HeaderInfo, Outcome, RequestCtx, Slot};
use crate::wire::limit_fields::{LimitFields, structured_item};

/// The counters of a plan: always the memory store, and Redis when configured.
/// The shortest step between two requests of a rate counted in Redis.
const MIN_REDIS_INTERVAL_NS: u64 = 10_000;

pub struct Stores {
    pub memory: Arc<MemoryStore>,
    pub redis: Option<Arc<RedisStore>>,
    /// Checks that fell back to local counters because Redis failed
    /// (`portcullis_rate_limit_store_fallbacks_total`).
    pub fallbacks: Arc<Counter>,
    last_warning: AtomicU64,
    /// Reports the memory store's size (`portcullis_rate_limit_keys`) while the plan lives.
    _keys: Arc<dyn Fn() -> f64 + Send + Sync>,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores").field("memory", &self.memory).field("redis", &self.redis).finish_non_exhaustive()
    }
}

impl Stores {
    /// `previous`: the running plan's stores, whose in-memory counters carry
    /// over a reload (a reload must not hand every client a fresh budget).
    /// The plan's stores; the running plan's memory store is kept when its
    /// size is unchanged (counters survive a reload).
    pub fn compile(cfg: &RateLimitStoreConfig, cx: &mut CompileCtx<'_>) -> Result<Stores, FieldErrors> {
        let previous = cx.shared::<Previous<Arc<Stores>>>().map(|p| &*p.0);
        let mut errors = FieldErrors::new();
        if cfg.max_keys == 0 {
            errors.push(("max_keys".into(), "at least 1 (the memory store's keys; 1,000,000 by default)".into()));
        }
        if cfg.redis.as_ref().is_some_and(|r| r.timeout.0 < std::time::Duration::from_millis(1)) {
            errors.push(("redis.timeout".into(), "at least 1ms: a zero timeout never lets Redis answer".into()));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let redis = match &cfg.redis {
            None => None,
            Some(r) => Some(Arc::new(
                RedisStore::new(&r.url, &r.key_prefix, r.timeout.0)
                    .map_err(|e| FieldErrors::one("redis.url".to_string(), e))?,
            )),
        };
        let fresh = MemoryStore::new(cfg.max_keys);
        let memory = match previous {
            Some(p) if p.memory.max_keys() == fresh.max_keys() => p.memory.clone(),
            _ => Arc::new(fresh),
        };
        let registry = cx.shared::<Arc<Registry>>().cloned().unwrap_or_default();
        let keys: Arc<dyn Fn() -> f64 + Send + Sync> = {
            let memory = memory.clone();
            Arc::new(move || memory.len() as f64)
        };
        registry.probe("portcullis_rate_limit_keys", Vec::new(), keys.clone());
        let fallbacks = registry.counter("portcullis_rate_limit_store_fallbacks", Vec::new());
        Ok(Stores { memory, redis, fallbacks, last_warning: 0.into(), _keys: keys })
    }

    /// Logs a Redis failure at most once a second, and counts every one.
    fn note_failure(&self, error: &str) {
        self.fallbacks.inc();
        let now = WallClock::system().unix_secs();
        if self.last_warning.swap(now, Ordering::Relaxed) != now {
            tracing::warn!(error, "rate-limit store unavailable; applying each limit's on_store_error policy");
        }
    }
}

#[derive(Debug, Clone)]
enum Part {
    Ip { v6_prefix: u8 },
    Consumer,
    Route,
    Constant(Arc<str>),
    Header(HeaderName),
    Claim(Vec<String>),
}

/// A counter's identity as `Key::of` writes it: on the stack up to 64
/// bytes (an IP key takes ~20), in a `Vec` beyond. Not a `SmallVec`: its
/// `extend_from_slice` cost ~40 instructions a call here, more than the
/// allocation it saves.
struct KeyBytes {
    inline: [u8; 64],
    len: usize,
    spilled: Vec<u8>,
}

impl KeyBytes {
    fn new() -> KeyBytes {
        KeyBytes { inline: [0; 64], len: 0, spilled: Vec::new() }
    }

    fn push(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        if self.spilled.is_empty() && end <= self.inline.len() {
            self.inline[self.len..end].copy_from_slice(bytes);
            self.len = end;
        } else {
            if self.spilled.is_empty() {
                self.spilled.extend_from_slice(&self.inline[..self.len]);
            }
            self.spilled.extend_from_slice(bytes);
        }
    }
}

impl std::ops::Deref for KeyBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        if self.spilled.is_empty() { &self.inline[..self.len] } else { &self.spilled }
    }
}

#[derive(Debug, Clone)]
struct Key {
    /// Counter namespace: the limit's `name`, or its route and position.
    scope: Arc<str>,
    /// `scope` as the metrics' `limit` label and the `RateLimit` headers
    /// name it (the headers escape it: `policy_value`).
    label: Arc<str>,
    /// Which limit a counter in the embedded store belongs to (its scope,
    /// hashed): a full store evicts the counters of the limit holding most.
    tag: u32,
    parts: Vec<Part>,
    /// Each part's kind, written before its value: a header's value must
    /// never land in the counter of a consumer, an address or another
    /// header that happens to have the same bytes (limits of one scope,
    /// a `name` or an upstream's, may key on different parts).
    kinds: Vec<Box<[u8]>>,
}

/// Whether a key's header is one the client address is read from
/// (`X-Forwarded-For`, `Forwarded`): such a key counts by `ip`.
pub fn names_the_client(header: &str) -> bool {
    header.eq_ignore_ascii_case("x-forwarded-for") || header.eq_ignore_ascii_case("forwarded")
}

impl Key {
    fn compile(spec: &KeySpec, scope: String, upstream: Option<&str>, v6_prefix: u8) -> Result<Key, String> {
        let mut parts = Vec::new();
        let mut kinds = Vec::new();
        for p in spec.parts() {
            kinds.push(match p {
                // Counted as `ip` (see below), and so in the same counter as
                // an `ip` key of a named budget.
                KeyPart::Ip => b"ip".as_slice().into(),
                KeyPart::Header(h) if names_the_client(h) => b"ip".as_slice().into(),
                KeyPart::Consumer => b"consumer".as_slice().into(),
                KeyPart::Route => b"route".as_slice().into(),
                KeyPart::Upstream => b"upstream".as_slice().into(),
                KeyPart::Header(h) => format!("header:{}", h.to_ascii_lowercase()).into_bytes().into(),
                KeyPart::Claim(c) => format!("claim:{c}").into_bytes().into(),
            });
            parts.push(match p {
                KeyPart::Ip => Part::Ip { v6_prefix },
                // The headers the client address is read from: believed only
                // from `trusted_proxies`, and then `ip` is what they say.
                // As sent, any client wrote a new key (a budget) each time.
                KeyPart::Header(h) if names_the_client(h) => Part::Ip { v6_prefix },
                KeyPart::Consumer => Part::Consumer,
                KeyPart::Route => Part::Route,
                KeyPart::Upstream => {
                    Part::Constant(upstream.ok_or("`upstream` keys need a route with an `upstream`")?.into())
                }
                KeyPart::Header(h) => {
                    crate::wire::admit::readable_request_header(h)?;
                    Part::Header(HeaderName::try_from(h.as_str()).map_err(|_| format!("`{h}` is not a header name"))?)
                }
                KeyPart::Claim(c) => Part::Claim(c.split('.').map(String::from).collect()),
            });
        }
        if parts.is_empty() {
            return Err("a key needs at least one part".into());
        }
        let label = scope.as_str().into();
        let tag = xxhash_rust::xxh3::xxh3_64(scope.as_bytes()) as u32;
        Ok(Key { scope: scope.into(), label, tag, parts, kinds })
    }

    fn only_ip(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Ip { .. }))
    }

    /// The identity of this request's counter: scope and key values,
    /// length-prefixed (each store hashes it its own way).
    fn of(&self, req: &request::Parts, ctx: &RequestCtx<'_>) -> KeyBytes {
        // One buffer, written in place and on the stack for the usual sizes:
        // this runs for every limit of every request.
        fn put(out: &mut KeyBytes, parts: &[&[u8]]) {
            let len: usize = parts.iter().map(|p| p.len()).sum();
            out.push(&(len as u32).to_le_bytes());
            for p in parts {
                out.push(p);
            }
        }
        let ip = |prefix: u8| -> ([u8; 16], usize) {
            let mut buf = [0u8; 16];
            match ctx.client_ip {
                IpAddr::V4(v4) => {
                    buf[..4].copy_from_slice(&v4.octets());
                    (buf, 4)
                }
                IpAddr::V6(v6) => {
                    let bits = u128::from(v6);
                    let masked = if prefix >= 128 { bits } else { bits & !(u128::MAX >> prefix) };
                    (masked.to_be_bytes(), 16)
                }
            }
        };
        let mut out = KeyBytes::new();
        put(&mut out, &[self.scope.as_bytes()]);
        for (p, kind) in self.parts.iter().zip(&self.kinds) {
            put(&mut out, &[kind]);
            let owned: Option<Vec<u8>>;
            let value: Option<&[u8]> = match p {
                Part::Ip { v6_prefix } => {
                    let (buf, len) = ip(*v6_prefix);
                    put(&mut out, &[&buf[..len]]);
                    continue;
                }
                Part::Consumer => match ctx.identity.as_deref() {
                    Some(id) => match &id.consumer {
                        Some(c) => Some(c.id.as_bytes()),
                        // No subject (a token without a string `sub`): no
                        // consumer to count, or every such caller would share
                        // one bucket; the client address counts instead.
                        None if id.subject.is_empty() => None,
                        None => {
                            owned = Some(format!("{}\0{}", id.provider, id.subject).into_bytes());
                            owned.as_deref()
                        }
                    },
                    None => None,
                },
                Part::Route => Some(ctx.route.as_bytes()),
                Part::Constant(c) => Some(c.as_bytes()),
                // An empty value is no value: it would put every client
                // that sends one in one shared bucket.
                // Of several lines, the last: a proxy in front appends its own.
                Part::Header(h) => req
                    .headers
                    .get_all(h)
                    .iter()
                    .next_back()
                    .map(|v| v.as_bytes().trim_ascii())
                    .filter(|v| !v.is_empty()),
                Part::Claim(path) => {
                    owned = ctx.identity.as_ref().and_then(|id| {
                        let mut v = id.claims.as_deref()?;
                        for k in path {
                            v = v.get(k)?;
                        }
                        Some(v.to_string().into_bytes())
                    });
                    owned.as_deref()
                }
            };
            match value {
                Some(v) => put(&mut out, &[v]),
                // Missing value: count by client IP, tagged so it cannot collide with a real value.
                None => {
                    let (buf, len) = ip(128);
                    put(&mut out, &[b"\0ip:", &buf[..len]]);
                }
            }
        }
        out
    }
}

#[derive(Debug)]
struct RateLimit {
    key: Key,
    gcra: Gcra,
    /// `q` in the RateLimit-Policy header.
    quota: u64,
    on_error: OnStoreError,
    /// Its `RateLimit-Policy` value.
    policy: HeaderValue,
    decisions: Decisions,
}

/// `portcullis_rate_limit_decisions_total` of one limit on one route.
#[derive(Debug)]
struct Decisions {
    allowed: Arc<Counter>,
    rejected: Arc<Counter>,
    /// Refused with 503: the shared store failed and the limit fails closed.
    unavailable: Arc<Counter>,
}

impl Decisions {
    fn new(registry: &Registry, route: &str, limit: &str) -> Decisions {
        let counter = |decision: &str| {
            let labels =
                vec![("route", route.to_string()), ("limit", limit.to_string()), ("decision", decision.to_string())];
            registry.counter("portcullis_rate_limit_decisions", labels)
        };
        Decisions { allowed: counter("allowed"), rejected: counter("rejected"), unavailable: counter("unavailable") }
    }

    #[inline]
    fn count(&self, allowed: bool) {
        if allowed { self.allowed.inc() } else { self.rejected.inc() }
    }
}

#[derive(Debug)]
struct QuotaLimit {
    key: Key,
    limit: u64,
    per: quota::Period,
    on_error: OnStoreError,
    /// Its `RateLimit-Policy` value.
    policy: HeaderValue,
    decisions: Decisions,
}

#[derive(Debug)]
struct ConcurrencyLimit {
    key: Key,
    max: u32,
    decisions: Decisions,
}

/// The limits of one route in one phase.
#[derive(Debug)]
pub struct Compiled {
    rates: Vec<RateLimit>,
    quotas: Vec<QuotaLimit>,
    concurrency: Vec<ConcurrencyLimit>,
    stores: Arc<Stores>,
    /// Quota windows follow this calendar (`CompileCtx::shared`, else the system's).
    clock: WallClock,
    /// A rate in `delay` mode: requests may have to wait (never `try_sync`).
    delays: bool,
}

impl Compiled {
    /// Whether a key reads a request header (the engine then writes the
    /// identity headers before this phase, as a key may name one).
    pub fn reads_headers(&self) -> bool {
        let keys = self.rates.iter().map(|r| &r.key);
        let keys = keys.chain(self.quotas.iter().map(|q| &q.key)).chain(self.concurrency.iter().map(|c| &c.key));
        keys.flat_map(|k| &k.parts).any(|p| matches!(p, Part::Header(_)))
    }
}

/// The longest `B·T + T` of the rate limits named `name` anywhere in the
/// config (routes and API operations): how far past now their shared TAT
/// can be set.
fn shared_span(config: &crate::config::Config, name: &str) -> u64 {
    let routes = config.routes.iter().flat_map(|r| &r.rate_limit);
    let operations = config.apis.iter().flat_map(|a| a.operations.values()).flat_map(|o| &o.rate_limit);
    routes
        .chain(operations)
        .filter(|r| r.name.as_deref() == Some(name) && r.burst <= crate::config::units::Rate::MAX_COUNT)
        .map(|r| Gcra::new(r.rate.count, r.rate.per.as_nanos() as u64, r.burst, None).span)
        .max()
        .unwrap_or(0)
}

/// A route's limits for the `limit_by_ip` and the `limit` phase.
pub type PhasedLimits = (Option<Compiled>, Option<Compiled>);

/// A route's limits, split by phase: (limit_by_ip, limit).
pub fn compile(cfg: &RouteLimits<'_>, cx: &mut CompileCtx<'_>) -> Result<PhasedLimits, FieldErrors> {
    let RouteLimits { rate_limit: rates, quota: quotas, concurrency } = *cfg;
    let (route, upstream) = (cx.name, cx.upstream);
    let stores = cx.shared::<Arc<Stores>>().ok_or_else(|| FieldErrors::one("", "no rate-limit store"))?;
    let mut errors = FieldErrors::new();
    let clock = cx.shared::<WallClock>().cloned().unwrap_or_default();
    let registry = cx.shared::<Arc<Registry>>().cloned().unwrap_or_default();
    let empty = || Compiled {
        rates: vec![],
        quotas: vec![],
        concurrency: vec![],
        stores: stores.clone(),
        clock: clock.clone(),
        delays: false,
    };
    let (mut by_ip, mut later) = (empty(), empty());
    // Counter namespace: the `name` if given; an `upstream` key is shared by
    // every route of that upstream that declares the same limit (`kind`
    // carries the limit's settings); otherwise the route and position.
    for (at, name) in rates
        .iter()
        .enumerate()
        .map(|(i, r)| (format!("rate_limit[{i}].name"), &r.name))
        .chain(quotas.iter().enumerate().map(|(i, q)| (format!("quota[{i}].name"), &q.name)))
        .chain(concurrency.iter().enumerate().map(|(i, c)| (format!("concurrency[{i}].name"), &c.name)))
    {
        if name.as_deref().is_some_and(|n| n.is_empty() || !n.bytes().all(|b| b.is_ascii_graphic() || b == b' ')) {
            errors.push((at, "a limit's name is printable ASCII (it is sent in `RateLimit-Policy`)".into()));
        } else if name.as_deref().is_some_and(|n| n.contains('#')) {
            // Unnamed limits are counted as `<route>#rate<N>` and the like.
            errors.push((at, "`#` is kept for the names the gateway gives unnamed limits".into()));
        }
    }
    let scope = |name: &Option<String>, key: &KeySpec, kind: String, i: usize| match (name, upstream) {
        (Some(n), _) => n.clone(),
        (None, Some(u)) if key.parts().contains(&KeyPart::Upstream) => format!("upstream:{u}#{kind}"),
        _ => format!("{route}#{}{i}", kind.split(':').next().unwrap_or_default()),
    };
    for (i, r) in rates.iter().enumerate() {
        let at = format!("rate_limit[{i}]");
        if r.delay.is_some() && r.mode != Mode::Delay {
            errors.push((format!("{at}.delay"), "`delay` goes with `mode: delay`".into()));
        }
        if r.ipv6_prefix.is_some_and(|p| p > 128) {
            errors.push((format!("{at}.ipv6_prefix"), "a prefix length is 0 to 128".into()));
        }
        if r.burst > crate::config::units::Rate::MAX_COUNT {
            errors.push((format!("{at}.burst"), format!("at most {} requests", crate::config::units::Rate::MAX_COUNT)));
            continue;
        }
        let key = match Key::compile(
            &r.key,
            scope(&r.name, &r.key, format!("rate:{}:{}", r.rate, r.burst), i),
            upstream,
            r.ipv6_prefix.unwrap_or(128),
        ) {
            Ok(k) => k,
            Err(e) => {
                errors.push((format!("{at}.key"), e));
                continue;
            }
        };
        let period = r.rate.per.as_nanos() as u64;
        let interval = period / r.rate.count.max(1);
        // Redis counts in microseconds (its Lua numbers are doubles: the
        // time in nanoseconds would not fit their 53 bits): a rate whose
        // step is under 10 µs would be enforced several percent off there.
        if stores.redis.is_some() && interval < MIN_REDIS_INTERVAL_NS {
            errors.push((
                format!("{at}.rate"),
                "faster than 100000/s cannot be counted in Redis (it counts whole microseconds: a slower \
                 rate's step is rounded to the nearest one, 5% off at 100000/s), where every limit is counted \
                 when `rate_limit_store.redis` is set: use a slower rate"
                    .into(),
            ));
            continue;
        }
        // The burst's time must fit the counters with room for the clock
        // (half of 584 years of nanoseconds: the clock counts from start).
        const MAX_BURST_NS: u64 = u64::MAX / 2;
        if interval.max(1).checked_mul(r.burst.saturating_add(1)).is_none_or(|t| t > MAX_BURST_NS) {
            errors.push((
                format!("{at}.burst"),
                format!("at most {} requests at this rate", MAX_BURST_NS / interval.max(1) - 1),
            ));
            continue;
        }
        let delay = (r.mode == Mode::Delay).then(|| r.delay.unwrap_or(0));
        let mut gcra = Gcra::new(r.rate.count, period, r.burst, delay);
        if let Some(name) = &r.name {
            gcra = gcra.sharing(shared_span(&cx.loaded.config, name));
        }
        // Advertised as "q requests per w seconds": the rate's own period,
        // plus the burst that may come on top of it.
        let window_secs = r.rate.per.as_secs().max(1);
        let quota = r.rate.count + r.burst;
        let policy = policy_value(&key.label, quota, window_secs);
        let decisions = Decisions::new(&registry, route, &key.label);
        let limit = RateLimit { key, gcra, quota, on_error: r.on_store_error, policy, decisions };
        let phase = if limit.key.only_ip() { &mut by_ip } else { &mut later };
        phase.delays |= delay.is_some();
        phase.rates.push(limit);
    }
    /// The largest quota the RateLimit headers can say (RFC 9651 §3.3.1).
    const MAX_QUOTA: u64 = 999_999_999_999_999;
    for (i, q) in quotas.iter().enumerate() {
        if q.ipv6_prefix.is_some_and(|p| p > 128) {
            errors.push((format!("quota[{i}].ipv6_prefix"), "a prefix length is 0 to 128".into()));
        }
        let prefix = q.ipv6_prefix.unwrap_or(128).min(128);
        match Key::compile(
            &q.key,
            scope(&q.name, &q.key, format!("quota:{}:{:?}", q.limit, q.per), i),
            upstream,
            prefix,
        ) {
            Ok(key) => {
                let policy = policy_value(&key.label, q.limit, period_secs(q.per));
                let decisions = Decisions::new(&registry, route, &key.label);
                let limit =
                    QuotaLimit { key, limit: q.limit, per: q.per, on_error: q.on_store_error, policy, decisions };
                if limit.key.only_ip() { by_ip.quotas.push(limit) } else { later.quotas.push(limit) }
            }
            Err(e) => errors.push((format!("quota[{i}].key"), e)),
        }
        if q.limit == 0 {
            errors.push((
                format!("quota[{i}].limit"),
                "a quota of 0 refuses everything; remove the route instead".into(),
            ));
        }
        // `RateLimit-Policy`'s `q` and `RateLimit`'s `r` are structured-field
        // integers: 15 digits at most (RFC 9651 §3.3.1), or a client's parser
        // drops the whole header.
        if q.limit > MAX_QUOTA {
            errors.push((
                format!("quota[{i}].limit"),
                format!(
                    "at most {MAX_QUOTA} (the RateLimit headers carry 15 digits); leave out the quota for no limit"
                ),
            ));
        }
        // One count in one window: a quota per minute and one per hour
        // sharing a name would each start the other's window over.
        if let Some(name) = &q.name {
            let routes = cx.loaded.config.routes.iter().flat_map(|r| &r.quota);
            let operations = cx.loaded.config.apis.iter().flat_map(|a| a.operations.values()).flat_map(|o| &o.quota);
            if let Some(other) = routes.chain(operations).find(|o| o.name.as_ref() == Some(name) && o.per != q.per) {
                errors.push((
                    format!("quota[{i}].per"),
                    format!(
                        "the quotas named `{name}` share one count, so one window: this one is per {}, another per {}",
                        format!("{:?}", q.per).to_lowercase(),
                        format!("{:?}", other.per).to_lowercase()
                    ),
                ));
            }
        }
    }
    for (i, c) in concurrency.iter().enumerate() {
        if c.ipv6_prefix.is_some_and(|p| p > 128) {
            errors.push((format!("concurrency[{i}].ipv6_prefix"), "a prefix length is 0 to 128".into()));
        }
        let prefix = c.ipv6_prefix.unwrap_or(128).min(128);
        match Key::compile(&c.key, scope(&c.name, &c.key, format!("conc:{}", c.max), i), upstream, prefix) {
            Ok(key) => {
                let decisions = Decisions::new(&registry, route, &key.label);
                let limit = ConcurrencyLimit { key, max: c.max, decisions };
                if limit.key.only_ip() { by_ip.concurrency.push(limit) } else { later.concurrency.push(limit) }
            }
            Err(e) => errors.push((format!("concurrency[{i}].key"), e)),
        }
        if c.max == 0 {
            errors.push((format!("concurrency[{i}].max"), "must be at least 1".into()));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let some = |c: Compiled| (!(c.rates.is_empty() && c.quotas.is_empty() && c.concurrency.is_empty())).then_some(c);
    Ok((some(by_ip), some(later)))
}

fn secs_ceil(ns: u64) -> u64 {
    ns.div_ceil(1_000_000_000)
}

impl Compiled {
    /// The limits without awaiting, when they need no Redis round trip and
    /// no delay (`None`: use `on_request`; nothing was counted).
    pub fn try_sync(&self, req: &mut request::Parts, ctx: &mut RequestCtx<'_>) -> Option<Outcome> {
        if self.stores.redis.is_some() || self.delays {
            return None;
        }
        let memory = &self.stores.memory;
        for r in &self.rates {
            let decision = memory.check(memory.key(&r.key.of(req, ctx)), r.key.tag, &r.gcra);
            if let Some(refused) = rate_decided(ctx, r, &decision) {
                return Some(refused);
            }
        }
        let now = self.clock.unix_secs();
        for q in &self.quotas {
            let (_, reset_at) = quota::window(q.per, now);
            let (allowed, used) = memory.quota(memory.key(&q.key.of(req, ctx)), q.key.tag, reset_at, now, q.limit);
            if let Some(refused) = quota_decided(ctx, q, allowed, used, reset_at.saturating_sub(now)) {
                return Some(refused);
            }
        }
        Some(self.acquire_slots(req, ctx))
    }

    pub async fn on_request(&self, req: &mut request::Parts, ctx: &mut RequestCtx<'_>) -> Outcome {
        if let Some(outcome) = self.try_sync(req, ctx) {
            return outcome;
        }
        let memory = &self.stores.memory;
        let mut hold = 0u64;
        for r in &self.rates {
            let id = r.key.of(req, ctx);
            let key = memory.key(&id);
            let decision = match &self.stores.redis {
                None => memory.check(key, r.key.tag, &r.gcra),
                Some(redis) => match redis.check(&id, &r.gcra).await {
                    Ok(d) => d,
                    Err(e) => {
                        self.stores.note_failure(&e);
                        match r.on_error {
                            OnStoreError::Open => memory.check(key, r.key.tag, &r.gcra),
                            OnStoreError::Closed => {
                                r.decisions.unavailable.inc();
                                return unavailable(ctx);
                            }
                        }
                    }
                },
            };
            if let Some(refused) = rate_decided(ctx, r, &decision) {
                return refused;
            }
            hold = hold.max(decision.delay);
        }
        let now = self.clock.unix_secs();
        for q in &self.quotas {
            let id = q.key.of(req, ctx);
            let key = memory.key(&id);
            let (window, reset_at) = quota::window(q.per, now);
            let (allowed, used) = match &self.stores.redis {
                None => memory.quota(key, q.key.tag, reset_at, now, q.limit),
                Some(redis) => match redis.quota(&id, window, reset_at.saturating_sub(now), q.limit).await {
                    Ok(r) => r,
                    Err(e) => {
                        self.stores.note_failure(&e);
                        match q.on_error {
                            OnStoreError::Open => memory.quota(key, q.key.tag, reset_at, now, q.limit),
                            OnStoreError::Closed => {
                                q.decisions.unavailable.inc();
                                return unavailable(ctx);
                            }
                        }
                    }
                },
            };
            if let Some(refused) = quota_decided(ctx, q, allowed, used, reset_at.saturating_sub(now)) {
                return refused;
            }
        }
        let outcome = self.acquire_slots(req, ctx);
        if hold > 0 && matches!(outcome, Outcome::Continue) {
            // Delay mode: released in arrival order, as TAT slots are handed out in order.
            tokio::time::sleep(Duration::from_nanos(hold)).await;
        }
        outcome
    }

    /// Concurrency slots, held by the request until its response is done.
    fn acquire_slots(&self, req: &request::Parts, ctx: &mut RequestCtx<'_>) -> Outcome {
        let memory = &self.stores.memory;
        for c in &self.concurrency {
            let key = memory.key(&c.key.of(req, ctx));
            let acquired = memory.acquire(key, c.max);
            c.decisions.count(acquired);
            if !acquired {
                let resp = problem::problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many requests in flight; retry shortly",
                    ctx.request_id,
                );
                return Outcome::Respond(resp);
            }
            ctx.slots.push(Slot::new(memory.clone(), key));
        }
        Outcome::Continue
    }
}

/// Notes a rate's decision for the headers; `Some` is the refusal.
fn rate_decided(ctx: &mut RequestCtx<'_>, r: &RateLimit, decision: &Decision) -> Option<Outcome> {
    r.decisions.count(decision.allowed);
    note(ctx, &r.policy, r.quota, decision);
    (!decision.allowed).then(|| too_many(ctx, decision.retry_after))
}

/// Notes a quota's state for the headers; `Some` is the refusal.
fn quota_decided(
    ctx: &mut RequestCtx<'_>,
    q: &QuotaLimit,
    allowed: bool,
    used: u64,
    reset_secs: u64,
) -> Option<Outcome> {
    q.decisions.count(allowed);
    let info =
        HeaderInfo { policy: q.policy.clone(), limit: q.limit, remaining: q.limit.saturating_sub(used), reset_secs };
    if !allowed {
        // The headers describe the limit that refused.
        ctx.rate_limit = Some(info);
        return Some(too_many(ctx, reset_secs * 1_000_000_000));
    }
    keep_tightest(ctx, info);
    None
}

fn note(ctx: &mut RequestCtx<'_>, policy: &HeaderValue, limit: u64, d: &Decision) {
    let info = HeaderInfo {
        policy: policy.clone(),
        limit,
        remaining: d.remaining,
        reset_secs: secs_ceil(if d.allowed { d.reset } else { d.retry_after }),
    };
    if d.allowed { keep_tightest(ctx, info) } else { ctx.rate_limit = Some(info) }
}

fn keep_tightest(ctx: &mut RequestCtx<'_>, info: HeaderInfo) {
    if ctx.rate_limit.as_ref().is_none_or(|cur| info.remaining < cur.remaining) {
        ctx.rate_limit = Some(info);
    }
}

fn too_many(ctx: &RequestCtx<'_>, retry_after_ns: u64) -> Outcome {
    let mut resp = problem::problem(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded; retry later", ctx.request_id);
    resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs_ceil(retry_after_ns).max(1)));
    Outcome::Respond(resp)
}

fn unavailable(ctx: &RequestCtx<'_>) -> Outcome {
    Outcome::Respond(problem::problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "the rate-limit service is unavailable",
        ctx.request_id,
    ))
}

/// The configured rate-limit headers for `info` (`None`: no headers).
pub fn header_fields(mode: RateLimitHeaders, info: &HeaderInfo) -> Option<LimitFields> {
    let ietf = matches!(mode, RateLimitHeaders::Ietf | RateLimitHeaders::Both);
    let legacy = matches!(mode, RateLimitHeaders::Legacy | RateLimitHeaders::Both);
    (ietf || legacy).then(|| LimitFields {
        ietf,
        legacy,
        policy: info.policy.clone(),
        limit: info.limit,
        remaining: info.remaining,
        reset_secs: info.reset_secs,
    })
}

/// A limit's `RateLimit-Policy` value, made when the config is compiled.
fn policy_value(label: &str, quota: u64, window_secs: u64) -> HeaderValue {
    // An sf-string (RFC 8941 §3.3.3): `"` and `\` escaped; it carries
    // printable ASCII only, so anything else (a route name's `é`) is `_`.
    let mut string = String::from("\"");
    for c in label.chars() {
        match c {
            '"' | '\\' => {
                string.push('\\');
                string.push(c);
            }
            ' '..='~' => string.push(c),
            _ => string.push('_'),
        }
    }
    string.push('"');
    let mut value = Vec::new();
    structured_item(&mut value, string.as_bytes(), [(b'q', quota), (b'w', window_secs)]);
    HeaderValue::try_from(value).unwrap_or(HeaderValue::from_static("\"limit\""))
}

/// How long a quota's window is, as `RateLimit-Policy` says it (`w`).
fn period_secs(per: quota::Period) -> u64 {
    match per {
        quota::Period::Minute => 60,
        quota::Period::Hour => 3600,
        quota::Period::Day => 86_400,
        quota::Period::Month => 30 * 86_400,
    }
}

#[cfg(test)]
mod tests;
