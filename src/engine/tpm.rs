//! A backend's TPM (SPEC §5.7, §5.11, §7.1): tokens of successes stamped when they ended,
//! counted while `now − t < 60 000`.
//!
//! Two windows share the work. The exact [`TpmWindow`], one entry per millisecond, holds the
//! successes of requests whose plan has `lb_tpm_failover_threshold`: the threshold needs them
//! exact (§5.11). Every other success goes to the [`TpmRing`], at most 60 per-second slots,
//! which is all `stats`' current TPM needs and keeps the state file's size independent of the
//! request rate (§7.1). The threshold counts both ([`tokens_at`], [`clear_at`]), so a backend
//! that a load balancer without a threshold also uses is still judged on all its tokens, the
//! ring's at the granularity of a second.
//!
//! Both are kept in time order (so on load too): adding, expiring and cutting back touch only
//! the ends, so a step costs the same however busy the minute was.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// The TPM window length (SPEC §5.7).
pub const TPM_WINDOW_MS: u64 = 60_000;

/// `(end of a success, tokens)` within the trailing minute, oldest first, with their sum: the
/// entries that no longer count at a given time are a prefix (the stamps are in order), so
/// the tokens counted then are the sum less that prefix, and a step's TPM check costs the few
/// entries that expired since the last success, not the whole minute.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TpmWindow {
    entries: VecDeque<(u64, u64)>,
    /// The sum of every entry's tokens (saturating).
    total: u64,
}

impl Serialize for TpmWindow {
    /// Stored as the list of entries; the sum is derived.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.entries.serialize(s)
    }
}

impl<'de> Deserialize<'de> for TpmWindow {
    /// A stored window is put in time order (a file written by hand, or by an older llxprt).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut v = Vec::<(u64, u64)>::deserialize(d)?;
        v.sort_by_key(|(t, _)| *t);
        let total = v.iter().fold(0u64, |s, (_, n)| s.saturating_add(*n));
        Ok(TpmWindow {
            entries: v.into(),
            total,
        })
    }
}

impl TpmWindow {
    /// The entries, oldest first.
    pub fn entries(&self) -> impl Iterator<Item = &(u64, u64)> {
        self.entries.iter()
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Tokens counted at `now` (SPEC §5.11): the sum less the entries that no longer count.
    pub fn at(&self, now: u64) -> u64 {
        let gone: u64 = self
            .entries
            .iter()
            .take_while(|(t, _)| now.saturating_sub(*t) >= TPM_WINDOW_MS)
            .map(|(_, n)| n)
            .sum();
        self.total.saturating_sub(gone)
    }

    /// The entries that count at `now`, oldest first.
    fn live(&self, now: u64) -> impl Iterator<Item = &(u64, u64)> {
        self.entries
            .iter()
            .skip_while(move |(t, _)| now.saturating_sub(*t) >= TPM_WINDOW_MS)
    }

    /// When the trailing sum falls below `threshold` again, if it is not below now.
    pub fn clear_at(&self, now: u64, threshold: u64) -> Option<u64> {
        clear_time(self.at(now), self.live(now).copied(), now, threshold)
    }

    /// Forgets the entries that can no longer count at `now` or later.
    pub fn expire(&mut self, now: u64) {
        while let Some(&(t, n)) = self.entries.front()
            && now.saturating_sub(t) >= TPM_WINDOW_MS
        {
            self.entries.pop_front();
            self.total = self.total.saturating_sub(n);
        }
    }

    /// Adds a success's tokens and forgets entries that can no longer count. Successes that
    /// end in the same millisecond share one entry (they count and expire together). A
    /// success stamped before the newest entry (threads of one process report out of order)
    /// goes in its place.
    pub fn add(&mut self, now: u64, tokens: u64) {
        self.expire(now);
        self.total = self.total.saturating_add(tokens);
        let at = self.entries.iter().rposition(|(t, _)| *t <= now);
        match at.and_then(|i| self.entries.get_mut(i)) {
            Some((t, n)) if *t == now => *n = n.saturating_add(tokens),
            _ => self.entries.insert(at.map_or(0, |i| i + 1), (now, tokens)),
        }
    }

    /// Cuts back entries stamped after `now` (a clock that jumped back, SPEC §5.9) to `now`;
    /// they stay in time order.
    pub fn cut_back(&mut self, now: u64) {
        for (t, _) in self.entries.iter_mut().rev() {
            if *t <= now {
                break;
            }
            *t = now;
        }
    }
}

/// The start of `now`'s second: the ring's stamp.
fn second_of(now: u64) -> u64 {
    now - now % 1_000
}

/// The tokens of successes made without a TPM threshold (SPEC §7.1): at most 60 per-second
/// slots, each stamped at the start of its second and counted like an exact entry, so the
/// current TPM is the sum of the slots of the trailing 60 seconds (this one included).
/// Stored as the exact window is, `[[second in ms, tokens], …]`, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct TpmRing(TpmWindow);

impl<'de> Deserialize<'de> for TpmRing {
    /// A stored ring is put in order, its stamps floored to their second and merged, and no
    /// more than 60 slots kept (a file written by hand).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let stored = TpmWindow::deserialize(d)?;
        let mut ring = TpmRing::default();
        for &(t, n) in stored.entries() {
            ring.add(t, n);
        }
        Ok(ring)
    }
}

