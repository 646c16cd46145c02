//! The verified-token cache: a JWT that passed full validation is remembered, so that the next
//! request with the same token costs a hash and a lookup instead of a signature check.
//!
//! Safety rules, in the order they are checked on a hit:
//! - exact match: the key is the whole token, compared byte for byte; the hash only picks the
//!   bucket. (A SHA-256 of the token as the key would keep the token itself out of memory, but
//!   costs as much as everything else on a hit together: measured 0.58 µs of 0.9 µs for an
//!   RS256 token. The token sits in the same process's request buffers anyway; the introspection
//!   cache, whose entries outlive requests by design, does key by SHA-256.)
//! - the entry dies with its key: the fingerprint of the key that verified the token must still
//!   be in the current key set, so a key removed by rotation stops vouching at once;
//! - the entry is younger than the configured maximum TTL;
//! - time-dependent claims (`exp`, `nbf`, `iat`) are checked again, against the validator's clock.
//!
//! Only successes are cached: a flood of bad tokens adds nothing, so memory stays bounded by the
//! entry count whatever the traffic.
//!
//! A token a thread is sent again and again is also copied into that thread (see [`recent`]):
//! the copy vouches under the same rules, checked the same way, without the shared lock.
//!
//! Admission: a token is remembered the second time it verifies, not the first. Inserting costs
//! more than a lookup saves when tokens are never repeated (new users, one-shot tokens, a
//! spraying attacker), so a small fixed-size [`Doorkeeper`] of token hashes says whether a token
//! was verified before; a token in use comes back within seconds and is admitted then.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use crate::error::InvalidToken;
use crate::observe;
use crate::principal::Principal;
use crate::time::TimeWindow;

mod entries;
mod recent;
use entries::Entries;

/// Defaults of the verified-token cache.
pub(crate) mod defaults {
    use std::time::Duration;
    /// Entries kept at most. An entry holds the token and its claims twice (raw and parsed):
    /// about 1.4 KiB for a 650-byte access token, up to about three times `max_token_bytes` for
    /// the largest tokens accepted; once its principal has been answered as JSON
    /// (`Principal::json`, or serialized), that text as well: 1.8 KiB (measured: `benches/load.sh`'s
    /// memory floods, 100 000 tokens each sent twice to `/me`, +174.5 MiB RSS). Each thread also
    /// keeps copies of up to eight entries it is sent again and again (see `recent`).
    pub const MAX_ENTRIES: u64 = 10_000;
    /// How long an entry may vouch for a token at most, whatever its `exp`.
    pub const MAX_TTL: Duration = Duration::from_secs(300);
}

pub(crate) type Digest32 = [u8; 32];

/// Hashes a token by its length and its last 32 bytes only, with a random key of its own.
///
/// Those bytes are the tail of the signature, pseudorandom for every algorithm we accept, so
/// they spread honest tokens as well as hashing the whole token would, at a fraction of the
/// cost. Crafted tokens sharing a tail only share a bucket: equality is still checked on the
/// whole token, and only tokens that passed full validation are ever inserted, so nobody can
/// crowd a bucket. Hence a multiply-rotate mix rather than SipHash: the cache hashes every
/// token it is asked for, and SipHash was a tenth of a cache hit's own work.
#[derive(Clone)]
pub(crate) struct TailHash {
    key: u64,
}

impl Default for TailHash {
    fn default() -> Self {
        TailHash { key: RandomState::new().hash_one(0x7461_696c_u64) }
    }
}

impl BuildHasher for TailHash {
    type Hasher = TailHasher;
    fn build_hasher(&self) -> TailHasher {
        TailHasher(self.key)
    }
}

pub(crate) struct TailHasher(u64);

