//! The circuit breaker of one backend (SPEC §5.6): closed, open for a timeout, then half-open
//! for exactly one probe. Plain data; time arrives as arguments. Owns the breaker's
//! transitions; must not decide what a request does next (that is `decide`).

use serde::{Deserialize, Serialize};

use super::event::RequestId;
use super::outcome::Class;
use super::step::SkipReason;

/// A half-open circuit's probe in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// The request probing.
    pub request: RequestId,
    /// When it took the probe (ms).
    pub started_ms: u64,
}

/// A backend's circuit (SPEC §5.6). `Open` becomes half-open by time alone; the transition is
/// applied lazily by [`Circuit::settle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Circuit {
    /// Requests flow; `failures` consecutive failed requests so far.
    Closed {
        /// Consecutive failed requests.
        failures: u32,
    },
    /// Skipped over `[since_ms, since_ms + timeout)`.
    Open {
        /// When it opened (ms).
        since_ms: u64,
    },
    /// One request may probe it; others skip it while the probe is in flight.
    HalfOpen {
        /// The probe in flight, if any.
        probe: Option<Probe>,
    },
}

impl Default for Circuit {
    fn default() -> Self {
        Circuit::Closed { failures: 0 }
    }
}

/// What a circuit did when a result was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitMove {
    /// Nothing visible changed.
    None,
    /// It opened at that time.
    Opened,
    /// It closed.
    Closed,
}

impl Circuit {
    /// Applies the transitions that time alone makes: an open circuit past its timeout is
    /// half-open; a probe that has not reported within the timeout counts as failed, which
    /// opens the circuit again from the moment it was due (SPEC §5.6: never stuck).
    pub fn settle(&mut self, now: u64, timeout: u64) {
        for _ in 0..2 {
            match *self {
                Circuit::Open { since_ms } if now >= since_ms.saturating_add(timeout) => {
                    *self = Circuit::HalfOpen { probe: None };
                }
                Circuit::HalfOpen { probe: Some(p) }
                    if now >= p.started_ms.saturating_add(timeout) =>
                {
                    *self = Circuit::Open {
                        since_ms: p.started_ms.saturating_add(timeout),
                    };
                }
                _ => return,
            }
        }
    }

    /// Whether a request may attempt the backend now; if not, why and until when.
    pub fn eligibility(&mut self, now: u64, timeout: u64) -> Result<(), (SkipReason, u64)> {
        self.settle(now, timeout);
        match *self {
            Circuit::Closed { .. } | Circuit::HalfOpen { probe: None } => Ok(()),
            Circuit::Open { since_ms } => {
                Err((SkipReason::CircuitOpen, since_ms.saturating_add(timeout)))
            }
            Circuit::HalfOpen { probe: Some(p) } => Err((
                SkipReason::ProbeInFlight,
                p.started_ms.saturating_add(timeout),
            )),
        }
    }

    /// A request moves to the backend: if half-open, it becomes the probe (returns true).
    pub fn take_probe(&mut self, request: RequestId, now: u64) -> bool {
        if matches!(self, Circuit::HalfOpen { probe: None }) {
            *self = Circuit::HalfOpen {
                probe: Some(Probe {
                    request,
                    started_ms: now,
                }),
            };
            return true;
        }
        false
    }

    /// Records the result of a request on this backend (the class of its last outcome there,
    /// SPEC §5.11).
    /// `at` is the end of the request's last attempt on the backend: the circuit's time-based
    /// moves up to then are applied first, and an opened circuit is open from then.
    pub fn record(
        &mut self,
        class: Class,
        request: RequestId,
        at: u64,
        threshold: u32,
        timeout: u64,
    ) -> CircuitMove {
        self.settle(at, timeout);
        let now = at;
        if !class.is_breaker_failure() {
            let was_closed = matches!(self, Circuit::Closed { .. });
            *self = Circuit::Closed { failures: 0 };
            return if was_closed {
                CircuitMove::None
            } else {
                CircuitMove::Closed
            };
        }
        match *self {
            Circuit::Closed { failures } => {
                let failures = failures.saturating_add(1);
                if failures >= threshold {
                    *self = Circuit::Open { since_ms: now };
                    CircuitMove::Opened
                } else {
                    *self = Circuit::Closed { failures };
                    CircuitMove::None
                }
            }
            Circuit::HalfOpen { probe: None } => {
                *self = Circuit::Open { since_ms: now };
                CircuitMove::Opened
            }
            Circuit::HalfOpen { probe: Some(p) } if p.request == request => {
                *self = Circuit::Open { since_ms: now };
                CircuitMove::Opened
            }
            Circuit::HalfOpen { .. } | Circuit::Open { .. } => CircuitMove::None,
        }
    }

    /// Gives back a probe the request holds without a result (a cancelled request). Time
    /// first: a probe overdue at `now` has already counted as failed (SPEC §5.6).
    pub fn release(&mut self, request: RequestId, now: u64, timeout: u64) {
        self.settle(now, timeout);
        if let Circuit::HalfOpen { probe: Some(p) } = *self
            && p.request == request
        {
            *self = Circuit::HalfOpen { probe: None };
        }
    }

    /// `closed`, `open` or `half_open`, as seen at `now`.
    pub fn view(&self, now: u64, timeout: u64) -> &'static str {
        let mut c = *self;
        c.settle(now, timeout);
        match c {
            Circuit::Closed { .. } => "closed",
            Circuit::Open { .. } => "open",
            Circuit::HalfOpen { .. } => "half_open",
        }
    }
}
