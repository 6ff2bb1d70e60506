//! The one loop that drives the engine (STYLE: "one engine, two drivers"): feed an event, carry
//! out the step's one order through an [`Executor`], feed back what happened. `simulate` plugs
//! in a scripted executor in virtual time; the HTTP shell plugs in the network. Also builds
//! the engine's plans from validated profiles ([`plan`]).
//!
//! Owns: the loop, and plan building. Must not: decide anything (SPEC §5.1); every decision
//! is the engine's.

pub mod plan;

use std::sync::Arc;

use crate::engine::{EngineState, Event, FailKind, Order, Outcome, Plan, RequestId, Step};

/// What became of an ordered attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempted {
    /// It was sent, and this is how it ended.
    Sent(Outcome),
    /// Nothing was sent: the bucket has no usable credential; why, in a line that names no
    /// secret (`no key: ~/.openai_key not found`).
    NoCredential(String),
}

/// Performs the engine's orders. Backends and buckets are indices into `plan`.
pub trait Executor {
    /// Performs an attempt that starts at `now`; returns when it ended and what became of it.
    fn send(
        &mut self,
        now: u64,
        request: RequestId,
        plan: &Plan,
        backend: usize,
        bucket: usize,
        prefill: bool,
    ) -> (u64, Attempted);
    /// Refreshes a bucket's token starting at `now`; returns when it ended and whether it
    /// worked.
    fn refresh(
        &mut self,
        now: u64,
        request: RequestId,
        plan: &Plan,
        backend: usize,
        bucket: usize,
    ) -> (u64, bool);
    /// Waits from `now` until `until`; returns the time it woke, or `None` if the request was
    /// cancelled meanwhile.
    fn wait_until(&mut self, now: u64, until: u64) -> Option<u64>;
    /// Sees one engine step, with the step's time.
    fn observe(&mut self, now: u64, request: RequestId, plan: &Plan, step: &Step);
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
        plan: &Plan,
        backend: usize,
        bucket: usize,
        prefill: bool,
    ) -> (u64, Attempted) {
        (**self).send(now, request, plan, backend, bucket, prefill)
    }
    fn refresh(
        &mut self,
        now: u64,
        request: RequestId,
        plan: &Plan,
        backend: usize,
        bucket: usize,
    ) -> (u64, bool) {
        (**self).refresh(now, request, plan, backend, bucket)
    }
    fn wait_until(&mut self, now: u64, until: u64) -> Option<u64> {
        (**self).wait_until(now, until)
    }
    fn observe(&mut self, now: u64, request: RequestId, plan: &Plan, step: &Step) {
        (**self).observe(now, request, plan, step);
    }
    fn cancelled(&self) -> bool {
        (**self).cancelled()
    }
}

/// Where the engine state lives: in memory, or behind the state file's lock (SPEC §5.9).
pub trait StateStore {
    /// Runs one engine step; an error when the store could not keep the state (the request
    /// fails with it).
    fn step(&mut self, event: &Event) -> Result<Step, StoreFailed>;
}

/// A state store could not read or write the state; the message names it (never a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreFailed(pub String);

impl std::fmt::Display for StoreFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl StateStore for EngineState {
    fn step(&mut self, event: &Event) -> Result<Step, StoreFailed> {
        Ok(EngineState::step(self, event))
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
        /// The message (`crate::narrate::failure`).
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
    plan: &Arc<Plan>,
    now: u64,
) -> Ending {
    let mut event = Event::RequestArrived {
        now,
        request,
        plan: plan.clone(),
    };
    loop {
        let now = event.now();
        let step = match store.step(&event) {
            Ok(step) => step,
            Err(e) => {
                return Ending::Failed {
                    kind: FailKind::Exhausted,
                    error: e.0,
                    at: now,
                };
            }
        };
        exec.observe(now, request, plan, &step);
        event = match step.next {
            Some(Order::Deliver {
                backend,
                bucket,
                tokens,
            }) => {
                return Ending::Delivered {
                    backend: plan.backend_name(backend).to_string(),
                    bucket: plan.bucket_name(backend, bucket).to_string(),
                    tokens,
                    at: now,
                };
            }
            Some(Order::Fail(f)) => {
                return Ending::Failed {
                    kind: f.kind,
                    error: crate::narrate::failure(plan, &f, now),
                    at: now,
                };
            }
            Some(Order::Send {
                backend,
                bucket,
                prefill,
                ..
            }) => {
                let (end, attempted) = exec.send(now, request, plan, backend, bucket, prefill);
                let now = end.max(now);
                if exec.cancelled() {
                    return cancel(store, request, now);
                }
                match attempted {
                    Attempted::Sent(outcome) => Event::AttemptFinished {
                        now,
                        request,
                        outcome,
                    },
                    Attempted::NoCredential(why) => Event::NoCredential { now, request, why },
                }
            }
            Some(Order::Refresh { backend, bucket }) => {
                let (end, ok) = exec.refresh(now, request, plan, backend, bucket);
                if exec.cancelled() {
                    return cancel(store, request, end.max(now));
                }
                Event::RefreshFinished {
                    now: end.max(now),
                    request,
                    ok,
                }
            }
            Some(Order::Wait { until_ms }) => {
                if let Some(t) = exec.wait_until(now, until_ms) {
                    Event::TimerFired {
                        now: t.max(now),
                        request,
                    }
                } else {
                    return cancel(store, request, now);
                }
            }
            None => {
                // The engine always answers a fitting event with an order (its contract);
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
    // A store that fails here loses nothing the request still needs: it has ended.
    let _ = store.step(&Event::RequestCancelled { now, request });
    Ending::Cancelled { at: now }
}