impl Hasher for TailHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0 ^ (bytes.len() as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
        for chunk in bytes[bytes.len().saturating_sub(32)..].chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            h = (h ^ u64::from_le_bytes(word)).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(31);
        }
        self.0 = h;
    }
    fn finish(&self) -> u64 {
        // MurmurHash3's finalizer: every bit of the state reaches every bit of the hash, whichever
        // bits the map uses.
        let mut h = self.0;
        h = (h ^ (h >> 33)).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        h = (h ^ (h >> 33)).wrapping_mul(0xC4CE_B9FE_1A85_EC53);
        h ^ (h >> 33)
    }
}

/// Which key verified a token, as validation reports it: the generation of the key set it was
/// selected from and the key's name. The cache turns it into a [`KeyRef`] when it admits the
/// token, so a token it does not keep costs nothing more.
pub(crate) struct Signer {
    pub(crate) generation: u64,
    pub(crate) name: KeyName,
}

/// Which key verified a remembered token: what key selection must still find, on every hit,
/// for the entry to count.
#[derive(Clone)]
pub(crate) struct KeyRef {
    /// The generation of the key set the key was selected from: while the set is still that one,
    /// selection would pick the same key again, so a hit need not run it (nor read `name`).
    pub(crate) generation: u64,
    /// Behind a pointer: read only once the key set has changed, and inline its 56 bytes would
    /// make an entry, and the table slot holding it, larger by as much (see `entries::Slot`).
    /// Usually shared by the entries of one key (see [`KeyName::shared`]).
    pub(crate) name: Arc<KeyName>,
}

/// A key as selection names it: the token's `kid` and `alg`, and the fingerprint of the key
/// they selected.
#[derive(PartialEq)]
pub(crate) struct KeyName {
    pub(crate) fingerprint: Digest32,
    pub(crate) kid: Option<Arc<str>>,
    pub(crate) alg: jsonwebtoken::Algorithm,
}

impl KeyName {
    /// This name, shared: the thread's previous one when they are equal. A thread admitting
    /// tokens of one key (nearly all of an issuer's, outside a rotation) makes one allocation
    /// for all of their entries.
    fn shared(self) -> Arc<KeyName> {
        thread_local! {
            static LAST: RefCell<Option<Arc<KeyName>>> = const { RefCell::new(None) };
        }
        let known = LAST.try_with(|last| last.borrow().as_ref().filter(|known| ***known == self).cloned());
        if let Ok(Some(known)) = known {
            return known;
        }
        let name = Arc::new(self);
        // Ignored when the thread is being torn down: it keeps no memo then.
        let _ = LAST.try_with(|last| *last.borrow_mut() = Some(Arc::clone(&name)));
        name
    }
}

/// A remembered token's entry, in the shared entries or as a thread's copy (see [`recent`]).
#[derive(Clone)]
struct Entry {
    principal: Principal,
    /// The verifying key; `None` for the validator's fixed HMAC secret.
    key: Option<KeyRef>,
    nbf: Option<i64>,
    /// When the entry was made, by the validator's clock.
    cached_at: i64,
}

/// What an entry says of its token now: [`TokenCache::judge`].
enum Judged {
    Valid,
    Invalid(InvalidToken),
    /// Too old, or its key no longer vouches for it: as if absent.
    Gone {
        fresh: bool,
    },
}

/// What the entry of a token says, read under its shard's lock.
enum Looked {
    /// Valid now; with a clone of the entry when this thread should take a copy.
    Valid(Principal, Option<Entry>),
    Invalid(InvalidToken),
    Gone {
        fresh: bool,
    },
}

/// What a lookup found.
pub(crate) enum Hit {
    /// Valid now: the cached principal.
    Valid(Principal),
    /// The entry exists but its token is no longer acceptable (expired, for instance).
    Invalid(InvalidToken),
    /// Nothing usable: validate from scratch.
    Miss,
}

