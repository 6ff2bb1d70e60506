//! The scripted executor: what each attempt and refresh produces, from the trace's outcome
//! scripts (SPEC §9.1), in virtual time.

use std::collections::HashMap;

use crate::engine::{Class, Outcome, classify_status};
use crate::profile::resolve::ResolvedBackend;

use super::trace::{Entry, TimeoutKind, Trace};

/// Default latency of a scripted attempt (SPEC §9.1).
pub const DEFAULT_LATENCY_MS: u64 = 100;

/// Script state: how many attempts took each entry, per target.
pub struct Script<'a> {
    trace: &'a Trace,
    /// Per backend: (connect, first byte) timeouts as resolved for it.
    timeouts: HashMap<String, (u64, u64)>,
    /// Attempts that took each entry, by backend, bucket and script key (`"*"` keeps counts
    /// per bucket, SPEC §9.1): nested so an attempt looks its counts up by the names it has,
    /// allocating keys only the first time.
    taken: HashMap<String, HashMap<String, HashMap<String, Vec<u64>>>>,
    tokens: u64,
    /// Per backend: the secrets its requests would carry (inline `auth-key`, every
    /// `custom-headers` value, what its `base-url` holds), hidden in its scripted messages as the shell hides them in a
    /// provider's (SPEC §7).
    secrets: HashMap<String, Vec<String>>,
}

/// The counts of one script (`entries` long), made on first use.
fn counts<'m>(
    taken: &'m mut HashMap<String, HashMap<String, HashMap<String, Vec<u64>>>>,
    backend: &str,
    bucket: &str,
    key: &str,
    entries: usize,
) -> &'m mut Vec<u64> {
    if !taken.contains_key(backend) {
        taken.insert(backend.to_string(), HashMap::new());
    }
    let by_bucket = taken.get_mut(backend).expect("inserted above when missing");
    if !by_bucket.contains_key(bucket) {
        by_bucket.insert(bucket.to_string(), HashMap::new());
    }
    let by_key = by_bucket
        .get_mut(bucket)
        .expect("inserted above when missing");
    if !by_key.contains_key(key) {
        by_key.insert(key.to_string(), vec![0; entries]);
    }
    by_key.get_mut(key).expect("inserted above when missing")
}

impl<'a> Script<'a> {
    /// A fresh script state for a run.
    pub fn new(trace: &'a Trace, backends: &[ResolvedBackend]) -> Self {
        let timeouts = backends
            .iter()
            .map(|b| {
                (
                    b.name.clone(),
                    (
                        b.settings.connect_timeout_ms,
                        b.settings.first_byte_timeout_ms,
                    ),
                )
            })
            .collect();
        let secrets = backends
            .iter()
            .map(|b| {
                let mut known: Vec<String> = [&b.profile.settings, &b.settings.settings]
                    .iter()
                    .filter_map(|s| s.auth_key.clone())
                    .collect();
                known.extend(crate::redact::header_secrets(
                    b.settings
                        .settings
                        .custom_headers
                        .iter()
                        .flat_map(|h| h.values()),
                ));
                if let Some(url) = &b.profile.settings.base_url {
                    known.extend(crate::redact::url_secrets(url));
                }
                (b.name.clone(), known)
            })
            .collect();
        Script {
            trace,
            timeouts,
            taken: HashMap::new(),
            tokens: 1000,
            secrets,
        }
    }

    /// A new request starts; a success reports `tokens` unless its entry says otherwise.
    pub fn begin_request(&mut self, tokens: u64) {
        self.tokens = tokens;
    }

    /// Takes the first live entry of the target's script, or the last when none is live.
    fn take(&mut self, now: u64, backend: &str, bucket: &str, key: &str) -> Option<Entry> {
        let scripts = self.trace.outcomes.get(backend)?;
        let (script_key, entries) = match scripts.get_key_value(key) {
            Some(kv) => kv,
            None if !key.starts_with("refresh:") => scripts.get_key_value("*")?,
            None => return None,
        };
        let counts = counts(&mut self.taken, backend, bucket, script_key, entries.len());
        let live = entries.iter().zip(counts.iter()).position(|(e, &used)| {
            e.times.is_none_or(|n| used < n) && e.until_ms.is_none_or(|u| now < u)
        });
        let i = live.unwrap_or(entries.len().checked_sub(1)?);
        counts[i] += 1;
        Some(entries[i].clone())
    }

    /// One attempt starting at `now`: when it ends and its outcome.
    pub fn attempt(&mut self, now: u64, backend: &str, bucket: &str) -> (u64, Outcome) {
        let Some(e) = self.take(now, backend, bucket, bucket) else {
            let mut o = Outcome::of(Class::Success);
            o.status = Some(200);
            o.tokens = self.tokens;
            o.latency_ms = DEFAULT_LATENCY_MS;
            return (now + DEFAULT_LATENCY_MS, o);
        };
        let (connect, first_byte) = self
            .timeouts
            .get(backend)
            .copied()
            .unwrap_or((10_000, 60_000));
        let mut latency = e.latency_ms.unwrap_or(DEFAULT_LATENCY_MS);
        let mut o = if let Some(status) = e.status {
            let class = classify_status(status, e.code.as_deref(), e.message.as_deref());
            let mut o = Outcome::of(class);
            o.status = Some(status);
            if class == Class::Success {
                o.tokens = e.tokens.unwrap_or(self.tokens);
            }
            o
        } else if e.network.is_some() {
            Outcome::of(Class::Network)
        } else if let Some(t) = e.timeout {
            // SPEC §9.1: a timeout entry always takes its timeout setting.
            latency = match t {
                TimeoutKind::Connect => connect,
                TimeoutKind::FirstByte => first_byte,
            };
            Outcome::of(Class::Timeout)
        } else {
            let mut o = Outcome::of(Class::Interrupted);
            o.delivered_tokens = e.interrupted_after_tokens.unwrap_or(0);
            o
        };
        o.retry_after_ms = e.retry_after_ms;
        let known = self.secrets.get(backend).map_or(&[][..], Vec::as_slice);
        o.code = e.code.map(|c| crate::redact::hide_known(&c, known));
        o.message = e.message.map(|m| crate::redact::hide_known(&m, known));
        o.latency_ms = latency;
        (now.saturating_add(latency), o)
    }

    /// A token refresh starting at `now` (default: it works, taking no time).
    pub fn refresh(&mut self, now: u64, backend: &str, bucket: &str) -> (u64, bool) {
        let key = format!("refresh:{bucket}");
        match self.take(now, backend, bucket, &key) {
            Some(e) => (
                now.saturating_add(e.latency_ms.unwrap_or(0)),
                e.status.is_some_and(|s| (200..300).contains(&s)),
            ),
            None => (now, true),
        }
    }
}
