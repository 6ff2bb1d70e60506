//! The HTTP executor: carries out the engine's `Send` and `RefreshToken` orders against real
//! providers and reports each attempt as a SPEC §4 outcome. It is the network half of the one
//! loop ([`crate::driver::drive`]); `simulate` is the scripted half.
//!
//! Owns: turning an HTTP exchange into an [`Outcome`] (class, status, `Retry-After`, provider
//! code and message, usage, latency, output delivered) and delivering text to the caller per
//! `mid_stream` (SPEC §5.8). Must not: retry, wait or choose a backend (the engine does).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::protocol::{self, Chunk, Conversation, Credential, Target, Turn, Usage};
use super::sse::SseDecoder;
use super::transport::{self, Deadlines, MAX_BODY, MAX_ERROR_BODY, Msg, TransportError};
use crate::auth::credentials::Secret;
use crate::clock::now_ms;
use crate::driver::Attempted;
use crate::driver::Executor;
use crate::engine::plan::MidStream;
use crate::engine::{Class, Note, Outcome, Plan, RequestId, Step, classify_status};
use crate::profile::resolve::ResolvedBackend;
use crate::profile::settings::Streaming;
use crate::redact::{header_secrets, hide_known, scrub, url_secrets};
use crate::shell::budget;

/// Where answer text goes as it arrives.
pub trait AnswerSink {
    /// Answer text to show now.
    fn text(&mut self, text: &str);
    /// A one-line notice for the user (stderr).
    fn notice(&mut self, line: &str);
    /// The raw body of a complete non-streamed 2xx answer, just before its text is delivered.
    /// `serve` relays a Chat Completions message it does not interpret (tool calls) from it
    /// (SPEC §8.3); other sinks ignore it.
    fn complete_body(&mut self, _body: &[u8]) {}
    /// Reasoning text to show now, when the serving backend's `reasoning.includeInResponse`
    /// is on (SPEC §3.1): streamed as it arrives, or all of it just before the answer's text
    /// when the answer is delivered whole. Sinks that do not show reasoning ignore it.
    fn reasoning(&mut self, _text: &str) {}
    /// The events that arrived together (one read) were all given: what they produced is due
    /// now. Not called once the stream's finish signal arrived: what is left leaves with the
    /// end of the answer. `serve` writes each batch in one write; other sinks ignore it.
    fn events_done(&mut self) {}
    /// One live note of what the engine just did (SPEC §8.1: a retry, a bucket advance, a
    /// failover, a skip…), worded by [`crate::narrate::live_line`], at the moment it happens.
    /// Sinks that show no live notes (`serve`'s) ignore it.
    fn engine_note(&mut self, _line: &str) {}
    /// The engine ordered an attempt on this backend: what the waiting is for now (the
    /// spinner names it, SPEC §8.1). Sinks without a spinner ignore it.
    fn waiting_for(&mut self, _backend: &str) {}
}

/// Whether the backend's reasoning text is shown to the user: `reasoning.includeInResponse`,
/// true by default (SPEC §3.1).
pub fn show_reasoning(b: &ResolvedBackend) -> bool {
    b.settings
        .settings
        .reasoning_include_in_response
        .unwrap_or(true)
}

/// Rough token estimate when a provider sends no usage: characters / 4 (SPEC §5.8).
pub use crate::shell::budget::estimate_tokens;

/// One attempt as the caller reports it (`--json` attempts, SPEC §8.1).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AttemptInfo {
    /// Backend profile.
    pub backend: String,
    /// Bucket.
    pub bucket: String,
    /// Class.
    pub class: &'static str,
    /// Status, for classes that come from one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Latency (ms).
    pub latency_ms: u64,
}

/// The delivered answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    /// The complete answer text.
    pub text: String,
    /// Reasoning text, if any.
    pub reasoning: Option<String>,
    /// Reasoning signature, if any.
    pub signature: Option<String>,
    /// Finish reason.
    pub finish_reason: Option<String>,
    /// Usage (estimated when the provider sent none).
    pub usage: Usage,
}

