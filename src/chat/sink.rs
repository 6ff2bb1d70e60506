//! Where a turn's answer goes (SPEC §8.1): text to standard output as it arrives, notices to
//! standard error on a line of their own, reasoning text to standard error (SPEC §3.1
//! `reasoning.includeInResponse`; the shell decides whether it comes), and the waiting spinner.
//!
//! Owns: the bytes of the answer on the terminal. Must not: decide anything about the turn.
//!
//! Decisions where SPEC is silent:
//! - Reasoning goes to stderr, so stdout stays exactly the answer for pipes and scripts; it is
//!   dimmed (`ESC[2m` … `ESC[0m`, each piece closed on its own so a cut never leaves the
//!   terminal dim) only when the caller turned colour on ([`Sink::with_color`]).
//! - The spinner stops at the first reasoning text, as at the first answer text.
//! - When the answer's text (or a notice, or the end) follows reasoning that did not end its
//!   line, stderr gets a line end first, so the two never run together on a terminal; when
//!   reasoning arrives while an answer line is open, it starts on a fresh stderr line. These
//!   line ends go to stderr only: stdout's bytes are never changed by reasoning.
//! - With `--json` (`quiet`) nothing of the reasoning is printed: the object carries it.
//!
//! The spinner is hand-rolled (a thread drawing `|/-\` on stderr) rather than indicatif: it must
//! vanish at the exact moment the first token is written to *stdout*, which the sink knows, and
//! it needs no styling, so a 40-line thread beats a dependency. It draws only when stderr is a
//! terminal, and uses no escape sequences (it rubs itself out with spaces), so `NO_COLOR` and
//! dumb terminals see nothing odd.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::shell::http::AnswerSink;
use crate::terminal::EchoOff;
use crate::terminal::wrap::Wrap;

/// What the spinner says it waits for (SPEC §8.1: it names the backend), shared with its thread.
type Label = Arc<Mutex<String>>;

/// A spinner on stderr while waiting for the first token.
pub struct Spinner {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Spinner {
    /// Starts drawing after a short delay (a fast answer shows no flicker); `label` says what
    /// it waits for and may change while it spins.
    fn start(label: Label) -> Spinner {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            const FRAMES: [char; 4] = ['|', '/', '-', '\\'];
            // The width of the widest frame drawn, to rub it all out.
            let mut drawn = 0usize;
            for tick in 1usize.. {
                std::thread::sleep(Duration::from_millis(50));
                if flag.load(Ordering::Relaxed) {
                    if drawn > 0 {
                        let blank = " ".repeat(drawn);
                        let _ = write!(std::io::stderr(), "\r{blank}\r");
                    }
                    return;
                }
                // First drawn after 200 ms, then a new frame every 100 ms.
                if tick >= 4 && tick % 2 == 0 {
                    let text = format!(
                        "{} {} (Ctrl-C cancels)",
                        FRAMES[(tick / 2) % 4],
                        label.lock().map(|l| l.clone()).unwrap_or_default()
                    );
                    let width = text.chars().count();
                    let pad = " ".repeat(drawn.saturating_sub(width));
                    let _ = write!(std::io::stderr(), "\r{text}{pad}");
                    drawn = drawn.max(width);
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

/// Whether what goes to standard error may be dimmed: it is a terminal and `NO_COLOR` is not
/// set (SPEC §8.1).
pub fn stderr_color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
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
    /// Dim the reasoning (colour on, SPEC §8.1 `NO_COLOR`).
    color: bool,
    /// Reasoning was written to stderr since the last answer text.
    reasoning_shown: bool,
    /// The last reasoning written left its stderr line open.
    reasoning_line_open: bool,
    spinner: Option<Spinner>,
    /// The spinner was asked for and no answer text has come yet: it comes back after a
    /// live note.
    spin: bool,
    /// What the spinner names.
    label: Label,
    /// Show the engine's live notes (SPEC §8.1: not with `--quiet`, `/set quiet true` or
    /// `--json`).
    notes: bool,
    /// Wraps the answer to the terminal's width (SPEC §8.1; only on a terminal).
    wrap: Option<Wrap>,
    /// Echo of typed keys is off while the answer streams (only on a terminal).
    echo_off: Option<EchoOff>,
}

/// ANSI dim on, and reset.
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

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
            color: false,
            reasoning_shown: false,
            reasoning_line_open: false,
            spinner: None,
            spin: false,
            label: Arc::new(Mutex::new("waiting for the answer".into())),
            notes: false,
            wrap: None,
            echo_off: None,
        }
    }

