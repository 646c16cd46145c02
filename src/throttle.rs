//! Warnings that would repeat at every request during an outage (keys or introspection
//! unavailable): the first is logged at once, then at most one line per interval, saying how many
//! were held back. A 100 000 request/s outage thus writes a line every few seconds, not 100 000
//! a second. Metrics still count every request (`observe`).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Least time between two lines of one call site.
pub(crate) const INTERVAL: Duration = Duration::from_secs(5);

/// The throttle of one call site: a `static`, lock-free.
pub(crate) struct Throttle {
    /// When the next line may be written, in milliseconds since [`epoch`] (0: at once).
    next_at: AtomicU64,
    /// Occurrences held back since the last line.
    held: AtomicU64,
}

/// What the throttle's times count from. tokio's clock, so that tests with a paused clock move
/// it; the system's monotonic clock elsewhere.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Throttle {
    pub(crate) const fn new() -> Self {
        Throttle { next_at: AtomicU64::new(0), held: AtomicU64::new(0) }
    }

    /// Whether this occurrence gets a line: `Some(n)` with the `n` occurrences held back since
    /// the last line, `None` when it is held back itself.
    pub(crate) fn admit(&self) -> Option<u64> {
        let now = u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX);
        let next_at = self.next_at.load(Ordering::Relaxed);
        let interval = u64::try_from(INTERVAL.as_millis()).unwrap_or(u64::MAX);
        if now >= next_at
            && self
                .next_at
                .compare_exchange(next_at, now.saturating_add(interval), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.held.swap(0, Ordering::Relaxed));
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn first_line_then_one_summary_per_interval() {
        static SITE: Throttle = Throttle::new();
        assert_eq!(SITE.admit(), Some(0));
        for _ in 0..999 {
            assert_eq!(SITE.admit(), None);
        }
        tokio::time::advance(INTERVAL).await;
        assert_eq!(SITE.admit(), Some(999), "the summary counts what was held back");
        assert_eq!(SITE.admit(), None);
        tokio::time::advance(INTERVAL).await;
        assert_eq!(SITE.admit(), Some(1));
    }
}
