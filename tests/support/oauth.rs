//! A loopback OAuth 2.0 authorization server (and a token-checking provider) for the accounts
//! tests (SPEC §6.3), over real sockets like [`super::server`].
//!
//! # API
//!
//! - [`OAuthServer::start`]`(Config)` binds `127.0.0.1:0`; [`OAuthServer::url`].
//! - `GET /authorize` (authorization code + PKCE, RFC 6749 §4.1, RFC 7636): checks
//!   `response_type=code`, the client id, `code_challenge_method=S256`, a loopback
//!   `redirect_uri`; answers `302` to `redirect_uri?code=…&state=…`.
//! - `POST /token` (form): `authorization_code` (the code, client id and `redirect_uri` must
//!   match, and base64url(SHA-256(`code_verifier`)) must equal the challenge; codes are single
//!   use), `refresh_token` (the refresh token must be valid; `Config::refresh_ok`,
//!   `Config::rotate` issues a new refresh token and revokes the old one, `token_delay_ms`
//!   delays the answer), and the device grant (the first `device_pending_polls` polls answer
//!   `authorization_pending`). Every issued access token becomes valid at the provider route.
//! - `POST /device` (RFC 8628 §3.1): a device code, user code `WDJB-MJHT`, interval 1 s.
//! - `POST /v1/chat/completions`: an OpenAI-compatible provider that answers a valid bearer
//!   token with a short stream ("ok") and anything else with 401.
//! - [`OAuthServer::hits`]: every request (path, form or JSON body, `authorization`);
//!   [`OAuthServer::grants`]`(grant_type)` counts token requests; [`OAuthServer::issued`] the
//!   access tokens issued, in order; [`OAuthServer::plant`] makes tokens valid.
//!
//! Also: [`spawn`] runs the binary with its stderr read line by line (to catch the printed
//! authorize URL while it waits), and [`play_browser`] follows that URL like a browser.
//! Bounds: heads ≤ 64 KiB, bodies ≤ 1 MiB, 10 s socket timeouts, one request per connection.

#![allow(dead_code, reason = "each test binary uses its own subset")]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use super::Cli;

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct Config {
    /// The only client id accepted.
    pub client_id: String,
    /// Refresh grants succeed.
    pub refresh_ok: bool,
    /// A refresh issues a new refresh token and revokes the old one.
    pub rotate: bool,
    /// Delay before answering a refresh grant (ms).
    pub token_delay_ms: u64,
    /// `expires_in` of issued tokens (s).
    pub expires_in: u64,
    /// Device polls answered `authorization_pending` before the tokens.
    pub device_pending_polls: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            client_id: "llxprt-test-client".into(),
            refresh_ok: true,
            rotate: false,
            token_delay_ms: 0,
            expires_in: 3600,
            device_pending_polls: 1,
        }
    }
}

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Hit {
    /// Method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Query or form fields.
    pub fields: BTreeMap<String, String>,
    /// The `authorization` header.
    pub authorization: Option<String>,
}

#[derive(Default)]
struct State {
    codes: HashMap<String, (String, String)>,
    access: HashSet<String>,
    refresh: HashSet<String>,
    devices: HashMap<String, u32>,
    issued: Vec<String>,
    hits: Vec<Hit>,
    counter: u64,
}

struct Shared {
    cfg: Config,
    stop: AtomicBool,
    state: Mutex<State>,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The running server; dropping it stops it.
pub struct OAuthServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    handle: Option<JoinHandle<()>>,
}