    /// The answer goes to a terminal `width` columns wide (`None`: not a terminal, and nothing
    /// changes): it is word-wrapped to that width, and keys typed while it streams are not
    /// echoed into it (SPEC §8.1). Echo comes back when the sink is dropped.
    #[must_use]
    pub fn with_terminal(mut self, width: Option<usize>) -> Self {
        if let Some(w) = width {
            self.wrap = Some(Wrap::new(w));
            self.echo_off = Some(EchoOff::new(true));
        }
        self
    }

    /// Writes the word the wrapper holds back, so what follows comes after it.
    fn flush_wrap(&mut self) {
        let Some(rest) = self.wrap.as_mut().map(Wrap::flush) else {
            return;
        };
        if rest.is_empty() || self.closed {
            return;
        }
        if self
            .out
            .write_all(rest.as_bytes())
            .and_then(|()| self.out.flush())
            .is_err()
        {
            self.closed = true;
        }
    }

    /// Shows the engine's live notes on stderr when `on` (dimmed with colour); off by
    /// default.
    #[must_use]
    pub fn with_notes(mut self, on: bool) -> Self {
        self.notes = on;
        self
    }

    /// Dims the reasoning text on stderr when `on` (the caller decides: colour on and stderr a
    /// terminal, SPEC §8.1 `NO_COLOR`); off by default.
    #[must_use]
    pub fn with_color(mut self, on: bool) -> Self {
        self.color = on;
        self
    }

    /// Shows a spinner until the first text or notice (SPEC §8.1: only on a terminal; the
    /// caller decides).
    #[must_use]
    pub fn with_spinner(mut self, on: bool) -> Self {
        if on {
            self.spinner = Some(Spinner::start(self.label.clone()));
        }
        self.spin = on;
        self
    }

    /// Stops the spinner for good (the answer, reasoning or the end came).
    fn stop_spinner(&mut self) {
        self.spin = false;
        self.pause_spinner();
    }

    /// Stops the spinner for a line written while still waiting.
    fn pause_spinner(&mut self) {
        if let Some(mut s) = self.spinner.take() {
            s.stop();
        }
    }

    /// Closes a reasoning line left open on stderr, so what follows starts on its own line.
    fn end_reasoning_line(&mut self) {
        if self.reasoning_line_open {
            let _ = self.err.write_all(b"\n");
            let _ = self.err.flush();
            self.reasoning_line_open = false;
        }
        self.reasoning_shown = false;
    }

    /// Ends the answer: stops the spinner and closes an unterminated last line (of the answer
    /// on stdout, of reasoning on stderr).
    pub fn finish(&mut self) {
        self.stop_spinner();
        self.flush_wrap();
        self.end_reasoning_line();
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
        self.end_reasoning_line();
        let shown = match self.wrap.as_mut() {
            Some(w) => std::borrow::Cow::Owned(w.push(text)),
            None => std::borrow::Cow::Borrowed(text),
        };
        if self
            .out
            .write_all(shown.as_bytes())
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
        self.flush_wrap();
        self.end_reasoning_line();
        if self.wrote && !self.ends_with_newline && !self.quiet && !self.closed {
            let _ = self.out.write_all(b"\n");
            let _ = self.out.flush();
            self.ends_with_newline = true;
            if let Some(w) = self.wrap.as_mut() {
                w.line_ended();
            }
        }
        let _ = writeln!(self.err, "{line}");
    }

    fn reasoning(&mut self, text: &str) {
        if self.quiet || self.closed || text.is_empty() {
            return;
        }
        self.stop_spinner();
        self.flush_wrap();
        let mut bytes = String::new();
        if !self.reasoning_shown && self.wrote && !self.ends_with_newline {
            // An answer line is open on the terminal: the reasoning starts below it.
            bytes.push('\n');
        }
        if self.color {
            bytes.push_str(DIM);
            bytes.push_str(text);
            bytes.push_str(RESET);
        } else {
            bytes.push_str(text);
        }
        let _ = self.err.write_all(bytes.as_bytes());
        let _ = self.err.flush();
        self.reasoning_shown = true;
        self.reasoning_line_open = !text.ends_with('\n');
    }

    fn engine_note(&mut self, line: &str) {
        if !self.notes {
            return;
        }
        self.pause_spinner();
        self.end_reasoning_line();
        // After a cut answer the note goes below the open answer line; the line end goes to
        // stderr, so stdout stays exactly the answer (`continue` goes on on the same line).
        let open = if self.wrote && !self.ends_with_newline && !self.closed {
            "\n"
        } else {
            ""
        };
        let _ = if self.color {
            writeln!(self.err, "{open}{DIM}{line}{RESET}")
        } else {
            writeln!(self.err, "{open}{line}")
        };
        let _ = self.err.flush();
        if self.spin {
            self.spinner = Some(Spinner::start(self.label.clone()));
        }
    }

