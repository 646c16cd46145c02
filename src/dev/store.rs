//! What the development authorization server remembers: authorization codes, refresh tokens,
//! the token families they belong to, and the access tokens it issued (for introspection and
//! revocation). In memory only, never purged: a development server lives for one test or demo.
//!
//! Codes and refresh tokens are stored by their SHA-256 only, so the map lookup never compares
//! secret values byte by byte, and a dump of the store holds no usable credential.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

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

/// Everything issued from one authorization grant: revoked together (RFC 9700 §4.14.2).
pub(crate) struct Family {
    pub client_id: String,
    pub subject: String,
    /// The scope originally granted: refreshes may only narrow it.
    pub scope: Vec<String>,
    pub resource: Option<String>,
    pub revoked: bool,
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

/// The grants store.
#[derive(Default)]
pub(crate) struct Store {
    pub codes: HashMap<Hash, Code>,
    pub refresh: HashMap<Hash, Refresh>,
    pub families: HashMap<u64, Family>,
    pub access: HashMap<Hash, Access>,
    next_family: u64,
}

impl Store {
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
