//! One client connection of `serve`: HTTP/1.1 request heads and bodies read within bounds, and
//! responses written whole or as a chunked event stream (SPEC §7, §8.3).
//!
//! Owns: the bytes on the socket — bounded heads (size, header count), bounded bodies, the
//! deadlines that keep a slow or silent client from holding a worker (SPEC §7.1: a connection
//! without a complete request head 5 s after it opened, or 5 s after the first byte of a later
//! one, is closed; an idle keep-alive one after 15 s, announced with `Keep-Alive: timeout=15`),
//! keep-alive framing, and the "lingering close" that lets a client still writing a refused
//! body read the refusal. Reading a head is linear in the bytes received: the search for its
//! end resumes where the last one stopped. Must not: look at what a request means (routing,
//! JSON, security policy live elsewhere).
//!
//! Decisions where SPEC is silent: a request body must come with `Content-Length` (chunked
//! request bodies get 411: the OpenAI clients all send a length); `Expect: 100-continue` is
//! answered once the head passed every check, so a refused upload is never sent.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Largest request head (request line and headers) read; 431 beyond.
pub const MAX_HEAD: usize = 32 * 1024;
/// Most header lines in one request; 431 beyond.
pub const MAX_HEADERS: usize = 100;
/// Largest request body (SPEC §7: 8 MiB); 413 beyond.
pub const MAX_BODY: usize = 8 * 1024 * 1024;
/// Time allowed for a connection's first request head from the moment it opened, and for a
/// later head from its first byte (SPEC §7.1: a slow or silent client is cut).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for a whole request body once the head was read.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an idle keep-alive connection is kept waiting for its next request (SPEC §7.1;
/// announced in every kept-alive answer as `Keep-Alive: timeout=15`).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest a single write may block (a client that stopped reading a stream).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of a refused body is read and dropped so the client gets to read the refusal.
const MAX_DRAIN: usize = 64 * 1024 * 1024;
/// Reads wake at least this often to look at the deadline and the stop flag.
const SLICE: Duration = Duration::from_millis(50);

/// A request head.
#[derive(Debug, Clone)]
pub struct Head {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// Headers, names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The client wants the connection kept open.
    pub keep_alive: bool,
    /// `Content-Length`, when sent.
    pub content_length: Option<usize>,
    /// A `Transfer-Encoding` was sent (not supported for requests: 411).
    pub chunked: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
}

impl Head {
    /// A header's value by lowercase name (the first one).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why no request could be read.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// The client closed, went silent while idle, or the socket failed: just close.
    Closed,
    /// Malformed, too large or too slow: answer with this status and message, then close.
    Bad(u16, &'static str),
}

/// A client connection.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Where a read lands before it joins `buf` (one per connection, not one per read).
    piece: Box<[u8]>,
    /// The read timeout the socket has (set again only when it changes).
    read_timeout: Option<Duration>,
    /// When the connection opened, while its first request head is awaited.
    opened: Option<Instant>,
}

impl Conn {
    /// Wraps an accepted socket (no Nagle delay: each stream event leaves at once).
    pub fn new(stream: TcpStream) -> Conn {
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
        Conn {
            stream,
            buf: Vec::new(),
            piece: vec![0u8; 16 * 1024].into_boxed_slice(),
            read_timeout: None,
            opened: Some(Instant::now()),
        }
    }

