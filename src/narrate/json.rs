//! The JSON Lines shape of simulate's actions (SPEC §9.2): one object per note or order, names
//! in place of the engine's indices, keys in a fixed order, written straight into a buffer.

use std::fmt::Write as _;

use super::failure;
use crate::engine::{FailKind, Note, Order, Plan, SkipReason, Then};

/// A JSON object under construction, keys in the order written (the shape of SPEC §9.2).
struct Obj<'a>(&'a mut String);

impl Obj<'_> {
    fn key(&mut self, k: &str) {
        self.0.push_str(",\"");
        self.0.push_str(k);
        self.0.push_str("\":");
    }
    fn str(&mut self, k: &str, v: &str) -> &mut Self {
        self.key(k);
        escape(self.0, v);
        self
    }
    fn num(&mut self, k: &str, v: u64) -> &mut Self {
        self.key(k);
        let _ = write!(self.0, "{v}");
        self
    }
    fn bool(&mut self, k: &str, v: bool) -> &mut Self {
        self.key(k);
        self.0.push_str(if v { "true" } else { "false" });
        self
    }
}

/// A JSON string, escaped as serde_json escapes it.
fn escape(out: &mut String, s: &str) {
    out.push('"');
    // Names and most messages need no escaping: copied whole.
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str(s);
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The JSON fields of a note after `"action"` (SPEC §9.2), appended to `out`, which already
/// holds the object's opening and earlier fields.
pub fn note_json(plan: &Plan, note: &Note, out: &mut String) {
    let b = |i: usize| plan.backend_name(i);
    let bk = |i: usize, k: usize| plan.bucket_name(i, k);
    let mut o = Obj(out);
    match note {
        Note::AttemptEnded {
            backend,
            bucket,
            started_ms,
            class,
            status,
            latency_ms,
            then,
        } => {
            o.str("action", "attempt_ended")
                .str("backend", b(*backend))
                .str("bucket", bk(*backend, *bucket))
                .num("started_ms", *started_ms)
                .str("class", class.as_str());
            if let Some(s) = status {
                o.num("status", u64::from(*s));
            }
            o.num("latency_ms", *latency_ms)
                .str("then", then_name(*then));
        }
        Note::BucketAdvanced { backend, from, to } => {
            o.str("action", "bucket_advanced")
                .str("backend", b(*backend))
                .str("from", bk(*backend, *from))
                .str("to", bk(*backend, *to));
        }
        Note::Cooldown {
            backend,
            bucket,
            until_ms,
        } => {
            o.str("action", "cooldown")
                .str("backend", b(*backend))
                .str("bucket", bk(*backend, *bucket))
                .num("until_ms", *until_ms);
        }
        Note::Failover { from, to } => {
            o.str("action", "failover")
                .str("from", b(*from))
                .str("to", b(*to));
        }
        Note::Retry {
            backend,
            retry,
            of,
            delay_ms,
        } => {
            o.str("action", "retry")
                .str("backend", b(*backend))
                .num("retry", u64::from(*retry))
                .num("of", u64::from(*of))
                .num("delay_ms", *delay_ms);
        }
        Note::Skipped {
            backend,
            reason,
            until_ms,
        } => {
            o.str("action", "skipped")
                .str("backend", b(*backend))
                .str("reason", reason.as_str());
            if let Some(u) = until_ms {
                o.num("until_ms", *u);
            }
        }
        Note::NoCredential {
            backend,
            bucket,
            why,
        } => {
            o.str("action", "skipped")
                .str("backend", b(*backend))
                .str("bucket", bk(*backend, *bucket))
                .str("reason", SkipReason::NoCredential.as_str())
                .str("why", why);
        }
        Note::Refreshed {
            backend,
            bucket,
            ok,
        } => {
            o.str("action", "refreshed")
                .str("backend", b(*backend))
                .str("bucket", bk(*backend, *bucket))
                .bool("ok", *ok);
        }
        Note::CircuitOpened { backend, until_ms } => {
            o.str("action", "circuit_opened")
                .str("backend", b(*backend))
                .num("until_ms", *until_ms);
        }
        Note::CircuitHalfOpen { backend } => {
            o.str("action", "circuit_half_open")
                .str("backend", b(*backend));
        }
        Note::CircuitClosed { backend } => {
            o.str("action", "circuit_closed")
                .str("backend", b(*backend));
        }
    }
}

/// The JSON fields of an order after `"action"`, as [`note_json`]; `t` is the step's time.
pub fn order_json(plan: &Plan, order: &Order, t: u64, out: &mut String) {
    let b = |i: usize| plan.backend_name(i);
    let bk = |i: usize, k: usize| plan.bucket_name(i, k);
    let mut o = Obj(out);
    match order {
        Order::Send {
            backend,
            bucket,
            attempt,
            prefill,
        } => {
            o.str("action", "send")
                .str("backend", b(*backend))
                .str("bucket", bk(*backend, *bucket))
                .num("attempt", u64::from(*attempt));
            if *prefill {
                o.bool("prefill", true);
            }
        }
        Order::Refresh { backend, bucket } => {
            o.str("action", "refresh_token")
                .str("backend", b(*backend))
                .str("bucket", bk(*backend, *bucket));
        }
        Order::Wait { until_ms } => {
            o.str("action", "wait_until").num("until_ms", *until_ms);
        }
        Order::Deliver {
            backend,
            bucket,
            tokens,
        } => {
            o.str("action", "deliver")
                .str("backend", b(*backend))
                .str("bucket", bk(*backend, *bucket))
                .num("tokens", *tokens);
        }
        Order::Fail(f) => {
            let kind = match f.kind {
                FailKind::AllSkipped => "all_skipped",
                FailKind::Refused => "refused",
                FailKind::Exhausted => "exhausted",
                FailKind::Interrupted => "interrupted",
            };
            o.str("action", "fail")
                .str("kind", kind)
                .str("error", &failure(plan, f, t));
        }
    }
}

fn then_name(then: Then) -> &'static str {
    match then {
        Then::Deliver => "deliver",
        Then::Retry => "retry",
        Then::WaitRetry => "wait_retry",
        Then::Refresh => "refresh",
        Then::NextBucket => "next_bucket",
        Then::Failover => "failover",
        Then::Fail => "fail",
    }
}
