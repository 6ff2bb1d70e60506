//! Validated profiles: what the rest of llxprt sees (STYLE 4, "parse, don't validate").
//!
//! Owns: turning a [`RawProfile`] into a [`Profile`] with the single-file checks of SPEC §2.3
//! (version, provider, names, backends, settings on the wrong kind of profile, synonyms,
//! unknown keys), and writing a profile back in canonical form. Must not: read files; checks
//! that need other files or the filesystem live in `profile::validate`.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::diagnostic::Finding;
use super::jsonpos::escape_token;
use super::names::{check_bucket_name, check_profile_name};
use super::raw::{
    AuthKind, LoadBalancerKind, Policy, RawAuth, RawLoadBalancer, RawModel, RawProfile,
};
use super::settings::{self, Scope, Settings};
use crate::provider;

/// A validated profile.
#[derive(Debug, Clone, PartialEq)]
pub enum Profile {
    /// One provider + model.
    Model(ModelProfile),
    /// Several model profiles under a policy.
    LoadBalancer(LoadBalancerProfile),
}

/// A validated model profile (SPEC §2.1).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelProfile {
    /// Provider name as written (a known name or alias; see [`ModelProfile::provider_info`]).
    pub provider: String,
    /// Model id.
    pub model: String,
    /// Passed through into request bodies.
    pub model_params: Map<String, Value>,
    /// Settings, synonyms folded into canonical keys.
    pub settings: Settings,
    /// Credentials and buckets.
    pub auth: Option<Auth>,
}

/// Validated `auth`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// Kind of credential.
    pub kind: AuthKind,
    /// Bucket names in order; `None` means the one implicit bucket `default`.
    pub buckets: Option<Vec<String>>,
}

/// A validated load-balancer profile (SPEC §2.2).
#[derive(Debug, Clone, PartialEq)]
pub struct LoadBalancerProfile {
    /// Failover or round-robin.
    pub policy: Policy,
    /// Backend profile names, at least 2, no duplicates.
    pub backends: Vec<String>,
    /// Settings, synonyms folded.
    pub settings: Settings,
}

impl ModelProfile {
    /// The provider's table row (always present: validation checked the name).
    pub fn provider_info(&self) -> &'static provider::Provider {
        provider::find(&self.provider).expect("validated profiles name a known provider")
    }

    /// Whether the buckets hold OAuth credentials.
    pub fn is_oauth(&self) -> bool {
        self.auth
            .as_ref()
            .is_some_and(|a| a.kind == AuthKind::Oauth)
    }

    /// The bucket chain in order: the listed buckets, or the implicit `default` (SPEC §5.3).
    pub fn bucket_names(&self) -> Vec<String> {
        self.auth
            .as_ref()
            .and_then(|a| a.buckets.clone())
            .unwrap_or_else(|| vec!["default".to_string()])
    }
}

impl Profile {
    /// The profile's own settings.
    pub fn settings(&self) -> &Settings {
        match self {
            Profile::Model(m) => &m.settings,
            Profile::LoadBalancer(l) => &l.settings,
        }
    }

    /// A short description for `profile list`.
    pub fn summary(&self) -> String {
        match self {
            Profile::Model(m) => format!("model  {}/{}", m.provider, m.model),
            Profile::LoadBalancer(l) => {
                format!(
                    "loadbalancer  {}  {}",
                    l.policy.as_str(),
                    l.backends.join(", ")
                )
            }
        }
    }

    /// The canonical file form (`backends`, never `profiles`; synonyms folded).
    pub fn to_raw(&self) -> RawProfile {
        match self {
            Profile::Model(m) => RawProfile::Model(RawModel {
                schema: None,
                version: 1,
                kind: None,
                provider: m.provider.clone(),
                model: m.model.clone(),
                model_params: (!m.model_params.is_empty()).then(|| m.model_params.clone()),
                settings: (m.settings != Settings::default()).then(|| m.settings.clone()),
                auth: m.auth.as_ref().map(|a| RawAuth {
                    kind: a.kind,
                    buckets: a.buckets.clone(),
                }),
                extra: std::collections::BTreeMap::new(),
            }),
            Profile::LoadBalancer(l) => RawProfile::LoadBalancer(RawLoadBalancer {
                schema: None,
                version: 1,
                kind: LoadBalancerKind::Loadbalancer,
                policy: l.policy,
                backends: Some(l.backends.clone()),
                profiles: None,
                settings: (l.settings != Settings::default()).then(|| l.settings.clone()),
                provider: None,
                model: None,
                model_params: None,
                context_limit: None,
                extra: std::collections::BTreeMap::new(),
            }),
        }
    }

