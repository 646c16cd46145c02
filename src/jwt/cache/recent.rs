//! Each thread's own copies of the few tokens it is sent again and again.
//!
//! A hit in the shared entries takes the shard's lock and a reference to the shared principal:
//! two cache lines written by every core that serves the token. A client sending one token at a
//! high rate (a service calling another with its client-credentials token, the usual case between
//! services) has every core take those lines from the others on every request, and the more
//! cores, the longer each waits. So a token that a thread finds in the shared entries twice within
//! its last [`RING`] hits gets a copy of its own in that thread (principal included, a separate
//! allocation with its own reference count), which later lookups on that thread read without
//! writing anything shared.
//!
//! A copy vouches under exactly the rules of the entry it was taken from: it is compared with
//! the whole token, and its age, its key and the token's time claims are checked on every use,
//! by the same code. It answers only "valid"; anything else (too old, key gone, expired) drops
//! it, and the shared entries decide, as if it had never been. Tokens that come back rarely (many
//! users in turn) are never copied: they do not come back within [`RING`] hits of one thread.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use super::KeyRef;
use crate::principal::Principal;

/// Copies a thread keeps: a handful of services calling at a high rate.
const COPIES: usize = 4;

/// Shared hits a thread remembers (by hash) to see a token come back.
pub(super) const RING: usize = 8;

/// What a copy holds: the token and its entry, as the shared entries had it.
pub(super) struct Copy {
    pub(super) principal: Principal,
    pub(super) key: Option<KeyRef>,
    pub(super) nbf: Option<i64>,
    pub(super) cached_at: i64,
}

struct Slot {
    /// The [`TokenCache`](super::TokenCache) it was taken from: each has an id of its own,
    /// never reused, so one validator's copies never answer for another's.
    cache: u64,
    hash: u64,
    token: Box<[u8]>,
    copy: Copy,
}

struct Thread {
    slots: [Option<Slot>; COPIES],
    /// The slot the next copy takes.
    next: usize,
    /// Hashes of this thread's last shared hits.
    ring: [u64; RING],
    ring_next: usize,
}

thread_local! {
    static THREAD: RefCell<Thread> = const {
        RefCell::new(Thread { slots: [const { None }; COPIES], next: 0, ring: [0; RING], ring_next: 0 })
    };
}

/// A new cache's id.
pub(super) fn new_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// This thread's copy of `token` (whose hash is `hash`) for cache `cache`, if it has one and
/// `valid` says it still vouches: its principal. A copy `valid` refuses is dropped.
pub(super) fn find(cache: u64, hash: u64, token: &[u8], valid: impl Fn(&Copy) -> bool) -> Option<Principal> {
    with_thread(|thread| {
        let slot = thread.slots.iter_mut().find(|slot| {
            slot.as_ref().is_some_and(|s| s.hash == hash && s.cache == cache && *s.token == *token)
        })?;
        let held =
            slot.as_ref().map(|s| &s.copy).filter(|copy| valid(copy)).map(|copy| copy.principal.clone());
        if held.is_none() {
            *slot = None;
        }
        held
    })
    .flatten()
}

/// Records a shared hit of the token of `hash`; `true` when this thread had it among its last
/// [`RING`] hits already, so that it should take a copy.
pub(super) fn hit_again(hash: u64) -> bool {
    with_thread(|thread| {
        if thread.ring.contains(&hash) {
            return true;
        }
        let at = thread.ring_next;
        thread.ring[at] = hash;
        thread.ring_next = (at + 1) % RING;
        false
    })
    .unwrap_or(false)
}

/// Keeps a copy of `token`'s entry in this thread, in place of its oldest copy.
pub(super) fn keep(cache: u64, hash: u64, token: &[u8], copy: Copy) {
    let slot = Slot { cache, hash, token: token.into(), copy };
    // The copy given up is dropped after the borrow ends.
    let _given_up = with_thread(|thread| {
        let at = thread.next;
        thread.next = (at + 1) % COPIES;
        thread.slots[at].replace(slot)
    });
}

/// `f` of this thread's copies; `None` when they are out of reach (a lookup from a thread-local
/// destructor, after this one's), and the caller does without.
fn with_thread<R>(f: impl FnOnce(&mut Thread) -> R) -> Option<R> {
    THREAD.try_with(|thread| thread.try_borrow_mut().ok().map(|mut thread| f(&mut thread))).ok().flatten()
}
