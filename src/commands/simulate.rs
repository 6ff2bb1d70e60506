//! `llxprt simulate` (SPEC §9).

use super::{CmdError, Streams};
use crate::cli::SimulateArgs;
use crate::profile::store::Store;

/// Runs a trace through the engine.
pub fn run(_args: &SimulateArgs, _store: &Store, _io: &mut Streams<'_>) -> Result<u8, CmdError> {
    Err(CmdError::new(
        super::exit::FAILED,
        "simulate is not built yet",
    ))
}
