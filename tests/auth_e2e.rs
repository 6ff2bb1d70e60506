//! Accounts end to end (SPEC §5.3 the 401 row, §6.3, §7): `llxprt auth login|status|logout`,
//! the OAuth flows against a loopback authorization server (tests/support/oauth.rs), token
//! refresh on a 401 and before use, two processes refreshing one bucket, the credential
//! headers of each protocol, and planted secrets that must never reach any output.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::Cli;
use support::oauth::{Config, OAuthServer, play_browser, s256, spawn, spawn_env};
use support::server::{
    Reply, Server, anthropic_stream, gemini_stream, openai_error, openai_stream,
};

const PLANTED_ACCESS: &str = "oat-planted-access-9d8c7b6a5f4e3d2c1b0a";
const PLANTED_REFRESH: &str = "ort-planted-refresh-1a2b3c4d5e6f7a8b9c0d";
const PLANTED_KEY: &str = "sk-planted-apikey-5e6f7a8b9c0d1e2f3a4b";
const CLIENT: &str = "llxprt-test-client";

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn ok_stream() -> Reply {
    Reply::sse(openai_stream(&["fine"], Some("stop"), true, Some((5, 3))))
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn private_file(path: &std::path::Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

fn bucket_file(cli: &Cli, provider: &str, bucket: &str) -> std::path::PathBuf {
    cli.home()
        .join("oauth")
        .join(provider)
        .join(format!("{bucket}.json"))
}

/// Plants an OAuth login as `llxprt auth login` would have stored it.
fn plant_oauth(
    cli: &Cli,
    bucket: &str,
    access: &str,
    refresh: Option<&str>,
    expires_at_ms: Option<u64>,
    token_url: &str,
) {
    let v = json!({"version": 1, "kind": "oauth", "access_token": access, "refresh_token": refresh,
        "expires_at_ms": expires_at_ms, "token_url": token_url, "client_id": CLIENT, "scope": "chat"});
    private_file(&bucket_file(cli, "openai", bucket), &v.to_string());
}

fn read_bucket(cli: &Cli, provider: &str, bucket: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(bucket_file(cli, provider, bucket)).unwrap())
        .unwrap()
}

/// Model profile `m` on `provider` at `base` with these buckets of `kind`.
fn profile(cli: &Cli, provider: &str, base: &str, kind: &str, buckets: &[&str]) {
    cli.write_profile_json(
        "m",
        &json!({"version": 1, "provider": provider, "model": "m-model",
            "ephemeralSettings": {"base-url": base}, "auth": {"type": kind, "buckets": buckets}}),
    );
}

fn attempts(v: &Value) -> Vec<String> {
    v["attempts"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|a| {
            let status = a.get("status").map(|s| format!(" {s}")).unwrap_or_default();
            format!(
                "{}/{} {}{status}",
                a["backend"].as_str().unwrap(),
                a["bucket"].as_str().unwrap(),
                a["class"].as_str().unwrap()
            )
        })
        .collect()
}

fn chat_json(cli: &Cli) -> (i32, Value, support::Output) {
    let out = cli.run(&["chat", "--profile", "m", "--json", "hello?"]);
    let v = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", out.stdout, out.stderr));
    (out.code, v, out)
}

fn bearers(s: &Server) -> Vec<String> {
    s.requests()
        .iter()
        .map(|r| {
            r.header("authorization")
                .unwrap_or("")
                .trim_start_matches("Bearer ")
                .to_string()
        })
        .collect()
}

#[test]
fn a_pkce_login_through_the_loopback_redirect_stores_private_tokens() {
    let srv = OAuthServer::start(Config::default());
    let cli = Cli::new();
    let u = srv.url();
    let (authorize, token) = (format!("{u}/authorize"), format!("{u}/token"));
    // `codex` is stored under the canonical `openai` (SPEC §6.1).
    let p = spawn(
        &cli,
        &[
            "auth",
            "login",
            "codex",
            "work",
            "--oauth",
            "--authorize-url",
            &authorize,
            "--token-url",
            &token,
            "--client-id",
            CLIENT,
            "--scope",
            "chat",
            "--timeout",
            "30",
        ],
    );
    let line = p.wait_line(
        |l| l.trim_start().starts_with(&format!("{authorize}?")),
        Duration::from_secs(20),
    );
    let (status, page) = play_browser(line.trim());
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Signed in"), "{page}");
    let (code, out, err) = p.finish();
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("stored OAuth tokens for openai/work"), "{err}");
    let path = bucket_file(&cli, "openai", "work");
    #[cfg(unix)]
    assert_eq!(mode(&path), 0o600);
    let v = read_bucket(&cli, "openai", "work");
    let issued = srv.issued();
    assert_eq!(issued.len(), 1);
    assert_eq!(v["kind"], "oauth");
    assert_eq!(v["access_token"], issued[0].as_str());
    assert!(
        v["refresh_token"]
            .as_str()
            .unwrap()
            .starts_with("ort-issued")
    );
    assert_eq!(v["token_url"], token.as_str());
    assert_eq!(v["client_id"], CLIENT);
    assert_eq!(v["scope"], "chat");
    let expires = v["expires_at_ms"].as_u64().unwrap();
    assert!(expires > now_ms() + 3_500_000 && expires <= now_ms() + 3_600_000);
    // The server saw one code exchange whose verifier hashes to the authorize request's
    // challenge, with the same redirect_uri (it refuses anything else).
    let hits = srv.hits();
    let auth = hits.iter().find(|h| h.path == "/authorize").unwrap();
    let exchange = hits.iter().find(|h| h.path == "/token").unwrap();
    assert_eq!(exchange.fields["grant_type"], "authorization_code");
    assert_eq!(
        s256(&exchange.fields["code_verifier"]),
        auth.fields["code_challenge"]
    );
    assert_eq!(auth.fields["code_challenge_method"], "S256");
    assert_eq!(exchange.fields["redirect_uri"], auth.fields["redirect_uri"]);
    assert!(auth.fields["redirect_uri"].starts_with("http://127.0.0.1:"));
    // Nothing secret was printed: tokens, code, verifier.
    let all = format!("{out}{err}");
    for secret in [
        issued[0].as_str(),
        v["refresh_token"].as_str().unwrap(),
        exchange.fields["code"].as_str(),
        exchange.fields["code_verifier"].as_str(),
    ] {
        assert!(!all.contains(secret), "{secret} printed:\n{all}");
    }
}

