//! The session's `/auth` (SPEC §6.3, §8.1): `/auth` and `/auth P [status]` list the stored
//! buckets; `/auth P login B` logs a bucket in; `/auth P logout B` deletes it; `/auth P
//! enable|disable` switches the session to P's OAuth `default` login and back.
//!
//! In the session an API key comes from a file (`--key-file FILE`, or the path after the
//! bucket): a key typed at the prompt would be kept in the line history (SPEC §7), so typing
//! one without echo is left to `llxprt auth login` in a shell. The OAuth flows take the same
//! flags as on the command line; Ctrl-C cancels the wait for the browser or the device code.
//!
//! Owns: reading `/auth`'s words (double quotes group a value with spaces, e.g. a scope).
//! Must not: print a secret.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::handlers::error;
use super::session::Session;
use crate::auth::login::{self, LoginFlags, Method, Options};
use crate::auth::{status, store};
use crate::face::Streams;
use crate::profile::validate::expand_tilde;
use crate::state_file::SharedStore;

/// `/auth`'s usage line.
pub const USAGE: &str = "usage: /auth [PROVIDER [status]] | /auth PROVIDER login BUCKET [--key-file FILE | FILE | --oauth --authorize-url URL --token-url URL --client-id ID [--scope S] | --device-url URL --token-url URL --client-id ID] | /auth PROVIDER logout BUCKET | /auth PROVIDER enable|disable";

/// Splits on whitespace; double quotes group words (no escapes).
fn words(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut started = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                started = true;
            }
            c if c.is_whitespace() && !quoted => {
                if started {
                    out.push(std::mem::take(&mut cur));
                    started = false;
                }
            }
            c => {
                cur.push(c);
                started = true;
            }
        }
    }
    if quoted {
        return Err("a double quote is not closed".into());
    }
    if started {
        out.push(cur);
    }
    Ok(out)
}

/// Carries out `/auth …`.
pub fn run(session: &mut Session, args: &str, io: &mut Streams<'_>) -> std::io::Result<()> {
    let owned = match words(args) {
        Ok(w) => w,
        Err(why) => return error(io, &format!("{why}; {USAGE}")),
    };
    let list: Vec<&str> = owned.iter().map(String::as_str).collect();
    match list.as_slice() {
        [] | ["status"] => show(session, None, io),
        [provider] | [provider, "status"] => show(session, Some(provider), io),
        [provider, "logout", bucket] => said(io, logout(session, provider, bucket)),
        [provider, "enable"] => said(io, session.set_oauth(provider, true)),
        [provider, "disable"] => said(io, session.set_oauth(provider, false)),
        [provider, "login", bucket, rest @ ..] => do_login(session, provider, bucket, rest, io),
        _ => error(io, USAGE),
    }
}

fn said(io: &mut Streams<'_>, r: Result<String, String>) -> std::io::Result<()> {
    match r {
        Ok(line) => writeln!(io.err, "{line}"),
        Err(e) => error(io, &e),
    }
}

fn show(s: &Session, provider: Option<&str>, io: &mut Streams<'_>) -> std::io::Result<()> {
    let only = match provider.map(store::provider).transpose() {
        Ok(p) => p,
        Err(e) => return error(io, &format!("{e}; {USAGE}")),
    };
    let mut file = SharedStore::open(s.store().root());
    let shared = match file.read() {
        Ok(st) => st,
        Err(e) => return error(io, &format!("cannot read the state: {e}")),
    };
    for w in &file.take_warnings() {
        writeln!(io.err, "{}", crate::conversation::notes::state_warning(w))?;
    }
    let now = crate::clock::report_now_ms();
    let rows = status::report(s.store().root(), only, &shared, now);
    for line in status::lines(&rows, now, crate::terminal::report_width()) {
        writeln!(io.out, "{line}")?;
    }
    if let Some(on) = s.oauth_override() {
        writeln!(
            io.out,
            "this session: {}",
            if on {
                "OAuth login \"default\" (/auth P enable)"
            } else {
                "API key (/auth P disable)"
            }
        )?;
    }
    Ok(())
}

