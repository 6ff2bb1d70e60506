//! The engine state on a Redis (or Valkey) server, for fleets (SPEC §5.9.1): the same keys as
//! the state file (`lb/<name>`, `backend/<profile>`, `bucket/<account>`), each its own server
//! key `<prefix><key>` holding the file's JSON entry with `"v": 1`, no TTL.
//!
//! Owns: the connection, one optimistic transaction per engine step, and the degraded mode.
//! Must not: decide anything (the engine does), or make a request wait on an unreachable server
//! for longer than one connect attempt per process.
//!
//! One step is one transaction: `WATCH` and `MGET` of exactly the keys the request's plan names
//! (its `lb/`, its backends' `backend/`, its buckets' `bucket/`), pipelined in one round trip;
//! the engine decides on those; `MULTI`, a `SET` per key whose value changed (a `DEL` for one
//! that went away), `EXEC`, pipelined in a second. When another client wrote one of the keys
//! in between, `EXEC` does nothing and the step runs again on what is there now, from the
//! request's state as it was before the step; so no update is lost, and two instances on
//! different profiles never touch each other's keys. A step that changes nothing writes
//! nothing. Requests in flight stay in this process's memory, as with the file.
//!
//! Degraded mode: the first connect waits at most [`CONNECT_TIMEOUT`] (once per process); every
//! command after it at most [`IO_TIMEOUT`]. When the server cannot be reached the engine runs on
//! an in-process state seeded from the last state this process read, says so once, and a
//! thread tries to connect again every [`RETRY_EVERY`]. Once it answers, steps run on the
//! server's state again, and the statistics this process counted meanwhile are added to it in
//! one transaction; nothing else of the degraded time (cursor, circuits, cooldowns, TPM) is
//! written back.

mod merge;
mod url;

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use redis::{Client, Connection, RedisResult};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use self::url::{DEFAULT_PREFIX, StateUrl};
use crate::driver::{StateStore, StoreFailed};
use crate::engine::state::{RequestState, SharedState};
use crate::engine::{EngineState, Event, Plan, RequestId, Step};

/// The longest a connect attempt waits (SPEC §5.9.1: once per process, then in the background).
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// The longest one command waits for the server's answer before the server counts as gone.
pub const IO_TIMEOUT: Duration = Duration::from_millis(500);

/// How often a degraded process tries to connect again.
pub const RETRY_EVERY: Duration = Duration::from_secs(5);

/// The format version of each value (`"v"`).
pub const VALUE_VERSION: u64 = 1;

/// Receives the store's messages as they happen (one line each, no secret).
pub type Report = Box<dyn Fn(&str) + Send + Sync>;

/// The engine state on a state server, shared by the threads of this process.
pub struct RedisState {
    url: StateUrl,
    client: Client,
    inner: Mutex<Inner>,
    retry: Arc<Retry>,
    report: Option<Report>,
}

/// A connection made by the background thread, waiting to be taken up by the next step.
struct Retry {
    made: Mutex<Option<Connection>>,
    running: AtomicBool,
}

struct Inner {
    conn: Option<Connection>,
    /// The one foreground connect attempt of this process was made.
    tried: bool,
    requests: BTreeMap<RequestId, RequestState>,
    /// The last state read from (or written to) the server: the seed of degraded mode.
    seen: SharedState,
    degraded: Option<Degraded>,
    /// Degraded mode was announced (once per process).
    said: bool,
    /// Messages for the caller when no `report` was given.
    warnings: Vec<String>,
}

