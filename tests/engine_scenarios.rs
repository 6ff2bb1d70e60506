//! Scenario tests that pin the engine's rules, SPEC §5.2–§5.11 one by one. Each builds a small
//! trace (or feeds events directly), runs the same loop `simulate` uses, and asserts what the
//! engine did; the names say which rule they pin.

use std::sync::Arc;

use llxprt::engine::plan::{BackendPlan, BucketPlan, FailoverSettings, Plan, Policy};
use llxprt::engine::{Class, EngineState, Event, Note, Order, Outcome, SkipReason, Step};
use llxprt::profile::settings::Settings;
use llxprt::simulate::{self, Summary, trace::Trace};
use serde_json::{Value, json};

/// Runs an inline trace; returns the JSON action lines and the summary.
fn run(trace: &Value) -> (Vec<Value>, Summary) {
    let t: Trace = serde_json::from_value(trace.clone()).expect("test traces are well formed");
    let checked = simulate::trace::check_trace(&serde_json::to_vec(trace).unwrap());
    assert!(
        checked.parsed.is_some(),
        "invalid test trace: {:?}",
        checked.findings
    );
    let mut session = t.settings.clone().unwrap_or_default();
    session.normalise();
    let (plan, backends) = simulate::plan_for(&t, &t.profile, &session, None).unwrap();
    let mut out = Vec::new();
    let summary = simulate::run(&t, &plan, &backends, &mut out, true).unwrap();
    let lines = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (lines, summary)
}

fn model(provider: &str, buckets: &[&str]) -> Value {
    let mut m = json!({"version": 1, "provider": provider, "model": "m"});
    if !buckets.is_empty() {
        m["auth"] = json!({"type": "apikey", "buckets": buckets});
    }
    m
}

#[expect(
    clippy::needless_pass_by_value,
    reason = "call sites read best with an inline json! value"
)]
fn lb(policy: &str, backends: &[&str], settings: Value) -> Value {
    json!({"version": 1, "type": "loadbalancer", "policy": policy, "backends": backends, "ephemeralSettings": settings})
}

/// `backend/bucket` of every attempt of request `id`.
fn sends(lines: &[Value], id: u64) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l["request"] == id && l["action"] == "send")
        .map(|l| {
            format!(
                "{}/{}",
                l["backend"].as_str().unwrap(),
                l["bucket"].as_str().unwrap()
            )
        })
        .collect()
}

fn actions<'a>(lines: &'a [Value], id: u64, name: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|l| l["request"] == id && l["action"] == name)
        .collect()
}

#[test]
fn spec_5_2_failover_prefers_the_primary_again_as_soon_as_it_answers() {
    let (lines, s) = run(&json!({
        "version": 1, "profile": "lb",
        "profiles": {"a": model("openai", &[]), "b": model("anthropic", &[]), "lb": lb("failover", &["a", "b"], json!({"failover_retry_count": 0}))},
        "requests": {"count": 3, "interval_ms": 1000},
        "outcomes": {"a": {"*": [{"status": 503, "times": 1}, {"status": 200}]}}
    }));
    assert_eq!(sends(&lines, 1), ["a/default", "b/default"]);
    assert_eq!(sends(&lines, 2), ["a/default"]);
    assert_eq!(s.requests[2].backend.as_deref(), Some("a"));
}

#[test]
fn spec_5_2_roundrobin_cursor_advances_once_per_request_even_when_it_fails_at_once() {
    let (lines, _) = run(&json!({
        "version": 1, "profile": "rr",
        "profiles": {"a": model("openai", &[]), "b": model("openai", &[]), "c": model("openai", &[]),
                     "rr": lb("roundrobin", &["a", "b", "c"], json!({}))},
        "requests": {"count": 4, "interval_ms": 10},
        "outcomes": {"b": {"*": [{"status": 400, "times": 1}, {"status": 200}]}}
    }));
    assert_eq!(sends(&lines, 1), ["a/default"]);
    assert_eq!(
        sends(&lines, 2),
        ["b/default"],
        "400 does not trigger failover: fails at once"
    );
    assert_eq!(actions(&lines, 2, "fail").len(), 1);
    assert_eq!(sends(&lines, 3), ["c/default"]);
    assert_eq!(sends(&lines, 4), ["a/default"]);
}

#[test]
fn spec_5_2_all_skipped_fails_at_once_naming_each_backend_and_when() {
    let (lines, s) = run(&json!({
        "version": 1, "profile": "lb",
        "profiles": {"a": model("openai", &[]), "b": model("anthropic", &[]),
                     "lb": lb("failover", &["a", "b"], json!({"failover_retry_count": 0, "lb_circuit_breaker_threshold": 1, "lb_circuit_breaker_timeout_ms": 5000}))},
        "requests": [{"at_ms": 0}, {"at_ms": 1000}],
        "outcomes": {"a": {"*": [{"status": 503}]}, "b": {"*": [{"status": 500}]}}
    }));
    assert_eq!(s.requests[0].result, "error");
    assert!(sends(&lines, 2).is_empty());
    let err = s.requests[1].error.as_deref().unwrap();
    assert!(err.starts_with("every backend was skipped"), "{err}");
    assert!(
        err.contains("a: circuit open, eligible again in 4.100s"),
        "{err}"
    );
    assert!(
        err.contains("b: circuit open, eligible again in 4.200s"),
        "{err}"
    );
}

#[test]
fn spec_5_3_bucket_chain_then_next_backend_on_its_first_bucket() {
    let (lines, _) = run(&json!({
        "version": 1, "profile": "lb",
        "profiles": {"a": model("anthropic", &["b1", "b2"]), "z": model("openai", &["z1", "z2"]),
                     "lb": lb("failover", &["a", "z"], json!({}))},
        "requests": [{"at_ms": 0}],
        "outcomes": {"a": {"b1": [{"status": 402}], "b2": [{"status": 429}]}}
    }));
    assert_eq!(sends(&lines, 1), ["a/b1", "a/b2", "z/z1"]);
}

#[test]
fn spec_5_3_an_exhausted_chain_fails_over_only_if_its_last_status_triggers() {
    // The chain advances on 402 whatever the codes; after it, 402 is not in the default
    // failover_status_codes, so the request fails instead of moving to z.
    let (lines, s) = run(&json!({
        "version": 1, "profile": "lb",
        "profiles": {"a": model("anthropic", &["b1", "b2"]), "z": model("openai", &[]),
                     "lb": lb("failover", &["a", "z"], json!({}))},
        "requests": [{"at_ms": 0}],
        "outcomes": {"a": {"b1": [{"status": 429}], "b2": [{"status": 402}]}}
    }));
    assert_eq!(sends(&lines, 1), ["a/b1", "a/b2"]);
    assert!(
        s.requests[0]
            .error
            .as_deref()
            .unwrap()
            .starts_with("a/b2 answered quota 402, which does not trigger failover")
    );
}

