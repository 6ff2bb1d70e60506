//! The settings of SPEC §3: one struct read from `ephemeralSettings`, the table of keys with
//! their synonyms and scope, layering (defaults < backend < load balancer < session) and the
//! typed, resolved views the engine and the shell use.
//!
//! Owns: every setting's name, type, range, default and description (the JSON Schema is
//! generated from here). Must not: read files or the environment.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `streaming`: whether responses are streamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Streaming {
    /// Stream responses as they are generated (default).
    Enabled,
    /// Ask for one complete body.
    Disabled,
}

/// `reasoning.effort`: OpenAI-style reasoning effort.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReasoningEffort {
    /// Little reasoning.
    Low,
    /// Some reasoning.
    Medium,
    /// Much reasoning.
    High,
}

/// `reasoning.stripFromContext`: which past reasoning blocks to strip from the history sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum StripFromContext {
    /// Strip every stored reasoning block (default).
    #[serde(rename = "all")]
    All,
    /// Send every stored reasoning block back.
    #[serde(rename = "none")]
    None,
    /// Keep only the last reply's reasoning.
    #[serde(rename = "allButLast")]
    AllButLast,
}

/// `mid_stream`: what to do when a stream breaks after output began (SPEC §5.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MidStream {
    /// Treat it like a network failure; the next attempt's full answer replaces the partial one.
    Restart,
    /// Send the partial answer as an assistant prefill and deliver only the continuation.
    Continue,
    /// Deliver nothing until an attempt is complete, so an interruption is invisible.
    Buffer,
    /// Fail the request.
    Error,
}

