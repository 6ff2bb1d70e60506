//! Reasoning shown to the user (SPEC §3.1 `reasoning.includeInResponse`, §8.1, §8.3) end to
//! end: the real binaries against loopback servers that reason first (Chat Completions
//! `reasoning_content`/`reasoning` deltas, Anthropic `thinking` blocks, Gemini `thought`
//! parts). `chat` shows reasoning on stderr and keeps stdout exactly the answer; `serve` sends
//! it as `reasoning_content`; with the setting off, nothing of it is shown or sent.

mod support;

use serde_json::{Value, json};
use support::Cli;
use support::serve::{Serve, client, events, post, streamed_text};
use support::server::{
    Reply, Server, SseOut, anthropic_thinking_body, anthropic_thinking_stream,
    openai_completion_body, openai_reasoning_stream,
};

const KEY: &str = "sk-test-reasoning-0123456789abcdef";

const THOUGHT: &str = "Let me think.";
const ANSWER: &str = "The answer is 42.";

/// A model profile `name` for `provider` at `base` (model id `<name>-model`), with a keyfile
/// and these extra settings.
#[expect(
    clippy::needless_pass_by_value,
    reason = "call sites read best with an inline json! value"
)]
fn model(cli: &Cli, name: &str, provider: &str, base: &str, extra: Value) {
    cli.write_profile_json(name, &cli.keyed_model(name, provider, base, KEY, &extra));
}

fn openai_base(s: &Server) -> String {
    format!("{}/v1", s.url())
}

/// The base URL a `provider` profile gives for server `s` (Chat Completions paths carry `/v1`).
fn base_for(provider: &str, s: &Server) -> String {
    if provider == "openai" {
        openai_base(s)
    } else {
        s.url()
    }
}

/// A server answering `reply`, and a home with one `provider` model profile `a` on it with
/// `settings`.
fn one_model(provider: &str, reply: Reply, settings: Value) -> (Server, Cli) {
    let s = Server::start(vec![reply]);
    let cli = Cli::new();
    model(&cli, "a", provider, &base_for(provider, &s), settings);
    (s, cli)
}

/// `delta.reasoning_content` pieces, then the answer in two pieces.
fn openai_reasoning() -> Reply {
    Reply::sse(openai_reasoning_stream(
        "reasoning_content",
        &["Let me ", "think."],
        &["The answer", " is 42."],
    ))
}

fn anthropic_thinking() -> Reply {
    Reply::sse(anthropic_thinking_stream(
        &["Let me ", "think."],
        &["The answer", " is 42."],
    ))
}

/// A Gemini stream: two `thought: true` parts, then the answer, the last with `STOP`.
fn gemini_thoughts() -> Reply {
    let part = |text: &str, thought: bool, finish: bool| {
        let mut p = json!({"text": text});
        if thought {
            p["thought"] = json!(true);
        }
        let mut c = json!({"content": {"role": "model", "parts": [p]}, "index": 0});
        let mut chunk = json!({"modelVersion": "gemini-test"});
        if finish {
            c["finishReason"] = json!("STOP");
            chunk["usageMetadata"] =
                json!({"promptTokenCount": 10, "candidatesTokenCount": 4, "totalTokenCount": 14});
        }
        chunk["candidates"] = json!([c]);
        SseOut::data(chunk)
    };
    Reply::sse(vec![
        part("Let me ", true, false),
        part("think.", true, false),
        part("The answer", false, false),
        part(" is 42.", false, true),
    ])
}

/// `llxprt chat --profile a [EXTRA…] hi`: (exit code, stdout, stderr).
fn chat(cli: &Cli, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["chat", "--profile", "a"];
    args.extend_from_slice(extra);
    args.push("hi");
    let out = cli.run(&args);
    (out.code, out.stdout, out.stderr)
}

