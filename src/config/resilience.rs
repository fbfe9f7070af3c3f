//! How an upstream copes with sick targets and overload: `health`, `retry`,
//! `limits` and `breaker` (and a route's `retry` override).

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use super::units::{Duration, Percent};

fn secs(n: u64) -> Duration {
    Duration(std::time::Duration::from_secs(n))
}

fn millis(n: u64) -> Duration {
    Duration(std::time::Duration::from_millis(n))
}

/// `upstreams.<name>.health`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Probes sent to every target on a timer.
    pub active: Option<ActiveHealthConfig>,
    /// Ejection of targets that fail live traffic (outlier detection).
    pub passive: Option<PassiveHealthConfig>,
    /// What to do when no target is left healthy.
    #[serde(default)]
    pub all_unhealthy: AllUnhealthy,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ActiveHealthConfig {
    /// Path of the `GET` probe.
    pub path: String,
    pub interval: Duration,
    /// A probe not answered in this time failed.
    pub timeout: Duration,
    /// Passed probes in a row that make an unhealthy target healthy.
    pub healthy: u32,
    /// Failed probes in a row that make a healthy target unhealthy.
    pub unhealthy: u32,
    /// Statuses that pass: `"200-399"`, `"204"`.
    pub expect: Vec<String>,
}