/// The executor for one conversation turn.
pub struct HttpExec<'a> {
    root: std::path::PathBuf,
    backends: &'a [ResolvedBackend],
    turns: &'a [Turn],
    mode: MidStream,
    sink: &'a mut dyn AnswerSink,
    cancel: Arc<AtomicBool>,
    getenv: &'a dyn Fn(&str) -> Option<String>,
    /// The last number of exchanges the context budget left out that was told (SPEC §5.8:
    /// said once, not at every retry).
    trim_told: Option<usize>,
    /// Text already delivered to the caller by an interrupted attempt (`continue`).
    partial: String,
    /// Whether an earlier attempt showed text that a restart will repeat: (estimated tokens,
    /// pieces of text shown, backend).
    shown_before: Option<(u64, u64, String)>,
    /// Pieces of answer text the current attempt has handed to the sink.
    text_chunks: u64,
    /// The last successful attempt's answer.
    last: Answer,
    /// Every attempt, as reported.
    pub attempts: Vec<AttemptInfo>,
    /// Malformed stream events skipped.
    pub malformed: u64,
    /// The rate-limit headers of the attempt in progress (SPEC §4: kept for diagnostics).
    last_ratelimit: std::collections::BTreeMap<String, String>,
    /// OAuth buckets: tokens sent and refreshes failed in this turn (SPEC §6.3).
    tokens: crate::auth::refresh::Refresher,
    /// The secret the attempt in progress sent, to scrub from the provider's message.
    sent_secret: Option<Secret>,
    /// `serve`'s client messages, sent unchanged to Chat Completions backends in place of
    /// the ones built from `turns` (SPEC §8.3 pass-through).
    raw_messages: Option<&'a [serde_json::Value]>,
}

impl<'a> HttpExec<'a> {
    /// An executor for one turn of `turns` (the whole history, ending with the user's
    /// message) on these backends. Each backend's system prompt is its resolved
    /// `system-prompt` (SPEC §3.1: session over load balancer over backend).
    pub fn new(
        root: std::path::PathBuf,
        backends: &'a [ResolvedBackend],
        turns: &'a [Turn],
        mode: MidStream,
        sink: &'a mut dyn AnswerSink,
        cancel: Arc<AtomicBool>,
        getenv: &'a dyn Fn(&str) -> Option<String>,
    ) -> Self {
        HttpExec {
            root,
            backends,
            turns,
            mode,
            sink,
            cancel,
            getenv,
            trim_told: None,
            partial: String::new(),
            shown_before: None,
            text_chunks: 0,
            last: Answer::default(),
            attempts: Vec::new(),
            malformed: 0,
            last_ratelimit: std::collections::BTreeMap::new(),
            tokens: crate::auth::refresh::Refresher::default(),
            sent_secret: None,
            raw_messages: None,
        }
    }

    /// Sends these Chat Completions messages as given instead of the ones built from the
    /// turns (`serve` pass-through of tool messages and image parts, SPEC §8.3); backends of
    /// other protocols never get here (the plan leaves them out).
    #[must_use]
    pub fn with_raw_messages(mut self, messages: &'a [serde_json::Value]) -> Self {
        self.raw_messages = Some(messages);
        self
    }

    /// The delivered answer (after `Deliver`), the `continue` prefix included.
    pub fn answer(&self) -> Answer {
        let mut a = self.last.clone();
        if !self.partial.is_empty() {
            a.text = format!("{}{}", self.partial, a.text);
        }
        a
    }

    /// The credential for one Send. An OAuth bucket's token that expires within 60 s is
    /// refreshed first (SPEC §6.3); why that is part of obtaining the credential and not an
    /// engine decision is in [`crate::auth::refresh`]'s docs.
    fn credential(&mut self, b: &ResolvedBackend, bucket: &str) -> Result<Option<Secret>, String> {
        // SPEC §6.3: the profile's `auth` decides where the bucket's credential comes from.
        let secret =
            self.tokens
                .credential(&self.root, &b.profile, bucket, now_ms(), self.getenv)?;
        self.sent_secret.clone_from(&secret);
        Ok(secret)
    }

    /// One attempt; `Err` when nothing was sent because the bucket has no usable credential
    /// (why, naming no secret): the engine passes the bucket over (SPEC §5.3).
    fn attempt(
        &mut self,
        b: &ResolvedBackend,
        bucket: &str,
        prefill: bool,
    ) -> Result<Outcome, String> {
        let secret = self.credential(b, bucket)?;
        Ok(self.attempt_with(b, secret.as_ref(), prefill))
    }

