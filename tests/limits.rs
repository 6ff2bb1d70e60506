//! Limits on every input from outside (SPEC §7, §6.2; the table is `docs/limits.md`): one test
//! per input, named after it, with an input just over its limit. Each one asserts the exit
//! code (or the status, or the error value) and the message a user sees, and that nothing
//! panicked. Where the input comes from the command line or a file, the real binary runs;
//! HTTP and SSE limits are met over real loopback sockets; where an end-to-end input would
//! take tens of megabytes (a 64 MiB body, a million events, a 16 MiB event), the library
//! function that enforces the limit is driven directly at the limit and one past it.
//!
//! The limits are written here as numbers (not read from the crate's constants), so a changed
//! limit fails a test until `docs/limits.md` is changed with it.

mod support;

use std::fmt::Write as _;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use serde_json::json;
use support::serve::{Serve, raw};
use support::server::{Reply, Server, SseOut, openai_stream};
use support::{Cli, Output};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
const KEY: &str = "sk-test-limits-0123456789abcdefghij";

/// The run ended on its own terms: no panic anywhere in its output.
fn no_panic(out: &Output) {
    assert!(
        !out.all().contains("panicked"),
        "a panic:\n{}",
        out.render()
    );
    assert!(out.code != 101 && out.code >= 0, "{}", out.render());
}

/// Asserts the exit code and that stderr (or stdout) holds `needle`.
fn expect(out: &Output, code: i32, needle: &str) {
    no_panic(out);
    assert_eq!(out.code, code, "{}", out.render());
    assert!(
        out.all().contains(needle),
        "expected {needle:?} in:\n{}",
        out.render()
    );
}

/// A private file (mode 0600) with these bytes.
fn private_file(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// A sparse file of exactly `len` bytes (zeros): the binary reads it, the disk holds nothing.
fn sparse_file(path: &Path, len: u64) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::File::create(path).unwrap().set_len(len).unwrap();
}

/// An OpenAI model profile `name` at `base`, with a keyfile and no retries (one attempt per
/// request, so each test sees one outcome).
fn model(cli: &Cli, name: &str, base: &str) -> PathBuf {
    let keyfile = cli.user_home().join(format!("{name}.key"));
    private_file(&keyfile, KEY.as_bytes());
    cli.write_profile_json(
        name,
        &json!({"version": 1, "provider": "openai", "model": "m",
                "ephemeralSettings": {"auth-keyfile": keyfile.to_str().unwrap(),
                                      "base-url": base, "failover_retry_count": 0}}),
    );
    keyfile
}

fn openai_base(s: &Server) -> String {
    format!("{}/v1", s.url())
}

/// A JSON model profile of exactly `len` bytes (padded in `modelParams`).
fn profile_of_len(len: usize) -> String {
    let text = |pad: usize| {
        format!(
            "{{\"version\":1,\"provider\":\"openai\",\"model\":\"m\",\"modelParams\":{{\"pad\":\"{}\"}}}}",
            "a".repeat(pad)
        )
    };
    let overhead = text(0).len();
    let s = text(len - overhead);
    assert_eq!(s.len(), len);
    s
}

/// A model profile whose `modelParams` nest `depth` containers deep in all (the profile's own
/// object and `modelParams` included).
fn profile_nested(depth: usize) -> String {
    let n = depth - 2;
    format!(
        "{{\"version\":1,\"provider\":\"openai\",\"model\":\"m\",\"modelParams\":{{\"x\":{}{}}}}}",
        "[".repeat(n),
        "]".repeat(n)
    )
}

// ---------------------------------------------------------------------------------------------
// Profile files

#[test]
fn profile_file_size() {
    let cli = Cli::new();
    let at = cli.write_profile("at", &profile_of_len(MIB));
    let over = cli.write_profile("over", &profile_of_len(MIB + 1));
    let out = cli.run(&["profile", "validate", at.to_str().unwrap()]);
    expect(&out, 0, "ok:");
    let out = cli.run(&["profile", "validate", over.to_str().unwrap()]);
    expect(
        &out,
        1,
        "the file is larger than 1048576 bytes, the most a profile may have",
    );
    // Loaded to run: a configuration error (SPEC §8.2), naming the file and the limit.
    let out = cli.run(&["chat", "--profile", "over", "hi"]);
    expect(&out, 3, "over.json");
    expect(&out, 3, "larger than 1048576 bytes");
    expect(&out, 3, "help: run llxprt profile validate");
}

#[test]
fn profile_json_nesting() {
    // serde_json's recursion limit: 127 nested containers read, the 128th refused.
    let cli = Cli::new();
    let at = cli.write_profile("at", &profile_nested(127));
    let over = cli.write_profile("over", &profile_nested(128));
    let out = cli.run(&["profile", "validate", at.to_str().unwrap()]);
    expect(&out, 0, "ok:");
    let out = cli.run(&["profile", "validate", over.to_str().unwrap()]);
    expect(&out, 1, "invalid JSON: recursion limit exceeded");
    expect(
        &out,
        1,
        "help: the document is nested too deeply to be a profile",
    );
    let out = cli.run(&["chat", "--profile", "over", "hi"]);
    expect(&out, 3, "recursion limit exceeded");
}

