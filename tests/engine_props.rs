//! Model-based property tests of the engine (STYLE 10–11; SPEC §4, §5, §9).
//!
//! Each case generates a load balancer (1–4 backends × 1–3 buckets, random §3.2 settings), a
//! stream of attempt outcomes (every class), refresh results and requests separated by time
//! jumps, and drives `engine::decide` through the driving contract of `engine/mod.rs` by hand:
//! requests run one after another, now and then two overlap and now and then one is cancelled.
//! A reference model written from the SPEC (not from `decide.rs`) follows every step and records
//! each violation under the rule it breaks; each property asserts one rule, so a failure names
//! it and prints the whole step-by-step transcript of the minimal scenario.
//!
//! Rerunning a failure: proptest prints the seed and the minimal scenario and stores it in
//! `proptest-regressions/engine_props.txt`, which is replayed first on every run of
//! `cargo test --test engine_props`.

#![expect(
    clippy::many_single_char_names,
    reason = "the model reads like the SPEC: r request, b backend, k bucket, s settings, t time"
)]
#![expect(
    clippy::option_option,
    reason = "expected cooldown: no opinion / none / until"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;

use std::cell::Cell;

use llxprt::engine::circuit::Circuit;
use llxprt::engine::{
    BackendPlan, BucketPlan, Class, EngineState, Event, FailKind, FailoverSettings, Failure,
    Headline, MidStream, Note, Order, Outcome, Plan, Policy, SkipReason, Step, Then, decide,
};
use llxprt::narrate;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::FileFailurePersistence;
use serde::Serialize;

/// The statuses `failover_status_codes` is drawn from.
const CODES: [u16; 10] = [400, 401, 402, 403, 429, 500, 502, 503, 504, 529];
/// SPEC §5.7.
const TPM_WINDOW_MS: u64 = 60_000;
/// A run longer than this has not terminated (the §5.4 bound allows far fewer).
const MAX_STEPS: usize = 5_000;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/proptest-regressions/engine_props.txt"
        )))),
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios and their generators
// ---------------------------------------------------------------------------------------------

/// One request of a scenario.
#[derive(Debug, Clone)]
struct ReqGen {
    /// Time between the end of the previous request(s) and this one's arrival.
    gap_ms: u64,
    /// The next request arrives this long after this one, while this one is in flight.
    overlap_ms: Option<u64>,
    /// Cancel after the n-th order (0-based), this long after it was given (at most the time
    /// its answer would take).
    cancel: Option<(u32, u64)>,
    /// After the request ends, feed a stray event for it (it must be ignored).
    stray: bool,
}

#[derive(Debug, Clone)]
struct Scenario {
    plan: Plan,
    requests: Vec<ReqGen>,
    /// Consumed in order by every attempt, cyclically.
    outcomes: Vec<Outcome>,
    /// Consumed in order by every token refresh, cyclically.
    refreshes: Vec<bool>,
    refresh_latency_ms: u64,
    /// Accounts (bucket keys) with no usable credential at all: every `Send` to one of them
    /// is answered with `NoCredential` (SPEC §5.3: no key file, no login).
    missing: BTreeSet<String>,
    /// Consumed in order by every other `Send`, cyclically: `true` answers it with
    /// `NoCredential` (a login revoked, a key file removed, between two attempts).
    revoked: Vec<bool>,
}

fn arb_mid_stream() -> impl Strategy<Value = MidStream> {
    prop_oneof![
        Just(MidStream::Restart),
        Just(MidStream::Continue),
        Just(MidStream::Buffer),
        Just(MidStream::Error),
    ]
}

fn arb_settings() -> impl Strategy<Value = FailoverSettings> {
    (
        (
            0u32..=3,
            prop_oneof![Just(0u64), 1u64..=2_000],
            proptest::sample::subsequence(CODES.to_vec(), 0..=CODES.len()),
            prop::bool::weighted(0.8),
        ),
        (
            prop::option::weighted(0.3, 1u64..=4_000),
            prop::option::weighted(0.5, 1u32..=3),
            1u64..=20_000,
        ),
        (
            prop_oneof![Just(0u64), 0u64..=5_000],
            prop_oneof![Just(0u64), 1u64..=60_000],
            prop::option::weighted(0.3, 1u32..=6),
            arb_mid_stream(),
            prop::bool::weighted(0.8),
        ),
    )
        .prop_map(
            |(
                (retry_count, retry_delay_ms, status_codes, on_network_errors),
                (tpm_threshold, breaker_threshold, breaker_timeout_ms),
                (
                    retry_after_max_ms,
                    bucket_cooldown_ms,
                    max_attempts,
                    mid_stream,
                    on_context_length,
                ),
            )| FailoverSettings {
                retry_count,
                retry_delay_ms,
                on_network_errors,
                status_codes,
                tpm_threshold,
                breaker_threshold,
                breaker_timeout_ms,
                retry_after_max_ms,
                bucket_cooldown_ms,
                max_attempts,
                mid_stream,
                on_context_length,
            },
        )
}

/// (provider index, buckets as (oauth, refreshable), context limit, accepts prefill).
type BackendGen = (usize, Vec<(bool, bool)>, u64, bool);

fn arb_backend() -> impl Strategy<Value = BackendGen> {
    (
        0usize..3,
        prop::collection::vec((any::<bool>(), any::<bool>()), 1..=3),
        prop_oneof![Just(0u64), Just(8_000), Just(32_000), Just(200_000)],
        any::<bool>(),
    )
}

/// Backends `B0…`; buckets `k0…` keyed `p<provider>/k<j>`, so two backends of one provider share
/// accounts (SPEC §5.9).
fn build_plan(backends: Vec<BackendGen>, policy: Policy, settings: FailoverSettings) -> Plan {
    Plan {
        lb: "lb".into(),
        policy,
        backends: backends
            .into_iter()
            .enumerate()
            .map(|(i, (p, buckets, context_limit, accepts_prefill))| {
                let provider = format!("p{p}");
                BackendPlan {
                    name: format!("B{i}"),
                    provider: provider.clone(),
                    model: "m".into(),
                    fingerprint: format!("{provider}/m/B{i}"),
                    buckets: buckets
                        .iter()
                        .enumerate()
                        .map(|(j, &(oauth, refreshable))| BucketPlan {
                            name: format!("k{j}"),
                            key: format!("{provider}/k{j}"),
                            oauth,
                            refreshable,
                        })
                        .collect(),
                    context_limit,
                    accepts_prefill,
                }
            })
            .collect(),
        settings,
    }
}

fn arb_policy() -> impl Strategy<Value = Policy> {
    prop_oneof![Just(Policy::Failover), Just(Policy::Roundrobin)]
}

fn arb_plan() -> impl Strategy<Value = Plan> {
    (
        prop::collection::vec(arb_backend(), 1..=4),
        arb_policy(),
        arb_settings(),
    )
        .prop_map(|(b, p, s)| build_plan(b, p, s))
}

fn arb_class() -> impl Strategy<Value = Class> {
    prop_oneof![
        6 => Just(Class::Success),
        2 => Just(Class::RateLimit),
        1 => Just(Class::Quota),
        1 => Just(Class::Auth),
        1 => Just(Class::Forbidden),
        2 => Just(Class::Server),
        1 => Just(Class::Network),
        1 => Just(Class::Timeout),
        1 => Just(Class::ContextLength),
        1 => Just(Class::ContentFilter),
        1 => Just(Class::Client),
        1 => Just(Class::Interrupted),
    ]
}

/// An outcome consistent with SPEC §4: a status that produces its class, where one does.
fn make_outcome(
    class: Class,
    pick: prop::sample::Index,
    retry_after_ms: Option<u64>,
    tokens: u64,
    latency_ms: u64,
    delivered: u64,
) -> Outcome {
    let statuses: &[u16] = match class {
        Class::Success => &[200],
        Class::RateLimit => &[429],
        Class::Quota => &[402, 429],
        Class::Auth => &[401],
        Class::Forbidden => &[403],
        Class::Server => &[500, 502, 503, 504, 529],
        Class::ContextLength => &[400, 413],
        Class::ContentFilter => &[200, 400],
        Class::Client => &[400, 404, 409, 422],
        Class::Network | Class::Timeout | Class::Interrupted => &[],
    };
    let mut o = Outcome::of(class);
    if !statuses.is_empty() {
        o.status = Some(*pick.get(statuses));
    }
    o.retry_after_ms = retry_after_ms;
    o.tokens = if class == Class::Success { tokens } else { 0 };
    o.latency_ms = latency_ms;
    o.delivered_tokens = if class == Class::Interrupted {
        delivered
    } else {
        0
    };
    o
}

fn arb_outcome_of(class: impl Strategy<Value = Class>) -> impl Strategy<Value = Outcome> {
    (
        class,
        any::<prop::sample::Index>(),
        prop::option::weighted(0.4, prop_oneof![0u64..=2_000, 0u64..=6_000]),
        0u64..=3_000,
        0u64..=5_000,
        1u64..=500,
    )
        .prop_map(|(c, i, ra, t, l, d)| make_outcome(c, i, ra, t, l, d))
}

fn arb_request() -> impl Strategy<Value = ReqGen> {
    (
        prop_oneof![3 => 0u64..=2_000, 1 => 0u64..=120_000],
        prop::option::weighted(0.15, 0u64..=5_000),
        prop::option::weighted(0.1, (0u32..4, 0u64..=3_000)),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(gap_ms, overlap_ms, cancel, stray)| ReqGen {
            gap_ms,
            overlap_ms,
            cancel,
            stray,
        })
}

/// Accounts without a credential: none in half the cases, else one to three of the nine keys
/// `build_plan` can make (shared by backends of one provider, like a stored login).
fn arb_missing() -> impl Strategy<Value = BTreeSet<String>> {
    prop_oneof![
        Just(BTreeSet::new()),
        prop::collection::btree_set(
            (0usize..3, 0usize..3).prop_map(|(p, j)| format!("p{p}/k{j}")),
            1..=3
        ),
    ]
}

/// Outcomes of streams under `mid_stream: continue` (SPEC §5.8): interruptions, and `client`
/// answers that reject a prefill, are frequent.
fn arb_stream_class() -> impl Strategy<Value = Class> {
    prop_oneof![
        4 => Just(Class::Success),
        4 => Just(Class::Interrupted),
        3 => Just(Class::Client),
        2 => Just(Class::Server),
        1 => Just(Class::Network),
        1 => Just(Class::Timeout),
        1 => Just(Class::RateLimit),
        1 => Just(Class::ContextLength),
        1 => Just(Class::ContentFilter),
    ]
}

/// Most scenarios draw every setting and class; one in four streams under `continue` with
/// network failover on, so the revised §5.8 rules are reached often.
fn arb_scenario() -> impl Strategy<Value = Scenario> {
    prop_oneof![
        3 => scenario_of(arb_plan().boxed(), arb_class().boxed()),
        1 => scenario_of(
            arb_plan()
                .prop_map(|mut p| {
                    p.settings.mid_stream = MidStream::Continue;
                    p.settings.on_network_errors = true;
                    p
                })
                .boxed(),
            arb_stream_class().boxed(),
        ),
    ]
}

fn scenario_of(
    plan: BoxedStrategy<Plan>,
    class: BoxedStrategy<Class>,
) -> impl Strategy<Value = Scenario> {
    (
        plan,
        prop::collection::vec(arb_request(), 1..=12),
        prop::collection::vec(arb_outcome_of(class), 1..=40),
        prop::collection::vec(any::<bool>(), 1..=6),
        prop_oneof![Just(0u64), 1u64..=2_000],
        arb_missing(),
        prop::collection::vec(prop::bool::weighted(0.06), 1..=20),
    )
        .prop_map(
            |(plan, requests, outcomes, refreshes, refresh_latency_ms, missing, revoked)| {
                Scenario {
                    plan,
                    requests,
                    outcomes,
                    refreshes,
                    refresh_latency_ms,
                    missing,
                    revoked,
                }
            },
        )
}

// ---------------------------------------------------------------------------------------------
// The driver: the contract of `engine/mod.rs`, with virtual time and a scripted world
// ---------------------------------------------------------------------------------------------

/// The engine's step in the model's vocabulary: its notes in order, then its order, with
/// backends and buckets by name (the adapter below), so the model's bookkeeping reads like
/// the SPEC's timeline. A failure keeps its typed form and its words from
/// `narrate::failure`, the edge that words it for users.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
enum Action {
    Send {
        backend: String,
        bucket: String,
        attempt: u32,
        prefill: bool,
    },
    RefreshToken {
        backend: String,
        bucket: String,
    },
    WaitUntil {
        until_ms: u64,
    },
    Deliver {
        backend: String,
        bucket: String,
        tokens: u64,
    },
    Fail {
        kind: FailKind,
        headline: Headline,
        /// `narrate::failure` of it.
        error: String,
        failure: Box<Failure>,
    },
    AttemptEnded {
        backend: String,
        bucket: String,
        started_ms: u64,
        class: Class,
        status: Option<u16>,
        latency_ms: u64,
        then: Then,
    },
    BucketAdvanced {
        backend: String,
        from: String,
        to: String,
    },
    Cooldown {
        backend: String,
        bucket: String,
        until_ms: u64,
    },
    Failover {
        from: String,
        to: String,
    },
    Retry {
        backend: String,
        retry: u32,
        of: u32,
        delay_ms: u64,
    },
    Skipped {
        backend: String,
        reason: SkipReason,
        until_ms: Option<u64>,
    },
    NoCredential {
        backend: String,
        bucket: String,
        why: String,
    },
    Refreshed {
        backend: String,
        bucket: String,
        ok: bool,
    },
    CircuitOpened {
        backend: String,
        until_ms: u64,
    },
    CircuitHalfOpen {
        backend: String,
    },
    CircuitClosed {
        backend: String,
    },
}

impl Action {
    fn name(&self) -> String {
        match serde_json::to_value(self)
            .expect("serialises")
            .get("action")
        {
            Some(serde_json::Value::String(n)) => n.clone(),
            _ => "?".into(),
        }
    }
}

