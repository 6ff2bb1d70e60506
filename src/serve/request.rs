//! A Chat Completions request as `serve` reads it (SPEC §8.3): which fields llxprt interprets,
//! which it passes through, and which it refuses.
//!
//! Owns: turning the client's JSON into the conversation (system prompt and turns), the
//! sampling overrides, the fields to pass through, and the list of features only Chat
//! Completions backends can serve. Must not: choose profiles or backends (see `plan`).
//!
//! Decisions where SPEC is silent:
//! - `system` and `developer` messages, wherever they stand, are joined (blank line between)
//!   into the request's system prompt, which replaces the profiles' `system-prompt`.
//! - Content given as parts is read as its text parts joined; any other part (image, audio,
//!   file) is a pass-through feature.
//! - Sampling fields set to `null` are treated as absent. Fields llxprt neither interprets nor
//!   lists as features (`user`, `metadata`, `store`, `logprobs`, …) go to Chat Completions
//!   backends as sent and are dropped for the others.
//! - `response_format: {"type": "text"}`, `tools: []` and `functions: []` are the defaults and
//!   need no pass-through.
//! - Without pass-through features the conversation must end with a user message.

use serde_json::{Map, Value};

use crate::shell::protocol::{Role, Turn};

/// Sampling fields that override the backends' `modelParams` (SPEC §8.3).
pub const SAMPLING: &[&str] = &[
    "temperature",
    "top_p",
    "top_k",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "reasoning_effort",
];

/// Top-level fields only a Chat Completions backend can honour (SPEC §8.3: passed through
/// unchanged; a backend of another protocol is skipped).
pub const FEATURES: &[&str] = &[
    "tools",
    "tool_choice",
    "response_format",
    "functions",
    "function_call",
    "parallel_tool_calls",
    "audio",
    "modalities",
];

/// Fields that belong to the protocol between the client and llxprt.
const PROTOCOL: &[&str] = &["model", "messages", "stream", "stream_options", "n"];

/// A client's request, read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatRequest {
    /// `model`: a profile name, or anything (then the `--profile` one serves).
    pub model: Option<String>,
    /// The system prompt from `system`/`developer` messages.
    pub system: Option<String>,
    /// The conversation (text only), oldest first.
    pub turns: Vec<Turn>,
    /// The messages as sent (for pass-through).
    pub raw_messages: Vec<Value>,
    /// `stream`.
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    /// Sampling overrides.
    pub sampling: Map<String, Value>,
    /// Top-level pass-through features (`tools`, …), as sent.
    pub features: Map<String, Value>,
    /// Other fields, for Chat Completions backends only.
    pub extra: Map<String, Value>,
    /// Why the request needs a Chat Completions backend: the first field that says so
    /// (`tools`, `messages[2].role`, `messages[0].content[1].type`).
    pub needs_chat_completions: Option<String>,
}

/// A request that cannot be served: the message and the offending parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// What is wrong.
    pub message: String,
    /// The parameter (OpenAI's `param`), also used as the error `code` context.
    pub param: String,
}

fn invalid(param: &str, message: impl Into<String>) -> Invalid {
    Invalid {
        message: message.into(),
        param: param.to_string(),
    }
}

fn is_default_feature(key: &str, v: &Value) -> bool {
    match key {
        "tools" | "functions" => v.as_array().is_some_and(Vec::is_empty),
        "response_format" => v.get("type").and_then(Value::as_str) == Some("text"),
        _ => false,
    }
}

/// Reads a request body.
pub fn parse(body: &[u8]) -> Result<ChatRequest, Invalid> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| invalid("body", format!("the request body is not JSON: {e}")))?;
    let Value::Object(obj) = v else {
        return Err(invalid("body", "the request body is not a JSON object"));
    };
    let mut r = ChatRequest::default();
    match obj.get("model") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => r.model = Some(s.clone()),
        Some(_) => return Err(invalid("model", "model must be a string")),
    }
    match obj.get("stream") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(b)) => r.stream = *b,
        Some(_) => return Err(invalid("stream", "stream must be true or false")),
    }
    r.include_usage = obj
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    match obj.get("n") {
        None | Some(Value::Null) => {}
        Some(n) if n.as_u64() == Some(1) => {}
        Some(n) if n.as_u64().is_some_and(|n| n > 1) => {
            return Err(invalid(
                "n",
                "n > 1 is not supported by llxprt serve: send one request per choice",
            ));
        }
        Some(_) => return Err(invalid("n", "n must be a positive integer")),
    }
    for (k, v) in &obj {
        if PROTOCOL.contains(&k.as_str()) || v.is_null() {
            continue;
        }
        if SAMPLING.contains(&k.as_str()) {
            r.sampling.insert(k.clone(), v.clone());
        } else if FEATURES.contains(&k.as_str()) {
            if !is_default_feature(k, v) {
                r.needs_chat_completions.get_or_insert_with(|| k.clone());
                r.features.insert(k.clone(), v.clone());
            }
        } else {
            r.extra.insert(k.clone(), v.clone());
        }
    }
    let Some(messages) = obj.get("messages").and_then(Value::as_array) else {
        return Err(invalid("messages", "messages must be an array of messages"));
    };
    if messages.is_empty() {
        return Err(invalid("messages", "messages is empty"));
    }
    r.raw_messages.clone_from(messages);
    let mut system: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let at = |f: &str| format!("messages[{i}].{f}");
        let Some(role) = m.get("role").and_then(Value::as_str) else {
            return Err(invalid(&at("role"), "every message needs a role"));
        };
        let (text, feature) = content_text(m.get("content"), &at("content"))?;
        if let Some(f) = feature {
            r.needs_chat_completions.get_or_insert(f);
        }
        match role {
            "system" | "developer" => system.push(text),
            "user" => r.turns.push(Turn {
                role: Role::User,
                text,
                reasoning: None,
            }),
            "assistant" => {
                for k in ["tool_calls", "function_call", "audio"] {
                    if m.get(k).is_some_and(|v| !v.is_null()) {
                        r.needs_chat_completions.get_or_insert_with(|| at(k));
                    }
                }
                r.turns.push(Turn {
                    role: Role::Assistant,
                    text,
                    reasoning: None,
                });
            }
            "tool" | "function" => {
                r.needs_chat_completions.get_or_insert_with(|| at("role"));
            }
            other => {
                return Err(invalid(
                    &at("role"),
                    format!(
                        "unknown role \"{}\" (system, developer, user, assistant, tool)",
                        other.chars().take(40).collect::<String>()
                    ),
                ));
            }
        }
    }
    if !system.is_empty() {
        r.system = Some(system.join("\n\n"));
    }
    if r.needs_chat_completions.is_none() && r.turns.last().map(|t| t.role) != Some(Role::User) {
        return Err(invalid(
            "messages",
            "the conversation must end with a user message",
        ));
    }
    Ok(r)
}

