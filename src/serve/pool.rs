//! The listener, the connections of `serve` (SPEC §8.3: blocking HTTP/1.1 with keep-alive),
//! and the clean stop on Ctrl-C.
//!
//! Owns: accepting connections (at most [`MAX_CONNECTIONS`] open) and a thread per open
//! connection that waits for and reads its requests and runs each itself once it holds a
//! request slot (see `slots`: no hand-over to another thread on the request's path), so an
//! idle or slow client holds nothing but its thread until its deadlines close it (see `conn`).
//! A connection beyond the cap is answered 503 with `Retry-After` by one helper thread, which
//! then reads what the client sent until it closes (SPEC §7.1: a client that already sent its
//! request gets the 503, never a reset). Stopping: the first Ctrl-C stops accepting, lets every
//! request in flight finish, closes idle connections and returns; a second Ctrl-C ends the
//! process at once (exit 130). Must not: read requests (see `handler`).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::time::{Duration, Instant};

use super::conn::{self, Conn, MAX_BODY, MAX_HEAD};
use super::{Ctx, handler, wire};

/// Open connections at most; a connection beyond is answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 512;
/// Connections over the cap waiting for their 503; beyond, one is closed at once.
const BUSY_QUEUE: usize = 64;
/// How long a connection over the cap is read after its 503, waiting for the client to close.
const LINGER: Duration = Duration::from_secs(2);

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

/// Answers a connection over the cap: a 503 with `Retry-After`, then a lingering close — the
/// request the client may have sent (head and body, within [`LINGER`]) is read and dropped
/// until the client closes, so the close sends no reset that would destroy the answer before
/// the client reads it.
fn busy(mut s: TcpStream) {
    let body = wire::error_body(
        "llxprt serve is busy: too many open connections",
        "service_unavailable",
        "overloaded",
        None,
    );
    let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
    let sent = s.write_all(&conn::full_response(
        503,
        "application/json",
        &[("retry-after", "1".into())],
        body.to_string().as_bytes(),
        true,
    ));
    if sent.is_err() || s.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let until = Instant::now() + LINGER;
    let mut piece = [0u8; 16 * 1024];
    let mut seen = 0;
    while seen <= MAX_HEAD + MAX_BODY {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match s.read(&mut piece) {
            Ok(0) | Err(_) => return,
            Ok(n) => seen += n,
        }
    }
}

/// The helper thread that answers connections over the cap, one after the other.
fn start_busy() -> Option<SyncSender<TcpStream>> {
    let (tx, rx) = sync_channel::<TcpStream>(BUSY_QUEUE);
    std::thread::Builder::new()
        .name("serve-busy".into())
        .spawn(move || rx.into_iter().for_each(busy))
        .ok()?;
    Some(tx)
}

/// Serves until [`Ctx::stop`]; returns once every connection is closed (every request in
/// flight finished).
pub fn run(listener: &TcpListener, ctx: &Arc<Ctx>) {
    let open = Arc::new(AtomicUsize::new(0));
    let busy_helper = start_busy();
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
            // With the helper's queue full (or no helper), the connection just closes.
            if let Some(tx) = &busy_helper {
                let _ = tx.try_send(stream);
            }
            continue;
        }
        open.fetch_add(1, Ordering::SeqCst);
        let (ctx, done) = (ctx.clone(), open.clone());
        let spawned = std::thread::Builder::new()
            .name("serve-conn".into())
            .spawn(move || {
                // A bug in one request must not take the server down; its connection closes.
                let _ = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    handler::connection(Conn::new(stream), &ctx);
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
