//! Where the verified-token cache keeps its entries: hash maps in shards, each behind a
//! read-write lock, under one entry count; a full cache gives up an entry by CLOCK (second
//! chance).
//!
//! Why not moka, which the introspection cache uses: a moka hit records itself for the eviction
//! policy (a frequency sketch, an access-order list, a channel drained by whichever request
//! comes next), which is a handful of random memory accesses on every hit once the entries
//! outgrow the CPU's caches: a fifth of a cached request's own work with 10 000 tokens in turn
//! (perf, `benches/load.sh`). Here admission is already decided by the doorkeeper, and a hit
//! only reads: a shared lock, a probe, the key compared, a bit set if it was clear.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::TailHash;

pub(super) struct Entries<V> {
    shards: Box<[RwLock<Shard<V>>]>,
    hasher: TailHash,
    /// Entries in all shards: a shard may hold more than its share while another holds less,
    /// so a shard's share of the traffic, not a fixed split, decides what it keeps.
    len: AtomicUsize,
    max: usize,
}

type Shard<V> = HashMap<Box<[u8]>, Slot<V>, TailHash>;

struct Slot<V> {
    value: V,
    /// Set by a hit, cleared by an eviction passing over it: an entry not used since the last
    /// pass is the one given up.
    used: AtomicBool,
}

/// A shard for about every 256 entries, at most 64: enough that two threads rarely want the
/// same one for writing, few enough that each stays a real map.
const MAX_SHARDS: usize = 64;

impl<V> Entries<V> {
    pub(super) fn new(max_entries: u64) -> Self {
        let max = usize::try_from(max_entries).unwrap_or(usize::MAX);
        let shards = (max / 256).clamp(1, MAX_SHARDS).next_power_of_two();
        let hasher = TailHash::default();
        Entries {
            shards: (0..shards).map(|_| RwLock::new(HashMap::with_hasher(hasher.clone()))).collect(),
            hasher,
            len: AtomicUsize::new(0),
            max,
        }
    }

    fn shard(&self, key: &[u8]) -> &RwLock<Shard<V>> {
        // Bits the map itself does not use: it takes the low ones for the bucket and the top seven
        // for its tags.
        let hash = self.hasher.hash_one(key);
        &self.shards[(hash >> 32) as usize & (self.shards.len() - 1)]
    }

    /// `f` of the entry under `key`, if there is one, run under the shard's shared lock.
    pub(super) fn read<R>(&self, key: &[u8], f: impl FnOnce(&V) -> R) -> Option<R> {
        let shard = read(self.shard(key));
        let slot = shard.get(key)?;
        // Only a clear bit is written: a hot entry's line is not written on every hit.
        if !slot.used.load(Ordering::Relaxed) {
            slot.used.store(true, Ordering::Relaxed);
        }
        Some(f(&slot.value))
    }

    /// Keeps `value` under `key`. A full cache first gives up an entry of the same shard: one
    /// `stale` says is of no use, else one not used since an eviction last passed over it.
    pub(super) fn insert(&self, key: &[u8], value: V, stale: impl Fn(&V) -> bool) {
        if self.max == 0 {
            return;
        }
        let mut shard = write(self.shard(key));
        if let Some(slot) = shard.get_mut(key) {
            slot.value = value;
            return;
        }
        // A place is taken from the count before the entry goes in, so that inserts into two
        // shards at once cannot both take the last one.
        let place =
            self.len.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < self.max).then_some(n + 1));
        // Full: the entry given up leaves its place to this one.
        if place.is_err() && !evict_one(&mut shard, stale) {
            // This shard holds nothing to give up: its traffic is small, so is the loss of not
            // remembering this token.
            return;
        }
        shard.insert(key.into(), Slot { value, used: AtomicBool::new(false) });
    }

    pub(super) fn remove(&self, key: &[u8]) {
        if write(self.shard(key)).remove(key).is_some() {
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }
}

/// Gives up one entry of `shard`: the first stale one, or the first not used since the last
/// pass, clearing the bits of those passed over (CLOCK's second chance), in the map's order,
/// which is the tokens' hashes: random as far as their users go. `false` if the shard is empty.
fn evict_one<V>(shard: &mut Shard<V>, stale: impl Fn(&V) -> bool) -> bool {
    // Two passes at most: the first may only clear bits.
    for _ in 0..2 {
        let mut pass =
            shard.extract_if(|_, slot| stale(&slot.value) || !slot.used.swap(false, Ordering::Relaxed));
        if pass.next().is_some() {
            return true;
        }
    }
    false
}

// A poisoned lock only means a panic elsewhere while it was held; every write here leaves the
// map whole, so its entries are still good.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> Vec<u8> {
        format!("token-{i:06}-with-a-signature-tail-{i:08x}").into_bytes()
    }

    #[test]
    fn holds_at_most_its_bound_and_finds_what_it_holds() {
        for max in [1u64, 2, 16, 300, 5_000] {
            let entries = Entries::new(max);
            for i in 0..3 * max as u32 {
                entries.insert(&key(i), i, |_| false);
                assert!(entries.len() <= max as usize, "{} entries for a bound of {max}", entries.len());
            }
            let found = (0..3 * max as u32).filter(|i| entries.read(&key(*i), |v| *v) == Some(*i)).count();
            assert_eq!(found, entries.len(), "bound {max}: every entry counted is found, under its own key");
            assert!(found > 0);
        }
    }

    #[test]
    fn an_entry_in_use_outlives_those_that_are_not() {
        let entries = Entries::new(64);
        for i in 0..64 {
            entries.insert(&key(i), i, |_| false);
        }
        // Tokens 0..8 are in use; 64 newcomers each push one entry out.
        for round in 0..64 {
            for i in 0..8 {
                assert_eq!(entries.read(&key(i), |v| *v), Some(i), "round {round}: token {i} was given up");
            }
            entries.insert(&key(1_000 + round), 1_000 + round, |_| false);
        }
        assert_eq!(entries.len(), 64);
    }

    /// Threads inserting, reading and removing at once: the count never passes the bound and
    /// ends equal to what the maps hold.
    #[test]
    fn concurrent_use_keeps_the_count() {
        let entries = Entries::new(1_024);
        std::thread::scope(|s| {
            for t in 0..4u32 {
                let entries = &entries;
                s.spawn(move || {
                    for i in 0..5_000u32 {
                        let k = key(t * 1_000_000 + i % 1_500);
                        entries.insert(&k, i, |v| v % 7 == 0);
                        assert!(entries.len() <= 1_024);
                        entries.read(&k, |_| ());
                        if i % 5 == 0 {
                            entries.remove(&k);
                        }
                    }
                });
            }
        });
        let held: usize = entries.shards.iter().map(|shard| read(shard).len()).sum();
        assert_eq!(entries.len(), held);
    }

    #[test]
    fn stale_entries_go_first_and_removal_counts() {
        let entries = Entries::new(16);
        for i in 0..16 {
            entries.insert(&key(i), i, |_| false);
            entries.read(&key(i), |_| ());
        }
        entries.insert(&key(100), 100, |v| *v == 5);
        assert_eq!(entries.read(&key(5), |v| *v), None, "the stale entry was given up");
        assert_eq!(entries.len(), 16);
        entries.remove(&key(100));
        entries.remove(&key(100));
        assert_eq!(entries.len(), 15);
        // Inserting a held key again replaces its value; the count stays.
        entries.insert(&key(1), 41, |_| false);
        assert_eq!((entries.read(&key(1), |v| *v), entries.len()), (Some(41), 15));
        assert!(Entries::<u32>::new(0).read(&key(0), |v| *v).is_none());
    }
}