    fn attempt_with(
        &mut self,
        b: &ResolvedBackend,
        secret: Option<&Secret>,
        prefill: bool,
    ) -> Outcome {
        let credential = match secret {
            Some(s) if s.oauth => Credential::OAuth(s.expose()),
            Some(s) => Credential::ApiKey(s.expose()),
            None => Credential::None,
        };
        let info = b.profile.provider_info();
        let base = b
            .profile
            .settings
            .base_url
            .clone()
            .unwrap_or_else(|| info.base_url.to_string());
        let base = base.trim_end_matches('/');
        let settings = &b.settings.settings;
        let target = Target {
            protocol: info.protocol,
            provider: info.name,
            base_url: base,
            model: &b.profile.model,
            model_params: &b.profile.model_params,
            settings,
            credential,
        };
        // SPEC §5.8: trailing whitespace is cut from the prefill and restored in the output.
        let prefill_text = prefill
            .then(|| self.partial.trim_end().to_string())
            .filter(|p| !p.is_empty());
        let system = settings.system_prompt.as_deref();
        let turns = self.budgeted_turns(b, system, prefill_text.as_deref());
        let conversation = Conversation {
            system,
            turns,
            prefill: prefill_text.as_deref(),
        };
        let stream = settings.streaming != Some(Streaming::Disabled);
        let mut req = protocol::build_request(&target, &conversation, stream);
        if let Some(raw) = self.raw_messages
            && info.protocol == crate::provider::Protocol::ChatCompletions
        {
            req.body["messages"] = serde_json::Value::Array(raw.to_vec());
        }
        let deadlines = Deadlines {
            connect_ms: b.settings.connect_timeout_ms,
            first_byte_ms: b.settings.first_byte_timeout_ms,
            idle_ms: b.settings.stream_idle_timeout_ms,
        };
        // Under `restart`, or whatever the mode when only reasoning was shown (no text: the
        // attempt failed before any output, and the next one starts afresh).
        if let Some((tokens, chunks, from)) = self.shown_before.take()
            && (self.mode == MidStream::Restart || chunks == 0)
        {
            self.sink
                .notice(&restart_notice(tokens, chunks, &from, &b.name));
        }
        let mut att = transport::start(req, deadlines, !stream, self.cancel.clone());
        let prompt_estimate = turns.iter().map(|t| estimate_tokens(&t.text)).sum::<u64>();
        let first = att.next_msg();
        let (status, headers) = match first {
            Msg::Head { status, headers } => {
                self.last_ratelimit = ratelimit_headers(&headers);
                (status, headers)
            }
            Msg::Fail(e) => return transport_outcome(&e, 0, att.elapsed_ms()),
            Msg::Data(_) | Msg::End => {
                return transport_outcome(&TransportError::Reset, 0, att.elapsed_ms());
            }
        };
        if !(200..300).contains(&status) {
            return Self::error_outcome(&mut att, info.protocol, status, &headers);
        }
        if !stream {
            let body = match att.read_body(MAX_BODY) {
                transport::Body::Complete(body) => body,
                transport::Body::TooLarge => {
                    let mut o = Outcome::of(Class::Server);
                    o.status = Some(status);
                    o.message = Some(format!("response body over {MAX_BODY} bytes"));
                    return o;
                }
                transport::Body::Failed(e) => return transport_outcome(&e, 0, att.elapsed_ms()),
            };
            return match protocol::parse_response(info.protocol, &body) {
                Ok(r) if r.refusal.is_some() => {
                    let mut o = Outcome::of(Class::ContentFilter);
                    o.status = Some(status);
                    o.message = r.refusal;
                    o
                }
                Ok(mut r) if r.finish_reason.is_some() => {
                    if prefill_text.is_none() {
                        self.partial.clear();
                    } else {
                        r.text = drop_overlap(&mut self.cut_whitespace(), &r.text).to_string();
                    }
                    self.sink.complete_body(&body);
                    if let Some(r) = r.reasoning.as_deref().filter(|_| show_reasoning(b)) {
                        self.sink.reasoning(r);
                    }
                    self.sink.text(&r.text);
                    let usage = r.usage.unwrap_or(Usage {
                        prompt_tokens: prompt_estimate,
                        completion_tokens: estimate_tokens(&r.text),
                    });
                    self.last = Answer {
                        text: r.text,
                        reasoning: r.reasoning,
                        signature: r.signature,
                        finish_reason: r.finish_reason,
                        usage,
                    };
                    success(status, usage, att.elapsed_ms())
                }
                Ok(_) | Err(_) => {
                    let mut o = Outcome::of(Class::Interrupted);
                    o.message = Some("the response body is incomplete".into());
                    o.latency_ms = att.elapsed_ms();
                    o
                }
            };
        }
        self.read_stream(&mut att, b, status, prompt_estimate, prefill_text.is_some())
    }

