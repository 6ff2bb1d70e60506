//! A backend's TPM window (SPEC §5.7, §5.11): tokens of successes stamped when they ended,
//! counted while `now − t < 60 000`. Kept in time order (so on load too), one entry per
//! millisecond: adding, expiring and cutting back touch only the ends, so a step costs the
//! same however busy the minute was.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// The TPM window length (SPEC §5.7).
pub const TPM_WINDOW_MS: u64 = 60_000;

/// `(end of a success, tokens)` within the trailing minute, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct TpmWindow(VecDeque<(u64, u64)>);

impl<'de> Deserialize<'de> for TpmWindow {
    /// A stored window is put in time order (a file written by hand, or by an older llxprt).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut v = Vec::<(u64, u64)>::deserialize(d)?;
        v.sort_by_key(|(t, _)| *t);
        Ok(TpmWindow(v.into()))
    }
}

impl TpmWindow {
    /// The entries, oldest first.
    pub fn entries(&self) -> impl Iterator<Item = &(u64, u64)> {
        self.0.iter()
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Tokens counted at `now` (SPEC §5.11).
    pub fn at(&self, now: u64) -> u64 {
        self.live(now).map(|(_, n)| n).sum()
    }

    /// The entries that count at `now`, oldest first.
    fn live(&self, now: u64) -> impl Iterator<Item = &(u64, u64)> {
        self.0
            .iter()
            .filter(move |(t, _)| now.saturating_sub(*t) < TPM_WINDOW_MS)
    }

    /// When the trailing sum falls below `threshold` again, if it is not below now.
    pub fn clear_at(&self, now: u64, threshold: u64) -> Option<u64> {
        let mut sum = self.at(now);
        if sum < threshold {
            return None;
        }
        for (t, n) in self.live(now) {
            sum -= n;
            if sum < threshold {
                return Some(t + TPM_WINDOW_MS);
            }
        }
        Some(now)
    }

    /// Adds a success's tokens and forgets entries that can no longer count. Successes that
    /// end in the same millisecond share one entry (they count and expire together). A
    /// success stamped before the newest entry (threads of one process report out of order)
    /// goes in its place.
    pub fn add(&mut self, now: u64, tokens: u64) {
        while self
            .0
            .front()
            .is_some_and(|(t, _)| now.saturating_sub(*t) >= TPM_WINDOW_MS)
        {
            self.0.pop_front();
        }
        let at = self.0.iter().rposition(|(t, _)| *t <= now);
        match at.and_then(|i| self.0.get_mut(i)) {
            Some((t, n)) if *t == now => *n = n.saturating_add(tokens),
            _ => self.0.insert(at.map_or(0, |i| i + 1), (now, tokens)),
        }
    }

    /// Cuts back entries stamped after `now` (a clock that jumped back, SPEC §5.9) to `now`;
    /// they stay in time order.
    pub fn cut_back(&mut self, now: u64) {
        for (t, _) in self.0.iter_mut().rev() {
            if *t <= now {
                break;
            }
            *t = now;
        }
    }
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
