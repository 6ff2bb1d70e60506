//! Anthropic Messages (SPEC §6.1; CRATES.md §10.3): `POST {base}/v1/messages` with
//! `anthropic-version: 2023-06-01` and named SSE events.
//!
//! Owns: the request body and headers, the stream decoder, the non-streamed body and the error
//! body of this protocol. Must not: do I/O, or decide retries.
//!
//! Choices made where the format leaves room:
//! - `modelParams` go in at the root as given (SPEC §3), except `max_completion_tokens`, which
//!   Anthropic does not accept: it becomes `max_tokens` when that is absent. `max_tokens` is
//!   always sent (SPEC §6.1): from `modelParams`, else 4096, or `reasoning.budget_tokens` + 4096
//!   when thinking is on. `model`, `messages` and `stream` belong to the protocol; the system
//!   prompt replaces a `system` in `modelParams`; `thinking` comes from `reasoning.enabled`
//!   unless `modelParams` already has one.
//! - Stored reasoning goes back as a `thinking` block before the text, only when it has a
//!   signature: the API rejects an unsigned thinking block.
//! - Prompt tokens are `input_tokens` + `cache_creation_input_tokens` +
//!   `cache_read_input_tokens` (the whole prompt, like OpenAI's `prompt_tokens`); completion
//!   tokens are the cumulative `output_tokens`.
//! - `message_stop` is the terminal chunk: `Finish(stop_reason)` (`end_turn` when no
//!   `message_delta` said), or `Refusal("refusal")` for `stop_reason: "refusal"`.
//! - The event name comes from the `event:` line, else from the data's `type` (for proxies that
//!   drop `event:` lines). Events llxprt does not act on are not parsed at all.

use serde_json::{Map, Value, json};

use super::context::reasoning_to_send;
use super::error_body;
use super::headers;
use super::{
    Chunk, Conversation, HttpRequest, ProviderError, Response, Role, SseEvent, StreamDecoder,
    Target, Usage,
};

/// The API version sent on every request.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// The beta flag OAuth (subscription) tokens need.
pub const OAUTH_BETA: &str = "oauth-2025-04-20";

/// `max_tokens` when neither `modelParams` nor thinking says otherwise (SPEC §6.1).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// `thinking.budget_tokens` when `reasoning.budget_tokens` is not set (Anthropic's minimum).
pub const DEFAULT_THINKING_BUDGET: u64 = 1024;

