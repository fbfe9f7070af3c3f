//! Config types for authentication providers, consumers and identity headers.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::units::{ByteSize, Duration};

fn secs(s: u64) -> Duration {
    Duration(std::time::Duration::from_secs(s))
}

/// One named authentication provider (`auth.<name>`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ProviderConfig {
    /// JSON Web Tokens (RFC 7519) signed with a secret, a PEM key or a JWKS.
    Jwt(Box<JwtConfig>),
    /// OAuth 2.0 token introspection (RFC 7662).
    Introspection(IntrospectionConfig),
    /// API keys of consumers, from a header or query parameter.
    ApiKey(ApiKeyConfig),
    /// HTTP Basic authentication (RFC 7617) against bcrypt/argon2 hashes.
    Basic(BasicConfig),
    /// The client certificate verified by a mutual-TLS listener.
    Mtls(MtlsConfig),
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Accepted algorithms, e.g. `[RS256, ES256]`. Required: nothing is implied.
    pub algorithms: Vec<String>,
    /// Required `iss`; with `discovery: true`, also where the keys are found.
    pub issuer: Option<String>,
    /// Accepted `aud` values (any one); empty: `aud` is not checked.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// HMAC secret (HS*), e.g. `${JWT_SECRET}`.
    pub secret: Option<String>,
    /// PEM public key file (RS*, PS*, ES*, EdDSA).
    pub public_key_file: Option<String>,
    /// JWKS file.
    pub jwks_file: Option<String>,
    /// JWKS URL, fetched at start and refreshed in the background.
    pub jwks_uri: Option<String>,
    /// Find `jwks_uri` from `<issuer>/.well-known/openid-configuration`.
    #[serde(default)]
    pub discovery: bool,
    /// How often the JWKS is refreshed.
    #[serde(default = "five_minutes")]
    pub jwks_refresh: Duration,
    /// CA bundle for the JWKS and discovery URLs (default: Mozilla roots).
    pub jwks_ca: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(default = "thirty_seconds")]
    pub leeway: Duration,
    /// Refuse tokens issued (`iat`) longer ago than this.
    pub max_age: Option<Duration>,
    /// Claims that must be present (besides `exp`, which always must).
    #[serde(default)]
    pub required_claims: Vec<String>,
    /// Where the token is read (default: `Authorization: Bearer`).
    #[serde(default)]
    pub token: TokenSourceConfig,
    /// Longer tokens are refused without parsing.
    #[serde(default = "eight_kib")]
    pub max_token_size: ByteSize,
}

fn five_minutes() -> Duration {
    secs(300)
}
fn thirty_seconds() -> Duration {
    secs(30)
}
fn eight_kib() -> ByteSize {
    ByteSize(8 << 10)
}

/// `Authorization: Bearer` unless `cookie` or `query` is set (then the
/// cookie or parameter is removed before forwarding).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenSourceConfig {
    pub cookie: Option<String>,
    pub query: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    /// The RFC 7662 introspection endpoint.
    pub endpoint: String,
    pub client_id: String,
    pub client_secret: String,
    /// How the gateway authenticates to the endpoint.
    #[serde(default)]
    pub client_auth: ClientAuthMethod,
    #[serde(default = "two_seconds")]
    pub timeout: Duration,
    /// Active results are cached until `exp`, at most this long.
    #[serde(default = "five_minutes")]
    pub max_ttl: Duration,
    /// Inactive results are cached this long.
    #[serde(default = "ten_seconds")]
    pub negative_ttl: Duration,
    /// What a request gets when the endpoint is down: 503 (default) or 401.
    #[serde(default)]
    pub on_error: OnError,
    /// CA bundle for the endpoint (default: Mozilla roots).
    pub ca: Option<String>,
}

fn two_seconds() -> Duration {
    secs(2)
}
fn ten_seconds() -> Duration {
    secs(10)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMethod {
    /// `Authorization: Basic` (client_secret_basic).
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form (client_secret_post).
    Form,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// 503: the request is neither accepted nor blamed on the client.
    #[default]
    Unavailable,
    /// 401, as if the token were invalid.
    Unauthorized,
}

/// Exactly one of `header` or `query`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    pub header: Option<String>,
    pub query: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BasicConfig {
    #[serde(default = "default_realm")]
    pub realm: String,
    /// An htpasswd file with bcrypt (`$2y$`) or argon2 (`$argon2id$`) hashes.
    pub htpasswd: Option<String>,
    /// Inline `user: hash` pairs (bcrypt or argon2 PHC strings).
    #[serde(default)]
    pub users: BTreeMap<String, String>,
    /// How long a successful check is remembered (bcrypt is slow on purpose).
    #[serde(default = "one_minute")]
    pub cache_ttl: Duration,
}

fn default_realm() -> String {
    "portcullis".into()
}
fn one_minute() -> Duration {
    secs(60)
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MtlsConfig {
    /// PEM bundle of the CAs whose client certificates this provider
    /// accepts (besides being verified by the listener's
    /// `client_auth.ca`). Without it, a certificate from any listener's
    /// CA may name a consumer.
    pub ca: Option<String>,
}

/// A known caller: an application, a partner, a user.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsumerConfig {
    pub id: String,
    #[serde(default)]
    pub groups: Vec<String>,
    /// Scopes granted to this consumer's API keys, Basic logins and certificates.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// API keys, stored as SHA-256 hashes (`portcullis hash-key`).
    #[serde(default)]
    pub api_keys: Vec<ApiKeyEntry>,
    /// Basic-auth user names that are this consumer.
    #[serde(default)]
    pub basic_users: Vec<String>,
    /// Client certificates that are this consumer.
    #[serde(default)]
    pub certificates: Vec<CertificateMatch>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyEntry {
    /// Hex SHA-256 of the key.
    pub sha256: String,
    /// The key stops working at this date (`2027-01-31` or RFC 3339).
    pub expires: Option<String>,
}

/// Exactly one of `subject` or `san`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateMatch {
    /// The subject as the certificate stores it: its attributes in order, each `KEY=value` (no spaces
    /// around `=`), separated by commas, e.g. `C=US, O=Example, CN=svc-a`; `openssl x509 -noout
    /// -subject -nameopt oneline,-space_eq` prints it.
    pub subject: Option<String>,
    /// A DNS, URI or email subject alternative name.
    pub san: Option<String>,
    /// PEM bundle of the CAs that may issue this certificate: one of
    /// another CA (a partner's, that the listeners trust too) with the same
    /// subject or SAN is not this consumer (Kong's credential
    /// `ca_certificate`).
    pub ca: Option<String>,
}

/// Request headers that carry the authenticated identity upstream. The
/// gateway strips them from every client request, so they cannot be spoofed.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityHeadersConfig {
    pub consumer: String,
    pub subject: String,
    pub scopes: String,
    pub groups: String,
    pub provider: String,
}

impl Default for IdentityHeadersConfig {
    fn default() -> Self {
        IdentityHeadersConfig {
            consumer: "x-consumer-id".into(),
            subject: "x-auth-subject".into(),
            scopes: "x-auth-scopes".into(),
            groups: "x-consumer-groups".into(),
            provider: "x-auth-provider".into(),
        }
    }
}
