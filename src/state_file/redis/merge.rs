//! Statistics counted while the state server could not be reached, added to its state when it
//! answers again (SPEC §5.9.1: "statistics counted while degraded are added to it, nothing
//! else is written back").
//!
//! Owns: the difference of two statistics (what this process counted since it went degraded)
//! and adding it to the server's. Must not: carry anything but statistics — cursors, circuits,
//! cooldowns and TPM windows of the degraded time stay in this process.

use std::collections::BTreeMap;

use crate::engine::state::SharedState;
use crate::engine::stats::{BackendStats, BucketStats, Histogram, LbStats};

fn sub_map(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.saturating_sub(before.get(k).copied().unwrap_or(0)),
            )
        })
        .filter(|(_, v)| *v > 0)
        .collect()
}

fn add_map(to: &mut BTreeMap<String, u64>, d: &BTreeMap<String, u64>) {
    for (k, v) in d {
        *to.entry(k.clone()).or_default() += v;
    }
}

fn sub_hist(after: &Histogram, before: &Histogram) -> Histogram {
    let counts: Vec<u64> = after
        .counts
        .iter()
        .enumerate()
        .map(|(i, c)| c.saturating_sub(before.counts.get(i).copied().unwrap_or(0)))
        .collect();
    if counts.iter().all(|c| *c == 0) {
        return Histogram::default();
    }
    Histogram {
        counts,
        sum_ms: after.sum_ms.saturating_sub(before.sum_ms),
    }
}

fn add_hist(to: &mut Histogram, d: &Histogram) {
    if d.counts.iter().all(|c| *c == 0) {
        return;
    }
    if to.counts.len() < d.counts.len() {
        to.counts.resize(d.counts.len(), 0);
    }
    for (t, c) in to.counts.iter_mut().zip(&d.counts) {
        *t += c;
    }
    to.sum_ms = to.sum_ms.saturating_add(d.sum_ms);
}

/// What this process counted for every key since `before`: `after`'s statistics minus
/// `before`'s, keys with nothing counted left out. Only the `stats` of each entry are set.
pub fn counted_since(after: &SharedState, before: &SharedState) -> SharedState {
    let mut d = SharedState::default();
    for (k, a) in &after.lbs {
        let b = before.lbs.get(k).map(|x| &x.stats);
        let b = b.cloned().unwrap_or_default();
        let s = LbStats {
            requests: a.stats.requests.saturating_sub(b.requests),
            successes: a.stats.successes.saturating_sub(b.successes),
            failures: sub_map(&a.stats.failures, &b.failures),
            last_selected: a.stats.last_selected.clone(),
            last_routes: a.stats.last_routes.clone(),
        };
        if s.requests > 0 || s.successes > 0 || !s.failures.is_empty() {
            d.lbs.entry(k.clone()).or_default().stats = s;
        }
    }
    for (k, a) in &after.backends {
        let b = before
            .backends
            .get(k)
            .map(|x| x.stats.clone())
            .unwrap_or_default();
        let a = &a.stats;
        let s = BackendStats {
            requests: a.requests.saturating_sub(b.requests),
            successes: a.successes.saturating_sub(b.successes),
            failures: sub_map(&a.failures, &b.failures),
            retries: a.retries.saturating_sub(b.retries),
            failovers: a.failovers.saturating_sub(b.failovers),
            skipped_circuit: a.skipped_circuit.saturating_sub(b.skipped_circuit),
            skipped_tpm: a.skipped_tpm.saturating_sub(b.skipped_tpm),
            tokens: a.tokens.saturating_sub(b.tokens),
            latency: sub_hist(&a.latency, &b.latency),
        };
        if s != BackendStats::default() {
            d.backends.entry(k.clone()).or_default().stats = s;
        }
    }
    for (k, a) in &after.buckets {
        let b = before
            .buckets
            .get(k)
            .map(|x| x.stats.clone())
            .unwrap_or_default();
        let a = &a.stats;
        let s = BucketStats {
            requests: a.requests.saturating_sub(b.requests),
            successes: a.successes.saturating_sub(b.successes),
            rate_limited: a.rate_limited.saturating_sub(b.rate_limited),
            quota: a.quota.saturating_sub(b.quota),
            auth: a.auth.saturating_sub(b.auth),
            refreshes: a.refreshes.saturating_sub(b.refreshes),
            last_used: a.last_used.filter(|u| b.last_used.is_none_or(|o| *u > o)),
        };
        if s != BucketStats::default() {
            d.buckets.entry(k.clone()).or_default().stats = s;
        }
    }
    d
}

/// Adds a load balancer's counted statistics to the server's.
pub fn add_lb(to: &mut LbStats, d: &LbStats) {
    to.requests += d.requests;
    to.successes += d.successes;
    add_map(&mut to.failures, &d.failures);
    if d.requests > 0 && d.last_selected.is_some() {
        to.last_selected.clone_from(&d.last_selected);
        to.last_routes.clone_from(&d.last_routes);
    }
}

/// Adds a backend's counted statistics to the server's.
pub fn add_backend(to: &mut BackendStats, d: &BackendStats) {
    to.requests += d.requests;
    to.successes += d.successes;
    add_map(&mut to.failures, &d.failures);
    to.retries += d.retries;
    to.failovers += d.failovers;
    to.skipped_circuit += d.skipped_circuit;
    to.skipped_tpm += d.skipped_tpm;
    to.tokens += d.tokens;
    add_hist(&mut to.latency, &d.latency);
}

/// Adds an account's counted statistics to the server's.
pub fn add_bucket(to: &mut BucketStats, d: &BucketStats) {
    to.requests += d.requests;
    to.successes += d.successes;
    to.rate_limited += d.rate_limited;
    to.quota += d.quota;
    to.auth += d.auth;
    to.refreshes += d.refreshes;
    to.last_used = to.last_used.max(d.last_used);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_was_counted_since_adds_up_to_the_whole() {
        let mut before = SharedState::default();
        before.lbs.entry("lb".into()).or_default().stats.requests = 3;
        let b = before.backends.entry("a".into()).or_default();
        b.stats.latency.record(40);
        b.stats.failures.insert("server_error".into(), 1);
        let mut after = before.clone();
        after.lbs.get_mut("lb").unwrap().stats.requests = 5;
        let a = after.backends.get_mut("a").unwrap();
        a.stats.latency.record(90);
        a.stats.failures.insert("server_error".into(), 2);
        a.stats.successes = 4;
        after
            .buckets
            .entry("openai/x".into())
            .or_default()
            .stats
            .requests = 2;
        let d = counted_since(&after, &before);
        assert_eq!(d.lbs["lb"].stats.requests, 2);
        assert_eq!(d.backends["a"].stats.latency.count(), 1);
        assert_eq!(d.backends["a"].stats.failures["server_error"], 1);
        assert_eq!(d.buckets["openai/x"].stats.requests, 2);
        // The server had what `before` had (another instance may have added more): adding the
        // difference gives `after`.
        let mut server = before.clone();
        add_lb(
            &mut server.lbs.get_mut("lb").unwrap().stats,
            &d.lbs["lb"].stats,
        );
        add_backend(
            &mut server.backends.get_mut("a").unwrap().stats,
            &d.backends["a"].stats,
        );
        assert_eq!(server.lbs["lb"].stats, after.lbs["lb"].stats);
        assert_eq!(server.backends["a"].stats, after.backends["a"].stats);
        // Nothing counted, nothing to add.
        assert_eq!(counted_since(&after, &after), SharedState::default());
    }
}
