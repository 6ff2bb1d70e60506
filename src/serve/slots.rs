//! Request slots of `serve` (SPEC §7.1 "One profile cannot starve another"): each profile (a
//! load balancer or a model profile) has its own slots, [`PER_PROFILE`] by default, under a
//! global limit ([`GLOBAL`]); a request whose profile (or the whole server) is full waits, in
//! the order its profile's requests asked, up to [`QUEUE_TIMEOUT`], and gives up at once when
//! its client has gone away.
//!
//! Owns: counting running and waiting requests per profile and in all, and the view `/health`
//! reads ([`Slots::saturated`]). Must not: know about sockets or answers (the caller turns
//! [`Refused`] into a 503 or a log line).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Requests of one profile running at once, by default (SPEC §7.1).
pub const PER_PROFILE: usize = 16;
/// Requests running at once in all, by default (SPEC §7.1).
pub const GLOBAL: usize = 64;
/// How long a request waits for a slot before it is answered 503 (SPEC §7.1).
pub const QUEUE_TIMEOUT: Duration = Duration::from_secs(30);
/// A waiting request looks at its cancel flag at least this often.
const LOOK: Duration = Duration::from_millis(100);

/// The slots of every profile.
#[derive(Debug)]
pub struct Slots {
    per_profile: usize,
    global: usize,
    state: Mutex<State>,
    freed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// Requests running, all profiles.
    running: usize,
    /// Requests waiting, all profiles.
    waiting: usize,
    next_id: u64,
    /// Profiles with a request running or waiting (an idle profile has no entry).
    profiles: HashMap<String, Profile>,
}

#[derive(Debug, Default)]
struct Profile {
    running: usize,
    /// Waiting requests, oldest first.
    queue: VecDeque<u64>,
}

/// Why a request got no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// It waited the whole queue time.
    Full,
    /// Its client went away while it waited.
    Gone,
}

/// A profile whose slots are all busy while requests wait for them (or the whole server, when
/// `profile` is `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saturated {
    /// The profile; `None` for the global limit.
    pub profile: Option<String>,
    /// Requests running.
    pub busy: usize,
    /// The limit.
    pub limit: usize,
    /// Requests waiting.
    pub waiting: usize,
}

