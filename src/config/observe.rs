//! The serde types of what operators watch the gateway through: the admin
//! listener, the access log and trace propagation/export.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The admin listener: `/healthz`, `/readyz`, `/status`, `/config`,
/// `/metrics`. Never one of the public listeners.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// `IP:PORT`. Loopback unless `token` is set.
    #[serde(default = "admin_bind")]
    pub bind: String,
    /// Bearer token asked of every admin path but `/healthz`
    /// (`Authorization: Bearer <token>`). Required on a non-loopback bind.
    /// Written but empty (`token: ${ADMIN_TOKEN}` with the variable set to
    /// nothing) is an empty token, refused, never no token at all.
    #[serde(default, deserialize_with = "written_even_if_empty")]
    pub token: Option<String>,
}

/// A key that is written is `Some`, also when its value is empty (`null`).
fn written_even_if_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(d).map(|v| Some(v.unwrap_or_default()))
}

fn admin_bind() -> String {
    "127.0.0.1:9901".into()
}

/// The access log: one line per request, written by a thread of its own.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    /// `stdout` (default) or a file path (appended to; reopened on SIGUSR1).
    #[serde(default = "stdout")]
    pub to: String,
    #[serde(default)]
    pub format: AccessLogFormat,
    /// Lines waiting to be written; when full, new lines are dropped and
    /// counted (`portcullis_access_log_dropped_total`), never the request.
    #[serde(default = "log_buffer")]
    pub buffer: usize,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        AccessLogConfig { to: stdout(), format: AccessLogFormat::default(), buffer: log_buffer() }
    }
}

fn stdout() -> String {
    "stdout".into()
}

fn log_buffer() -> usize {
    8192
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    /// One JSON object per line, Elastic Common Schema field names.
    #[default]
    Ecs,
    /// NGINX's `combined` text format plus request id, route and flag.
    Combined,
}

/// How the gateway's own log is written: text lines, or one JSON object a
/// line (for a log shipper: a multi-line message stays one event).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The gateway's own log level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// Traces: W3C `traceparent` propagation is always on; `otlp` exports spans.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// Export spans over OTLP/HTTP.
    pub otlp: Option<OtlpConfig>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// The collector's base URL (`/v1/traces` is appended).
    pub endpoint: String,
    /// Share of new traces exported, 0.0 to 1.0 (a sampled parent is always followed).
    #[serde(default = "one")]
    pub sample: f64,
    /// Extra headers on every export request (an API key for a hosted backend).
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// CA bundle (PEM) to trust for an `https` endpoint instead of the
    /// Mozilla roots (a collector with an internal CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
}

fn one() -> f64 {
    1.0
}
