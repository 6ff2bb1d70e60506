//! A real loopback HTTP/1.1 server for the end-to-end tests (STYLE 12: real bytes over real
//! sockets, no mocked HTTP client). Only std and serde_json.
//!
//! # API
//!
//! - [`Server::start`]`(script: Vec<Reply>)` binds `127.0.0.1:0` and serves the replies to
//!   successive requests in order (counted when a request's first byte arrives, across all
//!   connections); once the script runs out its last reply repeats. The script must not be empty.
//! - [`Server::url`] → `http://127.0.0.1:PORT`; [`Server::requests`] → every request received so
//!   far ([`Request`]: method, path with query, headers with lowercased names, body as JSON — a
//!   JSON string holding the raw text when it is not JSON, `null` when empty — and the id of the
//!   connection it came on). A request is recorded before its reply starts, so once a client has
//!   seen anything (even an error), the request is in the list.
//!   [`Server::connection_count`] counts accepted TCP connections (keep-alive checks).
//! - Keep-alive is honoured: the next request is read on the same connection unless the request
//!   said `Connection: close`, or the reply closes (every fault, [`Reply::close`],
//!   [`Reply::close_delimited`], [`Reply::truncated`]).
//! - Dropping the [`Server`] stops it: a flag, a self-connection to unblock `accept`, a shutdown
//!   of every open connection, and a join of every thread. Delays poll the flag every 5 ms, so a
//!   drop during a long stall returns at once (the stalled client then sees EOF).
//!
//! [`Reply`] builders:
//! - [`Reply::json`]`(status, body)`, [`Reply::text`]`(status, content_type, body)`, with
//!   [`Reply::header`] for extra headers (`retry-after`, `retry-after-ms`, `x-ratelimit-*`, …)
//!   and [`Reply::close`] (`Connection: close`, then close);
//! - [`Reply::sse`]`(events)`: status 200, `Content-Type: text/event-stream`, chunked, one chunk
//!   per [`SseOut`], each written and flushed on its own after its delay ([`SseOut::after`]); the
//!   terminating chunk follows the last event. [`Reply::close_delimited`] drops chunked framing
//!   (no length; the body ends when the server closes — a cut then looks like a clean EOF).
//!   Events: [`SseOut::data`], [`SseOut::named`], [`SseOut::done`] (`data: [DONE]`),
//!   [`SseOut::comment`], [`SseOut::raw`] (exact bytes, for malformed events; an empty one only
//!   delays);
//! - faults: [`Reply::close_before_headers`] (read the request, close: the client sees EOF before
//!   a status line), [`Reply::reset`] (TCP RST; see below), [`Reply::no_response`]`(ms)` (read
//!   the request, send nothing for ms, close), [`Reply::slow_headers`]`(ms, inner)` (wait, then
//!   `inner`), [`Reply::cut_after`]`(n, sse)` (n events, then close without the terminating
//!   chunk), [`Reply::stall_after`]`(n, ms, sse)` (n events, silence for ms, then close without
//!   the terminating chunk), [`Reply::truncated`]`(n_bytes, full)` (full `Content-Length`, only
//!   n body bytes, close); [`refused_url`] (a port nobody listens on).
//!
//! Reset: `TcpStream::set_linger` is unstable (`tcp_linger`) on Rust 1.95 and the crate forbids
//! `unsafe`, so [`Reply::reset`] uses the other standard way to make Linux send an RST: it only
//! *peeks* at the request (recording it), never reads it, and closes the socket with the request
//! still unread in the receive queue; the kernel then answers with RST instead of FIN (RFC 2525
//! §2.17). The client sees `ConnectionReset`.
//!
//! Provider wire formats (CRATES.md §10): [`openai_stream`], [`anthropic_stream`],
//! [`gemini_stream`]; with reasoning: [`openai_reasoning_stream`] (`reasoning_content` or
//! `reasoning` deltas), [`anthropic_thinking_stream`] (a signed `thinking` block); complete
//! bodies [`openai_completion_body`], [`anthropic_thinking_body`]; error replies [`openai_error`], [`anthropic_error`] (status from the error
//! type: `overloaded_error` → 529, …), [`gemini_error`] (with an optional `RetryInfo`); the bodies
//! alone ([`openai_error_body`], …); in-stream error events [`openai_stream_error`],
//! [`anthropic_stream_error`], [`gemini_stream_error`].
//!
//! Bounds: request heads up to 64 KiB (431 beyond), bodies up to 16 MiB with `Content-Length` or
//! chunked framing (413 beyond; 400 for malformed framing; `Expect: 100-continue` answered), 30 s
//! read and write timeouts per connection, no panics on client disconnects (every I/O error just
//! ends that connection).

