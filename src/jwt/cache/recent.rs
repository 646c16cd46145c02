//! Each thread's own copies of the few tokens it is sent again and again.
//!
//! A hit in the shared entries takes the shard's lock and a reference to the shared principal:
//! two cache lines written by every core that serves the token. A client sending one token at a
//! high rate (a service calling another with its client-credentials token, the usual case between
//! services) has every core take those lines from the others on every request, and the more
//! cores, the longer each waits. So a token that a thread looks up in the shared entries twice
//! within its last [`RING`] such lookups gets a copy of its own in that thread (its principal
//! included, in an allocation of its own with its own reference count), which later lookups on
//! that thread read without the shared principal, and without the shard's lock but once a second
//! (to mark the shared entry used, see [`Found::touch`]).
//!
//! A copy vouches under exactly the rules of the entry it was taken from: it is compared with
//! the whole token, and its age, its key and the token's time claims are checked on every use,
//! by the same code. It answers only "valid"; anything else (too old, key gone, expired) drops
//! it, and the shared entries decide, as if it had never been. Tokens that come back rarely (many
//! users in turn) are never copied: they do not come back within [`RING`] lookups of one thread.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Entry;
use crate::principal::Principal;

/// Shared lookups a thread remembers (by hash) to see a token come back.
pub(super) const RING: usize = 8;

/// Copies a thread keeps (a handful of services calling at a high rate): as many as the ring
/// remembers, so that every token seen again soon enough can have one.
const COPIES: usize = RING;

struct Slot {
    /// The [`TokenCache`](super::TokenCache) it was taken from: each has an id of its own,
    /// never reused, so one validator's copies never answer for another's.
    cache: u64,
    hash: u64,
    token: Box<[u8]>,
    /// The entry as the shared entries had it, its principal detached (its own allocation).
    entry: Entry,
    /// When it can vouch no more, whatever else (the entry's age limit, or the token's `exp`):
    /// past it, any new copy may take its place.
    dies_at: i64,
    /// The second of its last use that touched the shared entry (see [`find`]).
    touched: i64,
    /// Used since the hand last passed: a new copy takes the place of one that was not.
    used: bool,
}

struct Thread {
    slots: [Option<Slot>; COPIES],
    hand: usize,
    /// Tags (hash | 1; 0 is empty) of this thread's last lookups in the shared entries.
    ring: [u64; RING],
    ring_next: usize,
}

thread_local! {
    static THREAD: RefCell<Thread> = const {
        RefCell::new(Thread { slots: [const { None }; COPIES], hand: 0, ring: [0; RING], ring_next: 0 })
    };
}

/// A new cache's id.
pub(super) fn new_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// What a copy answered.
pub(super) struct Found {
    pub(super) principal: Principal,
    /// The first use of this copy in a second other than the last one it marked (the second it
    /// was made, at first): the caller marks the shared entry used, so that the shared cache does
    /// not give up, as idle, the very token this thread serves most.
    pub(super) touch: bool,
}

/// This thread's copy of `token` (whose hash is `hash`) for cache `cache`, if it has one and
/// `vouches` says it still does: its principal. A copy `vouches` refuses is dropped.
pub(super) fn find(
    cache: u64,
    hash: u64,
    token: &[u8],
    now: i64,
    vouches: impl Fn(&Entry) -> bool,
) -> Option<Found> {
    let (found, dead) = with_thread(|thread| {
        let place = thread.slots.iter_mut().find(|slot| {
            slot.as_ref().is_some_and(|s| s.hash == hash && s.cache == cache && *s.token == *token)
        })?;
        let slot = place.as_mut()?;
        if !vouches(&slot.entry) {
            return Some((None, place.take()));
        }
        slot.used = true;
        let touch = slot.touched != now;
        slot.touched = now;
        Some((Some(Found { principal: slot.entry.principal.clone(), touch }), None))
    })
    .flatten()?;
    // A dead copy is dropped after the borrow ends, as `keep` drops the one it replaces.
    drop(dead);
    found
}

/// Records a lookup of the token of `hash` in the shared entries; `true` when this thread made
/// one among its last [`RING`] already, so that it should take a copy (and the ring forgets it).
pub(super) fn looked_up_again(hash: u64) -> bool {
    let tag = hash | 1;
    with_thread(|thread| {
        if let Some(seen) = thread.ring.iter_mut().find(|seen| **seen == tag) {
            *seen = 0;
            return true;
        }
        let at = thread.ring_next;
        thread.ring[at] = tag;
        thread.ring_next = (at + 1) % RING;
        false
    })
    .unwrap_or(false)
}

