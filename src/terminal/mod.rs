//! The terminal llxprt writes to (SPEC §8.1): its width, for the tables and the answers fitted
//! to it, and its echo, turned off while an answer streams so keys typed meanwhile do not land
//! in the middle of it.
//!
//! Owns: asking the terminal, through rustix's safe termios calls (`unsafe_code` is forbidden
//! in this crate). Must not: decide what is printed, or be used by the engine or the shell.

pub mod wrap;

use std::io::IsTerminal;

/// The width tables are fitted to when standard output is a terminal that says nothing of
/// its size.
pub const DEFAULT_WIDTH: usize = 80;

/// The width of the terminal standard output is, or `None` when it is not one.
pub fn stdout_width() -> Option<usize> {
    let out = std::io::stdout();
    if !out.is_terminal() {
        return None;
    }
    #[cfg(unix)]
    {
        rustix::termios::tcgetwinsize(&out)
            .ok()
            .map(|w| usize::from(w.ws_col))
            .filter(|&w| w > 0)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The width tables are fitted to: the terminal's on a terminal ([`DEFAULT_WIDTH`] when it
/// does not say), and no limit when standard output is not a terminal — piped output keeps
/// one line per row for scripts and `grep`, as answers are not wrapped when piped either.
///
/// Test hook, debug builds only (docs/decisions.md): `LLXPRT_TEST_COLUMNS=N` stands for the
/// terminal's width, so a test can show a table fitted to a narrow or a wide terminal.
pub fn report_width() -> usize {
    if cfg!(debug_assertions)
        && let Some(n) = std::env::var("LLXPRT_TEST_COLUMNS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0)
    {
        return n;
    }
    let out = std::io::stdout();
    if !out.is_terminal() {
        return usize::MAX;
    }
    stdout_width().unwrap_or(DEFAULT_WIDTH)
}

/// Echo of standard input turned off while it lives (when standard input is a terminal), and
/// turned back on as it was when dropped — also when a turn ends by Ctrl-C or a panic unwinds.
/// Keys typed meanwhile stay in the terminal's input: the next prompt reads them.
pub struct EchoOff {
    #[cfg(unix)]
    saved: Option<rustix::termios::Termios>,
}

impl EchoOff {
    /// Turns echo off if `on` and standard input is a terminal whose echo is on; otherwise does
    /// nothing.
    pub fn new(on: bool) -> EchoOff {
        #[cfg(unix)]
        {
            use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
            let stdin = std::io::stdin();
            if !on || !stdin.is_terminal() {
                return EchoOff { saved: None };
            }
            let Ok(saved) = tcgetattr(&stdin) else {
                return EchoOff { saved: None };
            };
            if !saved.local_modes.contains(LocalModes::ECHO) {
                return EchoOff { saved: None };
            }
            let mut quiet = saved.clone();
            quiet.local_modes.remove(LocalModes::ECHO);
            let saved = tcsetattr(&stdin, OptionalActions::Now, &quiet)
                .ok()
                .map(|()| saved);
            EchoOff { saved }
        }
        #[cfg(not(unix))]
        {
            let _ = on;
            EchoOff {}
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(saved) = self.saved.take() {
            let _ = rustix::termios::tcsetattr(
                std::io::stdin(),
                rustix::termios::OptionalActions::Now,
                &saved,
            );
        }
    }
}
