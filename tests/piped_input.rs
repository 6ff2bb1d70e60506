//! A one-shot's prompt from standard input, and a mistyped profile name, end to end (SPEC §8.1
//! "Piped input", §8.2): the real binary, a loopback upstream, and what it received.
//!
//! Piped input is one prompt — the PROMPT, a blank line, then the whole of standard input —
//! and one request, never one per line; the usage errors of the prompt's sources exit 2 before
//! any profile is loaded, so a missing profile does not hide them.

mod support;

use serde_json::{Value, json};
use support::server::{Reply, Server, openai_stream};
use support::{Cli, Output};

const KEY: &str = "sk-test-piped-0123456789abcdefghij";
const MIB: usize = 1024 * 1024;

/// A server answering `n` requests with "ok".
fn server(n: usize) -> Server {
    Server::start(
        (0..n)
            .map(|_| Reply::sse(openai_stream(&["ok"], Some("stop"), true, Some((5, 1)))))
            .collect(),
    )
}

/// Model profile `m` at `s`.
fn model(cli: &Cli, s: &Server) {
    let p = cli.keyed_model("m", "openai", &format!("{}/v1", s.url()), KEY, &json!({}));
    cli.write_profile_json("m", &p);
}

/// The content of the last message of each request the server received.
fn prompts(s: &Server) -> Vec<Value> {
    s.requests()
        .iter()
        .map(|r| {
            let messages = r.body["messages"].as_array().expect("messages");
            messages.last().expect("a message")["content"].clone()
        })
        .collect()
}

/// Asserts a usage error (exit 2) with exactly this stderr and nothing on stdout.
fn usage(out: &Output, stderr: &str) {
    assert_eq!(out.code, 2, "{}", out.render());
    assert_eq!(out.stdout, "", "{}", out.render());
    assert_eq!(out.stderr, stderr, "{}", out.render());
}

#[test]
fn piped_input_follows_the_prompt_after_a_blank_line() {
    let s = server(2);
    let cli = Cli::new();
    model(&cli, &s);
    let text = "fn main() {\n    println!(\"hi\");\n}\n";
    for argv in [
        &["chat", "--profile", "m", "explain"][..],
        &["--profile-load", "m", "explain"],
    ] {
        let out = cli.cmd(argv).stdin(text).run();
        assert_eq!(out.code, 0, "{}", out.render());
        assert_eq!(out.stdout, "ok\n", "{}", out.render());
    }
    let want = Value::String(format!("explain\n\n{text}"));
    assert_eq!(prompts(&s), [want.clone(), want], "one request per run");
}

#[test]
fn piped_input_without_a_prompt_is_one_request() {
    let s = server(3);
    let cli = Cli::new();
    model(&cli, &s);
    let text = "first line\nsecond line\n\nthird line\n";
    let out = cli.cmd(&["chat", "--profile", "m"]).stdin(text).run();
    assert_eq!(out.code, 0, "{}", out.render());
    // The top-level form used to open the session and send each line as a request.
    let out = cli.cmd(&["--profile-load", "m"]).stdin(text).run();
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(out.stdout, "ok\n", "{}", out.render());
    assert_eq!(
        prompts(&s),
        [text, text],
        "one request per run, never one per line"
    );
}

#[test]
fn empty_stdin_without_a_prompt_is_a_usage_error_before_the_profile() {
    let s = server(1);
    let cli = Cli::new();
    model(&cli, &s);
    let want = "error: standard input is empty and no PROMPT was given\n\
                help: pipe the prompt in, or give it as PROMPT\n";
    for (argv, input) in [
        (&["chat", "--profile", "m"][..], ""),
        (&["chat", "--profile", "m"], " \n\n"),
        (&["--profile-load", "m"], ""),
        (&["chat", "--profile", "missing"], ""),
        (&["--profile-load", "missing"], ""),
    ] {
        usage(&cli.cmd(argv).stdin(input).run(), want);
    }
    assert!(s.requests().is_empty());
}

#[test]
fn stdin_over_8_mib_is_a_usage_error_before_the_profile() {
    let s = server(1);
    let cli = Cli::new();
    model(&cli, &s);
    let want = "error: standard input is over 8388608 bytes, the most a prompt may have\n";
    for argv in [
        &["chat", "--profile", "m"][..],
        &["chat", "--profile", "m", "explain"],
        &["--profile-load", "missing", "explain"],
    ] {
        usage(&cli.cmd(argv).stdin(vec![b'w'; 8 * MIB + 1]).run(), want);
    }
    assert!(s.requests().is_empty());
    // 8 MiB exactly is a prompt.
    let out = cli
        .cmd(&["chat", "--profile", "m"])
        .stdin(vec![b'w'; 8 * MIB])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(s.requests().len(), 1);
}

