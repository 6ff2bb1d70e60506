//! The JSON `serve` answers with (SPEC §8.3): Chat Completions bodies and stream chunks in
//! OpenAI's shape whatever the backend's protocol, OpenAI-shaped errors, and the status a
//! failed request maps to.
//!
//! Owns: those shapes and the status rules. Must not: write to sockets or decide anything
//! about the request (the engine decided; this only reports it).
//!
//! Decisions where SPEC is silent:
//! - Finish reasons are mapped to OpenAI's words (`end_turn`/`STOP` → `stop`, `max_tokens`/
//!   `MAX_TOKENS` → `length`, `tool_use` → `tool_calls`, safety stops → `content_filter`).
//! - A refusal inside a 2xx reply (status 200, class `content_filter`) is a 400
//!   `content_filter` error: the request failed, and a 2xx would read as success.
//! - `Retry-After` is the time until the first cooling bucket (429) or skipped backend (503)
//!   is ready again, at least 1 s; 1 s when the engine named no time.

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::engine::FailKind;
use crate::shell::http::AttemptInfo;
use crate::shell::protocol::Usage;

/// The `usage` object.
pub fn usage(u: Usage) -> UsageOut {
    UsageOut {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        total_tokens: u.total(),
    }
}

/// The `usage` object as OpenAI writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct UsageOut {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Their sum.
    pub total_tokens: u64,
}

/// A finish reason in OpenAI's words.
pub fn finish_reason(raw: Option<&str>) -> &'static str {
    match raw.unwrap_or("stop") {
        "length" | "max_tokens" | "MAX_TOKENS" | "model_context_window_exceeded" => "length",
        "tool_calls" | "tool_use" => "tool_calls",
        "function_call" => "function_call",
        "content_filter" | "refusal" | "SAFETY" | "RECITATION" | "BLOCKLIST"
        | "PROHIBITED_CONTENT" | "SPII" => "content_filter",
        _ => "stop",
    }
}

/// A non-streamed answer (`chat.completion`).
pub fn completion(
    id: &str,
    created: u64,
    model: &str,
    text: &str,
    reasoning: Option<&str>,
    finish: Option<&str>,
    u: Usage,
) -> Value {
    let mut message = json!({"role": "assistant", "content": text});
    if let Some(r) = reasoning {
        message["reasoning_content"] = Value::from(r);
    }
    json!({
        "id": id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason(finish)}],
        "usage": usage(u),
    })
}

/// Puts the reasoning shown into a pass-through message as its one `reasoning_content`: the
/// upstream's own reasoning fields (`reasoning_content`, or `reasoning` from servers that use
/// that name, SPEC §6.1) are replaced, so the text is neither sent twice nor under a second
/// name; when none was shown (`reasoning.includeInResponse` off) nothing of the reasoning is
/// left, OpenRouter's structured `reasoning_details` included.
fn set_reasoning(message: &mut Map<String, Value>, shown: Option<&str>) {
    message.remove("reasoning");
    message.remove("reasoning_content");
    match shown {
        Some(r) => {
            message.insert("reasoning_content".into(), Value::from(r));
        }
        None => {
            message.remove("reasoning_details");
        }
    }
}

/// A non-streamed pass-through answer: the upstream's first choice as it sent it (tool calls
/// included), with llxprt's id, the backend's model name, the normalised usage, and the
/// reasoning shown as `reasoning_content` (none when it was not shown).
pub fn passthrough_completion(
    id: &str,
    created: u64,
    model: &str,
    upstream: &Value,
    reasoning: Option<&str>,
    u: Usage,
) -> Value {
    let mut choice = upstream
        .get("choices")
        .and_then(|c| c.get(0))
        .cloned()
        .unwrap_or_else(|| json!({"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "stop"}));
    if let Some(m) = choice.get_mut("message").and_then(Value::as_object_mut) {
        set_reasoning(m, reasoning);
    }
    json!({
        "id": id, "object": "chat.completion", "created": created, "model": model,
        "choices": [choice],
        "usage": usage(u),
    })
}

/// A `delta` of llxprt's own making; absent fields are left out. (Serialised straight from
/// borrowed text: a chunk goes out for every piece of every streamed answer.)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Delta<'a> {
    /// `"assistant"` on the first chunk of an answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// Answer text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<&'a str>,
    /// Reasoning text (see `sink`'s decisions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<&'a str>,
}

/// One stream chunk (`chat.completion.chunk`): one choice with `delta` (any JSON shape, so a
/// pass-through message fits too), or none and the usage.
#[derive(Debug, Serialize)]
#[serde(bound(serialize = "D: Serialize"))]
pub struct Chunk<'a, D> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    #[serde(serialize_with = "none_or_one")]
    choices: Option<Choice<'a, D>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<UsageOut>,
}

#[derive(Debug, Serialize)]
struct Choice<'a, D> {
    index: u32,
    delta: &'a D,
    logprobs: (),
    finish_reason: Option<&'a str>,
}