impl TpmRing {
    /// The slots as `(start of the second, tokens)`, oldest first.
    pub fn slots(&self) -> impl Iterator<Item = &(u64, u64)> {
        self.0.entries()
    }

    /// Whether it holds no slot.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Tokens of the slots of the trailing 60 seconds at `now`.
    pub fn at(&self, now: u64) -> u64 {
        self.0.at(now)
    }

    /// Adds a success's tokens to its second's slot, dropping slots older than a minute.
    pub fn add(&mut self, now: u64, tokens: u64) {
        self.0.add(second_of(now), tokens);
    }

    /// Forgets the slots that can no longer count at `now` or later.
    pub fn expire(&mut self, now: u64) {
        self.0.expire(now);
    }

    /// Cuts back slots after `now`'s second (a clock that jumped back, SPEC §5.9) to it.
    pub fn cut_back(&mut self, now: u64) {
        self.0.cut_back(second_of(now));
    }
}

/// Tokens counted at `now` by the threshold: the exact window's and the ring's (SPEC §5.7).
pub fn tokens_at(exact: &TpmWindow, ring: &TpmRing, now: u64) -> u64 {
    exact.at(now) + ring.at(now)
}

/// When the sum of both falls below `threshold` again, if it is not below now.
pub fn clear_at(exact: &TpmWindow, ring: &TpmRing, now: u64, threshold: u64) -> Option<u64> {
    if ring.is_empty() {
        return exact.clear_at(now, threshold);
    }
    let mut a = exact.live(now).copied().peekable();
    let mut b = ring.0.live(now).copied().peekable();
    let merged = std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if y.0 < x.0 => b.next(),
        (Some(_), _) => a.next(),
        (None, _) => b.next(),
    });
    clear_time(tokens_at(exact, ring, now), merged, now, threshold)
}

