//! Config types for client IP allow/deny lists.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Client IP lists, checked before authentication.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IpConfig {
    /// Only these addresses/CIDRs may call the route (empty: anyone not denied).
    #[serde(default)]
    pub allow: Vec<String>,
    /// These addresses/CIDRs may not.
    #[serde(default)]
    pub deny: Vec<String>,
}