/// The adapter: a `Step` as the old name-based action list (notes in order, then the order).
/// `now` is the step's time (for the failure's "eligible again in").
fn actions(plan: &Plan, step: &Step, now: u64) -> Vec<Action> {
    let b = |i: usize| plan.backend_name(i).to_string();
    let k = |i: usize, j: usize| plan.bucket_name(i, j).to_string();
    let mut out: Vec<Action> = step
        .notes
        .iter()
        .map(|n| match n {
            Note::AttemptEnded {
                backend,
                bucket,
                started_ms,
                class,
                status,
                latency_ms,
                then,
            } => Action::AttemptEnded {
                backend: b(*backend),
                bucket: k(*backend, *bucket),
                started_ms: *started_ms,
                class: *class,
                status: *status,
                latency_ms: *latency_ms,
                then: *then,
            },
            Note::BucketAdvanced { backend, from, to } => Action::BucketAdvanced {
                backend: b(*backend),
                from: k(*backend, *from),
                to: k(*backend, *to),
            },
            Note::Cooldown {
                backend,
                bucket,
                until_ms,
            } => Action::Cooldown {
                backend: b(*backend),
                bucket: k(*backend, *bucket),
                until_ms: *until_ms,
            },
            Note::Failover { from, to } => Action::Failover {
                from: b(*from),
                to: b(*to),
            },
            Note::Retry {
                backend,
                retry,
                of,
                delay_ms,
            } => Action::Retry {
                backend: b(*backend),
                retry: *retry,
                of: *of,
                delay_ms: *delay_ms,
            },
            Note::Skipped {
                backend,
                reason,
                until_ms,
            } => Action::Skipped {
                backend: b(*backend),
                reason: *reason,
                until_ms: *until_ms,
            },
            Note::NoCredential {
                backend,
                bucket,
                why,
            } => Action::NoCredential {
                backend: b(*backend),
                bucket: k(*backend, *bucket),
                why: why.clone(),
            },
            Note::Refreshed {
                backend,
                bucket,
                ok,
            } => Action::Refreshed {
                backend: b(*backend),
                bucket: k(*backend, *bucket),
                ok: *ok,
            },
            Note::CircuitOpened { backend, until_ms } => Action::CircuitOpened {
                backend: b(*backend),
                until_ms: *until_ms,
            },
            Note::CircuitHalfOpen { backend } => Action::CircuitHalfOpen {
                backend: b(*backend),
            },
            Note::CircuitClosed { backend } => Action::CircuitClosed {
                backend: b(*backend),
            },
        })
        .collect();
    if let Some(order) = &step.next {
        out.push(match order {
            Order::Send {
                backend,
                bucket,
                attempt,
                prefill,
            } => Action::Send {
                backend: b(*backend),
                bucket: k(*backend, *bucket),
                attempt: *attempt,
                prefill: *prefill,
            },
            Order::Refresh { backend, bucket } => Action::RefreshToken {
                backend: b(*backend),
                bucket: k(*backend, *bucket),
            },
            Order::Wait { until_ms } => Action::WaitUntil {
                until_ms: *until_ms,
            },
            Order::Deliver {
                backend,
                bucket,
                tokens,
            } => Action::Deliver {
                backend: b(*backend),
                bucket: k(*backend, *bucket),
                tokens: *tokens,
            },
            Order::Fail(f) => Action::Fail {
                kind: f.kind,
                headline: f.headline,
                error: narrate::failure(plan, f, now),
                failure: f.clone(),
            },
        });
    }
    out
}

/// One step of a run: the event fed and the engine's answer.
#[derive(Debug, Clone, PartialEq)]
struct Taken {
    event: Event,
    step: Step,
}

impl Taken {
    fn actions(&self, plan: &Plan) -> Vec<Action> {
        actions(plan, &self.step, self.event.now())
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Trace {
    steps: Vec<Taken>,
    /// The run did not end within `MAX_STEPS`.
    runaway: bool,
    /// Probes held by a request that no longer visits that backend (checked on the engine's
    /// own state after every step).
    leaks: Vec<String>,
    final_state: EngineState,
}

enum Ev {
    Arrive(usize),
    Engine(Event),
}

struct Live {
    idx: usize,
    orders: u32,
    cancelling: bool,
}

fn is_order(a: &Action) -> bool {
    matches!(
        a,
        Action::Send { .. } | Action::RefreshToken { .. } | Action::WaitUntil { .. }
    )
}

fn is_ending(a: &Action) -> bool {
    matches!(a, Action::Deliver { .. } | Action::Fail { .. })
}

/// Runs a scenario. With `roundtrip`, the engine state goes through JSON after every step.
fn run(sc: &Scenario, roundtrip: bool) -> Trace {
    let plan = Arc::new(sc.plan.clone());
    let mut state = EngineState::default();
    let mut queue: BTreeMap<(u64, u64), Ev> = BTreeMap::new();
    let mut seq = 0u64;
    let mut push = |queue: &mut BTreeMap<(u64, u64), Ev>, t: u64, ev: Ev| {
        queue.insert((t, seq), ev);
        seq += 1;
    };
    let mut live: BTreeMap<u64, Live> = BTreeMap::new();
    let mut next_arrival = 1usize;
    let (mut oi, mut ri, mut ci) = (0usize, 0usize, 0usize);
    let mut steps = Vec::new();
    let mut leaks = Vec::new();
    let mut runaway = false;
    push(&mut queue, sc.requests[0].gap_ms, Ev::Arrive(0));

    while let Some(((t, _), ev)) = queue.pop_first() {
        if steps.len() >= MAX_STEPS {
            runaway = true;
            break;
        }
        let event = match ev {
            Ev::Arrive(i) => {
                live.insert(
                    i as u64 + 1,
                    Live {
                        idx: i,
                        orders: 0,
                        cancelling: false,
                    },
                );
                if let Some(off) = sc.requests[i].overlap_ms
                    && live.len() == 1
                    && next_arrival == i + 1
                    && next_arrival < sc.requests.len()
                {
                    push(&mut queue, t + off, Ev::Arrive(next_arrival));
                    next_arrival += 1;
                }
                Event::RequestArrived {
                    now: t,
                    request: i as u64 + 1,
                    plan: plan.clone(),
                }
            }
            Ev::Engine(e) => e,
        };
        let id = event.request();
        let (s, step) = decide(std::mem::take(&mut state), &event);
        state = s;
        if roundtrip {
            let json = serde_json::to_string(&state).expect("the state serialises");
            state = serde_json::from_str(&json).expect("the state deserialises");
        }
        for (name, b) in &state.shared.backends {
            if let Circuit::HalfOpen { probe: Some(p) } = b.circuit {
                let visiting = state.requests.get(&p.request).is_some_and(|r| {
                    r.visit
                        .as_ref()
                        .is_some_and(|v| r.plan.backends[v.backend].name == *name)
                });
                if !visiting {
                    leaks.push(format!(
                        "step {}: {name} is half-open with a probe held by #{} (since {}), which is not visiting it",
                        steps.len(),
                        p.request,
                        p.started_ms
                    ));
                }
            }
        }
        steps.push(Taken {
            event: event.clone(),
            step: step.clone(),
        });

        let mut ended = false;
        if let Event::RequestCancelled { .. } = event {
            ended = live.contains_key(&id);
        } else if let Some(l) = live.get_mut(&id)
            && !l.cancelling
        {
            let order = step.next.as_ref().filter(|o| !o.ends());
            if let Some(order) = order {
                l.orders += 1;
                let natural = match order {
                    Order::Send {
                        backend, bucket, ..
                    } => {
                        // SPEC §5.3: the driver finds the bucket's credential before sending;
                        // without one nothing is sent and it says why, at once.
                        let bk = &sc.plan.backends[*backend].buckets[*bucket];
                        let why = if sc.missing.contains(&bk.key) {
                            Some(format!("no key: ~/.keys/{} not found", bk.key))
                        } else {
                            let gap = sc.revoked[ci % sc.revoked.len()];
                            ci += 1;
                            gap.then(|| format!("{}: sign in again", bk.name))
                        };
                        if let Some(why) = why {
                            (
                                t,
                                Event::NoCredential {
                                    now: t,
                                    request: id,
                                    why,
                                },
                            )
                        } else {
                            let o = sc.outcomes[oi % sc.outcomes.len()].clone();
                            oi += 1;
                            let end = t + o.latency_ms;
                            (
                                end,
                                Event::AttemptFinished {
                                    now: end,
                                    request: id,
                                    outcome: o,
                                },
                            )
                        }
                    }
                    Order::Refresh { .. } => {
                        let ok = sc.refreshes[ri % sc.refreshes.len()];
                        ri += 1;
                        let end = t + sc.refresh_latency_ms;
                        (
                            end,
                            Event::RefreshFinished {
                                now: end,
                                request: id,
                                ok,
                            },
                        )
                    }
                    Order::Wait { until_ms } => {
                        let end = (*until_ms).max(t);
                        (
                            end,
                            Event::TimerFired {
                                now: end,
                                request: id,
                            },
                        )
                    }
                    Order::Deliver { .. } | Order::Fail(_) => unreachable!("filtered"),
                };
                let g = &sc.requests[l.idx];
                if let Some((k, d)) = g.cancel
                    && l.orders == k + 1
                {
                    l.cancelling = true;
                    let at = t + d.min(natural.0 - t);
                    push(
                        &mut queue,
                        at,
                        Ev::Engine(Event::RequestCancelled {
                            now: at,
                            request: id,
                        }),
                    );
                    if g.stray {
                        push(&mut queue, natural.0, Ev::Engine(natural.1));
                    }
                } else {
                    push(&mut queue, natural.0, Ev::Engine(natural.1));
                }
            } else {
                ended = true;
            }
        }
        if ended {
            let l = live.remove(&id).expect("live");
            if sc.requests[l.idx].stray && !l.cancelling {
                let mut o = Outcome::of(Class::Success);
                o.status = Some(200);
                o.tokens = 7;
                push(
                    &mut queue,
                    t,
                    Ev::Engine(Event::AttemptFinished {
                        now: t,
                        request: id,
                        outcome: o,
                    }),
                );
                push(
                    &mut queue,
                    t,
                    Ev::Engine(Event::NoCredential {
                        now: t,
                        request: id,
                        why: "stray".into(),
                    }),
                );
            }
            if live.is_empty() && next_arrival < sc.requests.len() {
                push(
                    &mut queue,
                    t + sc.requests[next_arrival].gap_ms,
                    Ev::Arrive(next_arrival),
                );
                next_arrival += 1;
            }
        }
    }
    Trace {
        steps,
        runaway,
        leaks,
        final_state: state,
    }
}

// ---------------------------------------------------------------------------------------------
// The reference model (SPEC §5)
// ---------------------------------------------------------------------------------------------

/// The rule a violation breaks; one property per rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Check {
    /// Termination bound, one ending per request, at most one order per step, strays ignored.
    Ending,
    /// No visit starts on a skipped / open / over-TPM backend; skips are justified; circuit
    /// notes match the breaker.
    Eligibility,
    /// No circuit is skipped past its timeout without a live probe; no probe leaks.
    Stuck,
    /// Backends are tried in policy order (failover / round-robin, cooling placement).
    Order,
    /// Buckets are tried in SPEC order; cooldowns as SPEC §5.3 says.
    Buckets,
    /// `failover_retry_count` and the retry delay.
    Retries,
    /// 429 `Retry-After` wait-and-retry; `content_filter` ends the request.
    RetryAfter,
    /// The rest of the §5.3/§5.4/§5.5/§5.8 decision tables.
    Decision,
    /// A circuit opens at the end of the backend's last attempt (SPEC §5.11).
    OpenTime,
    /// A cancelled probe that had already timed out counted as failed: the circuit stays open
    /// until `start + 2 × timeout` (SPEC §5.6).
    ProbeRelease,
    /// SPEC §5.3 (revised): a bucket without a usable credential is passed over without a
    /// request: a note, not an attempt (no `max_attempts` count, no `attempt_ended`, no
    /// circuit, probe or bucket-statistics effect), and the chain moves on whatever
    /// `failover_status_codes` says.
    Credential,
    /// SPEC §5.8 (revised) `mid_stream: continue`: prefills after an interruption, backends
    /// without `accepts-prefill` passed over without a request, a prefill rejection passed
    /// over (never the request's error), the original interruption as the final error.
    Prefill,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefCircuit {
    Closed(u32),
    Open(u64),
    /// The probe: (request, start).
    HalfOpen(Option<(u64, u64)>),
}

#[derive(Debug, Clone)]
struct VisitM {
    b: usize,
    k: usize,
    tried: Vec<bool>,
    /// The current bucket had its one extra attempt (Retry-After wait or refresh).
    extra_used: bool,
    /// Class and status of the last real attempt in this visit (a bucket without a
    /// credential leaves them as they were).
    last_class: Option<Class>,
    last_status: Option<u16>,
    last_end: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PendM {
    None,
    Attempt {
        b: usize,
        k: usize,
        sent: u64,
        prefill: bool,
    },
    Refresh,
    Timer {
        until: u64,
        after_429: bool,
    },
}

#[derive(Debug, Clone)]
struct ReqM {
    order: Vec<usize>,
    /// Visited or skipped: never again in this request.
    out: BTreeSet<usize>,
    skipped: BTreeSet<usize>,
    visit: Option<VisitM>,
    /// Attempts ordered so far; a `Send` answered with `NoCredential` is taken back (SPEC
    /// §5.3: not an attempt).
    sends: u32,
    floor: Option<u64>,
    interrupted: bool,
    /// The first interruption the request's error reports (backend, delivered tokens): set
    /// when a stream breaks under `continue`, `error`, or with network failover off.
    interruption: Option<(usize, u64)>,
    /// Buckets passed over for want of a credential: (backend, bucket, why).
    nocred: Vec<(usize, usize, String)>,
    /// The attempt that just ended carried a prefill.
    prefilled: bool,
    pend: PendM,
    retries: BTreeMap<usize, u32>,
}

/// Whether leaving a backend opens its circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opens {
    No,
    Yes,
    /// The SPEC leaves it open; the model follows the engine.
    Either,
}

/// What the SPEC says happens next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pred {
    Deliver,
    /// The request fails with this kind (and this headline, where the SPEC pins it).
    Fail(FailKind, Option<Headline>),
    WaitRetry {
        until: u64,
    },
    Refresh,
    Retry {
        delay: u64,
    },
    NextBucket(usize),
    Move {
        floor: Option<u64>,
    },
    SendSame,
    Unknown,
}

/// What the engine did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Did {
    Deliver,
    Fail,
    Wait,
    Refresh,
    Retry,
    NextBucket(usize),
    Move(usize),
    SendSame,
    Nothing,
}

fn is_breaker_failure(c: Class) -> bool {
    // SPEC §5.11, listed here independently of the engine's own list.
    matches!(
        c,
        Class::RateLimit
            | Class::Quota
            | Class::Auth
            | Class::Forbidden
            | Class::Server
            | Class::Network
            | Class::Timeout
            | Class::Interrupted
    )
}

struct Model<'a> {
    plan: &'a Plan,
    /// Raw circuits; [`Model::view`] applies the transitions time alone makes.
    circuits: Vec<RefCircuit>,
    /// `Some(since)`: the circuit is `Open(since)` only because a request gave back a probe
    /// that had already timed out; the engine may have made it half-open instead. Kept apart
    /// so that this one disagreement is reported once, under `ProbeRelease`.
    disputed: Vec<Option<u64>>,
    tpm: Vec<Vec<(u64, u64)>>,
    cool: BTreeMap<String, u64>,
    cursor: u64,
    reqs: BTreeMap<u64, ReqM>,
    done: BTreeSet<u64>,
    step: usize,
    violations: Vec<(Check, usize, String)>,
    /// The pass-over note the current prediction asks for on the backend being left (SPEC
    /// §5.8: `no_prefill` for the interrupted backend's own retry, `prefill_rejected`).
    pass: Cell<Option<SkipReason>>,
    /// Attempts that ended, per account (bucket statistics, SPEC §5.10).
    ended_on: BTreeMap<String, u64>,
    /// Skip notes per backend: (circuit, TPM, no prefill).
    skip_notes: Vec<(u64, u64, u64)>,
    /// The step's event is a `NoCredential`.
    nocred_event: bool,
}

