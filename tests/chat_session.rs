//! The interactive session end to end (SPEC §8.1, §5.8): `llxprt chat -i` with its input piped
//! (rustyline reads plain lines from a non-terminal), against loopback servers. Each test checks
//! what the session printed and, through the server's record, what each request carried.

mod support;

use serde_json::{Value, json};
use support::Cli;
use support::server::{Reply, Server, SseOut, anthropic_stream, openai_error, openai_stream};

const KEY: &str = "sk-session-e2e-0123456789abcdefghij";

fn ok(text: &str) -> Reply {
    Reply::sse(openai_stream(&[text], Some("stop"), true, Some((5, 3))))
}

/// A private keyfile in the user's home.
fn keyfile(cli: &Cli) -> String {
    let path = cli.user_home().join("key");
    std::fs::write(&path, KEY).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    path.display().to_string()
}

/// A model profile `name` on an OpenAI-compatible server, with `extra` at the top level.
#[expect(
    clippy::needless_pass_by_value,
    reason = "call sites pass json! inline"
)]
fn model(cli: &Cli, name: &str, server: &Server, extra: Value) {
    let mut p = json!({"version": 1, "provider": "openai", "model": format!("{name}-model"),
        "ephemeralSettings": {"auth-keyfile": keyfile(cli), "base-url": format!("{}/v1", server.url())}});
    for (k, v) in extra.as_object().unwrap() {
        if k == "ephemeralSettings" {
            for (sk, sv) in v.as_object().unwrap() {
                p["ephemeralSettings"][sk] = sv.clone();
            }
        } else {
            p[k] = v.clone();
        }
    }
    cli.write_profile_json(name, &p);
}

/// Runs `llxprt ARGS` with these input lines.
fn session(cli: &Cli, args: &[&str], lines: &[&str]) -> support::Output {
    let mut input = lines.join("\n");
    input.push('\n');
    cli.cmd(args).session_input(input).run()
}

/// The rendered output with the timings that change from run to run replaced.
fn stable(out: &support::Output) -> String {
    let text = out.render();
    let mut result = String::new();
    for line in text.lines() {
        // `served by a/default (openai a-model, 12 ms, 8 tokens)`
        let line = match line.find(" ms, ").filter(|_| line.starts_with("served by")) {
            Some(end) => {
                let start = line[..end].rfind(", ").map_or(end, |s| s + 2);
                format!("{}[MS]{}", &line[..start], &line[end..])
            }
            None => line.to_string(),
        };
        result.push_str(&line);
        result.push('\n');
    }
    result
}

fn messages(req: &support::server::Request) -> Vec<(String, String)> {
    req.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_string(),
                m["content"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(r, c)| ((*r).to_string(), (*c).to_string()))
        .collect()
}

#[test]
fn a_two_turn_conversation_sends_the_first_exchange_with_the_second() {
    let s = Server::start(vec![ok("Hello, Ada."), ok("You are Ada.")]);
    let cli = Cli::new();
    model(&cli, "m", &s, json!({}));
    let out = session(
        &cli,
        &["chat", "-i", "--profile", "m"],
        &["I am Ada.", "Who am I?", "/quit"],
    );
    insta::assert_snapshot!(stable(&out));
    let reqs = s.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        messages(&reqs[1]),
        pairs(&[
            ("user", "I am Ada."),
            ("assistant", "Hello, Ada."),
            ("user", "Who am I?")
        ])
    );
    assert!(!out.all().contains(KEY));
    // The input lines are kept in <root>/history/repl, private (SPEC §1).
    let history = cli.home().join("history").join("repl");
    let text = std::fs::read_to_string(&history).unwrap();
    assert!(text.contains("Who am I?"), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&history).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

