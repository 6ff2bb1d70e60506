//! The engine: `decide(state, event) -> (state, step)`, the pure core of llxprt (SPEC §5).
//!
//! # The driving contract
//!
//! A driver (the HTTP shell, `simulate`, `serve`) runs every request through this loop:
//!
//! 1. When a request starts, build its [`Plan`] from validated profiles and feed
//!    [`Event::RequestArrived`] with the current time and a fresh [`RequestId`].
//! 2. Each step returns a [`Step`]: its [`Note`]s (for logs, timelines and statistics; they
//!    ask for nothing) and its one next [`Order`]:
//!    - [`Order::Send`]: perform the attempt, classify the result (SPEC §4) and feed
//!      [`Event::AttemptFinished`] with the time it ended — or, when the bucket has no usable
//!      credential and nothing was sent, [`Event::NoCredential`] with why (SPEC §5.3);
//!    - [`Order::Refresh`]: refresh the bucket's token, feed [`Event::RefreshFinished`];
//!    - [`Order::Wait`]: wait, then feed [`Event::TimerFired`] (or
//!      [`Event::RequestCancelled`] if the user gives up meanwhile);
//!    - [`Order::Deliver`] and [`Order::Fail`] end the request; nothing more is fed for it.
//!
//!    A step without an order means the event did not fit the state and changed nothing.
//! 3. Backends and buckets in orders and notes are indices into the request's plan; names
//!    and English words are the edge's business (`crate::narrate`).
//! 4. The driver never decides anything itself: no retry, no fallback, no wait of its own.
//!
//! # Policy
//!
//! - Pure: no clock (time is `now` in every event), no sleep, no randomness, no environment,
//!   no I/O. `tests/engine_purity.rs` reads this module's source and fails on any clock,
//!   sleep, environment, file, network, process, randomness or printing call; and
//!   `tests/architecture.rs` fails when it imports anything of the crate but validated
//!   profile types.
//! - Errors are values: a request that cannot be served ends with `Fail`, carrying a typed
//!   [`Failure`]. Events that do not fit the state (a stray `TimerFired`, an unknown request)
//!   are ignored. No input makes `decide` panic; the few `expect`s guard invariants the
//!   engine itself maintains, each saying why it holds.
//! - Every request terminates: a backend is visited at most once per request; a visit makes at
//!   most two attempts per bucket plus `failover_retry_count` retries (SPEC §5.4), and never
//!   more than `max_attempts` in all; a bucket or backend passed over makes none.
//! - The state is plain serde data; a state restored from JSON decides exactly as the
//!   original (SPEC §5.9).

// The engine's functions stay short, one decision each (see `decide`'s module doc).
#![warn(clippy::too_many_lines)]

pub mod circuit;
mod decide;
pub mod event;
pub mod outcome;
pub mod plan;
pub mod state;
pub mod stats;
pub mod step;
pub mod tpm;

pub use decide::{MAX_COOLDOWN_MS, decide};
pub use event::{Event, RequestId};
pub use outcome::{Class, Outcome, classify_status};
pub use plan::{BackendPlan, BucketPlan, FailoverSettings, MidStream, Plan, Policy};
pub use state::EngineState;
pub use step::{FailKind, Failure, Headline, Note, Order, SkipReason, Step, Then};
