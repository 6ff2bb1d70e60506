//! The engine state (SPEC §5.9): what is shared across requests and processes (round-robin
//! cursors, circuits, TPM windows, cooldowns, statistics), and what belongs to one request in
//! flight. Plain serde data: a state restored from JSON decides exactly as the original.
//! Inside a request, backends and buckets are indices into its plan; the shared part is keyed
//! by name, as persisted.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::circuit::Circuit;
use super::event::RequestId;
use super::outcome::Class;
use super::plan::Plan;
use super::stats::{BackendStats, BucketStats, LbStats};
use super::step::SkipReason;
use super::tpm::{self, TpmRing, TpmWindow};

/// Shared state of one load balancer (`lb/<name>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbState {
    /// The round-robin cursor: requests started so far (the next starts at `cursor % n`).
    pub cursor: u64,
    /// Statistics.
    pub stats: LbStats,
}

/// Shared state of one backend (`backend/<profile>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendState {
    /// The digest of provider + model + base URL when this state was written.
    pub fingerprint: String,
    /// The circuit.
    pub circuit: Circuit,
    /// Tokens of successes within the trailing minute, exact, of requests whose plan has a
    /// TPM threshold (SPEC §5.7, §7.1).
    #[serde(default)]
    pub tpm: TpmWindow,
    /// Tokens of the other successes, per second over the trailing minute (SPEC §7.1).
    #[serde(default, skip_serializing_if = "TpmRing::is_empty")]
    pub tpm_ring: TpmRing,
    /// Statistics.
    pub stats: BackendStats,
}

impl BackendState {
    /// Tokens in the trailing minute at `now`, what the threshold and `stats` count (SPEC §5.7).
    pub fn tpm_at(&self, now: u64) -> u64 {
        tpm::tokens_at(&self.tpm, &self.tpm_ring, now)
    }

    /// When its tokens fall below `threshold` again, if they are not below now.
    pub fn tpm_clear_at(&self, now: u64, threshold: u64) -> Option<u64> {
        tpm::clear_at(&self.tpm, &self.tpm_ring, now, threshold)
    }

    /// Counts a success's tokens, ended at `now`: exactly when the request's plan has a TPM
    /// threshold (§5.11), else in the per-second ring (§7.1). Either way the other window
    /// forgets what can no longer count, so neither outlives its minute in the state file.
    pub fn add_tokens(&mut self, now: u64, tokens: u64, exact: bool) {
        if exact {
            self.tpm.add(now, tokens);
            self.tpm_ring.expire(now);
        } else {
            self.tpm_ring.add(now, tokens);
            self.tpm.expire(now);
        }
    }
}

/// Shared state of one account (`bucket/<account>`, SPEC §5.9).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketState {
    /// Cooling while `now < cooldown_until` (SPEC §5.11).
    pub cooldown_until: Option<u64>,
    /// The rate-limit headers of the last response that carried any, for diagnostics.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ratelimit: BTreeMap<String, String>,
    /// When those headers arrived (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratelimit_at: Option<u64>,
    /// Statistics.
    pub stats: BucketStats,
}

impl BucketState {
    /// Whether it is cooling at `now`.
    pub fn cooling(&self, now: u64) -> bool {
        self.cooldown_until.is_some_and(|u| now < u)
    }
}

/// Everything shared across requests and processes (persisted, SPEC §5.9).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedState {
    /// `lb/<name>`.
    pub lbs: BTreeMap<String, LbState>,
    /// `backend/<profile>`.
    pub backends: BTreeMap<String, BackendState>,
    /// `bucket/<account>`.
    pub buckets: BTreeMap<String, BucketState>,
}

/// The entry of `map` under `key`, made with its default when missing. Unlike
/// `entry(key.to_owned())`, it allocates the key only when the entry is new: a step looks up
/// the same few keys again and again.
pub(crate) fn slot<'a, V: Default>(map: &'a mut BTreeMap<String, V>, key: &str) -> &'a mut V {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), V::default());
    }
    map.get_mut(key).expect("inserted above when missing")
}

/// One attempt, as remembered for the aggregate error and the summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// Backend index.
    pub backend: usize,
    /// Bucket index.
    pub bucket: usize,
    /// Class.
    pub class: Class,
    /// HTTP status where the class comes from one.
    pub status: Option<u16>,
    /// Provider message, if any (already redacted by the shell).
    pub message: Option<String>,
    /// Latency (ms).
    pub latency_ms: u64,
}

/// A backend (or one bucket of it) passed over, for the all-skipped and aggregate errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkipRecord {
    /// Backend index.
    pub backend: usize,
    /// The bucket, when only a bucket was passed over.
    pub bucket: Option<usize>,
    /// Why.
    pub reason: SkipReason,
    /// When it is eligible again (ms).
    pub until_ms: Option<u64>,
    /// The shell's words, for a bucket without a credential.
    pub why: Option<String>,
}

/// What the engine waits for on a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "for", rename_all = "snake_case")]
pub enum Pending {
    /// An attempt ordered at `started_ms`.
    Attempt {
        /// When it was ordered (ms).
        started_ms: u64,
    },
    /// A token refresh.
    Refresh,
    /// A wait, after which the same backend and bucket are tried again.
    Timer,
}

/// The request's visit to its current backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Visit {
    /// Backend index in the plan.
    pub backend: usize,
    /// Current bucket index in the backend's chain.
    pub bucket: usize,
    /// Buckets advanced past (by index).
    pub tried: Vec<bool>,
    /// The current bucket had its one extra attempt (a `Retry-After` wait or a refresh).
    pub bucket_retry_used: bool,
    /// `failover_retry_count` retries used on this backend (across its buckets).
    pub retries: u32,
    /// Class of the last outcome on this backend (what the breaker counts, SPEC §5.11).
    pub last_class: Option<Class>,
    /// When the last attempt on this backend ended (ms): the breaker's moment (SPEC §5.11).
    pub last_end_ms: Option<u64>,
}

/// A stream that broke after output began (`mid_stream`, SPEC §5.8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interruption {
    /// Backend index it broke on.
    pub backend: usize,
    /// Tokens delivered before it broke.
    pub tokens: u64,
}

/// A request in flight (in memory only, SPEC §5.9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestState {
    /// Where it runs.
    pub plan: Arc<Plan>,
    /// When it started (ms).
    pub started_ms: u64,
    /// Backends not yet visited, in this request's order (indices into the plan).
    pub remaining: VecDeque<usize>,
    /// The current backend visit.
    pub visit: Option<Visit>,
    /// What the engine waits for.
    pub pending: Option<Pending>,
    /// Every attempt so far.
    pub attempts: Vec<AttemptRecord>,
    /// Backends and buckets passed over.
    pub skipped: Vec<SkipRecord>,
    /// Backends with `context-limit` ≤ this are out for this request (SPEC §5.5).
    pub context_floor: Option<u64>,
    /// The first interruption after output began, once attempts continue it (SPEC §5.8).
    pub interruption: Option<Interruption>,
}

/// The whole engine state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineState {
    /// Shared, persisted part.
    pub shared: SharedState,
    /// Requests in flight.
    pub requests: BTreeMap<RequestId, RequestState>,
}