    /// The part of the history this backend's request carries (SPEC §5.8 context budget):
    /// the oldest exchanges are left out when the prompt would not fit the backend's
    /// `context-limit` minus the reply budget; the first time a number is left out, it is told.
    fn budgeted_turns(
        &mut self,
        b: &ResolvedBackend,
        system: Option<&str>,
        prefill: Option<&str>,
    ) -> &'a [Turn] {
        let settings = &b.settings.settings;
        let provider = b.profile.provider_info().name;
        // Stored reasoning counts where it may be sent back (SPEC §5.8).
        let with_reasoning = settings.reasoning_include_in_context.unwrap_or(false);
        let cost = |t: &Turn| {
            let reasoning = t
                .reasoning
                .as_ref()
                .filter(|r| with_reasoning && r.provider == provider)
                .map_or(0, |r| estimate_tokens(&r.text));
            estimate_tokens(&t.text) + reasoning
        };
        let fixed = system.map_or(0, estimate_tokens) + prefill.map_or(0, estimate_tokens);
        let limit =
            budget::effective_limit(b.profile.settings.context_limit, settings.context_limit);
        let fit = budget::fit(
            self.turns,
            fixed,
            &cost,
            limit,
            budget::reply_budget(&b.profile.model_params),
        );
        if fit.left_out > 0 && self.trim_told != Some(fit.left_out) {
            self.trim_told = Some(fit.left_out);
            self.sink.notice(&format!(
                "[left out the {} oldest exchange{} to fit the context-limit of {} ({} tokens); the conversation is kept whole]",
                fit.left_out,
                if fit.left_out == 1 { "" } else { "s" },
                b.name,
                limit.unwrap_or(0)
            ));
        }
        let turns: &'a [Turn] = self.turns;
        &turns[fit.start..]
    }

    fn error_outcome(
        att: &mut transport::Attempt,
        proto: crate::provider::Protocol,
        status: u16,
        headers: &[(String, String)],
    ) -> Outcome {
        // SPEC §6.2, §7: at most 1 MiB is kept, and at most one read past it is made (to tell
        // a longer body from one of exactly 1 MiB); a cut body says so in the message.
        let mut body = Vec::new();
        while body.len() <= MAX_ERROR_BODY {
            match att.next_msg() {
                Msg::Data(d) => body.extend_from_slice(d),
                _ => break,
            }
        }
        let cut = body.len() > MAX_ERROR_BODY;
        body.truncate(MAX_ERROR_BODY);
        let mut err = protocol::parse_error(proto, status, &body);
        if cut {
            // First: the aggregate error shows only the start of a message.
            err.message = format!("[error body cut at {MAX_ERROR_BODY} bytes] {}", err.message);
        }
        let class = classify_status(status, err.code.as_deref(), Some(&err.message));
        let mut o = Outcome::of(class);
        o.status = Some(status);
        o.retry_after_ms = retry_after(headers, now_ms()).or(err.retry_after_ms);
        o.code = err.code;
        o.message = Some(err.message);
        o.latency_ms = att.elapsed_ms();
        o
    }

    fn read_stream(
        &mut self,
        att: &mut transport::Attempt,
        b: &ResolvedBackend,
        status: u16,
        prompt_estimate: u64,
        continuing: bool,
    ) -> Outcome {
        let mut sse = SseDecoder::default();
        let mut dec = protocol::decoder(b.profile.provider_info().protocol);
        let mut text = String::new();
        self.text_chunks = 0;
        let mut reasoning = String::new();
        let mut signature = None;
        let mut usage: Option<Usage> = None;
        let mut finish: Option<String> = None;
        // Why the event stream was refused (a limit of SPEC §6.2, §7), to say so.
        let mut refused: Option<String> = None;
        let buffered = self.mode == MidStream::Buffer;
        let show_reasoning = show_reasoning(b);
        let mut reasoning_shown = false;
        // What was cut from the end of the prefill; the continuation's first text repeats it
        // at most once (see `drop_overlap`).
        let mut cut = if continuing {
            self.cut_whitespace()
        } else {
            String::new()
        };
        loop {
            let msg = att.next_msg();
            let (events, ended, failure) = match msg {
                Msg::Data(d) => match sse.feed(d) {
                    Ok(ev) => {
                        if !ev.is_empty() {
                            att.event_arrived();
                        }
                        (ev, false, None)
                    }
                    Err(e) => {
                        refused = Some(e.to_string());
                        (Vec::new(), true, Some(TransportError::Other(e.to_string())))
                    }
                },
                Msg::End => (sse.finish(), true, None),
                Msg::Fail(e) => (Vec::new(), true, Some(e)),
                Msg::Head { .. } => (Vec::new(), false, None),
            };
            for ev in &events {
                let Ok(chunks) = dec.on_event(ev) else {
                    self.malformed += 1; // SPEC §5.8: skipped and counted, not fatal
                    continue;
                };
                for c in chunks {
                    match c {
                        Chunk::Text(t) => {
                            let t = drop_overlap(&mut cut, &t);
                            if t.is_empty() {
                                continue;
                            }
                            if !buffered {
                                self.sink.text(t);
                                self.text_chunks += 1;
                            }
                            text.push_str(t);
                        }
                        Chunk::Reasoning(r) => {
                            if show_reasoning && !buffered {
                                self.sink.reasoning(&r);
                                reasoning_shown = true;
                            }
                            reasoning.push_str(&r);
                        }
                        Chunk::Signature(s) => signature = Some(s),
                        Chunk::Usage(u) => usage = Some(u),
                        Chunk::Finish(r) => finish = Some(r),
                        Chunk::Refusal(r) if text.is_empty() => {
                            let mut o = Outcome::of(Class::ContentFilter);
                            o.status = Some(status);
                            o.message = Some(r);
                            o.latency_ms = att.elapsed_ms();
                            return o;
                        }
                        Chunk::Refusal(_) => finish = Some("content_filter".into()),
                        Chunk::Error(e) if text.is_empty() => {
                            // SPEC §4: an error inside a 200 before any output is classified by
                            // its type as if it were that status.
                            let mut o = Outcome::of(classify_status(
                                e.status,
                                e.code.as_deref(),
                                Some(&e.message),
                            ));
                            o.status = Some(e.status);
                            o.code = e.code;
                            o.message = Some(e.message);
                            o.retry_after_ms = e.retry_after_ms;
                            o.latency_ms = att.elapsed_ms();
                            return o;
                        }
                        Chunk::Error(e) => {
                            return self.interrupted(
                                &text,
                                &b.name,
                                Some(e.message),
                                att.elapsed_ms(),
                                buffered,
                            );
                        }
                    }
                }
            }
            if !events.is_empty() && finish.is_none() {
                self.sink.events_done();
            }
            if finish.is_some()
                && (ended
                    || matches!(
                        b.profile.provider_info().protocol,
                        crate::provider::Protocol::Messages | crate::provider::Protocol::Gemini
                    ))
            {
                break;
            }
            if ended {
                if finish.is_some() {
                    break;
                }
                if text.is_empty() {
                    if reasoning_shown {
                        // The user saw this attempt think: the next one says it starts over.
                        self.shown_before = Some((0, 0, b.name.clone()));
                    }
                    return no_text_outcome(failure.as_ref(), refused, att.elapsed_ms());
                }
                let why = refused.take().unwrap_or_else(|| {
                    match failure {
                        Some(TransportError::IdleTimeout) => "the stream stalled",
                        Some(_) => "the connection broke",
                        None => "the stream ended without its finish signal",
                    }
                    .to_string()
                });
                return self.interrupted(&text, &b.name, Some(why), att.elapsed_ms(), buffered);
            }
        }
        if buffered {
            if show_reasoning && !reasoning.is_empty() {
                self.sink.reasoning(&reasoning);
            }
            self.sink.text(&text);
        }
        if !continuing {
            self.partial.clear();
        }
        let usage = usage.unwrap_or(Usage {
            prompt_tokens: prompt_estimate,
            completion_tokens: estimate_tokens(&text),
        });
        self.last = Answer {
            text,
            reasoning: (!reasoning.is_empty()).then_some(reasoning),
            signature,
            finish_reason: finish,
            usage,
        };
        success(status, usage, att.elapsed_ms())
    }

    /// The trailing whitespace of the partial answer: cut from the prefill, already delivered.
    fn cut_whitespace(&self) -> String {
        self.partial[self.partial.trim_end().len()..].to_string()
    }

    fn interrupted(
        &mut self,
        text: &str,
        backend: &str,
        message: Option<String>,
        latency_ms: u64,
        buffered: bool,
    ) -> Outcome {
        let delivered = if buffered { 0 } else { estimate_tokens(text) };
        if !buffered && !text.is_empty() {
            match self.mode {
                MidStream::Continue => self.partial.push_str(text),
                _ => {
                    self.shown_before = Some((delivered, self.text_chunks, backend.to_string()));
                }
            }
        }
        let mut o = Outcome::of(Class::Interrupted);
        o.message = message;
        o.delivered_tokens = delivered;
        o.latency_ms = latency_ms;
        o
    }
}