    /// Pretty JSON, 2-space indent, trailing newline (SPEC §1).
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(&self.to_raw())
            .expect("profiles are plain data and always serialise");
        s.push('\n');
        s
    }
}

/// The result of checking one raw profile: the validated profile when nothing is an error,
/// and every finding.
#[derive(Debug)]
pub struct Analysis {
    /// Present when no finding is an error.
    pub profile: Option<Profile>,
    /// Errors, warnings and notes, in document order of discovery.
    pub findings: Vec<Finding>,
}

/// Edit distance, for "did you mean" hints.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest candidate to `word`, if it is close enough to be a plausible typo.
pub fn did_you_mean<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let lower = word.to_lowercase();
    candidates
        .map(|c| (edit_distance(&lower, &c.to_lowercase()), c))
        .filter(|(d, c)| *d <= (c.chars().count() / 3).max(1) + 1)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

const MODEL_KEYS: &[&str] = &[
    "$schema",
    "version",
    "type",
    "provider",
    "model",
    "modelParams",
    "ephemeralSettings",
    "auth",
];
const LB_KEYS: &[&str] = &[
    "$schema",
    "version",
    "type",
    "policy",
    "backends",
    "profiles",
    "ephemeralSettings",
    "provider",
    "model",
    "modelParams",
    "contextLimit",
];

fn check_version(version: u64, out: &mut Vec<Finding>) {
    if version != 1 {
        out.push(
            Finding::error(
                "/version",
                format!("unsupported profile version {version} (this llxprt reads version 1)"),
            )
            .help("write \"version\": 1, or upgrade llxprt"),
        );
    }
}

fn check_unknown_top(
    extra: &std::collections::BTreeMap<String, Value>,
    known: &[&str],
    out: &mut Vec<Finding>,
) {
    for key in extra.keys() {
        let mut f = Finding::warning(
            format!("/{}", escape_token(key)),
            format!("unknown key \"{key}\" (ignored)"),
        )
        .at_key();
        f = match did_you_mean(key, known.iter().copied()) {
            Some(s) => f.help(format!("did you mean \"{s}\"?")),
            None => f.help(format!(
                "remove it if it is a mistake; the keys read here are {}",
                known.join(", ")
            )),
        };
        out.push(f);
    }
}

