//! The engine state (SPEC §5.9): what is shared across requests and processes (round-robin
//! cursors, circuits, TPM windows, cooldowns, statistics), and what belongs to one request in
//! flight. Plain serde data: a state restored from JSON decides exactly as the original.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::action::SkipReason;
use super::event::RequestId;
use super::outcome::Class;
use super::plan::Plan;
use super::stats::{BackendStats, BucketStats, LbStats};

/// The TPM window length (SPEC §5.7).
pub const TPM_WINDOW_MS: u64 = 60_000;

/// A half-open circuit's probe in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// The request probing.
    pub request: RequestId,
    /// When it took the probe (ms).
    pub started_ms: u64,
}

/// A backend's circuit (SPEC §5.6). `Open` becomes half-open by time alone; the transition is
/// applied lazily by [`Circuit::settle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Circuit {
    /// Requests flow; `failures` consecutive failed requests so far.
    Closed {
        /// Consecutive failed requests.
        failures: u32,
    },
    /// Skipped over `[since_ms, since_ms + timeout)`.
    Open {
        /// When it opened (ms).
        since_ms: u64,
    },
    /// One request may probe it; others skip it while the probe is in flight.
    HalfOpen {
        /// The probe in flight, if any.
        probe: Option<Probe>,
    },
}

impl Default for Circuit {
    fn default() -> Self {
        Circuit::Closed { failures: 0 }
    }
}

/// What a circuit did when a result was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitMove {
    /// Nothing visible changed.
    None,
    /// It opened at that time.
    Opened,
    /// It closed.
    Closed,
}

impl Circuit {
    /// Applies the transitions that time alone makes: an open circuit past its timeout is
    /// half-open; a probe that has not reported within the timeout counts as failed, which
    /// opens the circuit again from the moment it was due (SPEC §5.6: never stuck).
    pub fn settle(&mut self, now: u64, timeout: u64) {
        for _ in 0..2 {
            match *self {
                Circuit::Open { since_ms } if now >= since_ms.saturating_add(timeout) => {
                    *self = Circuit::HalfOpen { probe: None };
                }
                Circuit::HalfOpen { probe: Some(p) }
                    if now >= p.started_ms.saturating_add(timeout) =>
                {
                    *self = Circuit::Open {
                        since_ms: p.started_ms.saturating_add(timeout),
                    };
                }
                _ => return,
            }
        }
    }

    /// Whether a request may attempt the backend now; if not, why and until when.
    pub fn eligibility(&mut self, now: u64, timeout: u64) -> Result<(), (SkipReason, u64)> {
        self.settle(now, timeout);
        match *self {
            Circuit::Closed { .. } | Circuit::HalfOpen { probe: None } => Ok(()),
            Circuit::Open { since_ms } => {
                Err((SkipReason::CircuitOpen, since_ms.saturating_add(timeout)))
            }
            Circuit::HalfOpen { probe: Some(p) } => Err((
                SkipReason::ProbeInFlight,
                p.started_ms.saturating_add(timeout),
            )),
        }
    }

    /// A request moves to the backend: if half-open, it becomes the probe (returns true).
    pub fn take_probe(&mut self, request: RequestId, now: u64) -> bool {
        if matches!(self, Circuit::HalfOpen { probe: None }) {
            *self = Circuit::HalfOpen {
                probe: Some(Probe {
                    request,
                    started_ms: now,
                }),
            };
            return true;
        }
        false
    }

    /// Records the result of a request on this backend (the class of its last outcome there,
    /// SPEC §5.11).
    /// `at` is the end of the request's last attempt on the backend: the circuit's time-based
    /// moves up to then are applied first, and an opened circuit is open from then.
    pub fn record(
        &mut self,
        class: Class,
        request: RequestId,
        at: u64,
        threshold: u32,
        timeout: u64,
    ) -> CircuitMove {
        self.settle(at, timeout);
        let now = at;
        if !class.is_breaker_failure() {
            let was_closed = matches!(self, Circuit::Closed { .. });
            *self = Circuit::Closed { failures: 0 };
            return if was_closed {
                CircuitMove::None
            } else {
                CircuitMove::Closed
            };
        }
        match *self {
            Circuit::Closed { failures } => {
                let failures = failures.saturating_add(1);
                if failures >= threshold {
                    *self = Circuit::Open { since_ms: now };
                    CircuitMove::Opened
                } else {
                    *self = Circuit::Closed { failures };
                    CircuitMove::None
                }
            }
            Circuit::HalfOpen { probe: None } => {
                *self = Circuit::Open { since_ms: now };
                CircuitMove::Opened
            }
            Circuit::HalfOpen { probe: Some(p) } if p.request == request => {
                *self = Circuit::Open { since_ms: now };
                CircuitMove::Opened
            }
            Circuit::HalfOpen { .. } | Circuit::Open { .. } => CircuitMove::None,
        }
    }

