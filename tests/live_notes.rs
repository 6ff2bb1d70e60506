//! The one-shot shows what the engine does as it happens (SPEC §8.1): each retry, failover and
//! skip is one line on stderr, before the `served by` line, in narrate's words; `--quiet` hides
//! them, `--json` never prints them, a healthy request prints none; off a terminal they are
//! plain (no escapes). Loopback servers, a temp `LLXPRT_HOME`.

mod support;

use serde_json::{Value, json};
use support::Cli;
use support::server::{Reply, Server, openai_error, openai_stream};

const KEY: &str = "sk-test-live-0123456789abcdefghij";

fn ok_stream(text: &[&str]) -> Reply {
    Reply::sse(openai_stream(text, Some("stop"), true, Some((5, 3))))
}

/// Load balancer `lb` over OpenAI-compatible `a` (at `a_base`) and `b`, retrying once.
fn pair(cli: &Cli, a_base: &str, b: &Server) {
    for (name, base) in [("a", a_base.to_string()), ("b", format!("{}/v1", b.url()))] {
        let p = cli.keyed_model(name, "openai", &base, KEY, &json!({}));
        cli.write_profile_json(name, &p);
    }
    cli.write_profile_json(
        "lb",
        &json!({"version": 1, "type": "loadbalancer", "policy": "failover", "backends": ["a", "b"],
            "ephemeralSettings": {"failover_retry_count": 1}}),
    );
}

/// `a` answers 503 twice, `b` answers.
fn failing_over() -> (Cli, Server, Server) {
    let a = Server::start(vec![
        openai_error(503, "overloaded", None, "busy"),
        openai_error(503, "overloaded", None, "busy"),
    ]);
    let b = Server::start(vec![ok_stream(&["from b"])]);
    let cli = Cli::new();
    pair(&cli, &format!("{}/v1", a.url()), &b);
    (cli, a, b)
}

#[test]
fn a_failover_is_told_line_by_line_before_the_served_by_line() {
    let (cli, _a, _b) = failing_over();
    let out = cli.run(&["chat", "--profile", "lb", "hello?"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "from b\n", "stdout is exactly the answer");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(
        lines[..3],
        ["a 503 → retry 1/1", "a 503", "→ failover to b"],
        "{}",
        out.stderr
    );
    assert!(
        lines[3].starts_with("served by b/default"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains('\x1b'), "plain off a terminal");
}

#[test]
fn quiet_hides_the_notes_and_json_never_prints_them() {
    let (cli, _a, _b) = failing_over();
    let out = cli.run(&["chat", "--profile", "lb", "--quiet", "hello?"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "from b\n");
    assert!(!out.stderr.contains('→'), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);

    let (cli, _a, _b) = failing_over();
    let out = cli.run(&["chat", "--profile", "lb", "--json", "hello?"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains('→'), "{}", out.stderr);
    let v: Value = serde_json::from_str(out.stdout.trim()).expect("one JSON object");
    assert_eq!(v["attempts"].as_array().map(Vec::len), Some(3), "{v}");
}

#[test]
fn a_healthy_request_prints_no_note() {
    let a = Server::start(vec![ok_stream(&["hi"])]);
    let b = Server::start(vec![ok_stream(&["unused"])]);
    let cli = Cli::new();
    pair(&cli, &format!("{}/v1", a.url()), &b);
    let out = cli.run(&["chat", "--profile", "lb", "hello?"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.starts_with("served by a/default"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_bucket_without_a_key_is_told_and_a_failed_request_exits_1() {
    let b = Server::start(vec![
        openai_error(500, "server_error", None, "boom"),
        openai_error(500, "server_error", None, "boom"),
    ]);
    let cli = Cli::new();
    pair(&cli, "http://127.0.0.1:9/v1", &b);
    // `a`'s keyfile is gone: passed over without a request (SPEC §5.3).
    std::fs::remove_file(cli.user_home().join("a.key")).expect("remove a's key");
    let out = cli.run(&["chat", "--profile", "lb", "hello?"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(out.stdout, "");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert!(
        lines[0].starts_with("a/default skipped: no key: ") && lines[0].ends_with("not found"),
        "{}",
        out.stderr
    );
    assert_eq!(
        lines[1..3],
        ["→ failover to b", "b 500 → retry 1/1"],
        "{}",
        out.stderr
    );
    assert!(lines[3].starts_with("error: "), "{}", out.stderr);
}
