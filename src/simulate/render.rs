//! Simulate's output (SPEC §9.2): the human timeline, or JSON Lines with one object per engine
//! action and a last `{"summary": …}` line. Deterministic: the same trace prints the same bytes.

use std::fmt::Write as _;
use std::io::{self, Write};

use crate::engine::{Action, Plan, Then};

use super::Summary;

/// Writes the timeline as the engine steps.
pub struct Renderer<'a> {
    out: &'a mut dyn Write,
    json: bool,
    error: Option<io::Error>,
    line: String,
}

/// `4.000s`.
pub fn secs(ms: u64) -> String {
    format!("{}.{:03}s", ms / 1000, ms % 1000)
}

impl<'a> Renderer<'a> {
    /// A renderer writing to `out`.
    pub fn new(out: &'a mut dyn Write, json: bool) -> Self {
        Renderer {
            out,
            json,
            error: None,
            line: String::new(),
        }
    }

    /// The first write error, if any (later writes are skipped).
    pub fn take_error(&mut self) -> io::Result<()> {
        self.error.take().map_or(Ok(()), Err)
    }

    fn emit(&mut self) {
        if self.error.is_none()
            && let Err(e) = self.out.write_all(self.line.as_bytes())
        {
            self.error = Some(e);
        }
        self.line.clear();
    }

    fn prefix(&mut self, t: u64, id: u64) {
        let _ = write!(self.line, "{:>8}  #{id}  ", secs(t));
    }

    /// A request starts.
    pub fn start(&mut self, t: u64, id: u64, plan: &Plan) -> io::Result<()> {
        if !self.json {
            self.prefix(t, id);
            let _ = writeln!(self.line, "start ({} {})", plan.policy.as_str(), plan.lb);
            self.emit();
        }
        self.take_error()
    }

    /// One engine step's actions.
    pub fn step(&mut self, t: u64, id: u64, actions: &[Action]) {
        if self.json {
            for a in actions {
                let body = serde_json::to_string(a).expect("actions are plain data");
                let _ = writeln!(self.line, "{{\"t_ms\":{t},\"request\":{id},{}", &body[1..]);
                self.emit();
            }
            return;
        }
        for a in actions {
            match a {
                Action::AttemptEnded {
                    backend,
                    bucket,
                    started_ms,
                    class,
                    status,
                    latency_ms,
                    then,
                } => {
                    self.prefix(*started_ms, id);
                    let _ = write!(self.line, "{backend}/{bucket}  ");
                    if let Some(s) = status {
                        let _ = write!(self.line, "{s} ");
                    }
                    let then_text = describe_then(*then, t, actions);
                    let _ = writeln!(
                        self.line,
                        "{} → {then_text}  ({latency_ms} ms)",
                        class.as_str()
                    );
                }
                Action::Skipped {
                    backend,
                    reason,
                    until_ms,
                } => {
                    self.prefix(t, id);
                    let _ = write!(self.line, "{backend}  skipped: {}", reason.describe());
                    if let Some(u) = until_ms {
                        let _ = write!(self.line, " until {}", secs(*u));
                    }
                    self.line.push('\n');
                }
                Action::Cooldown {
                    backend,
                    bucket,
                    until_ms,
                } => {
                    self.prefix(t, id);
                    let _ = writeln!(
                        self.line,
                        "{backend}/{bucket}  cooling until {}",
                        secs(*until_ms)
                    );
                }
                Action::Refreshed {
                    backend,
                    bucket,
                    ok,
                } => {
                    self.prefix(t, id);
                    let _ = writeln!(
                        self.line,
                        "{backend}/{bucket}  token refresh {}",
                        if *ok { "ok" } else { "failed" }
                    );
                }
                Action::CircuitOpened { backend, until_ms } => {
                    self.prefix(t, id);
                    let _ = writeln!(
                        self.line,
                        "{backend}  circuit opened until {}",
                        secs(*until_ms)
                    );
                }
                Action::CircuitHalfOpen { backend } => {
                    self.prefix(t, id);
                    let _ = writeln!(
                        self.line,
                        "{backend}  circuit half-open: this request probes it"
                    );
                }
                Action::CircuitClosed { backend } => {
                    self.prefix(t, id);
                    let _ = writeln!(self.line, "{backend}  circuit closed");
                }
                Action::Deliver {
                    backend,
                    bucket,
                    tokens,
                } => {
                    self.prefix(t, id);
                    let _ = writeln!(
                        self.line,
                        "ok: {backend}/{bucket} answered ({tokens} tokens)"
                    );
                }
                Action::Fail { error, .. } => {
                    self.prefix(t, id);
                    let mut lines = error.lines();
                    let _ = writeln!(self.line, "failed: {}", lines.next().unwrap_or(""));
                    for l in lines {
                        let _ = writeln!(self.line, "{:>15}{l}", "");
                    }
                }
                Action::Send { .. }
                | Action::RefreshToken { .. }
                | Action::WaitUntil { .. }
                | Action::BucketAdvanced { .. }
                | Action::Failover { .. }
                | Action::Retry { .. } => {}
            }
            if !self.line.is_empty() {
                self.emit();
            }
        }
    }

    /// The summary: a JSON line, or a short table.
    pub fn summary(&mut self, s: &Summary) -> io::Result<()> {
        if self.json {
            let body = serde_json::to_string(s).expect("the summary is plain data");
            let _ = writeln!(self.line, "{{\"summary\":{body}}}");
        } else {
            let ok = s.requests.iter().filter(|r| r.result == "ok").count();
            let _ = writeln!(
                self.line,
                "\nsummary: {} requests, {ok} ok, {} failed",
                s.requests.len(),
                s.requests.len() - ok
            );
            let width = s
                .backends
                .keys()
                .map(|k| k.chars().count())
                .max()
                .unwrap_or(0);
            for (name, b) in &s.backends {
                let _ = writeln!(
                    self.line,
                    "  {name:width$}  requests {:>4}  successes {:>4}  circuit {}",
                    b.requests, b.successes, b.circuit
                );
            }
        }
        self.emit();
        self.out.flush()?;
        self.take_error()
    }
}

fn describe_then(then: Then, t: u64, actions: &[Action]) -> String {
    match then {
        Then::Deliver => "delivered".into(),
        Then::Fail => "request failed".into(),
        Then::Refresh => "refresh token, then the same bucket again".into(),
        Then::NextBucket => actions
            .iter()
            .find_map(|a| match a {
                Action::BucketAdvanced { .. } => Some("next bucket".to_string()),
                _ => None,
            })
            .unwrap_or_else(|| "next bucket".into()),
        Then::Failover => actions
            .iter()
            .find_map(|a| match a {
                Action::Failover { to, .. } => Some(format!("failover to {to}")),
                _ => None,
            })
            .unwrap_or_else(|| "failover".into()),
        Then::Retry => actions
            .iter()
            .find_map(|a| match a {
                Action::Retry {
                    retry,
                    of,
                    delay_ms,
                    ..
                } if *delay_ms > 0 => Some(format!("retry {retry}/{of} after {}", secs(*delay_ms))),
                Action::Retry { retry, of, .. } => Some(format!("retry {retry}/{of}")),
                _ => None,
            })
            .unwrap_or_else(|| "retry".into()),
        Then::WaitRetry => actions
            .iter()
            .find_map(|a| match a {
                Action::WaitUntil { until_ms } => Some(format!(
                    "wait {} (Retry-After), then the same bucket",
                    secs(until_ms.saturating_sub(t))
                )),
                _ => None,
            })
            .unwrap_or_else(|| "wait, then the same bucket".into()),
    }
}
