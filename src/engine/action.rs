//! Actions: what the engine orders and notes (STYLE 2). Orders (`Send`, `RefreshToken`,
//! `WaitUntil`, `Deliver`, `Fail`) must be carried out by the driver; notes feed the log, the
//! timeline and statistics and need nothing done. Every action concerns the request of the
//! event that produced it.

use serde::{Deserialize, Serialize};

use super::outcome::Class;

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
    /// The next backend (SPEC §5.4, §5.5).
    Failover,
    /// The request fails.
    Fail,
}

/// Why a backend was passed over without an attempt.
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
}

impl SkipReason {
    /// Words for messages.
    pub fn describe(self) -> &'static str {
        match self {
            SkipReason::CircuitOpen => "circuit open",
            SkipReason::ProbeInFlight => "circuit half-open, probe in flight",
            SkipReason::Tpm => "over its TPM threshold",
            SkipReason::ContextLimit => "context window not larger",
        }
    }
}

/// How a failed request failed, for callers that map it to a status (SPEC §8.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailKind {
    /// Every backend was skipped; none was attempted.
    AllSkipped,
    /// An outcome that does not trigger failover ended the request at once.
    Refused,
    /// Backends (or `max_attempts`) ran out.
    Exhausted,
    /// A stream broke after output began and could not be resumed.
    Interrupted,
}

/// One engine action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Order: send an attempt to `backend` with `bucket`'s credential, then report
    /// `AttemptFinished`. With `prefill`, send the conversation plus the partial answer as an
    /// assistant prefill and deliver only the continuation (`mid_stream: continue`, SPEC §5.8).
    Send {
        /// Backend profile.
        backend: String,
        /// Bucket name.
        bucket: String,
        /// 1-based attempt number within the request.
        attempt: u32,
        /// Continue the partial answer.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        prefill: bool,
    },
    /// Order: refresh the bucket's OAuth token, then report `RefreshFinished`.
    RefreshToken {
        /// Backend profile.
        backend: String,
        /// Bucket name.
        bucket: String,
    },
    /// Order: report `TimerFired` at `until_ms` (cancellable).
    WaitUntil {
        /// When (ms).
        until_ms: u64,
    },
    /// Order: the last attempt's response is the answer; hand it to the caller.
    Deliver {
        /// Backend profile that served it.
        backend: String,
        /// Bucket that served it.
        bucket: String,
        /// Tokens it used.
        tokens: u64,
    },
    /// Order: the request failed; report `error` to the caller.
    Fail {
        /// How.
        kind: FailKind,
        /// The aggregate message (one line per attempt, SPEC §5.4).
        error: String,
    },
    /// Note: an attempt ended, and what the engine does next.
    AttemptEnded {
        /// Backend profile.
        backend: String,
        /// Bucket name.
        bucket: String,
        /// When the attempt started (ms).
        started_ms: u64,
        /// Its class.
        class: Class,
        /// HTTP status, for classes that come from one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
        /// Latency (ms).
        latency_ms: u64,
        /// What happens next.
        then: Then,
    },
    /// Note: the bucket chain moved on (SPEC §5.3).
    BucketAdvanced {
        /// Backend profile.
        backend: String,
        /// The bucket left.
        from: String,
        /// The bucket tried next.
        to: String,
    },
    /// Note: a bucket cools down until `until_ms` (SPEC §5.3).
    Cooldown {
        /// Backend profile.
        backend: String,
        /// Bucket name.
        bucket: String,
        /// End of the cooldown (ms).
        until_ms: u64,
    },
    /// Note: the request moves to another backend.
    Failover {
        /// The backend left.
        from: String,
        /// The backend tried next.
        to: String,
    },
    /// Note: a retry on the same backend (SPEC §5.4).
    Retry {
        /// Backend profile.
        backend: String,
        /// Which retry (1-based).
        retry: u32,
        /// `failover_retry_count`.
        of: u32,
        /// Wait before it (ms).
        delay_ms: u64,
    },
    /// Note: a backend was passed over without an attempt (SPEC §5.2).
    Skipped {
        /// Backend profile.
        backend: String,
        /// Why.
        reason: SkipReason,
        /// When it is eligible again (ms), where known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until_ms: Option<u64>,
    },
    /// Note: a token refresh ended.
    Refreshed {
        /// Backend profile.
        backend: String,
        /// Bucket name.
        bucket: String,
        /// Whether it worked.
        ok: bool,
    },
    /// Note: a backend's circuit opened (SPEC §5.6).
    CircuitOpened {
        /// Backend profile.
        backend: String,
        /// When it may be probed (ms).
        until_ms: u64,
    },
    /// Note: this request probes a half-open circuit.
    CircuitHalfOpen {
        /// Backend profile.
        backend: String,
    },
    /// Note: a backend's circuit closed.
    CircuitClosed {
        /// Backend profile.
        backend: String,
    },
}

impl Action {
    /// The action's `snake_case` name (its `action` field in JSON).
    pub fn name(&self) -> &'static str {
        match self {
            Action::Send { .. } => "send",
            Action::RefreshToken { .. } => "refresh_token",
            Action::WaitUntil { .. } => "wait_until",
            Action::Deliver { .. } => "deliver",
            Action::Fail { .. } => "fail",
            Action::AttemptEnded { .. } => "attempt_ended",
            Action::BucketAdvanced { .. } => "bucket_advanced",
            Action::Cooldown { .. } => "cooldown",
            Action::Failover { .. } => "failover",
            Action::Retry { .. } => "retry",
            Action::Skipped { .. } => "skipped",
            Action::Refreshed { .. } => "refreshed",
            Action::CircuitOpened { .. } => "circuit_opened",
            Action::CircuitHalfOpen { .. } => "circuit_half_open",
            Action::CircuitClosed { .. } => "circuit_closed",
        }
    }
}
