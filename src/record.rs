//! `--record TRACE` (SPEC §9.2): writes what really happened as a SPEC §9.1 trace, so an
//! incident can be replayed by `simulate` under other settings.
//!
//! Owns: [`RecordingExec`], an executor wrapper that notes every attempt's outcome and every
//! refresh as `{"times": 1, …}` script entries in the order observed, and [`Recorder`], which
//! turns them into a trace (profiles embedded without secrets) written atomically after each
//! request. Must not: change what the wrapped executor does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::driver::{Attempted, Executor};
use crate::engine::Plan;
use crate::engine::plan::FailoverSettings;
use crate::engine::{Class, Outcome, RequestId, Step};
use crate::fsutil::write_atomic;
use crate::profile::model::{LoadBalancerProfile, Profile};
use crate::profile::raw::RawProfile;
use crate::profile::resolve::ResolvedBackend;
use crate::profile::settings::Settings;
use crate::simulate::trace::{Entry, NetworkKind, RequestSpec, Requests, TimeoutKind, Trace};

/// Accumulates a trace across requests.
#[derive(Debug)]
pub struct Recorder {
    path: PathBuf,
    trace: Trace,
    origin_ms: Option<u64>,
}

/// A profile as embedded in a trace: an inline `auth-key` becomes `sha256:<hex>` (read back
/// as that key's digest, so a replay keeps accounts apart, SPEC §5.9), custom headers are
/// removed (every value is a secret, SPEC §7.1; a replay sends none), and a `base-url` loses
/// its userinfo and query.
pub fn without_secrets(p: &Profile) -> RawProfile {
    let mut raw = p.to_raw();
    let strip = |s: &mut Option<Settings>| {
        if let Some(s) = s {
            s.auth_key = s.auth_key.as_deref().map(|k| {
                if k.starts_with("sha256:") {
                    k.to_string()
                } else {
                    format!("sha256:{}", crate::driver::plan::sha256_hex(k))
                }
            });
            s.custom_headers = None;
            s.base_url = s.base_url.as_deref().map(crate::redact::hide_url_secrets);
        }
    };
    match &mut raw {
        RawProfile::Model(m) => strip(&mut m.settings),
        RawProfile::LoadBalancer(l) => strip(&mut l.settings),
    }
    raw
}

/// The §3.2 settings of a plan, written back as settings (every key explicit).
pub fn failover_as_settings(f: &FailoverSettings) -> Settings {
    Settings {
        failover_retry_count: Some(f.retry_count),
        failover_retry_delay_ms: Some(f.retry_delay_ms),
        failover_on_network_errors: Some(f.on_network_errors),
        failover_status_codes: Some(f.status_codes.clone()),
        lb_tpm_failover_threshold: f.tpm_threshold,
        lb_circuit_breaker_threshold: f.breaker_threshold,
        lb_circuit_breaker_timeout_ms: Some(f.breaker_timeout_ms),
        retry_after_max_ms: Some(f.retry_after_max_ms),
        bucket_cooldown_ms: Some(f.bucket_cooldown_ms),
        max_attempts: f.max_attempts,
        mid_stream: Some(crate::driver::plan::file_mid_stream(f.mid_stream)),
        failover_on_context_length: Some(f.on_context_length),
        ..Settings::default()
    }
}

