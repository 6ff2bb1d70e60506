//! Conformance of the Chat Completions protocol (SPEC §6.1) against OpenAI's published OpenAPI
//! schemas: every request body `openai::build_request` produces validates against
//! `CreateChatCompletionRequest`, and the stream chunks the decoder is tested on validate
//! against `CreateChatCompletionStreamResponse`.
//!
//! The schemas are extracted from openai/openai-openapi (commit f85dbe2 of 2026-08-21, MIT) into
//! `tests/fixtures/openai/` by `tests/fixtures/openai/extract.py` (see the README there).

use jsonschema::Validator;
use llxprt::profile::settings::{ReasoningEffort, Settings, StripFromContext};
use llxprt::provider::Protocol;
use llxprt::shell::protocol::{
    Chunk, Conversation, Credential, Role, SseEvent, StoredReasoning, StreamDecoder, Target, Turn,
    Usage, openai,
};
use serde_json::{Map, Value, json};

const REQUEST_SCHEMA: &str =
    include_str!("fixtures/openai/create_chat_completion_request.schema.json");
const CHUNK_SCHEMA: &str =
    include_str!("fixtures/openai/create_chat_completion_stream_response.schema.json");

fn validator(text: &str) -> Validator {
    let schema: Value = serde_json::from_str(text).expect("fixture schema is JSON");
    jsonschema::draft202012::options()
        .build(&schema)
        .expect("fixture schema compiles")
}

/// Panics with every validation error when `instance` does not conform.
fn assert_valid(v: &Validator, instance: &Value, what: &str) {
    let errors: Vec<String> = v
        .iter_errors(instance)
        .map(|e| format!("  {e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not conform:\n{}\n{instance:#}",
        errors.join("\n")
    );
}

fn turns() -> Vec<Turn> {
    vec![
        Turn {
            role: Role::User,
            text: "What is 2+2?".to_owned(),
            reasoning: None,
        },
        Turn {
            role: Role::Assistant,
            text: "4".to_owned(),
            reasoning: Some(StoredReasoning {
                provider: "openai".to_owned(),
                text: "simple sum".to_owned(),
                signature: None,
            }),
        },
        Turn {
            role: Role::User,
            text: "And 3+3?".to_owned(),
            reasoning: None,
        },
    ]
}

struct Case {
    name: &'static str,
    params: Value,
    settings: Settings,
    system: Option<&'static str>,
    prefill: Option<&'static str>,
    stream: bool,
}

fn body_of(case: &Case) -> Value {
    let params: Map<String, Value> = case.params.as_object().cloned().unwrap_or_default();
    let turns = turns();
    let t = Target {
        protocol: Protocol::ChatCompletions,
        provider: "openai",
        base_url: "https://api.openai.com/v1",
        model: "gpt-4o-mini",
        model_params: &params,
        settings: &case.settings,
        credential: Credential::ApiKey("sk-test"),
    };
    let c = Conversation {
        system: case.system,
        turns: &turns,
        prefill: case.prefill,
    };
    openai::build_request(&t, &c, case.stream).body
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "streamed with system, prefill and sampling params",
            params: json!({"temperature": 0.7, "max_tokens": 256, "top_p": 0.9, "stop": "END", "seed": 42}),
            settings: Settings::default(),
            system: Some("You are terse."),
            prefill: Some("The answer is"),
            stream: true,
        },
        Case {
            name: "not streamed, stop list, max_completion_tokens",
            params: json!({"max_completion_tokens": 1000, "stop": ["\n\n", "END"], "temperature": 0}),
            settings: Settings::default(),
            system: None,
            prefill: None,
            stream: false,
        },
        Case {
            name: "reasoning effort",
            params: json!({}),
            settings: Settings {
                reasoning_effort: Some(ReasoningEffort::High),
                reasoning_include_in_context: Some(true),
                reasoning_strip_from_context: Some(StripFromContext::None),
                ..Settings::default()
            },
            system: Some("Think."),
            prefill: None,
            stream: true,
        },
        Case {
            name: "stream-usage off",
            params: json!({"frequency_penalty": 0.5, "presence_penalty": -0.5}),
            settings: Settings {
                stream_usage: Some(false),
                ..Settings::default()
            },
            system: None,
            prefill: None,
            stream: true,
        },
        Case {
            name: "user stream_options kept and extended",
            params: json!({"stream_options": {"include_obfuscation": false}, "reasoning_effort": "low"}),
            settings: Settings {
                reasoning_effort: Some(ReasoningEffort::Medium),
                ..Settings::default()
            },
            system: Some("s"),
            prefill: Some("p"),
            stream: true,
        },
    ]
}

#[test]
fn every_request_body_conforms_to_create_chat_completion_request() {
    let v = validator(REQUEST_SCHEMA);
    for case in cases() {
        let body = body_of(&case);
        assert_valid(&v, &body, case.name);
    }
}

#[test]
fn the_bodies_carry_what_each_case_asks_for() {
    let bodies: Vec<Value> = cases().iter().map(body_of).collect();
    assert_eq!(bodies[0]["stream_options"], json!({"include_usage": true}));
    assert_eq!(bodies[0]["messages"][0]["role"], "system");
    assert_eq!(
        bodies[0]["messages"][4],
        json!({"role": "assistant", "content": "The answer is"})
    );
    assert!(bodies[1].get("stream").is_none());
    assert_eq!(bodies[2]["reasoning_effort"], "high");
    assert!(bodies[3].get("stream_options").is_none());
    assert_eq!(
        bodies[4]["stream_options"],
        json!({"include_obfuscation": false, "include_usage": true})
    );
    assert_eq!(bodies[4]["reasoning_effort"], "low");
}

