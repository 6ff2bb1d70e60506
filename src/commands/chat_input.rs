//! What `chat` (and the top-level `llxprt [PROMPT]`) was asked to do, decided from its
//! arguments and standard input before any profile is loaded (SPEC §8.1 "Piped input"): the
//! interactive session, or one prompt answered once.
//!
//! Owns: what kind of thing standard input is, reading it whole (bounded), and the usage errors
//! of the prompt's sources (exit 2). Must not: load a profile or send anything; a usage error
//! must be found here, so it is a usage error even when the profile is missing.

use std::io::{IsTerminal, Read};

use super::{CmdError, exit};

/// Largest input read from standard input as (part of) a prompt (SPEC §8.1: 8 MiB).
pub const MAX_STDIN_PROMPT: u64 = 8 * 1024 * 1024;

/// What `chat` does.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Open the interactive session (its PROMPT, if any, is sent first).
    Session,
    /// Answer this prompt once and exit.
    Once(String),
}

/// What standard input is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdin {
    /// A terminal: the session reads it; a one-shot ignores it.
    Terminal,
    /// A pipe, a socket or a regular file: its whole content is (part of) the prompt.
    Input,
    /// Anything else — a character device such as `/dev/null`, a closed descriptor: no input.
    Nothing,
}

impl Stdin {
    /// What this process's standard input is.
    pub fn of_process() -> Stdin {
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            return Stdin::Terminal;
        }
        kind(&stdin)
    }
}

/// A pipe, a socket (what some launchers, Node's `child_process` among them, hand a child as
/// its "pipe") or a regular file is input; anything else is not (docs/decisions.md).
#[cfg(unix)]
fn kind(stdin: &std::io::Stdin) -> Stdin {
    use std::os::fd::AsFd;
    use std::os::unix::fs::FileTypeExt;
    let Ok(fd) = stdin.as_fd().try_clone_to_owned() else {
        return Stdin::Nothing;
    };
    match std::fs::File::from(fd).metadata() {
        Ok(m) if m.is_file() || m.file_type().is_fifo() || m.file_type().is_socket() => {
            Stdin::Input
        }
        _ => Stdin::Nothing,
    }
}

#[cfg(not(unix))]
fn kind(_stdin: &std::io::Stdin) -> Stdin {
    Stdin::Input
}

/// Test hook, debug builds only (docs/decisions.md): with `LLXPRT_TEST_SESSION_STDIN` set,
/// standard input counts as a terminal here (the session then reads its lines from the pipe),
/// so the end-to-end tests can drive the session through a pipe.
fn session_reads_pipes() -> bool {
    cfg!(debug_assertions) && std::env::var_os("LLXPRT_TEST_SESSION_STDIN").is_some()
}

/// The whole of standard input as UTF-8, at most [`MAX_STDIN_PROMPT`] bytes.
pub fn read_stdin() -> Result<String, CmdError> {
    read_bounded(std::io::stdin().lock(), MAX_STDIN_PROMPT)
}

fn read_bounded(reader: impl Read, cap: u64) -> Result<String, CmdError> {
    let mut buf = Vec::new();
    reader
        .take(cap + 1)
        .read_to_end(&mut buf)
        .map_err(|e| CmdError::new(exit::FAILED, format!("cannot read standard input: {e}")))?;
    if buf.len() as u64 > cap {
        return Err(CmdError::new(
            exit::USAGE,
            format!("standard input is over {cap} bytes, the most a prompt may have"),
        ));
    }
    String::from_utf8(buf).map_err(|_| CmdError::new(exit::USAGE, "standard input is not UTF-8"))
}

/// Decides what `chat` does for this process (SPEC §8.1), reading standard input when it is
/// the prompt or part of it.
pub fn plan(prompt: Option<&str>, interactive: bool, json: bool) -> Result<Plan, CmdError> {
    let stdin = if session_reads_pipes() {
        Stdin::Terminal
    } else {
        Stdin::of_process()
    };
    decide(prompt, interactive, json, stdin, read_stdin)
}

