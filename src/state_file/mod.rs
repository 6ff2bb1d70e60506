//! The persisted engine state (SPEC §5.9): `<root>/state/state.json`, shared by every profile
//! and every `llxprt` process.
//!
//! The same state may live on a Redis server instead, for fleets (SPEC §5.9.1): [`redis`], chosen
//! by [`SharedStore`].
//!
//! Owns: the file's format (one JSON object keyed `lb/<name>`, `backend/<profile>`,
//! `bucket/<provider>/<bucket>`), and running engine steps under the lock: lock → re-read →
//! decide → write atomically → unlock, so concurrent processes lose no update. Requests in
//! flight stay in this process's memory. Must not: decide anything (the engine does).
//!
//! A step that sends an attempt hands the end of its write — the fsync and the rename of the
//! already written temp file, then the unlock — to a thread, so the request goes out while the
//! disk syncs instead of after it. The order lock → re-read → decide → write → unlock is
//! unchanged: the lock is held until the rename, and the next step of this process waits for
//! the write first. A failure of that write fails the request at its next step (there always
//! is one after a send: the attempt's end or its cancellation) instead of before the send.
//!
//! The state file is renamed into place without syncing the directory ([`Durable::RenameOnly`]).
//! That costs no atomicity: the temp file's data is synced before the rename, and a rename is
//! atomic, so every reader, and the file after a crash, sees a whole old or a whole new state
//! (SPEC §1). Nor does it lose updates between processes: they see each other's steps through
//! the file system as soon as the rename is done, whether or not it has reached the disk. A
//! power loss right after a step may only bring back the state before it (a statistic, a
//! cursor step, a circuit move), which later outcomes rebuild.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::driver::{StateStore, StoreFailed};
use crate::engine::state::{BackendState, BucketState, LbState, RequestState, SharedState};
use crate::engine::{EngineState, Event, Order, RequestId, Step};
use crate::fsutil::{self, Durable, Staged, read_limited};

mod lease;
pub mod redis;
mod store;
pub use lease::LeasedState;
pub use store::{STATE_URL_VAR, SharedStore, state_url};

/// The state file's format. Version 2 keys an API-key profile's implicit `default` bucket by
/// its account and fingerprints backends by a digest (SPEC §5.9); what a version-1 file keyed
/// the old way is dropped once on load (see [`upgrade`]).
pub const FORMAT_VERSION: u64 = 2;

/// Drops from a state read from an older format what it keyed the old way: every backend entry
/// (its fingerprint was provider|model|URL in clear, which no plan matches any more) and every
/// `<provider>/default` bucket (an API-key default bucket was one account per provider).
/// Cooldowns and circuits are short-lived, and statistics start afresh for those keys.
fn upgrade(s: &mut SharedState, version: u64) {
    if version < FORMAT_VERSION {
        s.backends.clear();
        s.buckets
            .retain(|k, _| k.split_once('/').is_none_or(|(_, b)| b != "default"));
    }
}

/// Largest state file read (SPEC §7); statistics are bounded, so a real one stays far below.
pub const MAX_STATE_BYTES: u64 = 64 * 1024 * 1024;

/// Shared state in the keyed form of SPEC §5.9, serialised straight from the typed state:
/// `version`, then `lb/<name>`, `backend/<profile>` and `bucket/<provider>/<bucket>` entries.
struct Keyed<'a>(&'a SharedState);

impl Serialize for Keyed<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let s = self.0;
        let mut m =
            ser.serialize_map(Some(1 + s.lbs.len() + s.backends.len() + s.buckets.len()))?;
        m.serialize_entry("version", &FORMAT_VERSION)?;
        for (k, v) in &s.lbs {
            m.serialize_entry(&format!("lb/{k}"), v)?;
        }
        for (k, v) in &s.backends {
            m.serialize_entry(&format!("backend/{k}"), v)?;
        }
        for (k, v) in &s.buckets {
            m.serialize_entry(&format!("bucket/{k}"), v)?;
        }
        m.end()
    }
}

/// The keyed form read straight into typed state, for a file whose every entry parses (the
/// usual case). Any key or entry that does not makes the whole read fail, and the caller falls
/// back to [`from_keyed`], which drops and names only those.
struct Typed(SharedState);

