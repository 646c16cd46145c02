//! The `iat` windows earlier configurations recorded proofs under, for configurations that share
//! a replay store (a reloaded gateway's).

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;

/// The `iat` windows of the configurations that shared a replay store before this one, so that
/// a wider window does not take again a proof recorded under a narrower one.
///
/// A proof is recorded until the end of the window it was accepted under, `iat` + window + 1:
/// a store then forgets it, since that window refuses it from then on. A configuration with a
/// wider window would accept it again. So each configuration's window, once another takes over
/// ([`install`](Self::install)), keeps holding every proof it could have accepted (issued up to
/// that window past the moment it ended): such a proof is judged by the narrowest window that
/// holds it. Proofs issued later are judged by the window in force alone; clients sending fresh
/// proofs see no difference.
///
/// Share one history ([`Dpop::window_history`](super::Dpop::window_history)) between the
/// configurations that share a replay store, and `install` each one's window just before it
/// takes over. It stays small: an entry a configuration, dropped once it can no longer decide
/// anything.
#[derive(Clone, Default)]
pub struct WindowHistory {
    /// What proofs are checked against: read on every proof, without a lock.
    held: Arc<ArcSwap<Vec<Held>>>,
    /// The window in force, and the writers' lock.
    current: Arc<Mutex<Option<i64>>>,
}

/// Proofs issued before `until` are accepted within `window` seconds of now only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    until: i64,
    window: i64,
}

impl WindowHistory {
    /// An empty history: no window installed yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// `window` is in force from now on (after the configuration before, if any).
    pub fn install(&self, window: Duration) {
        self.install_at(window, unix_now());
    }

    pub(crate) fn install_at(&self, window: Duration, now: i64) {
        let window = secs(window);
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let mut held: Vec<Held> = self.held.load().iter().copied().collect();
        if let Some(old) = *current {
            // What `old` could have accepted: a proof issued up to `old` seconds past now (and a
            // second more: it may still be answering requests while this one is installed).
            held.push(Held { until: now.saturating_add(old).saturating_add(2), window: old });
        }
        // An entry decides nothing once every proof it holds is older than the window in force:
        // the window refuses them, and the entry the next configuration leaves (when this one
        // ends) holds them all, to a window they are already older than.
        held.retain(|h| h.until.saturating_add(window) >= now);
        // One held to a window no narrower than a later one's holds nothing that one does not.
        let all = held.clone();
        held.retain(|h| !all.iter().any(|l| l != h && l.until >= h.until && l.window <= h.window));
        *current = Some(window);
        self.held.store(Arc::new(held));
    }

    /// The window a proof issued at `iat` is judged by, `window` being the configuration's.
    pub(crate) fn window_for(&self, iat: i64, window: i64) -> i64 {
        self.held.load().iter().filter(|h| iat < h.until).fold(window, |w, h| w.min(h.window))
    }
}

impl fmt::Debug for WindowHistory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WindowHistory").field("held", &self.held.load().len()).finish_non_exhaustive()
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(steps: &[(u64, i64)]) -> WindowHistory {
        let h = WindowHistory::new();
        for &(window, at) in steps {
            h.install_at(Duration::from_secs(window), at);
        }
        h
    }

    /// Widened from 60 to 600 at 1000: a proof the narrow window could have accepted (issued
    /// up to 1060) stays held to 60; one issued later has the whole 600.
    #[test]
    fn a_widening_holds_what_the_narrow_window_could_accept() {
        let h = history(&[(60, 0), (600, 1000)]);
        assert_eq!(h.window_for(900, 600), 60);
        assert_eq!(h.window_for(1061, 600), 60, "a second's margin");
        assert_eq!(h.window_for(1062, 600), 600);
    }

    /// 30, narrowed to 2, widened to 60: a proof issued 30 s ahead while 30 was in force is
    /// still held to 30 (an entry only at the widening would hold it to 2 seconds past that
    /// moment, and the proof's 31 s record would be its only guard).
    #[test]
    fn a_narrowing_leaves_its_entry_too() {
        let h = history(&[(30, 0), (2, 10), (60, 20)]);
        assert_eq!(h.window_for(40, 60), 30, "issued at 40, acceptable at 10 under 30");
        assert_eq!(h.window_for(23, 60), 2);
        assert_eq!(h.window_for(50, 60), 60);
    }

    /// Entries that can no longer decide anything go; one a later entry holds tighter goes.
    #[test]
    fn useless_entries_go() {
        let h = history(&[(10, 0), (60, 100), (600, 130)]);
        assert_eq!(h.window_for(105, 600), 10, "issued while 10 was in force");
        assert_eq!(h.window_for(115, 600), 60);
        assert_eq!(h.window_for(200, 600), 600);
        h.install_at(Duration::from_secs(600), 100_000);
        assert_eq!(**h.held.load(), [Held { until: 100_602, window: 600 }]);
        let h = history(&[(60, 0), (60, 10), (600, 20)]);
        assert_eq!(**h.held.load(), [Held { until: 82, window: 60 }], "(72, 60) holds nothing more");
        let h = history(&[(30, 0), (60, 10), (600, 20)]);
        assert_eq!(**h.held.load(), [Held { until: 42, window: 30 }, Held { until: 82, window: 60 }]);
    }

    /// Random reload sequences (windows of 1 to 60 s, widened and narrowed at random moments)
    /// and random proofs sent at random times, against a store that records each accepted proof
    /// until `iat` + its window + 1 and forgets it then: no proof is ever accepted again after
    /// its record ended. (Entries only at widenings fail this; so does an entry a second short.)
    #[test]
    fn no_proof_is_taken_twice() {
        for seed in 1..=3_000u64 {
            let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let mut next = |n: u64| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (rng % n) as i64
            };
            const WINDOWS: [u64; 6] = [1, 2, 5, 10, 30, 60];
            let h = WindowHistory::new();
            let mut current = WINDOWS[next(5) as usize] as i64;
            h.install_at(Duration::from_secs(current as u64), 0);
            let (mut now, mut proofs, mut records) = (0i64, Vec::new(), std::collections::HashMap::new());
            for _ in 0..400 {
                now += [0, 1, 1, 2, 3][next(5) as usize];
                if next(100) < 8 {
                    current = WINDOWS[next(6) as usize] as i64;
                    h.install_at(Duration::from_secs(current as u64), now);
                }
                if next(2) == 0 {
                    proofs.push(now + next(81) - 40);
                }
                for _ in 0..3 {
                    if proofs.is_empty() {
                        break;
                    }
                    let i = next(proofs.len() as u64) as usize;
                    let iat = proofs[i];
                    let window = h.window_for(iat, current);
                    if (now - iat).abs() > window {
                        continue;
                    }
                    match records.get(&i) {
                        Some(&ends) if ends > now => continue,
                        Some(&ends) => panic!(
                            "seed {seed}: proof {i} (iat {iat}) taken at {now} again, its record ended at {ends}"
                        ),
                        None => records.insert(i, iat + window + 1),
                    };
                }
            }
        }
    }

    /// Saturating: absurd windows or times do not overflow.
    #[test]
    fn no_overflow() {
        let h = history(&[(u64::MAX, i64::MAX - 1), (60, i64::MAX), (u64::MAX, i64::MAX)]);
        assert_eq!(h.window_for(i64::MAX - 10, i64::MAX), 60);
    }
}
