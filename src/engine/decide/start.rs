//! Where a request starts and which backend it visits next (SPEC §5.2, §5.11 "when things are
//! judged"): the backend order of the policy, fingerprints and clock-jump cut-backs when a
//! request loads the shared state (§5.9), and the skips — context limit, prefill, circuit,
//! TPM — judged at the moment the request moves on. Cooling backends go last (§5.3).

use std::collections::VecDeque;
use std::sync::Arc;

use super::Ctx;
use crate::engine::circuit::{Circuit, Probe};
use crate::engine::plan::{Plan, Policy};
use crate::engine::state::{BackendState, RequestState, SharedState, SkipRecord, Visit, slot};
use crate::engine::stats::Route;
use crate::engine::step::{Headline, Note, Order, SkipReason, Then};

/// The longest cooldown kept on load when `bucket_cooldown_ms` is shorter (SPEC §5.9): usage
/// windows of subscription accounts run up to a week; 8 days leaves room for their resets.
pub const MAX_COOLDOWN_MS: u64 = 8 * 24 * 60 * 60 * 1000;

/// A new request: reconcile fingerprints, cut back clock jumps, count it, fix its backend
/// order (SPEC §5.2).
pub(super) fn arrive(shared: &mut SharedState, now: u64, plan: &Arc<Plan>) -> RequestState {
    for b in &plan.backends {
        match shared.backends.get_mut(&b.name) {
            Some(st) if st.fingerprint == b.fingerprint => {}
            Some(st) => {
                *st = BackendState {
                    fingerprint: b.fingerprint.clone(),
                    ..BackendState::default()
                }
            }
            None => {
                shared.backends.insert(
                    b.name.clone(),
                    BackendState {
                        fingerprint: b.fingerprint.clone(),
                        ..BackendState::default()
                    },
                );
            }
        }
    }
    cut_back(shared, now, plan);
    let lb = slot(&mut shared.lbs, &plan.lb);
    lb.stats.requests += 1;
    lb.stats.last_routes.clear();
    let n = plan.backends.len();
    let remaining: VecDeque<usize> = match plan.policy {
        Policy::Failover => (0..n).collect(),
        Policy::Roundrobin if n > 0 => {
            // SPEC §5.11: the cursor advances by exactly one per request, whatever happens.
            let start = (lb.cursor % n as u64) as usize;
            lb.cursor += 1;
            (0..n).map(|i| (start + i) % n).collect()
        }
        Policy::Roundrobin => VecDeque::new(),
    };
    RequestState {
        plan: plan.clone(),
        started_ms: now,
        remaining,
        visit: None,
        pending: None,
        attempts: Vec::new(),
        skipped: Vec::new(),
        context_floor: None,
        interruption: None,
    }
}

/// SPEC §5.9: state reaching further ahead than its setting allows (a clock jump, or a file
/// written by a machine whose clock ran ahead) is cut back when a request loads it. Open
/// circuits and probes never start in the future, TPM stamps are never later than now, and a
/// cooldown reaches at most the largest of `bucket_cooldown_ms`, the `Retry-After` cap and
/// [`MAX_COOLDOWN_MS`] ahead.
fn cut_back(shared: &mut SharedState, now: u64, plan: &Plan) {
    let s = &plan.settings;
    let limit = now.saturating_add(
        s.bucket_cooldown_ms
            .max(s.retry_after_max_ms)
            .max(MAX_COOLDOWN_MS),
    );
    for b in &plan.backends {
        if let Some(st) = shared.backends.get_mut(&b.name) {
            match &mut st.circuit {
                Circuit::Open { since_ms } if *since_ms > now => *since_ms = now,
                Circuit::HalfOpen {
                    probe: Some(Probe { started_ms, .. }),
                } if *started_ms > now => *started_ms = now,
                _ => {}
            }
            st.tpm.cut_back(now);
            st.tpm_ring.cut_back(now);
        }
        for k in &b.buckets {
            if let Some(u) = shared
                .buckets
                .get_mut(&k.key)
                .and_then(|x| x.cooldown_until.as_mut())
            {
                *u = (*u).min(limit);
            }
        }
    }
}

