//! Conformance of the Anthropic Messages and Gemini protocols (SPEC §6.1) against the providers'
//! published definitions, as `openai_conformance` does for Chat Completions: every request body
//! `anthropic::build_request` and `gemini::build_request` produce validates against the request
//! schema, and the stream events and bodies of the test server's emulators (`tests/support/
//! server.rs`, used by every end-to-end test) validate against the reply and stream schemas.
//!
//! The schemas are hand transcriptions, in `tests/specs/`, of Anthropic's official TypeScript
//! SDK types (MIT) and Google's `generativelanguage/v1beta` protocol buffers (Apache-2.0); see
//! `tests/specs/README.md` for the sources, commits and transcription rules. Objects are closed,
//! so a misspelled field fails.

mod support;

use jsonschema::Validator;
use llxprt::profile::settings::{Settings, StripFromContext};
use llxprt::provider::Protocol;
use llxprt::shell::protocol::{
    Chunk, Conversation, Credential, Role, SseEvent, StoredReasoning, StreamDecoder, Target, Turn,
    anthropic, gemini,
};
use serde_json::{Map, Value, json};
use support::server::{self, SseOut};

const ANTHROPIC_SCHEMA: &str = include_str!("specs/anthropic-messages.schema.json");
const GEMINI_SCHEMA: &str = include_str!("specs/gemini-v1beta.schema.json");

