//! `llxprt serve` end to end (SPEC §8.3, §5.8, §7): the real binary listening on loopback, a
//! client speaking plain OpenAI HTTP (ureq, proxy off), and loopback fault servers speaking
//! each provider's protocol behind it. Every test asserts what the client receives — a
//! complete answer naming its backend, or a clear error with the right status, never a
//! truncated success.

#![expect(
    clippy::many_single_char_names,
    reason = "upstream servers are named a, b, c, d after the backends they play"
)]

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::Cli;
use support::serve::{Reply as Got, Serve, client, events, get, post, raw, streamed_text};
use support::server::{
    Reply, Server, SseOut, anthropic_error, anthropic_stream, openai_chunk, openai_error,
    openai_stream, refused_url,
};

const KEY: &str = "sk-test-serve-0123456789abcdefghij";

/// A model profile `name` for `provider` at `base` (model id `<name>-model`), with a keyfile.
#[expect(
    clippy::needless_pass_by_value,
    reason = "call sites read best with an inline json! value"
)]
fn model(cli: &Cli, name: &str, provider: &str, base: &str, extra: Value) {
    let mut p = cli.keyed_model(name, provider, base, KEY, &extra);
    p["modelParams"] = json!({"temperature": 1});
    cli.write_profile_json(name, &p);
}

fn openai_base(s: &Server) -> String {
    format!("{}/v1", s.url())
}

fn lb(cli: &Cli, name: &str, policy: &str, backends: &[&str], settings: &Value) {
    cli.write_profile_json(
        name,
        &json!({"version": 1, "type": "loadbalancer", "policy": policy, "backends": backends,
                "ephemeralSettings": settings}),
    );
}

/// serve running `lb`, a failover load balancer with no retries over OpenAI-compatible `a`
/// then `b`, `b` with `b_settings` and `lb` with `lb_settings` added. The `Cli` (its home) is
/// returned first, so a test that binds both drops serve before it.
#[expect(
    clippy::needless_pass_by_value,
    reason = "call sites read best with an inline json! value"
)]
fn serve_failover(a: &Server, b: &Server, b_settings: Value, lb_settings: Value) -> (Cli, Serve) {
    let cli = Cli::new();
    model(&cli, "a", "openai", &openai_base(a), json!({}));
    model(&cli, "b", "openai", &openai_base(b), b_settings);
    let mut settings = json!({"failover_retry_count": 0});
    for (k, v) in lb_settings.as_object().unwrap() {
        settings[k] = v.clone();
    }
    lb(&cli, "lb", "failover", &["a", "b"], &settings);
    let serve = Serve::start(&cli, &["--profile", "lb"]);
    (cli, serve)
}

/// The last message of the `i`th request `upstream` received (a prefill, or the user's turn).
fn last_message(upstream: &Server, i: usize) -> Value {
    upstream.requests()[i].body["messages"]
        .as_array()
        .expect("messages")
        .last()
        .expect("a message")
        .clone()
}

fn ok_stream(text: &[&str]) -> Reply {
    Reply::sse(openai_stream(text, Some("stop"), true, Some((5, 3))))
}

fn ask(stream: bool) -> Value {
    json!({"model": "lb", "stream": stream, "messages": [{"role": "user", "content": "hello?"}]})
}

/// Asserts a complete answer from `backend`, streamed or not.
fn assert_served(r: &Got, stream: bool, backend: &str, answer: &str, case: &str) {
    assert_eq!(r.status, 200, "{case}: {}", r.body);
    assert!(r.complete, "{case}: the body ended cleanly");
    assert_eq!(r.header("x-llxprt-backend"), Some(backend), "{case}");
    assert_eq!(r.header("x-llxprt-bucket"), Some("default"), "{case}");
    if stream {
        let ev = events(&r.body);
        assert_eq!(ev.last(), Some(&json!("[DONE]")), "{case}: {}", r.body);
        assert_eq!(streamed_text(&r.body), answer, "{case}");
        assert_eq!(ev[0]["choices"][0]["delta"]["role"], "assistant", "{case}");
        assert!(ev.iter().all(|e| e.get("error").is_none()), "{case}");
        let finish: Vec<&Value> = ev
            .iter()
            .map(|e| &e["choices"][0]["finish_reason"])
            .filter(|f| !f.is_null())
            .collect();
        assert_eq!(finish, [&json!("stop")], "{case}");
    } else {
        let v = r.json();
        assert_eq!(v["choices"][0]["message"]["content"], answer, "{case}");
        assert_eq!(
            v["model"],
            format!("{backend}-model"),
            "{case}: the backend's own model"
        );
        assert_eq!(v["object"], "chat.completion");
    }
}

/// Asserts an OpenAI-shaped error with this status.
fn assert_error(r: &Got, status: u16, case: &str) -> Value {
    assert_eq!(r.status, status, "{case}: {}", r.body);
    let v = r.json();
    assert!(v["error"]["message"].as_str().is_some(), "{case}: {v}");
    assert!(v["error"]["type"].as_str().is_some(), "{case}: {v}");
    assert!(v["error"]["code"].as_str().is_some(), "{case}: {v}");
    if status == 429 || status == 503 {
        let s: u64 = r
            .header("retry-after")
            .expect("Retry-After")
            .parse()
            .unwrap();
        assert!(s >= 1, "{case}");
    }
    v
}

