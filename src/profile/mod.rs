//! Profiles: the file formats of SPEC §2, their validation (SPEC §2.3) and the profile store
//! (SPEC §1).
//!
//! Raw serde types ([`raw`]) become validated types ([`model`]) only through validation; the
//! rest of llxprt sees validated types.

pub mod diagnostic;
pub mod jsonpos;
pub mod model;
pub mod names;
pub mod numbers;
pub mod raw;
pub mod resolve;
pub mod schema;
pub mod settings;
pub mod store;
pub mod validate;
