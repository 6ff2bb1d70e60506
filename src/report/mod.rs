//! What llxprt reports about itself — diagnostics, statistics, the profile listing — built
//! and written for both the command line and the session, so neither face imports the other.
//!
//! Owns: building and rendering these reports. Must not: be imported by the engine, the shell or
//! the protocols (it sits beside `commands`, below the faces that print).

pub mod diagnostics;
pub mod profiles;
pub mod stats;
pub mod table;
