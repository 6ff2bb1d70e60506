//! A running `llxprt serve` for the end-to-end tests, and a plain OpenAI HTTP client (ureq,
//! proxy off) to talk to it over real loopback sockets.
//!
//! - [`Serve::start`]`(cli, args)` runs `llxprt serve --listen 127.0.0.1:0 ARGS…` in the
//!   fixture's `LLXPRT_HOME`, reads the bound address from its start-up line on stderr (20 s at
//!   most), and keeps collecting stderr ([`Serve::log`]). Dropping it kills the process.
//! - [`client`] is a ureq agent with no proxy and statuses as values; [`post`], [`get`] and
//!   [`raw`] return a [`Reply`] with the status, lowercased headers, the body, and whether the
//!   body ended cleanly (a stream cut by the server does not); [`events`] splits an event
//!   stream into its `data:` payloads.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Cli;

/// A running `llxprt serve`.
pub struct Serve {
    child: Option<Child>,
    /// The bound address.
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Serve {
    /// Starts `llxprt serve --listen 127.0.0.1:0 ARGS…` and waits until it listens.
    pub fn start(cli: &Cli, args: &[&str]) -> Serve {
        let mut all = vec!["serve", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let mut child = Command::new(env!("CARGO_BIN_EXE_llxprt"))
            .args(&all)
            .env_clear()
            .env("LLXPRT_HOME", cli.home())
            .env("HOME", cli.user_home())
            .env("NO_COLOR", "1")
            .current_dir(cli.home())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the llxprt binary runs");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                    let _ = tx.send(addr);
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let Ok(addr) = rx.recv_timeout(Duration::from_secs(20)) else {
            let _ = child.kill();
            let _ = child.wait();
            let _ = reader.join();
            panic!("serve did not start: {}", log.lock().unwrap());
        };
        let addr = addr.parse().expect("a socket address");
        Serve {
            child: Some(child),
            addr,
            log,
            reader: Some(reader),
        }
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://ADDR/v1/chat/completions`.
    pub fn chat_url(&self) -> String {
        format!("{}/v1/chat/completions", self.url())
    }

    /// Everything written to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits (up to 10 s) until stderr contains `needle`.
    pub fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let l = self.log();
            if l.contains(needle) || Instant::now() > deadline {
                return l;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGINT (Ctrl-C).
    pub fn interrupt(&self) {
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits (up to 30 s) for the process to exit; its exit code and the whole log.
    pub fn wait(mut self) -> (i32, String) {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(30);
        let code = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break -2;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        (code, self.log())
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A plain HTTP client: no proxy, statuses as values, 60 s at most per request.
pub fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .proxy(None)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_mins(1)))
        .build()
        .into()
}

/// What a client received.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status.
    pub status: u16,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body as received.
    pub body: String,
    /// Whether the body ended cleanly (false when the connection broke mid-body).
    pub complete: bool,
}

impl Reply {
    /// A header by lowercase name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {} {}", self.status, self.body))
    }
}

fn reply(resp: ureq::http::Response<ureq::Body>) -> Reply {
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let mut reader = resp.into_body().into_reader();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    let complete = loop {
        match reader.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        complete,
    }
}

/// POSTs JSON.
pub fn post(agent: &ureq::Agent, url: &str, body: &Value) -> Reply {
    reply(
        agent
            .post(url)
            .send_json(body)
            .expect("the request is sent"),
    )
}

/// GETs.
pub fn get(agent: &ureq::Agent, url: &str) -> Reply {
    reply(agent.get(url).call().expect("the request is sent"))
}

/// Sends exact bytes on a fresh connection and reads the answer until the server closes it
/// (or 20 s pass): (status, whole response text).
pub fn raw(addr: SocketAddr, bytes: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// The `data:` payloads of an event stream, in order (`[DONE]` as the string `"[DONE]"`).
pub fn events(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap_or_else(|_| Value::String(d.to_string())))
        .collect()
}

/// The answer text of an event stream (every `delta.content`, joined).
pub fn streamed_text(body: &str) -> String {
    events(body)
        .iter()
        .filter_map(|e| {
            e["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}