impl<'de> Deserialize<'de> for Typed {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = Typed;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("the keyed engine state")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Typed, A::Error> {
                let mut s = SharedState::default();
                let mut version = 1;
                while let Some(k) = map.next_key::<String>()? {
                    if let Some(name) = k.strip_prefix("lb/") {
                        s.lbs.insert(name.into(), map.next_value()?);
                    } else if let Some(name) = k.strip_prefix("backend/") {
                        s.backends.insert(name.into(), map.next_value()?);
                    } else if let Some(name) = k.strip_prefix("bucket/") {
                        s.buckets.insert(name.into(), map.next_value()?);
                    } else if k == "version" {
                        version = map.next_value::<u64>()?;
                    } else {
                        return Err(serde::de::Error::custom("an unknown key"));
                    }
                }
                upgrade(&mut s, version);
                Ok(Typed(s))
            }
        }
        de.deserialize_map(Entries)
    }
}

/// Serialises shared state in the keyed form of SPEC §5.9.
pub fn to_keyed(s: &SharedState) -> Value {
    serde_json::to_value(Keyed(s)).expect("plain data")
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
            LbState::deserialize(val)
                .map(|x| s.lbs.insert(name.into(), x))
                .is_ok()
        } else if let Some(name) = k.strip_prefix("backend/") {
            BackendState::deserialize(val)
                .map(|x| s.backends.insert(name.into(), x))
                .is_ok()
        } else if let Some(name) = k.strip_prefix("bucket/") {
            BucketState::deserialize(val)
                .map(|x| s.buckets.insert(name.into(), x))
                .is_ok()
        } else {
            k == "version"
        };
        if !ok {
            dropped.push(k.clone());
        }
    }
    upgrade(
        &mut s,
        m.get("version").and_then(Value::as_u64).unwrap_or(1),
    );
    (s, dropped)
}

/// Reads the shared state at `path`: a missing file is the empty state. A file that cannot be
/// read is moved aside and the state starts afresh, with a warning pushed to `warnings` naming
/// both (SPEC §7.1), instead of failing every request until the user deletes it or writing
/// over it in place: nothing is lost silently, the old file stays there for the user to look
/// at. Should it not move, the error is returned and nothing overwrites it.
///
/// - Something other than a regular file (a FIFO, a directory, a device; it is never opened in
///   a way that could hang), a file llxprt may not read, or one that is not a JSON object:
///   moved to `<path>.unreadable-<Unix ms>`.
/// - A file over [`MAX_STATE_BYTES`] is no state llxprt wrote (statistics are bounded): moved
///   to `<path>.too-large` (replacing an earlier one).
///
/// A JSON object some of whose entries do not parse keeps the others; each dropped key is
/// named in `warnings`.
fn read_shared(path: &Path, warnings: &mut Vec<String>) -> io::Result<SharedState> {
    let why = match read_limited(path, MAX_STATE_BYTES) {
        Ok(bytes) => match serde_json::from_slice::<Typed>(&bytes) {
            Ok(Typed(s)) => return Ok(s),
            Err(_) => match read_damaged(&bytes, warnings) {
                Ok(s) => return Ok(s),
                Err(why) => why,
            },
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(SharedState::default()),
        // `read_limited`'s only InvalidData: the file is over the limit.
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            let mut aside = path.as_os_str().to_os_string();
            aside.push(".too-large");
            let aside = PathBuf::from(aside);
            move_aside(path, &aside, &e)?;
            warnings.push(format!(
                "the state file {} was larger than the {MAX_STATE_BYTES}-byte limit; it was moved to {} and the state starts afresh (statistics, circuits and cooldowns)",
                path.display(),
                aside.display()
            ));
            return Ok(SharedState::default());
        }
        Err(e) => match fsutil::not_regular(&e) {
            Some(n) => format!("is a {}, not a regular file", n.what),
            None if e.kind() == io::ErrorKind::PermissionDenied => {
                "cannot be read (permission denied)".to_string()
            }
            None => return Err(e),
        },
    };
    let aside = unreadable_name(path);
    move_aside(path, &aside, &io::Error::other(format!("it {why}")))?;
    warnings.push(format!(
        "the state file {} {why}; it was moved to {} and the state starts afresh (statistics, circuits and cooldowns)",
        path.display(),
        aside.display()
    ));
    Ok(SharedState::default())
}

/// `<path>.unreadable-<Unix ms>`, one that does not exist yet (a rename never replaces an
/// earlier file moved aside).
fn unreadable_name(path: &Path) -> PathBuf {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut n = 0u32;
    loop {
        let mut aside = path.as_os_str().to_os_string();
        aside.push(format!(".unreadable-{ms}"));
        if n > 0 {
            aside.push(format!("-{n}"));
        }
        let aside = PathBuf::from(aside);
        if fs::symlink_metadata(&aside).is_err() {
            return aside;
        }
        n += 1;
    }
}

