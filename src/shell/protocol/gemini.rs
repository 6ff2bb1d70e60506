//! Google Gemini (SPEC §6.1; CRATES.md §10.4): `POST
//! {base}/v1beta/models/{model}:streamGenerateContent?alt=sse`, or `:generateContent`.
//!
//! Owns: the request body and headers, the stream decoder (each `data:` is one
//! `GenerateContentResponse`; no event names, no `[DONE]`), the non-streamed body and the error
//! body of this protocol. Must not: do I/O, or decide retries.
//!
//! Choices made where the format leaves room:
//! - `modelParams` go inside `generationConfig` (SPEC §6.1) with the OpenAI-style names mapped:
//!   `top_p`→`topP`, `top_k`→`topK`, `max_tokens`/`max_completion_tokens`/`max_output_tokens`→
//!   `maxOutputTokens`, `stop`→`stopSequences` (a lone string becomes a list),
//!   `presence_penalty`→`presencePenalty`, `frequency_penalty`→`frequencyPenalty`; other keys go in
//!   as given. Two exceptions: a `generationConfig` object is merged in, and the request's own
//!   top-level fields (`safetySettings`, `tools`, `toolConfig`, `cachedContent`, `labels`) stay
//!   at the root, since they are never generation settings.
//! - `thinkingConfig` is sent when `reasoning.enabled` is true or `reasoning.budget_tokens` is
//!   set: `thinkingBudget` from the budget, `includeThoughts: true` when enabled; a
//!   `thinkingConfig` already in `modelParams` wins. `reasoning.enabled: false` does not send
//!   `thinkingBudget: 0` (some models cannot turn thinking off).
//! - Stored reasoning goes back as a `thought: true` part (with its `thoughtSignature`) before
//!   the text part.
//! - A model id given as `models/x` is used as `x` in the URL.
//! - Only the first candidate is read. A safety `finishReason` (`SAFETY`, `PROHIBITED_CONTENT`,
//!   `BLOCKLIST`, `SPII`, `RECITATION`, `IMAGE_SAFETY`, `IMAGE_PROHIBITED_CONTENT`) or a
//!   `promptFeedback.blockReason` is a terminal [`Chunk::Refusal`]; any other `finishReason` is
//!   `Finish`.

use serde_json::{Map, Value, json};

use super::context::reasoning_to_send;
use super::error_body;
use super::headers;
use super::{
    Chunk, Conversation, HttpRequest, ProviderError, Response, Role, SseEvent, StreamDecoder,
    Target, Usage,
};

/// `finishReason`s that are a refusal by the safety system (SPEC §4 `content_filter`).
pub const REFUSAL_REASONS: &[&str] = &[
    "SAFETY",
    "PROHIBITED_CONTENT",
    "BLOCKLIST",
    "SPII",
    "RECITATION",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
];

/// `modelParams` keys that belong at the request's root, not in `generationConfig`.
const ROOT_KEYS: &[&str] = &[
    "safetySettings",
    "tools",
    "toolConfig",
    "cachedContent",
    "labels",
];

