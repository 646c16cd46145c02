//! What the development authorization server remembers: authorization codes, refresh tokens,
//! the token families they belong to, and the access tokens it issued (for introspection and
//! revocation). In memory only, and bounded: anyone who can reach the server can make it issue
//! codes (an unauthenticated `GET /authorize` is enough), so expired entries are forgotten as the
//! maps grow, and each map holds at most `Store::capacity` entries.
//!
//! Codes and refresh tokens are stored by their SHA-256 only, so the map lookup never compares
//! secret values byte by byte, and a dump of the store holds no usable credential.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};

use super::b64;

/// SHA-256 of a secret value: the key it is stored under.
pub(crate) type Hash = [u8; 32];

pub(crate) fn hash(secret: &str) -> Hash {
    Sha256::digest(secret.as_bytes()).into()
}

/// A fresh secret value: 32 random bytes, base64url (43 characters).
pub(crate) fn secret_value() -> String {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes).expect("random bytes");
    b64(&bytes)
}

/// An issued authorization code (RFC 6749 §4.1.2).
pub(crate) struct Code {
    pub client_id: String,
    pub redirect_uri: String,
    /// The RFC 7636 S256 `code_challenge`.
    pub challenge: String,
    pub scope: Vec<String>,
    pub resource: Option<String>,
    pub subject: String,
    /// Unix time (seconds) from which the code is expired.
    pub expires: i64,
    /// Presented once already: any later use is a replay.
    pub consumed: bool,
    /// The family of the tokens issued for it (revoked on replay).
    pub family: Option<u64>,
}

/// A valid authorization request, before the resource owner's decision.
pub(crate) struct Authorization {
    pub client_id: String,
    pub redirect_uri: String,
    /// The RFC 7636 S256 `code_challenge`.
    pub challenge: String,
    /// The requested scope (or the client's default), all known and allowed.
    pub scope: Vec<String>,
    pub resource: Option<String>,
    pub state: Option<String>,
}

/// An authorization request waiting for the person on the sign-in page (stored under the hash
/// of its id; single use).
pub(crate) struct Pending {
    pub request: Authorization,
    /// The anti-forgery value of its form (and cookie).
    pub csrf: String,
    /// Unix time (seconds) from which the page is stale.
    pub expires: i64,
}

/// Everything issued from one authorization grant: revoked together (RFC 9700 §4.14.2).
pub(crate) struct Family {
    pub client_id: String,
    pub subject: String,
    /// The scope originally granted: refreshes may only narrow it.
    pub scope: Vec<String>,
    pub resource: Option<String>,
    pub revoked: bool,
    /// The DPoP key a public client's refresh tokens are bound to (RFC 9449 §5).
    pub jkt: Option<String>,
}

/// A refresh token; `rotated` once it has been exchanged for a new one.
pub(crate) struct Refresh {
    pub family: u64,
    pub rotated: bool,
    /// Unix time (seconds) from which the token is expired.
    pub expires: i64,
}

/// An access token issued by the token endpoint, with its claims.
pub(crate) struct Access {
    pub claims: Map<String, Value>,
    pub family: Option<u64>,
    pub revoked: bool,
}

/// The default `Store::capacity`.
pub(crate) const DEFAULT_CAPACITY: usize = 100_000;
/// Below this many entries, expired ones are not looked for (they cost little memory).
const PRUNE_FROM: usize = 1024;

/// The grants store.
pub(crate) struct Store {
    pub codes: HashMap<Hash, Code>,
    pub refresh: HashMap<Hash, Refresh>,
    pub families: HashMap<u64, Family>,
    pub access: HashMap<Hash, Access>,
    pub pending: HashMap<Hash, Pending>,
    next_family: u64,
    /// Most entries of each of `codes`, `refresh` and `access`. (`families` needs no bound of
    /// its own: a family is dropped once no code or token refers to it.)
    capacity: usize,
    /// The size of the largest map at which expired entries are next looked for: doubling, so
    /// the scans cost O(1) per insert amortized.
    prune_at: usize,
}

impl Store {
    pub fn new(capacity: usize) -> Self {
        Store {
            codes: HashMap::new(),
            refresh: HashMap::new(),
            families: HashMap::new(),
            access: HashMap::new(),
            pending: HashMap::new(),
            next_family: 0,
            capacity,
            prune_at: PRUNE_FROM.min(capacity),
        }
    }

    /// Whether one more authorization code fits (call before inserting one). At capacity the
    /// caller refuses the request rather than grow without bound.
    pub fn room_for_code(&mut self, now: i64) -> bool {
        self.prune_if_grown(now);
        self.codes.len() < self.capacity
    }

    /// Whether one more pending sign-in fits (like [`Self::room_for_code`]).
    pub fn room_for_pending(&mut self, now: i64) -> bool {
        self.prune_if_grown(now);
        self.pending.len() < self.capacity
    }

    /// Whether one more access token and one more refresh token fit (call before a grant: each
    /// inserts at most one of each).
    pub fn room_for_tokens(&mut self, now: i64) -> bool {
        self.prune_if_grown(now);
        self.access.len().max(self.refresh.len()) < self.capacity
    }