/// The in-process state of degraded mode, and what it started from (so that what was counted
/// meanwhile can be told apart).
struct Degraded {
    local: SharedState,
    base: SharedState,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RedisState {
    /// The store at `url`; nothing is connected until the first step or read. `report`
    /// receives the degraded-mode messages as they happen (serve's log); without it they are
    /// kept for [`RedisState::take_warnings`].
    pub fn open(url: StateUrl, report: Option<Report>) -> Result<RedisState, String> {
        let client = Client::open(url.connect()).map_err(|e| {
            format!(
                "the state URL {} cannot be used: {}",
                url.shown,
                url.scrub(&e.to_string())
            )
        })?;
        Ok(RedisState {
            url,
            client,
            inner: Mutex::new(Inner {
                conn: None,
                tried: false,
                requests: BTreeMap::new(),
                seen: SharedState::default(),
                degraded: None,
                said: false,
                warnings: Vec::new(),
            }),
            retry: Arc::new(Retry {
                made: Mutex::new(None),
                running: AtomicBool::new(false),
            }),
            report,
        })
    }

    /// The URL as it may be shown (password redacted).
    pub fn shown(&self) -> &str {
        &self.url.shown
    }

    /// Messages kept since the last call (degraded mode, entries that did not parse).
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut lock(&self.inner).warnings)
    }

    /// Why the state is kept in this process for now, if it is (for `/health`).
    pub fn degraded(&self) -> Option<String> {
        let inner = lock(&self.inner);
        inner.degraded.as_ref().map(|_| {
            format!(
                "the state server {} does not answer; this process runs on its own state and tries again every {} s",
                self.url.shown,
                RETRY_EVERY.as_secs()
            )
        })
    }

    /// Connects (once, at most [`CONNECT_TIMEOUT`]) and sends `PING`: whether the server
    /// answers, for `diagnostics`; the error names no secret.
    pub fn ping(&self) -> Result<(), String> {
        let mut conn = connect(&self.client).map_err(|e| self.url.scrub(&e.to_string()))?;
        redis::cmd("PING")
            .query::<String>(&mut conn)
            .map(drop)
            .map_err(|e| self.url.scrub(&e.to_string()))
    }

    fn say(&self, inner: &mut Inner, message: String) {
        match &self.report {
            Some(r) => r(&message),
            None => inner.warnings.push(message),
        }
    }

    /// Makes sure there is a connection or degraded mode; takes up a connection the retry
    /// thread made (adding what was counted meanwhile).
    fn connection(&self, inner: &mut Inner) {
        if inner.degraded.is_some() {
            let made = lock(&self.retry.made).take();
            if let Some(conn) = made {
                self.resume(inner, conn);
            }
            return;
        }
        if inner.conn.is_none() {
            if inner.tried {
                // Lost after a degraded spell ended: start over in degraded mode.
                self.go_degraded(inner, "the connection was lost");
                return;
            }
            inner.tried = true;
            match connect(&self.client) {
                Ok(c) => inner.conn = Some(c),
                Err(e) => self.go_degraded(inner, &e.to_string()),
            }
        }
    }

    fn go_degraded(&self, inner: &mut Inner, why: &str) {
        inner.conn = None;
        if inner.degraded.is_none() {
            inner.degraded = Some(Degraded {
                local: inner.seen.clone(),
                base: inner.seen.clone(),
            });
            if !inner.said {
                inner.said = true;
                let message = format!(
                    "the state server {} does not answer ({}); requests go on with this process's own state, and it is tried again every {} s",
                    self.url.shown,
                    self.url.scrub(why),
                    RETRY_EVERY.as_secs()
                );
                self.say(inner, message);
            }
        }
        self.start_retry();
    }

    /// Adds what was counted while degraded to the server's state; on success steps run on
    /// the server again.
    fn resume(&self, inner: &mut Inner, mut conn: Connection) {
        let Some(d) = inner.degraded.as_ref() else {
            inner.conn = Some(conn);
            return;
        };
        let counted = merge::counted_since(&d.local, &d.base);
        let keys = keys_of(&counted);
        let added = transact(&mut conn, &self.url.prefix, &keys, &mut Vec::new(), |s| {
            for (k, d) in &counted.lbs {
                merge::add_lb(
                    &mut crate::engine::state::slot(&mut s.lbs, k).stats,
                    &d.stats,
                );
            }
            for (k, d) in &counted.backends {
                merge::add_backend(
                    &mut crate::engine::state::slot(&mut s.backends, k).stats,
                    &d.stats,
                );
            }
            for (k, d) in &counted.buckets {
                merge::add_bucket(
                    &mut crate::engine::state::slot(&mut s.buckets, k).stats,
                    &d.stats,
                );
            }
        });
        match added {
            Ok(((), _)) => {
                inner.degraded = None;
                inner.conn = Some(conn);
                let message = format!(
                    "the state server {} answers again; steps use its state, with this process's statistics of the meantime added",
                    self.url.shown
                );
                self.say(inner, message);
            }
            Err(_) => self.start_retry(),
        }
    }

    fn start_retry(&self) {
        if self.retry.running.swap(true, Ordering::SeqCst) {
            return;
        }
        let weak: Weak<Retry> = Arc::downgrade(&self.retry);
        let client = self.client.clone();
        let spawned = std::thread::Builder::new()
            .name("llxprt-state-retry".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(RETRY_EVERY);
                    let Some(retry) = weak.upgrade() else { return };
                    if let Ok(conn) = connect(&client) {
                        *lock(&retry.made) = Some(conn);
                        retry.running.store(false, Ordering::SeqCst);
                        return;
                    }
                }
            });
        if spawned.is_err() {
            self.retry.running.store(false, Ordering::SeqCst);
        }
    }

    /// One engine step (SPEC §5.9.1): one transaction on the server, or in this process's own
    /// state while the server does not answer.
    pub fn step(&self, event: &Event) -> Step {
        let mut guard = lock(&self.inner);
        let inner = &mut *guard;
        self.connection(inner);
        let id = event.request();
        let entry = inner.requests.remove(&id);
        let plan: Option<Arc<Plan>> = match event {
            Event::RequestArrived { plan, .. } => Some(plan.clone()),
            _ => entry.as_ref().map(|r| r.plan.clone()),
        };
        let keys = plan.as_deref().map(plan_keys).unwrap_or_default();
        let run = |shared: &mut SharedState, out: &mut Option<RequestState>| {
            let mut st = EngineState {
                shared: std::mem::take(shared),
                requests: entry.clone().map(|r| (id, r)).into_iter().collect(),
            };
            let step = st.step(event);
            *shared = st.shared;
            *out = st.requests.remove(&id);
            step
        };
        let mut after = None;
        if let Some(conn) = inner.conn.as_mut() {
            let tried = transact(conn, &self.url.prefix, &keys, &mut inner.warnings, |s| {
                run(s, &mut after)
            });
            match tried {
                Ok((step, shared)) => {
                    remember(&mut inner.seen, &shared, &keys);
                    if let Some(r) = after {
                        inner.requests.insert(id, r);
                    }
                    return step;
                }
                Err(e) => self.go_degraded(inner, &e.to_string()),
            }
        }
        let d = inner
            .degraded
            .as_mut()
            .expect("without a connection the store is degraded (connection() made sure)");
        let step = run(&mut d.local, &mut after);
        if let Some(r) = after {
            inner.requests.insert(id, r);
        }
        step
    }

    /// Every key under the prefix, as shared state (the server's, or the in-process one while
    /// degraded).
    pub fn snapshot(&self) -> SharedState {
        let mut guard = lock(&self.inner);
        let inner = &mut *guard;
        self.connection(inner);
        if let Some(conn) = inner.conn.as_mut() {
            match read_all(conn, &self.url.prefix, &mut inner.warnings) {
                Ok(s) => {
                    inner.seen = s.clone();
                    return s;
                }
                Err(e) => self.go_degraded(inner, &e.to_string()),
            }
        }
        inner
            .degraded
            .as_ref()
            .map(|d| d.local.clone())
            .unwrap_or_default()
    }

    /// Reads every key under the prefix; an error when the server does not answer.
    pub fn read(&self) -> io::Result<SharedState> {
        let mut conn = connect(&self.client).map_err(|e| self.io_error(&e))?;
        let mut inner = lock(&self.inner);
        read_all(&mut conn, &self.url.prefix, &mut inner.warnings).map_err(|e| self.io_error(&e))
    }

    /// Changes every key under the prefix in one transaction (`stats --reset`, a deleted
    /// profile's keys); an error when the server does not answer, for nothing can be changed
    /// then.
    pub fn update<R>(&self, mut f: impl FnMut(&mut SharedState) -> R) -> io::Result<R> {
        let mut conn = connect(&self.client).map_err(|e| self.io_error(&e))?;
        let mut inner = lock(&self.inner);
        let keys = scan(&mut conn, &self.url.prefix).map_err(|e| self.io_error(&e))?;
        let keys: Vec<String> = keys
            .into_iter()
            .filter_map(|k| k.strip_prefix(&self.url.prefix).map(str::to_string))
            .collect();
        transact(
            &mut conn,
            &self.url.prefix,
            &keys,
            &mut inner.warnings,
            |s| f(s),
        )
        .map(|(r, _)| r)
        .map_err(|e| self.io_error(&e))
    }

    fn io_error(&self, e: &redis::RedisError) -> io::Error {
        io::Error::other(format!(
            "the state server {} does not answer: {}",
            self.url.shown,
            self.url.scrub(&e.to_string())
        ))
    }
}