/// Writes `n` valid model profiles `b1`…`bn` and returns their names.
fn backends(cli: &Cli, n: usize) -> Vec<String> {
    (1..=n)
        .map(|i| {
            let name = format!("b{i}");
            cli.write_profile_json(
                &name,
                &json!({"version": 1, "provider": "ollama", "model": "m"}),
            );
            name
        })
        .collect()
}

#[test]
fn load_balancer_backends() {
    let cli = Cli::new();
    let names = backends(&cli, 65);
    let lb = |n: usize| json!({"version": 1, "type": "loadbalancer", "policy": "failover", "backends": names[..n]});
    let at = cli.write_profile_json("at", &lb(64));
    let over = cli.write_profile_json("over", &lb(65));
    let out = cli.run(&["profile", "validate", at.to_str().unwrap()]);
    expect(&out, 0, "ok:");
    let out = cli.run(&["profile", "validate", over.to_str().unwrap()]);
    expect(&out, 1, "expected at most 64 items, found 65");
    expect(&out, 1, "/backends");
    // The synonym `profiles` has the same limit.
    let synonym = cli.write_profile_json(
        "synonym",
        &json!({"version": 1, "type": "loadbalancer", "policy": "failover", "profiles": names}),
    );
    let out = cli.run(&["profile", "validate", synonym.to_str().unwrap()]);
    expect(&out, 1, "expected at most 64 items, found 65");
    // Saving one from the command line: a usage error.
    let mut args: Vec<&str> = vec!["profile", "save", "loadbalancer", "big", "failover"];
    args.extend(names.iter().map(String::as_str));
    let out = cli.run(&args);
    expect(&out, 2, "expected at most 64 items, found 65");
    assert!(!cli.profile_path("big").exists());
}

#[test]
fn model_profile_buckets() {
    let cli = Cli::new();
    let names: Vec<String> = (1..=65).map(|i| format!("acct{i}")).collect();
    let m = |n: usize| json!({"version": 1, "provider": "openai", "model": "m", "auth": {"type": "apikey", "buckets": names[..n]}});
    let at = cli.write_profile_json("at", &m(64));
    let over = cli.write_profile_json("over", &m(65));
    let out = cli.run(&["profile", "validate", at.to_str().unwrap()]);
    expect(&out, 0, "ok:");
    let out = cli.run(&["profile", "validate", over.to_str().unwrap()]);
    expect(&out, 1, "expected at most 64 items, found 65");
    expect(&out, 1, "/auth/buckets");
    let mut args: Vec<&str> = vec![
        "profile",
        "save",
        "model",
        "big",
        "--provider",
        "openai",
        "--model",
        "m",
    ];
    args.extend(names.iter().map(String::as_str));
    let out = cli.run(&args);
    expect(&out, 2, "expected at most 64 items, found 65");
    assert!(!cli.profile_path("big").exists());
}

#[test]
fn profile_numbers_too_large_for_their_type() {
    let cli = Cli::new();
    let file = |name: &str, settings: &str| {
        cli.write_profile(
            name,
            &format!(
                "{{\"version\": 1, \"provider\": \"openai\", \"model\": \"m\", \"ephemeralSettings\": {settings}}}"
            ),
        )
    };
    // u64: 2^64 - 1 is read, 2^64 is refused with its place and the limit.
    let at = file("at", "{\"context-limit\": 18446744073709551615}");
    let out = cli.run(&["profile", "validate", at.to_str().unwrap()]);
    expect(&out, 0, "ok:");
    let over = file("over", "{\"context-limit\": 18446744073709551616}");
    let out = cli.run(&["profile", "validate", over.to_str().unwrap()]);
    expect(&out, 1, "at most 18446744073709551615");
    expect(&out, 1, "/ephemeralSettings/context-limit");
    // u32: 2^32 is refused the same way.
    let over32 = file("over32", "{\"max_attempts\": 4294967296}");
    let out = cli.run(&["profile", "validate", over32.to_str().unwrap()]);
    expect(&out, 1, "at most 4294967295");
    expect(&out, 1, "/ephemeralSettings/max_attempts");
    // A whole number written as a decimal is named too (JSON Schema calls it an integer).
    let decimal = file("decimal", "{\"context-limit\": 2000.0}");
    let out = cli.run(&["profile", "validate", decimal.to_str().unwrap()]);
    expect(&out, 1, "/ephemeralSettings/context-limit");
    expect(&out, 1, "whole number");
}

// ---------------------------------------------------------------------------------------------
// Trace files

const TRACE_HEAD: &str = r#"{"version": 1, "profile": "p", "profiles": {"p": {"version": 1, "provider": "openai", "model": "m"}}"#;

