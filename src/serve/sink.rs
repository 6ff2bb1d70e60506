//! Where a `serve` answer goes as the shell delivers it (SPEC §8.3): the streaming client's
//! socket, one Chat Completions chunk per delivered piece, flushed at once; or, for a
//! non-streamed request, nowhere until the end.
//!
//! Owns: the event-stream response — its head (sent with the first piece, naming the backend
//! that began the answer), the first chunk carrying the role, the closing chunks (`finish`,
//! optional usage, `[DONE]`), and the in-band error that ends a stream broken for good.
//! Must not: decide anything: what reaches the sink was already decided by `mid_stream`
//! (continue sends only the continuation, buffer only complete attempts).
//!
//! Decisions where SPEC is silent:
//! - The `x-llxprt-backend`/`x-llxprt-bucket` headers of a stream name the backend whose text
//!   came first (headers cannot change later); each chunk's `model` names the backend that
//!   produced it.
//! - A stream broken for good ends with the error event and an unterminated chunked body, so
//!   even a client that ignores the event sees an incomplete response, never a clean end.
//! - A client that goes away mid-stream cancels its request (no more tokens are spent on it).
//! - Reasoning the shell shows (SPEC §3.1 `reasoning.includeInResponse`) is sent as
//!   `delta.reasoning_content`, the field DeepSeek-style OpenAI-compatible servers use and the
//!   one most clients (and llxprt's own decoder) read, each piece in its own chunk as it
//!   arrives, before the answer's content deltas. Its chunks carry `"content": ""` so a client
//!   that only appends `delta.content` is not tripped up. A non-streamed answer carries the
//!   reasoning shown as `message.reasoning_content`; hidden reasoning is never sent.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use serde_json::{Value, json};

use super::conn::{self, Conn};
use super::wire::{self, Delta};
use crate::shell::http::{Answer, AnswerSink};

/// The backend of the attempt in progress (set by the executor before each attempt).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Serving {
    /// Backend profile.
    pub backend: String,
    /// Bucket.
    pub bucket: String,
    /// The backend's own model name.
    pub model: String,
}

/// Shared between the executor (which sets it) and the sink (which reads it); one thread.
pub type ServingCell = Rc<RefCell<Serving>>;

/// Captures what a non-streamed answer needs beyond [`Answer`]: the raw body of a
/// pass-through answer, the reasoning the shell showed, and the shell's notices (for the log
/// line).
#[derive(Debug, Default)]
pub struct Collect {
    /// The last complete 2xx body.
    pub raw_body: Option<Vec<u8>>,
    /// The reasoning shown (SPEC §3.1 `reasoning.includeInResponse`), in the order it came:
    /// `None` when none was (hidden, or there was none).
    pub reasoning: Option<String>,
    /// Notices.
    pub notices: Vec<String>,
}

impl AnswerSink for Collect {
    fn text(&mut self, _text: &str) {}
    fn notice(&mut self, line: &str) {
        self.notices.push(line.to_string());
    }
    fn complete_body(&mut self, body: &[u8]) {
        self.raw_body = Some(body.to_vec());
    }
    fn reasoning(&mut self, text: &str) {
        if !text.is_empty() {
            self.reasoning
                .get_or_insert_with(String::new)
                .push_str(text);
        }
    }
}

/// Writes an event stream to the client as the answer arrives.
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent facts about one response stream"
)]
pub struct StreamSink<'c> {
    conn: &'c mut Conn,
    id: String,
    created: u64,
    serving: ServingCell,
    close: bool,
    passthrough: bool,
    cancel: Arc<AtomicBool>,
    started: bool,
    role_sent: bool,
    broken: bool,
    /// Bytes written since the last flush: what the upstream's events of one read produced
    /// (the head with the first chunks; the last text with the finish chunk, `[DONE]` and the
    /// body's end) leaves in one write, never held back past those events
    /// ([`AnswerSink::events_done`]).
    pending: Vec<u8>,
    /// Where an event is serialised before it is framed (kept to save an allocation per
    /// event).
    scratch: Vec<u8>,
    /// What the shell captured (notices, a pass-through body).
    pub collect: Collect,
}

impl<'c> StreamSink<'c> {
    /// A sink for request `id`; `close` says whether the connection closes after the answer.
    pub fn new(
        conn: &'c mut Conn,
        id: String,
        created: u64,
        serving: ServingCell,
        close: bool,
        passthrough: bool,
        cancel: Arc<AtomicBool>,
    ) -> Self {
        StreamSink {
            conn,
            id,
            created,
            serving,
            close,
            passthrough,
            cancel,
            started: false,
            role_sent: false,
            broken: false,
            pending: Vec::new(),
            scratch: Vec::new(),
            collect: Collect::default(),
        }
    }

    /// Whether the response head was sent (the status can no longer change).
    pub fn started(&self) -> bool {
        self.started
    }

    /// Whether the client went away.
    pub fn broken(&self) -> bool {
        self.broken
    }

