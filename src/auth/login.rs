//! Logging a bucket in (SPEC §6.3): an API key from a file or standard input, or OAuth tokens
//! from the authorization-code flow with PKCE and a loopback redirect, or from the device flow
//! (RFC 8628). Shared by `llxprt auth login` and the session's `/auth P login B`.
//!
//! Owns: choosing the flow from the flags, running it, and storing the result atomically with
//! mode 0600. Must not: echo or print a key, token, code or verifier (messages go through the
//! `say` callback and name only paths, URLs to open and the device flow's user code).

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::browser::open_browser;
use super::loopback::Listener;
use super::pkce::{self, Pkce};
use super::store;
use super::token::{self, Poll, Tokens};
use crate::auth::credentials::{MAX_SECRET_FILE_BYTES, StoredCredential};
use crate::clock::now_ms;
use crate::fsutil::read_once;
use crate::provider::Provider;
use crate::timefmt::rfc3339;

/// The login flags, as `llxprt auth login` and `/auth P login B` take them.
#[derive(Debug, Clone, Default)]
pub struct LoginFlags {
    /// `--key-file F`.
    pub key_file: Option<PathBuf>,
    /// `--oauth`.
    pub oauth: bool,
    /// `--authorize-url U`.
    pub authorize_url: Option<String>,
    /// `--token-url U`.
    pub token_url: Option<String>,
    /// `--client-id ID`.
    pub client_id: Option<String>,
    /// `--scope S`.
    pub scope: Option<String>,
    /// `--device-url U`.
    pub device_url: Option<String>,
}

/// How the credential is obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// An API key from this file (trimmed).
    KeyFile(PathBuf),
    /// An API key from standard input (without echo on a terminal).
    KeyStdin,
    /// Authorization code + PKCE with a loopback redirect.
    Code {
        /// Authorize endpoint.
        authorize_url: String,
        /// Token endpoint.
        token_url: String,
        /// Client id.
        client_id: String,
        /// Scope, if any.
        scope: Option<String>,
    },
    /// The device authorization grant.
    Device {
        /// Device authorization endpoint.
        device_url: String,
        /// Token endpoint.
        token_url: String,
        /// Client id.
        client_id: String,
        /// Scope, if any.
        scope: Option<String>,
    },
}

/// What is said when a provider's own subscription sign-in is asked for (SPEC §6.3).
pub fn no_builtin_signin(provider: &str, bucket: &str) -> String {
    format!(
        "llxprt has no built-in {provider} subscription sign-in (each provider's uses its own flow and client; SPEC §6.3). Use an API-key bucket (llxprt auth login {provider} {bucket} --key-file FILE, or the key on standard input), or the generic OAuth flow with the endpoints of your provider: --oauth --authorize-url URL --token-url URL --client-id ID [--scope S], or --device-url URL --token-url URL --client-id ID"
    )
}

/// Chooses the flow from the flags.
pub fn method(provider: &str, bucket: &str, f: &LoginFlags) -> Result<Method, String> {
    let oauth_flags = f.oauth
        || f.authorize_url.is_some()
        || f.token_url.is_some()
        || f.client_id.is_some()
        || f.device_url.is_some();
    if f.key_file.is_some() && oauth_flags {
        return Err("--key-file stores an API key; it does not go with the OAuth flags".into());
    }
    if !oauth_flags {
        return Ok(f.key_file.clone().map_or(Method::KeyStdin, Method::KeyFile));
    }
    let (Some(token_url), Some(client_id)) = (&f.token_url, &f.client_id) else {
        return Err(no_builtin_signin(provider, bucket));
    };
    let scope = f.scope.clone().filter(|s| !s.trim().is_empty());
    if let Some(device_url) = &f.device_url {
        if f.authorize_url.is_some() {
            return Err("give either --authorize-url (browser sign-in) or --device-url (device code), not both".into());
        }
        return Ok(Method::Device {
            device_url: device_url.clone(),
            token_url: token_url.clone(),
            client_id: client_id.clone(),
            scope,
        });
    }
    let Some(authorize_url) = &f.authorize_url else {
        return Err(no_builtin_signin(provider, bucket));
    };
    Ok(Method::Code {
        authorize_url: authorize_url.clone(),
        token_url: token_url.clone(),
        client_id: client_id.clone(),
        scope,
    })
}

/// How a login runs: how long it waits for the user, and whether it may open a browser.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Longest wait for the browser's redirect or the device approval.
    pub timeout: Duration,
    /// Open a browser when one is available.
    pub open_browser: bool,
}