/// The `ephemeralSettings` object (SPEC §3). Every key is optional; unknown keys are kept in
/// `extra` so files written by other tools still load (`validate` warns about them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Settings {
    // ---- SPEC §3.1: model / request settings (per backend) ----
    /// API base URL (SPEC §3.1). Default: the provider's (SPEC §6.1). Only ever taken from the
    /// backend's own profile.
    #[serde(rename = "base-url", skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Path of a file whose trimmed content is the API key (`~` expanded). Only ever taken from
    /// the backend's own profile.
    #[serde(rename = "auth-keyfile", skip_serializing_if = "Option::is_none")]
    pub auth_keyfile: Option<String>,
    /// Inline API key (discouraged: prefer `auth-keyfile`; never printed).
    #[serde(rename = "auth-key", skip_serializing_if = "Option::is_none")]
    pub auth_key: Option<String>,
    /// Maximum context tokens; also ranks backends for context-length failover (SPEC §5.5).
    /// Default: the provider's or model's.
    #[serde(rename = "context-limit", skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub context_limit: Option<u64>,
    /// Stream responses. Default: "enabled".
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "enabled"))]
    pub streaming: Option<Streaming>,
    /// Request thinking / reasoning. Default: false.
    #[serde(rename = "reasoning.enabled", skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub reasoning_enabled: Option<bool>,
    /// Thinking budget in tokens (Anthropic `thinking.budget_tokens`, Gemini `thinkingBudget`).
    #[serde(
        rename = "reasoning.budget_tokens",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 1))]
    pub reasoning_budget_tokens: Option<u64>,
    /// OpenAI-style reasoning effort.
    #[serde(rename = "reasoning.effort", skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<ReasoningEffort>,
    /// Show reasoning text to the user. Default: true.
    #[serde(
        rename = "reasoning.includeInResponse",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(extend("default" = true))]
    pub reasoning_include_in_response: Option<bool>,
    /// Keep reasoning in the history sent back. Default: false.
    #[serde(
        rename = "reasoning.includeInContext",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(extend("default" = false))]
    pub reasoning_include_in_context: Option<bool>,
    /// Which past reasoning blocks to strip from the history. Default: "all".
    #[serde(
        rename = "reasoning.stripFromContext",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(extend("default" = "all"))]
    pub reasoning_strip_from_context: Option<StripFromContext>,
    /// Extra HTTP headers, merged per header name across levels.
    #[serde(rename = "custom-headers", skip_serializing_if = "Option::is_none")]
    pub custom_headers: Option<BTreeMap<String, String>>,
    /// System prompt sent first in every request.
    #[serde(rename = "system-prompt", skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// The backend continues a trailing assistant message instead of answering afresh (used by
    /// `mid_stream: continue`). Default: true for `anthropic` without thinking, false otherwise.
    #[serde(rename = "accepts-prefill", skip_serializing_if = "Option::is_none")]
    pub accepts_prefill: Option<bool>,
    /// Ask Chat Completions servers for usage in the stream (`stream_options.include_usage`).
    /// Default: true.
    #[serde(rename = "stream-usage", skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = true))]
    pub stream_usage: Option<bool>,
    /// TCP + TLS connect timeout in milliseconds. Default: 10000.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1), extend("default" = 10000))]
    pub connect_timeout_ms: Option<u64>,
    /// Time from sending the request to the response headers and the first body event, in
    /// milliseconds. Default: 60000.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1), extend("default" = 60000))]
    pub first_byte_timeout_ms: Option<u64>,
    /// Synonym of `first_byte_timeout_ms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub timeout_ms: Option<u64>,
    /// Longest silence between two stream events once the stream started, in milliseconds.
    /// Default: 30000.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1), extend("default" = 30000))]
    pub stream_idle_timeout_ms: Option<u64>,

    // ---- SPEC §3.2: failover / load-balancer settings (per profile run) ----
    /// Retries on the same backend before moving to the next, for a retryable failure
    /// (SPEC §5.4). Default: 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100), extend("default" = 1))]
    pub failover_retry_count: Option<u32>,
    /// Fixed delay between those retries, in milliseconds. Default: 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 600_000), extend("default" = 0))]
    pub failover_retry_delay_ms: Option<u64>,
    /// Network failures and timeouts trigger failover. Default: true.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = true))]
    pub failover_on_network_errors: Option<bool>,
    /// HTTP statuses that trigger failover. Default: [429, 500, 502, 503, 504].
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(inner(range(min = 100, max = 599)), extend("default" = [429, 500, 502, 503, 504]))]
    pub failover_status_codes: Option<Vec<u16>>,
    /// A backend whose tokens in the trailing 60 s reach this is skipped until they fall below
    /// (SPEC §5.7). Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub lb_tpm_failover_threshold: Option<u64>,
    /// Not a synonym of `lb_tpm_failover_threshold` (a throughput floor in other tools): ignored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tpm_threshold: Option<Value>,
    /// Consecutive failed requests that open a backend's circuit (SPEC §5.6). Default: none
    /// (breaker off).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub lb_circuit_breaker_threshold: Option<u32>,
    /// Synonym of `lb_circuit_breaker_threshold`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub circuit_breaker_failure_threshold: Option<u32>,
    /// Other tools' switch: `true` without a threshold means a threshold of 3; `false` turns the
    /// breaker off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuit_breaker_enabled: Option<bool>,
    /// Other tools' failure window: ignored (llxprt counts consecutive failed requests).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuit_breaker_failure_window_ms: Option<Value>,
    /// How long an open circuit waits before one half-open probe, in milliseconds.
    /// Default: 30000.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1), extend("default" = 30000))]
    pub lb_circuit_breaker_timeout_ms: Option<u64>,
    /// Synonym of `lb_circuit_breaker_timeout_ms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub circuit_breaker_recovery_timeout_ms: Option<u64>,
    /// The longest `Retry-After` llxprt waits for, in milliseconds; 0 = never wait
    /// (SPEC §5.3, §5.4). Default: 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 0))]
    pub retry_after_max_ms: Option<u64>,
    /// After a 429 without `Retry-After`, later requests try that bucket last for this long, in
    /// milliseconds; 0 = no memory (SPEC §5.3). Default: 60000.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 60000))]
    pub bucket_cooldown_ms: Option<u64>,
    /// Hard cap on attempts for one request across all backends and buckets. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_attempts: Option<u32>,
    /// What to do when a stream breaks after output began (SPEC §5.8). Default: "restart" on a
    /// terminal, "buffer" otherwise, "continue" in `serve`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mid_stream: Option<MidStream>,
    /// A context-length error moves to a backend with a larger `context-limit` (SPEC §5.5).
    /// Default: true.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = true))]
    pub failover_on_context_length: Option<bool>,

    /// Keys llxprt does not know; kept so files from other tools load (`validate` warns).
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// Which profile a setting belongs on (SPEC §3.1 vs §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Per backend: request and transport settings.
    Model,
    /// Per profile run: failover and load-balancer settings.
    Failover,
}

/// One row of the settings table.
#[derive(Debug, Clone, Copy)]
pub struct SettingKey {
    /// The canonical spelling.
    pub key: &'static str,
    /// Where it belongs.
    pub scope: Scope,
    /// Accepted spellings that mean the same (reported by `validate` as a note).
    pub synonyms: &'static [&'static str],
}

