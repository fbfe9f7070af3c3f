//! Config types for authorization.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeConfig {
    /// Every one of these scopes is required.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// At least one of these scopes is required.
    #[serde(default)]
    pub any_scopes: Vec<String>,
    /// Conditions on token claims (JWT or introspection).
    #[serde(default)]
    pub claims: Vec<ClaimCondition>,
    /// Consumer groups.
    #[serde(default)]
    pub groups: GroupsConfig,
}

/// `claim` with exactly one of `equals`, `contains` or `one_of`. Nested
/// claims use dots: `realm_access.roles`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimCondition {
    pub claim: String,
    pub equals: Option<String>,
    /// The claim is a list (or space-separated string) that holds this value.
    pub contains: Option<String>,
    pub one_of: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupsConfig {
    /// The consumer must be in one of these groups.
    #[serde(default)]
    pub allow: Vec<String>,
    /// The consumer must be in none of these groups.
    #[serde(default)]
    pub deny: Vec<String>,
}
