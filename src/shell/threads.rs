//! The threads attempts run on (SPEC §6.2: a thread per attempt reads the body into a channel).
//! A thread that finished an attempt waits a while for the next one instead of exiting, so a
//! busy `serve` does not create and tear down a thread (stack mapping, TLB flushes on other
//! cores) for every request.
//!
//! Owns: starting jobs on idle threads or new ones, and idle threads' exit. Must not: know what
//! a job does.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// A job: one attempt's thread body.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// How long an idle thread waits for its next job before it exits.
const IDLE_FOR: Duration = Duration::from_secs(30);

/// Most threads kept idle; a thread finishing a job beyond this exits at once.
const MOST_IDLE: usize = 64;

/// Idle threads, each by a number of its own and the sender of its job channel, the most
/// recently idle last.
static IDLE: Mutex<Vec<(u64, Sender<Job>)>> = Mutex::new(Vec::new());

/// Numbers for idle threads.
static NEXT: AtomicU64 = AtomicU64::new(0);

fn idle() -> std::sync::MutexGuard<'static, Vec<(u64, Sender<Job>)>> {
    IDLE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `job` on an idle thread, or on a new one. Errors: a new thread cannot be created.
pub fn run(job: Job) -> std::io::Result<()> {
    let mut job = job;
    {
        let mut waiting = idle();
        // A thread whose wait ended has left the list (under this lock), so every sender here
        // reaches a thread that is still waiting; one that fails has ended some other way.
        while let Some((_, tx)) = waiting.pop() {
            match tx.send(job) {
                Ok(()) => return Ok(()),
                Err(mpsc::SendError(back)) => job = back,
            }
        }
    }
    std::thread::Builder::new()
        .name("llxprt-attempt".into())
        .spawn(move || serve_jobs(job))
        .map(drop)
}

/// A thread's life: the job it was made for, then jobs handed to it while idle.
fn serve_jobs(first: Job) {
    let mut job = first;
    loop {
        job();
        let (tx, rx) = mpsc::channel::<Job>();
        let me = NEXT.fetch_add(1, Ordering::Relaxed);
        {
            let mut waiting = idle();
            if waiting.len() >= MOST_IDLE {
                return;
            }
            waiting.push((me, tx));
        }
        match next_job(&rx, me) {
            Some(next) => job = next,
            None => return,
        }
    }
}

/// Waits for a job; on timeout leaves the idle list, taking a job handed over meanwhile.
fn next_job(rx: &Receiver<Job>, me: u64) -> Option<Job> {
    match rx.recv_timeout(IDLE_FOR) {
        Ok(job) => Some(job),
        Err(RecvTimeoutError::Disconnected) => None,
        Err(RecvTimeoutError::Timeout) => {
            let mut waiting = idle();
            // A sender pops and sends under the lock: either the job is already here, or this
            // thread's sender is still listed and no job can come once it is removed.
            if let Ok(job) = rx.try_recv() {
                return Some(job);
            }
            waiting.retain(|(n, _)| *n != me);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Jobs run, each exactly once, and threads are reused: many jobs one after another run
    /// on few threads (other tests of this process may take an idle thread meanwhile, never
    /// most of them).
    #[test]
    fn jobs_run_once_on_reused_threads() {
        let (done_tx, done_rx) = mpsc::channel();
        let mut threads = std::collections::HashSet::new();
        for i in 0..200 {
            let done = done_tx.clone();
            run(Box::new(move || {
                done.send((i, std::thread::current().id())).unwrap();
            }))
            .unwrap();
            let (got, thread) = done_rx.recv_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(got, i);
            threads.insert(thread);
            // Give the thread the moment it needs to list itself as idle again.
            let until = std::time::Instant::now() + Duration::from_secs(1);
            while idle().is_empty() && std::time::Instant::now() < until {
                std::thread::yield_now();
            }
        }
        drop(done_tx);
        assert!(done_rx.try_recv().is_err(), "a job ran twice");
        assert!(
            threads.len() <= 20,
            "{} threads for 200 jobs",
            threads.len()
        );
    }

    /// Jobs started together run at once, on threads of their own.
    #[test]
    fn concurrent_jobs_do_not_wait_for_each_other() {
        let n = 8;
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(n + 1));
        for _ in 0..n {
            let b = barrier.clone();
            run(Box::new(move || {
                b.wait();
            }))
            .unwrap();
        }
        // Every job reaches the barrier only if all run at the same time.
        barrier.wait();
    }
}
