//! Proxies from the environment (SPEC §6.2: "proxies from the environment (`HTTPS_PROXY`,
//! `NO_PROXY`)"), through the real `llxprt chat` binary: a loopback CONNECT proxy started here
//! tunnels to the loopback provider, so a base URL where nothing listens is still answered
//! when, and only when, the environment says to use the proxy.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use serde_json::json;
use support::Cli;
use support::server::{Reply, Server, openai_stream};

const KEY: &str = "sk-test-proxy-0123456789abcdefghij";

/// A CONNECT proxy on loopback that tunnels every connection to `upstream`, whatever host the
/// client asked for, and keeps the targets it was asked for.
struct Proxy {
    port: u16,
    targets: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    fn start(upstream: std::net::SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let targets = Arc::new(Mutex::new(Vec::new()));
        let seen = targets.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let seen = seen.clone();
                std::thread::spawn(move || tunnel(&client, upstream, &seen));
            }
        });
        Proxy { port, targets }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn targets(&self) -> Vec<String> {
        self.targets.lock().unwrap().clone()
    }
}

/// Reads the CONNECT head, answers 200 and copies bytes both ways until either side closes.
fn tunnel(client: &TcpStream, upstream: std::net::SocketAddr, seen: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    if parts.next() != Some("CONNECT") {
        return;
    }
    seen.lock()
        .unwrap()
        .push(parts.next().unwrap_or_default().to_string());
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
            break;
        }
    }
    let Ok(mut server) = TcpStream::connect(upstream) else {
        return;
    };
    let mut to_client = client.try_clone().unwrap();
    to_client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .unwrap();
    let mut from_server = server.try_clone().unwrap();
    let back = std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_server, &mut to_client);
        let _ = to_client.shutdown(Shutdown::Write);
    });
    // Whatever the reader buffered past the head belongs to the tunnel.
    let _ = server.write_all(reader.buffer());
    let mut rest = reader.into_inner();
    let _ = std::io::copy(&mut rest, &mut server);
    let _ = server.shutdown(Shutdown::Write);
    let _ = back.join();
}

fn model(cli: &Cli, base: &str) {
    cli.write_profile_json(
        "p",
        &json!({"version": 1, "provider": "openai", "model": "m",
            "ephemeralSettings": {"base-url": base, "auth-key": KEY}}),
    );
}

fn ok_stream() -> Reply {
    Reply::sse(openai_stream(
        &["Through."],
        Some("stop"),
        true,
        Some((3, 1)),
    ))
}

#[test]
fn https_proxy_carries_the_request_to_a_host_this_machine_cannot_reach() {
    let upstream = Server::start(vec![ok_stream()]);
    let proxy = Proxy::start(upstream.addr());
    let cli = Cli::new();
    // Nothing listens on port 1: only the proxy can answer (no DNS involved).
    model(&cli, "http://localhost:1/v1");
    let out = cli
        .cmd(&["chat", "--profile", "p", "hi"])
        .env("HTTPS_PROXY", proxy.url())
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(out.stdout, "Through.\n");
    assert_eq!(proxy.targets(), ["localhost:1"]);
    assert_eq!(upstream.requests().len(), 1);

    // Without the variable the same profile cannot be reached.
    let out = cli.run(&["chat", "--profile", "p", "hi"]);
    assert_eq!(out.code, 1, "{}", out.render());
    assert_eq!(
        proxy.targets().len(),
        1,
        "nothing more went through the proxy"
    );
}

#[test]
fn no_proxy_sends_a_listed_host_direct() {
    let upstream = Server::start(vec![ok_stream()]);
    let proxy = Proxy::start(upstream.addr());
    let cli = Cli::new();
    model(&cli, &format!("{}/v1", upstream.url()));
    let out = cli
        .cmd(&["chat", "--profile", "p", "hi"])
        .env("HTTPS_PROXY", proxy.url())
        .env("NO_PROXY", "127.0.0.1")
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(out.stdout, "Through.\n");
    assert!(proxy.targets().is_empty(), "{:?}", proxy.targets());
    // And without NO_PROXY the same request goes through the proxy.
    let out = cli
        .cmd(&["chat", "--profile", "p", "hi"])
        .env("HTTPS_PROXY", proxy.url())
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(proxy.targets().len(), 1, "{:?}", proxy.targets());
}