impl<'a> Model<'a> {
    fn new(plan: &'a Plan) -> Self {
        let n = plan.backends.len();
        Model {
            plan,
            circuits: vec![RefCircuit::Closed(0); n],
            disputed: vec![None; n],
            tpm: vec![Vec::new(); n],
            cool: BTreeMap::new(),
            cursor: 0,
            reqs: BTreeMap::new(),
            done: BTreeSet::new(),
            step: 0,
            violations: Vec::new(),
            pass: Cell::new(None),
            ended_on: BTreeMap::new(),
            skip_notes: vec![(0, 0, 0); n],
            nocred_event: false,
        }
    }

    fn bad(&mut self, c: Check, msg: String) {
        self.violations.push((c, self.step, msg));
    }

    fn s(&self) -> &'a FailoverSettings {
        &self.plan.settings
    }

    fn bname(&self, b: usize) -> &'a str {
        &self.plan.backends[b].name
    }

    fn kname(&self, b: usize, k: usize) -> &'a str {
        &self.plan.backends[b].buckets[k].name
    }

    fn bi(&self, name: &str) -> usize {
        self.plan
            .backends
            .iter()
            .position(|b| b.name == name)
            .unwrap_or_else(|| panic!("engine named an unknown backend {name}"))
    }

    fn ki(&self, b: usize, name: &str) -> usize {
        self.plan.backends[b]
            .buckets
            .iter()
            .position(|k| k.name == name)
            .unwrap_or_else(|| panic!("engine named an unknown bucket {name}"))
    }

    fn bound(&self) -> u32 {
        let rc = self.s().retry_count;
        self.plan
            .backends
            .iter()
            .map(|b| 2 * b.buckets.len() as u32 + rc)
            .sum()
    }

    // --- circuit (SPEC §5.6, §5.11) ---

    fn breaker(&self) -> bool {
        self.s().breaker_threshold.is_some()
    }

    /// The circuit as time alone leaves it at `now`: an open circuit past its timeout is
    /// half-open; a probe that has not reported within the timeout counted as failed and
    /// reopened the circuit from then.
    fn view(&self, b: usize, now: u64) -> RefCircuit {
        let t = self.s().breaker_timeout_ms;
        let mut c = self.circuits[b];
        loop {
            c = match c {
                RefCircuit::Open(since) if now >= since + t => RefCircuit::HalfOpen(None),
                RefCircuit::HalfOpen(Some((_, st))) if now >= st + t => RefCircuit::Open(st + t),
                _ => return c,
            }
        }
    }

    fn circuit_block(&self, b: usize, now: u64) -> Option<(SkipReason, u64)> {
        if !self.breaker() {
            return None;
        }
        let t = self.s().breaker_timeout_ms;
        match self.view(b, now) {
            RefCircuit::Open(since) => Some((SkipReason::CircuitOpen, since + t)),
            RefCircuit::HalfOpen(Some((_, st))) => Some((SkipReason::ProbeInFlight, st + t)),
            _ => None,
        }
    }

    fn take_probe(&mut self, r: u64, b: usize, now: u64) -> bool {
        if self.breaker() && self.view(b, now) == RefCircuit::HalfOpen(None) {
            self.circuits[b] = RefCircuit::HalfOpen(Some((r, now)));
            return true;
        }
        false
    }

    /// A request gives back what it holds without a result (cancel, or a visit with no
    /// attempt). A probe past its timeout already counted as failed.
    fn release(&mut self, r: u64, b: usize, now: u64) {
        if let RefCircuit::HalfOpen(Some((p, st))) = self.circuits[b]
            && p == r
        {
            let t = self.s().breaker_timeout_ms;
            self.circuits[b] = if now < st + t {
                RefCircuit::HalfOpen(None)
            } else {
                self.disputed[b] = Some(st + t);
                RefCircuit::Open(st + t)
            };
        }
    }

    /// Whether `b` is blocked only by a disputed reopening (see `disputed`).
    fn disputed_blocked(&self, b: usize, now: u64) -> bool {
        let t = self.s().breaker_timeout_ms;
        matches!(self.circuits[b], RefCircuit::Open(since)
            if self.disputed[b] == Some(since) && now < since + t)
    }

    /// The engine treated a disputed circuit as half-open: report it once and follow it.
    fn undispute(&mut self, b: usize, now: u64, r: u64, what: &str) {
        let since = self.disputed[b].take().expect("disputed");
        let t = self.s().breaker_timeout_ms;
        let name = self.bname(b);
        self.bad(
            Check::ProbeRelease,
            format!(
                "#{r} at {now}: {what} {name}, whose probe timed out at {since} and was then given back by a cancel; SPEC §5.6 counts it as a failed probe, so the circuit is open until {}",
                since + t
            ),
        );
        self.circuits[b] = RefCircuit::HalfOpen(None);
    }

    // --- TPM (SPEC §5.7, §5.11) ---

    fn tpm_at(&self, b: usize, now: u64) -> u64 {
        self.tpm[b]
            .iter()
            .filter(|(t, _)| *t <= now && now - t < TPM_WINDOW_MS)
            .map(|(_, n)| n)
            .sum()
    }

    fn tpm_clear_at(&self, b: usize, now: u64, thr: u64) -> u64 {
        let mut live: Vec<(u64, u64)> = self.tpm[b]
            .iter()
            .copied()
            .filter(|(t, _)| *t <= now && now - t < TPM_WINDOW_MS)
            .collect();
        live.sort_unstable();
        let mut sum: u64 = live.iter().map(|x| x.1).sum();
        for (t, n) in live {
            sum -= n;
            if sum < thr {
                return t + TPM_WINDOW_MS;
            }
        }
        now
    }

    // --- buckets (SPEC §5.3, §5.11) ---

    fn cooling(&self, b: usize, k: usize, now: u64) -> Option<u64> {
        self.cool
            .get(&self.plan.backends[b].buckets[k].key)
            .copied()
            .filter(|&u| now < u)
    }

    /// When every bucket of `b` is cooling: the earliest end.
    fn all_cooling(&self, b: usize, now: u64) -> Option<u64> {
        let n = self.plan.backends[b].buckets.len();
        let mut min = u64::MAX;
        for k in 0..n {
            min = min.min(self.cooling(b, k, now)?);
        }
        Some(min)
    }

    /// Untried buckets: ready ones in chain order, then cooling ones by end (ties in chain
    /// order).
    fn expected_bucket(&self, b: usize, tried: &[bool], now: u64) -> Option<usize> {
        let untried: Vec<usize> = (0..tried.len()).filter(|&k| !tried[k]).collect();
        untried
            .iter()
            .copied()
            .find(|&k| self.cooling(b, k, now).is_none())
            .or_else(|| {
                untried
                    .iter()
                    .copied()
                    .min_by_key(|&k| (self.cooling(b, k, now), k))
            })
    }

    // --- where a request goes (SPEC §5.2, §5.5, §5.11) ---

    /// Whether request `r` continues a partial answer (SPEC §5.8: `continue`, after an
    /// interruption): every later attempt carries a prefill.
    fn prefill_mode(&self, r: u64) -> bool {
        self.s().mid_stream == MidStream::Continue && self.reqs[&r].interrupted
    }

    /// Why `b` may be passed over at `now`. `prefill`: the request continues a partial
    /// answer, so a backend without `accepts-prefill` is out (SPEC §5.8).
    fn skip_reasons(
        &self,
        b: usize,
        now: u64,
        floor: Option<u64>,
        prefill: bool,
    ) -> Vec<(SkipReason, Option<u64>)> {
        let mut v = Vec::new();
        if floor.is_some_and(|f| self.plan.backends[b].context_limit <= f) {
            v.push((SkipReason::ContextLimit, None));
        }
        if prefill && !self.plan.backends[b].accepts_prefill {
            v.push((SkipReason::NoPrefill, None));
        }
        if let Some((why, until)) = self.circuit_block(b, now) {
            v.push((why, Some(until)));
        }
        if let Some(thr) = self.s().tpm_threshold
            && self.tpm_at(b, now) >= thr
        {
            v.push((SkipReason::Tpm, Some(self.tpm_clear_at(b, now, thr))));
        }
        v
    }

    /// The backends a move skips, and the acceptable targets (empty: none left).
    fn expected_move(&self, r: u64, now: u64, floor: Option<u64>) -> (BTreeSet<usize>, Vec<usize>) {
        let req = &self.reqs[&r];
        let prefill = self.prefill_mode(r);
        let mut skips = BTreeSet::new();
        let mut deferred: Vec<(u64, usize)> = Vec::new();
        for &b in req.order.iter().filter(|b| !req.out.contains(b)) {
            if !self.skip_reasons(b, now, floor, prefill).is_empty() {
                skips.insert(b);
                continue;
            }
            match self.all_cooling(b, now) {
                Some(end) => deferred.push((end, b)),
                None => return (skips, vec![b]),
            }
        }
        let Some(min) = deferred.iter().map(|d| d.0).min() else {
            return (skips, Vec::new());
        };
        // Ties: in the request's order; SPEC §5.11 says "list order", which for round-robin
        // may also mean the profile's list: accept either.
        let tied: Vec<usize> = deferred
            .iter()
            .filter(|d| d.0 == min)
            .map(|d| d.1)
            .collect();
        let mut targets = vec![tied[0]];
        let by_list = *tied.iter().min().expect("non-empty");
        if by_list != tied[0] {
            targets.push(by_list);
        }
        (skips, targets)
    }

    fn capped(&self, r: u64) -> bool {
        self.s()
            .max_attempts
            .is_some_and(|m| self.reqs[&r].sends >= m)
    }

    /// SPEC §5.11: `max_attempts` reached ends the request with its own error.
    fn capped_fail(&self) -> Pred {
        Pred::Fail(
            FailKind::Exhausted,
            self.s().max_attempts.map(Headline::MaxAttempts),
        )
    }

    /// No backend is left to move to: with no attempt at all, every backend was passed over
    /// (SPEC §5.2, §5.3); a request continuing a partial answer fails with its original
    /// interruption (SPEC §5.8); otherwise the aggregate error (SPEC §5.4; `NoLargerContext`
    /// or `Exhausted`, both of kind `Exhausted`).
    fn none_left(&self, r: u64) -> Pred {
        if self.reqs[&r].sends == 0 {
            Pred::Fail(FailKind::AllSkipped, Some(Headline::AllSkipped))
        } else if self.prefill_mode(r) {
            Pred::Fail(FailKind::Interrupted, Some(Headline::Interrupted))
        } else {
            Pred::Fail(FailKind::Exhausted, None)
        }
    }

    fn refused() -> Pred {
        Pred::Fail(FailKind::Refused, Some(Headline::Refused))
    }

    fn triggers(&self, status: Option<u16>) -> bool {
        let codes = &self.s().status_codes;
        status.is_some_and(|s| codes.contains(&s) || (s == 529 && codes.contains(&503)))
    }

    /// SPEC §5.4 step 1: retry the same backend if retryable with retries left, else move on.
    fn retry_or_move(&self, r: u64, class: Class, ra: Option<u64>, retryable: bool) -> Pred {
        let req = &self.reqs[&r];
        let s = self.s();
        let b = req.visit.as_ref().expect("visiting").b;
        let used = req.retries.get(&b).copied().unwrap_or(0);
        if retryable && used < s.retry_count {
            if self.prefill_mode(r) && !self.plan.backends[b].accepts_prefill {
                // SPEC §5.8: the retry would carry a prefill this backend does not take: it is
                // passed over without a request (a `no_prefill` note for it; the breaker counts
                // the interrupted outcome when the request leaves) and the request moves on —
                // or ends at `max_attempts`, whose error wins.
                self.pass.set(Some(SkipReason::NoPrefill));
                return if self.capped(r) {
                    self.capped_fail()
                } else {
                    Pred::Move { floor: req.floor }
                };
            }
            if self.capped(r) {
                return self.capped_fail();
            }
            let delay = if class == Class::Server {
                s.retry_delay_ms
                    .max(ra.unwrap_or(0).min(s.retry_after_max_ms))
            } else {
                s.retry_delay_ms
            };
            return Pred::Retry { delay };
        }
        if self.capped(r) {
            self.capped_fail()
        } else {
            Pred::Move { floor: req.floor }
        }
    }

    /// SPEC §4 "triggers failover", §5.4, §5.5, §5.8.
    fn predict_backend(&self, r: u64, class: Class, status: Option<u16>, ra: Option<u64>) -> Pred {
        let s = self.s();
        let req = &self.reqs[&r];
        let b = req.visit.as_ref().expect("visiting").b;
        if class == Class::Client && req.prefilled {
            // SPEC §5.8: a `client` answer to a prefilled attempt rejects the prefill: not a
            // failover trigger of its own and not the request's error; the backend is passed
            // over (`prefill_rejected`), the breaker counts an answer, the request moves on
            // whatever `failover_status_codes` says.
            self.pass.set(Some(SkipReason::PrefillRejected));
            return if self.capped(r) {
                self.capped_fail()
            } else {
                Pred::Move { floor: req.floor }
            };
        }
        match class {
            Class::Success => Pred::Deliver,
            Class::ContentFilter => Self::refused(),
            Class::ContextLength => {
                if !s.on_context_length {
                    Self::refused()
                } else if self.capped(r) {
                    self.capped_fail()
                } else {
                    let limit = self.plan.backends[b].context_limit;
                    Pred::Move {
                        floor: Some(req.floor.map_or(limit, |f| f.max(limit))),
                    }
                }
            }
            Class::Interrupted => {
                if s.mid_stream == MidStream::Error || !s.on_network_errors {
                    Pred::Fail(FailKind::Interrupted, Some(Headline::Interrupted))
                } else {
                    self.retry_or_move(r, class, ra, true)
                }
            }
            Class::Network | Class::Timeout => {
                if s.on_network_errors {
                    self.retry_or_move(r, class, ra, class == Class::Network)
                } else {
                    Self::refused()
                }
            }
            Class::Server => {
                if self.triggers(status) {
                    self.retry_or_move(r, class, ra, true)
                } else {
                    Self::refused()
                }
            }
            Class::Client | Class::RateLimit | Class::Quota | Class::Auth | Class::Forbidden => {
                if self.triggers(status) {
                    self.retry_or_move(r, class, ra, false)
                } else {
                    Self::refused()
                }
            }
        }
    }

    /// SPEC §5.3: advance the chain, or hand the outcome to the backend level.
    fn predict_advance(
        &self,
        r: u64,
        now: u64,
        class: Class,
        status: Option<u16>,
        ra: Option<u64>,
    ) -> Pred {
        let v = self.reqs[&r].visit.as_ref().expect("visiting");
        let mut tried = v.tried.clone();
        tried[v.k] = true;
        match self.expected_bucket(v.b, &tried, now) {
            Some(_) if self.capped(r) => self.capped_fail(),
            Some(k) => Pred::NextBucket(k),
            None => self.predict_backend(r, class, status, ra),
        }
    }

    /// An attempt ended: the §5.3 bucket table, then the backend level. Also returns the
    /// cooldown SPEC §5.3 asks for (None: no opinion; Some(None): none).
    fn predict_attempt(&self, r: u64, now: u64, o: &Outcome) -> (Pred, Option<Option<u64>>) {
        let s = self.s();
        let req = &self.reqs[&r];
        let v = req.visit.as_ref().expect("visiting");
        let bk = &self.plan.backends[v.b].buckets[v.k];
        let capped = self.capped(r);
        let cool = |u: u64| Some((u > now).then_some(u));
        match o.class {
            Class::Success => (Pred::Deliver, Some(None)),
            Class::RateLimit => {
                if let Some(ra) = o.retry_after_ms
                    && s.retry_after_max_ms > 0
                    && ra <= s.retry_after_max_ms
                    && !v.extra_used
                {
                    if capped {
                        (self.capped_fail(), None)
                    } else {
                        (Pred::WaitRetry { until: now + ra }, Some(None))
                    }
                } else {
                    let u = now + o.retry_after_ms.unwrap_or(s.bucket_cooldown_ms);
                    (
                        self.predict_advance(r, now, o.class, o.status, o.retry_after_ms),
                        cool(u),
                    )
                }
            }
            Class::Quota => {
                let u = now + s.bucket_cooldown_ms.max(o.retry_after_ms.unwrap_or(0));
                (
                    self.predict_advance(r, now, o.class, o.status, o.retry_after_ms),
                    cool(u),
                )
            }
            Class::Auth if bk.oauth && bk.refreshable && !v.extra_used => (
                if capped {
                    self.capped_fail()
                } else {
                    Pred::Refresh
                },
                Some(None),
            ),
            Class::Auth | Class::Forbidden => (
                self.predict_advance(r, now, o.class, o.status, o.retry_after_ms),
                Some(None),
            ),
            _ => (
                self.predict_backend(r, o.class, o.status, o.retry_after_ms),
                Some(None),
            ),
        }
    }

    /// A request leaves backend `b`: the breaker counts the class of its last outcome there.
    /// Returns whether the circuit opened / closed (the notes the engine must give).
    fn leave(&mut self, r: u64, b: usize, class: Option<Class>, now: u64) -> (Opens, bool) {
        if !self.breaker() {
            return (Opens::No, false);
        }
        let Some(class) = class else {
            self.release(r, b, now);
            return (Opens::No, false);
        };
        let thr = self.s().breaker_threshold.expect("breaker on");
        let t = self.s().breaker_timeout_ms;
        let holder = match self.circuits[b] {
            RefCircuit::HalfOpen(Some((p, st))) if p == r => Some(st),
            _ => None,
        };
        let view = self.view(b, now);
        if !is_breaker_failure(class) {
            self.circuits[b] = RefCircuit::Closed(0);
            return (
                Opens::No,
                !matches!(view, RefCircuit::Closed(_)) || holder.is_some(),
            );
        }
        let (next, opens) = match view {
            // The probe reports failure: open again from now (SPEC §5.6).
            _ if holder.is_some_and(|st| now < st + t) => (RefCircuit::Open(now), Opens::Yes),
            // A probe past its timeout already counted as failed; whether its late report
            // reopens from now the SPEC does not say: either.
            _ if holder.is_some() => (view, Opens::Either),
            RefCircuit::Closed(f) if f + 1 >= thr => (RefCircuit::Open(now), Opens::Yes),
            RefCircuit::Closed(f) => (RefCircuit::Closed(f + 1), Opens::No),
            // Half-open with no probe, and a request that came earlier fails: the SPEC only
            // speaks of the probe's result: either.
            RefCircuit::HalfOpen(None) => (view, Opens::Either),
            RefCircuit::HalfOpen(Some(_)) | RefCircuit::Open(_) => (self.circuits[b], Opens::No),
        };
        self.circuits[b] = next;
        (opens, false)
    }

    // --- one step ---

    fn on_step(&mut self, i: usize, ev: &Event, acts: &[Action]) {
        self.step = i;
        self.pass.set(None);
        self.nocred_event = matches!(ev, Event::NoCredential { .. });
        let now = ev.now();
        let r = ev.request();
        let arrival = matches!(ev, Event::RequestArrived { .. });
        if !arrival && !self.reqs.contains_key(&r) {
            if !acts.is_empty() {
                self.bad(
                    Check::Ending,
                    format!(
                        "#{r} had ended, yet an event for it produced {}",
                        render_actions(acts)
                    ),
                );
            }
            return;
        }
        if let Event::RequestCancelled { .. } = ev {
            if !acts.is_empty() {
                self.bad(Check::Ending, format!("cancelling #{r} produced actions"));
            }
            let req = self.reqs.remove(&r).expect("live");
            if let Some(v) = req.visit {
                self.release(r, v.b, now);
            }
            self.done.insert(r);
            return;
        }
        let orders = acts.iter().filter(|a| is_order(a)).count();
        let endings = acts.iter().filter(|a| is_ending(a)).count();
        if orders > 1 {
            self.bad(Check::Ending, format!("#{r}: {orders} orders in one step"));
        }
        if endings > 1 {
            self.bad(
                Check::Ending,
                format!("#{r}: {endings} endings in one step"),
            );
        }
        if orders > 0 && endings > 0 {
            self.bad(
                Check::Ending,
                format!("#{r}: an order and an ending in one step"),
            );
        }
        if orders == 0 && endings == 0 {
            self.bad(
                Check::Ending,
                format!("#{r}: the step neither ends the request nor orders anything"),
            );
        }

        let prev_pend = self.reqs.get(&r).map_or(PendM::None, |q| q.pend);
        let mut outcome = None;
        let (pred, cool_exp) = match ev {
            Event::RequestArrived { .. } => {
                let n = self.plan.backends.len();
                let order = match self.plan.policy {
                    Policy::Failover => (0..n).collect(),
                    Policy::Roundrobin => {
                        let c = (self.cursor % n as u64) as usize;
                        (0..n).map(|i| (c + i) % n).collect()
                    }
                };
                self.cursor += 1;
                self.reqs.insert(
                    r,
                    ReqM {
                        order,
                        out: BTreeSet::new(),
                        skipped: BTreeSet::new(),
                        visit: None,
                        sends: 0,
                        floor: None,
                        interrupted: false,
                        interruption: None,
                        nocred: Vec::new(),
                        prefilled: false,
                        pend: PendM::None,
                        retries: BTreeMap::new(),
                    },
                );
                (Pred::Move { floor: None }, Some(None))
            }
            Event::AttemptFinished { outcome: o, .. } => {
                outcome = Some(o);
                self.on_attempt(r, now, o, acts)
            }
            Event::NoCredential { why, .. } => self.on_no_credential(r, now, why, acts),
            Event::RefreshFinished { ok, .. } => self.on_refresh(r, now, *ok, acts),
            Event::TimerFired { .. } => {
                let req = self.reqs.get_mut(&r).expect("live");
                match req.pend {
                    PendM::Timer { until, .. } if now >= until => {
                        req.pend = PendM::None;
                        (Pred::SendSame, Some(None))
                    }
                    p => {
                        self.bad(
                            Check::Decision,
                            format!("#{r}: timer fired while waiting for {p:?}"),
                        );
                        (Pred::Unknown, None)
                    }
                }
            }
            Event::RequestCancelled { .. } => unreachable!("handled above"),
        };
        self.apply(r, now, arrival, prev_pend, pred, cool_exp, outcome, acts);
    }

    fn on_attempt(
        &mut self,
        r: u64,
        now: u64,
        o: &Outcome,
        acts: &[Action],
    ) -> (Pred, Option<Option<u64>>) {
        let req = self.reqs.get_mut(&r).expect("live");
        let PendM::Attempt {
            b,
            k,
            sent,
            prefill,
        } = req.pend
        else {
            let p = req.pend;
            self.bad(
                Check::Decision,
                format!("#{r}: an attempt finished while waiting for {p:?}"),
            );
            return (Pred::Unknown, None);
        };
        req.pend = PendM::None;
        req.prefilled = prefill;
        let s = &self.plan.settings;
        if o.class == Class::Interrupted {
            req.interrupted = true;
            // The interruption the error reports is the FIRST one (SPEC §5.8: "the original
            // interruption"); `restart` and `buffer` with failover on report none.
            let reported = s.mid_stream == MidStream::Continue
                || s.mid_stream == MidStream::Error
                || !s.on_network_errors;
            if reported && req.interruption.is_none() {
                req.interruption = Some((b, o.delivered_tokens));
            }
        }
        let want_status = if matches!(
            o.class,
            Class::Network | Class::Timeout | Class::Interrupted
        ) {
            None
        } else {
            o.status
        };
        if let Some(v) = req.visit.as_mut() {
            v.last_class = Some(o.class);
            v.last_status = want_status;
            v.last_end = now;
        }
        // Bucket statistics count the attempt when it ends (SPEC §5.10).
        *self
            .ended_on
            .entry(self.plan.backends[b].buckets[k].key.clone())
            .or_default() += 1;
        let ended: Vec<&Action> = acts
            .iter()
            .filter(|a| matches!(a, Action::AttemptEnded { .. }))
            .collect();
        match ended.as_slice() {
            [
                Action::AttemptEnded {
                    backend,
                    bucket,
                    started_ms,
                    class,
                    status,
                    ..
                },
            ] => {
                if backend != self.bname(b)
                    || bucket != self.kname(b, k)
                    || *started_ms != sent
                    || *class != o.class
                    || *status != want_status
                {
                    self.bad(
                        Check::Decision,
                        format!(
                            "#{r}: attempt_ended {} does not match the attempt {}/{} sent at {sent} with {:?} {:?}",
                            render_actions(&[ended[0].clone()]),
                            self.bname(b),
                            self.kname(b, k),
                            o.class,
                            want_status
                        ),
                    );
                }
            }
            _ => self.bad(
                Check::Decision,
                format!("#{r}: {} attempt_ended notes for one attempt", ended.len()),
            ),
        }
        if self.reqs[&r].visit.is_none() {
            self.bad(Check::Decision, format!("#{r}: an attempt outside a visit"));
            return (Pred::Unknown, None);
        }
        self.predict_attempt(r, now, o)
    }

    /// SPEC §5.3 (revised): the `Send` was answered with `NoCredential`: nothing was sent.
    /// Not an attempt: the model takes the `Send` back from its count, keeps the visit's last
    /// real outcome, and expects the chain to move on — to the next untried bucket (a
    /// `bucket_advanced` note), whatever `failover_status_codes` says; when the chain is used
    /// up, the backend level of §5.4 decides on the visit's last real outcome (its class and
    /// status) with no retry left — a retry could only go to a bucket just found without a
    /// credential — so the request fails over or fails; or, with no real
    /// attempt in this visit, the request moves to the next backend without a circuit
    /// result (a probe it took is given back).
    fn on_no_credential(
        &mut self,
        r: u64,
        now: u64,
        why: &str,
        acts: &[Action],
    ) -> (Pred, Option<Option<u64>>) {
        let req = self.reqs.get_mut(&r).expect("live");
        let PendM::Attempt { b, k, .. } = req.pend else {
            let p = req.pend;
            self.bad(
                Check::Credential,
                format!("#{r}: a missing credential reported while waiting for {p:?}"),
            );
            return (Pred::Unknown, None);
        };
        req.pend = PendM::None;
        req.sends -= 1;
        req.nocred.push((b, k, why.to_string()));
        let Some(v) = req.visit.as_mut() else {
            self.bad(
                Check::Credential,
                format!("#{r}: a missing credential outside a visit"),
            );
            return (Pred::Unknown, None);
        };
        v.tried[k] = true;
        let v = v.clone();
        let (bn, kn) = (self.bname(b), self.kname(b, k));
        let notes: Vec<&Action> = acts
            .iter()
            .filter(|a| matches!(a, Action::NoCredential { .. }))
            .collect();
        let good = matches!(notes.as_slice(), [Action::NoCredential { backend, bucket, why: w }]
            if backend == bn && bucket == kn && w == why);
        if !good {
            self.bad(
                Check::Credential,
                format!(
                    "#{r} at {now}: {bn}/{kn} has no credential ({why}); noted as {}",
                    render_actions(acts)
                ),
            );
        }
        if acts
            .iter()
            .any(|a| matches!(a, Action::AttemptEnded { .. } | Action::Cooldown { .. }))
        {
            self.bad(
                Check::Credential,
                format!(
                    "#{r} at {now}: a bucket passed over without a request is not an attempt, yet: {}",
                    render_actions(acts)
                ),
            );
        }
        let pred = match self.expected_bucket(b, &v.tried, now) {
            Some(next) => Pred::NextBucket(next),
            None => match v.last_class {
                Some(class) => {
                    // Every bucket is used up, so no retry is left: one could only go to a
                    // bucket just found without a credential.
                    let rc = self.s().retry_count;
                    self.reqs.get_mut(&r).expect("live").retries.insert(b, rc);
                    self.predict_backend(r, class, v.last_status, None)
                }
                None if self.capped(r) => self.capped_fail(),
                None => Pred::Move {
                    floor: self.reqs[&r].floor,
                },
            },
        };
        (pred, Some(None))
    }

    fn on_refresh(
        &mut self,
        r: u64,
        now: u64,
        ok: bool,
        acts: &[Action],
    ) -> (Pred, Option<Option<u64>>) {
        let req = self.reqs.get_mut(&r).expect("live");
        if req.pend != PendM::Refresh || req.visit.is_none() {
            let p = req.pend;
            self.bad(
                Check::Decision,
                format!("#{r}: a refresh finished while waiting for {p:?}"),
            );
            return (Pred::Unknown, None);
        }
        req.pend = PendM::None;
        let v = req.visit.clone().expect("checked");
        let notes: Vec<&Action> = acts
            .iter()
            .filter(|a| matches!(a, Action::Refreshed { .. }))
            .collect();
        let good = matches!(notes.as_slice(), [Action::Refreshed { backend, bucket, ok: k }]
            if backend == self.bname(v.b) && bucket == self.kname(v.b, v.k) && *k == ok);
        if !good {
            self.bad(
                Check::Decision,
                format!(
                    "#{r}: refresh of {}/{} (ok={ok}) noted as {}",
                    self.bname(v.b),
                    self.kname(v.b, v.k),
                    render_actions(acts)
                ),
            );
        }
        if ok {
            (Pred::SendSame, Some(None))
        } else {
            // SPEC §5.3: the refresh failed, advance (the 401 stands).
            (
                self.predict_advance(r, now, Class::Auth, Some(401), None),
                Some(None),
            )
        }
    }

    /// The failure is the one the SPEC asks for: its kind, and its headline where pinned.
    /// Reported under the rule that decides it: the original interruption under `continue`
    /// (SPEC §5.8), every backend passed over with buckets lacking credentials (§5.3).
    fn check_fail(
        &mut self,
        r: u64,
        ctx: &str,
        kind: FailKind,
        headline: Option<Headline>,
        acts: &[Action],
        cat: Check,
    ) {
        let Some((got_kind, got_headline)) = acts.iter().find_map(|a| match a {
            Action::Fail { kind, headline, .. } => Some((*kind, *headline)),
            _ => None,
        }) else {
            return;
        };
        if got_kind == kind && headline.is_none_or(|h| h == got_headline) {
            return;
        }
        let req = &self.reqs[&r];
        let check = if kind == FailKind::Interrupted || got_kind == FailKind::Interrupted {
            if self.prefill_mode(r) {
                Check::Prefill
            } else {
                cat
            }
        } else if kind == FailKind::AllSkipped || got_kind == FailKind::AllSkipped {
            if req.nocred.is_empty() {
                Check::Decision
            } else {
                Check::Credential
            }
        } else {
            cat
        };
        self.bad(
            check,
            format!("{ctx}: failed {got_kind:?} ({got_headline:?}), the SPEC says {kind:?} ({headline:?})"),
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        r: u64,
        now: u64,
        arrival: bool,
        prev_pend: PendM,
        pred: Pred,
        cool_exp: Option<Option<u64>>,
        outcome: Option<&Outcome>,
        acts: &[Action],
    ) {
        let s = self.s();
        let failover = acts.iter().find_map(|a| match a {
            Action::Failover { from, to } => Some((from.clone(), to.clone())),
            _ => None,
        });
        let send = acts.iter().find_map(|a| match a {
            Action::Send {
                backend,
                bucket,
                attempt,
                prefill,
            } => Some((backend.clone(), bucket.clone(), *attempt, *prefill)),
            _ => None,
        });
        let advanced = acts.iter().find_map(|a| match a {
            Action::BucketAdvanced { backend, from, to } => {
                Some((backend.clone(), from.clone(), to.clone()))
            }
            _ => None,
        });
        let visit_before = self.reqs[&r].visit.clone();
        let has = |f: fn(&Action) -> bool| acts.iter().any(f);
        let did = if has(|a| matches!(a, Action::Deliver { .. })) {
            Did::Deliver
        } else if has(|a| matches!(a, Action::Retry { .. })) {
            Did::Retry
        } else if has(|a| matches!(a, Action::RefreshToken { .. })) {
            Did::Refresh
        } else if has(|a| matches!(a, Action::WaitUntil { .. })) {
            Did::Wait
        } else if let Some((b, _, to)) = &advanced {
            Did::NextBucket(self.ki(self.bi(b), to))
        } else if let Some((_, to)) = &failover {
            Did::Move(self.bi(to))
        } else if arrival && let Some((b, ..)) = &send {
            Did::Move(self.bi(b))
        } else if has(|a| matches!(a, Action::Fail { .. })) {
            Did::Fail
        } else if send.is_some() {
            Did::SendSame
        } else {
            Did::Nothing
        };
        let after_429 = matches!(
            prev_pend,
            PendM::Timer {
                after_429: true,
                ..
            }
        );
        let cat = if outcome.is_some_and(|o| o.class == Class::ContentFilter)
            || matches!(pred, Pred::WaitRetry { .. })
            || did == Did::Wait
            || after_429
        {
            Check::RetryAfter
        } else if matches!(pred, Pred::Retry { .. }) || did == Did::Retry {
            Check::Retries
        } else if matches!(pred, Pred::Move { .. }) || matches!(did, Did::Move(_)) {
            Check::Order
        } else if matches!(pred, Pred::NextBucket(_)) || matches!(did, Did::NextBucket(_)) {
            Check::Buckets
        } else {
            Check::Decision
        };
        let prefill_mode = self.prefill_mode(r);
        let plan = self.plan;
        let rejects_prefill = |b: usize| prefill_mode && !plan.backends[b].accepts_prefill;
        // Pass-over notes (SPEC §5.8) for the backend the request is on: its own retry cannot
        // carry the prefill, or it rejected the prefill. Every other skip belongs to a move.
        let here = visit_before.as_ref().map(|v| v.b);
        let pass_notes: Vec<SkipReason> = acts
            .iter()
            .filter_map(|a| match a {
                Action::Skipped {
                    backend, reason, ..
                } if here.is_some_and(|b| self.bname(b) == backend)
                    && matches!(reason, SkipReason::NoPrefill | SkipReason::PrefillRejected) =>
                {
                    Some(*reason)
                }
                _ => None,
            })
            .collect();
        let pass_exp = self.pass.get();
        let fail_kind = acts.iter().find_map(|a| match a {
            Action::Fail { kind, .. } => Some(*kind),
            _ => None,
        });
        // The revised rules get their own properties: a decision on a step they govern is
        // reported under them.
        let cat = if self.nocred_event {
            Check::Credential
        } else if pass_exp.is_some()
            || !pass_notes.is_empty()
            || fail_kind == Some(FailKind::Interrupted) && prefill_mode
        {
            Check::Prefill
        } else {
            cat
        };
        if pass_notes != pass_exp.into_iter().collect::<Vec<_>>() {
            let c = format!("#{r} at {now}");
            self.bad(
                Check::Prefill,
                format!(
                    "{c}: pass-over notes {pass_notes:?} for {}, SPEC §5.8 says {pass_exp:?}",
                    here.map_or("-", |b| self.bname(b))
                ),
            );
        }
        // The attempt_ended note says what the engine did next.
        if outcome.is_some() {
            let want = match did {
                Did::Deliver => Some(Then::Deliver),
                Did::Fail => Some(Then::Fail),
                Did::Wait => Some(Then::WaitRetry),
                Did::Refresh => Some(Then::Refresh),
                Did::Retry => Some(Then::Retry),
                Did::NextBucket(_) => Some(Then::NextBucket),
                Did::Move(_) => Some(Then::Failover),
                Did::SendSame | Did::Nothing => None,
            };
            let then = acts.iter().find_map(|a| match a {
                Action::AttemptEnded { then, .. } => Some(*then),
                _ => None,
            });
            if want.is_some() && then != want {
                self.bad(
                    Check::Decision,
                    format!(
                        "#{r} at {now}: attempt_ended says then={then:?}, the engine did {did:?}"
                    ),
                );
            }
        }
        let skipped_now: BTreeSet<usize> = acts
            .iter()
            .filter_map(|a| match a {
                Action::Skipped { backend, .. } => Some(self.bi(backend)),
                _ => None,
            })
            .filter(|&b| here != Some(b) || pass_notes.is_empty())
            .collect();
        let wait_until = acts.iter().find_map(|a| match a {
            Action::WaitUntil { until_ms } => Some(*until_ms),
            _ => None,
        });

        // 0. Cooldowns first: a move in this step already sees them (shared accounts).
        let cooldowns: Vec<(usize, usize, u64)> = acts
            .iter()
            .filter_map(|a| match a {
                Action::Cooldown {
                    backend,
                    bucket,
                    until_ms,
                } => {
                    let b = self.bi(backend);
                    Some((b, self.ki(b, bucket), *until_ms))
                }
                _ => None,
            })
            .collect();
        let at = visit_before.as_ref().map(|v| (v.b, v.k));
        match cool_exp {
            Some(Some(u)) => {
                let prior = at.and_then(|(b, k)| self.cooling(b, k, now));
                let ok = matches!(cooldowns.as_slice(), [(b, k, until)]
                    if Some((*b, *k)) == at && (*until == u || prior.is_some_and(|p| p > u && *until == p)));
                if !ok {
                    let c = format!("#{r} at {now}");
                    self.bad(Check::Buckets, format!("{c}: cooldowns {cooldowns:?}, SPEC §5.3 says the bucket cools until {u}"));
                }
            }
            Some(None) if !cooldowns.is_empty() => {
                let c = format!("#{r} at {now}");
                self.bad(
                    Check::Buckets,
                    format!("{c}: unexpected cooldown {cooldowns:?}"),
                );
            }
            _ => {}
        }
        for (b, k, until) in cooldowns {
            self.cool
                .insert(self.plan.backends[b].buckets[k].key.clone(), until);
        }
        if let Did::Move(t) = did
            && self.disputed_blocked(t, now)
        {
            self.undispute(t, now, r, "the request moved to");
        }
        // 1. The decision against the SPEC's.
        let ctx = |m: &Model| {
            format!(
                "#{r} at {now} (outcome {})",
                outcome.map_or("-".into(), render_outcome)
            ) + &m.where_(r)
        };
        match (pred, did) {
            (Pred::Unknown, _) | (Pred::Deliver, Did::Deliver) | (Pred::Refresh, Did::Refresh) => {}
            (Pred::Fail(kind, headline), Did::Fail) => {
                let c = ctx(self);
                self.check_fail(r, &c, kind, headline, acts, cat);
            }
            (Pred::WaitRetry { until }, Did::Wait) => {
                if wait_until != Some(until) {
                    let c = ctx(self);
                    self.bad(Check::RetryAfter, format!("{c}: waited until {wait_until:?}, SPEC §5.3 says exactly Retry-After, until {until}"));
                }
            }
            (Pred::Retry { delay }, Did::Retry) => {
                let noted = acts.iter().find_map(|a| match a {
                    Action::Retry { delay_ms, .. } => Some(*delay_ms),
                    _ => None,
                });
                let v = visit_before.as_ref().expect("visiting");
                let same = send
                    .as_ref()
                    .is_some_and(|(b, k, ..)| *b == self.bname(v.b) && *k == self.kname(v.b, v.k));
                let ok_follow = if delay > 0 {
                    wait_until == Some(now + delay) && send.is_none()
                } else {
                    same
                };
                if noted != Some(delay) || !ok_follow {
                    let c = ctx(self);
                    self.bad(Check::Retries, format!("{c}: retry with delay {noted:?} / wait {wait_until:?}, SPEC §5.4 says delay {delay} on the same backend and bucket"));
                }
            }
            (Pred::NextBucket(k), Did::NextBucket(k2)) => {
                if k != k2 {
                    let c = ctx(self);
                    self.bad(
                        Check::Buckets,
                        format!("{c}: advanced to bucket k{k2}, SPEC §5.3 order says k{k}"),
                    );
                }
            }
            (Pred::SendSame, Did::SendSame) => {
                let v = visit_before.as_ref().expect("visiting");
                let same = send
                    .as_ref()
                    .is_some_and(|(b, k, ..)| *b == self.bname(v.b) && *k == self.kname(v.b, v.k));
                if !same {
                    let c = ctx(self);
                    self.bad(
                        cat,
                        format!("{c}: expected the same backend and bucket again, got {send:?}"),
                    );
                }
            }
            (Pred::Move { floor }, did) => {
                let (skips, targets) = self.expected_move(r, now, floor);
                if skips != skipped_now {
                    let c = ctx(self);
                    self.bad(
                        Check::Order,
                        format!(
                            "{c}: skipped {:?}, the model skips {:?}",
                            names(self.plan, &skipped_now),
                            names(self.plan, &skips)
                        ),
                    );
                }
                match did {
                    Did::Move(t) => {
                        if !targets.contains(&t) {
                            let c = ctx(self);
                            self.bad(
                                Check::Order,
                                format!(
                                    "{c}: moved to {}, SPEC §5.2/§5.3 order says {:?}",
                                    self.bname(t),
                                    names(self.plan, &targets)
                                ),
                            );
                        }
                        // SPEC §5.8: a backend that takes no prefill is passed over, never
                        // moved to (and every move orders its attempt at once).
                        let was_sent = send.is_some();
                        if !was_sent || rejects_prefill(t) {
                            let c = ctx(self);
                            self.bad(if rejects_prefill(t) { Check::Prefill } else { Check::Decision }, format!("{c}: prefill mode {prefill_mode}, moved to {} (accepts prefill: {}), sent: {was_sent}", self.bname(t), self.plan.backends[t].accepts_prefill));
                        }
                    }
                    Did::Fail => {
                        if !targets.is_empty() {
                            let c = ctx(self);
                            self.bad(
                                Check::Order,
                                format!(
                                    "{c}: failed though {:?} could still be tried",
                                    names(self.plan, &targets)
                                ),
                            );
                        }
                        if let Pred::Fail(kind, headline) = self.none_left(r) {
                            let c = ctx(self);
                            self.check_fail(r, &c, kind, headline, acts, cat);
                        }
                    }
                    other => {
                        let c = ctx(self);
                        self.bad(
                            Check::Order,
                            format!(
                                "{c}: SPEC says move on ({:?}), engine did {other:?}",
                                names(self.plan, &targets)
                            ),
                        );
                    }
                }
            }
            (pred, did) => {
                let c = ctx(self);
                self.bad(cat, format!("{c}: SPEC says {pred:?}, engine did {did:?}"));
            }
        }
        if !skipped_now.is_empty()
            && !matches!(pred, Pred::Move { .. })
            && !matches!(did, Did::Move(_))
        {
            let c = ctx(self);
            self.bad(Check::Order, format!("{c}: skips outside a move"));
        }
        if let Some(o) = outcome
            && o.class == Class::ContentFilter
            && (send.is_some()
                || !acts.iter().any(|a| {
                    matches!(
                        a,
                        Action::Fail {
                            kind: FailKind::Refused,
                            ..
                        }
                    )
                }))
        {
            let c = ctx(self);
            self.bad(
                Check::RetryAfter,
                format!("{c}: content_filter must fail the request after one attempt (SPEC §4)"),
            );
        }

        // 2. Notes and orders, applied to the model (it follows what the engine did).
        let mut req = self.reqs.remove(&r).expect("live");
        for a in acts {
            if let Action::Retry {
                backend, retry, of, ..
            } = a
            {
                let b = self.bi(backend);
                let n = req.retries.entry(b).or_default();
                *n += 1;
                let n = *n;
                if n > s.retry_count
                    || *retry != n
                    || *of != s.retry_count
                    || at.map(|x| x.0) != Some(b)
                {
                    let c = ctx(self);
                    self.bad(Check::Retries, format!("{c}: retry {retry}/{of} on {backend} is this request's retry {n} there; failover_retry_count is {}", s.retry_count));
                }
            }
        }
        if let Some(o) = outcome
            && o.class == Class::ContextLength
            && s.on_context_length
            && let Some(v) = &visit_before
        {
            let limit = self.plan.backends[v.b].context_limit;
            req.floor = Some(req.floor.map_or(limit, |f| f.max(limit)));
        }
        // Leaving the backend: Deliver, Fail or Failover.
        let leaves = has(|a| {
            matches!(
                a,
                Action::Deliver { .. } | Action::Fail { .. } | Action::Failover { .. }
            )
        });
        let mut left = None;
        if leaves && let Some(v) = req.visit.take() {
            left = Some(v.b);
            if self.disputed_blocked(v.b, now)
                && v.last_class.is_some_and(is_breaker_failure)
                && acts.iter().any(|a| matches!(a, Action::CircuitOpened { backend, .. } if *backend == self.plan.backends[v.b].name))
            {
                self.undispute(v.b, now, r, "a failure reopened");
            }
            let (opened, closed) = self.leave(r, v.b, v.last_class, now);
            let name = self.bname(v.b);
            let opened_note = acts.iter().find_map(|a| match a {
                Action::CircuitOpened { backend, until_ms } if backend == name => Some(*until_ms),
                _ => None,
            });
            let closed_note = acts
                .iter()
                .any(|a| matches!(a, Action::CircuitClosed { backend } if backend == name));
            let t = s.breaker_timeout_ms;
            match (opened, opened_note) {
                (Opens::Yes | Opens::Either, Some(until)) => {
                    if until != v.last_end + t {
                        let c = ctx(self);
                        self.bad(Check::OpenTime, format!("{c}: {name}'s circuit opened until {until}; SPEC §5.11 opens it at the end of its last attempt ({}), so until {}", v.last_end, v.last_end + t));
                    }
                    self.circuits[v.b] = RefCircuit::Open(until.saturating_sub(t));
                }
                (Opens::No | Opens::Either, None) => {}
                (o, n) => {
                    let c = ctx(self);
                    self.bad(Check::Eligibility, format!("{c}: leaving {name} with {:?}: the breaker says opens={o:?}, engine note {n:?}", v.last_class));
                }
            }
            if closed != closed_note {
                let c = ctx(self);
                self.bad(Check::Eligibility, format!("{c}: leaving {name} with {:?}: the breaker says closed={closed}, engine note {closed_note}", v.last_class));
            }
        }
        for a in acts {
            let other = match a {
                Action::CircuitOpened { backend, .. } | Action::CircuitClosed { backend } => {
                    left.is_none_or(|b| self.bname(b) != backend)
                }
                _ => false,
            };
            if other {
                let c = ctx(self);
                self.bad(
                    Check::Eligibility,
                    format!(
                        "{c}: circuit note for a backend this request did not leave: {}",
                        render_actions(std::slice::from_ref(a))
                    ),
                );
            }
        }
        if let (Some((from, _)), Some(b)) = (&failover, left)
            && from != self.bname(b)
        {
            let c = ctx(self);
            self.bad(
                Check::Decision,
                format!(
                    "{c}: failover from {from}, but the request was on {}",
                    self.bname(b)
                ),
            );
        }
        // Skips: each justified by the model at this moment.
        for a in acts {
            if let Action::Skipped {
                backend,
                reason,
                until_ms,
            } = a
            {
                let b = self.bi(backend);
                let counts = &mut self.skip_notes[b];
                match reason {
                    SkipReason::CircuitOpen | SkipReason::ProbeInFlight => counts.0 += 1,
                    SkipReason::Tpm => counts.1 += 1,
                    SkipReason::NoPrefill => counts.2 += 1,
                    _ => {}
                }
                if here == Some(b) && !pass_notes.is_empty() {
                    // A pass-over of the backend being left: checked against the prediction.
                    continue;
                }
                let reasons = self.skip_reasons(b, now, req.floor, prefill_mode);
                let check = match reason {
                    SkipReason::CircuitOpen | SkipReason::ProbeInFlight => Check::Stuck,
                    SkipReason::NoPrefill | SkipReason::PrefillRejected => Check::Prefill,
                    _ => Check::Eligibility,
                };
                // SPEC §5.8: "takes no prefill" is judged before the circuit and TPM (no probe
                // taken, no skip statistics); the context floor and it are both reasons of
                // the request itself, in either order.
                if rejects_prefill(b)
                    && !matches!(reason, SkipReason::NoPrefill | SkipReason::ContextLimit)
                {
                    let c = ctx(self);
                    self.bad(
                        Check::Prefill,
                        format!(
                            "{c}: skipped {backend} for {reason:?}; it takes no prefill, which is judged first"
                        ),
                    );
                }
                match reasons.iter().find(|(w, _)| w == reason) {
                    None => {
                        let c = ctx(self);
                        let circ = self.view(b, now);
                        self.bad(check, format!("{c}: skipped {backend} for {reason:?} (until {until_ms:?}); the model's reasons are {reasons:?} (circuit {circ:?}, tpm {})", self.tpm_at(b, now)));
                    }
                    Some((_, u)) if u != until_ms => {
                        let c = ctx(self);
                        self.bad(check, format!("{c}: skipped {backend} for {reason:?} until {until_ms:?}; the model says until {u:?}"));
                    }
                    Some(_) => {}
                }
                req.skipped.insert(b);
                req.out.insert(b);
            }
        }
        if let Some((backend, from, to)) = &advanced {
            let b = self.bi(backend);
            match req.visit.as_mut() {
                Some(v) if v.b == b && self.plan.backends[b].buckets[v.k].name == *from => {
                    v.tried[v.k] = true;
                    v.k = self.plan.backends[b]
                        .buckets
                        .iter()
                        .position(|k| k.name == *to)
                        .expect("known");
                    v.extra_used = false;
                    if v.tried[v.k] {
                        self.violations.push((
                            Check::Buckets,
                            self.step,
                            format!("#{r}: advanced to {to}, already tried in this visit"),
                        ));
                    }
                }
                _ => {
                    let c = ctx(self);
                    self.bad(
                        Check::Buckets,
                        format!(
                            "{c}: bucket_advanced {backend}/{from} is not where the request is"
                        ),
                    );
                }
            }
        }
        if let Some((backend, bucket, attempt, prefill)) = &send {
            let b = self.bi(backend);
            let k = self.ki(b, bucket);
            req.sends += 1;
            let bound = self.bound();
            if *attempt != req.sends {
                let c = ctx(self);
                self.bad(
                    Check::Ending,
                    format!(
                        "{c}: attempt numbered {attempt}, it is attempt {}",
                        req.sends
                    ),
                );
            }
            if req.sends > bound {
                let c = ctx(self);
                self.bad(
                    Check::Ending,
                    format!(
                        "{c}: attempt {} exceeds the SPEC §5.4 bound {bound}",
                        req.sends
                    ),
                );
            }
            if let Some(m) = s.max_attempts
                && req.sends > m
            {
                let c = ctx(self);
                self.bad(
                    Check::Ending,
                    format!("{c}: attempt {} exceeds max_attempts {m}", req.sends),
                );
            }
            if *prefill != prefill_mode || (*prefill && !self.plan.backends[b].accepts_prefill) {
                let c = ctx(self);
                self.bad(Check::Decision, format!("{c}: prefill={prefill} to {backend} (continue mode after an interruption: {prefill_mode}; accepts: {})", self.plan.backends[b].accepts_prefill));
            }
            let starts_visit = arrival || failover.is_some();
            if starts_visit {
                if req.skipped.contains(&b) {
                    let c = ctx(self);
                    self.bad(
                        Check::Eligibility,
                        format!(
                            "{c}: sent to {backend}, which was skipped earlier in this request"
                        ),
                    );
                } else if req.out.contains(&b) {
                    let c = ctx(self);
                    self.bad(
                        Check::Eligibility,
                        format!("{c}: {backend} visited twice in one request"),
                    );
                }
                if let Some((why, until)) = self.circuit_block(b, now) {
                    let c = ctx(self);
                    self.bad(
                        Check::Eligibility,
                        format!(
                            "{c}: sent to {backend} whose circuit is {why:?} until {until} ({:?})",
                            self.view(b, now)
                        ),
                    );
                }
                if let Some(thr) = s.tpm_threshold
                    && self.tpm_at(b, now) >= thr
                {
                    let c = ctx(self);
                    self.bad(Check::Eligibility, format!("{c}: sent to {backend} with {} tokens in the trailing minute ≥ threshold {thr}", self.tpm_at(b, now)));
                }
                let took = self.take_probe(r, b, now);
                let noted = acts
                    .iter()
                    .any(|a| matches!(a, Action::CircuitHalfOpen { backend: x } if x == backend));
                if took != noted {
                    let c = ctx(self);
                    self.bad(Check::Eligibility, format!("{c}: {backend}: the model takes a probe: {took}; engine note circuit_half_open: {noted}"));
                }
                let n = self.plan.backends[b].buckets.len();
                let want = self.expected_bucket(b, &vec![false; n], now);
                if want != Some(k) {
                    let c = ctx(self);
                    self.bad(
                        Check::Buckets,
                        format!(
                            "{c}: {backend} started on {bucket}, SPEC §5.3 order says k{}",
                            want.unwrap_or(99)
                        ),
                    );
                }
                req.out.insert(b);
                req.visit = Some(VisitM {
                    b,
                    k,
                    tried: vec![false; n],
                    extra_used: false,
                    last_class: None,
                    last_status: None,
                    last_end: now,
                });
            } else {
                match &req.visit {
                    Some(v) if v.b == b && v.k == k => {}
                    v => {
                        let c = ctx(self);
                        let w = v.as_ref().map(|v| (self.bname(v.b), self.kname(v.b, v.k)));
                        self.bad(cat, format!("{c}: sent to {backend}/{bucket} while on {w:?} without a failover or bucket advance"));
                    }
                }
            }
            req.pend = PendM::Attempt {
                b,
                k,
                sent: now,
                prefill: *prefill,
            };
        }
        if let Some(Action::RefreshToken { backend, bucket }) = acts
            .iter()
            .find(|a| matches!(a, Action::RefreshToken { .. }))
        {
            match req.visit.as_mut() {
                Some(v)
                    if self.plan.backends[v.b].name == *backend
                        && self.plan.backends[v.b].buckets[v.k].name == *bucket =>
                {
                    v.extra_used = true;
                }
                _ => self.violations.push((
                    Check::Decision,
                    self.step,
                    format!("#{r}: refresh of {backend}/{bucket}, not the current bucket"),
                )),
            }
            req.pend = PendM::Refresh;
        }
        if let Some(until) = wait_until {
            if until < now {
                let c = ctx(self);
                self.bad(
                    Check::Decision,
                    format!("{c}: wait until {until}, in the past"),
                );
            }
            if did != Did::Retry
                && let Some(v) = req.visit.as_mut()
            {
                v.extra_used = true;
            }
            req.pend = PendM::Timer {
                until,
                after_429: did == Did::Wait,
            };
        }
        let mut ended = false;
        for a in acts {
            match a {
                Action::Deliver {
                    backend,
                    bucket,
                    tokens,
                } => {
                    ended = true;
                    let want = outcome.map_or(0, |o| o.tokens);
                    let ok = outcome.is_some_and(|o| o.class == Class::Success)
                        && visit_before.as_ref().is_some_and(|v| {
                            self.bname(v.b) == backend && self.kname(v.b, v.k) == bucket
                        })
                        && *tokens == want;
                    if !ok {
                        let c = ctx(self);
                        self.bad(Check::Decision, format!("{c}: deliver {backend}/{bucket} {tokens} tokens does not match the attempt"));
                    }
                    let b = self.bi(backend);
                    self.tpm[b].push((now, want));
                }
                Action::Fail {
                    kind,
                    headline,
                    error,
                    failure,
                } => {
                    ended = true;
                    let credential_rule = if req.nocred.is_empty() {
                        Check::Decision
                    } else {
                        Check::Credential
                    };
                    if *kind == FailKind::AllSkipped {
                        // The error names each backend passed over, and each bucket without a
                        // credential with the driver's words (SPEC §5.2, §5.3).
                        let mut missing: Vec<String> = req
                            .skipped
                            .iter()
                            .map(|&b| self.bname(b).to_string())
                            .filter(|n| !error.contains(n.as_str()))
                            .collect();
                        missing.extend(
                            req.nocred
                                .iter()
                                .map(|(b, k, why)| {
                                    format!("{}/{}: {why}", self.bname(*b), self.kname(*b, *k))
                                })
                                .filter(|n| !error.contains(n.as_str())),
                        );
                        if req.sends > 0 || !missing.is_empty() {
                            let c = ctx(self);
                            self.bad(credential_rule, format!("{c}: all-skipped failure after {} attempts, not naming {missing:?}", req.sends));
                        }
                    }
                    // The aggregate error lists every attempt and only attempts: a bucket
                    // passed over for want of a credential is not one (SPEC §5.3, §5.4).
                    if failure.attempts.len() != req.sends as usize {
                        let c = ctx(self);
                        self.bad(
                            credential_rule,
                            format!(
                                "{c}: the failure lists {} attempts, the request made {}",
                                failure.attempts.len(),
                                req.sends
                            ),
                        );
                    }
                    // SPEC §5.8: a request that cannot go on fails with its original
                    // interruption (backend and delivered tokens of the first one).
                    if *headline == Headline::Interrupted {
                        let got = failure.interruption.as_ref().map(|i| (i.backend, i.tokens));
                        let words = req.interruption.map(|(b, t)| {
                            format!("stream interrupted after {t} tokens from {}", self.bname(b))
                        });
                        if got != req.interruption
                            || words
                                .as_ref()
                                .is_none_or(|w| !error.starts_with(w.as_str()))
                        {
                            let c = ctx(self);
                            self.bad(
                                if prefill_mode {
                                    Check::Prefill
                                } else {
                                    Check::Decision
                                },
                                format!(
                                    "{c}: interrupted failure {got:?} ({error:?}), the first interruption was {:?}",
                                    req.interruption
                                ),
                            );
                        }
                    }
                }
                _ => {}
            }
        }
        if ended || (!has(is_order)) {
            if let Some(v) = req.visit.take() {
                // Only reached when the engine ended the request without leaving the visit
                // (a contract violation already reported); keep the breaker model in step.
                self.release(r, v.b, now);
            }
            self.done.insert(r);
        } else {
            self.reqs.insert(r, req);
        }
    }

    /// Where request `r` is, for messages.
    fn where_(&self, r: u64) -> String {
        match self.reqs.get(&r).and_then(|q| q.visit.as_ref()) {
            Some(v) => format!(" on {}/{}", self.bname(v.b), self.kname(v.b, v.k)),
            None => String::new(),
        }
    }

    fn finish(&mut self, trace: &Trace) {
        self.step = trace.steps.len();
        if trace.runaway {
            self.bad(Check::Ending, format!("no end after {MAX_STEPS} steps"));
        }
        let live: Vec<u64> = self.reqs.keys().copied().collect();
        for r in live {
            self.bad(Check::Ending, format!("#{r} never ended"));
        }
        for l in &trace.leaks {
            self.bad(Check::Stuck, format!("probe leak: {l}"));
        }
        let shared = &trace.final_state.shared;
        // SPEC §5.10: bucket statistics count attempts, when they end; a bucket passed over
        // for want of a credential was not used (SPEC §5.3: not an attempt).
        let keys: BTreeSet<&str> = self
            .plan
            .backends
            .iter()
            .flat_map(|b| b.buckets.iter().map(|k| k.key.as_str()))
            .collect();
        for key in keys {
            let want = self.ended_on.get(key).copied().unwrap_or(0);
            let st = shared.buckets.get(key).map(|b| &b.stats);
            let got = st.map_or(0, |s| s.requests);
            let used = st.and_then(|s| s.last_used);
            if got != want || used.is_some() != (want > 0) {
                self.bad(
                    Check::Credential,
                    format!("account {key}: {got} requests (last used {used:?}) in its statistics, {want} attempts ended on it"),
                );
            }
        }
        // Skip statistics count circuit and TPM skips only (SPEC §5.10); a backend passed
        // over for want of a prefill is not counted (SPEC §5.8).
        for (b, (circuit, tpm, no_prefill)) in self.skip_notes.clone().into_iter().enumerate() {
            let name = self.bname(b);
            let st = shared.backends.get(name).map(|x| &x.stats);
            let got = st.map_or((0, 0), |s| (s.skipped_circuit, s.skipped_tpm));
            if got != (circuit, tpm) {
                self.bad(
                    if no_prefill > 0 {
                        Check::Prefill
                    } else {
                        Check::Eligibility
                    },
                    format!("{name}: skip statistics (circuit, tpm) {got:?}, the notes say {:?} ({no_prefill} no-prefill pass-overs, never counted)", (circuit, tpm)),
                );
            }
        }
    }
}