#[test]
fn the_schema_rejects_what_the_api_rejects() {
    // A control: the extracted schema is not vacuous.
    let v = validator(REQUEST_SCHEMA);
    let bad = [
        json!({"model": "m", "messages": []}),
        json!({"model": "m", "messages": [{"role": "robot", "content": "x"}]}),
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 3}),
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "reasoning_effort": "extreme"}),
        json!({"messages": [{"role": "user", "content": "x"}]}),
    ];
    for body in bad {
        assert!(!v.is_valid(&body), "accepted {body}");
    }
    // `nullable` became JSON Schema: a null `max_completion_tokens` is allowed, a string is not.
    let base = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
    let mut nullable = base.clone();
    nullable["max_completion_tokens"] = Value::Null;
    assert!(v.is_valid(&nullable));
    let mut wrong = base;
    wrong["max_completion_tokens"] = json!("10");
    assert!(!v.is_valid(&wrong));
}

/// Chunks as OpenAI sends them (with every required field), and what the decoder makes of them.
fn sample_chunks() -> Vec<Value> {
    let head = |choices: Value, usage: Value| {
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1_760_000_000,
               "model": "gpt-4o-mini", "system_fingerprint": "fp_1", "service_tier": "default",
               "choices": choices, "usage": usage})
    };
    vec![
        head(
            json!([{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": null}, "logprobs": null, "finish_reason": null}]),
            Value::Null,
        ),
        head(
            json!([{"index": 0, "delta": {"content": "6"}, "logprobs": null, "finish_reason": null}]),
            Value::Null,
        ),
        head(
            json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"}]),
            Value::Null,
        ),
        head(
            json!([]),
            json!({"prompt_tokens": 20, "completion_tokens": 1, "total_tokens": 21,
                   "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                   "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                       "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}),
        ),
        head(
            json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "content_filter"}]),
            Value::Null,
        ),
    ]
}

/// What the decoder makes of one `data:` event.
fn decode(decoder: &mut openai::Decoder, data: &str) -> Vec<Chunk> {
    decoder
        .on_event(&SseEvent {
            event: None,
            data: data.to_owned(),
        })
        .expect("decodes")
}

#[test]
fn sample_stream_chunks_conform_and_decode() {
    let v = validator(CHUNK_SCHEMA);
    let mut decoder = openai::Decoder::default();
    let mut got = Vec::new();
    for (i, chunk) in sample_chunks().iter().enumerate() {
        assert_valid(&v, chunk, &format!("chunk {i}"));
        got.extend(decode(&mut decoder, &chunk.to_string()));
    }
    got.extend(decode(&mut decoder, "[DONE]"));
    assert_eq!(
        got,
        vec![
            Chunk::Text("6".to_owned()),
            Chunk::Finish("stop".to_owned()),
            Chunk::Usage(Usage {
                prompt_tokens: 20,
                completion_tokens: 1
            }),
        ]
    );
    // The content_filter chunk alone is a refusal.
    let last = sample_chunks().pop().expect("five samples");
    let chunks = decode(&mut openai::Decoder::default(), &last.to_string());
    assert_eq!(chunks, vec![Chunk::Refusal("content_filter".to_owned())]);
}

/// The chunks `serve` writes (SPEC §8.3: Chat Completions chunk format whatever the backend's
/// protocol) conform too, and llxprt's own decoder reads back what they carry.
#[test]
fn serve_stream_chunks_conform_and_decode() {
    use llxprt::serve::wire::{self, Delta};
    let v = validator(CHUNK_SCHEMA);
    let (id, created, model) = ("chatcmpl-1f", 1_760_000_000, "gpt-4o-mini");
    let text = |role, content| Delta {
        role,
        content: Some(content),
        reasoning_content: None,
    };
    let thinking = Delta {
        role: Some("assistant"),
        content: Some(""),
        reasoning_content: Some("Let me \"see\"\n"),
    };
    let usage = Usage {
        prompt_tokens: 20,
        completion_tokens: 2,
    };
    let chunks = [
        serde_json::to_value(wire::chunk(id, created, model, &thinking, None)),
        serde_json::to_value(wire::chunk(id, created, model, &text(None, "6 é"), None)),
        serde_json::to_value(wire::chunk(
            id,
            created,
            model,
            &Delta::default(),
            Some("stop"),
        )),
        serde_json::to_value(wire::usage_chunk(id, created, model, usage)),
    ]
    .map(|c| c.expect("a chunk serialises"));
    let mut decoder = openai::Decoder::default();
    let mut got = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        assert_valid(&v, chunk, &format!("serve chunk {i}"));
        assert_eq!(
            (&chunk["id"], &chunk["object"], &chunk["model"]),
            (&json!(id), &json!("chat.completion.chunk"), &json!(model))
        );
        got.extend(decode(&mut decoder, &chunk.to_string()));
    }
    assert_eq!(
        got,
        vec![
            Chunk::Reasoning("Let me \"see\"\n".to_owned()),
            Chunk::Text("6 é".to_owned()),
            Chunk::Finish("stop".to_owned()),
            Chunk::Usage(usage),
        ]
    );
    assert_eq!(
        chunks[3]["choices"],
        json!([]),
        "the usage chunk has no choice"
    );
    assert_eq!(chunks[3]["usage"]["total_tokens"], 22);
    assert_eq!(chunks[2]["choices"][0]["delta"], json!({}));
    assert_eq!(chunks[2]["choices"][0]["logprobs"], Value::Null);
    // A first text chunk carries the role.
    let first = serde_json::to_value(wire::chunk(
        id,
        created,
        model,
        &text(Some("assistant"), "Hi"),
        None,
    ))
    .expect("a chunk serialises");
    assert_valid(&v, &first, "first text chunk");
    assert_eq!(
        first["choices"][0]["delta"],
        json!({"role": "assistant", "content": "Hi"})
    );
}