#[cfg(unix)]
#[test]
fn the_browser_named_by_browser_is_started_with_the_url() {
    use std::os::unix::fs::PermissionsExt;
    let srv = OAuthServer::start(Config::default());
    let cli = Cli::new();
    let u = srv.url();
    let script = cli.user_home().join("browser.sh");
    let opened = cli.user_home().join("opened");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$1\" > '{}'\n", opened.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).unwrap();
    let p = spawn_env(
        &cli,
        &[
            "auth",
            "login",
            "openai",
            "b",
            "--oauth",
            "--authorize-url",
            &format!("{u}/authorize"),
            "--token-url",
            &format!("{u}/token"),
            "--client-id",
            CLIENT,
            "--timeout",
            "30",
        ],
        &[("BROWSER", script.to_str().unwrap())],
    );
    p.wait_line(|l| l.contains("(opened with "), Duration::from_secs(20));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let url = loop {
        let text = std::fs::read_to_string(&opened).unwrap_or_default();
        if text.ends_with('\n') {
            break text.trim().to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the browser was not started"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(url.starts_with(&format!("{u}/authorize?")), "{url}");
    assert_eq!(play_browser(&url).0, 200);
    let (code, _, err) = p.finish();
    assert_eq!(code, 0, "{err}");
}

#[test]
fn the_test_server_really_checks_the_pkce_verifier() {
    // So that the login above succeeding means llxprt's verifier matched its challenge.
    let srv = OAuthServer::start(Config::default());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .new_agent();
    let verifier = "a".repeat(43);
    let authorize = format!(
        "{}/authorize?response_type=code&client_id={CLIENT}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback&code_challenge={}&code_challenge_method=S256&state=s",
        srv.url(),
        s256(&verifier)
    );
    let resp = agent.get(&authorize).call().unwrap();
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let code = location
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let token = format!("{}/token", srv.url());
    let form = |v: &str| {
        vec![
            ("grant_type", "authorization_code".to_string()),
            ("code", code.to_string()),
            ("redirect_uri", "http://127.0.0.1:9/callback".to_string()),
            ("client_id", CLIENT.to_string()),
            ("code_verifier", v.to_string()),
        ]
    };
    let wrong = agent.post(&token).send_form(form(&"b".repeat(43))).unwrap();
    assert_eq!(wrong.status().as_u16(), 400);
    assert!(srv.issued().is_empty());
}

#[test]
fn the_device_flow_polls_until_approved() {
    let srv = OAuthServer::start(Config::default());
    let cli = Cli::new();
    let u = srv.url();
    let out = cli.run(&[
        "auth",
        "login",
        "openai",
        "dev",
        "--device-url",
        &format!("{u}/device"),
        "--token-url",
        &format!("{u}/token"),
        "--client-id",
        CLIENT,
        "--timeout",
        "30",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("open {u}/activate and enter the code WDJB-MJHT")),
        "{}",
        out.stderr
    );
    assert!(
        !out.all().contains("dc-secret-device-code"),
        "{}",
        out.all()
    );
    // One authorization_pending, then the tokens (RFC 8628 §3.5).
    assert_eq!(
        srv.grants("urn:ietf:params:oauth:grant-type:device_code"),
        2
    );
    let v = read_bucket(&cli, "openai", "dev");
    assert_eq!(v["access_token"], srv.issued()[0].as_str());
    #[cfg(unix)]
    assert_eq!(mode(&bucket_file(&cli, "openai", "dev")), 0o600);
}

#[test]
fn a_401_refreshes_the_token_and_the_retry_carries_the_new_one() {
    let srv = OAuthServer::start(Config::default());
    srv.plant(None, Some(PLANTED_REFRESH));
    let prov = Server::start(vec![
        openai_error(
            401,
            "invalid_request_error",
            Some("invalid_api_key"),
            "expired token",
        ),
        ok_stream(),
    ]);
    let cli = Cli::new();
    plant_oauth(
        &cli,
        "work",
        PLANTED_ACCESS,
        Some(PLANTED_REFRESH),
        None,
        &format!("{}/token", srv.url()),
    );
    profile(
        &cli,
        "openai",
        &format!("{}/v1", prov.url()),
        "oauth",
        &["work"],
    );
    let (code, v, out) = chat_json(&cli);
    assert_eq!(code, 0, "{}", out.stderr);
    assert_eq!(attempts(&v), ["m/work auth 401", "m/work success 200"]);
    let issued = srv.issued();
    assert_eq!(issued.len(), 1);
    assert_eq!(bearers(&prov), [PLANTED_ACCESS, issued[0].as_str()]);
    // RFC 6749 §6: one refresh_token grant with the stored refresh token and client id.
    assert_eq!(srv.grants("refresh_token"), 1);
    let hit = srv.hits().into_iter().find(|h| h.path == "/token").unwrap();
    assert_eq!(hit.fields["refresh_token"], PLANTED_REFRESH);
    assert_eq!(hit.fields["client_id"], CLIENT);
    // Stored atomically, private; the answer had no refresh token, so the old one is kept.
    let stored = read_bucket(&cli, "openai", "work");
    assert_eq!(stored["access_token"], issued[0].as_str());
    assert_eq!(stored["refresh_token"], PLANTED_REFRESH);
    assert!(stored["expires_at_ms"].as_u64().unwrap() > now_ms());
    #[cfg(unix)]
    assert_eq!(mode(&bucket_file(&cli, "openai", "work")), 0o600);
    for s in [PLANTED_ACCESS, PLANTED_REFRESH, issued[0].as_str()] {
        assert!(!out.all().contains(s), "{s}:\n{}", out.all());
    }
}

#[test]
fn a_failed_refresh_advances_to_the_next_bucket() {
    let srv = OAuthServer::start(Config {
        refresh_ok: false,
        ..Config::default()
    });
    srv.plant(None, Some(PLANTED_REFRESH));
    let prov = Server::start(vec![
        openai_error(
            401,
            "invalid_request_error",
            Some("invalid_api_key"),
            "expired token",
        ),
        ok_stream(),
    ]);
    let cli = Cli::new();
    let token_url = format!("{}/token", srv.url());
    plant_oauth(
        &cli,
        "b1",
        PLANTED_ACCESS,
        Some(PLANTED_REFRESH),
        None,
        &token_url,
    );
    let second = "oat-planted-second-bucket-0f1e2d3c4b5a";
    plant_oauth(&cli, "b2", second, None, None, &token_url);
    let before = std::fs::read(bucket_file(&cli, "openai", "b1")).unwrap();
    profile(
        &cli,
        "openai",
        &format!("{}/v1", prov.url()),
        "oauth",
        &["b1", "b2"],
    );
    let (code, v, out) = chat_json(&cli);
    assert_eq!(code, 0, "{}", out.stderr);
    assert_eq!(attempts(&v), ["m/b1 auth 401", "m/b2 success 200"]);
    assert_eq!(bearers(&prov), [PLANTED_ACCESS, second]);
    assert_eq!(srv.grants("refresh_token"), 1);
    assert_eq!(
        std::fs::read(bucket_file(&cli, "openai", "b1")).unwrap(),
        before
    );
    assert!(
        out.stderr.contains("token refresh of openai/b1 failed")
            && out.stderr.contains("invalid_grant")
            && out.stderr.contains("llxprt auth login openai b1"),
        "{}",
        out.stderr
    );
    for s in [PLANTED_ACCESS, PLANTED_REFRESH, second] {
        assert!(!out.all().contains(s), "{s}:\n{}", out.all());
    }
}

#[test]
fn a_token_expiring_within_a_minute_is_refreshed_before_use() {
    for expires_at in [now_ms() - 1000, now_ms() + 30_000] {
        let srv = OAuthServer::start(Config::default());
        srv.plant(None, Some(PLANTED_REFRESH));
        let prov = Server::start(vec![ok_stream()]);
        let cli = Cli::new();
        plant_oauth(
            &cli,
            "work",
            PLANTED_ACCESS,
            Some(PLANTED_REFRESH),
            Some(expires_at),
            &format!("{}/token", srv.url()),
        );
        profile(
            &cli,
            "openai",
            &format!("{}/v1", prov.url()),
            "oauth",
            &["work"],
        );
        let (code, v, out) = chat_json(&cli);
        assert_eq!(code, 0, "{}", out.stderr);
        // No request wasted on a certain 401: the provider only ever saw the fresh token.
        assert_eq!(attempts(&v), ["m/work success 200"]);
        assert_eq!(srv.grants("refresh_token"), 1);
        assert_eq!(bearers(&prov), [srv.issued()[0].as_str()]);
    }
}

#[test]
fn two_processes_refreshing_one_bucket_send_one_grant() {
    // Refresh tokens rotate here: a second grant with the old one would be refused.
    for expired in [false, true] {
        let srv = OAuthServer::start(Config {
            rotate: true,
            token_delay_ms: 400,
            ..Config::default()
        });
        srv.plant(None, Some(PLANTED_REFRESH));
        let cli = Cli::new();
        let expires = expired.then(|| now_ms() - 1000);
        plant_oauth(
            &cli,
            "work",
            PLANTED_ACCESS,
            Some(PLANTED_REFRESH),
            expires,
            &format!("{}/token", srv.url()),
        );
        profile(
            &cli,
            "openai",
            &format!("{}/v1", srv.url()),
            "oauth",
            &["work"],
        );
        let a = cli
            .cmd(&["chat", "--profile", "m", "--json", "one"])
            .spawn();
        let b = cli
            .cmd(&["chat", "--profile", "m", "--json", "two"])
            .spawn();
        let (a, b) = (a.wait(), b.wait());
        for out in [&a, &b] {
            assert_eq!(out.code, 0, "expired={expired}: {}", out.all());
            assert!(!out.all().contains(PLANTED_REFRESH));
        }
        assert_eq!(srv.grants("refresh_token"), 1, "expired={expired}");
        let issued = srv.issued();
        assert_eq!(issued.len(), 1);
        let ok: Vec<_> = srv
            .provider_bearers()
            .into_iter()
            .filter(|t| t != PLANTED_ACCESS)
            .collect();
        assert_eq!(
            ok,
            [issued[0].clone(), issued[0].clone()],
            "expired={expired}"
        );
        if expired {
            assert!(!srv.provider_bearers().contains(&PLANTED_ACCESS.to_string()));
        }
        let stored = read_bucket(&cli, "openai", "work");
        assert_eq!(stored["access_token"], issued[0].as_str());
        assert_ne!(
            stored["refresh_token"], PLANTED_REFRESH,
            "the rotated token is kept"
        );
    }
}

#[test]
fn bucket_credentials_go_in_each_protocol_s_header() {
    let cli = Cli::new();
    let keyfile = cli.user_home().join("key");
    private_file(&keyfile, &format!("{PLANTED_KEY}\n"));
    // Anthropic OAuth bucket: Bearer plus the OAuth beta header, no x-api-key.
    let prov = Server::start(vec![Reply::sse(anthropic_stream(&["hi"], true))]);
    let v = json!({"version": 1, "kind": "oauth", "access_token": PLANTED_ACCESS});
    private_file(&bucket_file(&cli, "anthropic", "sub"), &v.to_string());
    profile(&cli, "claudecode", &prov.url(), "oauth", &["sub"]);
    assert_eq!(chat_json(&cli).0, 0);
    let r = &prov.requests()[0];
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {PLANTED_ACCESS}").as_str())
    );
    assert!(
        r.header("anthropic-beta")
            .unwrap_or("")
            .contains("oauth-2025-04-20")
    );
    assert_eq!(r.header("x-api-key"), None);
    // API-key buckets logged in with `auth login`: each protocol's key header.
    for (provider, base, reply, header) in [
        (
            "anthropic",
            "",
            Reply::sse(anthropic_stream(&["hi"], true)),
            "x-api-key",
        ),
        (
            "gemini",
            "",
            Reply::sse(gemini_stream(&["hi"], true)),
            "x-goog-api-key",
        ),
        ("openai", "/v1", ok_stream(), "authorization"),
    ] {
        let prov = Server::start(vec![reply]);
        let login = cli.run(&[
            "auth",
            "login",
            provider,
            "k",
            "--key-file",
            keyfile.to_str().unwrap(),
        ]);
        assert_eq!(login.code, 0, "{}", login.stderr);
        profile(
            &cli,
            provider,
            &format!("{}{base}", prov.url()),
            "apikey",
            &["k"],
        );
        let (code, _, out) = chat_json(&cli);
        assert_eq!(code, 0, "{provider}: {}", out.stderr);
        let r = &prov.requests()[0];
        let want = if header == "authorization" {
            format!("Bearer {PLANTED_KEY}")
        } else {
            PLANTED_KEY.to_string()
        };
        assert_eq!(r.header(header), Some(want.as_str()), "{provider}");
        if header != "authorization" {
            assert_eq!(r.header("authorization"), None, "{provider}");
        }
        assert!(!r.header("anthropic-beta").unwrap_or("").contains("oauth"));
    }
}