fn logout(s: &Session, provider: &str, bucket: &str) -> Result<String, String> {
    let (p, b) = store::target(provider, bucket)?;
    match store::delete(s.store().root(), p.name, &b) {
        Ok(true) => Ok(format!(
            "logged out {}/{b} (its stored credential is deleted)",
            p.name
        )),
        Ok(false) => Err(format!(
            "no login is stored for {}/{b} (/auth lists them)",
            p.name
        )),
        Err(e) => Err(format!("cannot delete the login of {}/{b}: {e}", p.name)),
    }
}

/// The flags after `/auth P login B`.
fn flags(rest: &[&str]) -> Result<(LoginFlags, Options), String> {
    let mut f = LoginFlags::default();
    let mut opts = Options {
        timeout: Duration::from_mins(5),
        open_browser: true,
    };
    let mut it = rest.iter();
    while let Some(&word) = it.next() {
        let mut value = || {
            it.next()
                .map(|v| (*v).to_string())
                .ok_or_else(|| format!("{word} needs a value"))
        };
        match word {
            "--key-file" => f.key_file = Some(expand_tilde(&value()?)),
            "--oauth" => f.oauth = true,
            "--no-browser" => opts.open_browser = false,
            "--authorize-url" => f.authorize_url = Some(value()?),
            "--token-url" => f.token_url = Some(value()?),
            "--client-id" => f.client_id = Some(value()?),
            "--scope" => f.scope = Some(value()?),
            "--device-url" => f.device_url = Some(value()?),
            "--timeout" => {
                let v = value()?;
                let secs: u64 = v
                    .parse()
                    .map_err(|_| format!("--timeout takes seconds, not \"{v}\""))?;
                opts.timeout = Duration::from_secs(secs.max(1));
            }
            path if !path.starts_with("--") && f.key_file.is_none() => {
                f.key_file = Some(expand_tilde(path));
            }
            other => return Err(format!("unknown or repeated argument \"{other}\"")),
        }
    }
    Ok((f, opts))
}

fn do_login(
    session: &Session,
    provider: &str,
    bucket: &str,
    rest: &[&str],
    io: &mut Streams<'_>,
) -> std::io::Result<()> {
    let (p, b) = match store::target(provider, bucket) {
        Ok(t) => t,
        Err(why) => return error(io, &why),
    };
    let (login_flags, opts) = match flags(rest) {
        Ok(x) => x,
        Err(why) => return error(io, &format!("{why}; {USAGE}")),
    };
    let method = match login::method(p.name, &b, &login_flags) {
        Ok(Method::KeyStdin) => {
            return error(
                io,
                &format!(
                    "in the session an API key comes from a file only you can read: /auth {} login {b} --key-file FILE (a key typed here would stay in the line history). To type it without echo, run llxprt auth login {} {b} in a shell. OAuth: --oauth --authorize-url URL --token-url URL --client-id ID [--scope S], or --device-url URL --token-url URL --client-id ID",
                    p.name, p.name
                ),
            );
        }
        Ok(m) => m,
        Err(why) => return error(io, &why),
    };
    let cancel = super::cancel_flag();
    cancel.store(false, Ordering::SeqCst);
    let err = &mut *io.err;
    let mut say = |line: &str| {
        let _ = writeln!(err, "{line}");
        let _ = err.flush();
    };
    let result = login::login(
        session.store().root(),
        p,
        &b,
        &method,
        opts,
        &mut say,
        &|| cancel.load(Ordering::SeqCst),
    );
    cancel.store(false, Ordering::SeqCst);
    said(io, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_group_quoted_values() {
        assert_eq!(
            words(r#"openai login w --scope "a b"  --oauth"#).unwrap(),
            ["openai", "login", "w", "--scope", "a b", "--oauth"]
        );
        assert!(words("x \"y").is_err());
        assert_eq!(words("  ").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn login_flags_take_a_key_path_or_the_oauth_endpoints() {
        let (f, _) = flags(&["/k"]).unwrap();
        assert_eq!(f.key_file.as_deref(), Some(std::path::Path::new("/k")));
        let (f, o) = flags(&[
            "--oauth",
            "--token-url",
            "t",
            "--client-id",
            "c",
            "--timeout",
            "5",
            "--no-browser",
        ])
        .unwrap();
        assert!(f.oauth && f.token_url.as_deref() == Some("t") && !o.open_browser);
        assert_eq!(o.timeout, Duration::from_secs(5));
        assert!(flags(&["--scope"]).is_err());
        assert!(flags(&["/a", "/b"]).is_err());
    }
}
