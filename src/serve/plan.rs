//! What one `serve` request runs on (SPEC §8.3): the profile its `model` names (else the
//! `--profile` one), the engine's plan for it, and each backend's request parameters.
//!
//! Owns: choosing the profile, leaving out the backends that cannot serve a request's
//! pass-through features (so the engine never sees them; the log line says which), the
//! request's sampling fields over each backend's `modelParams` (mapped to what each protocol
//! accepts), and `mid_stream` as `serve` runs it. Must not: decide retries, order or failover
//! (the engine does, from the plan) or touch the network.
//!
//! Decisions where SPEC is silent:
//! - A non-streamed request defaults to `mid_stream: buffer`: nothing has reached the client
//!   before the answer is complete, so an interruption can restart cleanly (as `chat --json`).
//!   A `mid_stream` set in the profile or load balancer still applies.
//! - A pass-through request is fetched whole from its Chat Completions backend (`streaming`
//!   off for it) and then relayed, so a stream broken in the middle of a tool call can never
//!   reach the client as a half-written call; its messages are sent as the client sent them
//!   (the context budget does not trim them).
//! - Sampling fields on Anthropic backends: `stop` becomes `stop_sequences`; `seed`,
//!   penalties and `reasoning_effort` are dropped (the API has none). Gemini maps its own
//!   (SPEC §6.1) and drops `reasoning_effort`. A request's `max_tokens` or
//!   `max_completion_tokens` replaces both of the profile's.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::request::ChatRequest;
use crate::conversation::prepare::{Prepared, lookup_backend, resolve};
use crate::driver::plan::build_plan;
use crate::engine::plan::MidStream;
use crate::profile::model::{LoadBalancerProfile, Profile};
use crate::profile::names::fold;
use crate::profile::settings::{Settings, Streaming};
use crate::profile::store::{Store, StoreError};
use crate::provider::Protocol;

/// A request's plan, ready for the engine.
#[derive(Debug)]
pub struct Chosen {
    /// The profile being run.
    pub profile: String,
    /// The plan and backends.
    pub prepared: Prepared,
    /// Backends left out for pass-through features, as `name (provider: field)`.
    pub skipped: Vec<String>,
    /// The request carries pass-through features (messages go as sent).
    pub passthrough: bool,
}

/// Why a request has no plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// No backend of the profile can serve a pass-through field (400 naming it).
    Unsupported {
        /// The field.
        field: String,
        /// The message.
        message: String,
    },
    /// The profile (or a backend) does not load (500).
    Config(String),
}

/// The longest profile name in characters, and in bytes (SPEC §1; `check_profile_name`).
const MAX_NAME_CHARS: usize = 128;
const MAX_NAME_BYTES: usize = 200;

/// The name of the profile a request's `model` selects: the stored profile of that name
/// (ignoring case, SPEC §1), else `default`. A `model` longer than a profile name may be
/// (SPEC §1: 128 characters, 200 bytes) names none, and is not compared with any (SPEC §7.1:
/// limits before per-profile work); the caseless form of the others is made once.
pub fn profile_for(store: &Store, model: Option<&str>, default: &str) -> String {
    model
        .filter(|m| m.len() <= MAX_NAME_BYTES && m.chars().count() <= MAX_NAME_CHARS)
        .and_then(|m| {
            let folded = fold(m);
            store
                .names_recent()
                .into_iter()
                .find(|n| n == m || fold(n) == folded)
        })
        .unwrap_or_else(|| default.to_string())
}

/// The mid_stream default of a request (see the module doc), before the profile's setting.
fn mid_stream_default(stream: bool) -> MidStream {
    if stream {
        MidStream::Continue
    } else {
        MidStream::Buffer
    }
}