/// A validator for the definition `root` of a schema document.
fn validator(document: &str, root: &str) -> Validator {
    let mut schema: Value = serde_json::from_str(document).expect("the schema is JSON");
    schema["$ref"] = Value::from(format!("#/$defs/{root}"));
    jsonschema::draft202012::options()
        .build(&schema)
        .expect("the schema compiles")
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

// ---------------------------------------------------------------------------------------------
// Request bodies

fn user(text: &str) -> Turn {
    Turn {
        role: Role::User,
        text: text.to_owned(),
        reasoning: None,
    }
}

/// An assistant turn with stored reasoning from `provider`, signed when `signature` is given.
fn assistant(text: &str, provider: &str, signature: Option<&str>) -> Turn {
    Turn {
        role: Role::Assistant,
        text: text.to_owned(),
        reasoning: Some(StoredReasoning {
            provider: provider.to_owned(),
            text: "Adding the numbers.".to_owned(),
            signature: signature.map(str::to_owned),
        }),
    }
}

/// One conversation and configuration to build a request from.
struct Case {
    name: &'static str,
    params: Value,
    settings: Settings,
    system: Option<&'static str>,
    turns: Vec<Turn>,
    prefill: Option<&'static str>,
    stream: bool,
}

/// Settings that send stored reasoning back (every assistant turn's), with thinking on when
/// `budget` is given.
fn reasoning(budget: Option<u64>) -> Settings {
    Settings {
        reasoning_enabled: Some(budget.is_some()),
        reasoning_budget_tokens: budget,
        reasoning_include_in_context: Some(true),
        reasoning_strip_from_context: Some(StripFromContext::None),
        ..Settings::default()
    }
}

/// The same range of conversations for each protocol; `provider` names whose stored reasoning
/// goes back.
fn cases(provider: &str) -> Vec<Case> {
    let multi_turn = |signature| {
        vec![
            user("What is 2+2?"),
            assistant("4", provider, signature),
            user("And 3+3?"),
        ]
    };
    vec![
        Case {
            name: "plain text",
            params: json!({}),
            settings: Settings::default(),
            system: None,
            turns: vec![user("Hello")],
            prefill: None,
            stream: true,
        },
        Case {
            name: "system prompt, multi-turn, not streamed",
            params: json!({}),
            settings: Settings::default(),
            system: Some("You are terse."),
            turns: multi_turn(None),
            prefill: None,
            stream: false,
        },
        Case {
            name: "reasoning on with a budget, signed reasoning sent back",
            params: json!({}),
            settings: reasoning(Some(2048)),
            system: Some("Think."),
            turns: multi_turn(Some("c2lnbmF0dXJl")),
            prefill: None,
            stream: true,
        },
        Case {
            name: "reasoning on with the default budget, unsigned reasoning",
            params: json!({"temperature": 1}),
            settings: Settings {
                reasoning_enabled: Some(true),
                ..reasoning(None)
            },
            system: None,
            turns: multi_turn(None),
            prefill: None,
            stream: true,
        },
        Case {
            name: "reasoning on, assistant turn with reasoning and no text",
            params: json!({}),
            settings: reasoning(Some(1024)),
            system: None,
            turns: vec![
                user("Think first."),
                assistant("", provider, Some("c2lnbmF0dXJl")),
                user("Go on."),
            ],
            prefill: None,
            stream: true,
        },
        Case {
            name: "modelParams: temperature, max_tokens, top_p, top_k; prefill",
            params: json!({"temperature": 0.2, "max_tokens": 300, "top_p": 0.9, "top_k": 40}),
            settings: Settings::default(),
            system: Some("s"),
            turns: multi_turn(None),
            prefill: Some("The answer is"),
            stream: true,
        },
        Case {
            name: "modelParams: max_completion_tokens",
            params: json!({"max_completion_tokens": 512, "temperature": 0}),
            settings: Settings::default(),
            system: None,
            turns: vec![user("Hi")],
            prefill: None,
            stream: false,
        },
    ]
}

fn build(protocol: Protocol, provider: &str, model: &str, case: &Case) -> Value {
    let params: Map<String, Value> = case.params.as_object().cloned().unwrap_or_default();
    let t = Target {
        protocol,
        provider,
        base_url: "https://api.example.com",
        model,
        model_params: &params,
        settings: &case.settings,
        credential: Credential::ApiKey("k"),
    };
    let c = Conversation {
        system: case.system,
        turns: &case.turns,
        prefill: case.prefill,
    };
    match protocol {
        Protocol::Messages => anthropic::build_request(&t, &c, case.stream).body,
        Protocol::Gemini => gemini::build_request(&t, &c, case.stream).body,
        Protocol::ChatCompletions => unreachable!("see openai_conformance"),
    }
}

fn anthropic_body(case: &Case) -> Value {
    build(Protocol::Messages, "anthropic", "claude-sonnet-4-5", case)
}

fn gemini_body(case: &Case) -> Value {
    build(Protocol::Gemini, "gemini", "gemini-2.5-flash", case)
}

#[test]
fn every_anthropic_request_body_conforms_to_message_create_params() {
    let v = validator(ANTHROPIC_SCHEMA, "MessageCreateParams");
    for case in cases("anthropic") {
        let body = anthropic_body(&case);
        assert_valid(&v, &body, case.name);
        // What the definition says of `thinking.budget_tokens` and JSON Schema cannot: "Must be
        // ≥1024 and less than `max_tokens`".
        if let Some(budget) = body["thinking"]["budget_tokens"].as_u64() {
            let max_tokens = body["max_tokens"].as_u64().expect("max_tokens is a number");
            assert!(
                (1024..max_tokens).contains(&budget),
                "{}: budget_tokens {budget} with max_tokens {max_tokens}",
                case.name
            );
        }
    }
}

#[test]
fn every_gemini_request_body_conforms_to_generate_content_request() {
    let v = validator(GEMINI_SCHEMA, "GenerateContentRequest");
    let mut all = cases("gemini");
    all.push(Case {
        name: "modelParams mapped and merged: stop, penalties, seed, generationConfig, safetySettings",
        params: json!({
            "stop": "END", "presence_penalty": 0.5, "frequency_penalty": -0.5, "seed": 7,
            "max_output_tokens": 100,
            "generationConfig": {"responseMimeType": "text/plain", "candidateCount": 1},
            "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"}],
        }),
        settings: Settings {
            reasoning_budget_tokens: Some(0),
            ..Settings::default()
        },
        system: None,
        turns: vec![user("Hi")],
        prefill: None,
        stream: true,
    });
    for case in all {
        assert_valid(&v, &gemini_body(&case), case.name);
    }
}

