//! `llxprt stats [lb|buckets] [--profile NAME] [--json] [--reset]` (SPEC §5.10, §8.1): what the
//! shared engine state says about a profile's load balancer, backends and buckets.

use serde_json::{Map, Value, json};

use crate::cli::{StatsArgs, StatsView};
use crate::clock::now_ms;
use crate::driver::plan::build_plan;
use crate::engine::plan::{MidStream, Plan};
use crate::engine::state::SharedState;
use crate::face::{CmdError, Streams, exit};
use crate::profile::model::{ModelProfile, Profile};
use crate::profile::settings::Settings;
use crate::profile::store::Store;
use crate::state_file::SharedStore;
use crate::timefmt::rfc3339;

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
    let now = now_ms();
    let v = stats_json(&plan, &shared, now);
    if args.json {
        writeln!(io.out, "{v}")?;
        return Ok(exit::OK);
    }
    let show_lb = !matches!(args.view, Some(StatsView::Buckets));
    let show_buckets = !matches!(args.view, Some(StatsView::Lb));
    write_text(&v, &name, show_lb, show_buckets, io.out)?;
    Ok(exit::OK)
}

/// The text form of [`stats_json`]'s object for profile `name` (SPEC §8.1): the load balancer
/// and its backends, then the buckets; `/stats` in the session prints the same.
pub fn write_text(
    v: &Value,
    name: &str,
    show_lb: bool,
    show_buckets: bool,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    if show_lb {
        let lb = &v["lb"];
        writeln!(
            out,
            "{} ({}): {} requests, {} ok, last selected {}",
            name,
            lb["policy"].as_str().unwrap_or(""),
            lb["requests"],
            lb["successes"],
            lb["last_selected"].as_str().unwrap_or("-")
        )?;
        for (b, s) in v["backends"].as_object().into_iter().flatten() {
            writeln!(
                out,
                "  {b}: {} requests, {} ok, {} retries, {} failovers, skipped {}/{} (circuit/tpm), {} tokens, latency p50 {} ms p95 {} ms, circuit {}, tpm {}",
                s["requests"],
                s["successes"],
                s["retries"],
                s["failovers"],
                s["skipped"]["circuit"],
                s["skipped"]["tpm"],
                s["tokens"],
                s["latency_ms"]["p50"],
                s["latency_ms"]["p95"],
                s["circuit"].as_str().unwrap_or(""),
                s["tpm"]
            )?;
        }
    }
    if show_buckets {
        writeln!(out, "buckets:")?;
        for (k, s) in v["buckets"].as_object().into_iter().flatten() {
            writeln!(
                out,
                "  {k}: {} requests, {} ok, {} 429s, {} 402s, {} 401s, {} refreshes, cooling until {}, last used {}",
                s["requests"],
                s["successes"],
                s["rate_limited"],
                s["quota"],
                s["auth"],
                s["refreshes"],
                s["cooldown_until"].as_str().unwrap_or("-"),
                s["last_used"].as_str().unwrap_or("-")
            )?;
        }
    }
    Ok(())
}
