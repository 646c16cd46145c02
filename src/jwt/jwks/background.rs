//! Refreshing in the background: ahead of expiry (the loop of a key set built with
//! `background_refresh`), or once an expired set is read.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::*;

/// `now + after`, saturating far in the future instead of overflowing (a JWKS may send any
/// `max-age`, and `max_ttl` may be set very large).
pub(super) fn deadline(after: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(after).unwrap_or_else(|| now + Duration::from_secs(10 * 365 * 24 * 3600))
}

/// The background loop never refetches more often than this, whatever a server's `max-age`
/// and the configured bounds say.
pub(super) const BACKGROUND_MIN_WAIT: Duration = Duration::from_millis(100);

/// The background refresh loop: load, then refresh at 90 % of each set's lifetime; on failure,
/// back off exponentially. Holds only a weak reference between rounds, and ends as soon as the
/// key set is dropped (`stopped` resolves).
pub(super) async fn background_refresh(set: Weak<Inner>, mut stopped: tokio::sync::oneshot::Receiver<()>) {
    let mut failures = 0u32;
    loop {
        let wait = {
            let Some(inner) = set.upgrade() else { return };
            let Some(remote) = &inner.remote else { return };
            let config = &remote.config;
            let keys = inner.current.load();
            match keys.expires_at {
                _ if failures > 0 => {
                    let backoff = config.retry_unavailable.saturating_mul(1 << (failures - 1).min(16));
                    backoff.min(config.cooldown.max(config.retry_unavailable)).max(BACKGROUND_MIN_WAIT)
                }
                None => Duration::ZERO,
                Some(at) => {
                    at.saturating_duration_since(Instant::now()).mul_f64(0.9).max(BACKGROUND_MIN_WAIT)
                }
            }
        };
        // The channel resolves (with an error) when the key set is dropped.
        if tokio::time::timeout(wait, &mut stopped).await.is_ok() {
            return;
        }
        let Some(inner) = set.upgrade() else { return };
        let keys = KeySet { inner };
        let ok = match keys.start_fetch(|_, _| true) {
            Start::Lead(flight, _) => flight.fetch().await.is_ok(),
            // Someone else's fetch is as good as ours: take its outcome.
            Start::Join(rx) => {
                landed(rx).await;
                keys.last_fetch_ok()
            }
            Start::Refused => true,
        };
        failures = if ok { 0 } else { failures.saturating_add(1) };
    }
}

impl KeySet {
    pub(super) fn spawn_background_refresh(&self) {
        if self.inner.background.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.inner.background.store(false, Ordering::Release);
            return;
        };
        let this = self.clone();
        runtime.spawn(async move {
            if let Some(remote) = &this.inner.remote {
                // Wait for a fetch already under way rather than give up: giving up would let
                // every request on the expired set spawn another task meanwhile.
                loop {
                    let still_expired =
                        this.inner.current.load().expires_at.is_some_and(|at| Instant::now() >= at);
                    if !still_expired {
                        break;
                    }
                    match this.start_fetch(|_, _| true) {
                        Start::Join(rx) => landed(rx).await,
                        Start::Lead(flight, _) => {
                            if flight.fetch().await.is_err() {
                                // Stale-if-error: keep serving the old set, try again after the
                                // cooldown rather than on the very next request.
                                this.extend_expiry(remote.config.cooldown);
                            }
                            break;
                        }
                        Start::Refused => break,
                    }
                }
            }
            this.inner.background.store(false, Ordering::Release);
        });
    }

    pub(super) fn extend_expiry(&self, by: Duration) {
        let current = self.inner.current.load_full();
        if current.expires_at.is_none() {
            return;
        }
        let keys = current.keys.iter().map(VerifyingKey::clone_shallow).collect();
        self.inner.current.store(Arc::new(Keys {
            keys,
            generation: current.generation,
            expires_at: Some(deadline(by)),
        }));
    }
}
