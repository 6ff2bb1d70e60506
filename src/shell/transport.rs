//! The transport (SPEC §6.2): one ureq agent per process, statuses not turned into errors,
//! proxies from the environment, and the shell's own deadlines — `connect_timeout_ms` for the
//! connection, `first_byte_timeout_ms` from sending the request until its first stream event
//! (or the whole body when not streaming), `stream_idle_timeout_ms` between two events; no
//! total timeout. The reader says when an event arrived ([`Attempt::event_arrived`]): bytes
//! that complete no event (keep-alive comments, a server trickling a byte at a time) move no
//! deadline.
//!
//! An attempt is read on the caller's thread. Every connection of the agent is wrapped
//! ([`Watched`]) so that a wait for bytes ends at the deadline the reading thread set for its
//! attempt, and is cut into short slices to see a cancellation (Ctrl-C, a client gone): the
//! deadlines are exact and no thread or channel stands between the bytes and the reader.
//! Owns: bytes in and out and transport errors. Must not: parse protocols or decide anything.

use std::cell::{Cell, RefCell};
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use ureq::unversioned::resolver::DefaultResolver;
use ureq::unversioned::transport::time::Duration as UreqDuration;
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, DefaultConnector, NextTimeout, Transport,
};

use super::protocol::HttpRequest;

/// Largest error body read (SPEC §6.2).
pub const MAX_ERROR_BODY: usize = 1024 * 1024;
/// Largest non-streamed body read.
pub const MAX_BODY: usize = 64 * 1024 * 1024;

/// The deadlines of one attempt (SPEC §3.1).
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// TCP + TLS connect.
    pub connect_ms: u64,
    /// From sending the request to the response headers and the first stream event (the whole
    /// body when not streaming).
    pub first_byte_ms: u64,
    /// Longest silence between two stream events once the first one arrived.
    pub idle_ms: u64,
}

/// A transport failure, as the SPEC §4 classes need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// Connection refused.
    Refused,
    /// Connection reset or closed before a response (or mid-body).
    Reset,
    /// DNS failure.
    Dns,
    /// TLS failure.
    Tls,
    /// `connect_timeout_ms` passed.
    ConnectTimeout,
    /// `first_byte_timeout_ms` passed.
    FirstByteTimeout,
    /// `stream_idle_timeout_ms` passed mid-body.
    IdleTimeout,
    /// The user cancelled.
    Cancelled,
    /// Anything else (a transport error that cannot be told apart).
    Other(String),
}

/// What the attempt's thread reports.
#[derive(Debug)]
pub enum Msg<'a> {
    /// Status and headers arrived.
    Head {
        /// HTTP status.
        status: u16,
        /// Headers, names lowercased.
        headers: Vec<(String, String)>,
    },
    /// Body bytes (in the attempt's read buffer, valid until the next message).
    Data(&'a [u8]),
    /// The body ended cleanly.
    End,
    /// The transport failed.
    Fail(TransportError),
}

fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .user_agent(concat!("llxprt/", env!("CARGO_PKG_VERSION")))
            .max_idle_connections_per_host(4)
            .build();
        let connector = DefaultConnector::new().chain(WatchConnector);
        ureq::Agent::with_parts(config, connector, DefaultResolver::default())
    })
}

fn classify_io(e: &std::io::Error) -> TransportError {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => TransportError::Refused,
        K::ConnectionReset | K::ConnectionAborted | K::UnexpectedEof | K::BrokenPipe => {
            TransportError::Reset
        }
        K::InvalidData => TransportError::Tls,
        K::TimedOut => TransportError::FirstByteTimeout,
        _ => {
            let text = e.to_string();
            if text.contains("lookup address") || text.contains("resolve") {
                TransportError::Dns
            } else {
                TransportError::Other(text)
            }
        }
    }
}

fn classify(e: ureq::Error) -> TransportError {
    match e {
        ureq::Error::Io(io) => classify_io(&io),
        ureq::Error::Timeout(ureq::Timeout::Connect | ureq::Timeout::Resolve) => {
            TransportError::ConnectTimeout
        }
        ureq::Error::Timeout(_) => TransportError::FirstByteTimeout,
        ureq::Error::HostNotFound => TransportError::Dns,
        ureq::Error::ConnectionFailed => TransportError::Refused,
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::TlsRequired => {
            TransportError::Tls
        }
        other => TransportError::Other(other.to_string()),
    }
}

