//! Config types for marking a route deprecated.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeprecationConfig {
    /// When the route was (or will be) deprecated: `2026-06-30` or an RFC 3339 time.
    pub since: String,
    /// When the route stops working: `2027-01-31` or an RFC 3339 time.
    pub sunset: Option<String>,
    /// Page that explains the migration; sent as `Link: <...>; rel="deprecation"`.
    pub link: Option<String>,
}
