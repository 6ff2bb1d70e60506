//! OpenAI Chat Completions (SPEC §6.1; CRATES.md §10.1): `POST {base}/chat/completions`, used by
//! `openai` and every OpenAI-compatible provider.
//!
//! Owns: the request body and headers, the stream decoder (`data:` chunks, `data: [DONE]`), the
//! non-streamed body and the error body of this protocol. Must not: do I/O, or decide retries.
//!
//! Choices made where the format leaves room:
//! - `modelParams` go in at the root as given (SPEC §3); `model`, `messages`, `stream` and
//!   `stream_options` belong to the protocol and are set by llxprt (a user's `stream_options`
//!   object is kept and `include_usage` added to it). `reasoning_effort` comes from
//!   `reasoning.effort` unless `modelParams` already has one.
//! - Stored reasoning is never sent back: Chat Completions has no standard input field for it,
//!   and some compatible servers reject `reasoning_content` in requests (SPEC §5.8 allows
//!   omitting it).
//! - Only the first choice (`index` 0) is read; with `n` > 1 the others are ignored.
//! - `delta.reasoning_content` is preferred; `delta.reasoning` is read when it is absent (a
//!   server sending both with the same text would otherwise duplicate it).
//! - The model's own `refusal` field (structured outputs) is its answer text; only a
//!   `content_filter` finish is a [`Chunk::Refusal`] (SPEC §4 `content_filter`).
//! - The stream's terminal chunk is sent once: the first non-null `finish_reason`, or `[DONE]`
//!   as `Finish("stop")` when none came. The usage chunk (`choices: []`) follows the finish
//!   chunk on this protocol, so a caller keeps reading to the end of the body for it.

use std::borrow::Cow;

use serde_json::{Map, Value, json};

use super::error_body;
use super::headers;
use super::{
    Chunk, Conversation, HttpRequest, ProviderError, Response, Role, SseEvent, StreamDecoder,
    Target, Usage,
};
use crate::profile::settings::ReasoningEffort;

/// Builds a Chat Completions request.
pub fn build_request(t: &Target<'_>, c: &Conversation<'_>, stream: bool) -> HttpRequest {
    let mut messages = Vec::new();
    if let Some(system) = c.system.filter(|s| !s.is_empty()) {
        messages.push(json!({"role": "system", "content": system}));
    }
    for turn in c.turns {
        let role = match turn.role {
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        messages.push(json!({"role": role, "content": turn.text}));
    }
    if let Some(prefill) = c.prefill.filter(|p| !p.is_empty()) {
        messages.push(json!({"role": "assistant", "content": prefill}));
    }

    let mut body: Map<String, Value> = t.model_params.clone();
    body.insert("model".to_owned(), Value::from(t.model));
    body.insert("messages".to_owned(), Value::Array(messages));
    if let Some(effort) = t.settings.reasoning_effort {
        body.entry("reasoning_effort")
            .or_insert_with(|| Value::from(effort_name(effort)));
    }
    if stream {
        body.insert("stream".to_owned(), Value::Bool(true));
        if t.settings.stream_usage != Some(false) {
            let options = body
                .entry("stream_options")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(options) = options.as_object_mut() {
                options.insert("include_usage".to_owned(), Value::Bool(true));
            } else {
                *options = json!({"include_usage": true});
            }
        }
    } else {
        // Not streaming: `stream_options` is only allowed with `stream: true`.
        body.remove("stream");
        body.remove("stream_options");
    }

    let mut h = headers::base(stream);
    headers::add_credential(&mut h, t.credential, None);
    headers::add_custom(&mut h, t.settings);
    HttpRequest {
        url: format!("{}/chat/completions", t.base_url.trim_end_matches('/')),
        headers: h,
        body: Value::Object(body),
    }
}

fn effort_name(effort: ReasoningEffort) -> &'static str {
    match effort {
        ReasoningEffort::Low => "low",
        ReasoningEffort::Medium => "medium",
        ReasoningEffort::High => "high",
    }
}

/// Decodes a Chat Completions stream.
#[derive(Debug, Default)]
pub struct Decoder {
    /// The terminal chunk (`Finish` or `Refusal`) was sent.
    finished: bool,
}