#[test]
fn the_bodies_carry_what_each_case_asks_for() {
    // A control that the cases above exercise the builders' branches.
    let a: Vec<Value> = cases("anthropic").iter().map(anthropic_body).collect();
    assert_eq!(
        a[0]["messages"],
        json!([{"role": "user", "content": "Hello"}])
    );
    assert_eq!(a[0]["stream"], true);
    assert!(a[1].get("stream").is_none());
    assert_eq!(a[1]["system"], "You are terse.");
    assert_eq!(
        a[2]["thinking"],
        json!({"type": "enabled", "budget_tokens": 2048})
    );
    assert_eq!(a[2]["max_tokens"], 2048 + 4096);
    assert_eq!(a[2]["messages"][1]["content"][0]["type"], "thinking");
    assert_eq!(a[3]["thinking"]["budget_tokens"], 1024);
    assert_eq!(a[3]["messages"][1]["content"], "4", "unsigned: not sent");
    assert_eq!(
        a[4]["messages"][1]["content"],
        json!([{"type": "thinking", "thinking": "Adding the numbers.", "signature": "c2lnbmF0dXJl"}])
    );
    assert_eq!(
        a[5]["messages"][3],
        json!({"role": "assistant", "content": "The answer is"})
    );
    assert_eq!(
        (&a[5]["max_tokens"], &a[5]["top_k"]),
        (&json!(300), &json!(40))
    );
    assert_eq!(a[6]["max_tokens"], 512);
    assert!(a[6].get("max_completion_tokens").is_none());

    let g: Vec<Value> = cases("gemini").iter().map(gemini_body).collect();
    assert_eq!(
        g[0],
        json!({"contents": [{"role": "user", "parts": [{"text": "Hello"}]}]})
    );
    assert_eq!(
        g[1]["systemInstruction"],
        json!({"parts": [{"text": "You are terse."}]})
    );
    assert_eq!(g[1]["contents"][1]["role"], "model");
    assert_eq!(
        g[2]["generationConfig"]["thinkingConfig"],
        json!({"thinkingBudget": 2048, "includeThoughts": true})
    );
    assert_eq!(
        g[2]["contents"][1]["parts"][0],
        json!({"text": "Adding the numbers.", "thought": true, "thoughtSignature": "c2lnbmF0dXJl"})
    );
    assert_eq!(
        g[3]["generationConfig"]["thinkingConfig"],
        json!({"includeThoughts": true})
    );
    assert_eq!(
        g[5]["generationConfig"],
        json!({"temperature": 0.2, "maxOutputTokens": 300, "topP": 0.9, "topK": 40})
    );
    assert_eq!(
        g[5]["contents"][3],
        json!({"role": "model", "parts": [{"text": "The answer is"}]})
    );
    assert_eq!(g[6]["generationConfig"]["maxOutputTokens"], 512);
}

#[test]
fn the_schemas_reject_what_the_definitions_do_not_allow() {
    // Controls: the transcriptions are not vacuous; misspelled or misplaced fields fail.
    let a = validator(ANTHROPIC_SCHEMA, "MessageCreateParams");
    let ok =
        json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]});
    assert!(a.is_valid(&ok));
    let mut bad = Vec::new();
    for (key, value) in [
        ("max_token", json!(10)),
        ("stop", json!(["x"])),
        ("thinking", json!({"type": "enabled", "budget_token": 1024})),
        ("thinking", json!({"type": "on", "budget_tokens": 1024})),
        ("system", json!([{"type": "text", "txt": "x"}])),
        (
            "messages",
            json!([{"role": "user", "content": [{"type": "thinking", "thinking": "t"}]}]),
        ),
        ("messages", json!([{"role": "robot", "content": "x"}])),
    ] {
        let mut body = ok.clone();
        body[key] = value;
        bad.push(body);
    }
    let mut missing = ok.clone();
    missing.as_object_mut().map(|o| o.remove("max_tokens"));
    bad.push(missing);
    for body in &bad {
        assert!(!a.is_valid(body), "Anthropic schema accepted {body}");
    }

    let g = validator(GEMINI_SCHEMA, "GenerateContentRequest");
    let ok = json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}]});
    assert!(g.is_valid(&ok));
    let mut bad = Vec::new();
    for (key, value) in [
        ("systemInstructions", json!({"parts": [{"text": "x"}]})),
        ("generationConfig", json!({"max_output_tokens": 10})),
        (
            "generationConfig",
            json!({"thinkingConfig": {"thinkingBudjet": 10}}),
        ),
        ("generationConfig", json!({"stopSequences": "END"})),
        (
            "contents",
            json!([{"role": "assistant", "parts": [{"text": "x"}]}]),
        ),
        (
            "contents",
            json!([{"role": "user", "parts": [{"text": "x", "inlineData": {"mimeType": "a/b", "data": ""}}]}]),
        ),
    ] {
        let mut body = ok.clone();
        body[key] = value;
        bad.push(body);
    }
    bad.push(json!({"generationConfig": {}}));
    for body in &bad {
        assert!(!g.is_valid(body), "Gemini schema accepted {body}");
    }
}

