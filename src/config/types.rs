//! The config file's serde types: exactly what a user may write, nothing
//! more (`deny_unknown_fields` everywhere). Meaning is checked later, when
//! `plan` compiles these into the runtime form.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::units::{ByteSize, Duration};
use crate::policy::auth::config::{ConsumerConfig, IdentityHeadersConfig, ProviderConfig};
use crate::policy::authz::config::AuthorizeConfig;
use crate::policy::cors::config::CorsConfig;
use crate::policy::deprecation::config::DeprecationConfig;
use crate::policy::headers::config::HeaderOpsConfig;
use crate::policy::ip::config::IpConfig;
use crate::policy::ratelimit::config::{
    ConcurrencyConfig, QuotaConfig, RateLimitConfig, RateLimitHeaders, RateLimitStoreConfig,
};
use crate::policy::security_headers::config::SecurityHeadersConfig;
use crate::policy::validate::config::ValidateConfig;

/// The whole gateway config.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the gateway accepts client connections.
    #[serde(default)]
    pub listeners: Vec<ListenerConfig>,
    /// Peers (CIDRs) whose `X-Forwarded-For`, `Forwarded`, `X-Forwarded-Proto`,
    /// `X-Forwarded-Host` and `X-Request-Id` headers are believed.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// The header a trusted proxy names the client in: `x-forwarded-for`
    /// (default) or `forwarded` (RFC 7239). Only that one is read.
    #[serde(default)]
    pub client_ip_header: ClientIpHeader,
    /// How request paths are normalized before routing.
    #[serde(default)]
    pub path_normalization: NormalizeConfig,
    /// Named pools of backend targets.
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// The route table. Order does not matter: the most specific match wins.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// OpenAPI documents whose operations become routes (with their
    /// parameters, bodies and security checked).
    #[serde(default)]
    pub apis: Vec<ApiConfig>,
    /// Security headers on every response (routes may override or opt out).
    #[serde(default)]
    pub security_headers: SecurityHeadersConfig,
    /// How long in-flight requests may run after SIGTERM/SIGINT before the gateway exits.
    #[serde(default = "thirty_seconds")]
    pub shutdown_timeout: Duration,
    /// How long the gateway keeps accepting and serving after SIGTERM/SIGINT,
    /// with `/readyz` answering 503, before it stops accepting and drains:
    /// time for load balancers to see it leave (default 0s).
    #[serde(default = "no_delay")]
    pub shutdown_delay: Duration,
    /// Most bytes of bodies read whole (request bodies being validated,
    /// aggregate calls' answers) held in memory at once, across every
    /// request: a read past it is refused with 503 (default 256MiB).
    #[serde(default = "max_buffered")]
    pub max_buffered: ByteSize,
    /// Named authentication providers, attached to routes by `authenticate`.
    #[serde(default)]
    pub auth: BTreeMap<String, ProviderConfig>,
    /// Known callers (API keys, Basic users, client certificates, groups).
    #[serde(default)]
    pub consumers: Vec<ConsumerConfig>,
    /// Headers that carry the identity upstream (stripped from client requests).
    #[serde(default)]
    pub identity_headers: IdentityHeadersConfig,
    /// Where rate-limit and quota counters live (in memory unless Redis is set).
    #[serde(default)]
    pub rate_limit_store: RateLimitStoreConfig,
    /// Rate-limit headers on responses: `ietf` (default), `legacy`, `both`, `none`.
    #[serde(default)]
    pub rate_limit_headers: RateLimitHeaders,
    /// The admin listener (metrics, health, status). None unless set.
    pub admin: Option<super::AdminConfig>,
    /// The access log. None unless set (`access_log: {}` logs to stdout as ECS JSON).
    pub access_log: Option<super::AccessLogConfig>,
    /// Trace context propagation and export.
    #[serde(default)]
    pub tracing: super::TracingConfig,
    /// Named string formats for JSON Schemas (`format: e164`): a regular
    /// expression a string must match (`^\\+[1-9][0-9]{7,14}$`).
    #[serde(default)]
    pub formats: BTreeMap<String, String>,
    /// The gateway's own log level (`error`, `warn`, `info`, `debug`,
    /// `trace`); `RUST_LOG` overrides it. Default `info`.
    #[serde(default)]
    pub log_level: super::LogLevel,
    /// The gateway's own log as `text` lines (default) or `json`, one
    /// object a line. Read when the gateway starts (a reload keeps it).
    #[serde(default)]
    pub log_format: super::LogFormat,
    /// `portcullis check`'s warnings this deployment means (`allow:
    /// [unused-upstream]`); docs/config.md#warnings lists them.
    #[serde(default)]
    pub warnings: WarningsConfig,
}

