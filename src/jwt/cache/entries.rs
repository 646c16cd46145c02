//! Where the verified-token cache keeps its entries: hash tables in shards, each behind a
//! read-write lock, under one entry count; a full cache gives up an entry by CLOCK (second
//! chance, each shard a ring of its entries).
//!
//! Unlike moka's, entries do not expire on a timer: one past the cache's maximum TTL is refused
//! (and dropped) by the lookup that finds it, and is the hand's first pick when the cache is full.
//! Memory stays at the high-water mark, bounded by the entry count.
//!
//! Why not moka, which the introspection cache uses: a moka hit records itself for the eviction
//! policy (a frequency sketch, an access-order list, a channel drained by whichever request
//! comes next), which is a handful of random memory accesses on every hit once the entries
//! outgrow the CPU's caches: 8.3 % of the example server's samples with 10 000 tokens in turn,
//! 1.9 % with one token (perf under `wrk`). Here admission is already decided by the
//! doorkeeper, and a hit only reads: a shared lock, a probe, the key compared, a bit set if it
//! was clear.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use hashbrown::HashTable;

use super::TailHash;

pub(super) struct Entries<V> {
    shards: Box<[RwLock<Shard<V>>]>,
    hasher: TailHash,
    /// Entries in all shards: a shard fills with what its share of the traffic brings, not a
    /// fixed split of the bound (once the cache is full, each shard gives up its own entries).
    len: AtomicUsize,
    max: usize,
}

struct Shard<V> {
    table: HashTable<Slot<V>>,
    /// The CLOCK's ring: the hash of the entry at each place (`None`: a place given back by a
    /// removal, listed in `free` for the next newcomer). An entry knows its place, so the hand
    /// finds it in the table by that hash.
    ring: Vec<Option<u64>>,
    free: Vec<usize>,
    hand: usize,
}

/// A slot is small on purpose: a lookup reads the slot it probes, and with many tokens in use
/// the table's slots outgrow the CPU's second-level cache (a slot of 136 bytes was 45 % of a
/// lookup's samples, its load stalling, with 10 000 tokens in turn). The hash is not kept here:
/// the ring holds each entry's hash, for the hand and for the table when it rehashes (growing,
/// or in place once removals have used up its spare room).
struct Slot<V> {
    key: Box<[u8]>,
    /// Its place in the ring (a shard holds far fewer than 2^32 entries).
    place: u32,
    value: V,
    /// Set by a hit, cleared by the hand passing: an entry not used since the hand last passed
    /// it (or since it came) is the one given up.
    used: AtomicBool,
}

/// A shard for every 128 to 256 entries (a power of two of them), at most 64 shards: enough that
/// two threads rarely want the same one for writing, few enough that each stays a real table.
const MAX_SHARDS: usize = 64;

impl<V> Entries<V> {
    pub(super) fn new(max_entries: u64) -> Self {
        // A ring is never longer than the most entries its shard held at once: at most `max`,
        // so a place fits a `u32`. (A bound past 4 Gi entries would not fit in memory anyway.)
        let max = usize::try_from(max_entries.min(u64::from(u32::MAX))).unwrap_or(usize::MAX);
        let shards = (max / 256).clamp(1, MAX_SHARDS).next_power_of_two();
        Entries {
            shards: (0..shards)
                .map(|_| {
                    RwLock::new(Shard {
                        table: HashTable::new(),
                        ring: Vec::new(),
                        free: Vec::new(),
                        hand: 0,
                    })
                })
                .collect(),
            hasher: TailHash::default(),
            len: AtomicUsize::new(0),
            max,
        }
    }

    fn locate(&self, key: &[u8]) -> (u64, &RwLock<Shard<V>>) {
        let hash = self.hasher.hash_one(key);
        // Bits the table does not use: it takes the low ones for the bucket and the top seven
        // for its tags.
        (hash, &self.shards[(hash >> 32) as usize & (self.shards.len() - 1)])
    }

