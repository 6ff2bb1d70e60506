//! The bucket chain inside a backend (SPEC §5.3): rate limits, quotas, token refreshes,
//! cooldowns, buckets without a credential, and which bucket is next. What is not a bucket
//! matter goes to the backend level (`failover`).

use super::Ctx;
use crate::engine::outcome::{Class, Outcome};
use crate::engine::state::{SkipRecord, Visit, slot};
use crate::engine::step::{Note, Order, SkipReason, Then};

impl Ctx<'_> {
    /// The bucket-level decision (SPEC §5.3); anything else goes to the backend level.
    #[expect(
        clippy::many_single_char_names,
        reason = "o outcome, s settings, v visit: the SPEC's letters"
    )]
    pub(super) fn after_attempt(&mut self, o: &Outcome) -> Order {
        let plan = self.plan.clone();
        let s = &plan.settings;
        let now = self.now;
        let v = self
            .req
            .visit
            .as_ref()
            .expect("after_attempt() runs during a visit");
        let bk = &plan.backends[v.backend].buckets[v.bucket];
        match o.class {
            Class::Success => self.deliver(o),
            Class::RateLimit => {
                if let Some(ra) = o.retry_after_ms
                    && s.retry_after_max_ms > 0
                    && ra <= s.retry_after_max_ms
                    && !v.bucket_retry_used
                {
                    if let Some(stop) = self.capped() {
                        return stop;
                    }
                    self.visit_mut().bucket_retry_used = true;
                    self.decided(Then::WaitRetry);
                    return Order::Wait {
                        until_ms: now.saturating_add(ra),
                    };
                }
                self.cool(now.saturating_add(o.retry_after_ms.unwrap_or(s.bucket_cooldown_ms)));
                self.advance_bucket(o)
            }
            Class::Quota => {
                self.cool(
                    now.saturating_add(s.bucket_cooldown_ms.max(o.retry_after_ms.unwrap_or(0))),
                );
                self.advance_bucket(o)
            }
            Class::Auth if bk.oauth && bk.refreshable && !v.bucket_retry_used => {
                if let Some(stop) = self.capped() {
                    return stop;
                }
                let v = self.visit_mut();
                v.bucket_retry_used = true;
                let (b, k) = (v.backend, v.bucket);
                slot(&mut self.shared.buckets, &bk.key).stats.refreshes += 1;
                self.decided(Then::Refresh);
                Order::Refresh {
                    backend: b,
                    bucket: k,
                }
            }
            Class::Auth | Class::Forbidden => self.advance_bucket(o),
            _ => self.backend_level(o),
        }
    }

    /// The refresh ordered after a 401 ended: retry the bucket, or advance past it.
    pub(super) fn refreshed(&mut self, ok: bool) -> Order {
        let v = self.visit_mut();
        let (backend, bucket) = (v.backend, v.bucket);
        self.notes.push(Note::Refreshed {
            backend,
            bucket,
            ok,
        });
        if ok {
            return self.send();
        }
        let mut o = Outcome::of(Class::Auth);
        o.status = Some(401);
        self.advance_bucket(&o)
    }

    /// The ordered attempt was not sent: its bucket has no usable credential. Not an attempt
    /// and no circuit matter: the chain moves on to the next bucket, then to the next backend,
    /// whatever `failover_status_codes` says (SPEC §5.3). When the backend had attempts on
    /// other buckets, the last of them decides at the backend level as if the chain had ended
    /// there, with no retry left (every bucket is used up).
    pub(super) fn no_credential(&mut self, why: &str) -> Order {
        let v = self.visit_mut();
        let (b, k) = (v.backend, v.bucket);
        v.tried[k] = true;
        self.notes.push(Note::NoCredential {
            backend: b,
            bucket: k,
            why: why.to_string(),
        });
        self.req.skipped.push(SkipRecord {
            backend: b,
            bucket: Some(k),
            reason: SkipReason::NoCredential,
            until_ms: None,
            why: Some(why.to_string()),
        });
        let v = self.req.visit.as_ref().expect("still visiting");
        if let Some(next) = self.next_bucket(v) {
            self.notes.push(Note::BucketAdvanced {
                backend: b,
                from: k,
                to: next,
            });
            let v = self.visit_mut();
            v.bucket = next;
            v.bucket_retry_used = false;
            return self.send();
        }
        if let (Some(class), Some(status)) =
            (v.last_class, self.req.attempts.last().map(|a| a.status))
        {
            // Every bucket is used up: a retry could only go to a bucket just found without a
            // credential, so none is left; the last answer decides between failover and failing.
            self.visit_mut().retries = self.plan.settings.retry_count;
            let mut o = Outcome::of(class);
            o.status = status;
            return self.backend_level(&o);
        }
        self.leave_unanswered();
        self.move_on(Some(b))
    }

    /// Marks the visit's bucket cooling until `until` (SPEC §5.3); a later end already set
    /// by another request stands.
    fn cool(&mut self, until: u64) {
        if until <= self.now {
            return; // bucket_cooldown_ms = 0: no memory (SPEC §3.2)
        }
        let v = self.req.visit.as_ref().expect("cool() runs during a visit");
        let (b, k) = (v.backend, v.bucket);
        let st = slot(
            &mut self.shared.buckets,
            &self.plan.backends[b].buckets[k].key,
        );
        let until = st.cooldown_until.filter(|&u| u > until).unwrap_or(until);
        st.cooldown_until = Some(until);
        self.notes.push(Note::Cooldown {
            backend: b,
            bucket: k,
            until_ms: until,
        });
    }

    /// Advances the bucket chain; when it is exhausted the backend has failed with this
    /// outcome and the backend level decides (SPEC §5.3).
    fn advance_bucket(&mut self, o: &Outcome) -> Order {
        let v = self.visit_mut();
        v.tried[v.bucket] = true;
        let v = self.req.visit.as_ref().expect("still visiting");
        let Some(next) = self.next_bucket(v) else {
            return self.backend_level(o);
        };
        if let Some(stop) = self.capped() {
            return stop;
        }
        let v = self.visit_mut();
        let (b, from) = (v.backend, v.bucket);
        v.bucket = next;
        v.bucket_retry_used = false;
        self.decided(Then::NextBucket);
        self.notes.push(Note::BucketAdvanced {
            backend: b,
            from,
            to: next,
        });
        self.send()
    }

    /// The next bucket of the visit: the first untried ready one in chain order, else the
    /// untried cooling one whose cooldown ends first (SPEC §5.3, §5.11).
    pub(super) fn next_bucket(&self, visit: &Visit) -> Option<usize> {
        let bp = &self.plan.backends[visit.backend];
        let now = self.now;
        let until = |i: usize| {
            self.shared
                .buckets
                .get(&bp.buckets[i].key)
                .and_then(|b| b.cooldown_until.filter(|&u| now < u))
        };
        let untried = (0..bp.buckets.len()).filter(|&i| !visit.tried[i]);
        untried
            .clone()
            .find(|&i| until(i).is_none())
            .or_else(|| untried.min_by_key(|&i| (until(i), i)))
    }

    /// The current visit.
    pub(super) fn visit_mut(&mut self) -> &mut Visit {
        self.req
            .visit
            .as_mut()
            .expect("the request is visiting a backend")
    }
}