#![allow(
    dead_code,
    reason = "shared test-support module: each test binary uses its own subset"
)]
#![allow(
    clippy::needless_pass_by_value,
    reason = "builders take JSON and replies by value so call sites read `Reply::json(200, json!(…))`"
)]

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Largest request body the server accepts (413 beyond).
pub const MAX_BODY: usize = 16 * 1024 * 1024;
/// Largest request head (request line and headers) the server accepts (431 beyond).
const MAX_HEAD: usize = 64 * 1024;
/// Read and write timeout of every connection: a stuck client never holds a thread forever.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// How often delays look at the stop flag.
const NAP_SLICE: Duration = Duration::from_millis(5);

// ---------------------------------------------------------------------------------------------
// Requests

/// One request as the server received it.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// `GET`, `POST`, …
    pub method: String,
    /// The request target as sent: path and query.
    pub path: String,
    /// Headers by lowercased name (repeated headers joined with `, `).
    pub headers: BTreeMap<String, String>,
    /// The body parsed as JSON; a JSON string with the (lossy UTF-8) text when it is not JSON;
    /// `null` when empty.
    pub body: Value,
    /// Id of the TCP connection it came on (0, 1, … in accept order).
    pub connection: usize,
}

impl Request {
    /// The value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

// ---------------------------------------------------------------------------------------------
// Replies

/// One SSE event as written to the wire (one chunk), with an optional delay before it.
#[derive(Debug, Clone, PartialEq)]
pub struct SseOut {
    text: String,
    delay_ms: u64,
}

impl SseOut {
    /// `data: {json}` and a blank line.
    pub fn data(json: Value) -> Self {
        Self::raw(format!("data: {json}\n\n"))
    }

    /// `event: {event}`, `data: {json}` and a blank line.
    pub fn named(event: &str, json: Value) -> Self {
        Self::raw(format!("event: {event}\ndata: {json}\n\n"))
    }

    /// `data: [DONE]` and a blank line (Chat Completions' end marker).
    pub fn done() -> Self {
        Self::raw("data: [DONE]\n\n")
    }

    /// A comment line (`: keep-alive`) and a blank line, as servers send to keep a stream open.
    pub fn comment() -> Self {
        Self::raw(": keep-alive\n\n")
    }

    /// Exactly these bytes (malformed events, odd line endings, partial events). An empty text
    /// writes nothing (it would be the terminating chunk) but still waits its delay.
    pub fn raw(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            delay_ms: 0,
        }
    }

    /// Waits `ms` before writing this event.
    pub fn after(mut self, ms: u64) -> Self {
        self.delay_ms = ms;
        self
    }

    /// The bytes this event puts in the body.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// What the server does with one request. Built with the constructors below.
#[derive(Debug, Clone)]
pub struct Reply(Kind);

#[derive(Debug, Clone)]
enum Kind {
    Full {
        status: u16,
        content_type: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        close: bool,
        send_only: Option<usize>,
    },
    Sse {
        status: u16,
        headers: Vec<(String, String)>,
        events: Vec<SseOut>,
        end: End,
        close: bool,
        close_delimited: bool,
    },
    CloseBeforeHeaders,
    Reset,
    NoResponse(u64),
    Slow(u64, Box<Kind>),
}

/// How an SSE reply ends after its events.
#[derive(Debug, Clone, Copy)]
enum End {
    /// The terminating chunk (or, close-delimited, a close).
    Finish,
    /// Close without the terminating chunk.
    Cut,
    /// Silence for this many ms, then close without the terminating chunk.
    Stall(u64),
}

impl Reply {
    /// `status` with `Content-Type: application/json` and `body`, with `Content-Length`.
    pub fn json(status: u16, body: Value) -> Self {
        Self::full(status, "application/json", body.to_string().into_bytes())
    }

    /// `status` with this content type and body (an HTML error page from a proxy, …).
    pub fn text(status: u16, content_type: &str, body: &str) -> Self {
        Self::full(status, content_type, body.as_bytes().to_vec())
    }

    fn full(status: u16, content_type: &str, body: Vec<u8>) -> Self {
        Self(Kind::Full {
            status,
            content_type: content_type.to_string(),
            headers: Vec::new(),
            body,
            close: false,
            send_only: None,
        })
    }

    /// 200, `Content-Type: text/event-stream`, chunked: each event one chunk, flushed on its own,
    /// then the terminating chunk.
    pub fn sse(events: Vec<SseOut>) -> Self {
        Self(Kind::Sse {
            status: 200,
            headers: Vec::new(),
            events,
            end: End::Finish,
            close: false,
            close_delimited: false,
        })
    }

    /// Reads the request, then closes: the client sees EOF before any status line.
    pub fn close_before_headers() -> Self {
        Self(Kind::CloseBeforeHeaders)
    }

    /// Peeks at the request (it is recorded) and closes with it unread: a TCP RST.
    pub fn reset() -> Self {
        Self(Kind::Reset)
    }

    /// Reads the request, sends nothing for `ms`, then closes.
    pub fn no_response(ms: u64) -> Self {
        Self(Kind::NoResponse(ms))
    }

    /// Reads the request, waits `ms`, then does what `inner` does.
    pub fn slow_headers(ms: u64, inner: Reply) -> Self {
        Self(Kind::Slow(ms, Box::new(inner.0)))
    }

