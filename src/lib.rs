//! llxprt: a command-line LLM client that keeps answering when providers misbehave.
//!
//! The layout follows a pure core and a thin shell: [`engine`] decides every retry, bucket
//! advance, failover and round-robin step as a pure function; [`simulate`] drives it in virtual
//! time from recorded traces; the profile layer ([`profile`]) turns JSON files into validated
//! types; [`cli`] and [`commands`] are the command line.

pub mod auth;
pub mod chat;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod conversation;
pub mod driver;
pub mod engine;
pub mod face;
pub mod fsutil;
pub mod fuzzing;
pub mod narrate;
pub mod profile;
pub mod provider;
pub mod record;
pub mod redact;
pub mod report;
pub mod serve;
pub mod shell;
pub mod simulate;
pub mod state_file;
pub mod terminal;
pub mod timefmt;