    /// Forgets expired entries once the maps have grown past `prune_at`.
    fn prune_if_grown(&mut self, now: i64) {
        if self.largest() >= self.prune_at {
            self.prune(now);
            self.prune_at = (2 * self.largest()).clamp(PRUNE_FROM.min(self.capacity), self.capacity);
        }
    }

    fn largest(&self) -> usize {
        self.codes.len().max(self.refresh.len()).max(self.access.len()).max(self.pending.len())
    }

    /// Drops expired codes and tokens (they would be refused anyway), then the families no
    /// remaining code or token refers to. A family still referred to is kept: a missing family
    /// reads as revoked (see `Store::family_revoked`).
    fn prune(&mut self, now: i64) {
        self.codes.retain(|_, c| now < c.expires);
        self.pending.retain(|_, p| now < p.expires);
        // Rotated refresh tokens stay until they expire: their reuse still revokes the family.
        self.refresh.retain(|_, r| now < r.expires);
        self.access.retain(|_, a| a.claims.get("exp").and_then(Value::as_i64).is_none_or(|exp| now < exp));
        let live: HashSet<u64> = (self.codes.values().filter_map(|c| c.family))
            .chain(self.refresh.values().map(|r| r.family))
            .chain(self.access.values().filter_map(|a| a.family))
            .collect();
        self.families.retain(|id, _| live.contains(id));
    }

    pub fn new_family(&mut self, family: Family) -> u64 {
        self.next_family += 1;
        self.families.insert(self.next_family, family);
        self.next_family
    }

    /// Revokes a family: its refresh tokens and access tokens stop working.
    pub fn revoke_family(&mut self, id: u64) {
        if let Some(family) = self.families.get_mut(&id) {
            family.revoked = true;
        }
    }

    pub fn family_revoked(&self, id: u64) -> bool {
        self.families.get(&id).is_none_or(|f| f.revoked)
    }

    /// The claims of an active access token issued by the token endpoint.
    pub fn active_access(&self, token: &str, now: i64) -> Option<&Map<String, Value>> {
        let access = self.access.get(&hash(token))?;
        let live = !access.revoked
            && access.family.is_none_or(|f| !self.family_revoked(f))
            && access.claims.get("exp").and_then(Value::as_i64).is_none_or(|exp| exp > now);
        live.then_some(&access.claims)
    }

    /// RFC 7009 revocation by `client_id`: a refresh token revokes its family, an access token
    /// itself. Tokens of other clients are left alone. Returns whether something was revoked.
    pub fn revoke(&mut self, token: &str, client_id: Option<&str>) -> bool {
        let key = hash(token);
        if let Some(family) = self.refresh.get(&key).map(|r| r.family) {
            let owner = self.families.get(&family).map(|f| f.client_id.as_str());
            if client_id.is_none() || owner == client_id {
                self.revoke_family(family);
                return true;
            }
            return false;
        }
        if let Some(access) = self.access.get_mut(&key) {
            let owner = access.claims.get("client_id").and_then(Value::as_str);
            if client_id.is_none() || owner == client_id {
                access.revoked = true;
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(expires: i64, family: Option<u64>) -> Code {
        Code {
            client_id: "c".into(),
            redirect_uri: "r".into(),
            challenge: "x".into(),
            scope: Vec::new(),
            resource: None,
            subject: "s".into(),
            expires,
            consumed: false,
            family,
        }
    }

    fn family() -> Family {
        Family {
            client_id: "c".into(),
            subject: "s".into(),
            scope: Vec::new(),
            resource: None,
            revoked: false,
            jkt: None,
        }
    }

    /// Codes keep coming as time passes: the store never holds more than its capacity, and
    /// expired codes make room for new ones.
    #[test]
    fn stays_bounded_and_forgets_expired_entries() {
        let mut store = Store::new(10);
        for i in 0..1000 {
            let now = i * 100;
            assert!(store.room_for_code(now), "expired codes make room ({i})");
            store.codes.insert(hash(&secret_value()), code(now + 60, None));
            assert!(store.codes.len() <= 10);
        }
        // Ten live codes: full until they expire.
        let mut store = Store::new(10);
        for _ in 0..10 {
            assert!(store.room_for_code(0));
            store.codes.insert(hash(&secret_value()), code(60, None));
        }
        assert!(!store.room_for_code(59), "at capacity with nothing expired");
        assert!(store.room_for_code(60));
        assert!(store.codes.is_empty());
    }

    /// A family is forgotten only once nothing refers to it: a missing family reads as revoked.
    #[test]
    fn families_in_use_are_kept() {
        let mut store = Store::new(2);
        let kept = store.new_family(family());
        let dropped = store.new_family(family());
        store.refresh.insert(hash("live"), Refresh { family: kept, rotated: true, expires: 100 });
        store.codes.insert(hash("old"), code(10, Some(dropped)));
        store.codes.insert(hash("old2"), code(10, None));
        assert!(store.room_for_code(50));
        assert!(!store.family_revoked(kept));
        assert!(!store.families.contains_key(&dropped));
        assert!(store.refresh.contains_key(&hash("live")), "rotated but unexpired: kept for reuse detection");
    }
}