fn names(plan: &Plan, set: &(impl IntoIterator<Item = usize> + Clone)) -> Vec<String> {
    set.clone()
        .into_iter()
        .map(|b| plan.backends[b].name.clone())
        .collect()
}

/// Runs the model over a trace.
fn check(sc: &Scenario, trace: &Trace) -> Vec<(Check, usize, String)> {
    let mut m = Model::new(&sc.plan);
    for (i, s) in trace.steps.iter().enumerate() {
        m.on_step(i, &s.event, &s.actions(&sc.plan));
    }
    m.finish(trace);
    m.violations
}

// ---------------------------------------------------------------------------------------------
// Transcripts for failure messages (STYLE 9)
// ---------------------------------------------------------------------------------------------

fn render_outcome(o: &Outcome) -> String {
    let mut s = o.class.as_str().to_string();
    if let Some(st) = o.status {
        let _ = write!(s, " {st}");
    }
    if let Some(ra) = o.retry_after_ms {
        let _ = write!(s, " ra={ra}");
    }
    if o.tokens > 0 {
        let _ = write!(s, " tok={}", o.tokens);
    }
    if o.delivered_tokens > 0 {
        let _ = write!(s, " delivered={}", o.delivered_tokens);
    }
    let _ = write!(s, " lat={}", o.latency_ms);
    s
}