/// The line that says a restart repeats what an interrupted attempt showed (SPEC §5.8). The
/// stream says nothing of the tokens it delivered before it broke, so the count is of what is
/// known: the pieces of text shown, with the estimate of their tokens named as one.
fn restart_notice(tokens: u64, chunks: u64, from: &str, to: &str) -> String {
    match chunks {
        0 => format!("[interrupted before any answer text on {from}; restarting on {to}]"),
        1 => format!(
            "[interrupted after 1 chunk of text (about {tokens} tokens) on {from}; restarting on {to}]"
        ),
        n => format!(
            "[interrupted after {n} chunks of text (about {tokens} tokens) on {from}; restarting on {to}]"
        ),
    }
}

fn success(status: u16, usage: Usage, latency_ms: u64) -> Outcome {
    let mut o = Outcome::of(Class::Success);
    o.status = Some(status);
    o.tokens = usage.total();
    o.latency_ms = latency_ms;
    o
}

/// The start of a continuation's text less what repeats `cut`, the whitespace cut from the
/// prefill and already delivered (SPEC §5.8: cut from the prefill, restored in the delivered
/// text). A model continuing `Hello` answers ` world`; the client already has `Hello `, so it
/// gets `world`. `cut` shrinks as it is matched and is emptied at the first character that
/// does not match, so only the very start of the continuation is ever touched.
fn drop_overlap<'t>(cut: &mut String, text: &'t str) -> &'t str {
    let mut rest = text;
    while let Some(c) = cut.chars().next() {
        match rest.strip_prefix(c) {
            Some(r) => {
                rest = r;
                cut.drain(..c.len_utf8());
            }
            None if rest.is_empty() => break,
            None => cut.clear(),
        }
    }
    rest
}

