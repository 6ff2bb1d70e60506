//! The commands behind the command line: each takes parsed arguments and the output streams,
//! and returns an exit code (SPEC §8.2) or a [`CmdError`].
//!
//! Owns: what each command does and writes. Must not: parse arguments (that is `cli`) or exit
//! the process (that is `main`).

use std::io::{self, Write};

use crate::cli::{ChatArgs, Cli, Command};
use crate::profile::store::{Store, StoreError};

pub mod auth;
pub mod chat;
pub mod chat_input;
pub mod diagnostics;
pub mod profile;
pub mod serve;
pub mod simulate;
pub mod stats;

/// Exit codes of SPEC §8.2.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// The request failed, validation found errors, an operation was refused.
    pub const FAILED: u8 = 1;
    /// Usage error.
    pub const USAGE: u8 = 2;
    /// Configuration error.
    pub const CONFIG: u8 = 3;
}

/// A command's failure: what to print and the exit code.
#[derive(Debug)]
pub struct CmdError {
    /// Exit code (SPEC §8.2).
    pub code: u8,
    /// The message, printed after `error: `.
    pub message: String,
    /// What to do, printed after `help: `.
    pub help: Option<String>,
}

impl CmdError {
    /// A failure with exit code `code`.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        CmdError {
            code,
            message: message.into(),
            help: None,
        }
    }
    /// Adds a `help:` line.
    #[must_use]
    pub fn help(mut self, h: impl Into<String>) -> Self {
        self.help = Some(h.into());
        self
    }
}

impl From<io::Error> for CmdError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            // SPEC §8.1: a closed stdout ends quietly with 0.
            CmdError::new(exit::OK, String::new())
        } else {
            CmdError::new(exit::FAILED, e.to_string())
        }
    }
}

impl From<StoreError> for CmdError {
    fn from(e: StoreError) -> Self {
        let code = match &e {
            StoreError::InvalidName(_) => exit::USAGE,
            StoreError::Missing { .. } | StoreError::Invalid { .. } => exit::CONFIG,
            StoreError::Refused(_) | StoreError::Io(_) => exit::FAILED,
        };
        let help = match &e {
            StoreError::Missing { suggestion, .. } => Some(missing_help(suggestion.as_deref())),
            StoreError::Invalid { path, .. } => Some(format!(
                "run llxprt profile validate {} and fix or re-save it",
                path.display()
            )),
            _ => None,
        };
        CmdError {
            code,
            message: e.to_string(),
            help,
        }
    }
}

/// The `help:` of a missing profile: the close name when there is one (SPEC §8.1), else where
/// to see them all.
fn missing_help(suggestion: Option<&str>) -> String {
    match suggestion {
        Some(s) => format!("did you mean \"{s}\"?"),
        None => "see the profiles with llxprt profile list".to_string(),
    }
}

/// Where a command writes: standard output, standard error, and whether colour is on.
pub struct Streams<'a> {
    /// Standard output.
    pub out: &'a mut dyn Write,
    /// Standard error.
    pub err: &'a mut dyn Write,
    /// Colour on (a terminal without `NO_COLOR`).
    pub color: bool,
}

/// Runs a parsed command line.
pub fn run(cli: Cli, io: &mut Streams<'_>) -> Result<u8, CmdError> {
    let store = || Store::from_env().map_err(CmdError::from);
    match cli.command {
        Some(Command::Profile(cmd)) => profile::run(cmd, &store()?, io),
        Some(Command::Simulate(args)) => simulate::run(&args, &store()?, io),
        Some(Command::Chat(args)) => {
            // SPEC §8.1: usage errors are found before any profile is loaded.
            let plan = chat_input::plan(args.prompt.as_deref(), args.interactive, args.json)?;
            chat::run(&args, plan, &store()?, io)
        }
        Some(Command::Stats(args)) => stats::run(&args, &store()?, io),
        Some(Command::Diagnostics(args)) => diagnostics::run(&args, &store()?, io),
        Some(Command::Serve(args)) => serve::run(&args, store()?),
        Some(Command::Auth(cmd)) => auth::run(cmd, &store()?, io),
        None => {
            // SPEC §8.1: `llxprt [--profile-load NAME] [-i] [PROMPT]` is `chat`: bare `llxprt`
            // opens the session on a terminal, piped input is one prompt.
            let top = cli.top;
            let args = ChatArgs {
                profile: top.profile_load,
                interactive: top.interactive,
                prompt: top.prompt,
                ..ChatArgs::default()
            };
            let plan = chat_input::plan(args.prompt.as_deref(), args.interactive, args.json)?;
            chat::run(&args, plan, &store()?, io)
        }
    }
}