/// Renames the state file at `path` to `aside`; the error says why it was moved (`why`) and why
/// it could not be.
fn move_aside(path: &Path, aside: &Path, why: &io::Error) -> io::Result<()> {
    fs::rename(path, aside).map_err(|r| {
        io::Error::new(
            r.kind(),
            format!(
                "the state file {}: {why}, and it cannot be moved aside to {}: {r}",
                path.display(),
                aside.display()
            ),
        )
    })
}

/// A state file that is not the keyed form throughout: the entries that parse are kept, each
/// other one is named in `warnings`. A file that is not a JSON object is `Err` with why (to be
/// moved aside).
fn read_damaged(bytes: &[u8], warnings: &mut Vec<String>) -> Result<SharedState, String> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) if v.is_object() => {
            let (s, dropped) = from_keyed(&v);
            warnings.extend(dropped);
            Ok(s)
        }
        Ok(_) => Err("is not a JSON object".to_string()),
        Err(e) => Err(format!("is not JSON ({e})")),
    }
}

/// The state file's text for `shared`: compact JSON and a line end. It is read and written at
/// every engine step of every process, and pretty printing made it three times as long (each
/// latency bin on a line of its own); `llxprt stats` is its readable form.
fn render(shared: &SharedState) -> String {
    let mut text = serde_json::to_string(&Keyed(shared)).expect("plain data");
    text.push('\n');
    text
}

/// Opens (creating it and its directory) and locks the state file's sibling lock file; one
/// that is not a regular file is refused by name, never waited on (SPEC §7.1).
fn lock_file(lock_path: &Path) -> io::Result<File> {
    let open = || fsutil::open_lock(lock_path);
    // The directory is created only when missing (not checked on every step).
    let f = match open() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(dir) = lock_path.parent() {
                fs::create_dir_all(dir)?;
            }
            open()?
        }
        other => other?,
    };
    f.lock()?;
    Ok(f)
}

