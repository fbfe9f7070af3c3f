//! A route's `aggregate`: several upstream calls composed into one JSON answer.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::units::{ByteSize, Duration};

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AggregateConfig {
    /// The whole budget: every call ends within it (default 10s).
    pub timeout: Option<Duration>,
    /// The calls, by name (the name is the key of its answer in the response).
    pub calls: BTreeMap<String, CallConfig>,
    #[serde(default)]
    pub merge: MergeMode,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CallConfig {
    pub upstream: String,
    /// Path and query sent, with `{param}` (the route's path parameters)
    /// and `{call.field}` (a field of an earlier call's JSON answer) filled in.
    pub path: String,
    /// `GET` unless set.
    pub method: Option<String>,
    /// A failed required call fails the whole request (502, or 504 on a timeout).
    #[serde(default)]
    pub required: bool,
    /// Calls whose answers this one waits for.
    #[serde(default)]
    pub after: Vec<String>,
    /// This call's own limit, within the aggregate's `timeout`.
    pub timeout: Option<Duration>,
    /// What a failed optional call leaves in the answer: `omit` (default),
    /// `"null"`, or `fail` (the whole request fails, as a required call).
    #[serde(default)]
    pub on_failure: OnFailure,
    /// Only these fields of the answer (dot paths, applied to each item of an array).
    pub allow: Option<Vec<String>>,
    /// These fields removed from the answer (dot paths).
    #[serde(default)]
    pub deny: Vec<String>,
    /// The key of its answer, when not the call's name.
    #[serde(rename = "as")]
    pub rename: Option<String>,
    /// Largest answer read (default 1MiB); a longer one fails the call.
    pub max_body_size: Option<ByteSize>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    #[default]
    Omit,
    /// The key is there, with `null`.
    Null,
    Fail,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MergeMode {
    /// Each call's answer under its key (the call's name or `as`).
    #[default]
    Grouped,
    /// The members of each call's answer (an object) at the top level.
    Flat,
}
