//! `llxprt stats [lb|buckets] [--profile NAME] [--json] [--reset]` (SPEC §5.10, §8.1): what the
//! shared engine state says about a profile's load balancer, backends and buckets.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use super::table::{Align, Table};
use crate::cli::{StatsArgs, StatsView};
use crate::clock::report_now_ms;
use crate::driver::plan::build_plan;
use crate::engine::plan::{MidStream, Plan};
use crate::engine::state::SharedState;
use crate::engine::stats::Route;
use crate::face::{CmdError, Streams, exit};
use crate::profile::model::{ModelProfile, Profile};
use crate::profile::settings::Settings;
use crate::profile::store::Store;
use crate::state_file::SharedStore;
use crate::timefmt::{local_relative, parse_rfc3339, rfc3339};

fn plan_of(store: &Store, name: &str) -> Result<Plan, CmdError> {
    let (profile, _) = store.load(name)?;
    let lookup = |n: &str| -> Result<ModelProfile, String> {
        match store.load(n).map_err(|e| e.to_string())?.0 {
            Profile::Model(m) => Ok(m),
            Profile::LoadBalancer(_) => Err(format!("backend \"{n}\" is a load balancer")),
        }
    };
    build_plan(
        name,
        &profile,
        &lookup,
        &Settings::default(),
        MidStream::Restart,
        &|_, _| false,
    )
    .map(|(p, _)| p)
    .map_err(|e| CmdError::new(exit::CONFIG, e))
}

/// The stats object of SPEC §8.1 for one plan, as seen at `now`.
pub fn stats_json(plan: &Plan, shared: &SharedState, now: u64) -> Value {
    let lb = shared.lbs.get(&plan.lb).cloned().unwrap_or_default();
    let mut backends = Map::new();
    let mut buckets = Map::new();
    for b in &plan.backends {
        let st = shared.backends.get(&b.name).cloned().unwrap_or_default();
        let s = &st.stats;
        let circuit = if plan.settings.breaker_threshold.is_some() {
            st.circuit.view(now, plan.settings.breaker_timeout_ms)
        } else {
            "closed"
        };
        backends.insert(
            b.name.clone(),
            json!({
                "requests": s.requests,
                "successes": s.successes,
                "failures": s.failures,
                "retries": s.retries,
                "failovers": s.failovers,
                "skipped": {"circuit": s.skipped_circuit, "tpm": s.skipped_tpm},
                "tokens": s.tokens,
                "latency_ms": {"mean": s.latency.mean(), "p50": s.latency.percentile(50), "p95": s.latency.percentile(95)},
                "circuit": circuit,
                "tpm": st.tpm_at(now),
            }),
        );
        for k in &b.buckets {
            let bs = shared.buckets.get(&k.key).cloned().unwrap_or_default();
            let x = &bs.stats;
            buckets.insert(
                format!("{}/{}", b.name, k.name),
                json!({
                    "requests": x.requests,
                    "successes": x.successes,
                    "rate_limited": x.rate_limited,
                    "quota": x.quota,
                    "auth": x.auth,
                    "refreshes": x.refreshes,
                    "cooldown_until": bs.cooldown_until.filter(|&u| u > now).map(rfc3339),
                    "last_used": x.last_used.map(rfc3339),
                    "ratelimit": bs.ratelimit,
                    "ratelimit_at": bs.ratelimit_at.map(rfc3339),
                }),
            );
        }
    }
    json!({
        "profile": plan.lb,
        "lb": {
            "policy": plan.policy.as_str(),
            "requests": lb.stats.requests,
            "successes": lb.stats.successes,
            "failures": lb.stats.failures,
            "last_selected": lb.stats.last_selected,
            "cursor": lb.cursor,
        },
        "backends": backends,
        "buckets": buckets,
    })
}

/// Why the last request of the plan's load balancer went where it went, per backend.
pub fn routes(plan: &Plan, shared: &SharedState) -> BTreeMap<String, Route> {
    shared
        .lbs
        .get(&plan.lb)
        .map(|l| l.stats.last_routes.clone())
        .unwrap_or_default()
}

/// Clears statistics, circuits, cooldowns and TPM of the plan's keys, or of every key.
pub fn reset(shared: &mut SharedState, plan: Option<&Plan>) {
    let Some(plan) = plan else {
        *shared = SharedState::default();
        return;
    };
    shared.lbs.remove(&plan.lb);
    for b in &plan.backends {
        shared.backends.remove(&b.name);
        for k in &b.buckets {
            shared.buckets.remove(&k.key);
        }
    }
}