impl OAuthServer {
    /// Starts a server.
    pub fn start(cfg: Config) -> OAuthServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let shared = Arc::new(Shared {
            cfg,
            stop: AtomicBool::new(false),
            state: Mutex::new(State::default()),
        });
        let s = shared.clone();
        let handle = std::thread::spawn(move || {
            let mut workers = Vec::new();
            while !s.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let s = s.clone();
                        workers.push(std::thread::spawn(move || serve(stream, &s)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            for w in workers {
                let _ = w.join();
            }
        });
        OAuthServer {
            addr,
            shared,
            handle: Some(handle),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Makes an access token and a refresh token valid (planted logins).
    pub fn plant(&self, access: Option<&str>, refresh: Option<&str>) {
        let mut st = self.shared.state();
        if let Some(a) = access {
            st.access.insert(a.to_string());
        }
        if let Some(r) = refresh {
            st.refresh.insert(r.to_string());
        }
    }

    /// Every request so far.
    pub fn hits(&self) -> Vec<Hit> {
        self.shared.state().hits.clone()
    }

    /// How many `POST /token` requests had this `grant_type`.
    pub fn grants(&self, grant_type: &str) -> usize {
        self.hits()
            .iter()
            .filter(|h| {
                h.path == "/token"
                    && h.fields.get("grant_type").map(String::as_str) == Some(grant_type)
            })
            .count()
    }

    /// The access tokens issued, in order.
    pub fn issued(&self) -> Vec<String> {
        self.shared.state().issued.clone()
    }

    /// The provider route's requests: their bearer tokens, in order.
    pub fn provider_bearers(&self) -> Vec<String> {
        self.hits()
            .iter()
            .filter(|h| h.path == "/v1/chat/completions")
            .map(|h| {
                h.authorization
                    .clone()
                    .unwrap_or_default()
                    .trim_start_matches("Bearer ")
                    .to_string()
            })
            .collect()
    }
}

impl Drop for OAuthServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// base64url(SHA-256(verifier)), RFC 7636 §4.2.
pub fn s256(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ))
}

struct Req {
    method: String,
    path: String,
    query: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

fn read_req(stream: &mut TcpStream) -> Option<Req> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 || buf.len() > 64 * 1024 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
        .min(1024 * 1024);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let (path, query) = target
        .split_once('?')
        .map_or((target.clone(), String::new()), |(p, q)| {
            (p.to_string(), q.to_string())
        });
    Some(Req {
        method,
        path,
        query,
        headers,
        body,
    })
}

fn write_reply(stream: &mut TcpStream, status: u16, headers: &[(&str, String)], body: &[u8]) {
    let reason = match status {
        200 => "OK",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        _ => "Other",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        let _ = write!(head, "{k}: {v}\r\n");
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let _ = stream.flush();
}

fn json_reply(stream: &mut TcpStream, status: u16, v: &Value) {
    write_reply(
        stream,
        status,
        &[("content-type", "application/json".into())],
        v.to_string().as_bytes(),
    );
}

fn grant_error(stream: &mut TcpStream, error: &str) {
    json_reply(stream, 400, &json!({"error": error}));
}

fn issue(shared: &Shared, st: &mut State) -> Value {
    st.counter += 1;
    let n = st.counter;
    let access = format!("oat-issued-access-{n}-7f3a9c1e5b2d4f6a8c0e");
    let refresh = format!("ort-issued-refresh-{n}-2b4d6f8a0c1e3a5c7e9f");
    st.access.insert(access.clone());
    st.refresh.insert(refresh.clone());
    st.issued.push(access.clone());
    json!({"access_token": access, "token_type": "Bearer", "expires_in": shared.cfg.expires_in, "refresh_token": refresh, "scope": "chat"})
}

fn serve(mut stream: TcpStream, shared: &Shared) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let Some(req) = read_req(&mut stream) else {
        return;
    };
    let form_text = if req.method == "GET" {
        req.query.clone()
    } else {
        String::from_utf8_lossy(&req.body).into_owned()
    };
    let fields: BTreeMap<String, String> = form_urlencoded::parse(form_text.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    shared.state().hits.push(Hit {
        method: req.method.clone(),
        path: req.path.clone(),
        fields: if req.path == "/v1/chat/completions" {
            BTreeMap::new()
        } else {
            fields.clone()
        },
        authorization: req.headers.get("authorization").cloned(),
    });
    let f = |k: &str| fields.get(k).cloned().unwrap_or_default();
    let cfg = &shared.cfg;
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/authorize") => {
            let redirect = f("redirect_uri");
            if f("response_type") != "code"
                || f("client_id") != cfg.client_id
                || f("code_challenge_method") != "S256"
                || f("code_challenge").len() != 43
                || !redirect.starts_with("http://127.0.0.1:")
            {
                return write_reply(&mut stream, 400, &[], b"bad authorize request");
            }
            let mut st = shared.state();
            st.counter += 1;
            let code = format!("code-{}-x", st.counter);
            st.codes
                .insert(code.clone(), (f("code_challenge"), redirect.clone()));
            drop(st);
            let mut q = form_urlencoded::Serializer::new(String::new());
            q.append_pair("code", &code)
                .append_pair("state", &f("state"));
            write_reply(
                &mut stream,
                302,
                &[("location", format!("{redirect}?{}", q.finish()))],
                b"",
            );
        }
        ("POST", "/device") => {
            if f("client_id") != cfg.client_id {
                return grant_error(&mut stream, "invalid_client");
            }
            let mut st = shared.state();
            st.counter += 1;
            let code = format!("dc-secret-device-code-{}", st.counter);
            st.devices.insert(code.clone(), 0);
            drop(st);
            let base = format!("http://{}", stream.local_addr().expect("addr"));
            json_reply(
                &mut stream,
                200,
                &json!({"device_code": code, "user_code": "WDJB-MJHT", "verification_uri": format!("{base}/activate"), "expires_in": 60, "interval": 1}),
            );
        }
        ("POST", "/token") => token(&mut stream, shared, &f),
        ("POST", "/v1/chat/completions") => {
            let bearer = req
                .headers
                .get("authorization")
                .and_then(|a| a.strip_prefix("Bearer "))
                .unwrap_or("");
            if !shared.state().access.contains(bearer) {
                return json_reply(
                    &mut stream,
                    401,
                    &json!({"error": {"message": "invalid access token", "type": "invalid_request_error", "code": "invalid_api_key"}}),
                );
            }
            let chunk = |delta: Value, finish: Value| {
                format!(
                    "data: {}\n\n",
                    json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
                )
            };
            let body = format!(
                "{}{}data: [DONE]\n\n",
                chunk(json!({"role": "assistant", "content": "ok"}), Value::Null),
                chunk(json!({}), json!("stop"))
            );
            write_reply(
                &mut stream,
                200,
                &[("content-type", "text/event-stream".into())],
                body.as_bytes(),
            );
        }
        _ => write_reply(&mut stream, 404, &[], b"not found"),
    }
}