/// Runs the login and stores the credential; returns the confirmation line. `say` receives
/// what the user must do (the URL to open, the device code); `cancelled` is polled while
/// waiting for the user.
pub fn login(
    root: &Path,
    provider: &Provider,
    bucket: &str,
    method: &Method,
    opts: Options,
    say: &mut dyn FnMut(&str),
    cancelled: &dyn Fn() -> bool,
) -> Result<String, String> {
    let p = provider.name;
    let (cred, what) = match method {
        Method::KeyFile(path) => (api_key(&read_key_file(path)?)?, "an API key".to_string()),
        Method::KeyStdin => (
            api_key(&read_key_stdin(&format!(
                "API key for {p}/{bucket} (not shown): "
            ))?)?,
            "an API key".to_string(),
        ),
        Method::Code {
            authorize_url,
            token_url,
            client_id,
            scope,
        } => {
            token::check_endpoint(authorize_url)?;
            token::check_endpoint(token_url)?;
            let pkce = Pkce::new()?;
            let listener = Listener::bind()
                .map_err(|e| format!("cannot listen on 127.0.0.1 for the redirect: {e}"))?;
            let redirect = listener.redirect_uri();
            let url =
                pkce::authorize_url(authorize_url, client_id, &redirect, scope.as_deref(), &pkce);
            say(&format!(
                "open this URL in a browser to sign in (waiting up to {} s for the redirect to {redirect}):",
                opts.timeout.as_secs()
            ));
            say(&format!("  {url}"));
            if opts.open_browser
                && let Some(how) = open_browser(&url)
            {
                say(&format!("(opened with {how})"));
            }
            let code = listener.wait(&pkce.state, Instant::now() + opts.timeout, cancelled)?;
            let t = token::exchange_code(token_url, client_id, &code, &redirect, &pkce.verifier)?;
            (
                oauth(t, token_url, client_id, scope.as_deref()),
                oauth_what(),
            )
        }
        Method::Device {
            device_url,
            token_url,
            client_id,
            scope,
        } => {
            token::check_endpoint(device_url)?;
            token::check_endpoint(token_url)?;
            let t = device_flow(
                device_url,
                token_url,
                client_id,
                scope.as_deref(),
                opts,
                say,
                cancelled,
            )?;
            (
                oauth(t, token_url, client_id, scope.as_deref()),
                oauth_what(),
            )
        }
    };
    let existed = store::read(root, p, bucket).ok().flatten().is_some();
    let path = store::write(root, p, bucket, &cred)
        .map_err(|e| format!("cannot store the credential: {e}"))?;
    let detail = match &cred {
        StoredCredential::Oauth {
            expires_at_ms,
            refresh_token,
            ..
        } => format!(
            " (expires {}, refresh token: {})",
            expires_at_ms.map_or_else(|| "unknown".to_string(), rfc3339),
            if refresh_token.is_some() { "yes" } else { "no" }
        ),
        StoredCredential::Apikey { .. } => String::new(),
    };
    Ok(format!(
        "{} {what} for {p}/{bucket} in {}{detail}",
        if existed {
            "replaced the login with"
        } else {
            "stored"
        },
        path.display()
    ))
}

fn oauth_what() -> String {
    "OAuth tokens".to_string()
}

fn oauth(t: Tokens, token_url: &str, client_id: &str, scope: Option<&str>) -> StoredCredential {
    StoredCredential::Oauth {
        version: 1,
        access_token: t.access_token,
        refresh_token: t.refresh_token,
        expires_at_ms: t
            .expires_in
            .map(|s| now_ms().saturating_add(s.saturating_mul(1000))),
        token_url: Some(token_url.to_string()),
        client_id: Some(client_id.to_string()),
        scope: t.scope.or_else(|| scope.map(str::to_string)),
    }
}

fn api_key(raw: &str) -> Result<StoredCredential, String> {
    let key = raw.trim().to_string();
    if key.is_empty() {
        return Err("the API key is empty".into());
    }
    if !token::header_safe(&key) {
        return Err("the API key must be one line of visible characters without spaces".into());
    }
    Ok(StoredCredential::Apikey { version: 1, key })
}

/// How long `--key-file` may take to give its key: it may be a pipe (`<(pass show …)`), whose
/// writer could never come (SPEC §7.1).
const KEY_FILE_TIMEOUT: Duration = Duration::from_secs(10);

