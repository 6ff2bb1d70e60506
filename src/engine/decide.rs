//! `decide`: the engine's one transition function (SPEC §5). Pure: the only inputs are the
//! state and the event; the only outputs the new state and the actions.

use std::fmt::Write as _;

use super::action::{Action, FailKind, SkipReason, Then};
use super::event::{Event, RequestId};
use super::outcome::{Class, Outcome};
use super::plan::{MidStream, Plan, Policy};
use super::state::{
    AttemptRecord, BackendState, CircuitMove, EngineState, Interruption, Pending, RequestState,
    SkipRecord, Visit,
};

/// Whether a request is still in flight after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Done,
}

/// The first line of a failed request's error.
enum Headline {
    Exhausted,
    MaxAttempts(u32),
    Refused,
    NoLargerContext,
    Interrupted,
}

/// The longest cooldown kept on load when `bucket_cooldown_ms` is shorter: a `Retry-After`
/// may legitimately ask for hours (a daily quota), never for more than a day.
pub const MAX_COOLDOWN_MS: u64 = 24 * 60 * 60 * 1000;

/// Decides one event: returns the new state and the actions to carry out, in order.
pub fn decide(mut state: EngineState, event: &Event) -> (EngineState, Vec<Action>) {
    let actions = state.step(event);
    (state, actions)
}

fn secs(ms: u64) -> String {
    format!("{}.{:03}s", ms / 1000, ms % 1000)
}

impl EngineState {
    /// [`decide`] in place.
    pub fn step(&mut self, event: &Event) -> Vec<Action> {
        let mut out = Vec::new();
        let id = event.request();
        match event {
            Event::RequestArrived { now, plan, .. } => {
                if self.requests.contains_key(&id) {
                    return out; // a duplicate arrival changes nothing
                }
                if plan.backends.is_empty() || plan.backends.iter().any(|b| b.buckets.is_empty()) {
                    out.push(Action::Fail {
                        kind: FailKind::Exhausted,
                        error: "the profile has a backend without buckets, or no backend".into(),
                    });
                    return out;
                }
                let mut req = self.arrive(*now, plan);
                if self.move_on(&mut req, id, *now, None, &mut out) == Flow::Continue {
                    self.requests.insert(id, req);
                }
            }
            Event::AttemptFinished { now, outcome, .. } => {
                let Some(mut req) = self.requests.remove(&id) else {
                    return out;
                };
                let Some(Pending::Attempt { started_ms }) = req.pending else {
                    self.requests.insert(id, req); // not waiting for an attempt: ignore
                    return out;
                };
                req.pending = None;
                if self.finished(&mut req, id, *now, started_ms, outcome, &mut out)
                    == Flow::Continue
                {
                    self.requests.insert(id, req);
                }
            }
            Event::RefreshFinished { now, ok, .. } => {
                let Some(mut req) = self.requests.remove(&id) else {
                    return out;
                };
                if req.pending != Some(Pending::Refresh) {
                    self.requests.insert(id, req);
                    return out;
                }
                req.pending = None;
                let (backend, bucket) = names(&req);
                out.push(Action::Refreshed {
                    backend,
                    bucket,
                    ok: *ok,
                });
                let flow = if *ok {
                    self.send(&mut req, id, *now, &mut out)
                } else {
                    let mut o = Outcome::of(Class::Auth);
                    o.status = Some(401);
                    self.advance_bucket(&mut req, id, *now, &o, &mut out)
                };
                if flow == Flow::Continue {
                    self.requests.insert(id, req);
                }
            }
            Event::TimerFired { now, .. } => {
                let Some(mut req) = self.requests.remove(&id) else {
                    return out;
                };
                if req.pending != Some(Pending::Timer) {
                    self.requests.insert(id, req);
                    return out;
                }
                req.pending = None;
                if self.send(&mut req, id, *now, &mut out) == Flow::Continue {
                    self.requests.insert(id, req);
                }
            }
            Event::RequestCancelled { now, .. } => {
                // SPEC §5.1: neither success nor failure; give back a probe it holds.
                if let Some(req) = self.requests.remove(&id)
                    && let Some(v) = &req.visit
                    && let Some(st) = self
                        .shared
                        .backends
                        .get_mut(&req.plan.backends[v.backend].name)
                {
                    st.circuit
                        .release(id, *now, req.plan.settings.breaker_timeout_ms);
                }
            }
        }
        out
    }

