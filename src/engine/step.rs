//! What one engine step returns (STYLE 2, 19): the notes it made, and at most one next order.
//! Orders (`Send`, `Refresh`, `Wait`, `Deliver`, `Fail`) must be carried out by the driver;
//! notes feed the log, the timeline and statistics and need nothing done. Backends and buckets
//! are indices into the request's [`Plan`](super::Plan): names are looked up at the edges,
//! and so are the English words (`crate::narrate`).

use serde::{Deserialize, Serialize};

use super::outcome::Class;
use super::state::{AttemptRecord, Interruption, SkipRecord};

/// The result of one step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Notes, in the order they happened.
    pub notes: Vec<Note>,
    /// The one next order; `None` when the event did not fit the state (a stray timer, an
    /// unknown request, a duplicate arrival) and changed nothing, or after a cancellation.
    pub next: Option<Order>,
}

impl Step {
    /// Whether the request ended with this step (delivered or failed).
    pub fn ends(&self) -> bool {
        self.next.as_ref().is_some_and(Order::ends)
    }
}

/// What the driver must do next for the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "order", rename_all = "snake_case")]
pub enum Order {
    /// Send an attempt to backend `backend` with bucket `bucket`'s credential, then report
    /// `AttemptFinished` (or `NoCredential` when the bucket has no usable credential and
    /// nothing was sent). With `prefill`, send the conversation plus the partial answer as an
    /// assistant prefill and deliver only the continuation (`mid_stream: continue`, SPEC §5.8).
    Send {
        /// Backend index.
        backend: usize,
        /// Bucket index within the backend.
        bucket: usize,
        /// 1-based attempt number within the request.
        attempt: u32,
        /// Continue the partial answer.
        prefill: bool,
    },
    /// Refresh the bucket's OAuth token, then report `RefreshFinished`.
    Refresh {
        /// Backend index.
        backend: usize,
        /// Bucket index.
        bucket: usize,
    },
    /// Report `TimerFired` at `until_ms` (cancellable).
    Wait {
        /// When (ms).
        until_ms: u64,
    },
    /// The last attempt's response is the answer; hand it to the caller. Ends the request.
    Deliver {
        /// Backend index that served it.
        backend: usize,
        /// Bucket index that served it.
        bucket: usize,
        /// Tokens it used.
        tokens: u64,
    },
    /// The request failed. Ends the request.
    Fail(Box<Failure>),
}

impl Order {
    /// Whether this order ends the request.
    pub fn ends(&self) -> bool {
        matches!(self, Order::Deliver { .. } | Order::Fail(_))
    }
}

/// What happens after an attempt, as the engine decided it (for the timeline).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Then {
    /// The response is delivered.
    Deliver,
    /// The same backend and bucket again after `failover_retry_delay_ms` (SPEC §5.4).
    Retry,
    /// The same bucket again after its `Retry-After` (SPEC §5.3).
    WaitRetry,
    /// Refresh the bucket's token, then retry it (SPEC §5.3).
    Refresh,
    /// The backend's next bucket (SPEC §5.3).
    NextBucket,
    /// The next backend (SPEC §5.4, §5.5, §5.8).
    Failover,
    /// The request fails.
    Fail,
}

/// Why a backend (or a bucket) was passed over without an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// Its circuit is open (SPEC §5.6).
    CircuitOpen,
    /// Its circuit is half-open and another request's probe is in flight (SPEC §5.6).
    ProbeInFlight,
    /// Its tokens in the trailing minute reached `lb_tpm_failover_threshold` (SPEC §5.7).
    Tpm,
    /// Its `context-limit` is not larger than a backend that said the context was too long
    /// (SPEC §5.5).
    ContextLimit,
    /// The request continues a partial answer and the backend takes no prefill (SPEC §5.8).
    NoPrefill,
    /// The backend rejected this request's prefill (SPEC §5.8).
    PrefillRejected,
    /// The bucket has no usable credential (SPEC §5.3).
    NoCredential,
}

impl SkipReason {
    /// The `snake_case` name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::CircuitOpen => "circuit_open",
            SkipReason::ProbeInFlight => "probe_in_flight",
            SkipReason::Tpm => "tpm",
            SkipReason::ContextLimit => "context_limit",
            SkipReason::NoPrefill => "no_prefill",
            SkipReason::PrefillRejected => "prefill_rejected",
            SkipReason::NoCredential => "no_credential",
        }
    }
}