    /// Gives back a probe the request holds without a result (a cancelled request). Time
    /// first: a probe overdue at `now` has already counted as failed (SPEC §5.6).
    pub fn release(&mut self, request: RequestId, now: u64, timeout: u64) {
        self.settle(now, timeout);
        if let Circuit::HalfOpen { probe: Some(p) } = *self
            && p.request == request
        {
            *self = Circuit::HalfOpen { probe: None };
        }
    }

    /// `closed`, `open` or `half_open`, as seen at `now`.
    pub fn view(&self, now: u64, timeout: u64) -> &'static str {
        let mut c = *self;
        c.settle(now, timeout);
        match c {
            Circuit::Closed { .. } => "closed",
            Circuit::Open { .. } => "open",
            Circuit::HalfOpen { .. } => "half_open",
        }
    }
}

/// Shared state of one load balancer (`lb/<name>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbState {
    /// The round-robin cursor: requests started so far (the next starts at `cursor % n`).
    pub cursor: u64,
    /// Statistics.
    pub stats: LbStats,
}

/// Shared state of one backend (`backend/<profile>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendState {
    /// provider + model + base URL when this state was written.
    pub fingerprint: String,
    /// The circuit.
    pub circuit: Circuit,
    /// `(end of a success, tokens)` within the trailing minute, in time order (kept so on
    /// load too), one entry per millisecond: adding, expiring and cutting back touch only the
    /// ends, so a step costs the same however busy the minute was.
    #[serde(deserialize_with = "time_ordered")]
    pub tpm: VecDeque<(u64, u64)>,
    /// Statistics.
    pub stats: BackendStats,
}

impl BackendState {
    /// Tokens counted at `now` (SPEC §5.11: stamped at the end of the success, counted while
    /// `now − t < 60 000`).
    pub fn tpm_at(&self, now: u64) -> u64 {
        self.tpm_live(now).map(|(_, n)| n).sum()
    }

    /// The entries that count at `now`, oldest first.
    fn tpm_live(&self, now: u64) -> impl Iterator<Item = &(u64, u64)> {
        self.tpm
            .iter()
            .filter(move |(t, _)| now.saturating_sub(*t) < TPM_WINDOW_MS)
    }

    /// When the trailing sum falls below `threshold` again, if it is not below now.
    pub fn tpm_clear_at(&self, now: u64, threshold: u64) -> Option<u64> {
        let mut sum = self.tpm_at(now);
        if sum < threshold {
            return None;
        }
        for (t, n) in self.tpm_live(now) {
            sum -= n;
            if sum < threshold {
                return Some(t + TPM_WINDOW_MS);
            }
        }
        Some(now)
    }

    /// Adds a success's tokens and forgets entries that can no longer count. Successes that
    /// end in the same millisecond share one entry (they count and expire together), which
    /// keeps the window small under a busy `serve`. A success stamped before the newest entry
    /// (threads of one process report out of order) goes in its place.
    pub fn tpm_add(&mut self, now: u64, tokens: u64) {
        while self
            .tpm
            .front()
            .is_some_and(|(t, _)| now.saturating_sub(*t) >= TPM_WINDOW_MS)
        {
            self.tpm.pop_front();
        }
        let at = self.tpm.iter().rposition(|(t, _)| *t <= now);
        match at.and_then(|i| self.tpm.get_mut(i)) {
            Some((t, n)) if *t == now => *n = n.saturating_add(tokens),
            _ => self.tpm.insert(at.map_or(0, |i| i + 1), (now, tokens)),
        }
    }