#[test]
fn trace_file_size() {
    let cli = Cli::new();
    let path = cli.home().join("big-trace.json");
    sparse_file(&path, 64 * MIB as u64 + 1);
    let started = Instant::now();
    let out = cli.run(&["simulate", path.to_str().unwrap()]);
    expect(&out, 3, "file is larger than the 67108864-byte limit");
    expect(&out, 3, "cannot read trace");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn trace_json_nesting() {
    let cli = Cli::new();
    let trace = |depth: usize| {
        // The trace object, `profiles`, `p`, `modelParams`: 4 levels before the arrays.
        let n = depth - 4;
        format!(
            r#"{{"version": 1, "profile": "p", "profiles": {{"p": {{"version": 1, "provider": "openai", "model": "m", "modelParams": {{"x": {}{}}}}}}}, "requests": [{{"at_ms": 0}}]}}"#,
            "[".repeat(n),
            "]".repeat(n)
        )
    };
    let at = cli.home().join("at.json");
    std::fs::write(&at, trace(127)).unwrap();
    let out = cli.run(&["simulate", at.to_str().unwrap()]);
    expect(&out, 0, "#1");
    let over = cli.home().join("over.json");
    std::fs::write(&over, trace(128)).unwrap();
    let out = cli.run(&["simulate", over.to_str().unwrap()]);
    expect(&out, 3, "recursion limit exceeded");
    expect(&out, 3, "is not valid");
}

#[test]
fn trace_request_count() {
    let cli = Cli::new();
    let path = cli.home().join("many.json");
    std::fs::write(
        &path,
        format!(r#"{TRACE_HEAD}, "requests": {{"count": 10000001, "interval_ms": 1}}}}"#),
    )
    .unwrap();
    let out = cli.run(&["simulate", path.to_str().unwrap()]);
    expect(
        &out,
        3,
        "10000001 requests; a trace may ask for at most 10000000",
    );
    assert!(out.stdout.is_empty(), "nothing ran: {}", out.stdout);
}

// ---------------------------------------------------------------------------------------------
// HTTP responses and event streams

/// An OpenAI error body of exactly `len` bytes whose message sits after the padding.
fn error_body_of_len(len: usize) -> String {
    let text = |pad: usize| {
        format!(
            "{{\"pad\":\"{}\",\"error\":{{\"message\":\"marker-after-the-padding\",\"type\":\"invalid_request_error\"}}}}",
            "p".repeat(pad)
        )
    };
    let s = text(len - text(0).len());
    assert_eq!(s.len(), len);
    s
}

#[test]
fn http_error_body() {
    // At 1 MiB the whole body is read (its message, after the padding, is shown); at 1 MiB + 1
    // the body is cut at 1 MiB: no longer JSON, so the message is its beginning, capped.
    let s = Server::start(vec![
        Reply::text(400, "application/json", &error_body_of_len(MIB)),
        Reply::text(400, "application/json", &error_body_of_len(MIB + 1)),
    ]);
    let cli = Cli::new();
    model(&cli, "a", &openai_base(&s));
    let out = cli.run(&["chat", "--profile", "a", "hi"]);
    expect(&out, 1, "client 400: marker-after-the-padding");
    let out = cli.run(&["chat", "--profile", "a", "hi"]);
    expect(
        &out,
        1,
        "client 400: [error body cut at 1048576 bytes] {\"pad\":\"ppp",
    );
    assert!(
        !out.all().contains("marker-after-the-padding"),
        "nothing past 1 MiB is read"
    );
    assert!(out.stderr.len() < 8 * KIB, "the message is capped");
}

#[test]
fn http_response_body() {
    // 64 MiB is too much for a test to send; the cap is `Attempt::read_body`'s, which
    // `chat` calls with MAX_BODY (64 MiB) for a non-streamed response. Here with 1 KiB.
    use llxprt::shell::protocol::HttpRequest;
    use llxprt::shell::transport::{self, Body, Deadlines, Msg};
    let s = Server::start(vec![
        Reply::text(200, "application/json", &"b".repeat(KIB)),
        Reply::text(200, "application/json", &"b".repeat(KIB + 1)),
    ]);
    let read = |cap: usize| {
        let req = HttpRequest {
            url: format!("{}/v1/chat/completions", s.url()),
            headers: Vec::new(),
            body: json!({}),
        };
        let deadlines = Deadlines {
            connect_ms: 5_000,
            first_byte_ms: 10_000,
            idle_ms: 10_000,
        };
        let mut att = transport::start(req, deadlines, true, Arc::new(AtomicBool::new(false)));
        assert!(matches!(att.next_msg(), Msg::Head { status: 200, .. }));
        att.read_body(cap)
    };
    match read(KIB) {
        Body::Complete(b) => assert_eq!(b.len(), KIB),
        other => panic!("at the cap the body is read whole: {other:?}"),
    }
    // The second reply is one byte longer than the cap.
    assert!(
        matches!(read(KIB), Body::TooLarge),
        "one byte over the cap fails"
    );
}

/// An OpenAI stream chunk line (`data: …` without its line end) of exactly `len` bytes that
/// says "hi".
fn chunk_line_of_len(len: usize) -> String {
    let text = |pad: usize| {
        format!(
            "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"hi\"}}}}],\"pad\":\"{}\"}}",
            "q".repeat(pad)
        )
    };
    let s = text(len - text(0).len());
    assert_eq!(s.len(), len);
    s
}

fn stream_with_line(line: &str) -> Reply {
    let mut events = vec![SseOut::raw(format!("{line}\n\n"))];
    events.extend(openai_stream(&[], Some("stop"), true, None));
    Reply::sse(events)
}

#[test]
fn sse_line_length() {
    // After output began: the same limit, and the interruption says which it was.
    let mut after_output = openai_stream(&["so far"], None, false, None);
    after_output.push(SseOut::raw(format!(
        "{}\n\n",
        chunk_line_of_len(4 * MIB + 1)
    )));
    let s = Server::start(vec![
        stream_with_line(&chunk_line_of_len(4 * MIB)),
        stream_with_line(&chunk_line_of_len(4 * MIB + 1)),
        Reply::sse(after_output),
    ]);
    let cli = Cli::new();
    model(&cli, "a", &openai_base(&s));
    let out = cli.run(&["chat", "--profile", "a", "hi"]);
    no_panic(&out);
    assert_eq!(out.code, 0, "a 4 MiB line is read: {}", out.render());
    assert_eq!(out.stdout, "hi\n");
    let out = cli.run(&["chat", "--profile", "a", "hi"]);
    expect(
        &out,
        1,
        "network: event stream line longer than 4194304 bytes",
    );
    let out = cli.run(&["chat", "--profile", "a", "hi"]);
    expect(
        &out,
        1,
        "interrupted: event stream line longer than 4194304 bytes",
    );
}

#[test]
fn sse_event_size() {
    // 16 MiB of data lines (each line's data and the newline joining it to the next) in one
    // event: read; one byte more: refused. Lines stay under the 4 MiB line limit.
    use llxprt::shell::protocol::SseEvent;
    use llxprt::shell::sse::{SseDecoder, SseError};
    let feed = |total: usize| -> Result<Vec<SseEvent>, SseError> {
        let mut d = SseDecoder::default();
        let mut left = total;
        while left > 0 {
            let data = (MIB - 1).min(left - 1);
            left -= data + 1;
            let mut line = b"data:".to_vec();
            line.resize(line.len() + data, b'e');
            line.push(b'\n');
            d.feed(&line)?;
        }
        d.feed(b"\n")
    };
    let events = feed(16 * MIB).expect("16 MiB of data is one event");
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].data.len(),
        16 * MIB - 1,
        "the last newline is cut"
    );
    assert_eq!(
        feed(16 * MIB + 1).unwrap_err(),
        SseError::EventTooLarge { limit: 16 * MIB }
    );
    assert_eq!(
        SseError::EventTooLarge { limit: 16 * MIB }.to_string(),
        "event stream event larger than 16777216 bytes"
    );
}