/// A stream that broke before any answer text arrived: no output began, so it is not
/// `interrupted` (SPEC §4: "the stream broke after output began") and follows SPEC §5.3–5.5 like
/// any failure before output (§5.8), whatever `mid_stream` says. A stall is a `timeout` (the
/// backend went silent: not retried on it, §5.4); a cut, an end without the finish signal, or
/// an event stream over a limit is `network` (no usable response). Decision recorded in docs/decisions.md.
fn no_text_outcome(
    failure: Option<&TransportError>,
    refused: Option<String>,
    latency_ms: u64,
) -> Outcome {
    let mut o = match failure {
        // The event stream broke a limit of SPEC §6.2, §7.
        Some(_) if refused.is_some() => {
            let mut o = Outcome::of(Class::Network);
            o.message = refused;
            o
        }
        Some(TransportError::IdleTimeout) => {
            let mut o = Outcome::of(Class::Timeout);
            o.message = Some("the stream stalled before any text".into());
            o
        }
        Some(e) => transport_outcome(e, 0, latency_ms),
        None => {
            let mut o = Outcome::of(Class::Network);
            o.message = Some("the stream ended without its finish signal, before any text".into());
            o
        }
    };
    o.latency_ms = latency_ms;
    o
}

fn transport_outcome(e: &TransportError, delivered: u64, latency_ms: u64) -> Outcome {
    let (class, msg) = match e {
        TransportError::ConnectTimeout => (Class::Timeout, "connect timeout"),
        TransportError::FirstByteTimeout => {
            (Class::Timeout, "no response before first_byte_timeout_ms")
        }
        TransportError::IdleTimeout => (Class::Interrupted, "the stream stalled"),
        TransportError::Refused => (Class::Network, "connection refused"),
        TransportError::Reset => (
            Class::Network,
            "connection reset or closed before a response",
        ),
        TransportError::Dns => (Class::Network, "DNS lookup failed"),
        TransportError::Tls => (Class::Network, "TLS failure"),
        TransportError::Cancelled => (Class::Network, "cancelled"),
        TransportError::Other(_) => (Class::Network, "transport error"),
    };
    let mut o = Outcome::of(class);
    o.message = Some(match e {
        TransportError::Other(m) => format!("{msg}: {}", m.chars().take(200).collect::<String>()),
        _ => msg.to_string(),
    });
    o.delivered_tokens = delivered;
    o.latency_ms = latency_ms;
    o
}