const fn model(key: &'static str) -> SettingKey {
    SettingKey {
        key,
        scope: Scope::Model,
        synonyms: &[],
    }
}
const fn failover(key: &'static str) -> SettingKey {
    SettingKey {
        key,
        scope: Scope::Failover,
        synonyms: &[],
    }
}

/// Every canonical setting of SPEC §3 with its synonyms. A unit test keeps it equal to the
/// fields of [`Settings`].
pub const SETTING_KEYS: &[SettingKey] = &[
    model("base-url"),
    model("auth-keyfile"),
    model("auth-key"),
    model("context-limit"),
    model("streaming"),
    model("reasoning.enabled"),
    model("reasoning.budget_tokens"),
    model("reasoning.effort"),
    model("reasoning.includeInResponse"),
    model("reasoning.includeInContext"),
    model("reasoning.stripFromContext"),
    model("custom-headers"),
    model("system-prompt"),
    model("accepts-prefill"),
    model("stream-usage"),
    model("connect_timeout_ms"),
    SettingKey {
        key: "first_byte_timeout_ms",
        scope: Scope::Model,
        synonyms: &["timeout_ms"],
    },
    model("stream_idle_timeout_ms"),
    failover("failover_retry_count"),
    failover("failover_retry_delay_ms"),
    failover("failover_on_network_errors"),
    failover("failover_status_codes"),
    failover("lb_tpm_failover_threshold"),
    SettingKey {
        key: "lb_circuit_breaker_threshold",
        scope: Scope::Failover,
        synonyms: &["circuit_breaker_failure_threshold"],
    },
    SettingKey {
        key: "lb_circuit_breaker_timeout_ms",
        scope: Scope::Failover,
        synonyms: &["circuit_breaker_recovery_timeout_ms"],
    },
    failover("retry_after_max_ms"),
    failover("bucket_cooldown_ms"),
    failover("max_attempts"),
    failover("mid_stream"),
    failover("failover_on_context_length"),
];

/// Keys read from other tools' files that llxprt maps or ignores (not settings of its own).
pub const FOREIGN_KEYS: &[&str] = &[
    "tpm_threshold",
    "circuit_breaker_enabled",
    "circuit_breaker_failure_window_ms",
];

/// Looks a key up: the canonical row for a canonical key or a synonym.
pub fn lookup(key: &str) -> Option<&'static SettingKey> {
    SETTING_KEYS
        .iter()
        .find(|s| s.key == key || s.synonyms.contains(&key))
}

/// Every spelling llxprt reads, for "did you mean" suggestions.
pub fn all_spellings() -> impl Iterator<Item = &'static str> {
    SETTING_KEYS
        .iter()
        .flat_map(|s| std::iter::once(s.key).chain(s.synonyms.iter().copied()))
        .chain(FOREIGN_KEYS.iter().copied())
}

/// The default HTTP statuses that trigger failover (SPEC §3.2).
pub const DEFAULT_FAILOVER_STATUS_CODES: [u16; 5] = [429, 500, 502, 503, 504];

macro_rules! overlay_fields {
    ($base:ident, $top:ident; $($f:ident),* $(,)?) => {
        $( if $top.$f.is_some() { $base.$f.clone_from(&$top.$f); } )*
    };
}

impl Settings {
    /// Folds synonyms into their canonical keys (the canonical spelling wins when both are
    /// set) and applies `circuit_breaker_enabled`. Returns the synonyms that were read.
    pub fn normalise(&mut self) -> Vec<(&'static str, &'static str)> {
        let mut read = Vec::new();
        if let Some(v) = self.timeout_ms.take() {
            self.first_byte_timeout_ms.get_or_insert(v);
            read.push(("timeout_ms", "first_byte_timeout_ms"));
        }
        if let Some(v) = self.circuit_breaker_failure_threshold.take() {
            self.lb_circuit_breaker_threshold.get_or_insert(v);
            read.push((
                "circuit_breaker_failure_threshold",
                "lb_circuit_breaker_threshold",
            ));
        }
        if let Some(v) = self.circuit_breaker_recovery_timeout_ms.take() {
            self.lb_circuit_breaker_timeout_ms.get_or_insert(v);
            read.push((
                "circuit_breaker_recovery_timeout_ms",
                "lb_circuit_breaker_timeout_ms",
            ));
        }
        match self.circuit_breaker_enabled.take() {
            Some(true) => {
                self.lb_circuit_breaker_threshold.get_or_insert(3);
            }
            Some(false) => self.lb_circuit_breaker_threshold = None,
            None => {}
        }
        self.circuit_breaker_failure_window_ms = None;
        self.tpm_threshold = None;
        read
    }

