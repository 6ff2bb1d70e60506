//! `llxprt serve` (SPEC §8.3): which profile, where to listen, then the gateway until Ctrl-C.
//!
//! Owns: reading the arguments into [`crate::serve::Options`] — serve's own key among them,
//! from `--api-key-file`, `--api-key` or `LLXPRT_SERVE_API_KEY` (SPEC §7, §7.1) — and where
//! the log lines go (standard error). Must not: serve anything itself (that is
//! [`crate::serve`]).

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::{CmdError, exit};
use crate::cli::ServeArgs;
use crate::profile::store::Store;
use crate::serve::{self, Options};

/// Reads `--listen`: an address, or a name that resolves (`localhost:4000`).
fn listen_addr(text: &str) -> Result<SocketAddr, CmdError> {
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Ok(a);
    }
    text.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            CmdError::new(
                exit::USAGE,
                format!(
                    "--listen {text:?} is not an address (expected HOST:PORT, e.g. 127.0.0.1:4000)"
                ),
            )
        })
}

/// The environment variable that may hold serve's own key (SPEC §7).
pub const KEY_ENV: &str = "LLXPRT_SERVE_API_KEY";
/// The cap and the timeout of the one read of `--api-key-file` (SPEC §7.1: it may be a pipe
/// whose writer never comes).
const KEY_FILE_LIMIT: u64 = 1 << 20;
const KEY_FILE_TIMEOUT: Duration = Duration::from_secs(10);

/// The warning `--api-key` earns, once at start-up (SPEC §7.1).
pub const VISIBLE_KEY_WARNING: &str = "llxprt serve: warning: --api-key is visible to every local user (ps, /proc); give the key with --api-key-file FILE or LLXPRT_SERVE_API_KEY instead";

/// Serve's own key and whether it came from the command line (then visible in `ps`): from
/// `--api-key-file` (read once, SPEC §7.1), else `--api-key`, else `LLXPRT_SERVE_API_KEY`
/// (clap refuses both flags at once). An empty variable is no key; an empty file, or a key
/// that cannot travel in a header, is a usage error naming where it came from.
fn serve_key(
    args: &ServeArgs,
    getenv: &dyn Fn(&str) -> Option<String>,
) -> Result<(Option<String>, bool), CmdError> {
    let (raw, from) = if let Some(path) = &args.api_key_file {
        (
            read_key_file(path)?,
            format!("--api-key-file {}", path.display()),
        )
    } else if let Some(k) = &args.api_key {
        (k.clone(), "--api-key".to_string())
    } else {
        match getenv(KEY_ENV).filter(|k| !k.is_empty()) {
            Some(k) => (k, KEY_ENV.to_string()),
            None => return Ok((None, false)),
        }
    };
    let key = raw.trim();
    if key.is_empty() {
        return Err(CmdError::new(
            exit::USAGE,
            format!("the key of {from} is empty"),
        ));
    }
    if !crate::auth::token::header_safe(key) {
        return Err(CmdError::new(
            exit::USAGE,
            format!("the key of {from} must be one line of visible characters without spaces"),
        ));
    }
    Ok((
        Some(key.to_string()),
        args.api_key_file.is_none() && args.api_key.is_some(),
    ))
}

/// The content of `--api-key-file`: named on the command line for this one read, so it may be
/// a pipe or `/dev/stdin` (SPEC §7.1).
fn read_key_file(path: &Path) -> Result<String, CmdError> {
    let bytes = crate::fsutil::read_once(path, KEY_FILE_LIMIT, KEY_FILE_TIMEOUT)
        .map_err(|e| CmdError::new(exit::USAGE, crate::auth::credentials::read_error(path, &e)))?;
    String::from_utf8(bytes).map_err(|_| {
        CmdError::new(
            exit::USAGE,
            format!("--api-key-file {} is not UTF-8 text", path.display()),
        )
    })
}

/// Runs `llxprt serve`.
pub fn run(args: &ServeArgs, store: Store) -> Result<u8, CmdError> {
    let listen = listen_addr(&args.listen)?;
    let (api_key, on_command_line) = serve_key(args, &|k| std::env::var(k).ok())?;
    let profile = match &args.profile {
        Some(p) => p.clone(),
        None => store.default_profile()?.ok_or_else(|| {
            CmdError::new(exit::CONFIG, "no profile given and no default profile")
                .help("llxprt serve --profile NAME, or llxprt profile set-default NAME")
        })?,
    };
    let log: serve::Log = Arc::new(|line: &str| {
        // One write per line, so lines of concurrent requests never mix.
        let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
    });
    if on_command_line {
        log(VISIBLE_KEY_WARNING);
    }
    serve::serve(
        store,
        Options {
            profile,
            listen,
            api_key,
            record: args.record.clone(),
            max_concurrency: args.max_concurrency.map(usize::from),
        },
        &log,
    )?;
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(api_key: Option<&str>, file: Option<&Path>) -> ServeArgs {
        ServeArgs {
            profile: None,
            listen: "127.0.0.1:0".into(),
            api_key: api_key.map(str::to_string),
            api_key_file: file.map(Path::to_path_buf),
            record: None,
            max_concurrency: None,
        }
    }

    #[test]
    fn the_key_comes_from_the_file_the_flag_or_the_environment() {
        let env = |k: &str| (k == KEY_ENV).then(|| "env-key-0123".to_string());
        let none = |_: &str| None;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("k");
        std::fs::write(&file, "file-key-0123\n").unwrap();
        let key = |a: &ServeArgs, g: &dyn Fn(&str) -> Option<String>| serve_key(a, g).unwrap();
        assert_eq!(
            key(&args(None, Some(&file)), &env),
            (Some("file-key-0123".into()), false)
        );
        assert_eq!(
            key(&args(Some("flag-key"), None), &env),
            (Some("flag-key".into()), true),
            "the flag wins over the environment, and is said to be visible"
        );
        assert_eq!(
            key(&args(None, None), &env),
            (Some("env-key-0123".into()), false)
        );
        assert_eq!(key(&args(None, None), &none), (None, false));
        std::fs::write(&file, "\n").unwrap();
        let e = serve_key(&args(None, Some(&file)), &none).unwrap_err();
        assert!(e.message.contains("empty"), "{}", e.message);
        std::fs::write(&file, "two words").unwrap();
        assert!(serve_key(&args(None, Some(&file)), &none).is_err());
        let missing = dir.path().join("missing");
        assert!(serve_key(&args(None, Some(&missing)), &none).is_err());
    }
}