/// The key of `--key-file`: named on the command line for this one read, so it may be a pipe
/// or `/dev/stdin` (SPEC §7.1), read once with the secret files' cap and [`KEY_FILE_TIMEOUT`].
fn read_key_file(path: &Path) -> Result<String, String> {
    let bytes = read_once(path, MAX_SECRET_FILE_BYTES, KEY_FILE_TIMEOUT)
        .map_err(|e| crate::auth::credentials::read_error(path, &e))?;
    String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", path.display()))
}

/// The key from standard input: read without echo from a terminal (rpassword, which reads
/// `/dev/tty` with echo off), else the whole input (a pipe: `pass show x | llxprt auth login
/// …`). Never from an argument (SPEC §6.3: it would be in the shell history and `ps`).
fn read_key_stdin(prompt: &str) -> Result<String, String> {
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password(prompt)
            .map_err(|e| format!("cannot read the key from the terminal: {}", e.kind()));
    }
    let mut buf = Vec::new();
    std::io::stdin()
        .take(MAX_SECRET_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read standard input: {}", e.kind()))?;
    if buf.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(format!(
            "standard input is over {MAX_SECRET_FILE_BYTES} bytes, too long for an API key"
        ));
    }
    String::from_utf8(buf).map_err(|_| "standard input is not UTF-8 text".to_string())
}

fn device_flow(
    device_url: &str,
    token_url: &str,
    client_id: &str,
    scope: Option<&str>,
    opts: Options,
    say: &mut dyn FnMut(&str),
    cancelled: &dyn Fn() -> bool,
) -> Result<Tokens, String> {
    let d = token::device_start(device_url, client_id, scope)?;
    say(&format!(
        "to sign in, open {} and enter the code {}",
        d.verification_uri, d.user_code
    ));
    if let Some(c) = &d.verification_uri_complete {
        say(&format!("  (or open {c})"));
    }
    let to_open = d
        .verification_uri_complete
        .as_deref()
        .unwrap_or(&d.verification_uri);
    if opts.open_browser
        && let Some(how) = open_browser(to_open)
    {
        say(&format!("(opened with {how})"));
    }
    let started = Instant::now();
    let deadline = started + opts.timeout.min(Duration::from_secs(d.expires_in.max(1)));
    // RFC 8628 §3.5: wait the interval between polls; slow_down adds 5 s. A server asking for
    // 0 s still gets 1 s.
    let mut interval = Duration::from_secs(d.interval.clamp(1, 60));
    loop {
        let next = Instant::now() + interval;
        while Instant::now() < next {
            if cancelled() {
                return Err("the login was cancelled".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if Instant::now() >= deadline {
            return Err("the device code was not approved before the timeout".into());
        }
        match token::device_poll(token_url, client_id, &d.device_code) {
            Poll::Done(t) => return Ok(t),
            Poll::Pending => {}
            Poll::SlowDown => interval += Duration::from_secs(5),
            Poll::Failed(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> LoginFlags {
        LoginFlags::default()
    }

    #[test]
    fn flows_are_chosen_from_the_flags() {
        assert_eq!(method("openai", "b", &flags()).unwrap(), Method::KeyStdin);
        let f = LoginFlags {
            key_file: Some("k".into()),
            ..flags()
        };
        assert_eq!(
            method("openai", "b", &f).unwrap(),
            Method::KeyFile("k".into())
        );
        let f = LoginFlags {
            oauth: true,
            ..flags()
        };
        let e = method("anthropic", "b", &f).unwrap_err();
        assert!(
            e.contains("no built-in anthropic subscription sign-in"),
            "{e}"
        );
        let f = LoginFlags {
            oauth: true,
            authorize_url: Some("https://a".into()),
            token_url: Some("https://t".into()),
            client_id: Some("c".into()),
            ..flags()
        };
        assert!(matches!(method("openai", "b", &f), Ok(Method::Code { .. })));
        let f = LoginFlags {
            device_url: Some("https://d".into()),
            authorize_url: None,
            ..f
        };
        assert!(matches!(
            method("openai", "b", &f),
            Ok(Method::Device { .. })
        ));
        let f = LoginFlags {
            key_file: Some("k".into()),
            ..f
        };
        assert!(method("openai", "b", &f).is_err());
    }

    #[test]
    fn api_keys_are_one_visible_line() {
        assert!(api_key("  sk-abc\n").is_ok());
        assert!(api_key("\n").is_err());
        assert!(api_key("sk a").is_err());
    }
}