/// Builds a Gemini request.
pub fn build_request(t: &Target<'_>, c: &Conversation<'_>, stream: bool) -> HttpRequest {
    let reasoning = reasoning_to_send(t, c.turns);
    let mut contents = Vec::new();
    for (turn, stored) in c.turns.iter().zip(reasoning) {
        let role = match turn.role {
            Role::User => "user",
            Role::Assistant => "model",
        };
        let mut parts = Vec::new();
        if let Some(r) = stored {
            let mut part = json!({"text": r.text, "thought": true});
            if let Some(sig) = &r.signature {
                part["thoughtSignature"] = Value::from(sig.as_str());
            }
            parts.push(part);
        }
        if !turn.text.is_empty() || parts.is_empty() {
            parts.push(json!({"text": turn.text}));
        }
        contents.push(json!({"role": role, "parts": parts}));
    }
    if let Some(prefill) = c.prefill.filter(|p| !p.is_empty()) {
        contents.push(json!({"role": "model", "parts": [{"text": prefill}]}));
    }

    let mut body = Map::new();
    let mut config = Map::new();
    for (key, value) in t.model_params {
        let mapped = match key.as_str() {
            "top_p" => "topP",
            "top_k" => "topK",
            "max_tokens" | "max_completion_tokens" | "max_output_tokens" => "maxOutputTokens",
            "presence_penalty" => "presencePenalty",
            "frequency_penalty" => "frequencyPenalty",
            "stop" => {
                let list = match value {
                    Value::String(_) => Value::Array(vec![value.clone()]),
                    other => other.clone(),
                };
                config.insert("stopSequences".to_owned(), list);
                continue;
            }
            "generationConfig" if value.is_object() => {
                if let Some(inner) = value.as_object() {
                    config.extend(inner.clone());
                }
                continue;
            }
            k if ROOT_KEYS.contains(&k) => {
                body.insert(key.clone(), value.clone());
                continue;
            }
            other => other,
        };
        config.insert(mapped.to_owned(), value.clone());
    }
    let enabled = t.settings.reasoning_enabled == Some(true);
    let budget = t.settings.reasoning_budget_tokens;
    if (enabled || budget.is_some()) && !config.contains_key("thinkingConfig") {
        let mut thinking = Map::new();
        if let Some(budget) = budget {
            thinking.insert("thinkingBudget".to_owned(), Value::from(budget));
        }
        if enabled {
            thinking.insert("includeThoughts".to_owned(), Value::Bool(true));
        }
        config.insert("thinkingConfig".to_owned(), Value::Object(thinking));
    }

    body.insert("contents".to_owned(), Value::Array(contents));
    if let Some(system) = c.system.filter(|s| !s.is_empty()) {
        body.insert(
            "systemInstruction".to_owned(),
            json!({"parts": [{"text": system}]}),
        );
    }
    if !config.is_empty() {
        body.insert("generationConfig".to_owned(), Value::Object(config));
    }

    let mut h = headers::base(stream);
    headers::add_credential(&mut h, t.credential, Some("x-goog-api-key"));
    headers::add_custom(&mut h, t.settings);
    let model = t.model.strip_prefix("models/").unwrap_or(t.model);
    let method = if stream {
        "streamGenerateContent?alt=sse"
    } else {
        "generateContent"
    };
    HttpRequest {
        url: format!(
            "{}/v1beta/models/{model}:{method}",
            t.base_url.trim_end_matches('/')
        ),
        headers: h,
        body: Value::Object(body),
    }
}

/// Decodes a Gemini stream. Stateless: every event is a whole `GenerateContentResponse`.
#[derive(Debug, Default)]
pub struct Decoder {}

impl StreamDecoder for Decoder {
    fn on_event(&mut self, event: &SseEvent) -> Result<Vec<Chunk>, String> {
        let v: Value =
            serde_json::from_str(&event.data).map_err(|e| format!("chunk is not JSON: {e}"))?;
        let mut out = Vec::new();
        match &v {
            Value::Object(_) => response_chunks(&v, &mut out),
            // Without `alt=sse` Gemini streams one JSON array; accept its elements too.
            Value::Array(items) if items.iter().all(Value::is_object) => {
                for item in items {
                    response_chunks(item, &mut out);
                }
            }
            _ => return Err("chunk is not a JSON object".to_owned()),
        }
        Ok(out)
    }
}

/// The chunks of one `GenerateContentResponse`: parts, usage, then the terminal chunk.
fn response_chunks(v: &Value, out: &mut Vec<Chunk>) {
    if v.get("error").is_some_and(Value::is_object) {
        out.push(Chunk::Error(stream_error(v)));
        return;
    }
    let candidate = v
        .get("candidates")
        .and_then(Value::as_array)
        .and_then(|c| c.first());
    let parts = candidate
        .and_then(|c| c.get("content"))
        .and_then(|c| c.get("parts"))
        .and_then(Value::as_array);
    for part in parts.into_iter().flatten() {
        if let Some(text) = non_empty_str(part.get("text")) {
            if part.get("thought").and_then(Value::as_bool) == Some(true) {
                out.push(Chunk::Reasoning(text.to_owned()));
            } else {
                out.push(Chunk::Text(text.to_owned()));
            }
        }
        if let Some(sig) = non_empty_str(part.get("thoughtSignature")) {
            out.push(Chunk::Signature(sig.to_owned()));
        }
    }
    if let Some(u) = v.get("usageMetadata").and_then(Value::as_object) {
        let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
        out.push(Chunk::Usage(Usage {
            prompt_tokens: n("promptTokenCount"),
            completion_tokens: n("candidatesTokenCount") + n("thoughtsTokenCount"),
        }));
    }
    if let Some(block) = v
        .get("promptFeedback")
        .and_then(|f| non_empty_str(f.get("blockReason")))
    {
        out.push(Chunk::Refusal(block.to_owned()));
        return;
    }
    if let Some(reason) = candidate.and_then(|c| non_empty_str(c.get("finishReason"))) {
        out.push(if REFUSAL_REASONS.contains(&reason) {
            Chunk::Refusal(reason.to_owned())
        } else {
            Chunk::Finish(reason.to_owned())
        });
    }
}