pub(crate) struct TokenCache {
    /// Names this cache's per-thread copies (see [`recent`]).
    id: u64,
    /// Keyed by the token's bytes: a lookup needs no UTF-8 check of what it is asked for.
    entries: Entries<Entry>,
    /// The [`Doorkeeper`]'s hash, with a key of its own: what it records decides which tokens are
    /// admitted, so nobody should be able to aim tokens at one of its sets. (Only tokens that
    /// passed full validation are recorded at all; the worst aimed tokens could do is delay
    /// another's admission.)
    hasher: TailHash,
    inserted: Inserted,
    doorkeeper: Doorkeeper,
    max_ttl: i64,
    hits: Striped,
    misses: Striped,
}

/// Hashes of tokens verified once but not cached yet, in a fixed table (8 bytes a slot, twice the
/// entry count rounded up to a power of two, at most 2 Mi slots) of sets of [`WAYS`] slots.
///
/// Sets, not single slots: in a direct-mapped table two tokens sharing a slot evict each other,
/// and sent in turn (the many-users round robin of a load test, or two users of one bucket) they
/// never get admitted, paying a signature check on every request. A full set evicts a way
/// chosen at random, and an admitted token frees its way, so crowded sets drain.
struct Doorkeeper {
    slots: Box<[AtomicU64]>,
}

/// Slots of a [`Doorkeeper`] set.
const WAYS: usize = 4;

/// A pseudo-random way of a set, from a sequence of this thread's own: a counter shared by the
/// threads would be a cache line they take from each other on every token never seen before.
/// (Every thread runs the same sequence, on sets of its own tokens: nothing to gain from
/// telling them apart, and a test sees the same ways on every run.)
fn random_way() -> usize {
    thread_local! {
        static STATE: Cell<u64> = const { Cell::new(0) };
    }
    STATE.with(|state| {
        // A Weyl sequence, mixed: its top bits pick the way.
        let s = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        state.set(s);
        (s.wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 62) as usize % WAYS
    })
}

impl Doorkeeper {
    fn new(max_entries: u64) -> Self {
        let len = usize::try_from(max_entries.saturating_mul(2)).unwrap_or(usize::MAX).clamp(1024, 1 << 21);
        Doorkeeper { slots: (0..len.next_power_of_two()).map(|_| AtomicU64::new(0)).collect() }
    }

    /// Records the token of `hash`; `true` if it was recorded before (and not forgotten since).
    fn seen_again(&self, hash: u64) -> bool {
        // Never 0, the empty slot.
        let tag = hash | 1;
        let first = (hash as usize) & (self.slots.len() - 1) & !(WAYS - 1);
        let set = &self.slots[first..first + WAYS];
        if let Some(slot) = set.iter().find(|slot| slot.load(Ordering::Relaxed) == tag) {
            // Admitted: the token moves to the cache, its way is free for the next one.
            let _ = slot.compare_exchange(tag, 0, Ordering::Relaxed, Ordering::Relaxed);
            return true;
        }
        // A pseudo-random way when the set is full: evicting in a fixed rotation would be FIFO,
        // which a round robin of more tokens than ways defeats every time.
        let way = set.iter().position(|slot| slot.load(Ordering::Relaxed) == 0).unwrap_or_else(random_way);
        // A race with another thread only forgets a token, which is then admitted later.
        set[way].store(tag, Ordering::Relaxed);
        false
    }
}

/// The tokens inserted into the cache, one bit each (by hash) in a small table: 8 bits an entry,
/// 4 Ki to 16 Mi bits. A clear bit means the token was never inserted, so a token never seen
/// before skips the cache's lookup (a shard's lock and a random access into a table
/// sized for every entry) for one access into this one, which is 8 times smaller than the
/// doorkeeper's and stays in the CPU's caches.
///
/// Bits are only set, so the table fills as entries come and go: it is cleared once the
/// insertions since the last clear reach half its bits (at most about 40 % set). A clear only
/// makes cached tokens look absent, and such a token is then validated in full and admitted
/// again, as after an eviction: never a wrong answer, only lost work.
struct Inserted {
    words: Box<[AtomicU64]>,
    since_clear: AtomicU64,
    key: u64,
}