    /// Lays `top` over `self`: every key `top` sets wins; `custom-headers` merge per header
    /// name, and HTTP header names are case-insensitive (RFC 9110 §5.1), so `top`'s `X-Team`
    /// replaces `self`'s `x-team`: the header is sent once, with the value and the spelling of
    /// the higher level (SPEC §3.1).
    pub fn overlay(&mut self, top: &Settings) {
        let headers = match (&self.custom_headers, &top.custom_headers) {
            (Some(a), Some(b)) => {
                let mut m = a.clone();
                // Header names are ASCII tokens: ASCII case-insensitivity is the whole rule.
                m.retain(|name, _| !b.keys().any(|n| n.eq_ignore_ascii_case(name)));
                m.extend(b.iter().map(|(k, v)| (k.clone(), v.clone())));
                Some(m)
            }
            (a, b) => b.clone().or_else(|| a.clone()),
        };
        overlay_fields!(self, top;
            base_url, auth_keyfile, auth_key, context_limit, streaming, reasoning_enabled,
            reasoning_budget_tokens, reasoning_effort, reasoning_include_in_response,
            reasoning_include_in_context, reasoning_strip_from_context, system_prompt,
            accepts_prefill, stream_usage, connect_timeout_ms, first_byte_timeout_ms, timeout_ms,
            stream_idle_timeout_ms, failover_retry_count, failover_retry_delay_ms,
            failover_on_network_errors, failover_status_codes, lb_tpm_failover_threshold,
            tpm_threshold, lb_circuit_breaker_threshold, circuit_breaker_failure_threshold,
            circuit_breaker_enabled, circuit_breaker_failure_window_ms,
            lb_circuit_breaker_timeout_ms, circuit_breaker_recovery_timeout_ms,
            retry_after_max_ms, bucket_cooldown_ms, max_attempts, mid_stream,
            failover_on_context_length,
        );
        self.custom_headers = headers;
        for (k, v) in &top.extra {
            self.extra.insert(k.clone(), v.clone());
        }
    }

    /// Only the §3.2 (failover) keys of these settings.
    #[must_use]
    pub fn failover_part(&self) -> Settings {
        Settings {
            failover_retry_count: self.failover_retry_count,
            failover_retry_delay_ms: self.failover_retry_delay_ms,
            failover_on_network_errors: self.failover_on_network_errors,
            failover_status_codes: self.failover_status_codes.clone(),
            lb_tpm_failover_threshold: self.lb_tpm_failover_threshold,
            lb_circuit_breaker_threshold: self.lb_circuit_breaker_threshold,
            lb_circuit_breaker_timeout_ms: self.lb_circuit_breaker_timeout_ms,
            retry_after_max_ms: self.retry_after_max_ms,
            bucket_cooldown_ms: self.bucket_cooldown_ms,
            max_attempts: self.max_attempts,
            mid_stream: self.mid_stream,
            failover_on_context_length: self.failover_on_context_length,
            ..Settings::default()
        }
    }

    /// These settings without the §3.2 keys and without the backend-identity keys
    /// (`base-url`, `auth-keyfile`, `auth-key`), which a load balancer never lends its backends.
    #[must_use]
    pub fn lendable_model_part(&self) -> Settings {
        let mut s = self.clone();
        s.base_url = None;
        s.auth_keyfile = None;
        s.auth_key = None;
        s.failover_retry_count = None;
        s.failover_retry_delay_ms = None;
        s.failover_on_network_errors = None;
        s.failover_status_codes = None;
        s.lb_tpm_failover_threshold = None;
        s.lb_circuit_breaker_threshold = None;
        s.lb_circuit_breaker_timeout_ms = None;
        s.retry_after_max_ms = None;
        s.bucket_cooldown_ms = None;
        s.max_attempts = None;
        s.mid_stream = None;
        s.failover_on_context_length = None;
        s
    }
}