fn render_actions(acts: &[Action]) -> String {
    acts.iter()
        .map(|a| {
            let v = serde_json::to_value(a).expect("serialises");
            let mut s = a.name();
            if let serde_json::Value::Object(m) = v {
                let fields: Vec<String> = m
                    .iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "action" | "error" | "failure"))
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                if !fields.is_empty() {
                    let _ = write!(s, "({})", fields.join(" "));
                }
            }
            s
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn render_event(e: &Event) -> String {
    match e {
        Event::RequestArrived { now, request, .. } => format!("{now:>7} #{request} arrived"),
        Event::AttemptFinished {
            now,
            request,
            outcome,
        } => {
            format!(
                "{now:>7} #{request} attempt finished: {}",
                render_outcome(outcome)
            )
        }
        Event::RefreshFinished { now, request, ok } => {
            format!("{now:>7} #{request} refresh ok={ok}")
        }
        Event::NoCredential { now, request, why } => {
            format!("{now:>7} #{request} no credential: {why}")
        }
        Event::TimerFired { now, request } => format!("{now:>7} #{request} timer fired"),
        Event::RequestCancelled { now, request } => format!("{now:>7} #{request} cancelled"),
    }
}

fn render_plan(p: &Plan) -> String {
    let mut s = format!("policy {:?}; settings {:?}\n", p.policy, p.settings);
    for b in &p.backends {
        let ks: Vec<String> = b
            .buckets
            .iter()
            .map(|k| {
                format!(
                    "{}[{}{}{}]",
                    k.name,
                    k.key,
                    if k.oauth { " oauth" } else { "" },
                    if k.refreshable { " refreshable" } else { "" }
                )
            })
            .collect();
        let _ = writeln!(
            s,
            "  {} ctx={} prefill={} buckets {}",
            b.name,
            b.context_limit,
            b.accepts_prefill,
            ks.join(" ")
        );
    }
    s
}

fn transcript(sc: &Scenario, trace: &Trace) -> String {
    let mut s = render_plan(&sc.plan);
    if !sc.missing.is_empty() {
        let _ = writeln!(s, "no credential: {:?}", sc.missing);
    }
    for (i, st) in trace.steps.iter().enumerate() {
        let _ = writeln!(
            s,
            "{i:>4} {} -> {}",
            render_event(&st.event),
            render_actions(&st.actions(&sc.plan))
        );
    }
    s
}

/// Asserts that the model found nothing under `checks`; on failure prints the violations and
/// the transcript.
fn assert_clean(sc: &Scenario, checks: &[Check]) -> Result<(), TestCaseError> {
    let trace = run(sc, false);
    let found: Vec<_> = check(sc, &trace)
        .into_iter()
        .filter(|(c, ..)| checks.contains(c))
        .collect();
    if found.is_empty() {
        return Ok(());
    }
    let mut msg = String::new();
    for (c, step, m) in found.iter().take(5) {
        let _ = writeln!(msg, "[{c:?}] step {step}: {m}");
    }
    let _ = write!(msg, "transcript:\n{}", transcript(sc, &trace));
    Err(TestCaseError::fail(msg))
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    /// SPEC §5.4 "Every request terminates" and the driving contract: each request ends with
    /// exactly one Deliver or Fail within Σ(2 × buckets + retry_count) attempts and
    /// `max_attempts`; each step gives at most one order; events after the end are ignored.
    #[test]
    fn every_request_ends_once_within_the_bound(sc in arb_scenario()) {
        assert_clean(&sc, &[Check::Ending])?;
    }

    /// SPEC §5.2, §5.6, §5.7: no visit starts on a backend skipped earlier in the request, on
    /// an open circuit, or over its TPM threshold; every skip is justified; the breaker's
    /// notes match a reference breaker.
    #[test]
    fn never_sends_to_skipped_open_or_over_tpm_backends(sc in arb_scenario()) {
        assert_clean(&sc, &[Check::Eligibility])?;
    }

    /// SPEC §5.6: no circuit is skipped longer than its timeout without a live probe, and no
    /// probe outlives its request's visit.
    #[test]
    fn no_circuit_stays_ineligible_without_a_probe(sc in arb_scenario()) {
        assert_clean(&sc, &[Check::Stuck])?;
    }

    /// SPEC §5.2, §5.3, §5.11: each move goes to the first backend in policy order (list
    /// order / cyclic from the round-robin cursor) that is not skipped and has a ready bucket,
    /// else to the one whose cooldown ends first; the primary whenever eligible.
    #[test]
    fn backends_are_tried_in_policy_order(sc in arb_scenario()) {
        assert_clean(&sc, &[Check::Order])?;
    }

    /// SPEC §5.3, §5.11: buckets in chain order with cooling ones last by cooldown end;
    /// cooldowns as the table says.
    #[test]
    fn buckets_are_tried_in_spec_order(sc in arb_scenario()) {
        assert_clean(&sc, &[Check::Buckets])?;
    }

    /// SPEC §5.4: retries on a backend in one request never exceed `failover_retry_count`,
    /// and wait `max(failover_retry_delay_ms, min(Retry-After, retry_after_max_ms))`.
    #[test]
    fn retries_stay_within_retry_count(sc in arb_scenario()) {
        assert_clean(&sc, &[Check::Retries])?;
    }

    /// SPEC §5.3: a 429 with Retry-After ≤ retry_after_max_ms (> 0) is retried on the same
    /// bucket once after exactly that wait; SPEC §4: content_filter never leads to a Send.
    #[test]
    fn retry_after_is_waited_exactly_and_content_filter_stops(sc in arb_scenario()) {
        assert_clean(&sc, &[Check::RetryAfter])?;
    }

    /// The rest of the decision tables of SPEC §5.3–§5.5 and §5.8 (fail / refresh / deliver,
    /// prefill under `mid_stream: continue`, the all-skipped error).
    #[test]
    fn decisions_follow_the_spec_tables(sc in arb_scenario()) {
        assert_clean(&sc, &[Check::Decision])?;
    }

    /// SPEC §5.11: "A circuit opens at the end of the backend's last attempt".
    #[test]
    // was ignored: suspected engine bug (fixed)
    fn circuit_opens_at_the_end_of_the_last_attempt(sc in arb_scenario()) {
        assert_clean(&sc, &[Check::OpenTime])?;
    }

    /// SPEC §5.6: "one that has not reported within lb_circuit_breaker_timeout_ms counts as a
    /// failed probe" — cancelling that request afterwards must not make the circuit eligible.
    #[test]
    // was ignored: suspected engine bug (fixed)
    fn a_cancelled_timed_out_probe_keeps_the_circuit_open(sc in arb_scenario()) {
        assert_clean(&sc, &[Check::ProbeRelease])?;
    }

    /// SPEC §5.1, §9: the same scenario gives the same actions.
    #[test]
    fn runs_are_deterministic(sc in arb_scenario()) {
        let a = run(&sc, false);
        let b = run(&sc, false);
        prop_assert_eq!(&a.steps, &b.steps);
        prop_assert_eq!(&a.final_state, &b.final_state);
    }

    /// SPEC §5.3 (revised): a bucket without a usable credential is passed over without a
    /// request — a `no_credential` note, not an attempt (no `max_attempts` count, no
    /// `attempt_ended`, no circuit, probe or bucket-statistics effect) — and the chain moves to
    /// the next bucket, then (on the visit's last real outcome, or straight on when there was
    /// none) to the next backend; with nothing attempted at all the request fails all-skipped.
    #[test]
    fn a_bucket_without_a_credential_is_passed_over_without_an_attempt(sc in arb_scenario()) {
        assert_clean(&sc, &[Check::Credential])?;
    }

    /// SPEC §5.8 (revised) `mid_stream: continue`: after an interruption every attempt
    /// carries the prefill; a backend without `accepts-prefill` is passed over without a
    /// request (its own retry included); a `client` answer to a prefill is a rejection that
    /// moves on; with no backend left the request fails with the first interruption, unless
    /// `max_attempts` ended it first.
    #[test]
    fn continue_passes_over_backends_that_take_no_prefill(sc in arb_scenario()) {
        assert_clean(&sc, &[Check::Prefill])?;
    }

    /// SPEC §5.1, §5.9: a state restored from JSON after any step decides exactly as the
    /// original.
    #[test]
    fn state_survives_a_json_round_trip_after_every_step(sc in arb_scenario()) {
        let plain = run(&sc, false);
        let json = run(&sc, true);
        for (i, (a, b)) in plain.steps.iter().zip(&json.steps).enumerate() {
            prop_assert!(
                a == b,
                "step {} differs after a round trip:\n  plain: {} -> {}\n  json:  {} -> {}",
                i, render_event(&a.event), render_actions(&a.actions(&sc.plan)),
                render_event(&b.event), render_actions(&b.actions(&sc.plan))
            );
        }
        prop_assert_eq!(plain.steps.len(), json.steps.len());
        prop_assert_eq!(&plain.final_state, &json.final_state);
    }
}

// --- round-robin ---

fn arb_rr_plan(breaker: bool) -> impl Strategy<Value = Plan> {
    (prop::collection::vec(arb_backend(), 1..=4), arb_settings()).prop_map(move |(b, mut s)| {
        s.tpm_threshold = None;
        s.breaker_threshold = if breaker { Some(1) } else { None };
        s.retry_count = 0;
        // 404 never triggers failover; 500 always does.
        s.status_codes = vec![500];
        build_plan(b, Policy::Roundrobin, s)
    })
}

fn first_considered(acts: &[Action]) -> Option<String> {
    acts.iter().find_map(|a| match a {
        Action::Skipped { backend, .. } | Action::Send { backend, .. } => Some(backend.clone()),
        _ => None,
    })
}

/// A scenario of the round-robin properties: every credential present.
fn rr_scenario(plan: Plan, requests: Vec<ReqGen>, outcomes: Vec<Outcome>) -> Scenario {
    Scenario {
        plan,
        requests,
        outcomes,
        refreshes: vec![true],
        refresh_latency_ms: 0,
        missing: BTreeSet::new(),
        revoked: vec![false],
    }
}

proptest! {
    #![proptest_config(config())]

    /// SPEC §5.2: with every attempt succeeding and no breaker or TPM, n requests over k
    /// backends start on backend i mod k, so per-backend counts differ by at most one.
    #[test]
    fn round_robin_is_fair(
        plan in arb_rr_plan(false),
        reqs in prop::collection::vec(arb_request(), 1..=30),
        outs in prop::collection::vec(arb_outcome_of(Just(Class::Success)), 1..=10),
    ) {
        let requests = reqs.into_iter().map(|r| ReqGen { cancel: None, ..r }).collect();
        let sc = rr_scenario(plan, requests, outs);
        let trace = run(&sc, false);
        let k = sc.plan.backends.len();
        let mut counts = vec![0u32; k];
        let mut arrivals = 0usize;
        for st in &trace.steps {
            if let Event::RequestArrived { .. } = st.event {
                let first = first_considered(&st.actions(&sc.plan));
                prop_assert_eq!(first.as_deref(), Some(sc.plan.backends[arrivals % k].name.as_str()),
                    "request {} (arrival {}) should start on B{}:\n{}", st.event.request(), arrivals, arrivals % k, transcript(&sc, &trace));
                counts[arrivals % k] += 1;
                arrivals += 1;
            }
        }
        prop_assert_eq!(arrivals, sc.requests.len());
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        prop_assert!(max - min <= 1, "counts {:?}", counts);
    }

    /// SPEC §5.11: the cursor advances by exactly one per request, even when the request fails
    /// at once (a 404) or every backend is skipped (breaker threshold 1).
    #[test]
    fn round_robin_cursor_advances_once_per_request(
        plan in arb_rr_plan(true),
        reqs in prop::collection::vec(arb_request(), 1..=30),
        outs in prop::collection::vec(
            prop_oneof![
                (Just(Class::Success), 200u16..=200),
                (Just(Class::Client), 404u16..=404),
                (Just(Class::Server), 500u16..=500),
            ].prop_flat_map(|(c, st)| (Just(st), arb_outcome_of(Just(c))))
             .prop_map(|(st, mut o)| { o.status = Some(st); o }),
            1..=20),
    ) {
        let sc = rr_scenario(plan, reqs, outs);
        let trace = run(&sc, false);
        let k = sc.plan.backends.len();
        let mut arrivals = 0usize;
        for st in &trace.steps {
            if let Event::RequestArrived { .. } = st.event {
                let first = first_considered(&st.actions(&sc.plan));
                prop_assert_eq!(first.as_deref(), Some(sc.plan.backends[arrivals % k].name.as_str()),
                    "arrival {} should consider B{} first:\n{}", arrivals, arrivals % k, transcript(&sc, &trace));
                arrivals += 1;
            }
        }
        prop_assert_eq!(arrivals, sc.requests.len());
    }
}

// ---------------------------------------------------------------------------------------------
// The minimal counterexamples of the ignored properties, as event sequences (STYLE 9: named
// after the bug they pin). Ignored while the engine disagrees with the SPEC.
// ---------------------------------------------------------------------------------------------

fn one_backend(
    oauth: bool,
    accepts_prefill: bool,
    edit: impl FnOnce(&mut FailoverSettings),
) -> Arc<Plan> {
    let mut s = FailoverSettings {
        breaker_threshold: Some(1),
        breaker_timeout_ms: 1_000,
        retry_count: 0,
        ..FailoverSettings::default()
    };
    edit(&mut s);
    Arc::new(build_plan(
        vec![(0, vec![(oauth, oauth)], 0, accepts_prefill)],
        Policy::Failover,
        s,
    ))
}

fn feed(state: &mut EngineState, plan: &Plan, event: &Event) -> Vec<Action> {
    let (s, step) = decide(std::mem::take(state), event);
    *state = s;
    actions(plan, &step, event.now())
}

fn outcome(class: Class, status: Option<u16>, latency_ms: u64) -> Outcome {
    let mut o = Outcome::of(class);
    o.status = status;
    o.latency_ms = latency_ms;
    o.delivered_tokens = u64::from(class == Class::Interrupted) * 5;
    o
}

fn opened_until(acts: &[Action]) -> Option<u64> {
    acts.iter().find_map(|a| match a {
        Action::CircuitOpened { until_ms, .. } => Some(*until_ms),
        _ => None,
    })
}

#[test]
// was ignored: suspected engine bug (fixed)
fn circuit_opens_at_the_401_not_at_the_failed_refresh() {
    let plan = one_backend(true, false, |_| {});
    let mut st = EngineState::default();
    feed(
        &mut st,
        &plan,
        &Event::RequestArrived {
            now: 0,
            request: 1,
            plan: plan.clone(),
        },
    );
    let a = feed(
        &mut st,
        &plan,
        &Event::AttemptFinished {
            now: 100,
            request: 1,
            outcome: outcome(Class::Auth, Some(401), 100),
        },
    );
    assert!(a.iter().any(|a| matches!(a, Action::RefreshToken { .. })));
    let a = feed(
        &mut st,
        &plan,
        &Event::RefreshFinished {
            now: 2_000,
            request: 1,
            ok: false,
        },
    );
    // SPEC §5.11: "A circuit opens at the end of the backend's last attempt" (100).
    assert_eq!(opened_until(&a), Some(1_100), "{}", render_actions(&a));
}

#[test]
// was ignored: suspected engine bug (fixed)
fn circuit_opens_at_the_interruption_not_after_a_useless_retry_wait() {
    let plan = one_backend(false, false, |s| {
        s.mid_stream = MidStream::Continue;
        s.retry_count = 1;
        s.retry_delay_ms = 500;
    });
    let mut st = EngineState::default();
    feed(
        &mut st,
        &plan,
        &Event::RequestArrived {
            now: 0,
            request: 1,
            plan: plan.clone(),
        },
    );
    let a = feed(
        &mut st,
        &plan,
        &Event::AttemptFinished {
            now: 100,
            request: 1,
            outcome: outcome(Class::Interrupted, None, 100),
        },
    );
    let mut all = a.clone();
    if let Some(until) = a.iter().find_map(|a| match a {
        Action::WaitUntil { until_ms } => Some(*until_ms),
        _ => None,
    }) {
        all.extend(feed(
            &mut st,
            &plan,
            &Event::TimerFired {
                now: until,
                request: 1,
            },
        ));
    }
    assert_eq!(opened_until(&all), Some(1_100), "{}", render_actions(&all));
}

#[test]
// was ignored: suspected engine bug (fixed)
fn a_cancelled_timed_out_probe_does_not_reopen_the_circuit_early() {
    let plan = one_backend(false, false, |s| s.status_codes = vec![500]);
    let mut st = EngineState::default();
    feed(
        &mut st,
        &plan,
        &Event::RequestArrived {
            now: 0,
            request: 1,
            plan: plan.clone(),
        },
    );
    let a = feed(
        &mut st,
        &plan,
        &Event::AttemptFinished {
            now: 0,
            request: 1,
            outcome: outcome(Class::Server, Some(500), 0),
        },
    );
    assert_eq!(opened_until(&a), Some(1_000));
    let a = feed(
        &mut st,
        &plan,
        &Event::RequestArrived {
            now: 1_000,
            request: 2,
            plan: plan.clone(),
        },
    );
    assert!(
        a.iter()
            .any(|a| matches!(a, Action::CircuitHalfOpen { .. }))
    );
    // The probe has not reported by 2 000: it counts as failed, the circuit is open over
    // [2 000, 3 000) (SPEC §5.6). Cancelling its request at 2 500 must not change that.
    feed(
        &mut st,
        &plan,
        &Event::RequestCancelled {
            now: 2_500,
            request: 2,
        },
    );
    let a = feed(
        &mut st,
        &plan,
        &Event::RequestArrived {
            now: 2_500,
            request: 3,
            plan: plan.clone(),
        },
    );
    assert!(
        a.iter().any(|a| matches!(
            a,
            Action::Skipped {
                reason: SkipReason::CircuitOpen,
                until_ms: Some(3_000),
                ..
            }
        )),
        "{}",
        render_actions(&a)
    );
}

/// The generator reaches every situation of the revised rules (SPEC §5.3 credentials, §5.8
/// `continue`) often enough for the properties above to mean something: counted over 256
/// scenarios drawn with a fixed seed.
#[test]
fn the_generator_reaches_the_revised_rules() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = arb_scenario();
    let mut seen: BTreeMap<&str, u32> = BTreeMap::new();
    for _ in 0..256 {
        let sc = strategy
            .new_tree(&mut runner)
            .expect("a scenario")
            .current();
        let trace = run(&sc, false);
        for st in &trace.steps {
            let acts = st.actions(&sc.plan);
            let mut hit = |k| *seen.entry(k).or_default() += 1;
            let nocred = matches!(st.event, Event::NoCredential { .. });
            for a in &acts {
                match a {
                    Action::NoCredential { .. } => hit("no_credential note"),
                    Action::BucketAdvanced { .. } if nocred => hit("no_credential → next bucket"),
                    Action::Failover { .. } if nocred => hit("no_credential → next backend"),
                    Action::Retry { .. } if nocred => {
                        hit("no_credential → retry (last real outcome)");
                    }
                    Action::Skipped {
                        reason: SkipReason::NoPrefill,
                        ..
                    } => hit("no_prefill skip"),
                    Action::Skipped {
                        reason: SkipReason::PrefillRejected,
                        ..
                    } => hit("prefill_rejected"),
                    Action::Send { prefill: true, .. } => hit("prefilled send"),
                    Action::Fail {
                        kind: FailKind::AllSkipped,
                        failure,
                        ..
                    } if failure
                        .skipped
                        .iter()
                        .any(|s| s.reason == SkipReason::NoCredential) =>
                    {
                        hit("all skipped with a bucket without credential");
                    }
                    Action::Fail {
                        kind: FailKind::Interrupted,
                        ..
                    } if sc.plan.settings.mid_stream == MidStream::Continue => {
                        hit("continue: failed with the interruption");
                    }
                    Action::Fail {
                        headline: Headline::MaxAttempts(_),
                        failure,
                        ..
                    } if failure.interruption.is_some()
                        && sc.plan.settings.mid_stream == MidStream::Continue =>
                    {
                        hit("continue: max_attempts wins");
                    }
                    _ => {}
                }
            }
            if matches!(st.event, Event::AttemptFinished { .. })
                && acts.iter().any(|a| {
                    matches!(
                        a,
                        Action::Skipped {
                            reason: SkipReason::NoPrefill,
                            ..
                        }
                    )
                })
                && !acts.iter().any(|a| matches!(a, Action::Failover { .. }))
                && acts.iter().any(|a| matches!(a, Action::Fail { .. }))
            {
                hit("no_prefill pass-over then no backend left");
            }
        }
    }
    eprintln!("{seen:#?}");
    for k in [
        "no_credential note",
        "no_credential → next bucket",
        "no_credential → next backend",
        "no_prefill skip",
        "prefill_rejected",
        "prefilled send",
        "all skipped with a bucket without credential",
        "continue: failed with the interruption",
    ] {
        assert!(seen.get(k).copied().unwrap_or(0) >= 3, "{k}: {seen:#?}");
    }
}