/// The most a body read takes at once.
const READ_PIECE: usize = 16 * 1024;

thread_local! {
    /// The read buffer of this thread's last attempt, for its next one.
    static SPARE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

impl Drop for Attempt {
    fn drop(&mut self) {
        SPARE.set(std::mem::take(&mut self.buf));
    }
}

/// One attempt in flight, read on the caller's thread.
pub struct Attempt {
    state: State,
    started: Instant,
    /// When the request's first bytes went out (the first-byte deadline counts from there).
    sent: Option<Instant>,
    /// When the last stream event arrived (the idle deadline counts from there).
    last_event: Option<Instant>,
    deadlines: Deadlines,
    whole_body: bool,
    cancel: Arc<AtomicBool>,
    /// Where the body is read, one piece at a time (allocated at the first read, reused).
    buf: Vec<u8>,
}

enum State {
    /// Not sent yet: the first [`Attempt::next_msg`] sends it and returns the head.
    Ready(Box<HttpRequest>),
    /// The head arrived; the body is read a piece at a time.
    Body(Box<ureq::BodyReader<'static>>),
    /// The body ended or the transport failed.
    Done,
}

/// Prepares an attempt; nothing is sent before the first [`Attempt::next_msg`]. With
/// `whole_body`, `first_byte_ms` covers the whole body (a non-streamed request).
pub fn start(
    req: HttpRequest,
    deadlines: Deadlines,
    whole_body: bool,
    cancel: Arc<AtomicBool>,
) -> Attempt {
    Attempt {
        state: State::Ready(Box::new(req)),
        started: Instant::now(),
        sent: None,
        last_event: None,
        deadlines,
        whole_body,
        cancel,
        buf: Vec::new(),
    }
}

impl Attempt {
    /// Time since the attempt started.
    pub fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// A complete stream event arrived: from now on the next one is due within
    /// `stream_idle_timeout_ms` (SPEC §3.1). Bytes alone never move a deadline.
    pub fn event_arrived(&mut self) {
        self.last_event = Some(Instant::now());
    }

    /// When the next bytes must have arrived (`None`: from the moment the request is sent), and
    /// the failure if they have not.
    fn deadline(&self) -> (Option<Instant>, TransportError) {
        match self.last_event {
            Some(at) if !self.whole_body => (
                Some(at + Duration::from_millis(self.deadlines.idle_ms)),
                TransportError::IdleTimeout,
            ),
            _ => (
                self.sent
                    .map(|at| at + Duration::from_millis(self.deadlines.first_byte_ms)),
                TransportError::FirstByteTimeout,
            ),
        }
    }

    /// The next message, enforcing the deadlines and watching for cancellation.
    pub fn next_msg(&mut self) -> Msg<'_> {
        let (deadline, on_timeout) = self.deadline();
        let mut watch = Watch {
            deadline,
            first_byte: Duration::from_millis(self.deadlines.first_byte_ms),
            sent: self.sent,
            cancel: self.cancel.clone(),
        };
        let failed = |e: TransportError, watch: &Watch| {
            if watch.cancel.load(Ordering::Relaxed) {
                TransportError::Cancelled
            } else if watch.deadline.is_some_and(|d| Instant::now() >= d) {
                on_timeout.clone()
            } else {
                e
            }
        };
        match std::mem::replace(&mut self.state, State::Done) {
            State::Ready(req) => match watched(&mut watch, || send(&req, &self.deadlines)) {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let headers = resp
                        .headers()
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.as_str().to_ascii_lowercase(),
                                String::from_utf8_lossy(v.as_bytes()).into_owned(),
                            )
                        })
                        .collect();
                    self.sent = watch.sent;
                    self.state = State::Body(Box::new(resp.into_body().into_reader()));
                    Msg::Head { status, headers }
                }
                Err(e) => Msg::Fail(failed(classify(e), &watch)),
            },
            State::Body(mut reader) => {
                if self.buf.is_empty() {
                    self.buf = SPARE.take();
                    if self.buf.is_empty() {
                        self.buf = vec![0u8; READ_PIECE];
                    }
                }
                let buf = &mut self.buf;
                match watched(&mut watch, || reader.read(buf)) {
                    Ok(0) => Msg::End,
                    Ok(n) => {
                        self.state = State::Body(reader);
                        Msg::Data(&self.buf[..n])
                    }
                    Err(e) => {
                        let err = match ureq::Error::from(e) {
                            ureq::Error::Timeout(_) => TransportError::IdleTimeout,
                            other => match classify(other) {
                                TransportError::FirstByteTimeout => TransportError::IdleTimeout,
                                x => x,
                            },
                        };
                        Msg::Fail(failed(err, &watch))
                    }
                }
            }
            State::Done => Msg::Fail(TransportError::Other("the attempt already ended".into())),
        }
    }
}