/// Builds a Messages request.
pub fn build_request(t: &Target<'_>, c: &Conversation<'_>, stream: bool) -> HttpRequest {
    let reasoning = reasoning_to_send(t, c.turns);
    let mut messages = Vec::new();
    for (turn, stored) in c.turns.iter().zip(reasoning) {
        let role = match turn.role {
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        let content = match stored.and_then(|r| Some((r, r.signature.as_deref()?))) {
            Some((r, signature)) => {
                let mut blocks = vec![json!({
                    "type": "thinking", "thinking": r.text, "signature": signature
                })];
                if !turn.text.is_empty() {
                    blocks.push(json!({"type": "text", "text": turn.text}));
                }
                Value::Array(blocks)
            }
            None => Value::from(turn.text.as_str()),
        };
        messages.push(json!({"role": role, "content": content}));
    }
    if let Some(prefill) = c.prefill.filter(|p| !p.is_empty()) {
        messages.push(json!({"role": "assistant", "content": prefill}));
    }

    let mut body: Map<String, Value> = t.model_params.clone();
    let thinking = t.settings.reasoning_enabled == Some(true);
    let budget = t
        .settings
        .reasoning_budget_tokens
        .unwrap_or(DEFAULT_THINKING_BUDGET);
    let completion_tokens = body.remove("max_completion_tokens");
    if !body.contains_key("max_tokens") {
        let max_tokens = completion_tokens.unwrap_or_else(|| {
            Value::from(if thinking {
                budget + DEFAULT_MAX_TOKENS
            } else {
                DEFAULT_MAX_TOKENS
            })
        });
        body.insert("max_tokens".to_owned(), max_tokens);
    }
    if thinking {
        body.entry("thinking")
            .or_insert_with(|| json!({"type": "enabled", "budget_tokens": budget}));
    }
    body.insert("model".to_owned(), Value::from(t.model));
    body.insert("messages".to_owned(), Value::Array(messages));
    if let Some(system) = c.system.filter(|s| !s.is_empty()) {
        body.insert("system".to_owned(), Value::from(system));
    }
    if stream {
        body.insert("stream".to_owned(), Value::Bool(true));
    } else {
        body.remove("stream");
    }

    let mut h = headers::base(stream);
    h.push(("anthropic-version".to_owned(), ANTHROPIC_VERSION.to_owned()));
    headers::add_credential(&mut h, t.credential, Some("x-api-key"));
    if matches!(t.credential, super::Credential::OAuth(_)) {
        h.push(("anthropic-beta".to_owned(), OAUTH_BETA.to_owned()));
    }
    headers::add_custom(&mut h, t.settings);
    HttpRequest {
        url: format!("{}/v1/messages", t.base_url.trim_end_matches('/')),
        headers: h,
        body: Value::Object(body),
    }
}

/// Token counts as Anthropic reports them, kept to add up the prompt.
#[derive(Debug, Default, Clone, Copy)]
struct Tokens {
    input: u64,
    cache_creation: u64,
    cache_read: u64,
    output: u64,
}

impl Tokens {
    /// Updates the counts present in a `usage` object; `true` when any was.
    fn update(&mut self, usage: Option<&Value>) -> bool {
        let Some(u) = usage.and_then(Value::as_object) else {
            return false;
        };
        let mut any = false;
        for (key, slot) in [
            ("input_tokens", &mut self.input),
            ("cache_creation_input_tokens", &mut self.cache_creation),
            ("cache_read_input_tokens", &mut self.cache_read),
            ("output_tokens", &mut self.output),
        ] {
            if let Some(n) = u.get(key).and_then(Value::as_u64) {
                *slot = n;
                any = true;
            }
        }
        any
    }

    fn usage(self) -> Usage {
        Usage {
            prompt_tokens: self.input + self.cache_creation + self.cache_read,
            completion_tokens: self.output,
        }
    }
}

/// Decodes a Messages stream.
#[derive(Debug, Default)]
pub struct Decoder {
    tokens: Tokens,
    /// `stop_reason` from `message_delta`.
    stop_reason: Option<String>,
}

impl StreamDecoder for Decoder {
    fn on_event(&mut self, event: &SseEvent) -> Result<Vec<Chunk>, String> {
        let parsed = if event.event.is_some() {
            None
        } else {
            Some(parse_object(&event.data)?)
        };
        let kind = match (event.event.as_deref(), &parsed) {
            (Some(name), _) => name,
            (None, v) => v
                .as_ref()
                .and_then(|v| v.get("type"))
                .and_then(Value::as_str)
                .ok_or("event without a name or a type")?,
        };
        let data = || match &parsed {
            Some(v) => Ok(v.clone()),
            None => parse_object(&event.data),
        };
        let mut out = Vec::new();
        match kind {
            "message_start" => {
                let v = data()?;
                if self
                    .tokens
                    .update(v.get("message").and_then(|m| m.get("usage")))
                {
                    out.push(Chunk::Usage(self.tokens.usage()));
                }
            }
            "content_block_start" => {
                let v = data()?;
                if let Some(block) = v.get("content_block") {
                    push_block(&mut out, block);
                }
            }
            "content_block_delta" => {
                let v = data()?;
                let delta = v.get("delta").ok_or("content_block_delta without delta")?;
                let field = match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => Some(("text", Chunk::Text as fn(String) -> Chunk)),
                    Some("thinking_delta") => Some(("thinking", Chunk::Reasoning as _)),
                    Some("signature_delta") => Some(("signature", Chunk::Signature as _)),
                    _ => None, // input_json_delta, citations_delta, future types
                };
                if let Some((key, make)) = field
                    && let Some(s) = non_empty_str(delta.get(key))
                {
                    out.push(make(s.to_owned()));
                }
            }
            "message_delta" => {
                let v = data()?;
                if let Some(reason) = v
                    .get("delta")
                    .and_then(|d| non_empty_str(d.get("stop_reason")))
                {
                    self.stop_reason = Some(reason.to_owned());
                }
                if self.tokens.update(v.get("usage")) {
                    out.push(Chunk::Usage(self.tokens.usage()));
                }
            }
            "message_stop" => {
                let reason = self.stop_reason.as_deref().unwrap_or("end_turn");
                out.push(if reason == "refusal" {
                    Chunk::Refusal(reason.to_owned())
                } else {
                    Chunk::Finish(reason.to_owned())
                });
            }
            "error" => {
                let v = data()?;
                out.push(Chunk::Error(stream_error(&v)));
            }
            _ => {} // ping, content_block_stop, and unknown events (Anthropic's versioning policy)
        }
        Ok(out)
    }
}

