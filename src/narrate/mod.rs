//! Words for what the engine did: the one place that turns the engine's typed notes, orders
//! and failures (indices into a plan) into names and English — simulate's timeline and JSON
//! Lines (SPEC §9.2), the aggregate error of a failed request (§5.4), and the live notes and
//! log lines of `chat` and `serve` — so they never drift apart.
//!
//! Owns: wording and the JSON shape of actions. Must not: decide anything, or read anything
//! but its arguments.

use std::fmt::Write as _;

mod json;
mod live;

pub use json::{note_json, order_json};
pub use live::{live_line, live_lines};

use crate::engine::{Failure, Headline, Note, Order, Plan, SkipReason, Step, Then};

/// `4.000s` (see [`Secs`] to write it without a `String`).
pub fn secs(ms: u64) -> String {
    format!("{}.{:03}s", ms / 1000, ms % 1000)
}

/// Words for a skip reason.
pub fn skip_reason(reason: SkipReason) -> &'static str {
    match reason {
        SkipReason::CircuitOpen => "circuit open",
        SkipReason::ProbeInFlight => "circuit half-open, probe in flight",
        SkipReason::Tpm => "over its TPM threshold",
        SkipReason::ContextLimit => "context window not larger",
        SkipReason::NoPrefill => "takes no prefill to continue the answer",
        SkipReason::PrefillRejected => "rejected the prefill",
        SkipReason::NoCredential => "no usable credential",
    }
}

/// The aggregate error of a failed request (SPEC §5.4): a headline, then one line per attempt
/// and per backend or bucket passed over. Messages are the provider's, already redacted by
/// the shell. `now` is when the request failed (for "eligible again in").
pub fn failure(plan: &Plan, f: &Failure, now: u64) -> String {
    let last = f.attempts.last();
    let mut msg = match f.headline {
        Headline::EmptyPlan => "the profile has a backend without buckets, or no backend".into(),
        Headline::AllSkipped
            if f.skipped
                .iter()
                .all(|s| s.reason == SkipReason::NoCredential) =>
        {
            "no backend could be tried:".to_string()
        }
        Headline::AllSkipped => "every backend was skipped:".to_string(),
        Headline::Exhausted => format!(
            "all backends failed ({} attempt{})",
            f.attempts.len(),
            if f.attempts.len() == 1 { "" } else { "s" }
        ),
        Headline::MaxAttempts(n) => format!("max_attempts ({n}) reached"),
        // Nothing answered a network error, a timeout or a cut stream: it is not said to
        // have "answered" (SPEC §8.1).
        Headline::Refused => match last {
            Some(a) if a.status.is_none() => format!(
                "{}/{} failed with {} (nothing answered), which does not trigger failover",
                plan.backend_name(a.backend),
                plan.bucket_name(a.backend, a.bucket),
                a.class.as_str()
            ),
            Some(a) => format!(
                "{}/{} answered {}{}, which does not trigger failover",
                plan.backend_name(a.backend),
                plan.bucket_name(a.backend, a.bucket),
                a.class.as_str(),
                a.status.map(|s| format!(" {s}")).unwrap_or_default()
            ),
            None => "the request was refused".to_string(),
        },
        Headline::NoLargerContext => match last {
            Some(a) => format!(
                "the context is too long for {} and no backend with a larger context-limit is left",
                plan.backend_name(a.backend)
            ),
            None => "no backend with a larger context-limit is left".to_string(),
        },
        Headline::Interrupted => match &f.interruption {
            Some(i) => format!(
                "stream interrupted after {} tokens from {}",
                i.tokens,
                plan.backend_name(i.backend)
            ),
            None => "stream interrupted".to_string(),
        },
    };
    let all_skipped = f.headline == Headline::AllSkipped;
    if !all_skipped {
        for (n, a) in f.attempts.iter().enumerate() {
            let _ = write!(
                msg,
                "\n  {}. {}/{}: {}",
                n + 1,
                plan.backend_name(a.backend),
                plan.bucket_name(a.backend, a.bucket),
                a.class.as_str()
            );
            if let Some(s) = a.status {
                let _ = write!(msg, " {s}");
            }
            if let Some(m) = &a.message {
                let first: String = m.lines().next().unwrap_or("").chars().take(200).collect();
                let _ = write!(msg, ": {first}");
            }
        }
    }
    for s in &f.skipped {
        msg.push_str(if all_skipped { "\n  " } else { "\n  skipped " });
        match (s.bucket, &s.why) {
            (Some(k), Some(why)) => {
                let _ = write!(
                    msg,
                    "{}/{}: {why}",
                    plan.backend_name(s.backend),
                    plan.bucket_name(s.backend, k)
                );
            }
            _ => {
                let _ = write!(
                    msg,
                    "{}: {}",
                    plan.backend_name(s.backend),
                    skip_reason(s.reason)
                );
            }
        }
        if let Some(u) = s.until_ms {
            let _ = write!(msg, ", eligible again in {}", secs(u.saturating_sub(now)));
        }
    }
    msg
}