/// The script entry an observed outcome becomes (SPEC §9.2): a transport error that cannot be
/// told apart is `reset`; `interrupted_after_tokens` is the estimate of what was delivered.
pub fn entry_for(o: &Outcome) -> Entry {
    let msg = o.message.as_deref().unwrap_or("");
    let mut e = Entry {
        times: Some(1),
        latency_ms: Some(o.latency_ms),
        retry_after_ms: o.retry_after_ms,
        code: o.code.clone(),
        ..Entry::default()
    };
    match o.class {
        Class::Network => {
            e.network = Some(if msg.contains("refused") {
                NetworkKind::Refused
            } else if msg.contains("DNS") {
                NetworkKind::Dns
            } else if msg.contains("TLS") {
                NetworkKind::Tls
            } else {
                NetworkKind::Reset
            });
        }
        Class::Timeout => {
            e.timeout = Some(if msg.contains("connect") {
                TimeoutKind::Connect
            } else {
                TimeoutKind::FirstByte
            });
            e.latency_ms = None; // a timeout entry takes its timeout setting (SPEC §9.1)
        }
        Class::Interrupted => e.interrupted_after_tokens = Some(o.delivered_tokens),
        class => {
            e.status = Some(o.status.or_else(|| class.default_status()).unwrap_or(500));
            // Keep what classified it, so the replay classifies it the same way.
            if e.code.is_none() {
                e.code = match class {
                    Class::ContextLength => Some("context_length_exceeded".into()),
                    Class::ContentFilter => Some("content_filter".into()),
                    Class::Quota if e.status == Some(429) => Some("insufficient_quota".into()),
                    _ => None,
                };
            }
            if class == Class::Success {
                e.tokens = Some(o.tokens);
            }
        }
    }
    e
}

impl Recorder {
    /// A recorder writing to `path`; [`Recorder::prepare`] says what runs before each request.
    pub fn new(path: &Path) -> Recorder {
        Recorder {
            path: path.to_path_buf(),
            trace: Trace {
                schema: None,
                version: 1,
                profile: String::new(),
                profiles: BTreeMap::new(),
                settings: None,
                requests: Requests::List(Vec::new()),
                outcomes: BTreeMap::new(),
            },
            origin_ms: None,
        }
    }

    /// Embeds what the next request runs on, so a replay decides as the live run did: each
    /// backend as a model profile with its §3.1 settings as resolved (secrets removed), the
    /// load balancer with its policy and backends, and the resolved §3.2 settings (with the
    /// `mid_stream` actually used) as the trace's session settings. A session that switches
    /// profiles records under the last one.
    pub fn prepare(&mut self, plan: &Plan, backends: &[ResolvedBackend]) {
        for b in backends {
            let mut m = b.profile.clone();
            m.settings = b.settings.settings.clone();
            m.settings.system_prompt = None;
            self.trace
                .profiles
                .insert(b.name.clone(), without_secrets(&Profile::Model(m)));
        }
        if !(backends.len() == 1 && backends[0].name == plan.lb) {
            let lb = LoadBalancerProfile {
                policy: crate::driver::plan::file_policy(plan.policy),
                backends: plan.backends.iter().map(|b| b.name.clone()).collect(),
                settings: Settings::default(),
            };
            self.trace
                .profiles
                .insert(plan.lb.clone(), Profile::LoadBalancer(lb).to_raw());
        }
        self.trace.profile.clone_from(&plan.lb);
        self.trace.settings = Some(failover_as_settings(&plan.settings));
    }

    /// Notes a request's arrival at `now_ms`.
    pub fn request(&mut self, now_ms: u64, tokens: Option<u64>) {
        let origin = *self.origin_ms.get_or_insert(now_ms);
        if let Requests::List(l) = &mut self.trace.requests {
            l.push(RequestSpec {
                at_ms: now_ms.saturating_sub(origin),
                tokens,
            });
        }
    }

    fn push(&mut self, backend: &str, target: String, e: Entry) {
        self.trace
            .outcomes
            .entry(backend.to_string())
            .or_default()
            .entry(target)
            .or_default()
            .push(e);
    }

    /// Writes the trace (atomically).
    pub fn write(&self) -> std::io::Result<()> {
        let mut text = serde_json::to_string_pretty(&self.trace).expect("traces are plain data");
        text.push('\n');
        write_atomic(&self.path, text.as_bytes())
    }

    /// The trace so far.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }
}

/// Wraps an executor and records what it observes.
pub struct RecordingExec<'a, E: Executor> {
    /// The executor doing the work.
    pub inner: E,
    /// Where the observations go.
    pub recorder: &'a mut Recorder,
}

