//! The engine state of a long-running process (`serve`): one [`EngineState`] in memory for all
//! of its threads, kept in step with the state file by holding the file's lock as a lease and
//! writing by group commit (SPEC §5.9).
//!
//! Owns: when the lock is taken and given back, when the file is re-read and written. Must not:
//! decide anything (the engine does), or make a request wait for the disk.
//!
//! How it keeps SPEC §5.9's promise (lock → re-read → decide → write → unlock, no update lost):
//! - A step runs under the process's mutex and under the file's lock. When the process does not
//!   hold the lock, the step takes it first and re-reads the file if it is not the file this
//!   process last read or wrote (another process stepped meanwhile); then it decides in memory.
//! - A writer thread writes the state (atomically, [`Durable::RenameOnly`] as for every state
//!   write) while the lock is still held, and gives the lock back once everything decided is
//!   written. Steps that arrive meanwhile decide in memory on the newest state and are written
//!   by the next write: several steps share one write, as a database's group commit does.
//! - So another process never reads a state that misses a step this process decided, and never
//!   decides on a state this process will overwrite: it only gets the lock from the writer,
//!   after the write. Under steady load the writer gives the lock back at least every
//!   [`LONGEST_HOLD`], after a write made with steps paused, and lets other processes take it
//!   before taking it again.
//!
//! What it costs: a process killed between a step and its write loses that step's effect on the
//! shared state (statistics, a cursor step, a circuit move — later outcomes rebuild them), as a
//! power loss may with any state write. A write that fails is reported once and tried again a
//! second later; requests go on from memory meanwhile (a gateway keeps answering).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{lock_file, read_shared, render};
use crate::driver::{StateStore, StoreFailed};
use crate::engine::state::SharedState;
use crate::engine::{EngineState, Event, Step};
use crate::fsutil::{self, Durable};

/// The longest the writer keeps the lock while steps keep coming.
pub const LONGEST_HOLD: Duration = Duration::from_millis(100);

/// How long the lock stays free after a write forced by [`LONGEST_HOLD`], so that a process
/// waiting for it gets it before this process takes it again.
const HAND_OVER: Duration = Duration::from_millis(2);

/// How long the writer gathers steps before each write, from the first step not yet written:
/// under steady load the file is written at most about every this long (a request's steps and
/// its neighbours' share a write), and the lock is kept over that time, so a request seldom
/// pays for taking it; writing takes little of the CPU the requests need. A process waiting
/// for the lock while this one is idle waits at most this long and a write.
const GATHER: Duration = Duration::from_millis(20);

/// How long a failed write waits before it is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// The engine state shared by the threads of one process, and its writer thread.
pub struct LeasedState {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    inner: Mutex<Inner>,
    /// Signalled when a step leaves something to write, and on close.
    work: Condvar,
    path: PathBuf,
    lock_path: PathBuf,
    report: Box<dyn Fn(&str) + Send + Sync>,
}

struct Inner {
    engine: EngineState,
    /// The file's lock, while this process holds it, and since when.
    lease: Option<(File, Instant)>,
    /// The state file as this process last read or wrote it.
    seen: Option<Identity>,
    /// Steps decided, and steps written (a count: the writer is done when they are equal).
    decided: u64,
    written: u64,
    /// The last write's failure, reported once.
    failing: Option<String>,
    closing: bool,
    /// Keys of the file dropped because they did not parse (reported once by the caller).
    warnings: Vec<String>,
}

/// Which file a path names and its version: a write renames a new file into place, so another
/// process's write always changes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    inode: (u64, u64),
    len: u64,
    modified: Option<std::time::SystemTime>,
}

fn identity(path: &Path) -> io::Result<Option<Identity>> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some(Identity {
            inode: inode(&m),
            len: m.len(),
            modified: m.modified().ok(),
        })),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(unix)]
fn inode(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt as _;
    (m.dev(), m.ino())
}