#[test]
fn sse_event_count() {
    // A million events are read; the next one fails the stream.
    use llxprt::shell::sse::{SseDecoder, SseError};
    const PER_FEED: usize = 10_000;
    let chunk = b"data:x\n\n".repeat(PER_FEED);
    let mut d = SseDecoder::default();
    let mut seen = 0;
    for _ in 0..1_000_000 / PER_FEED {
        seen += d.feed(&chunk).expect("under the cap").len();
    }
    assert_eq!(seen, 1_000_000);
    assert_eq!(
        d.feed(b"data:x\n\n").unwrap_err(),
        SseError::TooManyEvents { limit: 1_000_000 }
    );
    assert_eq!(
        SseError::TooManyEvents { limit: 1_000_000 }.to_string(),
        "event stream has more than 1000000 events"
    );
    // Comments and events without data are not events: they do not count.
    let mut d = SseDecoder::default();
    for _ in 0..1_000_000 / PER_FEED {
        d.feed(&chunk).unwrap();
    }
    assert!(d.feed(b": keep-alive\n\nevent: x\n\n").is_ok());
}

// ---------------------------------------------------------------------------------------------
// Keys, credentials, tokens

#[test]
fn keyfile_size() {
    let s = Server::start(vec![Reply::sse(openai_stream(
        &["never"],
        Some("stop"),
        true,
        None,
    ))]);
    let cli = Cli::new();
    let keyfile = model(&cli, "a", &openai_base(&s));
    private_file(&keyfile, &vec![b'k'; 64 * KIB + 1]);
    let out = cli.run(&["chat", "--profile", "a", "hi"]);
    expect(&out, 1, "file is larger than the 65536-byte limit");
    expect(&out, 1, "a.key");
    assert!(s.requests().is_empty(), "no request without a key");
    assert!(
        !out.all().contains("kkkkkkkk"),
        "the content is never shown"
    );
    // The same file given to auth login.
    let out = cli.run(&[
        "auth",
        "login",
        "openai",
        "work",
        "--key-file",
        keyfile.to_str().unwrap(),
    ]);
    expect(&out, 1, "file is larger than the 65536-byte limit");
}

#[test]
fn api_key_on_stdin() {
    let cli = Cli::new();
    let out = cli
        .cmd(&["auth", "login", "openai", "work"])
        .stdin(vec![b'k'; 64 * KIB + 1])
        .run();
    expect(&out, 1, "standard input is over 65536 bytes");
    assert!(!cli.home().join("oauth/openai/work.json").exists());
}