#[test]
fn status_shows_kind_expiry_refresh_cooldown_and_last_use_and_logout_deletes() {
    let cli = Cli::new();
    let keyfile = cli.user_home().join("key");
    private_file(&keyfile, PLANTED_KEY);
    for b in ["k1", "k2"] {
        let out = cli.run(&[
            "auth",
            "login",
            "openai",
            b,
            "--key-file",
            keyfile.to_str().unwrap(),
        ]);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    plant_oauth(
        &cli,
        "tok",
        PLANTED_ACCESS,
        Some(PLANTED_REFRESH),
        Some(1_000),
        "https://auth.example/token",
    );
    // A 429 on k1 cools it and both buckets get a last use (SPEC §5.3, §5.10).
    let prov = Server::start(vec![
        openai_error(429, "rate_limit_exceeded", None, "slow"),
        ok_stream(),
    ]);
    profile(
        &cli,
        "openai",
        &format!("{}/v1", prov.url()),
        "apikey",
        &["k1", "k2"],
    );
    assert_eq!(chat_json(&cli).0, 0);
    let out = cli.run(&["auth", "status", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rows: Value = serde_json::from_str(&out.stdout).unwrap();
    let row = |b: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["bucket"] == b)
            .unwrap()
            .clone()
    };
    assert_eq!(row("k1")["kind"], "apikey");
    assert!(row("k1")["cooldown_until"].is_string());
    assert!(row("k1")["last_used"].is_string());
    assert!(row("k2")["cooldown_until"].is_null());
    assert_eq!(row("tok")["kind"], "oauth");
    assert_eq!(row("tok")["expired"], true);
    assert_eq!(row("tok")["refresh_token"], true);
    assert_eq!(row("tok")["expires_at"], "1970-01-01T00:00:01.000Z");
    let text = cli.run(&["auth", "status", "codex"]);
    // SPEC §8.1: an aligned table, times in local time relative to now, no nulls.
    let k1 = table_row(&text.stdout, "openai/k1");
    assert_eq!(k1[1..4], ["apikey", "—", "—"], "{}", text.stdout);
    assert!(
        k1[4].ends_with(" s)") && k1[4].contains("(in "),
        "{}",
        text.stdout
    );
    let tok = table_row(&text.stdout, "openai/tok");
    assert_eq!(tok[1], "oauth", "{}", text.stdout);
    assert!(
        tok[2].starts_with("expired 1970-01-0") && tok[2].ends_with(" d ago)"),
        "{}",
        text.stdout
    );
    assert_eq!(tok[3..], ["yes", "—", "never"], "{}", text.stdout);
    assert!(!text.stdout.contains("null"), "{}", text.stdout);
    assert!(
        cli.run(&["auth", "status", "anthropic"])
            .stdout
            .contains("no bucket logins stored")
    );
    assert_eq!(cli.run(&["auth", "status", "nope"]).code, 2);
    let out = cli.run(&["auth", "logout", "openai", "k2"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!bucket_file(&cli, "openai", "k2").exists());
    assert_eq!(cli.run(&["auth", "logout", "openai", "k2"]).code, 1);
    assert_eq!(
        cli.run(&["auth", "logout", "openai", "status"]).code,
        2,
        "reserved name"
    );
}

#[test]
fn api_keys_come_from_standard_input_or_a_file_never_an_argument() {
    let cli = Cli::new();
    let out = cli
        .cmd(&["auth", "login", "openai", "piped"])
        .stdin(format!("{PLANTED_KEY}\n"))
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(read_bucket(&cli, "openai", "piped")["key"], PLANTED_KEY);
    #[cfg(unix)]
    assert_eq!(mode(&bucket_file(&cli, "openai", "piped")), 0o600);
    let empty = cli.cmd(&["auth", "login", "openai", "e"]).stdin("\n").run();
    assert_eq!(empty.code, 1);
    assert!(
        empty.stderr.contains("the API key is empty"),
        "{}",
        empty.stderr
    );
    // A key as an argument is not a thing; the subscription sign-ins are not built in.
    assert_eq!(
        cli.run(&["auth", "login", "openai", "x", PLANTED_KEY]).code,
        2
    );
    let sub = cli.run(&["auth", "login", "anthropic", "team", "--oauth"]);
    assert_eq!(sub.code, 2);
    assert!(
        sub.stderr
            .contains("no built-in anthropic subscription sign-in")
            && sub.stderr.contains("--key-file"),
        "{}",
        sub.stderr
    );
    let bad = cli.run(&[
        "auth",
        "login",
        "openai",
        "a:b",
        "--key-file",
        "/nonexistent",
    ]);
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains("invalid bucket name \"a:b\""),
        "{}",
        bad.stderr
    );
    assert!(!format!("{}{}", out.all(), empty.all()).contains(PLANTED_KEY));
}

/// A JWT-shaped access token: dots keep it out of the generic key scrubber, so only the
/// exact-secret redaction can keep it out of a provider's echoed message.
const PLANTED_JWT: &str =
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJsbHhwcnQtcGxhbnRlZCJ9.c2lnbmF0dXJlLXBsYW50ZWQ";

#[test]
fn planted_secrets_never_appear_in_any_output_or_file() {
    let srv = OAuthServer::start(Config {
        rotate: true,
        ..Config::default()
    });
    srv.plant(None, Some(PLANTED_REFRESH));
    let cli = Cli::new();
    let mut outputs: Vec<(String, support::Output)> = Vec::new();
    let mut run = |label: &str, out: support::Output| outputs.push((label.to_string(), out));
    run(
        "auth login (stdin)",
        cli.cmd(&["auth", "login", "openai", "key"])
            .stdin(format!("{PLANTED_KEY}\n"))
            .run(),
    );
    let token_url = format!("{}/token", srv.url());
    plant_oauth(
        &cli,
        "tok",
        PLANTED_ACCESS,
        Some(PLANTED_REFRESH),
        None,
        &token_url,
    );
    // The provider echoes the token it refused; then the refresh cures it.
    let echo = |s: &str| {
        openai_error(
            401,
            "invalid_request_error",
            Some("invalid_api_key"),
            &format!("Invalid bearer token {s} given"),
        )
    };
    let prov = Server::start(vec![echo(PLANTED_ACCESS), ok_stream(), ok_stream()]);
    profile(
        &cli,
        "openai",
        &format!("{}/v1", prov.url()),
        "oauth",
        &["tok"],
    );
    run("chat", cli.run(&["chat", "--profile", "m", "hi"]));
    run(
        "chat --json",
        cli.run(&["chat", "--profile", "m", "--json", "hi"]),
    );
    // Failures: an API-key bucket whose key is echoed and refused, and an OAuth bucket whose
    // JWT-shaped token is echoed and whose refresh is refused; both end in the aggregate
    // error, which quotes the provider's message.
    let bad = Server::start(vec![echo(PLANTED_KEY)]);
    cli.write_profile_json("f", &json!({"version": 1, "provider": "openai", "model": "x",
        "ephemeralSettings": {"base-url": format!("{}/v1", bad.url())}, "auth": {"type": "apikey", "buckets": ["key"]}}));
    run("chat error", cli.run(&["chat", "--profile", "f", "hi"]));
    run(
        "chat --json error",
        cli.run(&["chat", "--profile", "f", "--json", "hi"]),
    );
    let refuse = OAuthServer::start(Config {
        refresh_ok: false,
        ..Config::default()
    });
    plant_oauth(
        &cli,
        "dead",
        PLANTED_JWT,
        Some(PLANTED_REFRESH),
        None,
        &format!("{}/token", refuse.url()),
    );
    let bad2 = Server::start(vec![echo(PLANTED_JWT)]);
    cli.write_profile_json("g", &json!({"version": 1, "provider": "openai", "model": "x",
        "ephemeralSettings": {"base-url": format!("{}/v1", bad2.url())}, "auth": {"type": "oauth", "buckets": ["dead"]}}));
    run(
        "chat refresh error",
        cli.run(&["chat", "--profile", "g", "--json", "hi"]),
    );
    for args in [
        &["auth", "status"][..],
        &["auth", "status", "--json"],
        &["auth", "status", "openai"],
        &["diagnostics", "--profile", "m"],
        &["diagnostics", "--profile", "m", "--json"],
        &["diagnostics", "--profile", "g", "--json"],
        &["stats", "--profile", "m"],
        &["stats", "--profile", "m", "--json"],
        &["profile", "show", "m"],
        &["profile", "show", "g"],
        &[
            "profile",
            "save",
            "model",
            "w",
            "--provider",
            "openai",
            "--model",
            "x",
            "key",
            "tok",
            "nobody",
        ],
        &[
            "auth",
            "login",
            "openai",
            "key",
            "--key-file",
            "/nonexistent/key",
        ],
        &[
            "auth",
            "login",
            "openai",
            "tok",
            "--oauth",
            "--token-url",
            "http://example.com/t",
            "--client-id",
            "c",
            "--authorize-url",
            "https://a",
        ],
        &["auth", "logout", "openai", "key"],
    ] {
        run(&args.join(" "), cli.run(args));
    }
    run(
        "session",
        cli.cmd(&["chat", "-i", "--profile", "m"])
            .session_input("/auth\n/auth openai status\n/diagnostics\n/stats\n/profile save model s2 tok\nhello\n/quit\n")
            .run(),
    );
    let mut secrets = vec![
        PLANTED_KEY.to_string(),
        PLANTED_JWT.to_string(),
        PLANTED_ACCESS.to_string(),
        PLANTED_REFRESH.to_string(),
    ];
    secrets.extend(srv.issued());
    assert!(!srv.issued().is_empty(), "the refresh happened");
    assert_eq!(
        bearers(&prov)[0],
        PLANTED_ACCESS,
        "the provider did see the planted token"
    );
    assert_eq!(bearers(&bad2), [PLANTED_JWT], "and the JWT-shaped one");
    for (label, out) in &outputs {
        for s in &secrets {
            assert!(
                !out.all().contains(s.as_str()),
                "{label} printed a secret:\n{}",
                out.all()
            );
        }
    }
    // The session and the failures said something useful all the same.
    let said = |l: &str| outputs.iter().find(|(x, _)| x == l).unwrap().1.all();
    assert!(
        said("chat error").contains("Invalid bearer token"),
        "{}",
        said("chat error")
    );
    let jwt = said("chat refresh error");
    assert!(
        jwt.contains("Invalid bearer token eyJ")
            && jwt.contains("token refresh of openai/dead failed"),
        "{jwt}"
    );
    if std::env::var_os("AUTH_E2E_DUMP").is_some() {
        for (label, out) in &outputs {
            eprintln!("==== {label}\n{}", out.render());
        }
    }
    assert!(
        table_row(&said("auth status"), "openai/tok")[1] == "oauth",
        "{}",
        said("auth status")
    );
    assert!(
        table_row(&said("session"), "openai/tok")[1] == "oauth",
        "{}",
        said("session")
    );
    // No file outside the bucket files holds one either (state, history, profiles).
    let mut stack = vec![cli.home().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().map(Result::unwrap) {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().unwrap() != "oauth" {
                    stack.push(p);
                }
            } else {
                let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
                for s in &secrets {
                    assert!(!text.contains(s.as_str()), "{} holds a secret", p.display());
                }
            }
        }
    }
}