/// `choices` as a list of none or one.
#[expect(
    clippy::ref_option,
    reason = "serde's serialize_with passes the field by reference"
)]
fn none_or_one<S: serde::Serializer, T: Serialize>(
    choice: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(choice)
}

/// A chunk carrying `delta` (`finish` on the last one).
pub fn chunk<'a, D: Serialize>(
    id: &'a str,
    created: u64,
    model: &'a str,
    delta: &'a D,
    finish: Option<&'a str>,
) -> Chunk<'a, D> {
    Chunk {
        id,
        object: "chat.completion.chunk",
        created,
        model,
        choices: Some(Choice {
            index: 0,
            delta,
            logprobs: (),
            finish_reason: finish,
        }),
        usage: None,
    }
}

/// The usage chunk (`choices: []`) sent when the client asked for `include_usage`.
pub fn usage_chunk<'a>(id: &'a str, created: u64, model: &'a str, u: Usage) -> Chunk<'a, ()> {
    Chunk {
        id,
        object: "chat.completion.chunk",
        created,
        model,
        choices: None,
        usage: Some(usage(u)),
    }
}

/// A pass-through answer as stream chunks: the whole message as one delta (tool calls with
/// their `index`, the reasoning shown as `reasoning_content`), then the finish chunk.
pub fn passthrough_chunks(
    id: &str,
    created: u64,
    model: &str,
    upstream: &Value,
    reasoning: Option<&str>,
) -> Vec<Value> {
    let choice = upstream.get("choices").and_then(|c| c.get(0));
    let mut delta = choice
        .and_then(|c| c.get("message"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    delta.insert("role".into(), Value::from("assistant"));
    set_reasoning(&mut delta, reasoning);
    if let Some(Value::Array(calls)) = delta.get_mut("tool_calls") {
        for (i, c) in calls.iter_mut().enumerate() {
            if let Some(o) = c.as_object_mut() {
                o.entry("index").or_insert_with(|| Value::from(i));
            }
        }
    }
    let finish = choice
        .and_then(|c| c.get("finish_reason"))
        .and_then(Value::as_str);
    let delta = Value::Object(delta);
    [
        to_value(&chunk(id, created, model, &delta, None)),
        to_value(&chunk(
            id,
            created,
            model,
            &Delta::default(),
            Some(finish_reason(finish)),
        )),
    ]
    .into()
}

fn to_value(v: &impl Serialize) -> Value {
    serde_json::to_value(v).expect("chunks are plain JSON")
}

/// `{"error": {"message", "type", "param", "code"}}`.
pub fn error_body(message: &str, kind: &str, code: &str, param: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
}

/// How a failed request is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReply {
    /// HTTP status.
    pub status: u16,
    /// Error type.
    pub kind: &'static str,
    /// Error code.
    pub code: String,
    /// `Retry-After` in seconds, for 429 and 503.
    pub retry_after_s: Option<u64>,
}

/// The status of a failed request (SPEC §8.3): 429 when every attempt was `rate_limit` or
/// `quota`; 503 when every backend was skipped; the provider's own status for an outcome that
/// does not trigger failover; 502 otherwise. `retry_at` is the earliest time (ms) a cooling
/// bucket or skipped backend is ready again.
pub fn failure(
    kind: FailKind,
    attempts: &[AttemptInfo],
    retry_at: Option<u64>,
    now: u64,
) -> ErrorReply {
    let retry_s = retry_at.map_or(1, |t| t.saturating_sub(now).div_ceil(1000).max(1));
    let limited = |c: &str| c == "rate_limit" || c == "quota";
    if !attempts.is_empty() && attempts.iter().all(|a| limited(a.class)) {
        let quota = attempts.iter().all(|a| a.class == "quota");
        return ErrorReply {
            status: 429,
            kind: if quota {
                "insufficient_quota"
            } else {
                "rate_limit_error"
            },
            code: if quota {
                "insufficient_quota"
            } else {
                "rate_limit_exceeded"
            }
            .into(),
            retry_after_s: Some(retry_s),
        };
    }
    if kind == FailKind::AllSkipped {
        return ErrorReply {
            status: 503,
            kind: "service_unavailable",
            code: "backends_unavailable".into(),
            retry_after_s: Some(retry_s),
        };
    }
    let last = attempts.last();
    let class = last.map_or("", |a| a.class);
    if kind == FailKind::Refused || class == "context_length" {
        let status = match class {
            "content_filter" | "context_length" => 400,
            _ => last
                .and_then(|a| a.status)
                .filter(|s| (400..600).contains(s))
                .unwrap_or(502),
        };
        let kind = match (status, class) {
            (_, "content_filter" | "context_length") | (400 | 404 | 409 | 413 | 422, _) => {
                "invalid_request_error"
            }
            (401, _) => "authentication_error",
            (403, _) => "permission_error",
            (s, _) if s >= 500 => "server_error",
            _ => "upstream_error",
        };
        let code = match class {
            "context_length" => "context_length_exceeded".to_string(),
            "" => "refused".to_string(),
            c => c.to_string(),
        };
        return ErrorReply {
            status,
            kind,
            code,
            retry_after_s: None,
        };
    }
    ErrorReply {
        status: 502,
        kind: "upstream_error",
        code: if kind == FailKind::Interrupted {
            "stream_interrupted"
        } else {
            "backends_exhausted"
        }
        .into(),
        retry_after_s: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(class: &'static str, status: Option<u16>) -> AttemptInfo {
        AttemptInfo {
            backend: "a".into(),
            bucket: "default".into(),
            class,
            status,
            latency_ms: 1,
        }
    }

    #[test]
    fn statuses_follow_spec_8_3() {
        let r = failure(
            FailKind::Exhausted,
            &[a("rate_limit", Some(429)), a("quota", Some(402))],
            Some(5_500),
            1_000,
        );
        assert_eq!((r.status, r.retry_after_s), (429, Some(5)));
        let r = failure(FailKind::Refused, &[a("quota", Some(402))], None, 0);
        assert_eq!((r.status, r.code.as_str()), (429, "insufficient_quota"));
        let r = failure(FailKind::AllSkipped, &[], Some(30_000), 0);
        assert_eq!((r.status, r.retry_after_s), (503, Some(30)));
        let r = failure(FailKind::Refused, &[a("client", Some(400))], None, 0);
        assert_eq!((r.status, r.kind), (400, "invalid_request_error"));
        let r = failure(FailKind::Refused, &[a("auth", Some(401))], None, 0);
        assert_eq!(r.status, 401);
        let r = failure(
            FailKind::Refused,
            &[a("content_filter", Some(200))],
            None,
            0,
        );
        assert_eq!((r.status, r.code.as_str()), (400, "content_filter"));
        let r = failure(
            FailKind::Exhausted,
            &[a("context_length", Some(400))],
            None,
            0,
        );
        assert_eq!(
            (r.status, r.code.as_str()),
            (400, "context_length_exceeded")
        );
        let r = failure(
            FailKind::Exhausted,
            &[a("server", Some(500)), a("network", None)],
            None,
            0,
        );
        assert_eq!((r.status, r.retry_after_s), (502, None));
        let r = failure(FailKind::Interrupted, &[a("interrupted", None)], None, 0);
        assert_eq!((r.status, r.code.as_str()), (502, "stream_interrupted"));
    }

    #[test]
    fn finish_reasons_and_passthrough_chunks() {
        assert_eq!(finish_reason(Some("end_turn")), "stop");
        assert_eq!(finish_reason(Some("MAX_TOKENS")), "length");
        assert_eq!(finish_reason(Some("tool_use")), "tool_calls");
        assert_eq!(finish_reason(None), "stop");
        let up = json!({"choices": [{"message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            "finish_reason": "tool_calls"}]});
        let c = passthrough_chunks("id", 1, "m", &up, None);
        assert_eq!(c[0]["choices"][0]["delta"]["tool_calls"][0]["index"], 0);
        assert_eq!(c[1]["choices"][0]["finish_reason"], "tool_calls");
        let full = passthrough_completion("id", 1, "m", &up, None, Usage::default());
        assert_eq!(full["choices"][0]["message"]["tool_calls"][0]["id"], "c1");
        assert_eq!(full["model"], "m");
    }

    #[test]
    fn passthrough_reasoning_is_one_reasoning_content_or_nothing() {
        let up = json!({"choices": [{"message": {"role": "assistant", "content": null,
            "reasoning": "why", "reasoning_details": [{"type": "reasoning.text", "text": "why"}],
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            "finish_reason": "tool_calls"}]});
        let shown = passthrough_completion("id", 1, "m", &up, Some("why"), Usage::default());
        let m = &shown["choices"][0]["message"];
        assert_eq!(m["reasoning_content"], "why");
        assert!(
            m.get("reasoning").is_none(),
            "not sent under a second name: {m}"
        );
        assert_eq!(m["tool_calls"][0]["id"], "c1");
        let hidden = passthrough_completion("id", 1, "m", &up, None, Usage::default());
        let m = &hidden["choices"][0]["message"];
        for field in ["reasoning", "reasoning_content", "reasoning_details"] {
            assert!(m.get(field).is_none(), "{field} hidden: {m}");
        }
        let c = passthrough_chunks("id", 1, "m", &up, Some("why"));
        let d = &c[0]["choices"][0]["delta"];
        assert_eq!(
            (&d["reasoning_content"], &d["role"]),
            (&json!("why"), &json!("assistant"))
        );
        assert!(d.get("reasoning").is_none());
        let c = passthrough_chunks("id", 1, "m", &up, None);
        assert!(
            c[0]["choices"][0]["delta"]
                .get("reasoning_content")
                .is_none()
        );
    }
}