/// [`plan`] with standard input's kind and its reader given.
fn decide(
    prompt: Option<&str>,
    interactive: bool,
    json: bool,
    stdin: Stdin,
    read: impl FnOnce() -> Result<String, CmdError>,
) -> Result<Plan, CmdError> {
    if interactive && json {
        return Err(CmdError::new(
            exit::USAGE,
            "--json cannot be used with the interactive session",
        ));
    }
    if interactive {
        return match stdin {
            Stdin::Terminal => Ok(Plan::Session),
            Stdin::Input => Err(CmdError::new(
                exit::USAGE,
                "-i cannot be used with piped input: the interactive session reads a terminal",
            )
            .help("drop -i to send standard input as one prompt (after PROMPT, if given)")),
            Stdin::Nothing => Err(CmdError::new(
                exit::USAGE,
                "-i needs a terminal on standard input",
            )
            .help("drop -i to answer PROMPT once")),
        };
    }
    let text = match (stdin, prompt) {
        (Stdin::Terminal, None) => return Ok(Plan::Session),
        (Stdin::Terminal | Stdin::Nothing, Some(p)) => p.to_string(),
        (Stdin::Nothing, None) => {
            return Err(CmdError::new(
                exit::USAGE,
                "no prompt: standard input is neither a terminal nor a pipe or file",
            )
            .help("give a PROMPT, or pipe one in (the interactive session needs a terminal)"));
        }
        (Stdin::Input, Some(p)) => {
            let piped = read()?;
            if piped.trim().is_empty() {
                p.to_string()
            } else {
                // SPEC §8.1: the PROMPT, a blank line, then the whole of standard input.
                format!("{p}\n\n{piped}")
            }
        }
        (Stdin::Input, None) => {
            let piped = read()?;
            if piped.trim().is_empty() {
                return Err(CmdError::new(
                    exit::USAGE,
                    "standard input is empty and no PROMPT was given",
                )
                .help("pipe the prompt in, or give it as PROMPT"));
            }
            piped
        }
    };
    if text.trim().is_empty() {
        return Err(CmdError::new(exit::USAGE, "the prompt is empty"));
    }
    Ok(Plan::Once(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(
        prompt: Option<&str>,
        interactive: bool,
        stdin: Stdin,
        piped: &str,
    ) -> Result<Plan, u8> {
        let piped = piped.to_string();
        decide(prompt, interactive, false, stdin, move || Ok(piped)).map_err(|e| e.code)
    }

    #[test]
    fn piped_input_follows_the_prompt_after_a_blank_line() {
        assert_eq!(
            with(Some("explain"), false, Stdin::Input, "a\nb\n"),
            Ok(Plan::Once("explain\n\na\nb\n".into()))
        );
        assert_eq!(
            with(Some("explain"), false, Stdin::Input, " \n"),
            Ok(Plan::Once("explain".into()))
        );
    }

    #[test]
    fn piped_input_alone_is_one_prompt() {
        assert_eq!(
            with(None, false, Stdin::Input, "one\ntwo\n"),
            Ok(Plan::Once("one\ntwo\n".into()))
        );
        assert_eq!(with(None, false, Stdin::Input, "\n\n"), Err(exit::USAGE));
    }

    #[test]
    fn the_session_needs_a_terminal() {
        assert_eq!(with(None, false, Stdin::Terminal, ""), Ok(Plan::Session));
        assert_eq!(
            with(Some("x"), true, Stdin::Terminal, ""),
            Ok(Plan::Session)
        );
        assert_eq!(with(Some("x"), true, Stdin::Input, ""), Err(exit::USAGE));
        assert_eq!(with(Some("x"), true, Stdin::Nothing, ""), Err(exit::USAGE));
        assert_eq!(with(None, false, Stdin::Nothing, ""), Err(exit::USAGE));
    }

    #[test]
    fn a_prompt_without_input_is_sent_alone() {
        assert_eq!(
            with(Some("hi"), false, Stdin::Nothing, ""),
            Ok(Plan::Once("hi".into()))
        );
        assert_eq!(
            with(Some("hi"), false, Stdin::Terminal, ""),
            Ok(Plan::Once("hi".into()))
        );
        assert_eq!(
            with(Some("  "), false, Stdin::Terminal, ""),
            Err(exit::USAGE)
        );
    }

    #[test]
    fn json_with_the_session_is_a_usage_error() {
        let r = decide(None, true, true, Stdin::Terminal, || Ok(String::new()));
        assert_eq!(r.map_err(|e| e.code), Err(exit::USAGE));
    }

    #[test]
    fn stdin_is_read_up_to_its_bound() {
        assert_eq!(read_bounded(&b"abcd"[..], 4).ok(), Some("abcd".into()));
        assert_eq!(
            read_bounded(&b"abcde"[..], 4).map_err(|e| e.code).err(),
            Some(exit::USAGE)
        );
        assert_eq!(
            read_bounded(&[0xff_u8][..], 4).map_err(|e| e.code).err(),
            Some(exit::USAGE)
        );
    }
}