    /// The first `n_events` events of an SSE reply, then a close without the terminating chunk.
    pub fn cut_after(n_events: usize, inner_sse: Reply) -> Self {
        inner_sse.map_sse("cut_after", |events, end| {
            events.truncate(n_events);
            *end = End::Cut;
        })
    }

    /// The first `n_events` events of an SSE reply, then silence for `ms`, then a close without
    /// the terminating chunk.
    pub fn stall_after(n_events: usize, ms: u64, inner_sse: Reply) -> Self {
        inner_sse.map_sse("stall_after", |events, end| {
            events.truncate(n_events);
            *end = End::Stall(ms);
        })
    }

    /// A JSON/text reply with its full `Content-Length` but only its first `n_bytes` body bytes,
    /// then a close.
    pub fn truncated(n_bytes: usize, inner: Reply) -> Self {
        fn go(kind: &mut Kind, n: usize) {
            match kind {
                Kind::Full { send_only, .. } => *send_only = Some(n),
                Kind::Slow(_, inner) => go(inner, n),
                other => panic!("Reply::truncated needs a json/text reply, got {other:?}"),
            }
        }
        let mut reply = inner;
        go(&mut reply.0, n_bytes);
        reply
    }

    /// An SSE reply without chunked framing or length: the body ends when the server closes the
    /// connection, so a cut is indistinguishable from a clean end at the HTTP level.
    pub fn close_delimited(self) -> Self {
        let mut reply = self;
        reply.0.innermost(&mut |kind| match kind {
            Kind::Sse {
                close_delimited, ..
            } => *close_delimited = true,
            other => panic!("Reply::close_delimited needs an SSE reply, got {other:?}"),
        });
        reply
    }

    /// Adds a response header (`content-type` replaces the default one of a json/text reply).
    pub fn header(self, name: &str, value: &str) -> Self {
        let mut reply = self;
        reply.0.innermost(&mut |kind| match kind {
            Kind::Full {
                content_type,
                headers,
                ..
            } => {
                if name.eq_ignore_ascii_case("content-type") {
                    *content_type = value.to_string();
                } else {
                    headers.push((name.to_string(), value.to_string()));
                }
            }
            Kind::Sse { headers, .. } => headers.push((name.to_string(), value.to_string())),
            other => panic!("Reply::header needs a json/text/SSE reply, got {other:?}"),
        });
        reply
    }

    /// Sends `Connection: close` and closes the connection after the reply.
    pub fn close(self) -> Self {
        let mut reply = self;
        reply.0.innermost(&mut |kind| match kind {
            Kind::Full { close, .. } | Kind::Sse { close, .. } => *close = true,
            other => panic!("Reply::close needs a json/text/SSE reply, got {other:?}"),
        });
        reply
    }

    /// Sets the status of a json/text/SSE reply.
    pub fn status(self, code: u16) -> Self {
        let mut reply = self;
        reply.0.innermost(&mut |kind| match kind {
            Kind::Full { status, .. } | Kind::Sse { status, .. } => *status = code,
            other => panic!("Reply::status needs a json/text/SSE reply, got {other:?}"),
        });
        reply
    }

    fn map_sse(self, what: &str, f: impl FnOnce(&mut Vec<SseOut>, &mut End)) -> Self {
        let mut reply = self;
        let mut f = Some(f);
        reply.0.innermost(&mut |kind| match kind {
            Kind::Sse { events, end, .. } => {
                if let Some(f) = f.take() {
                    f(events, end);
                }
            }
            other => panic!("Reply::{what} needs an SSE reply, got {other:?}"),
        });
        reply
    }
}

impl Kind {
    /// Applies `f` to the reply under any `slow_headers` wrappers.
    fn innermost(&mut self, f: &mut dyn FnMut(&mut Kind)) {
        match self {
            Kind::Slow(_, inner) => inner.innermost(f),
            other => f(other),
        }
    }

