//! Secret redaction everywhere (SPEC §7; issue 7, point 4): one fixture home with planted
//! secrets of every kind — a keyfile's content, an inline `auth-key`, the provider's
//! environment variable, secret `custom-headers` values (`Authorization`, `X-Api-Key`,
//! `Cookie`), OAuth access and refresh tokens, an API-key bucket, `serve`'s own `--api-key` —
//! behind loopback fault servers that echo them back in error bodies, error codes and response
//! headers (providers do). Then every command and output path runs (`chat` text and `--json`,
//! a failing chat, `--record`, `simulate`, `stats`, `diagnostics`, `profile show|list|validate`,
//! `auth status`, the session, `serve` with its request log and `--record`, error messages of
//! bad command-line values, a forced panic), and everything printed or written is grepped for
//! each secret: the whole value, its middle (what `sk-…abcd` redaction hides) and a unique
//! core. Every check names the command or file that leaked.
//!
//! The grep is shown to work (positive controls): the credential files, the keyfile, the
//! profiles this test wrote and the upstream servers' requests do hold the secrets.
//!
//! Planted secrets mostly have dots in them: the generic scrubber of provider messages only
//! recognises key-shaped words (`sk-…`, long alphanumeric runs), so these are only hidden by
//! the exact replacement of every secret the request carried.

mod support;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::Cli;
use support::oauth::{Config, OAuthServer};
use support::server::{Reply, Server, anthropic_error, gemini_error, openai_error, openai_stream};

/// A planted secret: a name for messages, the value, and a unique core that only ever occurs
/// inside this value.
struct Planted {
    name: &'static str,
    value: String,
    core: &'static str,
}

const KEYFILE_KEY: &str = "kf.PLANTED.keyfile.4b1d9e7c2a60.tail";
const INLINE_KEY: &str = "sk-PLANTED-inline-8c2e5a1f7d93-zz";
const ENV_KEY: &str = "ev.PLANTED.envkey.3e9a7c1b5d20.zz";
const HDR_AUTH: &str = "Bearer ha.PLANTED.hdrauth.6d2b8f0a4c17.zz";
const HDR_XKEY: &str = "xk.PLANTED.hdrxkey.9a4e2c6b8d13.zz";
const HDR_COOKIE: &str = "sid=ck.PLANTED.cookie.5f7b1d3e9a24.zz; theme=dark";
const ACCESS: &str = "eyJhbGciOiJub25lIn0.PLANTED-access-2c8e4a6f0b19.sig";
const REFRESH: &str = "rt.PLANTED.refresh.7e1c3a5b9d42.zz";
const DEAD_ACCESS: &str = "eyJhbGciOiJub25lIn0.PLANTED-deadaccess-1b3d5f7a9c20.sig";
const DEAD_REFRESH: &str = "rt.PLANTED.deadrefresh.4a6c8e0b2d31.zz";
const BUCKET_KEY: &str = "bk.PLANTED.bucketkey.0d2f4b6a8c15.zz";
const SESSION_HDR: &str = "st.PLANTED.sessionhdr.8b0d2f4a6c37.zz";
const CLI_KEY: &str = "cl.PLANTED.clikey.2e4a6c8b0d59.zz";
const TRACE_KEY: &str = "tr.PLANTED.tracekey.6f8a0c2e4b71.zz";
const BROKEN_KEY: &str = "sk-PLANTED-broken-3a5c7e9b1d80-zz";
const SERVE_KEY: &str = "gk.PLANTED.gateway.9c1e3a5d7b62.zz";
const WRONG_KEY: &str = "wk.PLANTED.wrongkey.5d7f9b1a3c84.zz";
const PANIC_SECRET: &str = "pn.PLANTED.panic.1f3b5d7a9c06.zz";
/// SPEC §7.1: a custom header whose name does not look secret is a secret all the same.
const HDR_CRED: &str = "xc.PLANTED.credential.7a9c1e3b5d86.zz";
/// Echoed by its upstream uppercased, percent-encoded and only its middle 10 characters.
const ECHO_KEY: &str = "ek.PLANTED.echokey.8d0f2b4a6c93.zz";
/// In a `base-url`'s userinfo and query.
const URL_USER: &str = "uu.PLANTED.urluser.2b4d6f8a0c17.zz";
const URL_QUERY: &str = "uq.PLANTED.urlquery.5c7e9a1b3d28.zz";
/// serve's own key from `LLXPRT_SERVE_API_KEY` and from `--api-key-file`.
const ENV_SERVE_KEY: &str = "se.PLANTED.serveenv.3d5f7b9a1c40.zz";
const FILE_SERVE_KEY: &str = "sf.PLANTED.servefile.6a8c0e2b4d51.zz";
const CLIENT: &str = "llxprt-test-client";

fn planted() -> Vec<Planted> {
    let p = |name, value: &str, core| Planted {
        name,
        value: value.to_string(),
        core,
    };
    vec![
        p("keyfile content", KEYFILE_KEY, "4b1d9e7c2a60"),
        p("inline auth-key", INLINE_KEY, "8c2e5a1f7d93"),
        p("GEMINI_API_KEY", ENV_KEY, "3e9a7c1b5d20"),
        p("custom Authorization", HDR_AUTH, "6d2b8f0a4c17"),
        p("custom X-Api-Key", HDR_XKEY, "9a4e2c6b8d13"),
        p("custom Cookie", HDR_COOKIE, "5f7b1d3e9a24"),
        p("OAuth access token", ACCESS, "2c8e4a6f0b19"),
        p("OAuth refresh token", REFRESH, "7e1c3a5b9d42"),
        p("dead access token", DEAD_ACCESS, "1b3d5f7a9c20"),
        p("dead refresh token", DEAD_REFRESH, "4a6c8e0b2d31"),
        p("bucket API key", BUCKET_KEY, "0d2f4b6a8c15"),
        p("session custom header", SESSION_HDR, "8b0d2f4a6c37"),
        p("command-line auth-key", CLI_KEY, "2e4a6c8b0d59"),
        p("trace auth-key", TRACE_KEY, "6f8a0c2e4b71"),
        p("broken profile auth-key", BROKEN_KEY, "3a5c7e9b1d80"),
        p("serve --api-key", SERVE_KEY, "9c1e3a5d7b62"),
        p("a client's wrong key", WRONG_KEY, "5d7f9b1a3c84"),
        p("panic payload", PANIC_SECRET, "1f3b5d7a9c06"),
        p("custom X-Credential", HDR_CRED, "7a9c1e3b5d86"),
        p("echoed key", ECHO_KEY, "8d0f2b4a6c93"),
        p("base-url userinfo", URL_USER, "2b4d6f8a0c17"),
        p("base-url query", URL_QUERY, "5c7e9a1b3d28"),
        p("LLXPRT_SERVE_API_KEY", ENV_SERVE_KEY, "3d5f7b9a1c40"),
        p("serve --api-key-file", FILE_SERVE_KEY, "6a8c0e2b4d51"),
    ]
}

