//! One conversation turn through the engine and the HTTP shell: the single path both the
//! one-shot `llxprt chat PROMPT` and the interactive session use (SPEC §8.1).
//!
//! Owns: running [`crate::driver::drive`] with an [`HttpExec`] over the shared state file, and
//! reporting how the turn ended (answer, attempts, who served it). Must not: print (the sink
//! and the callers do), or change the history (the session does).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use crate::clock::now_ms;
use crate::conversation::notes::state_warning;
use crate::conversation::prepare::Prepared;
use crate::driver::{self, Ending};
use crate::record::{Recorder, RecordingExec};
use crate::shell::http::{Answer, AnswerSink, AttemptInfo, HttpExec};
use crate::shell::protocol::{StoredReasoning, Turn};
use crate::state_file::SharedStore;

/// Who delivered an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// Backend profile.
    pub backend: String,
    /// Bucket.
    pub bucket: String,
    /// Canonical provider name.
    pub provider: &'static str,
    /// Model id.
    pub model: String,
    /// The backend's `reasoning.includeInContext` (SPEC §5.8).
    pub keep_reasoning: bool,
    /// The backend's `reasoning.includeInResponse` (SPEC §3.1): whether its reasoning is
    /// shown to the user (`--json`'s `"reasoning"`).
    pub show_reasoning: bool,
}

/// How a turn ended.
#[derive(Debug)]
pub struct TurnOutcome {
    /// The engine's ending.
    pub ending: Ending,
    /// The delivered answer (meaningful when delivered).
    pub answer: Answer,
    /// Every attempt.
    pub attempts: Vec<AttemptInfo>,
    /// Malformed stream events skipped.
    pub malformed: u64,
    /// Wall time of the turn (ms).
    pub elapsed_ms: u128,
    /// Who delivered, when delivered.
    pub served: Option<Served>,
    /// Why `--record` could not write its trace, if it could not.
    pub record_error: Option<String>,
    /// What the state file said while the turn ran (a file not JSON or over its limit and
    /// started afresh, entries dropped), as warnings to show.
    pub state_warnings: Vec<String>,
}

impl TurnOutcome {
    /// The `served by …` line of SPEC §8.1, when delivered.
    pub fn served_line(&self) -> Option<String> {
        self.served.as_ref().map(|s| {
            format!(
                "served by {}/{} ({} {}, {} ms, {} tokens)",
                s.backend,
                s.bucket,
                s.provider,
                s.model,
                self.elapsed_ms,
                self.answer.usage.total()
            )
        })
    }

    /// The notes to show after a turn: skipped malformed stream events (SPEC §5.8), a trace
    /// that could not be written, what the state file said.
    pub fn notes(&self) -> Vec<String> {
        let mut v: Vec<String> = self.malformed_note().into_iter().collect();
        if let Some(e) = &self.record_error {
            v.push(format!("warning: cannot write the trace: {e}"));
        }
        v.extend(self.state_warnings.iter().map(|w| state_warning(w)));
        v
    }

    /// The note about skipped malformed stream events (SPEC §5.8), if any were.
    pub fn malformed_note(&self) -> Option<String> {
        (self.malformed > 0).then(|| {
            format!(
                "note: {} malformed stream event{} skipped",
                self.malformed,
                if self.malformed == 1 { "" } else { "s" }
            )
        })
    }

    /// The reasoning to store with the reply: only when the serving backend's
    /// `reasoning.includeInContext` is on (SPEC §5.8).
    pub fn reasoning_to_keep(&self) -> Option<StoredReasoning> {
        let served = self.served.as_ref().filter(|s| s.keep_reasoning)?;
        let text = self.answer.reasoning.clone()?;
        Some(StoredReasoning {
            provider: served.provider.to_string(),
            text,
            signature: self.answer.signature.clone(),
        })
    }

