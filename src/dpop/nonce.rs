//! Stateless DPoP server nonces (RFC 9449 §8, §9): an HMAC over a time step, so that any replica
//! sharing the key accepts the nonces of the others, and nothing is stored.

use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// Server nonces for DPoP proofs: with them, a proof must carry a recent nonce from this server
/// (or a replica sharing the key), which bounds how long a proof made in advance stays usable.
///
/// A nonce is `base64url(step || HMAC-SHA256(key, step)[..16])` where `step` is the current
/// time divided by the step length; the current and the previous step are accepted.
#[derive(Clone)]
pub struct DpopNonces {
    key: [u8; 32],
    step: u64,
}

impl fmt::Debug for DpopNonces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopNonces").field("step_secs", &self.step).finish_non_exhaustive()
    }
}

impl DpopNonces {
    /// Nonces keyed by `secret` (any length; hashed to the HMAC key). Share it across replicas.
    /// A nonce is accepted for one to two `step`s (at least one second).
    pub fn new(secret: &[u8], step: Duration) -> Self {
        DpopNonces { key: Sha256::digest(secret).into(), step: step.as_secs().max(1) }
    }

    fn step_at(&self, now: i64) -> u64 {
        u64::try_from(now).unwrap_or(0) / self.step
    }

    fn for_step(&self, step: u64) -> String {
        let mut out = [0u8; 24];
        out[..8].copy_from_slice(&step.to_be_bytes());
        out[8..].copy_from_slice(&crate::mac::hmac(&self.key, &[&step.to_be_bytes()])[..16]);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// The nonce to hand out at `now` (Unix seconds).
    pub fn current(&self, now: i64) -> String {
        self.for_step(self.step_at(now))
    }

    /// Whether `nonce` was handed out in this step or the previous one.
    pub fn is_valid(&self, nonce: &str, now: i64) -> bool {
        let current = self.step_at(now);
        [current, current.saturating_sub(1)]
            .into_iter()
            .any(|step| crate::mac::equal(self.for_step(step).as_bytes(), nonce.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_and_previous_step_only() {
        let nonces = DpopNonces::new(b"shared secret", Duration::from_secs(60));
        let n = nonces.current(1_000);
        assert!(nonces.is_valid(&n, 1_000));
        assert!(nonces.is_valid(&n, 1_079));
        assert!(!nonces.is_valid(&n, 1_200));
        assert!(!DpopNonces::new(b"other", Duration::from_secs(60)).is_valid(&n, 1_000));
        assert!(!nonces.is_valid("x", 1_000));
    }
}