impl StateStore for &RedisState {
    fn step(&mut self, event: &Event) -> Result<Step, StoreFailed> {
        Ok(RedisState::step(self, event))
    }
}

impl StateStore for RedisState {
    fn step(&mut self, event: &Event) -> Result<Step, StoreFailed> {
        Ok(RedisState::step(self, event))
    }
}

fn connect(client: &Client) -> RedisResult<Connection> {
    let conn = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(conn)
}

/// The state keys a plan touches: its load balancer, its backends, their accounts.
pub fn plan_keys(plan: &Plan) -> Vec<String> {
    let mut keys = BTreeSet::new();
    keys.insert(format!("lb/{}", plan.lb));
    for b in &plan.backends {
        keys.insert(format!("backend/{}", b.name));
        for k in &b.buckets {
            keys.insert(format!("bucket/{}", k.key));
        }
    }
    keys.into_iter().collect()
}

/// Every key that `s` holds.
fn keys_of(s: &SharedState) -> Vec<String> {
    s.lbs
        .keys()
        .map(|k| format!("lb/{k}"))
        .chain(s.backends.keys().map(|k| format!("backend/{k}")))
        .chain(s.buckets.keys().map(|k| format!("bucket/{k}")))
        .collect()
}

/// The value of `key` in `s`, as stored: the entry's JSON with `"v"` first.
fn encoded(s: &SharedState, key: &str) -> Option<String> {
    fn with_version<T: Serialize>(v: &T) -> String {
        let mut m = serde_json::Map::new();
        m.insert("v".into(), Value::from(VALUE_VERSION));
        if let Value::Object(entry) = serde_json::to_value(v).expect("plain data") {
            m.extend(entry);
        }
        Value::Object(m).to_string()
    }
    if let Some(k) = key.strip_prefix("lb/") {
        s.lbs.get(k).map(with_version)
    } else if let Some(k) = key.strip_prefix("backend/") {
        s.backends.get(k).map(with_version)
    } else if let Some(k) = key.strip_prefix("bucket/") {
        s.buckets.get(k).map(with_version)
    } else {
        None
    }
}

