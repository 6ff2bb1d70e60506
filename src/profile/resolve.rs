//! Settings resolution (SPEC §3) and building the engine's [`Plan`] from validated profiles.
//!
//! Owns: the layering defaults < backend < load balancer < session for §3.1 settings (except
//! the backend's identity), defaults < profile < session for §3.2, and which profile a
//! backend name means. Must not: read files; a lookup function supplies backend profiles.

use crate::engine::plan::{BackendPlan, BucketPlan, FailoverSettings, MidStream, Plan, Policy};
use crate::profile::model::{ModelProfile, Profile};
use crate::profile::settings::Settings;

/// The §3.1 settings a backend runs with, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendSettings {
    /// Every §3.1 key as layered (identity keys from the backend only).
    pub settings: Settings,
    /// `connect_timeout_ms` with its default.
    pub connect_timeout_ms: u64,
    /// `first_byte_timeout_ms` with its default.
    pub first_byte_timeout_ms: u64,
    /// `stream_idle_timeout_ms` with its default.
    pub stream_idle_timeout_ms: u64,
    /// `accepts-prefill` with its default (true for `anthropic` without thinking).
    pub accepts_prefill: bool,
}

/// Resolves a backend's §3.1 settings: defaults < B < L < session, except `base-url`,
/// `auth-keyfile` and `auth-key`, which only come from B (SPEC §3).
pub fn backend_settings(
    b: &ModelProfile,
    lb: Option<&Settings>,
    session: &Settings,
) -> BackendSettings {
    let mut s = b.settings.clone();
    if let Some(l) = lb {
        s.overlay(&l.lendable_model_part());
    }
    s.overlay(&session.lendable_model_part());
    let accepts_prefill = s.accepts_prefill.unwrap_or_else(|| {
        b.provider_info().name == "anthropic" && !s.reasoning_enabled.unwrap_or(false)
    });
    BackendSettings {
        connect_timeout_ms: s.connect_timeout_ms.unwrap_or(10_000),
        first_byte_timeout_ms: s.first_byte_timeout_ms.unwrap_or(60_000),
        stream_idle_timeout_ms: s.stream_idle_timeout_ms.unwrap_or(30_000),
        accepts_prefill,
        settings: s,
    }
}

/// Resolves the §3.2 settings of the profile being run: defaults < profile < session.
/// `mid_stream_default` is the driver's (terminal, pipe, serve or simulate, SPEC §3.2).
pub fn failover_settings(
    own: &Settings,
    session: &Settings,
    mid_stream_default: MidStream,
) -> FailoverSettings {
    let mut s = own.failover_part();
    s.overlay(&session.failover_part());
    let d = FailoverSettings::default();
    FailoverSettings {
        retry_count: s.failover_retry_count.unwrap_or(d.retry_count),
        retry_delay_ms: s.failover_retry_delay_ms.unwrap_or(d.retry_delay_ms),
        on_network_errors: s.failover_on_network_errors.unwrap_or(d.on_network_errors),
        status_codes: s.failover_status_codes.unwrap_or(d.status_codes),
        tpm_threshold: s.lb_tpm_failover_threshold,
        breaker_threshold: s.lb_circuit_breaker_threshold,
        breaker_timeout_ms: s
            .lb_circuit_breaker_timeout_ms
            .unwrap_or(d.breaker_timeout_ms),
        retry_after_max_ms: s.retry_after_max_ms.unwrap_or(d.retry_after_max_ms),
        bucket_cooldown_ms: s.bucket_cooldown_ms.unwrap_or(d.bucket_cooldown_ms),
        max_attempts: s.max_attempts,
        mid_stream: s.mid_stream.unwrap_or(mid_stream_default),
        on_context_length: s.failover_on_context_length.unwrap_or(d.on_context_length),
    }
}

/// One backend of a plan with its resolved request settings.
#[derive(Debug, Clone)]
pub struct ResolvedBackend {
    /// Profile name.
    pub name: String,
    /// The model profile.
    pub profile: ModelProfile,
    /// Its §3.1 settings as run.
    pub settings: BackendSettings,
}

/// Builds the plan for running `name`: a model profile alone is a load balancer of one
/// backend (SPEC §5.2). `lookup` finds backend model profiles by name; `refreshable` says
/// whether an OAuth bucket has a refresh token.
pub fn build_plan(
    name: &str,
    profile: &Profile,
    lookup: &dyn Fn(&str) -> Result<ModelProfile, String>,
    session: &Settings,
    mid_stream_default: MidStream,
    refreshable: &dyn Fn(&str, &str) -> bool,
) -> Result<(Plan, Vec<ResolvedBackend>), String> {
    let (policy, members, own, lb_settings): (
        Policy,
        Vec<(String, ModelProfile)>,
        &Settings,
        Option<&Settings>,
    ) = match profile {
        Profile::Model(m) => (
            Policy::Failover,
            vec![(name.to_string(), m.clone())],
            &m.settings,
            None,
        ),
        Profile::LoadBalancer(lb) => {
            let mut v = Vec::new();
            for b in &lb.backends {
                v.push((b.clone(), lookup(b)?));
            }
            (lb.policy, v, &lb.settings, Some(&lb.settings))
        }
    };
    let mut backends = Vec::new();
    let mut resolved = Vec::new();
    for (bname, m) in members {
        let info = m.provider_info();
        let bs = backend_settings(&m, lb_settings, session);
        let base = m
            .settings
            .base_url
            .clone()
            .unwrap_or_else(|| info.base_url.to_string());
        let oauth = m.is_oauth();
        let buckets = m
            .bucket_names()
            .into_iter()
            .map(|bk| BucketPlan {
                key: format!("{}/{bk}", info.name),
                oauth,
                refreshable: oauth && refreshable(info.name, &bk),
                name: bk,
            })
            .collect();
        backends.push(BackendPlan {
            name: bname.clone(),
            provider: info.name.to_string(),
            model: m.model.clone(),
            fingerprint: format!("{}|{}|{base}", info.name, m.model),
            buckets,
            context_limit: m.settings.context_limit.unwrap_or(0),
            accepts_prefill: bs.accepts_prefill,
        });
        resolved.push(ResolvedBackend {
            name: bname,
            profile: m,
            settings: bs,
        });
    }
    let plan = Plan {
        lb: name.to_string(),
        policy,
        backends,
        settings: failover_settings(own, session, mid_stream_default),
    };
    Ok((plan, resolved))
}