#[test]
fn spec_5_3_forbidden_and_api_key_401_advance_at_once() {
    let (lines, s) = run(&json!({
        "version": 1, "profile": "a",
        "profiles": {"a": model("openai", &["k1", "k2", "k3"])},
        "requests": [{"at_ms": 0}],
        "outcomes": {"a": {"k1": [{"status": 403}], "k2": [{"status": 401}]}}
    }));
    assert_eq!(sends(&lines, 1), ["a/k1", "a/k2", "a/k3"]);
    assert!(actions(&lines, 1, "refresh_token").is_empty());
    assert_eq!(s.requests[0].result, "ok");
}

#[test]
fn spec_5_3_oauth_401_refreshes_once_then_retries_the_same_bucket() {
    let oauth = json!({"version": 1, "provider": "anthropic", "model": "m", "auth": {"type": "oauth", "buckets": ["o1", "o2"]}});
    let (lines, _) = run(&json!({
        "version": 1, "profile": "a", "profiles": {"a": oauth},
        "requests": [{"at_ms": 0}],
        "outcomes": {"a": {"o1": [{"status": 401, "times": 2}, {"status": 200}]}}
    }));
    // 401 → refresh → o1 again → 401 again → advance (never a second refresh of o1).
    assert_eq!(sends(&lines, 1), ["a/o1", "a/o1", "a/o2"]);
    assert_eq!(actions(&lines, 1, "refresh_token").len(), 1);
}

#[test]
fn spec_5_3_failed_refresh_advances() {
    let (lines, _) = run(&json!({
        "version": 1, "profile": "a",
        "profiles": {"a": {"version": 1, "provider": "anthropic", "model": "m", "auth": {"type": "oauth", "buckets": ["o1", "o2"]}}},
        "requests": [{"at_ms": 0}],
        "outcomes": {"a": {"o1": [{"status": 401}], "refresh:o1": [{"status": 400, "latency_ms": 50}]}}
    }));
    assert_eq!(sends(&lines, 1), ["a/o1", "a/o2"]);
    let refreshed = actions(&lines, 1, "refreshed");
    assert_eq!(refreshed[0]["ok"], false);
    assert_eq!(refreshed[0]["t_ms"], 150, "the refresh took its latency");
}

#[test]
fn spec_5_3_retry_after_within_max_is_waited_out_on_the_same_bucket_once() {
    let (lines, _) = run(&json!({
        "version": 1, "profile": "a",
        "profiles": {"a": model("openai", &["k1", "k2"])},
        "settings": {"retry_after_max_ms": 5000, "failover_retry_count": 0},
        "requests": [{"at_ms": 0}],
        "outcomes": {"a": {"k1": [{"status": 429, "retry_after_ms": 2000}]}}
    }));
    assert_eq!(sends(&lines, 1), ["a/k1", "a/k1", "a/k2"]);
    let waits = actions(&lines, 1, "wait_until");
    assert_eq!(waits.len(), 1);
    assert_eq!(waits[0]["until_ms"], 2100);
    // SPEC §5.11: a second 429 after the wait marks the bucket cooling like any other, and the
    // wait did not use up failover_retry_count (0 here, yet the bucket was retried).
    let cool = actions(&lines, 1, "cooldown");
    assert_eq!(cool[0]["until_ms"], 2200 + 2000);
}

#[test]
fn spec_5_3_retry_after_above_max_or_max_zero_cools_instead() {
    for max in [0, 1000] {
        let (lines, _) = run(&json!({
            "version": 1, "profile": "a",
            "profiles": {"a": model("openai", &["k1", "k2"])},
            "settings": {"retry_after_max_ms": max},
            "requests": [{"at_ms": 0}],
            "outcomes": {"a": {"k1": [{"status": 429, "retry_after_ms": 2000}]}}
        }));
        assert_eq!(sends(&lines, 1), ["a/k1", "a/k2"], "max {max}");
        assert_eq!(actions(&lines, 1, "cooldown")[0]["until_ms"], 2100);
    }
}

#[test]
fn spec_5_3_quota_cools_for_the_larger_of_cooldown_and_retry_after() {
    let (lines, _) = run(&json!({
        "version": 1, "profile": "a",
        "profiles": {"a": model("openai", &["k1", "k2"])},
        "settings": {"bucket_cooldown_ms": 10000},
        "requests": [{"at_ms": 0}],
        "outcomes": {"a": {"k1": [{"status": 402, "retry_after_ms": 30000, "times": 1}, {"status": 429, "code": "insufficient_quota"}]}}
    }));
    assert_eq!(actions(&lines, 1, "cooldown")[0]["until_ms"], 30100);
}

#[test]
fn spec_5_11_cooldown_starts_at_the_response_and_ends_exactly_at_until() {
    let (lines, _) = run(&json!({
        "version": 1, "profile": "a",
        "profiles": {"a": model("openai", &["k1", "k2"])},
        "settings": {"bucket_cooldown_ms": 1000},
        "requests": [{"at_ms": 0}, {"at_ms": 1099}, {"at_ms": 1100}],
        "outcomes": {"a": {"k1": [{"status": 429, "times": 1}, {"status": 200}], "k2": [{"status": 200, "latency_ms": 0}]}}
    }));
    // 429 arrives at 100 → cooling over [100, 1100).
    assert_eq!(actions(&lines, 1, "cooldown")[0]["until_ms"], 1100);
    assert_eq!(sends(&lines, 2), ["a/k2"], "still cooling at 1099");
    assert_eq!(sends(&lines, 3), ["a/k1"], "ready again at 1100");
}

#[test]
fn spec_5_11_cooling_buckets_are_ordered_by_when_their_cooldown_ends() {
    let (lines, _) = run(&json!({
        "version": 1, "profile": "a",
        "profiles": {"a": model("openai", &["k1", "k2", "k3"])},
        "requests": [{"at_ms": 0}, {"at_ms": 1000}],
        "outcomes": {"a": {
            "k1": [{"status": 429, "retry_after_ms": 9000, "times": 1}, {"status": 200}],
            "k2": [{"status": 429, "retry_after_ms": 5000, "times": 1}, {"status": 200}],
            "k3": [{"status": 429, "retry_after_ms": 7000, "times": 1}, {"status": 200}]}}
    }));
    assert_eq!(sends(&lines, 1), ["a/k1", "a/k2", "a/k3"]);
    // All three cool; the next request tries them (never skips them) by cooldown end.
    assert_eq!(sends(&lines, 2), ["a/k2"]);
}