impl<E: Executor> Executor for RecordingExec<'_, E> {
    fn send(
        &mut self,
        now: u64,
        request: RequestId,
        plan: &Plan,
        backend: usize,
        bucket: usize,
        prefill: bool,
    ) -> (u64, Attempted) {
        let (end, attempted) = self
            .inner
            .send(now, request, plan, backend, bucket, prefill);
        // A cancelled attempt never reached an outcome, and a bucket without a credential sent
        // nothing: nothing to replay (SPEC §5.1, §5.3).
        if let Attempted::Sent(o) = &attempted
            && !self.inner.cancelled()
        {
            self.recorder.push(
                plan.backend_name(backend),
                plan.bucket_name(backend, bucket).to_string(),
                entry_for(o),
            );
        }
        (end, attempted)
    }
    fn refresh(
        &mut self,
        now: u64,
        request: RequestId,
        plan: &Plan,
        backend: usize,
        bucket: usize,
    ) -> (u64, bool) {
        let (end, ok) = self.inner.refresh(now, request, plan, backend, bucket);
        let e = Entry {
            status: Some(if ok { 200 } else { 400 }),
            times: Some(1),
            latency_ms: Some(end.saturating_sub(now)),
            ..Entry::default()
        };
        self.recorder.push(
            plan.backend_name(backend),
            format!("refresh:{}", plan.bucket_name(backend, bucket)),
            e,
        );
        (end, ok)
    }
    fn wait_until(&mut self, now: u64, until: u64) -> Option<u64> {
        self.inner.wait_until(now, until)
    }
    fn observe(&mut self, now: u64, request: RequestId, plan: &Plan, step: &Step) {
        self.inner.observe(now, request, plan, step);
    }
    fn cancelled(&self) -> bool {
        self.inner.cancelled()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_become_entries_that_classify_the_same_way() {
        let mut o = Outcome::of(Class::ContextLength);
        o.status = Some(400);
        o.message = Some("prompt is too long".into());
        let e = entry_for(&o);
        assert_eq!(
            (e.status, e.code.as_deref(), e.times),
            (Some(400), Some("context_length_exceeded"), Some(1))
        );
        assert_eq!(
            crate::engine::classify_status(400, e.code.as_deref(), None),
            Class::ContextLength
        );
        let mut n = Outcome::of(Class::Network);
        n.message = Some("connection refused".into());
        assert_eq!(entry_for(&n).network, Some(NetworkKind::Refused));
        n.message = Some("weird".into());
        assert_eq!(entry_for(&n).network, Some(NetworkKind::Reset));
        let mut i = Outcome::of(Class::Interrupted);
        i.delivered_tokens = 12;
        assert_eq!(entry_for(&i).interrupted_after_tokens, Some(12));
    }

    #[test]
    fn embedded_profiles_carry_no_inline_key() {
        let raw: RawProfile = serde_json::from_value(serde_json::json!({
            "version": 1, "provider": "openai", "model": "m",
            "ephemeralSettings": {"auth-key": "sk-secret-0123456789abcdef", "custom-headers": {"X-Api-Key": "k", "X-Credential": "cred-0123456789"},
                "base-url": "https://u:pw-0123456789@h.example/v1?key=q-0123456789"}
        }))
        .unwrap();
        let p = crate::profile::model::analyse(&raw).profile.unwrap();
        let text = serde_json::to_string(&without_secrets(&p)).unwrap();
        assert!(
            !text.contains("sk-secret") && !text.contains("X-Api-Key"),
            "{text}"
        );
        assert!(
            text.contains("sha256:"),
            "the inline key's digest names its account: {text}"
        );
        // SPEC §7.1: every custom header is a secret, whatever its name; a base URL keeps
        // only its host and path.
        assert!(
            !text.contains("X-Credential") && !text.contains("0123456789"),
            "{text}"
        );
        assert!(text.contains("https://…@h.example/v1?key=…"), "{text}");
    }
}
