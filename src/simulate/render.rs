//! Simulate's output (SPEC §9.2): the human timeline, or JSON Lines with one object per engine
//! action and a last `{"summary": …}` line. Deterministic: the same trace prints the same bytes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};

use crate::engine::{Plan, Step};
use crate::narrate;

use super::{BackendSummary, Summary};

/// Writes the timeline as the engine steps.
pub struct Renderer<'a> {
    out: &'a mut dyn Write,
    json: bool,
    error: Option<io::Error>,
    line: String,
}

pub use crate::narrate::secs;

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
        let _ = write!(self.line, "{:>8}  #{id}  ", narrate::Secs(t));
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

    /// One engine step: its notes, then its order (SPEC §9.2), worded by [`crate::narrate`].
    pub fn step(&mut self, t: u64, id: u64, plan: &Plan, step: &Step) {
        if self.json {
            for n in &step.notes {
                let _ = write!(self.line, "{{\"t_ms\":{t},\"request\":{id}");
                narrate::note_json(plan, n, &mut self.line);
                self.line.push_str("}\n");
                self.emit();
            }
            if let Some(o) = &step.next {
                let _ = write!(self.line, "{{\"t_ms\":{t},\"request\":{id}");
                narrate::order_json(plan, o, t, &mut self.line);
                self.line.push_str("}\n");
                self.emit();
            }
            return;
        }
        for n in &step.notes {
            if let Some(at) = narrate::note_time(n, t) {
                self.prefix(at, id);
                narrate::write_note(plan, n, step, t, &mut self.line);
                self.line.push('\n');
                self.emit();
            }
        }
        if let Some(text) = step
            .next
            .as_ref()
            .and_then(|o| narrate::order_line(plan, o, t))
        {
            self.prefix(t, id);
            self.line.push_str(&text);
            self.line.push('\n');
            self.emit();
        }
    }

    /// The summary: a JSON line, or a short table.
    pub fn summary(&mut self, s: &Summary) -> io::Result<()> {
        if !self.json {
            let ok = s.requests.iter().filter(|r| r.result == "ok").count();
            return self.summary_table(s.requests.len() as u64, ok as u64, &s.backends);
        }
        let body = serde_json::to_string(s).expect("the summary is plain data");
        let _ = writeln!(self.line, "{{\"summary\":{body}}}");
        self.emit();
        self.out.flush()?;
        self.take_error()
    }

    /// The human summary: counts and one line per backend.
    pub fn summary_table(
        &mut self,
        requests: u64,
        ok: u64,
        backends: &BTreeMap<String, BackendSummary>,
    ) -> io::Result<()> {
        let _ = writeln!(
            self.line,
            "\nsummary: {requests} requests, {ok} ok, {} failed",
            requests - ok
        );
        let width = backends
            .keys()
            .map(|k| k.chars().count())
            .max()
            .unwrap_or(0);
        for (name, b) in backends {
            let _ = writeln!(
                self.line,
                "  {name:width$}  requests {:>4}  successes {:>4}  circuit {}",
                b.requests, b.successes, b.circuit
            );
        }
        self.emit();
        self.out.flush()?;
        self.take_error()
    }
}