impl Ctx<'_> {
    /// SPEC §5.11: `max_attempts` is checked before ordering any further attempt (before a
    /// wait or a refresh too): a capped request fails here, when its last attempt has ended.
    pub(super) fn capped(&mut self) -> Option<Order> {
        let max = self
            .plan
            .settings
            .max_attempts
            .filter(|&m| self.req.attempts.len() as u32 >= m)?;
        Some(self.fail(Headline::MaxAttempts(max)))
    }

    /// Moves the request to its next eligible backend and orders its first bucket; fails the
    /// request when none is left (SPEC §5.2, §5.4). `from` is the backend it leaves.
    pub(super) fn move_on(&mut self, from: Option<usize>) -> Order {
        if let Some(stop) = self.capped() {
            return stop;
        }
        let Some(b) = self.choose_backend() else {
            return self.fail_no_backend_left();
        };
        let plan = self.plan.clone();
        let bp = &plan.backends[b];
        if let Some(f) = from {
            self.decided(Then::Failover);
            self.notes.push(Note::Failover { from: f, to: b });
            if let Some(st) = self.shared.backends.get_mut(&plan.backends[f].name) {
                st.stats.failovers += 1;
            }
        }
        let route = match (from, plan.policy) {
            (Some(_), _) => Route::PreviousFailed,
            (None, _) if !self.first_in_order(b) => Route::NextEligible,
            (None, Policy::Failover) => Route::Primary,
            (None, Policy::Roundrobin) => Route::Rotation,
        };
        if let Some(lb) = self.shared.lbs.get_mut(&plan.lb) {
            if lb.stats.last_selected.as_deref() != Some(bp.name.as_str()) {
                lb.stats.last_selected = Some(bp.name.clone());
            }
            lb.stats.last_routes.insert(bp.name.clone(), route);
        }
        let st = self
            .shared
            .backends
            .get_mut(&bp.name)
            .expect("arrive() creates every backend's state");
        st.stats.requests += 1;
        if plan.settings.breaker_threshold.is_some() && st.circuit.take_probe(self.id, self.now) {
            self.notes.push(Note::CircuitHalfOpen { backend: b });
        }
        let mut visit = Visit {
            backend: b,
            bucket: 0,
            tried: vec![false; bp.buckets.len()],
            bucket_retry_used: false,
            retries: 0,
            last_class: None,
            last_end_ms: None,
        };
        visit.bucket = self
            .next_bucket(&visit)
            .expect("a fresh visit has an untried bucket");
        self.req.visit = Some(visit);
        self.send()
    }

    /// The next backend in the request's order, judged now (SPEC §5.11): backends below the
    /// context floor, that take no prefill the request needs, whose circuit is open or that
    /// are over their TPM threshold are passed over for this request; backends whose buckets
    /// are all cooling go after the ready ones, earliest end first (SPEC §5.3).
    fn choose_backend(&mut self) -> Option<usize> {
        let plan = self.plan.clone();
        let s = &plan.settings;
        let mut cooling: Option<(u64, usize)> = None;
        let mut i = 0;
        while i < self.req.remaining.len() {
            let b = self.req.remaining[i];
            let bp = &plan.backends[b];
            let mut skip: Option<(SkipReason, Option<u64>)> = None;
            if self.below_context_floor(b) {
                skip = Some((SkipReason::ContextLimit, None));
            } else if self.continues() && !bp.accepts_prefill {
                skip = Some((SkipReason::NoPrefill, None));
            }
            let st = self
                .shared
                .backends
                .get_mut(&bp.name)
                .expect("arrive() creates every backend's state");
            if skip.is_none()
                && s.breaker_threshold.is_some()
                && let Err((reason, until)) = st.circuit.eligibility(self.now, s.breaker_timeout_ms)
            {
                st.stats.skipped_circuit += 1;
                skip = Some((reason, Some(until)));
            }
            if skip.is_none()
                && let Some(threshold) = s.tpm_threshold
                && st.tpm_at(self.now) >= threshold
            {
                st.stats.skipped_tpm += 1;
                skip = Some((SkipReason::Tpm, st.tpm_clear_at(self.now, threshold)));
            }
            if let Some((reason, until_ms)) = skip {
                self.skip(b, reason, until_ms);
                self.req.remaining.remove(i);
                continue;
            }
            let now = self.now;
            let earliest_end = bp
                .buckets
                .iter()
                .map(|k| {
                    self.shared
                        .buckets
                        .get(&k.key)
                        .and_then(|x| x.cooldown_until.filter(|&u| now < u))
                })
                .try_fold(u64::MAX, |acc, c| c.map(|u| acc.min(u)));
            if let Some(end) = earliest_end {
                // Every bucket is cooling: after the ready backends (SPEC §5.3).
                if cooling.is_none_or(|(e, _)| end < e) {
                    cooling = Some((end, i));
                }
                self.route(b, Route::Cooling);
                i += 1;
            } else {
                self.req.remaining.remove(i);
                return Some(b);
            }
        }
        cooling.and_then(|(_, pos)| self.req.remaining.remove(pos))
    }

    /// Whether `b` is where the request's order began: the primary (`failover`) or the
    /// cursor's backend (`roundrobin`, whose cursor `arrive` already advanced).
    fn first_in_order(&self, b: usize) -> bool {
        match self.plan.policy {
            Policy::Failover => b == 0,
            Policy::Roundrobin => {
                let n = self.plan.backends.len() as u64;
                let cursor = self.shared.lbs.get(&self.plan.lb).map_or(0, |l| l.cursor);
                n > 0 && (cursor + n - 1) % n == b as u64
            }
        }
    }

    /// Remembers what this request did with backend `b` for `stats lb` (SPEC §8.1).
    fn route(&mut self, b: usize, route: Route) {
        let name = self.plan.backends[b].name.clone();
        if let Some(lb) = self.shared.lbs.get_mut(&self.plan.lb) {
            lb.stats.last_routes.insert(name, route);
        }
    }

    /// Notes and remembers a backend passed over for this request.
    pub(super) fn skip(&mut self, backend: usize, reason: SkipReason, until_ms: Option<u64>) {
        self.route(backend, reason.into());
        self.notes.push(Note::Skipped {
            backend,
            reason,
            until_ms,
        });
        self.req.skipped.push(SkipRecord {
            backend,
            bucket: None,
            reason,
            until_ms,
            why: None,
        });
    }
}