/// Keeps a copy of `token`'s entry in this thread, good until `dies_at`: in a free place, one
/// whose copy can vouch no more, or (second chance) one not used since the hand last passed.
pub(super) fn keep(cache: u64, hash: u64, token: &[u8], entry: Entry, now: i64, dies_at: i64) {
    let slot = Slot { cache, hash, token: token.into(), entry, dies_at, touched: now, used: false };
    // The copy given up is dropped after the borrow ends.
    let _given_up = with_thread(|thread| {
        let free = thread.slots.iter().position(|s| s.as_ref().is_none_or(|s| s.dies_at <= now));
        let place = free.unwrap_or_else(|| {
            loop {
                let at = thread.hand;
                thread.hand = (at + 1) % COPIES;
                match &mut thread.slots[at] {
                    Some(s) if s.used => s.used = false,
                    _ => break at,
                }
            }
        });
        thread.slots[place].replace(slot)
    });
}

/// `f` of this thread's copies; `None` when they are out of reach (a lookup from a thread-local
/// destructor, after this one's), and the caller does without.
fn with_thread<R>(f: impl FnOnce(&mut Thread) -> R) -> Option<R> {
    THREAD.try_with(|thread| thread.try_borrow_mut().ok().map(|mut thread| f(&mut thread))).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TokenKind;

    fn entry() -> Entry {
        Entry { principal: Principal::builder(TokenKind::Jwt).build(), key: None, nbf: None, cached_at: 0 }
    }

    fn token(i: usize) -> Vec<u8> {
        format!("header.payload.hot-{i:04}").into_bytes()
    }

    /// Hot tokens in turn, up to as many as a thread keeps copies of, each fetched from the
    /// shared entries, then copied: once all are copied, every lookup is answered by a copy and
    /// no copy is made again. (With fewer places than the ring, five tokens made a copy on every
    /// lookup, each pushing out the next one needed.)
    #[test]
    fn hot_tokens_are_copied_once() {
        let cache = new_id();
        let mut copies = 0;
        for round in 0..10 {
            for i in 0..COPIES {
                let hash = 0x1000 + i as u64 * 2;
                if find(cache, hash, &token(i), 5, |_| true).is_some() {
                    continue;
                }
                assert!(round < 2, "round {round}: token {i} had no copy");
                if looked_up_again(hash) {
                    keep(cache, hash, &token(i), entry(), 5, 1_000);
                    copies += 1;
                }
            }
        }
        assert_eq!(copies, COPIES);
    }

    /// A copy that can vouch no more gives its place to the next one, before any copy in use;
    /// and a new copy otherwise takes the place of one not used since the hand last passed.
    #[test]
    fn a_new_copy_takes_a_dead_or_idle_place() {
        let cache = new_id();
        for i in 0..COPIES {
            let dies_at = if i == 3 { 10 } else { 1_000 };
            keep(cache, i as u64, &token(i), entry(), 5, dies_at);
        }
        for i in 0..COPIES {
            assert!(find(cache, i as u64, &token(i), 5, |_| true).is_some());
        }
        keep(cache, 100, &token(100), entry(), 10, 1_000);
        assert!(find(cache, 3, &token(3), 10, |_| true).is_none(), "the dead copy went");
        let alive =
            (0..COPIES).filter(|&i| i != 3).all(|i| find(cache, i as u64, &token(i), 10, |_| true).is_some());
        assert!(alive, "the others stay");
        assert!(find(cache, 100, &token(100), 10, |_| true).is_some());
        // All used: the hand clears every bit, then takes the first place it passed.
        keep(cache, 101, &token(101), entry(), 10, 1_000);
        assert!(find(cache, 101, &token(101), 10, |_| true).is_some());
        assert!(find(cache, 0, &token(0), 10, |_| true).is_none(), "the hand's first place");
        assert_eq!(
            (1..COPIES).filter(|&i| find(cache, i as u64, &token(i), 10, |_| true).is_some()).count(),
            COPIES - 2
        );
    }

    /// A shared entry is touched once a second per thread at most, by the copy's first use in
    /// that second.
    #[test]
    fn a_copy_touches_its_entry_once_a_second() {
        let cache = new_id();
        keep(cache, 7, &token(7), entry(), 5, 1_000);
        let touches: Vec<bool> = [5, 5, 6, 6, 6, 9]
            .iter()
            .map(|&now| find(cache, 7, &token(7), now, |_| true).unwrap().touch)
            .collect();
        assert_eq!(touches, [false, false, true, false, false, true]);
    }
}