    /// The client's socket (to watch for a hang-up while a request runs).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Reads into the buffer until `deadline`; `Ok(false)` when the deadline passed or
    /// `give_up` said so (checked only while `idle`).
    fn fill(
        &mut self,
        deadline: Instant,
        idle: bool,
        give_up: &dyn Fn() -> bool,
    ) -> Result<bool, ReadError> {
        loop {
            let now = Instant::now();
            if now >= deadline || (idle && give_up()) {
                return Ok(false);
            }
            let timeout = Some((deadline - now).clamp(Duration::from_millis(1), SLICE));
            if timeout != self.read_timeout {
                self.read_timeout = self.stream.set_read_timeout(timeout).ok().and(timeout);
            }
            match self.stream.read(&mut self.piece) {
                Ok(0) => return Err(ReadError::Closed),
                Ok(n) => {
                    self.buf.extend_from_slice(&self.piece[..n]);
                    return Ok(true);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => return Err(ReadError::Closed),
            }
        }
    }

    /// Waits for the next request and reads its head. The first request of a connection must
    /// be complete within [`HEAD_TIMEOUT`] of the connection opening; a later one is awaited
    /// idle up to `idle` (or until `give_up` says to stop waiting), then its whole head within
    /// [`HEAD_TIMEOUT`] of its first byte.
    pub fn read_head(
        &mut self,
        idle: Duration,
        give_up: &dyn Fn() -> bool,
    ) -> Result<Head, ReadError> {
        let first = self.opened.take();
        let idle_deadline = first.map_or_else(|| Instant::now() + idle, |at| at + HEAD_TIMEOUT);
        let mut head_deadline = None;
        // No `\r\n\r\n` starts before this offset (so each byte is searched about once).
        let mut scanned = 0;
        loop {
            // RFC 9112 §2.2: empty lines before a request line are ignored.
            let blank = self
                .buf
                .chunks_exact(2)
                .take_while(|pair| *pair == b"\r\n")
                .count();
            if blank > 0 {
                self.buf.drain(..2 * blank);
                scanned = 0;
            }
            if let Some(at) = find(&self.buf[scanned..], b"\r\n\r\n") {
                let end = scanned + at;
                if end > MAX_HEAD {
                    return Err(ReadError::Bad(431, "request head too large"));
                }
                let head = parse_head(&self.buf[..end])?;
                self.buf.drain(..end + 4);
                return Ok(head);
            }
            scanned = self.buf.len().saturating_sub(3);
            if self.buf.len() > MAX_HEAD {
                return Err(ReadError::Bad(431, "request head too large"));
            }
            if !self.buf.is_empty() && head_deadline.is_none() {
                head_deadline = Some(first.unwrap_or_else(Instant::now) + HEAD_TIMEOUT);
            }
            let (deadline, idle) = match head_deadline {
                Some(d) => (d, false),
                None => (idle_deadline, true),
            };
            if !self.fill(deadline, idle, give_up)? {
                return Err(if idle {
                    ReadError::Closed
                } else {
                    ReadError::Bad(408, "the request head was not received in time")
                });
            }
        }
    }

    /// Reads a body of exactly `len` bytes (at most [`MAX_BODY`], checked by the caller)
    /// within [`BODY_TIMEOUT`].
    pub fn read_body(&mut self, len: usize) -> Result<Vec<u8>, ReadError> {
        let deadline = Instant::now() + BODY_TIMEOUT;
        while self.buf.len() < len {
            if !self.fill(deadline, false, &|| false)? {
                return Err(ReadError::Bad(
                    408,
                    "the request body was not received in time",
                ));
            }
        }
        let rest = self.buf.split_off(len);
        Ok(std::mem::replace(&mut self.buf, rest))
    }

    /// Reads and drops up to `len` bytes of a refused body (bounded in size and time), so a
    /// client that writes its whole body before reading gets to read the refusal instead of a
    /// reset.
    pub fn drain(&mut self, len: usize) {
        let want = len.min(MAX_DRAIN);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = self.buf.len();
        self.buf.clear();
        while seen < want {
            match self.fill(deadline, false, &|| false) {
                Ok(true) => {
                    seen += self.buf.len();
                    self.buf.clear();
                }
                _ => return,
            }
        }
    }

    /// Writes bytes (a whole response, or one event of a stream) and sends them now.
    pub fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Parses a request head (without its final blank line).
fn parse_head(bytes: &[u8]) -> Result<Head, ReadError> {
    let bad = |why| Err(ReadError::Bad(400, why));
    let Ok(text) = std::str::from_utf8(bytes) else {
        return bad("the request head is not UTF-8");
    };
    let mut lines = text.split("\r\n");
    let mut parts = lines.next().unwrap_or("").split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return bad("malformed request line");
    };
    if !is_token(method) || !target.starts_with('/') {
        return bad("malformed request line");
    }
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(ReadError::Bad(505, "only HTTP/1.1 is served")),
    };
    let mut headers = Vec::new();
    for line in lines {
        if headers.len() >= MAX_HEADERS {
            return Err(ReadError::Bad(431, "too many request headers"));
        }
        let Some((name, value)) = line.split_once(':') else {
            return bad("malformed header line");
        };
        if !is_token(name) {
            return bad("malformed header line");
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let mut content_length: Option<usize> = None;
    for (_, v) in headers.iter().filter(|(k, _)| k == "content-length") {
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return bad("malformed Content-Length");
        }
        // A length too large for usize is over every limit anyway.
        let n = v.parse::<usize>().unwrap_or(usize::MAX);
        if content_length.is_some_and(|c| c != n) {
            return bad("conflicting Content-Length headers");
        }
        content_length = Some(n);
    }
    let chunked = headers.iter().any(|(k, _)| k == "transfer-encoding");
    if chunked && content_length.is_some() {
        // Both framings at once is how requests are smuggled (RFC 9112 §6.1).
        return bad("Content-Length and Transfer-Encoding together");
    }
    let value = |name: &str| {
        headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join(",")
    };
    let connection = value("connection");
    let keep_alive = if http10 {
        connection.contains("keep-alive")
    } else {
        !connection.split(',').any(|t| t.trim() == "close")
    };
    let expect_continue = value("expect") == "100-continue";
    let path = target.split('?').next().unwrap_or(target).to_string();
    Ok(Head {
        method: method.to_string(),
        path,
        headers,
        keep_alive,
        content_length,
        chunked,
        expect_continue,
    })
}

/// The reason phrase of a status.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        421 => "Misdirected Request",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Status",
    }
}