/// SPEC §8.1: "`/profile load` keeps the conversation": the next message goes to the newly
/// loaded profile's server with the exchange held with the previous one.
#[test]
fn profile_load_keeps_the_conversation() {
    let first = Server::start(vec![ok("Hello, Ada.")]);
    let other = Server::start(vec![ok("You are Ada.")]);
    let cli = Cli::new();
    model(&cli, "m", &first, json!({}));
    model(&cli, "other", &other, json!({}));
    let out = session(
        &cli,
        &["chat", "-i", "--profile", "m"],
        &["I am Ada.", "/profile load other", "Who am I?", "/quit"],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stderr.contains("loaded profile \"other\""),
        "{}",
        out.stderr
    );
    assert_eq!(first.requests().len(), 1);
    let reqs = other.requests();
    assert_eq!(reqs.len(), 1, "{}", out.all());
    assert_eq!(reqs[0].body["model"], "other-model");
    assert_eq!(
        messages(&reqs[0]),
        pairs(&[
            ("user", "I am Ada."),
            ("assistant", "Hello, Ada."),
            ("user", "Who am I?")
        ])
    );
}

#[test]
fn set_is_checked_at_once_and_names_the_key() {
    let s = Server::start(vec![ok("fine")]);
    let cli = Cli::new();
    model(&cli, "m", &s, json!({}));
    let out = session(
        &cli,
        &["chat", "-i", "--profile", "m"],
        &[
            "/set context-limit -5",
            "/set streaming sideways",
            "/set contex-limit 5",
            "/set auth-key sk-typed-at-the-prompt-0123456789",
            "/set context-limit 9000",
            "/set context-limit",
            "/set stream_idle_timeout_ms",
            "/set --unset context-limit",
            "/set modelparam temperature 0.25",
            "/set custom-headers {\"x-team\": \"blue\"}",
            "hi",
        ],
    );
    insta::assert_snapshot!(stable(&out));
    let req = &s.requests()[0];
    assert_eq!(
        req.body["temperature"],
        json!(0.25),
        "the model parameter went out"
    );
    assert_eq!(
        req.header("x-team"),
        Some("blue"),
        "the session setting applied"
    );
    let history = std::fs::read_to_string(cli.home().join("history").join("repl")).unwrap();
    assert!(
        !history.contains("sk-typed"),
        "a line that may carry a secret is not kept: {history}"
    );
}

#[test]
fn profile_save_model_then_load_runs_the_saved_setup() {
    let s = Server::start(vec![ok("from the saved profile")]);
    let cli = Cli::new();
    let key = keyfile(&cli);
    let base = format!("{}/v1", s.url());
    let save = [
        "/provider openai".to_string(),
        "/model saved-model".into(),
        format!("/baseurl {base}"),
        format!("/keyfile {key}"),
        "/set modelparam temperature 0.5".into(),
        "/set context-limit 9000".into(),
        "/set failover_retry_count 3".into(),
        "/profile save model mine".into(),
        "/profile save model mine".into(),
        "/profile load mine".into(),
        "/set --unset failover_retry_count".into(),
        "/set --unset modelparam temperature".into(),
        "hello".into(),
    ];
    let lines: Vec<&str> = save.iter().map(String::as_str).collect();
    let out = session(&cli, &["chat", "-i"], &lines);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stderr.contains("saved model profile \"mine\""),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("replaced the existing profile \"mine\""),
        "saving over says so: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("loaded profile \"mine\""),
        "{}",
        out.stderr
    );
    let saved: Value = serde_json::from_str(&cli.read_profile("mine")).unwrap();
    assert_eq!(
        saved,
        json!({"version": 1, "provider": "openai", "model": "saved-model",
            "modelParams": {"temperature": 0.5},
            "ephemeralSettings": {"base-url": base, "auth-keyfile": key, "context-limit": 9000}}),
        "§3.1 settings and modelParams are saved, never §3.2 ones"
    );
    let req = &s.requests()[0];
    assert_eq!(req.body["model"], "saved-model");
    assert_eq!(req.body["temperature"], json!(0.5), "from the profile now");
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert!(!out.all().contains(KEY));
}