impl Inserted {
    fn new(max_entries: u64) -> Self {
        let bits =
            usize::try_from(max_entries.saturating_mul(8)).unwrap_or(usize::MAX).clamp(1 << 12, 1 << 24);
        Inserted {
            words: (0..bits.next_power_of_two() / 64).map(|_| AtomicU64::new(0)).collect(),
            since_clear: AtomicU64::new(0),
            key: RandomState::new().hash_one(0u64),
        }
    }

    /// The word and bit of `hash`: from its top 24 bits, the best mixed by the multiply.
    fn bit(&self, hash: u64) -> (&AtomicU64, u64) {
        let i = (hash >> 40) as usize & (self.words.len() * 64 - 1);
        (&self.words[i / 64], 1 << (i % 64))
    }

    /// The token's last 8 bytes (the signature's tail, pseudorandom in honest tokens) mixed
    /// with a per-process key: a multiply, on every lookup, where SipHash would cost tens of
    /// nanoseconds on every cache hit. Crafted tokens sharing bits gain nothing: they are
    /// looked up as before.
    fn hash(&self, bytes: &[u8]) -> u64 {
        let mut tail = [0u8; 8];
        let n = bytes.len().min(8);
        tail[8 - n..].copy_from_slice(&bytes[bytes.len() - n..]);
        (u64::from_le_bytes(tail) ^ self.key).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ bytes.len() as u64
    }

    fn may_contain(&self, hash: u64) -> bool {
        let (word, bit) = self.bit(hash);
        word.load(Ordering::Relaxed) & bit != 0
    }

    fn insert(&self, hash: u64) {
        let (word, bit) = self.bit(hash);
        word.fetch_or(bit, Ordering::Relaxed);
        let half = self.words.len() as u64 * 32;
        if self.since_clear.fetch_add(1, Ordering::Relaxed) + 1 >= half {
            self.since_clear.store(0, Ordering::Relaxed);
            // Racing inserts may lose their bit: their tokens are only validated again.
            self.words.iter().for_each(|w| w.store(0, Ordering::Relaxed));
        }
    }
}

/// A counter split over cache lines, one per thread (modulo the stripe count): cores counting
/// hits at the same time do not take a shared line from each other on every request.
struct Striped([Padded; STRIPES]);

const STRIPES: usize = 16;

#[repr(align(128))]
struct Padded(AtomicU64);

impl Striped {
    fn new() -> Self {
        Striped(std::array::from_fn(|_| Padded(AtomicU64::new(0))))
    }

    fn increment(&self) {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
        }
        let stripe = STRIPE.with(|s| *s);
        self.0[stripe].0.fetch_add(1, Ordering::Relaxed);
    }

    fn sum(&self) -> u64 {
        self.0.iter().map(|p| p.0.load(Ordering::Relaxed)).sum()
    }
}

/// Counters of a [`JwtValidator`](crate::JwtValidator)'s verified-token cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenCacheStats {
    /// Entries held now. One past its maximum TTL counts until a lookup finds it (and drops it)
    /// or a full cache gives it up: entries do not expire on a timer.
    pub entries: u64,
    /// Lookups answered from the cache (valid or expired), with no signature check.
    pub hits: u64,
    /// Lookups that found nothing usable, so the token was validated in full.
    pub misses: u64,
}

impl TokenCache {
    pub(crate) fn new(max_entries: u64, max_ttl: Duration) -> Self {
        TokenCache {
            id: recent::new_id(),
            entries: Entries::new(max_entries),
            hasher: TailHash::default(),
            inserted: Inserted::new(max_entries),
            doorkeeper: Doorkeeper::new(max_entries),
            max_ttl: i64::try_from(max_ttl.as_secs()).unwrap_or(i64::MAX),
            hits: Striped::new(),
            misses: Striped::new(),
        }
    }

