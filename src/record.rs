//! `--record TRACE` (SPEC §9.2): writes what really happened as a SPEC §9.1 trace, so an
//! incident can be replayed by `simulate` under other settings.
//!
//! Owns: [`RecordingExec`], an executor wrapper that notes every attempt's outcome and every
//! refresh as `{"times": 1, …}` script entries in the order observed, and [`Recorder`], which
//! turns them into a trace (profiles embedded without secrets) written atomically after each
//! request. Must not: change what the wrapped executor does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::driver::Executor;
use crate::engine::{Action, Class, Outcome, RequestId};
use crate::fsutil::write_atomic;
use crate::profile::model::Profile;
use crate::profile::raw::RawProfile;
use crate::profile::settings::Settings;
use crate::simulate::trace::{Entry, NetworkKind, RequestSpec, Requests, TimeoutKind, Trace};

/// Accumulates a trace across requests.
#[derive(Debug)]
pub struct Recorder {
    path: PathBuf,
    trace: Trace,
    origin_ms: Option<u64>,
}

/// A profile as embedded in a trace: `auth-key` and secret-looking custom headers removed.
pub fn without_secrets(p: &Profile) -> RawProfile {
    let mut raw = p.to_raw();
    let strip = |s: &mut Option<Settings>| {
        if let Some(s) = s {
            s.auth_key = None;
            if let Some(h) = &mut s.custom_headers {
                h.retain(|k, _| !crate::redact::is_secret_name(k));
            }
        }
    };
    match &mut raw {
        RawProfile::Model(m) => strip(&mut m.settings),
        RawProfile::LoadBalancer(l) => strip(&mut l.settings),
    }
    raw
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
    /// A recorder writing to `path` for running `profile` with session `settings`; `profiles`
    /// are every profile involved (the load balancer and its backends).
    pub fn new(
        path: &Path,
        profile: &str,
        profiles: &[(String, Profile)],
        settings: &Settings,
    ) -> Recorder {
        let mut s = settings.clone();
        s.auth_key = None;
        Recorder {
            path: path.to_path_buf(),
            trace: Trace {
                schema: None,
                version: 1,
                profile: profile.to_string(),
                profiles: profiles
                    .iter()
                    .map(|(n, p)| (n.clone(), without_secrets(p)))
                    .collect(),
                settings: (s != Settings::default()).then_some(s),
                requests: Requests::List(Vec::new()),
                outcomes: BTreeMap::new(),
            },
            origin_ms: None,
        }
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
        backend: &str,
        bucket: &str,
        prefill: bool,
    ) -> (u64, Outcome) {
        let (end, o) = self.inner.send(now, request, backend, bucket, prefill);
        // A cancelled attempt never reached an outcome: nothing to replay (SPEC §5.1).
        if !self.inner.cancelled() {
            self.recorder
                .push(backend, bucket.to_string(), entry_for(&o));
        }
        (end, o)
    }
    fn refresh(
        &mut self,
        now: u64,
        request: RequestId,
        backend: &str,
        bucket: &str,
    ) -> (u64, bool) {
        let (end, ok) = self.inner.refresh(now, request, backend, bucket);
        let e = Entry {
            status: Some(if ok { 200 } else { 400 }),
            times: Some(1),
            latency_ms: Some(end.saturating_sub(now)),
            ..Entry::default()
        };
        self.recorder.push(backend, format!("refresh:{bucket}"), e);
        (end, ok)
    }
    fn wait_until(&mut self, now: u64, until: u64) -> Option<u64> {
        self.inner.wait_until(now, until)
    }
    fn observe(&mut self, now: u64, request: RequestId, actions: &[Action]) {
        self.inner.observe(now, request, actions);
    }
    fn cancelled(&self) -> bool {
        self.inner.cancelled()
    }
}

/// Every profile a run involves: the profile itself and, for a load balancer, its backends.
pub fn involved(
    name: &str,
    profile: &Profile,
    backends: &[crate::profile::resolve::ResolvedBackend],
) -> Vec<(String, Profile)> {
    let mut v = vec![(name.to_string(), profile.clone())];
    if matches!(profile, Profile::LoadBalancer(_)) {
        v.extend(
            backends
                .iter()
                .map(|b| (b.name.clone(), Profile::Model(b.profile.clone()))),
        );
    }
    v
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
            "ephemeralSettings": {"auth-key": "sk-secret-0123456789abcdef", "custom-headers": {"X-Api-Key": "k", "X-Trace": "t"}}
        }))
        .unwrap();
        let p = crate::profile::model::analyse(&raw).profile.unwrap();
        let text = serde_json::to_string(&without_secrets(&p)).unwrap();
        assert!(
            !text.contains("sk-secret") && !text.contains("X-Api-Key"),
            "{text}"
        );
        assert!(text.contains("X-Trace"));
    }
}
