//! One conversation model and the turn path chat and serve share.
//!
//! It sits below the two faces (`chat`, `serve`) and above the drivers (`driver`, `shell`):
//! [`prepare`] turns a profile into what a turn runs on (the engine's plan and each backend's
//! resolved settings, the backends looked up in the store, the OAuth buckets that can be
//! refreshed); [`notes`] says how the shared state file's warnings read, whichever face shows
//! them.
//!
//! Must not: import `chat`, `serve` or `commands` (`tests/architecture.rs`); print, or read a
//! terminal or a socket (the faces do); decide retries, order or failover (the engine does);
//! build provider requests or touch the network (the shell does).

pub mod notes;
pub mod prepare;