/// How a failed request failed, for callers that map it to a status (SPEC §8.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailKind {
    /// Every backend was passed over; none was attempted.
    AllSkipped,
    /// An outcome that does not trigger failover ended the request at once.
    Refused,
    /// Backends (or `max_attempts`) ran out.
    Exhausted,
    /// A stream broke after output began and could not be resumed.
    Interrupted,
}

/// Why a request failed: the first line of its error, typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Headline {
    /// The plan has no backend, or a backend without buckets.
    EmptyPlan,
    /// Every backend was passed over.
    AllSkipped,
    /// Every backend was tried and failed.
    Exhausted,
    /// `max_attempts` was reached.
    MaxAttempts(u32),
    /// The last outcome does not trigger failover.
    Refused,
    /// The context was too long and no larger backend is left (SPEC §5.5).
    NoLargerContext,
    /// The stream broke after output began (SPEC §5.8).
    Interrupted,
}

/// A failed request, in typed form: the edge words it (`crate::narrate::failure`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// How it failed.
    pub kind: FailKind,
    /// Why, in a word.
    pub headline: Headline,
    /// Every attempt, in order.
    pub attempts: Vec<AttemptRecord>,
    /// Every backend or bucket passed over, in order.
    pub skipped: Vec<SkipRecord>,
    /// The first interruption after output began, if any.
    pub interruption: Option<Interruption>,
}

/// A note: something the engine did, for logs, timelines and statistics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "note", rename_all = "snake_case")]
pub enum Note {
    /// An attempt ended, and what the engine does next.
    AttemptEnded {
        /// Backend index.
        backend: usize,
        /// Bucket index.
        bucket: usize,
        /// When the attempt started (ms).
        started_ms: u64,
        /// Its class.
        class: Class,
        /// HTTP status, for classes that come from one.
        status: Option<u16>,
        /// Latency (ms).
        latency_ms: u64,
        /// What happens next.
        then: Then,
    },
    /// The bucket chain moved on (SPEC §5.3).
    BucketAdvanced {
        /// Backend index.
        backend: usize,
        /// The bucket left.
        from: usize,
        /// The bucket tried next.
        to: usize,
    },
    /// A bucket cools down until `until_ms` (SPEC §5.3).
    Cooldown {
        /// Backend index.
        backend: usize,
        /// Bucket index.
        bucket: usize,
        /// End of the cooldown (ms).
        until_ms: u64,
    },
    /// The request moves to another backend.
    Failover {
        /// The backend left.
        from: usize,
        /// The backend tried next.
        to: usize,
    },
    /// A retry on the same backend (SPEC §5.4).
    Retry {
        /// Backend index.
        backend: usize,
        /// Which retry (1-based).
        retry: u32,
        /// `failover_retry_count`.
        of: u32,
        /// Wait before it (ms).
        delay_ms: u64,
    },
    /// A backend was passed over without an attempt (SPEC §5.2, §5.5, §5.8).
    Skipped {
        /// Backend index.
        backend: usize,
        /// Why.
        reason: SkipReason,
        /// When it is eligible again (ms), where known.
        until_ms: Option<u64>,
    },
    /// A bucket was passed over without a request: it has no usable credential (SPEC §5.3).
    NoCredential {
        /// Backend index.
        backend: usize,
        /// Bucket index.
        bucket: usize,
        /// Why, as the shell said it (`no key: ~/.openai_key not found`).
        why: String,
    },
    /// A token refresh ended.
    Refreshed {
        /// Backend index.
        backend: usize,
        /// Bucket index.
        bucket: usize,
        /// Whether it worked.
        ok: bool,
    },
    /// A backend's circuit opened (SPEC §5.6).
    CircuitOpened {
        /// Backend index.
        backend: usize,
        /// When it may be probed (ms).
        until_ms: u64,
    },
    /// This request probes a half-open circuit.
    CircuitHalfOpen {
        /// Backend index.
        backend: usize,
    },
    /// A backend's circuit closed.
    CircuitClosed {
        /// Backend index.
        backend: usize,
    },
}