#[test]
fn credential_file_size() {
    let s = Server::start(vec![Reply::sse(openai_stream(
        &["never"],
        Some("stop"),
        true,
        None,
    ))]);
    let cli = Cli::new();
    cli.write_profile_json(
        "a",
        &json!({"version": 1, "provider": "openai", "model": "m",
                "auth": {"type": "apikey", "buckets": ["work"]},
                "ephemeralSettings": {"base-url": openai_base(&s), "failover_retry_count": 0}}),
    );
    let file = cli.home().join("oauth/openai/work.json");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let mut bytes =
        format!("{{\"version\":1,\"kind\":\"apikey\",\"key\":\"{KEY}\",\"pad\":\"").into_bytes();
    bytes.resize(64 * KIB, b'z');
    bytes.extend_from_slice(b"\"}");
    private_file(&file, &bytes);
    let out = cli.run(&["chat", "--profile", "a", "hi"]);
    expect(&out, 1, "file is larger than the 65536-byte limit");
    expect(&out, 1, "work.json");
    assert!(s.requests().is_empty());
    let out = cli.run(&["auth", "status"]);
    expect(&out, 0, "file is larger than the 65536-byte limit");
    assert!(!out.all().contains(KEY));
}

#[test]
fn token_endpoint_answer_size() {
    // The device endpoint answers 1 MiB + 1 bytes: refused without reading further.
    let body = format!(
        "{{\"device_code\":\"dc\",\"user_code\":\"UC\",\"verification_uri\":\"https://example.invalid/d\",\"pad\":\"{}\"}}",
        "d".repeat(MIB)
    );
    let s = Server::start(vec![Reply::text(200, "application/json", &body)]);
    let cli = Cli::new();
    let url = format!("{}/device", s.url());
    let token = format!("{}/token", s.url());
    let out = cli.run(&[
        "auth",
        "login",
        "openai",
        "work",
        "--device-url",
        &url,
        "--token-url",
        &token,
        "--client-id",
        "c",
        "--no-browser",
    ]);
    expect(&out, 1, "cannot read the answer of");
    expect(&out, 1, "1048576");
}

#[test]
fn access_token_length() {
    // 16 KiB tokens are stored; one character more is refused, naming the limit.
    let device = json!({"device_code": "dc", "user_code": "UC",
                        "verification_uri": "https://example.invalid/d", "interval": 1});
    let token = |len: usize| {
        Reply::json(
            200,
            json!({"access_token": "t".repeat(len), "token_type": "Bearer"}),
        )
    };
    let s = Server::start(vec![
        Reply::json(200, device.clone()),
        token(16 * KIB),
        Reply::json(200, device),
        token(16 * KIB + 1),
    ]);
    let cli = Cli::new();
    let url = format!("{}/device", s.url());
    let token_url = format!("{}/token", s.url());
    let login = |bucket: &str| {
        cli.run(&[
            "auth",
            "login",
            "openai",
            bucket,
            "--device-url",
            &url,
            "--token-url",
            &token_url,
            "--client-id",
            "c",
            "--no-browser",
        ])
    };
    let out = login("at");
    no_panic(&out);
    assert_eq!(out.code, 0, "{}", out.render());
    assert!(cli.home().join("oauth/openai/at.json").exists());
    let out = login("over");
    expect(&out, 1, "access token of 16385 bytes");
    expect(&out, 1, "at most 16384");
    assert!(!cli.home().join("oauth/openai/over.json").exists());
    assert!(!out.all().contains(&"t".repeat(100)), "no token is shown");
}

// ---------------------------------------------------------------------------------------------
// Standard input and the state file

#[test]
fn stdin_prompt_size() {
    let s = Server::start(vec![Reply::sse(openai_stream(
        &["never"],
        Some("stop"),
        true,
        None,
    ))]);
    let cli = Cli::new();
    model(&cli, "a", &openai_base(&s));
    let out = cli
        .cmd(&["chat", "--profile", "a"])
        .stdin(vec![b'w'; 8 * MIB + 1])
        .run();
    expect(
        &out,
        2,
        "standard input is over 8388608 bytes, the most a prompt may have",
    );
    assert!(s.requests().is_empty());
}

/// A line of the interactive session read from a pipe: one over 16 MiB is refused and skipped,
/// never sent or held whole; the lines around it are read as usual (SPEC §7).
#[test]
fn session_line_length() {
    let s = Server::start(vec![Reply::sse(openai_stream(
        &["short answer"],
        Some("stop"),
        true,
        None,
    ))]);
    let cli = Cli::new();
    model(&cli, "a", &openai_base(&s));
    let mut input = vec![b'w'; 16 * MIB + 1];
    input.extend_from_slice(b"\nhello\n/quit\n");
    let out = cli
        .cmd(&["chat", "-i", "--profile", "a"])
        .session_input(input)
        .run();
    expect(
        &out,
        0,
        "a line of input is longer than 16777216 bytes, the most one line may have; it was skipped",
    );
    assert!(out.stdout.contains("short answer"), "{}", out.render());
    let reqs = s.requests();
    assert_eq!(reqs.len(), 1, "only the short line was sent");
    assert_eq!(reqs[0].body["messages"][0]["content"], "hello");
}

