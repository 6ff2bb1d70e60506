//! `llxprt serve` under hostile or unlucky load (SPEC §7.1): one profile cannot starve another,
//! a client that hangs up frees its slot and closes its upstream connection, `/health` names a
//! saturated profile, slow or idle connections are closed, and a complete request at the
//! connection cap gets a 503 — never a reset. The real binary over loopback sockets; an upstream
//! that reads requests and never answers plays the hung backend. Every bound is a generous 5 s
//! (8 s where serve's own 5 s deadline is what is measured) on a loaded 2-core machine: the
//! tests assert the mechanism, the benchmarks the speed.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::Cli;
use support::serve::{Serve, client, get, post};
use support::server::{Reply, Server};

const KEY: &str = "sk-test-serve-0123456789abcdefghij";

/// An upstream that reads whatever it is sent and never answers: it counts the connections it
/// accepted and those its client closed (an end of stream or a reset while it waited).
struct Hang {
    addr: SocketAddr,
    shared: Arc<HangShared>,
    accept: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct HangShared {
    stop: AtomicBool,
    accepted: AtomicUsize,
    closed: AtomicUsize,
}

impl Hang {
    fn start() -> Hang {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(HangShared::default());
        let sh = shared.clone();
        let accept = std::thread::spawn(move || {
            while !sh.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        sh.accepted.fetch_add(1, Ordering::SeqCst);
                        let sh = sh.clone();
                        std::thread::spawn(move || hold(s, &sh));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Hang {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// The base URL of an OpenAI-compatible profile on it.
    fn base(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    fn closed(&self) -> usize {
        self.shared.closed.load(Ordering::SeqCst)
    }
}

fn hold(mut s: TcpStream, sh: &HangShared) {
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut buf = [0u8; 16 * 1024];
    while !sh.stop.load(Ordering::SeqCst) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    if !sh.stop.load(Ordering::SeqCst) {
        sh.closed.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for Hang {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
    }
}

/// Model profile `name` (OpenAI-compatible, not streamed) at `base`, with `settings`.
fn model(cli: &Cli, name: &str, base: &str, settings: &Value) {
    let mut all = json!({"streaming": "disabled"});
    for (k, v) in settings.as_object().unwrap() {
        all[k] = v.clone();
    }
    let p = cli.keyed_model(name, "openai", base, KEY, &all);
    cli.write_profile_json(name, &p);
}

/// Profile `a` on a hung upstream (its deadline far away: it stays hung for the whole test),
/// profile `b` on one that answers; serve running with `args`.
fn hung_a_and_healthy_b(hang: &Hang, ok: &Server, args: &[&str]) -> (Cli, Serve) {
    let cli = Cli::new();
    model(
        &cli,
        "a",
        &hang.base(),
        &json!({"first_byte_timeout_ms": 600_000}),
    );
    model(&cli, "b", &format!("{}/v1", ok.url()), &json!({}));
    let serve = Serve::start(&cli, args);
    (cli, serve)
}

fn healthy() -> Server {
    Server::start(vec![Reply::json(
        200,
        json!({"choices": [{"message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}]}),
    )])
}

fn ask(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hello?"}]})
}

/// A connection that sent a complete chat request for `model` and reads nothing.
fn send_chat(addr: SocketAddr, model: &str) -> TcpStream {
    let body = ask(model).to_string();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(req.as_bytes()).expect("send");
    s
}

fn wait_for(what: &str, within: Duration, cond: impl Fn() -> bool) {
    let until = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < until, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SPEC §7.1: with every slot of profile `a` held by requests its hung upstream never answers
/// and 16 more waiting, a request to profile `b` is answered while `a` is still hung, and `a`
/// holds only its own 16 slots.
#[test]
fn a_hung_profile_does_not_starve_another() {
    let hang = Hang::start();
    let ok = healthy();
    let (_cli, serve) = hung_a_and_healthy_b(&hang, &ok, &["--profile", "b"]);
    let waiting: Vec<TcpStream> = (0..32).map(|_| send_chat(serve.addr, "a")).collect();
    wait_for(
        "a's 16 slots reach its upstream",
        Duration::from_secs(10),
        || hang.accepted() >= 16,
    );
    std::thread::sleep(Duration::from_millis(300));
    let (tx, rx) = mpsc::channel();
    let url = serve.chat_url();
    std::thread::spawn(move || {
        let _ = tx.send(post(&client(), &url, &ask("b")));
    });
    let r = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("a request to profile b is answered within 5 s while a is hung");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-llxprt-backend"), Some("b"));
    assert_eq!(hang.closed(), 0, "a is still hung");
    assert_eq!(hang.accepted(), 16, "a holds its own 16 slots, no more");
    drop(waiting);
}

/// SPEC §7.1: clients of the hung profile that hang up are cancelled: the upstream sees every
/// connection closed, and a new request to the profile gets a slot (reaches the upstream).
#[test]
fn clients_that_hang_up_free_their_slots_and_close_the_upstream() {
    let hang = Hang::start();
    let ok = healthy();
    let (_cli, serve) = hung_a_and_healthy_b(&hang, &ok, &["--profile", "b"]);
    let waiting: Vec<TcpStream> = (0..32).map(|_| send_chat(serve.addr, "a")).collect();
    wait_for(
        "a's 16 slots reach its upstream",
        Duration::from_secs(10),
        || hang.accepted() >= 16,
    );
    std::thread::sleep(Duration::from_millis(300));
    drop(waiting);
    wait_for(
        "the upstream sees every connection closed",
        Duration::from_secs(5),
        || hang.closed() == hang.accepted(),
    );
    let before = hang.accepted();
    let again = send_chat(serve.addr, "a");
    wait_for(
        "a new request to a gets a slot",
        Duration::from_secs(5),
        || hang.accepted() > before,
    );
    drop(again);
    let log = serve.wait_log("cancelled=client_gone");
    assert!(log.contains("profile=a"), "{log}");
    assert!(log.contains("cancelled=client_gone"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

/// SPEC §7.1, §8.3: `/health` names a profile whose slots are all busy with requests waiting:
/// 200 and `degraded` for another profile, 503 with the reason and `Retry-After` for the
/// default one.
#[test]
fn health_names_a_saturated_profile() {
    let hang = Hang::start();
    let ok = healthy();
    // One slot per profile: two requests to `a` fill it and wait.
    let (cli, serve) =
        hung_a_and_healthy_b(&hang, &ok, &["--profile", "b", "--max-concurrency", "1"]);
    let held: Vec<TcpStream> = (0..2).map(|_| send_chat(serve.addr, "a")).collect();
    let health = format!("{}/health", serve.url());
    let agent = client();
    wait_for("/health names a", Duration::from_secs(5), || {
        get(&agent, &health).body.contains("saturated")
    });
    let r = get(&agent, &health);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["status"], "degraded", "{v}");
    assert_eq!(v["saturated"]["a"]["waiting"], 1, "{v}");
    assert_eq!(v["saturated"]["a"]["busy"], 1, "{v}");
    assert!(
        v["reason"].as_str().unwrap().contains("profile \"a\""),
        "{v}"
    );
    drop(held);
    drop(serve);
    // The same when `a` is the default profile: it cannot serve, 503.
    let serve = Serve::start(&cli, &["--profile", "a", "--max-concurrency", "1"]);
    let held: Vec<TcpStream> = (0..2).map(|_| send_chat(serve.addr, "a")).collect();
    let health = format!("{}/health", serve.url());
    wait_for("/health says 503", Duration::from_secs(5), || {
        get(&agent, &health).status == 503
    });
    let r = get(&agent, &health);
    let v = r.json();
    assert_eq!(v["status"], "unavailable", "{v}");
    assert_eq!(v["saturated"]["a"]["waiting"], 1, "{v}");
    assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
    drop(held);
}

/// Reads until the server closes `s` (or answers): what it sent, and when.
fn closed_within(s: &mut TcpStream, trickle: bool, within: Duration) -> (String, Duration) {
    let started = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while started.elapsed() < within {
        if trickle && s.write_all(b"a").is_err() {
            break;
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if !out.is_empty() {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    (
        String::from_utf8_lossy(&out).into_owned(),
        started.elapsed(),
    )
}

/// SPEC §7.1: a connection that has not sent a complete request head within 5 s of opening is
/// closed — a head trickled a byte at a time (answered 408) as well as a silent connection.
#[test]
fn slow_or_silent_connections_are_closed_after_5_s() {
    let ok = healthy();
    let cli = Cli::new();
    model(&cli, "b", &format!("{}/v1", ok.url()), &json!({}));
    let serve = Serve::start(&cli, &["--profile", "b"]);
    let mut silent = TcpStream::connect(serve.addr).unwrap();
    let silent_opened = Instant::now();
    let mut slow = TcpStream::connect(serve.addr).unwrap();
    slow.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nX-Pad: ")
        .unwrap();
    let (answer, took) = closed_within(&mut slow, true, Duration::from_secs(20));
    assert!(
        took < Duration::from_secs(8),
        "the trickled head was cut after {took:?}"
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let (answer, _) = closed_within(&mut silent, false, Duration::from_secs(20));
    let took = silent_opened.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "the silent connection was closed after {took:?}"
    );
    assert_eq!(
        answer, "",
        "a silent connection is closed without an answer"
    );
    // Kept-alive answers announce the idle timeout.
    let r = get(&client(), &format!("{}/health", serve.url()));
    assert_eq!(
        r.header("keep-alive"),
        Some("timeout=15"),
        "{:?}",
        r.headers
    );
}

/// SPEC §7.1: at the connection cap (512, every one of them a request waiting for the one slot
/// of its profile), a client that sends a complete request — a large one, still being written
/// when serve answers — gets a 503 with `Retry-After`, never a reset.
#[test]
fn a_complete_request_at_the_connection_cap_gets_a_503_not_a_reset() {
    let hang = Hang::start();
    let ok = healthy();
    let (_cli, serve) =
        hung_a_and_healthy_b(&hang, &ok, &["--profile", "a", "--max-concurrency", "1"]);
    let held: Vec<TcpStream> = (0..512).map(|_| send_chat(serve.addr, "a")).collect();
    wait_for(
        "a's slot reaches its upstream",
        Duration::from_secs(10),
        || hang.accepted() >= 1,
    );
    let pad = "x".repeat(1024 * 1024);
    let body = json!({"model": "a", "messages": [{"role": "user", "content": pad}]});
    let sent = client()
        .post(&serve.chat_url())
        .send_json(&body)
        .map(|resp| {
            let status = resp.status().as_u16();
            let retry = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let text = resp.into_body().read_to_string().unwrap_or_default();
            (status, retry, text)
        });
    let (status, retry, text) = sent.expect("an answer, not a reset");
    assert_eq!(status, 503, "{text}");
    assert_eq!(retry.as_deref(), Some("1"));
    assert!(text.contains("too many open connections"), "{text}");
    drop(held);
    assert!(!serve.log().contains("panicked"), "{}", serve.log());
}