/// A `content_block_start` or a non-streamed content block: its text, thinking and signature.
fn push_block(out: &mut Vec<Chunk>, block: &Value) {
    match block.get("type").and_then(Value::as_str) {
        Some("text") => {
            if let Some(s) = non_empty_str(block.get("text")) {
                out.push(Chunk::Text(s.to_owned()));
            }
        }
        Some("thinking") => {
            if let Some(s) = non_empty_str(block.get("thinking")) {
                out.push(Chunk::Reasoning(s.to_owned()));
            }
            if let Some(s) = non_empty_str(block.get("signature")) {
                out.push(Chunk::Signature(s.to_owned()));
            }
        }
        _ => {}
    }
}

fn parse_object(data: &str) -> Result<Value, String> {
    let v: Value = serde_json::from_str(data).map_err(|e| format!("event is not JSON: {e}"))?;
    if v.is_object() {
        Ok(v)
    } else {
        Err("event is not a JSON object".to_owned())
    }
}

fn non_empty_str(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// The HTTP status an Anthropic error type stands for (CRATES.md §10.3).
pub fn status_for(error_type: &str) -> Option<u16> {
    Some(match error_type {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "api_error" => 500,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => return None,
    })
}

/// An in-stream `error` event (SPEC §4: classified by its type, not as `interrupted`).
fn stream_error(v: &Value) -> ProviderError {
    let f = error_body::fields(v).unwrap_or_default();
    ProviderError {
        status: f
            .kind
            .as_deref()
            .and_then(status_for)
            .or(f.http_status)
            .unwrap_or(500),
        code: f.code,
        message: if f.message.is_empty() {
            "error event in the stream".to_owned()
        } else {
            f.message
        },
        retry_after_ms: f.retry_after_ms,
    }
}

/// Parses a complete Messages body.
pub fn parse_response(body: &[u8]) -> Result<Response, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    if !v.is_object() {
        return Err("body is not a JSON object".to_owned());
    }
    if v.get("type").and_then(Value::as_str) == Some("error") || v.get("error").is_some() {
        return Err(format!(
            "error object in a 2xx body: {}",
            stream_error(&v).message
        ));
    }
    let mut chunks = Vec::new();
    for block in v
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        push_block(&mut chunks, block);
    }
    let mut r = Response::default();
    for chunk in chunks {
        match chunk {
            Chunk::Text(s) => r.text.push_str(&s),
            Chunk::Reasoning(s) => r.reasoning.get_or_insert_with(String::new).push_str(&s),
            Chunk::Signature(s) => r.signature = Some(s),
            _ => {}
        }
    }
    let mut tokens = Tokens::default();
    if tokens.update(v.get("usage")) {
        r.usage = Some(tokens.usage());
    }
    r.finish_reason = non_empty_str(v.get("stop_reason")).map(str::to_owned);
    r.refusal = r.finish_reason.clone().filter(|reason| reason == "refusal");
    Ok(r)
}