    /// Cuts back entries stamped after `now` (a clock that jumped back, SPEC §5.9) to `now`;
    /// they stay in time order.
    pub fn tpm_cut_back(&mut self, now: u64) {
        for (t, _) in self.tpm.iter_mut().rev() {
            if *t <= now {
                break;
            }
            *t = now;
        }
    }
}

/// A TPM window as stored, put in time order (a file written by hand, or by an older llxprt).
fn time_ordered<'de, D: serde::Deserializer<'de>>(d: D) -> Result<VecDeque<(u64, u64)>, D::Error> {
    let mut v = Vec::<(u64, u64)>::deserialize(d)?;
    v.sort_by_key(|(t, _)| *t);
    Ok(v.into())
}

/// Shared state of one bucket (`bucket/<provider>/<bucket>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketState {
    /// Cooling while `now < cooldown_until` (SPEC §5.11).
    pub cooldown_until: Option<u64>,
    /// The rate-limit headers of the last response that carried any, for diagnostics.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ratelimit: BTreeMap<String, String>,
    /// When those headers arrived (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratelimit_at: Option<u64>,
    /// Statistics.
    pub stats: BucketStats,
}

impl BucketState {
    /// Whether it is cooling at `now`.
    pub fn cooling(&self, now: u64) -> bool {
        self.cooldown_until.is_some_and(|u| now < u)
    }
}

/// Everything shared across requests and processes (persisted, SPEC §5.9).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedState {
    /// `lb/<name>`.
    pub lbs: BTreeMap<String, LbState>,
    /// `backend/<profile>`.
    pub backends: BTreeMap<String, BackendState>,
    /// `bucket/<provider>/<bucket>`.
    pub buckets: BTreeMap<String, BucketState>,
}

/// One attempt, as remembered for the aggregate error and the summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// Backend profile.
    pub backend: String,
    /// Bucket name.
    pub bucket: String,
    /// Class.
    pub class: Class,
    /// HTTP status where the class comes from one.
    pub status: Option<u16>,
    /// Provider message, if any.
    pub message: Option<String>,
    /// Latency (ms).
    pub latency_ms: u64,
}

/// A backend passed over, for the all-skipped and aggregate errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkipRecord {
    /// Backend profile.
    pub backend: String,
    /// Why.
    pub reason: SkipReason,
    /// When it is eligible again (ms).
    pub until_ms: Option<u64>,
}

/// What the engine waits for on a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "for", rename_all = "snake_case")]
pub enum Pending {
    /// An attempt sent at `started_ms`.
    Attempt {
        /// When it was sent (ms).
        started_ms: u64,
    },
    /// A token refresh.
    Refresh,
    /// A wait, after which the same backend and bucket are tried again.
    Timer,
}

/// The request's visit to its current backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Visit {
    /// Backend index in the plan.
    pub backend: usize,
    /// Current bucket index in the backend's chain.
    pub bucket: usize,
    /// Buckets advanced past (by index).
    pub tried: Vec<bool>,
    /// The current bucket had its one extra attempt (a `Retry-After` wait or a refresh).
    pub bucket_retry_used: bool,
    /// `failover_retry_count` retries used on this backend (across its buckets).
    pub retries: u32,
    /// Class of the last outcome on this backend.
    pub last_class: Option<Class>,
    /// When the last attempt on this backend ended (ms): the breaker's moment (SPEC §5.11).
    pub last_end_ms: Option<u64>,
}

/// A stream that broke after output began (`mid_stream`, SPEC §5.8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interruption {
    /// Backend it broke on.
    pub backend: String,
    /// Tokens delivered before it broke.
    pub tokens: u64,
}

/// A request in flight (in memory only, SPEC §5.9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestState {
    /// Where it runs.
    pub plan: Arc<Plan>,
    /// When it started (ms).
    pub started_ms: u64,
    /// Backends not yet visited, in this request's order (indices into the plan).
    pub remaining: Vec<usize>,
    /// The current backend visit.
    pub visit: Option<Visit>,
    /// What the engine waits for.
    pub pending: Option<Pending>,
    /// Every attempt so far.
    pub attempts: Vec<AttemptRecord>,
    /// Backends passed over.
    pub skipped: Vec<SkipRecord>,
    /// Backends with `context-limit` ≤ this are out for this request (SPEC §5.5).
    pub context_floor: Option<u64>,
    /// The first mid-stream interruption, under `mid_stream: continue`.
    pub interruption: Option<Interruption>,
}

