//! `decide`: the engine's one transition function (SPEC §5). Pure: the only inputs are the
//! state and the event; the only outputs the new state and the [`Step`].
//!
//! One step runs in a [`Ctx`]: the shared state, the request's own state, its plan, the
//! event's time, and the notes made so far. The decision is split by SPEC section, one file
//! each: where a request starts and which backend is next (`start`, §5.2), the bucket chain
//! (`buckets`, §5.3), retries and failover (`failover`, §5.4 and the breaker's bookkeeping,
//! §5.6), context length (`context`, §5.5), streaming and prefills (`prefill`, §5.8), and how a
//! request ends (`ending`). The circuit and the TPM window are types of their own
//! (`super::circuit`, `super::tpm`). Each decision returns the step's one next [`Order`];
//! [`Ctx::finish`] records what the request now waits for.

mod attempt;
mod buckets;
mod context;
mod ending;
mod failover;
mod prefill;
mod start;

use std::sync::Arc;

use super::event::{Event, RequestId};
use super::plan::Plan;
use super::state::{EngineState, Pending, RequestState, SharedState};
use super::step::{FailKind, Failure, Headline, Note, Order, Step, Then};

pub use start::MAX_COOLDOWN_MS;

/// Decides one event: returns the new state and the step (notes, and the next order).
pub fn decide(mut state: EngineState, event: &Event) -> (EngineState, Step) {
    let step = state.step(event);
    (state, step)
}

/// One step of one request.
struct Ctx<'a> {
    shared: &'a mut SharedState,
    req: &'a mut RequestState,
    /// The request's plan (the same `Arc` as `req.plan`, held apart so it can be read while
    /// `req` changes).
    plan: Arc<Plan>,
    id: RequestId,
    now: u64,
    notes: Vec<Note>,
    /// What the engine decided first after an attempt ended (for its `AttemptEnded` note).
    then: Option<Then>,
}

impl<'a> Ctx<'a> {
    fn new(
        shared: &'a mut SharedState,
        req: &'a mut RequestState,
        id: RequestId,
        now: u64,
    ) -> Self {
        Ctx {
            plan: req.plan.clone(),
            shared,
            req,
            id,
            now,
            notes: Vec::new(),
            then: None,
        }
    }

    /// Records the first decision after an attempt; later ones do not override it.
    fn decided(&mut self, then: Then) {
        self.then.get_or_insert(then);
    }

    /// Ends the step with its order: what the request now waits for follows from the order.
    fn finish(self, order: Order) -> Step {
        self.req.pending = match order {
            Order::Send { .. } => Some(Pending::Attempt {
                started_ms: self.now,
            }),
            Order::Refresh { .. } => Some(Pending::Refresh),
            Order::Wait { .. } => Some(Pending::Timer),
            Order::Deliver { .. } | Order::Fail(_) => None,
        };
        Step {
            notes: self.notes,
            next: Some(order),
        }
    }
}

impl EngineState {
    /// [`decide`] in place.
    pub fn step(&mut self, event: &Event) -> Step {
        let id = event.request();
        let now = event.now();
        match event {
            Event::RequestArrived { plan, .. } => {
                if self.requests.contains_key(&id) {
                    return Step::default(); // a duplicate arrival changes nothing
                }
                if plan.backends.is_empty() || plan.backends.iter().any(|b| b.buckets.is_empty()) {
                    return Step {
                        notes: Vec::new(),
                        next: Some(Order::Fail(Box::new(Failure {
                            kind: FailKind::Exhausted,
                            headline: Headline::EmptyPlan,
                            attempts: Vec::new(),
                            skipped: Vec::new(),
                            interruption: None,
                        }))),
                    };
                }
                let mut req = start::arrive(&mut self.shared, now, plan);
                let step = {
                    let mut cx = Ctx::new(&mut self.shared, &mut req, id, now);
                    let order = cx.move_on(None);
                    cx.finish(order)
                };
                if !step.ends() {
                    self.requests.insert(id, req);
                }
                step
            }
            Event::RequestCancelled { .. } => {
                // SPEC §5.1: neither success nor failure; give back a probe it holds.
                if let Some(req) = self.requests.remove(&id)
                    && let Some(v) = &req.visit
                    && let Some(st) = self
                        .shared
                        .backends
                        .get_mut(&req.plan.backends[v.backend].name)
                {
                    st.circuit
                        .release(id, now, req.plan.settings.breaker_timeout_ms);
                }
                Step::default()
            }
            Event::AttemptFinished { .. }
            | Event::NoCredential { .. }
            | Event::RefreshFinished { .. }
            | Event::TimerFired { .. } => {
                let EngineState { shared, requests } = self;
                let Some(req) = requests.get_mut(&id) else {
                    return Step::default();
                };
                let order = {
                    let mut cx = Ctx::new(shared, req, id, now);
                    let order = match (event, cx.req.pending) {
                        (
                            Event::AttemptFinished { outcome, .. },
                            Some(Pending::Attempt { started_ms }),
                        ) => cx.finished(started_ms, outcome),
                        (Event::NoCredential { why, .. }, Some(Pending::Attempt { .. })) => {
                            cx.no_credential(why)
                        }
                        (Event::RefreshFinished { ok, .. }, Some(Pending::Refresh)) => {
                            cx.refreshed(*ok)
                        }
                        (Event::TimerFired { .. }, Some(Pending::Timer)) => cx.send(),
                        _ => return Step::default(), // not what the request waits for: ignored
                    };
                    cx.finish(order)
                };
                if order.ends() {
                    requests.remove(&id);
                }
                order
            }
        }
    }
}
