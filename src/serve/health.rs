//! `GET /health` (SPEC §8.3): 503 when every circuit of the default profile is open, else 200,
//! with each backend's circuit as the shared state says it is now (SPEC §5.6, §5.9).
//!
//! Owns: reading the circuits for the answer. Must not: change the state (a health check is
//! not a request and takes no probe).

use serde_json::{Map, Value, json};

use super::Ctx;
use crate::clock::now_ms;
use crate::driver::plan::failover_settings;
use crate::engine::MidStream;
use crate::engine::circuit::Circuit;
use crate::profile::model::Profile;
use crate::profile::settings::Settings;

/// The backends of a profile and its circuit timeout (a model profile alone is its own one
/// backend, SPEC §5.2).
fn backends(ctx: &Ctx) -> Result<(Vec<String>, u64), String> {
    let name = &ctx.default_profile;
    let (profile, _) = ctx.store.load(name).map_err(|e| e.to_string())?;
    let (names, own) = match &profile {
        Profile::Model(m) => (vec![name.clone()], &m.settings),
        Profile::LoadBalancer(lb) => (lb.backends.clone(), &lb.settings),
    };
    let timeout =
        failover_settings(own, &Settings::default(), MidStream::Continue).breaker_timeout_ms;
    Ok((names, timeout))
}

/// The status, body and headers of `/health`.
pub fn check(ctx: &Ctx) -> (u16, Value, Vec<(&'static str, String)>) {
    let (names, timeout) = match backends(ctx) {
        Ok(x) => x,
        Err(e) => {
            return (
                503,
                json!({"status": "unavailable", "profile": ctx.default_profile, "error": e}),
                Vec::new(),
            );
        }
    };
    let shared = ctx.engine.shared();
    let now = now_ms();
    let mut circuits = Map::new();
    let mut open = 0;
    let mut ready_at: Option<u64> = None;
    for n in &names {
        let mut c = shared
            .backends
            .get(n)
            .map(|b| b.circuit)
            .unwrap_or_default();
        let word = match c.eligibility(now, timeout) {
            Ok(()) if matches!(c, Circuit::HalfOpen { .. }) => "half_open",
            Ok(()) => "closed",
            Err((_, until)) => {
                open += 1;
                ready_at = Some(ready_at.map_or(until, |r| r.min(until)));
                "open"
            }
        };
        circuits.insert(n.clone(), Value::from(word));
    }
    let down = open == names.len();
    let mut body = json!({
        "status": if down { "unavailable" } else { "ok" },
        "profile": ctx.default_profile,
        "backends": circuits,
    });
    // SPEC §8.3: an unreachable shared state server is named; requests are still served.
    if let Some(why) = ctx.engine.degraded() {
        body["state_server"] = json!({"status": "unreachable", "detail": why});
    }
    if down {
        let secs = ready_at.map_or(1, |t| t.saturating_sub(now).div_ceil(1000).max(1));
        (503, body, vec![("retry-after", secs.to_string())])
    } else {
        (200, body, Vec::new())
    }
}
