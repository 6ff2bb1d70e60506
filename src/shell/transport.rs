//! The transport (SPEC §6.2): one ureq agent per process, statuses not turned into errors,
//! proxies from the environment, and the shell's own deadlines — `connect_timeout_ms` for the
//! connection, `first_byte_timeout_ms` from sending until the first body bytes (or the whole
//! body when not streaming), `stream_idle_timeout_ms` between reads; no total timeout.
//!
//! Each attempt runs on a thread of its own (reused, [`super::threads`]) that reads the body
//! into a channel; the caller waits on the channel with a deadline, which also lets Ctrl-C
//! cancel an attempt in flight.
//! Owns: bytes in and out and transport errors. Must not: parse protocols or decide anything.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

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
    /// From sending to the response headers and the first body bytes.
    pub first_byte_ms: u64,
    /// Longest silence between two reads once the body started.
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
pub enum Msg {
    /// Status and headers arrived.
    Head {
        /// HTTP status.
        status: u16,
        /// Headers, names lowercased.
        headers: Vec<(String, String)>,
    },
    /// Body bytes.
    Data(Vec<u8>),
    /// The body ended cleanly.
    End,
    /// The transport failed.
    Fail(TransportError),
}

fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .user_agent(concat!("llxprt/", env!("CARGO_PKG_VERSION")))
            .max_idle_connections_per_host(4)
            .build()
            .new_agent()
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

/// One attempt in flight.
pub struct Attempt {
    rx: Receiver<Msg>,
    started: Instant,
    first_data: bool,
    deadlines: Deadlines,
    whole_body: bool,
    cancel: Arc<AtomicBool>,
}

/// Starts an attempt on its own thread. With `whole_body`, `first_byte_ms` covers the whole
/// body (a non-streamed request).
pub fn start(
    req: HttpRequest,
    deadlines: Deadlines,
    whole_body: bool,
    cancel: Arc<AtomicBool>,
) -> Attempt {
    let (tx, rx) = mpsc::sync_channel::<Msg>(64);
    // ureq's own timeouts are only a backstop so a stuck thread ends by itself (SPEC §6.2).
    let backstop = Duration::from_millis(
        deadlines
            .first_byte_ms
            .max(deadlines.idle_ms)
            .saturating_add(1000),
    );
    let connect = Duration::from_millis(deadlines.connect_ms);
    // A second sender only for a thread that cannot start; dropped at once otherwise, so a
    // job that ends without a word still shows as a closed channel.
    let on_failure = tx.clone();
    let job = move || {
        let mut b = agent().post(&req.url);
        for (k, v) in &req.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        let body = serde_json::to_vec(&req.body).expect("request bodies are plain JSON");
        let result = b
            .header("content-type", "application/json")
            .config()
            .timeout_connect(Some(connect))
            .timeout_recv_response(Some(backstop))
            .timeout_per_read(Some(backstop))
            .build()
            .send(&body[..]);
        let resp = match result {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Msg::Fail(classify(e)));
                return;
            }
        };
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
        if tx.send(Msg::Head { status, headers }).is_err() {
            return;
        }
        let mut reader = resp.into_body().into_reader();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => {
                    let _ = tx.send(Msg::End);
                    return;
                }
                Ok(n) => {
                    if tx.send(Msg::Data(buf[..n].to_vec())).is_err() {
                        return; // the caller gave up (timeout or cancel)
                    }
                }
                Err(e) => {
                    let err = match ureq::Error::from(e) {
                        ureq::Error::Timeout(_) => TransportError::IdleTimeout,
                        other => match classify(other) {
                            TransportError::FirstByteTimeout => TransportError::IdleTimeout,
                            x => x,
                        },
                    };
                    let _ = tx.send(Msg::Fail(err));
                    return;
                }
            }
        }
    };
    if let Err(e) = super::threads::run(Box::new(job)) {
        let _ = on_failure.send(Msg::Fail(TransportError::Other(format!(
            "cannot start the attempt's thread: {e}"
        ))));
    }
    drop(on_failure);
    Attempt {
        rx,
        started: Instant::now(),
        first_data: false,
        deadlines,
        whole_body,
        cancel,
    }
}

impl Attempt {
    /// Time since the attempt started.
    pub fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The next message, enforcing the deadlines and watching for cancellation.
    pub fn next_msg(&mut self) -> Msg {
        let idle_from = Instant::now();
        loop {
            if self.cancel.load(Ordering::Relaxed) {
                return Msg::Fail(TransportError::Cancelled);
            }
            let (deadline, on_timeout) = if !self.first_data || self.whole_body {
                (
                    self.started + Duration::from_millis(self.deadlines.first_byte_ms),
                    TransportError::FirstByteTimeout,
                )
            } else {
                (
                    idle_from + Duration::from_millis(self.deadlines.idle_ms),
                    TransportError::IdleTimeout,
                )
            };
            let now = Instant::now();
            if now >= deadline {
                return Msg::Fail(on_timeout);
            }
            let wait = (deadline - now).min(Duration::from_millis(100));
            match self.rx.recv_timeout(wait) {
                Ok(Msg::Data(d)) => {
                    self.first_data = true;
                    return Msg::Data(d);
                }
                Ok(m) => return m,
                // The idle clock keeps running from the last data (this call's start).
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Msg::Fail(TransportError::Reset),
            }
        }
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
                    body.extend_from_slice(&d);
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
