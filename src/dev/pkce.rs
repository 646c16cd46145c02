//! RFC 7636 Proof Key for Code Exchange, `S256` only: the client half ([`Pkce::new`]) for
//! tests and demos, and the server's check.

use aws_lc_rs::constant_time::verify_slices_are_equal;
use sha2::{Digest, Sha256};

use super::b64;
use super::store::secret_value;

/// A PKCE pair: the secret `code_verifier` the client keeps, and the `code_challenge` it sends
/// with the authorization request (`code_challenge_method=S256`).
#[derive(Clone)]
pub struct Pkce {
    /// 43 characters of base64url randomness (RFC 7636 §4.1).
    pub verifier: String,
    /// `BASE64URL(SHA256(verifier))` (RFC 7636 §4.2).
    pub challenge: String,
}

impl std::fmt::Debug for Pkce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkce").field("challenge", &self.challenge).finish_non_exhaustive()
    }
}

impl Pkce {
    /// A fresh random verifier and its S256 challenge.
    pub fn new() -> Self {
        let verifier = secret_value();
        Pkce { challenge: s256(&verifier), verifier }
    }
}

impl Default for Pkce {
    fn default() -> Self {
        Self::new()
    }
}

/// The S256 challenge of a verifier.
pub fn s256(verifier: &str) -> String {
    b64(&Sha256::digest(verifier.as_bytes()))
}

/// RFC 7636 §4.1 syntax of a verifier or a challenge: 43 to 128 unreserved characters.
pub(crate) fn well_formed(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Whether `verifier` answers `challenge` (S256), compared in constant time.
pub(crate) fn verify(verifier: &str, challenge: &str) -> bool {
    well_formed(verifier) && verify_slices_are_equal(s256(verifier).as_bytes(), challenge.as_bytes()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(s256(verifier), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        assert!(verify(verifier, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        assert!(!verify(verifier, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"));
        // Too short to be a verifier, even if its hash matched.
        assert!(!verify("short", &s256("short")));
    }

    #[test]
    fn fresh_pairs_verify() {
        let pkce = Pkce::new();
        assert!(well_formed(&pkce.verifier) && well_formed(&pkce.challenge));
        assert!(verify(&pkce.verifier, &pkce.challenge));
        assert_ne!(Pkce::new().verifier, pkce.verifier);
        assert!(!format!("{pkce:?}").contains(&pkce.verifier), "Debug hides the verifier");
    }
}