/// A state file over its limit is no state llxprt wrote: it used to fail every chat until the
/// user deleted it. It is moved aside, whole, to `state.json.too-large` and the state starts
/// afresh with a warning naming both; the chat is answered and the state written again.
#[test]
fn state_file_size() {
    let s = Server::start(vec![Reply::sse(openai_stream(
        &["answered"],
        Some("stop"),
        true,
        None,
    ))]);
    let cli = Cli::new();
    model(&cli, "a", &openai_base(&s));
    let state = cli.home().join("state/state.json");
    let aside = cli.home().join("state/state.json.too-large");
    let over = 64 * MIB as u64 + 1;
    sparse_file(&state, over);
    let out = cli.run(&["chat", "--profile", "a", "hi"]);
    expect(&out, 0, "answered");
    let warning = format!(
        "warning: the state file {} was larger than the 67108864-byte limit; it was moved to {} and the state starts afresh",
        state.display(),
        aside.display()
    );
    expect(&out, 0, &warning);
    assert_eq!(s.requests().len(), 1);
    assert_eq!(std::fs::metadata(&aside).unwrap().len(), over, "kept whole");
    let shown = cli.run(&["stats", "--profile", "a", "--json"]);
    let v: serde_json::Value = serde_json::from_str(shown.stdout.trim()).unwrap();
    assert_eq!(v["lb"]["requests"], 1, "the new state file: {v}");
    // Once only: the next chat reads the new file without a word.
    let out = cli.run(&["chat", "--profile", "a", "hi"]);
    expect(&out, 0, "answered");
    assert!(!out.stderr.contains("warning"), "{}", out.render());
    // At the limit exactly, the file is read (and, not being JSON, replaced as before).
    sparse_file(&state, over - 1);
    let out = cli.run(&["chat", "--profile", "a", "hi"]);
    expect(&out, 0, "is not JSON");
    assert_eq!(std::fs::metadata(&aside).unwrap().len(), over);
    // A command that only reads the state moves it aside and says so too.
    sparse_file(&state, over);
    let out = cli.run(&["stats", "--profile", "a"]);
    expect(&out, 0, &warning);
    assert!(!state.exists());
}

// ---------------------------------------------------------------------------------------------
// Response headers

#[test]
fn retry_after_header() {
    // A date no server means (a 17-digit year) is not a wait; it is ignored, never overflows.
    let s = Server::start(vec![
        Reply::json(
            429,
            json!({"error": {"message": "slow down", "type": "rate_limit"}}),
        )
        .header("retry-after", "Wed, 21 Oct 99999999999999999 07:28:00 GMT"),
    ]);
    let cli = Cli::new();
    model(&cli, "a", &openai_base(&s));
    let out = cli.run(&[
        "chat",
        "--profile",
        "a",
        "--set",
        "retry_after_max_ms=1000",
        "hi",
    ]);
    expect(&out, 1, "rate_limit 429");
    assert_eq!(s.requests().len(), 1, "no wait-and-retry on that date");
}

// ---------------------------------------------------------------------------------------------
// serve: request heads, headers, bodies, connections

fn serve_fixture() -> (Server, Cli, Serve) {
    let s = Server::start(vec![Reply::sse(openai_stream(
        &["ok"],
        Some("stop"),
        true,
        None,
    ))]);
    let cli = Cli::new();
    model(&cli, "a", &openai_base(&s));
    let serve = Serve::start(&cli, &["--profile", "a"]);
    (s, cli, serve)
}