/// A running request's slot, given back when dropped (also when the request panics).
#[derive(Debug)]
pub struct Slot<'s> {
    slots: &'s Slots,
    profile: String,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Slots {
    /// `per_profile` slots for each profile, `global` in all (each at least 1).
    pub fn new(per_profile: usize, global: usize) -> Slots {
        Slots {
            per_profile: per_profile.max(1),
            global: global.max(1),
            state: Mutex::new(State::default()),
            freed: Condvar::new(),
        }
    }

    /// The per-profile limit.
    pub fn per_profile(&self) -> usize {
        self.per_profile
    }

    /// The global limit.
    pub fn global(&self) -> usize {
        self.global
    }

    /// Waits for a slot of `profile`, in the order its requests asked, up to `timeout`; gives
    /// up when `cancel` is set (its client went away).
    pub fn acquire(
        &self,
        profile: &str,
        timeout: Duration,
        cancel: &AtomicBool,
    ) -> Result<Slot<'_>, Refused> {
        let mut s = lock(&self.state);
        let (per, global) = (self.per_profile, self.global);
        let room = |s: &State, p: &Profile| s.running < global && p.running < per;
        let st = &mut *s;
        let p = st.profiles.entry(profile.to_string()).or_default();
        // The common case: room, and nobody of this profile waiting before us.
        if p.queue.is_empty() && p.running < per && st.running < global {
            p.running += 1;
            st.running += 1;
            return Ok(self.slot(profile));
        }
        let id = st.next_id;
        st.next_id += 1;
        st.waiting += 1;
        p.queue.push_back(id);
        let deadline = Instant::now() + timeout;
        let outcome = loop {
            let p = &s.profiles[profile];
            if p.queue.front() == Some(&id) && room(&s, p) {
                break Ok(());
            }
            if cancel.load(Ordering::SeqCst) {
                break Err(Refused::Gone);
            }
            let now = Instant::now();
            if now >= deadline {
                break Err(Refused::Full);
            }
            s = self
                .freed
                .wait_timeout(s, (deadline - now).min(LOOK))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        };
        let st = &mut *s;
        st.waiting -= 1;
        let p = st
            .profiles
            .get_mut(profile)
            .expect("a profile with a waiting request keeps its entry");
        p.queue.retain(|w| *w != id);
        if outcome.is_ok() {
            p.running += 1;
            st.running += 1;
        } else if p.running == 0 && p.queue.is_empty() {
            st.profiles.remove(profile);
        }
        if st.waiting > 0 {
            // The next of this profile may be able to start too, or our leaving let it.
            self.freed.notify_all();
        }
        outcome.map(|()| self.slot(profile))
    }

    fn slot(&self, profile: &str) -> Slot<'_> {
        Slot {
            slots: self,
            profile: profile.to_string(),
        }
    }

    /// Every profile whose slots are all busy while requests wait for them, by name, then the
    /// global limit if it is reached while requests wait.
    pub fn saturated(&self) -> Vec<Saturated> {
        let s = lock(&self.state);
        let mut out: Vec<Saturated> = s
            .profiles
            .iter()
            .filter(|(_, p)| p.running >= self.per_profile && !p.queue.is_empty())
            .map(|(name, p)| Saturated {
                profile: Some(name.clone()),
                busy: p.running,
                limit: self.per_profile,
                waiting: p.queue.len(),
            })
            .collect();
        out.sort_by(|a, b| a.profile.cmp(&b.profile));
        if s.running >= self.global && s.waiting > 0 {
            out.push(Saturated {
                profile: None,
                busy: s.running,
                limit: self.global,
                waiting: s.waiting,
            });
        }
        out
    }

    /// Requests running and waiting, in all.
    pub fn counts(&self) -> (usize, usize) {
        let s = lock(&self.state);
        (s.running, s.waiting)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut s = lock(&self.slots.state);
        let st = &mut *s;
        st.running -= 1;
        if let Some(p) = st.profiles.get_mut(&self.profile) {
            p.running -= 1;
            if p.running == 0 && p.queue.is_empty() {
                st.profiles.remove(&self.profile);
            }
        }
        if st.waiting > 0 {
            self.slots.freed.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(20);

    fn wait_for(what: &str, cond: impl Fn() -> bool) {
        let until = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < until, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// A full profile makes its own requests wait, in order, while another profile's requests
    /// start at once; `saturated` names the full one.
    #[test]
    fn a_full_profile_does_not_hold_up_another() {
        let slots = Slots::new(2, 8);
        let no = AtomicBool::new(false);
        let held: Vec<Slot<'_>> = (0..2)
            .map(|_| slots.acquire("a", LONG, &no).unwrap())
            .collect();
        let started = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for i in 0..3 {
                let (slots, started, no) = (&slots, &started, &no);
                s.spawn(move || {
                    let slot = slots.acquire("a", LONG, no).unwrap();
                    started.lock().unwrap().push(i);
                    drop(slot);
                });
                wait_for("the waiter", || slots.counts().1 == i + 1);
            }
            // Another profile starts at once.
            let b = slots.acquire("b", Duration::ZERO, &no).expect("b has room");
            assert_eq!(
                slots.saturated(),
                [Saturated {
                    profile: Some("a".into()),
                    busy: 2,
                    limit: 2,
                    waiting: 3
                }]
            );
            drop(b);
            assert!(started.lock().unwrap().is_empty(), "a is still full");
            drop(held);
        });
        assert_eq!(
            *started.lock().unwrap(),
            [0, 1, 2],
            "in the order they asked"
        );
        assert_eq!(slots.counts(), (0, 0));
        assert!(slots.state.lock().unwrap().profiles.is_empty());
    }

    /// A waiting request gives up after the queue time, or at once when its client is gone;
    /// either way it leaves the queue, and the global limit is reported when reached.
    #[test]
    fn waiting_ends_at_the_queue_time_or_when_the_client_is_gone() {
        let slots = Slots::new(4, 1);
        let no = AtomicBool::new(false);
        let held = slots.acquire("a", LONG, &no).unwrap();
        assert_eq!(
            slots
                .acquire("b", Duration::from_millis(50), &no)
                .unwrap_err(),
            Refused::Full,
            "the global limit holds"
        );
        let gone = AtomicBool::new(false);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| slots.acquire("b", LONG, &gone).map(drop));
            wait_for("the waiter", || slots.counts().1 == 1);
            assert_eq!(
                slots.saturated(),
                [Saturated {
                    profile: None,
                    busy: 1,
                    limit: 1,
                    waiting: 1
                }]
            );
            gone.store(true, Ordering::SeqCst);
            assert_eq!(waiter.join().unwrap(), Err(Refused::Gone));
        });
        assert_eq!(slots.counts(), (1, 0));
        drop(held);
        assert_eq!(slots.counts(), (0, 0));
        assert!(slots.state.lock().unwrap().profiles.is_empty());
    }
}