/// Asserts a one-shot that showed the reasoning: stdout exactly the answer, stderr the
/// reasoning on a line of its own before the `served by` line.
fn assert_shown(code: i32, stdout: &str, stderr: &str, case: &str) {
    assert_eq!(code, 0, "{case}: {stderr}");
    assert_eq!(
        stdout,
        format!("{ANSWER}\n"),
        "{case}: stdout is the answer"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    let at = lines
        .iter()
        .position(|l| *l == THOUGHT)
        .unwrap_or_else(|| panic!("{case}: the reasoning on its own line: {stderr:?}"));
    assert!(
        lines[at + 1..]
            .iter()
            .any(|l| l.starts_with("served by a/")),
        "{case}: the served-by line follows on a line of its own: {stderr:?}"
    );
}

#[test]
fn one_shot_shows_reasoning_on_stderr_streamed_and_buffered_for_every_protocol() {
    for (provider, reply) in [
        ("openai", openai_reasoning()),
        ("anthropic", anthropic_thinking()),
        ("gemini", gemini_thoughts()),
    ] {
        let (_s, cli) = one_model(provider, reply, json!({"reasoning.enabled": true}));
        // A piped stdout buffers by default; restart streams as on a terminal.
        for (mode, extra) in [
            ("streamed", &["--set", "mid_stream=restart"][..]),
            ("buffered", &[][..]),
        ] {
            let (code, stdout, stderr) = chat(&cli, extra);
            assert_shown(code, &stdout, &stderr, &format!("{provider} {mode}"));
        }
    }
}

#[test]
fn a_delta_reasoning_field_and_a_complete_body_show_reasoning_too() {
    // Servers that name the delta field `reasoning` (SPEC §6.1: read both).
    let s = Server::start(vec![Reply::sse(openai_reasoning_stream(
        "reasoning",
        &["Let me ", "think."],
        &["The answer", " is 42."],
    ))]);
    let cli = Cli::new();
    model(&cli, "a", "openai", &openai_base(&s), json!({}));
    let (code, stdout, stderr) = chat(&cli, &["--set", "mid_stream=restart"]);
    assert_shown(code, &stdout, &stderr, "delta.reasoning");
    // A non-streamed answer: the reasoning once, just before the answer.
    let s = Server::start(vec![Reply::json(
        200,
        openai_completion_body(ANSWER, Some(THOUGHT)),
    )]);
    let cli = Cli::new();
    model(
        &cli,
        "a",
        "openai",
        &openai_base(&s),
        json!({"streaming": "disabled"}),
    );
    let (code, stdout, stderr) = chat(&cli, &[]);
    assert_shown(code, &stdout, &stderr, "non-streamed");
}

#[test]
fn a_restart_shows_each_attempts_reasoning_on_lines_of_its_own() {
    // Streamed for real: the first attempt's reasoning and first text piece are shown before
    // the cut; the notice and the new attempt's reasoning each start on a fresh line.
    let s = Server::start(vec![
        Reply::cut_after(3, openai_reasoning()),
        openai_reasoning(),
    ]);
    let cli = Cli::new();
    model(&cli, "a", "openai", &openai_base(&s), json!({}));
    let (code, stdout, stderr) = chat(&cli, &["--set", "mid_stream=restart"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, format!("The answer\n{ANSWER}\n"));
    // The live note of the retry (SPEC §8.1) comes before the restart's notice; the line
    // break that ends the open answer line before the note goes to stderr too.
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.is_empty()).take(4).collect();
    assert_eq!(lines[0], THOUGHT, "{stderr}");
    assert_eq!(lines[1], "a interrupted → retry 1/1", "{stderr}");
    assert!(lines[2].starts_with("[interrupted after "), "{stderr}");
    assert_eq!(lines[3], THOUGHT, "{stderr}");
}

#[test]
fn a_break_while_only_reasoning_was_shown_retries_afresh_with_a_notice_in_every_mode() {
    // Cut after the two reasoning pieces: no answer text began, so the request is retried like
    // any failure before output (SPEC §5.8) whatever `mid_stream` says; the user saw the first
    // attempt think, so a notice separates it from the second.
    for mode in ["restart", "continue", "error"] {
        let s = Server::start(vec![
            Reply::cut_after(2, openai_reasoning()),
            openai_reasoning(),
        ]);
        let cli = Cli::new();
        model(
            &cli,
            "a",
            "openai",
            &openai_base(&s),
            json!({"failover_retry_count": 1}),
        );
        let set = format!("mid_stream={mode}");
        let (code, stdout, stderr) = chat(&cli, &["--set", &set]);
        assert_eq!(code, 0, "{mode}: {stderr}");
        assert_eq!(stdout, format!("{ANSWER}\n"), "{mode}");
        let lines: Vec<&str> = stderr.lines().take(4).collect();
        assert_eq!(lines[0], THOUGHT, "{mode}: {stderr}");
        assert_eq!(lines[1], "a network → retry 1/1", "{mode}: {stderr}");
        assert_eq!(
            lines[2], "[interrupted before any answer text on a; restarting on a]",
            "{mode}: {stderr}"
        );
        assert_eq!(lines[3], THOUGHT, "{mode}: {stderr}");
        assert_eq!(s.requests().len(), 2, "{mode}");
        let last = s.requests()[1].body["messages"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert_eq!(last["role"], "user", "{mode}: no prefill");
    }
}

#[test]
fn json_carries_the_reasoning_and_prints_none_of_it() {
    let s = Server::start(vec![openai_reasoning()]);
    let cli = Cli::new();
    model(&cli, "a", "openai", &openai_base(&s), json!({}));
    let (code, stdout, stderr) = chat(&cli, &["--json"]);
    assert_eq!(code, 0, "{stderr}");
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(
        (&v["answer"], &v["reasoning"]),
        (&json!(ANSWER), &json!(THOUGHT))
    );
    assert!(!stderr.contains("think"), "{stderr}");
}

#[test]
fn include_in_response_false_shows_no_reasoning_and_json_says_null() {
    for (provider, reply) in [
        ("openai", openai_reasoning()),
        ("anthropic", anthropic_thinking()),
    ] {
        // Kept for the history all the same (SPEC §5.8): hiding is about the user only.
        let (_s, cli) = one_model(
            provider,
            reply,
            json!({"reasoning.enabled": true, "reasoning.includeInResponse": false,
                   "reasoning.includeInContext": true}),
        );
        for extra in [&["--set", "mid_stream=restart"][..], &[][..]] {
            let (code, stdout, stderr) = chat(&cli, extra);
            assert_eq!(code, 0, "{provider} {extra:?}: {stderr}");
            assert_eq!(stdout, format!("{ANSWER}\n"), "{provider} {extra:?}");
            assert!(!stderr.contains("think"), "{provider} {extra:?}: {stderr}");
        }
        let (code, stdout, stderr) = chat(&cli, &["--json"]);
        assert_eq!(code, 0, "{provider}: {stderr}");
        let v: Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(v["answer"], ANSWER, "{provider}");
        assert_eq!(v["reasoning"], Value::Null, "{provider}: hidden reasoning");
        assert!(!stdout.contains("think"), "{provider}: {stdout}");
    }
}

/// One `serve` over four profiles: `oa`/`an` (openai / anthropic thinking) and the same with
/// `reasoning.includeInResponse: false` (`oa-hidden`/`an-hidden`).
fn serve_setup(cli: &Cli, oa: &Server, an: &Server) -> Serve {
    for (suffix, show) in [("", true), ("-hidden", false)] {
        model(
            cli,
            &format!("oa{suffix}"),
            "openai",
            &openai_base(oa),
            json!({"reasoning.includeInResponse": show}),
        );
        model(
            cli,
            &format!("an{suffix}"),
            "anthropic",
            &an.url(),
            json!({"reasoning.enabled": true, "reasoning.includeInResponse": show}),
        );
    }
    Serve::start(cli, &["--profile", "oa"])
}

fn ask(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

/// Every `delta.reasoning_content` of a stream, joined; and whether each came before the first
/// content delta.
fn streamed_reasoning(body: &str) -> (String, bool) {
    let ev = events(body);
    let first_text = ev
        .iter()
        .position(|e| {
            e["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|c| !c.is_empty())
        })
        .unwrap_or(ev.len());
    let at: Vec<usize> = ev
        .iter()
        .enumerate()
        .filter(|(_, e)| e["choices"][0]["delta"]["reasoning_content"].is_string())
        .map(|(i, _)| i)
        .collect();
    let text = at
        .iter()
        .filter_map(|&i| ev[i]["choices"][0]["delta"]["reasoning_content"].as_str())
        .collect();
    (text, at.iter().all(|&i| i < first_text))
}

#[test]
fn serve_sends_reasoning_content_streamed_and_whole_unless_hidden() {
    let oa = Server::start(vec![openai_reasoning()]);
    let an = Server::start(vec![anthropic_thinking()]);
    let cli = Cli::new();
    let serve = serve_setup(&cli, &oa, &an);
    let agent = client();
    for name in ["oa", "an", "oa-hidden", "an-hidden"] {
        let shown = !name.ends_with("-hidden");
        let r = post(&agent, &serve.chat_url(), &ask(name, true));
        assert_eq!(r.status, 200, "{name}: {}", r.body);
        assert_eq!(streamed_text(&r.body), ANSWER, "{name}");
        let ev = events(&r.body);
        assert_eq!(ev.last(), Some(&json!("[DONE]")), "{name}");
        assert_eq!(ev[0]["choices"][0]["delta"]["role"], "assistant", "{name}");
        let (reasoning, before) = streamed_reasoning(&r.body);
        if shown {
            assert_eq!(reasoning, THOUGHT, "{name}: {}", r.body);
            assert!(before, "{name}: reasoning before the answer: {}", r.body);
        } else {
            assert!(!r.body.contains("reasoning"), "{name}: {}", r.body);
            assert!(!r.body.contains("think"), "{name}: {}", r.body);
        }
        let r = post(&agent, &serve.chat_url(), &ask(name, false));
        assert_eq!(r.status, 200, "{name}: {}", r.body);
        let m = &r.json()["choices"][0]["message"];
        assert_eq!(m["content"], ANSWER, "{name}");
        if shown {
            assert_eq!(m["reasoning_content"], THOUGHT, "{name}: {m}");
        } else {
            assert!(m.get("reasoning_content").is_none(), "{name}: {m}");
            assert!(!r.body.contains("think"), "{name}: {}", r.body);
        }
    }
}

#[test]
fn serve_sends_a_whole_upstream_answers_reasoning_once() {
    // The backend answers whole (streaming disabled): a streaming client gets the reasoning
    // as one chunk before the answer; a plain one gets it in the message.
    let oa = Server::start(vec![Reply::json(
        200,
        openai_completion_body(ANSWER, Some(THOUGHT)),
    )]);
    let an = Server::start(vec![Reply::json(
        200,
        anthropic_thinking_body(THOUGHT, ANSWER),
    )]);
    let cli = Cli::new();
    for (name, provider, base, show) in [
        ("oa", "openai", openai_base(&oa), true),
        ("an", "anthropic", an.url(), true),
        ("oa-hidden", "openai", openai_base(&oa), false),
        ("an-hidden", "anthropic", an.url(), false),
    ] {
        model(
            &cli,
            name,
            provider,
            &base,
            json!({"streaming": "disabled", "reasoning.includeInResponse": show}),
        );
    }
    let serve = Serve::start(&cli, &["--profile", "oa"]);
    let agent = client();
    for name in ["oa", "an", "oa-hidden", "an-hidden"] {
        let shown = !name.ends_with("-hidden");
        let r = post(&agent, &serve.chat_url(), &ask(name, true));
        assert_eq!(r.status, 200, "{name}: {}", r.body);
        assert_eq!(streamed_text(&r.body), ANSWER, "{name}");
        let (reasoning, before) = streamed_reasoning(&r.body);
        assert_eq!(reasoning, if shown { THOUGHT } else { "" }, "{name}");
        assert!(before, "{name}: {}", r.body);
        let r = post(&agent, &serve.chat_url(), &ask(name, false));
        let m = &r.json()["choices"][0]["message"];
        assert_eq!(m["content"], ANSWER, "{name}");
        assert_eq!(
            m.get("reasoning_content"),
            shown.then(|| json!(THOUGHT)).as_ref(),
            "{name}: {m}"
        );
    }
}

#[test]
fn serve_pass_through_carries_one_reasoning_content_or_none() {
    // A tools request is relayed from the upstream's message (SPEC §8.3 pass-through); the
    // upstream names its field `reasoning`, which the client receives once, as
    // `reasoning_content` — and not at all when hidden.
    let call = json!({"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{}"}});
    let upstream = json!({"id": "up", "object": "chat.completion", "model": "a-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
            "reasoning": THOUGHT, "tool_calls": [call]}, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}});
    let oa = Server::start(vec![Reply::json(200, upstream)]);
    let cli = Cli::new();
    for (name, show) in [("oa", true), ("oa-hidden", false)] {
        model(
            &cli,
            name,
            "openai",
            &openai_base(&oa),
            json!({"reasoning.includeInResponse": show}),
        );
    }
    let serve = Serve::start(&cli, &["--profile", "oa"]);
    let agent = client();
    let tools = json!([{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]);
    for (name, show) in [("oa", true), ("oa-hidden", false)] {
        for stream in [false, true] {
            let case = format!("{name} stream={stream}");
            let body = json!({"model": name, "stream": stream, "tools": tools,
                "messages": [{"role": "user", "content": "weather?"}]});
            let r = post(&agent, &serve.chat_url(), &body);
            assert_eq!(r.status, 200, "{case}: {}", r.body);
            let m = if stream {
                events(&r.body)[0]["choices"][0]["delta"].clone()
            } else {
                r.json()["choices"][0]["message"].clone()
            };
            assert_eq!(m["tool_calls"][0]["id"], "call_1", "{case}: {m}");
            assert!(m.get("reasoning").is_none(), "{case}: {m}");
            if show {
                assert_eq!(m["reasoning_content"], THOUGHT, "{case}: {m}");
                assert_eq!(r.body.matches(THOUGHT).count(), 1, "{case}: {}", r.body);
            } else {
                assert!(!r.body.contains("think"), "{case}: {}", r.body);
            }
        }
    }
}