/// Sends a request and waits for its head. ureq's own timeouts are only a backstop (SPEC
/// §6.2): the deadlines are the [`Watch`]'s.
fn send(
    req: &HttpRequest,
    deadlines: &Deadlines,
) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    let backstop = Duration::from_millis(
        deadlines
            .first_byte_ms
            .max(deadlines.idle_ms)
            .saturating_add(1000),
    );
    let connect = Duration::from_millis(deadlines.connect_ms);
    let mut b = agent().post(&req.url);
    for (k, v) in &req.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    let body = serde_json::to_vec(&req.body).expect("request bodies are plain JSON");
    b.header("content-type", "application/json")
        .config()
        .timeout_connect(Some(connect))
        .timeout_recv_response(Some(backstop))
        .timeout_per_read(Some(backstop))
        .build()
        .send(&body[..])
}

/// What the transport of the attempt this thread is reading must keep to (see [`Watched`]).
#[derive(Debug, Clone)]
struct Watch {
    /// The next bytes are due by then; `None` until the request is sent.
    deadline: Option<Instant>,
    /// The first-byte timeout, which starts when the request's first bytes go out.
    first_byte: Duration,
    /// When they went out.
    sent: Option<Instant>,
    /// Set when the user cancels (Ctrl-C) or the client goes away.
    cancel: Arc<AtomicBool>,
}

thread_local! {
    /// The watch of the attempt this thread is reading, while it reads.
    static WATCH: RefCell<Option<Watch>> = const { RefCell::new(None) };
}

/// Runs `f` (ureq I/O) under `watch`, and takes back what the I/O learnt (when the request
/// was sent, and so its deadline).
fn watched<T>(watch: &mut Watch, f: impl FnOnce() -> T) -> T {
    WATCH.with(|w| *w.borrow_mut() = Some(watch.clone()));
    let r = f();
    if let Some(w) = WATCH.with(|w| w.borrow_mut().take()) {
        *watch = w;
    }
    r
}

/// The watch of this thread's attempt, its first-byte deadline started if the request is
/// being sent now (`sending`).
fn current_watch(sending: bool) -> Option<Watch> {
    WATCH.with(|w| {
        let mut w = w.borrow_mut();
        let watch = w.as_mut()?;
        if sending && watch.sent.is_none() {
            let now = Instant::now();
            watch.sent = Some(now);
            watch.deadline = Some(now + watch.first_byte);
        }
        Some(watch.clone())
    })
}

/// The longest single wait for bytes, so a cancellation is seen within it.
const SLICE: Duration = Duration::from_millis(100);

/// Every connection of the agent, whatever its kind (TCP, TLS, through a proxy): a wait for
/// bytes ends at the reading thread's [`Watch`] deadline, and is cut into [`SLICE`]s to see a
/// cancellation. The deadlines are thus the shell's own, exact, without a thread per attempt
/// (SPEC §6.2); ureq's timeouts stay as a backstop.
#[derive(Debug)]
struct Watched(Box<dyn Transport>);

