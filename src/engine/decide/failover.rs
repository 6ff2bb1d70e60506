//! Retries and failover across backends (SPEC §4 "triggers failover", §5.4), and what the
//! circuit breaker counts when a request leaves a backend (§5.6, §5.11).

use super::Ctx;
use crate::engine::circuit::CircuitMove;
use crate::engine::outcome::{Class, Outcome};
use crate::engine::plan::MidStream;
use crate::engine::state::Interruption;
use crate::engine::step::{Headline, Note, Order, SkipReason, Then};

impl Ctx<'_> {
    /// The backend-level decision (SPEC §4 "triggers failover", §5.4, §5.5, §5.8).
    pub(super) fn backend_level(&mut self, o: &Outcome) -> Order {
        let plan = self.plan.clone();
        let s = &plan.settings;
        let b = self
            .req
            .visit
            .as_ref()
            .expect("backend_level() runs during a visit")
            .backend;
        if o.class == Class::Client && self.continues() {
            return self.prefill_rejected(b);
        }
        match o.class {
            Class::Success => self.deliver(o),
            Class::ContentFilter => self.fail(Headline::Refused),
            Class::ContextLength => self.context_too_long(b),
            Class::Interrupted => {
                let stops = s.mid_stream == MidStream::Error || !s.on_network_errors;
                if (stops || s.mid_stream == MidStream::Continue) && self.req.interruption.is_none()
                {
                    self.req.interruption = Some(Interruption {
                        backend: b,
                        tokens: o.delivered_tokens,
                    });
                }
                if stops {
                    return self.fail(Headline::Interrupted);
                }
                self.retry_or_move(o, true)
            }
            Class::Network | Class::Timeout => {
                if s.on_network_errors {
                    self.retry_or_move(o, o.class == Class::Network)
                } else {
                    self.fail(Headline::Refused)
                }
            }
            Class::Server
            | Class::Client
            | Class::RateLimit
            | Class::Quota
            | Class::Auth
            | Class::Forbidden => {
                if s.status_triggers(o.effective_status().unwrap_or(0)) {
                    self.retry_or_move(o, o.class == Class::Server)
                } else {
                    self.fail(Headline::Refused)
                }
            }
        }
    }

    /// Retries the same backend and bucket while retries are left and the failure is
    /// retryable; otherwise moves to the next backend (SPEC §5.4). A retry that would need a
    /// prefill the backend does not take is not sent: the backend is passed over (SPEC §5.8).
    fn retry_or_move(&mut self, o: &Outcome, retryable: bool) -> Order {
        let plan = self.plan.clone();
        let s = &plan.settings;
        let v = self
            .req
            .visit
            .as_ref()
            .expect("retry_or_move() runs during a visit");
        let b = v.backend;
        if retryable && v.retries < s.retry_count {
            if self.continues() && !plan.backends[b].accepts_prefill {
                self.skip(b, SkipReason::NoPrefill, None);
            } else {
                return self.retry(o);
            }
        }
        self.leave(o.class);
        self.move_on(Some(b))
    }

    /// Orders a retry on the same backend and bucket, after its delay (SPEC §5.4).
    fn retry(&mut self, o: &Outcome) -> Order {
        if let Some(stop) = self.capped() {
            return stop;
        }
        let s = &self.plan.settings;
        let delay_ms = if o.class == Class::Server {
            s.retry_delay_ms
                .max(o.retry_after_ms.unwrap_or(0).min(s.retry_after_max_ms))
        } else {
            s.retry_delay_ms
        };
        let of = s.retry_count;
        let v = self.visit_mut();
        v.retries += 1;
        let (b, retry) = (v.backend, v.retries);
        if let Some(st) = self.shared.backends.get_mut(&self.plan.backends[b].name) {
            st.stats.retries += 1;
        }
        self.decided(Then::Retry);
        self.notes.push(Note::Retry {
            backend: b,
            retry,
            of,
            delay_ms,
        });
        if delay_ms > 0 {
            return Order::Wait {
                until_ms: self.now.saturating_add(delay_ms),
            };
        }
        self.send()
    }

    /// The request leaves its current backend; the breaker counts the class of the last
    /// outcome it had there (SPEC §5.11), at the end of that attempt, not when a later
    /// refresh or wait ends.
    pub(super) fn leave(&mut self, class: Class) {
        let Some(v) = self.req.visit.take() else {
            return;
        };
        let s = &self.plan.settings;
        let at = v.last_end_ms.unwrap_or(self.now);
        let Some(st) = self
            .shared
            .backends
            .get_mut(&self.plan.backends[v.backend].name)
        else {
            return;
        };
        match s.breaker_threshold {
            Some(threshold) => {
                match st
                    .circuit
                    .record(class, self.id, at, threshold, s.breaker_timeout_ms)
                {
                    CircuitMove::Opened => self.notes.push(Note::CircuitOpened {
                        backend: v.backend,
                        until_ms: at.saturating_add(s.breaker_timeout_ms),
                    }),
                    CircuitMove::Closed => {
                        self.notes.push(Note::CircuitClosed { backend: v.backend });
                    }
                    CircuitMove::None => {}
                }
            }
            None => st.circuit.release(self.id, self.now, s.breaker_timeout_ms),
        }
    }

    /// The request leaves a backend that gave it no answer (nothing was sent there): no
    /// circuit effect, and a probe it took is given back.
    pub(super) fn leave_unanswered(&mut self) {
        let Some(v) = self.req.visit.take() else {
            return;
        };
        if let Some(st) = self
            .shared
            .backends
            .get_mut(&self.plan.backends[v.backend].name)
        {
            st.circuit
                .release(self.id, self.now, self.plan.settings.breaker_timeout_ms);
        }
    }

    /// Leaves the visit, counting its last outcome for the breaker if it had one.
    pub(super) fn leave_visit(&mut self) {
        match self.req.visit.as_ref().and_then(|v| v.last_class) {
            Some(class) => self.leave(class),
            None => self.leave_unanswered(),
        }
    }
}
