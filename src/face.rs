//! What every face reports through — a command, the chat session, the serve gateway: the
//! output streams it writes to, its failure ([`CmdError`]: a message, a `help:` line and an
//! exit code) and the exit codes of SPEC §8.2.
//!
//! It sits below `commands`, `chat` and `serve` so that each can return the same error without
//! importing another. Must not: print, or exit the process (that is `main`).

use std::io::{self, Write};

use crate::profile::store::StoreError;

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

/// Where a command writes: standard output, standard error, and whether colour is on.
pub struct Streams<'a> {
    /// Standard output.
    pub out: &'a mut dyn Write,
    /// Standard error.
    pub err: &'a mut dyn Write,
    /// Colour on (a terminal without `NO_COLOR`).
    pub color: bool,
}

/// The `help:` of a missing profile: the close name when there is one (SPEC §8.1), else where
/// to see them all.
fn missing_help(suggestion: Option<&str>) -> String {
    match suggestion {
        Some(s) => format!("did you mean \"{s}\"?"),
        None => "see the profiles with llxprt profile list".to_string(),
    }
}