    /// Looks a token up: in this thread's copies first (see [`recent`]), then in the shared
    /// entries. `key_alive` says whether key selection, run now for the token's `kid` and
    /// `alg`, still picks the very key that verified it (a key removed, replaced under the same
    /// `kid`, or made ambiguous by a new one ends the entry). `count_miss`: whether a miss is
    /// counted (not when the caller merely peeks and will not validate the token itself).
    pub(crate) fn get(
        &self,
        token: &[u8],
        now: i64,
        window: &TimeWindow,
        key_alive: impl Fn(&KeyRef) -> bool,
        count_miss: bool,
    ) -> Hit {
        let miss = || {
            if count_miss {
                observe::token_cache(false);
                self.misses.increment();
            }
            Hit::Miss
        };
        let judge = |entry: &Entry| self.judge(entry, now, window, &key_alive);
        let hash = self.inserted.hash(token);
        if let Some(found) =
            recent::find(self.id, hash, token, now, |copy| matches!(judge(copy), Judged::Valid))
        {
            if found.touch {
                // Marks the shared entry used (CLOCK's bit), as a shared hit would.
                self.entries.read(token, |_| ());
            }
            self.count_hit();
            return Hit::Valid(found.principal);
        }
        if !self.inserted.may_contain(hash) {
            return miss();
        }
        let copy_it = recent::looked_up_again(hash);
        // Decided under the shard's shared lock, so that a hit clones the principal (and, for a
        // copy, the entry) and nothing else; what ends an entry is carried out after.
        let looked = self.entries.read(token, |entry| match judge(entry) {
            Judged::Valid => Looked::Valid(entry.principal.clone(), copy_it.then(|| entry.clone())),
            Judged::Invalid(why) => Looked::Invalid(why),
            Judged::Gone { fresh } => Looked::Gone { fresh },
        });
        match looked {
            None => miss(),
            Some(Looked::Gone { fresh }) => {
                self.entries.remove(token);
                if !fresh {
                    // It was admitted before: once verified again, it is remembered at once.
                    self.doorkeeper.seen_again(self.hasher.hash_one(token));
                }
                miss()
            }
            Some(Looked::Valid(principal, copy)) => {
                self.count_hit();
                if let Some(mut copy) = copy {
                    // When `judge` can say `Valid` no more, whatever else.
                    let dies_at =
                        principal.expires_at_unix().map_or(i64::MAX, |exp| exp.saturating_add(window.leeway));
                    let dies_at = dies_at.min(copy.cached_at.saturating_add(self.max_ttl));
                    copy.principal = principal.detached();
                    recent::keep(self.id, hash, token, copy, now, dies_at);
                }
                Hit::Valid(principal)
            }
            Some(Looked::Invalid(why)) => {
                self.count_hit();
                self.entries.remove(token);
                Hit::Invalid(why)
            }
        }
    }

    /// What `entry` says of its token at `now`: the same rules for a shared entry and a thread's
    /// copy of one. Its age, its key (`key_alive`, see [`get`](Self::get)), and the token's time
    /// claims.
    fn judge(
        &self,
        entry: &Entry,
        now: i64,
        window: &TimeWindow,
        key_alive: impl Fn(&KeyRef) -> bool,
    ) -> Judged {
        let fresh = now.saturating_sub(entry.cached_at) < self.max_ttl;
        if !fresh || !entry.key.as_ref().is_none_or(key_alive) {
            return Judged::Gone { fresh };
        }
        let principal = &entry.principal;
        match window.check(now, principal.expires_at_unix(), entry.nbf, principal.issued_at_unix()) {
            Ok(()) => Judged::Valid,
            Err(why) => Judged::Invalid(why),
        }
    }

    /// Remembers a token that passed full validation, if it did so before (see [`Doorkeeper`]).
    pub(crate) fn insert(
        &self,
        token: &str,
        principal: &Principal,
        signer: Option<Signer>,
        nbf: Option<i64>,
        now: i64,
    ) {
        if self.doorkeeper.seen_again(self.hasher.hash_one(token.as_bytes())) {
            let key = signer.map(|s| KeyRef { generation: s.generation, name: s.name.shared() });
            let entry = Entry { principal: principal.clone(), key, nbf, cached_at: now };
            // When the cache is full, the hand takes a stale entry as readily as an unused one: it
            // would only be refused on its next hit.
            let stale = |e: &Entry| now.saturating_sub(e.cached_at) >= self.max_ttl;
            self.entries.insert(token.as_bytes(), entry, stale);
            self.inserted.insert(self.inserted.hash(token.as_bytes()));
        }
    }

