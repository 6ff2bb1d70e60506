//! The `llxprt` binary: parse arguments, run, print the error once, map it to an exit code
//! (SPEC §8.2). Nothing else lives here (STYLE 7).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use llxprt::cli::Cli;
use llxprt::commands::{self, Streams, exit};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    let color = std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    // Not locked for the whole run: the session's spinner thread writes to stderr too.
    let mut err = std::io::stderr();
    let result = commands::run(
        cli,
        &mut Streams {
            out: &mut out,
            err: &mut err,
            color,
        },
    );
    let flushed = out.flush();
    let code = match result {
        Ok(code) => code,
        Err(e) if e.code == exit::OK => exit::OK,
        Err(e) => {
            let _ = writeln!(err, "error: {}", e.message);
            if let Some(h) = e.help {
                let _ = writeln!(err, "help: {h}");
            }
            e.code
        }
    };
    match flushed {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe && code == exit::OK => {
            ExitCode::from(exit::FAILED)
        }
        _ => ExitCode::from(code),
    }
}