fn arrive(st: &mut EngineState, plan: &Arc<Plan>, now: u64, request: u64) -> Vec<Action> {
    feed(
        st,
        plan,
        &Event::RequestArrived {
            now,
            request,
            plan: plan.clone(),
        },
    )
}

/// SPEC §5.3 (revised): a bucket without a credential is a note, not an attempt: under
/// `max_attempts: 1` the next bucket still gets its one attempt, numbered 1, and the bucket
/// passed over is not counted in its statistics.
#[test]
fn a_bucket_without_a_credential_is_not_an_attempt() {
    let plan = Arc::new(build_plan(
        vec![(0, vec![(false, false), (false, false)], 0, true)],
        Policy::Failover,
        FailoverSettings {
            max_attempts: Some(1),
            breaker_threshold: Some(1),
            ..FailoverSettings::default()
        },
    ));
    let mut st = EngineState::default();
    arrive(&mut st, &plan, 0, 1);
    let a = feed(
        &mut st,
        &plan,
        &Event::NoCredential {
            now: 0,
            request: 1,
            why: "no key: ~/.key not found".into(),
        },
    );
    assert_eq!(
        render_actions(&a),
        r#"no_credential(backend="B0" bucket="k0" why="no key: ~/.key not found"); bucket_advanced(backend="B0" from="k0" to="k1"); send(backend="B0" bucket="k1" attempt=1 prefill=false)"#
    );
    let a = feed(
        &mut st,
        &plan,
        &Event::AttemptFinished {
            now: 100,
            request: 1,
            outcome: outcome(Class::Success, Some(200), 100),
        },
    );
    assert!(matches!(a.last(), Some(Action::Deliver { bucket, .. }) if bucket == "k1"));
    let stats = |key: &str| {
        st.shared
            .buckets
            .get(key)
            .map(|b| (b.stats.requests, b.stats.last_used))
    };
    assert_eq!(stats("p0/k0").unwrap_or((0, None)), (0, None));
    assert_eq!(stats("p0/k1"), Some((1, Some(0))));
}

