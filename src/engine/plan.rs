//! What one request runs on: the load balancer (a model profile alone is a load balancer of
//! one backend, SPEC §5.2), its backends with their bucket chains, and the resolved §3.2
//! settings. Built by the driver from validated profiles (`crate::driver::plan`); the engine
//! only reads it. The engine owns this vocabulary: the profile module has its own spelling of
//! the policy and of `mid_stream` for files, and the driver maps one to the other.

use serde::{Deserialize, Serialize};

/// How a load balancer chooses where a request starts (SPEC §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Backends in list order from the first on every request.
    Failover,
    /// One cursor per load balancer, advancing by one per request.
    Roundrobin,
}

impl Policy {
    /// The spelling used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Failover => "failover",
            Policy::Roundrobin => "roundrobin",
        }
    }
}

/// What happens when a stream breaks after output began (SPEC §5.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MidStream {
    /// Like a network failure; the next attempt's full answer replaces the partial one.
    Restart,
    /// Every later attempt continues the partial answer as an assistant prefill.
    Continue,
    /// Nothing reaches the caller until an attempt is complete.
    Buffer,
    /// The request fails.
    Error,
}

/// The statuses that trigger failover by default (SPEC §3.2).
pub const DEFAULT_STATUS_CODES: [u16; 5] = [429, 500, 502, 503, 504];

/// One bucket of a backend's chain (SPEC §5.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketPlan {
    /// Bucket name (`default` for the implicit one).
    pub name: String,
    /// The account's shared-state key (SPEC §5.9): `<provider>/<bucket>` for a login,
    /// `<provider>/default:<digest>` for the implicit bucket of an API-key profile. An account
    /// is rate-limited for every profile that uses it, and only for those.
    pub key: String,
    /// An OAuth bucket (its 401 may be cured by a token refresh).
    pub oauth: bool,
    /// It has a refresh token.
    pub refreshable: bool,
}

/// One backend (a model profile) of the load balancer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendPlan {
    /// The model profile's name; the shared-state key is `backend/<name>`.
    pub name: String,
    /// Canonical provider name.
    pub provider: String,
    /// Model id.
    pub model: String,
    /// A digest of provider + model + base URL: state whose fingerprint differs is dropped
    /// (SPEC §5.9).
    pub fingerprint: String,
    /// The bucket chain, in order.
    pub buckets: Vec<BucketPlan>,
    /// The backend's own `context-limit`; 0 when missing (ranks lowest, SPEC §5.11).
    pub context_limit: u64,
    /// Whether it continues a trailing assistant message (`accepts-prefill`, SPEC §3.1).
    pub accepts_prefill: bool,
}

/// The §3.2 settings, resolved (defaults < load balancer < session).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverSettings {
    /// `failover_retry_count`.
    pub retry_count: u32,
    /// `failover_retry_delay_ms`.
    pub retry_delay_ms: u64,
    /// `failover_on_network_errors`.
    pub on_network_errors: bool,
    /// `failover_status_codes`.
    pub status_codes: Vec<u16>,
    /// `lb_tpm_failover_threshold`.
    pub tpm_threshold: Option<u64>,
    /// `lb_circuit_breaker_threshold` (None: breaker off).
    pub breaker_threshold: Option<u32>,
    /// `lb_circuit_breaker_timeout_ms`.
    pub breaker_timeout_ms: u64,
    /// `retry_after_max_ms`.
    pub retry_after_max_ms: u64,
    /// `bucket_cooldown_ms`.
    pub bucket_cooldown_ms: u64,
    /// `max_attempts`.
    pub max_attempts: Option<u32>,
    /// `mid_stream` (the driver resolves its default: terminal, pipe, serve, simulate).
    pub mid_stream: MidStream,
    /// `failover_on_context_length`.
    pub on_context_length: bool,
}

impl Default for FailoverSettings {
    /// The defaults of SPEC §3.2 (`mid_stream` as in simulate: `restart`).
    fn default() -> Self {
        FailoverSettings {
            retry_count: 1,
            retry_delay_ms: 0,
            on_network_errors: true,
            status_codes: DEFAULT_STATUS_CODES.to_vec(),
            tpm_threshold: None,
            breaker_threshold: None,
            breaker_timeout_ms: 30_000,
            retry_after_max_ms: 0,
            bucket_cooldown_ms: 60_000,
            max_attempts: None,
            mid_stream: MidStream::Restart,
            on_context_length: true,
        }
    }
}

impl FailoverSettings {
    /// Whether an HTTP status triggers failover; 529 matches when 503 or 529 is listed
    /// (SPEC §5.11).
    pub fn status_triggers(&self, status: u16) -> bool {
        self.status_codes.contains(&status) || (status == 529 && self.status_codes.contains(&503))
    }
}

/// Everything one request needs to be decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The profile being run; the shared-state key is `lb/<name>`.
    pub lb: String,
    /// Failover or round-robin.
    pub policy: Policy,
    /// Backends in priority order (at least one).
    pub backends: Vec<BackendPlan>,
    /// Resolved §3.2 settings.
    pub settings: FailoverSettings,
}

impl Plan {
    /// The name of backend `b` (an index the engine handed out).
    pub fn backend_name(&self, b: usize) -> &str {
        self.backends.get(b).map_or("?", |x| x.name.as_str())
    }

    /// The name of bucket `k` of backend `b`.
    pub fn bucket_name(&self, b: usize, k: usize) -> &str {
        self.backends
            .get(b)
            .and_then(|x| x.buckets.get(k))
            .map_or("?", |x| x.name.as_str())
    }
}