    fn waiting_for(&mut self, backend: &str) {
        if let Ok(mut l) = self.label.lock() {
            *l = format!("waiting for {backend}…");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `steps` (`('r', reasoning)`, `('t', text)`, `('n', notice)`) to a sink, finishes
    /// it, and returns (stdout, stderr).
    fn run(quiet: bool, color: bool, steps: &[(char, &str)]) -> (String, String) {
        run_on(None, quiet, color, steps)
    }

    /// As [`run`], with the answer going to a terminal `width` columns wide.
    fn run_on(
        width: Option<usize>,
        quiet: bool,
        color: bool,
        steps: &[(char, &str)],
    ) -> (String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut sink = Sink::new(&mut out, &mut err, quiet)
            .with_color(color)
            .with_terminal(width);
        for (kind, s) in steps {
            match kind {
                'r' => sink.reasoning(s),
                't' => sink.text(s),
                _ => sink.notice(s),
            }
        }
        sink.finish();
        drop(sink);
        (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn reasoning_goes_to_stderr_and_ends_its_line_before_the_answer() {
        let (out, err) = run(
            false,
            false,
            &[('r', "Let me "), ('r', "think."), ('t', "42")],
        );
        assert_eq!(out, "42\n", "stdout is exactly the answer");
        assert_eq!(err, "Let me think.\n");
        // Reasoning that ended its own line gets no second line end.
        let (out, err) = run(false, false, &[('r', "think.\n"), ('t', "42\n")]);
        assert_eq!((out.as_str(), err.as_str()), ("42\n", "think.\n"));
    }

    #[test]
    fn live_notes_are_dimmed_with_colour_never_touch_stdout_and_are_off_unless_asked() {
        let note = |notes: bool, color: bool, text: &str| {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let mut sink = Sink::new(&mut out, &mut err, false)
                .with_color(color)
                .with_notes(notes);
            sink.text(text);
            sink.engine_note("→ failover to b");
            sink.text("more");
            sink.finish();
            drop(sink);
            (
                String::from_utf8(out).unwrap(),
                String::from_utf8(err).unwrap(),
            )
        };
        assert_eq!(
            note(true, true, ""),
            ("more\n".into(), "\x1b[2m→ failover to b\x1b[0m\n".into())
        );
        // An open answer line: the note starts below it, the line end on stderr only.
        assert_eq!(
            note(true, false, "The answer "),
            ("The answer more\n".into(), "\n→ failover to b\n".into())
        );
        assert_eq!(note(false, true, ""), ("more\n".into(), String::new()));
    }

    #[test]
    fn reasoning_is_dimmed_only_with_colour() {
        let (out, err) = run(false, true, &[('r', "hmm"), ('t', "ok")]);
        assert_eq!(out, "ok\n");
        assert_eq!(err, "\x1b[2mhmm\x1b[0m\n");
    }

    #[test]
    fn json_prints_no_reasoning() {
        let (out, err) = run(true, true, &[('r', "hmm"), ('t', "ok")]);
        assert_eq!((out.as_str(), err.as_str()), ("", ""));
    }

    #[test]
    fn reasoning_never_runs_into_an_open_answer_line_or_a_notice() {
        // Reasoning after answer text starts on a fresh stderr line; stdout is untouched.
        let (out, err) = run(false, false, &[('t', "Hel"), ('r', "R"), ('t', "lo")]);
        assert_eq!(out, "Hello\n");
        assert_eq!(err, "\nR\n");
        // A notice, or the end of a turn with no text, closes the reasoning line first.
        let (_, err) = run(false, false, &[('r', "R"), ('n', "[note]")]);
        assert_eq!(err, "R\n[note]\n");
        let (out, err) = run(false, false, &[('r', "R")]);
        assert_eq!((out.as_str(), err.as_str()), ("", "R\n"));
    }

    #[test]
    fn on_a_terminal_the_answer_wraps_at_word_boundaries_and_piped_it_is_unchanged() {
        let steps = [
            ('t', "Twenty words or so make a line longer than sixty col"),
            ('t', "umns, which a terminal must wrap between words."),
            ('n', "[a notice]"),
            ('t', "\nMore."),
        ];
        let (out, err) = run_on(Some(60), false, false, &steps);
        assert_eq!(
            out,
            "Twenty words or so make a line longer than sixty columns,\n\
             which a terminal must wrap between words.\n\
             \nMore.\n"
        );
        assert_eq!(err, "[a notice]\n");
        // Piped: the bytes are the answer's own.
        let (out, _) = run(false, false, &steps);
        assert_eq!(
            out,
            "Twenty words or so make a line longer than sixty columns, which a terminal must wrap between words.\n\nMore.\n"
        );
    }
}