/// Parses a command-line `k=v` (`--set`): the value is read as JSON, else taken as a string.
pub fn parse_assignment(text: &str) -> Result<(String, Value), String> {
    let (k, v) = text
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got {text:?}"))?;
    let k = k.trim();
    if k.is_empty() {
        return Err(format!("expected KEY=VALUE, got {text:?}"));
    }
    // Text that cannot start a JSON value is a string without asking the parser: its error
    // path (placing the error) is the process's first use of `memchr`, whose CPU feature
    // detection costs ~0.1 ms under a hypervisor.
    let json_start = v
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with(|c: char| matches!(c, '{' | '[' | '"' | '-' | '0'..='9' | 't' | 'f' | 'n'));
    let value = if json_start {
        serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()))
    } else {
        Value::String(v.to_string())
    };
    Ok((k.to_string(), value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_that_cannot_start_json_is_a_string() {
        for (text, want) in [
            ("k=restart", json!("restart")),
            ("k=", json!("")),
            ("k= 5", json!(5)),
            ("k=-1.5", json!(-1.5)),
            ("k=true", json!(true)),
            ("k=trueish", json!("trueish")),
            ("k=null", json!(null)),
            ("k=nope", json!("nope")),
            ("k={\"a\": [1]}", json!({"a": [1]})),
            ("k=[1, 2", json!("[1, 2")),
            ("k=\"q\"", json!("q")),
            ("k=a=b", json!("a=b")),
            ("k=\u{e9}t\u{e9}", json!("\u{e9}t\u{e9}")),
        ] {
            assert_eq!(
                parse_assignment(text).unwrap(),
                ("k".to_string(), want),
                "{text}"
            );
        }
    }

    #[test]
    fn table_matches_struct_fields() {
        let schema = schemars::schema_for!(Settings);
        let props = schema.as_value()["properties"].as_object().unwrap();
        let mut from_struct: Vec<&str> = props.keys().map(String::as_str).collect();
        from_struct.sort_unstable();
        let mut from_table: Vec<&str> = all_spellings().collect();
        from_table.sort_unstable();
        assert_eq!(from_struct, from_table);
        for (name, p) in props {
            assert!(p.get("description").is_some(), "{name} has no description");
        }
    }

    #[test]
    fn synonyms_fold_into_canonical_keys() {
        let mut s: Settings = serde_json::from_value(serde_json::json!({
            "timeout_ms": 5, "circuit_breaker_recovery_timeout_ms": 7,
            "circuit_breaker_enabled": true, "circuit_breaker_failure_window_ms": 1
        }))
        .unwrap();
        let read = s.normalise();
        assert_eq!(s.first_byte_timeout_ms, Some(5));
        assert_eq!(s.lb_circuit_breaker_timeout_ms, Some(7));
        assert_eq!(s.lb_circuit_breaker_threshold, Some(3));
        assert_eq!(s.circuit_breaker_failure_window_ms, None);
        assert_eq!(read.len(), 2);
    }

    #[test]
    fn overlay_merges_headers_per_name() {
        let mut a: Settings = serde_json::from_value(serde_json::json!({
            "custom-headers": {"x-a": "1", "x-b": "1"}, "failover_retry_count": 3
        }))
        .unwrap();
        let b: Settings = serde_json::from_value(serde_json::json!({
            "custom-headers": {"x-b": "2"}, "streaming": "disabled"
        }))
        .unwrap();
        a.overlay(&b);
        let h = a.custom_headers.unwrap();
        assert_eq!((h["x-a"].as_str(), h["x-b"].as_str()), ("1", "2"));
        assert_eq!(h.len(), 2);
        assert_eq!(a.failover_retry_count, Some(3));
        assert_eq!(a.streaming, Some(Streaming::Disabled));
    }

    /// SPEC §3.1: merged per header name, and header names ignore case: a load balancer's
    /// `X-Team` replaces a backend's `x-team` (one header, the higher level's spelling).
    #[test]
    fn overlay_merges_headers_per_name_ignoring_case() {
        let mut backend: Settings = serde_json::from_value(serde_json::json!({
            "custom-headers": {"x-team": "backend", "X-Keep": "k"}
        }))
        .unwrap();
        let lb: Settings = serde_json::from_value(serde_json::json!({
            "custom-headers": {"X-Team": "lb"}
        }))
        .unwrap();
        backend.overlay(&lb);
        let h = backend.custom_headers.unwrap();
        assert_eq!(
            h.into_iter().collect::<Vec<_>>(),
            [
                ("X-Keep".to_string(), "k".to_string()),
                ("X-Team".to_string(), "lb".to_string())
            ]
        );
    }

    #[test]
    fn assignments_read_json_then_strings() {
        assert_eq!(parse_assignment("a=3").unwrap().1, serde_json::json!(3));
        assert_eq!(
            parse_assignment("a=x y").unwrap().1,
            serde_json::json!("x y")
        );
        assert_eq!(
            parse_assignment("a=[1,2]").unwrap().1,
            serde_json::json!([1, 2])
        );
        assert!(parse_assignment("novalue").is_err());
    }
}
