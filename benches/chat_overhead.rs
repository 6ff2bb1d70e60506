//! `cargo bench --bench chat_overhead`: what llxprt adds on top of a provider (SPEC §6), with
//! the loopback server of the tests as the provider. Prints medians:
//! - process start-up: `llxprt --version` and `llxprt profile validate FILE`;
//! - `llxprt chat` (streamed text, and `--json`) against the loopback server vs the same
//!   request made directly with ureq from this process on a connection of its own: time to
//!   first token and total, both measured by the reader of the bytes (stdout of the child, or
//!   the response body), and their difference.
//!
//! Once with llxprt's home (so the state file) in the temp directory, once on /dev/shm.
//!
//! No timed assertions: a reader compares the figures with the targets (start-up ≤ 5 ms;
//! added time to first token ≤ 1 ms plus start-up).

#[path = "../tests/support/server.rs"]
mod server;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use server::{Reply, Server, SseOut, openai_stream};

const RUNS: usize = 51;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_llxprt")
}

/// Spawns llxprt as every measurement here does (stdin closed, stdout read, stderr dropped)
/// after the same pause, and reads its stdout to the end: (first byte, exit) in ms. The pause
/// matters on a VM: a process started right after another runs on a CPU the one before kept
/// awake and looks faster than one started after a pause (a start-up measured back to back
/// came out ~0.5–1 ms faster than the same command measured like the chats).
fn spawn_timed(args: &[&str], home: &std::path::Path) -> (f64, f64) {
    std::thread::sleep(Duration::from_millis(5));
    let start = Instant::now();
    let mut child = Command::new(bin())
        .args(args)
        .env("LLXPRT_HOME", home)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (first, _) = read_timed(child.stdout.take().unwrap(), start);
    let status = child.wait().unwrap();
    let exit = start.elapsed().as_secs_f64() * 1000.0;
    assert!(status.code().is_some());
    (first, exit)
}

/// The answer arrives as a first event, then the rest 20 ms later.
fn script() -> Reply {
    let events: Vec<SseOut> = openai_stream(&["first", " rest"], Some("stop"), true, Some((3, 2)))
        .into_iter()
        .enumerate()
        .map(|(i, e)| if i == 1 { e.after(20) } else { e })
        .collect();
    Reply::sse(events)
}

/// (first byte, total) in ms as seen on a reader.
fn read_timed(mut r: impl Read, start: Instant) -> (f64, f64) {
    let mut buf = [0u8; 4096];
    let mut first = None;
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                first.get_or_insert_with(|| start.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
    (
        first.unwrap_or(f64::NAN),
        start.elapsed().as_secs_f64() * 1000.0,
    )
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return; // `cargo test --benches`: nothing to time
    }
    run(
        "llxprt home (and the state file) in the temp directory (fsync reaches the disk):",
        &std::env::temp_dir(),
    );
    // The same on a RAM filesystem: what llxprt itself adds, without the disk's share (a chat
    // step's fsync runs on a thread of its own, but on a VM the disk's work still competes).
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        run("llxprt home on /dev/shm (tmpfs):", shm);
    }
}

/// One run with llxprt's home under `tmp`.
fn run(label: &str, tmp: &std::path::Path) {
    println!("{label}");
    let home = tempfile::tempdir_in(tmp).unwrap();
    let server = Server::start(vec![script()]);
    let profile = serde_json::json!({"version": 1, "provider": "openai", "model": "m",
        "ephemeralSettings": {"base-url": format!("{}/v1", server.url()), "auth-key": "sk-bench-0123456789abcdef"}});
    std::fs::create_dir_all(home.path().join("profiles")).unwrap();
    let file = home.path().join("profiles/bench.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&profile).unwrap()).unwrap();

    let url = format!("{}/v1/chat/completions", server.url());
    let body = serde_json::json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let chat = |extra: &[&str]| {
        let mut args = vec!["chat", "--profile", "bench", "--set", "mid_stream=restart"];
        args.extend_from_slice(extra);
        args.push("hi");
        let (first, total) = spawn_timed(&args, home.path());
        assert!(!first.is_nan(), "llxprt chat printed nothing");
        (first, total)
    };
    let validate_args = ["profile", "validate", file.to_str().unwrap()];
    let (mut version, mut validate) = (vec![], vec![]);
    let (mut d_first, mut d_total, mut c_first, mut c_total, mut j_total) =
        (vec![], vec![], vec![], vec![], vec![]);
    // Interleaved, so every figure sees the same machine.
    for _ in 0..RUNS {
        version.push(spawn_timed(&["--version"], home.path()).1);
        validate.push(spawn_timed(&validate_args, home.path()).1);

        // The direct request opens its own connection, as the one-shot process must.
        std::thread::sleep(Duration::from_millis(5));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .proxy(None)
            .http_status_as_error(false)
            .build()
            .into();
        let start = Instant::now();
        let resp = agent.post(&url).send_json(&body).unwrap();
        let (f, t) = read_timed(resp.into_body().into_reader(), start);
        d_first.push(f);
        d_total.push(t);

        let (f, t) = chat(&[]);
        c_first.push(f);
        c_total.push(t);
        j_total.push(chat(&["--json"]).1);
    }
    let startup = median(version);
    println!(
        "  start-up: llxprt --version median {startup:.2} ms; profile validate (one file) median {:.2} ms (target <= 5 ms)",
        median(validate)
    );

    let (df, dt, cf, ct, jt) = (
        median(d_first),
        median(d_total),
        median(c_first),
        median(c_total),
        median(j_total),
    );
    println!("  direct request:  first token median {df:.2} ms, total {dt:.2} ms");
    println!(
        "  llxprt chat:     first token median {cf:.2} ms, total {ct:.2} ms (process start-up included)"
    );
    println!("  llxprt chat --json: total {jt:.2} ms (process start-up included)");
    println!(
        "  added by llxprt: first token {:.2} ms, total {:.2} ms, --json total {:.2} ms (target: first token <= 1 ms + start-up)",
        cf - df,
        ct - dt,
        jt - dt
    );
    println!(
        "  added first token beyond start-up: {:.2} ms (target <= 1 ms)",
        cf - df - startup
    );
}
