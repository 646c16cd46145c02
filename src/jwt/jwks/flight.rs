//! One fetch at a time (single flight), and the fetch an unknown `kid` causes: decided without
//! waiting on a lock, run in a task of its own so that a dropped request cannot take it along.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;

use super::*;

#[derive(Default)]
pub(super) struct RefreshState {
    pub(super) last_attempt: Option<Instant>,
    /// The last fetch caused by an unknown `kid` (what the cooldown limits).
    pub(super) last_miss_fetch: Option<Instant>,
    /// The fetch under way, if any: its channel closes when the fetch lands.
    pub(super) in_flight: Option<watch::Receiver<()>>,
}

/// The one fetch in flight. Dropping it (the fetch landed, or whoever ran it is gone) frees the
/// slot and wakes everyone waiting for it.
pub(super) struct Flight {
    pub(super) set: KeySet,
    pub(super) _landed: watch::Sender<()>,
}

impl Flight {
    pub(super) async fn fetch(&self) -> Result<usize, FetchError> {
        match &self.set.inner.remote {
            Some(remote) => self.set.fetch_and_store(remote).await,
            None => Err(FetchError::Static),
        }
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        self.set.state().in_flight = None;
    }
}

/// What [`KeySet::start_fetch`] found.
pub(super) enum Start {
    /// No fetch was under way and one may start: run it.
    Lead(Flight, watch::Receiver<()>),
    /// A fetch is under way: wait for it.
    Join(watch::Receiver<()>),
    /// Nothing under way, and none may start now.
    Refused,
}

/// Waits until the fetch behind `rx` has landed (its sender is dropped).
pub(super) async fn landed(mut rx: watch::Receiver<()>) {
    while rx.changed().await.is_ok() {}
}

impl KeySet {
    pub(super) fn state(&self) -> std::sync::MutexGuard<'_, RefreshState> {
        // Nothing panics while holding it; if something did, the bookkeeping is still sound.
        self.inner.refresh.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Joins the fetch under way, or starts one if `may_start` agrees (it may record why it
    /// started). Decided at once, under a lock held for a few instructions.
    pub(super) fn start_fetch(&self, may_start: impl FnOnce(&mut RefreshState, Instant) -> bool) -> Start {
        let mut state = self.state();
        if let Some(rx) = &state.in_flight {
            return Start::Join(rx.clone());
        }
        let now = Instant::now();
        if !may_start(&mut state, now) {
            return Start::Refused;
        }
        state.last_attempt = Some(now);
        let (tx, rx) = watch::channel(());
        state.in_flight = Some(rx.clone());
        drop(state);
        Start::Lead(Flight { set: self.clone(), _landed: tx }, rx)
    }

    /// Refetches because a token needs a key the snapshot `seen` did not have (`has_key` tells
    /// whether a snapshot has it). Returns the newest snapshot, fetched or not. Concurrent
    /// callers share one fetch; the cooldown bounds how often a fetch happens at all.
    pub(crate) async fn refresh_for_missing_key(
        &self,
        seen: u64,
        has_key: impl Fn(&Keys) -> bool,
    ) -> Arc<Keys> {
        let Some(remote) = &self.inner.remote else {
            return self.inner.current.load_full();
        };
        // A fetch we join may be a routine one that started before the issuer published the key;
        // then one miss fetch of our own may follow, if the cooldown allows. Two rounds at most.
        for _ in 0..2 {
            let current = self.inner.current.load_full();
            if current.generation != seen && has_key(&current) {
                return current;
            }
            // The cooldown counts only fetches caused by unknown kids: a routine refresh or the
            // first load must not make a freshly rotated key wait for it.
            let start = self.start_fetch(|state, now| {
                let (last, interval) = if current.is_loaded() {
                    (&mut state.last_miss_fetch, remote.config.cooldown)
                } else {
                    (&mut state.last_attempt, remote.config.retry_unavailable)
                };
                if last.is_some_and(|at| now.saturating_duration_since(at) < interval) {
                    return false;
                }
                *last = Some(now);
                true
            });
            match start {
                Start::Refused => break,
                Start::Join(rx) => landed(rx).await,
                Start::Lead(flight, rx) => {
                    // In a task of its own: if this request is dropped, the fetch still lands.
                    match tokio::runtime::Handle::try_current() {
                        Ok(runtime) => {
                            runtime.spawn(async move {
                                let _ = flight.fetch().await;
                            });
                            landed(rx).await;
                        }
                        Err(_) => {
                            let _ = flight.fetch().await;
                        }
                    }
                    break;
                }
            }
        }
        self.inner.current.load_full()
    }
}
