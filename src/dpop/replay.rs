//! Single use of DPoP proofs (RFC 9449 §11.1): a store of the proofs seen within the `iat`
//! window, keyed by a hash of the key thumbprint and the `jti`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

/// Default bound of [`InMemoryReplayStore`]: live entries.
pub const DEFAULT_REPLAY_ENTRIES: usize = 100_000;

/// The key of one proof: SHA-256 over the proof key's thumbprint and the `jti`. Neither raw
/// value is kept, and a `jti` is only ever compared for the key that signed it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplayKey(pub(crate) [u8; 32]);

impl ReplayKey {
    /// A key from its bytes (for a store of your own, or a test).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        ReplayKey(bytes)
    }
    /// The hash.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for ReplayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReplayKey({:02x}{:02x}{:02x}{:02x}..)", self.0[0], self.0[1], self.0[2], self.0[3])
    }
}

/// Why a proof was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayError {
    /// The proof was seen before and is still within its window: `401 invalid_dpop_proof`.
    Replayed,
    /// The store is full of live entries: `503`. Evicting one would let its proof be replayed.
    Full,
    /// The store could not be asked (a shared store that is down or too slow): `503`. Never
    /// mistaken for a replay.
    Unavailable,
}

/// The answer of [`ReplayStore::begin`]: known now, or after the store answered.
pub enum Recording {
    /// The store answered without waiting.
    Done(Result<(), ReplayError>),
    /// The store must be asked over the network first.
    Pending(Pin<Box<dyn Future<Output = Result<(), ReplayError>> + Send>>),
}

impl fmt::Debug for Recording {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Recording::Done(r) => f.debug_tuple("Done").field(r).finish(),
            Recording::Pending(_) => f.write_str("Pending(..)"),
        }
    }
}

/// Where the layer records the DPoP proofs it accepted, so that each is used once.
///
/// The in-memory store serves one process; replicas behind one load balancer need a shared
/// store (implement this trait over it).
pub trait ReplayStore: Send + Sync + 'static {
    /// Records `key` until `expires_at` (Unix seconds); [`ReplayError::Replayed`] if it is
    /// already recorded and not expired at `now`.
    fn record(&self, key: ReplayKey, expires_at: i64, now: i64) -> Result<(), ReplayError>;

    /// What the layer calls: [`record`](Self::record) by default. A store that must wait (one
    /// shared over the network) overrides it and answers [`Recording::Pending`].
    fn begin(&self, key: ReplayKey, expires_at: i64, now: i64) -> Recording {
        Recording::Done(self.record(key, expires_at, now))
    }
}

/// A bounded in-memory [`ReplayStore`]. Expired entries are dropped as time passes; when every
/// entry is still live and the bound is reached, new proofs are refused (`503`) rather than an
/// entry being evicted (which would reopen its replay).
pub struct InMemoryReplayStore {
    capacity: usize,
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    live: HashMap<ReplayKey, i64>,
    // Expiry order, to drop expired entries in O(log n) each.
    by_expiry: BinaryHeap<Reverse<(i64, ReplayKey)>>,
}

impl InMemoryReplayStore {
    /// A store of at most `capacity` live entries.
    pub fn new(capacity: usize) -> Self {
        InMemoryReplayStore { capacity, inner: Mutex::new(Entries::default()) }
    }

    /// Live entries now (expired ones not yet dropped included).
    pub fn len(&self) -> usize {
        self.lock().live.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // The map stays consistent even if a holder panicked: ignore poisoning.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for InMemoryReplayStore {
    fn default() -> Self {
        InMemoryReplayStore::new(DEFAULT_REPLAY_ENTRIES)
    }
}

impl fmt::Debug for InMemoryReplayStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryReplayStore").field("capacity", &self.capacity).finish_non_exhaustive()
    }
}

impl ReplayStore for InMemoryReplayStore {
    fn record(&self, key: ReplayKey, expires_at: i64, now: i64) -> Result<(), ReplayError> {
        let mut entries = self.lock();
        let Entries { live, by_expiry } = &mut *entries;
        while let Some(Reverse((at, old))) = by_expiry.peek().copied() {
            if at > now {
                break;
            }
            by_expiry.pop();
            if live.get(&old) == Some(&at) {
                live.remove(&old);
            }
        }
        if let Some(&at) = live.get(&key)
            && at > now
        {
            return Err(ReplayError::Replayed);
        }
        if live.len() >= self.capacity {
            return Err(ReplayError::Full);
        }
        live.insert(key, expires_at);
        by_expiry.push(Reverse((expires_at, key)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> ReplayKey {
        ReplayKey([n; 32])
    }

    #[test]
    fn once_then_replayed_then_expired() {
        let store = InMemoryReplayStore::new(2);
        assert_eq!(store.record(key(1), 100, 0), Ok(()));
        assert_eq!(store.record(key(1), 100, 50), Err(ReplayError::Replayed));
        assert_eq!(store.record(key(2), 100, 50), Ok(()));
        // Full of live entries: refused, nothing evicted.
        assert_eq!(store.record(key(3), 100, 50), Err(ReplayError::Full));
        assert_eq!(store.record(key(1), 100, 99), Err(ReplayError::Replayed));
        // Once expired, the room is back.
        assert_eq!(store.record(key(3), 200, 100), Ok(()));
        assert_eq!(store.len(), 1);
    }
}