/// Warnings silenced on purpose.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WarningsConfig {
    /// Names of warnings not to report (`check` prints each warning's name after it).
    #[serde(default)]
    #[schemars(schema_with = "warning_names")]
    pub allow: Vec<String>,
}

/// Which forwarding header names the client, behind trusted proxies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ClientIpHeader {
    #[default]
    XForwardedFor,
    Forwarded,
}

fn max_buffered() -> ByteSize {
    ByteSize(256 << 20)
}

fn thirty_seconds() -> Duration {
    Duration(std::time::Duration::from_secs(30))
}

fn no_delay() -> Duration {
    Duration(std::time::Duration::ZERO)
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listeners: Vec::new(),
            trusted_proxies: Vec::new(),
            client_ip_header: ClientIpHeader::default(),
            path_normalization: NormalizeConfig::default(),
            upstreams: BTreeMap::new(),
            routes: Vec::new(),
            apis: Vec::new(),
            security_headers: SecurityHeadersConfig::default(),
            shutdown_timeout: thirty_seconds(),
            shutdown_delay: no_delay(),
            max_buffered: max_buffered(),
            auth: BTreeMap::new(),
            consumers: Vec::new(),
            identity_headers: IdentityHeadersConfig::default(),
            rate_limit_store: RateLimitStoreConfig::default(),
            rate_limit_headers: RateLimitHeaders::default(),
            admin: None,
            access_log: None,
            tracing: super::TracingConfig::default(),
            log_level: super::LogLevel::default(),
            log_format: super::LogFormat::default(),
            warnings: WarningsConfig::default(),
            formats: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    pub name: String,
    /// `IP:PORT`, e.g. `0.0.0.0:8080` or `[::1]:8080`. Port 0 picks a free port.
    pub bind: String,
    /// Terminate TLS on this listener.
    pub tls: Option<ListenerTlsConfig>,
    /// Answer every request with a 308 redirect to `https://` on this port.
    pub redirect_https: Option<u16>,
    /// Connection and request limits.
    #[serde(default)]
    pub limits: ListenerLimits,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListenerTlsConfig {
    /// Certificate and key pairs. SNI picks one by name; the first is the default.
    pub certificates: Vec<CertificateConfig>,
    /// Ask clients for a certificate (mutual TLS).
    pub client_auth: Option<ClientAuthConfig>,
    #[serde(default)]
    pub hsts: HstsConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// PEM file: the certificate chain, leaf first.
    pub cert: String,
    /// PEM file: the private key.
    pub key: String,
    /// Names this certificate serves (`api.example.com`, `*.example.com`).
    /// Default: the DNS names in the certificate.
    #[serde(default)]
    pub server_names: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientAuthConfig {
    /// PEM file of the CA certificates that sign client certificates.
    pub ca: String,
    /// Refuse the handshake without a valid client certificate (default). When
    /// false, a certificate is verified if sent, and routes decide.
    #[serde(default = "yes")]
    pub required: bool,
}

/// `Strict-Transport-Security` on responses sent over TLS.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct HstsConfig {
    pub enabled: bool,
    pub max_age: Duration,
    pub include_subdomains: bool,
    pub preload: bool,
}

impl Default for HstsConfig {
    fn default() -> Self {
        HstsConfig {
            enabled: true,
            max_age: Duration(std::time::Duration::from_secs(365 * 86_400)),
            include_subdomains: false,
            preload: false,
        }
    }
}

/// Defences against slow and abusive clients. Every limit has a safe default.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ListenerLimits {
    /// Open connections at once; more are closed as soon as they are accepted.
    #[schemars(range(min = 1))]
    pub max_connections: usize,
    /// Time to complete the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Time to receive a request's headers, from their first byte
    /// (slowloris). Also bounds the wait for a new connection's first request.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed
    /// (HTTP/2: with GOAWAY). On plain HTTP/1.1 also the longest a client
    /// may leave a response unread.
    pub idle_timeout: Duration,
    /// Longest pause between two pieces of a request body (slow POST): 408.
    pub body_read_timeout: Duration,
    /// Largest request head (request line and headers): 431.
    pub max_header_size: ByteSize,
    /// Most request headers: 431.
    #[schemars(range(min = 1))]
    pub max_headers: usize,
    /// Longest request-target (path and query): 414.
    pub max_uri_length: ByteSize,
    /// Largest request body, unless a route sets `max_body_size`: 413.
    pub max_body_size: ByteSize,
    /// HTTP/2 streams open at once per connection.
    #[schemars(range(min = 1))]
    pub h2_max_concurrent_streams: u32,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        let secs = |s| Duration(std::time::Duration::from_secs(s));
        ListenerLimits {
            max_connections: 10_000,
            tls_handshake_timeout: secs(10),
            header_read_timeout: secs(10),
            idle_timeout: secs(60),
            body_read_timeout: secs(30),
            max_header_size: ByteSize(32 << 10),
            max_headers: 100,
            max_uri_length: ByteSize(8 << 10),
            max_body_size: ByteSize(10 << 20),
            h2_max_concurrent_streams: 128,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct NormalizeConfig {
    /// Merge runs of `/` into one (`//a///b` becomes `/a/b`).
    pub merge_slashes: bool,
    /// Reject (400) `%2F` and `%5C` (encoded `/` and `\`) in paths.
    pub reject_encoded_slash: bool,
    /// Reject (400) double-encoded octets such as `%252e`.
    pub reject_double_encoding: bool,
    /// Decode `%3A`, `%40` and the sub-delimiters `! $ & ' ( ) * , =`
    /// (all but `+`) before matching and forwarding: most services decode
    /// them before routing, so `/jobs/7%3Acancel` is their `/jobs/7:cancel`.
    pub decode_delimiters: bool,
    /// Segment parameters (`/admin;x/secret`, `/a;jsessionid=1`), which Java
    /// servers and others cut off before routing: `reject` (400, default)
    /// or `strip` (removed before matching and forwarding).
    pub path_parameters: PathParameters,
}

/// What happens to `;` parameters in path segments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PathParameters {
    #[default]
    Reject,
    Strip,
}

impl Default for NormalizeConfig {
    fn default() -> Self {
        NormalizeConfig {
            merge_slashes: true,
            reject_encoded_slash: true,
            reject_double_encoding: true,
            decode_delimiters: true,
            path_parameters: PathParameters::Reject,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Target URLs (`http://host:port` or `https://host:port`), optionally with a weight.
    pub targets: Vec<TargetConfig>,
    #[serde(default)]
    pub balance: BalanceConfig,
    #[serde(default)]
    pub timeouts: TimeoutsConfig,
    /// Protocol spoken to the targets. `auto` is HTTP/1.1 for `http://`
    /// targets and ALPN (h2 or HTTP/1.1) for `https://` targets.
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    /// TLS settings for `https://` targets.
    #[serde(default)]
    pub tls: UpstreamTlsConfig,
    #[serde(default)]
    pub pool: PoolConfig,
    /// Active probes and passive ejection of failing targets.
    #[serde(default)]
    pub health: super::resilience::HealthConfig,
    /// When a failed try is tried again (default: only a connect failure, once).
    #[serde(default)]
    pub retry: super::resilience::RetryConfig,
    /// Connections, waiting and in-flight requests above which requests get 503.
    #[serde(default)]
    pub limits: super::resilience::UpstreamLimitsConfig,
    /// Stops sending to an upstream that keeps failing, for a while.
    pub breaker: Option<super::resilience::BreakerConfig>,
}

/// `"http://host:port"` or `{ url: "http://host:port", weight: 2 }`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum TargetConfig {
    Url(String),
    Weighted(WeightedTarget),
}

// By hand instead of `untagged`: untagged enums hide the real error (a typo
// in `weight`) behind "did not match any variant".
impl<'de> Deserialize<'de> for TargetConfig {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = TargetConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a target URL or `{ url: ..., weight: N }`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<TargetConfig, E> {
                Ok(TargetConfig::Url(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<TargetConfig, A::Error> {
                WeightedTarget::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(TargetConfig::Weighted)
            }
        }
        de.deserialize_any(Visit)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WeightedTarget {
    pub url: String,
    /// Relative share of requests, 1-1000.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 1000))]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum BalanceConfig {
    /// Smooth weighted round robin (NGINX's algorithm).
    #[default]
    RoundRobin,
    /// The target with the fewest requests in flight (relative to its weight).
    LeastRequest,
    /// The same key always goes to the same target while the pool is unchanged.
    ConsistentHash(HashKeyConfig),
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum HashKeyConfig {
    /// The value of this request header.
    Header(String),
    /// The value of this cookie.
    Cookie(String),
    /// The client address (after trusted-proxy resolution); write `client_ip: true`.
    ClientIp(bool),
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutsConfig {
    /// Time allowed to open a TCP (and TLS) connection to a target.
    pub connect: Duration,
    /// Time allowed from sending the request until the response headers arrive.
    pub request: Duration,
    /// The longest pause between two pieces of the response body (NGINX's
    /// `proxy_read_timeout`): a body that stalls longer is cut off.
    pub read: Duration,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        TimeoutsConfig {
            connect: Duration(std::time::Duration::from_secs(5)),
            request: Duration(std::time::Duration::from_secs(60)),
            read: Duration(std::time::Duration::from_secs(60)),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    #[default]
    Auto,
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 only: h2c with prior knowledge on `http://`, ALPN `h2` on `https://`.
    Http2,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    /// PEM file of CA certificates that sign the targets' certificates.
    /// Without it, the Mozilla root set (webpki-roots) is used.
    pub ca: Option<String>,
    /// Name checked against the targets' certificates (and sent as SNI),
    /// when it differs from the host in the target URL.
    pub server_name: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    /// Idle keep-alive connections kept per target.
    pub max_idle_per_target: usize,
    /// How long an idle connection is kept.
    pub idle_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig { max_idle_per_target: 256, idle_timeout: Duration(std::time::Duration::from_secs(90)) }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Unique name, used in logs and errors.
    pub name: String,
    #[serde(rename = "match", default)]
    pub matcher: MatchConfig,
    /// Proxy to this upstream (one of `upstream`, `echo`, `static`, `redirect`).
    pub upstream: Option<String>,
    /// Answer with the request itself, as JSON.
    pub echo: Option<EchoConfig>,
    /// Answer with a fixed response.
    #[serde(rename = "static")]
    pub static_response: Option<StaticConfig>,
    /// Answer with a redirect.
    pub redirect: Option<RedirectConfig>,
    /// Answer with several upstream calls composed into one JSON document.
    pub aggregate: Option<super::aggregate::AggregateConfig>,
    /// Path and host rewrites applied before forwarding.
    pub rewrite: Option<RewriteConfig>,
    /// Replaces fields of the upstream's `retry` for this route.
    pub retry: Option<super::resilience::RetryConfig>,
    /// Keep the client's `Host` header (default) or send the target's.
    #[serde(default = "yes")]
    pub preserve_host: bool,
    /// Pass WebSocket upgrades (`Upgrade: websocket`) on to the upstream and
    /// tunnel the connection after its valid `101`. Off by default: an
    /// upgrade asked of any other route is ignored (served as a plain request).
    #[serde(default)]
    pub websocket: bool,
    /// Checks of the request's parameters, headers and body (400, 413, 415).
    pub validate: Option<ValidateConfig>,
    /// Headers set on or removed from the request sent upstream.
    pub request_headers: Option<HeaderOpsConfig>,
    /// Headers set on or removed from the response sent to the client.
    pub response_headers: Option<HeaderOpsConfig>,
    /// Mark the route deprecated (RFC 9745 `Deprecation`, RFC 8594 `Sunset`).
    pub deprecated: Option<DeprecationConfig>,
    /// Largest request body on this route (overrides the listener's): 413.
    pub max_body_size: Option<ByteSize>,
    /// Replaces the top-level `security_headers` for this route.
    pub security_headers: Option<SecurityHeadersConfig>,
    /// Cross-origin resource sharing for browsers.
    pub cors: Option<CorsConfig>,
    /// Client IP allow/deny lists, checked before authentication.
    pub ip: Option<IpConfig>,
    /// Acceptable authentication providers (any one suffices); absent: public.
    #[serde(default)]
    pub authenticate: Vec<String>,
    /// With `authenticate`: a request that presents no credential passes
    /// as anonymous (no identity); one that presents a credential still
    /// needs a valid one. OpenAPI's optional security (`{}` among the
    /// requirements).
    #[serde(default)]
    pub anonymous: bool,
    /// What the authenticated caller needs (scopes, claims, groups).
    pub authorize: Option<AuthorizeConfig>,
    /// Rate limits; a request must pass all of them.
    #[serde(default)]
    pub rate_limit: Vec<RateLimitConfig>,
    /// Budgets per calendar minute, hour, day or month (UTC).
    #[serde(default)]
    pub quota: Vec<QuotaConfig>,
    /// Requests in flight at once.
    #[serde(default)]
    pub concurrency: Vec<ConcurrencyConfig>,
}

fn yes() -> bool {
    true
}

/// An OpenAPI 3.0 or 3.1 document served by an upstream: each operation
/// becomes a route named `<name>.<operationId>`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    pub name: String,
    /// The document (YAML or JSON), relative to the config's folder.
    pub openapi: String,
    /// Where its paths are served. Default: the path of `servers[0].url`.
    pub base_path: Option<String>,
    pub upstream: String,
    /// A path or method the document does not declare gets 404 / 405
    /// (default); `false` passes it to the upstream unchecked.
    #[serde(default = "yes")]
    pub strict: bool,
    /// Serves the document: as JSON at `<docs>/openapi.json` and as an HTML
    /// reference page at `<docs>` (e.g. `/v3/docs`).
    pub docs: Option<DocsConfig>,
    #[serde(default)]
    pub validate: ApiValidateConfig,
    /// `securitySchemes` name -> auth provider name.
    #[serde(default)]
    pub security: BTreeMap<String, String>,
    /// Additions per operationId: what a route takes besides its match and validation.
    #[serde(default)]
    pub operations: BTreeMap<String, OperationExtras>,
    /// Limits on JSON bodies (each unset one keeps its default).
    #[serde(default)]
    pub json_limits: crate::policy::validate::config::JsonLimitsConfig,
    /// Query parameters an operation does not declare: `allow` (default) or `deny`.
    #[serde(default)]
    pub additional_query: crate::policy::validate::config::AdditionalQuery,
    /// Names of the listeners that serve the API (its operations, its
    /// `docs`, its undeclared paths); absent means every listener.
    pub listeners: Option<Vec<String>>,
}

/// `docs: /v3/docs`, or `{ path: /v3/docs, authenticate: [...], ... }`
/// to serve the contract to some callers only.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum DocsConfig {
    Path(String),
    Guarded(GuardedDocs),
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GuardedDocs {
    pub path: String,
    /// Providers of which any one must accept the caller.
    #[serde(default)]
    pub authenticate: Vec<String>,
    pub authorize: Option<AuthorizeConfig>,
    /// Client IP allow/deny lists.
    pub ip: Option<IpConfig>,
}

impl DocsConfig {
    pub fn path(&self) -> &str {
        match self {
            DocsConfig::Path(p) => p,
            DocsConfig::Guarded(g) => &g.path,
        }
    }
}

// By hand, as `TargetConfig`: an untagged enum hides the real error.
impl<'de> Deserialize<'de> for DocsConfig {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = DocsConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a path such as `/v3/docs`, or `{ path: /v3/docs, authenticate: [...] }`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DocsConfig, E> {
                Ok(DocsConfig::Path(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<DocsConfig, A::Error> {
                GuardedDocs::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(DocsConfig::Guarded)
            }
        }
        de.deserialize_any(Visit)
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiValidateConfig {
    #[serde(default)]
    pub request: RequestValidation,
    /// `report`: upstream responses that the document does not declare
    /// (status, media type, JSON body) are logged and counted; the response
    /// is still sent as it is. `off` (default): not checked.
    #[serde(default)]
    pub response: ResponseValidation,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResponseValidation {
    #[default]
    Off,
    Report,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RequestValidation {
    /// Refuse what breaks the document (default).
    #[default]
    Enforce,
    /// Let everything through; log and count what `enforce` would refuse.
    Report,
    /// Check nothing (routing and security still follow the document).
    Off,
}

/// What an operation's route may add.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OperationExtras {
    pub rewrite: Option<RewriteConfig>,
    pub retry: Option<super::resilience::RetryConfig>,
    pub request_headers: Option<HeaderOpsConfig>,
    pub response_headers: Option<HeaderOpsConfig>,
    pub deprecated: Option<DeprecationConfig>,
    pub max_body_size: Option<ByteSize>,
    pub cors: Option<CorsConfig>,
    pub ip: Option<IpConfig>,
    /// Replaces what the document's `security` implies.
    pub authorize: Option<AuthorizeConfig>,
    #[serde(default)]
    pub rate_limit: Vec<RateLimitConfig>,
    #[serde(default)]
    pub quota: Vec<QuotaConfig>,
    #[serde(default)]
    pub concurrency: Vec<ConcurrencyConfig>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// `api.example.com` (exact) or `*.example.com` (any subdomain).
    pub host: Option<String>,
    /// Whole path: literal segments, `{param}` for one segment, `{*rest}` as
    /// the last segment for one or more segments.
    pub path: Option<String>,
    /// Path prefix, matched at segment boundaries (`/api` matches `/api` and
    /// `/api/x`, not `/apix`).
    pub path_prefix: Option<String>,
    /// Allowed methods; absent means any.
    pub methods: Option<Vec<String>>,
    /// Header conditions: presence (no `value`) or exact value.
    #[serde(default)]
    pub headers: Vec<HeaderMatchConfig>,
    /// API version selector.
    pub version: Option<VersionConfig>,
    /// Names of the listeners the route serves; absent means every listener.
    /// On the others the route does not exist (404).
    pub listeners: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatchConfig {
    pub name: String,
    pub value: Option<String>,
}

/// Exactly one of `path_prefix`, `header` or `accept_param`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VersionConfig {
    /// Version as the first path segments, e.g. `/v2`, put in front of `path`/`path_prefix`.
    pub path_prefix: Option<String>,
    /// Version in a request header, e.g. `Accept-Version`.
    pub header: Option<String>,
    /// Version as a media-type parameter of `Accept`, e.g. `version` in
    /// `Accept: application/json; version=2`.
    pub accept_param: Option<String>,
    /// Required version value (with `header` or `accept_param`).
    pub value: Option<String>,
    /// Also match requests that name no version at all.
    #[serde(default)]
    pub default: bool,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EchoConfig {}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    #[serde(default = "ok_status")]
    pub status: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: String,
}

fn ok_status() -> u16 {
    200
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedirectConfig {
    /// Target URL; may use the route's `{param}` captures.
    pub to: String,
    /// 301, 302, 303, 307 or 308.
    #[serde(default = "found")]
    pub status: u16,
    /// Append the request's query string to `to`.
    #[serde(default = "yes")]
    pub keep_query: bool,
}

fn found() -> u16 {
    302
}

/// At most one path rewrite (`strip_prefix`, `replace_prefix` or `path`), plus an optional host.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RewriteConfig {
    /// Remove this leading part of the path (`/v1/users` becomes `/users`).
    pub strip_prefix: Option<String>,
    /// Replace one leading part of the path by another.
    pub replace_prefix: Option<ReplacePrefixConfig>,
    /// New path built from the route's captures, e.g. `/internal/users/{id}`.
    pub path: Option<String>,
    /// Send this `Host` upstream instead of the client's.
    pub host: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplacePrefixConfig {
    pub from: String,
    pub to: String,
}

/// `warnings.allow` in the editor schema: the names `check` knows, so an
/// editor flags a misspelt one as `check` does.
fn warning_names(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let names: Vec<&str> = super::warning_names::ALL.iter().map(|(name, _)| *name).collect();
    schemars::json_schema!({
        "description": "Names of warnings not to report (`check` prints each warning's name after it).",
        "type": "array",
        "items": { "enum": names }
    })
}