/// Reads a Messages error body (`{"type":"error","error":{"type","message"}}`; the code is
/// `error.type`).
pub fn parse_error(status: u16, body: &[u8]) -> ProviderError {
    error_body::parse(status, body)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::profile::settings::StripFromContext;
    use crate::provider::Protocol;
    use crate::shell::protocol::Credential;
    use crate::shell::protocol::test_support::{Fixture, decode, three_turns};

    #[test]
    fn request_with_key_system_prefill_and_defaults() {
        let f = Fixture::new(&json!({"temperature": 0.5, "stream": false, "top_k": 5}));
        let turns = three_turns("anthropic");
        let c = Conversation {
            system: Some("sys"),
            turns: &turns,
            prefill: Some("Partial"),
        };
        let t = f.target(
            Protocol::Messages,
            "anthropic",
            Credential::ApiKey("sk-ant"),
        );
        let r = build_request(&t, &c, true);
        assert_eq!(r.url, "https://api.example.com/v1/messages");
        assert_eq!(
            r.headers,
            vec![
                ("content-type".to_owned(), "application/json".to_owned()),
                ("accept".to_owned(), "text/event-stream".to_owned()),
                ("anthropic-version".to_owned(), "2023-06-01".to_owned()),
                ("x-api-key".to_owned(), "sk-ant".to_owned()),
            ]
        );
        assert_eq!(
            r.body,
            json!({
                "model": "m-1",
                "max_tokens": 4096,
                "system": "sys",
                "temperature": 0.5,
                "top_k": 5,
                "stream": true,
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "hello"},
                    {"role": "user", "content": "more"},
                    {"role": "assistant", "content": "Partial"},
                ],
            })
        );
        let r = build_request(&t, &c, false);
        assert!(r.body.get("stream").is_none());
    }

    #[test]
    fn oauth_headers_and_custom_beta_merge() {
        let mut f = Fixture::new(&json!({}));
        f.settings.custom_headers = Some(
            [("anthropic-beta".to_owned(), "x-1".to_owned())]
                .into_iter()
                .collect(),
        );
        let turns = three_turns("anthropic");
        let c = Conversation {
            system: None,
            turns: &turns,
            prefill: None,
        };
        let t = f.target(Protocol::Messages, "anthropic", Credential::OAuth("tok"));
        let r = build_request(&t, &c, false);
        assert_eq!(
            r.headers,
            vec![
                ("content-type".to_owned(), "application/json".to_owned()),
                ("anthropic-version".to_owned(), "2023-06-01".to_owned()),
                ("authorization".to_owned(), "Bearer tok".to_owned()),
                (
                    "anthropic-beta".to_owned(),
                    "oauth-2025-04-20,x-1".to_owned()
                ),
            ]
        );
        assert!(r.body.get("system").is_none());
    }

    #[test]
    fn thinking_budget_and_max_tokens() {
        let turns = three_turns("anthropic");
        let c = Conversation {
            system: None,
            turns: &turns,
            prefill: None,
        };
        let body = |params: Value, enabled: Option<bool>, budget: Option<u64>| {
            let mut f = Fixture::new(&params);
            f.settings.reasoning_enabled = enabled;
            f.settings.reasoning_budget_tokens = budget;
            let t = f.target(Protocol::Messages, "anthropic", Credential::None);
            build_request(&t, &c, true).body
        };
        let b = body(json!({}), Some(true), None);
        assert_eq!(
            b["thinking"],
            json!({"type": "enabled", "budget_tokens": 1024})
        );
        assert_eq!(b["max_tokens"], 1024 + 4096);
        let b = body(json!({}), Some(true), Some(8000));
        assert_eq!(b["thinking"]["budget_tokens"], 8000);
        assert_eq!(b["max_tokens"], 12096);
        let b = body(json!({"max_tokens": 20000}), Some(true), Some(8000));
        assert_eq!(b["max_tokens"], 20000);
        let b = body(json!({"max_completion_tokens": 300}), None, Some(8000));
        assert_eq!(b["max_tokens"], 300);
        assert!(b.get("max_completion_tokens").is_none());
        assert!(b.get("thinking").is_none());
        let b = body(json!({"thinking": {"type": "adaptive"}}), Some(true), None);
        assert_eq!(b["thinking"], json!({"type": "adaptive"}));
        let b = body(json!({}), Some(false), Some(8000));
        assert_eq!(b["max_tokens"], 4096);
    }

    #[test]
    fn stored_thinking_goes_back_signed_to_the_same_provider_only() {
        fn c(turns: &[crate::shell::protocol::Turn]) -> Conversation<'_> {
            Conversation {
                system: None,
                turns,
                prefill: None,
            }
        }
        let mut turns = three_turns("anthropic");
        let mut f = Fixture::new(&json!({}));
        f.settings.reasoning_include_in_context = Some(true);
        f.settings.reasoning_strip_from_context = Some(StripFromContext::None);
        let t = f.target(Protocol::Messages, "anthropic", Credential::None);
        let r = build_request(&t, &c(&turns), true);
        assert_eq!(
            r.body["messages"][1]["content"],
            json!([
                {"type": "thinking", "thinking": "think", "signature": "sig"},
                {"type": "text", "text": "hello"}
            ])
        );
        // Another provider's reasoning, or an unsigned block, is not sent.
        let t = f.target(Protocol::Messages, "claude-proxy", Credential::None);
        assert_eq!(
            build_request(&t, &c(&turns), true).body["messages"][1]["content"],
            "hello"
        );
        turns[1].reasoning.as_mut().unwrap().signature = None;
        let t = f.target(Protocol::Messages, "anthropic", Credential::None);
        assert_eq!(
            build_request(&t, &c(&turns), true).body["messages"][1]["content"],
            "hello"
        );
        // The default strips everything.
        let f = Fixture::new(&json!({}));
        let t = f.target(Protocol::Messages, "anthropic", Credential::None);
        assert_eq!(
            build_request(&t, &c(&three_turns("anthropic")), true).body["messages"][1]["content"],
            "hello"
        );
    }

    const STREAM: &str = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg\",\"content\":[],\"usage\":{\"input_tokens\":10,\"cache_read_input_tokens\":5,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n",
        "event: ping\ndata: {\"type\": \"ping\"}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"Let me\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"EqQB\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\"}}\n\n",
        "event: brand_new_event\ndata: {\"type\":\"brand_new_event\"}\n\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );

    #[test]
    fn stream_decodes_every_event_kind() {
        let usage = |p, c| {
            Chunk::Usage(Usage {
                prompt_tokens: p,
                completion_tokens: c,
            })
        };
        assert_eq!(
            decode(&mut Decoder::default(), STREAM),
            vec![
                usage(15, 1),
                Chunk::Reasoning("Let me".to_owned()),
                Chunk::Signature("EqQB".to_owned()),
                Chunk::Text("Hi".to_owned()),
                usage(15, 15),
                Chunk::Finish("max_tokens".to_owned()),
            ]
        );
        // Without `event:` lines the data's `type` names the event.
        let unnamed: String = STREAM
            .lines()
            .filter(|l| !l.starts_with("event:"))
            .flat_map(|l| [l, "\n"])
            .collect();
        assert_eq!(
            decode(&mut Decoder::default(), &unnamed),
            decode(&mut Decoder::default(), STREAM)
        );
    }

    #[test]
    fn stop_without_delta_refusal_and_malformed() {
        assert_eq!(
            decode(&mut Decoder::default(), "event: message_stop\ndata: {}\n\n"),
            vec![Chunk::Finish("end_turn".to_owned())]
        );
        let raw = concat!(
            "event: message_delta\ndata: {\"delta\":{\"stop_reason\":\"refusal\"}}\n\n",
            "event: content_block_delta\ndata: {\"delta\":\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        assert_eq!(
            decode(&mut Decoder::default(), raw),
            vec![
                Chunk::Text("<skipped>".to_owned()),
                Chunk::Refusal("refusal".to_owned())
            ]
        );
        let mut d = Decoder::default();
        for data in ["[]", "null", "", "{\"no\":\"type\"}"] {
            let e = SseEvent {
                event: None,
                data: data.to_owned(),
            };
            assert!(d.on_event(&e).is_err(), "{data}");
        }
    }

    #[test]
    fn error_events_carry_the_status_of_their_type() {
        let cases = [
            ("overloaded_error", 529),
            ("rate_limit_error", 429),
            ("api_error", 500),
            ("authentication_error", 401),
            ("permission_error", 403),
            ("invalid_request_error", 400),
            ("request_too_large", 413),
            ("billing_error", 402),
            ("timeout_error", 504),
            ("not_found_error", 404),
            ("something_new", 500),
        ];
        for (kind, status) in cases {
            let raw = format!(
                "event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"{kind}\",\"message\":\"m\"}}}}\n\n"
            );
            let chunks = decode(&mut Decoder::default(), &raw);
            assert_eq!(
                chunks,
                vec![Chunk::Error(ProviderError {
                    status,
                    code: Some(kind.to_owned()),
                    message: "m".to_owned(),
                    retry_after_ms: None
                })]
            );
        }
    }

    #[test]
    fn non_streamed_bodies() {
        let body = json!({
            "id": "msg", "type": "message", "role": "assistant", "model": "m",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "s1"},
                {"type": "text", "text": "Hello"},
                {"type": "tool_use", "id": "t", "name": "f", "input": {}},
                {"type": "text", "text": " there"}
            ],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 7, "cache_creation_input_tokens": 3, "output_tokens": 2}
        });
        assert_eq!(
            parse_response(body.to_string().as_bytes()).unwrap(),
            Response {
                text: "Hello there".to_owned(),
                reasoning: Some("hmm".to_owned()),
                signature: Some("s1".to_owned()),
                usage: Some(Usage {
                    prompt_tokens: 10,
                    completion_tokens: 2
                }),
                finish_reason: Some("end_turn".to_owned()),
                refusal: None,
            }
        );
        let refused = json!({"type": "message", "content": [], "stop_reason": "refusal"});
        let r = parse_response(refused.to_string().as_bytes()).unwrap();
        assert_eq!(r.refusal.as_deref(), Some("refusal"));
        let cut = json!({"type": "message", "content": [{"type": "text", "text": "x"}]});
        assert_eq!(
            parse_response(cut.to_string().as_bytes())
                .unwrap()
                .finish_reason,
            None
        );
        assert!(
            parse_response(br#"{"type":"error","error":{"type":"api_error","message":"x"}}"#)
                .is_err()
        );
        assert!(parse_response(b"nope").is_err());
    }

    #[test]
    fn error_bodies() {
        let e = parse_error(
            429,
            br#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}"#,
        );
        assert_eq!(e.code.as_deref(), Some("rate_limit_error"));
        assert_eq!(e.status, 429);
        assert!(e.message.starts_with("Number of request tokens"));
    }
}
