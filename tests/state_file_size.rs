//! SPEC §7.1 "The state file stays small": per-success TPM entries are kept only for backends
//! with a TPM threshold; other backends keep a 60-slot per-second ring; so the state file's size
//! does not grow with the request rate. Engine-level: the shared state is serialised in the
//! state file's keyed form after N successes spread over the same two minutes.

use std::sync::Arc;

use llxprt::engine::plan::{BackendPlan, BucketPlan, FailoverSettings, Plan, Policy};
use llxprt::engine::state::BackendState;
use llxprt::engine::{Class, EngineState, Event, Order, Outcome};
use llxprt::state_file::to_keyed;

fn plan(tpm_threshold: Option<u64>) -> Arc<Plan> {
    Arc::new(Plan {
        lb: "lb".into(),
        policy: Policy::Failover,
        backends: vec![BackendPlan {
            name: "a".into(),
            provider: "openai".into(),
            model: "m".into(),
            fingerprint: "f".into(),
            buckets: vec![BucketPlan {
                name: "default".into(),
                key: "openai/default:0123456789abcdef".into(),
                oauth: false,
                refreshable: false,
            }],
            context_limit: 0,
            accepts_prefill: false,
        }],
        settings: FailoverSettings {
            tpm_threshold,
            ..FailoverSettings::default()
        },
    })
}

const SPAN_MS: u64 = 120_000;

/// `n` requests, each a success of 1 000 tokens, spread evenly over two minutes (so the rate
/// grows with `n`); returns the state and the file's size in bytes.
fn after(n: u64, tpm_threshold: Option<u64>) -> (EngineState, usize) {
    let plan = plan(tpm_threshold);
    let mut st = EngineState::default();
    for id in 1..=n {
        let now = id * SPAN_MS / n;
        let step = st.step(&Event::RequestArrived {
            now,
            request: id,
            plan: plan.clone(),
        });
        assert!(matches!(step.next, Some(Order::Send { .. })), "{step:?}");
        let step = st.step(&Event::AttemptFinished {
            now,
            request: id,
            outcome: Outcome {
                status: Some(200),
                tokens: 1_000,
                ..Outcome::of(Class::Success)
            },
        });
        assert!(matches!(step.next, Some(Order::Deliver { .. })), "{step:?}");
    }
    assert!(st.requests.is_empty());
    let bytes = serde_json::to_string(&to_keyed(&st.shared))
        .expect("plain data")
        .len();
    (st, bytes)
}

#[test]
fn without_a_threshold_the_state_file_does_not_grow_with_the_request_rate() {
    // 1 000 and 20 000 requests over the same two minutes: 8 and 167 a second (the engine
    // bench prints the figures at 2 000 a second; a debug build is slow for this many).
    let (slow, slow_bytes) = after(1_000, None);
    let (fast, fast_bytes) = after(20_000, None);
    // Counters and the slots' token sums gain digits, nothing else.
    assert!(
        fast_bytes.abs_diff(slow_bytes) <= 200,
        "state file {slow_bytes} bytes after 1 000 successes over two minutes, {fast_bytes} after 20 000"
    );
    for st in [&slow, &fast] {
        let a = &st.shared.backends["a"];
        assert!(a.tpm.is_empty(), "no exact entry without a threshold");
        assert_eq!(a.tpm_ring.slots().count(), 60);
    }
    // `stats`' current TPM: the successes of the trailing minute, each counted from the
    // start of its second.
    let now = SPAN_MS;
    for (st, n) in [(&slow, 1_000), (&fast, 20_000)] {
        let want: u64 = (1..=n)
            .map(|id| id * SPAN_MS / n)
            .filter(|t| now - (t - t % 1_000) < 60_000)
            .map(|_| 1_000)
            .sum();
        assert_eq!(st.shared.backends["a"].tpm_at(now), want);
    }
}

#[test]
fn with_a_threshold_the_exact_window_holds_only_the_trailing_minute() {
    // A threshold never reached: every request is served, each success kept exactly.
    let (st, bytes) = after(20_000, Some(u64::MAX));
    let a = &st.shared.backends["a"];
    let now = SPAN_MS;
    assert!(a.tpm_ring.is_empty());
    assert!(a.tpm.entries().all(|(t, _)| now - t < 60_000));
    // One entry per millisecond of the trailing minute at most (successes of one
    // millisecond share an entry), whatever came before it.
    assert!(a.tpm.entries().count() <= 60_000);
    assert_eq!(a.tpm_at(now), 1_000 * 10_000);
    assert_eq!(a.tpm.entries().count(), 10_000);
    let (_, half) = after(10_000, Some(u64::MAX));
    assert!(
        bytes < half * 2,
        "{bytes} bytes after 20 000 successes, {half} after 10 000 over the same minutes"
    );
}

/// A state file written before the ring (a `tpm` array, no `tpm_ring`) still loads; its exact
/// entries keep counting, and a success without a threshold drops the ones that expired.
#[test]
fn a_state_file_without_the_ring_still_loads() {
    // A backend as an older llxprt wrote it: every field but the ring.
    let mut old = serde_json::to_value(BackendState {
        fingerprint: "f".into(),
        ..BackendState::default()
    })
    .expect("plain data");
    let fields = old.as_object_mut().expect("an object");
    assert!(
        fields.remove("tpm_ring").is_none(),
        "an empty ring is not written"
    );
    fields.insert("tpm".into(), serde_json::json!([[1_000, 5], [70_000, 7]]));
    let v = serde_json::json!({"version": 2, "backend/a": old});
    let (shared, dropped) = llxprt::state_file::from_keyed(&v);
    assert!(dropped.is_empty(), "{dropped:?}");
    let a = &shared.backends["a"];
    assert!(a.tpm_ring.is_empty());
    assert_eq!(a.tpm_at(70_000), 7);
    let mut st = EngineState {
        shared,
        ..EngineState::default()
    };
    let plan = plan(None);
    st.step(&Event::RequestArrived {
        now: 70_500,
        request: 1,
        plan,
    });
    st.step(&Event::AttemptFinished {
        now: 70_500,
        request: 1,
        outcome: Outcome {
            status: Some(200),
            tokens: 100,
            ..Outcome::of(Class::Success)
        },
    });
    let a = &st.shared.backends["a"];
    assert_eq!(a.tpm.entries().copied().collect::<Vec<_>>(), [(70_000, 7)]);
    assert_eq!(
        a.tpm_ring.slots().copied().collect::<Vec<_>>(),
        [(70_000, 100)]
    );
    assert_eq!(a.tpm_at(70_500), 107);
}
