//! The profile file formats of SPEC §2 as serde types: what a file may contain, with a doc
//! comment on every field (the JSON Schema is generated from these).
//!
//! Owns: the on-disk shape, synonyms included. Must not: be used past loading; the rest of the
//! program sees the validated types of `profile::model`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::settings::Settings;

/// A profile file: a model profile or a load-balancer profile (SPEC §2). Which one is decided
/// by `type`: `"loadbalancer"` is a load balancer; absent, `"model"` or `"standard"` a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(title = "llxprt profile")]
pub enum RawProfile {
    /// Several model profiles under one policy (SPEC §2.2).
    LoadBalancer(RawLoadBalancer),
    /// One provider + model + settings (SPEC §2.1).
    Model(RawModel),
}

/// The `type` of a model profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// A model profile.
    Model,
    /// Synonym of `model` (files written by other tools).
    Standard,
}

/// The `type` of a load-balancer profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LoadBalancerKind {
    /// A load balancer.
    Loadbalancer,
}

/// How a load balancer chooses where a request starts (SPEC §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Backends in list order from the first on every request.
    Failover,
    /// One cursor, advancing by one per request.
    Roundrobin,
}

impl Policy {
    /// The spelling used in files and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Failover => "failover",
            Policy::Roundrobin => "roundrobin",
        }
    }
}

/// Kind of credential a profile's buckets hold (SPEC §2.1, §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuthKind {
    /// OAuth tokens stored by `llxprt auth login`.
    Oauth,
    /// API keys.
    Apikey,
}

/// The `auth` object of a model profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// Kind of credential.
    #[serde(rename = "type")]
    pub kind: AuthKind,
    /// Accounts to rotate through, in order (SPEC §5.3); without it, one bucket `default`.
    // At most 64: every input from outside has a limit (SPEC §7, docs/limits.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub buckets: Option<Vec<String>>,
}

/// A model profile file (SPEC §2.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RawModel {
    /// URL of this schema, for editors; ignored by llxprt.
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Format version; this llxprt reads version 1.
    pub version: u64,
    /// Absent means a model profile; `"standard"` is accepted as a synonym.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ModelKind>,
    /// A provider name from SPEC §6.1 (`openai`, `anthropic`, `gemini`, …).
    pub provider: String,
    /// The model id sent to the provider.
    pub model: String,
    /// Passed through into the request body (`temperature`, `max_tokens`, `top_p`, …).
    #[serde(
        rename = "modelParams",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub model_params: Option<Map<String, Value>>,
    /// Settings of SPEC §3; on a model profile they govern that profile used alone.
    #[serde(
        rename = "ephemeralSettings",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub settings: Option<Settings>,
    /// Credentials: `{"type": "oauth"|"apikey", "buckets": [...]}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<RawAuth>,
    /// Keys llxprt does not know (kept for files from other tools; `validate` warns).
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// A load-balancer profile file (SPEC §2.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RawLoadBalancer {
    /// URL of this schema, for editors; ignored by llxprt.
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Format version; this llxprt reads version 1.
    pub version: u64,
    /// Always `"loadbalancer"`.
    #[serde(rename = "type")]
    pub kind: LoadBalancerKind,
    /// `failover` or `roundrobin` (SPEC §5.2).
    pub policy: Policy,
    /// Model profiles, in priority order (at least 2).
    // At most 64: every input from outside has a limit (SPEC §7, docs/limits.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub backends: Option<Vec<String>>,
    /// Synonym of `backends` (files written by other tools); llxprt writes `backends`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub profiles: Option<Vec<String>>,
    /// The failover settings of SPEC §3.2 for this load balancer.
    #[serde(
        rename = "ephemeralSettings",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub settings: Option<Settings>,
    /// Written by other tools (an empty string); ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Written by other tools (an empty string); ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Written by other tools; ignored (backends use their own).
    #[serde(
        rename = "modelParams",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub model_params: Option<Value>,
    /// Read as the load balancer's `context-limit` (SPEC §2.2).
    #[serde(
        rename = "contextLimit",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 1))]
    pub context_limit: Option<u64>,
    /// Keys llxprt does not know (kept for files from other tools; `validate` warns).
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}