/// A `POST /v1/chat/completions` carrying `body`, the connection closed after it.
fn chat_post(body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

/// A refusal left the upstream untouched and serve alive.
fn refused_before_upstream(s: &Server, serve: &Serve) {
    assert!(
        s.requests().is_empty(),
        "refused before any upstream request"
    );
    assert!(!serve.log().contains("panicked"), "{}", serve.log());
}

/// `GET /health` with one padding header: the head (up to its final blank line) is exactly
/// `len` bytes.
fn head_of_len(len: usize) -> Vec<u8> {
    let text = |pad: usize| {
        format!(
            "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Pad: {}",
            "h".repeat(pad)
        )
    };
    let mut s = text(len - text(0).len());
    assert_eq!(s.len(), len);
    s.push_str("\r\n\r\n");
    s.into_bytes()
}

#[test]
fn serve_request_head() {
    let (_s, _cli, serve) = serve_fixture();
    let (status, text) = raw(serve.addr, &head_of_len(32 * KIB));
    assert_eq!(status, 200, "{text}");
    let (status, text) = raw(serve.addr, &head_of_len(32 * KIB + 1));
    assert_eq!(status, 431, "{text}");
    assert!(text.contains("request head too large"), "{text}");
    assert!(!serve.log().contains("panicked"), "{}", serve.log());
}

#[test]
fn serve_request_header_count() {
    let (_s, _cli, serve) = serve_fixture();
    // Host and Connection, then padding headers up to `n` in all.
    let request = |n: usize| {
        let mut s = "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n".to_string();
        for i in 2..n {
            let _ = write!(s, "X-H{i}: v\r\n");
        }
        s.push_str("\r\n");
        s.into_bytes()
    };
    let (status, text) = raw(serve.addr, &request(100));
    assert_eq!(status, 200, "{text}");
    let (status, text) = raw(serve.addr, &request(101));
    assert_eq!(status, 431, "{text}");
    assert!(text.contains("too many request headers"), "{text}");
    assert!(!serve.log().contains("panicked"), "{}", serve.log());
}

#[test]
fn serve_request_body() {
    let (s, _cli, serve) = serve_fixture();
    // Sent whole by a client that writes before it reads: still answered 413.
    let (status, text) = raw(serve.addr, &chat_post(&vec![b' '; 8 * MIB + 1]));
    assert_eq!(status, 413, "{text}");
    assert!(
        text.contains("the request body is 8388609 bytes; the limit is 8388608 (8 MiB)"),
        "{text}"
    );
    refused_before_upstream(&s, &serve);
}

#[test]
fn serve_request_json_nesting() {
    let (s, _cli, serve) = serve_fixture();
    let body = |depth: usize| {
        // The request object and `metadata`: 2 levels before the arrays.
        let n = depth - 2;
        format!(
            r#"{{"messages": [{{"role": "user", "content": "hi"}}], "metadata": {{"x": {}{}}}}}"#,
            "[".repeat(n),
            "]".repeat(n)
        )
    };
    let (status, text) = raw(serve.addr, &chat_post(body(128).as_bytes()));
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("the request body is not JSON: recursion limit exceeded"),
        "{text}"
    );
    refused_before_upstream(&s, &serve);
}

#[test]
fn serve_open_connections() {
    let (_s, _cli, serve) = serve_fixture();
    // 512 idle connections are held open; the 513th is answered 503 at once and closed.
    let held: Vec<TcpStream> = (0..512)
        .map(|_| TcpStream::connect(serve.addr).expect("connect"))
        .collect();
    let mut extra = TcpStream::connect(serve.addr).expect("connect");
    extra
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = String::new();
    let _ = extra.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too many open connections"), "{answer}");
    drop(held);
    // Once they are gone, connections are served again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = raw(
            serve.addr,
            b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        );
        if status == 200 || Instant::now() > deadline {
            assert_eq!(status, 200);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!serve.log().contains("panicked"), "{}", serve.log());
}

// ---------------------------------------------------------------------------------------------
// The OAuth redirect listener

