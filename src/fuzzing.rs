//! Fuzz harnesses (STYLE 14): every `fuzz/fuzz_targets/*.rs` is one line calling one of these,
//! and the regression tests replay committed crash inputs through them. Each harness takes
//! arbitrary bytes, must never panic or hang, and checks the invariants that apply.
//!
//! Owns: turning bytes into inputs and asserting invariants. Must not: touch the network, the
//! clock or the filesystem beyond what the code under test does by itself.

use std::sync::Arc;

use crate::engine::plan::{BackendPlan, BucketPlan, FailoverSettings, MidStream, Plan, Policy};
use crate::engine::{Class, EngineState, Event, Order, Outcome, Step};
use crate::profile::validate::{self, NoResolver};
use crate::provider::Protocol;
use crate::shell::protocol;
use crate::shell::sse::SseDecoder;

/// Profile parse + validate: any bytes give diagnostics or a profile, and a valid profile
/// serialised by llxprt reads back equal.
pub fn profile(data: &[u8]) {
    let c = validate::check_profile(data, &NoResolver, Some("fuzz"));
    let _ = validate::place_all("fuzz.json", &c.text, c.findings);
    if let Some(p) = c.parsed {
        let again = validate::check_profile(p.to_json().as_bytes(), &NoResolver, Some("fuzz"));
        assert_eq!(
            again.parsed.as_ref(),
            Some(&p),
            "a profile llxprt wrote reads back equal"
        );
    }
}

/// Trace parse + validate.
pub fn trace(data: &[u8]) {
    let c = crate::simulate::trace::check_trace(data);
    let _ = validate::place_all("fuzz.json", &c.text, c.findings);
}

/// SSE decoding and each protocol's stream decoder, with the bytes split at a point the
/// input chooses (any split gives the same events).
pub fn sse(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let cut = usize::from(first) % (rest.len() + 1);
    let mut whole = SseDecoder::default();
    let mut a = whole.feed(rest).unwrap_or_default();
    a.extend(whole.finish());
    let mut split = SseDecoder::default();
    let mut b = split.feed(&rest[..cut]).unwrap_or_default();
    b.extend(split.feed(&rest[cut..]).unwrap_or_default());
    b.extend(split.finish());
    if whole.feed(&[]).is_ok() && split.feed(&[]).is_ok() {
        assert_eq!(a, b, "splitting the bytes changes no event");
    }
    for proto in [
        Protocol::ChatCompletions,
        Protocol::Messages,
        Protocol::Gemini,
    ] {
        let mut dec = protocol::decoder(proto);
        for ev in &a {
            let _ = dec.on_event(ev);
        }
    }
}

/// Error bodies and non-streamed bodies of each protocol.
pub fn bodies(data: &[u8]) {
    let status = data.first().map_or(500, |b| 400 + u16::from(*b) % 200);
    for proto in [
        Protocol::ChatCompletions,
        Protocol::Messages,
        Protocol::Gemini,
    ] {
        let e = protocol::parse_error(proto, status, data);
        assert!(
            e.message.chars().count() <= 4000,
            "error messages are capped"
        );
        let _ = protocol::parse_response(proto, data);
    }
}

/// A byte reader that yields 0 once exhausted.
struct Bytes<'a>(&'a [u8], usize);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let b = self.0.get(self.1).copied().unwrap_or(0);
        self.1 += 1;
        b
    }
    fn pick(&mut self, n: usize) -> usize {
        usize::from(self.u8()) % n.max(1)
    }
    fn ms(&mut self) -> u64 {
        u64::from(self.u8()) * 97
    }
    fn done(&self) -> bool {
        self.1 >= self.0.len()
    }
}

const CLASSES: [Class; 12] = [
    Class::Success,
    Class::RateLimit,
    Class::Quota,
    Class::Auth,
    Class::Forbidden,
    Class::Server,
    Class::Network,
    Class::Timeout,
    Class::ContextLength,
    Class::ContentFilter,
    Class::Client,
    Class::Interrupted,
];

