//! The wall clock of the shell-side code: the one place a face, the shell, auth or the state
//! stores read the time, which then travels into the engine as data in each event's `now`
//! (STYLE 1, SPEC §5.9).
//!
//! Owns: the current Unix time in milliseconds. Must not: be used by the engine (it never reads
//! a clock, `tests/engine_purity.rs`) or by `simulate` (virtual time).

use std::time::{SystemTime, UNIX_EPOCH};

/// The current Unix time in milliseconds (0 if the system clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