impl Transport for Watched {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.0.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let timeout = match current_watch(true).and_then(|w| w.deadline) {
            Some(deadline) => within(
                timeout,
                whole_slices(deadline.saturating_duration_since(Instant::now())),
            ),
            None => timeout,
        };
        self.0.transmit_output(amount, timeout)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        loop {
            let Some(watch) = current_watch(false) else {
                return self.0.await_input(timeout);
            };
            if watch.cancel.load(Ordering::Relaxed) {
                return Err(ureq::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::Interrupted,
                    "cancelled",
                )));
            }
            // Input is awaited only after the request went out, so the deadline is set.
            let deadline = watch
                .deadline
                .unwrap_or_else(|| Instant::now() + watch.first_byte);
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ureq::Error::Timeout(timeout.reason));
            }
            let slice = left.min(SLICE);
            let ours = slice < *timeout.after && timeout.per_read.is_none_or(|p| slice < *p);
            match self.0.await_input(within(timeout, slice)) {
                Err(ureq::Error::Timeout(_)) if ours => {}
                other => return other,
            }
        }
    }

    fn is_open(&mut self) -> bool {
        self.0.is_open()
    }

    fn is_tls(&self) -> bool {
        self.0.is_tls()
    }
}

/// `left` rounded down to whole [`SLICE`]s (exact below one): the write timeout handed to ureq
/// then stays the same across the writes of one request, and ureq sets it on the socket once
/// instead of before every write. A write may so give up at most one slice before the
/// deadline; a request's writes seldom wait at all.
fn whole_slices(left: Duration) -> Duration {
    let slice = SLICE.as_nanos();
    if left.as_nanos() < slice {
        return left;
    }
    Duration::from_nanos(((left.as_nanos() / slice) * slice) as u64)
}

/// `timeout` shortened to at most `most`.
fn within(timeout: NextTimeout, most: Duration) -> NextTimeout {
    let cap =
        |d: Option<UreqDuration>| Some(UreqDuration::Exact(d.map_or(most, |d| (*d).min(most))));
    NextTimeout {
        after: UreqDuration::Exact((*timeout.after).min(most)),
        per_read: cap(timeout.per_read),
        per_write: cap(timeout.per_write),
        ..timeout
    }
}

/// Wraps each connection the default connectors make in [`Watched`].
#[derive(Debug)]
struct WatchConnector;

impl Connector<Box<dyn Transport>> for WatchConnector {
    type Out = Box<dyn Transport>;

    fn connect(
        &self,
        _details: &ConnectionDetails,
        chained: Option<Box<dyn Transport>>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        Ok(chained.map(|t| Box::new(Watched(t)) as Box<dyn Transport>))
    }
}

/// How reading a whole body ended ([`Attempt::read_body`]).
#[derive(Debug)]
pub enum Body {
    /// The body, complete.
    Complete(Vec<u8>),
    /// More than the cap arrived; reading stopped there.
    TooLarge,
    /// The transport failed first.
    Failed(TransportError),
}

impl Attempt {
    /// Reads the rest of the body, holding at most `cap` bytes: a body over `cap` is
    /// [`Body::TooLarge`] as soon as it passes it, never read further (SPEC §7: no unbounded
    /// allocation; `chat` passes [`MAX_BODY`]).
    pub fn read_body(&mut self, cap: usize) -> Body {
        let mut body = Vec::new();
        loop {
            match self.next_msg() {
                Msg::Data(d) => {
                    body.extend_from_slice(d);
                    if body.len() > cap {
                        return Body::TooLarge;
                    }
                }
                Msg::End => return Body::Complete(body),
                Msg::Fail(e) => return Body::Failed(e),
                Msg::Head { .. } => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_timeout_is_rounded_down_to_whole_slices_above_one() {
        let ms = Duration::from_millis;
        assert_eq!(whole_slices(ms(59_987)), ms(59_900));
        assert_eq!(whole_slices(ms(59_901)), ms(59_900));
        assert_eq!(whole_slices(ms(100)), ms(100));
        // Below one slice the deadline is kept exactly.
        assert_eq!(whole_slices(ms(99)), ms(99));
        assert_eq!(whole_slices(Duration::ZERO), Duration::ZERO);
    }
}
