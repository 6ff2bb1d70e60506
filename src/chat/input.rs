//! Where the interactive session's lines come from (SPEC §8.1): a terminal, read by rustyline
//! with editing and history; or a pipe or file, read here, one bounded line at a time (SPEC §7:
//! no input is read whole however long it is).
//!
//! Owns: reading a line, and the piped line's limit and decoding. Must not: interpret lines
//! (the session does).

use std::io::{self, BufRead};
use std::path::PathBuf;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::{
    Cmd, ConditionalEventHandler, Editor, Event, EventContext, EventHandler, KeyCode, KeyEvent,
    Modifiers, RepeatCount,
};

use super::history;

/// Longest line read from a pipe, newline excluded. (`-i` needs a terminal, SPEC §8.1; the
/// session reads a pipe only under the end-to-end tests' hook, `commands::chat_input`.)
pub const MAX_PIPED_LINE: usize = 16 * 1024 * 1024;

/// What one read gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// A line, without its line ending.
    Line(String),
    /// Ctrl-C at the prompt (a terminal only).
    Interrupted,
    /// End of input (Ctrl-D on an empty line, or the end of the pipe).
    End,
    /// A line that could not be taken (too long, not UTF-8); the next read goes on after it.
    Refused(String),
}

/// The session's lines.
pub enum Lines<R: BufRead> {
    /// A terminal: rustyline, with the history file, and the flag that makes Esc cancel
    /// (set while [`Lines::ask`] reads).
    Terminal(Box<Editor<(), FileHistory>>, PathBuf, Arc<AtomicBool>),
    /// Anything else, read plainly (no prompt is printed), with the history file.
    Piped(R, PathBuf),
}

/// Esc cancels a question ([`Lines::ask`], the `/profile load` picker, SPEC §8.1) as Ctrl-C
/// would; at the session's prompt it keeps rustyline's own meaning.
struct EscCancels(Arc<AtomicBool>);

impl ConditionalEventHandler for EscCancels {
    fn handle(&self, _: &Event, _: RepeatCount, _: bool, _: &EventContext) -> Option<Cmd> {
        self.0.load(Ordering::Relaxed).then_some(Cmd::Interrupt)
    }
}

impl<R: BufRead> Lines<R> {
    /// The lines of a terminal, read by `editor`, kept in the history file `history`.
    pub fn terminal(mut editor: Editor<(), FileHistory>, history: PathBuf) -> Self {
        let asking = Arc::new(AtomicBool::new(false));
        editor.bind_sequence(
            KeyEvent(KeyCode::Esc, Modifiers::NONE),
            EventHandler::Conditional(Box::new(EscCancels(asking.clone()))),
        );
        Lines::Terminal(Box::new(editor), history, asking)
    }

    /// An answer to a question (the picker's): as [`Lines::read`], but Esc on a terminal
    /// cancels it ([`Read::Interrupted`]), and from a pipe a line that is only Esc does.
    pub fn ask(&mut self, prompt: &str) -> io::Result<Read> {
        let read = match self {
            Lines::Terminal(_, _, asking) => {
                let asking = asking.clone();
                asking.store(true, Ordering::Relaxed);
                let read = self.read(prompt);
                asking.store(false, Ordering::Relaxed);
                read
            }
            Lines::Piped(..) => self.read(prompt),
        }?;
        Ok(match read {
            Read::Line(l) if l.trim() == "\u{1b}" => Read::Interrupted,
            other => other,
        })
    }

    /// The next line; `prompt` is shown on a terminal. Errors: the input cannot be read.
    pub fn read(&mut self, prompt: &str) -> io::Result<Read> {
        match self {
            Lines::Terminal(editor, ..) => match editor.readline(prompt) {
                Ok(line) => Ok(Read::Line(line)),
                Err(ReadlineError::Interrupted) => Ok(Read::Interrupted),
                Err(ReadlineError::Eof) => Ok(Read::End),
                Err(ReadlineError::Io(e)) => Err(e),
                Err(e) => Err(io::Error::other(e.to_string())),
            },
            Lines::Piped(reader, _) => read_piped(reader, MAX_PIPED_LINE),
        }
    }

    /// Keeps `line` in the history file (and a terminal's editor). Losing a history line is
    /// no reason to stop the session.
    pub fn remember(&mut self, line: &str) {
        match self {
            Lines::Terminal(editor, path, _) => {
                if editor.add_history_entry(line).unwrap_or(false) {
                    let _ = history::append(path, line);
                }
            }
            Lines::Piped(_, path) => {
                if !line.trim().is_empty() {
                    let _ = history::append(path, line);
                }
            }
        }
    }
}

/// One line of at most `cap` bytes from `reader`: a longer one is skipped to its end, never
/// held whole. The line ending (`\n` or `\r\n`) is cut, and a backspace deletes the character
/// before it, as a terminal would have.
pub fn read_piped(reader: &mut impl BufRead, cap: usize) -> io::Result<Read> {
    let mut line = Vec::new();
    let mut too_long = false;
    let mut any = false;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        any = true;
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if !too_long {
            if line.len() + chunk.len() > cap {
                too_long = true;
                line = Vec::new();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let used = done.unwrap_or(buf.len());
        reader.consume(used);
        if done.is_some() {
            break;
        }
    }
    if !any {
        return Ok(Read::End);
    }
    if too_long {
        return Ok(Read::Refused(format!(
            "a line of input is longer than {cap} bytes, the most one line may have; it was skipped"
        )));
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    let Ok(text) = String::from_utf8(line) else {
        return Ok(Read::Refused(
            "a line of input is not UTF-8; it was skipped".into(),
        ));
    };
    Ok(Read::Line(apply_backspaces(&text)))
}

fn apply_backspaces(text: &str) -> String {
    if !text.contains('\u{8}') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\u{8}' {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8], cap: usize) -> Vec<Read> {
        let mut r = io::BufReader::with_capacity(4, input);
        let mut out = Vec::new();
        loop {
            let got = read_piped(&mut r, cap).unwrap();
            if got == Read::End {
                return out;
            }
            out.push(got);
        }
    }

    #[test]
    fn lines_endings_and_backspaces() {
        assert_eq!(
            all(b"one\r\ntwo\n\nthre\x08ee\nlast", 100),
            [
                Read::Line("one".into()),
                Read::Line("two".into()),
                Read::Line(String::new()),
                Read::Line("three".into()),
                Read::Line("last".into()),
            ]
        );
    }

    /// SPEC §7: a line one byte over the cap is refused (and skipped whole), one at the cap is
    /// read, and what follows is read normally.
    #[test]
    fn a_line_over_the_cap_is_skipped_not_held() {
        let got = all(b"12345\n123456\nnext\n", 5);
        assert_eq!(got[0], Read::Line("12345".into()));
        assert!(
            matches!(&got[1], Read::Refused(m) if m.contains("longer than 5 bytes")),
            "{got:?}"
        );
        assert_eq!(got[2], Read::Line("next".into()));
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn a_line_that_is_not_utf8_is_refused() {
        let got = all(b"\xff\xfe\nok\n", 100);
        assert!(matches!(&got[0], Read::Refused(m) if m.contains("UTF-8")));
        assert_eq!(got[1], Read::Line("ok".into()));
    }
}
