//! The `iat` windows earlier configurations recorded proofs under, for configurations that share
//! a replay store (a reloaded gateway's).

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::time::Clock;

/// The `iat` windows of the configurations that shared a replay store before this one, so that
/// a wider window does not take again a proof recorded under a narrower one.
///
/// A proof is recorded until the end of the window it was accepted under, `iat` + window + 1:
/// a store then forgets it, since that window refuses it from then on. A configuration with a
/// wider window would accept it again. So each configuration's window, once another takes over
/// ([`install`](Self::install)), keeps holding every proof it could have accepted (issued up to
/// that window past the moment it ended, and two seconds more): such a proof is judged by the
/// narrowest window that holds it. Proofs issued later are judged by the window in force alone;
/// clients sending fresh proofs see no difference. The window installed last also bounds every
/// configuration sharing the history, and a proof is recorded for as long as that window could
/// take it, whichever configuration took it: one still answering requests after another took
/// over is safe, however long it takes.
///
/// Share one history ([`Dpop::window_history`](super::Dpop::window_history)) between the
/// configurations that share a replay store, install the first one's window, then each next
/// one's just before it takes over (not before: a window installed for a configuration that
/// never runs holds proofs for nothing). It stays small: an entry a configuration, dropped once it
/// can no longer decide anything. Its clock must be the configurations' (both default to the
/// system clock).
///
/// ```
/// use std::time::Duration;
/// use tower_bearer::dpop::{Dpop, InMemoryReplayStore, WindowHistory};
///
/// let store = std::sync::Arc::new(InMemoryReplayStore::default());
/// let history = WindowHistory::new();
/// let configure = |window: Duration| -> Result<Dpop, tower_bearer::ConfigError> {
///     let dpop = Dpop::allowed("https://api.example")?
///         .iat_window(window)
///         .replay_store(store.clone())
///         .window_history(history.clone());
///     // Last, once nothing can refuse it: it takes over now.
///     history.install(window);
///     Ok(dpop)
/// };
/// let first = configure(Duration::from_secs(60))?;
/// // A reload, later: proofs `first` could accept stay held to its 60 seconds.
/// let wider = configure(Duration::from_secs(300))?;
/// # Ok::<(), tower_bearer::ConfigError>(())
/// ```
#[derive(Clone, Default)]
pub struct WindowHistory {
    /// What proofs are checked against: read on every proof, without a lock.
    now: Arc<ArcSwap<Snapshot>>,
    /// The writers' lock.
    writer: Arc<Mutex<()>>,
    clock: Clock,
}

#[derive(Debug, Default)]
struct Snapshot {
    /// The window installed last, in seconds; `None` before the first.
    current: Option<i64>,
    held: Vec<Held>,
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

    /// Where "now" comes from when a window is installed (default: the system clock): the
    /// configurations' [`Dpop::clock`](super::Dpop::clock).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// `window` is in force from now on, after the window installed before it, if any.
    pub fn install(&self, window: Duration) {
        self.install_at(window, self.clock.unix_now());
    }

    pub(crate) fn install_at(&self, window: Duration, now: i64) {
        let window = i64::try_from(window.as_secs()).unwrap_or(i64::MAX);
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let before = self.now.load();
        let mut held = before.held.clone();
        if let Some(old) = before.current {
            // What `old` could have accepted: a proof issued up to `old` seconds past now, that
            // second included (`until` is exclusive), and one more to spare.
            held.push(Held { until: now.saturating_add(old).saturating_add(2), window: old });
        }
        // An entry decides nothing once every proof it holds is older than the window in force,
        // which bounds every configuration: the window refuses them, and the entry the next
        // install leaves holds them all, to a window they are already older than.
        held.retain(|h| h.until.saturating_add(window) >= now);
        // One held to a window no narrower than a later one's holds nothing that one does not
        // (of two alike, the first goes).
        let dominated = |i: usize, h: &Held| {
            held.iter()
                .enumerate()
                .any(|(j, l)| j != i && l.until >= h.until && l.window <= h.window && (l != h || j > i))
        };
        let kept: Vec<Held> =
            held.iter().enumerate().filter(|&(i, h)| !dominated(i, h)).map(|(_, h)| *h).collect();
        self.now.store(Arc::new(Snapshot { current: Some(window), held: kept }));
    }

    /// The window a proof issued at `iat` is judged by, `window` being its configuration's.
    pub(crate) fn window_for(&self, iat: i64, window: i64) -> i64 {
        let now = self.now.load();
        let window = now.current.map_or(window, |current| window.min(current));
        now.held.iter().filter(|h| iat < h.until).fold(window, |w, h| w.min(h.window))
    }