#[test]
fn clear_forgets_the_conversation() {
    let s = Server::start(vec![ok("one"), ok("two")]);
    let cli = Cli::new();
    model(&cli, "m", &s, json!({}));
    let out = session(
        &cli,
        &["chat", "-i", "--profile", "m"],
        &["first", "/clear", "second"],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stderr
            .contains("conversation cleared (1 exchange forgotten)")
    );
    assert_eq!(messages(&s.requests()[1]), pairs(&[("user", "second")]));
}

#[test]
fn a_failed_turn_is_not_kept_and_retry_sends_it_again() {
    let s = Server::start(vec![
        openai_error(400, "invalid_request_error", None, "bad day"),
        ok("answer one"),
        ok("answer two"),
    ]);
    let cli = Cli::new();
    model(&cli, "m", &s, json!({}));
    let out = session(
        &cli,
        &["chat", "-i", "--profile", "m"],
        &["first", "/retry", "/retry", "second"],
    );
    insta::assert_snapshot!(stable(&out));
    let reqs = s.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(messages(&reqs[0]), pairs(&[("user", "first")]));
    assert_eq!(
        messages(&reqs[1]),
        pairs(&[("user", "first")]),
        "the failed message left no trace: never two user turns in a row"
    );
    assert_eq!(
        messages(&reqs[2]),
        pairs(&[
            ("user", "first"),
            ("assistant", "answer one"),
            ("user", "second")
        ])
    );
}