/// Asserts a stream that began and then broke for good: the partial text, the in-band
/// `stream_interrupted` error last, never `[DONE]`, and an unterminated body.
fn assert_in_band(r: &Got, partial: &str, case: &str) -> Value {
    assert_eq!(r.status, 200, "{case}: {}", r.body);
    let ev = events(&r.body);
    assert_eq!(streamed_text(&r.body), partial, "{case}");
    assert!(!ev.contains(&json!("[DONE]")), "{case}: never [DONE]");
    let last = ev.last().cloned().unwrap_or_default();
    assert_eq!(
        last["error"]["type"], "stream_interrupted",
        "{case}: {}",
        r.body
    );
    assert!(!r.complete, "{case}: the body is left unterminated");
    last
}

#[derive(Clone, Copy, Debug)]
enum Want {
    Served(&'static str, &'static str),
    Status(u16),
    InBand(&'static str),
}

struct Case {
    name: &'static str,
    /// `None`: connection refused.
    a: Option<Reply>,
    provider: &'static str,
    a_settings: Value,
    plain: Want,
    stream: Want,
}

fn case(name: &'static str, a: Reply, plain: Want, stream: Want) -> Case {
    Case {
        name,
        a: Some(a),
        provider: "openai",
        a_settings: json!({}),
        plain,
        stream,
    }
}

fn run_case(c: &Case, stream: bool) {
    let a = c.a.clone().map(|r| Server::start(vec![r]));
    let b = Server::start(vec![ok_stream(&["from ", "b"])]);
    let cli = Cli::new();
    let base = match (&a, c.provider) {
        (Some(s), "openai") => openai_base(s),
        (Some(s), _) => s.url(),
        (None, _) => format!("{}/v1", refused_url()),
    };
    let mut settings = c.a_settings.clone();
    settings["context-limit"] = json!(1000);
    model(&cli, "a", c.provider, &base, settings);
    model(
        &cli,
        "b",
        "openai",
        &openai_base(&b),
        json!({"context-limit": 2000}),
    );
    lb(
        &cli,
        "lb",
        "failover",
        &["a", "b"],
        &json!({"failover_retry_count": 0}),
    );
    let serve = Serve::start(&cli, &["--profile", "lb"]);
    let r = post(&client(), &serve.chat_url(), &ask(stream));
    let label = format!("{} ({})", c.name, if stream { "stream" } else { "plain" });
    match if stream { c.stream } else { c.plain } {
        Want::Served(backend, answer) => assert_served(&r, stream, backend, answer, &label),
        Want::Status(s) => {
            assert_error(&r, s, &label);
            assert!(b.requests().is_empty(), "{label}: no failover");
        }
        Want::InBand(partial) => {
            assert_in_band(&r, partial, &label);
        }
    }
    // One log line per request: profile, backend, bucket, attempts, latency (SPEC §8.3).
    let log = serve.wait_log("latency_ms=");
    assert!(log.contains("profile=lb"), "{label}: {log}");
    assert!(log.contains("attempts="), "{label}: {log}");
    if c.name == "malformed SSE event" {
        assert!(log.contains("malformed_events=1"), "{log}");
    }
    assert!(!log.contains(KEY), "no key in the log");
}

#[test]
fn every_fault_class_streamed_and_not_fails_over_or_answers_with_its_status() {
    let b = Want::Served("b", "from b");
    let partial = ok_stream(&["par", "tial", " more"]);
    let cases = vec![
        case(
            "429 without Retry-After",
            openai_error(429, "rate_limit_exceeded", None, "slow down"),
            b,
            b,
        ),
        case(
            "429 with Retry-After",
            openai_error(429, "rate_limit_exceeded", None, "slow down").header("retry-after", "30"),
            b,
            b,
        ),
        case(
            "402",
            openai_error(402, "billing", None, "pay"),
            Want::Status(429),
            Want::Status(429),
        ),
        case(
            "401",
            openai_error(401, "invalid_api_key", Some("invalid_api_key"), "bad key"),
            Want::Status(401),
            Want::Status(401),
        ),
        case(
            "403",
            openai_error(403, "forbidden", None, "no"),
            Want::Status(403),
            Want::Status(403),
        ),
        case("500", openai_error(500, "server_error", None, "boom"), b, b),
        case("503", openai_error(503, "overloaded", None, "busy"), b, b),
        Case {
            provider: "anthropic",
            ..case(
                "529",
                anthropic_error("overloaded_error", "Overloaded"),
                b,
                b,
            )
        },
        Case {
            a: None,
            ..case("connection refused", Reply::reset(), b, b)
        },
        case("connection reset", Reply::reset(), b, b),
        case(
            "closed before a response",
            Reply::close_before_headers(),
            b,
            b,
        ),
        Case {
            a_settings: json!({"first_byte_timeout_ms": 300}),
            ..case("no response", Reply::no_response(5000), b, b)
        },
        case(
            "stream cut",
            Reply::cut_after(2, partial.clone()),
            b,
            Want::InBand("partial"),
        ),
        Case {
            a_settings: json!({"stream_idle_timeout_ms": 300}),
            ..case(
                "stream stall",
                Reply::stall_after(2, 5000, partial.clone()),
                b,
                Want::InBand("partial"),
            )
        },
        case(
            "malformed SSE event",
            Reply::sse(
                std::iter::once(SseOut::raw("data: {not json\n\n"))
                    .chain(openai_stream(&["fine"], Some("stop"), true, None))
                    .collect(),
            ),
            Want::Served("a", "fine"),
            Want::Served("a", "fine"),
        ),
        case(
            "finish without [DONE]",
            Reply::sse(openai_stream(&["fine"], Some("stop"), false, None)),
            Want::Served("a", "fine"),
            Want::Served("a", "fine"),
        ),
        case(
            "ended without a finish signal",
            Reply::sse(openai_stream(&["par", "tial"], None, false, None)),
            b,
            Want::InBand("partial"),
        ),
        case(
            "400 context_length",
            openai_error(
                400,
                "invalid_request_error",
                Some("context_length_exceeded"),
                "too long",
            ),
            b,
            b,
        ),
        case(
            "400 content filter",
            openai_error(
                400,
                "invalid_request_error",
                Some("content_policy_violation"),
                "refused",
            ),
            Want::Status(400),
            Want::Status(400),
        ),
    ];
    for c in &cases {
        for stream in [false, true] {
            run_case(c, stream);
        }
    }
}

#[test]
fn a_healthy_answer_carries_the_backend_model_usage_and_headers() {
    let a = Server::start(vec![ok_stream(&["Hel", "lo!"])]);
    let cli = Cli::new();
    model(&cli, "a", "openai", &openai_base(&a), json!({}));
    model(&cli, "b", "openai", &refused_url(), json!({}));
    lb(&cli, "lb", "failover", &["a", "b"], &json!({}));
    let serve = Serve::start(&cli, &["--profile", "lb"]);
    let agent = client();
    let r = post(&agent, &serve.chat_url(), &ask(false));
    assert_served(&r, false, "a", "Hello!", "plain");
    let v = r.json();
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8})
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    // llxprt always asks the upstream for usage (SPEC §8.3), and sends the key it holds.
    let up = &a.requests()[0];
    assert_eq!(up.body["stream_options"]["include_usage"], true);
    assert_eq!(
        up.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(up.body["model"], "a-model");
    // Streamed without include_usage: no usage chunk.
    let r = post(&agent, &serve.chat_url(), &ask(true));
    assert_served(&r, true, "a", "Hello!", "stream");
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    assert!(events(&r.body).iter().all(|e| e.get("usage").is_none()));
    assert!(events(&r.body)[..2].iter().all(|e| e["model"] == "a-model"));
    // With include_usage: one usage chunk with empty choices before [DONE].
    let mut body = ask(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = post(&agent, &serve.chat_url(), &body);
    let ev = events(&r.body);
    let usage = &ev[ev.len() - 2];
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["total_tokens"], 8);
    let log = serve.wait_log("stream=true");
    assert!(
        log.contains("profile=lb backend=a bucket=default status=200 attempts=1"),
        "{log}"
    );
}