/// The `x-ratelimit-*` and `anthropic-ratelimit-*` headers of a response (SPEC §4), at most
/// 32 of them, values cut to 1000 characters (and to 200 once secrets are hidden: a cut
/// first could leave the head of an echoed key that no longer matches it, SPEC §7).
pub fn ratelimit_headers(
    headers: &[(String, String)],
) -> std::collections::BTreeMap<String, String> {
    headers
        .iter()
        .filter(|(k, _)| k.starts_with("x-ratelimit-") || k.starts_with("anthropic-ratelimit-"))
        .take(32)
        .map(|(k, v)| (k.clone(), v.chars().take(1000).collect()))
        .collect()
}

/// `Retry-After` in milliseconds from response headers: `retry-after-ms`, then `retry-after`
/// as seconds (fractions allowed) or an HTTP date (SPEC §4).
pub fn retry_after(headers: &[(String, String)], now_ms: u64) -> Option<u64> {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    };
    if let Some(ms) = get("retry-after-ms")
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
    {
        return Some(ms as u64);
    }
    let v = get("retry-after")?;
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then_some((secs * 1000.0) as u64);
    }
    http_date_ms(v).map(|t| t.saturating_sub(now_ms))
}

/// Parses an IMF-fixdate (`Wed, 21 Oct 2015 07:28:00 GMT`) to Unix milliseconds.
pub fn http_date_ms(s: &str) -> Option<u64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, mon, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let day: u64 = day.parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == mon)? as u64
        + 1;
    let year: u64 = year.parse().ok()?;
    let hms: Vec<u64> = time
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, sec] = hms.as_slice() else {
        return None;
    };
    // RFC 9110 §5.6.7: a four-digit year. A longer one would overflow the arithmetic below
    // (SPEC §7: a header from outside never panics).
    if !(1..=31).contains(&day) || *h > 23 || *m > 59 || *sec > 60 || !(1970..=9999).contains(&year)
    {
        return None;
    }
    // Days from civil date (Howard Hinnant's algorithm).
    let (y, mo) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + m * 60 + sec) * 1000)
}

