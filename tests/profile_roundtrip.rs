//! Round trip of valid profiles (SPEC §2, §3): any model or load-balancer profile llxprt can
//! hold, written with `Profile::to_json()`, reads back through the full validation
//! (`check_profile`, all three layers of SPEC §2.3) as the same profile, writes back as the
//! same text, and validates against the committed schema `schema/profile.schema.json`.

use std::sync::OnceLock;

use llxprt::profile::model::{Auth, LoadBalancerProfile, ModelProfile, Profile};
use llxprt::profile::raw::{AuthKind, Policy};
use llxprt::profile::settings::{
    MidStream, ReasoningEffort, Settings, Streaming, StripFromContext,
};
use llxprt::profile::validate::{Resolved, Resolver, check_profile};
use llxprt::provider;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{Map, Value};

/// The committed schema, compiled once.
fn committed_schema() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/profile.schema.json");
        let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        jsonschema::draft202012::new(&schema).unwrap()
    })
}

/// Knows the generated backends, each as a plain model profile.
struct Backends(Vec<String>);

impl Resolver for Backends {
    fn resolve(&self, name: &str) -> Resolved {
        if self.0.iter().any(|b| b.eq_ignore_ascii_case(name)) {
            Resolved::Model(Box::new(ModelProfile {
                provider: "openai".into(),
                model: "gpt-4o".into(),
                model_params: Map::new(),
                settings: Settings::default(),
                auth: None,
            }))
        } else {
            Resolved::Missing
        }
    }
    fn names(&self) -> Vec<String> {
        self.0.clone()
    }
}

fn streaming() -> impl Strategy<Value = Streaming> {
    prop_oneof![Just(Streaming::Enabled), Just(Streaming::Disabled)]
}
fn effort() -> impl Strategy<Value = ReasoningEffort> {
    prop_oneof![
        Just(ReasoningEffort::Low),
        Just(ReasoningEffort::Medium),
        Just(ReasoningEffort::High)
    ]
}
fn strip() -> impl Strategy<Value = StripFromContext> {
    prop_oneof![
        Just(StripFromContext::All),
        Just(StripFromContext::None),
        Just(StripFromContext::AllButLast)
    ]
}
fn mid_stream() -> impl Strategy<Value = MidStream> {
    prop_oneof![
        Just(MidStream::Restart),
        Just(MidStream::Continue),
        Just(MidStream::Buffer),
        Just(MidStream::Error)
    ]
}

/// The §3.1 settings, canonical spellings only (synonyms are folded on reading, so a profile
/// holding one would not be equal to itself read back).
fn model_settings() -> impl Strategy<Value = Settings> {
    let identity = (
        proptest::option::of("https?://[a-z]{1,10}\\.[a-z]{2,3}(/v1)?"),
        proptest::option::of("~/\\.[a-z]{1,8}_key|/etc/llxprt/[a-z]{1,8}"),
        proptest::option::of("sk-[a-zA-Z0-9]{5,30}"),
        proptest::option::of(1u64..=2_000_000),
        proptest::option::of(streaming()),
        proptest::option::of(any::<bool>()),
        proptest::option::of(1u64..=100_000),
        proptest::option::of(effort()),
    );
    let rest = (
        proptest::option::of(any::<bool>()),
        proptest::option::of(any::<bool>()),
        proptest::option::of(strip()),
        proptest::option::of(proptest::collection::btree_map(
            "X-[A-Za-z]{1,10}",
            "[ -~]{0,20}",
            0..3,
        )),
        proptest::option::of(".{0,40}"),
        proptest::option::of(any::<bool>()),
        proptest::option::of(any::<bool>()),
        proptest::option::of(1u64..=600_000),
        proptest::option::of(1u64..=600_000),
        proptest::option::of(1u64..=600_000),
    );
    (identity, rest).prop_map(|(a, b)| Settings {
        base_url: a.0,
        auth_keyfile: a.1,
        auth_key: a.2,
        context_limit: a.3,
        streaming: a.4,
        reasoning_enabled: a.5,
        reasoning_budget_tokens: a.6,
        reasoning_effort: a.7,
        reasoning_include_in_response: b.0,
        reasoning_include_in_context: b.1,
        reasoning_strip_from_context: b.2,
        custom_headers: b.3,
        system_prompt: b.4,
        accepts_prefill: b.5,
        stream_usage: b.6,
        connect_timeout_ms: b.7,
        first_byte_timeout_ms: b.8,
        stream_idle_timeout_ms: b.9,
        ..Settings::default()
    })
}

/// The §3.2 settings, canonical spellings only, with values in their documented ranges.
fn failover_settings() -> impl Strategy<Value = Settings> {
    (
        proptest::option::of(0u32..=100),
        proptest::option::of(0u64..=600_000),
        proptest::option::of(any::<bool>()),
        proptest::option::of(proptest::collection::vec(100u16..=599, 0..6)),
        proptest::option::of(1u64..=10_000_000),
        proptest::option::of(1u32..=1000),
        proptest::option::of(1u64..=3_600_000),
        proptest::option::of(0u64..=600_000),
        proptest::option::of(0u64..=3_600_000),
        proptest::option::of(1u32..=1000),
        proptest::option::of(mid_stream()),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(|f| Settings {
            failover_retry_count: f.0,
            failover_retry_delay_ms: f.1,
            failover_on_network_errors: f.2,
            failover_status_codes: f.3,
            lb_tpm_failover_threshold: f.4,
            lb_circuit_breaker_threshold: f.5,
            lb_circuit_breaker_timeout_ms: f.6,
            retry_after_max_ms: f.7,
            bucket_cooldown_ms: f.8,
            max_attempts: f.9,
            mid_stream: f.10,
            failover_on_context_length: f.11,
            ..Settings::default()
        })
}

/// Any mix of both kinds of settings: each is valid on either kind of profile (the wrong
/// kind is only a warning, SPEC §2.3).
fn settings() -> impl Strategy<Value = Settings> {
    (model_settings(), failover_settings()).prop_map(|(mut m, f)| {
        m.overlay(&f);
        m
    })
}

fn provider_name() -> impl Strategy<Value = String> {
    let names: Vec<String> = provider::all_names().map(str::to_string).collect();
    proptest::sample::select(names)
}

/// JSON values that survive a text round trip exactly (no NaN; decimals with few digits).
fn param_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (0u32..=200).prop_map(|k| Value::from(f64::from(k) / 100.0)),
        "[ -~]{0,12}".prop_map(Value::from),
        proptest::collection::vec("[a-z]{1,6}", 0..3).prop_map(Value::from),
    ]
}

