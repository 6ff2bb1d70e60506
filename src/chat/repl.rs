//! The interactive session's loop (SPEC §8.1): a line is read ([`super::input`]: rustyline on
//! a terminal, with editing and history; a bounded plain reader from a pipe), a message is sent
//! as a turn, a slash command is carried out.
//!
//! Owns: opening the session (what is loaded, and what it says when nothing can be), the line
//! history file `<root>/history/repl` (mode 0600, SPEC §1), Ctrl-C and Ctrl-D at the prompt,
//! the spinner decision, and how a turn's end is reported. Must not: decide anything about a
//! turn (the session and the engine do).

use std::io::IsTerminal;

use rustyline::history::FileHistory;
use rustyline::{Config, Editor};

use super::handlers::{self, After};
use super::history;
use super::input::{Lines, Read};
use super::profiles;
use super::session::Session;
use super::sink::Sink;
use super::slash::{self, Input, Slash};
use super::{apply_args, apply_identity_args, cancel_flag};
use crate::cli::ChatArgs;
use crate::driver::Ending;
use crate::engine::plan::MidStream;
use crate::face::{CmdError, Streams, exit};
use crate::profile::store::Store;
use crate::redact::is_secret_name;
use crate::report::diagnostics::history_path;

/// Whether a line may be kept in the history file: never one that may carry a secret (SPEC §7).
fn may_record(input: &Input) -> bool {
    match input {
        Input::Command(Slash::Set(k, _) | Slash::Show(k)) => {
            !matches!(k.as_str(), "auth-key" | "custom-headers")
        }
        Input::Command(Slash::Param(k, _)) => !is_secret_name(k),
        Input::Empty => false,
        _ => true,
    }
}

/// The line history: `<root>/history/repl`, created private (SPEC §1).
fn open_history(editor: &mut Editor<(), FileHistory>, store: &Store) -> std::path::PathBuf {
    let path = history_path(store);
    // A history that cannot be read or kept is no reason to refuse the session.
    let _ = history::prepare_dir(&path);
    for entry in history::load(&path).unwrap_or_default() {
        let _ = editor.add_history_entry(entry);
    }
    path
}

/// Opens the session with the profile named on the command line, or the default one; says
/// why when nothing is loaded (SPEC §8.1).
fn open(session: &mut Session, args: &ChatArgs, io: &mut Streams<'_>) -> std::io::Result<()> {
    let name = match &args.profile {
        Some(n) => Some(n.clone()),
        None => match session.store().default_profile() {
            Ok(d) => d,
            Err(e) => {
                handlers::error(io, &e.to_string())?;
                None
            }
        },
    };
    match name {
        None => writeln!(
            io.err,
            "no profile loaded. Choose a model with /provider NAME, /model NAME and /keyfile PATH, then /profile save model NAME keeps it (or: llxprt profile save model NAME --provider P --model M --keyfile F; llxprt profile set-default NAME)"
        ),
        Some(n) => match profiles::load(session, &n) {
            Ok(lines) => lines.iter().try_for_each(|l| writeln!(io.err, "{l}")),
            Err(e) => {
                handlers::cmd_error(io, &e)?;
                writeln!(
                    io.err,
                    "the session opens with nothing loaded: fix or re-save the profile, /profile load another, or /profile set-default none"
                )
            }
        },
    }
}

/// Sends one message and reports how the turn ended. Returns `false` when standard output is
/// closed (the session then ends quietly, SPEC §8.1).
fn send(session: &mut Session, prompt: String, io: &mut Streams<'_>) -> std::io::Result<bool> {
    let cancel = cancel_flag();
    cancel.store(false, std::sync::atomic::Ordering::SeqCst);
    let spinner = std::io::stderr().is_terminal();
    let mut sink = Sink::new(&mut *io.out, &mut *io.err, false)
        .with_spinner(spinner)
        .with_color(super::sink::stderr_color())
        .with_notes(!session.quiet())
        .with_terminal(crate::terminal::stdout_width());
    let result = session.send(prompt, &mut sink, cancel);
    sink.finish();
    let open = !sink.closed();
    drop(sink);
    match result {
        Err(e) => {
            handlers::error(io, &e)?;
            writeln!(io.err, "(not sent; /retry sends it once that is fixed)")?;
        }
        Ok(out) => {
            for note in out.notes() {
                writeln!(io.err, "{note}")?;
            }
            match &out.ending {
                Ending::Delivered { .. } => {
                    if let Some(line) = out.served_line() {
                        writeln!(io.err, "{line}")?;
                    }
                }
                Ending::Failed { error, .. } => {
                    handlers::error(io, error)?;
                    writeln!(
                        io.err,
                        "(not kept in the conversation; /retry sends it again)"
                    )?;
                }
                Ending::Cancelled { .. } => writeln!(
                    io.err,
                    "cancelled (not kept in the conversation; /retry sends it again)"
                )?,
            }
        }
    }
    Ok(open)
}