#[test]
fn failures_of_every_backend_map_to_429_503_and_502() {
    let cli = Cli::new();
    let a = Server::start(vec![
        openai_error(429, "rate_limit_exceeded", None, "slow").header("retry-after", "20"),
    ]);
    let b = Server::start(vec![openai_error(429, "rate_limit_exceeded", None, "slow")]);
    model(&cli, "a", "openai", &openai_base(&a), json!({}));
    model(&cli, "b", "openai", &openai_base(&b), json!({}));
    lb(&cli, "lb", "failover", &["a", "b"], &json!({}));
    let c = Server::start(vec![openai_error(500, "server_error", None, "boom")]);
    let d = Server::start(vec![openai_error(502, "bad_gateway", None, "down")]);
    model(&cli, "c", "openai", &openai_base(&c), json!({}));
    model(&cli, "d", "openai", &openai_base(&d), json!({}));
    lb(
        &cli,
        "broken",
        "failover",
        &["c", "d"],
        &json!({"failover_retry_count": 0, "lb_circuit_breaker_threshold": 1, "lb_circuit_breaker_timeout_ms": 60000}),
    );
    let serve = Serve::start(&cli, &["--profile", "lb"]);
    let agent = client();
    for stream in [false, true] {
        let r = post(&agent, &serve.chat_url(), &ask(stream));
        let v = assert_error(&r, 429, "all rate-limited");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("a/default"),
            "{v}"
        );
    }
    let mut body = ask(false);
    body["model"] = json!("broken");
    let r = post(&agent, &serve.chat_url(), &body);
    let v = assert_error(&r, 502, "all failed");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("c/default: server 500") && msg.contains("d/default: server 502"),
        "{msg}"
    );
    // Both circuits are now open: every backend is skipped (503 with Retry-After).
    body["stream"] = json!(true);
    let r = post(&agent, &serve.chat_url(), &body);
    let v = assert_error(&r, 503, "all skipped");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("circuit open"),
        "{v}"
    );
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((50..=60).contains(&retry), "{retry}");
    assert_eq!(
        c.requests().len() + d.requests().len(),
        2,
        "skipped backends get nothing"
    );
}

