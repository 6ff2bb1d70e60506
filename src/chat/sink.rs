//! Where a turn's answer goes (SPEC §8.1): text to standard output as it arrives, notices to
//! standard error on a line of their own, and the waiting spinner.
//!
//! Owns: the bytes of the answer on the terminal. Must not: decide anything about the turn.
//!
//! The spinner is hand-rolled (a thread drawing `|/-\` on stderr) rather than indicatif: it must
//! vanish at the exact moment the first token is written to *stdout*, which the sink knows, and
//! it needs no styling, so a 40-line thread beats a dependency. It draws only when stderr is a
//! terminal, and uses no escape sequences (it rubs itself out with spaces), so `NO_COLOR` and
//! dumb terminals see nothing odd.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::shell::http::AnswerSink;

/// A spinner on stderr while waiting for the first token.
pub struct Spinner {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Spinner {
    /// Starts drawing after a short delay (a fast answer shows no flicker).
    pub fn start() -> Spinner {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            const LABEL: &str = " waiting for the answer (Ctrl-C cancels)";
            const FRAMES: [char; 4] = ['|', '/', '-', '\\'];
            let mut drawn = false;
            for tick in 1usize.. {
                std::thread::sleep(Duration::from_millis(50));
                if flag.load(Ordering::Relaxed) {
                    if drawn {
                        let blank = " ".repeat(LABEL.len() + 1);
                        let _ = write!(std::io::stderr(), "\r{blank}\r");
                    }
                    return;
                }
                // First drawn after 200 ms, then a new frame every 100 ms.
                if tick >= 4 && tick % 2 == 0 {
                    let _ = write!(std::io::stderr(), "\r{}{LABEL}", FRAMES[(tick / 2) % 4]);
                    drawn = true;
                }
            }
        });
        Spinner {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops and rubs the spinner out (returns once it is gone).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The answer sink of the one-shot and the session.
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent facts about one output stream"
)]
pub struct Sink<'a> {
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
    quiet: bool,
    wrote: bool,
    ends_with_newline: bool,
    closed: bool,
    spinner: Option<Spinner>,
}

impl<'a> Sink<'a> {
    /// A sink writing to `out` and `err`; `quiet` swallows the answer text (`--json`).
    pub fn new(out: &'a mut dyn Write, err: &'a mut dyn Write, quiet: bool) -> Self {
        Sink {
            out,
            err,
            quiet,
            wrote: false,
            ends_with_newline: true,
            closed: false,
            spinner: None,
        }
    }

    /// Shows a spinner until the first text or notice (SPEC §8.1: only on a terminal; the
    /// caller decides).
    #[must_use]
    pub fn with_spinner(mut self, on: bool) -> Self {
        if on {
            self.spinner = Some(Spinner::start());
        }
        self
    }

    fn stop_spinner(&mut self) {
        if let Some(mut s) = self.spinner.take() {
            s.stop();
        }
    }

    /// Ends the answer: stops the spinner and closes an unterminated last line.
    pub fn finish(&mut self) {
        self.stop_spinner();
        if self.wrote && !self.ends_with_newline && !self.quiet && !self.closed {
            if self
                .out
                .write_all(b"\n")
                .and_then(|()| self.out.flush())
                .is_err()
            {
                self.closed = true;
            }
            self.ends_with_newline = true;
        }
    }

    /// Whether standard output was found closed (SPEC §8.1: end quietly).
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Whether any answer text was written.
    pub fn wrote(&self) -> bool {
        self.wrote
    }
}

impl AnswerSink for Sink<'_> {
    fn text(&mut self, text: &str) {
        if self.quiet || self.closed || text.is_empty() {
            return;
        }
        self.stop_spinner();
        if self
            .out
            .write_all(text.as_bytes())
            .and_then(|()| self.out.flush())
            .is_err()
        {
            self.closed = true; // a closed stdout ends quietly (SPEC §8.1)
        }
        self.wrote = true;
        self.ends_with_newline = text.ends_with('\n');
    }

    fn notice(&mut self, line: &str) {
        self.stop_spinner();
        if self.wrote && !self.ends_with_newline && !self.quiet && !self.closed {
            let _ = self.out.write_all(b"\n");
            let _ = self.out.flush();
            self.ends_with_newline = true;
        }
        let _ = writeln!(self.err, "{line}");
    }
}