#[test]
fn the_session_logs_in_enables_oauth_and_warns_about_missing_buckets() {
    let srv = OAuthServer::start(Config::default());
    let cli = Cli::new();
    let u = srv.url();
    let keyfile = cli.user_home().join("key");
    private_file(&keyfile, PLANTED_KEY);
    let device =
        format!("--device-url {u}/device --token-url {u}/token --client-id {CLIENT} --timeout 30");
    let lines = [
        "/auth".to_string(),
        format!("/auth codex login k {}", keyfile.display()),
        "/auth openai login x".to_string(),
        "/auth anthropic enable".to_string(),
        "/provider openai".to_string(),
        "/model m-model".to_string(),
        format!("/baseurl {u}/v1"),
        "/auth openai enable".to_string(),
        format!("/auth openai login default {device}"),
        "/auth openai enable".to_string(),
        "/auth openai status".to_string(),
        "hello".to_string(),
        "/profile save model po".to_string(),
        "/auth openai disable".to_string(),
        "/profile save model pk k nobody".to_string(),
        "/auth openai logout k".to_string(),
        "/auth openai logout k".to_string(),
        "/auth openai frobnicate".to_string(),
        "/quit".to_string(),
    ];
    let out = cli
        .cmd(&["chat", "-i"])
        .session_input(lines.join("\n") + "\n")
        .run();
    let all = out.all();
    assert_eq!(out.code, 0, "{all}");
    assert!(all.contains("no bucket logins stored"), "{all}");
    assert!(all.contains("stored an API key for openai/k"), "{all}");
    assert!(all.contains("an API key comes from a file"), "{all}");
    assert!(
        all.contains("no provider chosen: /provider anthropic first"),
        "{all}"
    );
    assert!(
        all.contains("no OAuth login is stored for openai/default"),
        "{all}"
    );
    assert!(
        all.contains("no built-in openai subscription sign-in"),
        "{all}"
    );
    assert!(all.contains("enter the code WDJB-MJHT"), "{all}");
    assert!(
        all.contains("the session uses the OAuth login of bucket \"default\""),
        "{all}"
    );
    let row = table_row(&out.stdout, "openai/default");
    assert_eq!(row[1], "oauth", "{all}");
    assert!(row[2].contains("(in "), "{all}");
    // The message went out with the OAuth login's token.
    assert!(out.stdout.contains("ok"), "{all}");
    assert_eq!(srv.provider_bearers(), [srv.issued()[0].clone()]);
    let po: Value = serde_json::from_str(&cli.read_profile("po")).unwrap();
    assert_eq!(po["auth"], json!({"type": "oauth"}));
    let pk: Value = serde_json::from_str(&cli.read_profile("pk")).unwrap();
    assert_eq!(
        pk["auth"],
        json!({"type": "apikey", "buckets": ["k", "nobody"]})
    );
    assert!(
        all.contains("warning: bucket \"nobody\" has no stored credential for openai; log it in with /auth openai login nobody"),
        "{all}"
    );
    assert!(!all.contains("bucket \"k\" has no stored"), "{all}");
    assert!(all.contains("logged out openai/k"), "{all}");
    assert!(all.contains("no login is stored for openai/k"), "{all}");
    assert!(all.contains("usage: /auth"), "{all}");
    assert!(
        !all.contains(PLANTED_KEY) && !all.contains(&srv.issued()[0]),
        "{all}"
    );
    // The command line warns the same way.
    let save = cli.run(&[
        "profile",
        "save",
        "model",
        "c",
        "--provider",
        "codex",
        "--model",
        "x",
        "--oauth",
        "default",
        "gone",
    ]);
    assert_eq!(save.code, 0, "{}", save.stderr);
    assert!(
        save.stderr.contains("warning: bucket \"gone\" has no stored credential for openai; log it in with llxprt auth login openai gone"),
        "{}",
        save.stderr
    );
    assert!(
        !save.stderr.contains("\"default\" has no"),
        "{}",
        save.stderr
    );
}