/// A response head: status line, the given headers, `Connection`, blank line.
pub fn head(status: u16, headers: &[(&str, &str)], close: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    head_into(&mut out, status, headers, close);
    out
}

/// Appends a response head to `out` (see [`head`]).
pub fn head_into(out: &mut Vec<u8>, status: u16, headers: &[(&str, &str)], close: bool) {
    use std::io::Write as _;
    let _ = write!(out, "HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        // Header values come from profiles and providers: no line breaks may pass.
        out.extend(v.bytes().filter(|b| *b != b'\r' && *b != b'\n'));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(if close {
        b"connection: close\r\n\r\n"
    } else {
        // SPEC §7.1: the idle time after which serve closes, so a client does not reuse a
        // connection serve is about to close.
        b"connection: keep-alive\r\nkeep-alive: timeout=15\r\n\r\n"
    });
}

/// A whole response with a `Content-Length` body.
pub fn full_response(
    status: u16,
    content_type: &str,
    headers: &[(&str, String)],
    body: &[u8],
    close: bool,
) -> Vec<u8> {
    let length = body.len().to_string();
    let mut all: Vec<(&str, &str)> =
        vec![("content-type", content_type), ("content-length", &length)];
    all.extend(headers.iter().map(|(k, v)| (*k, v.as_str())));
    let mut out = Vec::with_capacity(256 + body.len());
    head_into(&mut out, status, &all, close);
    out.extend_from_slice(body);
    out
}

/// One chunk of a chunked body.
pub fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 12);
    chunk_into(&mut out, data);
    out
}

/// Appends `data` to `out` as one piece of a chunked body.
pub fn chunk_into(out: &mut Vec<u8>, data: &[u8]) {
    use std::io::Write as _;
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_and_refuse_what_they_must() {
        let h = parse_head(b"POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 12\r\nConnection: close").unwrap();
        assert_eq!(h.path, "/v1/chat/completions");
        assert_eq!(h.content_length, Some(12));
        assert!(!h.keep_alive);
        assert_eq!(h.header("host"), Some("localhost"));
        let h = parse_head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive").unwrap();
        assert!(h.keep_alive);
        for (raw, status) in [
            (&b"GET / HTTP/2"[..], 505),
            (b"GET  / HTTP/1.1", 400),
            (b"GET / HTTP/1.1\r\nBad Header: x", 400),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2",
                400,
            ),
            (b"POST / HTTP/1.1\r\nContent-Length: -1", 400),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked",
                400,
            ),
            (b"\xff / HTTP/1.1", 400),
        ] {
            assert!(
                matches!(parse_head(raw), Err(ReadError::Bad(s, _)) if s == status),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        let mut many = String::new();
        for i in 0..=MAX_HEADERS {
            many.push_str("\r\nx");
            many.push_str(&i.to_string());
            many.push_str(": y");
        }
        let raw = format!("GET / HTTP/1.1{many}");
        assert!(matches!(
            parse_head(raw.as_bytes()),
            Err(ReadError::Bad(431, _))
        ));
    }

    #[test]
    fn response_heads_drop_line_breaks_from_values() {
        let h = head(200, &[("x-llxprt-backend", "a\r\névil: 1")], false);
        let h = String::from_utf8(h).expect("a head of UTF-8 values is UTF-8");
        assert!(h.starts_with("HTTP/1.1 200 OK\r\n"), "{h}");
        assert!(h.contains("x-llxprt-backend: aévil: 1\r\n"), "{h}");
        assert!(h.ends_with("connection: keep-alive\r\nkeep-alive: timeout=15\r\n\r\n"));
        assert_eq!(
            IDLE_TIMEOUT,
            Duration::from_secs(15),
            "the announced timeout"
        );
        assert_eq!(chunk(b"hi"), b"2\r\nhi\r\n");
    }
}
