//! `llxprt simulate` (SPEC §9): replays a trace through the engine in virtual time with a
//! scripted executor, the same loop ([`crate::driver::drive`]) the HTTP shell uses.
//!
//! Owns: the script executor, virtual time and the summary. Must not: touch the network, the
//! credentials or the state file (its engine state starts empty and lives in memory).

pub mod render;
pub mod script;
pub mod trace;

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::Arc;

use serde::Serialize;

use crate::driver::plan::build_plan;
use crate::driver::{self, Ending};
use crate::engine::plan::MidStream;
use crate::engine::{EngineState, Note, Plan, Step};
use crate::profile::model::{self, ModelProfile, Profile};
use crate::profile::names::same_profile_name;
use crate::profile::resolve::ResolvedBackend;
use crate::profile::settings::Settings;
use crate::profile::store::Store;
use render::Renderer;
use script::Script;
use trace::Trace;

/// One attempt in the summary (SPEC §9.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttemptSummary {
    /// Backend profile.
    pub backend: String,
    /// Bucket.
    pub bucket: String,
    /// Class (SPEC §4).
    pub class: &'static str,
    /// HTTP status for the classes that come from one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

/// One request in the summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestSummary {
    /// 1-based request number.
    pub id: u64,
    /// `ok` or `error`.
    pub result: &'static str,
    /// The backend that served it (null on error).
    pub backend: Option<String>,
    /// The bucket that served it (null on error).
    pub bucket: Option<String>,
    /// When it started (ms).
    pub start_ms: u64,
    /// When it ended (ms).
    pub end_ms: u64,
    /// Every attempt, in order (skipped backends and refreshes are not attempts).
    pub attempts: Vec<AttemptSummary>,
    /// The error message, when `result` is `error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One backend in the summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendSummary {
    /// Requests that attempted it.
    pub requests: u64,
    /// Requests it served.
    pub successes: u64,
    /// `closed`, `open` or `half_open` at the end of the run.
    pub circuit: &'static str,
}

/// The `{"summary": …}` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Every request, in order.
    pub requests: Vec<RequestSummary>,
    /// Every backend of the profile.
    pub backends: BTreeMap<String, BackendSummary>,
}

/// Builds the plan for running profile `name` of a trace: its `profiles` first, then the
/// profiles directory (when a store is given). `mid_stream` defaults to `restart` (SPEC §9.1).
pub fn plan_for(
    trace: &Trace,
    name: &str,
    session: &Settings,
    store: Option<&Store>,
) -> Result<(Arc<Plan>, Vec<ResolvedBackend>), String> {
    let inline = |n: &str| -> Option<Result<Profile, String>> {
        let (_, raw) = trace
            .profiles
            .iter()
            .find(|(k, _)| same_profile_name(k, n))?;
        Some(
            model::analyse_for(raw, model::Purpose::Simulate)
                .profile
                .ok_or_else(|| format!("profile \"{n}\" in the trace does not validate")),
        )
    };
    let load = |n: &str| -> Result<Profile, String> {
        match (inline(n), store) {
            (Some(r), _) => r,
            (None, Some(store)) => store.load_for_simulation(n).map_err(|e| e.to_string()),
            (None, None) => Err(format!("profile \"{n}\" is not in the trace")),
        }
    };
    let profile = load(name)?;
    let lookup = |n: &str| -> Result<ModelProfile, String> {
        match load(n)? {
            Profile::Model(m) => Ok(m),
            Profile::LoadBalancer(_) => Err(format!("backend \"{n}\" is a load balancer")),
        }
    };
    // SPEC §9.1: every OAuth bucket has a refresh token in a simulation.
    let (plan, backends) = build_plan(
        name,
        &profile,
        &lookup,
        session,
        MidStream::Restart,
        &|_, _| true,
    )?;
    Ok((Arc::new(plan), backends))
}

/// What a replay leaves once every request has ended: counts and the backends' summary, no
/// per-request data (SPEC §7.1: simulate's memory does not grow with the trace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Totals {
    /// Requests replayed.
    pub requests: u64,
    /// Requests that ended `ok`.
    pub ok: u64,
    /// Every backend of the profile.
    pub backends: BTreeMap<String, BackendSummary>,
}

/// Replays `trace` on `plan`, writing the timeline (human or JSON Lines) to `out` as it goes
/// and the summary last; returns the summary. It keeps every request's summary in memory:
/// for tests and benchmarks that look at them. The command uses [`stream`], which writes the
/// same bytes in memory that does not grow with the trace.
pub fn run(
    trace: &Trace,
    plan: &Arc<Plan>,
    backends: &[ResolvedBackend],
    out: &mut dyn Write,
    json: bool,
) -> io::Result<Summary> {
    let mut requests = Vec::new();
    let mut renderer = Renderer::new(out, json);
    let totals = replay(trace, plan, backends, Some(&mut renderer), &mut |r| {
        requests.push(r);
        Ok(())
    })?;
    let summary = Summary {
        requests,
        backends: totals.backends,
    };
    renderer.summary(&summary)?;
    Ok(summary)
}