impl StreamDecoder for Decoder {
    fn on_event(&mut self, event: &SseEvent) -> Result<Vec<Chunk>, String> {
        let data = event.data.trim();
        if data == "[DONE]" {
            if self.finished {
                return Ok(Vec::new());
            }
            self.finished = true;
            return Ok(vec![Chunk::Finish("stop".to_owned())]);
        }
        let typed = (event.event.as_deref() != Some("error"))
            .then(|| typed::parts(data))
            .flatten();
        let parts = match typed {
            Some(p) => p,
            None => match parts_of_value(event, data)? {
                Ok(p) => p,
                Err(e) => return Ok(vec![Chunk::Error(e)]),
            },
        };
        let mut out = Vec::new();
        if let Some(r) = parts.reasoning {
            out.push(Chunk::Reasoning(r.into_owned()));
        }
        for text in [parts.content, parts.refusal].into_iter().flatten() {
            out.push(Chunk::Text(text.into_owned()));
        }
        if let Some(usage) = parts.usage {
            out.push(Chunk::Usage(usage));
        }
        if let Some(reason) = parts.finish
            && !self.finished
        {
            self.finished = true;
            out.push(terminal(&reason));
        }
        Ok(out)
    }
}

/// What the decoder reads of one chunk: from its first choice the non-empty reasoning
/// (`reasoning_content`, else `reasoning`), `content`, `refusal` and `finish_reason`; and the
/// usage.
#[derive(Debug, Default, PartialEq, Eq)]
struct Parts<'a> {
    reasoning: Option<Cow<'a, str>>,
    content: Option<Cow<'a, str>>,
    refusal: Option<Cow<'a, str>>,
    finish: Option<Cow<'a, str>>,
    usage: Option<Usage>,
}

/// The parts of a chunk read through a [`Value`]: any shape, fields of the wrong type ignored.
/// `Ok(Err(_))` for an error chunk.
fn parts_of_value<'a>(
    event: &SseEvent,
    data: &str,
) -> Result<Result<Parts<'a>, ProviderError>, String> {
    let v: Value = serde_json::from_str(data).map_err(|e| format!("chunk is not JSON: {e}"))?;
    if !v.is_object() {
        return Err("chunk is not a JSON object".to_owned());
    }
    if v.get("error").is_some_and(|e| !e.is_null()) || event.event.as_deref() == Some("error") {
        return Ok(Err(stream_error(&v)));
    }
    let owned = |s: Option<&str>| s.map(|s| Cow::Owned(s.to_owned()));
    let choice = first_choice(&v);
    let delta = choice.and_then(|c| c.get("delta"));
    Ok(Ok(Parts {
        reasoning: owned(delta.and_then(reasoning_of)),
        content: owned(non_empty_str(delta.and_then(|d| d.get("content")))),
        refusal: owned(non_empty_str(delta.and_then(|d| d.get("refusal")))),
        finish: owned(choice.and_then(|c| non_empty_str(c.get("finish_reason")))),
        usage: usage_of(&v),
    }))
}

/// The common chunk read straight into borrowed fields: several times cheaper than a
/// [`Value`] (serve decodes every event of every answer). It takes only chunks whose fields
/// have the expected types, no error, and no key twice; anything else is left to
/// [`parts_of_value`], so both read every chunk the same way (a test holds them to it).
mod typed {
    use std::borrow::Cow;
    use std::marker::PhantomData;

