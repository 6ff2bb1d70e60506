//! The interactive session (SPEC §8.1) and the one turn path it shares with the one-shot
//! `llxprt chat PROMPT`.
//!
//! Parts: [`slash`] reads a line (message or slash command); [`session`] holds what is loaded,
//! the session's overrides and the conversation; [`turn`] runs one turn through the engine and
//! the HTTP shell (whose [`crate::shell::budget`] decides how much history one request to one
//! backend carries, SPEC §5.8); [`sink`] writes the answer (and the spinner); [`handlers`] and [`profiles`]
//! carry out the commands; [`repl`] is the line editor loop. Must not: decide retries or
//! failover (the engine does) or build provider requests (the shell does).

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value};

use crate::cli::ChatArgs;
use crate::face::{CmdError, exit};
use crate::profile::settings::parse_assignment;
use crate::profile::validate::check_settings_value;

pub mod auth;
pub mod handlers;
pub mod history;
pub mod input;
pub mod profiles;
pub mod repl;
pub mod session;
pub mod sink;
pub mod slash;
pub mod turn;

/// The process's cancel flag: Ctrl-C sets it, and the transport and the driver watch it, so
/// Ctrl-C during an answer cancels that request instead of ending the process (SPEC §8.1).
/// The handler is installed on first use; callers reset the flag before each turn.
pub fn cancel_flag() -> Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let set = flag.clone();
        // Should no handler be installable, Ctrl-C keeps its default and ends the process.
        let _ = signal_hook::flag::register(signal_hook::consts::SIGINT, set);
        flag
    })
    .clone()
}

/// The `--set` keys of a backend's identity (SPEC §3): they only ever come from the backend's
/// own profile, or, for a model profile used alone, from the session. [`apply_args`] checks
/// them with the other settings; [`apply_identity_args`] applies them once the profile is
/// loaded, since whether they are allowed depends on what it is.
const IDENTITY_KEYS: [&str; 3] = ["base-url", "auth-keyfile", "auth-key"];

/// Applies `--set`, `--param` and `--system` to a session (one-shot and interactive alike),
/// all but the identity keys of [`IDENTITY_KEYS`] (checked here, applied by
/// [`apply_identity_args`] after the load).
pub fn apply_args(session: &mut session::Session, args: &ChatArgs) -> Result<(), CmdError> {
    let mut sets = Map::new();
    let mut identity = Map::new();
    for s in &args.set {
        let (k, v) =
            parse_assignment(s).map_err(|e| CmdError::new(exit::USAGE, format!("--set {e}")))?;
        if IDENTITY_KEYS.contains(&k.as_str()) {
            identity.insert(k, v);
        } else {
            sets.insert(k, v);
        }
    }
    if !identity.is_empty() {
        check_settings_value(&Value::Object(identity))
            .map_err(|e| CmdError::new(exit::USAGE, format!("--set {e}")))?;
    }
    if let Some(sys) = &args.system {
        sets.insert("system-prompt".into(), sys.clone().into());
    }
    if !sets.is_empty() {
        session
            .set_many(sets)
            .map_err(|e| CmdError::new(exit::USAGE, format!("--set {e}")))?;
    }
    let mut params = Map::new();
    for p in &args.param {
        let (k, v) =
            parse_assignment(p).map_err(|e| CmdError::new(exit::USAGE, format!("--param {e}")))?;
        params.insert(k, v);
    }
    session.set_params(params);
    if args.quiet {
        session.set_quiet(true);
    }
    session.recorder = args.record.as_deref().map(crate::record::Recorder::new);
    Ok(())
}

/// Applies `--set base-url=…`, `auth-keyfile=…` and `auth-key=…` once the profile is loaded
/// (SPEC §3): on a model profile used alone they are the session's, as `/baseurl` and
/// `/keyfile` set them; with a load balancer loaded they are a usage error, as those commands
/// are refused, since each backend's come from its own profile and would otherwise be
/// ignored without a word.
pub fn apply_identity_args(
    session: &mut session::Session,
    args: &ChatArgs,
) -> Result<(), CmdError> {
    for s in &args.set {
        let Ok((k, v)) = parse_assignment(s) else {
            continue; // refused by `apply_args` already
        };
        if IDENTITY_KEYS.contains(&k.as_str()) {
            let lb = session.lb_loaded();
            session.set_identity(&k, &v).map_err(|e| {
                let e = CmdError::new(exit::USAGE, e);
                if lb {
                    e.help("set it in the backends' own profiles (llxprt profile save model NAME … --force), or run one backend alone with --profile NAME")
                } else {
                    e
                }
            })?;
        }
    }
    Ok(())
}