/// Checks `ephemeralSettings` of a profile of the given kind; returns the normalised settings.
fn check_settings(
    raw: Option<&Settings>,
    is_lb: bool,
    purpose: Purpose,
    out: &mut Vec<Finding>,
) -> Settings {
    let Some(raw) = raw else {
        return Settings::default();
    };
    let ptr = |k: &str| format!("/ephemeralSettings/{}", escape_token(k));
    for key in raw.extra.keys() {
        let mut f =
            Finding::warning(ptr(key), format!("unknown setting \"{key}\" (ignored)")).at_key();
        if let Some(s) = did_you_mean(key, settings::all_spellings()) {
            f = f.help(format!("did you mean \"{s}\"?"));
        } else {
            f = f.help("see SPEC §3 or `schema/profile.schema.json` for the settings llxprt reads");
        }
        out.push(f);
    }
    let set_keys: Vec<String> = serde_json::to_value(raw)
        .ok()
        .and_then(|v| v.as_object().map(|o| o.keys().cloned().collect()))
        .unwrap_or_default();
    for key in &set_keys {
        if raw.extra.contains_key(key) {
            continue;
        }
        match key.as_str() {
            "tpm_threshold" => out.push(
                Finding::warning(ptr(key), "\"tpm_threshold\" is ignored: it is not llxprt's TPM setting")
                    .at_key()
                    .help("to skip a busy backend use \"lb_tpm_failover_threshold\" (SPEC §5.7)"),
            ),
            "circuit_breaker_failure_window_ms" => out.push(
                Finding::note(ptr(key), "\"circuit_breaker_failure_window_ms\" is ignored: llxprt counts consecutive failed requests")
                    .at_key()
                    .help("remove it; \"lb_circuit_breaker_threshold\" sets how many failures in a row open the circuit (SPEC §5.6)"),
            ),
            "circuit_breaker_enabled" => out.push(
                Finding::note(ptr(key), "\"circuit_breaker_enabled\" is read as \"lb_circuit_breaker_threshold\" (true: 3 unless set; false: off)")
                    .at_key()
                    .help("write \"lb_circuit_breaker_threshold\": 3 instead (SPEC §3.2)"),
            ),
            _ => {}
        }
        let Some(row) = settings::lookup(key) else {
            continue;
        };
        if row.key != key {
            out.push(
                Finding::note(ptr(key), format!("\"{key}\" is read as \"{}\"", row.key))
                    .at_key()
                    .help(format!("write \"{}\"", row.key)),
            );
        }
        if is_lb && matches!(row.key, "base-url" | "auth-keyfile" | "auth-key") {
            out.push(
                Finding::warning(
                    ptr(key),
                    format!(
                        "\"{}\" on a load balancer is not inherited by its backends",
                        row.key
                    ),
                )
                .at_key()
                .help("set it in each backend's own model profile (SPEC §3)"),
            );
        }
        if !is_lb && row.scope == Scope::Failover && row.key.starts_with("lb_") {
            out.push(
                Finding::warning(
                    ptr(key),
                    format!("\"{}\" only makes sense on a load balancer", row.key),
                )
                .at_key()
                .help("move it to the load balancer that uses this profile"),
            );
        }
    }
    if raw.auth_key.is_some() {
        out.push(
            Finding::warning(ptr("auth-key"), "a raw API key is stored in this profile")
                .help("move the key to a file readable only by you and set \"auth-keyfile\""),
        );
    }
    if let Some(url) = raw.base_url.as_ref().filter(|_| purpose == Purpose::Run)
        && (!(url.starts_with("http://") || url.starts_with("https://"))
            || url.len() <= "https://".len())
    {
        out.push(
            Finding::error(
                ptr("base-url"),
                format!(
                    "\"base-url\" must be an http:// or https:// URL, got {:?}",
                    crate::redact::scrub(url)
                ),
            )
            .help("for example \"https://api.openai.com/v1\""),
        );
    }
    // SPEC §3.1: header names ignore case, so two keys of one object that differ only in case
    // are one header, of which only one value can be sent.
    let names: Vec<&String> = raw
        .custom_headers
        .iter()
        .flatten()
        .map(|(n, _)| n)
        .collect();
    for (i, a) in names.iter().enumerate() {
        if let Some(b) = names[..i].iter().find(|b| b.eq_ignore_ascii_case(a)) {
            out.push(
                Finding::warning(
                    format!("{}/{}", ptr("custom-headers"), escape_token(a)),
                    format!(
                        "custom header \"{a}\" is the same header as \"{b}\" (header names ignore case); only one of them is sent"
                    ),
                )
                .at_key()
                .help("keep one of them"),
            );
        }
    }
    if let Some(codes) = &raw.failover_status_codes {
        let mut seen = BTreeSet::new();
        for (i, c) in codes.iter().enumerate() {
            if !seen.insert(c) {
                out.push(
                    Finding::warning(
                        format!("{}/{i}", ptr("failover_status_codes")),
                        format!("status {c} is listed twice"),
                    )
                    .help("remove the duplicate"),
                );
            }
        }
    }
    let mut s = raw.clone();
    s.extra.clear();
    s.normalise();
    s
}