    use serde::Deserialize;
    use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor, value::MapAccessDeserializer};

    use super::{Parts, Usage};

    /// `T` from a JSON object only (serde's derive also takes an array, field by field, which
    /// a [`serde_json::Value`] reading would not).
    struct Object<T>(T);

    impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Only<T>(PhantomData<T>);
            impl<'de, T: Deserialize<'de>> Visitor<'de> for Only<T> {
                type Value = T;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                    T::deserialize(MapAccessDeserializer::new(map))
                }
            }
            d.deserialize_map(Only(PhantomData)).map(Object)
        }
    }

    /// A string, borrowed from the chunk when it has no escapes (serde's own `Cow` is always
    /// owned inside an `Option`).
    struct Text<'a>(Cow<'a, str>);

    impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Str;
            impl<'de> Visitor<'de> for Str {
                type Value = Cow<'de, str>;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a string")
                }
                fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
                    Ok(Cow::Borrowed(s))
                }
                fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                    Ok(Cow::Owned(s.to_owned()))
                }
                fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
                    Ok(Cow::Owned(s))
                }
            }
            d.deserialize_str(Str).map(Text)
        }
    }

    #[derive(Deserialize)]
    struct ChunkIn<'a> {
        #[serde(borrow, default)]
        choices: Option<Vec<Object<ChoiceIn<'a>>>>,
        #[serde(default)]
        usage: Option<Object<UsageIn>>,
        #[serde(default)]
        error: Option<IgnoredAny>,
    }

    #[derive(Deserialize)]
    struct ChoiceIn<'a> {
        #[serde(default)]
        index: Option<u64>,
        #[serde(borrow, default)]
        delta: Option<Object<DeltaIn<'a>>>,
        #[serde(borrow, default)]
        finish_reason: Option<Text<'a>>,
    }

    #[derive(Deserialize)]
    struct DeltaIn<'a> {
        #[serde(borrow, default)]
        reasoning_content: Option<Text<'a>>,
        #[serde(borrow, default)]
        reasoning: Option<Text<'a>>,
        #[serde(borrow, default)]
        content: Option<Text<'a>>,
        #[serde(borrow, default)]
        refusal: Option<Text<'a>>,
    }

    #[derive(Deserialize)]
    struct UsageIn {
        #[serde(default)]
        prompt_tokens: Option<u64>,
        #[serde(default)]
        completion_tokens: Option<u64>,
    }

    fn non_empty(s: Option<Text<'_>>) -> Option<Cow<'_, str>> {
        s.map(|Text(s)| s).filter(|s| !s.is_empty())
    }

    /// The parts of `data`, or `None` when the chunk is not of the common kind.
    pub(super) fn parts(data: &str) -> Option<Parts<'_>> {
        let Object(c) = serde_json::from_str::<Object<ChunkIn<'_>>>(data).ok()?;
        if c.error.is_some() {
            return None;
        }
        let choice = c
            .choices
            .into_iter()
            .flatten()
            .map(|Object(c)| c)
            .find(|c| c.index.unwrap_or(0) == 0);
        let (delta, finish) = match choice {
            Some(c) => (c.delta.map(|Object(d)| d), c.finish_reason),
            None => (None, None),
        };
        let mut parts = Parts {
            finish: non_empty(finish),
            usage: c.usage.and_then(|Object(u)| {
                (u.prompt_tokens.is_some() || u.completion_tokens.is_some()).then(|| Usage {
                    prompt_tokens: u.prompt_tokens.unwrap_or(0),
                    completion_tokens: u.completion_tokens.unwrap_or(0),
                })
            }),
            ..Parts::default()
        };
        if let Some(d) = delta {
            parts.reasoning = non_empty(d.reasoning_content).or_else(|| non_empty(d.reasoning));
            parts.content = non_empty(d.content);
            parts.refusal = non_empty(d.refusal);
        }
        Some(parts)
    }
}

/// `Finish(reason)`, or `Refusal` for a `content_filter` finish.
fn terminal(reason: &str) -> Chunk {
    if reason == "content_filter" {
        Chunk::Refusal(reason.to_owned())
    } else {
        Chunk::Finish(reason.to_owned())
    }
}

/// The choice with `index` 0 (or no index).
fn first_choice(v: &Value) -> Option<&Value> {
    v.get("choices")?
        .as_array()?
        .iter()
        .find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
}

fn reasoning_of(m: &Value) -> Option<&str> {
    non_empty_str(m.get("reasoning_content")).or_else(|| non_empty_str(m.get("reasoning")))
}

