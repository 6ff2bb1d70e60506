//! `llxprt auth login|logout|status` (SPEC §6.3, §8.1): bucket logins on the command line.
//!
//! Owns: mapping the arguments onto [`crate::auth`] and the exit codes: an invalid provider or
//! bucket name, or flags that name no usable flow, is a usage error (2); a failed login or a
//! missing bucket is 1. Must not: print a secret (the flows only report paths and URLs).

use std::time::Duration;

use super::{CmdError, Streams, exit};
use crate::auth::login::{self, LoginFlags, Options};
use crate::auth::{status, store};
use crate::cli::{AuthCommand, AuthLoginArgs, AuthStatusArgs, AuthTargetArgs};
use crate::profile::store::Store;
use crate::state_file::SharedStore;

/// Runs `llxprt auth …`.
pub fn run(cmd: AuthCommand, st: &Store, io: &mut Streams<'_>) -> Result<u8, CmdError> {
    match cmd {
        AuthCommand::Login(a) => login(&a, st, io),
        AuthCommand::Logout(a) => logout(&a, st, io),
        AuthCommand::Status(a) => status(&a, st, io),
    }
}

fn usage(e: String) -> CmdError {
    CmdError::new(exit::USAGE, e)
}

fn login(a: &AuthLoginArgs, st: &Store, io: &mut Streams<'_>) -> Result<u8, CmdError> {
    let (provider, bucket) = store::target(&a.provider, &a.bucket).map_err(usage)?;
    let flags = LoginFlags {
        key_file: a.key_file.clone(),
        oauth: a.oauth,
        authorize_url: a.authorize_url.clone(),
        token_url: a.token_url.clone(),
        client_id: a.client_id.clone(),
        scope: a.scope.clone(),
        device_url: a.device_url.clone(),
    };
    let method = login::method(provider.name, &bucket, &flags).map_err(usage)?;
    let opts = Options {
        timeout: Duration::from_secs(a.timeout.max(1)),
        open_browser: !a.no_browser,
    };
    let err = &mut *io.err;
    let mut say = |line: &str| {
        let _ = writeln!(err, "{line}");
        let _ = err.flush();
    };
    let done = login::login(
        st.root(),
        provider,
        &bucket,
        &method,
        opts,
        &mut say,
        &|| false,
    )
    .map_err(|e| CmdError::new(exit::FAILED, e))?;
    writeln!(io.err, "{done}")?;
    Ok(exit::OK)
}

fn logout(a: &AuthTargetArgs, st: &Store, io: &mut Streams<'_>) -> Result<u8, CmdError> {
    let (provider, bucket) = store::target(&a.provider, &a.bucket).map_err(usage)?;
    let p = provider.name;
    if store::delete(st.root(), p, &bucket)? {
        writeln!(
            io.err,
            "logged out {p}/{bucket} (its stored credential is deleted)"
        )?;
        Ok(exit::OK)
    } else {
        Err(
            CmdError::new(exit::FAILED, format!("no login is stored for {p}/{bucket}"))
                .help("llxprt auth status lists the stored buckets"),
        )
    }
}

fn status(a: &AuthStatusArgs, st: &Store, io: &mut Streams<'_>) -> Result<u8, CmdError> {
    let only = match &a.provider {
        Some(p) => Some(store::provider(p).map_err(usage)?),
        None => None,
    };
    let mut file = SharedStore::open(st.root());
    let shared = file
        .read()
        .map_err(|e| CmdError::new(exit::FAILED, format!("cannot read the state: {e}")))?;
    for w in &file.take_warnings() {
        writeln!(io.err, "{}", crate::conversation::notes::state_warning(w))?;
    }
    let now = crate::clock::report_now_ms();
    let rows = status::report(st.root(), only, &shared, now);
    if a.json {
        writeln!(
            io.out,
            "{}",
            serde_json::to_string_pretty(&rows).expect("plain JSON")
        )?;
    } else {
        for line in status::lines(&rows, now, crate::terminal::report_width()) {
            writeln!(io.out, "{line}")?;
        }
    }
    Ok(exit::OK)
}