    /// The window a proof issued at `iat` is recorded for: what the window installed last would
    /// judge it by, whichever configuration took it. A configuration taken over by a wider one
    /// may still answer a request or two, with its narrower window; recorded for that window
    /// only, a proof it took could be taken again by the wider one once its record ended.
    pub(crate) fn record_window(&self, iat: i64, window: i64) -> i64 {
        let current = self.now.load().current;
        self.window_for(iat, current.unwrap_or(window))
    }
}

/// Where a proof has gone out of its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutOfWindow {
    Stale,
    Ahead,
}

/// Until when the use of a proof issued at `iat`, verified earlier with a record to end at
/// `verified_until`, is recorded when it is recorded `now`: its window judged again then as
/// `window` (both ways: a proof ahead of the window is not held by the window's entry in a
/// history), its record for `record_window` (see [`WindowHistory::record_window`]).
pub(crate) fn record_until(
    iat: i64,
    verified_until: i64,
    window: i64,
    record_window: i64,
    now: i64,
) -> Result<i64, OutOfWindow> {
    let until = verified_until.min(iat.saturating_add(record_window).saturating_add(1));
    if until <= now || iat < now.saturating_sub(window) {
        return Err(OutOfWindow::Stale);
    }
    if iat > now.saturating_add(window) {
        return Err(OutOfWindow::Ahead);
    }
    Ok(until)
}

impl fmt::Debug for WindowHistory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let now = self.now.load();
        f.debug_struct("WindowHistory")
            .field("current", &now.current)
            .field("held", &now.held.len())
            .finish_non_exhaustive()
    }
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
        assert_eq!(h.now.load().held, [Held { until: 100_602, window: 600 }]);
        let h = history(&[(60, 0), (60, 10), (600, 20)]);
        assert_eq!(h.now.load().held, [Held { until: 82, window: 60 }], "(72, 60) holds nothing more");
        let h = history(&[(30, 0), (60, 10), (600, 20)]);
        assert_eq!(h.now.load().held, [Held { until: 42, window: 30 }, Held { until: 82, window: 60 }]);
    }

    /// Random reload sequences (windows of 1 to 60 s, widened and narrowed at random moments)
    /// and random proofs, against a store that forgets each record when it ends: no proof is
    /// ever taken twice. As in the layer, a proof is verified by a configuration (mostly the one
    /// in force, now and then any earlier one, still answering a request it took before it was
    /// taken over) and recorded up to three seconds later (the token's validation may wait), its
    /// window judged again then, through the crate's own `record_until`. Each of these fails it
    /// (tried): entries only at widenings, an entry without its margin, pruning too early,
    /// configurations not bound by the window installed last, records for a configuration's own
    /// window, no judging of a proof ahead of the window at record time.
    #[test]
    fn no_proof_is_taken_twice() {
        use std::collections::{HashMap, HashSet};
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
            let first = WINDOWS[next(6) as usize] as i64;
            h.install_at(Duration::from_secs(first as u64), 0);
            // Every configuration's window, the one in force last.
            let mut configs = vec![first];
            let mut proofs = Vec::new();
            // Records: proof → when it ends. Verified, not yet recorded: (when, proof, its
            // configuration's window, the expiry verification gave).
            let (mut records, mut taken) = (HashMap::new(), HashSet::new());
            let mut pending: Vec<(i64, usize, i64, i64)> = Vec::new();
            let mut now = 0i64;
            for _ in 0..400 {
                now += [0, 1, 1, 2, 3][next(5) as usize];
                pending.sort_by_key(|p| p.0);
                while pending.first().is_some_and(|p| p.0 <= now) {
                    let (at, i, window, verified_until) = pending.remove(0);
                    let iat = proofs[i];
                    // `Dpop::record_until`: judged again by the window now.
                    let until = record_until(
                        iat,
                        verified_until,
                        h.window_for(iat, window),
                        h.record_window(iat, window),
                        at,
                    );
                    let Some(until) = until.ok().filter(|_| records.get(&i).is_none_or(|&ends| ends <= at))
                    else {
                        continue;
                    };
                    assert!(taken.insert(i), "seed {seed}: proof {i} (iat {iat}) taken again at {at}");
                    records.insert(i, until);
                }
                if next(100) < 8 {
                    let window = WINDOWS[next(6) as usize];
                    configs.push(window as i64);
                    h.install_at(Duration::from_secs(window), now);
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
                    // Mostly the configuration in force; now and then any earlier one, still
                    // answering a request it took before it was taken over, however long ago.
                    let config = if next(4) == 0 {
                        configs[next(configs.len() as u64) as usize]
                    } else {
                        configs[configs.len() - 1]
                    };
                    let window = h.window_for(iat, config);
                    if (now - iat).abs() > window {
                        continue;
                    }
                    pending.push((now + next(4), i, config, iat + h.record_window(iat, config) + 1));
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