/// What a profile is checked for: which single-file checks [`analyse_for`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A profile to validate or to run: every check (SPEC §2.3).
    Run,
    /// A profile embedded in a `simulate` trace: its base URL is not checked, since a
    /// simulation never reads it ("keyfiles, tokens and base URLs in the profiles are not
    /// read or checked there", SPEC §9). Everything the engine reads is checked as for
    /// [`Purpose::Run`].
    Simulate,
}

/// Checks one raw profile on its own (SPEC §2.3, third layer, the single-file part).
pub fn analyse(raw: &RawProfile) -> Analysis {
    analyse_for(raw, Purpose::Run)
}

/// [`analyse`] for a `purpose`.
pub fn analyse_for(raw: &RawProfile, purpose: Purpose) -> Analysis {
    let mut out = Vec::new();
    let profile = match raw {
        RawProfile::Model(m) => Some(Profile::Model(analyse_model(m, purpose, &mut out))),
        RawProfile::LoadBalancer(l) => analyse_lb(l, purpose, &mut out).map(Profile::LoadBalancer),
    };
    let has_error = out
        .iter()
        .any(|f| f.severity == super::diagnostic::Severity::Error);
    Analysis {
        profile: if has_error { None } else { profile },
        findings: out,
    }
}

fn analyse_model(m: &RawModel, purpose: Purpose, out: &mut Vec<Finding>) -> ModelProfile {
    check_version(m.version, out);
    if m.kind == Some(super::raw::ModelKind::Standard) {
        out.push(
            Finding::note("/type", "type \"standard\" is read as a model profile")
                .help("omit \"type\" or write \"model\""),
        );
    }
    check_unknown_top(&m.extra, MODEL_KEYS, out);
    if provider::find(&m.provider).is_none() {
        let mut f = Finding::error("/provider", format!("unknown provider \"{}\"", m.provider));
        f = match did_you_mean(&m.provider, provider::all_names()) {
            Some(s) => f.help(format!("did you mean \"{s}\"?")),
            None => f.help(format!(
                "known providers: {}; any OpenAI-compatible server works as \"openai\" with \"base-url\"",
                provider::PROVIDERS.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
            )),
        };
        out.push(f);
    }
    if m.model.trim().is_empty() {
        out.push(
            Finding::error("/model", "\"model\" is empty")
                .help("name the model id the provider expects"),
        );
    }
    if let Some(buckets) = m.auth.as_ref().and_then(|a| a.buckets.as_ref()) {
        let mut seen = BTreeSet::new();
        for (i, b) in buckets.iter().enumerate() {
            let ptr = format!("/auth/buckets/{i}");
            if let Err(why) = check_bucket_name(b) {
                out.push(
                    Finding::error(ptr, format!("invalid bucket name {b:?}: {why}")).help(
                        "bucket names have 1–128 characters, none of : / \\ < > \" | ? *, and are not login, logout, status, enable or disable (SPEC §1)",
                    ),
                );
            } else if !seen.insert(b.as_str()) {
                out.push(
                    Finding::error(ptr, format!("bucket \"{b}\" is listed twice"))
                        .help("remove the duplicate"),
                );
            }
        }
    }
    let settings = check_settings(m.settings.as_ref(), false, purpose, out);
    ModelProfile {
        provider: m.provider.clone(),
        model: m.model.clone(),
        model_params: m.model_params.clone().unwrap_or_default(),
        settings,
        auth: m.auth.as_ref().map(|a| Auth {
            kind: a.kind,
            buckets: a.buckets.clone(),
        }),
    }
}

