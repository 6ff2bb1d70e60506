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

/// The "now" that reports measure times against (`stats`, `auth status`, `/stats`, `/auth`:
/// cooldowns still running, relative times such as `in 42 s`).
///
/// Test hook, debug builds only (docs/decisions.md): `LLXPRT_TEST_NOW_MS=N` fixes it, so a
/// snapshot of a table with relative times is stable.
pub fn report_now_ms() -> u64 {
    if cfg!(debug_assertions)
        && let Some(n) = std::env::var("LLXPRT_TEST_NOW_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
    {
        return n;
    }
    now_ms()
}