    /// Total delay of the `slow_headers` wrappers and the reply under them.
    fn unwrap_slow(self) -> (u64, Kind) {
        match self {
            Kind::Slow(ms, inner) => {
                let (more, kind) = inner.unwrap_slow();
                (ms.saturating_add(more), kind)
            }
            other => (0, other),
        }
    }
}

/// The URL of a loopback port nobody listens on (bound, then released): connecting is refused.
pub fn refused_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let port = listener
        .local_addr()
        .expect("a bound listener has an address")
        .port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

// ---------------------------------------------------------------------------------------------
// Provider wire formats (CRATES.md §10)

/// A Chat Completions stream: one chunk per piece (`choices[0].delta.content`; the first also
/// has `role: assistant`), then a chunk with `finish_reason` if `finish` is given, then a usage
/// chunk with `choices: []` if `usage` `(prompt, completion)` is given, then `data: [DONE]` if
/// `done`. Event count: `pieces + finish + usage + done`.
pub fn openai_stream(
    text_pieces: &[&str],
    finish: Option<&str>,
    done: bool,
    usage: Option<(u64, u64)>,
) -> Vec<SseOut> {
    let mut out = Vec::new();
    for (i, piece) in text_pieces.iter().enumerate() {
        let delta = if i == 0 {
            json!({"role": "assistant", "content": piece})
        } else {
            json!({"content": piece})
        };
        out.push(SseOut::data(openai_chunk(delta, None)));
    }
    if let Some(reason) = finish {
        out.push(SseOut::data(openai_chunk(json!({}), Some(reason))));
    }
    if let Some((prompt, completion)) = usage {
        let mut chunk = openai_chunk(json!({}), None);
        chunk["choices"] = json!([]);
        chunk["usage"] = json!({
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        });
        out.push(SseOut::data(chunk));
    }
    if done {
        out.push(SseOut::done());
    }
    out
}

/// One `chat.completion.chunk` with this delta and finish reason.
pub fn openai_chunk(delta: Value, finish: Option<&str>) -> Value {
    json!({
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "test-model",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
    })
}

/// A Messages stream: `message_start`, `content_block_start`, `ping`, one `content_block_delta`
/// (`text_delta`) per piece, `content_block_stop`, `message_delta` (`stop_reason: end_turn`,
/// usage), and `message_stop` when `stop`. Event count: `pieces + 5 + stop`. Usage: 10 input
/// tokens, one output token per piece.
pub fn anthropic_stream(pieces: &[&str], stop: bool) -> Vec<SseOut> {
    let mut out = vec![
        SseOut::named(
            "message_start",
            json!({"type": "message_start", "message": {
                "id": "msg_test", "type": "message", "role": "assistant",
                "model": "claude-test", "content": [], "stop_reason": null,
                "stop_sequence": null, "usage": {"input_tokens": 10, "output_tokens": 1},
            }}),
        ),
        SseOut::named(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
                   "content_block": {"type": "text", "text": ""}}),
        ),
        SseOut::named("ping", json!({"type": "ping"})),
    ];
    for piece in pieces {
        out.push(SseOut::named(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
                   "delta": {"type": "text_delta", "text": piece}}),
        ));
    }
    out.push(SseOut::named(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    out.push(SseOut::named(
        "message_delta",
        json!({"type": "message_delta",
               "delta": {"stop_reason": "end_turn", "stop_sequence": null},
               "usage": {"output_tokens": pieces.len()}}),
    ));
    if stop {
        out.push(SseOut::named(
            "message_stop",
            json!({"type": "message_stop"}),
        ));
    }
    out
}

/// A Gemini `streamGenerateContent?alt=sse` stream: one `data:` chunk per piece (no event names,
/// no end marker); when `finish`, the last chunk also carries `finishReason: STOP` and
/// `usageMetadata` (10 prompt tokens, one per piece). With no pieces and `finish`, one chunk
/// with an empty text part carries them. Event count: `max(pieces, finish)`.
pub fn gemini_stream(pieces: &[&str], finish: bool) -> Vec<SseOut> {
    let mut texts: Vec<&str> = pieces.to_vec();
    if texts.is_empty() && finish {
        texts.push("");
    }
    let last = texts.len().saturating_sub(1);
    texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let mut candidate = json!({
                "content": {"role": "model", "parts": [{"text": text}]},
                "index": 0,
            });
            let mut chunk = json!({"modelVersion": "gemini-test", "responseId": "resp-test"});
            if finish && i == last {
                candidate["finishReason"] = json!("STOP");
                chunk["usageMetadata"] = json!({
                    "promptTokenCount": 10,
                    "candidatesTokenCount": pieces.len(),
                    "totalTokenCount": 10 + pieces.len(),
                });
            }
            chunk["candidates"] = json!([candidate]);
            SseOut::data(chunk)
        })
        .collect()
}

/// A Chat Completions stream that reasons first: one chunk per reasoning piece
/// (`delta.reasoning_content`, or `delta.reasoning` when `field` says so; the first also has
/// `role: assistant`), then [`openai_stream`]`(text_pieces, Some("stop"), true, Some((5, 3)))`.
pub fn openai_reasoning_stream(
    field: &str,
    reasoning_pieces: &[&str],
    text_pieces: &[&str],
) -> Vec<SseOut> {
    let mut out: Vec<SseOut> = reasoning_pieces
        .iter()
        .enumerate()
        .map(|(i, piece)| {
            let mut delta = json!({"content": null});
            delta[field] = json!(piece);
            if i == 0 {
                delta["role"] = json!("assistant");
            }
            SseOut::data(openai_chunk(delta, None))
        })
        .collect();
    out.extend(openai_stream(text_pieces, Some("stop"), true, Some((5, 3))));
    out
}