    /// `f` of the entry under `key`, if there is one, run under the shard's shared lock.
    pub(super) fn read<R>(&self, key: &[u8], f: impl FnOnce(&V) -> R) -> Option<R> {
        let (hash, shard) = self.locate(key);
        let shard = read_lock(shard);
        let slot = shard.table.find(hash, |slot| *slot.key == *key)?;
        // Only a clear bit is written: a hot entry's line is not written on every hit.
        if !slot.used.load(Ordering::Relaxed) {
            slot.used.store(true, Ordering::Relaxed);
        }
        Some(f(&slot.value))
    }

    /// Keeps `value` under `key`. A full cache first gives up an entry of the same shard: the
    /// first the hand finds that `stale` says is of no use or that was not used for a turn.
    pub(super) fn insert(&self, key: &[u8], value: V, stale: impl FnMut(&V) -> bool) {
        if self.max == 0 {
            return;
        }
        let (hash, shard) = self.locate(key);
        // What can be made outside the lock is: the key's copy, and the drop of an entry given up.
        let key: Box<[u8]> = key.into();
        let mut given_up = None;
        let mut shard = write_lock(shard);
        if let Some(slot) = shard.table.find_mut(hash, |slot| slot.key == key) {
            slot.value = value;
            return;
        }
        // A place is taken from the count before the entry goes in, so that inserts into two
        // shards at once cannot both take the last one.
        let room =
            self.len.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < self.max).then_some(n + 1));
        let place = if room.is_ok() {
            shard.free.pop().unwrap_or_else(|| {
                shard.ring.push(None);
                shard.ring.len() - 1
            })
        } else {
            // Full: the entry given up leaves its place, and its count, to this one.
            match shard.evict_one(stale) {
                Some(slot) => {
                    let place = slot.place as usize;
                    given_up = Some(slot);
                    place
                }
                // This shard holds nothing to give up: its traffic is small, so is the loss of
                // not remembering this token.
                None => return,
            }
        };
        let slot = Slot { key, place: place_of(place), value, used: AtomicBool::new(false) };
        let Shard { table, ring, .. } = &mut *shard;
        ring[place] = Some(hash);
        // A rehash reads each entry's hash from the ring, a small array, rather than from its key,
        // a kilobyte somewhere in memory, for every entry of the shard.
        table.insert_unique(hash, slot, |slot| ring_hash(ring, slot.place));
        drop(shard);
        drop(given_up);
    }

    pub(super) fn remove(&self, key: &[u8]) {
        let (hash, shard) = self.locate(key);
        let mut shard = write_lock(shard);
        if let Ok(found) = shard.table.find_entry(hash, |slot| *slot.key == *key) {
            let (slot, _) = found.remove();
            shard.ring[slot.place as usize] = None;
            shard.free.push(slot.place as usize);
            self.len.fetch_sub(1, Ordering::Relaxed);
            drop(shard);
            drop(slot);
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }
}

impl<V> Shard<V> {
    /// Gives up one entry, CLOCK's way: the hand goes round the ring, clearing the bits of the
    /// entries it passes, until it finds one stale or not used since its last turn. Returns that
    /// entry (its place is free for the caller); `None` if the shard is empty.
    fn evict_one(&mut self, mut stale: impl FnMut(&V) -> bool) -> Option<Slot<V>> {
        if self.table.is_empty() {
            return None;
        }
        // Two turns at most: the first clears every bit it passes, and no reader sets one while
        // this lock is held.
        for _ in 0..=2 * self.ring.len() {
            let place = self.hand;
            self.hand = (place + 1) % self.ring.len();
            let Some(hash) = self.ring[place] else { continue };
            let Ok(found) = self.table.find_entry(hash, |slot| slot.place as usize == place) else {
                continue;
            };
            let slot = found.get();
            if stale(&slot.value) || !slot.used.swap(false, Ordering::Relaxed) {
                let (slot, _) = found.remove();
                self.ring[place] = None;
                return Some(slot);
            }
        }
        None
    }
}

/// A ring place as a slot keeps it: a ring grows only while the count is under the bound, which
/// [`Entries::new`] keeps under `u32::MAX`.
fn place_of(place: usize) -> u32 {
    debug_assert!(u32::try_from(place).is_ok(), "place {place}");
    place as u32
}

