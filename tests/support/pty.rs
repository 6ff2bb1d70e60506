//! The real binary in a pseudo-terminal (SPEC §8.1: the session as a user sees it): standard
//! input, output and error are one terminal, so rustyline edits lines, the spinner spins and
//! notes are dimmed. A test types lines and keys and reads the screen.
//!
//! The screen is the terminal's output with escape sequences removed (what a user reads); the
//! raw bytes are kept too, for what the escapes say (dimming). The harness answers rustyline's
//! cursor-position query (`ESC[6n`) at once, as a terminal would, so typed keys are never
//! taken for the answer. Waits are bounded generously and only ever wait *for* text, never time anything.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portable_pty::{Child, CommandBuilder, MasterPty, PtySize, native_pty_system};

use super::Cli;

/// How long any one expected text may take to appear: far beyond any normal run.
const PATIENCE: Duration = Duration::from_mins(1);

/// What the terminal has shown so far.
#[derive(Default)]
struct Shown {
    /// Every byte written to the terminal.
    raw: Vec<u8>,
}

/// A running binary in a pseudo-terminal.
pub struct Pty {
    child: Box<dyn Child + Send + Sync>,
    writer: Arc<Mutex<Box<dyn Write + Send>>>,
    shown: Arc<Mutex<Shown>>,
    /// How much of the screen the expectations have read.
    mark: usize,
    _master: Box<dyn MasterPty + Send>,
}

/// The text of terminal output: escape sequences (CSI, OSC) and carriage returns removed.
pub fn strip(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                Some('[') => {
                    // CSI: parameters, then one final byte in @..~.
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                Some(']') => {
                    // OSC: up to BEL or ST.
                    while let Some(c) = chars.next() {
                        if c == '\x07' || (c == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                            break;
                        }
                    }
                }
                _ => {}
            },
            '\r' | '\x07' => {}
            c => out.push(c),
        }
    }
    out
}

impl Pty {
    /// Starts `llxprt ARGS` in a 120x40 terminal with the fixture's `LLXPRT_HOME` and `HOME`,
    /// `TERM=xterm` and these extra variables.
    pub fn spawn(cli: &Cli, args: &[&str], env: &[(&str, &str)]) -> Pty {
        let pair = native_pty_system()
            .openpty(PtySize {
                rows: 40,
                cols: 120,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("a pseudo-terminal");
        let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_llxprt"));
        cmd.args(args);
        cmd.env_clear();
        cmd.env("LLXPRT_HOME", cli.home());
        cmd.env("HOME", cli.user_home());
        cmd.env("TERM", "xterm");
        cmd.env("PATH", std::env::var_os("PATH").unwrap_or_default());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.cwd(cli.home());
        let child = pair
            .slave
            .spawn_command(cmd)
            .expect("llxprt starts in the pty");
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader().expect("pty reader");
        let writer = Arc::new(Mutex::new(pair.master.take_writer().expect("pty writer")));
        let shown = Arc::new(Mutex::new(Shown::default()));
        let sink = shown.clone();
        let answer = writer.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut answered = 0;
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        let mut s = sink.lock().unwrap();
                        s.raw.extend_from_slice(&buf[..n]);
                        // Answer each cursor-position query as a terminal would (row 1,
                        // column 1), at once: rustyline waits 100 ms for it.
                        let queries = s.raw.windows(4).filter(|w| w == b"\x1b[6n").count();
                        while answered < queries {
                            let mut w = answer.lock().unwrap();
                            let _ = w.write_all(b"\x1b[1;1R");
                            let _ = w.flush();
                            answered += 1;
                        }
                    }
                }
            }
        });
        Pty {
            child,
            writer,
            shown,
            mark: 0,
            _master: pair.master,
        }
    }

    /// Everything shown so far, as text.
    pub fn screen(&self) -> String {
        strip(&self.shown.lock().unwrap().raw)
    }

    /// Everything written to the terminal so far, escapes included.
    pub fn raw(&self) -> Vec<u8> {
        self.shown.lock().unwrap().raw.clone()
    }

    /// Writes these bytes as typed keys.
    pub fn keys(&mut self, bytes: &[u8]) {
        let mut w = self.writer.lock().unwrap();
        w.write_all(bytes).expect("type into the pty");
        w.flush().expect("flush the pty");
    }

    /// Types a line and Enter.
    pub fn line(&mut self, text: &str) {
        self.keys(text.as_bytes());
        self.keys(b"\r");
    }

    /// Waits until `needle` is on the screen after what earlier expectations read, and moves
    /// past it; returns the screen text up to and including it. Panics, showing the screen,
    /// when it does not come.
    pub fn expect(&mut self, needle: &str) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if let Some(i) = screen.get(self.mark..).and_then(|s| s.find(needle)) {
                let end = self.mark + i + needle.len();
                let seen = screen[self.mark..end].to_string();
                self.mark = end;
                return seen;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "{needle:?} never appeared; the screen after the last expectation:\n{}",
                screen.get(self.mark..).unwrap_or("")
            );
            if let Ok(Some(status)) = self.child.try_wait() {
                // One last look: the output may have come with the exit.
                std::thread::sleep(Duration::from_millis(200));
                let screen = self.screen();
                assert!(
                    screen[self.mark..].contains(needle),
                    "llxprt exited ({status:?}) before {needle:?} appeared:\n{}",
                    &screen[self.mark..]
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the prompt (`> `) and types `text` with Enter.
    pub fn say(&mut self, text: &str) -> String {
        let seen = self.expect("> ");
        self.line(text);
        seen
    }

    /// Waits (bounded) for the process to exit; its exit code.
    pub fn wait(mut self) -> u32 {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.exit_code();
            }
            if start.elapsed() > PATIENCE {
                let _ = self.child.kill();
                panic!("llxprt did not exit; the screen:\n{}", self.screen());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}
