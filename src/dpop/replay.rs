//! Single use of DPoP proofs (RFC 9449 §11.1): a store of the proofs seen within the `iat`
//! window, keyed by a hash of the key thumbprint and the `jti`, with a share of the store for
//! each proof key.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Default bound of [`InMemoryReplayStore`]: live entries.
pub const DEFAULT_REPLAY_ENTRIES: usize = 100_000;

/// Default share of one proof key in an [`InMemoryReplayStore`]: a tenth of its entries.
pub const DEFAULT_REPLAY_ENTRIES_PER_KEY: usize = DEFAULT_REPLAY_ENTRIES / 10;

/// The key of one proof: SHA-256 over the proof key's thumbprint and the `jti`, and the proof
/// key it belongs to (its RFC 7638 thumbprint, the token's `cnf.jkt`). No raw `jti` is kept, and
/// a `jti` is only ever compared for the key that signed it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplayKey {
    pub(crate) proof: [u8; 32],
    pub(crate) owner: [u8; 32],
}

impl ReplayKey {
    /// The key of the proof hashed to `proof`, made with the key whose thumbprint is `owner`
    /// (for a store of your own, or a test).
    pub fn new(proof: [u8; 32], owner: [u8; 32]) -> Self {
        ReplayKey { proof, owner }
    }
    /// A key from the proof's hash alone: its own owner, so no other key shares its budget (for
    /// a store of your own, or a test).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        ReplayKey { proof: bytes, owner: bytes }
    }
    /// The proof's hash: what a store records.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.proof
    }
    /// The SHA-256 thumbprint of the key that made the proof: what a store counts, so that one
    /// client cannot take the room every other client needs.
    pub fn owner(&self) -> &[u8; 32] {
        &self.owner
    }
}

impl fmt::Debug for ReplayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (p, o) = (&self.proof, &self.owner);
        write!(
            f,
            "ReplayKey({:02x}{:02x}{:02x}{:02x}.. of {:02x}{:02x}{:02x}{:02x}..)",
            p[0], p[1], p[2], p[3], o[0], o[1], o[2], o[3]
        )
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
    /// The proof's key already holds its share of the store (a client minting proofs faster
    /// than they expire): `429` for that key's requests, while other keys are still served.
    KeyOverBudget,
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

/// A store shared with other holders (one kept across configuration reloads, say).
impl<T: ReplayStore + ?Sized> ReplayStore for std::sync::Arc<T> {
    fn record(&self, key: ReplayKey, expires_at: i64, now: i64) -> Result<(), ReplayError> {
        (**self).record(key, expires_at, now)
    }
    fn begin(&self, key: ReplayKey, expires_at: i64, now: i64) -> Recording {
        (**self).begin(key, expires_at, now)
    }
}

/// A bounded in-memory [`ReplayStore`]. Expired entries are dropped as time passes; when every
/// entry is still live and the bound is reached, new proofs are refused (`503`) rather than an
/// entry being evicted (which would reopen its replay).
///
/// One proof key may hold only a share of the entries ([`per_key`](Self::per_key), a tenth by
/// default): one token and its key can mint proofs without end, and without a share they
/// would fill the store and every DPoP request would get `503`. Past its share a key's new
/// proofs get `429` until some of its entries expire.
pub struct InMemoryReplayStore {
    // Atomics: `resize` changes them on a store in use, under the lock, and `record` reads them
    // under it, so a proof is judged by one pair.
    capacity: AtomicUsize,
    per_key: AtomicUsize,
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    live: HashMap<ReplayKey, i64>,
    // Expiry order, to drop expired entries in O(log n) each.
    by_expiry: BinaryHeap<Reverse<(i64, ReplayKey)>>,
    // Live entries of each proof key that has any.
    per_owner: HashMap<[u8; 32], usize>,
}

impl InMemoryReplayStore {
    /// A store of at most `capacity` live entries, a tenth of them (at least one) for any one
    /// proof key.
    pub fn new(capacity: usize) -> Self {
        InMemoryReplayStore {
            capacity: AtomicUsize::new(capacity),
            per_key: AtomicUsize::new((capacity / 10).max(1)),
            inner: Mutex::new(Entries::default()),
        }
    }

    /// Most live entries one proof key may hold. At the default `iat` window (±60 s) an entry
    /// lives up to 121 s, so the default share (10 000 of 100 000) lets one key make about 80
    /// requests a second; raise it for a client that makes more with one key. A share as large
    /// as the store is no share at all.
    pub fn per_key(mut self, limit: usize) -> Self {
        *self.per_key.get_mut() = limit.max(1);
        self
    }