/// The time a note's timeline line belongs at (an attempt's start, else the step's time `t`),
/// or `None` for a note the timeline shows inside its attempt's line (SPEC §9.2).
pub fn note_time(note: &Note, t: u64) -> Option<u64> {
    match note {
        Note::AttemptEnded { started_ms, .. } => Some(*started_ms),
        Note::BucketAdvanced { .. } | Note::Failover { .. } | Note::Retry { .. } => None,
        _ => Some(t),
    }
}

/// Writes a note's timeline text (SPEC §9.2), without its time prefix, into `out`; nothing for
/// a note without a line of its own ([`note_time`] is `None`). `step` is the whole step, for
/// what an attempt led to. Written in place: simulate words every step of every request.
pub fn write_note(plan: &Plan, note: &Note, step: &Step, t: u64, out: &mut String) {
    let b = |i: usize| plan.backend_name(i);
    let bk = |i: usize, k: usize| plan.bucket_name(i, k);
    let _ = match note {
        Note::AttemptEnded {
            backend,
            bucket,
            class,
            status,
            latency_ms,
            then,
            ..
        } => {
            let _ = write!(out, "{}/{}  ", b(*backend), bk(*backend, *bucket));
            if let Some(st) = status {
                let _ = write!(out, "{st} ");
            }
            let _ = write!(out, "{} → ", class.as_str());
            write_then(out, plan, *then, step, t);
            write!(out, "  ({latency_ms} ms)")
        }
        Note::Skipped {
            backend,
            reason,
            until_ms,
        } => {
            let _ = write!(out, "{}  skipped: {}", b(*backend), skip_reason(*reason));
            match until_ms {
                Some(u) => write!(out, " until {}", Secs(*u)),
                None => Ok(()),
            }
        }
        Note::NoCredential {
            backend,
            bucket,
            why,
        } => write!(
            out,
            "{}/{}  skipped: {why}",
            b(*backend),
            bk(*backend, *bucket)
        ),
        Note::Cooldown {
            backend,
            bucket,
            until_ms,
        } => write!(
            out,
            "{}/{}  cooling until {}",
            b(*backend),
            bk(*backend, *bucket),
            Secs(*until_ms)
        ),
        Note::Refreshed {
            backend,
            bucket,
            ok,
        } => write!(
            out,
            "{}/{}  token refresh {}",
            b(*backend),
            bk(*backend, *bucket),
            if *ok { "ok" } else { "failed" }
        ),
        Note::CircuitOpened { backend, until_ms } => write!(
            out,
            "{}  circuit opened until {}",
            b(*backend),
            Secs(*until_ms)
        ),
        Note::CircuitHalfOpen { backend } => write!(
            out,
            "{}  circuit half-open: this request probes it",
            b(*backend)
        ),
        Note::CircuitClosed { backend } => write!(out, "{}  circuit closed", b(*backend)),
        Note::BucketAdvanced { .. } | Note::Failover { .. } | Note::Retry { .. } => Ok(()),
    };
}