fn non_empty_str(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// The HTTP status a Google API `status` stands for.
pub fn status_for(status: &str) -> Option<u16> {
    Some(match status {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => 400,
        "UNAUTHENTICATED" => 401,
        "PERMISSION_DENIED" => 403,
        "NOT_FOUND" => 404,
        "ALREADY_EXISTS" | "ABORTED" => 409,
        "RESOURCE_EXHAUSTED" => 429,
        "CANCELLED" => 499,
        "INTERNAL" | "UNKNOWN" | "DATA_LOSS" => 500,
        "UNIMPLEMENTED" => 501,
        "UNAVAILABLE" => 503,
        "DEADLINE_EXCEEDED" => 504,
        _ => return None,
    })
}

/// An error object inside a 200 stream: status from its numeric `code`, else its `status`.
fn stream_error(v: &Value) -> ProviderError {
    let f = error_body::fields(v).unwrap_or_default();
    ProviderError {
        status: f
            .http_status
            .or_else(|| f.code.as_deref().and_then(status_for))
            .unwrap_or(500),
        code: f.code,
        message: if f.message.is_empty() {
            "error object in the stream".to_owned()
        } else {
            f.message
        },
        retry_after_ms: f.retry_after_ms,
    }
}

/// Parses a complete `generateContent` body (an array of responses is accepted and joined).
pub fn parse_response(body: &[u8]) -> Result<Response, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    let items: Vec<&Value> = match &v {
        Value::Object(_) => vec![&v],
        Value::Array(items) if items.iter().all(Value::is_object) => items.iter().collect(),
        _ => return Err("body is not a JSON object".to_owned()),
    };
    let mut chunks = Vec::new();
    for item in items {
        response_chunks(item, &mut chunks);
    }
    let mut r = Response::default();
    for chunk in chunks {
        match chunk {
            Chunk::Text(s) => r.text.push_str(&s),
            Chunk::Reasoning(s) => r.reasoning.get_or_insert_with(String::new).push_str(&s),
            Chunk::Signature(s) => r.signature = Some(s),
            Chunk::Usage(u) => r.usage = Some(u),
            Chunk::Finish(reason) => r.finish_reason = Some(reason),
            Chunk::Refusal(reason) => {
                r.finish_reason = Some(reason.clone());
                r.refusal = Some(reason);
            }
            Chunk::Error(e) => return Err(format!("error object in a 2xx body: {}", e.message)),
        }
    }
    Ok(r)
}

