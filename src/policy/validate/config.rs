//! The serde types of `validate` on a route, and `json_limits`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::units::ByteSize;

/// What a route checks before the request goes on.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateConfig {
    /// `enforce` (default): refuse what breaks the rules. `report`: let it
    /// through, and log and count what would have been refused (a dry run).
    #[serde(default)]
    pub mode: ValidateMode,
    /// Media types a request body may have (`application/json`,
    /// `application/x-www-form-urlencoded`, `application/*+json`…); another
    /// is refused with 415. Default: the JSON types when `body` is set.
    #[serde(default)]
    pub content_types: Vec<String>,
    /// The body's JSON Schema.
    pub body: Option<BodyConfig>,
    /// Path parameters by name (the route's `{name}` segments), as `query`
    /// (styles `simple`, `label`, `matrix`).
    #[serde(default)]
    pub path: BTreeMap<String, serde_json::Value>,
    /// Query parameters by name: each a JSON Schema, plus `required: true`
    /// and OpenAPI's `style` (`form`, `spaceDelimited`, `pipeDelimited`,
    /// `deepObject`) and `explode`. Values are strings on the wire and are read as
    /// the schema's type.
    #[serde(default)]
    pub query: BTreeMap<String, serde_json::Value>,
    /// Query parameters not listed in `query`: `allow` (default) or `deny` (400).
    #[serde(default)]
    pub additional_query: AdditionalQuery,
    /// Request headers by name, as `query`.
    #[serde(default)]
    pub headers: BTreeMap<String, serde_json::Value>,
    /// Cookies by name (from the `Cookie` header), as `query`; an array is
    /// written comma-separated (OpenAPI's `form`).
    #[serde(default)]
    pub cookies: BTreeMap<String, serde_json::Value>,
    /// Limits on a JSON body, checked before it is parsed.
    #[serde(default)]
    pub json_limits: JsonLimitsConfig,
    /// An OpenAPI operation's declared responses (status key -> media type
    /// -> schema or `null`), checked in report mode; set by `apis`, not
    /// written in a config.
    #[serde(skip)]
    #[schemars(skip)]
    pub responses: Option<BTreeMap<String, BTreeMap<String, serde_json::Value>>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ValidateMode {
    #[default]
    Enforce,
    Report,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AdditionalQuery {
    #[default]
    Allow,
    Deny,
}

/// Exactly one of `schema_file` or `schema`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BodyConfig {
    /// A JSON or YAML file holding the schema (relative to the config's folder).
    pub schema_file: Option<String>,
    /// The schema inline.
    pub schema: Option<serde_json::Value>,
    /// Whether a request must have a body (default true).
    #[serde(default = "yes")]
    pub required: bool,
}

fn yes() -> bool {
    true
}

/// Each unset limit keeps its safe default.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonLimitsConfig {
    /// Nesting of arrays and objects (default 64, at most 512).
    pub max_depth: Option<u32>,
    /// Members of one object (default 10000).
    pub max_entries: Option<u32>,
    /// Elements of one array (default 10000).
    pub max_array: Option<u32>,
    /// One string's length as written (default 64KiB).
    pub max_string: Option<ByteSize>,
    /// One number's length in characters (default 64).
    pub max_number_length: Option<u32>,
}
