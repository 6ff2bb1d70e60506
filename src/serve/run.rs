//! One `serve` request through the one loop (SPEC §5.1, §8.3): [`crate::driver::drive`] with
//! the HTTP executor ([`HttpExec`]), exactly as `chat` runs a turn, over the engine state that
//! every connection shares.
//!
//! Owns: the shared engine state of the process — the requests in flight of every thread and
//! the persisted state, kept by [`LeasedState`] (SPEC §5.9: each step under the file's lock, on
//! the newest state, written by group commit off the request's path) or by a state server
//! ([`RedisState`], SPEC §5.9.1: one transaction per step) — unique request ids, and noting which backend an attempt
//! is on (for the sink) and when a cooling bucket or skipped backend is ready again (for
//! `Retry-After`). Must not: decide anything; every order comes from the engine.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use serde_json::Value;

use super::record::Recording;
use super::sink::{Serving, ServingCell};
use crate::clock::now_ms;
use crate::conversation::prepare::Prepared;
use crate::driver::Attempted;
use crate::driver::{self, Ending, Executor};
use crate::driver::{StateStore, StoreFailed};
use crate::engine::Event;
use crate::engine::state::SharedState;
use crate::engine::{Note, Plan, RequestId, Step};
use crate::profile::resolve::ResolvedBackend;
use crate::record::RecordingExec;
use crate::shell::http::{Answer, AnswerSink, AttemptInfo, HttpExec};
use crate::shell::protocol::Turn;
use crate::state_file::LeasedState;
use crate::state_file::redis::{RedisState, StateUrl};

/// Where the process's shared state lives: the state file by group commit, or a state server
/// (SPEC §5.9.1), one transaction per step.
enum Persisted {
    File(LeasedState),
    Redis(Box<RedisState>),
}

/// A step through a shared reference, for [`driver::drive`].
impl StateStore for &Persisted {
    fn step(&mut self, event: &Event) -> Result<Step, StoreFailed> {
        Ok(match self {
            Persisted::File(f) => f.step(event),
            Persisted::Redis(r) => r.step(event),
        })
    }
}

/// The engine state all connections share.
pub struct Engine {
    state: Persisted,
    next: AtomicU32,
}

impl Engine {
    /// The engine over `<root>/state/state.json`, or over the state server that
    /// `LLXPRT_STATE_URL` or `settings.json` names (SPEC §5.9.1); its write failures and
    /// degraded-mode messages reported through `report`; returns the keys of the file that
    /// were dropped because they did not parse (to be reported once). A state URL that cannot
    /// be used is an error (no secret in it).
    pub fn new(
        root: &Path,
        report: impl Fn(&str) + Send + Sync + 'static,
    ) -> Result<(Engine, Vec<String>), String> {
        let getenv = |k: &str| std::env::var(k).ok();
        let (state, warnings) = match crate::state_file::state_url(root, &getenv)? {
            None => {
                let state = LeasedState::open(root, report);
                let warnings = state.take_warnings();
                (Persisted::File(state), warnings)
            }
            Some(url) => {
                let r = StateUrl::parse(&url)
                    .and_then(|u| RedisState::open(u, Some(Box::new(report))))?;
                // Connect now (or go degraded now, said once), not on the first request.
                let _ = r.snapshot();
                let warnings = r.take_warnings();
                (Persisted::Redis(Box::new(r)), warnings)
            }
        };
        Ok((
            Engine {
                state,
                next: AtomicU32::new(1),
            },
            warnings,
        ))
    }

    /// Writes the state's last steps (at shutdown).
    pub fn close(&self) {
        if let Persisted::File(f) = &self.state {
            f.close();
        }
    }

    /// Why the shared state is kept in this process for now, if it is (a state server that
    /// does not answer, SPEC §5.9.1), for `/health`.
    pub fn degraded(&self) -> Option<String> {
        match &self.state {
            Persisted::File(_) => None,
            Persisted::Redis(r) => r.degraded(),
        }
    }