fn token(stream: &mut TcpStream, shared: &Shared, f: &dyn Fn(&str) -> String) {
    let cfg = &shared.cfg;
    if f("client_id") != cfg.client_id {
        return grant_error(stream, "invalid_client");
    }
    match f("grant_type").as_str() {
        "authorization_code" => {
            let mut st = shared.state();
            let Some((challenge, redirect)) = st.codes.remove(&f("code")) else {
                return grant_error(stream, "invalid_grant");
            };
            if redirect != f("redirect_uri") || s256(&f("code_verifier")) != challenge {
                return grant_error(stream, "invalid_grant");
            }
            let v = issue(shared, &mut st);
            drop(st);
            json_reply(stream, 200, &v);
        }
        "refresh_token" => {
            std::thread::sleep(Duration::from_millis(cfg.token_delay_ms));
            let mut st = shared.state();
            let old = f("refresh_token");
            if !cfg.refresh_ok || !st.refresh.contains(&old) {
                drop(st);
                return grant_error(stream, "invalid_grant");
            }
            let mut v = issue(shared, &mut st);
            if cfg.rotate {
                st.refresh.remove(&old);
            } else {
                let issued = v["refresh_token"].as_str().unwrap_or("").to_string();
                st.refresh.remove(&issued);
                v.as_object_mut().expect("object").remove("refresh_token");
            }
            drop(st);
            json_reply(stream, 200, &v);
        }
        "urn:ietf:params:oauth:grant-type:device_code" => {
            let mut st = shared.state();
            let Some(polls) = st.devices.get_mut(&f("device_code")) else {
                return grant_error(stream, "invalid_grant");
            };
            *polls += 1;
            if *polls <= cfg.device_pending_polls {
                drop(st);
                return grant_error(stream, "authorization_pending");
            }
            st.devices.remove(&f("device_code"));
            let v = issue(shared, &mut st);
            drop(st);
            json_reply(stream, 200, &v);
        }
        _ => grant_error(stream, "unsupported_grant_type"),
    }
}

/// The binary running with its stderr read line by line.
pub struct Proc {
    child: Child,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
}

/// Starts `llxprt ARGS` in `cli`'s homes (the fixture's environment) with empty stdin.
pub fn spawn(cli: &Cli, args: &[&str]) -> Proc {
    spawn_env(cli, args, &[])
}

/// [`spawn`] with extra environment variables.
pub fn spawn_env(cli: &Cli, args: &[&str], env: &[(&str, &str)]) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_llxprt"))
        .args(args)
        .env_clear()
        .env("LLXPRT_HOME", cli.home())
        .env("HOME", cli.user_home())
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .current_dir(cli.home())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the llxprt binary runs");
    let err = child.stderr.take().expect("piped");
    let (tx, rx) = channel();
    let all = Arc::new(Mutex::new(String::new()));
    let sink = all.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let mut all = sink.lock().unwrap_or_else(PoisonError::into_inner);
            all.push_str(&line);
            all.push('\n');
            drop(all);
            let _ = tx.send(line);
        }
    });
    Proc {
        child,
        lines: rx,
        stderr: all,
        reader: Some(reader),
    }
}

impl Proc {
    /// The first stderr line that satisfies `pred`, waiting at most `timeout`.
    pub fn wait_line(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if pred(&l) => return l,
                Ok(_) => {}
                Err(e) => panic!(
                    "no such line within {timeout:?} ({e:?}); stderr so far:\n{}",
                    self.stderr.lock().unwrap_or_else(PoisonError::into_inner)
                ),
            }
        }
    }

    /// Waits for the exit: (code, stdout, stderr).
    pub fn finish(mut self) -> (i32, String, String) {
        let mut out = String::new();
        if let Some(mut o) = self.child.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        let status = self.child.wait().expect("wait");
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let err = self
            .stderr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        (status.code().unwrap_or(-1), out, err)
    }
}

/// Plays the browser: GETs the authorize URL, follows its redirect to the loopback listener
/// by hand, and returns that page's status and body.
pub fn play_browser(authorize_url: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent();
    let resp = agent.get(authorize_url).call().expect("authorize request");
    assert_eq!(
        resp.status().as_u16(),
        302,
        "the authorize endpoint redirects"
    );
    let location = resp
        .headers()
        .get("location")
        .expect("a Location header")
        .to_str()
        .expect("ASCII")
        .to_string();
    let mut page = agent
        .get(&location)
        .call()
        .expect("the loopback listener answers");
    let status = page.status().as_u16();
    let body = page.body_mut().read_to_string().unwrap_or_default();
    (status, body)
}