/// SPEC §5.3 (revised): with no credential anywhere, nothing is attempted: the request fails
/// all-skipped, naming each bucket with the driver's words, and the circuits are untouched.
#[test]
fn no_credential_anywhere_fails_all_skipped() {
    let plan = Arc::new(build_plan(
        vec![
            (0, vec![(false, false)], 0, true),
            (1, vec![(true, true)], 0, true),
        ],
        Policy::Failover,
        FailoverSettings {
            breaker_threshold: Some(1),
            status_codes: Vec::new(),
            ..FailoverSettings::default()
        },
    ));
    let mut st = EngineState::default();
    arrive(&mut st, &plan, 0, 1);
    let no_cred = |why: &str| Event::NoCredential {
        now: 5,
        request: 1,
        why: why.into(),
    };
    let a = feed(&mut st, &plan, &no_cred("no key: ~/.key not found"));
    assert!(
        matches!(a.as_slice(), [Action::NoCredential { .. }, Action::Failover { from, to }, Action::Send { attempt: 1, .. }] if from == "B0" && to == "B1"),
        "{}",
        render_actions(&a)
    );
    let a = feed(&mut st, &plan, &no_cred("k0: sign in again"));
    let Some(Action::Fail { kind, error, .. }) = a.last() else {
        panic!("{}", render_actions(&a));
    };
    assert_eq!(*kind, FailKind::AllSkipped);
    assert!(error.contains("B0/k0: no key: ~/.key not found"), "{error}");
    assert!(error.contains("B1/k0: k0: sign in again"), "{error}");
    for b in ["B0", "B1"] {
        assert_eq!(
            st.shared.backends[b].circuit,
            Circuit::Closed { failures: 0 }
        );
    }
}

