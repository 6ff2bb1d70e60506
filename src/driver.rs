//! The one loop that drives the engine (STYLE: "one engine, two drivers"): feed an event, carry
//! out the returned orders through an [`Executor`], feed back what happened. `simulate` plugs
//! in a scripted executor in virtual time; the HTTP shell plugs in the network.
//!
//! Owns: the loop. Must not: decide anything (SPEC §5.1); every decision is the engine's.

use std::sync::Arc;

use crate::engine::{Action, EngineState, Event, FailKind, Outcome, Plan, RequestId};

/// Performs the engine's orders.
pub trait Executor {
    /// Performs an attempt that starts at `now`; returns when it ended and what it produced.
    fn send(
        &mut self,
        now: u64,
        request: RequestId,
        backend: &str,
        bucket: &str,
        prefill: bool,
    ) -> (u64, Outcome);
    /// Refreshes a bucket's token starting at `now`; returns when it ended and whether it
    /// worked.
    fn refresh(&mut self, now: u64, request: RequestId, backend: &str, bucket: &str)
    -> (u64, bool);
    /// Waits from `now` until `until`; returns the time it woke, or `None` if the request was
    /// cancelled meanwhile.
    fn wait_until(&mut self, now: u64, until: u64) -> Option<u64>;
    /// Sees the actions of one engine step, with the step's time.
    fn observe(&mut self, now: u64, request: RequestId, actions: &[Action]);
    /// Whether the user cancelled the request (Ctrl-C). Checked after every attempt and
    /// refresh: a cancelled attempt's outcome is not fed to the engine (it would count as a
    /// failure and fail over); the request ends with `RequestCancelled` instead (SPEC §5.1).
    fn cancelled(&self) -> bool {
        false
    }
}

impl<E: Executor + ?Sized> Executor for &mut E {
    fn send(
        &mut self,
        now: u64,
        request: RequestId,
        backend: &str,
        bucket: &str,
        prefill: bool,
    ) -> (u64, Outcome) {
        (**self).send(now, request, backend, bucket, prefill)
    }
    fn refresh(
        &mut self,
        now: u64,
        request: RequestId,
        backend: &str,
        bucket: &str,
    ) -> (u64, bool) {
        (**self).refresh(now, request, backend, bucket)
    }
    fn wait_until(&mut self, now: u64, until: u64) -> Option<u64> {
        (**self).wait_until(now, until)
    }
    fn observe(&mut self, now: u64, request: RequestId, actions: &[Action]) {
        (**self).observe(now, request, actions);
    }
    fn cancelled(&self) -> bool {
        (**self).cancelled()
    }
}

/// Where the engine state lives: in memory, or behind the state file's lock (SPEC §5.9).
pub trait StateStore {
    /// Runs one engine step.
    fn step(&mut self, event: &Event) -> Vec<Action>;
}

impl StateStore for EngineState {
    fn step(&mut self, event: &Event) -> Vec<Action> {
        EngineState::step(self, event)
    }
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Delivered by this backend and bucket.
    Delivered {
        /// Backend profile.
        backend: String,
        /// Bucket.
        bucket: String,
        /// Tokens used.
        tokens: u64,
        /// When (ms).
        at: u64,
    },
    /// Failed with the aggregate error.
    Failed {
        /// How.
        kind: FailKind,
        /// The message.
        error: String,
        /// When (ms).
        at: u64,
    },
    /// Cancelled by the user.
    Cancelled {
        /// When (ms).
        at: u64,
    },
}

/// Runs one request to its end.
pub fn drive(
    store: &mut dyn StateStore,
    exec: &mut dyn Executor,
    request: RequestId,
    plan: Arc<Plan>,
    now: u64,
) -> Ending {
    let mut event = Event::RequestArrived { now, request, plan };
    loop {
        let now = event.now();
        let actions = store.step(&event);
        let mut next = None;
        exec.observe(now, request, &actions);
        for a in &actions {
            match a {
                Action::Deliver {
                    backend,
                    bucket,
                    tokens,
                } => {
                    return Ending::Delivered {
                        backend: backend.clone(),
                        bucket: bucket.clone(),
                        tokens: *tokens,
                        at: now,
                    };
                }
                Action::Fail { kind, error } => {
                    return Ending::Failed {
                        kind: *kind,
                        error: error.clone(),
                        at: now,
                    };
                }
                Action::Send { .. } | Action::RefreshToken { .. } | Action::WaitUntil { .. } => {
                    next = Some(a);
                }
                _ => {}
            }
        }
        event = match next {
            Some(Action::Send {
                backend,
                bucket,
                prefill,
                ..
            }) => {
                let (end, outcome) = exec.send(now, request, backend, bucket, *prefill);
                if exec.cancelled() {
                    return cancel(store, request, end.max(now));
                }
                Event::AttemptFinished {
                    now: end.max(now),
                    request,
                    outcome,
                }
            }
            Some(Action::RefreshToken { backend, bucket }) => {
                let (end, ok) = exec.refresh(now, request, backend, bucket);
                if exec.cancelled() {
                    return cancel(store, request, end.max(now));
                }
                Event::RefreshFinished {
                    now: end.max(now),
                    request,
                    ok,
                }
            }
            Some(Action::WaitUntil { until_ms }) => {
                if let Some(t) = exec.wait_until(now, *until_ms) {
                    Event::TimerFired {
                        now: t.max(now),
                        request,
                    }
                } else {
                    return cancel(store, request, now);
                }
            }
            _ => {
                // The engine always ends a step with an order or an ending (its contract);
                // were it not to, failing the request is the only safe move.
                return Ending::Failed {
                    kind: FailKind::Exhausted,
                    error: "internal error: the engine gave no next step".into(),
                    at: now,
                };
            }
        };
    }
}

/// Ends a request the user cancelled: the engine releases what it held (SPEC §5.1).
fn cancel(store: &mut dyn StateStore, request: RequestId, now: u64) -> Ending {
    store.step(&Event::RequestCancelled { now, request });
    Ending::Cancelled { at: now }
}