#[test]
fn streamed_text_reaches_the_client_before_the_upstream_sends_the_rest() {
    // The upstream holds the rest of its answer back for 3 s: the first piece must reach the
    // client long before that (SPEC §8.3: each event forwarded as it arrives, no buffering).
    let mut events = openai_stream(&["one"], None, false, None);
    events.extend(
        openai_stream(&[" two"], Some("stop"), true, None)
            .into_iter()
            .enumerate()
            .map(|(i, e)| if i == 0 { e.after(3000) } else { e }),
    );
    let a = Server::start(vec![Reply::sse(events)]);
    let cli = Cli::new();
    model(&cli, "a", "openai", &openai_base(&a), json!({}));
    let serve = Serve::start(&cli, &["--profile", "a"]);
    let started = Instant::now();
    let resp = client()
        .post(&serve.chat_url())
        .send_json(ask(true))
        .expect("sent");
    let mut reader = resp.into_body().into_reader();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("\"content\":\"one\"") {
        let n = std::io::Read::read(&mut reader, &mut buf).expect("read");
        assert!(
            n > 0,
            "the stream ended early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    let first = started.elapsed();
    std::io::Read::read_to_end(&mut reader, &mut seen).expect("the rest");
    assert!(
        first < Duration::from_secs(2),
        "the first piece waited {first:?} for the rest"
    );
    assert_eq!(
        streamed_text(&String::from_utf8_lossy(&seen)),
        "one two",
        "then the rest"
    );
}

#[test]
fn mid_stream_continue_forwards_only_the_continuation() {
    let a = Server::start(vec![Reply::cut_after(
        2,
        ok_stream(&["The answer ", "is", " never"]),
    )]);
    let b = Server::start(vec![ok_stream(&[" forty-two."])]);
    let (_cli, serve) = serve_failover(&a, &b, json!({"accepts-prefill": true}), json!({}));
    let r = post(&client(), &serve.chat_url(), &ask(true));
    assert_eq!(r.status, 200);
    assert!(r.complete);
    assert_eq!(streamed_text(&r.body), "The answer is forty-two.");
    assert_eq!(events(&r.body).last(), Some(&json!("[DONE]")));
    // The stream's headers name the backend whose text came first; each chunk its model.
    assert_eq!(r.header("x-llxprt-backend"), Some("a"));
    let models: Vec<String> = events(&r.body)
        .iter()
        .filter(|e| e["choices"][0]["delta"]["content"].is_string())
        .map(|e| e["model"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(models, ["a-model", "a-model", "b-model"]);
    let last = last_message(&b, 0);
    assert_eq!(
        last,
        json!({"role": "assistant", "content": "The answer is"})
    );
    let log = serve.wait_log("latency_ms=");
    assert!(
        log.contains("backend=b") && log.contains("attempts=2"),
        "{log}"
    );
}

#[test]
fn the_whitespace_cut_from_a_prefill_is_delivered_once() {
    // SPEC §5.8: "Trailing whitespace is cut from the prefill and restored in the delivered
    // text". The client already has "The answer is "; b continues "The answer is" with
    // " forty-two.", so the client gets "forty-two." and no doubled space.
    let a = Server::start(vec![Reply::cut_after(
        2,
        ok_stream(&["The answer ", "is ", "never"]),
    )]);
    let b = Server::start(vec![ok_stream(&[" forty", "-two."])]);
    let (_cli, serve) = serve_failover(&a, &b, json!({"accepts-prefill": true}), json!({}));
    let r = post(&client(), &serve.chat_url(), &ask(true));
    assert_eq!(r.status, 200);
    assert!(r.complete);
    assert_eq!(streamed_text(&r.body), "The answer is forty-two.");
    let last = last_message(&b, 0);
    assert_eq!(
        last,
        json!({"role": "assistant", "content": "The answer is"})
    );
}

#[test]
fn a_stream_broken_before_any_text_fails_over_under_the_default_continue() {
    // No output began, so nothing needs a prefill: b (which does not accept one) answers
    // afresh (SPEC §5.8: before any output every failure follows §5.3–5.5).
    let role_only = || SseOut::data(openai_chunk(json!({"role": "assistant"}), None));
    let a = Server::start(vec![
        Reply::cut_after(1, Reply::sse(vec![role_only()])),
        Reply::cut_after(1, Reply::sse(vec![role_only()])),
    ]);
    let b = Server::start(vec![ok_stream(&["Fine."]), ok_stream(&["Fine."])]);
    let (_cli, serve) = serve_failover(&a, &b, json!({}), json!({}));
    for stream in [true, false] {
        let r = post(&client(), &serve.chat_url(), &ask(stream));
        assert_served(&r, stream, "b", "Fine.", "broken before any text");
    }
    for i in 0..b.requests().len() {
        assert_eq!(last_message(&b, i)["role"], "user", "no prefill");
    }
}

#[test]
fn a_target_that_rejects_prefills_ends_the_stream_with_the_original_interruption() {
    for (b_reply, accepts) in [
        (ok_stream(&["never sent"]), false),
        (
            openai_error(400, "invalid_request_error", None, "PREFILL REJECTED"),
            true,
        ),
    ] {
        let a = Server::start(vec![Reply::cut_after(
            2,
            ok_stream(&["The answer ", "is", " never"]),
        )]);
        let b = Server::start(vec![b_reply]);
        let (_cli, serve) = serve_failover(&a, &b, json!({"accepts-prefill": accepts}), json!({}));
        let r = post(&client(), &serve.chat_url(), &ask(true));
        let err = assert_in_band(&r, "The answer is", "prefill rejected");
        let msg = err["error"]["message"].as_str().unwrap();
        assert!(msg.starts_with("stream interrupted after"), "{msg}");
        assert!(msg.contains("from a"), "{msg}");
        let headline = msg.lines().next().unwrap();
        assert!(!headline.contains("PREFILL"), "never the rejection: {msg}");
        assert_eq!(
            b.requests().len(),
            usize::from(accepts),
            "accepts-prefill {accepts}"
        );
    }
}

#[test]
fn mid_stream_buffer_holds_each_attempt_back_until_complete() {
    let a = Server::start(vec![Reply::cut_after(
        2,
        ok_stream(&["Half ", "an", " answer"]),
    )]);
    let b = Server::start(vec![ok_stream(&["The whole ", "answer."])]);
    let (_cli, serve) = serve_failover(&a, &b, json!({}), json!({"mid_stream": "buffer"}));
    let r = post(&client(), &serve.chat_url(), &ask(true));
    assert_served(&r, true, "b", "The whole answer.", "buffer");
    assert!(
        !r.body.contains("Half"),
        "nothing of the broken attempt reached the client"
    );
}

#[test]
fn restart_behaves_as_continue_with_one_warning_at_start_up() {
    let a = Server::start(vec![Reply::cut_after(1, ok_stream(&["Start", " never"]))]);
    let b = Server::start(vec![ok_stream(&[" and end."])]);
    let cli = Cli::new();
    model(&cli, "a", "openai", &openai_base(&a), json!({}));
    model(
        &cli,
        "b",
        "openai",
        &openai_base(&b),
        json!({"accepts-prefill": true}),
    );
    lb(
        &cli,
        "lb",
        "failover",
        &["a", "b"],
        &json!({"failover_retry_count": 0, "mid_stream": "restart"}),
    );
    let serve = Serve::start(&cli, &["--profile", "lb"]);
    let r = post(&client(), &serve.chat_url(), &ask(true));
    assert_eq!(
        streamed_text(&r.body),
        "Start and end.",
        "continued, not restarted"
    );
    let log = serve.log();
    assert_eq!(log.matches("behaves as \"continue\"").count(), 1, "{log}");
}

#[test]
fn security_refusals() {
    let a = Server::start(vec![ok_stream(&["ok"])]);
    let cli = Cli::new();
    model(&cli, "a", "openai", &openai_base(&a), json!({}));
    let serve = Serve::start(&cli, &["--profile", "a"]);
    let body = ask(false).to_string();
    let req = |host: &str, ctype: &str| {
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    // DNS rebinding: a Host that is not a loopback name.
    let (status, text) = raw(
        serve.addr,
        req("evil.example:4000", "application/json").as_bytes(),
    );
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("forbidden_host"), "{text}");
    // A web page's simple cross-origin POST cannot send application/json.
    let (status, text) = raw(serve.addr, req("localhost:4000", "text/plain").as_bytes());
    assert_eq!(status, 415, "{text}");
    // Loopback names and addresses pass.
    for host in ["localhost:4000", "127.0.0.1", "[::1]:4000"] {
        let (status, text) = raw(serve.addr, req(host, "application/json").as_bytes());
        assert_eq!(status, 200, "{host}: {text}");
    }
    // A 9 MiB body: 413, read by a client that writes its whole body first.
    let big = format!("{{\"messages\": \"{}\"}}", "x".repeat(9 * 1024 * 1024));
    let resp = client()
        .post(&serve.chat_url())
        .header("content-type", "application/json")
        .send(big.as_bytes())
        .expect("the refusal is read");
    assert_eq!(resp.status().as_u16(), 413);
    assert!(
        a.requests().len() == 3,
        "refused requests reach no provider"
    );
    // Malformed and oversized heads.
    let (status, _) = raw(serve.addr, b"GARBAGE\r\n\r\n");
    assert_eq!(status, 400);
    let huge = format!(
        "GET /health HTTP/1.1\r\nHost: localhost\r\nX: {}\r\n\r\n",
        "y".repeat(40_000)
    );
    let (status, _) = raw(serve.addr, huge.as_bytes());
    assert_eq!(status, 431);
    let (status, _) = raw(
        serve.addr,
        b"GET /nope HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 404);
    let (status, text) = raw(
        serve.addr,
        b"GET /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 405, "{text}");
    assert!(text.to_ascii_lowercase().contains("allow: post"), "{text}");
}

#[test]
fn listen_and_api_key_rules() {
    let a = Server::start(vec![ok_stream(&["ok"])]);
    let cli = Cli::new();
    model(&cli, "a", "openai", &openai_base(&a), json!({}));
    // A non-loopback --listen without --api-key never binds: usage error.
    let out = cli.run(&["serve", "--profile", "a", "--listen", "0.0.0.0:0"]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr.contains("not a loopback address"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("help: add --api-key"), "{}", out.stderr);
    // An address that cannot be bound: exit 1.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = cli.run(&["serve", "--profile", "a", "--listen", &addr]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stderr.contains("cannot listen on"), "{}", out.stderr);
    // A missing profile: exit 3.
    let out = cli.run(&["serve", "--profile", "nope"]);
    assert_eq!(out.code, 3, "{}", out.all());
    // With --api-key, clients must send it as a bearer token.
    let serve = Serve::start(&cli, &["--profile", "a", "--api-key", "local-secret"]);
    let agent = client();
    let r = post(&agent, &serve.chat_url(), &ask(false));
    assert_error(&r, 401, "no key");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let r = agent
        .post(&serve.chat_url())
        .header("authorization", "Bearer wrong")
        .send_json(ask(false))
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = agent
        .post(&serve.chat_url())
        .header("authorization", "Bearer local-secret")
        .send_json(ask(false))
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(!serve.log().contains("local-secret"));
}

#[test]
fn models_list_every_profile_and_health_follows_the_circuits() {
    let a = Server::start(vec![openai_error(500, "server_error", None, "boom")]);
    let b = Server::start(vec![openai_error(500, "server_error", None, "boom")]);
    let cli = Cli::new();
    model(&cli, "a", "openai", &openai_base(&a), json!({}));
    model(&cli, "b", "openai", &openai_base(&b), json!({}));
    lb(
        &cli,
        "lb",
        "failover",
        &["a", "b"],
        &json!({"failover_retry_count": 0, "lb_circuit_breaker_threshold": 1}),
    );
    cli.write_profile("broken", "{not json");
    let serve = Serve::start(&cli, &["--profile", "lb"]);
    let agent = client();
    let r = get(&agent, &format!("{}/v1/models", serve.url()));
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b", "lb"], "every profile that loads");
    assert_eq!(
        get(&agent, &format!("{}/v1/models/lb", serve.url())).json()["id"],
        "lb"
    );
    assert_eq!(
        get(&agent, &format!("{}/v1/models/zzz", serve.url())).status,
        404
    );
    let h = get(&agent, &format!("{}/health", serve.url()));
    assert_eq!(h.status, 200, "{}", h.body);
    assert_eq!(h.json()["backends"], json!({"a": "closed", "b": "closed"}));
    let r = post(&agent, &serve.chat_url(), &ask(false));
    assert_error(&r, 502, "both fail");
    let h = get(&agent, &format!("{}/health", serve.url()));
    assert_eq!(h.status, 503, "{}", h.body);
    assert_eq!(h.json()["backends"], json!({"a": "open", "b": "open"}));
    assert!(h.header("retry-after").is_some());
}

#[test]
fn model_selects_a_profile_and_sampling_fields_override_model_params() {
    let a = Server::start(vec![ok_stream(&["from a"])]);
    let c = Server::start(vec![Reply::sse(anthropic_stream(&["from ", "c"], true))]);
    let cli = Cli::new();
    model(&cli, "a", "openai", &openai_base(&a), json!({}));
    model(&cli, "c", "anthropic", &c.url(), json!({}));
    lb(&cli, "lb", "failover", &["a", "c"], &json!({}));
    let serve = Serve::start(&cli, &["--profile", "lb"]);
    let agent = client();
    let mut body = json!({"model": "C", "temperature": 0.3, "max_completion_tokens": 50, "stop": "END", "seed": 7,
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]});
    let r = post(&agent, &serve.chat_url(), &body);
    assert_served(&r, false, "c", "from c", "model names c");
    let up = &c.requests()[0].body;
    assert_eq!(up["temperature"], 0.3);
    assert_eq!(up["max_tokens"], 50);
    assert_eq!(up["stop_sequences"], json!(["END"]));
    assert_eq!(up["system"], "be brief");
    assert!(up.get("seed").is_none() && up.get("stop").is_none(), "{up}");
    // An unknown model id runs the --profile one; OpenAI backends get the fields as sent.
    body["model"] = json!("gpt-4o");
    body["user"] = json!("u-1");
    let r = post(&agent, &serve.chat_url(), &body);
    assert_served(&r, false, "a", "from a", "default profile");
    let up = &a.requests()[0].body;
    assert_eq!(
        (
            up["temperature"].clone(),
            up["seed"].clone(),
            up["user"].clone()
        ),
        (json!(0.3), json!(7), json!("u-1"))
    );
    assert_eq!(
        up["messages"][0],
        json!({"role": "system", "content": "be brief"})
    );
    // n > 1 is refused.
    body["n"] = json!(2);
    let r = post(&agent, &serve.chat_url(), &body);
    let v = assert_error(&r, 400, "n");
    assert_eq!(v["error"]["param"], "n");
}

#[test]
fn tools_and_tool_messages_pass_through_to_chat_completions_backends_only() {
    let call = json!({"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}});
    let upstream = json!({"id": "up", "object": "chat.completion", "model": "a-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [call]}, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}});
    let a = Server::start(vec![Reply::json(200, upstream)]);
    let c = Server::start(vec![Reply::sse(anthropic_stream(&["never"], true))]);
    let cli = Cli::new();
    model(&cli, "c", "anthropic", &c.url(), json!({}));
    model(&cli, "a", "openai", &openai_base(&a), json!({}));
    lb(&cli, "lb", "failover", &["c", "a"], &json!({}));
    let serve = Serve::start(&cli, &["--profile", "lb"]);
    let tools = json!([{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]);
    let messages = json!([
        {"role": "user", "content": [{"type": "text", "text": "weather?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_0", "type": "function", "function": {"name": "weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_0", "content": "sunny"}]);
    let agent = client();
    for stream in [false, true] {
        let body = json!({"model": "lb", "stream": stream, "tools": tools, "tool_choice": "auto", "messages": messages});
        let r = post(&agent, &serve.chat_url(), &body);
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.header("x-llxprt-backend"), Some("a"));
        if stream {
            let ev = events(&r.body);
            assert_eq!(
                ev[0]["choices"][0]["delta"]["tool_calls"][0]["function"]["name"],
                "weather"
            );
            assert_eq!(ev[0]["choices"][0]["delta"]["tool_calls"][0]["index"], 0);
            assert_eq!(ev[1]["choices"][0]["finish_reason"], "tool_calls");
            assert_eq!(ev.last(), Some(&json!("[DONE]")));
        } else {
            let v = r.json();
            assert_eq!(v["choices"][0]["message"]["tool_calls"][0], call);
            assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
            assert_eq!(v["usage"]["total_tokens"], 12);
        }
    }
    assert!(c.requests().is_empty(), "the anthropic backend is left out");
    let up = &a.requests()[0].body;
    assert_eq!(up["tools"], tools);
    assert_eq!(up["tool_choice"], "auto");
    assert_eq!(
        up["messages"], messages,
        "messages go as the client sent them"
    );
    let log = serve.log();
    assert!(log.contains("skipped=\"c (anthropic: tools)\""), "{log}");
    // A profile with no Chat Completions backend: 400 naming the field.
    let body = json!({"model": "c", "response_format": {"type": "json_object"}, "messages": [{"role": "user", "content": "x"}]});
    let r = post(&agent, &serve.chat_url(), &body);
    let v = assert_error(&r, 400, "no backend for response_format");
    assert_eq!(v["error"]["param"], "response_format");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("response_format")
    );
}

/// Reads one response with a `Content-Length` body from a kept-alive socket.
fn read_one(s: &mut std::net::TcpStream) -> (u16, String) {
    use std::io::Read;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).unwrap_or(0) == 0 {
            break;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn keep_alive_serves_several_requests_and_a_slow_client_holds_nothing_up() {
    use std::io::Write;
    let a = Server::start(vec![Reply::json(
        200,
        json!({"choices": [{"message": {"role": "assistant", "content": "whole"}, "finish_reason": "stop"}]}),
    )]);
    let cli = Cli::new();
    model(
        &cli,
        "a",
        "openai",
        &openai_base(&a),
        json!({"streaming": "disabled"}),
    );
    let serve = Serve::start(&cli, &["--profile", "a"]);
    // A client that sends half a head and goes silent.
    let mut slow = std::net::TcpStream::connect(serve.addr).unwrap();
    slow.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n")
        .unwrap();
    let started = Instant::now();
    // Meanwhile, three requests on one kept-alive connection.
    let mut s = std::net::TcpStream::connect(serve.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let body = ask(false).to_string();
    for _ in 0..2 {
        let req = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).unwrap();
        let (status, text) = read_one(&mut s);
        assert_eq!(status, 200, "{text}");
        assert!(text.contains("whole"), "{text}");
    }
    s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    assert_eq!(read_one(&mut s).0, 200);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the slow client held nothing up"
    );
    // The slow client is answered 408 once its head is overdue, and closed.
    let (status, text) = {
        use std::io::Read;
        slow.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut out = String::new();
        let _ = slow.read_to_string(&mut out);
        (
            out.split_whitespace()
                .nth(1)
                .unwrap_or("0")
                .parse::<u16>()
                .unwrap(),
            out,
        )
    };
    assert_eq!(status, 408, "{text}");
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[test]
fn a_second_ctrl_c_ends_serve_at_once_with_130() {
    // Ten seconds of answer: only a second Ctrl-C can end serve before it is done.
    let slow: Vec<SseOut> = openai_stream(&["one", " two"], Some("stop"), true, None)
        .into_iter()
        .map(|e| e.after(2500))
        .collect();
    let a = Server::start(vec![Reply::sse(slow)]);
    let cli = Cli::new();
    model(&cli, "a", "openai", &openai_base(&a), json!({}));
    let serve = Serve::start(&cli, &["--profile", "a"]);
    let url = serve.chat_url();
    let started = Instant::now();
    let _client = std::thread::spawn(move || post(&client(), &url, &ask(true)));
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.requests().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    serve.interrupt();
    std::thread::sleep(Duration::from_millis(200));
    serve.interrupt();
    let (code, log) = serve.wait();
    assert_eq!(code, 130, "{log}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "it did not wait for the answer"
    );
}

#[test]
fn ctrl_c_lets_the_request_in_flight_finish_then_exits_0() {
    let slow: Vec<SseOut> = openai_stream(&["one", " two", " three"], Some("stop"), true, None)
        .into_iter()
        .map(|e| e.after(300))
        .collect();
    let a = Server::start(vec![Reply::sse(slow)]);
    let cli = Cli::new();
    model(&cli, "a", "openai", &openai_base(&a), json!({}));
    let serve = Serve::start(&cli, &["--profile", "a"]);
    let url = serve.chat_url();
    let client_thread = std::thread::spawn(move || {
        post(
            &client(),
            &url,
            &json!({"stream": true, "messages": [{"role": "user", "content": "count"}]}),
        )
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.requests().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    serve.interrupt();
    let r = client_thread.join().unwrap();
    assert_served(&r, true, "a", "one two three", "in flight at Ctrl-C");
    let (code, log) = serve.wait();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("stopped after 1 requests"), "{log}");
}

#[test]
fn record_writes_requests_in_start_order_and_replays_to_the_same_attempts() {
    let a = Server::start(vec![
        openai_error(503, "overloaded", None, "busy"),
        ok_stream(&["a"]),
        openai_error(429, "rate_limit_exceeded", None, "slow"),
    ]);
    let b = Server::start(vec![
        ok_stream(&["b"]),
        openai_error(500, "server_error", None, "boom"),
    ]);
    let cli = Cli::new();
    model(&cli, "a", "openai", &openai_base(&a), json!({}));
    model(&cli, "b", "openai", &openai_base(&b), json!({}));
    lb(
        &cli,
        "lb",
        "failover",
        &["a", "b"],
        &json!({"failover_retry_count": 0}),
    );
    let trace = cli.user_home().join("serve-trace.json");
    let serve = Serve::start(
        &cli,
        &["--profile", "lb", "--record", trace.to_str().unwrap()],
    );
    let agent = client();
    let statuses: Vec<u16> = (0..3)
        .map(|i| post(&agent, &serve.chat_url(), &ask(i == 1)).status)
        .collect();
    assert_eq!(statuses, [200, 200, 502]);
    let text = std::fs::read_to_string(&trace).unwrap();
    assert!(!text.contains(KEY), "no secret in the trace");
    let out = cli.run(&["simulate", trace.to_str().unwrap(), "--json"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let summary: Value = serde_json::from_str(out.stdout.lines().last().unwrap()).unwrap();
    let replayed: Vec<Vec<String>> = summary["summary"]["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["attempts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| {
                    format!(
                        "{} {} {}",
                        a["backend"].as_str().unwrap(),
                        a["class"].as_str().unwrap(),
                        a["status"]
                    )
                })
                .collect()
        })
        .collect();
    assert_eq!(
        replayed,
        [
            vec!["a server 503", "b success 200"],
            vec!["a success 200"],
            vec!["a rate_limit 429", "b server 500"],
        ]
    );
    // Concurrent requests: all recorded, in start order (arrival times never go back).
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| post(&client(), &serve.chat_url(), &ask(false)));
        }
    });
    let t: Value = serde_json::from_str(&std::fs::read_to_string(&trace).unwrap()).unwrap();
    let at: Vec<u64> = t["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["at_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(at.len(), 7);
    assert!(at.windows(2).all(|w| w[0] <= w[1]), "{at:?}");
}

#[test]
fn fifty_concurrent_streaming_clients_each_get_a_complete_answer_in_exact_round_robin_shares() {
    let names: Vec<String> = (0..5).map(|i| format!("m{i}")).collect();
    let servers: Vec<Server> = names
        .iter()
        .map(|n| {
            let words = format!("{n} says hello");
            let pieces: Vec<&str> = words.split_inclusive(' ').collect();
            Server::start(vec![ok_stream(&pieces)])
        })
        .collect();
    let cli = Cli::new();
    for (n, s) in names.iter().zip(&servers) {
        model(&cli, n, "openai", &openai_base(s), json!({}));
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    lb(&cli, "rr", "roundrobin", &refs, &json!({}));
    let serve = Serve::start(&cli, &["--profile", "rr"]);
    let url = serve.chat_url();
    let replies: Vec<Got> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..50)
            .map(|_| scope.spawn(|| post(&client(), &url, &json!({"model": "rr", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &replies {
        let backend = r.header("x-llxprt-backend").expect("a backend").to_string();
        assert_served(
            r,
            true,
            &backend,
            &format!("{backend} says hello"),
            "concurrent",
        );
    }
    let shares: Vec<usize> = servers.iter().map(|s| s.requests().len()).collect();
    assert_eq!(shares, [10, 10, 10, 10, 10], "round-robin shares are exact");
    let out = cli.run(&["stats", "--profile", "rr", "--json"]);
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(v["lb"]["requests"], 50);
}

/// SPEC §5.9: `serve` and one-shot `chat` processes on one round-robin load balancer share
/// its cursor — serve's threads step in memory under the state file's lock and write by group
/// commit, and still no step of either is lost — and a `stats` run right after the last
/// answer already counts every request.
#[test]
fn serve_and_chat_processes_share_one_round_robin_cursor() {
    let names = ["r0", "r1", "r2"];
    let servers: Vec<Server> = names
        .iter()
        .map(|n| Server::start(vec![ok_stream(&[n])]))
        .collect();
    let cli = Cli::new();
    for (n, s) in names.iter().zip(&servers) {
        model(&cli, n, "openai", &openai_base(s), json!({}));
    }
    lb(&cli, "rr", "roundrobin", &names, &json!({}));
    let serve = Serve::start(&cli, &["--profile", "rr"]);
    let agent = client();
    let mut served = Vec::new();
    for i in 0..12 {
        if i % 3 == 2 {
            let out = cli.run(&["chat", "--profile", "rr", "--json", "hi"]);
            assert_eq!(out.code, 0, "{}", out.render());
            let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
            served.push(v["backend"].as_str().unwrap().to_string());
        } else {
            let r = post(
                &agent,
                &serve.chat_url(),
                &json!({"model": "rr", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
            );
            served.push(r.header("x-llxprt-backend").expect("a backend").to_string());
        }
    }
    let want: Vec<&str> = (0..12).map(|i| names[i % 3]).collect();
    assert_eq!(served, want, "one cursor, one step per request");
    let out = cli.run(&["stats", "--profile", "rr", "--json"]);
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(v["lb"]["requests"], 12, "{}", out.stdout);
    for n in names {
        assert_eq!(v["backends"][n]["successes"], 4, "{}", out.stdout);
    }
}

/// The official `openai` Python package, used unmodified (SPEC §8.3: any OpenAI-compatible
/// tool). Skipped, with the reason printed, when the package is not importable.
#[test]
fn the_official_openai_python_client_works_unmodified() {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import openai; print(openai.__version__)"])
        .output();
    let version = match probe {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        Ok(o) => {
            println!(
                "skipped: the openai Python package is not importable ({})",
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            );
            return;
        }
        Err(e) => {
            println!("skipped: python3 does not run ({e})");
            return;
        }
    };
    let a = Server::start(vec![ok_stream(&["Hello", " from a"])]);
    let limited = Server::start(vec![openai_error(
        429,
        "rate_limit_exceeded",
        None,
        "slow down",
    )]);
    let cut = Server::start(vec![Reply::cut_after(
        2,
        ok_stream(&["par", "tial", " more"]),
    )]);
    let cli = Cli::new();
    model(&cli, "a", "openai", &openai_base(&a), json!({}));
    model(&cli, "b", "openai", &refused_url(), json!({}));
    lb(&cli, "lb", "failover", &["a", "b"], &json!({}));
    model(&cli, "limited", "openai", &openai_base(&limited), json!({}));
    model(&cli, "cut", "openai", &openai_base(&cut), json!({}));
    let serve = Serve::start(&cli, &["--profile", "lb"]);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/serve/openai_client.py");
    let mut child = std::process::Command::new("python3")
        .arg(&script)
        .args(["lb", "limited", "cut"])
        .env("OPENAI_BASE_URL", format!("{}/v1", serve.url()))
        .env("OPENAI_API_KEY", "unused-by-llxprt")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("all_proxy")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_mins(1);
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the python client did not finish"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "openai {version}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["models"], json!(["a", "b", "cut", "lb", "limited"]));
    assert_eq!(
        v["plain"],
        json!({"answer": "Hello from a", "model": "a-model", "finish": "stop", "total_tokens": 8, "backend": "a"})
    );
    assert_eq!(
        v["stream"],
        json!({"answer": "Hello from a", "total_tokens": 8})
    );
    assert_eq!(v["limited"]["error"], "RateLimitError");
    assert_eq!(v["limited"]["status"], 429);
    assert_eq!(v["cut"]["error"], "APIError");
    assert_eq!(v["cut"]["partial"], "partial");
    assert!(
        v["cut"]["message"]
            .as_str()
            .unwrap()
            .contains("stream interrupted"),
        "{v}"
    );
}