#[test]
fn spec_5_11_all_cooling_backends_go_last_by_earliest_end_ties_in_list_order() {
    let (lines, _) = run(&json!({
        "version": 1, "profile": "lb",
        "profiles": {"a": model("openai", &["a1"]), "b": model("anthropic", &["b1"]), "c": model("gemini", &["c1"]),
                     "lb": lb("failover", &["a", "b", "c"], json!({"bucket_cooldown_ms": 10000}))},
        "requests": [{"at_ms": 0}, {"at_ms": 1000}],
        "outcomes": {"a": {"a1": [{"status": 429, "times": 1}, {"status": 200}]},
                     "b": {"b1": [{"status": 429, "retry_after_ms": 3000, "times": 1}, {"status": 200}]},
                     "c": {"c1": [{"status": 429, "retry_after_ms": 60000, "times": 1}, {"status": 200}]}}
    }));
    assert_eq!(sends(&lines, 1), ["a/a1", "b/b1", "c/c1"]);
    // Request 2: every backend is cooling; b's ends first (3.2 s), then a's (10.1 s), then c's.
    assert_eq!(sends(&lines, 2), ["b/b1"]);
}

#[test]
fn spec_5_4_retries_then_failover_with_retry_delay() {
    let (lines, _) = run(&json!({
        "version": 1, "profile": "lb",
        "profiles": {"a": model("openai", &[]), "b": model("anthropic", &[]),
                     "lb": lb("failover", &["a", "b"], json!({"failover_retry_count": 2, "failover_retry_delay_ms": 500}))},
        "requests": [{"at_ms": 0}],
        "outcomes": {"a": {"*": [{"status": 500}]}}
    }));
    assert_eq!(
        sends(&lines, 1),
        ["a/default", "a/default", "a/default", "b/default"]
    );
    let times: Vec<u64> = actions(&lines, 1, "send")
        .iter()
        .map(|l| l["t_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(times, [0, 600, 1200, 1300]);
}

#[test]
fn spec_5_4_server_retry_waits_max_of_delay_and_capped_retry_after() {
    let (lines, _) = run(&json!({
        "version": 1, "profile": "a", "profiles": {"a": model("openai", &[])},
        "settings": {"failover_retry_delay_ms": 100, "retry_after_max_ms": 1500},
        "requests": [{"at_ms": 0}],
        "outcomes": {"a": {"*": [{"status": 503, "retry_after_ms": 4000, "times": 1}, {"status": 200}]}}
    }));
    assert_eq!(actions(&lines, 1, "retry")[0]["delay_ms"], 1500);
}

#[test]
fn spec_5_4_timeouts_are_not_retried_on_the_same_backend() {
    let (lines, _) = run(&json!({
        "version": 1, "profile": "lb",
        "profiles": {"a": model("openai", &[]), "b": model("anthropic", &[]),
                     "lb": lb("failover", &["a", "b"], json!({"failover_retry_count": 3}))},
        "settings": {"first_byte_timeout_ms": 2500},
        "requests": [{"at_ms": 0}],
        "outcomes": {"a": {"*": [{"timeout": "first_byte"}]}}
    }));
    assert_eq!(sends(&lines, 1), ["a/default", "b/default"]);
    assert_eq!(
        actions(&lines, 1, "send")[1]["t_ms"],
        2500,
        "a timeout entry takes its timeout setting"
    );
}

#[test]
fn spec_5_4_non_triggering_outcomes_fail_at_once() {
    for (entry, settings) in [
        (json!({"status": 404}), json!({})),
        (
            json!({"status": 400, "code": "content_policy_violation"}),
            json!({}),
        ),
        (json!({"status": 200, "code": "SAFETY"}), json!({})),
        (
            json!({"status": 503}),
            json!({"failover_status_codes": [500]}),
        ),
        (
            json!({"network": "reset"}),
            json!({"failover_on_network_errors": false}),
        ),
    ] {
        let (lines, s) = run(&json!({
            "version": 1, "profile": "lb",
            "profiles": {"a": model("openai", &[]), "b": model("anthropic", &[]), "lb": lb("failover", &["a", "b"], settings.clone())},
            "requests": [{"at_ms": 0}],
            "outcomes": {"a": {"*": [entry]}}
        }));
        assert_eq!(sends(&lines, 1), ["a/default"], "{entry}");
        assert_eq!(s.requests[0].result, "error", "{entry}");
    }
}

#[test]
fn spec_5_11_529_matches_when_503_is_listed() {
    for (codes, want) in [(json!([503]), 2), (json!([529]), 2), (json!([500]), 1)] {
        let (lines, _) = run(&json!({
            "version": 1, "profile": "lb",
            "profiles": {"a": model("anthropic", &[]), "b": model("openai", &[]),
                         "lb": lb("failover", &["a", "b"], json!({"failover_status_codes": codes, "failover_retry_count": 0}))},
            "requests": [{"at_ms": 0}],
            "outcomes": {"a": {"*": [{"status": 529, "code": "overloaded_error"}]}}
        }));
        assert_eq!(sends(&lines, 1).len(), want, "{codes}");
    }
}

#[test]
fn spec_5_4_aggregate_error_lists_every_attempt() {
    let (_, s) = run(&json!({
        "version": 1, "profile": "lb",
        "profiles": {"a": model("openai", &["k1", "k2"]), "b": model("anthropic", &[]),
                     "lb": lb("failover", &["a", "b"], json!({"failover_retry_count": 0}))},
        "requests": [{"at_ms": 0}],
        "outcomes": {"a": {"*": [{"status": 429, "message": "slow down"}]}, "b": {"*": [{"network": "refused"}]}}
    }));
    let err = s.requests[0].error.as_deref().unwrap();
    assert_eq!(
        err,
        "all backends failed (3 attempts)\n  1. a/k1: rate_limit 429: slow down\n  2. a/k2: rate_limit 429: slow down\n  3. b/default: network"
    );
}

#[test]
fn spec_5_11_max_attempts_is_checked_before_a_wait_or_a_refresh() {
    let (lines, s) = run(&json!({
        "version": 1, "profile": "a",
        "profiles": {"a": model("openai", &["k1", "k2"])},
        "settings": {"max_attempts": 1, "retry_after_max_ms": 5000},
        "requests": [{"at_ms": 0}],
        "outcomes": {"a": {"*": [{"status": 429, "retry_after_ms": 1000}]}}
    }));
    assert_eq!(sends(&lines, 1).len(), 1);
    assert!(actions(&lines, 1, "wait_until").is_empty());
    assert_eq!(
        s.requests[0].end_ms, 100,
        "a capped request ends when its last attempt ends"
    );
    assert!(
        s.requests[0]
            .error
            .as_deref()
            .unwrap()
            .starts_with("max_attempts (1) reached")
    );
}

#[test]
fn spec_5_5_context_length_escalates_by_own_limit_and_skips_smaller_ones() {
    let with_limit = |p: &str, l: u64| json!({"version": 1, "provider": p, "model": "m", "ephemeralSettings": {"context-limit": l}});
    let (lines, s) = run(&json!({
        "version": 1, "profile": "lb",
        "profiles": {"big": with_limit("openai", 128_000), "small": with_limit("openai", 32_000), "nolimit": model("openai", &[]),
                     "same": with_limit("gemini", 128_000), "huge": with_limit("anthropic", 200_000),
                     "lb": lb("failover", &["big", "small", "nolimit", "same", "huge"], json!({"lb_circuit_breaker_threshold": 1}))},
        "requests": [{"at_ms": 0}, {"at_ms": 5000}],
        "outcomes": {"big": {"*": [{"status": 400, "code": "context_length_exceeded", "times": 1}, {"status": 200}]}}
    }));
    assert_eq!(sends(&lines, 1), ["big/default", "huge/default"]);
    let skipped: Vec<&str> = actions(&lines, 1, "skipped")
        .iter()
        .map(|l| l["backend"].as_str().unwrap())
        .collect();
    assert_eq!(skipped, ["small", "nolimit", "same"]);
    assert!(
        actions(&lines, 1, "retry").is_empty(),
        "the failing backend is not retried"
    );
    assert!(
        actions(&lines, 1, "circuit_opened").is_empty(),
        "no circuit failure is recorded"
    );
    assert_eq!(s.requests[1].backend.as_deref(), Some("big"));
}

#[test]
fn spec_5_5_context_length_without_a_larger_backend_or_with_the_setting_off_fails() {
    for settings in [json!({}), json!({"failover_on_context_length": false})] {
        let (lines, s) = run(&json!({
            "version": 1, "profile": "lb",
            "profiles": {"a": model("openai", &[]), "b": model("anthropic", &[]), "lb": lb("failover", &["a", "b"], settings.clone())},
            "requests": [{"at_ms": 0}],
            "outcomes": {"a": {"*": [{"status": 400, "message": "This model's maximum context length is 8192 tokens"}]}}
        }));
        assert_eq!(sends(&lines, 1), ["a/default"], "{settings}");
        let err = s.requests[0].error.as_deref().unwrap();
        assert!(
            err.contains("maximum context length is 8192"),
            "the provider's message: {err}"
        );
    }
}

#[test]
fn spec_5_6_circuit_opens_at_threshold_skips_then_probes_and_closes() {
    let (lines, s) = run(&json!({
        "version": 1, "profile": "lb",
        "profiles": {"a": model("openai", &[]), "b": model("anthropic", &[]),
                     "lb": lb("failover", &["a", "b"], json!({"failover_retry_count": 0, "lb_circuit_breaker_threshold": 2, "lb_circuit_breaker_timeout_ms": 1000}))},
        "requests": [{"at_ms": 0}, {"at_ms": 200}, {"at_ms": 400}, {"at_ms": 1499}, {"at_ms": 1500}],
        "outcomes": {"a": {"*": [{"status": 500, "until_ms": 1000}, {"status": 200}]}}
    }));
    // Request 2's failure on `a` ends at 300: the circuit is open over [300, 1300).
    assert_eq!(actions(&lines, 2, "circuit_opened")[0]["until_ms"], 1300);
    assert_eq!(sends(&lines, 3), ["b/default"]);
    assert_eq!(actions(&lines, 3, "skipped")[0]["until_ms"], 1300);
    assert_eq!(
        actions(&lines, 4, "circuit_half_open").len(),
        1,
        "eligible at 1499 ≥ 1300"
    );
    assert_eq!(sends(&lines, 4)[0], "a/default");
    assert_eq!(actions(&lines, 4, "circuit_closed").len(), 1);
    assert_eq!(s.backends["a"].circuit, "closed");
}

#[test]
fn spec_5_11_client_and_content_filter_reset_the_breaker_count() {
    let (lines, _) = run(&json!({
        "version": 1, "profile": "lb",
        "profiles": {"a": model("openai", &[]), "b": model("anthropic", &[]),
                     "lb": lb("failover", &["a", "b"], json!({"failover_retry_count": 0, "lb_circuit_breaker_threshold": 2}))},
        "requests": {"count": 4, "interval_ms": 1000},
        "outcomes": {"a": {"*": [{"status": 500, "times": 1}, {"status": 404, "times": 1}, {"status": 500, "times": 1}, {"status": 200}]}}
    }));
    assert!(
        lines.iter().all(|l| l["action"] != "circuit_opened"),
        "500, 404, 500: never 2 failures in a row"
    );
}

#[test]
fn spec_5_6_probe_in_flight_is_skipped_by_others_and_a_stale_probe_counts_failed() {
    let plan = Arc::new(Plan {
        lb: "lb".into(),
        policy: Policy::Failover,
        backends: ["a", "b"]
            .iter()
            .map(|n| BackendPlan {
                name: (*n).into(),
                provider: "openai".into(),
                model: "m".into(),
                fingerprint: format!("openai|m|{n}"),
                buckets: vec![BucketPlan {
                    name: "default".into(),
                    key: format!("openai/{n}"),
                    oauth: false,
                    refreshable: false,
                }],
                context_limit: 0,
                accepts_prefill: false,
            })
            .collect(),
        settings: FailoverSettings {
            retry_count: 0,
            breaker_threshold: Some(1),
            breaker_timeout_ms: 1000,
            ..FailoverSettings::default()
        },
    });
    let mut st = EngineState::default();
    let arrive = |now, request| Event::RequestArrived {
        now,
        request,
        plan: plan.clone(),
    };
    let done = |now, request, class| Event::AttemptFinished {
        now,
        request,
        outcome: Outcome::of(class),
    };
    st.step(&arrive(0, 1));
    st.step(&done(10, 1, Class::Server)); // a opens at 10, request 1 moves to b
    st.step(&done(20, 1, Class::Success));
    // At 1010 a is half-open: request 2 takes the probe and goes quiet (its process died).
    let a2 = st.step(&arrive(1010, 2));
    assert!(
        a2.notes
            .iter()
            .any(|a| matches!(a, Note::CircuitHalfOpen { backend: 0 }))
    );
    // Request 3 meanwhile skips a: a probe is in flight.
    let a3 = st.step(&arrive(1500, 3));
    assert!(
        a3.notes.iter().any(|a| matches!(
            a,
            Note::Skipped {
                backend: 0,
                reason: SkipReason::ProbeInFlight,
                until_ms: Some(2010)
            }
        )),
        "{a3:?}"
    );
    st.step(&done(1600, 3, Class::Success));
    // At 2500 the probe is overdue (1010 + 1000): it counts as failed, open again from 2010.
    let a4 = st.step(&arrive(2500, 4));
    assert!(
        a4.notes.iter().any(|a| matches!(
            a,
            Note::Skipped {
                backend: 0,
                reason: SkipReason::CircuitOpen,
                until_ms: Some(3010)
            }
        )),
        "{a4:?}"
    );
    st.step(&done(2600, 4, Class::Success));
    // Never stuck: at 3010 it is eligible again.
    let a5 = st.step(&arrive(3010, 5));
    assert!(
        matches!(a5.next, Some(Order::Send { backend: 0, .. })),
        "{a5:?}"
    );
}

#[test]
fn spec_5_1_a_cancelled_request_releases_its_probe() {
    let plan = Arc::new(Plan {
        lb: "a".into(),
        policy: Policy::Failover,
        backends: vec![BackendPlan {
            name: "a".into(),
            provider: "openai".into(),
            model: "m".into(),
            fingerprint: "f".into(),
            buckets: vec![BucketPlan {
                name: "default".into(),
                key: "openai/default".into(),
                oauth: false,
                refreshable: false,
            }],
            context_limit: 0,
            accepts_prefill: false,
        }],
        settings: FailoverSettings {
            retry_count: 0,
            breaker_threshold: Some(1),
            breaker_timeout_ms: 100,
            ..FailoverSettings::default()
        },
    });
    let mut st = EngineState::default();
    st.step(&Event::RequestArrived {
        now: 0,
        request: 1,
        plan: plan.clone(),
    });
    st.step(&Event::AttemptFinished {
        now: 10,
        request: 1,
        outcome: Outcome::of(Class::Network),
    });
    let a = st.step(&Event::RequestArrived {
        now: 200,
        request: 2,
        plan: plan.clone(),
    });
    assert!(
        a.notes
            .iter()
            .any(|x| matches!(x, Note::CircuitHalfOpen { .. }))
    );
    assert_eq!(
        st.step(&Event::RequestCancelled {
            now: 210,
            request: 2
        }),
        Step::default()
    );
    let b = st.step(&Event::RequestArrived {
        now: 220,
        request: 3,
        plan,
    });
    assert!(
        b.notes
            .iter()
            .any(|x| matches!(x, Note::CircuitHalfOpen { .. })),
        "the probe is free again: {b:?}"
    );
    assert!(!st.shared.lbs["a"].stats.failures.contains_key("cancelled"));
}

#[test]
fn spec_5_7_tpm_counts_successes_stamped_at_their_end_for_60_seconds() {
    let (lines, _) = run(&json!({
        "version": 1, "profile": "lb",
        "profiles": {"a": model("openai", &[]), "b": model("anthropic", &[]),
                     "lb": lb("failover", &["a", "b"], json!({"lb_tpm_failover_threshold": 1500}))},
        "requests": [{"at_ms": 0, "tokens": 1000}, {"at_ms": 1000, "tokens": 600}, {"at_ms": 2000}, {"at_ms": 60099}, {"at_ms": 60100}],
        "outcomes": {}
    }));
    assert_eq!(sends(&lines, 2), ["a/default"], "1000 < 1500");
    assert_eq!(sends(&lines, 3), ["b/default"], "1600 ≥ 1500");
    let skip = actions(&lines, 3, "skipped");
    assert_eq!(skip[0]["reason"], "tpm");
    assert_eq!(
        skip[0]["until_ms"], 60100,
        "the first stamp (100) leaves the window at 60100"
    );
    assert_eq!(sends(&lines, 4), ["b/default"]);
    assert_eq!(sends(&lines, 5), ["a/default"]);
}

#[test]
fn spec_5_8_continue_sends_a_prefill_and_fails_with_the_interruption_when_refused() {
    let base = |accepts: bool| {
        json!({
            "version": 1, "profile": "lb",
            "profiles": {"a": model("openai", &[]),
                         "b": {"version": 1, "provider": "openai", "model": "m", "ephemeralSettings": {"accepts-prefill": accepts}},
                         "lb": lb("failover", &["a", "b"], json!({"failover_retry_count": 0, "mid_stream": "continue"}))},
            "requests": [{"at_ms": 0}],
            "outcomes": {"a": {"*": [{"interrupted_after_tokens": 42}]}}
        })
    };
    let (lines, s) = run(&base(true));
    assert_eq!(actions(&lines, 1, "send")[1]["prefill"], true);
    assert_eq!(s.requests[0].result, "ok");
    let (lines, s) = run(&base(false));
    assert_eq!(
        sends(&lines, 1),
        ["a/default"],
        "no request is sent to a target that refuses prefills"
    );
    assert_eq!(
        s.requests[0].error.as_deref().unwrap().lines().next(),
        Some("stream interrupted after 42 tokens from a")
    );
}

#[test]
fn spec_5_8_a_rejected_prefill_surfaces_the_original_interruption() {
    let (lines, s) = run(&json!({
        "version": 1, "profile": "lb",
        "profiles": {"a": model("openai", &[]),
                     "b": {"version": 1, "provider": "openai", "model": "m", "ephemeralSettings": {"accepts-prefill": true}},
                     "lb": lb("failover", &["a", "b"], json!({"failover_retry_count": 0, "mid_stream": "continue"}))},
        "requests": [{"at_ms": 0}],
        "outcomes": {"a": {"*": [{"interrupted_after_tokens": 5}]},
                     "b": {"*": [{"status": 400, "message": "assistant prefill is not supported"}]}}
    }));
    assert_eq!(sends(&lines, 1), ["a/default", "b/default"]);
    let err = s.requests[0].error.as_deref().unwrap();
    assert!(
        err.starts_with("stream interrupted after 5 tokens from a"),
        "{err}"
    );
}

#[test]
fn spec_5_8_error_policy_fails_and_restart_buffer_fail_over() {
    for (policy, attempts, ok) in [
        ("error", 1, false),
        ("restart", 2, true),
        ("buffer", 2, true),
    ] {
        let (lines, s) = run(&json!({
            "version": 1, "profile": "lb",
            "profiles": {"a": model("openai", &[]), "b": model("anthropic", &[]),
                         "lb": lb("failover", &["a", "b"], json!({"failover_retry_count": 0, "mid_stream": policy}))},
            "requests": [{"at_ms": 0}],
            "outcomes": {"a": {"*": [{"interrupted_after_tokens": 7}]}}
        }));
        assert_eq!(sends(&lines, 1).len(), attempts, "{policy}");
        assert_eq!(s.requests[0].result == "ok", ok, "{policy}");
        if !ok {
            assert!(
                s.requests[0]
                    .error
                    .as_deref()
                    .unwrap()
                    .starts_with("stream interrupted after 7 tokens from a")
            );
        }
    }
}

#[test]
fn spec_5_11_oauth_profile_without_buckets_has_one_oauth_bucket_default() {
    let (lines, _) = run(&json!({
        "version": 1, "profile": "a",
        "profiles": {"a": {"version": 1, "provider": "gemini", "model": "m", "auth": {"type": "oauth"}}},
        "requests": [{"at_ms": 0}],
        "outcomes": {"a": {"default": [{"status": 401, "times": 1}, {"status": 200}]}}
    }));
    assert_eq!(sends(&lines, 1), ["a/default", "a/default"]);
    assert_eq!(actions(&lines, 1, "refresh_token").len(), 1);
}

#[test]
fn spec_5_9_state_restored_from_json_decides_exactly_as_the_original() {
    let trace = json!({
        "version": 1, "profile": "lb",
        "profiles": {"a": model("openai", &["k1", "k2"]), "b": model("anthropic", &[]),
                     "lb": lb("roundrobin", &["a", "b"], json!({"lb_circuit_breaker_threshold": 1, "lb_tpm_failover_threshold": 5000}))},
        "requests": [{"at_ms": 0}],
        "outcomes": {}
    });
    let t: Trace = serde_json::from_value(trace).unwrap();
    let (plan, _) = simulate::plan_for(&t, "lb", &Settings::default(), None).unwrap();
    let mut st = EngineState::default();
    st.step(&Event::RequestArrived {
        now: 0,
        request: 1,
        plan: plan.clone(),
    });
    st.step(&Event::AttemptFinished {
        now: 50,
        request: 1,
        outcome: Outcome {
            status: Some(429),
            ..Outcome::of(Class::RateLimit)
        },
    });
    let json = serde_json::to_string(&st).unwrap();
    let mut restored: EngineState = serde_json::from_str(&json).unwrap();
    assert_eq!(restored, st);
    for ev in [
        Event::AttemptFinished {
            now: 80,
            request: 1,
            outcome: Outcome {
                status: Some(503),
                ..Outcome::of(Class::Server)
            },
        },
        Event::AttemptFinished {
            now: 99,
            request: 1,
            outcome: Outcome {
                tokens: 10,
                ..Outcome::of(Class::Success)
            },
        },
        Event::RequestArrived {
            now: 100,
            request: 2,
            plan,
        },
    ] {
        assert_eq!(st.step(&ev), restored.step(&ev));
    }
}

#[test]
fn spec_5_9_state_from_a_clock_that_ran_ahead_is_cut_back_on_load() {
    let trace = json!({
        "version": 1, "profile": "a", "profiles": {"a": model("openai", &["k1", "k2"])},
        "requests": [{"at_ms": 0}], "outcomes": {}
    });
    let t: Trace = serde_json::from_value(trace).unwrap();
    let (plan, _) = simulate::plan_for(&t, "a", &Settings::default(), None).unwrap();
    let mut st = EngineState::default();
    let far = 10 * 24 * 60 * 60 * 1000;
    st.shared
        .buckets
        .entry("openai/k1".into())
        .or_default()
        .cooldown_until = Some(far);
    let actions = st.step(&Event::RequestArrived {
        now: 1000,
        request: 1,
        plan,
    });
    let cut = st.shared.buckets["openai/k1"].cooldown_until.unwrap();
    assert_eq!(cut, 1000 + llxprt::engine::MAX_COOLDOWN_MS);
    // Still cooling (cut back, not cleared): k2 goes first.
    assert!(
        matches!(actions.next, Some(Order::Send { bucket: 1, .. })),
        "{actions:?}"
    );
}

#[test]
fn spec_5_8_a_retry_that_could_only_carry_a_refused_prefill_fails_without_waiting() {
    let (lines, s) = run(&json!({
        "version": 1, "profile": "a",
        "profiles": {"a": model("openai", &[])},
        "settings": {"mid_stream": "continue", "failover_retry_count": 1, "failover_retry_delay_ms": 500},
        "requests": [{"at_ms": 0}],
        "outcomes": {"a": {"*": [{"interrupted_after_tokens": 3}]}}
    }));
    assert!(actions(&lines, 1, "wait_until").is_empty());
    assert_eq!(s.requests[0].end_ms, 100);
    assert!(
        s.requests[0]
            .error
            .as_deref()
            .unwrap()
            .starts_with("stream interrupted after 3 tokens from a")
    );
}

#[test]
fn spec_5_11_a_circuit_opens_at_the_end_of_the_last_attempt_not_after_a_failed_refresh() {
    let (lines, _) = run(&json!({
        "version": 1, "profile": "a",
        "profiles": {"a": {"version": 1, "provider": "anthropic", "model": "m", "auth": {"type": "oauth"},
                           "ephemeralSettings": {"lb_circuit_breaker_threshold": 1, "lb_circuit_breaker_timeout_ms": 1000}}},
        "settings": {"failover_status_codes": [401]},
        "requests": [{"at_ms": 0}],
        "outcomes": {"a": {"default": [{"status": 401}], "refresh:default": [{"status": 400, "latency_ms": 1900}]}}
    }));
    assert_eq!(
        actions(&lines, 1, "circuit_opened")[0]["until_ms"],
        1100,
        "opened at 100, when the 401 arrived"
    );
}

/// A plan of model backends named `names` (one `default` bucket each, API keys, own
/// accounts), with these settings and `accepts-prefill` per backend.
fn engine_plan(names: &[(&str, bool)], settings: FailoverSettings) -> Arc<Plan> {
    Arc::new(Plan {
        lb: "lb".into(),
        policy: Policy::Failover,
        backends: names
            .iter()
            .map(|(n, prefill)| BackendPlan {
                name: (*n).into(),
                provider: "openai".into(),
                model: "m".into(),
                fingerprint: format!("f-{n}"),
                buckets: ["k1", "k2"]
                    .iter()
                    .map(|k| BucketPlan {
                        name: (*k).into(),
                        key: format!("openai/{n}-{k}"),
                        oauth: false,
                        refreshable: false,
                    })
                    .collect(),
                context_limit: 0,
                accepts_prefill: *prefill,
            })
            .collect(),
        settings,
    })
}

#[test]
fn spec_5_3_a_bucket_without_a_key_is_passed_over_without_a_request_or_a_circuit_count() {
    // Default status codes (401 not among them) and a breaker of threshold 1: a missing key
    // is neither an answer nor a failure.
    let plan = engine_plan(
        &[("a", false), ("b", false)],
        FailoverSettings {
            breaker_threshold: Some(1),
            max_attempts: Some(1),
            ..FailoverSettings::default()
        },
    );
    let mut st = EngineState::default();
    let first = st.step(&Event::RequestArrived {
        now: 0,
        request: 1,
        plan: plan.clone(),
    });
    assert!(matches!(
        first.next,
        Some(Order::Send {
            backend: 0,
            bucket: 0,
            ..
        })
    ));
    let missing = |now, why: &str| Event::NoCredential {
        now,
        request: 1,
        why: why.into(),
    };
    // a/k1 has no key: the chain moves to a/k2 …
    let s = st.step(&missing(1, "no key: ~/.a1 not found"));
    assert!(
        matches!(
            s.next,
            Some(Order::Send {
                backend: 0,
                bucket: 1,
                attempt: 1,
                ..
            })
        ),
        "{s:?}"
    );
    assert!(s.notes.iter().any(|n| matches!(
        n,
        Note::NoCredential {
            backend: 0,
            bucket: 0,
            ..
        }
    )));
    // … then, a/k2 without a key either, to b, whatever failover_status_codes says; neither
    // pass-over counts towards max_attempts (1 here).
    let s = st.step(&missing(2, "no key: ~/.a2 not found"));
    assert!(
        matches!(
            s.next,
            Some(Order::Send {
                backend: 1,
                bucket: 0,
                attempt: 1,
                ..
            })
        ),
        "{s:?}"
    );
    assert!(
        s.notes
            .iter()
            .any(|n| matches!(n, Note::Failover { from: 0, to: 1 }))
    );
    assert!(
        !s.notes
            .iter()
            .any(|n| matches!(n, Note::AttemptEnded { .. } | Note::CircuitOpened { .. }))
    );
    let s = st.step(&Event::AttemptFinished {
        now: 3,
        request: 1,
        outcome: Outcome::of(Class::Success),
    });
    assert!(matches!(s.next, Some(Order::Deliver { backend: 1, .. })));
    let a = &st.shared.backends["a"];
    assert_eq!(a.circuit.view(4, 30_000), "closed");
    assert_eq!(
        a.stats.failures.len(),
        0,
        "no failure counted for a: {:?}",
        a.stats.failures
    );
    assert_eq!(
        st.shared
            .buckets
            .get("openai/a-k1")
            .map_or(0, |b| b.stats.requests),
        0
    );
}

#[test]
fn spec_5_3_when_no_bucket_anywhere_has_a_key_the_request_fails_naming_each() {
    let plan = engine_plan(&[("a", false)], FailoverSettings::default());
    let mut st = EngineState::default();
    st.step(&Event::RequestArrived {
        now: 0,
        request: 1,
        plan: plan.clone(),
    });
    st.step(&Event::NoCredential {
        now: 0,
        request: 1,
        why: "no key: ~/.k1 not found".into(),
    });
    let s = st.step(&Event::NoCredential {
        now: 0,
        request: 1,
        why: "no key in ~/.k2: the file is empty".into(),
    });
    let Some(Order::Fail(f)) = &s.next else {
        panic!("{s:?}")
    };
    assert_eq!(f.kind, llxprt::engine::FailKind::AllSkipped);
    let msg = llxprt::narrate::failure(&plan, f, 0);
    assert_eq!(
        msg,
        "no backend could be tried:\n  a/k1: no key: ~/.k1 not found\n  a/k2: no key in ~/.k2: the file is empty"
    );
    assert!(!msg.contains("401") && !msg.contains("auth"), "{msg}");
}

#[test]
fn spec_5_3_after_an_answer_a_bucket_without_a_key_leaves_the_decision_to_that_answer() {
    // a/k1 answers 429 (not a failover status here), a/k2 has no key: the backend failed with
    // the 429, which does not trigger failover: the request fails with it.
    let plan = engine_plan(
        &[("a", false), ("b", false)],
        FailoverSettings {
            status_codes: vec![500],
            ..FailoverSettings::default()
        },
    );
    let mut st = EngineState::default();
    st.step(&Event::RequestArrived {
        now: 0,
        request: 1,
        plan: plan.clone(),
    });
    st.step(&Event::AttemptFinished {
        now: 5,
        request: 1,
        outcome: Outcome {
            status: Some(429),
            ..Outcome::of(Class::RateLimit)
        },
    });
    let s = st.step(&Event::NoCredential {
        now: 6,
        request: 1,
        why: "no key".into(),
    });
    let Some(Order::Fail(f)) = &s.next else {
        panic!("{s:?}")
    };
    assert_eq!(f.kind, llxprt::engine::FailKind::Refused);
}

/// Request 1: `a` answers 429 once, then `b` answers; request 2 goes wherever the accounts
/// say: `a` first again only when `b` shares its (cooling) account.
fn second_request_after_a_429(a: &Value, b: &Value) -> Vec<String> {
    let (lines, s) = run(&json!({
        "version": 1, "profile": "lb",
        "profiles": {"a": a, "b": b, "lb": lb("failover", &["a", "b"], json!({}))},
        "requests": [{"at_ms": 0}, {"at_ms": 1000}],
        "outcomes": {"a": {"*": [{"status": 429, "times": 1}, {"status": 200}]}}
    }));
    assert_eq!(sends(&lines, 1).len(), 2);
    assert!(s.requests.iter().all(|r| r.result == "ok"));
    sends(&lines, 2)
}

#[test]
fn spec_5_9_two_openai_profiles_on_different_servers_or_keys_keep_separate_cooldowns() {
    let keyed = |base: Option<&str>, keyfile: &str| {
        let mut m = json!({"version": 1, "provider": "openai", "model": "m",
                           "ephemeralSettings": {"auth-keyfile": keyfile}});
        if let Some(u) = base {
            m["ephemeralSettings"]["base-url"] = json!(u);
        }
        m
    };
    // Another server: b's account is not cooling, so request 2 starts on b.
    assert_eq!(
        second_request_after_a_429(
            &keyed(None, "~/.openai_key"),
            &keyed(Some("https://api.synthetic.new/openai/v1"), "~/.openai_key")
        ),
        ["b/default"]
    );
    // Another key on the same server: likewise.
    assert_eq!(
        second_request_after_a_429(&keyed(None, "~/.openai_key"), &keyed(None, "~/.other_key")),
        ["b/default"]
    );
    // The same server (spelled differently) and the same key source: one account, cooling for
    // both, so the primary is first again.
    assert_eq!(
        second_request_after_a_429(
            &keyed(None, "~/.openai_key"),
            &keyed(Some("https://API.OpenAI.com/v1/"), "~/.openai_key")
        ),
        ["a/default"]
    );
}

#[test]
fn spec_5_9_named_buckets_are_shared_across_profiles() {
    assert_eq!(
        second_request_after_a_429(&model("openai", &["work"]), &model("codex", &["work"])),
        ["a/work"],
        "openai/work is one account for both profiles"
    );
    assert_eq!(
        second_request_after_a_429(&model("openai", &["work"]), &model("openai", &["home"])),
        ["b/home"]
    );
}

#[test]
fn spec_5_8_continue_with_the_default_retry_count_moves_to_a_backend_that_takes_a_prefill() {
    let (lines, s) = run(&json!({
        "version": 1, "profile": "lb",
        "profiles": {"a": model("openai", &[]), "b": model("openai", &[]), "c": model("anthropic", &[]),
                     "lb": lb("failover", &["a", "b", "c"], json!({"mid_stream": "continue"}))},
        "requests": [{"at_ms": 0}],
        "outcomes": {"a": {"*": [{"interrupted_after_tokens": 9}]}}
    }));
    assert_eq!(s.requests[0].result, "ok", "{lines:?}");
    assert_eq!(sends(&lines, 1), ["a/default", "c/default"]);
    assert_eq!(actions(&lines, 1, "send")[1]["prefill"], true);
    let skipped: Vec<(&str, &str)> = actions(&lines, 1, "skipped")
        .iter()
        .map(|l| {
            (
                l["backend"].as_str().unwrap(),
                l["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(skipped, [("a", "no_prefill"), ("b", "no_prefill")]);
    assert!(
        actions(&lines, 1, "retry").is_empty(),
        "no retry is sent where no prefill is taken"
    );
    assert_eq!(
        s.requests[0].attempts.len(),
        2,
        "a pass-over is not an attempt"
    );
}

#[test]
fn spec_5_8_a_prefill_rejection_passes_over_to_a_third_backend_and_counts_as_an_answer() {
    let (lines, s) = run(&json!({
        "version": 1, "profile": "lb",
        "profiles": {"a": model("openai", &[]), "b": model("anthropic", &[]), "c": model("anthropic", &[]),
                     "lb": lb("failover", &["a", "b", "c"], json!({"failover_retry_count": 0, "mid_stream": "continue",
                                                                      "lb_circuit_breaker_threshold": 1}))},
        "requests": [{"at_ms": 0}],
        "outcomes": {"a": {"*": [{"interrupted_after_tokens": 5}]},
                     "b": {"*": [{"status": 400, "message": "assistant prefill is not supported"}]}}
    }));
    assert_eq!(s.requests[0].result, "ok");
    assert_eq!(sends(&lines, 1), ["a/default", "b/default", "c/default"]);
    let rejected = actions(&lines, 1, "skipped");
    assert_eq!(rejected.len(), 1);
    assert_eq!(
        (
            rejected[0]["backend"].as_str(),
            rejected[0]["reason"].as_str()
        ),
        (Some("b"), Some("prefill_rejected"))
    );
    // The breaker counts a's interruption, and b's rejection as an answer.
    let opened: Vec<&str> = actions(&lines, 1, "circuit_opened")
        .iter()
        .map(|l| l["backend"].as_str().unwrap())
        .collect();
    assert_eq!(opened, ["a"]);
    assert_eq!(s.backends["b"].circuit, "closed");
}

#[test]
fn spec_5_8_max_attempts_ends_a_continued_request_with_its_own_error() {
    let (_, s) = run(&json!({
        "version": 1, "profile": "lb",
        "profiles": {"a": model("anthropic", &[]), "b": model("anthropic", &[]),
                     "lb": lb("failover", &["a", "b"], json!({"failover_retry_count": 0, "mid_stream": "continue", "max_attempts": 1}))},
        "requests": [{"at_ms": 0}],
        "outcomes": {"a": {"*": [{"interrupted_after_tokens": 5}]}}
    }));
    let err = s.requests[0].error.as_deref().unwrap();
    assert!(err.starts_with("max_attempts (1) reached"), "{err}");
}

#[test]
fn spec_5_3_once_every_bucket_lacks_a_credential_no_retry_waits_for_one() {
    // a/k1 answers 500 and is retried after a delay; by then its login is gone, and so is
    // k2's: a retry could only go to a bucket just found without a credential, so the request
    // moves on at once (here: fails, nothing is left) instead of waiting for another retry.
    let plan = engine_plan(
        &[("a", false)],
        FailoverSettings {
            retry_count: 2,
            retry_delay_ms: 1000,
            ..FailoverSettings::default()
        },
    );
    let mut st = EngineState::default();
    st.step(&Event::RequestArrived {
        now: 0,
        request: 1,
        plan: plan.clone(),
    });
    let s = st.step(&Event::AttemptFinished {
        now: 100,
        request: 1,
        outcome: Outcome {
            status: Some(500),
            ..Outcome::of(Class::Server)
        },
    });
    assert_eq!(s.next, Some(Order::Wait { until_ms: 1100 }));
    let s = st.step(&Event::TimerFired {
        now: 1100,
        request: 1,
    });
    assert!(matches!(s.next, Some(Order::Send { bucket: 0, .. })));
    let gone = |why: &str| Event::NoCredential {
        now: 1100,
        request: 1,
        why: why.into(),
    };
    st.step(&gone("k1: sign in again"));
    let s = st.step(&gone("k2: sign in again"));
    let Some(Order::Fail(f)) = &s.next else {
        panic!("no wait for a retry that has no bucket left: {s:?}")
    };
    assert_eq!(f.headline, llxprt::engine::Headline::Exhausted);
}

#[test]
fn spec_8_1_stats_lb_records_why_the_last_request_went_where_it_went() {
    use llxprt::engine::stats::Route;
    let plan = engine_plan(
        &[("a", false), ("b", false), ("c", false)],
        FailoverSettings {
            breaker_threshold: Some(1),
            breaker_timeout_ms: 1000,
            retry_count: 0,
            ..FailoverSettings::default()
        },
    );
    let mut st = EngineState::default();
    let arrive = |now, request| Event::RequestArrived {
        now,
        request,
        plan: plan.clone(),
    };
    let done = |now, request, class| Event::AttemptFinished {
        now,
        request,
        outcome: Outcome::of(class),
    };
    let routes = |st: &EngineState| {
        st.shared.lbs["lb"]
            .stats
            .last_routes
            .iter()
            .map(|(b, r)| format!("{b}: {}", r.as_str()))
            .collect::<Vec<_>>()
    };
    // Request 1: a (the primary) fails and opens its circuit; b takes it over.
    st.step(&arrive(0, 1));
    st.step(&done(10, 1, Class::Server));
    st.step(&done(20, 1, Class::Success));
    assert_eq!(routes(&st), ["a: primary", "b: previous failed"]);
    // Request 2, while a's circuit is open: a is skipped, b is the first eligible.
    st.step(&arrive(100, 2));
    st.step(&done(110, 2, Class::Success));
    assert_eq!(routes(&st), ["a: skipped: circuit", "b: next eligible"]);
    // The record survives a round trip through the state file's serde, and an old file
    // without it reads as empty.
    let text = serde_json::to_string(&st.shared.lbs["lb"]).unwrap();
    let back: llxprt::engine::state::LbState = serde_json::from_str(&text).unwrap();
    assert_eq!(back.stats.last_routes["a"], Route::SkippedCircuit);
    let old: llxprt::engine::state::LbState =
        serde_json::from_value(json!({"cursor": 0, "stats": {"requests": 2, "successes": 2, "failures": {}, "last_selected": "b"}})).unwrap();
    assert!(old.stats.last_routes.is_empty());
}
