//! The listener, the connections and the fixed pool of workers of `serve` (SPEC §8.3: blocking
//! HTTP/1.1 with keep-alive), and the clean stop on Ctrl-C.
//!
//! Owns: accepting connections (at most [`MAX_CONNECTIONS`] open; beyond, a 503 at once), a
//! thread per open connection that waits for and reads its requests — so an idle keep-alive
//! client or a slow one never holds a worker, and no idle connection has to be closed under a
//! client that is about to reuse it — and [`WORKERS`] threads that run the chat requests (the
//! engine and the upstream attempts) and write their answers. Stopping: the first Ctrl-C stops
//! accepting, lets every request in flight finish, closes idle connections and returns; a
//! second Ctrl-C ends the process at once (exit 130). Must not: read requests (see `handler`).

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::conn::{self, Conn};
use super::{Ctx, handler, wire};

/// Worker threads: chat requests running at once (each runs its attempts on a thread of its
/// own, SPEC §6.2). More requests wait in the queue, in order.
pub const WORKERS: usize = 16;
/// Open connections at most; a connection beyond is answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 512;

/// A chat request handed to a worker.
pub type Job = Box<dyn FnOnce() + Send>;

/// Where to connect to wake a blocked `accept` (the wildcard addresses are not connectable).
fn wake_addr(addr: SocketAddr) -> SocketAddr {
    let mut a = addr;
    if a.ip().is_unspecified() {
        a.set_ip(if a.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    a
}

/// Installs the Ctrl-C handler (SPEC §8.3: requests in flight finish, then exit 0).
pub fn install_ctrl_c(ctx: &Arc<Ctx>, addr: SocketAddr) -> Result<(), String> {
    let ctx = ctx.clone();
    let presses = AtomicUsize::new(0);
    ctrlc::set_handler(move || {
        if presses.fetch_add(1, Ordering::SeqCst) > 0 {
            std::process::exit(130);
        }
        ctx.stop();
        let _ = TcpStream::connect_timeout(&wake_addr(addr), Duration::from_secs(1));
    })
    .map_err(|e| e.to_string())
}

fn worker(rx: &Mutex<Receiver<Job>>) {
    loop {
        let next = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = next else { return };
        // A bug in one request must not shrink the pool; its connection just closes.
        let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
    }
}

fn busy(mut s: TcpStream) {
    let body = wire::error_body(
        "llxprt serve is busy: too many open connections",
        "service_unavailable",
        "overloaded",
        None,
    );
    let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = s.write_all(&conn::full_response(
        503,
        "application/json",
        &[("retry-after", "1".into())],
        body.to_string().as_bytes(),
        true,
    ));
}

/// Serves until [`Ctx::stop`]; returns once every connection is closed and every worker has
/// finished.
pub fn run(listener: &TcpListener, ctx: &Arc<Ctx>) {
    let (jobs, rx): (SyncSender<Job>, Receiver<Job>) = mpsc::sync_channel(MAX_CONNECTIONS);
    let rx = Arc::new(Mutex::new(rx));
    let workers: Vec<_> = (0..WORKERS)
        .map(|i| {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("serve-worker-{i}"))
                .spawn(move || worker(&rx))
                .expect("spawning a worker thread")
        })
        .collect();
    let open = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if ctx.stopping() {
            break;
        }
        let Ok(stream) = stream else {
            // Out of descriptors or a connection reset before accept: wait a little rather
            // than spin.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        if open.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            busy(stream);
            continue;
        }
        open.fetch_add(1, Ordering::SeqCst);
        let (ctx, jobs, done) = (ctx.clone(), jobs.clone(), open.clone());
        let spawned = std::thread::Builder::new()
            .name("serve-conn".into())
            .spawn(move || {
                handler::connection(Conn::new(stream), &ctx, &jobs);
                done.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            open.fetch_sub(1, Ordering::SeqCst);
        }
    }
    // Requests in flight finish; idle connections notice the stop within a read slice.
    while open.load(Ordering::SeqCst) > 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(jobs);
    for w in workers {
        let _ = w.join();
    }
}