/// One timeline line for a note (SPEC §9.2), without its time prefix: the time it belongs at
/// and the text (see [`note_time`] and [`write_note`]).
pub fn note_line(plan: &Plan, note: &Note, step: &Step, t: u64) -> Option<(u64, String)> {
    let at = note_time(note, t)?;
    let mut text = String::new();
    write_note(plan, note, step, t, &mut text);
    Some((at, text))
}

/// `4.000s` without a `String`: `secs(ms)` written where it goes, padding honoured.
pub struct Secs(pub u64);

impl std::fmt::Display for Secs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (s, ms) = (self.0 / 1000, self.0 % 1000);
        let len = s.checked_ilog10().map_or(1, |d| d as usize + 1) + 5;
        let pad = f.width().unwrap_or(0).saturating_sub(len);
        let left = matches!(f.align(), Some(std::fmt::Alignment::Left));
        if !left {
            write!(f, "{:pad$}", "")?;
        }
        write!(f, "{s}.{ms:03}s")?;
        if left {
            write!(f, "{:pad$}", "")?;
        }
        Ok(())
    }
}

/// One timeline line for an ending order (deliver or fail), without its time prefix.
pub fn order_line(plan: &Plan, order: &Order, t: u64) -> Option<String> {
    match order {
        Order::Deliver {
            backend,
            bucket,
            tokens,
        } => Some(format!(
            "ok: {}/{} answered ({tokens} tokens)",
            plan.backend_name(*backend),
            plan.bucket_name(*backend, *bucket)
        )),
        Order::Fail(f) => {
            let error = failure(plan, f, t);
            let mut lines = error.lines();
            let mut s = format!("failed: {}", lines.next().unwrap_or(""));
            for l in lines {
                let _ = write!(s, "\n{:>15}{l}", "");
            }
            Some(s)
        }
        Order::Send { .. } | Order::Refresh { .. } | Order::Wait { .. } => None,
    }
}

/// What an attempt led to, in words, written into `out`.
fn write_then(out: &mut String, plan: &Plan, then: Then, step: &Step, t: u64) {
    let _ = match then {
        Then::Deliver => write!(out, "delivered"),
        Then::Fail => write!(out, "request failed"),
        Then::Refresh => write!(out, "refresh token, then the same bucket again"),
        Then::NextBucket => write!(out, "next bucket"),
        Then::Failover => match step.notes.iter().find_map(|n| match n {
            Note::Failover { to, .. } => Some(*to),
            _ => None,
        }) {
            Some(to) => write!(out, "failover to {}", plan.backend_name(to)),
            None => write!(out, "failover"),
        },
        Then::Retry => match step.notes.iter().find_map(|n| match n {
            Note::Retry {
                retry,
                of,
                delay_ms,
                ..
            } => Some((*retry, *of, *delay_ms)),
            _ => None,
        }) {
            Some((retry, of, delay)) if delay > 0 => {
                write!(out, "retry {retry}/{of} after {}", Secs(delay))
            }
            Some((retry, of, _)) => write!(out, "retry {retry}/{of}"),
            None => write!(out, "retry"),
        },
        Then::WaitRetry => match &step.next {
            Some(Order::Wait { until_ms }) => write!(
                out,
                "wait {} (Retry-After), then the same bucket",
                Secs(until_ms.saturating_sub(t))
            ),
            _ => write!(out, "wait, then the same bucket"),
        },
    };
}

#[cfg(test)]
mod secs_tests {
    use super::{Secs, secs};

    /// `Secs` writes what `secs` returns, padded as asked.
    #[test]
    fn secs_in_place_matches_and_pads() {
        for ms in [0, 7, 999, 1_000, 4_000, 60_300, 123_456_789] {
            assert_eq!(Secs(ms).to_string(), secs(ms));
            assert_eq!(format!("{:>8}", Secs(ms)), format!("{:>8}", secs(ms)));
            assert_eq!(format!("{:<12}|", Secs(ms)), format!("{:<12}|", secs(ms)));
        }
    }
}
