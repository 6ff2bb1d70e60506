//! The providers' wire protocols (SPEC §6.1): building a request, decoding a stream or a body,
//! reading an error. Pure functions over bytes and JSON; no I/O (the transport owns that).
//!
//! Owns: what goes on the wire for Chat Completions, Anthropic Messages and Gemini, and what
//! comes back, normalised into [`Chunk`]s, a [`Response`] or a [`ProviderError`]. Must not:
//! decide retries or classes beyond reporting what the provider said.

use serde_json::{Map, Value};

use crate::profile::settings::Settings;
use crate::provider::Protocol;

pub mod anthropic;
mod context;
mod error_body;
pub mod gemini;
mod headers;
pub mod openai;
#[cfg(test)]
mod test_support;

/// Who said a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The user.
    User,
    /// The model.
    Assistant,
}

/// Reasoning kept with an assistant reply (SPEC §5.8): only ever sent back to a backend of the
/// provider that produced it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredReasoning {
    /// Canonical provider name that produced it.
    pub provider: String,
    /// The reasoning text.
    pub text: String,
    /// The provider's signature (Anthropic thinking blocks, Gemini thought signatures).
    pub signature: Option<String>,
}

/// One turn of the conversation kept by llxprt.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Turn {
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub text: String,
    /// Reasoning stored with an assistant reply, when `reasoning.includeInContext` is on.
    pub reasoning: Option<StoredReasoning>,
}

/// What one request sends: the system prompt, the history, and an optional partial answer to
/// continue (`mid_stream: continue`, SPEC §5.8).
#[derive(Debug, Clone, Copy)]
pub struct Conversation<'a> {
    /// `system-prompt`.
    pub system: Option<&'a str>,
    /// The history, oldest first, ending with the user's message.
    pub turns: &'a [Turn],
    /// A partial assistant answer to continue (trailing whitespace already cut).
    pub prefill: Option<&'a str>,
}

/// A credential as sent (SPEC §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// An API key: `Authorization: Bearer`, `x-api-key` or `x-goog-api-key` per protocol.
    ApiKey(&'a str),
    /// An OAuth access token: `Authorization: Bearer` (Anthropic adds the OAuth beta header).
    OAuth(&'a str),
    /// No credential (local servers).
    None,
}

/// Where and how to send.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// Wire protocol.
    pub protocol: Protocol,
    /// Canonical provider name (decides which stored reasoning may be sent back).
    pub provider: &'a str,
    /// Base URL without a trailing slash.
    pub base_url: &'a str,
    /// Model id.
    pub model: &'a str,
    /// `modelParams`, passed through (SPEC §3).
    pub model_params: &'a Map<String, Value>,
    /// The backend's resolved §3.1 settings.
    pub settings: &'a Settings,
    /// The credential.
    pub credential: Credential<'a>,
}

/// An HTTP request ready for the transport.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRequest {
    /// Full URL.
    pub url: String,
    /// Headers (secrets included: the transport never logs them).
    pub headers: Vec<(String, String)>,
    /// JSON body.
    pub body: Value,
}

/// Normalised usage (SPEC §6.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
}

impl Usage {
    /// Prompt + completion.
    pub fn total(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// What a provider said went wrong (from an error body, or an error event inside a stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderError {
    /// The HTTP status, or for an in-stream error the status its type stands for
    /// (`overloaded_error` → 529, `rate_limit_error` → 429, …, SPEC §4).
    pub status: u16,
    /// Provider error code or type (`rate_limit_error`, `insufficient_quota`,
    /// `RESOURCE_EXHAUSTED`, …).
    pub code: Option<String>,
    /// Provider message (not yet redacted).
    pub message: String,
    /// A retry hint found in the body (Gemini `RetryInfo.retryDelay`), in milliseconds.
    pub retry_after_ms: Option<u64>,
}

/// One decoded piece of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    /// Answer text.
    Text(String),
    /// Reasoning text.
    Reasoning(String),
    /// A reasoning signature to keep with the reasoning.
    Signature(String),
    /// Usage so far (the last one wins).
    Usage(Usage),
    /// The finish signal with its reason (SPEC §5.8: the stream is complete).
    Finish(String),
    /// An error event inside the stream.
    Error(ProviderError),
    /// A safety refusal inside a 2xx reply (Gemini `SAFETY`, a `content_filter` finish):
    /// classified `content_filter` with status 200 (SPEC §5.11). Terminal like `Finish`: a
    /// decoder sends one or the other, never both.
    Refusal(String),
}

/// A complete non-streamed answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    /// Answer text.
    pub text: String,
    /// Reasoning text, if any.
    pub reasoning: Option<String>,
    /// Reasoning signature, if any.
    pub signature: Option<String>,
    /// Usage, when the provider sent it.
    pub usage: Option<Usage>,
    /// Finish reason; `None` means the body was not complete.
    pub finish_reason: Option<String>,
    /// A safety refusal (SPEC §5.11).
    pub refusal: Option<String>,
}

/// One server-sent event (SPEC §6.2): its `event` name (if any) and joined `data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Decodes a protocol's stream events into chunks.
pub trait StreamDecoder {
    /// Decodes one event. An event that does not parse is `Err` (skipped and counted by the
    /// caller, never fatal, SPEC §5.8).
    fn on_event(&mut self, event: &SseEvent) -> Result<Vec<Chunk>, String>;
}

/// Builds the HTTP request for a target and conversation (streamed or not).
pub fn build_request(t: &Target<'_>, c: &Conversation<'_>, stream: bool) -> HttpRequest {
    match t.protocol {
        Protocol::ChatCompletions => openai::build_request(t, c, stream),
        Protocol::Messages => anthropic::build_request(t, c, stream),
        Protocol::Gemini => gemini::build_request(t, c, stream),
    }
}

/// A fresh stream decoder for a protocol.
pub fn decoder(protocol: Protocol) -> Box<dyn StreamDecoder> {
    match protocol {
        Protocol::ChatCompletions => Box::new(openai::Decoder::default()),
        Protocol::Messages => Box::new(anthropic::Decoder::default()),
        Protocol::Gemini => Box::new(gemini::Decoder::default()),
    }
}

/// Parses a complete (non-streamed) 2xx body.
pub fn parse_response(protocol: Protocol, body: &[u8]) -> Result<Response, String> {
    match protocol {
        Protocol::ChatCompletions => openai::parse_response(body),
        Protocol::Messages => anthropic::parse_response(body),
        Protocol::Gemini => gemini::parse_response(body),
    }
}

/// Reads an error body (any protocol's shape is tried; a body that is not JSON becomes the
/// message, truncated).
pub fn parse_error(protocol: Protocol, status: u16, body: &[u8]) -> ProviderError {
    match protocol {
        Protocol::ChatCompletions => openai::parse_error(status, body),
        Protocol::Messages => anthropic::parse_error(status, body),
        Protocol::Gemini => gemini::parse_error(status, body),
    }
}