#[cfg(not(unix))]
fn inode(_m: &std::fs::Metadata) -> (u64, u64) {
    (0, 0)
}

impl LeasedState {
    /// The state of `<root>/state/state.json`, read now; `report` receives the writer's
    /// failures (one line each, no secret: paths and I/O errors only).
    pub fn open(root: &Path, report: impl Fn(&str) + Send + Sync + 'static) -> LeasedState {
        let dir = root.join("state");
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                engine: EngineState::default(),
                lease: None,
                seen: None,
                decided: 0,
                written: 0,
                failing: None,
                closing: false,
                warnings: Vec::new(),
            }),
            work: Condvar::new(),
            path: dir.join("state.json"),
            lock_path: dir.join("state.json.lock"),
            report: Box::new(report),
        });
        {
            let mut inner = shared.lock();
            if let Err(e) = shared.hold(&mut inner) {
                shared.fail(&mut inner, &e);
            }
            inner.lease = None;
        }
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("llxprt-state-writer".into())
                .spawn(move || shared.write_loop())
                .ok()
        };
        LeasedState {
            shared,
            writer: Mutex::new(writer),
        }
    }

    /// The keys of the file dropped because they did not parse, since the last call.
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut self.shared.lock().warnings)
    }

    /// One engine step (SPEC §5.9): under the lock, on the newest state; written by the writer.
    pub fn step(&self, event: &Event) -> Step {
        let mut inner = self.shared.lock();
        if let Err(e) = self.shared.hold(&mut inner) {
            self.shared.fail(&mut inner, &e);
        }
        let actions = inner.engine.step(event);
        // The writer waits only when everything decided was written; otherwise it is
        // gathering or writing and takes this step with the others, unprompted.
        let writer_waits = inner.decided == inner.written;
        inner.decided += 1;
        if writer_waits {
            self.shared.work.notify_one();
        }
        actions
    }

    /// The shared state as it is now (re-read first if another process changed the file).
    pub fn snapshot(&self) -> SharedState {
        let mut inner = self.shared.lock();
        if let Err(e) = self.shared.hold(&mut inner) {
            self.shared.fail(&mut inner, &e);
        }
        let snapshot = inner.engine.shared.clone();
        if inner.decided == inner.written {
            inner.lease = None;
        }
        snapshot
    }

    /// Writes what is left to write and stops the writer (also done on drop). Steps after it
    /// still decide, in memory only.
    pub fn close(&self) {
        self.shared.lock().closing = true;
        self.shared.work.notify_one();
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(w) = writer {
            let _ = w.join();
        }
    }
}

impl Drop for LeasedState {
    fn drop(&mut self) {
        self.close();
    }
}

