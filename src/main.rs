//! The `llxprt` binary: parse arguments, run, print the error once, map it to an exit code
//! (SPEC §8.2). Nothing else lives here (STYLE 7).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use llxprt::cli::Cli;
use llxprt::commands::{self, Streams, exit};

/// Replaces the default panic message, which prints the payload: a payload may quote a key or
/// a token (SPEC §7 — never in panics). Only the location is printed (and a backtrace when
/// `RUST_BACKTRACE` asks for one: it names functions and files, never values).
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!(" at {}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        let _ = writeln!(
            std::io::stderr(),
            "llxprt: internal error in thread '{name}'{at} (a bug: please report it; the panic \
             message is withheld because it may hold a secret)"
        );
        let bt = std::backtrace::Backtrace::capture();
        if bt.status() == std::backtrace::BacktraceStatus::Captured {
            let _ = writeln!(std::io::stderr(), "{bt}");
        }
    }));
}

/// Test hook, debug builds only (docs/decisions.md): `LLXPRT_TEST_PANIC=TEXT` panics at once
/// with TEXT in the payload, so tests/secrets.rs can check that a planted secret never reaches
/// stderr through a panic (SPEC §7).
#[cfg(debug_assertions)]
fn test_panic() {
    if let Some(text) = std::env::var_os("LLXPRT_TEST_PANIC") {
        panic!("LLXPRT_TEST_PANIC: {}", text.to_string_lossy());
    }
}

fn main() -> ExitCode {
    install_panic_hook();
    #[cfg(debug_assertions)]
    test_panic();
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