/// Reads a Gemini error body (`{"error":{"code","message","status","details"}}`; the code is
/// `status`, the retry hint `RetryInfo.retryDelay`).
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
    fn streamed_request_shape() {
        let mut f = Fixture::new(&json!({
            "temperature": 0.3, "top_p": 0.9, "top_k": 40, "max_tokens": 500, "stop": "END",
            "seed": 7, "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
            "generationConfig": {"candidateCount": 1}
        }));
        f.settings.reasoning_enabled = Some(true);
        f.settings.reasoning_budget_tokens = Some(2048);
        f.settings.reasoning_include_in_context = Some(true);
        f.settings.reasoning_strip_from_context = Some(StripFromContext::AllButLast);
        let turns = three_turns("gemini");
        let c = Conversation {
            system: Some("sys"),
            turns: &turns,
            prefill: Some("Part"),
        };
        let t = f.target(Protocol::Gemini, "gemini", Credential::ApiKey("AIza"));
        let r = build_request(&t, &c, true);
        assert_eq!(
            r.url,
            "https://api.example.com/v1beta/models/m-1:streamGenerateContent?alt=sse"
        );
        assert_eq!(
            r.headers[2],
            ("x-goog-api-key".to_owned(), "AIza".to_owned())
        );
        assert_eq!(
            r.body,
            json!({
                "contents": [
                    {"role": "user", "parts": [{"text": "hi"}]},
                    {"role": "model", "parts": [
                        {"text": "think", "thought": true, "thoughtSignature": "sig"},
                        {"text": "hello"}
                    ]},
                    {"role": "user", "parts": [{"text": "more"}]},
                    {"role": "model", "parts": [{"text": "Part"}]},
                ],
                "systemInstruction": {"parts": [{"text": "sys"}]},
                "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
                "generationConfig": {
                    "temperature": 0.3, "topP": 0.9, "topK": 40, "maxOutputTokens": 500,
                    "stopSequences": ["END"], "seed": 7, "candidateCount": 1,
                    "thinkingConfig": {"thinkingBudget": 2048, "includeThoughts": true}
                }
            })
        );
    }

    #[test]
    fn plain_request_oauth_and_no_config() {
        let f = Fixture::new(&json!({}));
        let turns = three_turns("anthropic");
        let c = Conversation {
            system: None,
            turns: &turns,
            prefill: None,
        };
        let mut t = f.target(Protocol::Gemini, "gemini", Credential::OAuth("ya29"));
        t.model = "models/gemini-2.5-pro";
        let r = build_request(&t, &c, false);
        assert_eq!(
            r.url,
            "https://api.example.com/v1beta/models/gemini-2.5-pro:generateContent"
        );
        assert_eq!(
            r.headers,
            vec![
                ("content-type".to_owned(), "application/json".to_owned()),
                ("authorization".to_owned(), "Bearer ya29".to_owned()),
            ]
        );
        assert_eq!(r.body.as_object().unwrap().len(), 1);
        assert_eq!(
            r.body["contents"][1],
            json!({"role": "model", "parts": [{"text": "hello"}]})
        );
        // A budget alone sets thinkingBudget without includeThoughts.
        let mut f = Fixture::new(&json!({"max_completion_tokens": 9, "stop": ["a", "b"]}));
        f.settings.reasoning_budget_tokens = Some(0);
        let t = f.target(Protocol::Gemini, "gemini", Credential::None);
        let r = build_request(&t, &c, false);
        assert_eq!(
            r.body["generationConfig"],
            json!({"maxOutputTokens": 9, "stopSequences": ["a", "b"], "thinkingConfig": {"thinkingBudget": 0}})
        );
    }

    #[test]
    fn stream_text_thoughts_signature_usage_finish() {
        let raw = concat!(
            "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"plan\",\"thought\":true}]}}]}\r\n\r\n",
            "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"Hel\",\"thoughtSignature\":\"c2ln\"}]}}]}\r\n\r\n",
            "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"lo\"}]},\"finishReason\":\"STOP\"}],",
            "\"usageMetadata\":{\"promptTokenCount\":8,\"candidatesTokenCount\":2,\"thoughtsTokenCount\":5,\"totalTokenCount\":15}}\r\n\r\n",
        );
        assert_eq!(
            decode(&mut Decoder::default(), raw),
            vec![
                Chunk::Reasoning("plan".to_owned()),
                Chunk::Text("Hel".to_owned()),
                Chunk::Signature("c2ln".to_owned()),
                Chunk::Text("lo".to_owned()),
                Chunk::Usage(Usage {
                    prompt_tokens: 8,
                    completion_tokens: 7
                }),
                Chunk::Finish("STOP".to_owned()),
            ]
        );
    }

    #[test]
    fn safety_blocks_are_refusals() {
        for reason in [
            "SAFETY",
            "PROHIBITED_CONTENT",
            "BLOCKLIST",
            "SPII",
            "RECITATION",
        ] {
            let raw = format!(
                "data: {{\"candidates\":[{{\"content\":{{\"parts\":[]}},\"finishReason\":\"{reason}\"}}]}}\n\n"
            );
            assert_eq!(
                decode(&mut Decoder::default(), &raw),
                vec![Chunk::Refusal(reason.to_owned())]
            );
        }
        let raw = "data: {\"promptFeedback\":{\"blockReason\":\"SAFETY\"},\"usageMetadata\":{\"promptTokenCount\":4}}\n\n";
        assert_eq!(
            decode(&mut Decoder::default(), raw),
            vec![
                Chunk::Usage(Usage {
                    prompt_tokens: 4,
                    completion_tokens: 0
                }),
                Chunk::Refusal("SAFETY".to_owned())
            ]
        );
        let raw = "data: {\"candidates\":[{\"finishReason\":\"MAX_TOKENS\"}]}\n\n";
        assert_eq!(
            decode(&mut Decoder::default(), raw),
            vec![Chunk::Finish("MAX_TOKENS".to_owned())]
        );
    }

    #[test]
    fn error_objects_and_malformed_chunks() {
        let raw = "data: {\"error\":{\"code\":503,\"message\":\"The model is overloaded.\",\"status\":\"UNAVAILABLE\"}}\n\n";
        assert_eq!(
            decode(&mut Decoder::default(), raw),
            vec![Chunk::Error(ProviderError {
                status: 503,
                code: Some("UNAVAILABLE".to_owned()),
                message: "The model is overloaded.".to_owned(),
                retry_after_ms: None
            })]
        );
        let raw = "data: {\"error\":{\"message\":\"q\",\"status\":\"RESOURCE_EXHAUSTED\",\"details\":[{\"@type\":\"type.googleapis.com/google.rpc.RetryInfo\",\"retryDelay\":\"22s\"}]}}\n\n";
        let chunks = decode(&mut Decoder::default(), raw);
        assert!(
            matches!(&chunks[..], [Chunk::Error(e)] if e.status == 429 && e.retry_after_ms == Some(22_000))
        );
        for data in ["", "[1]", "\"x\"", "{"] {
            let e = SseEvent {
                event: None,
                data: data.to_owned(),
            };
            assert!(Decoder::default().on_event(&e).is_err(), "{data}");
        }
        let e = SseEvent {
            event: None,
            data: "[{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]}}]}]".to_owned(),
        };
        assert_eq!(
            Decoder::default().on_event(&e).unwrap(),
            vec![Chunk::Text("a".to_owned())]
        );
    }

    #[test]
    fn non_streamed_bodies() {
        let body = json!({
            "candidates": [{"content": {"role": "model", "parts": [
                {"text": "why", "thought": true}, {"text": "Answer", "thoughtSignature": "s"}
            ]}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1},
            "modelVersion": "gemini-2.5-flash"
        });
        assert_eq!(
            parse_response(body.to_string().as_bytes()).unwrap(),
            Response {
                text: "Answer".to_owned(),
                reasoning: Some("why".to_owned()),
                signature: Some("s".to_owned()),
                usage: Some(Usage {
                    prompt_tokens: 3,
                    completion_tokens: 1
                }),
                finish_reason: Some("STOP".to_owned()),
                refusal: None,
            }
        );
        let blocked = json!({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}});
        let r = parse_response(blocked.to_string().as_bytes()).unwrap();
        assert_eq!(r.refusal.as_deref(), Some("PROHIBITED_CONTENT"));
        let cut = json!({"candidates": [{"content": {"parts": [{"text": "x"}]}}]});
        assert_eq!(
            parse_response(cut.to_string().as_bytes())
                .unwrap()
                .finish_reason,
            None
        );
        assert!(parse_response(br#"{"error":{"code":500,"message":"x"}}"#).is_err());
        assert!(parse_response(b"").is_err());
    }

    #[test]
    fn error_bodies() {
        let body = json!({"error": {"code": 429, "message": "Resource has been exhausted",
            "status": "RESOURCE_EXHAUSTED", "details": [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaId": "PerMinute"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "8.94s"}]}});
        let e = parse_error(429, body.to_string().as_bytes());
        assert_eq!(
            e,
            ProviderError {
                status: 429,
                code: Some("RESOURCE_EXHAUSTED".to_owned()),
                message: "Resource has been exhausted".to_owned(),
                retry_after_ms: Some(8940)
            }
        );
    }
}
