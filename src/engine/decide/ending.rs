//! How a request ends: delivered (statistics, the TPM windows) or failed, with a typed
//! [`Failure`] that the edge words (SPEC §5.4 aggregate error).

use super::Ctx;
use crate::engine::outcome::{Class, Outcome};
use crate::engine::state::slot;
use crate::engine::step::{FailKind, Failure, Headline, Order, Then};

impl Ctx<'_> {
    /// The attempt succeeded: deliver it.
    pub(super) fn deliver(&mut self, o: &Outcome) -> Order {
        let plan = self.plan.clone();
        let v = self
            .req
            .visit
            .as_ref()
            .expect("deliver() runs during a visit");
        let (b, k) = (v.backend, v.bucket);
        let bp = &plan.backends[b];
        self.leave(Class::Success);
        if let Some(st) = self.shared.backends.get_mut(&bp.name) {
            st.stats.successes += 1;
            st.stats.tokens += o.tokens;
            if o.tokens > 0 {
                st.add_tokens(self.now, o.tokens, plan.settings.tpm_threshold.is_some());
            }
        }
        if let Some(st) = self.shared.buckets.get_mut(&bp.buckets[k].key) {
            st.stats.successes += 1;
        }
        if let Some(lb) = self.shared.lbs.get_mut(&plan.lb) {
            lb.stats.successes += 1;
        }
        self.decided(Then::Deliver);
        Order::Deliver {
            backend: b,
            bucket: k,
            tokens: o.tokens,
        }
    }

    /// No backend is left to move to.
    pub(super) fn fail_no_backend_left(&mut self) -> Order {
        let headline = if self.req.attempts.is_empty() {
            Headline::AllSkipped
        } else if self.continues() {
            // SPEC §5.8: the original interruption, never a prefill rejection.
            Headline::Interrupted
        } else if self.out_of_context() {
            Headline::NoLargerContext
        } else {
            Headline::Exhausted
        };
        self.fail(headline)
    }

    /// The request fails: the breaker counts the current backend's last outcome, the load
    /// balancer counts the failure, and the order carries everything the edge needs to word it.
    pub(super) fn fail(&mut self, headline: Headline) -> Order {
        self.leave_visit();
        let kind = match headline {
            Headline::AllSkipped => FailKind::AllSkipped,
            Headline::Refused => FailKind::Refused,
            Headline::Interrupted => FailKind::Interrupted,
            Headline::EmptyPlan
            | Headline::Exhausted
            | Headline::MaxAttempts(_)
            | Headline::NoLargerContext => FailKind::Exhausted,
        };
        let class = self
            .req
            .attempts
            .last()
            .map_or("skipped", |a| a.class.as_str());
        if let Some(lb) = self.shared.lbs.get_mut(&self.plan.lb) {
            *slot(&mut lb.stats.failures, class) += 1;
        }
        self.decided(Then::Fail);
        Order::Fail(Box::new(Failure {
            kind,
            headline,
            attempts: std::mem::take(&mut self.req.attempts),
            skipped: std::mem::take(&mut self.req.skipped),
            interruption: self.req.interruption.take(),
        }))
    }
}
