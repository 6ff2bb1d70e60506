//! The blocking HTTP shell (SPEC §6): everything that touches the network on behalf of the pure
//! engine — building each provider's request, sending it, reading the stream, and reporting one
//! outcome per attempt (SPEC §4).
//!
//! Parts: the providers' wire protocols ([`protocol`]) and the incremental server-sent events
//! decoder ([`sse`]), pure functions over bytes and JSON; the [`transport`] (ureq, deadlines);
//! the context [`budget`] (how much history one request carries); and the [`http`] executor
//! that turns each exchange into an outcome, with each bucket's secret from
//! [`crate::auth::credentials`]. Must not: decide retries, failover or waits (the engine does).

pub mod budget;
pub mod http;
pub mod protocol;
pub mod sse;
pub mod transport;