/// Puts the stored value of `key` into `s`; false when it does not parse (or is of a newer
/// format, or not a state key).
fn decode_into(s: &mut SharedState, key: &str, text: &str) -> bool {
    fn parse<T: DeserializeOwned>(text: &str) -> Option<T> {
        let v: Value = serde_json::from_str(text).ok()?;
        if v.get("v").and_then(Value::as_u64) != Some(VALUE_VERSION) {
            return None;
        }
        T::deserialize(v).ok()
    }
    if let Some(k) = key.strip_prefix("lb/") {
        parse(text).map(|x| s.lbs.insert(k.into(), x)).is_some()
    } else if let Some(k) = key.strip_prefix("backend/") {
        parse(text)
            .map(|x| s.backends.insert(k.into(), x))
            .is_some()
    } else if let Some(k) = key.strip_prefix("bucket/") {
        parse(text).map(|x| s.buckets.insert(k.into(), x)).is_some()
    } else {
        false
    }
}

/// Copies `keys` from `from` into `to` (removing those `from` lacks).
fn remember(to: &mut SharedState, from: &SharedState, keys: &[String]) {
    for key in keys {
        if let Some(k) = key.strip_prefix("lb/") {
            match from.lbs.get(k) {
                Some(v) => to.lbs.insert(k.into(), v.clone()),
                None => to.lbs.remove(k),
            };
        } else if let Some(k) = key.strip_prefix("backend/") {
            match from.backends.get(k) {
                Some(v) => to.backends.insert(k.into(), v.clone()),
                None => to.backends.remove(k),
            };
        } else if let Some(k) = key.strip_prefix("bucket/") {
            match from.buckets.get(k) {
                Some(v) => to.buckets.insert(k.into(), v.clone()),
                None => to.buckets.remove(k),
            };
        }
    }
}