#[test]
fn the_session_needs_a_terminal() {
    let s = server(1);
    let cli = Cli::new();
    model(&cli, &s);
    let piped = "error: -i cannot be used with piped input: the interactive session reads a \
                 terminal\nhelp: drop -i to send standard input as one prompt (after PROMPT, if \
                 given)\n";
    usage(
        &cli.cmd(&["chat", "-i", "--profile", "m"])
            .stdin("hello\n")
            .run(),
        piped,
    );
    usage(
        &cli.cmd(&["--profile-load", "missing", "-i", "x"])
            .stdin("hello\n")
            .run(),
        piped,
    );
    // `</dev/null` is no input, and no terminal either.
    usage(
        &cli.cmd(&["--profile-load", "missing", "-i", "x"])
            .null_stdin()
            .run(),
        "error: -i needs a terminal on standard input\nhelp: drop -i to answer PROMPT once\n",
    );
    assert!(s.requests().is_empty());
}

#[test]
fn json_with_the_session_is_a_usage_error() {
    let cli = Cli::new();
    for argv in [
        &["chat", "-i", "--json", "--profile", "missing"][..],
        &["chat", "--json", "-i"],
    ] {
        let out = cli.cmd(argv).null_stdin().run();
        assert_eq!(out.code, 2, "{}", out.render());
        assert!(out.stderr.contains("--json"), "{}", out.render());
    }
}

#[test]
fn dev_null_is_no_input() {
    let s = server(1);
    let cli = Cli::new();
    model(&cli, &s);
    usage(
        &cli.cmd(&["chat", "--profile", "m"]).null_stdin().run(),
        "error: no prompt: standard input is neither a terminal nor a pipe or file\n\
         help: give a PROMPT, or pipe one in (the interactive session needs a terminal)\n",
    );
    let out = cli
        .cmd(&["chat", "--profile", "m", "hi"])
        .null_stdin()
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(prompts(&s), ["hi"]);
}

#[test]
fn a_file_on_stdin_is_input() {
    let s = server(1);
    let cli = Cli::new();
    model(&cli, &s);
    let path = cli.user_home().join("notes.txt");
    std::fs::write(&path, "from a file\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_llxprt"))
        .args(["chat", "--profile", "m", "summarise"])
        .env_clear()
        .env("LLXPRT_HOME", cli.home())
        .env("HOME", cli.user_home())
        .env("NO_COLOR", "1")
        .stdin(std::fs::File::open(&path).unwrap())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(prompts(&s), ["summarise\n\nfrom a file\n"]);
}

#[test]
fn a_mistyped_profile_name_gets_a_did_you_mean() {
    let s = server(1);
    let cli = Cli::new();
    model(&cli, &s);
    let p = cli.keyed_model(
        "work",
        "openai",
        &format!("{}/v1", s.url()),
        KEY,
        &json!({}),
    );
    cli.write_profile_json("work", &p);
    let hint = "help: did you mean \"work\"?\n";
    for argv in [
        &["chat", "--profile", "wrok", "hi"][..],
        &["--profile-load", "wokr", "hi"],
        &["chat", "--profile", "wrk", "--json", "hi"],
    ] {
        let out = cli.run(argv);
        assert_eq!(out.code, 3, "{}", out.render());
        assert!(out.stderr.ends_with(hint), "{}", out.render());
    }
    for argv in [
        &["profile", "show", "wrok"][..],
        &["profile", "delete", "wrok"],
        &["profile", "set-default", "wrok"],
    ] {
        let out = cli.run(argv);
        assert_eq!(out.code, 3, "{}", out.render());
        assert_eq!(
            out.stderr,
            format!("error: profile \"wrok\" does not exist\n{hint}"),
            "{}",
            out.render()
        );
    }
    // Nothing close: no guess.
    let out = cli.run(&["chat", "--profile", "zzzzzzzz", "hi"]);
    assert_eq!(out.code, 3, "{}", out.render());
    assert!(!out.stderr.contains("did you mean"), "{}", out.render());
    // The session's /profile load shares the lookup.
    let out = cli
        .cmd(&["chat", "-i", "--profile", "m"])
        .session_input("/profile load wrok\n/quit\n")
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    assert!(out.stderr.contains(hint), "{}", out.render());
    assert!(s.requests().is_empty());
}