fn bucket_name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9][a-zA-Z0-9@._-]{0,20}".prop_filter("reserved words are not bucket names", |b| {
        !["login", "logout", "status", "enable", "disable"]
            .iter()
            .any(|r| r.eq_ignore_ascii_case(b))
    })
}

fn auth() -> impl Strategy<Value = Option<Auth>> {
    let kind = prop_oneof![Just(AuthKind::Oauth), Just(AuthKind::Apikey)];
    let buckets = proptest::option::of(
        proptest::collection::btree_set(bucket_name(), 1..4)
            .prop_map(|s| s.into_iter().collect::<Vec<_>>())
            .prop_shuffle(),
    );
    proptest::option::of((kind, buckets).prop_map(|(kind, buckets)| Auth { kind, buckets }))
}

fn model_profile() -> impl Strategy<Value = Profile> {
    (
        provider_name(),
        "[a-zA-Z0-9][a-zA-Z0-9:/._-]{0,40}",
        proptest::collection::btree_map("[a-z_]{1,12}", param_value(), 0..4),
        settings(),
        auth(),
    )
        .prop_map(|(provider, model, params, settings, auth)| {
            Profile::Model(ModelProfile {
                provider,
                model,
                model_params: params.into_iter().collect::<Map<String, Value>>(),
                settings,
                auth,
            })
        })
}

fn profile_name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9][a-zA-Z0-9 ._-]{0,20}[a-zA-Z0-9]"
        .prop_filter("\"none\" is not a profile name", |n| {
            !n.eq_ignore_ascii_case("none")
        })
}

fn loadbalancer_profile() -> impl Strategy<Value = Profile> {
    (
        prop_oneof![Just(Policy::Failover), Just(Policy::Roundrobin)],
        // Unique ignoring case: backends are profile names (SPEC §1).
        proptest::collection::btree_map(
            profile_name().prop_map(|n| n.to_lowercase()),
            profile_name(),
            2..6,
        )
        .prop_map(|m| m.into_values().collect::<Vec<_>>())
        .prop_filter("unique ignoring case", |v| {
            let lower: std::collections::BTreeSet<String> =
                v.iter().map(|n| n.to_lowercase()).collect();
            lower.len() == v.len()
        })
        .prop_shuffle(),
        settings(),
    )
        .prop_map(|(policy, backends, settings)| {
            Profile::LoadBalancer(LoadBalancerProfile {
                policy,
                backends,
                settings,
            })
        })
}

fn backends_of(p: &Profile) -> Vec<String> {
    match p {
        Profile::LoadBalancer(l) => l.backends.clone(),
        Profile::Model(_) => Vec::new(),
    }
}

fn round_trip(profile: &Profile) -> Result<(), TestCaseError> {
    let json = profile.to_json();
    let resolver = Backends(backends_of(profile));
    let checked = check_profile(json.as_bytes(), &resolver, None);
    let errors: Vec<_> = checked
        .findings
        .iter()
        .filter(|f| f.severity == llxprt::profile::diagnostic::Severity::Error)
        .collect();
    prop_assert!(errors.is_empty(), "errors: {errors:#?}\n{json}");
    prop_assert_eq!(checked.parsed.as_ref(), Some(profile), "{}", json);
    prop_assert_eq!(
        checked.parsed.as_ref().map(Profile::to_json),
        Some(json.clone())
    );
    let value: Value = serde_json::from_str(&json).unwrap();
    let schema_errors: Vec<String> = committed_schema()
        .iter_errors(&value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    prop_assert!(
        schema_errors.is_empty(),
        "the committed schema rejects what llxprt writes: {schema_errors:#?}\n{json}"
    );
    Ok(())
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        // Integration tests have no lib.rs beside them: name the file (CRATES.md §4).
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/profile_roundtrip.txt",
        ))),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn model_profiles_round_trip(p in model_profile()) {
        round_trip(&p)?;
    }

    #[test]
    fn loadbalancer_profiles_round_trip(p in loadbalancer_profile()) {
        round_trip(&p)?;
    }
}

/// The generators do produce what the properties are about (a generator that only made
/// empty profiles would pass trivially).
#[test]
fn generators_cover_settings_buckets_and_params() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut settings_seen, mut buckets_seen, mut params_seen) = (0, 0, 0);
    for _ in 0..64 {
        let Profile::Model(m) = model_profile().new_tree(&mut runner).unwrap().current() else {
            unreachable!("model_profile makes model profiles");
        };
        settings_seen += usize::from(m.settings != Settings::default());
        buckets_seen += usize::from(m.auth.as_ref().is_some_and(|a| a.buckets.is_some()));
        params_seen += usize::from(!m.model_params.is_empty());
    }
    assert!(
        settings_seen > 32 && buckets_seen > 4 && params_seen > 16,
        "{settings_seen} {buckets_seen} {params_seen}"
    );
}