#[test]
fn quit_and_end_of_input_leave_with_0() {
    let s = Server::start(vec![ok("unused")]);
    let cli = Cli::new();
    model(&cli, "m", &s, json!({}));
    let out = session(
        &cli,
        &["chat", "-i", "--profile", "m"],
        &["/quit", "never sent"],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(s.requests().is_empty(), "nothing after /quit is read");
    let out = cli
        .cmd(&["chat", "-i", "--profile", "m"])
        .session_input("")
        .run();
    assert_eq!(out.code, 0, "end of input (Ctrl-D) leaves: {}", out.all());
}

#[test]
fn old_exchanges_are_left_out_to_fit_a_small_context_limit() {
    // 30 tokens available: context-limit 40 minus max_tokens 10. Each message is 40
    // characters (10 tokens). The third turn's first attempt fails with 500 and is retried:
    // the notice is still said once.
    let s = Server::start(vec![
        ok(&"a".repeat(40)),
        ok(&"b".repeat(40)),
        openai_error(500, "server_error", None, "boom"),
        ok(&"c".repeat(40)),
    ]);
    let cli = Cli::new();
    model(
        &cli,
        "m",
        &s,
        json!({"modelParams": {"max_tokens": 10}, "ephemeralSettings": {"context-limit": 40}}),
    );
    let q = |c: char| c.to_string().repeat(40);
    let (q1, q2, q3) = (q('1'), q('2'), q('3'));
    let out = session(
        &cli,
        &["chat", "-i", "--profile", "m"],
        &[&q1, &q2, &q3, "/quit"],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    let reqs = s.requests();
    assert_eq!(reqs.len(), 4);
    assert_eq!(messages(&reqs[0]).len(), 1);
    assert_eq!(messages(&reqs[1]).len(), 3, "30 tokens fit whole");
    for r in &reqs[2..] {
        let m = messages(r);
        assert_eq!(m[0].1, q2, "the oldest exchange is left out: {m:?}");
        assert_eq!(m.len(), 3);
    }
    let notice = "[left out the 1 oldest exchange to fit the context-limit of m (40 tokens); the conversation is kept whole]";
    assert_eq!(
        out.stderr.matches(notice).count(),
        1,
        "said once: {}",
        out.stderr
    );
}

#[test]
fn json_with_i_is_a_usage_error() {
    let cli = Cli::new();
    let out = cli.run(&["chat", "-i", "--json"]);
    assert_eq!(out.code, 2, "{}", out.all());
}

#[test]
fn the_top_level_form_opens_the_session_or_answers_once() {
    let s = Server::start(vec![ok("top level")]);
    let cli = Cli::new();
    model(&cli, "m", &s, json!({}));
    // A top-level PROMPT needs --profile-load or a default profile.
    let out = cli.run(&["hello"]);
    assert_eq!(out.code, 3, "{}", out.all());
    let out = cli.run(&["--profile-load", "m", "hello"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(out.stdout, "top level\n");
    // Bare llxprt opens the session on a terminal (the test hook of `session` stands in for
    // one; nothing loaded here: it says how to create a profile).
    let out = session(&cli, &[], &["/profile list", "/quit"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stderr.contains("no profile loaded"), "{}", out.stderr);
    assert!(
        out.stdout.contains("m  model  openai/m-model"),
        "{}",
        out.stdout
    );
    // -i with a PROMPT sends it first.
    let out = session(&cli, &["--profile-load", "m", "-i", "first!"], &["/quit"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        s.requests().last().unwrap().body["messages"][0]["content"],
        "first!"
    );
    // A one-word prompt that is a command's name runs the command.
    let out = cli.run(&["stats"]);
    assert_ne!(out.stdout, "top level\n");
}

#[test]
fn a_profile_that_cannot_load_opens_the_session_with_nothing_loaded() {
    let cli = Cli::new();
    cli.write_profile("broken", "{\"version\": 1, \"provider\": \"openai\"\n");
    let out = session(
        &cli,
        &["chat", "-i", "--profile", "broken"],
        &["hello?", "/provider", "/quit"],
    );
    insta::assert_snapshot!(stable(&out));
}

#[test]
fn profile_commands_and_reports_in_the_session() {
    let s = Server::start(vec![ok("x")]);
    let cli = Cli::new();
    model(&cli, "a", &s, json!({}));
    model(&cli, "b", &s, json!({}));
    let out = session(
        &cli,
        &["chat", "-i", "--profile", "a"],
        &[
            "/profile save loadbalancer ha failover a b",
            "/profile save loadbalancer ha2 failover ha2 a",
            "/profile delete b",
            "/profile set-default ha",
            "/profile load",
            "2",
            "/baseurl http://elsewhere",
            "/keyfile /tmp/k",
            "/profile save model c",
            "/stats lb",
            "/diagnostics",
            "/auth anthropic login team1",
            "/quit",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    insta::assert_snapshot!(stable(&out));
    assert!(!out.all().contains(KEY), "no secret in the reports");
}

/// Waits (bounded) until the server has received `n` requests.
fn wait_for_requests(s: &Server, n: usize) {
    let start = std::time::Instant::now();
    while s.requests().len() < n {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "the request never arrived"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[cfg(unix)]
#[test]
fn ctrl_c_during_an_answer_cancels_it_and_the_session_goes_on() {
    let s = Server::start(vec![Reply::no_response(5000), ok("second answer")]);
    let cli = Cli::new();
    model(&cli, "m", &s, json!({}));
    let run = cli
        .cmd(&["chat", "-i", "--profile", "m"])
        .session_input("never answered\nagain\n/quit\n")
        .spawn();
    wait_for_requests(&s, 1);
    run.interrupt();
    let out = run.wait();
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stderr.contains("cancelled (not kept"), "{}", out.stderr);
    assert_eq!(out.stdout, "second answer\n");
    let reqs = s.requests();
    assert_eq!(
        reqs.len(),
        2,
        "a cancelled request does not fail over or retry"
    );
    assert_eq!(
        messages(&reqs[1]),
        pairs(&[("user", "again")]),
        "the cancelled message is not kept"
    );
}

#[cfg(unix)]
#[test]
fn a_one_shot_interrupted_by_ctrl_c_saves_the_state_and_exits_130() {
    let s = Server::start(vec![Reply::no_response(5000)]);
    let cli = Cli::new();
    model(&cli, "m", &s, json!({}));
    let run = cli.cmd(&["chat", "--profile", "m", "hello"]).spawn();
    wait_for_requests(&s, 1);
    run.interrupt();
    let out = run.wait();
    assert_eq!(out.code, 130, "{}", out.all());
    let state = std::fs::read_to_string(cli.home().join("state").join("state.json")).unwrap();
    let v: Value = serde_json::from_str(&state).unwrap();
    assert_eq!(v["lb/m"]["stats"]["requests"], 1, "{v}");
    assert_eq!(s.requests().len(), 1, "no failover after a cancel");
}

/// An Anthropic stream whose reply carries a signed thinking block before its text.
fn thinking_reply(thought: &str, answer: &str) -> Reply {
    let mut events = anthropic_stream(&[answer], true);
    let thinking = [
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": thought}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig-1"}}),
        json!({"type": "content_block_stop", "index": 0}),
    ];
    for (i, e) in thinking.into_iter().enumerate() {
        let name = e["type"].as_str().unwrap().to_string();
        events.insert(1 + i, SseOut::named(&name, e));
    }
    Reply::sse(events)
}

#[test]
fn reasoning_is_kept_with_a_reply_only_when_include_in_context_is_on() {
    for include in [true, false] {
        let s = Server::start(vec![
            thinking_reply("I ponder", "Answer"),
            thinking_reply("", "Two"),
        ]);
        let cli = Cli::new();
        cli.write_profile_json(
            "c",
            &json!({"version": 1, "provider": "anthropic", "model": "claude-test",
                "ephemeralSettings": {"auth-keyfile": keyfile(&cli), "base-url": s.url(),
                    "reasoning.includeInContext": include, "reasoning.stripFromContext": "none"}}),
        );
        let out = session(&cli, &["chat", "-i", "--profile", "c"], &["one", "two"]);
        assert_eq!(out.code, 0, "{}", out.all());
        assert_eq!(out.stdout, "Answer\nTwo\n");
        let sent = &s.requests()[1].body["messages"][1];
        assert_eq!(sent["role"], "assistant");
        let blocks = sent["content"].as_array().map_or(0, Vec::len);
        if include {
            assert_eq!(
                sent["content"][0],
                json!({"type": "thinking", "thinking": "I ponder", "signature": "sig-1"}),
                "{sent}"
            );
        } else {
            assert!(
                blocks <= 1,
                "no thinking block without includeInContext: {sent}"
            );
        }
    }
}

#[test]
fn loading_prints_warnings_as_one_line() {
    let s = Server::start(vec![ok("x")]);
    let cli = Cli::new();
    model(
        &cli,
        "w",
        &s,
        json!({"ephemeralSettings": {"auth-key": "sk-inline-secret-0123456789", "colour": "blue"}}),
    );
    let out = session(&cli, &["chat", "-i", "--profile", "w"], &["/quit"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let text = out.scrub(&out.stderr);
    assert!(
        text.contains("2 warnings: run llxprt profile validate [HOME]/profiles/w.json\n"),
        "{text}"
    );
    assert!(!out.all().contains("sk-inline-secret"));
}

#[test]
fn diagnostics_name_credential_sources_never_values() {
    let s = Server::start(vec![ok("x")]);
    let cli = Cli::new();
    model(&cli, "m", &s, json!({}));
    let out = cli.cmd(&["diagnostics", "--profile", "m", "--json"]).run();
    assert_eq!(out.code, 0, "{}", out.all());
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(v["loaded_profile"], "m");
    assert_eq!(v["backends"][0]["provider"], "openai");
    assert_eq!(v["backends"][0]["credentials"][0]["source"], "keyfile");
    assert_eq!(v["backends"][0]["circuit"], "closed");
    assert!(
        v["history_file"]
            .as_str()
            .unwrap()
            .ends_with("history/repl")
    );
    assert!(!out.all().contains(KEY));
    let text = cli.run(&["diagnostics", "--profile", "m"]);
    assert!(
        text.stdout.contains("  bucket default: keyfile "),
        "{}",
        text.stdout
    );
    let missing = cli.run(&["diagnostics", "--profile", "nope"]);
    assert_eq!(missing.code, 3, "{}", missing.all());
    assert!(
        missing
            .stdout
            .contains("cannot run: profile \"nope\" does not exist")
    );
}