/// The hash of the entry at `place`. Every entry in the table has one in the ring (the tests
/// check it after every kind of change: `assert_whole`).
fn ring_hash(ring: &[Option<u64>], place: u32) -> u64 {
    let hash = ring[place as usize];
    debug_assert!(hash.is_some(), "no hash at place {place}");
    hash.unwrap_or_default()
}

// A poisoned lock only means a panic while it was held; nothing under these locks can panic
// between a change to the table and the matching one to the ring (entries are dropped after the
// lock is released), so the entries are still good.
fn read_lock<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write_lock<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// The size of a slot holding `V`.
#[cfg(test)]
pub(super) fn slot_bytes<V>() -> usize {
    size_of::<Slot<V>>()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ring and the table agree in every shard (each place in use holds the hash of the one
    /// entry that knows it, each free place is empty and listed once), and the count is what
    /// the tables hold.
    fn assert_whole<V>(entries: &Entries<V>) {
        let mut held = 0;
        for shard in &entries.shards {
            let shard = read_lock(shard);
            for slot in shard.table.iter() {
                let hash = entries.hasher.hash_one(&*slot.key);
                assert_eq!(shard.ring[slot.place as usize], Some(hash), "place {}", slot.place);
            }
            let in_use = shard.ring.iter().filter(|place| place.is_some()).count();
            assert_eq!(in_use, shard.table.len(), "a place in use without its entry");
            let mut free = shard.free.clone();
            free.sort_unstable();
            free.dedup();
            assert_eq!(free.len(), shard.free.len(), "a place listed free twice");
            assert!(free.iter().all(|&place| shard.ring[place].is_none()), "a free place in use");
            held += shard.table.len();
        }
        assert_eq!(entries.len(), held);
    }

    fn key(i: u32) -> Vec<u8> {
        format!("token-{i:06}-with-a-signature-tail-{i:08x}").into_bytes()
    }

    /// A place is a `u32`: the bound is clamped so that no ring outgrows one.
    #[test]
    fn the_bound_keeps_places_in_a_u32() {
        assert_eq!(Entries::<u32>::new(u64::MAX).max, u32::MAX as usize);
        assert_eq!(Entries::<u32>::new(1_000).max, 1_000);
    }

    #[test]
    fn holds_at_most_its_bound_and_finds_what_it_holds() {
        for max in [1u64, 2, 16, 300, 5_000] {
            let entries = Entries::new(max);
            for i in 0..3 * max as u32 {
                entries.insert(&key(i), i, |_| false);
                assert!(entries.len() <= max as usize, "{} entries for a bound of {max}", entries.len());
            }
            assert_whole(&entries);
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
        assert_whole(&entries);
    }

    /// Tokens used every 24 insertions, in a full cache of 64 that takes 2 000 newcomers: the
    /// hand passes each entry about once in 56 evictions, so each is used again in time, wherever
    /// its hash puts it. (An eviction walking the table in its own order, from its start, gives
    /// up those near the start: the walk restarts there, and clears their bits, every time.)
    #[test]
    fn an_entry_used_once_a_turn_stays() {
        let entries = Entries::new(64);
        let hot: Vec<u32> = (0..8).collect();
        for i in 0..64 {
            entries.insert(&key(i), i, |_| false);
        }
        for n in 0..2_000u32 {
            if n % 24 == 0 {
                for &i in &hot {
                    assert_eq!(entries.read(&key(i), |v| *v), Some(i), "token {i} given up by insertion {n}");
                }
            }
            entries.insert(&key(10_000 + n), n, |_| false);
        }
    }

    #[test]
    fn a_stale_entry_goes_before_used_ones_and_removal_counts() {
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
        // The place key 100 gave back goes to the next newcomer.
        entries.insert(&key(200), 200, |_| false);
        assert_eq!(entries.len(), 16);
        assert_whole(&entries);
        assert!(Entries::<u32>::new(0).read(&key(0), |v| *v).is_none());
    }
}