/// One optimistic transaction over `keys` (without the prefix): `WATCH` + `MGET`, `f` on what
/// was read, `MULTI` + the changed keys + `EXEC`; run again from the start when another client
/// wrote a watched key meanwhile. Returns `f`'s result and the state it left. Entries that do
/// not parse are named in `warnings` and start afresh (as the state file's do).
pub(crate) fn transact<R>(
    conn: &mut Connection,
    prefix: &str,
    keys: &[String],
    warnings: &mut Vec<String>,
    mut f: impl FnMut(&mut SharedState) -> R,
) -> RedisResult<(R, SharedState)> {
    let full: Vec<String> = keys.iter().map(|k| format!("{prefix}{k}")).collect();
    loop {
        let mut shared = SharedState::default();
        let before: Vec<Option<String>> = if full.is_empty() {
            Vec::new()
        } else {
            let (values,): (Vec<Option<String>>,) = redis::pipe()
                .cmd("WATCH")
                .arg(&full)
                .ignore()
                .cmd("MGET")
                .arg(&full)
                .query(conn)?;
            values
        };
        let mut read = BTreeMap::new();
        for (key, value) in keys.iter().zip(&before) {
            if let Some(text) = value {
                read.insert(key.as_str(), text.as_str());
                if !decode_into(&mut shared, key, text) {
                    dropped(warnings, prefix, key);
                }
            }
        }
        let r = f(&mut shared);
        let mut all: BTreeSet<String> = keys.iter().cloned().collect();
        all.extend(keys_of(&shared));
        let mut p = redis::pipe();
        p.atomic();
        let mut writes = 0;
        for key in &all {
            let now = encoded(&shared, key);
            let was = read.get(key.as_str()).copied();
            match (now, was) {
                (Some(text), was) if was != Some(text.as_str()) => {
                    p.set(format!("{prefix}{key}"), text).ignore();
                    writes += 1;
                }
                (None, Some(_)) => {
                    p.del(format!("{prefix}{key}")).ignore();
                    writes += 1;
                }
                _ => {}
            }
        }
        if writes == 0 {
            if !full.is_empty() {
                redis::cmd("UNWATCH").exec(conn)?;
            }
            return Ok((r, shared));
        }
        let done: Option<()> = p.query(conn)?;
        if done.is_some() {
            return Ok((r, shared));
        }
        // Another client wrote a watched key: decide again on what is there now.
    }
}

/// Notes once that the entry `key` did not parse (it starts afresh, as in the state file).
fn dropped(warnings: &mut Vec<String>, prefix: &str, key: &str) {
    let message = format!("the state server's entry {prefix}{key} did not parse and starts afresh");
    if !warnings.contains(&message) {
        warnings.push(message);
    }
}

/// Every key under `prefix` (with the prefix).
fn scan(conn: &mut Connection, prefix: &str) -> RedisResult<Vec<String>> {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('*');
    let mut cursor: u64 = 0;
    let mut keys = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query(conn)?;
        keys.extend(batch);
        if next == 0 {
            keys.sort();
            keys.dedup();
            return Ok(keys);
        }
        cursor = next;
    }
}

/// Every key under `prefix`, read as shared state.
fn read_all(
    conn: &mut Connection,
    prefix: &str,
    warnings: &mut Vec<String>,
) -> RedisResult<SharedState> {
    let keys = scan(conn, prefix)?;
    let mut s = SharedState::default();
    for chunk in keys.chunks(512) {
        let values: Vec<Option<String>> = redis::cmd("MGET").arg(chunk).query(conn)?;
        for (full, value) in chunk.iter().zip(values) {
            let (Some(key), Some(text)) = (full.strip_prefix(prefix), value) else {
                continue;
            };
            if !decode_into(&mut s, key, &text) {
                dropped(warnings, prefix, key);
            }
        }
    }
    Ok(s)
}