/// Runs the interactive session until `/quit`, Ctrl-D on an empty line, or end of input.
pub fn run(args: &ChatArgs, store: &Store, io: &mut Streams<'_>) -> Result<u8, CmdError> {
    if args.json {
        // clap refuses `-i --json`; this guards the other ways in (SPEC §8.1).
        return Err(CmdError::new(
            exit::USAGE,
            "--json cannot be used with the interactive session",
        ));
    }
    let mode = if std::io::stdout().is_terminal() {
        MidStream::Restart
    } else {
        MidStream::Buffer
    };
    let mut session = Session::new(store.clone(), mode).interactive();
    apply_args(&mut session, args)?;
    open(&mut session, args, io)?;
    apply_identity_args(&mut session, args)?;
    writeln!(
        io.err,
        "llxprt {}: type a message, or /help; /quit or Ctrl-D leaves",
        env!("CARGO_PKG_VERSION")
    )?;
    let mut lines = if std::io::stdin().is_terminal() {
        let config = Config::builder()
            .auto_add_history(false)
            .max_history_size(history::MAX_ENTRIES)
            .map_err(|e| CmdError::new(exit::FAILED, e.to_string()))?
            // A lone Esc is a key after 100 ms, not the start of a sequence waited on forever:
            // it cancels the `/profile load` picker (SPEC §8.1).
            .keyseq_timeout(Some(100))
            .build();
        let mut editor: Editor<(), FileHistory> = Editor::with_config(config)
            .map_err(|e| CmdError::new(exit::FAILED, format!("cannot open the terminal: {e}")))?;
        let history = open_history(&mut editor, store);
        Lines::terminal(editor, history)
    } else {
        let path = history_path(store);
        let _ = history::prepare_dir(&path);
        Lines::Piped(std::io::stdin().lock(), path)
    };
    if let Some(why) = history::refused(&history_path(store)) {
        writeln!(io.err, "warning: {why}; this session's lines are not kept")?;
    }
    // Installed before the first turn so Ctrl-C never kills a turn in flight.
    let _ = cancel_flag();
    if let Some(p) = &args.prompt
        && !send(&mut session, p.clone(), io)?
    {
        return Ok(exit::OK);
    }
    loop {
        io.out.flush()?;
        let read = lines
            .read("> ")
            .map_err(|e| CmdError::new(exit::FAILED, format!("cannot read input: {e}")))?;
        let line = match read {
            Read::Line(line) => line,
            // Ctrl-C at the prompt clears the line (SPEC §8.1).
            Read::Interrupted => continue,
            Read::End => break,
            Read::Refused(why) => {
                handlers::error(io, &why)?;
                continue;
            }
        };
        let input = match slash::parse(&line) {
            Ok(i) => i,
            Err(e) => {
                handlers::error(io, &e)?;
                continue;
            }
        };
        if may_record(&input) {
            lines.remember(&line);
        }
        let message = match input {
            Input::Empty => continue,
            Input::Message(m) => m,
            Input::Command(cmd) => {
                let mut ask = |prompt: &str| match lines.ask(prompt) {
                    Ok(Read::Line(l)) => Some(l),
                    _ => None,
                };
                match handlers::run(cmd, &mut session, io, &mut ask)? {
                    After::Continue => continue,
                    After::Quit => break,
                    After::Send(m) => m,
                }
            }
        };
        if !send(&mut session, message, io)? {
            break;
        }
    }
    Ok(exit::OK)
}