/// A step through a shared reference, for [`crate::driver::drive`].
impl StateStore for &LeasedState {
    fn step(&mut self, event: &Event) -> Result<Step, StoreFailed> {
        Ok(LeasedState::step(self, event))
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes sure this process holds the file's lock, re-reading the file when it changed
    /// since this process last saw it.
    fn hold(&self, inner: &mut Inner) -> io::Result<()> {
        if inner.lease.is_some() {
            return Ok(());
        }
        let lock = lock_file(&self.lock_path)?;
        inner.lease = Some((lock, Instant::now()));
        let now = identity(&self.path)?;
        if now != inner.seen {
            inner.engine.shared = read_shared(&self.path, &mut inner.warnings)?;
            // Taken again: a file that could not be read was moved aside by the read.
            inner.seen = identity(&self.path)?;
        }
        Ok(())
    }

    /// Reports a failure once per distinct message.
    fn fail(&self, inner: &mut Inner, e: &io::Error) {
        let message = format!(
            "cannot update the state file {}: {e}; requests go on from memory and the write is tried again",
            self.path.display()
        );
        if inner.failing.as_deref() != Some(message.as_str()) {
            (self.report)(&message);
            inner.failing = Some(message);
        }
    }

    /// Writes `shared` in place (the lock must be held) and notes the file it made.
    fn write(&self, shared: &SharedState) -> io::Result<Option<Identity>> {
        fsutil::stage(&self.path, render(shared).as_bytes())?.commit(Durable::RenameOnly)?;
        identity(&self.path)
    }

    /// The writer: waits for decided steps, writes them with the lock held, gives the lock back
    /// once nothing is left to write.
    fn write_loop(&self) {
        let mut inner = self.lock();
        loop {
            while inner.decided == inner.written && !inner.closing {
                inner.lease = None;
                inner = self
                    .work
                    .wait(inner)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if inner.decided == inner.written {
                inner.lease = None;
                return;
            }
            if !inner.closing {
                drop(inner);
                std::thread::sleep(GATHER);
                inner = self.lock();
            }
            let upto = inner.decided;
            let result = if let Err(e) = self.hold(&mut inner) {
                Err(e)
            } else {
                let snapshot = inner.engine.shared.clone();
                // Steps go on in memory while this write reaches the disk.
                drop(inner);
                let written = self.write(&snapshot);
                inner = self.lock();
                written
            };
            match result {
                Ok(seen) => {
                    inner.seen = seen;
                    inner.written = upto;
                    inner.failing = None;
                    let held_since = inner.lease.as_ref().map(|(_, t)| *t);
                    if inner.decided != inner.written
                        && held_since.is_some_and(|t| t.elapsed() >= LONGEST_HOLD)
                    {
                        inner = self.hand_over(inner);
                    }
                }
                Err(e) => {
                    self.fail(&mut inner, &e);
                    inner.lease = None;
                    if inner.closing {
                        return;
                    }
                    inner = self
                        .work
                        .wait_timeout(inner, RETRY)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
    }

    /// Writes with steps paused, gives the lock back and keeps it free for [`HAND_OVER`].
    fn hand_over<'a>(&'a self, mut inner: MutexGuard<'a, Inner>) -> MutexGuard<'a, Inner> {
        let upto = inner.decided;
        match self.write(&inner.engine.shared) {
            Ok(seen) => {
                inner.seen = seen;
                inner.written = upto;
            }
            Err(e) => self.fail(&mut inner, &e),
        }
        inner.lease = None;
        std::thread::sleep(HAND_OVER);
        inner
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::engine::outcome::Class;
    use crate::engine::plan::{BackendPlan, BucketPlan, FailoverSettings, Policy};
    use crate::engine::{Order, Outcome, Plan};
    use crate::state_file::StateFile;

    fn plan(backends: &[&str]) -> Arc<Plan> {
        Arc::new(Plan {
            lb: "lb".into(),
            policy: Policy::Roundrobin,
            backends: backends
                .iter()
                .map(|n| BackendPlan {
                    name: (*n).into(),
                    provider: "openai".into(),
                    model: "m".into(),
                    fingerprint: "f".into(),
                    buckets: vec![BucketPlan {
                        name: "default".into(),
                        key: format!("openai/{n}"),
                        oauth: false,
                        refreshable: false,
                    }],
                    context_limit: 0,
                    accepts_prefill: false,
                })
                .collect(),
            settings: FailoverSettings::default(),
        })
    }

    /// One successful request; returns the backend it was sent to.
    fn request(store: &mut dyn StateStore, id: u64, plan: &Arc<Plan>) -> String {
        let actions = store.step(&Event::RequestArrived {
            now: 1,
            request: id,
            plan: plan.clone(),
        });
        let backend = match actions.expect("a step").next {
            Some(Order::Send { backend, .. }) => plan.backends[backend].name.clone(),
            other => panic!("a send, not {other:?}"),
        };
        let actions = store.step(&Event::AttemptFinished {
            now: 2,
            request: id,
            outcome: Outcome {
                status: Some(200),
                tokens: 10,
                ..Outcome::of(Class::Success)
            },
        });
        assert!(matches!(
            actions.expect("a step").next,
            Some(Order::Deliver { .. })
        ));
        backend
    }

    fn quiet() -> impl Fn(&str) + Send + Sync + 'static {
        |m: &str| panic!("unexpected report: {m}")
    }

    /// SPEC §5.9: the threads of one process and another process stepping on the same file
    /// lose no update: the round-robin cursor moves once per request, whoever steps.
    #[test]
    fn interleaved_with_another_process_no_step_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let plan = plan(&["a", "b", "c"]);
        let leased = LeasedState::open(dir.path(), quiet());
        let mut other = StateFile::new(dir.path());
        let mut served = Vec::new();
        for i in 0..30 {
            if i % 3 == 2 {
                served.push(request(&mut other, 1000 + i, &plan));
            } else {
                served.push(request(&mut &leased, i, &plan));
            }
        }
        let want: Vec<String> = (0..30)
            .map(|i| ["a", "b", "c"][i % 3].to_string())
            .collect();
        assert_eq!(served, want);
        drop(leased);
        let back = StateFile::new(dir.path()).read().unwrap();
        assert_eq!(back.lbs["lb"].stats.requests, 30);
        assert_eq!(back.lbs["lb"].cursor, 30);
    }

    /// Many threads at once: every step is in the file once the state is closed.
    #[test]
    fn concurrent_threads_are_all_written() {
        let dir = tempfile::tempdir().unwrap();
        let plan = plan(&["a", "b"]);
        let leased = LeasedState::open(dir.path(), quiet());
        std::thread::scope(|s| {
            for t in 0..8u64 {
                let (leased, plan) = (&leased, plan.clone());
                s.spawn(move || {
                    for i in 0..50 {
                        request(&mut &*leased, t * 1000 + i, &plan);
                    }
                });
            }
        });
        assert_eq!(leased.snapshot().lbs["lb"].stats.requests, 400);
        drop(leased);
        let back = StateFile::new(dir.path()).read().unwrap();
        assert_eq!(back.lbs["lb"].stats.requests, 400);
        assert_eq!(back.backends["a"].stats.successes, 200);
        assert_eq!(back.backends["b"].stats.successes, 200);
    }

    /// Once nothing is left to write the lock is free: another process steps without waiting
    /// for this one to end, and this process then sees that step.
    #[test]
    fn the_lock_is_given_back_when_everything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let plan = plan(&["a", "b"]);
        let leased = LeasedState::open(dir.path(), quiet());
        request(&mut &leased, 1, &plan);
        let (tx, rx) = std::sync::mpsc::channel();
        let root = dir.path().to_path_buf();
        let plan2 = plan.clone();
        std::thread::spawn(move || {
            let mut other = StateFile::new(&root);
            tx.send(request(&mut other, 2, &plan2)).unwrap();
        });
        let served = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the other process got the lock");
        assert_eq!(served, "b");
        assert_eq!(request(&mut &leased, 3, &plan), "a");
        assert_eq!(leased.snapshot().lbs["lb"].stats.requests, 3);
    }

    /// A state directory that cannot be written: requests go on from memory, the failure is
    /// reported once.
    #[cfg(unix)]
    #[test]
    fn a_failing_write_is_reported_once_and_requests_go_on() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the state directory should be: nothing under it can be created.
        std::fs::write(dir.path().join("state"), b"not a directory").unwrap();
        let reports = Arc::new(Mutex::new(Vec::new()));
        let seen = reports.clone();
        let leased = LeasedState::open(dir.path(), move |m: &str| {
            seen.lock().unwrap().push(m.to_string());
        });
        let plan = plan(&["a", "b"]);
        assert_eq!(request(&mut &leased, 1, &plan), "a");
        assert_eq!(request(&mut &leased, 2, &plan), "b");
        drop(leased);
        let reports = reports.lock().unwrap();
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert!(
            reports[0].contains("cannot update the state file"),
            "{reports:?}"
        );
    }
}