#[test]
fn oauth_redirect_request_head() {
    let cli = Cli::new();
    let p = support::oauth::spawn(
        &cli,
        &[
            "auth",
            "login",
            "openai",
            "work",
            "--oauth",
            "--authorize-url",
            "http://127.0.0.1:9/authorize",
            "--token-url",
            "http://127.0.0.1:9/token",
            "--client-id",
            "c",
            "--no-browser",
            "--timeout",
            "30",
        ],
    );
    let line = p.wait_line(
        |l| l.contains("for the redirect to http://127.0.0.1:"),
        Duration::from_secs(20),
    );
    let addr: std::net::SocketAddr = line
        .split("for the redirect to http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no listener address in {line:?}"));
    // A head of exactly `len` bytes, its final blank line included, for another path.
    let head = |len: usize| {
        let text = |pad: usize| {
            format!(
                "GET /elsewhere HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
                "o".repeat(pad)
            )
        };
        let s = text(len - text(0).len());
        assert_eq!(s.len(), len);
        s.into_bytes()
    };
    let (status, text) = raw(addr, &head(16 * KIB));
    assert_eq!(status, 404, "read whole, and not the callback: {text}");
    let (status, text) = raw(addr, &head(16 * KIB + 1));
    assert_eq!(status, 400, "{text}");
    // The login keeps waiting for its redirect; one with a foreign state ends it.
    let (status, _) = raw(addr, b"GET /callback?code=x&state=foreign HTTP/1.1\r\n\r\n");
    assert_eq!(status, 400);
    let (code, _, err) = p.finish();
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("state does not match"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Command-line values

#[test]
fn profile_name_length() {
    let cli = Cli::new();
    let save = |name: &str| {
        cli.run(&[
            "profile",
            "save",
            "model",
            name,
            "--provider",
            "openai",
            "--model",
            "m",
        ])
    };
    let out = save(&"n".repeat(128));
    expect(&out, 0, "saved model profile");
    let out = save(&"n".repeat(129));
    expect(&out, 2, "it has 129 characters (at most 128)");
    expect(&out, 2, "invalid profile name");
    // 100 two-byte characters are 200 bytes: allowed; 101 are 202 bytes: refused.
    let out = save(&"é".repeat(100));
    expect(&out, 0, "saved model profile");
    let out = save(&"é".repeat(101));
    expect(&out, 2, "it has 202 bytes (at most 200)");
    // Commands that run or show a profile refuse the name the same way (SPEC §1, §8.2).
    let long = "n".repeat(129);
    let out = cli.run(&["chat", "--profile", &long, "hi"]);
    expect(&out, 2, "it has 129 characters (at most 128)");
    let out = cli.run(&["profile", "show", &long]);
    expect(&out, 2, "it has 129 characters (at most 128)");
}

#[test]
fn bucket_name_length() {
    let cli = Cli::new();
    let save = |bucket: &str| {
        cli.run(&[
            "profile",
            "save",
            "model",
            "m",
            "--provider",
            "openai",
            "--model",
            "m",
            "--force",
            bucket,
        ])
    };
    let out = save(&"b".repeat(128));
    expect(&out, 0, "saved model profile");
    let out = save(&"b".repeat(129));
    expect(&out, 2, "it has 129 characters (at most 128)");
    expect(&out, 2, "invalid bucket name");
    let key = cli.user_home().join("k");
    private_file(&key, KEY.as_bytes());
    let out = cli.run(&[
        "auth",
        "login",
        "openai",
        &"b".repeat(129),
        "--key-file",
        key.to_str().unwrap(),
    ]);
    expect(&out, 2, "it has 129 characters (at most 128)");
}

#[test]
fn set_values_out_of_range() {
    let cli = Cli::new();
    model(&cli, "a", "http://127.0.0.1:9/v1");
    let set = |kv: &str| cli.run(&["chat", "--profile", "a", "--set", kv, "hi"]);
    let out = set("failover_retry_count=101");
    expect(
        &out,
        2,
        "--set failover_retry_count: 101 is greater than the maximum of 100",
    );
    let out = set("failover_status_codes=[600]");
    expect(&out, 2, "600 is greater than the maximum of 599");
    let out = set("connect_timeout_ms=0");
    expect(&out, 2, "0 is less than the minimum of 1");
    // Numbers too large for their type name the key and the limit.
    let out = set("context-limit=18446744073709551616");
    expect(&out, 2, "--set context-limit:");
    expect(&out, 2, "at most 18446744073709551615");
    let out = set("max_attempts=4294967296");
    expect(&out, 2, "--set max_attempts:");
    expect(&out, 2, "at most 4294967295");
    // simulate reads --set the same way.
    let trace = cli.home().join("t.json");
    std::fs::write(
        &trace,
        format!(r#"{TRACE_HEAD}, "requests": [{{"at_ms": 0}}]}}"#),
    )
    .unwrap();
    let out = cli.run(&[
        "simulate",
        trace.to_str().unwrap(),
        "--set",
        "lb_circuit_breaker_threshold=4294967296",
    ]);
    expect(&out, 2, "at most 4294967295");
}

#[test]
fn huge_timeouts_do_not_overflow() {
    // The largest values the settings allow are accepted and a request still completes.
    let s = Server::start(vec![Reply::sse(openai_stream(
        &["fine"],
        Some("stop"),
        true,
        None,
    ))]);
    let cli = Cli::new();
    model(&cli, "a", &openai_base(&s));
    let max = "18446744073709551615";
    let mut args = vec!["chat", "--profile", "a"];
    let sets: Vec<String> = [
        "connect_timeout_ms",
        "first_byte_timeout_ms",
        "stream_idle_timeout_ms",
        "bucket_cooldown_ms",
        "retry_after_max_ms",
        "lb_circuit_breaker_timeout_ms",
        "context-limit",
        "lb_tpm_failover_threshold",
    ]
    .iter()
    .map(|k| format!("{k}={max}"))
    .collect();
    for s in &sets {
        args.extend(["--set", s.as_str()]);
    }
    args.push("hi");
    let out = cli.run(&args);
    no_panic(&out);
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(out.stdout, "fine\n");
}

#[test]
fn listen_address() {
    let cli = Cli::new();
    model(&cli, "a", "http://127.0.0.1:9/v1");
    for (listen, needle) in [
        ("garbage", "--listen \"garbage\" is not an address"),
        (
            "127.0.0.1:65536",
            "--listen \"127.0.0.1:65536\" is not an address",
        ),
        ("127.0.0.1:-1", "is not an address"),
        ("", "is not an address"),
    ] {
        let out = cli.run(&["serve", "--profile", "a", "--listen", listen]);
        expect(&out, 2, needle);
    }
}

#[test]
fn login_timeout() {
    let cli = Cli::new();
    let login = |secs: &str| {
        cli.run(&[
            "auth",
            "login",
            "openai",
            "work",
            "--oauth",
            "--authorize-url",
            "http://127.0.0.1:9/authorize",
            "--token-url",
            "http://127.0.0.1:9/token",
            "--client-id",
            "c",
            "--no-browser",
            "--timeout",
            secs,
        ])
    };
    let out = login("86401");
    expect(&out, 2, "--timeout");
    expect(&out, 2, "1..=86400");
    let out = login("18446744073709551615");
    expect(&out, 2, "1..=86400");
    let out = login("18446744073709551616");
    expect(&out, 2, "--timeout");
}