/// A complete (non-streamed) `chat.completion` body with this answer and, when given, its
/// `message.reasoning_content`; usage 5 + 3.
pub fn openai_completion_body(text: &str, reasoning: Option<&str>) -> Value {
    let mut message = json!({"role": "assistant", "content": text});
    if let Some(r) = reasoning {
        message["reasoning_content"] = json!(r);
    }
    json!({
        "id": "chatcmpl-test", "object": "chat.completion", "created": 1_700_000_000,
        "model": "test-model",
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
    })
}

/// A Messages stream with extended thinking: `message_start`, a `thinking` block (one
/// `thinking_delta` per thinking piece, then a `signature_delta`) at index 0, a `text` block
/// (one `text_delta` per piece) at index 1, `message_delta` (`end_turn`), `message_stop`.
pub fn anthropic_thinking_stream(thinking: &[&str], pieces: &[&str]) -> Vec<SseOut> {
    let block = |name: &str, v: Value| SseOut::named(name, v);
    let mut out = vec![
        block(
            "message_start",
            json!({"type": "message_start", "message": {
                "id": "msg_test", "type": "message", "role": "assistant",
                "model": "claude-test", "content": [], "stop_reason": null,
                "stop_sequence": null, "usage": {"input_tokens": 10, "output_tokens": 1},
            }}),
        ),
        block(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
                   "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
        ),
    ];
    for t in thinking {
        out.push(block(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
                   "delta": {"type": "thinking_delta", "thinking": t}}),
        ));
    }
    out.push(block(
        "content_block_delta",
        json!({"type": "content_block_delta", "index": 0,
               "delta": {"type": "signature_delta", "signature": "c2lnbmF0dXJl"}}),
    ));
    out.push(block(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    out.push(block(
        "content_block_start",
        json!({"type": "content_block_start", "index": 1,
               "content_block": {"type": "text", "text": ""}}),
    ));
    for piece in pieces {
        out.push(block(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 1,
                   "delta": {"type": "text_delta", "text": piece}}),
        ));
    }
    out.push(block(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 1}),
    ));
    out.push(block(
        "message_delta",
        json!({"type": "message_delta",
               "delta": {"stop_reason": "end_turn", "stop_sequence": null},
               "usage": {"output_tokens": thinking.len() + pieces.len()}}),
    ));
    out.push(block("message_stop", json!({"type": "message_stop"})));
    out
}

/// A complete (non-streamed) Messages body: a signed `thinking` block, then a `text` block.
pub fn anthropic_thinking_body(thinking: &str, text: &str) -> Value {
    json!({
        "id": "msg_test", "type": "message", "role": "assistant", "model": "claude-test",
        "content": [
            {"type": "thinking", "thinking": thinking, "signature": "c2lnbmF0dXJl"},
            {"type": "text", "text": text},
        ],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": 5},
    })
}

/// `{"error": {"message", "type", "param": null, "code"}}`.
pub fn openai_error_body(kind: &str, code: Option<&str>, message: &str) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

/// An OpenAI error reply (`openai_error(429, "insufficient_quota", Some("insufficient_quota"),
/// "…")`).
pub fn openai_error(status: u16, kind: &str, code: Option<&str>, message: &str) -> Reply {
    Reply::json(status, openai_error_body(kind, code, message))
}

/// An OpenAI in-stream error: a `data: {"error": {…}}` chunk.
pub fn openai_stream_error(kind: &str, code: Option<&str>, message: &str) -> SseOut {
    SseOut::data(openai_error_body(kind, code, message))
}

/// `{"type": "error", "error": {"type", "message"}, "request_id"}`.
pub fn anthropic_error_body(kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_test"})
}

/// The HTTP status Anthropic uses for an error type (`overloaded_error` → 529; unknown → 500).
pub fn anthropic_status(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 500,
    }
}

/// An Anthropic error reply, its status from the type ([`anthropic_status`]).
pub fn anthropic_error(kind: &str, message: &str) -> Reply {
    Reply::json(anthropic_status(kind), anthropic_error_body(kind, message))
}

/// An Anthropic in-stream error: `event: error` with the error body.
pub fn anthropic_stream_error(kind: &str, message: &str) -> SseOut {
    SseOut::named("error", anthropic_error_body(kind, message))
}

/// `{"error": {"code", "message", "status", "details"?}}`, with a `google.rpc.RetryInfo` detail
/// when `retry_delay` (`"22s"`, `"8.94s"`) is given.
pub fn gemini_error_body(
    code: u16,
    status: &str,
    message: &str,
    retry_delay: Option<&str>,
) -> Value {
    let mut error = json!({"code": code, "message": message, "status": status});
    if let Some(delay) = retry_delay {
        error["details"] = json!([{
            "@type": "type.googleapis.com/google.rpc.RetryInfo",
            "retryDelay": delay,
        }]);
    }
    json!({ "error": error })
}

/// A Gemini error reply with HTTP status `code`.
pub fn gemini_error(code: u16, status: &str, message: &str, retry_delay: Option<&str>) -> Reply {
    Reply::json(code, gemini_error_body(code, status, message, retry_delay))
}

