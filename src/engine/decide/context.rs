//! Context-length errors (SPEC §5.5, §5.11 "context length"): the request moves to a backend
//! with a larger `context-limit`; backends at or below the failing limit stay out of it.

use super::Ctx;
use crate::engine::outcome::Class;
use crate::engine::step::{Headline, Order};

impl Ctx<'_> {
    /// Backend `b` said the context was too long.
    pub(super) fn context_too_long(&mut self, b: usize) -> Order {
        if !self.plan.settings.on_context_length {
            return self.fail(Headline::Refused);
        }
        let limit = self.plan.backends[b].context_limit;
        self.req.context_floor = Some(self.req.context_floor.map_or(limit, |f| f.max(limit)));
        // The backend answered: no circuit failure is recorded (SPEC §5.5).
        self.leave(Class::ContextLength);
        self.move_on(Some(b))
    }

    /// Whether backend `b` is out of this request for its context window.
    pub(super) fn below_context_floor(&self, b: usize) -> bool {
        self.req
            .context_floor
            .is_some_and(|floor| self.plan.backends[b].context_limit <= floor)
    }

    /// Whether the request ends because no larger window is left (the last outcome said the
    /// context was too long).
    pub(super) fn out_of_context(&self) -> bool {
        self.req.context_floor.is_some()
            && self
                .req
                .attempts
                .last()
                .is_some_and(|a| a.class == Class::ContextLength)
    }
}
