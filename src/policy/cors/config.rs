//! Config types for CORS.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::units::Duration;

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// `https://app.example.com`, patterns like `https://*.example.com`, or `*`.
    pub allow_origins: Vec<String>,
    /// Methods a cross-origin request may use (default GET, HEAD, POST).
    #[serde(default)]
    pub allow_methods: Vec<String>,
    /// Request headers a cross-origin request may send.
    #[serde(default)]
    pub allow_headers: Vec<String>,
    /// Response headers the browser may show to the page.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// Allow cookies and credentials (never together with `*`).
    #[serde(default)]
    pub allow_credentials: bool,
    /// How long browsers may cache a preflight answer.
    pub max_age: Option<Duration>,
}