/// A Gemini in-stream error: a `data: {"error": {…}}` chunk.
pub fn gemini_stream_error(code: u16, status: &str, message: &str) -> SseOut {
    SseOut::data(gemini_error_body(code, status, message, None))
}

// ---------------------------------------------------------------------------------------------
// The server

/// A running loopback server; dropping it stops it and joins its threads.
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

struct Shared {
    script: Vec<Reply>,
    served: AtomicUsize,
    connections: AtomicUsize,
    stop: AtomicBool,
    requests: Mutex<Vec<Request>>,
    /// A clone of each open connection, so a drop can shut it down; removed when it closes.
    streams: Mutex<BTreeMap<usize, TcpStream>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn next_reply(&self) -> Kind {
        let i = self.served.fetch_add(1, Ordering::SeqCst);
        let i = i.min(self.script.len() - 1);
        self.script[i].0.clone()
    }

    fn record(&self, request: Request) {
        lock(&self.requests).push(request);
    }

    /// Sleeps `ms`, waking early (and returning false) when the server is stopping.
    fn nap(&self, ms: u64) -> bool {
        let until = Instant::now() + Duration::from_millis(ms);
        loop {
            if self.stopped() {
                return false;
            }
            let now = Instant::now();
            if now >= until {
                return true;
            }
            thread::sleep(NAP_SLICE.min(until - now));
        }
    }
}

impl Server {
    /// Starts a server on `127.0.0.1:0` that answers with `script` (see the module docs).
    pub fn start(script: Vec<Reply>) -> Server {
        assert!(!script.is_empty(), "Server::start needs at least one reply");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let shared = Arc::new(Shared {
            script,
            served: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            requests: Mutex::new(Vec::new()),
            streams: Mutex::new(BTreeMap::new()),
            workers: Mutex::new(Vec::new()),
        });
        let for_thread = Arc::clone(&shared);
        let accept = thread::Builder::new()
            .name("test-server-accept".into())
            .spawn(move || accept_loop(&listener, &for_thread))
            .expect("spawn the accept thread");
        Server {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.shared.requests).clone()
    }

    /// How many TCP connections were accepted so far.
    pub fn connection_count(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Unblock `accept`; it sees the flag and returns.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        let accept_panicked = self.accept.take().is_some_and(|h| h.join().is_err());
        for stream in lock(&self.shared.streams).values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        let workers = std::mem::take(&mut *lock(&self.shared.workers));
        let panicked = workers
            .into_iter()
            .map(JoinHandle::join)
            .filter(Result::is_err)
            .count();
        assert!(
            !(accept_panicked || panicked > 0) || thread::panicking(),
            "test server: {panicked} connection thread(s) panicked (accept: {accept_panicked})"
        );
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stopped() {
            break;
        }
        let Ok(stream) = conn else {
            thread::sleep(NAP_SLICE);
            continue;
        };
        let id = shared.connections.fetch_add(1, Ordering::SeqCst);
        let Ok(clone) = stream.try_clone() else {
            continue;
        };
        lock(&shared.streams).insert(id, clone);
        let for_thread = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name(format!("test-server-conn-{id}"))
            .spawn(move || serve_connection(stream, id, &for_thread));
        match spawned {
            Ok(handle) => lock(&shared.workers).push(handle),
            Err(_) => {
                lock(&shared.streams).remove(&id);
            }
        }
    }
}

/// Removes a connection's clone from the registry when its thread ends, so the socket closes.
struct Registration<'a> {
    shared: &'a Shared,
    id: usize,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        lock(&self.shared.streams).remove(&self.id);
    }
}

fn serve_connection(mut stream: TcpStream, id: usize, shared: &Shared) {
    let _registration = Registration { shared, id };
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    loop {
        // Wait for the next request's first byte (idle keep-alive; 0 = the client closed).
        if buf.is_empty() && !matches!(stream.peek(&mut [0u8; 1]), Ok(n) if n > 0) {
            return;
        }
        if shared.stopped() {
            return;
        }
        let (delay, kind) = shared.next_reply().unwrap_slow();
        if matches!(kind, Kind::Reset) {
            reset(stream, &buf, id, delay, shared);
            return;
        }
        let request = match read_request(&mut stream, &mut buf, id) {
            Ok(request) => request,
            Err(ReadError::Closed) => return,
            Err(ReadError::Bad(status, why)) => {
                let _ = write_simple(&mut stream, status, why);
                return;
            }
        };
        let keep_alive = request.keep_alive;
        shared.record(request.request);
        if !shared.nap(delay) {
            return;
        }
        let keep = match kind {
            Kind::Full {
                status,
                content_type,
                headers,
                body,
                close,
                send_only,
            } => {
                let close = close || !keep_alive || send_only.is_some();
                write_full(
                    &mut stream,
                    status,
                    &content_type,
                    &headers,
                    &body,
                    close,
                    send_only,
                )
                .is_ok()
                    && !close
            }
            Kind::Sse {
                status,
                headers,
                events,
                end,
                close,
                close_delimited,
            } => {
                let close = close || !keep_alive || close_delimited;
                write_sse(
                    &mut stream,
                    shared,
                    status,
                    &headers,
                    &events,
                    end,
                    close,
                    close_delimited,
                ) && !close
            }
            Kind::CloseBeforeHeaders => false,
            Kind::NoResponse(ms) => {
                shared.nap(ms);
                false
            }
            Kind::Reset | Kind::Slow(..) => unreachable!("handled above / unwrapped"),
        };
        if !keep {
            return;
        }
    }
}

