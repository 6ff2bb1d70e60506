//! `llxprt serve` (SPEC §8.3): which profile, where to listen, then the gateway until Ctrl-C.
//!
//! Owns: reading the arguments into [`crate::serve::Options`] and where the log lines go
//! (standard error). Must not: serve anything itself (that is [`crate::serve`]).

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

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

/// Runs `llxprt serve`.
pub fn run(args: &ServeArgs, store: Store) -> Result<u8, CmdError> {
    let listen = listen_addr(&args.listen)?;
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
    serve::serve(
        store,
        Options {
            profile,
            listen,
            api_key: args.api_key.clone(),
            record: args.record.clone(),
            max_concurrency: args.max_concurrency.map(usize::from),
        },
        &log,
    )?;
    Ok(exit::OK)
}