    /// A fresh request id: the process id and a counter, so it is unique among the requests
    /// of this process and of any other process sharing the state file (a probe names its
    /// request, SPEC §5.6).
    pub fn next_id(&self) -> RequestId {
        (u64::from(std::process::id()) << 32) | u64::from(self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// The shared state, as it is now.
    pub fn shared(&self) -> SharedState {
        match &self.state {
            Persisted::File(f) => f.snapshot(),
            Persisted::Redis(r) => r.snapshot(),
        }
    }
}

/// Forwards to the executor and notes what the caller needs to report the request.
struct Watch<'b, E: Executor> {
    inner: E,
    backends: &'b [ResolvedBackend],
    serving: ServingCell,
    retry_at: Option<u64>,
}

impl<E: Executor> Executor for Watch<'_, E> {
    fn send(
        &mut self,
        now: u64,
        request: RequestId,
        plan: &Plan,
        backend: usize,
        bucket: usize,
        prefill: bool,
    ) -> (u64, Attempted) {
        let model = self
            .backends
            .get(backend)
            .map(|b| b.profile.model.clone())
            .unwrap_or_default();
        *self.serving.borrow_mut() = Serving {
            backend: plan.backend_name(backend).to_string(),
            bucket: plan.bucket_name(backend, bucket).to_string(),
            model,
        };
        self.inner
            .send(now, request, plan, backend, bucket, prefill)
    }
    fn refresh(
        &mut self,
        now: u64,
        request: RequestId,
        plan: &Plan,
        backend: usize,
        bucket: usize,
    ) -> (u64, bool) {
        self.inner.refresh(now, request, plan, backend, bucket)
    }
    fn wait_until(&mut self, now: u64, until: u64) -> Option<u64> {
        self.inner.wait_until(now, until)
    }
    fn observe(&mut self, now: u64, request: RequestId, plan: &Plan, step: &Step) {
        for n in &step.notes {
            let until = match n {
                Note::Cooldown { until_ms, .. } => Some(*until_ms),
                Note::Skipped { until_ms, .. } => *until_ms,
                _ => None,
            };
            if let Some(u) = until {
                self.retry_at = Some(self.retry_at.map_or(u, |r| r.min(u)));
            }
        }
        self.inner.observe(now, request, plan, step);
    }
    fn cancelled(&self) -> bool {
        self.inner.cancelled()
    }
}

/// What one request runs.
pub struct Job<'a> {
    /// The llxprt root (credentials).
    pub root: &'a Path,
    /// The plan and backends.
    pub prepared: &'a Prepared,
    /// The conversation.
    pub turns: &'a [Turn],
    /// Messages to send as given (pass-through).
    pub raw_messages: Option<&'a [Value]>,
    /// The request id.
    pub id: RequestId,
    /// Set when the client went away.
    pub cancel: Arc<AtomicBool>,
    /// The backend of the attempt in progress, shared with the sink.
    pub serving: ServingCell,
}

/// How a request ended.
#[derive(Debug)]
pub struct Finished {
    /// The engine's ending.
    pub ending: Ending,
    /// The delivered answer (when delivered).
    pub answer: Answer,
    /// Every attempt.
    pub attempts: Vec<AttemptInfo>,
    /// Malformed stream events skipped.
    pub malformed: u64,
    /// The earliest time a cooling bucket or skipped backend is ready again (ms).
    pub retry_at: Option<u64>,
    /// Why `--record` could not write, if it could not.
    pub record_error: Option<String>,
}

/// Runs one request to its end.
pub fn run(
    engine: &Engine,
    job: &Job<'_>,
    sink: &mut dyn AnswerSink,
    recording: Option<&Recording>,
) -> Finished {
    let getenv = |k: &str| std::env::var(k).ok();
    let backends = &job.prepared.backends;
    let mut exec = HttpExec::new(
        job.root.to_path_buf(),
        backends,
        job.turns,
        job.prepared.plan.settings.mid_stream,
        sink,
        job.cancel.clone(),
        &getenv,
    );
    if let Some(raw) = job.raw_messages {
        exec = exec.with_raw_messages(raw);
    }
    let mut watch = Watch {
        inner: &mut exec,
        backends,
        serving: job.serving.clone(),
        retry_at: None,
    };
    let mut store = &engine.state;
    let plan = job.prepared.plan.clone();
    let now = now_ms();
    let mut record_error = None;
    let ending = if let Some(rec) = recording {
        let (ticket, mut recorder) = rec.start(now);
        recorder.prepare(&plan, backends);
        let mut wrapped = RecordingExec {
            inner: &mut watch,
            recorder: &mut recorder,
        };
        let ending = driver::drive(&mut store, &mut wrapped, job.id, &plan, now);
        // SPEC §9.2: the file is rewritten atomically after each request.
        record_error = rec.finish(ticket, &recorder).err().map(|e| e.to_string());
        ending
    } else {
        driver::drive(&mut store, &mut watch, job.id, &plan, now)
    };
    let retry_at = watch.retry_at;
    let answer = exec.answer();
    Finished {
        ending,
        answer,
        attempts: std::mem::take(&mut exec.attempts),
        malformed: exec.malformed,
        retry_at,
        record_error,
    }
}