impl Default for ActiveHealthConfig {
    fn default() -> Self {
        ActiveHealthConfig {
            path: "/healthz".into(),
            interval: secs(5),
            timeout: secs(1),
            healthy: 2,
            unhealthy: 3,
            expect: vec!["200-399".into()],
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PassiveHealthConfig {
    /// Failures in a row (5xx, connect failure, reset, timeout) that eject a target.
    pub consecutive_failures: u32,
    /// First ejection; each later one lasts this times the number of ejections.
    pub base_ejection: Duration,
    /// Longest ejection.
    pub max_ejection: Duration,
    /// Most of the pool ejected at once (at least one target may always be).
    pub max_ejected: Percent,
    /// `false`: only log and count what would be ejected.
    pub enforce: bool,
}

impl Default for PassiveHealthConfig {
    fn default() -> Self {
        PassiveHealthConfig {
            consecutive_failures: 5,
            base_ejection: secs(30),
            max_ejection: secs(300),
            max_ejected: Percent(0.5),
            enforce: true,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AllUnhealthy {
    /// Send to every target as if all were healthy (Envoy's panic mode).
    #[default]
    ServeAll,
    /// Refuse with 503.
    Fail,
}

/// `upstreams.<name>.retry` (every field) or a route's `retry` (any field:
/// the rest comes from the upstream's).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Tries in all, the first included (1: no retries).
    #[schemars(range(min = 1, max = 10))]
    pub attempts: Option<u32>,
    /// Conditions that allow another try: `connect_failure`, `reset`,
    /// `timeout`, a status (`"503"`) or `"5xx"`.
    pub on: Option<Vec<RetryOn>>,
    /// Methods retried on conditions where the upstream may have acted
    /// (default: the idempotent ones).
    pub methods: Option<Vec<String>>,
    /// Time allowed to each try (within the upstream's `timeouts.request`).
    pub per_try_timeout: Option<Duration>,
    pub backoff: Option<BackoffConfig>,
    /// Upstream only: the share of traffic retries may add.
    pub budget: Option<BudgetConfig>,
    /// Largest request body kept to send again (default 64KiB); a longer
    /// body is not retried.
    pub buffer: Option<super::units::ByteSize>,
}

/// A condition that allows a retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOn {
    /// `connect_failure`, `reset`, `timeout`, `5xx`.
    Named(RetryCondition),
    /// A response status, as a number or a string.
    Status(u16),
}

impl JsonSchema for RetryOn {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RetryOn".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let named = generator.subschema_for::<RetryCondition>();
        schemars::json_schema!({
            "description": "A condition that allows a retry: `connect_failure`, `reset`, `timeout`, `5xx`, or a status (`503` or \"503\").",
            "anyOf": [
                named,
                { "type": "integer", "minimum": 100, "maximum": 599 },
                { "type": "string", "pattern": "^[1-5][0-9][0-9]$" }
            ]
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RetryCondition {
    /// The request never reached the upstream (refused, connect timeout).
    ConnectFailure,
    /// The connection closed or reset before a response.
    Reset,
    /// The try ran out of time.
    Timeout,
    /// Any 5xx response.
    #[serde(rename = "5xx")]
    ServerError,
}

impl serde::Serialize for RetryOn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RetryOn::Named(c) => c.serialize(s),
            RetryOn::Status(n) => s.serialize_u16(*n),
        }
    }
}

impl<'de> Deserialize<'de> for RetryOn {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = RetryOn;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`connect_failure`, `reset`, `timeout`, `5xx` or a status such as \"503\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RetryOn, E> {
                match u16::try_from(v) {
                    Ok(s) if (100..=599).contains(&s) => Ok(RetryOn::Status(s)),
                    _ => Err(E::custom(format!("{v} is not an HTTP status"))),
                }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RetryOn, E> {
                Err(E::custom(format!("{v} is not an HTTP status")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RetryOn, E> {
                Ok(RetryOn::Named(match v {
                    "connect_failure" => RetryCondition::ConnectFailure,
                    "reset" => RetryCondition::Reset,
                    "timeout" => RetryCondition::Timeout,
                    "5xx" => RetryCondition::ServerError,
                    _ => match v.parse::<u64>() {
                        Ok(n) => return self.visit_u64(n),
                        Err(_) => {
                            return Err(E::custom(format!(
                                "`{v}` is not a retry condition; use `connect_failure`, `reset`, `timeout`, `5xx` or a status such as \"503\""
                            )));
                        }
                    },
                }))
            }
        }
        de.deserialize_any(Visit)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BackoffConfig {
    /// Wait before the first retry (at most; jittered).
    pub base: Duration,
    /// Longest wait, however many retries.
    pub max: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig { base: millis(25), max: millis(250) }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetConfig {
    /// Retries allowed per request of the last `window`.
    pub ratio: Percent,
    /// Retries allowed per second on top of `ratio` (for quiet upstreams).
    pub min_per_second: u32,
    pub window: Duration,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig { ratio: Percent(0.2), min_per_second: 10, window: secs(10) }
    }
}

/// `upstreams.<name>.limits`: above them, an immediate 503.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamLimitsConfig {
    /// Open HTTP/1.1 connections to the upstream's targets, all together.
    pub max_connections: Option<usize>,
    /// Requests waiting for a connection when `max_connections` are busy.
    pub max_pending: Option<usize>,
    /// Requests in flight to the upstream (1,024 when unset).
    pub max_requests: Option<usize>,
}

/// Requests in flight to one upstream when `limits.max_requests` is not
/// set: Envoy's default for a cluster. Without a cap, a service that stops
/// answering holds every request sent to it (and an upstream connection,
/// a file descriptor, each) for `timeouts.request`: HTTP/2 clients, 128
/// streams a connection, could take the gateway to its open-file limit,
/// and every other route and the admin API with it.
pub const DEFAULT_MAX_REQUESTS: usize = 1024;

impl UpstreamLimitsConfig {
    /// `max_requests`, or its default.
    pub fn effective_max_requests(&self) -> usize {
        self.max_requests.unwrap_or(DEFAULT_MAX_REQUESTS)
    }
}

/// `upstreams.<name>.breaker`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Failures in a row that open the breaker (0: off).
    pub consecutive_failures: u32,
    /// Share of failed requests over `window` that opens it.
    pub error_ratio: Option<Percent>,
    pub window: Duration,
    /// Requests in the window before `error_ratio` counts.
    pub min_requests: u32,
    /// How long it stays open before one probe request.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            consecutive_failures: 10,
            error_ratio: None,
            window: secs(10),
            min_requests: 20,
            open_for: secs(10),
        }
    }
}
