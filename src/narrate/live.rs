//! The live notes of `chat` (SPEC §8.1 "What the engine does is shown as it happens"): one
//! line per engine note, in the words of the simulate timeline (§9.2) — class names, `next
//! bucket`, `failover to`, `retry n/m`, the skip reasons — but with waits told as durations
//! from now (`in 2.0 s`) instead of the timeline's absolute clock.
//!
//! Decisions where SPEC is silent (docs/decisions.md):
//! - An attempt is named `backend/bucket` when the backend has named buckets, and by the
//!   backend alone when its only bucket is the implicit `default`; a bucket passed over for
//!   want of a credential is always named with its bucket (the credential is the bucket's).
//! - The class follows the status only when the status does not already say it: `429
//!   rate_limit` (a 429 may be `quota`), `400 context_length`, `network`; but `503`, `401`,
//!   `402`, `403` alone (always `server`, `auth`, `quota`, `forbidden`).
//! - An attempt that delivers or ends the request prints nothing: the `served by` line or the
//!   error says it. An attempt that fails over prints its outcome, then the failover note its
//!   own `→ failover to …` line. A bucket advance or a retry already told on the attempt's
//!   line is not told twice.

use std::fmt::Write as _;

use super::skip_reason;
use crate::engine::{Class, Note, Order, Plan, Step, Then};

/// `2.0 s`: a wait, to a tenth of a second.
pub fn wait(ms: u64) -> String {
    format!("{}.{} s", ms / 1000, (ms % 1000) / 100)
}

/// Who an attempt went to: `backend/bucket`, or the backend alone for its implicit bucket.
fn target(plan: &Plan, backend: usize, bucket: usize) -> String {
    let implicit = plan
        .backends
        .get(backend)
        .is_some_and(|b| b.buckets.len() == 1 && b.buckets[0].name == "default");
    if implicit {
        plan.backend_name(backend).to_string()
    } else {
        format!(
            "{}/{}",
            plan.backend_name(backend),
            plan.bucket_name(backend, bucket)
        )
    }
}

/// Whether a status alone names its class (SPEC §4), so the class word would only repeat it.
fn status_says(status: u16, class: Class) -> bool {
    matches!(
        (status, class),
        (401, Class::Auth) | (402, Class::Quota) | (403, Class::Forbidden)
    ) || ((500..600).contains(&status) && class == Class::Server)
}