/// Builds the plan of a request on profile `name` (see [`profile_for`]).
pub fn prepare(store: &Store, name: &str, req: &ChatRequest) -> Result<Chosen, PlanError> {
    let name = name.to_string();
    let (profile, _) = store
        .load(&name)
        .map_err(|e| PlanError::Config(config_message(&e)))?;
    let mut skipped = Vec::new();
    let profile = match (&req.needs_chat_completions, profile) {
        (None, p) => p,
        (Some(field), Profile::Model(m)) => {
            let info = m.provider_info();
            if info.protocol != Protocol::ChatCompletions {
                return Err(unsupported(field, &[format!("{name} ({})", info.name)]));
            }
            Profile::Model(m)
        }
        (Some(field), Profile::LoadBalancer(lb)) => {
            let mut kept = Vec::new();
            let mut others = Vec::new();
            for b in &lb.backends {
                let m = lookup_backend(store, b).map_err(PlanError::Config)?;
                let info = m.provider_info();
                if info.protocol == Protocol::ChatCompletions {
                    kept.push(b.clone());
                } else {
                    others.push(format!("{b} ({})", info.name));
                    skipped.push(format!("{b} ({}: {field})", info.name));
                }
            }
            if kept.is_empty() {
                return Err(unsupported(field, &others));
            }
            // The engine runs the same load balancer (same state keys) without them.
            Profile::LoadBalancer(LoadBalancerProfile {
                backends: kept,
                ..lb
            })
        }
    };
    let session = Settings {
        system_prompt: req.system.clone(),
        ..Settings::default()
    };
    let (mut plan, mut backends) = resolve(
        store,
        &name,
        &profile,
        &session,
        mid_stream_default(req.stream),
    )
    .map_err(|e| PlanError::Config(format!("profile \"{name}\" cannot run: {e}")))?;
    // SPEC §5.8: serve cannot unsend bytes, so restart behaves as continue.
    if plan.settings.mid_stream == MidStream::Restart {
        plan.settings.mid_stream = MidStream::Continue;
    }
    let passthrough = req.needs_chat_completions.is_some();
    for b in &mut backends {
        let protocol = b.profile.provider_info().protocol;
        let params = &mut b.profile.model_params;
        if req.sampling.contains_key("max_tokens")
            || req.sampling.contains_key("max_completion_tokens")
        {
            params.remove("max_tokens");
            params.remove("max_completion_tokens");
        }
        params.extend(sampling_for(protocol, &req.sampling));
        if protocol == Protocol::ChatCompletions {
            params.extend(req.features.iter().map(|(k, v)| (k.clone(), v.clone())));
            params.extend(req.extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        if passthrough {
            b.settings.settings.streaming = Some(Streaming::Disabled);
        }
    }
    Ok(Chosen {
        profile: name,
        prepared: Prepared {
            plan: Arc::new(plan),
            backends,
        },
        skipped,
        passthrough,
    })
}

/// Checks that a profile runs (every backend loads) and returns its `mid_stream` as
/// resolved for a streamed request, before `restart` becomes `continue`.
pub fn check(store: &Store, name: &str) -> Result<MidStream, String> {
    let (profile, _) = store.load(name).map_err(|e| e.to_string())?;
    let (plan, _) = build_plan(
        name,
        &profile,
        &|n: &str| lookup_backend(store, n),
        &Settings::default(),
        MidStream::Continue,
        &|_: &str, _: &str| false,
    )
    .map_err(|e| format!("profile \"{name}\" cannot run: {e}"))?;
    Ok(plan.settings.mid_stream)
}

fn unsupported(field: &str, backends: &[String]) -> PlanError {
    PlanError::Unsupported {
        field: field.to_string(),
        message: format!(
            "{field} is passed through only to Chat Completions backends, and this profile has none ({} speak{} another protocol)",
            backends.join(", "),
            if backends.len() == 1 { "s" } else { "" }
        ),
    }
}

fn config_message(e: &StoreError) -> String {
    format!("the profile does not load: {e}")
}

/// The request's sampling fields as a backend of `protocol` takes them.
pub fn sampling_for(protocol: Protocol, sampling: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in sampling {
        let keep = match protocol {
            Protocol::ChatCompletions => true,
            Protocol::Messages => matches!(
                k.as_str(),
                "temperature" | "top_p" | "top_k" | "max_tokens" | "max_completion_tokens" | "stop"
            ),
            Protocol::Gemini => k != "reasoning_effort",
        };
        if !keep {
            continue;
        }
        if protocol == Protocol::Messages && k == "stop" {
            let list = match v {
                Value::String(s) => Value::Array(vec![Value::String(s.clone())]),
                other => other.clone(),
            };
            out.insert("stop_sequences".into(), list);
        } else {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn sampling_maps_per_protocol() {
        let s = json!({"temperature": 0.5, "stop": "END", "seed": 7, "reasoning_effort": "low"});
        let s = s.as_object().unwrap();
        assert_eq!(
            Value::Object(sampling_for(Protocol::ChatCompletions, s)),
            Value::Object(s.clone())
        );
        assert_eq!(
            Value::Object(sampling_for(Protocol::Messages, s)),
            json!({"temperature": 0.5, "stop_sequences": ["END"]})
        );
        assert_eq!(
            Value::Object(sampling_for(Protocol::Gemini, s)),
            json!({"temperature": 0.5, "stop": "END", "seed": 7})
        );
    }
}
