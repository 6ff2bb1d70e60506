//! The trace file of SPEC §9.1: types (the schema `schema/trace.schema.json` is generated
//! from them) and validation with the same diagnostics as profiles.
//!
//! Owns: what a trace may contain. Must not: run anything.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::profile::diagnostic::Finding;
use crate::profile::jsonpos::escape_token;
use crate::profile::raw::RawProfile;
use crate::profile::settings::Settings;
use crate::profile::validate::{self, Checked};
use crate::profile::{model, schema};

/// Largest trace file read (SPEC §7). A 100 000-request trace written out request by
/// request is about 3 MiB.
pub const MAX_TRACE_BYTES: u64 = 64 * 1024 * 1024;
/// Most requests one trace may ask for (a counted trace is small on disk but not to run).
pub const MAX_REQUESTS: u64 = 10_000_000;

/// A failure trace to replay (SPEC §9.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "llxprt trace")]
pub struct Trace {
    /// URL of this schema, for editors; ignored by llxprt.
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Format version; this llxprt reads version 1.
    pub version: u64,
    /// The profile to run (a load balancer or a model profile).
    pub profile: String,
    /// Profiles by name; names not here are loaded from the profiles directory.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub profiles: BTreeMap<String, RawProfile>,
    /// Session settings (SPEC §3), over the profiles' own; `--set` overrides them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<Settings>,
    /// When requests arrive.
    pub requests: Requests,
    /// Scripts per backend and bucket: `outcomes[backend][bucket]`, `"*"` for any bucket
    /// without its own script, `"refresh:<bucket>"` for token refreshes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outcomes: BTreeMap<String, BTreeMap<String, Vec<Entry>>>,
}

/// Requests: a list, or a count at a fixed interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Requests {
    /// One entry per request.
    List(Vec<RequestSpec>),
    /// `count` requests arriving at 0, `interval_ms`, 2 × `interval_ms`, …
    Count(RequestCount),
}

/// One request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    /// Arrival time (ms); it starts at max(arrival, end of the previous request).
    pub at_ms: u64,
    /// Tokens a success reports (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
}

/// Counted requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestCount {
    /// How many requests.
    pub count: u64,
    /// Time between arrivals (ms).
    #[serde(default)]
    pub interval_ms: u64,
    /// Tokens each success reports (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
}

/// A transport failure in a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NetworkKind {
    /// Connection refused.
    Refused,
    /// Connection reset (also what `--record` writes for a transport error it cannot tell).
    Reset,
    /// DNS failure.
    Dns,
    /// TLS failure.
    Tls,
}

/// A timeout in a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimeoutKind {
    /// `connect_timeout_ms` exceeded.
    Connect,
    /// `first_byte_timeout_ms` exceeded.
    FirstByte,
}

/// One scripted outcome: exactly one of `status`, `network`, `timeout`,
/// `interrupted_after_tokens`, plus optional details and liveness (`times`, `until_ms`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// HTTP status (200 = success).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 100, max = 599))]
    pub status: Option<u16>,
    /// A transport failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkKind>,
    /// A timeout (takes its timeout setting as latency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<TimeoutKind>,
    /// The stream breaks after this many tokens of output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted_after_tokens: Option<u64>,
    /// How long the attempt takes (ms, default 100; a refresh defaults to 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// `Retry-After` carried by the response (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// Provider error code, e.g. `context_length_exceeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Provider error message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Tokens a success reports (overrides the request's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    /// Live for the first `times` attempts that take it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub times: Option<u64>,
    /// Live while the attempt starts before this virtual time (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
}

/// Checks a trace file's bytes: syntax, schema, semantics (embedded profiles included).
/// Whether referenced profiles exist outside the trace is checked when it runs.
pub fn check_trace(bytes: &[u8]) -> Checked<Trace> {
    if bytes.len() as u64 > MAX_TRACE_BYTES {
        return Checked {
            text: String::new(),
            value: None,
            parsed: None,
            findings: vec![Finding::error(
                "",
                format!(
                    "the trace has {} bytes; at most {MAX_TRACE_BYTES} are read",
                    bytes.len()
                ),
            )],
        };
    }
    let mut c = validate::check_document::<Trace>(bytes, &schema::TRACE);
    let Some(trace) = &c.parsed else { return c };
    let mut f = Vec::new();
    if trace.version != 1 {
        f.push(Finding::error(
            "/version",
            format!(
                "unsupported trace version {} (this llxprt reads version 1)",
                trace.version
            ),
        ));
    }
    for (name, raw) in &trace.profiles {
        let prefix = format!("/profiles/{}", escape_token(name));
        if let Err(why) = crate::profile::names::check_profile_name(name) {
            f.push(
                Finding::error(
                    prefix.clone(),
                    format!("invalid profile name {name:?}: {why}"),
                )
                .at_key(),
            );
        }
        for mut finding in model::analyse_for(raw, model::Purpose::Simulate).findings {
            finding.pointer = format!("{prefix}{}", finding.pointer);
            f.push(finding);
        }
    }
    let count = match &trace.requests {
        Requests::List(l) => l.len() as u64,
        Requests::Count(c) => c.count,
    };
    if count > MAX_REQUESTS {
        f.push(Finding::error(
            "/requests",
            format!("{count} requests; a trace may ask for at most {MAX_REQUESTS}"),
        ));
    }
    for (backend, scripts) in &trace.outcomes {
        for (target, entries) in scripts {
            let base = format!(
                "/outcomes/{}/{}",
                escape_token(backend),
                escape_token(target)
            );
            if entries.is_empty() {
                f.push(
                    Finding::error(base.clone(), "an empty script")
                        .help("give at least one entry, e.g. {\"status\": 200}"),
                );
            }
            for (i, e) in entries.iter().enumerate() {
                let kinds = [
                    e.status.is_some(),
                    e.network.is_some(),
                    e.timeout.is_some(),
                    e.interrupted_after_tokens.is_some(),
                ]
                .iter()
                .filter(|x| **x)
                .count();
                if kinds != 1 {
                    f.push(
                        Finding::error(format!("{base}/{i}"), format!("an outcome entry needs exactly one of status, network, timeout, interrupted_after_tokens (this one has {kinds})"))
                            .help("for example {\"status\": 429, \"retry_after_ms\": 2000}"),
                    );
                }
                if target.starts_with("refresh:") && e.status.is_none() && kinds == 1 {
                    f.push(Finding::error(
                        format!("{base}/{i}"),
                        "a refresh script entry gives a status (200 = the refresh works)",
                    ));
                }
            }
        }
    }
    let errors = f
        .iter()
        .any(|x| x.severity == crate::profile::diagnostic::Severity::Error);
    c.findings.extend(f);
    if errors {
        c.parsed = None;
    }
    c
}

impl Trace {
    /// The requests as (arrival, tokens), lazily (a counted trace is not expanded).
    pub fn request_iter(&self) -> Box<dyn Iterator<Item = (u64, u64)> + '_> {
        match &self.requests {
            Requests::List(l) => Box::new(l.iter().map(|r| (r.at_ms, r.tokens.unwrap_or(1000)))),
            Requests::Count(c) => {
                let (interval, tokens) = (c.interval_ms, c.tokens.unwrap_or(1000));
                Box::new((0..c.count).map(move |i| (i.saturating_mul(interval), tokens)))
            }
        }
    }
}
