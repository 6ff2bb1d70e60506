//! Ordering an attempt, and recording one that ended (SPEC §5.3–§5.5, §5.10): the attempt's
//! record, statistics, and its `AttemptEnded` note with what the engine decided next.

use super::Ctx;
use crate::engine::outcome::{Class, Outcome};
use crate::engine::plan::MidStream;
use crate::engine::state::{AttemptRecord, slot};
use crate::engine::step::{Note, Order, Then};

impl Ctx<'_> {
    /// Orders an attempt on the visit's backend and bucket. Under `mid_stream: continue`
    /// after an interruption it carries the prefill; `prefill::passes_over` has already kept
    /// backends that take none out of the way (SPEC §5.8).
    pub(super) fn send(&mut self) -> Order {
        let v = self.req.visit.as_ref().expect("send() runs during a visit");
        Order::Send {
            backend: v.backend,
            bucket: v.bucket,
            attempt: self.req.attempts.len() as u32 + 1,
            prefill: self.continues(),
        }
    }

    /// Whether attempts of this request continue a partial answer (SPEC §5.8).
    pub(super) fn continues(&self) -> bool {
        self.req.interruption.is_some() && self.plan.settings.mid_stream == MidStream::Continue
    }

    /// An attempt ended: record it, decide, and note the decision (SPEC §5.3–§5.5).
    pub(super) fn finished(&mut self, started_ms: u64, o: &Outcome) -> Order {
        let now = self.now;
        let v = self
            .req
            .visit
            .as_mut()
            .expect("an attempt in flight belongs to a visit");
        v.last_class = Some(o.class);
        v.last_end_ms = Some(now);
        let (b, k) = (v.backend, v.bucket);
        let bp = &self.plan.backends[b];
        let status = if o.class.has_status() {
            o.effective_status()
        } else {
            None
        };
        let latency_ms = if o.latency_ms > 0 {
            o.latency_ms
        } else {
            now.saturating_sub(started_ms)
        };
        self.req.attempts.push(AttemptRecord {
            backend: b,
            bucket: k,
            class: o.class,
            status,
            message: o.message.clone(),
            latency_ms,
        });
        if let Some(st) = self.shared.backends.get_mut(&bp.name) {
            st.stats.latency.record(latency_ms);
            if o.class != Class::Success {
                *slot(&mut st.stats.failures, o.class.as_str()) += 1;
            }
        }
        let bs = slot(&mut self.shared.buckets, &bp.buckets[k].key);
        bs.stats.requests += 1;
        bs.stats.last_used = Some(started_ms);
        if !o.ratelimit.is_empty() {
            bs.ratelimit.clone_from(&o.ratelimit);
            bs.ratelimit_at = Some(now);
        }
        match o.class {
            Class::RateLimit => bs.stats.rate_limited += 1,
            Class::Quota => bs.stats.quota += 1,
            Class::Auth => bs.stats.auth += 1,
            _ => {}
        }
        let mark = self.notes.len();
        let order = self.after_attempt(o);
        self.notes.insert(
            mark,
            Note::AttemptEnded {
                backend: b,
                bucket: k,
                started_ms,
                class: o.class,
                status,
                latency_ms,
                then: self.then.unwrap_or(Then::Fail),
            },
        );
        order
    }
}
