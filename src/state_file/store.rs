//! Which store keeps the shared engine state (SPEC §5.9, §5.9.1): the state file by default, a
//! Redis server when `LLXPRT_STATE_URL` (or `"stateUrl"` in `settings.json`; the environment
//! wins) names one.
//!
//! Owns: choosing the store, and the operations every command needs from either (a step, a
//! read, a read-modify-write, the warnings to show, a line that names the store). Must not:
//! show a password (the URL is only ever shown redacted).

use std::io;
use std::path::Path;

use serde_json::Value;

use super::StateFile;
use super::redis::{RedisState, Report, StateUrl};
use crate::driver::{StateStore, StoreFailed};
use crate::engine::state::SharedState;
use crate::engine::{Event, Step};
use crate::fsutil::read_limited;

/// The environment variable naming the state server.
pub const STATE_URL_VAR: &str = "LLXPRT_STATE_URL";

/// Where the state URL comes from, when there is one: the environment first, then
/// `settings.json`'s `"stateUrl"`. An empty value means none (the file store).
pub fn state_url(
    root: &Path,
    getenv: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, String> {
    if let Some(v) = getenv(STATE_URL_VAR) {
        return Ok(Some(v).filter(|v| !v.trim().is_empty()));
    }
    let path = root.join("settings.json");
    let bytes = match read_limited(&path, 1024 * 1024) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    // A settings file that is not JSON is reported by the commands that use the rest of it;
    // here it only means no state URL.
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    match v.get("stateUrl") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone()).filter(|s| !s.trim().is_empty())),
        Some(_) => Err(format!(
            "\"stateUrl\" in {} is not a string",
            path.display()
        )),
    }
}

/// The store of the shared engine state.
pub enum SharedStore {
    /// `<root>/state/state.json` (the default).
    File(StateFile),
    /// A Redis server.
    Redis(Box<RedisState>),
    /// A state URL that cannot be used: every operation fails with this message (no secret).
    Unusable(String),
}

impl SharedStore {
    /// The store for `root`, as the environment and `settings.json` choose.
    pub fn open(root: &Path) -> SharedStore {
        let getenv = |k: &str| std::env::var(k).ok();
        SharedStore::choose(root, &getenv, None)
    }

    /// The store for `root` with this environment; `report` receives the Redis store's
    /// degraded-mode messages as they happen (otherwise they are kept as warnings).
    pub fn choose(
        root: &Path,
        getenv: &dyn Fn(&str) -> Option<String>,
        report: Option<Report>,
    ) -> SharedStore {
        match state_url(root, getenv) {
            Ok(None) => SharedStore::File(StateFile::new(root)),
            Ok(Some(url)) => {
                match StateUrl::parse(&url).and_then(|u| RedisState::open(u, report)) {
                    Ok(r) => SharedStore::Redis(Box::new(r)),
                    Err(e) => SharedStore::Unusable(e),
                }
            }
            Err(e) => SharedStore::Unusable(e),
        }
    }

    /// The store in a few words: the state file's path, or the server's URL with the password
    /// redacted.
    pub fn describe(&self) -> String {
        match self {
            SharedStore::File(f) => f.path().display().to_string(),
            SharedStore::Redis(r) => r.shown().to_string(),
            SharedStore::Unusable(e) => format!("unusable: {e}"),
        }
    }

    /// Reads the whole shared state.
    pub fn read(&mut self) -> io::Result<SharedState> {
        match self {
            SharedStore::File(f) => f.read(),
            SharedStore::Redis(r) => r.read(),
            SharedStore::Unusable(e) => Err(io::Error::other(e.clone())),
        }
    }

    /// One read-modify-write of the whole shared state (lock or transaction).
    pub fn update<R>(&mut self, f: impl FnMut(&mut SharedState) -> R) -> io::Result<R> {
        match self {
            SharedStore::File(file) => file.update(f),
            SharedStore::Redis(r) => r.update(f),
            SharedStore::Unusable(e) => Err(io::Error::other(e.clone())),
        }
    }

    /// Warnings since the last call: entries dropped because they did not parse, the state
    /// server not answering.
    pub fn take_warnings(&mut self) -> Vec<String> {
        match self {
            SharedStore::File(f) => std::mem::take(&mut f.warnings),
            SharedStore::Redis(r) => r.take_warnings(),
            SharedStore::Unusable(_) => Vec::new(),
        }
    }

    /// Whether the store answers, for `diagnostics`: `Ok` with what was checked, or the error.
    pub fn check(&mut self) -> Result<String, String> {
        match self {
            SharedStore::File(f) => f
                .read()
                .map(|_| "readable".to_string())
                .map_err(|e| e.to_string()),
            SharedStore::Redis(r) => r.ping().map(|()| "answers PING".to_string()),
            SharedStore::Unusable(e) => Err(e.clone()),
        }
    }
}

impl StateStore for SharedStore {
    fn step(&mut self, event: &Event) -> Result<Step, StoreFailed> {
        match self {
            SharedStore::File(f) => f.step(event),
            SharedStore::Redis(r) => Ok(RedisState::step(r, event)),
            SharedStore::Unusable(e) => Err(StoreFailed(e.clone())),
        }
    }
}