    /// New bounds for a store in use, as [`new`](Self::new) and [`per_key`](Self::per_key)
    /// would set them: for a configuration reloaded with other bounds, say. The proofs recorded
    /// stay recorded, so none of them can be replayed across the change (a new store would
    /// forget them). A store made smaller keeps what it holds past its new bounds until it
    /// expires, meanwhile refusing new proofs as a full store does (`503`), and those of a key
    /// over its new share as such (`429`).
    pub fn resize(&self, capacity: usize, per_key: usize) {
        // Under the lock: a proof is judged by one pair of bounds, old or new.
        let _entries = self.lock();
        self.capacity.store(capacity, Ordering::Relaxed);
        self.per_key.store(per_key.max(1), Ordering::Relaxed);
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
        f.debug_struct("InMemoryReplayStore")
            .field("capacity", &self.capacity.load(Ordering::Relaxed))
            .field("per_key", &self.per_key.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl ReplayStore for InMemoryReplayStore {
    fn record(&self, key: ReplayKey, expires_at: i64, now: i64) -> Result<(), ReplayError> {
        let mut entries = self.lock();
        let (capacity, per_key) =
            (self.capacity.load(Ordering::Relaxed), self.per_key.load(Ordering::Relaxed));
        let Entries { live, by_expiry, per_owner } = &mut *entries;
        while let Some(Reverse((at, old))) = by_expiry.peek().copied() {
            if at > now {
                break;
            }
            by_expiry.pop();
            if live.get(&old) == Some(&at) {
                live.remove(&old);
                if let Some(count) = per_owner.get_mut(&old.owner) {
                    *count -= 1;
                    if *count == 0 {
                        per_owner.remove(&old.owner);
                    }
                }
            }
        }
        // Every entry left is live (at > now): one for this key is a replay.
        if live.contains_key(&key) {
            return Err(ReplayError::Replayed);
        }
        // A key over its share is refused before the store as a whole is judged, so that it
        // gets `429` and other keys keep their room. A share as large as the store is none.
        let owned = per_owner.get(&key.owner).copied().unwrap_or(0);
        if owned >= per_key && per_key < capacity {
            return Err(ReplayError::KeyOverBudget);
        }
        if live.len() >= capacity {
            return Err(ReplayError::Full);
        }
        live.insert(key, expires_at);
        by_expiry.push(Reverse((expires_at, key)));
        per_owner.insert(key.owner, owned + 1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> ReplayKey {
        ReplayKey::from_bytes([n; 32])
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

    /// New bounds apply to the next proof; what was recorded stays a replay, and a store made
    /// smaller than what it holds refuses new proofs until enough expire.
    #[test]
    fn a_resized_store_keeps_its_proofs() {
        let store = InMemoryReplayStore::new(4);
        assert_eq!(store.record(key(1), 100, 0), Ok(()));
        assert_eq!(store.record(key(2), 100, 0), Ok(()));
        store.resize(1, 1);
        assert_eq!(store.record(key(1), 100, 10), Err(ReplayError::Replayed));
        assert_eq!(store.record(key(3), 100, 10), Err(ReplayError::Full));
        assert_eq!(store.len(), 2);
        store.resize(10, 10);
        assert_eq!(store.record(key(3), 100, 10), Ok(()));
        assert_eq!(store.record(key(2), 100, 10), Err(ReplayError::Replayed));
        // Back to a share: one proof key may hold one entry.
        store.resize(10, 1);
        assert_eq!(store.record(proof_of(7, 1), 100, 10), Ok(()));
        assert_eq!(store.record(proof_of(7, 2), 100, 10), Err(ReplayError::KeyOverBudget));
    }

    /// Proof `n` of the key `owner`.
    fn proof_of(owner: u8, n: u32) -> ReplayKey {
        let mut proof = [owner; 32];
        proof[..4].copy_from_slice(&n.to_be_bytes());
        ReplayKey::new(proof, [owner; 32])
    }

    #[test]
    fn one_key_takes_its_share_and_no_more() {
        let store = InMemoryReplayStore::new(10).per_key(3);
        for n in 0..3 {
            assert_eq!(store.record(proof_of(1, n), 100, 0), Ok(()));
        }
        // The fourth proof of key 1 is refused, a replay of its first still reads as a replay,
        // and another key has its room.
        assert_eq!(store.record(proof_of(1, 3), 100, 0), Err(ReplayError::KeyOverBudget));
        assert_eq!(store.record(proof_of(1, 0), 100, 0), Err(ReplayError::Replayed));
        assert_eq!(store.record(proof_of(2, 0), 100, 0), Ok(()));
        // A refused proof took no room: once key 1's proofs expire it has its whole share again.
        assert_eq!(store.record(proof_of(1, 4), 200, 50), Err(ReplayError::KeyOverBudget));
        for n in 5..8 {
            assert_eq!(store.record(proof_of(1, n), 200, 100), Ok(()), "proof {n}");
        }
        assert_eq!(store.record(proof_of(1, 8), 200, 100), Err(ReplayError::KeyOverBudget));
        // Key 2's entry expired with key 1's first three: the store holds key 1's three.
        assert_eq!(store.len(), 3);
    }

    #[test]
    fn shares_do_not_lift_the_bound_of_the_store() {
        // Four keys of three each, in a store of ten: the tenth entry fills it, and the last
        // key's third proof is a 503 (the store), not a 429 (its share).
        let store = InMemoryReplayStore::new(10).per_key(3);
        let mut refused = Vec::new();
        for owner in 1..=4u8 {
            for n in 0..3 {
                if let Err(e) = store.record(proof_of(owner, n), 100, 0) {
                    refused.push((owner, n, e));
                }
            }
        }
        assert_eq!(refused, [(4, 1, ReplayError::Full), (4, 2, ReplayError::Full)]);
        assert_eq!(InMemoryReplayStore::new(5).per_key.into_inner(), 1, "a tenth, at least one");
        assert_eq!(InMemoryReplayStore::default().per_key.into_inner(), DEFAULT_REPLAY_ENTRIES_PER_KEY);
    }
}