/// One live line for a note of `step` at time `t` (the step's time), or `None` when the note
/// is not shown live (see the module doc).
pub fn live_line(plan: &Plan, note: &Note, step: &Step, t: u64) -> Option<String> {
    let line = match note {
        Note::AttemptEnded {
            backend,
            bucket,
            class,
            status,
            then,
            ..
        } => {
            let mut s = target(plan, *backend, *bucket);
            match status {
                Some(st) if status_says(*st, *class) => {
                    let _ = write!(s, " {st}");
                }
                Some(st) => {
                    let _ = write!(s, " {st} {}", class.as_str());
                }
                None => {
                    let _ = write!(s, " {}", class.as_str());
                }
            }
            match then {
                Then::Deliver | Then::Fail => return None,
                Then::Failover => {}
                Then::NextBucket => {
                    s.push_str(" → next bucket");
                    if let Some(to) = step.notes.iter().find_map(|n| match n {
                        Note::BucketAdvanced { backend: b, to, .. } if b == backend => Some(*to),
                        _ => None,
                    }) {
                        let _ = write!(s, " ({})", plan.bucket_name(*backend, to));
                    }
                }
                Then::Retry => {
                    let retry = step.notes.iter().find_map(|n| match n {
                        Note::Retry {
                            retry,
                            of,
                            delay_ms,
                            ..
                        } => Some((*retry, *of, *delay_ms)),
                        _ => None,
                    });
                    match retry {
                        Some((r, of, d)) if d > 0 => {
                            let _ = write!(s, " → retry {r}/{of} in {}", wait(d));
                        }
                        Some((r, of, _)) => {
                            let _ = write!(s, " → retry {r}/{of}");
                        }
                        None => s.push_str(" → retry"),
                    }
                }
                Then::WaitRetry => match &step.next {
                    Some(Order::Wait { until_ms }) => {
                        let _ = write!(
                            s,
                            " → same bucket again in {} (Retry-After)",
                            wait(until_ms.saturating_sub(t))
                        );
                    }
                    _ => s.push_str(" → same bucket again (Retry-After)"),
                },
                Then::Refresh => s.push_str(" → refresh token, then the same bucket again"),
            }
            s
        }
        Note::BucketAdvanced { backend, to, .. } => {
            let told = step.notes.iter().any(|n| {
                matches!(n, Note::AttemptEnded { backend: b, then: Then::NextBucket, .. } if b == backend)
            });
            if told {
                return None;
            }
            format!("→ next bucket ({})", plan.bucket_name(*backend, *to))
        }
        Note::Retry { .. } => return None,
        Note::Failover { to, .. } => format!("→ failover to {}", plan.backend_name(*to)),
        Note::Skipped {
            backend,
            reason,
            until_ms,
        } => {
            let mut s = format!(
                "{} skipped: {}",
                plan.backend_name(*backend),
                skip_reason(*reason)
            );
            if let Some(u) = until_ms {
                let _ = write!(s, ", eligible again in {}", wait(u.saturating_sub(t)));
            }
            s
        }
        Note::NoCredential {
            backend,
            bucket,
            why,
        } => format!(
            "{}/{} skipped: {why}",
            plan.backend_name(*backend),
            plan.bucket_name(*backend, *bucket)
        ),
        Note::Cooldown {
            backend,
            bucket,
            until_ms,
        } => format!(
            "{}/{} cooling down for {}",
            plan.backend_name(*backend),
            plan.bucket_name(*backend, *bucket),
            wait(until_ms.saturating_sub(t))
        ),
        Note::Refreshed {
            backend,
            bucket,
            ok,
        } => format!(
            "{}/{} token refresh {}",
            plan.backend_name(*backend),
            plan.bucket_name(*backend, *bucket),
            if *ok { "ok" } else { "failed" }
        ),
        Note::CircuitOpened { backend, until_ms } => format!(
            "{} circuit opened for {}",
            plan.backend_name(*backend),
            wait(until_ms.saturating_sub(t))
        ),
        Note::CircuitHalfOpen { backend } => format!(
            "{} circuit half-open: this request probes it",
            plan.backend_name(*backend)
        ),
        Note::CircuitClosed { backend } => {
            format!("{} circuit closed", plan.backend_name(*backend))
        }
    };
    Some(line)
}