/// Replays `trace` on `plan` like [`run`], writing the same bytes to `out`, without keeping
/// the requests' summaries (SPEC §7.1). The JSON summary line lists every request after the
/// whole timeline, so with `--json` the trace is replayed a second time, silently, and each
/// request's entry is written as it ends: the engine is deterministic (SPEC §9), so the second
/// replay is the first one again.
pub fn stream(
    trace: &Trace,
    plan: &Arc<Plan>,
    backends: &[ResolvedBackend],
    out: &mut dyn Write,
    json: bool,
) -> io::Result<Totals> {
    let mut renderer = Renderer::new(out, json);
    let totals = replay(trace, plan, backends, Some(&mut renderer), &mut |_| Ok(()))?;
    if !json {
        renderer.summary_table(totals.requests, totals.ok, &totals.backends)?;
        return Ok(totals);
    }
    out.write_all(b"{\"summary\":{\"requests\":[")?;
    let mut first = true;
    let mut line = Vec::new();
    let again = replay(trace, plan, backends, None, &mut |r| {
        line.clear();
        if !std::mem::take(&mut first) {
            line.push(b',');
        }
        serde_json::to_writer(&mut line, &r).expect("a request's summary is plain data");
        out.write_all(&line)
    })?;
    assert_eq!(
        again, totals,
        "a replay is deterministic (SPEC §9): the engine is pure and the script is data"
    );
    out.write_all(b"],\"backends\":")?;
    serde_json::to_writer(&mut *out, &totals.backends).map_err(io::Error::from)?;
    out.write_all(b"}}\n")?;
    out.flush()?;
    Ok(totals)
}

/// Replays the trace once: the timeline goes to `renderer` (none: silently), and each
/// request's summary to `each` when it ends.
fn replay(
    trace: &Trace,
    plan: &Arc<Plan>,
    backends: &[ResolvedBackend],
    mut renderer: Option<&mut Renderer<'_>>,
    each: &mut dyn FnMut(RequestSummary) -> io::Result<()>,
) -> io::Result<Totals> {
    let mut state = EngineState::default();
    let mut script = Script::new(trace, backends);
    let (mut count, mut ok) = (0u64, 0u64);
    let mut clock = 0u64;
    for (n, (at_ms, tokens)) in trace.request_iter().enumerate() {
        let id = n as u64 + 1;
        let start = at_ms.max(clock);
        script.begin_request(tokens);
        if let Some(r) = renderer.as_deref_mut() {
            r.start(start, id, plan)?;
        }
        let mut exec = Exec {
            script: &mut script,
            renderer: renderer.as_deref_mut(),
            attempts: Vec::new(),
        };
        let ending = driver::drive(&mut state, &mut exec, id, plan, start);
        let attempts = std::mem::take(&mut exec.attempts);
        if let Some(r) = renderer.as_deref_mut() {
            r.take_error()?;
        }
        let (backend, bucket, error, end_ms) = match ending {
            Ending::Delivered {
                backend,
                bucket,
                at,
                ..
            } => (Some(backend), Some(bucket), None, at),
            Ending::Failed { error, at, .. } => (None, None, Some(error), at),
            Ending::Cancelled { at } => (None, None, Some("cancelled".into()), at),
        };
        count += 1;
        ok += u64::from(error.is_none());
        clock = end_ms;
        each(RequestSummary {
            id,
            result: if error.is_none() { "ok" } else { "error" },
            backend,
            bucket,
            start_ms: start,
            end_ms,
            attempts,
            error,
        })?;
    }
    let timeout = plan.settings.breaker_timeout_ms;
    let backends = plan
        .backends
        .iter()
        .map(|b| {
            let st = state.shared.backends.get(&b.name);
            let circuit = match (st, plan.settings.breaker_threshold) {
                (Some(st), Some(_)) => st.circuit.view(clock, timeout),
                _ => "closed",
            };
            let summary = BackendSummary {
                requests: st.map_or(0, |s| s.stats.requests),
                successes: st.map_or(0, |s| s.stats.successes),
                circuit,
            };
            (b.name.clone(), summary)
        })
        .collect();
    Ok(Totals {
        requests: count,
        ok,
        backends,
    })
}

struct Exec<'a, 'b, 'c> {
    script: &'a mut Script<'c>,
    renderer: Option<&'a mut Renderer<'b>>,
    attempts: Vec<AttemptSummary>,
}

impl driver::Executor for Exec<'_, '_, '_> {
    fn send(
        &mut self,
        now: u64,
        _request: u64,
        plan: &Plan,
        backend: usize,
        bucket: usize,
        _prefill: bool,
    ) -> (u64, driver::Attempted) {
        let (end, outcome) = self.script.attempt(
            now,
            plan.backend_name(backend),
            plan.bucket_name(backend, bucket),
        );
        (end, driver::Attempted::Sent(outcome))
    }
    fn refresh(
        &mut self,
        now: u64,
        _request: u64,
        plan: &Plan,
        backend: usize,
        bucket: usize,
    ) -> (u64, bool) {
        self.script.refresh(
            now,
            plan.backend_name(backend),
            plan.bucket_name(backend, bucket),
        )
    }
    fn wait_until(&mut self, _now: u64, until: u64) -> Option<u64> {
        Some(until)
    }
    fn observe(&mut self, now: u64, request: u64, plan: &Plan, step: &Step) {
        for n in &step.notes {
            if let Note::AttemptEnded {
                backend,
                bucket,
                class,
                status,
                ..
            } = n
            {
                self.attempts.push(AttemptSummary {
                    backend: plan.backend_name(*backend).to_string(),
                    bucket: plan.bucket_name(*backend, *bucket).to_string(),
                    class: class.as_str(),
                    status: *status,
                });
            }
        }
        if let Some(r) = self.renderer.as_deref_mut() {
            r.step(now, request, plan, step);
        }
    }
}
