//! `cargo bench --bench serve_overhead`: what `llxprt serve` adds to a request (SPEC §8.3),
//! with the loopback server of the tests as the provider. Prints:
//! - sequential: the same streamed request made directly to the upstream and through
//!   `llxprt serve`, alternately, in 7 rounds of 1 000 requests each: p50 and p99 of both, and
//!   of the added latency (each pair's difference) over all rounds, with each round's p50 (on
//!   a shared machine one round can land on a busy moment; the spread shows it), and serve's
//!   CPU time per request;
//! - concurrent: requests per second with 16 clients, through `serve` and directly.
//!
//! With `LLXPRT_BENCH_COMPARE=<path to another llxprt>`, that binary's serve is measured too,
//! its requests interleaved with the others' (a change is judged within one run).
//!
//! No timed assertions: a reader compares the figures with the target (p50 overhead
//! ≤ 0.2 ms). Each request through `serve` includes the engine's steps on the shared state
//! file (SPEC §5.9: lock, re-read, decide, atomic write with fsync), so the figures depend on
//! the filesystem under `LLXPRT_HOME` (a temp directory here). A third run keeps the state on a
//! loopback `redis-server` (SPEC §5.9.1; skipped when none is installed): one `WATCH`/`MULTI`
//! transaction, two round trips, per engine step (target: added p50 ≤ 0.3 ms).

#[path = "../tests/support/server.rs"]
mod server;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use server::{Reply, Server, openai_stream};

const SEQUENTIAL: usize = 1000;
const ROUNDS: usize = 7;
const WARMUP: usize = 50;
const CLIENTS: usize = 16;
const PER_CLIENT: usize = 100;

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let i = ((s.len() as f64 - 1.0) * p).round() as usize;
    s[i]
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .proxy(None)
        .http_status_as_error(false)
        .max_idle_connections_per_host(CLIENTS * 2)
        .build()
        .into()
}

/// One request; the whole streamed body read. Milliseconds.
fn once(agent: &ureq::Agent, url: &str, body: &Value) -> f64 {
    let start = Instant::now();
    let resp = agent
        .post(url)
        .send_json(body)
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(resp.status().as_u16(), 200);
    let mut sink = Vec::new();
    resp.into_body()
        .into_reader()
        .read_to_end(&mut sink)
        .expect("body read");
    assert!(sink.ends_with(b"data: [DONE]\n\n"), "a complete stream");
    start.elapsed().as_secs_f64() * 1000.0
}

/// The serve process, killed when dropped (also when the bench panics).
struct Running(Child);

impl Running {
    /// The CPU time all of the process's threads have had so far, in nanoseconds (Linux
    /// schedstat; `None` elsewhere). Far steadier than latency on a shared machine: it says
    /// what serve itself spends per request, whatever the scheduler does with wake-ups.
    fn cpu_ns(&self) -> Option<u64> {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.0.id())).ok()?;
        let mut total = 0;
        for t in tasks.flatten() {
            let stat = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
            total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
        }
        Some(total)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_serve(bin: &str, home: &std::path::Path, state_url: &str) -> (Running, String) {
    let mut child = Command::new(bin)
        .args(["serve", "--profile", "bench", "--listen", "127.0.0.1:0"])
        .env("LLXPRT_HOME", home)
        .env("LLXPRT_STATE_URL", state_url)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("llxprt runs");
    let stderr = child.stderr.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    // Keeps draining the per-request log lines, so serve never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
            }
        }
    });
    let child = Running(child);
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("serve starts");
    (child, format!("http://{addr}"))
}

fn rps(url: &str, body: &Value) -> f64 {
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..CLIENTS {
            scope.spawn(|| {
                let a = agent();
                for _ in 0..PER_CLIENT {
                    once(&a, url, body);
                }
            });
        }
    });
    (CLIENTS * PER_CLIENT) as f64 / start.elapsed().as_secs_f64()
}