/// Writes `m`: an openai model profile at `base` with these extra top-level fields.
fn profile_with(cli: &Cli, base: &str, extra: &Value) {
    let mut p = json!({"version": 1, "provider": "openai", "model": "m-model",
        "ephemeralSettings": {"base-url": base}});
    for (k, v) in extra.as_object().unwrap() {
        if k == "ephemeralSettings" {
            for (sk, sv) in v.as_object().unwrap() {
                p["ephemeralSettings"][sk] = sv.clone();
            }
        } else {
            p[k] = v.clone();
        }
    }
    cli.write_profile_json("m", &p);
}

/// Regression (SPEC §6.3): after `llxprt auth login openai default`, every openai profile sent
/// that stored key, even one with its own keyfile and base URL. The profile's keyfile comes
/// first; the stored `default` key is only the last resort of a profile that names none.
#[test]
fn a_stored_default_key_never_replaces_a_profile_s_own_keyfile() {
    let cli = Cli::new();
    let shared = cli.user_home().join("shared-key");
    private_file(&shared, &format!("{PLANTED_KEY}\n"));
    let login = cli.run(&[
        "auth",
        "login",
        "openai",
        "default",
        "--key-file",
        shared.to_str().unwrap(),
    ]);
    assert_eq!(login.code, 0, "{}", login.stderr);
    let own_key = "sk-own-keyfile-key-77aa88bb99cc00dd";
    let own = cli.user_home().join("own-key");
    private_file(&own, own_key);
    let prov = Server::start(vec![ok_stream(), ok_stream()]);
    let base = format!("{}/v1", prov.url());
    profile_with(
        &cli,
        &base,
        &json!({"ephemeralSettings": {"auth-keyfile": own.display().to_string()}}),
    );
    let (code, _, out) = chat_json(&cli);
    assert_eq!(code, 0, "{}", out.stderr);
    // diagnostics names the source a Send uses.
    let diag = cli.run(&["diagnostics", "--profile", "m", "--json"]);
    let d: Value = serde_json::from_str(diag.stdout.trim()).unwrap();
    assert_eq!(d["backends"][0]["credentials"][0]["source"], "keyfile");
    // Without a keyfile, key or variable, the stored `default` key is used.
    profile_with(&cli, &base, &json!({}));
    let (code, _, out) = chat_json(&cli);
    assert_eq!(code, 0, "{}", out.stderr);
    assert_eq!(bearers(&prov), [own_key, PLANTED_KEY]);
    assert!(!out.all().contains(PLANTED_KEY) && !diag.all().contains(own_key));
}