fn analyse_lb(
    l: &RawLoadBalancer,
    purpose: Purpose,
    out: &mut Vec<Finding>,
) -> Option<LoadBalancerProfile> {
    check_version(l.version, out);
    check_unknown_top(&l.extra, LB_KEYS, out);
    for (key, present) in [
        ("provider", l.provider.is_some()),
        ("model", l.model.is_some()),
        ("modelParams", l.model_params.is_some()),
    ] {
        if present {
            out.push(
                Finding::note(
                    format!("/{key}"),
                    format!("\"{key}\" on a load balancer is ignored: each backend uses its own"),
                )
                .at_key()
                .help("remove it"),
            );
        }
    }
    let (field, list) = match (&l.backends, &l.profiles) {
        (Some(b), Some(_)) => {
            out.push(
                Finding::warning(
                    "/profiles",
                    "both \"backends\" and \"profiles\" are set; \"profiles\" is ignored",
                )
                .at_key()
                .help("remove \"profiles\""),
            );
            ("backends", b)
        }
        (Some(b), None) => ("backends", b),
        (None, Some(p)) => {
            out.push(
                Finding::note("/profiles", "\"profiles\" is read as \"backends\"")
                    .at_key()
                    .help("write \"backends\""),
            );
            ("profiles", p)
        }
        (None, None) => {
            // Pointed at `/backends` (placed at the object when absent) so that a
            // `backends` the schema rejected is not also reported as missing (SPEC §2.3).
            out.push(
                Finding::error("/backends", "a load balancer needs \"backends\"")
                    .help("list at least 2 model profiles: \"backends\": [\"a\", \"b\"]"),
            );
            return None;
        }
    };
    if list.len() < 2 {
        out.push(
            Finding::error(
                format!("/{field}"),
                format!(
                    "a load balancer needs at least 2 backends, this one has {}",
                    list.len()
                ),
            )
            .help("add another model profile, or use the model profile on its own"),
        );
    }
    let mut seen = BTreeSet::new();
    for (i, name) in list.iter().enumerate() {
        let ptr = format!("/{field}/{i}");
        if let Err(why) = check_profile_name(name) {
            out.push(
                Finding::error(ptr, format!("invalid profile name {name:?}: {why}"))
                    .help("a backend is the name of a profile in the profiles directory (SPEC §1)"),
            );
        } else if !seen.insert(super::names::fold(name)) {
            out.push(
                Finding::error(ptr, format!("backend \"{name}\" is listed twice"))
                    .help("each backend is tried at most once per request; remove the duplicate"),
            );
        }
    }
    let mut settings = check_settings(l.settings.as_ref(), true, purpose, out);
    if let Some(cl) = l.context_limit {
        out.push(
            Finding::note(
                "/contextLimit",
                "\"contextLimit\" is read as the load balancer's \"context-limit\"",
            )
            .at_key()
            .help("write \"context-limit\" in \"ephemeralSettings\""),
        );
        settings.context_limit.get_or_insert(cl);
    }
    Some(LoadBalancerProfile {
        policy: l.policy,
        backends: list.clone(),
        settings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_find_close_names_only() {
        assert_eq!(
            did_you_mean("failover_retry_cont", settings::all_spellings()),
            Some("failover_retry_count")
        );
        assert_eq!(
            did_you_mean("antropic", provider::all_names()),
            Some("anthropic")
        );
        assert_eq!(did_you_mean("zzzzzzzz", provider::all_names()), None);
    }

    fn raw(v: &serde_json::Value) -> RawProfile {
        serde_json::from_value(v.clone()).unwrap()
    }

    #[test]
    fn one_header_twice_in_another_case_is_a_warning() {
        let p = raw(
            &serde_json::json!({"version": 1, "provider": "openai", "model": "m",
            "ephemeralSettings": {"custom-headers": {"X-Team": "a", "x-team": "b", "X-Other": "c"}}}),
        );
        let a = analyse(&p);
        assert!(a.profile.is_some());
        let w: Vec<&Finding> = a
            .findings
            .iter()
            .filter(|f| f.message.contains("same header"))
            .collect();
        assert_eq!(w.len(), 1, "{:?}", a.findings);
        assert_eq!(w[0].pointer, "/ephemeralSettings/custom-headers/x-team");
    }

    /// SPEC §9: a simulation does not check base URLs; validation and live loads do.
    #[test]
    fn simulate_does_not_check_the_base_url() {
        let p = raw(
            &serde_json::json!({"version": 1, "provider": "openai", "model": "m",
            "ephemeralSettings": {"base-url": "unix:///run/llm.sock"}}),
        );
        assert!(analyse(&p).profile.is_none());
        let a = analyse_for(&p, Purpose::Simulate);
        assert!(a.profile.is_some(), "{:?}", a.findings);
    }
}