/// One run with the llxprt root (and so the shared state file) under `tmp`, against an
/// upstream of its own (the loopback server keeps every request it served: a second run on the
/// first's would start on a busier server).
/// `state_url`: empty for the state file, else the Redis server's URL (SPEC §5.9.1).
fn run(label: &str, tmp: &std::path::Path, state_url: &str) {
    let upstream = Server::start(vec![Reply::sse(openai_stream(
        &["Hello", " there"],
        Some("stop"),
        true,
        Some((3, 2)),
    ))]);
    let home = tempfile::tempdir_in(tmp).unwrap();
    let profile = json!({"version": 1, "provider": "openai", "model": "m",
        "ephemeralSettings": {"base-url": format!("{}/v1", upstream.url()), "auth-key": "sk-bench-0123456789abcdef"}});
    std::fs::create_dir_all(home.path().join("profiles")).unwrap();
    std::fs::write(
        home.path().join("profiles/bench.json"),
        serde_json::to_vec_pretty(&profile).unwrap(),
    )
    .unwrap();
    let (serve, serve_url) = start_serve(env!("CARGO_BIN_EXE_llxprt"), home.path(), state_url);
    let direct = format!("{}/v1/chat/completions", upstream.url());
    let via = format!("{serve_url}/v1/chat/completions");
    // `LLXPRT_BENCH_COMPARE=<another llxprt binary>`: that one's serve too, on a home of its
    // own, its requests interleaved with the others', so both are measured on the same machine
    // at the same moments (a change is judged by the ratio within one run).
    let other = std::env::var("LLXPRT_BENCH_COMPARE").ok().map(|bin| {
        let home = tempfile::tempdir_in(tmp).unwrap();
        std::fs::create_dir_all(home.path().join("profiles")).unwrap();
        std::fs::write(
            home.path().join("profiles/bench.json"),
            serde_json::to_vec_pretty(&profile).unwrap(),
        )
        .unwrap();
        let (running, url) = start_serve(&bin, home.path(), state_url);
        (bin, home, running, format!("{url}/v1/chat/completions"))
    });
    let body =
        json!({"model": "bench", "stream": true, "messages": [{"role": "user", "content": "hi"}]});

    let client = agent();
    for _ in 0..WARMUP {
        once(&client, &direct, &body);
        once(&client, &via, &body);
        if let Some((_, _, _, url)) = &other {
            once(&client, url, &body);
        }
    }
    let (mut plain, mut served, mut diff, mut other_diff) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut rounds, mut other_rounds) = (Vec::new(), Vec::new());
    let cpu_before = (serve.cpu_ns(), other.as_ref().and_then(|o| o.2.cpu_ns()));
    for _ in 0..ROUNDS {
        let start = diff.len();
        for _ in 0..SEQUENTIAL {
            let x = once(&client, &direct, &body);
            let y = once(&client, &via, &body);
            plain.push(x);
            served.push(y);
            diff.push(y - x);
            if let Some((_, _, _, url)) = &other {
                other_diff.push(once(&client, url, &body) - x);
            }
        }
        rounds.push(percentile(&diff[start..], 0.5));
        if other.is_some() {
            other_rounds.push(percentile(&other_diff[start..], 0.5));
        }
    }
    let per_request = |before: Option<u64>, after: Option<u64>| {
        Some((after? - before?) as f64 / 1000.0 / (ROUNDS * SEQUENTIAL) as f64)
    };
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.3}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let cpu = per_request(cpu_before.0, serve.cpu_ns());
    let other_cpu = per_request(cpu_before.1, other.as_ref().and_then(|o| o.2.cpu_ns()));
    println!("{label}");
    println!("  sequential, {ROUNDS} rounds of {SEQUENTIAL} streamed requests each (ms):");
    println!(
        "    direct to the upstream: p50 {:.3}  p99 {:.3}",
        percentile(&plain, 0.5),
        percentile(&plain, 0.99)
    );
    println!(
        "    through llxprt serve:   p50 {:.3}  p99 {:.3}",
        percentile(&served, 0.5),
        percentile(&served, 0.99)
    );
    println!(
        "    added by serve:         p50 {:.3}  p99 {:.3}  (target: p50 <= 0.2); each round's p50: {}",
        percentile(&diff, 0.5),
        percentile(&diff, 0.99),
        list(&rounds)
    );
    if let Some((bin, _, _, _)) = &other {
        println!(
            "    added by {bin}: p50 {:.3}  p99 {:.3}; each round's p50: {}",
            percentile(&other_diff, 0.5),
            percentile(&other_diff, 0.99),
            list(&other_rounds)
        );
    }
    if let Some(us) = cpu {
        println!("    serve's CPU time per request: {us:.1} us (all its threads)");
    }
    if let (Some((bin, _, _, _)), Some(us)) = (&other, other_cpu) {
        println!("    {bin}'s CPU time per request: {us:.1} us");
    }
    let direct_rps = rps(&direct, &body);
    let serve_rps = rps(&via, &body);
    println!(
        "  concurrent, {CLIENTS} clients x {PER_CLIENT} requests: direct {direct_rps:.0} req/s, through serve {serve_rps:.0} req/s"
    );
    drop(serve);
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return; // `cargo test --benches`: nothing to time
    }
    run(
        "state file in the temp directory (fsync reaches the disk):",
        &std::env::temp_dir(),
        "",
    );
    // The same on a RAM filesystem, where fsync is free: what serve itself adds.
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        run("state file on /dev/shm (tmpfs):", shm, "");
    }
    // The state on a loopback redis-server (SPEC §5.9.1): two round trips per engine step.
    match RedisServer::start() {
        Some(redis) => run(
            "state on a loopback redis-server (target: added p50 <= 0.3):",
            &std::env::temp_dir(),
            &redis.url,
        ),
        None => println!("state on Redis: skipped, redis-server is not installed"),
    }
}

/// A `redis-server` on a free loopback port without persistence, stopped by its PID on drop.
struct RedisServer {
    child: Child,
    url: String,
}

impl RedisServer {
    fn start() -> Option<RedisServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let server = RedisServer {
            child,
            url: format!("redis://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let answered = redis::Client::open(server.url.as_str())
                .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if answered.is_ok() {
                return Some(server);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
