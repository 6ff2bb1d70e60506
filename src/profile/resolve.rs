//! Settings resolution (SPEC §3) of a backend's request settings. The engine's plan is built
//! from these by the driver (`crate::driver::plan`); this module knows nothing of the engine.
//!
//! Owns: the layering defaults < backend < load balancer < session for §3.1 settings (except
//! the backend's identity), defaults < profile < session for §3.2, and which profile a
//! backend name means. Must not: read files; a lookup function supplies backend profiles.

use crate::profile::model::ModelProfile;
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
