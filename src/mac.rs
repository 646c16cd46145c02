//! HMAC-SHA256 (RFC 2104) with a 32-byte key, and a comparison without an early exit: what the
//! DPoP nonces and the fleet's shared state authenticate themselves with.

use sha2::{Digest, Sha256};

/// HMAC-SHA256 over the concatenation of `parts`.
pub(crate) fn hmac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut ipad = [0x36u8; 64];
    let mut opad = [0x5cu8; 64];
    for (i, k) in key.iter().enumerate() {
        ipad[i] ^= k;
        opad[i] ^= k;
    }
    let mut inner = Sha256::new().chain_update(ipad);
    for part in parts {
        inner.update(part);
    }
    Sha256::new().chain_update(opad).chain_update(inner.finalize()).finalize().into()
}

/// Whether `a` and `b` are equal, compared without an early exit on the first difference.
pub(crate) fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        // RFC 4231 test case 2 uses a 4-byte key ("Jefe"); padded with zeros it is the same key.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let mac = hmac(&key, &[b"what do ya want ", b"for nothing?"]);
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        assert!(equal(&mac, &hmac(&key, &[b"what do ya want for nothing?"])));
        assert!(!equal(&mac, &mac[..31]));
    }
}