fn non_empty_str(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn usage_of(v: &Value) -> Option<Usage> {
    let u = v.get("usage")?.as_object()?;
    let prompt = u.get("prompt_tokens").and_then(Value::as_u64);
    let completion = u.get("completion_tokens").and_then(Value::as_u64);
    if prompt.is_none() && completion.is_none() {
        return None;
    }
    Some(Usage {
        prompt_tokens: prompt.unwrap_or(0),
        completion_tokens: completion.unwrap_or(0),
    })
}

/// An in-stream `{"error": …}` chunk, its status from its code or type (SPEC §4).
fn stream_error(v: &Value) -> ProviderError {
    let f = error_body::fields(v).unwrap_or_default();
    let status = f.http_status.unwrap_or_else(|| {
        [f.code.as_deref(), f.kind.as_deref()]
            .into_iter()
            .flatten()
            .find_map(status_for)
            .unwrap_or(500)
    });
    ProviderError {
        status,
        code: f.code,
        message: if f.message.is_empty() {
            "error event in the stream".to_owned()
        } else {
            f.message
        },
        retry_after_ms: f.retry_after_ms,
    }
}

/// The HTTP status an error code or type stands for, when it says.
fn status_for(code: &str) -> Option<u16> {
    let c = code.to_ascii_lowercase();
    let status = if c.contains("rate_limit")
        || c == "insufficient_quota"
        || c == "billing_hard_limit_reached"
    {
        429
    } else if c.contains("overloaded") || c.contains("unavailable") {
        503
    } else if c.contains("server_error") || c.contains("internal") || c == "api_error" {
        500
    } else if c.contains("timeout") {
        504
    } else if c.contains("authentication") || c == "invalid_api_key" {
        401
    } else if c.contains("permission") {
        403
    } else if c.contains("not_found") {
        404
    } else if c.contains("context_length") || c.contains("invalid_request") {
        400
    } else {
        return None;
    };
    Some(status)
}

/// Parses a complete Chat Completions body.
pub fn parse_response(body: &[u8]) -> Result<Response, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    if !v.is_object() {
        return Err("body is not a JSON object".to_owned());
    }
    if v.get("error").is_some_and(|e| !e.is_null()) {
        return Err(format!(
            "error object in a 2xx body: {}",
            stream_error(&v).message
        ));
    }
    let choice = first_choice(&v);
    let message = choice.and_then(|c| c.get("message"));
    let mut text = String::new();
    if let Some(m) = message {
        match m.get("content") {
            Some(Value::String(s)) => text.push_str(s),
            // Some compatible servers answer with content parts.
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .for_each(|s| text.push_str(s)),
            _ => {}
        }
        if let Some(r) = non_empty_str(m.get("refusal")) {
            text.push_str(r);
        }
    }
    let finish_reason = choice
        .and_then(|c| non_empty_str(c.get("finish_reason")))
        .map(str::to_owned);
    Ok(Response {
        text,
        reasoning: message.and_then(reasoning_of).map(str::to_owned),
        signature: None,
        usage: usage_of(&v),
        refusal: finish_reason
            .as_deref()
            .filter(|r| *r == "content_filter")
            .map(str::to_owned),
        finish_reason,
    })
}

