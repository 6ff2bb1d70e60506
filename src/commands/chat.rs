//! `llxprt chat` (SPEC §8.1): the one-shot — answer one prompt through the same turn path as
//! the interactive session ([`crate::chat::session::Session::send`]), streaming to stdout with
//! the `served by` line on stderr, or one `--json` object — and the way into the session.
//!
//! Owns: the one-shot's output and exit codes (what to run, and the prompt, are decided first
//! by [`super::chat_input`]). Must not: run a turn any other way than the session's.

use std::io::IsTerminal;

use serde_json::json;

use super::chat_input::Plan;
use super::{CmdError, Streams, exit};
use crate::chat::session::Session;
use crate::chat::sink::Sink;
use crate::chat::{apply_args, apply_identity_args, cancel_flag, repl};
use crate::cli::ChatArgs;
use crate::driver::Ending;
use crate::engine::plan::MidStream;
use crate::profile::names::same_profile_name;
use crate::profile::store::Store;

/// Exit code of a one-shot interrupted by Ctrl-C (SPEC §8.2).
pub const INTERRUPTED: u8 = 130;

/// Runs `llxprt chat` as `plan` says ([`super::chat_input::plan`], decided before the store
/// is opened): the session, or one prompt answered once.
pub fn run(
    args: &ChatArgs,
    plan: Plan,
    store: &Store,
    io: &mut Streams<'_>,
) -> Result<u8, CmdError> {
    let prompt = match plan {
        Plan::Session => return repl::run(args, store, io),
        Plan::Once(prompt) => prompt,
    };
    match once(args, prompt, store, io) {
        // SPEC §8.1: with --json a profile that cannot be loaded (missing, invalid, a load
        // balancer whose backend is gone, no default) still prints the failure object, with
        // no attempts; the exit code stays 3.
        Err(e) if args.json && e.code == exit::CONFIG => {
            writeln!(io.out, "{}", json!({"error": e.message, "attempts": []}))?;
            Err(e)
        }
        other => other,
    }
}

/// The one-shot's help for a profile that cannot be loaded, when that profile is the default
/// (SPEC §8.1: "re-save it, or `set-default none`").
fn unloadable_default(e: CmdError) -> CmdError {
    let help = match &e.help {
        Some(h) => format!("{h}; or stop using it as the default: llxprt profile set-default none"),
        None => "re-save it, or stop using it as the default: llxprt profile set-default none"
            .to_string(),
    };
    e.help(help)
}

/// The one-shot: one prompt through the session's turn path.
fn once(
    args: &ChatArgs,
    prompt: String,
    store: &Store,
    io: &mut Streams<'_>,
) -> Result<u8, CmdError> {
    let default = || store.default_profile();
    let name = match &args.profile {
        Some(n) => n.clone(),
        None => default()?.ok_or_else(|| {
            CmdError::new(exit::CONFIG, "no profile given and no default profile")
                .help("create one with llxprt profile save model NAME --provider P --model M, then llxprt profile set-default NAME")
        })?,
    };
    let mode = if args.json || !std::io::stdout().is_terminal() {
        MidStream::Buffer
    } else {
        MidStream::Restart
    };
    let mut session = Session::new(store.clone(), mode);
    apply_args(&mut session, args)?;
    if let Err(e) = session.load(&name) {
        let is_default = args.profile.is_none()
            || default()
                .ok()
                .flatten()
                .is_some_and(|d| same_profile_name(&d, &name));
        return Err(if is_default { unloadable_default(e) } else { e });
    }
    apply_identity_args(&mut session, args)?;
    let cancel = cancel_flag();
    cancel.store(false, std::sync::atomic::Ordering::SeqCst);
    let spinner = !args.json && std::io::stderr().is_terminal();
    // SPEC §8.1: the engine's notes as they happen, unless `--quiet`; never with `--json`
    // (its `attempts` hold them).
    let mut sink = Sink::new(&mut *io.out, &mut *io.err, args.json)
        .with_spinner(spinner)
        .with_color(crate::chat::sink::stderr_color())
        .with_notes(!args.json && !args.quiet)
        .with_terminal(if args.json {
            None
        } else {
            crate::terminal::stdout_width()
        });
    let result = session.send(prompt, &mut sink, cancel);
    sink.finish();
    drop(sink);
    let out = result.map_err(|e| CmdError::new(exit::CONFIG, e))?;
    for note in out.notes() {
        writeln!(io.err, "{note}")?;
    }
    match &out.ending {
        Ending::Delivered {
            backend, bucket, ..
        } => {
            if args.json {
                let served = out.served.as_ref();
                let o = json!({
                    "answer": out.answer.text,
                    "reasoning": out.shown_reasoning(),
                    "finish_reason": out.answer.finish_reason,
                    "backend": backend,
                    "bucket": bucket,
                    "provider": served.map(|s| s.provider),
                    "model": served.map(|s| s.model.clone()),
                    "usage": {"prompt_tokens": out.answer.usage.prompt_tokens, "completion_tokens": out.answer.usage.completion_tokens, "total_tokens": out.answer.usage.total()},
                    "attempts": out.attempts,
                });
                writeln!(io.out, "{o}")?;
            }
            if let Some(line) = out.served_line() {
                writeln!(io.err, "{line}")?;
            }
            Ok(exit::OK)
        }
        Ending::Failed { error, .. } => {
            if args.json {
                writeln!(
                    io.out,
                    "{}",
                    json!({"error": error, "attempts": out.attempts})
                )?;
            }
            Err(CmdError::new(exit::FAILED, error.clone()))
        }
        // SPEC §8.1: the state is saved at every engine step; Ctrl-C exits 130.
        Ending::Cancelled { .. } => Err(CmdError::new(INTERRUPTED, "cancelled")),
    }
}
