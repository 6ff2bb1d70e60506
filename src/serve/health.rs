//! `GET /health` (SPEC §8.3, §7.1): 503 when the default profile cannot serve — every circuit
//! of it open, or every request slot it could use busy with requests waiting — else 200, with
//! each backend's circuit as the shared state says it is now (SPEC §5.6, §5.9), the request
//! slots in use, and any profile whose slots are all busy with requests waiting (`status`
//! then says `degraded`, not `ok`).
//!
//! Owns: reading the circuits and the slots for the answer. Must not: change the state (a
//! health check is not a request and takes no probe, and no slot).

use serde_json::{Map, Value, json};

use super::Ctx;
use super::slots::Saturated;
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

/// What the full slots say: the `saturated` object of the body (by profile name; `*` for the
/// global limit), one reason per full profile, and whether the default profile's requests
/// cannot start (its own slots, or all of them, busy with requests waiting).
fn saturation(default: &str, full: &[Saturated]) -> (Map<String, Value>, Vec<String>, bool) {
    let mut body = Map::new();
    let mut reasons = Vec::new();
    let mut blocked = false;
    for s in full {
        let (key, what) = match &s.profile {
            Some(p) => (p.as_str(), format!("profile \"{p}\"")),
            None => ("*", "the server".to_string()),
        };
        blocked |= s.profile.as_deref().is_none_or(|p| p == default);
        reasons.push(format!(
            "every request slot of {what} is busy ({} of {}) and {} request{} wait{}",
            s.busy,
            s.limit,
            s.waiting,
            if s.waiting == 1 { "" } else { "s" },
            if s.waiting == 1 { "s" } else { "" },
        ));
        body.insert(
            key.to_string(),
            json!({"busy": s.busy, "limit": s.limit, "waiting": s.waiting}),
        );
    }
    (body, reasons, blocked)
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
    let (saturated, mut reasons, blocked) =
        saturation(&ctx.default_profile, &ctx.slots.saturated());
    if down {
        reasons.insert(0, "every circuit of the profile is open".to_string());
    }
    // SPEC §8.3: an unreachable shared state server is named; requests are still served.
    let state_down = ctx.engine.degraded();
    let (busy, waiting) = ctx.slots.counts();
    let status = if down || blocked {
        "unavailable"
    } else if saturated.is_empty() && state_down.is_none() {
        "ok"
    } else {
        "degraded"
    };
    let mut body = json!({
        "status": status,
        "profile": ctx.default_profile,
        "backends": circuits,
        "slots": {"busy": busy, "waiting": waiting, "limit": ctx.slots.global(),
                  "per_profile": ctx.slots.per_profile()},
    });
    if let Some(why) = state_down {
        body["state_server"] = json!({"status": "unreachable", "detail": why});
    }
    if !saturated.is_empty() {
        body["saturated"] = Value::Object(saturated);
    }
    if !reasons.is_empty() {
        body["reason"] = Value::from(reasons.join("; "));
    }
    if down {
        let secs = ready_at.map_or(1, |t| t.saturating_sub(now).div_ceil(1000).max(1));
        (503, body, vec![("retry-after", secs.to_string())])
    } else if blocked {
        (503, body, vec![("retry-after", "1".to_string())])
    } else {
        (200, body, Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(profile: Option<&str>, waiting: usize) -> Saturated {
        Saturated {
            profile: profile.map(str::to_string),
            busy: 16,
            limit: 16,
            waiting,
        }
    }

    /// A full profile is named; only the default one's (or the global limit) makes the
    /// default profile unable to serve.
    #[test]
    fn full_slots_are_named_and_block_only_the_default() {
        let (body, reasons, blocked) = saturation("lb", &[full(Some("other"), 3)]);
        assert!(!blocked);
        assert_eq!(
            Value::Object(body),
            json!({"other": {"busy": 16, "limit": 16, "waiting": 3}})
        );
        assert_eq!(
            reasons,
            ["every request slot of profile \"other\" is busy (16 of 16) and 3 requests wait"]
        );
        assert!(saturation("lb", &[full(Some("lb"), 1)]).2);
        let (body, reasons, blocked) = saturation("lb", &[full(None, 1)]);
        assert!(blocked);
        assert!(body.contains_key("*"));
        assert_eq!(
            reasons,
            ["every request slot of the server is busy (16 of 16) and 1 request waits"]
        );
    }
}