impl Executor for HttpExec<'_> {
    fn send(
        &mut self,
        _now: u64,
        _request: RequestId,
        _plan: &Plan,
        backend: usize,
        bucket: usize,
        prefill: bool,
    ) -> (u64, Attempted) {
        // The resolved backends come in the plan's order (`driver::plan::build_plan`).
        let backends = self.backends;
        let Some(b) = backends.get(backend) else {
            let mut o = Outcome::of(Class::Client);
            o.message = Some(format!("internal error: no backend {backend}"));
            return (now_ms(), Attempted::Sent(o));
        };
        let buckets = b.profile.bucket_names();
        let bucket = buckets.get(bucket).map_or("default", String::as_str);
        self.last_ratelimit.clear();
        let mut o = match self.attempt(b, bucket, prefill) {
            Ok(o) => o,
            Err(why) => return (now_ms(), Attempted::NoCredential(scrub(&why))),
        };
        o.ratelimit = std::mem::take(&mut self.last_ratelimit);
        // A provider may echo what the request carried — the key or token, a custom header,
        // what the base URL holds — in its message, its error code or a response header kept for diagnostics:
        // every secret this request sent is replaced before the outcome goes anywhere (the
        // engine's aggregate error, the state file, a recorded trace), then anything else
        // key-shaped (SPEC §7).
        let mut known: Vec<String> = self
            .sent_secret
            .take()
            .map(|s| s.expose().to_string())
            .into_iter()
            .collect();
        // SPEC §7.1: every custom header's value, whatever its name, and what a `base-url`
        // carries in its userinfo and query.
        known.extend(header_secrets(
            b.settings
                .settings
                .custom_headers
                .iter()
                .flat_map(|h| h.values()),
        ));
        if let Some(url) = &b.profile.settings.base_url {
            known.extend(url_secrets(url));
        }
        let hide = |text: &str| scrub(&hide_known(text, &known));
        o.message = o.message.as_deref().map(hide);
        o.code = o.code.as_deref().map(hide);
        for v in o.ratelimit.values_mut() {
            *v = hide(v).chars().take(200).collect();
        }
        (now_ms(), Attempted::Sent(o))
    }

    fn refresh(
        &mut self,
        _now: u64,
        _request: RequestId,
        plan: &Plan,
        backend: usize,
        bucket: usize,
    ) -> (u64, bool) {
        // SPEC §5.3, §6.3: the `refresh_token` grant under the bucket's lock, or the token
        // another process stored meanwhile; the engine decides what follows from `ok`.
        let Some(b) = self.backends.get(backend) else {
            return (now_ms(), false);
        };
        let provider = b.profile.provider_info().name;
        let ok =
            match self
                .tokens
                .after_401(&self.root, provider, plan.bucket_name(backend, bucket))
            {
                Ok(()) => true,
                Err(e) => {
                    self.sink.notice(&format!("[{}]", scrub(&e)));
                    false
                }
            };
        (now_ms(), ok)
    }

    fn wait_until(&mut self, _now: u64, until: u64) -> Option<u64> {
        loop {
            let now = now_ms();
            if now >= until {
                return Some(now);
            }
            if self.cancel.load(std::sync::atomic::Ordering::Relaxed) {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis((until - now).min(100)));
        }
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn observe(&mut self, now: u64, _request: RequestId, plan: &Plan, step: &Step) {
        // SPEC §8.1: every note is shown as it happens, in narrate's words; the shell only
        // passes them on.
        for line in crate::narrate::live_lines(plan, step, now) {
            self.sink.engine_note(&line);
        }
        if let Some(crate::engine::Order::Send { backend, .. }) = &step.next {
            self.sink.waiting_for(plan.backend_name(*backend));
        }
        for n in &step.notes {
            if let Note::AttemptEnded {
                backend,
                bucket,
                class,
                status,
                latency_ms,
                ..
            } = n
            {
                self.attempts.push(AttemptInfo {
                    backend: plan.backend_name(*backend).to_string(),
                    bucket: plan.bucket_name(*backend, *bucket).to_string(),
                    class: class.as_str(),
                    status: *status,
                    latency_ms: *latency_ms,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_continuation_repeats_the_cut_whitespace_at_most_once() {
        let run = |cut: &str, pieces: &[&str]| {
            let mut cut = cut.to_string();
            pieces
                .iter()
                .map(|p| drop_overlap(&mut cut, p))
                .collect::<String>()
        };
        assert_eq!(run(" ", &[" world"]), "world");
        assert_eq!(run(" ", &["world"]), "world");
        assert_eq!(run("\n", &["\n\nNext"]), "\nNext");
        // Matched across pieces, and an empty piece changes nothing.
        assert_eq!(run("  ", &["", " ", " x", " y"]), "x y");
        // Only the very start: a later match is text.
        assert_eq!(run(" ", &["a", " b"]), "a b");
        assert_eq!(run("", &[" as is"]), " as is");
    }

    #[test]
    fn retry_after_reads_ms_seconds_and_dates() {
        let h = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        assert_eq!(retry_after(&h("retry-after-ms", "1500"), 0), Some(1500));
        assert_eq!(retry_after(&h("Retry-After", "2"), 0), Some(2000));
        assert_eq!(retry_after(&h("retry-after", "0.5"), 0), Some(500));
        let t = http_date_ms("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(t, 1_445_412_480_000);
        assert_eq!(
            retry_after(&h("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT"), t - 3000),
            Some(3000)
        );
        assert_eq!(retry_after(&h("retry-after", "soon"), 0), None);
        assert_eq!(retry_after(&h("retry-after", "-1"), 0), None);
    }
}