/// The state file with its lock, and this process's requests in flight.
pub struct StateFile {
    path: PathBuf,
    lock_path: PathBuf,
    requests: BTreeMap<RequestId, RequestState>,
    /// Keys dropped because they did not parse (reported once by the caller).
    pub warnings: Vec<String>,
    /// The write of the last step, finishing on its own thread, and the request it was for.
    pending: Option<(RequestId, JoinHandle<io::Result<()>>)>,
    /// Requests whose last step's write failed after the step returned: their next step fails.
    failed: Vec<(RequestId, io::Error)>,
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
            pending: None,
            failed: Vec::new(),
        }
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> io::Result<File> {
        lock_file(&self.lock_path)
    }

    /// Reads the shared state, under the lock: a file is always whole (writes are atomic
    /// renames), and the lock also waits for a process that has decided steps it has not
    /// written yet (a `serve` writing by group commit, [`LeasedState`]), so what is read
    /// misses no step decided before the call.
    pub fn read(&mut self) -> io::Result<SharedState> {
        self.settle();
        // Every writer creates the lock file first: without one there is nothing to wait for
        // (and a read-only command creates nothing).
        let lock = match fsutil::open_existing_lock(&self.lock_path) {
            Ok(f) => {
                f.lock()?;
                Some(f)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let shared = read_shared(&self.path, &mut self.warnings);
        drop(lock);
        shared
    }

    /// Waits for the write of the last step, if it is still finishing; its failure is kept
    /// for its request.
    fn settle(&mut self) {
        if let Some((request, handle)) = self.pending.take() {
            let done = handle
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the state writer panicked")));
            if let Err(e) = done {
                self.failed.push((request, e));
            }
        }
    }

    /// Locks, re-reads, applies `f`, and stages the new state (written to a temp file next to
    /// the state file, not yet in place). Returns the lock, still held, with it.
    fn locked_change<R>(
        &mut self,
        f: impl FnOnce(&mut SharedState) -> R,
    ) -> io::Result<(File, Staged, R)> {
        self.settle();
        let lock = self.lock()?;
        let mut shared = read_shared(&self.path, &mut self.warnings)?;
        let r = f(&mut shared);
        let staged = fsutil::stage(&self.path, render(&shared).as_bytes())?;
        Ok((lock, staged, r))
    }

    /// Changes the shared state under the lock: lock → re-read → `f` → write → unlock.
    pub fn update<R>(&mut self, f: impl FnOnce(&mut SharedState) -> R) -> io::Result<R> {
        let (lock, staged, r) = self.locked_change(f)?;
        staged.commit(Durable::RenameOnly)?;
        drop(lock);
        Ok(r)
    }

    /// One engine step under the lock; an I/O failure is returned (the caller fails the
    /// request with it). A step that sends an attempt returns once the new state is staged;
    /// its write ends on a thread, before the lock is released (see the module doc).
    pub fn try_step(&mut self, event: &Event) -> io::Result<Step> {
        self.settle();
        let request = event.request();
        if let Some(i) = self.failed.iter().position(|(r, _)| *r == request) {
            let (_, e) = self.failed.swap_remove(i);
            return Err(e);
        }
        let mut requests = std::mem::take(&mut self.requests);
        let result = self.locked_change(|shared| {
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
        let (lock, staged, actions) = result?;
        // Only a send is always followed by another step of the same request (the attempt's
        // end, or its cancellation), where a failed write still fails the request.
        let sends = matches!(actions.next, Some(Order::Send { .. }));
        if sends {
            let handle = std::thread::Builder::new()
                .name("llxprt-state".into())
                .spawn(move || {
                    let done = staged.commit(Durable::RenameOnly);
                    drop(lock);
                    done
                })?;
            self.pending = Some((request, handle));
        } else {
            staged.commit(Durable::RenameOnly)?;
            drop(lock);
        }
        Ok(actions)
    }
}

impl Drop for StateFile {
    fn drop(&mut self) {
        // The last write finishes before the process goes on (or exits).
        self.settle();
    }
}

impl StateStore for StateFile {
    fn step(&mut self, event: &Event) -> Result<Step, StoreFailed> {
        self.try_step(event).map_err(|e| {
            StoreFailed(format!(
                "cannot update the state file {}: {e}",
                self.path.display()
            ))
        })
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

        // The file as written reads back whole, by the typed path; one damaged entry or an
        // unknown key sends the read down the path that keeps the rest and names them.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let text = render(&s);
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            v,
            "the same form as to_keyed"
        );
        std::fs::write(&path, &text).unwrap();
        let mut warnings = Vec::new();
        assert_eq!(read_shared(&path, &mut warnings).unwrap(), s);
        assert!(warnings.is_empty());
        let mut odd = damaged.clone();
        odd["stranger"] = Value::from(1);
        std::fs::write(&path, serde_json::to_vec(&odd).unwrap()).unwrap();
        let back = read_shared(&path, &mut warnings).unwrap();
        assert_eq!(warnings, ["lb/lb", "stranger"]);
        assert_eq!(back.buckets, s.buckets);
        assert_eq!(back.backends, s.backends);
    }

    /// SPEC §5.9 (format 2): a state file of format 1 keyed an API-key profile's `default`
    /// bucket by provider alone and fingerprinted backends in clear; those entries are dropped
    /// once on load, by both read paths, and everything else is kept.
    #[test]
    fn a_format_1_file_drops_its_old_default_buckets_and_backends_once() {
        let mut written = SharedState::default();
        written.lbs.insert(
            "lb".into(),
            LbState {
                cursor: 3,
                ..LbState::default()
            },
        );
        written.backends.insert("a".into(), BackendState::default());
        for (k, until) in [("openai/default", 99), ("openai/work", 98)] {
            written.buckets.insert(
                k.into(),
                BucketState {
                    cooldown_until: Some(until),
                    ..BucketState::default()
                },
            );
        }
        let mut old = to_keyed(&written);
        old["version"] = Value::from(1);
        old["backend/a"]["fingerprint"] = Value::from("openai|m|https://x/v1?key=sk-1");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        for text in [old.to_string(), {
            let mut damaged = old.clone();
            damaged["stranger"] = Value::from(1);
            damaged.to_string()
        }] {
            std::fs::write(&path, text).unwrap();
            let back = read_shared(&path, &mut Vec::new()).unwrap();
            assert_eq!(back.lbs["lb"].cursor, 3);
            assert!(back.backends.is_empty());
            assert_eq!(back.buckets.keys().collect::<Vec<_>>(), ["openai/work"]);
        }
        // Written back as format 2, it is kept whole from then on.
        let mut s = read_shared(&path, &mut Vec::new()).unwrap();
        s.buckets
            .insert("openai/default".into(), BucketState::default());
        std::fs::write(&path, render(&s)).unwrap();
        assert_eq!(read_shared(&path, &mut Vec::new()).unwrap(), s);
    }

    fn one_backend() -> std::sync::Arc<crate::engine::Plan> {
        use crate::engine::plan::{BackendPlan, BucketPlan, FailoverSettings};
        std::sync::Arc::new(crate::engine::Plan {
            lb: "solo".into(),
            policy: crate::engine::plan::Policy::Failover,
            backends: vec![BackendPlan {
                name: "solo".into(),
                provider: "openai".into(),
                model: "m".into(),
                fingerprint: "f".into(),
                buckets: vec![BucketPlan {
                    name: "default".into(),
                    key: "openai/default".into(),
                    oauth: false,
                    refreshable: false,
                }],
                context_limit: 0,
                accepts_prefill: false,
            }],
            settings: FailoverSettings::default(),
        })
    }

    fn arrive(request: RequestId) -> Event {
        Event::RequestArrived {
            now: 1,
            request,
            plan: one_backend(),
        }
    }

    /// SPEC §5.9: a step whose write ends on a thread still holds the lock until the new state
    /// is in place; another process's step waits for it and sees it.
    #[test]
    fn a_sending_step_is_in_the_file_for_the_next_locked_step() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = StateFile::new(dir.path());
        let actions = f.try_step(&arrive(7)).unwrap();
        assert!(matches!(actions.next, Some(Order::Send { .. })));
        // Another handle on the file is another process as far as the lock goes.
        let seen = StateFile::new(dir.path())
            .update(|s| s.lbs["solo"].stats.requests)
            .unwrap();
        assert_eq!(seen, 1);
        f.try_step(&Event::RequestCancelled { now: 2, request: 7 })
            .unwrap();
        drop(f);
        assert_eq!(
            StateFile::new(dir.path()).read().unwrap().lbs["solo"]
                .stats
                .requests,
            1
        );
        // Only the state file is left: no temp file behind.
        let names: Vec<_> = fs::read_dir(dir.path().join("state"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    /// A write that fails after its step returned fails that request's next step, and only
    /// that request's.
    #[test]
    fn a_write_failing_on_its_thread_fails_the_requests_next_step() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = StateFile::new(dir.path());
        f.try_step(&arrive(7)).unwrap();
        f.settle();
        f.pending = Some((7, std::thread::spawn(|| Err(io::Error::other("disk gone")))));
        assert!(f.try_step(&arrive(8)).is_ok());
        let e = f
            .try_step(&Event::RequestCancelled { now: 2, request: 7 })
            .unwrap_err();
        assert_eq!(e.to_string(), "disk gone");
        assert!(
            f.step(&Event::RequestCancelled { now: 2, request: 8 })
                .is_ok()
        );
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
        assert!(g.warnings[0].contains("is not JSON"), "{:?}", g.warnings);
        // Moved aside whole, never written over in place.
        assert!(!f.path().exists());
        assert_eq!(aside(dir.path()), [b"{not json".to_vec()]);
    }

    /// The names of the files moved aside in `root`'s state directory, their content.
    fn aside(root: &Path) -> Vec<Vec<u8>> {
        let mut out: Vec<(String, Vec<u8>)> = fs::read_dir(root.join("state"))
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name().to_string_lossy().contains(".unreadable-"))
            .map(|e| {
                let content = fs::read(e.path()).unwrap_or_default();
                (e.file_name().to_string_lossy().into_owned(), content)
            })
            .collect();
        out.sort();
        out.into_iter().map(|(_, c)| c).collect()
    }

    /// SPEC §7.1: a state file that is no regular file is moved aside, said in a warning, and
    /// the next step writes a fresh one; two moved aside keep both.
    #[test]
    fn a_state_file_that_is_no_regular_file_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = StateFile::new(dir.path());
        fs::create_dir_all(f.path().join("sub")).unwrap();
        f.update(|s| s.lbs.entry("x".into()).or_default().cursor += 1)
            .unwrap();
        assert_eq!(f.warnings.len(), 1, "{:?}", f.warnings);
        assert!(
            f.warnings[0].contains("is a directory, not a regular file; it was moved to"),
            "{:?}",
            f.warnings
        );
        assert!(f.path().is_file());
        fs::write(f.path(), b"[]").unwrap();
        let mut g = StateFile::new(dir.path());
        assert!(g.read().unwrap().lbs.is_empty());
        assert!(
            g.warnings[0].contains("is not a JSON object"),
            "{:?}",
            g.warnings
        );
        assert_eq!(aside(dir.path()).len(), 2);
    }
}
