//! The commands behind the command line: each takes parsed arguments and the output streams,
//! and returns an exit code (SPEC §8.2) or a [`CmdError`].
//!
//! Owns: what each command does and writes. Must not: parse arguments (that is `cli`) or exit
//! the process (that is `main`).

use crate::cli::{ChatArgs, Cli, Command};
pub use crate::face::{CmdError, Streams, exit};
use crate::profile::store::Store;

pub mod auth;
pub mod chat;
pub mod chat_input;
pub mod profile;
pub use crate::report::{diagnostics, stats};
pub mod serve;
pub mod simulate;

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