    /// The reasoning to show the user (`--json`'s `"reasoning"`, SPEC §8.1): only when the
    /// serving backend's `reasoning.includeInResponse` is on (SPEC §3.1). Hidden reasoning is
    /// still kept for the history when `reasoning.includeInContext` says so
    /// ([`TurnOutcome::reasoning_to_keep`]).
    pub fn shown_reasoning(&self) -> Option<&str> {
        self.served.as_ref().filter(|s| s.show_reasoning)?;
        self.answer.reasoning.as_deref()
    }
}

fn request_id() -> u64 {
    // Unique across processes sharing the state file (a probe names its request).
    (u64::from(std::process::id()) << 32) | (now_ms() & 0xffff_ffff)
}

/// Runs one turn: `turns` is the whole history ending with the user's message; every attempt
/// sends it, trimmed per backend to the context budget (SPEC §5.8).
pub fn run_turn(
    root: &Path,
    prepared: &Prepared,
    turns: &[Turn],
    sink: &mut dyn AnswerSink,
    cancel: Arc<AtomicBool>,
    recorder: Option<&mut Recorder>,
) -> TurnOutcome {
    let mut state = SharedStore::open(root);
    let getenv = |k: &str| std::env::var(k).ok();
    let mut exec = HttpExec::new(
        root.to_path_buf(),
        &prepared.backends,
        turns,
        prepared.plan.settings.mid_stream,
        sink,
        cancel,
        &getenv,
    );
    let started = Instant::now();
    let now = now_ms();
    let mut record_error = None;
    let ending = match recorder {
        Some(rec) => {
            rec.prepare(&prepared.plan, &prepared.backends);
            rec.request(now, None);
            let mut wrapped = RecordingExec {
                inner: &mut exec,
                recorder: rec,
            };
            let ending = driver::drive(&mut state, &mut wrapped, request_id(), &prepared.plan, now);
            // SPEC §9.2: the file is rewritten atomically after each request.
            record_error = wrapped.recorder.write().err().map(|e| e.to_string());
            ending
        }
        None => driver::drive(&mut state, &mut exec, request_id(), &prepared.plan, now),
    };
    let answer = exec.answer();
    let attempts = std::mem::take(&mut exec.attempts);
    let malformed = exec.malformed;
    let served = match &ending {
        Ending::Delivered {
            backend, bucket, ..
        } => prepared
            .backends
            .iter()
            .find(|b| &b.name == backend)
            .map(|b| Served {
                backend: backend.clone(),
                bucket: bucket.clone(),
                provider: b.profile.provider_info().name,
                model: b.profile.model.clone(),
                keep_reasoning: b
                    .settings
                    .settings
                    .reasoning_include_in_context
                    .unwrap_or(false),
                show_reasoning: crate::shell::http::show_reasoning(b),
            }),
        _ => None,
    };
    let state_warnings = state.take_warnings();
    TurnOutcome {
        record_error,
        state_warnings,
        ending,
        answer,
        attempts,
        malformed,
        elapsed_ms: started.elapsed().as_millis(),
        served,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(show: bool, keep: bool) -> TurnOutcome {
        TurnOutcome {
            ending: Ending::Delivered {
                backend: "a".into(),
                bucket: "default".into(),
                tokens: 3,
                at: 0,
            },
            answer: Answer {
                text: "42".into(),
                reasoning: Some("thinking".into()),
                ..Answer::default()
            },
            attempts: Vec::new(),
            malformed: 0,
            elapsed_ms: 1,
            served: Some(Served {
                backend: "a".into(),
                bucket: "default".into(),
                provider: "openai",
                model: "m".into(),
                keep_reasoning: keep,
                show_reasoning: show,
            }),
            record_error: None,
            state_warnings: Vec::new(),
        }
    }

    #[test]
    fn hidden_reasoning_is_not_shown_but_still_kept_for_the_history() {
        assert_eq!(outcome(true, false).shown_reasoning(), Some("thinking"));
        let hidden = outcome(false, true);
        assert_eq!(hidden.shown_reasoning(), None);
        assert_eq!(
            hidden.reasoning_to_keep().map(|r| r.text),
            Some("thinking".to_string())
        );
        let mut failed = outcome(true, false);
        failed.served = None;
        assert_eq!(failed.shown_reasoning(), None);
    }
}