// ---------------------------------------------------------------------------------------------
// The test server's emulators

/// The `event:` name and the parsed `data:` of one emitted SSE event.
fn parse_event(out: &SseOut) -> (Option<String>, Value) {
    let mut event = None;
    let mut data = String::new();
    for line in out.text().lines() {
        if let Some(name) = line.strip_prefix("event: ") {
            event = Some(name.to_owned());
        } else if let Some(d) = line.strip_prefix("data: ") {
            data.push_str(d);
        }
    }
    let value = serde_json::from_str(&data).expect("the event's data is JSON");
    (event, value)
}

/// Validates each event of an Anthropic stream (its `event:` name must be its data's `type`)
/// and returns what llxprt's decoder makes of them.
fn check_anthropic_stream(v: &Validator, events: &[SseOut], what: &str) -> Vec<Chunk> {
    let mut decoder = anthropic::Decoder::default();
    let mut chunks = Vec::new();
    for (i, out) in events.iter().enumerate() {
        let (event, data) = parse_event(out);
        assert_valid(v, &data, &format!("{what}, event {i}"));
        assert_eq!(event.as_deref(), data["type"].as_str(), "{what}, event {i}");
        chunks.extend(
            decoder
                .on_event(&SseEvent {
                    event,
                    data: data.to_string(),
                })
                .expect("decodes"),
        );
    }
    chunks
}

#[test]
fn the_anthropic_emulator_streams_conform() {
    let v = validator(ANTHROPIC_SCHEMA, "RawMessageStreamEvent");
    let chunks =
        check_anthropic_stream(&v, &server::anthropic_stream(&["Hel", "lo"], true), "text");
    assert_eq!(
        chunks.last(),
        Some(&Chunk::Finish("end_turn".to_owned())),
        "{chunks:?}"
    );
    check_anthropic_stream(
        &v,
        &server::anthropic_stream(&[], false),
        "empty, unfinished",
    );
    let chunks = check_anthropic_stream(
        &v,
        &server::anthropic_thinking_stream(&["Let me ", "see."], &["4"]),
        "thinking",
    );
    assert!(chunks.contains(&Chunk::Signature("c2lnbmF0dXJl".to_owned())));
    let error = [server::anthropic_stream_error(
        "overloaded_error",
        "Overloaded",
    )];
    let chunks = check_anthropic_stream(&v, &error, "error event");
    assert!(matches!(chunks.as_slice(), [Chunk::Error(e)] if e.status == 529));
}

#[test]
fn the_anthropic_emulator_bodies_conform() {
    let message = validator(ANTHROPIC_SCHEMA, "Message");
    assert_valid(
        &message,
        &server::anthropic_thinking_body("Hmm.", "4"),
        "thinking body",
    );
    let error = validator(ANTHROPIC_SCHEMA, "ErrorResponse");
    for kind in [
        "invalid_request_error",
        "authentication_error",
        "billing_error",
        "permission_error",
        "not_found_error",
        "rate_limit_error",
        "api_error",
        "timeout_error",
        "overloaded_error",
    ] {
        assert_valid(&error, &server::anthropic_error_body(kind, "m"), kind);
    }
}

#[test]
fn the_gemini_emulator_streams_conform() {
    let v = validator(GEMINI_SCHEMA, "GenerateContentResponse");
    for (pieces, finish) in [
        (&["Hel", "lo"][..], true),
        (&["partial"][..], false),
        (&[][..], true),
    ] {
        let mut decoder = gemini::Decoder::default();
        let mut chunks = Vec::new();
        for (i, out) in server::gemini_stream(pieces, finish).iter().enumerate() {
            let (event, data) = parse_event(out);
            assert_eq!(event, None, "Gemini streams have no event names");
            assert_valid(&v, &data, &format!("{pieces:?} {finish}, chunk {i}"));
            chunks.extend(
                decoder
                    .on_event(&SseEvent {
                        event: None,
                        data: data.to_string(),
                    })
                    .expect("decodes"),
            );
        }
        assert_eq!(
            chunks.last() == Some(&Chunk::Finish("STOP".to_owned())),
            finish,
            "{chunks:?}"
        );
    }
}