/// Runs `llxprt stats`.
pub fn run(args: &StatsArgs, store: &Store, io: &mut Streams<'_>) -> Result<u8, CmdError> {
    let mut file = SharedStore::open(store.root());
    let name = match &args.profile {
        Some(n) => Some(n.clone()),
        None => store.default_profile()?,
    };
    if args.reset {
        let plan = match &args.profile {
            Some(n) => Some(plan_of(store, n)?),
            None => None,
        };
        file.update(|s| reset(s, plan.as_ref())).map_err(|e| {
            CmdError::new(
                exit::FAILED,
                format!("cannot update {}: {e}", file.describe()),
            )
        })?;
        for w in &file.take_warnings() {
            writeln!(io.err, "{}", crate::conversation::notes::state_warning(w))?;
        }
        writeln!(
            io.err,
            "statistics reset for {}",
            args.profile
                .as_deref()
                .map_or("every profile".to_string(), |n| format!("profile \"{n}\""))
        )?;
        return Ok(exit::OK);
    }
    let name = name.ok_or_else(|| {
        CmdError::new(exit::CONFIG, "no profile given and no default profile")
            .help("llxprt stats --profile NAME")
    })?;
    let plan = plan_of(store, &name)?;
    let shared = file.read().map_err(|e| {
        CmdError::new(
            exit::FAILED,
            format!("cannot read {}: {e}", file.describe()),
        )
    })?;
    for w in &file.take_warnings() {
        writeln!(io.err, "{}", crate::conversation::notes::state_warning(w))?;
    }
    let now = report_now_ms();
    let v = stats_json(&plan, &shared, now);
    if args.json {
        writeln!(io.out, "{v}")?;
        return Ok(exit::OK);
    }
    let view = TextView {
        name: &name,
        routes: &routes(&plan, &shared),
        lb: !matches!(args.view, Some(StatsView::Buckets)),
        buckets: !matches!(args.view, Some(StatsView::Lb)),
        now,
        width: crate::terminal::report_width(),
    };
    write_text(&v, &view, io.out)?;
    Ok(exit::OK)
}

/// The text form of [`stats_json`]'s object `v` for profile `name` (SPEC §8.1), fitted to
/// `width`: a line for the load balancer, a table of its backends' traffic, one of their health
/// and of why the last request went where it went (`routes`, from the load balancer's
/// statistics), then a table of the buckets; times in local time relative to `now`, and `—`
/// where there is no value. `/stats` in the session prints the same.
pub struct TextView<'a> {
    /// Profile name.
    pub name: &'a str,
    /// Why the last request went to each backend it reached or passed over.
    pub routes: &'a BTreeMap<String, Route>,
    /// Show the load balancer and its backends.
    pub lb: bool,
    /// Show the buckets.
    pub buckets: bool,
    /// The time relative times are measured from.
    pub now: u64,
    /// Columns to fit.
    pub width: usize,
}

fn num(v: &Value) -> String {
    v.as_u64()
        .map_or_else(|| "—".to_string(), |n| n.to_string())
}

fn ms(v: &Value) -> String {
    v.as_u64()
        .map_or_else(|| "—".to_string(), |n| format!("{n} ms"))
}

fn when(v: &Value, now: u64, none: &str) -> String {
    v.as_str()
        .and_then(parse_rfc3339)
        .map_or_else(|| none.to_string(), |t| local_relative(t, now))
}

fn failed(v: &Value) -> u64 {
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(_, n)| n.as_u64())
        .sum()
}

/// Writes the text form (see [`TextView`]).
pub fn write_text(
    v: &Value,
    view: &TextView<'_>,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    let mut text = String::new();
    if view.lb {
        let lb = &v["lb"];
        let _ = writeln!(
            text,
            "{} ({}): {} requests, {} ok, {} failed, last selected {}",
            view.name,
            lb["policy"].as_str().unwrap_or(""),
            num(&lb["requests"]),
            num(&lb["successes"]),
            failed(&lb["failures"]),
            lb["last_selected"].as_str().unwrap_or("—")
        );
        let backends = || v["backends"].as_object().into_iter().flatten();
        let mut traffic = Table::new(&[
            Align::Left,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
        ])
        .header(&[
            "backend", "requests", "ok", "failed", "tokens", "mean", "p50", "p95",
        ]);
        for (b, s) in backends() {
            let l = &s["latency_ms"];
            traffic.row(vec![
                b.clone(),
                num(&s["requests"]),
                num(&s["successes"]),
                failed(&s["failures"]).to_string(),
                num(&s["tokens"]),
                ms(&l["mean"]),
                ms(&l["p50"]),
                ms(&l["p95"]),
            ]);
        }
        text.push_str(&traffic.render(view.width));
        let mut health = Table::new(&[
            Align::Left,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Left,
            Align::Right,
            Align::Left,
        ])
        .header(&[
            "backend",
            "retries",
            "failovers",
            "skipped (c/TPM)",
            "circuit",
            "TPM",
            "last request",
        ]);
        for (b, s) in backends() {
            health.row(vec![
                b.clone(),
                num(&s["retries"]),
                num(&s["failovers"]),
                format!(
                    "{} / {}",
                    num(&s["skipped"]["circuit"]),
                    num(&s["skipped"]["tpm"])
                ),
                s["circuit"].as_str().unwrap_or("—").replace('_', "-"),
                num(&s["tpm"]),
                view.routes
                    .get(b)
                    .map_or_else(|| "—".to_string(), |r| r.as_str().to_string()),
            ]);
        }
        text.push('\n');
        text.push_str(&health.render(view.width));
    }
    if view.buckets {
        if view.lb {
            text.push('\n');
        }
        let mut t = Table::new(&[
            Align::Left,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Left,
            Align::Left,
        ])
        .header(&[
            "bucket",
            "requests",
            "ok",
            "429",
            "402",
            "401",
            "refreshes",
            "cooling until",
            "last used",
        ]);
        for (k, s) in v["buckets"].as_object().into_iter().flatten() {
            t.row(vec![
                k.clone(),
                num(&s["requests"]),
                num(&s["successes"]),
                num(&s["rate_limited"]),
                num(&s["quota"]),
                num(&s["auth"]),
                num(&s["refreshes"]),
                when(&s["cooldown_until"], view.now, "—"),
                when(&s["last_used"], view.now, "never"),
            ]);
        }
        text.push_str(&t.render(view.width));
    }
    out.write_all(text.as_bytes())
}
