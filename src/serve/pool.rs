//! The listener, the connections and the fixed pool of workers of `serve` (SPEC §8.3: blocking
//! HTTP/1.1 with keep-alive), and the clean stop on Ctrl-C.
//!
//! Owns: accepting connections (at most [`MAX_CONNECTIONS`] open; beyond, a 503 at once), a
//! thread per open connection that waits for and reads its requests — so an idle keep-alive
//! client or a slow one holds nothing but its thread, and no idle connection has to be closed
//! under a client that is about to reuse it — and the [`Permits`] that let at most [`WORKERS`]
//! chat requests run at once, in arrival order: a connection's thread runs its request itself
//! once it holds a permit (no hand-over to another thread on the request's path). Stopping: the
//! first Ctrl-C stops accepting, lets every request in flight finish, closes idle connections
//! and returns; a second Ctrl-C ends the process at once (exit 130). Must not: read requests
//! (see `handler`).

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use super::conn::{self, Conn};
use super::{Ctx, handler, wire};

/// Chat requests running at once (each runs its attempts on a thread of its own, SPEC §6.2).
/// More requests wait, in order.
pub const WORKERS: usize = 16;
/// Open connections at most; a connection beyond is answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 512;

/// At most [`WORKERS`] chat requests at once, started in the order they asked.
#[derive(Debug, Default)]
pub struct Permits {
    state: Mutex<Turns>,
    turn: Condvar,
}

#[derive(Debug, Default)]
struct Turns {
    /// Tickets handed out.
    issued: u64,
    /// Tickets started.
    started: u64,
    /// Requests running.
    running: usize,
    /// Requests waiting for their turn (nobody is woken when none is: the common case
    /// costs no wake-up call).
    waiting: usize,
}

/// A running request's permit, given back when dropped (also when the request panics).
pub struct Permit<'p>(&'p Permits);

impl Permits {
    /// Waits for this request's turn and a free place.
    pub fn acquire(&self) -> Permit<'_> {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let ticket = s.issued;
        s.issued += 1;
        if !(s.started == ticket && s.running < WORKERS) {
            s.waiting += 1;
            while !(s.started == ticket && s.running < WORKERS) {
                s = self.turn.wait(s).unwrap_or_else(PoisonError::into_inner);
            }
            s.waiting -= 1;
        }
        s.started += 1;
        s.running += 1;
        if s.waiting > 0 {
            // The next ticket may be able to start too.
            self.turn.notify_all();
        }
        Permit(self)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut s = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.running -= 1;
        if s.waiting > 0 {
            self.0.turn.notify_all();
        }
    }
}

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

/// Installs the Ctrl-C handler (SPEC §8.3: requests in flight finish, then exit 0): the first
/// press stops accepting (a thread waits for it and wakes the blocked `accept`); a second one
/// ends the process at once with 130.
pub fn install_ctrl_c(ctx: &Arc<Ctx>, addr: SocketAddr) -> Result<(), String> {
    use signal_hook::consts::SIGINT;
    let pressed = Arc::new(AtomicBool::new(false));
    // Registered first, so it runs before the flag is set: only a second press exits.
    signal_hook::flag::register_conditional_shutdown(SIGINT, 130, pressed.clone())
        .and_then(|_| signal_hook::flag::register(SIGINT, pressed))
        .map_err(|e| e.to_string())?;
    let mut signals = signal_hook::iterator::Signals::new([SIGINT]).map_err(|e| e.to_string())?;
    let ctx = ctx.clone();
    std::thread::Builder::new()
        .name("llxprt-ctrl-c".into())
        .spawn(move || {
            if signals.forever().next().is_some() {
                ctx.stop();
                let _ = TcpStream::connect_timeout(&wake_addr(addr), Duration::from_secs(1));
            }
        })
        .map(drop)
        .map_err(|e| e.to_string())
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

/// Serves until [`Ctx::stop`]; returns once every connection is closed (every request in
/// flight finished).
pub fn run(listener: &TcpListener, ctx: &Arc<Ctx>) {
    let permits = Arc::new(Permits::default());
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
        let (ctx, permits, done) = (ctx.clone(), permits.clone(), open.clone());
        let spawned = std::thread::Builder::new()
            .name("serve-conn".into())
            .spawn(move || {
                // A bug in one request must not take the server down; its connection closes.
                let _ = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    handler::connection(Conn::new(stream), &ctx, &permits);
                }));
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
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::time::Instant;

    use super::*;

    fn wait_for(what: &str, cond: impl Fn() -> bool) {
        let until = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < until, "timed out waiting for {what}");
            std::thread::yield_now();
        }
    }

    /// At most [`WORKERS`] requests hold a permit at once, and waiting requests start in the
    /// order they asked: each place that frees lets in the oldest waiter.
    #[test]
    fn permits_bound_the_running_requests_and_keep_the_order() {
        let permits = Permits::default();
        let held: Vec<Permit<'_>> = (0..WORKERS).map(|_| permits.acquire()).collect();
        let started = Mutex::new(Vec::new());
        let finish = AtomicBool::new(false);
        std::thread::scope(|s| {
            for i in 0..5 {
                let (permits, started, finish) = (&permits, &started, &finish);
                s.spawn(move || {
                    let p = permits.acquire();
                    started.lock().unwrap().push(i);
                    wait_for("the end", || finish.load(Ordering::SeqCst));
                    drop(p);
                });
                wait_for("the ticket", || {
                    permits.state.lock().unwrap().issued == (WORKERS + i + 1) as u64
                });
            }
            std::thread::sleep(Duration::from_millis(20));
            assert!(started.lock().unwrap().is_empty(), "every place was taken");
            for (n, p) in held.into_iter().take(5).enumerate() {
                drop(p);
                wait_for("a waiter to start", || {
                    started.lock().unwrap().len() == n + 1
                });
                assert!(permits.state.lock().unwrap().running <= WORKERS);
            }
            finish.store(true, Ordering::SeqCst);
        });
        assert_eq!(*started.lock().unwrap(), [0, 1, 2, 3, 4]);
    }
}
