//! Streaming after output began (SPEC §5.8): under `mid_stream: continue` every later attempt
//! continues the partial answer as an assistant prefill. A backend that takes no prefill is
//! passed over without a request (`start::choose_backend`, and `failover::retry_or_move` for
//! the interrupted backend's own retry); one that rejects the prefill is passed over for the
//! rest of the request; when no backend is left the request fails with the original
//! interruption. A pass-over is a note, never an attempt.

use super::Ctx;
use crate::engine::outcome::Class;
use crate::engine::step::{Order, SkipReason};

impl Ctx<'_> {
    /// Backend `b` answered a prefilled attempt with a `client` error: it rejects the prefill.
    /// Not a failover trigger of its own: the backend is passed over for the rest of the
    /// request, and the breaker counts the answer as one (SPEC §5.8).
    pub(super) fn prefill_rejected(&mut self, b: usize) -> Order {
        self.skip(b, SkipReason::PrefillRejected, None);
        self.leave(Class::Client);
        self.move_on(Some(b))
    }
}
