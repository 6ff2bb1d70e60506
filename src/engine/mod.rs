//! The engine: `decide(state, event) -> (state, actions)`, the pure core of llxprt (SPEC §5).
//!
//! # The driving contract
//!
//! A driver (the HTTP shell, `simulate`, `serve`) runs every request through this loop:
//!
//! 1. When a request starts, build its [`Plan`] from validated profiles and feed
//!    [`Event::RequestArrived`] with the current time and a fresh [`RequestId`].
//! 2. Carry out the returned actions in order. Notes (`AttemptEnded`, `Skipped`, `Failover`,
//!    `Cooldown`, `Circuit*`, …) are for logs, timelines and statistics only. At most one
//!    order per step asks for a follow-up event:
//!    - [`Action::Send`]: perform the attempt, classify the result (SPEC §4) and feed
//!      [`Event::AttemptFinished`] with the time it ended;
//!    - [`Action::RefreshToken`]: refresh the bucket's token, feed [`Event::RefreshFinished`];
//!    - [`Action::WaitUntil`]: wait, then feed [`Event::TimerFired`] (or
//!      [`Event::RequestCancelled`] if the user gives up meanwhile).
//! 3. [`Action::Deliver`] and [`Action::Fail`] end the request; nothing more is fed for it.
//! 4. The driver never decides anything itself: no retry, no fallback, no wait of its own.
//!
//! # Policy
//!
//! - Pure: no clock (time is `now` in every event), no sleep, no randomness, no environment,
//!   no I/O. `tests/engine_purity.rs` reads this module's source and fails on any clock,
//!   sleep, environment, file, network, process, randomness or printing call.
//! - Errors are values: a request that cannot be served ends with `Fail`, carrying the
//!   aggregate message. Events that do not fit the state (a stray `TimerFired`, an unknown
//!   request) are ignored. No input makes `decide` panic; the few `expect`s guard invariants
//!   the engine itself maintains, each saying why it holds.
//! - Every request terminates: a backend is visited at most once per request; a visit makes at
//!   most two attempts per bucket plus `failover_retry_count` retries (SPEC §5.4), and never
//!   more than `max_attempts` in all.
//! - The state is plain serde data; a state restored from JSON decides exactly as the
//!   original (SPEC §5.9).

pub mod action;
mod decide;
pub mod event;
pub mod outcome;
pub mod plan;
pub mod state;
pub mod stats;

pub use action::{Action, FailKind, SkipReason, Then};
pub use decide::{MAX_COOLDOWN_MS, decide};
pub use event::{Event, RequestId};
pub use outcome::{Class, Outcome, classify_status};
pub use plan::{BackendPlan, BucketPlan, FailoverSettings, Plan};
pub use state::EngineState;