/// Records the request from a peek (never consuming it), waits `delay`, and closes with it still
/// in the receive queue, so Linux sends RST rather than FIN.
fn reset(stream: TcpStream, pending: &[u8], id: usize, delay: u64, shared: &Shared) {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut peeked = vec![0u8; 256 * 1024];
    loop {
        let n = stream.peek(&mut peeked).unwrap_or(0);
        let mut view = pending.to_vec();
        view.extend_from_slice(&peeked[..n]);
        match parse(&view, id) {
            Parse::Complete(request, _) => {
                shared.record(request.request);
                break;
            }
            Parse::Incomplete { .. } if n > 0 && n < peeked.len() && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(1));
            }
            _ => break,
        }
    }
    shared.nap(delay);
    // Drop the registry's clone first: the socket closes when its last handle does.
    lock(&shared.streams).remove(&id);
    drop(stream);
}

// ---------------------------------------------------------------------------------------------
// Reading requests

struct Incoming {
    request: Request,
    keep_alive: bool,
}

enum ReadError {
    /// The client closed, timed out or errored: just end the connection.
    Closed,
    /// Malformed or too large: answer with this status, then close.
    Bad(u16, &'static str),
}

enum Parse {
    Incomplete { expect_continue: bool },
    Complete(Incoming, usize),
    Bad(u16, &'static str),
}

/// Reads one whole request, keeping any bytes after it in `buf` for the next one.
fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    id: usize,
) -> Result<Incoming, ReadError> {
    let mut chunk = vec![0u8; 64 * 1024];
    let mut sent_continue = false;
    loop {
        match parse(buf, id) {
            Parse::Complete(incoming, used) => {
                buf.drain(..used);
                return Ok(incoming);
            }
            Parse::Bad(status, why) => return Err(ReadError::Bad(status, why)),
            Parse::Incomplete { expect_continue } => {
                if expect_continue && !sent_continue {
                    sent_continue = true;
                    if stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err() {
                        return Err(ReadError::Closed);
                    }
                }
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err(ReadError::Closed),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(ReadError::Closed),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses one request from the start of `buf`.
fn parse(buf: &[u8], id: usize) -> Parse {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD {
            Parse::Bad(431, "request head too large")
        } else {
            Parse::Incomplete {
                expect_continue: false,
            }
        };
    };
    if head_end > MAX_HEAD {
        return Parse::Bad(431, "request head too large");
    }
    let Ok(head) = std::str::from_utf8(&buf[..head_end]) else {
        return Parse::Bad(400, "request head is not UTF-8");
    };
    let mut lines = head.split("\r\n");
    let mut start = lines.next().unwrap_or("").split(' ');
    let (Some(method), Some(path), Some(version), None) =
        (start.next(), start.next(), start.next(), start.next())
    else {
        return Parse::Bad(400, "malformed request line");
    };
    if method.is_empty() || !version.starts_with("HTTP/1.") {
        return Parse::Bad(400, "malformed request line");
    }
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Parse::Bad(400, "malformed header line");
        };
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim();
        headers
            .entry(name)
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(value);
            })
            .or_insert_with(|| value.to_string());
    }
    let lower = |name: &str| headers.get(name).map(|v| v.to_ascii_lowercase());
    let expect_continue = lower("expect").is_some_and(|v| v == "100-continue");
    let connection = lower("connection").unwrap_or_default();
    let keep_alive = if version == "HTTP/1.0" {
        connection.contains("keep-alive")
    } else {
        !connection.contains("close")
    };
    let rest = &buf[head_end + 4..];
    let (body, used) = if lower("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        match parse_chunked(rest) {
            Ok(Some((ranges, used))) => (
                ranges
                    .into_iter()
                    .flat_map(|r| rest[r].iter().copied())
                    .collect(),
                used,
            ),
            Ok(None) => return Parse::Incomplete { expect_continue },
            Err((status, why)) => return Parse::Bad(status, why),
        }
    } else if let Some(length) = headers.get("content-length") {
        let Ok(n) = length.parse::<usize>() else {
            return Parse::Bad(400, "malformed content-length");
        };
        if n > MAX_BODY {
            return Parse::Bad(413, "request body too large");
        }
        if rest.len() < n {
            return Parse::Incomplete { expect_continue };
        }
        (rest[..n].to_vec(), n)
    } else {
        (Vec::new(), 0)
    };
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
    };
    let request = Request {
        method: method.to_string(),
        path: path.to_string(),
        headers,
        body,
        connection: id,
    };
    Parse::Complete(
        Incoming {
            request,
            keep_alive,
        },
        head_end + 4 + used,
    )
}

