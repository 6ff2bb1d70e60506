//! `serve --record TRACE` (SPEC §9.2): concurrent requests recorded in start order, the file
//! rewritten atomically after each request.
//!
//! Owns: ordering. Each request records into its own [`Recorder`] (the same wrapper `chat`
//! uses, [`crate::record::RecordingExec`]); when it ends, its part joins the others and the
//! whole trace is rebuilt in start order — every target's script lists the attempts of
//! request 1, then of request 2, … — so `simulate` replays them sequentially as SPEC §9.2
//! says, even when a later request finished first. Must not: change what was observed.
//!
//! Decisions where SPEC is silent: the trace's `profile` and session settings are those of the
//! last request started (as `chat` records a session that switched profiles under the last
//! one); a request still running when another ends is written when it ends.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use crate::fsutil::write_atomic;
use crate::record::Recorder;
use crate::simulate::trace::{RequestSpec, Requests, Trace};

/// One request's part of the trace.
struct Part {
    at_ms: u64,
    trace: Trace,
}

#[derive(Default)]
struct Parts {
    origin_ms: Option<u64>,
    /// The arrival time of the last request to start.
    last_ms: u64,
    next: u64,
    /// Started requests, by start number; `None` while still running.
    by_start: BTreeMap<u64, Option<Part>>,
}

/// The trace of a whole `serve` run.
pub struct Recording {
    path: PathBuf,
    parts: Mutex<Parts>,
}

/// A started request's place in the recording.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    seq: u64,
    at_ms: u64,
}

impl Recording {
    /// A recording written to `path`.
    pub fn new(path: &Path) -> Recording {
        Recording {
            path: path.to_path_buf(),
            parts: Mutex::new(Parts::default()),
        }
    }

    /// Notes that a request starts at `now_ms` (its place in the start order) and gives it
    /// a recorder of its own. Arrival times follow the start order (SPEC §9.2: a replay runs
    /// the requests in that order): a request that read the clock just before another but
    /// took its place just after it is recorded at the other's time.
    pub fn start(&self, now_ms: u64) -> (Ticket, Recorder) {
        let mut p = self.parts.lock().unwrap_or_else(PoisonError::into_inner);
        let seq = p.next;
        p.next += 1;
        let at_ms = now_ms.max(p.last_ms);
        p.last_ms = at_ms;
        p.origin_ms.get_or_insert(at_ms);
        p.by_start.insert(seq, None);
        (Ticket { seq, at_ms }, Recorder::new(&self.path))
    }

    /// Adds a finished request's observations and rewrites the file (atomically).
    pub fn finish(&self, ticket: Ticket, recorder: &Recorder) -> std::io::Result<()> {
        let mut p = self.parts.lock().unwrap_or_else(PoisonError::into_inner);
        p.by_start.insert(
            ticket.seq,
            Some(Part {
                at_ms: ticket.at_ms,
                trace: recorder.trace().clone(),
            }),
        );
        let trace = merge(p.origin_ms.unwrap_or(ticket.at_ms), p.by_start.values());
        let mut text = serde_json::to_string_pretty(&trace).expect("traces are plain data");
        text.push('\n');
        // Written under the lock, so two requests ending together never interleave writes.
        write_atomic(&self.path, text.as_bytes())
    }
}

/// The finished parts, in start order, as one trace.
fn merge<'a>(origin_ms: u64, parts: impl Iterator<Item = &'a Option<Part>>) -> Trace {
    let mut out = Trace {
        schema: None,
        version: 1,
        profile: String::new(),
        profiles: BTreeMap::new(),
        settings: None,
        requests: Requests::List(Vec::new()),
        outcomes: BTreeMap::new(),
    };
    let mut requests = Vec::new();
    for part in parts.flatten() {
        let t = &part.trace;
        out.profile.clone_from(&t.profile);
        out.settings.clone_from(&t.settings);
        out.profiles
            .extend(t.profiles.iter().map(|(k, v)| (k.clone(), v.clone())));
        for (backend, targets) in &t.outcomes {
            let into = out.outcomes.entry(backend.clone()).or_default();
            for (target, entries) in targets {
                into.entry(target.clone())
                    .or_default()
                    .extend(entries.iter().cloned());
            }
        }
        requests.push(RequestSpec {
            at_ms: part.at_ms.saturating_sub(origin_ms),
            tokens: None,
        });
    }
    out.requests = Requests::List(requests);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::trace::Entry;

    fn part(at_ms: u64, status: u16) -> Part {
        let mut t = Recorder::new(Path::new("unused")).trace().clone();
        t.profile = "lb".into();
        t.outcomes
            .entry("a".into())
            .or_default()
            .entry("default".into())
            .or_default()
            .push(Entry {
                status: Some(status),
                times: Some(1),
                ..Entry::default()
            });
        Part { at_ms, trace: t }
    }

    #[test]
    fn parts_merge_in_start_order_and_running_ones_wait() {
        let parts = [Some(part(1000, 429)), None, Some(part(1500, 200))];
        let t = merge(1000, parts.iter());
        let statuses: Vec<Option<u16>> = t.outcomes["a"]["default"]
            .iter()
            .map(|e| e.status)
            .collect();
        assert_eq!(statuses, [Some(429), Some(200)]);
        let Requests::List(reqs) = &t.requests else {
            panic!("a list")
        };
        let at: Vec<u64> = reqs.iter().map(|r| r.at_ms).collect();
        assert_eq!(at, [0, 500]);
        assert_eq!(t.profile, "lb");
    }

    /// A request that read the clock before another but started after it is recorded at the
    /// other's time: arrival times never go back in start order.
    #[test]
    fn arrival_times_follow_the_start_order() {
        let dir = tempfile::tempdir().unwrap();
        let rec = Recording::new(&dir.path().join("t.json"));
        let at: Vec<u64> = [1000, 1035, 1032, 1040]
            .into_iter()
            .map(|now| rec.start(now).0.at_ms)
            .collect();
        assert_eq!(at, [1000, 1035, 1035, 1040]);
    }
}