/// Every byte of `s` as `%XX`.
fn percent_encoded(s: &str) -> String {
    s.bytes().fold(String::new(), |mut o, b| {
        let _ = write!(o, "%{b:02X}");
        o
    })
}

/// `text` with its `%XX` escapes decoded (other bytes as they are).
fn percent_decoded(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(v) if b[i] == b'%' => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The 10 characters in the middle of a secret (SPEC §7.1: any run of 8 of a secret is one).
fn middle10(v: &str) -> String {
    let c: Vec<char> = v.chars().collect();
    let at = c.len() / 2 - 5;
    c[at..at + 10].iter().collect()
}

/// What of the secrets `text` shows: `(secret name, what matched)`. A secret counts as shown
/// when its whole value, its middle (all but the 3 + 4 characters redaction may keep), its
/// middle 10 characters or its unique core appears, in any case, raw or percent-encoded
/// (SPEC §7.1).
fn shown(text: &str, secrets: &[Planted], extra: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    let middle = |v: &str| -> String {
        let c: Vec<char> = v.chars().collect();
        c[3..c.len() - 4].iter().collect()
    };
    let decoded = percent_decoded(text);
    let text = format!("{}\n{}", text.to_lowercase(), decoded.to_lowercase());
    let text = text.as_str();
    for s in secrets {
        for (what, needle) in [
            ("whole value", s.value.clone()),
            ("middle", middle(&s.value)),
            ("middle 10", middle10(&s.value)),
            ("core", s.core.to_string()),
        ] {
            if text.contains(&needle.to_lowercase()) {
                found.push(format!("{} ({what} {needle:?})", s.name));
                break;
            }
        }
    }
    for e in extra {
        let e = e.to_lowercase();
        if text.contains(e.as_str()) || text.contains(&middle(&e)) {
            found.push(format!("issued token {e:?}"));
        }
    }
    found
}

fn private_file(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

fn bucket_file(cli: &Cli, provider: &str, bucket: &str) -> PathBuf {
    cli.home()
        .join("oauth")
        .join(provider)
        .join(format!("{bucket}.json"))
}

/// The child's environment: the fixture's homes, and the provider variable with its planted
/// key (the fixture's own runner clears the environment, so this test runs the binary itself).
fn command(cli: &Cli, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_llxprt"));
    cmd.args(args)
        .env_clear()
        .env("LLXPRT_HOME", cli.home())
        .env("HOME", cli.user_home())
        .env("NO_COLOR", "1")
        .env("GEMINI_API_KEY", ENV_KEY)
        .current_dir(cli.home());
    cmd
}

/// One run: exit code, stdout and stderr.
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

fn run_with(cli: &Cli, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Ran {
    use std::io::Write as _;
    let mut child = command(cli, args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the llxprt binary runs");
    {
        let mut i = child.stdin.take().unwrap();
        let _ = i.write_all(stdin.as_bytes());
    }
    let out = child.wait_with_output().expect("llxprt finishes");
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `llxprt serve` with the test's environment, its stderr (the request log) collected.
struct Gateway {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Gateway {
    fn start(cli: &Cli, args: &[&str]) -> Gateway {
        Gateway::start_with(cli, args, &[])
    }

    fn start_with(cli: &Cli, args: &[&str], env: &[(&str, &str)]) -> Gateway {
        let mut all = vec!["serve", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let mut child = command(cli, &all)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the llxprt binary runs");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let Ok(addr) = rx.recv_timeout(Duration::from_secs(20)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve did not start: {}", log.lock().unwrap());
        };
        Gateway {
            child,
            addr: addr.parse().expect("an address"),
            log,
            reader: Some(reader),
        }
    }

    /// Ctrl-C, then the exit code and the whole log.
    fn stop(mut self) -> (i32, String) {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        let code = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break -2;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let log = self.log.lock().unwrap().clone();
        (code, log)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A request to the gateway with a bearer key: (status, headers and body as text).
fn gateway_call(addr: SocketAddr, key: &str, path: &str, body: Option<&Value>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .proxy(None)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_mins(1)))
        .build()
        .into();
    let url = format!("http://{addr}{path}");
    let auth = format!("Bearer {key}");
    let resp = match body {
        Some(b) => agent.post(&url).header("authorization", &auth).send_json(b),
        None => agent.get(&url).header("authorization", &auth).call(),
    }
    .expect("the gateway answers");
    let status = resp.status().as_u16();
    let mut text = String::new();
    for (k, v) in resp.headers() {
        let _ = writeln!(text, "{k}: {}", v.to_str().unwrap_or(""));
    }
    let mut bytes = Vec::new();
    let _ = resp.into_body().into_reader().read_to_end(&mut bytes);
    text.push_str(&String::from_utf8_lossy(&bytes));
    (status, text)
}

fn ok_stream() -> Reply {
    Reply::sse(openai_stream(&["fine"], Some("stop"), true, Some((5, 3))))
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.map(Result::unwrap) {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The upstream servers, each playing one backend.
struct Upstreams {
    kf: Server,
    /// Plays `kf` reached with `--set base-url` and `--set auth-key` (SPEC §3: a model profile
    /// used alone takes them from the session): it echoes the key given on the command line.
    cl: Server,
    inl: Server,
    env: Server,
    oa: Server,
    tokens: OAuthServer,
    dead: Server,
    dead_tokens: Server,
    kb: Server,
    /// Echoes its key uppercased, percent-encoded and only its middle (SPEC §7.1).
    ek: Server,
    /// Plays a backend whose `base-url` carries a key in its userinfo and query, and quotes
    /// the URL it was asked for.
    url: Server,
}

impl Upstreams {
    /// Servers that fail and echo what the request carried, and one OAuth backend that
    /// answers after a token refresh.
    fn start() -> Upstreams {
        let kf = Server::start(vec![openai_error(
            401,
            "invalid_request_error",
            Some("invalid_api_key"),
            &format!(
                "Incorrect API key provided: Bearer {KEYFILE_KEY}. Headers: x-api-key={HDR_XKEY} x-credential={HDR_CRED}"
            ),
        )]);
        let cl = Server::start(vec![openai_error(
            401,
            "invalid_request_error",
            Some("invalid_api_key"),
            &format!("Incorrect API key provided: Bearer {CLI_KEY}. Headers: x-api-key={HDR_XKEY}"),
        )]);
        let inl = Server::start(vec![
            anthropic_error(
                "api_error",
                &format!(
                    "internal error for x-api-key {INLINE_KEY} (authorization: {HDR_AUTH}; cookie: {HDR_COOKIE})"
                ),
            )
            .header("x-echo-api-key", INLINE_KEY)
            .header("anthropic-ratelimit-requests-remaining", &format!("0 ({INLINE_KEY})")),
        ]);
        // The key in the error's code, its message and the response headers, a rate-limit
        // header included (kept for diagnostics, SPEC §4).
        let env = Server::start(vec![
            gemini_error(
                503,
                &format!("UNAVAILABLE:{ENV_KEY}"),
                &format!("backend unavailable for key={ENV_KEY} cookie={HDR_COOKIE}"),
                None,
            )
            .header("x-goog-api-key", ENV_KEY)
            .header(
                "x-ratelimit-remaining-requests",
                &format!("0;key={ENV_KEY}"),
            ),
        ]);
        let oa = Server::start(vec![
            openai_error(
                401,
                "invalid_request_error",
                Some("invalid_api_key"),
                &format!("Invalid bearer token {ACCESS} given"),
            ),
            ok_stream(),
        ]);
        let tokens = OAuthServer::start(Config {
            rotate: true,
            ..Config::default()
        });
        tokens.plant(None, Some(REFRESH));
        let dead = Server::start(vec![openai_error(
            401,
            "invalid_request_error",
            Some(format!("token_{DEAD_ACCESS}").as_str()),
            &format!("Token {DEAD_ACCESS} expired"),
        )]);
        let dead_tokens = Server::start(vec![Reply::json(
            400,
            json!({"error": "invalid_grant",
                   "error_description": format!("refresh token {DEAD_REFRESH} was revoked")}),
        )]);
        let kb = Server::start(vec![
            openai_error(
                403,
                "permission_error",
                None,
                &format!("key {BUCKET_KEY} may not use this model"),
            )
            .header(
                "www-authenticate",
                &format!("Bearer token=\"{BUCKET_KEY}\""),
            ),
        ]);
        let ek = Server::start(vec![openai_error(
            401,
            "invalid_request_error",
            Some("invalid_api_key"),
            &format!(
                "Incorrect API key provided: {}. Sent as key={}. Key fragment ****{}****.",
                ECHO_KEY.to_ascii_uppercase(),
                percent_encoded(ECHO_KEY),
                middle10(ECHO_KEY)
            ),
        )]);
        let url = Server::start(vec![openai_error(
            500,
            "server_error",
            None,
            &format!(
                "no route for http://user:{URL_USER}@127.0.0.1/v1?key={URL_QUERY} (user {URL_USER}, key {URL_QUERY})"
            ),
        )]);
        Upstreams {
            kf,
            cl,
            inl,
            env,
            oa,
            tokens,
            dead,
            dead_tokens,
            kb,
            ek,
            url,
        }
    }
}

/// The fixture's profiles and credentials. Returns the files that legitimately hold secrets.
fn plant(cli: &Cli, up: &Upstreams) -> Vec<PathBuf> {
    let keyfile = cli.user_home().join("api.key");
    private_file(&keyfile, &format!("{KEYFILE_KEY}\n"));
    let oauth = |bucket: &str, access: &str, refresh: &str, token_url: String| {
        let v = json!({"version": 1, "kind": "oauth", "access_token": access,
            "refresh_token": refresh, "expires_at_ms": null, "token_url": token_url,
            "client_id": CLIENT, "scope": "chat"});
        private_file(&bucket_file(cli, "openai", bucket), &v.to_string());
    };
    oauth(
        "work",
        ACCESS,
        REFRESH,
        format!("{}/token", up.tokens.url()),
    );
    oauth(
        "dead",
        DEAD_ACCESS,
        DEAD_REFRESH,
        format!("{}/token", up.dead_tokens.url()),
    );
    private_file(
        &bucket_file(cli, "openai", "keyb"),
        &json!({"version": 1, "kind": "apikey", "key": BUCKET_KEY}).to_string(),
    );
    let codes = json!([401, 403, 429, 500, 502, 503, 504]);
    let profiles = [
        (
            "kf",
            json!({"version": 1, "provider": "openai", "model": "kf-model",
                "ephemeralSettings": {"auth-keyfile": keyfile.to_str().unwrap(),
                    "base-url": format!("{}/v1", up.kf.url()),
                    "custom-headers": {"X-Api-Key": HDR_XKEY, "X-Trace": "visible-trace",
                        "X-Credential": HDR_CRED}}}),
        ),
        (
            "inl",
            json!({"version": 1, "provider": "anthropic", "model": "inl-model",
                "ephemeralSettings": {"auth-key": INLINE_KEY, "base-url": up.inl.url(),
                    "custom-headers": {"Authorization": HDR_AUTH}}}),
        ),
        (
            "env",
            json!({"version": 1, "provider": "gemini", "model": "env-model",
                "ephemeralSettings": {"base-url": up.env.url()}}),
        ),
        (
            "oa",
            json!({"version": 1, "provider": "openai", "model": "oa-model",
                "ephemeralSettings": {"base-url": format!("{}/v1", up.oa.url())},
                "auth": {"type": "oauth", "buckets": ["work"]}}),
        ),
        (
            "oadead",
            json!({"version": 1, "provider": "openai", "model": "dead-model",
                "ephemeralSettings": {"base-url": format!("{}/v1", up.dead.url())},
                "auth": {"type": "oauth", "buckets": ["dead"]}}),
        ),
        (
            "kb",
            json!({"version": 1, "provider": "openai", "model": "kb-model",
                "ephemeralSettings": {"base-url": format!("{}/v1", up.kb.url())},
                "auth": {"type": "apikey", "buckets": ["keyb"]}}),
        ),
        (
            "ek",
            json!({"version": 1, "provider": "openai", "model": "ek-model",
                "ephemeralSettings": {"auth-key": ECHO_KEY,
                    "base-url": format!("{}/v1", up.ek.url())}}),
        ),
        (
            "urlkey",
            json!({"version": 1, "provider": "openai", "model": "url-model",
                "ephemeralSettings": {"auth-key": "url-profile-key-not-planted",
                    "base-url": format!("http://user:{URL_USER}@{}/v1?key={URL_QUERY}",
                    up.url.url().trim_start_matches("http://"))}}),
        ),
        // Not a URL llxprt can use: the profile does not load, and the error quotes it.
        (
            "urlbad",
            json!({"version": 1, "provider": "openai", "model": "url-model",
                "ephemeralSettings": {"base-url": format!("ftp://user:{URL_USER}@h.example/v1?key={URL_QUERY}")}}),
        ),
        (
            "lb",
            json!({"version": 1, "type": "loadbalancer", "policy": "failover",
                "backends": ["kf", "inl", "env", "oa"],
                "ephemeralSettings": {"failover_retry_count": 0, "failover_status_codes": codes,
                    "custom-headers": {"Cookie": HDR_COOKIE}}}),
        ),
        (
            "lbfail",
            json!({"version": 1, "type": "loadbalancer", "policy": "failover",
                "backends": ["kf", "inl", "env", "oadead", "kb", "ek", "urlkey"],
                "ephemeralSettings": {"failover_retry_count": 0, "failover_status_codes": codes,
                    "custom-headers": {"Cookie": HDR_COOKIE}}}),
        ),
    ];
    let mut holders = vec![keyfile];
    for (name, p) in profiles {
        let path = cli.write_profile_json(name, &p);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        holders.push(path);
    }
    // A stored profile that does not parse, its key right where the error is.
    let broken = cli.write_profile(
        "broken",
        &format!(
            "{{\n  \"version\": 1,\n  \"provider\": \"openai\",\n  \"model\": \"x\",\n  \"ephemeralSettings\": {{\n    \"auth-key\": \"{BROKEN_KEY}\" \"oops\",\n    \"base-url\": \"http://127.0.0.1:9/v1\"\n  }}\n}}\n"
        ),
    );
    holders.push(broken);
    holders
}

/// Files for `profile validate` and `simulate` that hold secrets next to their errors (outside
/// `LLXPRT_HOME`: the test wrote them).
fn broken_inputs(cli: &Cli) -> Vec<PathBuf> {
    let dir = cli.user_home().join("inputs");
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    vec![
        // Syntax: a missing comma after the key's line; the error is on the next line.
        write(
            "syntax-next-line.json",
            format!(
                "{{\n  \"version\": 1,\n  \"provider\": \"openai\",\n  \"model\": \"x\",\n  \"ephemeralSettings\": {{\n    \"auth-key\": \"{BROKEN_KEY}\"\n    \"base-url\": \"http://127.0.0.1:9/v1\"\n  }}\n}}\n"
            ),
        ),
        // Syntax: an unclosed string holding the key.
        write(
            "syntax-unclosed.json",
            format!(
                "{{\n  \"version\": 1,\n  \"provider\": \"openai\",\n  \"model\": \"x\",\n  \"ephemeralSettings\": {{\"auth-key\": \"{BROKEN_KEY}\n"
            ),
        ),
        // Schema: the key in an array, a header value that is not a string, on one line with
        // other errors.
        write(
            "schema.json",
            format!(
                "{{\n  \"version\": 1,\n  \"provider\": \"openai\",\n  \"model\": \"x\",\n  \"ephemeralSettings\": {{\"auth-key\": [\"{BROKEN_KEY}\"], \"streaming\": \"sometimes\",\n    \"custom-headers\": {{\"Cookie\": [\"{HDR_COOKIE}\"], \"X-Api-Key\": {{\"v\": \"{HDR_XKEY}\"}}}}}}\n}}\n"
            ),
        ),
        // Semantics: a key on a load balancer (not inherited), a misspelt key setting, an
        // unknown provider on the key's line.
        write(
            "semantics-lb.json",
            format!(
                "{{\"version\": 1, \"type\": \"loadbalancer\", \"policy\": \"failover\", \"backends\": [\"kf\", \"nope\"],\n \"ephemeralSettings\": {{\"auth-key\": \"{BROKEN_KEY}\", \"auth-kee\": \"{CLI_KEY}\"}}}}\n"
            ),
        ),
        write(
            "semantics-model.json",
            format!(
                "{{\"version\": 1, \"provider\": \"openaii\", \"model\": \"x\", \"ephemeralSettings\": {{\"apikey\": \"{BROKEN_KEY}\", \"auth-key\": \"{CLI_KEY}\", \"custom-headers\": {{\"X-Auth-Token\": \"{HDR_XKEY}\"}}}}}}\n"
            ),
        ),
    ]
}

/// A trace whose inline profiles carry an `auth-key` and a secret header (SPEC §9.1), and
/// one whose inline profile is broken next to its key.
fn traces(cli: &Cli) -> (PathBuf, PathBuf) {
    let dir = cli.user_home().join("inputs");
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("inline-trace.json");
    let t = json!({
        "version": 1,
        "profile": "tlb",
        "profiles": {
            "ta": {"version": 1, "provider": "openai", "model": "ta-model",
                "ephemeralSettings": {"auth-key": TRACE_KEY,
                    "custom-headers": {"Authorization": HDR_AUTH}}},
            "tb": {"version": 1, "provider": "anthropic", "model": "tb-model",
                "ephemeralSettings": {"auth-key": TRACE_KEY}},
            "tlb": {"version": 1, "type": "loadbalancer", "policy": "failover",
                "backends": ["ta", "tb"],
                "ephemeralSettings": {"custom-headers": {"Cookie": HDR_COOKIE}}}
        },
        "settings": {"failover_status_codes": [401]},
        "requests": [{"at_ms": 0}, {"at_ms": 1000}],
        "outcomes": {
            "ta": {"*": [{"status": 401, "message": format!("Incorrect API key provided: {TRACE_KEY}")}]},
            "tb": {"*": [{"times": 1, "status": 500, "message": format!("x-api-key {TRACE_KEY} failed")}, {"status": 200}]}
        }
    });
    std::fs::write(&good, serde_json::to_string_pretty(&t).unwrap()).unwrap();
    let bad = dir.join("broken-trace.json");
    std::fs::write(
        &bad,
        format!(
            "{{\n  \"version\": 1,\n  \"profile\": \"ta\",\n  \"profiles\": {{\n    \"ta\": {{\"version\": 1, \"provider\": \"openai\", \"model\": \"m\",\n      \"ephemeralSettings\": {{\"auth-key\": \"{TRACE_KEY}\", \"streaming\": \"sometimes\"}}}}\n  }},\n  \"requests\": [{{\"at_ms\": 0}}]\n}}\n"
        ),
    )
    .unwrap();
    (good, bad)
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one fixture, every command in turn: the list reads best in one place"
)]
fn planted_secrets_never_reach_any_output_log_trace_or_file() {
    let up = Upstreams::start();
    let cli = Cli::new();
    let mut holders = plant(&cli, &up);
    let inputs = broken_inputs(&cli);
    let (inline_trace, broken_trace) = traces(&cli);
    let records = cli.home().join("records");
    std::fs::create_dir_all(&records).unwrap();
    let chat_trace = records.join("chat.json");
    let fail_trace = records.join("fail.json");
    let serve_trace = records.join("serve.json");
    let s = |p: &Path| p.to_str().unwrap().to_string();

    let mut outputs: Vec<(String, Ran)> = Vec::new();
    let mut run = |args: &[&str]| {
        let ran = run_with(&cli, args, "", &[]);
        outputs.push((format!("llxprt {}", args.join(" ")), ran));
    };

    // chat: one-shot (text and --json); a success comes from `oa` after a refresh, every
    // attempt before it fails with an echo.
    run(&["chat", "--profile", "lb", "hello?"]);
    run(&["chat", "--profile", "lb", "--json", "hello?"]);
    // Failing chats: every backend fails (the aggregate error), text and --json.
    run(&["chat", "--profile", "lbfail", "hello?"]);
    run(&["chat", "--profile", "lbfail", "--json", "hello?"]);
    // A model profile alone, failing (its own error, not an aggregate of several).
    run(&["chat", "--profile", "kf", "--json", "hello?"]);
    run(&["chat", "--profile", "oadead", "hello?"]);
    // --record, with a secret header set on the command line.
    let session_headers = format!("custom-headers={{\"X-Session-Token\": \"{SESSION_HDR}\"}}");
    run(&[
        "chat",
        "--profile",
        "lb",
        "--set",
        &session_headers,
        "--record",
        &s(&chat_trace),
        "hello?",
    ]);
    run(&[
        "chat",
        "--profile",
        "lbfail",
        "--json",
        "--record",
        &s(&fail_trace),
        "hello?",
    ]);
    // simulate: the recorded traces, and traces with inline profiles carrying keys.
    for t in [&chat_trace, &fail_trace, &inline_trace, &broken_trace] {
        run(&["simulate", &s(t)]);
        run(&["simulate", &s(t), "--json"]);
    }
    // stats, diagnostics, profiles, accounts.
    run(&["chat", "--profile", "ek", "--json", "hello?"]);
    run(&["chat", "--profile", "urlkey", "hello?"]);
    run(&["chat", "--profile", "urlbad", "--json", "hello?"]);
    for p in [
        "lb", "lbfail", "kf", "inl", "env", "oa", "oadead", "kb", "ek", "urlkey", "urlbad",
    ] {
        run(&["stats", "--profile", p]);
        run(&["stats", "--profile", p, "--json"]);
        run(&["diagnostics", "--profile", p]);
        run(&["diagnostics", "--profile", p, "--json"]);
        run(&["profile", "show", p]);
    }
    run(&["stats"]);
    run(&["stats", "buckets", "--json"]);
    run(&["stats", "lb", "--profile", "lbfail"]);
    run(&["diagnostics", "--profile", "broken"]);
    run(&["profile", "show", "broken"]);
    run(&["profile", "list"]);
    run(&["profile", "list", "--json"]);
    run(&["auth", "status"]);
    run(&["auth", "status", "--json"]);
    run(&["auth", "status", "openai"]);
    run(&["chat", "--profile", "broken", "hello?"]);
    run(&["chat", "--profile", "broken", "--json", "hello?"]);
    // profile validate: the stored profiles and the broken inputs (snippet lines!).
    let mut files: Vec<String> = std::fs::read_dir(cli.profiles_dir())
        .unwrap()
        .map(|e| s(&e.unwrap().path()))
        .collect();
    files.extend(inputs.iter().map(|p| s(p)));
    files.push(s(&broken_trace));
    for f in &files {
        run(&["profile", "validate", f]);
        run(&["profile", "validate", "--json", "--strict", f]);
    }
    let mut all_files = vec!["profile", "validate"];
    all_files.extend(files.iter().map(String::as_str));
    run(&all_files);
    // Error messages of bad command-line values that carry a secret.
    let cli_key = format!("auth-key={CLI_KEY}");
    let broken_headers = format!("custom-headers={{\"Cookie\": \"{HDR_COOKIE}\"");
    let header_not_string = format!("custom-headers={{\"X-Api-Key\": [\"{CLI_KEY}\"]}}");
    // With a model profile alone, `--set auth-key` is the session's key (SPEC §3): sent to the
    // server `cl` (which echoes it), not to `kf`'s (which echoes the keyfile's, never sent then).
    let cl_base = format!("base-url={}/v1", up.cl.url());
    run(&[
        "chat",
        "--profile",
        "kf",
        "--json",
        "--set",
        &cli_key,
        "--set",
        &cl_base,
        "hello?",
    ]);
    for set in [&cli_key, &broken_headers, &header_not_string].map(String::as_str) {
        run(&["chat", "--profile", "lb", "--set", set, "hello?"]);
        if set != cli_key {
            run(&["chat", "--profile", "kf", "--json", "--set", set, "hello?"]);
        }
        run(&["simulate", &s(&inline_trace), "--set", set]);
        run(&[
            "profile",
            "save",
            "model",
            "w",
            "--provider",
            "openai",
            "--model",
            "x",
            "--set",
            set,
        ]);
    }
    // profiles written by llxprt (walked below).
    run(&[
        "profile",
        "save",
        "model",
        "saved",
        "--provider",
        "openai",
        "--model",
        "x",
        "--keyfile",
        &s(&cli.user_home().join("api.key")),
        "--set",
        "custom-headers={\"X-Trace\": \"on\"}",
        "keyb",
    ]);
    run(&[
        "profile",
        "save",
        "loadbalancer",
        "savedlb",
        "failover",
        "kf",
        "oa",
    ]);
    run(&["profile", "set-default", "lb"]);
    run(&["profile", "show", "saved"]);
    run(&["profile", "show", "savedlb"]);
    // The interactive session, piped. `/profile load` starts from the loaded profile's own
    // settings (SPEC §8.1), so the header is set again for the second profile.
    let session_set = format!("/set custom-headers {{\"X-Session-Token\": \"{SESSION_HDR}\"}}\n");
    let stdin = format!(
        "{session_set}/set custom-headers\n/diagnostics\n/stats\n/stats buckets\n/auth\nhello\n/profile load kf\n{session_set}/set custom-headers\nagain\n/profile save model sessionsaved\n/quit\n"
    );
    outputs.push((
        "llxprt chat -i --profile lb (session)".into(),
        run_with(
            &cli,
            &["chat", "-i", "--profile", "lb"],
            &stdin,
            &[(support::SESSION_STDIN_HOOK, "1")],
        ),
    ));

    // serve, with --record and its own --api-key; its stderr is the request log.
    let gw = Gateway::start(
        &cli,
        &[
            "--profile",
            "lb",
            "--api-key",
            SERVE_KEY,
            "--record",
            &s(&serve_trace),
        ],
    );
    let msg = |model: &str, stream: bool| {
        json!({"model": model, "stream": stream,
               "messages": [{"role": "user", "content": "hello?"}]})
    };
    let mut replies = Vec::new();
    for (label, key, path, body) in [
        (
            "lb",
            SERVE_KEY,
            "/v1/chat/completions",
            Some(msg("lb", false)),
        ),
        (
            "lb stream",
            SERVE_KEY,
            "/v1/chat/completions",
            Some(msg("lb", true)),
        ),
        (
            "lbfail",
            SERVE_KEY,
            "/v1/chat/completions",
            Some(msg("lbfail", false)),
        ),
        (
            "lbfail stream",
            SERVE_KEY,
            "/v1/chat/completions",
            Some(msg("lbfail", true)),
        ),
        (
            "kf alone",
            SERVE_KEY,
            "/v1/chat/completions",
            Some(msg("kf", false)),
        ),
        ("models", SERVE_KEY, "/v1/models", None),
        ("health", SERVE_KEY, "/health", None),
        (
            "urlbad (500)",
            SERVE_KEY,
            "/v1/chat/completions",
            Some(msg("urlbad", false)),
        ),
        (
            "ek alone",
            SERVE_KEY,
            "/v1/chat/completions",
            Some(msg("ek", false)),
        ),
        (
            "wrong key",
            WRONG_KEY,
            "/v1/chat/completions",
            Some(msg("lb", false)),
        ),
    ] {
        let (status, text) = gateway_call(gw.addr, key, path, body.as_ref());
        replies.push((label, status, text));
    }
    let (code, log) = gw.stop();
    assert_eq!(code, 0, "serve ends with 0 on Ctrl-C:\n{log}");
    for (label, status, text) in replies {
        outputs.push((
            format!("serve reply to {label} ({status})"),
            Ran {
                code: i32::from(status),
                stdout: text,
                stderr: String::new(),
            },
        ));
    }
    // The gateway really served and failed as planned.
    assert!(
        outputs
            .iter()
            .any(|(l, r)| l.starts_with("serve reply to lb (200)") && r.stdout.contains("fine")),
        "the gateway answered through oa"
    );
    assert!(
        outputs
            .iter()
            .any(|(l, _)| l.starts_with("serve reply to lbfail (")),
        "the gateway failed lbfail"
    );
    outputs.push((
        "serve's request log (stderr)".into(),
        Ran {
            code,
            stdout: String::new(),
            stderr: log.clone(),
        },
    ));
    assert!(
        log.contains("profile=lbfail"),
        "the request log has lines:\n{log}"
    );
    // SPEC §7.1: a key on the command line is visible to every local user; serve says so once.
    assert_eq!(
        log.matches("visible to every local user").count(),
        1,
        "serve warns once of --api-key:\n{log}"
    );
    // A recorded trace of serve replays too.
    run_and_push(
        &cli,
        &mut outputs,
        &["simulate", &s(&serve_trace), "--json"],
    );

    if let Some(dir) = std::env::var_os("SECRETS_DUMP") {
        let mut text = String::new();
        for (label, r) in &outputs {
            let _ = writeln!(
                text,
                "==== {label}\nexit {}\n--- stdout\n{}--- stderr\n{}",
                r.code, r.stdout, r.stderr
            );
        }
        std::fs::write(PathBuf::from(dir).join("secrets-dump.txt"), text).unwrap();
    }

    // Positive controls: the secrets were really planted and really sent, so the checks
    // below could fail.
    let secrets = planted();
    let mut issued = up.tokens.issued();
    assert!(!issued.is_empty(), "oa's token was refreshed");
    for n in 1..=issued.len() {
        issued.push(format!("ort-issued-refresh-{n}-2b4d6f8a0c1e3a5c7e9f"));
    }
    let holds = |p: &Path, name: &str| {
        let text = std::fs::read_to_string(p).unwrap();
        assert!(
            shown(&text, &secrets, &[])
                .iter()
                .any(|s| s.starts_with(name)),
            "the grep finds {name} in {}",
            p.display()
        );
    };
    holds(&cli.user_home().join("api.key"), "keyfile content");
    holds(&cli.profile_path("inl"), "inline auth-key");
    holds(&cli.profile_path("kf"), "custom X-Api-Key");
    holds(&cli.profile_path("lb"), "custom Cookie");
    holds(&bucket_file(&cli, "openai", "dead"), "dead access token");
    holds(&bucket_file(&cli, "openai", "dead"), "dead refresh token");
    holds(&bucket_file(&cli, "openai", "keyb"), "bucket API key");
    holds(&inline_trace, "trace auth-key");
    // Profiles saved at the user's request keep what the user put in them: an inline key
    // given with `--set auth-key` (saved with a warning, SPEC §2.3) and the session's custom
    // headers (`/profile save model`). They hold those secrets by design.
    for (file, name) in [
        ("w", "command-line auth-key"),
        ("sessionsaved", "session custom header"),
    ] {
        holds(&cli.profile_path(file), name);
        holders.push(cli.profile_path(file));
    }
    let work = std::fs::read_to_string(bucket_file(&cli, "openai", "work")).unwrap();
    assert!(
        !shown(&work, &[], &issued).is_empty(),
        "the grep finds the issued tokens in the refreshed bucket file"
    );
    for s in &secrets {
        assert!(
            shown(&llxprt::redact::redact(&s.value), &secrets, &[]).is_empty(),
            "the redacted form of {} is not a leak",
            s.name
        );
    }
    let header = |srv: &Server, name: &str| -> Vec<String> {
        srv.requests()
            .iter()
            .filter_map(|r| r.header(name).map(str::to_string))
            .collect()
    };
    assert!(header(&up.kf, "authorization").contains(&format!("Bearer {KEYFILE_KEY}")));
    assert!(
        header(&up.cl, "authorization") == [format!("Bearer {CLI_KEY}")],
        "the request to cl carried the key given with --set auth-key"
    );
    assert!(header(&up.kf, "x-api-key").contains(&HDR_XKEY.to_string()));
    assert!(header(&up.kf, "cookie").contains(&HDR_COOKIE.to_string()));
    assert!(header(&up.inl, "x-api-key").contains(&INLINE_KEY.to_string()));
    assert!(header(&up.inl, "authorization").contains(&HDR_AUTH.to_string()));
    assert!(header(&up.env, "x-goog-api-key").contains(&ENV_KEY.to_string()));
    assert!(header(&up.oa, "authorization").contains(&format!("Bearer {ACCESS}")));
    assert!(header(&up.dead, "authorization").contains(&format!("Bearer {DEAD_ACCESS}")));
    assert!(header(&up.kb, "authorization").contains(&format!("Bearer {BUCKET_KEY}")));
    assert!(header(&up.kf, "x-credential").contains(&HDR_CRED.to_string()));
    assert!(header(&up.ek, "authorization").contains(&format!("Bearer {ECHO_KEY}")));
    holds(&cli.profile_path("urlkey"), "base-url userinfo");
    holds(&cli.profile_path("urlkey"), "base-url query");
    for echo in [
        ECHO_KEY.to_ascii_uppercase(),
        percent_encoded(ECHO_KEY),
        middle10(ECHO_KEY),
    ] {
        assert!(
            shown(&echo, &secrets, &[])
                .iter()
                .any(|s| s.starts_with("echoed key")),
            "the grep finds the echo {echo}"
        );
    }
    assert!(
        header(&up.kf, "x-session-token").contains(&SESSION_HDR.to_string()),
        "the session header was sent"
    );
    assert!(
        up.tokens
            .hits()
            .iter()
            .any(|h| h.fields.get("refresh_token").map(String::as_str) == Some(REFRESH)),
        "the refresh token was sent"
    );
    assert!(
        up.dead_tokens
            .requests()
            .iter()
            .any(|r| r.body.to_string().contains("deadrefresh")),
        "the dead refresh token was sent"
    );
    // And the failures were told all the same (redaction leaves the message readable).
    let said = |prefix: &str| -> String {
        outputs
            .iter()
            .filter(|(l, _)| l.starts_with(prefix))
            .map(|(_, r)| r.all())
            .collect()
    };
    let failed = said("llxprt chat --profile lbfail --json hello?");
    assert!(
        failed.contains("Incorrect API key provided") && failed.contains("was revoked"),
        "{failed}"
    );

    // The checks: every output, then every file under LLXPRT_HOME except the credential
    // files and the profiles this test wrote (which hold the secrets by design).
    let mut leaks = Vec::new();
    for (label, r) in &outputs {
        for what in shown(&r.all(), &secrets, &issued) {
            leaks.push(format!("{label} printed {what}"));
        }
    }
    let mut walked = 0;
    for f in files_under(cli.home()) {
        if f.starts_with(cli.home().join("oauth")) || holders.contains(&f) {
            continue;
        }
        walked += 1;
        if std::env::var_os("SECRETS_DUMP").is_some() {
            eprintln!("walked {}", f.display());
        }
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
        for what in shown(&text, &secrets, &issued) {
            leaks.push(format!(
                "file {} holds {what}",
                f.strip_prefix(cli.home()).unwrap().display()
            ));
        }
    }
    for must in [
        &chat_trace,
        &fail_trace,
        &serve_trace,
        &cli.home().join("state").join("state.json"),
        &cli.profile_path("saved"),
        &cli.profile_path("savedlb"),
        &cli.home().join("settings.json"),
    ] {
        assert!(must.exists(), "{} was written", must.display());
    }
    assert!(walked >= 8, "{walked} files walked");
    eprintln!(
        "checked {} outputs and {walked} files for {} planted secrets and {} issued tokens",
        outputs.len(),
        secrets.len(),
        issued.len()
    );
    assert!(
        leaks.is_empty(),
        "secrets leaked (SPEC §7):\n{}",
        leaks.join("\n")
    );
}

/// SPEC §7, §7.1: serve's own key from `LLXPRT_SERVE_API_KEY` or `--api-key-file` (the file
/// wins), required of clients, never warned about (it is on no command line), and never shown:
/// not in the log, not in a reply.
#[test]
fn serve_takes_its_key_from_the_environment_or_a_file_and_never_shows_it() {
    let up = Server::start(vec![openai_error(
        401,
        "invalid_request_error",
        Some("invalid_api_key"),
        "the key was refused",
    )]);
    let cli = Cli::new();
    cli.write_profile_json(
        "m",
        &json!({"version": 1, "provider": "openai", "model": "m-model",
            "ephemeralSettings": {"base-url": format!("{}/v1", up.url())}}),
    );
    let keyfile = cli.user_home().join("serve.key");
    private_file(&keyfile, &format!("{FILE_SERVE_KEY}\n"));
    let keyfile = keyfile.to_str().unwrap();
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hello?"}]});
    let mut outputs: Vec<(String, String)> = Vec::new();
    for (label, args, key, other) in [
        (
            "LLXPRT_SERVE_API_KEY",
            vec!["--profile", "m"],
            ENV_SERVE_KEY,
            FILE_SERVE_KEY,
        ),
        (
            "--api-key-file",
            vec!["--profile", "m", "--api-key-file", keyfile],
            FILE_SERVE_KEY,
            ENV_SERVE_KEY,
        ),
    ] {
        let gw = Gateway::start_with(&cli, &args, &[("LLXPRT_SERVE_API_KEY", ENV_SERVE_KEY)]);
        let (ok, ok_text) = gateway_call(gw.addr, key, "/v1/models", None);
        let (refused, refused_text) = gateway_call(gw.addr, other, "/v1/models", None);
        let (failed, failed_text) = gateway_call(gw.addr, key, "/v1/chat/completions", Some(&body));
        let (code, log) = gw.stop();
        assert_eq!(code, 0, "{label}: serve ends with 0 on Ctrl-C:\n{log}");
        assert_eq!(ok, 200, "{label}: the key is accepted:\n{ok_text}\n{log}");
        assert_eq!(
            refused, 401,
            "{label}: another key is refused:\n{refused_text}"
        );
        assert!(
            failed >= 400,
            "{label}: the upstream refused:\n{failed_text}"
        );
        assert!(
            !log.contains("visible to every local user"),
            "{label}: no warning for a key on no command line:\n{log}"
        );
        outputs.extend([
            (format!("{label}: serve's log"), log),
            (format!("{label}: reply to the key"), ok_text),
            (format!("{label}: reply to another key"), refused_text),
            (format!("{label}: reply to a failed chat"), failed_text),
        ]);
    }
    let secrets: Vec<Planted> = planted()
        .into_iter()
        .filter(|p| p.value == ENV_SERVE_KEY || p.value == FILE_SERVE_KEY)
        .collect();
    let leaks: Vec<String> = outputs
        .iter()
        .flat_map(|(label, text)| {
            shown(text, &secrets, &[])
                .into_iter()
                .map(move |w| format!("{label} printed {w}"))
        })
        .collect();
    assert!(
        leaks.is_empty(),
        "serve's key leaked (SPEC §7):\n{}",
        leaks.join("\n")
    );
}

fn run_and_push(cli: &Cli, outputs: &mut Vec<(String, Ran)>, args: &[&str]) {
    outputs.push((
        format!("llxprt {}", args.join(" ")),
        run_with(cli, args, "", &[]),
    ));
}

#[test]
fn a_forced_panic_prints_where_but_not_the_secret_in_its_message() {
    let cli = Cli::new();
    let payload = format!("token={PANIC_SECRET} key {INLINE_KEY}");
    let ran = run_with(
        &cli,
        &["profile", "list"],
        "",
        &[("LLXPRT_TEST_PANIC", &payload), ("RUST_BACKTRACE", "1")],
    );
    // The hook ran (a panic exits 101) and said where.
    assert_eq!(ran.code, 101, "{}", ran.all());
    assert!(
        ran.stderr.contains("internal error") && ran.stderr.contains("src/main.rs"),
        "{}",
        ran.stderr
    );
    let leaked = shown(&ran.all(), &planted(), &[]);
    assert!(
        leaked.is_empty(),
        "a panic printed {leaked:?}:\n{}",
        ran.stderr
    );
    // Positive control: the payload did hold the secrets the check looks for.
    assert_eq!(shown(&payload, &planted(), &[]).len(), 2);
}
