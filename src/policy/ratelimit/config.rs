//! Config types for rate limits, quotas, concurrency limits and their store.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::units::{Duration, Rate};

/// What a limit counts by. A request that lacks the value (no consumer, no
/// such header or claim) is counted by its client IP instead, so leaving a
/// header out never escapes a limit.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum KeyPart {
    /// The client address (after trusted-proxy resolution).
    Ip,
    /// The authenticated consumer (or token subject).
    Consumer,
    /// The route.
    Route,
    /// The route's upstream (shared by every route that uses it).
    Upstream,
    /// A request header's value.
    Header(String),
    /// A claim of the verified token (dots for nesting).
    Claim(String),
}

/// One key part, or a list of them combined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum KeySpec {
    One(KeyPart),
    Many(Vec<KeyPart>),
}

impl KeySpec {
    pub fn parts(&self) -> &[KeyPart] {
        match self {
            KeySpec::One(p) => std::slice::from_ref(p),
            KeySpec::Many(v) => v,
        }
    }
}

// By hand instead of `untagged`: untagged enums hide the real error behind
// "did not match any variant".
impl<'de> Deserialize<'de> for KeySpec {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer, StrDeserializer};
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = KeySpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "`ip`, `consumer`, `route`, `upstream`, `{ header: NAME }`, `{ claim: NAME }` or a list of them",
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<KeySpec, E> {
                KeyPart::deserialize(StrDeserializer::<E>::new(v)).map(KeySpec::One)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<KeySpec, A::Error> {
                KeyPart::deserialize(MapAccessDeserializer::new(map)).map(KeySpec::One)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<KeySpec, A::Error> {
                Vec::<KeyPart>::deserialize(SeqAccessDeserializer::new(seq)).map(KeySpec::Many)
            }
        }
        de.deserialize_any(Visit)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The burst is admitted at once (NGINX `burst=N nodelay`).
    #[default]
    Nodelay,
    /// Excess requests wait for their slot (NGINX `burst=N`, with `delay=D`).
    Delay,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnStoreError {
    /// Fall back to this instance's own counters (logged and counted).
    #[default]
    Open,
    /// Refuse with 503 while the shared store is unreachable.
    Closed,
}

/// `{ key: ip, rate: 10/s, burst: 20 }`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub key: KeySpec,
    pub rate: Rate,
    /// Requests allowed beyond the rate, at once (nodelay) or queued (delay).
    #[serde(default)]
    #[schemars(range(max = 1_000_000_000))]
    pub burst: u64,
    #[serde(default)]
    pub mode: Mode,
    /// With `mode: delay`: this many excess requests go at once, the rest wait.
    pub delay: Option<u64>,
    /// Limits with the same name share one budget across routes.
    pub name: Option<String>,
    #[serde(default)]
    pub on_store_error: OnStoreError,
    /// Count IPv6 clients by network prefix (e.g. 64) instead of address.
    #[schemars(range(max = 128))]
    pub ipv6_prefix: Option<u8>,
}

/// `{ key: consumer, limit: 10000, per: day }`: a budget per calendar window (UTC).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    pub key: KeySpec,
    #[schemars(range(min = 1))]
    pub limit: u64,
    pub per: Period,
    pub name: Option<String>,
    #[serde(default)]
    pub on_store_error: OnStoreError,
    /// Count IPv6 clients by network prefix (e.g. 64) instead of address.
    #[schemars(range(max = 128))]
    pub ipv6_prefix: Option<u8>,
}

/// `{ key: ip, max: 10 }`: requests in flight at once (NGINX `limit_conn`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConcurrencyConfig {
    pub key: KeySpec,
    pub max: u32,
    pub name: Option<String>,
    /// Count IPv6 clients by network prefix (e.g. 64) instead of address.
    #[schemars(range(max = 128))]
    pub ipv6_prefix: Option<u8>,
}

/// Where counters live.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitStoreConfig {
    /// Share rate and quota counters between gateway instances.
    pub redis: Option<RedisConfig>,
    /// Keys kept by the in-memory store (idle keys are evicted first).
    #[schemars(range(min = 1))]
    pub max_keys: usize,
}

impl Default for RateLimitStoreConfig {
    fn default() -> Self {
        RateLimitStoreConfig { redis: None, max_keys: 1_000_000 }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:6379/0` (TLS `rediss://` is not supported yet).
    pub url: String,
    /// Longest a request waits for Redis before the failure policy applies.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
}

fn default_timeout() -> Duration {
    Duration(std::time::Duration::from_millis(100))
}

fn default_prefix() -> String {
    "portcullis:".into()
}

/// Which rate-limit headers responses carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitHeaders {
    /// IETF `RateLimit-Policy` and `RateLimit`.
    #[default]
    Ietf,
    /// `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`.
    Legacy,
    Both,
    None,
}

/// A quota's calendar window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Minute,
    Hour,
    Day,
    Month,
}

/// A route's limits, as the registry hands them over: the route's
/// `rate_limit`, `quota` and `concurrency` lists.
#[derive(Debug, Clone, Copy)]
pub struct RouteLimits<'a> {
    pub rate_limit: &'a [RateLimitConfig],
    pub quota: &'a [QuotaConfig],
    pub concurrency: &'a [ConcurrencyConfig],
}
