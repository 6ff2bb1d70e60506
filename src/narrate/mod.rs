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

/// `4.000s`.
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

/// One timeline line for a note (SPEC §9.2), without its time prefix: the time it belongs at
/// (an attempt's start, else the step's time `t`) and the text. `step` is the whole step, for
/// what an attempt led to.
pub fn note_line(plan: &Plan, note: &Note, step: &Step, t: u64) -> Option<(u64, String)> {
    let b = |i: usize| plan.backend_name(i);
    let bk = |i: usize, k: usize| plan.bucket_name(i, k);
    let line = match note {
        Note::AttemptEnded {
            backend,
            bucket,
            started_ms,
            class,
            status,
            latency_ms,
            then,
        } => {
            let mut s = format!("{}/{}  ", b(*backend), bk(*backend, *bucket));
            if let Some(st) = status {
                let _ = write!(s, "{st} ");
            }
            let _ = write!(
                s,
                "{} → {}  ({latency_ms} ms)",
                class.as_str(),
                then_text(plan, *then, step, t)
            );
            return Some((*started_ms, s));
        }
        Note::Skipped {
            backend,
            reason,
            until_ms,
        } => {
            let mut s = format!("{}  skipped: {}", b(*backend), skip_reason(*reason));
            if let Some(u) = until_ms {
                let _ = write!(s, " until {}", secs(*u));
            }
            s
        }
        Note::NoCredential {
            backend,
            bucket,
            why,
        } => format!("{}/{}  skipped: {why}", b(*backend), bk(*backend, *bucket)),
        Note::Cooldown {
            backend,
            bucket,
            until_ms,
        } => format!(
            "{}/{}  cooling until {}",
            b(*backend),
            bk(*backend, *bucket),
            secs(*until_ms)
        ),
        Note::Refreshed {
            backend,
            bucket,
            ok,
        } => format!(
            "{}/{}  token refresh {}",
            b(*backend),
            bk(*backend, *bucket),
            if *ok { "ok" } else { "failed" }
        ),
        Note::CircuitOpened { backend, until_ms } => {
            format!("{}  circuit opened until {}", b(*backend), secs(*until_ms))
        }
        Note::CircuitHalfOpen { backend } => {
            format!("{}  circuit half-open: this request probes it", b(*backend))
        }
        Note::CircuitClosed { backend } => format!("{}  circuit closed", b(*backend)),
        Note::BucketAdvanced { .. } | Note::Failover { .. } | Note::Retry { .. } => return None,
    };
    Some((t, line))
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

/// What an attempt led to, in words.
fn then_text(plan: &Plan, then: Then, step: &Step, t: u64) -> String {
    match then {
        Then::Deliver => "delivered".into(),
        Then::Fail => "request failed".into(),
        Then::Refresh => "refresh token, then the same bucket again".into(),
        Then::NextBucket => "next bucket".into(),
        Then::Failover => step
            .notes
            .iter()
            .find_map(|n| match n {
                Note::Failover { to, .. } => {
                    Some(format!("failover to {}", plan.backend_name(*to)))
                }
                _ => None,
            })
            .unwrap_or_else(|| "failover".into()),
        Then::Retry => step
            .notes
            .iter()
            .find_map(|n| match n {
                Note::Retry {
                    retry,
                    of,
                    delay_ms,
                    ..
                } if *delay_ms > 0 => Some(format!("retry {retry}/{of} after {}", secs(*delay_ms))),
                Note::Retry { retry, of, .. } => Some(format!("retry {retry}/{of}")),
                _ => None,
            })
            .unwrap_or_else(|| "retry".into()),
        Then::WaitRetry => match &step.next {
            Some(Order::Wait { until_ms }) => format!(
                "wait {} (Retry-After), then the same bucket",
                secs(until_ms.saturating_sub(t))
            ),
            _ => "wait, then the same bucket".into(),
        },
    }
}
