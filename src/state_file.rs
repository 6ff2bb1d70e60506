//! The persisted engine state (SPEC §5.9): `<root>/state/state.json`, shared by every profile
//! and every `llxprt` process.
//!
//! Owns: the file's format (one JSON object keyed `lb/<name>`, `backend/<profile>`,
//! `bucket/<provider>/<bucket>`), and running engine steps under the lock: lock → re-read →
//! decide → write atomically → unlock, so concurrent processes lose no update. Requests in
//! flight stay in this process's memory. Must not: decide anything (the engine does).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::driver::StateStore;
use crate::engine::state::{BackendState, BucketState, LbState, RequestState, SharedState};
use crate::engine::{Action, EngineState, Event, RequestId};
use crate::fsutil::{read_limited, write_atomic};

/// Largest state file read (SPEC §7); statistics are bounded, so a real one stays far below.
pub const MAX_STATE_BYTES: u64 = 64 * 1024 * 1024;

/// Serialises shared state in the keyed form of SPEC §5.9.
pub fn to_keyed(s: &SharedState) -> Value {
    let mut m = Map::new();
    m.insert("version".into(), Value::from(1));
    for (k, v) in &s.lbs {
        m.insert(
            format!("lb/{k}"),
            serde_json::to_value(v).expect("plain data"),
        );
    }
    for (k, v) in &s.backends {
        m.insert(
            format!("backend/{k}"),
            serde_json::to_value(v).expect("plain data"),
        );
    }
    for (k, v) in &s.buckets {
        m.insert(
            format!("bucket/{k}"),
            serde_json::to_value(v).expect("plain data"),
        );
    }
    Value::Object(m)
}

/// Reads the keyed form; entries that do not parse are dropped (and named in the result) so
/// one damaged key never blocks requests.
pub fn from_keyed(v: &Value) -> (SharedState, Vec<String>) {
    let mut s = SharedState::default();
    let mut dropped = Vec::new();
    let Some(m) = v.as_object() else {
        return (s, vec!["(the whole file is not a JSON object)".into()]);
    };
    for (k, val) in m {
        let ok = if let Some(name) = k.strip_prefix("lb/") {
            serde_json::from_value::<LbState>(val.clone())
                .map(|x| s.lbs.insert(name.into(), x))
                .is_ok()
        } else if let Some(name) = k.strip_prefix("backend/") {
            serde_json::from_value::<BackendState>(val.clone())
                .map(|x| s.backends.insert(name.into(), x))
                .is_ok()
        } else if let Some(name) = k.strip_prefix("bucket/") {
            serde_json::from_value::<BucketState>(val.clone())
                .map(|x| s.buckets.insert(name.into(), x))
                .is_ok()
        } else {
            k == "version"
        };
        if !ok {
            dropped.push(k.clone());
        }
    }
    (s, dropped)
}

/// The state file with its lock, and this process's requests in flight.
pub struct StateFile {
    path: PathBuf,
    lock_path: PathBuf,
    requests: BTreeMap<RequestId, RequestState>,
    /// Keys dropped because they did not parse (reported once by the caller).
    pub warnings: Vec<String>,
}

impl StateFile {
    /// The state file under `root` (`<root>/state/state.json`).
    pub fn new(root: &Path) -> StateFile {
        let dir = root.join("state");
        StateFile {
            path: dir.join("state.json"),
            lock_path: dir.join("state.json.lock"),
            requests: BTreeMap::new(),
            warnings: Vec::new(),
        }
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::io::Result<File> {
        if let Some(dir) = self.lock_path.parent() {
            fs::create_dir_all(dir)?;
        }
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_path)?;
        f.lock()?;
        Ok(f)
    }

    /// Reads the shared state (no lock needed: writes are atomic renames).
    pub fn read(&mut self) -> std::io::Result<SharedState> {
        match read_limited(&self.path, MAX_STATE_BYTES) {
            Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                Ok(v) => {
                    let (s, dropped) = from_keyed(&v);
                    self.warnings.extend(dropped);
                    Ok(s)
                }
                Err(e) => {
                    self.warnings
                        .push(format!("the file is not JSON ({e}); starting afresh"));
                    Ok(SharedState::default())
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SharedState::default()),
            Err(e) => Err(e),
        }
    }

    /// Changes the shared state under the lock: lock → re-read → `f` → write → unlock.
    pub fn update<R>(&mut self, f: impl FnOnce(&mut SharedState) -> R) -> std::io::Result<R> {
        let lock = self.lock()?;
        let mut shared = self.read()?;
        let r = f(&mut shared);
        let mut text = serde_json::to_string_pretty(&to_keyed(&shared)).expect("plain data");
        text.push('\n');
        write_atomic(&self.path, text.as_bytes())?;
        drop(lock);
        Ok(r)
    }

    /// One engine step under the lock; an I/O failure is returned (the caller fails the
    /// request with it).
    pub fn try_step(&mut self, event: &Event) -> std::io::Result<Vec<Action>> {
        let mut requests = std::mem::take(&mut self.requests);
        let result = self.update(|shared| {
            let mut st = EngineState {
                shared: std::mem::take(shared),
                requests: std::mem::take(&mut requests),
            };
            let actions = st.step(event);
            *shared = st.shared;
            requests = st.requests;
            actions
        });
        self.requests = requests;
        result
    }
}

impl StateStore for StateFile {
    fn step(&mut self, event: &Event) -> Vec<Action> {
        match self.try_step(event) {
            Ok(a) => a,
            Err(e) => vec![Action::Fail {
                kind: crate::engine::FailKind::Exhausted,
                error: format!("cannot update the state file {}: {e}", self.path.display()),
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_form_round_trips_and_drops_damaged_keys() {
        let mut s = SharedState::default();
        s.lbs.insert(
            "lb".into(),
            LbState {
                cursor: 7,
                ..LbState::default()
            },
        );
        s.buckets.insert(
            "anthropic/team1".into(),
            BucketState {
                cooldown_until: Some(5),
                ..BucketState::default()
            },
        );
        s.backends.insert("a".into(), BackendState::default());
        let v = to_keyed(&s);
        assert!(v.get("bucket/anthropic/team1").is_some());
        let (back, dropped) = from_keyed(&v);
        assert_eq!(back, s);
        assert!(dropped.is_empty());
        let mut damaged = v.clone();
        damaged["lb/lb"] = Value::from("garbage");
        let (back, dropped) = from_keyed(&damaged);
        assert_eq!(dropped, ["lb/lb"]);
        assert!(back.lbs.is_empty() && back.buckets.len() == 1);
    }

    #[test]
    fn updates_persist_and_a_corrupt_file_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = StateFile::new(dir.path());
        f.update(|s| s.lbs.entry("x".into()).or_default().cursor += 1)
            .unwrap();
        f.update(|s| s.lbs.entry("x".into()).or_default().cursor += 1)
            .unwrap();
        assert_eq!(
            StateFile::new(dir.path()).read().unwrap().lbs["x"].cursor,
            2
        );
        fs::write(f.path(), b"{not json").unwrap();
        let mut g = StateFile::new(dir.path());
        assert!(g.read().unwrap().lbs.is_empty());
        assert_eq!(g.warnings.len(), 1);
    }
}