/// SPEC §6.3: a stored OAuth `default` login belongs to `oauth` profiles; an API-key profile
/// with its own keyfile never sends it.
#[test]
fn a_stored_default_oauth_login_is_not_used_by_an_api_key_profile() {
    let cli = Cli::new();
    plant_oauth(
        &cli,
        "default",
        PLANTED_ACCESS,
        None,
        None,
        "http://127.0.0.1:1/token",
    );
    let own_key = "sk-own-keyfile-key-77aa88bb99cc00dd";
    let own = cli.user_home().join("own-key");
    private_file(&own, own_key);
    let prov = Server::start(vec![ok_stream()]);
    profile_with(
        &cli,
        &format!("{}/v1", prov.url()),
        &json!({"ephemeralSettings": {"auth-keyfile": own.display().to_string()}}),
    );
    let (code, _, out) = chat_json(&cli);
    assert_eq!(code, 0, "{}", out.stderr);
    assert_eq!(bearers(&prov), [own_key]);
}

/// SPEC §2.1, §6.3, §5.3: an `oauth` profile uses its stored logins only; without one, the
/// bucket is passed over without a request (no attempt, never "answered auth 401"), the error
/// says how to log in, and the environment's key is never sent.
#[test]
fn an_oauth_profile_without_a_login_never_sends_the_environment_key() {
    let cli = Cli::new();
    let prov = Server::start(vec![ok_stream()]);
    profile_with(
        &cli,
        &format!("{}/v1", prov.url()),
        &json!({"auth": {"type": "oauth"}}),
    );
    let out = cli
        .cmd(&["chat", "--profile", "m", "--json", "hello?"])
        .env("OPENAI_API_KEY", PLANTED_KEY)
        .run();
    assert_eq!(out.code, 1, "{}", out.all());
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(attempts(&v), Vec::<String>::new());
    assert!(!out.all().contains("401"), "{}", out.all());
    assert!(
        out.all().contains("llxprt auth login openai default"),
        "{}",
        out.all()
    );
    assert!(
        prov.requests().is_empty(),
        "nothing is sent without a login"
    );
    let diag = cli
        .cmd(&["diagnostics", "--profile", "m", "--json"])
        .env("OPENAI_API_KEY", PLANTED_KEY)
        .run();
    let d: Value = serde_json::from_str(diag.stdout.trim()).unwrap();
    assert_eq!(d["backends"][0]["credentials"][0]["source"], "missing");
    assert!(!out.all().contains(PLANTED_KEY) && !diag.all().contains(PLANTED_KEY));
}

/// The cells of the table row of `text` that starts with `start` (columns are two or more
/// spaces apart); a cell wrapped onto the lines below (a table fitted to 80 columns) is joined
/// back with spaces.
fn table_row(text: &str, start: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no row {start}:\n{text}"));
    // (column where a cell starts, its text) of one line.
    let segments = |l: &str| -> Vec<(usize, String)> {
        let chars: Vec<char> = l.chars().collect();
        let mut out: Vec<(usize, String)> = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            if chars[i] == ' ' {
                i += 1;
                continue;
            }
            let begin = i;
            while i < chars.len()
                && !(chars[i] == ' ' && chars.get(i + 1).is_none_or(|c| *c == ' '))
            {
                i += 1;
            }
            out.push((begin, chars[begin..i].iter().collect()));
        }
        out
    };
    let mut cells = segments(lines[at]);
    for l in lines[at + 1..].iter().take_while(|l| l.starts_with(' ')) {
        for (col, piece) in segments(l) {
            if let Some(cell) = cells.iter_mut().rev().find(|(c, _)| *c <= col) {
                cell.1.push(' ');
                cell.1.push_str(&piece);
            }
        }
    }
    cells.into_iter().map(|(_, c)| c).collect()
}
