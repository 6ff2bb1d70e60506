//! The interactive session in a real pseudo-terminal (SPEC §8.1), typed into as a user would:
//! live notes printed (dimmed) before the answer and the spinner naming the backend it waits
//! for; the `/profile load` picker by name, by number, cancelled by Esc or an empty line, with
//! nothing typed there sent to the model; what `/set` lasts for across `/provider`, `/profile
//! load` and `/profile save`. Loopback servers, a temp `LLXPRT_HOME`; every wait is for text,
//! bounded generously.

#![cfg(unix)]

mod support;

use serde_json::json;
use support::Cli;
use support::pty::Pty;
use support::server::{Reply, Server, openai_error, openai_stream};

const KEY: &str = "sk-test-pty-0123456789abcdefghij";

fn ok_stream(text: &[&str]) -> Reply {
    Reply::sse(openai_stream(text, Some("stop"), true, Some((5, 3))))
}

fn model(cli: &Cli, name: &str, server: &Server) {
    let p = cli.keyed_model(
        name,
        "openai",
        &format!("{}/v1", server.url()),
        KEY,
        &json!({}),
    );
    cli.write_profile_json(name, &p);
}

#[test]
fn live_notes_come_before_the_answer_dimmed_and_quiet_hides_them() {
    let a = Server::start(vec![
        openai_error(503, "overloaded", None, "busy"),
        openai_error(503, "overloaded", None, "busy"),
    ]);
    // b keeps its headers back long enough for the spinner to be drawn.
    let b = Server::start(vec![
        Reply::slow_headers(1500, ok_stream(&["from b"])),
        ok_stream(&["b again"]),
    ]);
    let cli = Cli::new();
    model(&cli, "a", &a);
    model(&cli, "b", &b);
    cli.write_profile_json(
        "lb",
        &json!({"version": 1, "type": "loadbalancer", "policy": "failover", "backends": ["a", "b"],
            "ephemeralSettings": {"failover_retry_count": 0}}),
    );
    let mut t = Pty::spawn(&cli, &["chat", "--profile", "lb"], &[]);
    t.expect("loaded profile \"lb\"");
    t.say("hello?");
    t.expect("a 503");
    t.expect("→ failover to b");
    t.expect("waiting for b…");
    t.expect("from b");
    t.expect("served by b/default");
    let raw = String::from_utf8_lossy(&t.raw()).into_owned();
    assert!(
        raw.contains("\x1b[2m→ failover to b\x1b[0m"),
        "notes are dimmed on a terminal: {raw:?}"
    );
    // `/set quiet true` hides them for the rest of the session.
    t.say("/set quiet true");
    t.expect("quiet = true");
    t.say("again?");
    let seen = t.expect("served by b/default");
    assert!(!seen.contains("failover"), "{seen}");
    assert!(seen.contains("b again"), "{seen}");
    t.say("/quit");
    assert_eq!(t.wait(), 0);
}

#[test]
fn the_picker_takes_a_number_or_a_name_and_esc_or_an_empty_line_cancels() {
    let s = Server::start(vec![ok_stream(&["never asked"])]);
    let cli = Cli::new();
    model(&cli, "alpha", &s);
    model(&cli, "beta", &s);
    let mut t = Pty::spawn(&cli, &["chat"], &[]);
    t.expect("no profile loaded");
    t.say("/profile load");
    t.expect("2. beta");
    t.expect("number or name");
    t.line("2");
    t.expect("loaded profile \"beta\"");
    t.say("/profile load");
    t.expect("number or name");
    t.line("alpha");
    t.expect("loaded profile \"alpha\"");
    t.say("/profile load");
    t.expect("number or name");
    t.keys(b"\x1b");
    t.expect("cancelled: nothing loaded");
    t.say("/profile load");
    t.expect("number or name");
    t.line("");
    t.expect("cancelled: nothing loaded");
    t.say("/profile load");
    t.expect("number or name");
    t.line("what is the capital of France?");
    t.expect("is neither a number nor a name from the list");
    t.say("/provider");
    t.expect("provider: openai");
    t.say("/quit");
    assert_eq!(t.wait(), 0);
    assert!(
        s.requests().is_empty(),
        "nothing typed in the picker went to the model"
    );
}

#[test]
fn provider_and_profile_load_clear_the_session_overrides_and_quiet_stays() {
    let s = Server::start(vec![ok_stream(&["never asked"])]);
    let cli = Cli::new();
    model(&cli, "alpha", &s);
    let mut t = Pty::spawn(
        &cli,
        &["chat", "--profile", "alpha", "--set", "context-limit=500"],
        &[],
    );
    t.expect("loaded profile \"alpha\"");
    t.say("/set streaming disabled");
    t.expect("streaming = \"disabled\" (session)");
    t.say("/set failover_retry_count 2");
    t.expect("failover_retry_count = 2 (session)");
    t.say("/set quiet true");
    t.expect("quiet = true");
    t.say("/provider anthropic");
    t.expect("session settings cleared: context-limit, streaming");
    // §3.2 settings are not the model setup's: they stay.
    t.say("/set failover_retry_count");
    t.expect("failover_retry_count = 2 (session)");
    t.say("/profile load alpha");
    t.expect("session settings cleared (the profile's own apply): failover_retry_count");
    t.say("/set quiet");
    t.expect("quiet = true");
    t.say("/quit");
    assert_eq!(t.wait(), 0);
}

#[test]
fn profile_save_model_loads_what_it_saved() {
    let s = Server::start(vec![ok_stream(&["saved and used"])]);
    let cli = Cli::new();
    let keyfile = cli.user_home().join("mine.key");
    std::fs::write(&keyfile, KEY).expect("write keyfile");
    let mut t = Pty::spawn(&cli, &["chat"], &[]);
    t.expect("no profile loaded");
    t.say("/provider openai");
    t.expect("choose a model with /model NAME");
    t.say("/model mine-model");
    t.expect("model: mine-model");
    t.say(&format!("/baseurl {}/v1", s.url()));
    t.expect("base URL: http");
    t.say(&format!("/keyfile {}", keyfile.display()));
    t.expect("keyfile: ");
    t.say("/profile save model mine");
    t.expect("loaded profile \"mine\"");
    t.say("hello?");
    t.expect("saved and used");
    t.expect("served by mine/default");
    t.say("/quit");
    assert_eq!(t.wait(), 0);
}