    /// A new request: reconcile fingerprints, count it, fix its backend order (SPEC §5.2).
    fn arrive(&mut self, now: u64, plan: &std::sync::Arc<Plan>) -> RequestState {
        for b in &plan.backends {
            match self.shared.backends.get_mut(&b.name) {
                Some(st) if st.fingerprint == b.fingerprint => {}
                Some(st) => {
                    *st = BackendState {
                        fingerprint: b.fingerprint.clone(),
                        ..BackendState::default()
                    }
                }
                None => {
                    self.shared.backends.insert(
                        b.name.clone(),
                        BackendState {
                            fingerprint: b.fingerprint.clone(),
                            ..BackendState::default()
                        },
                    );
                }
            }
        }
        self.cut_back(now, plan);
        let lb = self.shared.lbs.entry(plan.lb.clone()).or_default();
        lb.stats.requests += 1;
        let n = plan.backends.len();
        let remaining = match plan.policy {
            Policy::Failover => (0..n).collect(),
            Policy::Roundrobin => {
                // SPEC §5.11: the cursor advances by exactly one per request, whatever happens.
                let start = (lb.cursor % n as u64) as usize;
                lb.cursor += 1;
                (0..n).map(|i| (start + i) % n).collect()
            }
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

    /// SPEC §5.9: state reaching further ahead than its setting allows (a clock jump, or a
    /// file written by a machine whose clock ran ahead) is cut back when a request loads it.
    /// Open circuits and probes never start in the future, TPM stamps are never later than
    /// now, and a cooldown reaches at most `max(bucket_cooldown_ms, MAX_COOLDOWN_MS)` ahead.
    fn cut_back(&mut self, now: u64, plan: &Plan) {
        use super::state::{Circuit, Probe};
        for b in &plan.backends {
            if let Some(st) = self.shared.backends.get_mut(&b.name) {
                match &mut st.circuit {
                    Circuit::Open { since_ms } if *since_ms > now => *since_ms = now,
                    Circuit::HalfOpen {
                        probe: Some(Probe { started_ms, .. }),
                    } if *started_ms > now => *started_ms = now,
                    _ => {}
                }
                st.tpm_cut_back(now);
            }
            let limit = now.saturating_add(plan.settings.bucket_cooldown_ms.max(MAX_COOLDOWN_MS));
            for k in &b.buckets {
                if let Some(u) = self
                    .shared
                    .buckets
                    .get_mut(&k.key)
                    .and_then(|x| x.cooldown_until.as_mut())
                {
                    *u = (*u).min(limit);
                }
            }
        }
    }

    /// SPEC §5.11: `max_attempts` is checked before ordering any further attempt (before a
    /// wait or a refresh too): a capped request fails here, when its last attempt has ended.
    fn stop_if_capped(
        &mut self,
        req: &mut RequestState,
        id: RequestId,
        now: u64,
        out: &mut Vec<Action>,
    ) -> Option<Flow> {
        let max = req
            .plan
            .settings
            .max_attempts
            .filter(|&m| req.attempts.len() as u32 >= m)?;
        Some(self.fail(
            req,
            id,
            now,
            FailKind::Exhausted,
            &Headline::MaxAttempts(max),
            out,
        ))
    }

    /// Moves the request to its next eligible backend and sends to its first bucket; fails
    /// the request when none is left (SPEC §5.2, §5.4).
    fn move_on(
        &mut self,
        req: &mut RequestState,
        id: RequestId,
        now: u64,
        from: Option<usize>,
        out: &mut Vec<Action>,
    ) -> Flow {
        if let Some(stop) = self.stop_if_capped(req, id, now, out) {
            return stop;
        }
        let Some(b) = self.choose_backend(req, now, out) else {
            if req.attempts.is_empty() {
                return self.fail_all_skipped(req, now, out);
            }
            let headline = if req.context_floor.is_some()
                && req
                    .attempts
                    .last()
                    .is_some_and(|a| a.class == Class::ContextLength)
            {
                Headline::NoLargerContext
            } else {
                Headline::Exhausted
            };
            return self.fail(req, id, now, FailKind::Exhausted, &headline, out);
        };
        let plan = req.plan.clone();
        let bp = &plan.backends[b];
        if let Some(f) = from {
            let from_name = &plan.backends[f].name;
            out.push(Action::Failover {
                from: from_name.clone(),
                to: bp.name.clone(),
            });
            if let Some(st) = self.shared.backends.get_mut(from_name) {
                st.stats.failovers += 1;
            }
        }
        if let Some(lb) = self.shared.lbs.get_mut(&plan.lb) {
            lb.stats.last_selected = Some(bp.name.clone());
        }
        let st = self
            .shared
            .backends
            .get_mut(&bp.name)
            .expect("arrive() creates every backend's state");
        st.stats.requests += 1;
        if plan.settings.breaker_threshold.is_some() && st.circuit.take_probe(id, now) {
            out.push(Action::CircuitHalfOpen {
                backend: bp.name.clone(),
            });
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
            .next_bucket(&plan, &visit, now)
            .expect("a fresh visit has an untried bucket");
        req.visit = Some(visit);
        self.send(req, id, now, out)
    }

    /// The next backend in the request's order, judged at `now` (SPEC §5.11): backends whose
    /// circuit is open or that are over their TPM threshold are skipped for this request;
    /// backends whose buckets are all cooling go after the ready ones, earliest end first.
    fn choose_backend(
        &mut self,
        req: &mut RequestState,
        now: u64,
        out: &mut Vec<Action>,
    ) -> Option<usize> {
        let plan = req.plan.clone();
        let s = &plan.settings;
        let mut cooling: Option<(u64, usize)> = None;
        let mut i = 0;
        while i < req.remaining.len() {
            let b = req.remaining[i];
            let bp = &plan.backends[b];
            let mut skip: Option<(SkipReason, Option<u64>)> = None;
            if req
                .context_floor
                .is_some_and(|floor| bp.context_limit <= floor)
            {
                skip = Some((SkipReason::ContextLimit, None));
            }
            let st = self
                .shared
                .backends
                .get_mut(&bp.name)
                .expect("arrive() creates every backend's state");
            if skip.is_none()
                && s.breaker_threshold.is_some()
                && let Err((reason, until)) = st.circuit.eligibility(now, s.breaker_timeout_ms)
            {
                st.stats.skipped_circuit += 1;
                skip = Some((reason, Some(until)));
            }
            if skip.is_none()
                && let Some(threshold) = s.tpm_threshold
                && st.tpm_at(now) >= threshold
            {
                st.stats.skipped_tpm += 1;
                skip = Some((SkipReason::Tpm, st.tpm_clear_at(now, threshold)));
            }
            if let Some((reason, until_ms)) = skip {
                out.push(Action::Skipped {
                    backend: bp.name.clone(),
                    reason,
                    until_ms,
                });
                req.skipped.push(SkipRecord {
                    backend: bp.name.clone(),
                    reason,
                    until_ms,
                });
                req.remaining.remove(i);
                continue;
            }
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
                i += 1;
            } else {
                req.remaining.remove(i);
                return Some(b);
            }
        }
        cooling.map(|(_, pos)| req.remaining.remove(pos))
    }

    /// The next bucket of the visit: the first untried ready one in chain order, else the
    /// untried cooling one whose cooldown ends first (SPEC §5.3, §5.11).
    fn next_bucket(&self, plan: &Plan, visit: &Visit, now: u64) -> Option<usize> {
        let bp = &plan.backends[visit.backend];
        let until = |i: usize| {
            self.shared
                .buckets
                .get(&bp.buckets[i].key)
                .and_then(|b| b.cooldown_until.filter(|&u| now < u))
        };
        let untried = (0..bp.buckets.len()).filter(|&i| !visit.tried[i]);
        untried
            .clone()
            .find(|&i| until(i).is_none())
            .or_else(|| untried.min_by_key(|&i| (until(i), i)))
    }

    /// Orders an attempt on the visit's backend and bucket.
    fn send(
        &mut self,
        req: &mut RequestState,
        id: RequestId,
        now: u64,
        out: &mut Vec<Action>,
    ) -> Flow {
        let v = req
            .visit
            .as_ref()
            .expect("send() is only called during a visit");
        let plan = req.plan.clone();
        let bp = &plan.backends[v.backend];
        let bk = &bp.buckets[v.bucket];
        let prefill = req.interruption.is_some() && plan.settings.mid_stream == MidStream::Continue;
        if prefill && !bp.accepts_prefill {
            // SPEC §5.8: a target that does not accept prefills rejects it without a request.
            return self.fail(
                req,
                id,
                now,
                FailKind::Interrupted,
                &Headline::Interrupted,
                out,
            );
        }
        let st = self.shared.buckets.entry(bk.key.clone()).or_default();
        st.stats.requests += 1;
        st.stats.last_used = Some(now);
        req.pending = Some(Pending::Attempt { started_ms: now });
        out.push(Action::Send {
            backend: bp.name.clone(),
            bucket: bk.name.clone(),
            attempt: req.attempts.len() as u32 + 1,
            prefill,
        });
        Flow::Continue
    }

    /// An attempt ended: record it, decide, and note the decision (SPEC §5.3–§5.5).
    fn finished(
        &mut self,
        req: &mut RequestState,
        id: RequestId,
        now: u64,
        started_ms: u64,
        o: &Outcome,
        out: &mut Vec<Action>,
    ) -> Flow {
        let plan = req.plan.clone();
        let Some(v) = req.visit.as_mut() else {
            return Flow::Continue;
        };
        v.last_class = Some(o.class);
        v.last_end_ms = Some(now);
        let bp = &plan.backends[v.backend];
        let bk = &bp.buckets[v.bucket];
        let status = if o.class.has_status() {
            o.effective_status()
        } else {
            None
        };
        let latency_ms = if o.latency_ms > 0 {
            o.latency_ms
        } else {
            now.saturating_sub(started_ms)
        };
        req.attempts.push(AttemptRecord {
            backend: bp.name.clone(),
            bucket: bk.name.clone(),
            class: o.class,
            status,
            message: o.message.clone(),
            latency_ms,
        });
        if let Some(st) = self.shared.backends.get_mut(&bp.name) {
            st.stats.latency.record(latency_ms);
            if o.class != Class::Success {
                *st.stats
                    .failures
                    .entry(o.class.as_str().to_string())
                    .or_default() += 1;
            }
        }
        let bs = self.shared.buckets.entry(bk.key.clone()).or_default();
        if !o.ratelimit.is_empty() {
            bs.ratelimit.clone_from(&o.ratelimit);
            bs.ratelimit_at = Some(now);
        }
        match o.class {
            Class::RateLimit => bs.stats.rate_limited += 1,
            Class::Quota => bs.stats.quota += 1,
            Class::Auth => bs.stats.auth += 1,
            _ => {}
        }
        let mark = out.len();
        out.push(Action::AttemptEnded {
            backend: bp.name.clone(),
            bucket: bk.name.clone(),
            started_ms,
            class: o.class,
            status,
            latency_ms,
            then: Then::Fail,
        });
        let flow = self.after_attempt(req, id, now, o, out);
        let then = out[mark + 1..]
            .iter()
            .find_map(|a| match a {
                Action::Deliver { .. } => Some(Then::Deliver),
                Action::Fail { .. } => Some(Then::Fail),
                Action::RefreshToken { .. } => Some(Then::Refresh),
                Action::BucketAdvanced { .. } => Some(Then::NextBucket),
                Action::Failover { .. } => Some(Then::Failover),
                Action::Retry { .. } => Some(Then::Retry),
                Action::WaitUntil { .. } => Some(Then::WaitRetry),
                _ => None,
            })
            .unwrap_or(Then::Fail);
        if let Action::AttemptEnded { then: t, .. } = &mut out[mark] {
            *t = then;
        }
        flow
    }

    /// The bucket-level decision (SPEC §5.3); anything else goes to [`Self::backend_level`].
    fn after_attempt(
        &mut self,
        req: &mut RequestState,
        id: RequestId,
        now: u64,
        o: &Outcome,
        out: &mut Vec<Action>,
    ) -> Flow {
        let plan = req.plan.clone();
        let s = &plan.settings;
        let v = req
            .visit
            .as_mut()
            .expect("after_attempt() runs during a visit");
        let bp = &plan.backends[v.backend];
        let bk = &bp.buckets[v.bucket];
        match o.class {
            Class::Success => self.deliver(req, id, now, o, out),
            Class::RateLimit => {
                if let Some(ra) = o.retry_after_ms
                    && s.retry_after_max_ms > 0
                    && ra <= s.retry_after_max_ms
                    && !v.bucket_retry_used
                {
                    if let Some(stop) = self.stop_if_capped(req, id, now, out) {
                        return stop;
                    }
                    let v = req.visit.as_mut().expect("still visiting");
                    v.bucket_retry_used = true;
                    req.pending = Some(Pending::Timer);
                    out.push(Action::WaitUntil {
                        until_ms: now.saturating_add(ra),
                    });
                    return Flow::Continue;
                }
                let until = now.saturating_add(o.retry_after_ms.unwrap_or(s.bucket_cooldown_ms));
                self.cool(&bp.name, bk, now, until, out);
                self.advance_bucket(req, id, now, o, out)
            }
            Class::Quota => {
                let until =
                    now.saturating_add(s.bucket_cooldown_ms.max(o.retry_after_ms.unwrap_or(0)));
                self.cool(&bp.name, bk, now, until, out);
                self.advance_bucket(req, id, now, o, out)
            }
            Class::Auth if bk.oauth && bk.refreshable && !v.bucket_retry_used => {
                if let Some(stop) = self.stop_if_capped(req, id, now, out) {
                    return stop;
                }
                let v = req.visit.as_mut().expect("still visiting");
                v.bucket_retry_used = true;
                self.shared
                    .buckets
                    .entry(bk.key.clone())
                    .or_default()
                    .stats
                    .refreshes += 1;
                req.pending = Some(Pending::Refresh);
                out.push(Action::RefreshToken {
                    backend: bp.name.clone(),
                    bucket: bk.name.clone(),
                });
                Flow::Continue
            }
            Class::Auth | Class::Forbidden => self.advance_bucket(req, id, now, o, out),
            _ => self.backend_level(req, id, now, o, out),
        }
    }

    fn cool(
        &mut self,
        backend: &str,
        bk: &super::plan::BucketPlan,
        now: u64,
        until: u64,
        out: &mut Vec<Action>,
    ) {
        if until <= now {
            return; // bucket_cooldown_ms = 0: no memory (SPEC §3.2)
        }
        let st = self.shared.buckets.entry(bk.key.clone()).or_default();
        let until = st.cooldown_until.filter(|&u| u > until).unwrap_or(until);
        st.cooldown_until = Some(until);
        out.push(Action::Cooldown {
            backend: backend.to_string(),
            bucket: bk.name.clone(),
            until_ms: until,
        });
    }

    /// Advances the bucket chain; when it is exhausted the backend has failed with this
    /// outcome and §5.4 decides (SPEC §5.3).
    fn advance_bucket(
        &mut self,
        req: &mut RequestState,
        id: RequestId,
        now: u64,
        o: &Outcome,
        out: &mut Vec<Action>,
    ) -> Flow {
        let plan = req.plan.clone();
        let v = req
            .visit
            .as_mut()
            .expect("advance_bucket() runs during a visit");
        v.tried[v.bucket] = true;
        let Some(next) = self.next_bucket(&plan, v, now) else {
            return self.backend_level(req, id, now, o, out);
        };
        if let Some(stop) = self.stop_if_capped(req, id, now, out) {
            return stop;
        }
        let v = req.visit.as_mut().expect("still visiting");
        let bp = &plan.backends[v.backend];
        out.push(Action::BucketAdvanced {
            backend: bp.name.clone(),
            from: bp.buckets[v.bucket].name.clone(),
            to: bp.buckets[next].name.clone(),
        });
        v.bucket = next;
        v.bucket_retry_used = false;
        self.send(req, id, now, out)
    }

    /// The backend-level decision (SPEC §4 "triggers failover", §5.4, §5.5, §5.8).
    fn backend_level(
        &mut self,
        req: &mut RequestState,
        id: RequestId,
        now: u64,
        o: &Outcome,
        out: &mut Vec<Action>,
    ) -> Flow {
        let plan = req.plan.clone();
        let s = &plan.settings;
        let v = req
            .visit
            .as_ref()
            .expect("backend_level() runs during a visit");
        let b = v.backend;
        if o.class == Class::Client
            && req.interruption.is_some()
            && s.mid_stream == MidStream::Continue
        {
            // SPEC §5.8: a target that rejects the prefill fails the request with the original
            // interruption as its error, never the rejection.
            return self.fail(
                req,
                id,
                now,
                FailKind::Interrupted,
                &Headline::Interrupted,
                out,
            );
        }
        match o.class {
            Class::Success => self.deliver(req, id, now, o, out),
            Class::ContentFilter => {
                self.fail(req, id, now, FailKind::Refused, &Headline::Refused, out)
            }
            Class::ContextLength => {
                if !s.on_context_length {
                    return self.fail(req, id, now, FailKind::Refused, &Headline::Refused, out);
                }
                let limit = plan.backends[b].context_limit;
                req.context_floor = Some(req.context_floor.map_or(limit, |f| f.max(limit)));
                self.leave(req, id, now, Class::ContextLength, out);
                self.move_on(req, id, now, Some(b), out)
            }
            Class::Interrupted => {
                if s.mid_stream == MidStream::Error || !s.on_network_errors {
                    if req.interruption.is_none() {
                        req.interruption = Some(Interruption {
                            backend: plan.backends[b].name.clone(),
                            tokens: o.delivered_tokens,
                        });
                    }
                    return self.fail(
                        req,
                        id,
                        now,
                        FailKind::Interrupted,
                        &Headline::Interrupted,
                        out,
                    );
                }
                if s.mid_stream == MidStream::Continue && req.interruption.is_none() {
                    req.interruption = Some(Interruption {
                        backend: plan.backends[b].name.clone(),
                        tokens: o.delivered_tokens,
                    });
                }
                self.retry_or_move(req, id, now, o, true, out)
            }
            Class::Network | Class::Timeout => {
                if s.on_network_errors {
                    self.retry_or_move(req, id, now, o, o.class == Class::Network, out)
                } else {
                    self.fail(req, id, now, FailKind::Refused, &Headline::Refused, out)
                }
            }
            Class::Server
            | Class::Client
            | Class::RateLimit
            | Class::Quota
            | Class::Auth
            | Class::Forbidden => {
                let status = o.effective_status().unwrap_or(0);
                if s.status_triggers(status) {
                    self.retry_or_move(req, id, now, o, o.class == Class::Server, out)
                } else {
                    self.fail(req, id, now, FailKind::Refused, &Headline::Refused, out)
                }
            }
        }
    }

    /// Retries the same backend and bucket while retries are left and the failure is
    /// retryable; otherwise moves to the next backend (SPEC §5.4).
    fn retry_or_move(
        &mut self,
        req: &mut RequestState,
        id: RequestId,
        now: u64,
        o: &Outcome,
        retryable: bool,
        out: &mut Vec<Action>,
    ) -> Flow {
        let plan = req.plan.clone();
        let s = &plan.settings;
        let v = req
            .visit
            .as_ref()
            .expect("retry_or_move() runs during a visit");
        let b = v.backend;
        if retryable
            && v.retries < s.retry_count
            && s.mid_stream == MidStream::Continue
            && req.interruption.is_some()
            && !plan.backends[b].accepts_prefill
        {
            // SPEC §5.8: the retry could only be sent with a prefill this target rejects
            // without a request; fail now rather than wait for a retry that cannot happen.
            return self.fail(
                req,
                id,
                now,
                FailKind::Interrupted,
                &Headline::Interrupted,
                out,
            );
        }
        if retryable && v.retries < s.retry_count {
            if let Some(stop) = self.stop_if_capped(req, id, now, out) {
                return stop;
            }
            let v = req.visit.as_mut().expect("still visiting");
            v.retries += 1;
            let name = &plan.backends[b].name;
            if let Some(st) = self.shared.backends.get_mut(name) {
                st.stats.retries += 1;
            }
            let delay_ms = if o.class == Class::Server {
                s.retry_delay_ms
                    .max(o.retry_after_ms.unwrap_or(0).min(s.retry_after_max_ms))
            } else {
                s.retry_delay_ms
            };
            out.push(Action::Retry {
                backend: name.clone(),
                retry: v.retries,
                of: s.retry_count,
                delay_ms,
            });
            if delay_ms > 0 {
                req.pending = Some(Pending::Timer);
                out.push(Action::WaitUntil {
                    until_ms: now.saturating_add(delay_ms),
                });
                return Flow::Continue;
            }
            return self.send(req, id, now, out);
        }
        self.leave(req, id, now, o.class, out);
        self.move_on(req, id, now, Some(b), out)
    }

    /// The request leaves its current backend; the breaker counts the class of the last
    /// outcome it had there (SPEC §5.11).
    fn leave(
        &mut self,
        req: &mut RequestState,
        id: RequestId,
        now: u64,
        class: Class,
        out: &mut Vec<Action>,
    ) {
        let Some(v) = req.visit.take() else { return };
        let s = &req.plan.settings;
        let name = &req.plan.backends[v.backend].name;
        // SPEC §5.11: the circuit moves at the end of the backend's last attempt, not when a
        // later refresh or wait ends.
        let at = v.last_end_ms.unwrap_or(now);
        let Some(st) = self.shared.backends.get_mut(name) else {
            return;
        };
        match s.breaker_threshold {
            Some(threshold) => {
                match st
                    .circuit
                    .record(class, id, at, threshold, s.breaker_timeout_ms)
                {
                    CircuitMove::Opened => out.push(Action::CircuitOpened {
                        backend: name.clone(),
                        until_ms: at.saturating_add(s.breaker_timeout_ms),
                    }),
                    CircuitMove::Closed => out.push(Action::CircuitClosed {
                        backend: name.clone(),
                    }),
                    CircuitMove::None => {}
                }
            }
            None => st.circuit.release(id, now, s.breaker_timeout_ms),
        }
    }

    fn deliver(
        &mut self,
        req: &mut RequestState,
        id: RequestId,
        now: u64,
        o: &Outcome,
        out: &mut Vec<Action>,
    ) -> Flow {
        let plan = req.plan.clone();
        let v = req.visit.as_ref().expect("deliver() runs during a visit");
        let bp = &plan.backends[v.backend];
        let bk = &bp.buckets[v.bucket];
        self.leave(req, id, now, Class::Success, out);
        if let Some(st) = self.shared.backends.get_mut(&bp.name) {
            st.stats.successes += 1;
            st.stats.tokens += o.tokens;
            if o.tokens > 0 {
                st.tpm_add(now, o.tokens);
            }
        }
        self.shared
            .buckets
            .entry(bk.key.clone())
            .or_default()
            .stats
            .successes += 1;
        if let Some(lb) = self.shared.lbs.get_mut(&plan.lb) {
            lb.stats.successes += 1;
        }
        out.push(Action::Deliver {
            backend: bp.name.clone(),
            bucket: bk.name.clone(),
            tokens: o.tokens,
        });
        Flow::Done
    }

    fn fail(
        &mut self,
        req: &mut RequestState,
        id: RequestId,
        now: u64,
        kind: FailKind,
        headline: &Headline,
        out: &mut Vec<Action>,
    ) -> Flow {
        if let Some(v) = &req.visit {
            if let Some(class) = v.last_class {
                self.leave(req, id, now, class, out);
            } else {
                let name = &req.plan.backends[v.backend].name;
                if let Some(st) = self.shared.backends.get_mut(name) {
                    st.circuit
                        .release(id, now, req.plan.settings.breaker_timeout_ms);
                }
                req.visit = None;
            }
        }
        let class = req.attempts.last().map_or("skipped", |a| a.class.as_str());
        if let Some(lb) = self.shared.lbs.get_mut(&req.plan.lb) {
            *lb.stats.failures.entry(class.to_string()).or_default() += 1;
        }
        out.push(Action::Fail {
            kind,
            error: aggregate(req, now, headline),
        });
        Flow::Done
    }

    fn fail_all_skipped(
        &mut self,
        req: &mut RequestState,
        now: u64,
        out: &mut Vec<Action>,
    ) -> Flow {
        if let Some(lb) = self.shared.lbs.get_mut(&req.plan.lb) {
            *lb.stats.failures.entry("skipped".to_string()).or_default() += 1;
        }
        let mut msg = String::from("every backend was skipped:");
        for s in &req.skipped {
            let _ = write!(msg, "\n  {}: {}", s.backend, s.reason.describe());
            if let Some(u) = s.until_ms {
                let _ = write!(msg, ", eligible again in {}", secs(u.saturating_sub(now)));
            }
        }
        out.push(Action::Fail {
            kind: FailKind::AllSkipped,
            error: msg,
        });
        Flow::Done
    }
}

fn names(req: &RequestState) -> (String, String) {
    let v = req
        .visit
        .as_ref()
        .expect("a pending refresh belongs to a visit");
    let bp = &req.plan.backends[v.backend];
    (bp.name.clone(), bp.buckets[v.bucket].name.clone())
}

/// The aggregate error: a headline, then one line per attempt and per skipped backend
/// (SPEC §5.4). Messages are the provider's, already redacted by the shell.
fn aggregate(req: &RequestState, now: u64, headline: &Headline) -> String {
    let last = req.attempts.last();
    let mut msg = match headline {
        Headline::Exhausted => format!(
            "all backends failed ({} attempt{})",
            req.attempts.len(),
            if req.attempts.len() == 1 { "" } else { "s" }
        ),
        Headline::MaxAttempts(n) => format!("max_attempts ({n}) reached"),
        Headline::Refused => match last {
            Some(a) => format!(
                "{}/{} answered {}{}, which does not trigger failover",
                a.backend,
                a.bucket,
                a.class.as_str(),
                a.status.map(|s| format!(" {s}")).unwrap_or_default()
            ),
            None => "the request was refused".to_string(),
        },
        Headline::NoLargerContext => match last {
            Some(a) => format!(
                "the context is too long for {} and no backend with a larger context-limit is left",
                a.backend
            ),
            None => "no backend with a larger context-limit is left".to_string(),
        },
        Headline::Interrupted => match &req.interruption {
            Some(i) => format!(
                "stream interrupted after {} tokens from {}",
                i.tokens, i.backend
            ),
            None => "stream interrupted".to_string(),
        },
    };
    for (n, a) in req.attempts.iter().enumerate() {
        let _ = write!(
            msg,
            "\n  {}. {}/{}: {}",
            n + 1,
            a.backend,
            a.bucket,
            a.class.as_str()
        );
        if let Some(s) = a.status {
            let _ = write!(msg, " {s}");
        }
        if let Some(m) = &a.message {
            let first: String = m.lines().next().unwrap_or("").chars().take(200).collect();
            let _ = write!(msg, ": {first}");
        }
    }
    for s in &req.skipped {
        let _ = write!(msg, "\n  skipped {}: {}", s.backend, s.reason.describe());
        if let Some(u) = s.until_ms {
            let _ = write!(msg, ", eligible again in {}", secs(u.saturating_sub(now)));
        }
    }
    msg
}