    fn write(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    /// Sends what was written (SPEC §8.3: each event as it arrives).
    fn flush(&mut self) {
        let bytes = std::mem::take(&mut self.pending);
        if self.broken || bytes.is_empty() {
            return;
        }
        if self.conn.write_all(&bytes).is_err() {
            self.broken = true;
            // The client is gone: stop spending tokens on it (SPEC §5.1 cancellation).
            self.cancel.store(true, Ordering::SeqCst);
        }
    }

    fn start(&mut self) {
        if self.started {
            return;
        }
        self.started = true;
        let s = self.serving.borrow();
        conn::head_into(
            &mut self.pending,
            200,
            &[
                ("content-type", "text/event-stream"),
                ("cache-control", "no-cache"),
                ("transfer-encoding", "chunked"),
                ("x-llxprt-backend", &s.backend),
                ("x-llxprt-bucket", &s.bucket),
                ("x-request-id", &self.id),
            ],
            self.close,
        );
    }

    /// One event, `data: <json>`, as one piece of the chunked body.
    fn event(&mut self, v: &impl Serialize) {
        frame(&mut self.pending, &mut self.scratch, v);
    }

    /// A chunk carrying `delta` (and `finish`), its `model` the serving backend's.
    fn delta(&mut self, delta: &impl Serialize, finish: Option<&str>) {
        let serving = self.serving.borrow();
        let c = wire::chunk(&self.id, self.created, &serving.model, delta, finish);
        frame(&mut self.pending, &mut self.scratch, &c);
    }

    /// `Some("assistant")` for the answer's first chunk, then `None`.
    fn take_role(&mut self) -> Option<&'static str> {
        (!std::mem::replace(&mut self.role_sent, true)).then_some("assistant")
    }

    /// Ends a delivered answer: the finish chunk, the usage chunk when asked for, `[DONE]`.
    pub fn finish_ok(&mut self, answer: &Answer, include_usage: bool) {
        self.start();
        let raw = if self.passthrough {
            self.collect
                .raw_body
                .as_deref()
                .and_then(|b| serde_json::from_slice::<Value>(b).ok())
        } else {
            None
        };
        if let Some(up) = raw {
            let model = self.serving.borrow().model.clone();
            let reasoning = self.collect.reasoning.as_deref();
            for c in wire::passthrough_chunks(&self.id, self.created, &model, &up, reasoning) {
                frame(&mut self.pending, &mut self.scratch, &c);
            }
        } else {
            if let Some(role) = self.take_role() {
                let delta = Delta {
                    role: Some(role),
                    content: Some(""),
                    reasoning_content: None,
                };
                self.delta(&delta, None);
            }
            let reason = wire::finish_reason(answer.finish_reason.as_deref());
            self.delta(&Delta::default(), Some(reason));
        }
        if include_usage {
            let serving = self.serving.borrow();
            let c = wire::usage_chunk(&self.id, self.created, &serving.model, answer.usage);
            frame(&mut self.pending, &mut self.scratch, &c);
        }
        conn::chunk_into(&mut self.pending, b"data: [DONE]\n\n");
        self.write(b"0\r\n\r\n");
        self.flush();
    }

    /// Ends a stream that broke for good after output began (SPEC §8.3): the in-band error
    /// event, never `[DONE]`; the body is left unterminated and the connection closes.
    pub fn finish_interrupted(&mut self, message: &str) {
        let v = json!({"error": {"message": message, "type": "stream_interrupted", "param": null, "code": "stream_interrupted"}});
        self.event(&v);
        self.flush();
    }
}

/// Appends `v` to `pending` as one event, `data: <json>`, framed as one piece of the chunked
/// body (`scratch` is where it is serialised first).
fn frame(pending: &mut Vec<u8>, scratch: &mut Vec<u8>, v: &impl Serialize) {
    scratch.clear();
    scratch.extend_from_slice(b"data: ");
    serde_json::to_writer(&mut *scratch, v).expect("chunks are plain JSON");
    scratch.extend_from_slice(b"\n\n");
    conn::chunk_into(pending, scratch);
}

impl AnswerSink for StreamSink<'_> {
    fn text(&mut self, text: &str) {
        if self.passthrough || text.is_empty() {
            return;
        }
        self.start();
        let delta = Delta {
            role: self.take_role(),
            content: Some(text),
            reasoning_content: None,
        };
        self.delta(&delta, None);
    }

    fn events_done(&mut self) {
        self.flush();
    }

    fn notice(&mut self, line: &str) {
        self.collect.notice(line);
    }

    fn complete_body(&mut self, body: &[u8]) {
        self.collect.complete_body(body);
    }

    fn reasoning(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        if self.passthrough {
            // The pass-through message is sent whole at the end, reasoning included.
            self.collect.reasoning(text);
            return;
        }
        self.start();
        let delta = Delta {
            role: self.take_role(),
            content: Some(""),
            reasoning_content: Some(text),
        };
        self.delta(&delta, None);
    }
}