/// When a trailing sum `total` falls below `threshold`, its `live` entries expiring oldest
/// first; `None` when it is below already.
fn clear_time(
    total: u64,
    live: impl Iterator<Item = (u64, u64)>,
    now: u64,
    threshold: u64,
) -> Option<u64> {
    let mut sum = total;
    if sum < threshold {
        return None;
    }
    for (t, n) in live {
        sum -= n;
        if sum < threshold {
            return Some(t + TPM_WINDOW_MS);
        }
    }
    Some(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(w: &TpmWindow) -> Vec<(u64, u64)> {
        w.entries().copied().collect()
    }

    /// SPEC §5.11: tokens count while `now − t < 60 000`; successes of one millisecond share
    /// an entry and expire together.
    #[test]
    fn tpm_window_merges_one_millisecond_and_expires_exactly() {
        let mut b = TpmWindow::default();
        b.add(1_000, 10);
        b.add(1_000, 5);
        b.add(1_001, 7);
        assert_eq!(entries(&b), [(1_000, 15), (1_001, 7)]);
        assert_eq!(b.at(60_999), 22);
        assert_eq!(b.at(61_000), 7);
        assert_eq!(b.at(61_001), 0);
        assert_eq!(b.clear_at(2_000, 20), Some(61_000));
        b.add(61_000, 1);
        assert_eq!(entries(&b), [(1_001, 7), (61_000, 1)]);
    }

    /// A success reported out of order goes in its place (merged with its millisecond), a
    /// clock that jumped back cuts later stamps back to now, and a stored window is put in
    /// order on load.
    #[test]
    fn tpm_window_stays_in_time_order() {
        let mut b = TpmWindow::default();
        for (t, n) in [(1_000, 1), (1_002, 2), (1_001, 3), (1_001, 4), (999, 5)] {
            b.add(t, n);
        }
        assert_eq!(entries(&b), [(999, 5), (1_000, 1), (1_001, 7), (1_002, 2)]);
        b.cut_back(1_000);
        assert_eq!(entries(&b), [(999, 5), (1_000, 1), (1_000, 7), (1_000, 2)]);
        assert_eq!(b.at(60_999), 10);
        assert_eq!(b.at(61_000), 0);
        let stored: TpmWindow =
            serde_json::from_value(serde_json::json!([[5, 1], [3, 2], [4, 3]])).expect("a window");
        assert_eq!(entries(&stored), [(3, 2), (4, 3), (5, 1)]);
    }

    /// SPEC §7.1: the ring keeps one slot per second of the trailing minute, however many
    /// successes there were; the current TPM is the sum of those slots.
    #[test]
    fn tpm_ring_keeps_sixty_per_second_slots_whatever_the_rate() {
        let mut r = TpmRing::default();
        // 100 successes a second for two minutes.
        for i in 0..12_000u64 {
            r.add(i * 10, 3);
        }
        let slots: Vec<(u64, u64)> = r.slots().copied().collect();
        assert_eq!(slots.len(), 60);
        assert_eq!(slots[0], (60_000, 300));
        assert_eq!(slots[59], (119_000, 300));
        assert_eq!(r.at(119_990), 60 * 300);
        // The oldest slot counts until a minute after its second began.
        assert_eq!(r.at(119_999), 60 * 300);
        assert_eq!(r.at(120_000), 59 * 300);
        assert_eq!(r.at(178_999), 300);
        assert_eq!(r.at(179_000), 0);
        // Stored as the exact window is; a hand-written ring is floored, merged and cut to
        // a minute on load.
        let stored: TpmRing = serde_json::from_value(serde_json::json!([
            [5_500, 1],
            [1_000, 2],
            [5_001, 3],
            [70_000, 4]
        ]))
        .expect("a ring");
        assert_eq!(
            stored.slots().copied().collect::<Vec<_>>(),
            [(70_000, 4)],
            "slots older than a minute before the newest are dropped"
        );
        let stored: TpmRing =
            serde_json::from_value(serde_json::json!([[5_500, 1], [1_000, 2], [5_001, 3]]))
                .expect("a ring");
        assert_eq!(
            stored.slots().copied().collect::<Vec<_>>(),
            [(1_000, 2), (5_000, 4)]
        );
    }

    /// SPEC §5.7: the threshold counts the exact entries and the ring's slots together, and
    /// the backend clears when enough of either has expired, oldest first.
    #[test]
    fn the_threshold_counts_exact_entries_and_ring_slots_together() {
        let mut exact = TpmWindow::default();
        let mut ring = TpmRing::default();
        ring.add(1_500, 10); // slot 1 000
        exact.add(1_200, 20);
        ring.add(2_100, 30); // slot 2 000
        exact.add(2_050, 40);
        assert_eq!(tokens_at(&exact, &ring, 2_100), 100);
        assert_eq!(clear_at(&exact, &ring, 2_100, 101), None);
        assert_eq!(clear_at(&exact, &ring, 2_100, 100), Some(61_000));
        assert_eq!(clear_at(&exact, &ring, 2_100, 90), Some(61_200));
        assert_eq!(clear_at(&exact, &ring, 2_100, 70), Some(62_000));
        assert_eq!(clear_at(&exact, &ring, 2_100, 40), Some(62_050));
        assert_eq!(tokens_at(&exact, &ring, 61_000), 90);
        assert_eq!(tokens_at(&exact, &ring, 62_049), 40);
    }

    proptest::proptest! {
        /// Successes over a few minutes, some through a plan with a threshold (exact) and
        /// some without (the ring): the threshold counts what a plain list would with the
        /// ring's stamps floored to their second, and clears when that list says; the ring
        /// never holds more than 60 slots.
        #[test]
        fn exact_and_ring_count_like_a_plain_list_of_floored_stamps(
            ops in proptest::collection::vec((0u64..3_000, 1u64..100, proptest::bool::ANY), 1..150),
            threshold in 1u64..3_000,
        ) {
            let (mut exact, mut ring) = (TpmWindow::default(), TpmRing::default());
            let mut all: Vec<(u64, u64)> = Vec::new();
            let mut now = 0u64;
            for (step, n, is_exact) in ops {
                now += step;
                if is_exact {
                    exact.add(now, n);
                    all.push((now, n));
                } else {
                    ring.add(now, n);
                    all.push((now - now % 1_000, n));
                }
                proptest::prop_assert!(ring.slots().count() <= 60);
                all.sort_by_key(|e| e.0);
                let live: Vec<(u64, u64)> = all
                    .iter()
                    .copied()
                    .filter(|(t, _)| now - t < TPM_WINDOW_MS)
                    .collect();
                let sum: u64 = live.iter().map(|e| e.1).sum();
                proptest::prop_assert_eq!(tokens_at(&exact, &ring, now), sum);
                let mut left = sum;
                let want = (sum >= threshold).then(|| {
                    live.iter()
                        .find(|(_, n)| {
                            left -= n;
                            left < threshold
                        })
                        .map_or(now, |(t, _)| t + TPM_WINDOW_MS)
                });
                proptest::prop_assert_eq!(clear_at(&exact, &ring, now, threshold), want);
            }
        }
    }

    proptest::proptest! {
        /// Time mostly going forward in steps of up to a few seconds, successes now and then
        /// reported a few milliseconds late, and now and then a clock jumping back: the
        /// window counts what a plain list of stamps would (SPEC §5.11), and stays in order.
        #[test]
        fn tpm_window_counts_like_a_plain_list(
            ops in proptest::collection::vec(
                (0u64..5_000, 0u64..4, 1u64..100, proptest::bool::weighted(0.05)),
                1..120,
            )
        ) {
            let mut b = TpmWindow::default();
            let mut all: Vec<(u64, u64)> = Vec::new();
            let mut clock = 100_000u64;
            for (step, late, n, jump) in ops {
                if jump {
                    clock -= step;
                    b.cut_back(clock);
                    for (t, _) in &mut all {
                        *t = (*t).min(clock);
                    }
                    continue;
                }
                clock += step;
                let now = clock - late;
                b.add(now, n);
                all.retain(|(t, _)| now.saturating_sub(*t) < TPM_WINDOW_MS);
                all.push((now, n));
                let e = entries(&b);
                proptest::prop_assert!(e.iter().zip(e.iter().skip(1)).all(|(x, y)| x.0 <= y.0));
                for at in [now, now + 1, now + 59_999, now + 60_000] {
                    let want: u64 = all
                        .iter()
                        .filter(|(t, _)| at.saturating_sub(*t) < TPM_WINDOW_MS)
                        .map(|(_, n)| n)
                        .sum();
                    proptest::prop_assert_eq!(b.at(at), want, "at {}", at);
                }
            }
        }
    }
}
