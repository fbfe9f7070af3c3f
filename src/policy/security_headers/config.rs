//! Config types for security headers.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityHeadersConfig {
    /// `false` sends none of the defaults (and removes nothing).
    pub enabled: bool,
    /// `X-Content-Type-Options: nosniff`.
    pub content_type_options: bool,
    /// `X-Frame-Options`; empty to omit.
    pub frame_options: String,
    /// `Content-Security-Policy`; empty to omit.
    pub content_security_policy: String,
    /// `Referrer-Policy`; empty to omit.
    pub referrer_policy: String,
    /// Response headers removed (they reveal the software behind the gateway).
    pub remove: Vec<String>,
    /// Any other headers to set, replacing the upstream's.
    pub set: BTreeMap<String, String>,
}

impl Default for SecurityHeadersConfig {
    fn default() -> Self {
        SecurityHeadersConfig {
            enabled: true,
            content_type_options: true,
            frame_options: "DENY".into(),
            content_security_policy: "default-src 'none'; frame-ancestors 'none'".into(),
            referrer_policy: "no-referrer".into(),
            remove: ["server", "x-powered-by", "x-aspnet-version", "x-aspnetmvc-version", "x-runtime"]
                .map(String::from)
                .to_vec(),
            set: BTreeMap::new(),
        }
    }
}