/// Every live line of a step, in the order of its notes.
pub fn live_lines(plan: &Plan, step: &Step, t: u64) -> Vec<String> {
    step.notes
        .iter()
        .filter_map(|n| live_line(plan, n, step, t))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{BackendPlan, BucketPlan, FailoverSettings, Policy};

    fn backend(name: &str, buckets: &[&str]) -> BackendPlan {
        BackendPlan {
            name: name.into(),
            provider: "openai".into(),
            model: "m".into(),
            fingerprint: String::new(),
            buckets: buckets
                .iter()
                .map(|b| BucketPlan {
                    name: (*b).into(),
                    key: format!("openai/{b}"),
                    oauth: false,
                    refreshable: false,
                })
                .collect(),
            context_limit: 0,
            accepts_prefill: false,
        }
    }

    /// The seed recipe's chain: claude-ha (two team buckets), openai-backup, gemini-fallback.
    fn plan() -> Plan {
        Plan {
            lb: "ha".into(),
            policy: Policy::Failover,
            backends: vec![
                backend("claude-ha", &["team1", "team2"]),
                backend("openai-backup", &["default"]),
                backend("gemini-fallback", &["default"]),
                backend("a", &["default"]),
            ],
            settings: FailoverSettings::default(),
        }
    }

    fn ended(backend: usize, bucket: usize, class: Class, status: Option<u16>, then: Then) -> Note {
        Note::AttemptEnded {
            backend,
            bucket,
            started_ms: 0,
            class,
            status,
            latency_ms: 12,
            then,
        }
    }

    fn lines(notes: Vec<Note>, next: Option<Order>, t: u64) -> Vec<String> {
        live_lines(&plan(), &Step { notes, next }, t)
    }

    #[test]
    fn the_specs_examples() {
        // SPEC §8.1: `claude-ha/team1 429 rate_limit → next bucket (team2)`.
        let step = lines(
            vec![
                ended(0, 0, Class::RateLimit, Some(429), Then::NextBucket),
                Note::Cooldown {
                    backend: 0,
                    bucket: 0,
                    until_ms: 61_000,
                },
                Note::BucketAdvanced {
                    backend: 0,
                    from: 0,
                    to: 1,
                },
            ],
            None,
            1_000,
        );
        assert_eq!(
            step,
            [
                "claude-ha/team1 429 rate_limit → next bucket (team2)",
                "claude-ha/team1 cooling down for 60.0 s",
            ]
        );
        // `openai-backup 503 → retry 1/2 in 2.0 s`.
        let step = lines(
            vec![
                ended(1, 0, Class::Server, Some(503), Then::Retry),
                Note::Retry {
                    backend: 1,
                    retry: 1,
                    of: 2,
                    delay_ms: 2_000,
                },
            ],
            Some(Order::Wait { until_ms: 3_000 }),
            1_000,
        );
        assert_eq!(step, ["openai-backup 503 → retry 1/2 in 2.0 s"]);
        // `→ failover to gemini-fallback`, after the attempt's own line.
        let step = lines(
            vec![
                ended(1, 0, Class::Server, Some(503), Then::Failover),
                Note::Failover { from: 1, to: 2 },
            ],
            None,
            0,
        );
        assert_eq!(step, ["openai-backup 503", "→ failover to gemini-fallback"]);
        // A bucket without a key: `a/default skipped: no key: ~/.openai_key not found`.
        let step = lines(
            vec![Note::NoCredential {
                backend: 3,
                bucket: 0,
                why: "no key: ~/.openai_key not found".into(),
            }],
            None,
            0,
        );
        assert_eq!(step, ["a/default skipped: no key: ~/.openai_key not found"]);
    }

    #[test]
    fn skips_circuits_and_classes_the_status_does_not_say() {
        let step = lines(
            vec![
                Note::Skipped {
                    backend: 1,
                    reason: crate::engine::SkipReason::CircuitOpen,
                    until_ms: Some(31_000),
                },
                Note::Failover { from: 1, to: 2 },
                ended(2, 0, Class::Network, None, Then::Failover),
                Note::CircuitOpened {
                    backend: 2,
                    until_ms: 61_000,
                },
            ],
            None,
            1_000,
        );
        assert_eq!(
            step,
            [
                "openai-backup skipped: circuit open, eligible again in 30.0 s",
                "→ failover to gemini-fallback",
                "gemini-fallback network",
                "gemini-fallback circuit opened for 60.0 s",
            ]
        );
    }

    #[test]
    fn a_healthy_request_and_the_ending_attempt_print_nothing() {
        let ok = lines(
            vec![ended(1, 0, Class::Success, Some(200), Then::Deliver)],
            Some(Order::Deliver {
                backend: 1,
                bucket: 0,
                tokens: 3,
            }),
            0,
        );
        assert!(ok.is_empty(), "{ok:?}");
        let refused = lines(
            vec![ended(1, 0, Class::Client, Some(400), Then::Fail)],
            None,
            0,
        );
        assert!(refused.is_empty(), "{refused:?}");
    }
}
