//! Noticing a client that hung up while its request waits for a slot or runs (SPEC §7.1: "a
//! request whose client has gone away is cancelled within a second").
//!
//! The connection's own thread is busy running the request (reading the upstream), so one
//! watcher thread for the whole server looks at every registered client socket every
//! [`EVERY`], with a peek that neither blocks nor consumes (`MSG_PEEK | MSG_DONTWAIT`): an
//! end of stream or a reset sets the request's cancel flag, which the slot queue, the
//! engine's waits and the transport's reads all watch (the transport then drops the upstream
//! connection). Bytes waiting (a pipelined next request) mean the client is still there.
//!
//! Owns: the registry and the watcher thread (started at the first registration, idle while
//! nothing is registered). Must not: read or write a client's bytes.
//!
//! Decision where SPEC is silent: a client that half-closes its side after sending its request
//! is taken as gone (as Go's `net/http` does); HTTP/1.1 clients do not do that while they wait
//! for an answer.

use std::collections::HashMap;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// How often the registered sockets are looked at.
pub const EVERY: Duration = Duration::from_millis(200);

/// The registry of client sockets to watch.
#[derive(Debug, Default)]
pub struct Watcher {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    state: Mutex<Registry>,
    added: Condvar,
}

#[derive(Debug, Default)]
struct Registry {
    next: u64,
    watched: HashMap<u64, (TcpStream, Arc<AtomicBool>)>,
    thread: bool,
    /// The watcher thread sleeps until something is registered (only then is it woken: a
    /// registration while it is looking costs no wake-up call).
    idle: bool,
}

fn lock(m: &Mutex<Registry>) -> MutexGuard<'_, Registry> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A registration; dropping it stops the watching.
#[derive(Debug)]
pub struct Watching {
    inner: Option<(Arc<Inner>, u64)>,
}

impl Watcher {
    /// Watches `stream` (a clone of the client's socket is kept) and sets `cancel` when its
    /// client hangs up. When the socket cannot be cloned or the thread cannot start, nothing is
    /// watched (the request then notices a gone client only when it writes to it).
    pub fn watch(&self, stream: &TcpStream, cancel: &Arc<AtomicBool>) -> Watching {
        let Ok(clone) = stream.try_clone() else {
            return Watching { inner: None };
        };
        let mut r = lock(&self.inner.state);
        if !r.thread {
            let inner = self.inner.clone();
            let spawned = std::thread::Builder::new()
                .name("serve-hangup".into())
                .spawn(move || watch_loop(&inner));
            if spawned.is_err() {
                return Watching { inner: None };
            }
            r.thread = true;
        }
        let id = r.next;
        r.next += 1;
        r.watched.insert(id, (clone, cancel.clone()));
        let wake = std::mem::take(&mut r.idle);
        drop(r);
        if wake {
            self.inner.added.notify_one();
        }
        Watching {
            inner: Some((self.inner.clone(), id)),
        }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        if let Some((inner, id)) = self.inner.take() {
            lock(&inner.state).watched.remove(&id);
        }
    }
}

fn watch_loop(inner: &Inner) {
    loop {
        let mut r = lock(&inner.state);
        while r.watched.is_empty() {
            r.idle = true;
            r = inner.added.wait(r).unwrap_or_else(PoisonError::into_inner);
        }
        r.watched.retain(|_, (stream, cancel)| {
            if hung_up(stream) {
                cancel.store(true, Ordering::SeqCst);
                false
            } else {
                true
            }
        });
        drop(r);
        std::thread::sleep(EVERY);
    }
}

/// Whether the peer closed or reset the connection, seen without blocking or consuming.
#[cfg(unix)]
fn hung_up(stream: &TcpStream) -> bool {
    use rustix::io::Errno;
    use rustix::net::{RecvFlags, recv};
    let mut byte = [0u8; 1];
    match recv(stream, &mut byte[..], RecvFlags::PEEK | RecvFlags::DONTWAIT) {
        Ok((_, n)) => n == 0,
        Err(e) => !matches!(e, Errno::AGAIN | Errno::INTR),
    }
}

/// Without a non-blocking peek, a gone client is noticed only when the request writes to it.
#[cfg(not(unix))]
fn hung_up(_stream: &TcpStream) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::TcpListener;
    use std::time::Instant;

    use super::*;

    /// A client that waits (or pipelines bytes) is left alone; one that hangs up has its flag
    /// set within a few looks; the socket itself stays blocking and unread.
    #[test]
    fn a_hang_up_sets_the_flag_and_nothing_else_does() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut quiet = TcpStream::connect(addr).unwrap();
        let (quiet_server, _) = listener.accept().unwrap();
        let leaving = TcpStream::connect(addr).unwrap();
        let (leaving_server, _) = listener.accept().unwrap();
        let watcher = Watcher::default();
        let (f1, f2) = (Arc::default(), Arc::default());
        let _w1 = watcher.watch(&quiet_server, &f1);
        let _w2 = watcher.watch(&leaving_server, &f2);
        quiet.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        drop(leaving);
        let until = Instant::now() + Duration::from_secs(5);
        while !f2.load(Ordering::SeqCst) {
            assert!(Instant::now() < until, "the hang-up was seen");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            !f1.load(Ordering::SeqCst),
            "a client sending bytes is there"
        );
        let mut peek = [0u8; 16];
        assert_eq!(
            quiet_server.peek(&mut peek).unwrap(),
            16,
            "nothing was read"
        );
    }
}
