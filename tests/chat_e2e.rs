//! `llxprt chat` end to end (SPEC §4, §5, §6, §8.1): the real binary, a load-balancer profile,
//! and loopback servers answering with scripted faults over real sockets. Each test asserts
//! the answer, the attempts (from `--json`) and the exit code; no truncated answer exits 0.

mod support;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::Cli;
use support::server::{
    Reply, Server, SseOut, anthropic_error, anthropic_stream, anthropic_stream_error,
    gemini_stream, openai_error, openai_stream, openai_stream_error, refused_url,
};

const KEY: &str = "sk-test-e2e-0123456789abcdefghij";

/// A model profile named `name` for `provider` at `base`, with a private keyfile.
#[expect(
    clippy::needless_pass_by_value,
    reason = "call sites read best with an inline json! value"
)]
fn model(cli: &Cli, name: &str, provider: &str, base: &str, extra: Value) -> Value {
    let p = cli.keyed_model(name, provider, base, KEY, &extra);
    cli.write_profile_json(name, &p);
    p
}

fn openai_base(s: &Server) -> String {
    format!("{}/v1", s.url())
}

/// A failover load balancer `lb` over primary `a` and backup `b`, both OpenAI-compatible.
#[expect(
    clippy::needless_pass_by_value,
    reason = "call sites read best with an inline json! value"
)]
fn pair(cli: &Cli, a: &Server, b: &Server, lb_settings: Value) {
    model(
        cli,
        "a",
        "openai",
        &openai_base(a),
        json!({"context-limit": 1000}),
    );
    model(
        cli,
        "b",
        "openai",
        &openai_base(b),
        json!({"context-limit": 2000}),
    );
    cli.write_profile_json("lb", &json!({"version": 1, "type": "loadbalancer", "policy": "failover", "backends": ["a", "b"], "ephemeralSettings": lb_settings}));
}

fn ok_stream(text: &[&str]) -> Reply {
    Reply::sse(openai_stream(text, Some("stop"), true, Some((5, 3))))
}

fn chat_json(cli: &Cli, extra: &[&str]) -> (i32, Value, String) {
    let mut args = vec!["chat", "--profile", "lb", "--json"];
    args.extend_from_slice(extra);
    args.push("hello?");
    let out = cli.run(&args);
    let v: Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", out.stdout, out.stderr));
    (out.code, v, out.stderr)
}

