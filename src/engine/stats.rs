//! Statistics (SPEC §5.10): counters per load balancer, backend and bucket, and a fixed
//! log-scale latency histogram whose counts from several processes merge exactly.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Number of histogram bins; the last one also holds everything above the largest bound.
pub const BINS: usize = 48;

/// Upper bounds of the bins in milliseconds: 10 ms, then ×1.25 each (rounded up).
pub const BOUNDS_MS: [u64; BINS] = bounds();

const fn bounds() -> [u64; BINS] {
    let mut out = [0u64; BINS];
    // Work in microseconds so ×1.25 stays exact enough; round each bound up to a millisecond.
    let mut us: u64 = 10_000;
    let mut i = 0;
    while i < BINS {
        out[i] = us.div_ceil(1000);
        us = us * 5 / 4;
        i += 1;
    }
    out
}

/// A latency histogram: `counts[i]` latencies fell in `(BOUNDS_MS[i-1], BOUNDS_MS[i]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    /// Count per bin (empty until the first sample, then `BINS` long).
    pub counts: Vec<u64>,
    /// Sum of all samples, for the mean.
    pub sum_ms: u64,
}

impl Histogram {
    /// Adds one latency.
    pub fn record(&mut self, ms: u64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BINS];
        }
        let bin = BOUNDS_MS.partition_point(|&b| b < ms).min(BINS - 1);
        self.counts[bin] += 1;
        self.sum_ms = self.sum_ms.saturating_add(ms);
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Mean latency, if any sample.
    pub fn mean(&self) -> Option<u64> {
        let n = self.count();
        (n > 0).then(|| self.sum_ms / n)
    }

    /// The `p`-th percentile (0–100): the upper bound of the bin holding it.
    pub fn percentile(&self, p: u64) -> Option<u64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = (n * p).div_ceil(100).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(BOUNDS_MS[i]);
            }
        }
        Some(BOUNDS_MS[BINS - 1])
    }
}

/// Per load balancer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbStats {
    /// Requests started.
    pub requests: u64,
    /// Requests delivered.
    pub successes: u64,
    /// Failed requests by the class of their last attempt (`skipped` when nothing was tried).
    pub failures: BTreeMap<String, u64>,
    /// The backend the last request was sent to.
    pub last_selected: Option<String>,
    /// Per backend, what the last request did with it and why (SPEC §8.1 `stats lb`): only the
    /// backends it reached or passed over; cleared when a request arrives. Absent from files
    /// written before it was recorded.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub last_routes: BTreeMap<String, Route>,
}

/// Why the last request went to a backend, or past it (SPEC §8.1 `stats lb`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// Sent to it first: the primary of a `failover` load balancer.
    Primary,
    /// Sent to it first: the cursor's backend of a `roundrobin` load balancer.
    Rotation,
    /// Sent to it first because the backends before it in the request's order were skipped.
    NextEligible,
    /// Sent to it after the previous backend failed (a failover).
    PreviousFailed,
    /// Passed over: its circuit was open, or another request's probe held it half-open.
    SkippedCircuit,
    /// Passed over: over its TPM threshold.
    SkippedTpm,
    /// Put last: every bucket of it was cooling down (tried only if the others fail).
    Cooling,
    /// Passed over: its context limit is below one that was already too small.
    SkippedContext,
    /// Passed over: it takes no prefill, or rejected this request's.
    SkippedPrefill,
    /// Passed over: no usable credential.
    SkippedNoKey,
}

impl From<crate::engine::step::SkipReason> for Route {
    fn from(r: crate::engine::step::SkipReason) -> Route {
        use crate::engine::step::SkipReason as S;
        match r {
            S::CircuitOpen | S::ProbeInFlight => Route::SkippedCircuit,
            S::Tpm => Route::SkippedTpm,
            S::ContextLimit => Route::SkippedContext,
            S::NoPrefill | S::PrefillRejected => Route::SkippedPrefill,
            S::NoCredential => Route::SkippedNoKey,
        }
    }
}

impl Route {
    /// The words of the `stats lb` table.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Primary => "primary",
            Route::Rotation => "next in rotation",
            Route::NextEligible => "next eligible",
            Route::PreviousFailed => "previous failed",
            Route::SkippedCircuit => "skipped: circuit",
            Route::SkippedTpm => "skipped: TPM",
            Route::Cooling => "skipped: cooling",
            Route::SkippedContext => "skipped: context",
            Route::SkippedPrefill => "skipped: prefill",
            Route::SkippedNoKey => "skipped: no key",
        }
    }
}

/// Per backend.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendStats {
    /// Requests that attempted this backend.
    pub requests: u64,
    /// Requests this backend served.
    pub successes: u64,
    /// Failed attempts, by class.
    pub failures: BTreeMap<String, u64>,
    /// Retries on this backend (`failover_retry_count` ones).
    pub retries: u64,
    /// Times a request moved away from this backend to another.
    pub failovers: u64,
    /// Requests that skipped it while its circuit was open.
    pub skipped_circuit: u64,
    /// Requests that skipped it while over its TPM threshold.
    pub skipped_tpm: u64,
    /// Tokens of successful responses.
    pub tokens: u64,
    /// Attempt latencies.
    pub latency: Histogram,
}

/// Per bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketStats {
    /// Attempts sent with this bucket.
    pub requests: u64,
    /// Successful attempts.
    pub successes: u64,
    /// 429s.
    pub rate_limited: u64,
    /// 402s (quota).
    pub quota: u64,
    /// 401s.
    pub auth: u64,
    /// Token refreshes ordered.
    pub refreshes: u64,
    /// When it was last used (ms).
    pub last_used: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_grow_by_a_quarter_from_10ms() {
        assert_eq!(&BOUNDS_MS[..4], &[10, 13, 16, 20]);
        assert!(BOUNDS_MS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn percentiles_are_bin_upper_bounds() {
        let mut h = Histogram::default();
        for ms in [5, 12, 12, 12, 100, 100, 100, 100, 100, 5000] {
            h.record(ms);
        }
        assert_eq!(h.count(), 10);
        assert_eq!(h.mean(), Some(554));
        assert_eq!(
            h.percentile(50),
            Some(BOUNDS_MS[BOUNDS_MS.partition_point(|&b| b < 100)])
        );
        assert_eq!(h.percentile(10), Some(10));
        assert_eq!(
            h.percentile(100),
            Some(BOUNDS_MS[BOUNDS_MS.partition_point(|&b| b < 5000)])
        );
        assert_eq!(Histogram::default().percentile(50), None);
    }
}