/// The text of a message's content, and the first non-text part (a pass-through feature).
fn content_text(content: Option<&Value>, at: &str) -> Result<(String, Option<String>), Invalid> {
    match content {
        None | Some(Value::Null) => Ok((String::new(), None)),
        Some(Value::String(s)) => Ok((s.clone(), None)),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            let mut feature = None;
            for (j, p) in parts.iter().enumerate() {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let t = p.get("text").and_then(Value::as_str).ok_or_else(|| {
                            invalid(&format!("{at}[{j}].text"), "a text part needs a text")
                        })?;
                        text.push_str(t);
                    }
                    Some(_) => {
                        feature.get_or_insert_with(|| format!("{at}[{j}].type"));
                    }
                    None => {
                        return Err(invalid(
                            &format!("{at}[{j}].type"),
                            "every content part needs a type",
                        ));
                    }
                }
            }
            Ok((text, feature))
        }
        Some(_) => Err(invalid(at, "content must be a string or an array of parts")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn p(v: &Value) -> Result<ChatRequest, Invalid> {
        parse(v.to_string().as_bytes())
    }

    #[test]
    fn messages_become_the_system_prompt_and_turns() {
        let r = p(&json!({"model": "lb", "stream": true, "stream_options": {"include_usage": true},
            "temperature": 0.2, "max_tokens": null, "user": "u1", "response_format": {"type": "text"},
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                {"role": "assistant", "content": "hello"},
                {"role": "developer", "content": "no jokes"},
                {"role": "user", "content": "more"}]}))
        .unwrap();
        assert_eq!(r.model.as_deref(), Some("lb"));
        assert!(r.stream && r.include_usage);
        assert_eq!(r.system.as_deref(), Some("be brief\n\nno jokes"));
        let turns: Vec<(Role, &str)> = r.turns.iter().map(|t| (t.role, t.text.as_str())).collect();
        assert_eq!(
            turns,
            [
                (Role::User, "hi"),
                (Role::Assistant, "hello"),
                (Role::User, "more")
            ]
        );
        assert_eq!(Value::Object(r.sampling), json!({"temperature": 0.2}));
        assert_eq!(Value::Object(r.extra), json!({"user": "u1"}));
        assert!(r.features.is_empty() && r.needs_chat_completions.is_none());
    }

    #[test]
    fn features_name_the_first_field_that_needs_chat_completions() {
        let r = p(&json!({"tools": [{"type": "function"}], "messages": [{"role": "user", "content": "x"}]}))
            .unwrap();
        assert_eq!(r.needs_chat_completions.as_deref(), Some("tools"));
        let r = p(&json!({"messages": [
            {"role": "user", "content": [{"type": "text", "text": "see"}, {"type": "image_url", "image_url": {"url": "data:"}}]}]}))
        .unwrap();
        assert_eq!(
            r.needs_chat_completions.as_deref(),
            Some("messages[0].content[1].type")
        );
        assert_eq!(r.turns[0].text, "see");
        let r = p(&json!({"messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c"}]},
            {"role": "tool", "tool_call_id": "c", "content": "42"}]}))
        .unwrap();
        assert_eq!(
            r.needs_chat_completions.as_deref(),
            Some("messages[1].tool_calls")
        );
    }

    #[test]
    fn refusals_name_the_parameter() {
        for (body, param) in [
            (
                json!({"n": 2, "messages": [{"role": "user", "content": "x"}]}),
                "n",
            ),
            (json!({"messages": []}), "messages"),
            (json!({"messages": "hi"}), "messages"),
            (json!({"messages": [{"content": "x"}]}), "messages[0].role"),
            (
                json!({"messages": [{"role": "robot", "content": "x"}]}),
                "messages[0].role",
            ),
            (
                json!({"messages": [{"role": "user", "content": 5}]}),
                "messages[0].content",
            ),
            (
                json!({"messages": [{"role": "assistant", "content": "x"}]}),
                "messages",
            ),
            (json!({"model": 5, "messages": []}), "model"),
            (json!({"stream": "yes", "messages": []}), "stream"),
            (json!([1]), "body"),
        ] {
            assert_eq!(p(&body).unwrap_err().param, param, "{body}");
        }
        assert_eq!(parse(b"{not json").unwrap_err().param, "body");
    }
}
