//! Stream timing and breaks before any text, through the real `llxprt chat` binary and loopback
//! servers (SPEC §3.1, §4, §5.8, §6.2):
//! - `first_byte_timeout_ms` runs from sending to the first stream *event* and
//!   `stream_idle_timeout_ms` between two events: bytes that complete no event (keep-alive
//!   comments, a line trickled a few bytes at a time) move neither deadline;
//! - a stream that breaks before any answer text is not `interrupted` (no output began): it
//!   fails over as a `network` or `timeout` failure whatever `mid_stream` says.

mod support;

use serde_json::{Value, json};
use support::Cli;
use support::server::{Reply, Server, SseOut, openai_chunk, openai_stream};

const KEY: &str = "sk-test-deadlines-0123456789abcdef";

/// A failover load balancer `lb` over OpenAI-compatible `a` then `b`, with `lb_settings`.
#[expect(
    clippy::needless_pass_by_value,
    reason = "call sites read best with an inline json! value"
)]
fn pair(cli: &Cli, a: &Server, b: &Server, lb_settings: Value) {
    for (name, server) in [("a", a), ("b", b)] {
        cli.write_profile_json(
            name,
            &json!({"version": 1, "provider": "openai", "model": format!("{name}-model"),
                "ephemeralSettings": {"base-url": format!("{}/v1", server.url()), "auth-key": KEY}}),
        );
    }
    cli.write_profile_json(
        "lb",
        &json!({"version": 1, "type": "loadbalancer", "policy": "failover",
            "backends": ["a", "b"], "ephemeralSettings": lb_settings}),
    );
}

fn ok_stream(text: &[&str]) -> Reply {
    Reply::sse(openai_stream(text, Some("stop"), true, Some((5, 3))))
}

/// `llxprt chat --profile lb --json …`: exit code, the JSON object, and the attempts as
/// `backend class` lines.
fn chat_json(cli: &Cli, extra: &[&str]) -> (i32, Value, Vec<String>) {
    let mut args = vec!["chat", "--profile", "lb", "--json"];
    args.extend_from_slice(extra);
    args.push("hello?");
    let out = cli.run(&args);
    let v: Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", out.stdout, out.stderr));
    let attempts = v["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{} {}",
                a["backend"].as_str().unwrap(),
                a["class"].as_str().unwrap()
            )
        })
        .collect();
    (out.code, v, attempts)
}

/// `lb` over `a` answering with `a_reply` and `b` streaming `b_text`, under `lb_settings`:
/// what `llxprt chat --json` (with `extra`) says, as [`chat_json`].
fn through_pair(
    a_reply: Reply,
    b_text: &[&str],
    lb_settings: Value,
    extra: &[&str],
) -> (i32, Value, Vec<String>) {
    let a = Server::start(vec![a_reply]);
    let b = Server::start(vec![ok_stream(b_text)]);
    let cli = Cli::new();
    pair(&cli, &a, &b, lb_settings);
    chat_json(&cli, extra)
}

/// The first chunk of a Chat Completions stream, with the role and no text.
fn role_only() -> SseOut {
    SseOut::data(openai_chunk(json!({"role": "assistant"}), None))
}

#[test]
fn a_stream_broken_before_any_text_fails_over_whatever_mid_stream_says() {
    for mode in ["error", "continue", "restart", "buffer"] {
        // Cut after the role chunk, and a stall after it: neither delivered any text.
        for (broken, class) in [
            (
                Reply::cut_after(1, Reply::sse(vec![role_only()])),
                "network",
            ),
            (
                Reply::stall_after(1, 3000, Reply::sse(vec![role_only()])),
                "timeout",
            ),
        ] {
            let (code, v, attempts) = through_pair(
                broken,
                &["Fine."],
                json!({"failover_retry_count": 0, "mid_stream": mode, "stream_idle_timeout_ms": 300}),
                &[],
            );
            let case = format!("mid_stream {mode}, {class}");
            assert_eq!(code, 0, "{case}: {v}");
            assert_eq!(v["answer"], "Fine.", "{case}");
            assert_eq!(
                attempts,
                [format!("a {class}"), "b success".into()],
                "{case}"
            );
        }
    }
}

#[test]
fn a_stream_that_ends_cleanly_without_text_or_finish_signal_fails_over_as_network() {
    // The HTTP body ends properly (terminating chunk) but the stream never said it finished.
    let (code, v, attempts) = through_pair(
        Reply::sse(vec![role_only()]),
        &["Fine."],
        json!({"failover_retry_count": 0, "mid_stream": "error"}),
        &[],
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(attempts, ["a network", "b success"]);
}

#[test]
fn keep_alive_comments_do_not_hold_off_the_first_event_deadline() {
    // Comments every 150 ms for 1.5 s, then the answer: the first event is due within 500 ms
    // of sending, and comments are not events.
    let mut events: Vec<SseOut> = (0..10).map(|_| SseOut::comment().after(150)).collect();
    events.extend(openai_stream(&["Late."], Some("stop"), true, None));
    let (code, v, attempts) = through_pair(
        Reply::sse(events),
        &["On time."],
        json!({"failover_retry_count": 0, "first_byte_timeout_ms": 500}),
        &[],
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["answer"], "On time.");
    assert_eq!(attempts, ["a timeout", "b success"]);
}

#[test]
fn an_event_trickled_a_few_bytes_at_a_time_does_not_hold_off_the_idle_deadline() {
    // The first event has text; the second arrives 4 bytes every 100 ms, taking far longer
    // than the 500 ms allowed between two events.
    let second = format!(
        "data: {}\n\n",
        openai_chunk(json!({"content": " world"}), None)
    );
    let mut events = openai_stream(&["Hello"], None, false, None);
    let bytes = second.as_bytes();
    for piece in bytes.chunks(4) {
        events.push(SseOut::raw(String::from_utf8(piece.to_vec()).unwrap()).after(100));
    }
    events.extend(openai_stream(&["!"], Some("stop"), true, None));
    let (code, v, attempts) = through_pair(
        Reply::sse(events),
        &["Hello from b."],
        json!({"failover_retry_count": 0, "stream_idle_timeout_ms": 500}),
        &["--set", "mid_stream=restart"],
    );
    assert!(
        bytes.len() / 4 * 100 > 2000,
        "the trickle outlasts the deadline"
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["answer"], "Hello from b.");
    assert_eq!(attempts, ["a interrupted", "b success"]);
}