/// The data ranges of a complete chunked body and the bytes it used (trailers included), or
/// `None` while incomplete. Only ranges are collected, so re-parsing a growing buffer is cheap.
type Chunked = Option<(Vec<Range<usize>>, usize)>;

fn parse_chunked(rest: &[u8]) -> Result<Chunked, (u16, &'static str)> {
    let mut pos = 0;
    let mut total = 0usize;
    let mut ranges = Vec::new();
    loop {
        let Some(line_len) = find(&rest[pos..], b"\r\n") else {
            return if rest.len() - pos > 1024 {
                Err((400, "malformed chunk size line"))
            } else {
                Ok(None)
            };
        };
        let line = std::str::from_utf8(&rest[pos..pos + line_len]).unwrap_or("");
        let digits = line.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(digits, 16) else {
            return Err((400, "malformed chunk size line"));
        };
        pos += line_len + 2;
        if size == 0 {
            // Trailers, up to an empty line.
            loop {
                let Some(len) = find(&rest[pos..], b"\r\n") else {
                    return Ok(None);
                };
                pos += len + 2;
                if len == 0 {
                    return Ok(Some((ranges, pos)));
                }
            }
        }
        total = total.saturating_add(size);
        if total > MAX_BODY {
            return Err((413, "request body too large"));
        }
        if rest.len() < pos + size + 2 {
            return Ok(None);
        }
        if &rest[pos + size..pos + size + 2] != b"\r\n" {
            return Err((400, "chunk data not followed by CRLF"));
        }
        ranges.push(pos..pos + size);
        pos += size + 2;
    }
}

// ---------------------------------------------------------------------------------------------
// Writing replies

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        529 => "Site Overloaded",
        _ => "Status",
    }
}

fn head(status: u16, fixed: &[(&str, String)], extra: &[(String, String)]) -> String {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    let fixed = fixed.iter().map(|(n, v)| (*n, v.as_str()));
    let extra = extra.iter().map(|(n, v)| (n.as_str(), v.as_str()));
    for (name, value) in fixed.chain(extra) {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out
}

fn write_simple(stream: &mut TcpStream, status: u16, why: &str) -> io::Result<()> {
    let body = json!({"error": why}).to_string();
    let fixed = [
        ("content-type", "application/json".to_string()),
        ("content-length", body.len().to_string()),
        ("connection", "close".to_string()),
    ];
    stream.write_all(head(status, &fixed, &[]).as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

fn write_full(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    headers: &[(String, String)],
    body: &[u8],
    close: bool,
    send_only: Option<usize>,
) -> io::Result<()> {
    let mut fixed = vec![
        ("content-type", content_type.to_string()),
        ("content-length", body.len().to_string()),
    ];
    if close {
        fixed.push(("connection", "close".to_string()));
    }
    let mut bytes = head(status, &fixed, headers).into_bytes();
    let sent = send_only.unwrap_or(body.len()).min(body.len());
    bytes.extend_from_slice(&body[..sent]);
    stream.write_all(&bytes)?;
    stream.flush()
}

/// Writes an SSE reply; returns whether the connection is still usable.
#[allow(
    clippy::too_many_arguments,
    reason = "the destructured fields of one reply"
)]
fn write_sse(
    stream: &mut TcpStream,
    shared: &Shared,
    status: u16,
    headers: &[(String, String)],
    events: &[SseOut],
    end: End,
    close: bool,
    close_delimited: bool,
) -> bool {
    let mut fixed = vec![
        ("content-type", "text/event-stream".to_string()),
        ("cache-control", "no-cache".to_string()),
    ];
    if !close_delimited {
        fixed.push(("transfer-encoding", "chunked".to_string()));
    }
    if close {
        fixed.push(("connection", "close".to_string()));
    }
    let send = |stream: &mut TcpStream, bytes: &[u8]| -> bool {
        stream
            .write_all(bytes)
            .and_then(|()| stream.flush())
            .is_ok()
    };
    if !send(stream, head(status, &fixed, headers).as_bytes()) {
        return false;
    }
    for event in events {
        if !shared.nap(event.delay_ms) {
            return false;
        }
        if event.text.is_empty() {
            continue;
        }
        let bytes = if close_delimited {
            event.text.clone().into_bytes()
        } else {
            let mut b = format!("{:x}\r\n", event.text.len()).into_bytes();
            b.extend_from_slice(event.text.as_bytes());
            b.extend_from_slice(b"\r\n");
            b
        };
        if !send(stream, &bytes) {
            return false;
        }
    }
    match end {
        End::Finish => close_delimited || send(stream, b"0\r\n\r\n"),
        End::Cut => false,
        End::Stall(ms) => {
            shared.nap(ms);
            false
        }
    }
}