/// SPEC §5.8 (revised) `continue`: the interrupted backend takes no prefill, so its retry is
/// not sent (a `no_prefill` pass-over; the breaker counts the interruption); the next
/// backend rejects the prefill (a `client` answer: passed over, counted as an answer); no
/// backend is left, so the request fails with the original interruption, not the rejection.
#[test]
fn continue_passes_over_and_fails_with_the_original_interruption() {
    let plan = Arc::new(build_plan(
        vec![
            (0, vec![(false, false)], 0, false),
            (1, vec![(false, false)], 0, true),
        ],
        Policy::Failover,
        FailoverSettings {
            mid_stream: MidStream::Continue,
            retry_count: 2,
            breaker_threshold: Some(1),
            status_codes: vec![500],
            ..FailoverSettings::default()
        },
    ));
    let mut st = EngineState::default();
    arrive(&mut st, &plan, 0, 1);
    let a = feed(
        &mut st,
        &plan,
        &Event::AttemptFinished {
            now: 100,
            request: 1,
            outcome: outcome(Class::Interrupted, None, 100),
        },
    );
    assert_eq!(
        render_actions(&a),
        r#"attempt_ended(backend="B0" bucket="k0" started_ms=0 class="interrupted" status=null latency_ms=100 then="failover"); skipped(backend="B0" reason="no_prefill" until_ms=null); circuit_opened(backend="B0" until_ms=30100); failover(from="B0" to="B1"); send(backend="B1" bucket="k0" attempt=2 prefill=true)"#
    );
    let a = feed(
        &mut st,
        &plan,
        &Event::AttemptFinished {
            now: 200,
            request: 1,
            outcome: outcome(Class::Client, Some(400), 100),
        },
    );
    assert!(a.iter().any(|a| matches!(a, Action::Skipped { backend, reason: SkipReason::PrefillRejected, .. } if backend == "B1")), "{}", render_actions(&a));
    let Some(Action::Fail {
        kind,
        error,
        failure,
        ..
    }) = a.last()
    else {
        panic!("{}", render_actions(&a));
    };
    assert_eq!(*kind, FailKind::Interrupted);
    assert!(
        error.starts_with("stream interrupted after 5 tokens from B0"),
        "{error}"
    );
    assert_eq!(failure.attempts.len(), 2);
    assert_eq!(
        st.shared.backends["B1"].circuit,
        Circuit::Closed { failures: 0 }
    );
}
