//! Events: facts reported to the engine (STYLE 2). Each carries `now` in milliseconds; the
//! engine has no other clock.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::outcome::Outcome;
use super::plan::Plan;

/// Identifies one request among those in flight.
pub type RequestId = u64;

/// Something that happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A request arrived and should be served by `plan`. The driver sends it when the request
    /// starts (SPEC §9.1: for a conversation, when the previous request ended).
    RequestArrived {
        /// Current time (ms).
        now: u64,
        /// A new, unique id.
        request: RequestId,
        /// Where it runs.
        plan: Arc<Plan>,
    },
    /// The attempt the engine last ordered for `request` (a `Send`) was sent and ended.
    AttemptFinished {
        /// When it ended (ms).
        now: u64,
        /// Which request.
        request: RequestId,
        /// What it produced.
        outcome: Outcome,
    },
    /// The attempt the engine last ordered for `request` was not sent: its bucket has no
    /// usable credential (no key file, an empty key, no login, a revoked login). Not an
    /// attempt: the chain moves on without touching any circuit (SPEC §5.3).
    NoCredential {
        /// Current time (ms).
        now: u64,
        /// Which request.
        request: RequestId,
        /// Why, in the shell's words (`no key: ~/.openai_key not found`); never a secret.
        why: String,
    },
    /// The token refresh ordered for `request` ended.
    RefreshFinished {
        /// When it ended (ms).
        now: u64,
        /// Which request.
        request: RequestId,
        /// Whether a fresh token was stored.
        ok: bool,
    },
    /// The wait ordered for `request` is over.
    TimerFired {
        /// Current time (ms), at or after the wait's end.
        now: u64,
        /// Which request.
        request: RequestId,
    },
    /// The user cancelled `request` (Ctrl-C): neither success nor failure (SPEC §5.1).
    RequestCancelled {
        /// Current time (ms).
        now: u64,
        /// Which request.
        request: RequestId,
    },
}

impl Event {
    /// The event's time.
    pub fn now(&self) -> u64 {
        match self {
            Event::RequestArrived { now, .. }
            | Event::AttemptFinished { now, .. }
            | Event::NoCredential { now, .. }
            | Event::RefreshFinished { now, .. }
            | Event::TimerFired { now, .. }
            | Event::RequestCancelled { now, .. } => *now,
        }
    }

    /// The request it concerns.
    pub fn request(&self) -> RequestId {
        match self {
            Event::RequestArrived { request, .. }
            | Event::AttemptFinished { request, .. }
            | Event::NoCredential { request, .. }
            | Event::RefreshFinished { request, .. }
            | Event::TimerFired { request, .. }
            | Event::RequestCancelled { request, .. } => *request,
        }
    }
}