fn plan_from(b: &mut Bytes<'_>) -> Plan {
    let n = 1 + b.pick(3);
    let backends = (0..n)
        .map(|i| {
            let buckets = (0..=b.pick(3))
                .map(|k| {
                    let oauth = b.u8().is_multiple_of(2);
                    BucketPlan {
                        name: format!("k{k}"),
                        key: format!("p{i}/k{k}"),
                        oauth,
                        refreshable: oauth && b.u8().is_multiple_of(2),
                    }
                })
                .collect();
            BackendPlan {
                name: format!("b{i}"),
                provider: format!("p{i}"),
                model: "m".into(),
                fingerprint: format!("f{i}"),
                buckets,
                context_limit: u64::from(b.u8()) * 1000,
                accepts_prefill: b.u8().is_multiple_of(2),
            }
        })
        .collect();
    let codes = [400u16, 401, 402, 403, 429, 500, 502, 503, 504, 529];
    let mask = u16::from(b.u8()) | (u16::from(b.u8()) << 8);
    Plan {
        lb: "lb".into(),
        policy: if b.u8().is_multiple_of(2) {
            Policy::Failover
        } else {
            Policy::Roundrobin
        },
        backends,
        settings: FailoverSettings {
            retry_count: u32::from(b.u8() % 4),
            retry_delay_ms: b.ms(),
            on_network_errors: !b.u8().is_multiple_of(4),
            status_codes: codes
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, c)| *c)
                .collect(),
            tpm_threshold: (b.u8().is_multiple_of(3)).then(|| 1 + u64::from(b.u8()) * 50),
            breaker_threshold: (b.u8().is_multiple_of(2)).then(|| 1 + u32::from(b.u8() % 3)),
            breaker_timeout_ms: 1 + b.ms() * 10,
            retry_after_max_ms: b.ms() * 5,
            bucket_cooldown_ms: b.ms() * 50,
            max_attempts: (b.u8().is_multiple_of(3)).then(|| 1 + u32::from(b.u8() % 6)),
            mid_stream: [
                MidStream::Restart,
                MidStream::Continue,
                MidStream::Buffer,
                MidStream::Error,
            ][b.pick(4)],
            on_context_length: !b.u8().is_multiple_of(4),
        },
    }
}

/// `decide` over an arbitrary event sequence: every request ends once, within the SPEC §5.4
/// attempt bound, with at most one order per step; stray events change nothing.
pub fn decide(data: &[u8]) {
    let mut b = Bytes(data, 0);
    let plan = Arc::new(plan_from(&mut b));
    let bound: usize = plan
        .backends
        .iter()
        .map(|x| 2 * x.buckets.len() + plan.settings.retry_count as usize)
        .sum();
    let bound = plan
        .settings
        .max_attempts
        .map_or(bound, |m| bound.min(m as usize));
    let mut st = EngineState::default();
    let mut now = 0u64;
    for request in 1..=8u64 {
        if b.done() {
            break;
        }
        now += b.ms() * 100;
        let mut event = Event::RequestArrived {
            now,
            request,
            plan: plan.clone(),
        };
        let mut attempts = 0usize;
        loop {
            let step = st.step(&event);
            let Some(order) = step.next else {
                panic!("a fitting event always gets an order: {step:?}");
            };
            if order.ends() {
                assert!(
                    !st.requests.contains_key(&request),
                    "an ended request leaves the state"
                );
                assert_eq!(
                    st.step(&Event::TimerFired { now, request }),
                    Step::default(),
                    "a stray event changes nothing"
                );
                break;
            }
            event = match order {
                Order::Send { .. } => {
                    attempts += 1;
                    assert!(
                        attempts <= bound,
                        "attempts {attempts} over the bound {bound}"
                    );
                    now += b.ms();
                    if b.u8().is_multiple_of(16) {
                        let cancelled = st.step(&Event::RequestCancelled { now, request });
                        assert_eq!(cancelled, Step::default());
                        break;
                    }
                    if b.u8().is_multiple_of(13) {
                        attempts -= 1; // not an attempt (SPEC §5.3)
                        Event::NoCredential {
                            now,
                            request,
                            why: "no key".into(),
                        }
                    } else {
                        let mut o = Outcome::of(CLASSES[b.pick(CLASSES.len())]);
                        o.status = o.class.default_status();
                        o.retry_after_ms = (b.u8().is_multiple_of(3)).then(|| b.ms() * 3);
                        o.tokens = u64::from(b.u8());
                        o.delivered_tokens = u64::from(b.u8() % 4);
                        Event::AttemptFinished {
                            now,
                            request,
                            outcome: o,
                        }
                    }
                }
                Order::Refresh { .. } => {
                    now += b.ms();
                    Event::RefreshFinished {
                        now,
                        request,
                        ok: b.u8().is_multiple_of(2),
                    }
                }
                Order::Wait { until_ms } => {
                    now = now.max(until_ms);
                    Event::TimerFired { now, request }
                }
                Order::Deliver { .. } | Order::Fail(_) => unreachable!("endings break above"),
            };
        }
    }
    let json = serde_json::to_string(&st).expect("the state serialises");
    let back: EngineState = serde_json::from_str(&json).expect("and reads back");
    assert_eq!(back, st);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harnesses_accept_edge_inputs() {
        for input in [
            &b""[..],
            b"{",
            b"\xff\xfe",
            b"[[[[",
            b"data: x\n\n",
            b"\0\0\0\0\0\0\0\0\0\0\0\0\0",
        ] {
            profile(input);
            trace(input);
            sse(input);
            bodies(input);
            decide(input);
        }
        decide(&[7u8; 300]);
        decide(&(0..=255u8).collect::<Vec<_>>());
    }
}