    fn count_hit(&self) {
        observe::token_cache(true);
        self.hits.increment();
    }

    /// `false` when `token` was certainly never inserted (a bit test), whatever else.
    pub(crate) fn may_contain(&self, token: &[u8]) -> bool {
        self.inserted.may_contain(self.inserted.hash(token))
    }

    pub(crate) fn stats(&self) -> TokenCacheStats {
        TokenCacheStats {
            entries: self.entries.len() as u64,
            hits: self.hits.sum(),
            misses: self.misses.sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same token always hashes alike; the length and every one of the last 32 bytes count;
    /// and tokens differing only in their tails spread evenly over the low bits (which pick a
    /// bucket) as well as the high ones.
    #[test]
    fn tail_hash_is_stable_and_spreads() {
        let hash = TailHash::default();
        let token = format!("{}.{}", "h".repeat(40), "s".repeat(300));
        assert_eq!(hash.hash_one(token.as_str()), hash.hash_one(token.clone().as_str()));
        let mut changed = token.clone().into_bytes();
        for i in changed.len() - 32..changed.len() {
            changed[i] = b't';
            assert_ne!(hash.hash_one(std::str::from_utf8(&changed).unwrap()), hash.hash_one(token.as_str()));
            changed[i] = b's';
        }
        assert_ne!(hash.hash_one(&token[1..]), hash.hash_one(token.as_str()), "length");
        let hashes: Vec<u64> =
            (0..16_384u32).map(|i| hash.hash_one(format!("{token}{i:08x}").as_str())).collect();
        for shift in [0, 54] {
            let mut buckets = [0u32; 1024];
            hashes.iter().for_each(|h| buckets[((h >> shift) & 1023) as usize] += 1);
            // 16 a bucket on average; a uniform spread stays far below 48.
            let fullest = buckets.iter().max().unwrap();
            assert!(*fullest < 48, "bits {shift}..: fullest bucket holds {fullest}");
        }
    }

    /// A lookup reads the slot it probes: with many tokens in use, the larger the slot the more
    /// of them miss the CPU's caches (see `entries::Slot`). The token behind a `Box`, the
    /// verifying key's name behind an `Arc`: a slot fits in 72 bytes (it was 136).
    #[test]
    fn a_slot_stays_small() {
        assert!(entries::slot_bytes::<Entry>() <= 72, "{} bytes", entries::slot_bytes::<Entry>());
    }

    /// Entries of one key share its name; a name that differs in anything gets its own.
    #[test]
    fn a_key_name_is_shared_while_it_is_the_same() {
        let name = |fingerprint: u8, kid: Option<&str>| KeyName {
            fingerprint: [fingerprint; 32],
            kid: kid.map(Arc::from),
            alg: jsonwebtoken::Algorithm::RS256,
        };
        let first = name(1, Some("a")).shared();
        assert!(Arc::ptr_eq(&first, &name(1, Some("a")).shared()));
        let es256 = || KeyName { alg: jsonwebtoken::Algorithm::ES256, ..name(1, Some("a")) };
        for other in [name(2, Some("a")), name(1, Some("b")), name(1, None), es256()] {
            let again = name(1, Some("a")).shared();
            let other = other.shared();
            assert!(!Arc::ptr_eq(&again, &other));
            assert!(*again != *other);
        }
    }

    fn window() -> TimeWindow {
        TimeWindow { leeway: 0, require_exp: true }
    }

    /// A cache holding `token` (inserted twice: the doorkeeper admits it the second time),
    /// valid until 1 000, with a key.
    fn holding(token: &[u8]) -> TokenCache {
        let cache = TokenCache::new(100, Duration::from_secs(300));
        let principal = Principal::builder(crate::TokenKind::Jwt).subject("s").expires_at_unix(1_000).build();
        let key = || Signer {
            generation: 1,
            name: KeyName { fingerprint: [7; 32], kid: None, alg: jsonwebtoken::Algorithm::RS256 },
        };
        let text = std::str::from_utf8(token).unwrap();
        for _ in 0..2 {
            cache.insert(text, &principal, Some(key()), None, 100);
        }
        assert_eq!(cache.stats().entries, 1);
        cache
    }

    fn valid(hit: Hit) -> bool {
        matches!(hit, Hit::Valid(p) if p.subject() == Some("s"))
    }

    /// The second shared hit on a thread copies the entry into that thread; the copy then answers
    /// alone (the shared entry removed behind its back), and only while the same rules hold: a
    /// key no longer alive, an age past the TTL or an expired token each drop it.
    #[test]
    fn a_threads_copy_vouches_under_the_entrys_rules() {
        let token = b"header.payload.signature-of-the-copied-token";
        let alive = |_: &KeyRef| true;
        for (why, now, key_alive) in
            [("key gone", 200, false), ("older than the TTL", 401, true), ("expired", 1_000, true)]
        {
            let cache = holding(token);
            assert!(valid(cache.get(token, 200, &window(), alive, true)), "a shared hit");
            assert!(valid(cache.get(token, 200, &window(), alive, true)), "again: copied");
            cache.entries.remove(token);
            assert!(valid(cache.get(token, 200, &window(), alive, true)), "the copy answers");
            // A check that fails drops the copy; the shared entries (empty) decide.
            assert!(
                matches!(cache.get(token, now, &window(), |_: &KeyRef| key_alive, true), Hit::Miss),
                "{why}"
            );
            assert!(matches!(cache.get(token, 200, &window(), alive, true), Hit::Miss), "{why}: dropped");
        }
    }

    /// Copies are per cache: another validator's cache never answers from this one's, even for
    /// the same token; and a token sent once in a while (more tokens in turn than a thread's
    /// ring) is never copied.
    #[test]
    fn copies_belong_to_their_cache_and_to_tokens_sent_again_soon() {
        let alive = |_: &KeyRef| true;
        let token = b"header.payload.signature-of-a-token-in-two-caches";
        let (first, mut second) = (holding(token), holding(token));
        // Hashed alike: only the caches' ids tell their copies apart.
        second.inserted.key = first.inserted.key;
        for _ in 0..3 {
            assert!(valid(first.get(token, 200, &window(), alive, true)));
        }
        second.entries.remove(token);
        assert!(
            matches!(second.get(token, 200, &window(), alive, true), Hit::Miss),
            "not the first cache's copy"
        );

        let tokens: Vec<String> =
            (0..recent::RING + 1).map(|i| format!("header.payload.turn-{i:04}")).collect();
        let caches: Vec<TokenCache> = tokens.iter().map(|t| holding(t.as_bytes())).collect();
        for _round in 0..3 {
            for (cache, token) in caches.iter().zip(&tokens) {
                assert!(valid(cache.get(token.as_bytes(), 200, &window(), alive, true)));
            }
        }
        for (cache, token) in caches.iter().zip(&tokens) {
            cache.entries.remove(token.as_bytes());
            assert!(
                matches!(cache.get(token.as_bytes(), 200, &window(), alive, true), Hit::Miss),
                "{token} copied"
            );
        }
    }

    /// A token served from a thread's copy still counts as used in the shared entries (the copy
    /// touches its entry once a second): a full cache taking newcomer after newcomer keeps it,
    /// where CLOCK would give up an entry nobody seemed to use.
    #[test]
    fn a_token_served_from_a_copy_stays_in_a_full_cache() {
        let alive = |_: &KeyRef| true;
        let hot = b"header.payload.signature-of-the-hot-token";
        let cache = TokenCache::new(16, Duration::from_secs(300));
        let principal = Principal::builder(crate::TokenKind::Jwt).subject("s").expires_at_unix(1_000).build();
        let insert = |token: &[u8], now| {
            for _ in 0..2 {
                cache.insert(std::str::from_utf8(token).unwrap(), &principal, None, None, now);
            }
        };
        insert(hot, 100);
        for i in 0..15 {
            insert(format!("header.payload.filler-{i:04}").as_bytes(), 100);
        }
        assert!(
            valid(cache.get(hot, 100, &window(), alive, true))
                && valid(cache.get(hot, 100, &window(), alive, true))
        );
        for n in 0..64 {
            let now = 101 + n;
            assert!(valid(cache.get(hot, now, &window(), alive, true)), "served from the copy");
            insert(format!("header.payload.newcomer-{n:04}").as_bytes(), now);
        }
        assert_eq!(cache.stats().entries, 16);
        assert!(cache.entries.read(hot, |_| ()).is_some(), "the hot token was given up");
    }

    /// An absurd configured lifetime is clamped.
    #[test]
    fn a_huge_max_ttl_is_clamped() {
        let cache = TokenCache::new(10, Duration::MAX);
        assert_eq!(cache.max_ttl, i64::MAX);
    }

    /// What was inserted is always reported as possibly there (a false "absent" would cost a
    /// cached token its hit), most of what was not is reported absent, and the table clears
    /// itself after half its bits in insertions.
    #[test]
    fn inserted_has_no_false_absent_until_it_clears() {
        let inserted = Inserted::new(512); // 4 096 bits, the smallest: cleared at 2 048 insertions
        let hashes: Vec<u64> =
            (0..2047).map(|i| inserted.hash(format!("header.payload.sig-{i:08}").as_bytes())).collect();
        for &hash in &hashes {
            inserted.insert(hash);
        }
        assert!(hashes.iter().all(|&hash| inserted.may_contain(hash)));
        let absent = (0..10_000)
            .filter(|i| !inserted.may_contain(inserted.hash(format!("header.payload.oth-{i:08}").as_bytes())))
            .count();
        // About 39 % of the bits are set: about 61 % of other tokens skip the lookup.
        assert!(absent > 5_000, "{absent} of 10 000 never-inserted tokens reported absent");
        inserted.insert(inserted.hash(b"header.payload.the-2048th"));
        assert!(hashes.iter().all(|&hash| !inserted.may_contain(hash)), "cleared");
    }

    /// Tokens sent round-robin, as many as a third of the slots, each leaving for the cache once
    /// admitted: nearly all are admitted on their second pass, and crowded sets drain on the
    /// next. A direct-mapped table (one slot per hash) admits only the tokens alone in their slot,
    /// about three quarters here, and the others never, pass after pass.
    #[test]
    fn round_robin_tokens_sharing_a_set_are_all_admitted() {
        let doorkeeper = Doorkeeper::new(512); // 1 024 slots, 256 sets
        // Fixed pseudo-random hashes (SplitMix64), not a per-process key: how many tokens crowd
        // one set is then the same on every run, and the test cannot pass or fail by luck.
        let splitmix = |i: u64| {
            let mut z = i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let tokens: Vec<u64> = (0..300).map(splitmix).collect();
        for token in &tokens {
            assert!(!doorkeeper.seen_again(*token), "first pass: nothing seen yet");
        }
        let mut waiting: Vec<&u64> = tokens.iter().collect();
        let mut left = Vec::new();
        for _pass in 2..=4 {
            waiting.retain(|token| !doorkeeper.seen_again(**token));
            left.push(waiting.len());
        }
        println!("not admitted yet after passes 2, 3, 4: {left:?} of {}", tokens.len());
        assert!(left[0] <= 30, "{left:?}");
        assert!(left[2] <= 3, "crowded sets drain: {left:?}");
    }
}