/// Reads a Chat Completions error body (`{"error": {"message", "type", "code"}}`; the code is
/// `code`, else `type`).
pub fn parse_error(status: u16, body: &[u8]) -> ProviderError {
    error_body::parse(status, body)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::profile::settings::StripFromContext;
    use crate::provider::Protocol;
    use crate::shell::protocol::Credential;
    use crate::shell::protocol::test_support::{Fixture, decode, three_turns};

    fn conversation(turns: &[super::super::Turn]) -> Conversation<'_> {
        Conversation {
            system: Some("be brief"),
            turns,
            prefill: Some("The answer"),
        }
    }

    #[test]
    fn streamed_request_shape() {
        let mut f = Fixture::new(&json!({"temperature": 0.2, "max_tokens": 100, "stream": false}));
        f.settings.reasoning_effort = Some(ReasoningEffort::High);
        f.settings.reasoning_include_in_context = Some(true);
        f.settings.reasoning_strip_from_context = Some(StripFromContext::None);
        f.settings.custom_headers = Some(BTreeMap::from([("X-Org".to_owned(), "o".to_owned())]));
        let turns = three_turns("openai");
        let t = f.target(
            Protocol::ChatCompletions,
            "openai",
            Credential::ApiKey("sk-1"),
        );
        let r = build_request(&t, &conversation(&turns), true);
        assert_eq!(r.url, "https://api.example.com/chat/completions");
        assert_eq!(
            r.headers,
            vec![
                ("content-type".to_owned(), "application/json".to_owned()),
                ("accept".to_owned(), "text/event-stream".to_owned()),
                ("authorization".to_owned(), "Bearer sk-1".to_owned()),
                ("X-Org".to_owned(), "o".to_owned()),
            ]
        );
        assert_eq!(
            r.body,
            json!({
                "model": "m-1",
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "hello"},
                    {"role": "user", "content": "more"},
                    {"role": "assistant", "content": "The answer"},
                ],
                "temperature": 0.2,
                "max_tokens": 100,
                "reasoning_effort": "high",
                "stream": true,
                "stream_options": {"include_usage": true},
            })
        );
    }

    #[test]
    fn plain_request_and_stream_usage_off() {
        let mut f = Fixture::new(
            &json!({"reasoning_effort": "low", "stream_options": {"include_obfuscation": false}}),
        );
        f.settings.reasoning_effort = Some(ReasoningEffort::High);
        let turns = three_turns("openai");
        let c = Conversation {
            system: None,
            turns: &turns,
            prefill: None,
        };
        let t = f.target(Protocol::ChatCompletions, "openai", Credential::None);
        let r = build_request(&t, &c, false);
        assert_eq!(r.headers.len(), 1);
        assert_eq!(r.body["reasoning_effort"], "low");
        assert_eq!(r.body["messages"].as_array().unwrap().len(), 3);
        assert!(r.body.get("stream").is_none());
        assert!(r.body.get("stream_options").is_none());
        let r = build_request(&t, &c, true);
        assert_eq!(
            r.body["stream_options"],
            json!({"include_obfuscation": false, "include_usage": true})
        );
        f.settings.stream_usage = Some(false);
        let t = f.target(
            Protocol::ChatCompletions,
            "openai",
            Credential::OAuth("tok"),
        );
        let r = build_request(&t, &c, true);
        assert_eq!(
            r.body["stream_options"],
            json!({"include_obfuscation": false})
        );
        assert_eq!(
            r.headers[2],
            ("authorization".to_owned(), "Bearer tok".to_owned())
        );
    }

    #[test]
    fn stream_text_reasoning_usage_and_done() {
        let raw = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\n",
            ": OPENROUTER PROCESSING\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"hmm\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning\":\"ok\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}},{\"index\":1,\"delta\":{\"content\":\"X\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n",
            "data: [DONE]\n\n",
        );
        assert_eq!(
            decode(&mut Decoder::default(), raw),
            vec![
                Chunk::Reasoning("hmm".to_owned()),
                Chunk::Reasoning("ok".to_owned()),
                Chunk::Text("Hel".to_owned()),
                Chunk::Text("lo".to_owned()),
                Chunk::Finish("stop".to_owned()),
                Chunk::Usage(Usage {
                    prompt_tokens: 9,
                    completion_tokens: 2
                }),
            ]
        );
    }

    #[test]
    fn done_without_finish_reason_and_null_choices() {
        let raw = concat!(
            "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
            "data: {\"choices\":null,\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\n\n",
            "data: {not json\n\n",
            "data: [DONE]\n\n",
        );
        assert_eq!(
            decode(&mut Decoder::default(), raw),
            vec![
                Chunk::Text("a".to_owned()),
                Chunk::Usage(Usage {
                    prompt_tokens: 1,
                    completion_tokens: 1
                }),
                Chunk::Text("<skipped>".to_owned()),
                Chunk::Finish("stop".to_owned()),
            ]
        );
        // A stream without either signal has no terminal chunk (SPEC §5.8: interrupted).
        let chunks = decode(
            &mut Decoder::default(),
            "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
        );
        assert!(!chunks.iter().any(|c| matches!(c, Chunk::Finish(_))));
    }

    #[test]
    fn content_filter_is_a_refusal() {
        let raw = "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"content_filter\"}]}\n\ndata: [DONE]\n\n";
        assert_eq!(
            decode(&mut Decoder::default(), raw),
            vec![Chunk::Refusal("content_filter".to_owned())]
        );
    }

    #[test]
    fn error_chunks_carry_the_status_of_their_type() {
        let cases = [
            (
                json!({"error": {"message": "slow down", "type": "rate_limit_exceeded"}}),
                429,
                "rate_limit_exceeded",
            ),
            (
                json!({"error": {"message": "pay", "type": "insufficient_quota", "code": "insufficient_quota"}}),
                429,
                "insufficient_quota",
            ),
            (
                json!({"error": {"message": "oops", "type": "server_error", "code": null}}),
                500,
                "server_error",
            ),
            (
                json!({"error": {"message": "busy", "type": "overloaded_error"}}),
                503,
                "overloaded_error",
            ),
            (json!({"error": {"message": "x", "code": 502}}), 502, ""),
            (
                json!({"error": {"message": "x", "type": "weird"}}),
                500,
                "weird",
            ),
        ];
        for (body, status, code) in cases {
            let event = SseEvent {
                event: None,
                data: body.to_string(),
            };
            let chunks = Decoder::default().on_event(&event).unwrap();
            let [Chunk::Error(e)] = chunks.as_slice() else {
                panic!("{chunks:?}")
            };
            assert_eq!(e.status, status, "{body}");
            assert_eq!(e.code.as_deref().unwrap_or(""), code);
        }
        let event = SseEvent {
            event: Some("error".to_owned()),
            data: r#"{"message":"gone"}"#.to_owned(),
        };
        let chunks = Decoder::default().on_event(&event).unwrap();
        assert!(matches!(&chunks[..], [Chunk::Error(e)] if e.status == 500 && e.message == "gone"));
    }

    #[test]
    fn malformed_events_are_errors_not_panics() {
        let mut d = Decoder::default();
        for data in ["", "[", "3", "\"s\"", "[1]", "null"] {
            let event = SseEvent {
                event: None,
                data: data.to_owned(),
            };
            assert!(d.on_event(&event).is_err(), "{data}");
        }
        let odd = SseEvent {
            event: None,
            data: r#"{"choices":[{"delta":{"content":5}}],"usage":{"prompt_tokens":"x"}}"#
                .to_owned(),
        };
        assert_eq!(d.on_event(&odd).unwrap(), vec![]);
    }

    #[test]
    fn non_streamed_bodies() {
        let body = json!({
            "id": "c", "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi", "reasoning_content": "r", "refusal": null}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
        });
        assert_eq!(
            parse_response(body.to_string().as_bytes()).unwrap(),
            Response {
                text: "Hi".to_owned(),
                reasoning: Some("r".to_owned()),
                signature: None,
                usage: Some(Usage {
                    prompt_tokens: 3,
                    completion_tokens: 4
                }),
                finish_reason: Some("length".to_owned()),
                refusal: None,
            }
        );
        let filtered =
            json!({"choices": [{"message": {"content": null}, "finish_reason": "content_filter"}]});
        let r = parse_response(filtered.to_string().as_bytes()).unwrap();
        assert_eq!(r.refusal.as_deref(), Some("content_filter"));
        let cut =
            json!({"choices": [{"message": {"content": [{"type": "text", "text": "part"}]}}]});
        let r = parse_response(cut.to_string().as_bytes()).unwrap();
        assert_eq!((r.text.as_str(), r.finish_reason), ("part", None));
        assert!(parse_response(b"{\"error\":{\"message\":\"no\"}}").is_err());
        assert!(parse_response(b"<html>").is_err());
        assert!(parse_response(b"[]").is_err());
    }

    #[test]
    fn error_bodies() {
        let e = parse_error(
            429,
            br#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
        );
        assert_eq!(e.status, 429);
        assert_eq!(e.code.as_deref(), Some("rate_limit_exceeded"));
        assert_eq!(e.message, "Rate limit reached");
        assert_eq!(parse_error(502, b"Bad Gateway").message, "Bad Gateway");
    }
}