/// The whole engine state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineState {
    /// Shared, persisted part.
    pub shared: SharedState,
    /// Requests in flight.
    pub requests: BTreeMap<RequestId, RequestState>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPEC §5.11: tokens count while `now − t < 60 000`; successes of one millisecond share
    /// an entry and expire together.
    #[test]
    fn tpm_window_merges_one_millisecond_and_expires_exactly() {
        let mut b = BackendState::default();
        b.tpm_add(1_000, 10);
        b.tpm_add(1_000, 5);
        b.tpm_add(1_001, 7);
        assert_eq!(b.tpm, [(1_000, 15), (1_001, 7)]);
        assert_eq!(b.tpm_at(60_999), 22);
        assert_eq!(b.tpm_at(61_000), 7);
        assert_eq!(b.tpm_at(61_001), 0);
        assert_eq!(b.tpm_clear_at(2_000, 20), Some(61_000));
        b.tpm_add(61_000, 1);
        assert_eq!(b.tpm, [(1_001, 7), (61_000, 1)]);
    }

    /// A success reported out of order goes in its place (merged with its millisecond), a
    /// clock that jumped back cuts later stamps back to now, and a stored window is put in
    /// order on load.
    #[test]
    fn tpm_window_stays_in_time_order() {
        let mut b = BackendState::default();
        for (t, n) in [(1_000, 1), (1_002, 2), (1_001, 3), (1_001, 4), (999, 5)] {
            b.tpm_add(t, n);
        }
        assert_eq!(b.tpm, [(999, 5), (1_000, 1), (1_001, 7), (1_002, 2)]);
        b.tpm_cut_back(1_000);
        assert_eq!(b.tpm, [(999, 5), (1_000, 1), (1_000, 7), (1_000, 2)]);
        assert_eq!(b.tpm_at(60_999), 10);
        assert_eq!(b.tpm_at(61_000), 0);
        let mut stored = serde_json::to_value(BackendState::default()).expect("plain data");
        stored["tpm"] = serde_json::json!([[5, 1], [3, 2], [4, 3]]);
        let stored: BackendState = serde_json::from_value(stored).expect("a stored backend state");
        assert_eq!(stored.tpm, [(3, 2), (4, 3), (5, 1)]);
    }

    proptest::proptest! {
        /// Time mostly going forward in steps of up to a few seconds, successes now and then
        /// reported a few milliseconds late, and now and then a clock jumping back: the
        /// window counts what a plain list of stamps would (SPEC §5.11: each kept while
        /// `now − t < 60 000`), and stays in time order.
        #[test]
        fn tpm_window_counts_like_a_plain_list(
            ops in proptest::collection::vec(
                (0u64..5_000, 0u64..4, 1u64..100, proptest::bool::weighted(0.05)),
                1..120,
            )
        ) {
            let mut b = BackendState::default();
            let mut all: Vec<(u64, u64)> = Vec::new();
            let mut clock = 100_000u64;
            for (step, late, n, jump) in ops {
                if jump {
                    clock -= step;
                    b.tpm_cut_back(clock);
                    for (t, _) in &mut all {
                        *t = (*t).min(clock);
                    }
                    continue;
                }
                clock += step;
                let now = clock - late;
                b.tpm_add(now, n);
                all.retain(|(t, _)| now.saturating_sub(*t) < TPM_WINDOW_MS);
                all.push((now, n));
                proptest::prop_assert!(b.tpm.iter().zip(b.tpm.iter().skip(1)).all(|(x, y)| x.0 <= y.0));
                for at in [now, now + 1, now + 59_999, now + 60_000] {
                    let want: u64 = all
                        .iter()
                        .filter(|(t, _)| at.saturating_sub(*t) < TPM_WINDOW_MS)
                        .map(|(_, n)| n)
                        .sum();
                    proptest::prop_assert_eq!(b.tpm_at(at), want, "at {}", at);
                }
            }
        }
    }
}
