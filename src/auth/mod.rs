//! Accounts (SPEC §6.3): the credentials of buckets — API keys and OAuth logins stored in
//! `<root>/oauth/<provider>/<bucket>.json` — how they are obtained, refreshed and listed.
//!
//! Parts: [`credentials`] (where each bucket's secret comes from, in which order, read without ever
//! printing it); [`store`] (bucket files, 0600 and atomic, and the per-bucket lock); [`pkce`],
//! [`loopback`] and [`token`] (the OAuth 2.0 pieces: PKCE, the redirect listener on 127.0.0.1, the
//! token and device endpoints); [`login`] (`llxprt auth login` and `/auth P login B`, with
//! [`browser`]); [`refresh`] (the `refresh_token` grant after a 401 and before use, serialised
//! across processes); [`status`] (`llxprt auth status`, `/auth`). Must not: decide retries or
//! bucket order (the engine does), or let a key or token reach any output (SPEC §7).

pub mod browser;
pub mod credentials;
pub mod login;
pub mod loopback;
pub mod pkce;
pub mod refresh;
pub mod status;
pub mod store;
pub mod token;