/// The typed reading of a chunk agrees with the [`Value`] one wherever it is taken, and is
/// taken for the chunks servers send.
#[cfg(test)]
mod typed_agrees {
    use proptest::prelude::*;
    use serde_json::{Map, Value, json};

    use super::*;

    fn by_value(data: &str) -> Parts<'static> {
        let event = SseEvent {
            event: None,
            data: data.to_owned(),
        };
        parts_of_value(&event, data)
            .expect("JSON object")
            .expect("not an error")
    }

    #[test]
    fn common_chunks_take_the_typed_path_and_borrow_plain_text() {
        let chunks = [
            json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                   "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]}),
            json!({"choices": [{"index": 0, "delta": {"content": "plain"}}], "usage": null}),
            json!({"choices": [{"index": 0, "delta": {"content": "line\n\"quoted\" é"}}]}),
            json!({"choices": [{"delta": {"reasoning_content": "hmm", "reasoning": "hmm"}}]}),
            json!({"choices": [{"index": 1, "delta": {"content": "X"}}, {"index": 0, "delta": {"content": "Y"}, "finish_reason": "stop"}]}),
            json!({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11,
                   "prompt_tokens_details": {"cached_tokens": 0}}}),
            json!({"choices": null, "usage": {"prompt_tokens": 1}, "error": null}),
        ];
        for c in &chunks {
            let data = c.to_string();
            let typed = typed::parts(&data).unwrap_or_else(|| panic!("typed path refused {c}"));
            assert_eq!(typed, by_value(&data), "{c}");
        }
        let data = chunks[1].to_string();
        let typed = typed::parts(&data).expect("typed");
        assert!(matches!(typed.content, Some(Cow::Borrowed("plain"))));
    }

    #[test]
    fn what_the_typed_path_refuses_is_read_by_value() {
        for data in [
            r#"{"choices":[{"delta":{"content":"a","content":"b"}}]}"#, // a key twice
            r#"{"choices":[[0,{"content":"a"},"stop"]]}"#,              // a choice as an array
            r#"{"choices":[{"delta":{"content":["part"]}}]}"#,          // content parts
            r#"{"choices":[{"index":-1,"delta":{"content":"a"}}]}"#,    // odd index
            r#"{"usage":{"prompt_tokens":2.0,"completion_tokens":1}}"#, // a float count
        ] {
            assert!(typed::parts(data).is_none(), "{data}");
        }
        let event = |data: &str| SseEvent {
            event: None,
            data: data.to_owned(),
        };
        let mut d = Decoder::default();
        assert_eq!(
            d.on_event(&event(
                r#"{"choices":[{"delta":{"content":"a","content":"b"}}]}"#
            ))
            .unwrap(),
            vec![Chunk::Text("b".to_owned())]
        );
        assert_eq!(
            d.on_event(&event(
                r#"{"choices":[{"index":-1,"delta":{"content":"a"}}]}"#
            ))
            .unwrap(),
            vec![Chunk::Text("a".to_owned())]
        );
        assert!(d.on_event(&event("[1]")).is_err());
    }

    /// Any small JSON value.
    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (-1e3f64..1e3).prop_map(Value::from),
            "[a-z\"\\\\\n é]{0,6}".prop_map(Value::from),
            Just(json!([])),
            Just(json!({})),
        ]
    }

    /// Mostly `good`, sometimes any value.
    fn usually(good: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Value> {
        prop_oneof![8 => good, 1 => leaf()].boxed()
    }

    /// An object of these optional fields (and sometimes one more).
    fn object(fields: Vec<(&'static str, BoxedStrategy<Value>)>) -> BoxedStrategy<Value> {
        let (names, values): (Vec<_>, Vec<_>) = fields
            .into_iter()
            .map(|(n, v)| (n, proptest::option::of(v)))
            .unzip();
        (values, proptest::option::of(leaf()))
            .prop_map(move |(values, extra)| {
                let mut m = Map::new();
                for (n, v) in names.iter().zip(values) {
                    if let Some(v) = v {
                        m.insert((*n).to_owned(), v);
                    }
                }
                if let Some(x) = extra {
                    m.insert("x".to_owned(), x);
                }
                Value::Object(m)
            })
            .boxed()
    }

    /// A value shaped like a chunk, its fields now and then of another type or missing.
    fn chunk() -> BoxedStrategy<Value> {
        let text = || {
            usually(prop_oneof!["[a-z\"\\\\\n é]{0,6}", Just(String::new())].prop_map(Value::from))
        };
        let delta = object(vec![
            ("reasoning_content", text()),
            ("reasoning", text()),
            ("content", text()),
            ("refusal", text()),
            ("role", text()),
        ]);
        let choice = object(vec![
            ("index", usually((0u64..3).prop_map(Value::from))),
            ("delta", usually(delta)),
            ("finish_reason", text()),
        ]);
        let count = || usually((0u64..100).prop_map(Value::from));
        let usage = object(vec![
            ("prompt_tokens", count()),
            ("completion_tokens", count()),
        ]);
        object(vec![
            (
                "choices",
                usually(prop::collection::vec(usually(choice), 0..3).prop_map(Value::Array)),
            ),
            ("usage", usually(usage)),
            (
                "error",
                prop_oneof![3 => Just(Value::Null), 1 => leaf()].boxed(),
            ),
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn typed_and_value_readings_agree(v in chunk()) {
            let data = v.to_string();
            if let Some(typed) = typed::parts(&data) {
                prop_assert!(v.is_object(), "typed path took a non-object: {}", data);
                prop_assert!(v.get("error").is_none_or(Value::is_null));
                prop_assert_eq!(typed, by_value(&data), "{}", data);
            }
        }
    }
}