fn attempts(v: &Value) -> Vec<String> {
    v["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let status = a.get("status").map(|s| format!(" {s}")).unwrap_or_default();
            format!(
                "{}/{} {}{status}",
                a["backend"].as_str().unwrap(),
                a["bucket"].as_str().unwrap(),
                a["class"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn a_healthy_stream_is_answered_with_the_served_by_line() {
    let a = Server::start(vec![ok_stream(&["Hel", "lo!"])]);
    let b = Server::start(vec![ok_stream(&["unused"])]);
    let cli = Cli::new();
    pair(&cli, &a, &b, json!({}));
    let out = cli.run(&["chat", "--profile", "lb", "hello?"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "Hello!\n");
    assert!(
        out.stderr.contains("served by a/default (openai a-model,"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("8 tokens)"), "{}", out.stderr);
    let req = &a.requests()[0];
    assert_eq!(req.path, "/v1/chat/completions");
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(req.body["messages"][0]["content"], "hello?");
    assert!(!out.all().contains(KEY), "the key never appears in output");
    let (code, v, _) = chat_json(&cli, &[]);
    assert_eq!(code, 0);
    assert_eq!(v["answer"], "Hello!");
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8})
    );
    assert_eq!(v["finish_reason"], "stop");
    assert_eq!(attempts(&v), ["a/default success 200"]);
}

#[test]
fn rate_limits_with_and_without_retry_after_fail_over() {
    for reply in [
        openai_error(429, "rate_limit_exceeded", None, "slow down"),
        openai_error(429, "rate_limit_exceeded", None, "slow down").header("retry-after", "30"),
    ] {
        let a = Server::start(vec![reply]);
        let b = Server::start(vec![ok_stream(&["from b"])]);
        let cli = Cli::new();
        pair(&cli, &a, &b, json!({}));
        let (code, v, _) = chat_json(&cli, &[]);
        assert_eq!(code, 0);
        assert_eq!(v["answer"], "from b");
        assert_eq!(
            attempts(&v),
            ["a/default rate_limit 429", "b/default success 200"]
        );
    }
}

#[test]
fn a_short_retry_after_is_waited_out_on_the_same_bucket() {
    let a = Server::start(vec![
        openai_error(429, "rate_limit_exceeded", None, "wait").header("retry-after-ms", "200"),
        ok_stream(&["later"]),
    ]);
    let b = Server::start(vec![ok_stream(&["b"])]);
    let cli = Cli::new();
    pair(&cli, &a, &b, json!({"retry_after_max_ms": 1000}));
    let (code, v, _) = chat_json(&cli, &[]);
    assert_eq!(code, 0);
    assert_eq!(
        attempts(&v),
        ["a/default rate_limit 429", "a/default success 200"]
    );
    assert_eq!(v["answer"], "later");
}

#[test]
fn quota_auth_and_forbidden_end_the_chain_and_fail_unless_listed() {
    for (reply, class, status) in [
        (openai_error(402, "billing", None, "pay"), "quota", 402),
        (
            openai_error(401, "invalid_api_key", Some("invalid_api_key"), "bad key"),
            "auth",
            401,
        ),
        (openai_error(403, "forbidden", None, "no"), "forbidden", 403),
    ] {
        let a = Server::start(vec![reply]);
        let b = Server::start(vec![ok_stream(&["b"])]);
        let cli = Cli::new();
        pair(&cli, &a, &b, json!({}));
        let (code, v, _) = chat_json(&cli, &[]);
        assert_eq!(code, 1, "{class}: not in failover_status_codes");
        assert_eq!(attempts(&v), [format!("a/default {class} {status}")]);
        assert!(v.get("answer").is_none());
        // Listed, it fails over.
        let cli = Cli::new();
        pair(&cli, &a, &b, json!({"failover_status_codes": [status]}));
        let (code, v, _) = chat_json(&cli, &[]);
        assert_eq!(code, 0);
        assert_eq!(v["backend"], "b");
    }
}

#[test]
fn server_errors_are_retried_then_fail_over() {
    let a = Server::start(vec![
        openai_error(500, "server_error", None, "boom"),
        openai_error(503, "overloaded", None, "busy"),
    ]);
    let b = Server::start(vec![ok_stream(&["b"])]);
    let cli = Cli::new();
    pair(&cli, &a, &b, json!({"failover_retry_count": 1}));
    let (code, v, _) = chat_json(&cli, &[]);
    assert_eq!(code, 0);
    assert_eq!(
        attempts(&v),
        [
            "a/default server 500",
            "a/default server 503",
            "b/default success 200"
        ]
    );
}

#[test]
fn anthropic_529_and_an_overloaded_event_inside_a_200_fail_over() {
    for reply in [
        anthropic_error("overloaded_error", "Overloaded"),
        Reply::sse(vec![anthropic_stream_error(
            "overloaded_error",
            "Overloaded",
        )]),
    ] {
        let a = Server::start(vec![reply]);
        let b = Server::start(vec![ok_stream(&["b"])]);
        let cli = Cli::new();
        model(&cli, "a", "anthropic", &a.url(), json!({}));
        model(&cli, "b", "openai", &openai_base(&b), json!({}));
        cli.write_profile_json("lb", &json!({"version": 1, "type": "loadbalancer", "policy": "failover", "backends": ["a", "b"], "ephemeralSettings": {"failover_retry_count": 0}}));
        let (code, v, _) = chat_json(&cli, &[]);
        assert_eq!(code, 0);
        assert_eq!(
            attempts(&v),
            ["a/default server 529", "b/default success 200"]
        );
        let req = &a.requests()[0];
        assert_eq!(req.path, "/v1/messages");
        assert_eq!(req.header("x-api-key"), Some(KEY));
        assert_eq!(req.header("anthropic-version"), Some("2023-06-01"));
    }
}

#[test]
fn transport_failures_fail_over() {
    let b = Server::start(vec![ok_stream(&["b"])]);
    for (base, class) in [
        (format!("{}/v1", refused_url()), "network"),
        ("reset".to_string(), "network"),
        ("close".to_string(), "network"),
        ("silent".to_string(), "timeout"),
    ] {
        let holder;
        let base = match base.as_str() {
            "reset" => {
                holder = Server::start(vec![Reply::reset()]);
                openai_base(&holder)
            }
            "close" => {
                holder = Server::start(vec![Reply::close_before_headers()]);
                openai_base(&holder)
            }
            "silent" => {
                holder = Server::start(vec![Reply::no_response(5000)]);
                openai_base(&holder)
            }
            _ => base,
        };
        let cli = Cli::new();
        model(
            &cli,
            "a",
            "openai",
            &base,
            json!({"first_byte_timeout_ms": 300}),
        );
        model(&cli, "b", "openai", &openai_base(&b), json!({}));
        cli.write_profile_json("lb", &json!({"version": 1, "type": "loadbalancer", "policy": "failover", "backends": ["a", "b"], "ephemeralSettings": {"failover_retry_count": 0}}));
        let (code, v, _) = chat_json(&cli, &[]);
        assert_eq!(code, 0, "{class}");
        assert_eq!(
            attempts(&v),
            [
                format!("a/default {class}"),
                "b/default success 200".to_string()
            ]
        );
    }
}

#[test]
fn a_slow_first_token_within_the_deadline_is_fine() {
    let a = Server::start(vec![Reply::sse(
        openai_stream(&["slow", " but fine"], Some("stop"), true, None)
            .into_iter()
            .enumerate()
            .map(|(i, e)| if i == 0 { e.after(300) } else { e })
            .collect(),
    )]);
    let b = Server::start(vec![ok_stream(&["b"])]);
    let cli = Cli::new();
    pair(&cli, &a, &b, json!({}));
    let (code, v, _) = chat_json(&cli, &["--set", "first_byte_timeout_ms=2000"]);
    assert_eq!(code, 0);
    assert_eq!(v["answer"], "slow but fine");
    assert!(
        v["usage"]["completion_tokens"].as_u64().unwrap() > 0,
        "estimated when the server sends none"
    );
}

/// SPEC §3.1, §6.2: `first_byte_timeout_ms` runs from the send to the first body bytes, whole:
/// a server that trickles its response head a byte at a time (each read gets something, so a
/// per-read timeout would never fire) is still given up at the deadline, and the request fails
/// over.
#[test]
fn a_response_head_trickled_a_byte_at_a_time_still_times_out_at_the_first_byte_deadline() {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let trickler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            listener.set_nonblocking(true).unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < deadline {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                conn.set_nonblocking(false).unwrap();
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                let head = format!("HTTP/1.1 200 OK\r\nx-padding: {}\r\n", "p".repeat(200));
                for b in head.bytes() {
                    if stop.load(std::sync::atomic::Ordering::SeqCst)
                        || conn.write_all(&[b]).is_err()
                    {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        })
    };
    let b = Server::start(vec![ok_stream(&["from b"])]);
    let cli = Cli::new();
    model(
        &cli,
        "a",
        "openai",
        &format!("http://{addr}/v1"),
        json!({"context-limit": 1000}),
    );
    model(&cli, "b", "openai", &openai_base(&b), json!({}));
    cli.write_profile_json("lb", &json!({"version": 1, "type": "loadbalancer", "policy": "failover", "backends": ["a", "b"]}));
    let started = Instant::now();
    let (code, v, _) = chat_json(&cli, &["--set", "first_byte_timeout_ms=400"]);
    let took = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    trickler.join().unwrap();
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["answer"], "from b");
    assert_eq!(attempts(&v), ["a/default timeout", "b/default success 200"]);
    // The head alone takes over 4 s to trickle; the deadline is 400 ms.
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[test]
fn a_cut_or_stalled_stream_restarts_on_the_next_backend_and_never_exits_0_truncated() {
    for reply in [
        Reply::cut_after(2, ok_stream(&["par", "tial", " more"])),
        Reply::stall_after(2, 3000, ok_stream(&["par", "tial", " more"])),
        Reply::sse(openai_stream(&["par", "tial"], None, false, None)),
    ] {
        let a = Server::start(vec![reply]);
        let b = Server::start(vec![ok_stream(&["whole answer"])]);
        let cli = Cli::new();
        pair(&cli, &a, &b, json!({"failover_retry_count": 0}));
        let (code, v, _) = chat_json(&cli, &["--set", "stream_idle_timeout_ms=300"]);
        assert_eq!(code, 0);
        assert_eq!(v["answer"], "whole answer", "only the complete answer");
        assert_eq!(
            attempts(&v),
            ["a/default interrupted", "b/default success 200"]
        );
    }
    // The only backend cuts: the request fails, exit 1, no answer.
    let a = Server::start(vec![Reply::cut_after(
        2,
        ok_stream(&["par", "tial", " more"]),
    )]);
    let cli = Cli::new();
    model(&cli, "solo", "openai", &openai_base(&a), json!({}));
    let out = cli.run(&[
        "chat",
        "--profile",
        "solo",
        "--set",
        "failover_retry_count=0",
        "hi",
    ]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stderr.contains("interrupted"), "{}", out.stderr);
}

#[test]
fn malformed_events_are_skipped_and_a_finish_without_done_completes() {
    let mut events = vec![SseOut::raw("data: {not json\n\n")];
    events.extend(openai_stream(&["fine"], Some("stop"), false, None));
    let a = Server::start(vec![Reply::sse(events)]);
    let b = Server::start(vec![ok_stream(&["b"])]);
    let cli = Cli::new();
    pair(&cli, &a, &b, json!({}));
    let (code, v, stderr) = chat_json(&cli, &[]);
    assert_eq!(code, 0);
    assert_eq!(v["answer"], "fine");
    assert!(
        stderr.contains("1 malformed stream event skipped"),
        "{stderr}"
    );
}

#[test]
fn context_length_moves_to_a_larger_window_and_content_filter_fails() {
    let a = Server::start(vec![openai_error(
        400,
        "invalid_request_error",
        Some("context_length_exceeded"),
        "too long",
    )]);
    let b = Server::start(vec![ok_stream(&["big window"])]);
    let cli = Cli::new();
    pair(&cli, &a, &b, json!({}));
    let (code, v, _) = chat_json(&cli, &[]);
    assert_eq!(code, 0);
    assert_eq!(
        attempts(&v),
        ["a/default context_length 400", "b/default success 200"]
    );

    let a = Server::start(vec![openai_error(
        400,
        "invalid_request_error",
        Some("content_policy_violation"),
        "refused",
    )]);
    let cli = Cli::new();
    pair(&cli, &a, &b, json!({}));
    let (code, v, _) = chat_json(&cli, &[]);
    assert_eq!(code, 1);
    assert_eq!(attempts(&v), ["a/default content_filter 400"]);
    assert!(v["error"].as_str().unwrap().contains("refused"), "{v}");
}

#[test]
fn an_openai_error_chunk_before_output_is_classified_by_its_type() {
    let a = Server::start(vec![Reply::sse(vec![openai_stream_error(
        "rate_limit_exceeded",
        Some("rate_limit_exceeded"),
        "slow",
    )])]);
    let b = Server::start(vec![ok_stream(&["b"])]);
    let cli = Cli::new();
    pair(&cli, &a, &b, json!({}));
    let (code, v, _) = chat_json(&cli, &[]);
    assert_eq!(code, 0);
    assert_eq!(
        attempts(&v),
        ["a/default rate_limit 429", "b/default success 200"]
    );
}

#[test]
fn gemini_streams_are_read_to_their_finish_reason() {
    let a = Server::start(vec![Reply::sse(gemini_stream(&["Gem", "ini"], true))]);
    let cli = Cli::new();
    model(&cli, "g", "gemini", &a.url(), json!({}));
    let out = cli.run(&["chat", "--profile", "g", "--json", "hi"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(v["answer"], "Gemini");
    let req = &a.requests()[0];
    assert!(
        req.path
            .starts_with("/v1beta/models/g-model:streamGenerateContent"),
        "{}",
        req.path
    );
    assert_eq!(req.header("x-goog-api-key"), Some(KEY));
    // Without a finish reason the stream is truncated: exit 1.
    let a = Server::start(vec![Reply::sse(gemini_stream(&["Gem"], false))]);
    let cli = Cli::new();
    model(&cli, "g", "gemini", &a.url(), json!({}));
    let out = cli.run(&[
        "chat",
        "--profile",
        "g",
        "--set",
        "failover_retry_count=0",
        "hi",
    ]);
    assert_eq!(out.code, 1, "{}", out.all());
}

#[test]
fn anthropic_streams_end_at_message_stop() {
    let a = Server::start(vec![Reply::sse(anthropic_stream(&["Clau", "de"], true))]);
    let cli = Cli::new();
    model(&cli, "c", "anthropic", &a.url(), json!({}));
    let out = cli.run(&["chat", "--profile", "c", "hi"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "Claude\n");
}

#[test]
fn a_missing_profile_or_default_exits_3_with_advice() {
    let cli = Cli::new();
    let out = cli.run(&["chat", "hi"]);
    assert_eq!(out.code, 3);
    assert!(
        out.stderr
            .contains("help: create one with llxprt profile save model"),
        "{}",
        out.stderr
    );
    let out = cli.run(&["chat", "--profile", "nope", "hi"]);
    assert_eq!(out.code, 3);
    cli.write_profile_json("lb", &json!({"version": 1, "type": "loadbalancer", "policy": "failover", "backends": ["gone1", "gone2"]}));
    let out = cli.run(&["chat", "--profile", "lb", "hi"]);
    assert_eq!(
        out.code, 3,
        "a load balancer whose backends are gone never runs"
    );
    assert!(out.stderr.contains("lb.json"), "{}", out.stderr);
}

/// SPEC §8.1: a profile that cannot be loaded — missing, invalid, a load balancer whose
/// backend is gone, or no default at all — makes a one-shot exit 3 naming the file and the
/// problem, with a `help:` to re-save it (and `set-default none` when it is the default); with
/// `--json`, stdout carries `{"error": …, "attempts": []}`.
#[test]
fn a_profile_that_cannot_be_loaded_exits_3_naming_its_file_json_or_not() {
    let s = Server::start(vec![ok_stream(&["never sent"])]);
    let cli = Cli::new();
    model(&cli, "a", "openai", &openai_base(&s), json!({}));
    cli.write_profile("broken", "{\"version\": 1, \"provider\": \"openai\"\n");
    cli.write_profile_json("lb", &json!({"version": 1, "type": "loadbalancer", "policy": "failover", "backends": ["a", "gone"]}));
    let cases: [(&[&str], &str); 4] = [
        (&["--profile", "nope"], "nope.json"),
        (&["--profile", "broken"], "broken.json"),
        (&["--profile", "lb"], "lb.json"),
        (&[], "no default profile"),
    ];
    let mut transcript = String::new();
    for (args, names) in cases {
        for json in [false, true] {
            let mut argv = vec!["chat"];
            argv.extend_from_slice(args);
            if json {
                argv.push("--json");
            }
            argv.push("hi");
            let out = cli.run(&argv);
            let _ = writeln!(transcript, "$ llxprt {}\n{}", argv.join(" "), out.render());
            assert_eq!(out.code, 3, "{}", out.all());
            assert!(out.stderr.contains(names), "{}", out.stderr);
            assert!(out.stderr.contains("\nhelp: "), "{}", out.stderr);
            assert!(!out.stderr.contains("set-default none"), "{}", out.stderr);
            if json {
                let v: Value = serde_json::from_str(out.stdout.trim())
                    .unwrap_or_else(|e| panic!("{e}: {}", out.all()));
                assert_eq!(v["attempts"], json!([]), "{v}");
                assert!(v["error"].as_str().unwrap().contains(names), "{v}");
            } else {
                assert_eq!(out.stdout, "");
            }
        }
    }
    // The default profile that cannot be loaded: the help also says how to stop using it.
    for default in ["broken", "deleted"] {
        std::fs::write(
            cli.home().join("settings.json"),
            json!({"defaultProfile": default}).to_string(),
        )
        .unwrap();
        for argv in [&["chat", "hi"][..], &["chat", "--profile", default, "hi"]] {
            let out = cli.run(argv);
            let _ = writeln!(transcript, "$ llxprt {}\n{}", argv.join(" "), out.render());
            assert_eq!(out.code, 3, "{}", out.all());
            assert!(
                out.stderr.contains(&format!("{default}.json")),
                "{}",
                out.stderr
            );
            assert!(
                out.stderr.contains("llxprt profile set-default none"),
                "{}",
                out.stderr
            );
        }
    }
    assert!(s.requests().is_empty());
    insta::assert_snapshot!(transcript);
}

/// SPEC §3.1: `custom-headers` merge per header name across levels, and header names ignore
/// case: the load balancer's `X-Team` replaces the backend's `x-team`, sent once.
#[test]
fn a_load_balancer_s_header_replaces_a_backend_s_in_another_case() {
    let a = Server::start(vec![ok_stream(&["ok"])]);
    let b = Server::start(vec![ok_stream(&["unused"])]);
    let cli = Cli::new();
    pair(
        &cli,
        &a,
        &b,
        json!({"custom-headers": {"X-Team": "from-lb"}}),
    );
    model(
        &cli,
        "a",
        "openai",
        &openai_base(&a),
        json!({"custom-headers": {"x-team": "from-backend", "x-backend-only": "kept"}}),
    );
    let (code, v, err) = chat_json(&cli, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(attempts(&v), ["a/default success 200"]);
    let req = &a.requests()[0];
    // The loopback server joins repeated headers with ", ": one value means one header.
    assert_eq!(req.header("x-team"), Some("from-lb"));
    assert_eq!(req.header("x-backend-only"), Some("kept"));
}

/// SPEC §8.1, §8.2: "a closed stdout (broken pipe) ends quietly with 0 after the state is
/// saved". The reader closes its end at once; the answer (1 MiB, far over a pipe's buffer)
/// cannot be written whatever the timing: the write either fails at once or blocks on the full
/// pipe until the close, and fails then.
#[test]
fn a_closed_stdout_ends_quietly_with_0_after_the_state_is_saved() {
    let piece = "x".repeat(1024);
    let pieces: Vec<&str> = std::iter::repeat_n(piece.as_str(), 1024).collect();
    let s = Server::start(vec![ok_stream(&pieces)]);
    let cli = Cli::new();
    model(&cli, "m", "openai", &openai_base(&s), json!({}));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_llxprt"))
        .args(["chat", "--profile", "m", "hello?"])
        .env_clear()
        .env("LLXPRT_HOME", cli.home())
        .env("HOME", cli.user_home())
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
    assert!(!stderr.to_lowercase().contains("broken pipe"), "{stderr}");
    assert_eq!(s.requests().len(), 1);
    let stats = cli.run(&["stats", "--profile", "m", "--json"]);
    assert_eq!(stats.code, 0, "{}", stats.all());
    let v: Value = serde_json::from_str(stats.stdout.trim()).unwrap();
    assert_eq!(v["backends"]["m"]["requests"], 1, "{v}");
    assert_eq!(v["backends"]["m"]["successes"], 1, "{v}");
}

#[test]
fn eight_concurrent_processes_share_one_round_robin_cursor() {
    let servers: Vec<Server> = (0..4)
        .map(|_| Server::start(vec![ok_stream(&["ok"])]))
        .collect();
    let cli = Cli::new();
    let names: Vec<String> = (0..4).map(|i| format!("m{i}")).collect();
    for (n, s) in names.iter().zip(&servers) {
        model(&cli, n, "openai", &openai_base(s), json!({}));
    }
    cli.write_profile_json(
        "rr",
        &json!({"version": 1, "type": "loadbalancer", "policy": "roundrobin", "backends": names}),
    );
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| cli.run(&["chat", "--profile", "rr", "hi"])))
            .collect();
        for h in handles {
            let out = h.join().unwrap();
            assert_eq!(out.code, 0, "{}", out.stderr);
        }
    });
    let shares: Vec<usize> = servers.iter().map(|s| s.requests().len()).collect();
    assert_eq!(shares, [2, 2, 2, 2], "each backend served its exact share");
    let out = cli.run(&["stats", "--profile", "rr", "--json"]);
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(v["lb"]["requests"], 8);
    assert_eq!(v["lb"]["cursor"], 8);
}

#[test]
fn a_recorded_live_run_replays_to_the_same_attempts() {
    let a = Server::start(vec![
        openai_error(503, "overloaded", None, "busy"),
        Reply::cut_after(1, ok_stream(&["par", "tial"])),
    ]);
    let b = Server::start(vec![
        openai_error(500, "server_error", None, "boom"),
        ok_stream(&["fine"]),
    ]);
    let cli = Cli::new();
    model(&cli, "a", "openai", &openai_base(&a), json!({}));
    model(&cli, "b", "openai", &openai_base(&b), json!({}));
    cli.write_profile_json("lb", &json!({"version": 1, "type": "loadbalancer", "policy": "failover", "backends": ["a", "b"],
        "ephemeralSettings": {"failover_retry_count": 1, "failover_status_codes": [429, 500, 503]}}));
    let trace = cli.user_home().join("incident.json");
    let (code, live, _) = chat_json(&cli, &["--record", trace.to_str().unwrap()]);
    assert_eq!(code, 0);
    let live_attempts = attempts(&live);
    assert_eq!(
        live_attempts,
        [
            "a/default server 503",
            "a/default interrupted",
            "b/default server 500",
            "b/default success 200"
        ]
    );
    let recorded = std::fs::read_to_string(&trace).unwrap();
    assert!(!recorded.contains(KEY), "no secret in the trace");
    let out = cli.run(&["simulate", trace.to_str().unwrap(), "--json"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let last: Value = serde_json::from_str(out.stdout.lines().last().unwrap()).unwrap();
    let replayed: Vec<String> = last["summary"]["requests"][0]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{}/{} {}{}",
                a["backend"].as_str().unwrap(),
                a["bucket"].as_str().unwrap(),
                a["class"].as_str().unwrap(),
                a.get("status").map(|s| format!(" {s}")).unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(replayed, live_attempts);
}

#[test]
fn rate_limit_headers_are_kept_for_diagnostics() {
    let a = Server::start(vec![
        ok_stream(&["ok"])
            .header("x-ratelimit-remaining-requests", "41")
            .header("x-request-id", "r1"),
    ]);
    let b = Server::start(vec![ok_stream(&["b"])]);
    let cli = Cli::new();
    pair(&cli, &a, &b, json!({}));
    let (code, _, _) = chat_json(&cli, &[]);
    assert_eq!(code, 0);
    let out = cli.run(&["diagnostics", "--profile", "lb", "--json"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    let r = &v["ratelimits"][0];
    assert_eq!(r["bucket"], "a/default");
    assert_eq!(
        r["headers"],
        json!({"x-ratelimit-remaining-requests": "41"}),
        "only rate-limit headers"
    );
    let text = cli.run(&["diagnostics", "--profile", "lb"]);
    assert!(
        text.stdout.contains("rate limits of a/default"),
        "{}",
        text.stdout
    );
}

#[test]
fn mid_stream_restart_shows_a_one_line_notice_and_the_whole_new_answer() {
    let a = Server::start(vec![Reply::cut_after(
        2,
        ok_stream(&["Half ", "an answer", " never ends"]),
    )]);
    let b = Server::start(vec![ok_stream(&["The whole answer."])]);
    let cli = Cli::new();
    pair(&cli, &a, &b, json!({"failover_retry_count": 0}));
    let out = cli.run(&[
        "chat",
        "--profile",
        "lb",
        "--set",
        "mid_stream=restart",
        "hi",
    ]);
    assert_eq!(out.code, 0, "{}", out.all());
    // The text already shown stays; the new backend's full answer starts on a fresh line.
    assert_eq!(out.stdout, "Half an answer\nThe whole answer.\n");
    let notices: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("[interrupted"))
        .collect();
    assert_eq!(
        notices,
        ["[interrupted after 2 chunks of text (about 4 tokens) on a; restarting on b]"],
        "{}",
        out.stderr
    );
}

#[test]
fn mid_stream_continue_sends_the_partial_answer_as_a_prefill() {
    let a = Server::start(vec![Reply::cut_after(
        2,
        ok_stream(&["The answer ", "is", " never"]),
    )]);
    let b = Server::start(vec![ok_stream(&[" forty-two."])]);
    let cli = Cli::new();
    model(&cli, "a", "openai", &openai_base(&a), json!({}));
    model(
        &cli,
        "b",
        "openai",
        &openai_base(&b),
        json!({"accepts-prefill": true}),
    );
    cli.write_profile_json("lb", &json!({"version": 1, "type": "loadbalancer", "policy": "failover", "backends": ["a", "b"], "ephemeralSettings": {"failover_retry_count": 0, "mid_stream": "continue"}}));
    let out = cli.run(&["chat", "--profile", "lb", "hi"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(out.stdout, "The answer is forty-two.\n");
    let body = &b.requests()[0].body;
    let last = body["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        last,
        json!({"role": "assistant", "content": "The answer is"}),
        "trailing whitespace cut from the prefill"
    );
}

/// SPEC §3: a backend's `base-url`, `auth-keyfile` and `auth-key` only ever come from the
/// backend itself, or, for a model profile used alone, from the session. `--set` of one with a
/// load balancer was taken and ignored without a word; it is a usage error naming the key, in
/// the one-shot and the session alike, and nothing is sent. With a model profile alone it is
/// the session's, as `/baseurl` and `/keyfile` set it (it too was ignored).
#[test]
fn set_of_a_backend_identity_is_refused_with_a_load_balancer_and_used_alone() {
    const OTHER_KEY: &str = "sk-test-other-key-9876543210zyxwvu";
    let a = Server::start(vec![ok_stream(&["from a"])]);
    let b = Server::start(vec![ok_stream(&["from b"])]);
    let elsewhere = Server::start(vec![ok_stream(&["from elsewhere"])]);
    let cli = Cli::new();
    pair(&cli, &a, &b, json!({}));
    let keyfile = cli.user_home().join("other.key");
    std::fs::write(&keyfile, OTHER_KEY).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&keyfile, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let sets = [
        ("base-url", openai_base(&elsewhere)),
        ("auth-keyfile", keyfile.to_str().unwrap().to_string()),
        ("auth-key", OTHER_KEY.to_string()),
    ];
    for (key, value) in &sets {
        let set = format!("{key}={value}");
        let one_shot = cli.run(&["chat", "--profile", "lb", "--set", &set, "hi"]);
        let session = cli
            .cmd(&["chat", "-i", "--profile", "lb", "--set", &set])
            .session_input("hi\n/quit\n")
            .run();
        for out in [one_shot, session] {
            // Checked without printing it (SPEC §7).
            assert!(
                !out.all().contains(OTHER_KEY),
                "--set {key}: the key was shown"
            );
            assert_eq!(out.code, 2, "--set {key}:\n{}", out.render());
            let refused = format!(
                "error: --set {key} is refused while load balancer \"lb\" is loaded: each backend's comes from its own profile (SPEC §3)"
            );
            assert!(out.stderr.contains(&refused), "{}", out.render());
            assert!(
                out.stderr
                    .contains("help: set it in the backends' own profiles")
            );
        }
    }
    for s in [&a, &b, &elsewhere] {
        assert!(s.requests().is_empty(), "nothing is sent");
    }

    // A model profile used alone: the session's base URL and key.
    let base = format!("base-url={}", openai_base(&elsewhere));
    let out = cli.run(&["chat", "--profile", "a", "--set", &base, "hi"]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert!(out.stdout.contains("from elsewhere"), "{}", out.render());
    assert_eq!(elsewhere.requests().len(), 1);
    assert!(a.requests().is_empty());
    let key = format!("auth-key={OTHER_KEY}");
    let out = cli.run(&["chat", "--profile", "a", "--set", &key, "hi"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let sent = a.requests();
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].header("authorization") == Some(format!("Bearer {OTHER_KEY}").as_str()),
        "the request did not carry the key given with --set auth-key"
    );
    assert!(!out.all().contains(OTHER_KEY));
}

/// SPEC §5.3, §8.1: a backend whose key file is missing is passed over without a request —
/// not an attempt, never "answered auth 401" — and the request moves to the next backend even
/// though 401 triggers no failover; with nothing left, the error says which file is missing.
#[test]
fn spec_5_3_a_missing_key_file_is_passed_over_to_the_next_backend() {
    let a = Server::start(vec![ok_stream(&["never"])]);
    let b = Server::start(vec![ok_stream(&["from b"])]);
    let cli = Cli::new();
    pair(&cli, &a, &b, json!({"failover_status_codes": [500]}));
    let mut a_profile: Value =
        serde_json::from_str(&cli.read_profile("a")).expect("a's profile is JSON");
    a_profile["ephemeralSettings"]["auth-keyfile"] = json!("~/no-such-key");
    cli.write_profile_json("a", &a_profile);
    let (code, v, stderr) = chat_json(&cli, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(v["answer"], "from b");
    assert_eq!(attempts(&v), ["b/default success 200"]);
    assert!(a.requests().is_empty(), "nothing is sent without a key");

    let out = cli.run(&["chat", "--profile", "a", "--json", "hello?"]);
    assert_eq!(out.code, 1, "{}", out.all());
    let v: Value = serde_json::from_str(out.stdout.trim()).expect("JSON");
    assert_eq!(v["attempts"], json!([]));
    let error = v["error"].as_str().expect("an error");
    assert!(error.contains("no key: ~/no-such-key not found"), "{error}");
    assert!(
        !error.contains("401") && !error.contains("answered"),
        "{error}"
    );
}

/// SPEC §8.1: `stats` prints aligned tables fitted to the width, times in local time relative
/// to now, no nulls, and per backend why the last request went where it went; `--json` keeps
/// its shape. The state is written typed; the clock (`LLXPRT_TEST_NOW_MS`), the width
/// (`LLXPRT_TEST_COLUMNS`) and the time zone (`TZ`, two hours east of UTC) are fixed.
#[test]
fn stats_tables_fit_the_width_with_local_relative_times_and_the_last_routes() {
    use llxprt::engine::stats::Route;
    use llxprt::state_file::StateFile;
    const NOW: u64 = 1_780_000_000_000; // 2026-05-28T20:26:40Z
    let cli = Cli::new();
    cli.write_profile_json(
        "a",
        &json!({"version": 1, "provider": "openai", "model": "gpt-4o",
                "auth": {"type": "apikey", "buckets": ["team1", "team2"]}}),
    );
    cli.write_profile_json(
        "b",
        &json!({"version": 1, "provider": "anthropic", "model": "claude-sonnet-4-5",
                "auth": {"type": "apikey", "buckets": ["solo"]}}),
    );
    cli.write_profile_json(
        "ha",
        &json!({"version": 1, "type": "loadbalancer", "policy": "failover", "backends": ["a", "b"],
                "ephemeralSettings": {"lb_circuit_breaker_threshold": 1}}),
    );
    StateFile::new(cli.home())
        .update(|s| {
            let lb = s.lbs.entry("ha".into()).or_default();
            lb.stats.requests = 7;
            lb.stats.successes = 6;
            lb.stats.failures.insert("server".into(), 1);
            lb.stats.last_selected = Some("b".into());
            lb.stats.last_routes.insert("a".into(), Route::Cooling);
            lb.stats.last_routes.insert("b".into(), Route::NextEligible);
            let a = s.backends.entry("a".into()).or_default();
            a.stats.requests = 5;
            a.stats.successes = 4;
            a.stats.failures.insert("rate_limit".into(), 1);
            a.stats.retries = 1;
            a.stats.failovers = 1;
            a.stats.tokens = 1234;
            for ms in [120, 180, 900] {
                a.stats.latency.record(ms);
            }
            let b = s.backends.entry("b".into()).or_default();
            b.stats.requests = 3;
            b.stats.successes = 2;
            b.stats.tokens = 800;
            let t1 = s.buckets.entry("openai/team1".into()).or_default();
            t1.cooldown_until = Some(NOW + 42_000);
            t1.stats.requests = 3;
            t1.stats.rate_limited = 1;
            t1.stats.last_used = Some(NOW - 180_000);
            let t2 = s.buckets.entry("openai/team2".into()).or_default();
            t2.cooldown_until = Some(NOW + 2 * 3_600_000);
            t2.stats.requests = 2;
            t2.stats.last_used = Some(NOW - 2 * 86_400_000);
            let solo = s.buckets.entry("anthropic/solo".into()).or_default();
            solo.stats.last_used = Some(NOW - 5_000);
        })
        .unwrap();
    let run = |cols: &str, args: &[&str]| {
        cli.cmd(args)
            .env("LLXPRT_TEST_NOW_MS", NOW.to_string())
            .env("LLXPRT_TEST_COLUMNS", cols)
            .env("TZ", "XYZ-2")
            .run()
    };
    let wide = run("120", &["stats", "--profile", "ha"]);
    let narrow = run("80", &["stats", "--profile", "ha"]);
    let lb = run("64", &["stats", "lb", "--profile", "ha"]);
    for out in [&wide, &narrow, &lb] {
        assert_eq!(out.code, 0, "{}", out.all());
        assert!(!out.stdout.contains("null"), "{}", out.stdout);
    }
    assert!(narrow.stdout.lines().all(|l| l.chars().count() <= 80));
    assert!(
        lb.stdout.lines().all(|l| l.chars().count() <= 64),
        "{}",
        lb.stdout
    );
    insta::assert_snapshot!(format!(
        "{}\n{}\n{}",
        wide.render(),
        narrow.render(),
        lb.render()
    ));
    // --json keeps its keys: the routes are for the text only.
    let json = run("80", &["stats", "--profile", "ha", "--json"]);
    let v: Value = serde_json::from_str(&json.stdout).unwrap();
    let keys: Vec<&String> = v["lb"].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "policy",
            "requests",
            "successes",
            "failures",
            "last_selected",
            "cursor"
        ]
    );
    assert_eq!(
        v["buckets"]["a/team1"]["cooldown_until"],
        "2026-05-28T20:27:22.000Z"
    );
    assert!(v["backends"]["b"]["latency_ms"]["p50"].is_null());
}
